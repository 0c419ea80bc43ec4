//! Configured limits: disk watermark, association cap, AE allow-list; graceful shutdown.

use std::time::Duration;

use dicom_ul::ClientAssociationOptions;

use crate::support::*;
use crate::synth;

#[test]
fn below_the_disk_watermark_store_answers_out_of_resources_and_stores_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let files =
        synth::write_ct_series(&tmp.path().join("in"), &synth::Spec { patients: 1, per_patient: 3, size: 32, run: 41 });
    // A watermark far above the free space (100 TiB).
    let server = Server::start(&tmp.path().join("data"), &[]);
    let run_ok = storescu(server.dicom_port, &["-xe"], &files[..1]);
    assert_eq!(run_ok.successes, 1);
    assert!(server.stop());
    let dir = tmp.path().join("data");
    assert!(lucent_in(&dir, &["config", "set", "storage.min_free_mb", "104857600"]).status.success());
    let server = Server::restart_unhealthy_ok(&dir);
    let run = storescu(server.dicom_port, &["-xe"], &files[1..]);
    assert_eq!(run.successes, 0, "{}", run.output);
    assert_eq!(run.failures, 2, "{}", run.output);
    assert!(run.output.contains("Out of Resources") || run.output.contains("OutOfResources"), "{}", run.output);
    let s = server.stats();
    assert_eq!(s["instances"], 1);
    let (on_disk, tmp_left) = files_on_disk(&dir);
    assert_eq!((on_disk.len(), tmp_left.len()), (1, 0));
    let (code, body) = http_get(server.http_port, "/healthz").unwrap();
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("\"disk_below_watermark\":true"), "{body}");
    assert!(server.echo());
}

#[test]
fn above_the_association_limit_peers_are_rejected_transiently() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start(&tmp.path().join("data"), &[("dicom.max_associations", "1")]);
    let held = ClientAssociationOptions::new()
        .calling_ae_title("HOLDER")
        .called_ae_title("LUCENT")
        .with_abstract_syntax("1.2.840.10008.1.1")
        .establish(("127.0.0.1", server.dicom_port))
        .unwrap();
    let out = dcmtk("echoscu")
        .args(["-to", "5", "-aec", "LUCENT", "127.0.0.1", &server.dicom_port.to_string()])
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(!out.status.success());
    assert!(text.contains("Rejected Transient") && text.contains("Local Limit Exceeded"), "{text}");
    held.release().unwrap();
    std::thread::sleep(Duration::from_millis(100));
    assert!(server.echo());
}

#[test]
fn calling_and_called_ae_titles_are_checked() {
    let tmp = tempfile::tempdir().unwrap();
    let server =
        Server::start(&tmp.path().join("data"), &[("dicom.allowed_peers", "GOODAE@127.0.0.1, OTHER@10.1.2.3")]);
    let echo_text = |calling: &str, called: &str| {
        let out = dcmtk("echoscu")
            .args(["-to", "5", "-aet", calling, "-aec", called, "127.0.0.1", &server.dicom_port.to_string()])
            .output()
            .unwrap();
        (
            out.status.success(),
            format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)),
        )
    };
    assert!(echo_text("GOODAE", "LUCENT").0);
    let (ok, text) = echo_text("STRANGER", "LUCENT");
    assert!(!ok && text.contains("Calling AE Title Not Recognized"), "{text}");
    let (ok, text) = echo_text("OTHER", "LUCENT");
    assert!(!ok && text.contains("Calling AE Title Not Recognized"), "host rule ignored: {text}");
    let (ok, text) = echo_text("GOODAE", "SOMEONE");
    assert!(!ok && text.contains("Called AE Title Not Recognized"), "{text}");
}

#[test]
fn sigterm_shuts_down_cleanly() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let server = Server::start(&dir, &[]);
    assert!(dir.join("RUNNING").exists());
    let log = server.log.clone();
    assert!(server.stop(), "non-zero exit");
    assert!(!dir.join("RUNNING").exists(), "clean shutdown not recorded");
    assert!(std::fs::read_to_string(log).unwrap().contains("shut down cleanly"));
    // A clean restart does not run crash recovery.
    let server = Server::restart(&dir);
    assert!(!server.log_text().contains("recovery"));
}
