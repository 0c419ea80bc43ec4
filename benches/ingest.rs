//! Ingest benchmark: 1000 CT instances (512×512, 16-bit, ~0.5 MB each; 10 patients × 100) pushed
//! to `lucent serve` (durability on: fsync, rename, directory fsync, index commit) by dcmtk's
//! storescu, first over one association, then over four in parallel. Prints instances/s and MB/s.
//!
//! Run: `cargo bench --bench ingest` (needs dcmtk; TCP_NODELAY=1 is set for storescu). It first
//! measures dcmtk's `storescp --ignore` (receives and discards) as the ceiling of the same path.

#[path = "../tests/it/support.rs"]
#[allow(dead_code)]
mod support;
#[path = "../tests/it/synth.rs"]
mod synth;

use std::time::Instant;

use support::{storescu, Server, StoreRun};

fn main() {
    let tmp = tempfile::tempdir().unwrap();
    // LUCENT_BENCH_DATA keeps the generated instances in a folder of your choice (for example to
    // push them with other tools); by default they live in a temporary folder.
    let input = std::env::var_os("LUCENT_BENCH_DATA").map(Into::into).unwrap_or_else(|| tmp.path().join("in"));
    let t = Instant::now();
    let files = synth::write_ct_series(&input, &synth::Spec { patients: 10, per_patient: 100, size: 512, run: 9000 });
    let bytes: u64 = files.iter().map(|f| std::fs::metadata(f).unwrap().len()).sum();
    println!(
        "generated {} instances, {:.1} MB, in {:.1} s",
        files.len(),
        bytes as f64 / 1e6,
        t.elapsed().as_secs_f64()
    );

    // Reference in the same run: dcmtk's storescp receiving and discarding (`--ignore`), the
    // ceiling that the network path and storescu itself allow on this machine.
    {
        let port = support::free_port();
        let mut scp = support::dcmtk("storescp")
            .args(["--ignore", "-aet", "LUCENT"])
            .arg(port.to_string())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("storescp (dcmtk) runs");
        std::thread::sleep(std::time::Duration::from_millis(300));
        let _ = std::process::Command::new("sync").status();
        let start = Instant::now();
        let run = storescu(port, &["-xe"], &files);
        let secs = start.elapsed().as_secs_f64();
        let _ = scp.kill();
        let _ = scp.wait();
        println!(
            "reference, storescp --ignore (stores nothing), 1 association: {} instances in {secs:.2} s = {:.0} instances/s",
            run.successes,
            run.successes as f64 / secs
        );
    }

    for associations in [1usize, 4] {
        let dir = tmp.path().join(format!("data-{associations}"));
        let server = Server::start(&dir, &[]);
        // Flush the generated input (and the previous run's files) first, so that their
        // write-back does not compete with the fsyncs being measured.
        let _ = std::process::Command::new("sync").status();
        let chunk = files.len().div_ceil(associations);
        let start = Instant::now();
        let runs: Vec<StoreRun> = std::thread::scope(|s| {
            let port = server.dicom_port;
            let handles: Vec<_> = files.chunks(chunk).map(|c| s.spawn(move || storescu(port, &["-xe"], c))).collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let secs = start.elapsed().as_secs_f64();
        let stored: usize = runs.iter().map(|r| r.successes).sum();
        assert_eq!(stored, files.len(), "not every instance was stored: {}", runs[0].output);
        assert_eq!(server.stats()["instances"], files.len() as u64);
        println!(
            "{associations} association(s): {} instances in {secs:.2} s = {:.0} instances/s, {:.1} MB/s",
            stored,
            stored as f64 / secs,
            bytes as f64 / 1e6 / secs
        );
        assert!(server.stop());
    }
}
