//! Helpers: run the `lucent` binary, start and stop a server, call dcmtk tools.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub fn lucent() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_lucent"));
    c.env("LUCENT_LOG", "info");
    c
}

/// Runs `lucent ARGS --data-dir DIR` and returns its output.
pub fn lucent_in(dir: &Path, args: &[&str]) -> Output {
    lucent().args(args).arg("--data-dir").arg(dir).output().unwrap()
}

pub fn shared() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data")
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A dcmtk tool with Nagle disabled (it otherwise stalls ~50 ms per message).
pub fn dcmtk(tool: &str) -> Command {
    let mut c = Command::new(tool);
    c.env("TCP_NODELAY", "1");
    c
}

/// A `lucent serve` child process on its own ports and data directory.
pub struct Server {
    pub child: Child,
    pub dir: PathBuf,
    pub dicom_port: u16,
    pub http_port: u16,
    pub log: PathBuf,
}

impl Server {
    /// Initialises `dir` (if needed), applies `config` (key, value) pairs, starts `serve` and
    /// waits until its health check answers.
    pub fn start(dir: &Path, config: &[(&str, &str)]) -> Server {
        let mut all =
            vec![("storage.min_free_mb", "0"), ("dicom.idle_timeout_secs", "5"), ("dicom.shutdown_grace_secs", "3")];
        all.extend_from_slice(config);
        for (k, v) in all {
            let out = lucent_in(dir, &["config", "set", k, v]);
            assert!(out.status.success(), "config set {k}: {}", String::from_utf8_lossy(&out.stderr));
        }
        Self::restart(dir)
    }

    /// Starts `serve` on an existing data directory, with fresh ports, and waits until healthy.
    pub fn restart(dir: &Path) -> Server {
        Self::launch(dir, true)
    }

    /// Like `restart`, but any answer of the health check will do (for unhealthy set-ups).
    pub fn restart_unhealthy_ok(dir: &Path) -> Server {
        Self::launch(dir, false)
    }

    fn launch(dir: &Path, healthy: bool) -> Server {
        let (dicom_port, http_port) = (free_port(), free_port());
        let log = dir.with_extension(format!("serve-{dicom_port}.log"));
        let child = lucent()
            .args([
                "serve",
                "--dicom-port",
                &dicom_port.to_string(),
                "--http-port",
                &http_port.to_string(),
                "--data-dir",
            ])
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut s = Server { child, dir: dir.to_path_buf(), dicom_port, http_port, log };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = s.child.try_wait().unwrap() {
                panic!("serve exited with {status}: {}", s.log_text());
            }
            if http_get(http_port, "/healthz").is_some_and(|(code, _)| code == 200 || !healthy) {
                return s;
            }
            assert!(Instant::now() < deadline, "serve did not become healthy: {}", s.log_text());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill").args([sig, &self.child.id().to_string()]).status().unwrap().success();
        assert!(ok, "kill {sig} failed");
    }

    /// SIGTERM, then waits for the exit; returns whether it exited successfully.
    pub fn stop(mut self) -> bool {
        self.signal("-TERM");
        let ok = self.child.wait().unwrap().success();
        std::mem::forget(self);
        ok
    }

    pub fn kill9(mut self) {
        self.signal("-KILL");
        let _ = self.child.wait();
        std::mem::forget(self);
    }

    pub fn stats(&self) -> serde_json::Value {
        stats(&self.dir)
    }

