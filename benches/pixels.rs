//! Decode + render throughput (megapixels/s), Lucent against dcmtk on the same files in the
//! same run:
//! - a 512×512 16-bit CT (generated, Explicit VR Little Endian);
//! - the 2614×3072 DX radiograph ../shared/data/dicom/deid/animals/cat.dcm;
//! - a JPEG 2000 lossless image (pydicom's examples_jpeg2k.dcm, 640×480 RGB) — dcmtk cannot
//!   decode JPEG 2000, so there is no dcmtk figure for it;
//! - a JPEG baseline 512×512 CT (deid's humans/ctbrain1.dcm), against dcmj2pnm.
//!
//! Both sides run as whole processes (`lucent dicom render FILE --out X.png` against
//! `dcm2pnm +on FILE X.png`): read, parse, decode, modality LUT, default VOI, 8-bit, PNG write.
//! A second figure is Lucent in process (decode + render, no PNG, no process start).
//!
//! Run: `cargo bench --bench pixels` (needs dcmtk). The figure is the median of the runs.

#[path = "../tests/it/synth.rs"]
mod synth;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use lucent::preprocess::{self, RenderOptions};

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn time_runs(runs: usize, mut f: impl FnMut()) -> Duration {
    f(); // warm the page cache and the binary
    median(
        (0..runs)
            .map(|_| {
                let t = Instant::now();
                f();
                t.elapsed()
            })
            .collect(),
    )
}

fn run_ok(cmd: &mut Command) {
    let o = cmd.output().expect("cannot start");
    assert!(o.status.success(), "{cmd:?}: {}", String::from_utf8_lossy(&o.stderr));
}

fn mp_s(pixels: u64, d: Duration) -> f64 {
    pixels as f64 / 1e6 / d.as_secs_f64()
}

fn main() {
    let tmp = tempfile::tempdir().unwrap();
    let shared = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/dicom");
    let ct = synth::write_ct_series(
        &tmp.path().join("ct"),
        &synth::Spec { patients: 1, per_patient: 1, size: 512, run: 4242 },
    )
    .remove(0);
    let cases: Vec<(&str, PathBuf, Option<&str>)> = vec![
        ("CT 512x512 16-bit native", ct, Some("dcm2pnm")),
        ("DX 2614x3072 cat.dcm native", shared.join("deid/animals/cat.dcm"), Some("dcm2pnm")),
        ("JPEG 2000 lossless 640x480 RGB", shared.join("pydicom/examples_jpeg2k.dcm"), None),
        ("JPEG baseline 512x512 CT ctbrain1", shared.join("deid/humans/ctbrain1.dcm"), Some("dcmj2pnm")),
    ];
    let lucent = env!("CARGO_BIN_EXE_lucent");
    println!("command: cargo bench --bench pixels   (median of runs; whole processes, PNG output)");
    println!("{:<36} {:>8} {:>14} {:>14} {:>16}", "image", "MP", "lucent MP/s", "dcmtk MP/s", "lucent in-proc");
    for (label, file, tool) in cases {
        let obj = preprocess::open(&file).unwrap();
        let px = preprocess::decode(&obj, None).unwrap();
        let pixels = px.rows as u64 * px.columns as u64 * px.frames as u64;
        let runs = if pixels > 4_000_000 { 5 } else { 15 };
        let out = tmp.path().join("out.png");
        let ours = time_runs(runs, || {
            run_ok(Command::new(lucent).args(["dicom", "render"]).arg(&file).arg("--out").arg(&out));
        });
        let in_proc = time_runs(runs, || {
            let bytes = std::fs::read(&file).unwrap();
            let obj = preprocess::parse(&bytes).unwrap();
            let px = preprocess::decode(&obj, None).unwrap();
            for i in 0..px.frames {
                std::hint::black_box(preprocess::render_decoded(&obj, &px, i, &RenderOptions::default()).unwrap());
            }
        });
        // Lucent's CLI renders one frame; count one frame for the process figures.
        let frame_px = px.rows as u64 * px.columns as u64;
        let theirs = tool.map(|t| {
            let out = tmp.path().join("dcmtk.png");
            time_runs(runs, || run_ok(Command::new(t).arg("+on").arg(&file).arg(&out)))
        });
        println!(
            "{:<36} {:>8.2} {:>14.1} {:>14} {:>16.1}",
            label,
            frame_px as f64 / 1e6,
            mp_s(frame_px, ours),
            match theirs {
                Some(d) => format!("{:.1}", mp_s(frame_px, d)),
                None => "n/a (no J2K)".into(),
            },
            mp_s(pixels, in_proc),
        );
    }
    println!("dcmtk 3.6 (dcm2pnm/dcmj2pnm) has no JPEG 2000 decoder, so the JPEG 2000 row has no dcmtk figure.");
}
