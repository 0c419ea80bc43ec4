//! The web server over real HTTP: DICOM destinations verified with C-ECHO against dcmtk's
//! storescp, and the frames endpoints behind a session.

use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::support::*;

fn csrf_of(page: &str) -> String {
    let i = page.find("name=\"csrf\" value=\"").expect("a form with a CSRF token") + 19;
    page[i..i + 64].to_string()
}

#[test]
fn destinations_are_verified_with_c_echo_against_storescp() {
    let t = tempfile::tempdir().unwrap();
    let data = t.path().join("data");
    let server = Server::start(&data, &[]);
    let cookie = sign_in(&data, server.http_port, "it-admin", "admin");
    let port = free_port();
    let mut scp = dcmtk("storescp")
        .args(["--aetitle", "PEER", "--output-directory"])
        .arg(t.path())
        .arg(port.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "storescp did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    let page = http(server.http_port, "GET", "/admin/destinations", &[("Cookie", &cookie)], b"").unwrap();
    assert_eq!(page.status, 200);
    let csrf = csrf_of(&page.text());
    let post = |path: &str, fields: &[(&str, &str)]| {
        let mut f = fields.to_vec();
        f.push(("csrf", &csrf));
        http(
            server.http_port,
            "POST",
            path,
            &[("Cookie", &cookie), ("Content-Type", "application/x-www-form-urlencoded")],
            &form(&f),
        )
        .unwrap()
    };
    let p = port.to_string();
    assert_eq!(
        post("/admin/destinations", &[("name", "pacs"), ("ae_title", "PEER"), ("host", "127.0.0.1"), ("port", &p)])
            .status,
        303
    );
    let closed = free_port().to_string();
    assert_eq!(
        post(
            "/admin/destinations",
            &[("name", "gone"), ("ae_title", "GONE"), ("host", "127.0.0.1"), ("port", &closed)]
        )
        .status,
        303
    );
    // Bad values get a message naming the problem.
    let bad = post(
        "/admin/destinations",
        &[("name", "x"), ("ae_title", "WAY-TOO-LONG-AE-TITLE"), ("host", "h"), ("port", "104")],
    );
    assert_eq!(bad.status, 422);
    assert!(bad.text().contains("16"), "{}", bad.text());
    let bad = post("/admin/destinations", &[("name", "y"), ("ae_title", "Y"), ("host", "h"), ("port", "70000")]);
    assert!(bad.text().contains("1 to 65535"));
    let list = http(server.http_port, "GET", "/admin/destinations", &[("Cookie", &cookie)], b"").unwrap().text();
    let id_of = |name: &str| {
        let row = list.find(&format!("<td>{name}</td>")).unwrap();
        let i = list[row..].find("/admin/destinations/").unwrap() + row + 20;
        list[i..].split('/').next().unwrap().to_string()
    };
    let ok = post(&format!("/admin/destinations/{}/verify", id_of("pacs")), &[]);
    assert_eq!(ok.status, 200, "{}", ok.text());
    assert!(ok.text().contains("pacs answered C-ECHO in"), "{}", ok.text());
    let fail = post(&format!("/admin/destinations/{}/verify", id_of("gone")), &[]);
    assert_eq!(fail.status, 422);
    assert!(fail.text().contains("association with GONE@127.0.0.1"), "{}", fail.text());
    assert_eq!(post(&format!("/admin/destinations/{}/delete", id_of("gone")), &[]).status, 303);
    let _ = scp.kill();
    let _ = scp.wait();
    assert!(server.stop());
}
