//! Round trip against dcmtk: echoscu, storescu of the whole shared corpus, export, duplicates.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use dicom_dictionary_std::tags;
use dicom_object::open_file;

use crate::support::*;
use crate::synth;

/// The raw bytes of a file's Pixel Data: native bytes, or offset table plus fragments.
fn pixel_bytes(path: &Path) -> Option<Vec<u8>> {
    let obj = open_file(path).ok()?;
    let e = obj.element_opt(tags::PIXEL_DATA).ok()??;
    Some(match e.value() {
        dicom_core::DicomValue::Primitive(p) => p.to_bytes().into_owned(),
        dicom_core::DicomValue::PixelSequence(seq) => {
            let mut v: Vec<u8> = seq.offset_table().iter().flat_map(|o| o.to_le_bytes()).collect();
            for f in seq.fragments() {
                v.extend_from_slice(f);
            }
            v
        }
        dicom_core::DicomValue::Sequence(_) => return None,
    })
}

fn sop_uid(path: &Path) -> String {
    let obj = open_file(path).unwrap();
    obj.element(tags::SOP_INSTANCE_UID).unwrap().to_str().unwrap().trim_end_matches('\0').to_string()
}

/// A file is a valid Part 10 file when it has a file meta group and dcmtk reads it without
/// error (the corpus holds deliberately truncated and meta-less files).
fn valid_part10(path: &Path) -> Option<String> {
    let (ts, _) = part10(path)?;
    let out = dcmtk("dcmdump").args(["-q", "+E"]).arg(path).output().unwrap();
    let errs = String::from_utf8_lossy(&out.stderr);
    (out.status.success() && !errs.contains("E:")).then_some(ts)
}

/// Whether the data set holds the Type 1 identifiers every stored instance needs: SOP Class,
/// SOP Instance, Study Instance and Series Instance UIDs. A few test files lack the study and
/// series UIDs; like other PACS, Lucent refuses those (0xC000) rather than invent UIDs.
fn has_identifiers(path: &Path) -> bool {
    // dcmtk is the judge here (dicom-rs cannot read every file dcmtk can); top-level elements
    // are the unindented lines of its dump.
    let out = dcmtk("dcmdump").arg("-q").arg(path).output().unwrap();
    let dump = String::from_utf8_lossy(&out.stdout);
    ["(0008,0016) UI", "(0008,0018) UI", "(0020,000d) UI", "(0020,000e) UI"]
        .iter()
        .all(|tag| dump.lines().any(|l| l.starts_with(tag) && !l.contains("(no value available)")))
}

#[test]
fn every_valid_corpus_file_round_trips_through_storescu_and_export() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let server = Server::start(&dir, &[]);
    assert!(server.echo(), "echoscu failed: {}", server.log_text());

    let mut corpus: Vec<PathBuf> = walkdir::WalkDir::new(shared().join("dicom"))
        .into_iter()
        .filter_map(Result::ok)
        .map(|e| e.into_path())
        .filter(|p| p.extension().is_some_and(|e| e == "dcm"))
        .collect();
    corpus.sort();
    // First file sent for each SOP Instance UID: later ones are duplicates and kept out.
    let mut first: BTreeMap<String, PathBuf> = BTreeMap::new();
    let mut invalid = Vec::new();
    let mut refused = Vec::new();
    let mut sent = 0;
    for f in &corpus {
        let Some(ts) = valid_part10(f) else {
            invalid.push(f.clone());
            continue;
        };
        let run = storescu(server.dicom_port, &["-R", storescu_flag(&ts)], std::slice::from_ref(f));
        if !has_identifiers(f) {
            let refusal = "Received Store Response (Error: CannotUnderstand)";
            // storescu itself will not send a file without SOP UIDs; the rest we refuse.
            let unsendable =
                run.output.contains("No SOP Class or Instance UID") || run.output.contains("missing SOP class");
            assert!(
                run.successes == 0 && (unsendable || run.output.contains(refusal)),
                "{}:\n{}",
                f.display(),
                run.output
            );
            refused.push(f.file_name().unwrap().to_owned());
            continue;
        }
        assert_eq!((run.successes, run.failures), (1, 0), "{}:\n{}\n{}", f.display(), run.output, server.log_text());
        first.entry(sop_uid(f)).or_insert_with(|| f.clone());
        sent += 1;
    }
    // 72 files stored, with 46 distinct SOP Instance UIDs (the corpus re-encodes images).
    assert!(sent >= 70 && first.len() >= 45, "only {sent} files ({} distinct) stored", first.len());
    // The invalid ones are the truncated and meta-less files, not something we failed to read.
    assert!(invalid.len() <= 12, "too many files judged invalid: {invalid:?}");
    assert!(refused.len() <= 12, "refused: {refused:?}");

    let stats = server.stats();
    assert_eq!(stats["instances"], first.len() as u64, "{stats}");
    assert!(stats["bytes"].as_u64().unwrap() > 1_000_000);

    let out = tmp.path().join("export");
    let exp = lucent_in(&dir, &["export", "--out", out.to_str().unwrap()]);
    assert!(exp.status.success(), "{}", String::from_utf8_lossy(&exp.stderr));
    for (uid, original) in &first {
        let exported = out.join(format!("{uid}.dcm"));
        assert!(exported.exists(), "{uid} ({}) not exported", original.display());
        assert_eq!(pixel_bytes(&exported), pixel_bytes(original), "pixel data differs for {}", original.display());
        let (ts_a, _) = part10(original).unwrap();
        let (ts_b, _) = part10(&exported).unwrap();
        assert_eq!(ts_a, ts_b, "{} stored in another transfer syntax", original.display());
    }
    assert_eq!(std::fs::read_dir(&out).unwrap().count(), first.len());
    assert!(server.echo());
    assert!(server.stop(), "serve did not exit cleanly");
}

#[test]
fn a_study_sent_twice_is_stored_once() {
    let tmp = tempfile::tempdir().unwrap();
    let files =
        synth::write_ct_series(&tmp.path().join("in"), &synth::Spec { patients: 1, per_patient: 5, size: 32, run: 11 });
    let server = Server::start(&tmp.path().join("data"), &[]);
    for _ in 0..2 {
        let run = storescu(server.dicom_port, &["-xe"], &files);
        assert_eq!((run.successes, run.failures), (5, 0), "{}", run.output);
    }
    let s = server.stats();
    assert_eq!(
        (s["patients"].as_u64(), s["studies"].as_u64(), s["series"].as_u64(), s["instances"].as_u64()),
        (Some(1), Some(1), Some(1), Some(5))
    );
    let (on_disk, tmp_left) = files_on_disk(&server.dir);
    assert_eq!(on_disk.len(), 5);
    assert!(tmp_left.is_empty());
    let bytes: u64 = on_disk.iter().map(|p| std::fs::metadata(p).unwrap().len()).sum();
    assert_eq!(s["bytes"].as_u64(), Some(bytes));
}
