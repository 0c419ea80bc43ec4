//! SIGKILL while four associations push: nothing acknowledged may be lost, nothing partial kept.

use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::support::*;
use crate::synth;

#[test]
fn sigkill_during_ingest_loses_nothing_acknowledged() {
    let tmp = tempfile::tempdir().unwrap();
    let files = synth::write_ct_series(
        &tmp.path().join("in"),
        &synth::Spec { patients: 4, per_patient: 250, size: 128, run: 31 },
    );
    let dir = tmp.path().join("data");
    let server = Server::start(&dir, &[]);

    let pushes: Vec<_> = files
        .chunks(250)
        .map(|chunk| {
            dcmtk("storescu")
                .args(["-v", "-nh", "-to", "10", "-ta", "10", "-td", "10", "-xe", "-aec", "LUCENT", "127.0.0.1"])
                .arg(server.dicom_port.to_string())
                .args(chunk)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    // Kill mid-stream: once some instances are indexed (`stats` works while serving).
    let deadline = Instant::now() + Duration::from_secs(60);
    while server.stats()["instances"].as_u64().unwrap() < 150 {
        assert!(Instant::now() < deadline, "ingest did not progress: {}", server.log_text());
        std::thread::sleep(Duration::from_millis(20));
    }
    server.kill9();

    // storescu sends files in command-line order and waits for each response, so its first
    // k success lines are the first k files of its chunk.
    let mut acknowledged = Vec::new();
    for (child, chunk) in pushes.into_iter().zip(files.chunks(250)) {
        let run = parse_storescu(&child.wait_with_output().unwrap());
        assert!(run.successes < 250, "the kill came too late to test anything");
        acknowledged.extend_from_slice(&chunk[..run.successes]);
    }
    assert!(acknowledged.len() >= 150);

    let server = Server::restart(&dir);
    let out = tmp.path().join("export");
    assert!(lucent_in(&dir, &["export", "--out", out.to_str().unwrap()]).status.success());
    for f in &acknowledged {
        let (_, original) = part10(f).unwrap();
        let uid = {
            let obj = dicom_object::open_file(f).unwrap();
            obj.element(dicom_dictionary_std::tags::SOP_INSTANCE_UID)
                .unwrap()
                .to_str()
                .unwrap()
                .trim_end_matches('\0')
                .to_string()
        };
        let exported = part10(&out.join(format!("{uid}.dcm"))).unwrap_or_else(|| panic!("acknowledged {uid} lost"));
        assert!(exported.1 == original, "acknowledged {uid} is not byte-identical");
    }

    // No partial file left or indexed, and the index agrees with the files on disk.
    let (on_disk, tmp_left) = files_on_disk(&dir);
    assert!(tmp_left.is_empty(), "partial files left: {tmp_left:?}");
    let s = server.stats();
    assert_eq!(s["instances"].as_u64().unwrap() as usize, on_disk.len(), "{s}");
    let bytes: u64 = on_disk.iter().map(|p| std::fs::metadata(p).unwrap().len()).sum();
    assert_eq!(s["bytes"].as_u64(), Some(bytes));
    for p in &on_disk {
        assert!(
            part10(p)
                .is_some_and(|(_, ds)| lucent::dicom::instance::prepare(ds, "1.2.840.10008.1.2.1", None, "").is_ok()),
            "{} is not a whole instance",
            p.display()
        );
    }
    assert!(server.log_text().contains("recovery done"), "{}", server.log_text());
    assert!(server.stop());
}
