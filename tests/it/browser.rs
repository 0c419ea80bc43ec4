//! The web UI in a real headless Chromium, driven over WebDriver (chromedriver + fantoccini):
//! first admin login and forced password change, a user added in the admin page, a study sent
//! with storescu appearing in the worklist, the viewer drawing real pixels, window/level by
//! mouse drag, the enhanced view and saliency overlay, and a report written and signed.
//! Screenshots go to `<target>/tmp/artifacts/`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use dicom_dictionary_std::tags;
use fantoccini::actions::{InputSource, MouseActions, PointerAction, MOUSE_BUTTON_LEFT};
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};

use crate::support::{dcmtk, free_port, lucent_in, shared, storescu, Server};

struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn which(cmd: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?.to_str()?.split(':').map(|d| Path::new(d).join(cmd)).find(|p| p.is_file())
}

fn artifacts() -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join("artifacts");
    std::fs::create_dir_all(&d).unwrap();
    d
}

async fn shot(c: &Client, name: &str) {
    let png = c.screenshot().await.unwrap();
    let p = artifacts().join(format!("browser-{name}.png"));
    std::fs::write(&p, png).unwrap();
    eprintln!("screenshot: {}", p.display());
}

async fn wait_for(what: &str, mut f: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !f().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn js(c: &Client, script: &str) -> Value {
    c.execute(script, vec![]).await.unwrap()
}

/// (renders so far, sum of red values, non-zero pixels) of the viewer canvas.
async fn canvas(c: &Client) -> (u64, u64, u64) {
    let v = js(
        c,
        "const c = document.getElementById('canvas');
         const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
         let sum = 0, nz = 0;
         for (let i = 0; i < d.length; i += 4) { sum += d[i]; if (d[i] || d[i+1] || d[i+2]) nz++; }
         return [Number(c.dataset.renders || 0), sum, nz];",
    )
    .await;
    (v[0].as_u64().unwrap(), v[1].as_u64().unwrap(), v[2].as_u64().unwrap())
}

/// The element, waiting up to 20 s for it (pages load after clicks asynchronously).
async fn el(c: &Client, loc: Locator<'_>) -> fantoccini::elements::Element {
    c.wait().at_most(Duration::from_secs(20)).for_element(loc).await.unwrap_or_else(|e| panic!("{loc:?}: {e}"))
}

async fn fill(c: &Client, id: &str, text: &str) {
    let e = el(c, Locator::Id(id)).await;
    e.clear().await.unwrap();
    e.send_keys(text).await.unwrap();
}

async fn click(c: &Client, css: &str) {
    el(c, Locator::Css(css)).await.click().await.unwrap();
}

async fn sign_in(c: &Client, base: &str, user: &str, pw: &str) {
    c.goto(&format!("{base}/login")).await.unwrap();
    fill(c, "username", user).await;
    fill(c, "password", pw).await;
    click(c, "#signin").await;
}

async fn change_password(c: &Client, old: &str, new: &str) {
    wait_for("the password page", async || c.find(Locator::Id("change-password")).await.is_ok()).await;
    fill(c, "current", old).await;
    fill(c, "new", new).await;
    fill(c, "confirm", new).await;
    click(c, "#change-password").await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while c.current_url().await.unwrap().path() == "/account/password" {
        if Instant::now() > deadline {
            let body = el(c, Locator::Css("body")).await.text().await.unwrap();
            shot(c, "password-failed").await;
            panic!("the password change did not go through: {body}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A copy of `src` as another series and instance of the same study (the "enhanced" series).
fn derived_copy(src: &Path, out: &Path) -> (String, String) {
    std::fs::copy(src, out).unwrap();
    let (series, sop) = ("1.2.826.0.1.3680043.10.1.77.1".to_string(), "1.2.826.0.1.3680043.10.1.77.1.1".to_string());
    let o = dcmtk("dcmodify")
        .args(["-nb", "-m", &format!("(0020,000E)={series}"), "-m", &format!("(0008,0018)={sop}")])
        .args(["-i", "(0008,103E)=AI enhanced"])
        .arg(out)
        .output()
        .unwrap();
    assert!(o.status.success(), "dcmodify: {}", String::from_utf8_lossy(&o.stderr));
    (series, sop)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_login_worklist_viewer_report() {
    let (chromium, driver) = (which("chromium"), which("chromedriver"));
    let (Some(chromium), Some(driver)) = (chromium, driver) else {
        panic!("chromium and chromedriver are required (scripts/test.sh installs chromium and chromium-driver)");
    };
    let t = tempfile::tempdir().unwrap();
    let data = t.path().join("data");
    // The first administrator's one-time password is printed once, by init.
    let init = lucent_in(&data, &["init"]);
    let out = String::from_utf8_lossy(&init.stdout).into_owned();
    let otp = out
        .lines()
        .find_map(|l| l.trim().strip_prefix("one-time password:"))
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|| panic!("init prints the one-time password: {out}"));
    let server = Server::start(&data, &[("web.worklist_refresh_seconds", "1")]);
    let base = format!("http://127.0.0.1:{}", server.http_port);

    // A CT arrives from a modality, with an "enhanced" derived series and an AI finding.
    let ct = shared().join("dicom/pydicom/CT_small.dcm");
    let enhanced = t.path().join("enhanced.dcm");
    let (enh_series, _) = derived_copy(&ct, &enhanced);
    let run = storescu(server.dicom_port, &[], &[ct.clone(), enhanced]);
    assert_eq!(run.successes, 2, "storescu: {}", run.output);
    let obj = lucent::preprocess::open(&ct).unwrap();
    let attr = |tag| obj.element(tag).unwrap().to_str().unwrap().trim_end_matches('\0').trim().to_string();
    let (study, series, sop) =
        (attr(tags::STUDY_INSTANCE_UID), attr(tags::SERIES_INSTANCE_UID), attr(tags::SOP_INSTANCE_UID));
    let db = lucent::store::Db::open(&data).unwrap();
    assert!(db.link_derived(&series, &enh_series, "enhanced").unwrap());
    let grid: Vec<u8> = (0..64u32 * 64).map(|i| if (i % 64) > 32 { 255 } else { 0 }).collect();
    db.add_finding(
        &study,
        &lucent::store::db::NewFinding {
            sop_uid: sop.clone(),
            model_name: "classifier".into(),
            model_version: "1.0.0".into(),
            label: "pneumonia".into(),
            probability: 0.81,
            threshold: 0.37,
            saliency_w: 64,
            saliency_h: 64,
            saliency: Some(grid),
        },
    )
    .unwrap();

    let port = free_port();
    let _driver = Driver(
        Command::new(driver).arg(format!("--port={port}")).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "chromedriver did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": chromium,
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1366,900"]
        }),
    );
    let c = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{port}"))
        .await
        .expect("WebDriver session");

    // 1. The first admin signs in with the one-time password and must change it.
    sign_in(&c, &base, "admin", &otp).await;
    change_password(&c, &otp, "night shift passphrase 2026").await;
    // 2. The admin adds a radiologist, who gets a one-time password shown once.
    c.goto(&format!("{base}/admin/users")).await.unwrap();
    fill(&c, "new-user-name", "dr.grey").await;
    el(&c, Locator::Id("new-user-role")).await.select_by_value("radiologist").await.unwrap();
    click(&c, "form[action='/admin/users'] button").await;
    let rad_otp = el(&c, Locator::Id("one-time")).await.text().await.unwrap();
    shot(&c, "1-users").await;
    click(&c, "form[action='/logout'] button").await;
    // 3. The radiologist signs in, changes the one-time password, and sees the study.
    sign_in(&c, &base, "dr.grey", &rad_otp).await;
    change_password(&c, &rad_otp, "reading room passphrase").await;
    wait_for("the study in the worklist", async || {
        c.find(Locator::Css(&format!("tr[data-study='{study}']"))).await.is_ok()
    })
    .await;
    shot(&c, "2-worklist").await;
    // Live refresh: a study that arrives now appears without a page load.
    js(&c, "window.lucentMarker = 42; return 0;").await;
    let mr = shared().join("dicom/pydicom/MR_small.dcm");
    assert_eq!(storescu(server.dicom_port, &[], std::slice::from_ref(&mr)).successes, 1);
    let mr_study = lucent::preprocess::open(&mr)
        .unwrap()
        .element(tags::STUDY_INSTANCE_UID)
        .unwrap()
        .to_str()
        .unwrap()
        .trim_end_matches('\0')
        .to_string();
    wait_for("the new study to appear by itself", async || {
        c.find(Locator::Css(&format!("tr[data-study='{mr_study}']"))).await.is_ok()
    })
    .await;
    assert_eq!(js(&c, "return window.lucentMarker || 0;").await, json!(42), "no reload happened");
    // 4. The study page draws the image: the canvas is not blank.
    el(&c, Locator::Css(&format!("tr[data-study='{study}'] a"))).await.click().await.unwrap();
    wait_for("the first rendering", async || canvas(&c).await.0 > 0).await;
    let (renders, before, nonzero) = canvas(&c).await;
    assert!(nonzero > 1000, "the canvas shows the image ({nonzero} non-black pixels)");
    shot(&c, "3-viewer").await;
    // 5. Dragging changes window/level, and the pixels change.
    let canvas_el = el(&c, Locator::Id("canvas")).await;
    let drag = MouseActions::new("mouse".into())
        .then(PointerAction::MoveToElement { element: canvas_el.clone(), duration: None, x: 0.0, y: 0.0 })
        .then(PointerAction::Down { button: MOUSE_BUTTON_LEFT })
        .then(PointerAction::MoveBy { duration: Some(Duration::from_millis(300)), x: -120.0, y: 90.0 })
        .then(PointerAction::Up { button: MOUSE_BUTTON_LEFT });
    c.perform_actions(drag).await.unwrap();
    wait_for("a re-rendering after the drag", async || canvas(&c).await.0 > renders).await;
    let (renders, after, _) = canvas(&c).await;
    assert_ne!(before, after, "window/level changed the pixels");
    let wl = el(&c, Locator::Id("wl-readout")).await.text().await.unwrap();
    assert!(wl.starts_with("W "), "{wl}");
    shot(&c, "4-window-level").await;
    // 6. The enhanced view is present: toggling it shows the AI banner and redraws.
    click(&c, "#enhanced-toggle").await;
    wait_for("the enhanced view", async || canvas(&c).await.0 > renders).await;
    let banner = el(&c, Locator::Id("enhanced-banner")).await;
    assert!(banner.is_displayed().await.unwrap(), "the AI-enhanced banner shows");
    assert_eq!(js(&c, "return window.lucentViewer.enhanced").await, json!(true));
    // The saliency overlay changes the pixels.
    let (renders, plain, _) = canvas(&c).await;
    click(&c, "#saliency-toggle").await;
    wait_for("the saliency overlay", async || canvas(&c).await.0 > renders).await;
    assert_ne!(canvas(&c).await.1, plain, "the heatmap is drawn over the image");
    shot(&c, "5-enhanced-saliency").await;
    // The findings panel labels the AI output.
    let findings = el(&c, Locator::Id("findings")).await.text().await.unwrap();
    assert!(findings.contains("AI-generated — verify") && findings.contains("pneumonia: likely"), "{findings}");
    // 7. Write and sign the report; it is read-only afterwards.
    fill(&c, "report-body", "FINDINGS: Normal CT slice.\nIMPRESSION: No acute abnormality.").await;
    click(&c, "#save-draft").await;
    wait_for("the saved draft", async || c.find(Locator::Id("sign")).await.is_ok()).await;
    click(&c, "#sign-confirm").await;
    click(&c, "#sign").await;
    wait_for("the signed report", async || c.find(Locator::Id("report-signed")).await.is_ok()).await;
    let signed = el(&c, Locator::Id("report-signed")).await.text().await.unwrap();
    assert!(signed.contains("No acute abnormality"), "{signed}");
    assert!(c.find(Locator::Id("report-body")).await.is_err(), "no editor for a signed report");
    let by = el(&c, Locator::Id("signed-by")).await.text().await.unwrap();
    assert!(by.contains("signed by dr.grey"), "{by}");
    shot(&c, "6-signed").await;
    // 8. Frames of a multi-frame image: the arrow keys step through them.
    let dose = shared().join("dicom/pydicom/rtdose.dcm");
    assert_eq!(storescu(server.dicom_port, &[], std::slice::from_ref(&dose)).successes, 1);
    let dose_obj = lucent::preprocess::open(&dose).unwrap();
    let dose_study =
        dose_obj.element(tags::STUDY_INSTANCE_UID).unwrap().to_str().unwrap().trim_end_matches('\0').to_string();
    let frames = dose_obj.element(tags::NUMBER_OF_FRAMES).unwrap().to_int::<u32>().unwrap();
    c.goto(&format!("{base}/studies/{dose_study}")).await.unwrap();
    wait_for("the dose rendering", async || canvas(&c).await.0 > 0).await;
    let readout = el(&c, Locator::Id("slice-readout")).await;
    assert!(
        readout.text().await.unwrap().contains(&format!("image 1 of {frames}")),
        "{}",
        readout.text().await.unwrap()
    );
    let (renders, first, _) = canvas(&c).await;
    el(&c, Locator::Id("canvas")).await.send_keys("\u{E015}\u{E015}").await.unwrap();
    wait_for("frame 3", async || {
        el(&c, Locator::Id("slice-readout")).await.text().await.unwrap().contains(&format!("image 3 of {frames}"))
    })
    .await;
    wait_for("the frame's rendering", async || canvas(&c).await.0 > renders + 1).await;
    assert_ne!(canvas(&c).await.1, first, "another frame shows other pixels");
    shot(&c, "7-frames").await;
    c.close().await.unwrap();
    assert!(server.stop());
}