    pub fn echo(&self) -> bool {
        echo(self.dicom_port, "ECHOSCU")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn stats(dir: &Path) -> serde_json::Value {
    let out = lucent_in(dir, &["stats", "--json"]);
    assert!(out.status.success(), "stats: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// C-ECHO with dcmtk's echoscu, with short timeouts so a hung listener fails the test fast.
pub fn echo(port: u16, calling: &str) -> bool {
    dcmtk("echoscu")
        .args(["-to", "5", "-ta", "5", "-td", "5", "-aet", calling, "-aec", "LUCENT", "127.0.0.1", &port.to_string()])
        .output()
        .unwrap()
        .status
        .success()
}

/// The storescu option that proposes exactly a file's transfer syntax, so that storescu sends
/// it unconverted.
pub fn storescu_flag(ts: &str) -> &'static str {
    match ts {
        "1.2.840.10008.1.2" => "-xi",
        "1.2.840.10008.1.2.1" => "-xe",
        "1.2.840.10008.1.2.2" => "-xb",
        "1.2.840.10008.1.2.1.99" => "-xd",
        "1.2.840.10008.1.2.4.50" => "-xy",
        "1.2.840.10008.1.2.4.51" => "-xx",
        "1.2.840.10008.1.2.4.70" => "-xs",
        "1.2.840.10008.1.2.4.80" => "-xt",
        "1.2.840.10008.1.2.4.81" => "-xu",
        "1.2.840.10008.1.2.4.90" => "-xv",
        "1.2.840.10008.1.2.4.91" => "-xw",
        "1.2.840.10008.1.2.5" => "-xr",
        other => panic!("no storescu option for transfer syntax {other}"),
    }
}

/// storescu's verbose output, and how many C-STORE responses were successes, in order.
pub struct StoreRun {
    pub output: String,
    pub successes: usize,
    pub failures: usize,
}

pub fn storescu(port: u16, extra: &[&str], files: &[PathBuf]) -> StoreRun {
    let out = dcmtk("storescu")
        .args(["-v", "-nh", "-to", "10", "-ta", "10", "-td", "30", "-aec", "LUCENT"])
        .args(extra)
        .arg("127.0.0.1")
        .arg(port.to_string())
        .args(files)
        .output()
        .unwrap();
    parse_storescu(&out)
}

pub fn parse_storescu(out: &Output) -> StoreRun {
    let output = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let successes = output.lines().filter(|l| l.contains("Received Store Response (Success)")).count();
    let failures = output.lines().filter(|l| l.contains("Received Store Response") && !l.contains("(Success)")).count();
    StoreRun { output, successes, failures }
}

/// Transfer syntax and data set bytes of a Part 10 file (the bytes after the meta group).
pub fn part10(path: &Path) -> Option<(String, Vec<u8>)> {
    let bytes = std::fs::read(path).ok()?;
    lucent::dicom::instance::split_part10(bytes).ok()
}

/// Minimal HTTP/1.0 GET: status code and body.
pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").ok()?;
    let mut resp = String::new();
    s.read_to_string(&mut resp).ok()?;
    let code = resp.split_whitespace().nth(1)?.parse().ok()?;
    let body = resp.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    Some((code, body))
}

/// GET over HTTP/1.0 as a signed-in user (`cookie` from [`sign_in`]) with an optional Accept
/// header: (status, content type, body bytes).
pub fn http_get_bytes(port: u16, path: &str, accept: Option<&str>, cookie: &str) -> Option<(u16, String, Vec<u8>)> {
    let mut headers = vec![("Cookie", cookie)];
    if let Some(a) = accept {
        headers.push(("Accept", a));
    }
    let r = http(port, "GET", path, &headers, b"")?;
    let ctype = r.header("content-type").unwrap_or_default().to_string();
    Some((r.status, ctype, r.body))
}

/// An HTTP response: status, headers (names lower-cased), body.
#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// The value a `Set-Cookie` header gives cookie `name`.
    pub fn cookie(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .filter(|(k, _)| k == "set-cookie")
            .find_map(|(_, v)| v.split(';').next()?.trim().strip_prefix(&format!("{name}=")).map(str::to_string))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// One HTTP/1.0 request over a fresh connection.
pub fn http(port: u16, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Option<HttpResponse> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
    let mut req = format!("{method} {path} HTTP/1.0\r\nHost: localhost\r\nContent-Length: {}\r\n", body.len());
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).ok()?;
    s.write_all(body).ok()?;
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).ok()?;
    let split = resp.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&resp[..split]).into_owned();
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    let headers = head
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Some(HttpResponse { status, headers, body: resp[split + 4..].to_vec() })
}

/// A form body, URL-encoded.
pub fn form(fields: &[(&str, &str)]) -> Vec<u8> {
    serde_urlencoded::to_string(fields).unwrap().into_bytes()
}

/// Runs `lucent ARGS --data-dir DIR` with `stdin` as standard input.
pub fn lucent_stdin(dir: &Path, args: &[&str], stdin: &str) -> Output {
    let mut child = lucent()
        .args(args)
        .arg("--data-dir")
        .arg(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

/// Password of the users tests create.
pub const TEST_PASSWORD: &str = "correct horse battery staple";

/// Creates user `name` with `role` (password [`TEST_PASSWORD`], no change required) unless it
/// exists, and signs in over HTTP. Returns the `Cookie` header value of the session.
pub fn sign_in(dir: &Path, port: u16, name: &str, role: &str) -> String {
    let line = format!("{TEST_PASSWORD}\n");
    let _ = lucent_stdin(dir, &["user", "add", name, "--role", role, "--password-stdin"], &line);
    let o = lucent_stdin(dir, &["user", "passwd", name, "--password-stdin", "--no-change-required"], &line);
    assert!(o.status.success(), "user passwd: {}", String::from_utf8_lossy(&o.stderr));
    login(port, name, TEST_PASSWORD).expect("login succeeds")
}

/// Signs in through the login form; the session cookie, or `None` (with the response) when
/// the login is refused.
pub fn login(port: u16, name: &str, password: &str) -> Result<String, HttpResponse> {
    let page = http(port, "GET", "/login", &[], b"").unwrap();
    let token = page.cookie("lucent_login").expect("login form sets its token cookie");
    let body = form(&[("username", name), ("password", password), ("csrf", &token), ("next", "/")]);
    let cookie = format!("lucent_login={token}");
    let r = http(
        port,
        "POST",
        "/login",
        &[("Content-Type", "application/x-www-form-urlencoded"), ("Cookie", &cookie)],
        &body,
    )
    .unwrap();
    match r.cookie("lucent_session") {
        Some(s) if r.status == 303 => Ok(format!("lucent_session={s}")),
        _ => Err(r),
    }
}

/// Every instance file under `<dir>/files`, and every leftover in `<dir>/tmp`.
pub fn files_on_disk(dir: &Path) -> (Vec<PathBuf>, Vec<PathBuf>) {
    let walk = |d: PathBuf| -> Vec<PathBuf> {
        walkdir::WalkDir::new(d)
            .into_iter()
            .filter_map(Result::ok)
            .filter(|e| e.file_type().is_file())
            .map(|e| e.into_path())
            .collect()
    };
    (walk(dir.join("files")), walk(dir.join("tmp")))
}
