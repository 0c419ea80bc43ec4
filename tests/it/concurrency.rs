//! Several associations at once.

use crate::support::*;
use crate::synth;

#[test]
fn four_concurrent_associations_of_250_instances_store_all_1000() {
    let tmp = tempfile::tempdir().unwrap();
    let files = synth::write_ct_series(
        &tmp.path().join("in"),
        &synth::Spec { patients: 4, per_patient: 250, size: 64, run: 21 },
    );
    let server = Server::start(&tmp.path().join("data"), &[]);
    let port = server.dicom_port;
    let runs: Vec<StoreRun> = std::thread::scope(|s| {
        let handles: Vec<_> = files.chunks(250).map(|chunk| s.spawn(move || storescu(port, &["-xe"], chunk))).collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for r in &runs {
        assert_eq!((r.successes, r.failures), (250, 0), "{}", r.output);
    }
    let s = server.stats();
    assert_eq!(s["instances"], 1000, "{s}");
    assert_eq!((s["patients"].as_u64(), s["studies"].as_u64(), s["series"].as_u64()), (Some(4), Some(4), Some(4)));
    let (on_disk, tmp_left) = files_on_disk(&server.dir);
    assert_eq!(on_disk.len(), 1000);
    assert!(tmp_left.is_empty());
    assert!(
        server.log_text().matches("instances=250").count() == 4,
        "one log line per association:\n{}",
        server.log_text()
    );
}
