//! Pixel decoding against the shared corpus: every file decodes or says why, lossless
//! encodings of one image agree exactly, and `lucent dicom decode` agrees with pydicom
//! (with the pylibjpeg codecs) file by file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use lucent::preprocess::{self, PixelError};

use crate::support::{lucent, shared};

/// Every .dcm file of the corpus (pydicom's and deid's), sorted.
pub fn corpus() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = walkdir::WalkDir::new(shared().join("dicom"))
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file() && e.path().extension().is_some_and(|x| x == "dcm"))
        .map(|e| e.into_path())
        .collect();
    files.sort();
    assert!(files.len() >= 85, "corpus not found under {}", shared().display());
    files
}

fn name(p: &Path) -> String {
    p.file_name().unwrap().to_string_lossy().into_owned()
}

/// Files with pixel data that Lucent cannot decode, and the reason its error must give.
const EXPECTED_FAILURES: &[(&str, &str)] = &[
    // Part 10 files without the preamble and file meta group: not DICOM files Lucent accepts.
    ("ExplVR_BigEndNoMeta.dcm", "not a DICOM Part 10 file"),
    ("ExplVR_LitEndNoMeta.dcm", "not a DICOM Part 10 file"),
    ("no_meta.dcm", "not a DICOM Part 10 file"),
    // The pixel data stops short of Rows × Columns × Bits Allocated.
    ("MR_truncated.dcm", "truncated"),
    // Its meta says Explicit VR Little Endian but the data set is implicit VR (pydicom guesses;
    // dicom-rs does not).
    ("SC_rgb_jpeg.dcm", "cannot parse the data set"),
    // A two-byte Pixel Data element and no image attributes: not an image.
    ("nested_priv_SQ.dcm", "missing Rows"),
    // Four bytes of the JPEG 2000 code stream were overwritten with a sequence delimiter.
    ("JPEG2000-embedded-sequence-delimiter.dcm", "cannot decode the compressed pixel data"),
];

/// Files whose data set Lucent cannot parse at all (truncated in the middle of an element or
/// missing its file meta); they carry no decodable pixel data.
const UNPARSEABLE: &[&str] = &[
    "rtplan_truncated.dcm",
    "meta_missing_tsyntax.dcm",
    "no_meta_group_length.dcm",
    "rtstruct.dcm",
    "UN_sequence.dcm",
];

/// Files where Lucent and pydicom knowingly disagree, and why.
/// (None left: SC_jpeg_no_color_transform.dcm, an RGB-labelled JPEG without JFIF/Adobe
/// markers, is now decoded as coded, like pydicom and dcmtk do.)
const KNOWN_DIFFERENCES: &[(&str, &str)] = &[];

fn decode_file(path: &Path) -> Result<Option<preprocess::Pixels>, PixelError> {
    let bytes = std::fs::read(path).unwrap();
    let obj = preprocess::parse(&bytes)?;
    match preprocess::decode(&obj, None) {
        Err(PixelError::NoPixelData) => Ok(None),
        other => other.map(Some),
    }
}

#[test]
fn corpus_decodes_or_says_why() {
    let mut decoded = 0;
    let mut report = Vec::new();
    for path in corpus() {
        let n = name(&path);
        let expected = EXPECTED_FAILURES.iter().find(|(f, _)| *f == n).map(|(_, why)| *why);
        match (decode_file(&path), expected) {
            (Ok(Some(px)), None) => {
                let want = px.frames as usize * px.frame_len();
                assert_eq!(px.samples.len(), want, "{n}: sample count");
                decoded += 1;
            }
            (Ok(None), None) => {}
            (Ok(_), Some(why)) => report.push(format!("{n}: decoded, but it was expected to fail with {why:?}")),
            (Err(e), Some(why)) => {
                if !e.to_string().to_lowercase().contains(&why.to_lowercase()) {
                    report.push(format!("{n}: error {e} does not say {why:?}"))
                }
            }
            (Err(e), None) if UNPARSEABLE.contains(&n.as_str()) => {
                if !matches!(e, PixelError::Parse(_) | PixelError::NotPart10) {
                    report.push(format!("{n}: expected a parse error, got {e}"))
                }
            }
            (Err(e), None) => report.push(format!("{n}: {e}")),
        }
    }
    assert!(report.is_empty(), "unexpected failures:\n{}", report.join("\n"));
    assert!(decoded >= 60, "only {decoded} files decoded");
}

/// Groups of files holding the same pixels in different lossless encodings.
const SAME_PIXELS: &[&[&str]] = &[
    &[
        "MR_small.dcm",
        "MR_small_RLE.dcm",
        "MR_small_jp2klossless.dcm",
        "MR_small_jpeg_ls_lossless.dcm",
        "MR_small_implicit.dcm",
        "MR_small_bigendian.dcm",
        "MR_small_expb.dcm",
        "MR_small_padded.dcm",
    ],
    &["rtdose.dcm", "rtdose_expb.dcm", "rtdose_rle.dcm"],
    &["rtdose_1frame.dcm", "rtdose_expb_1frame.dcm", "rtdose_rle_1frame.dcm"],
    &["liver_1frame.dcm", "liver_expb_1frame.dcm"],
    &["SC_rgb_small_odd.dcm", "SC_rgb_small_odd_big_endian.dcm"],
    // The same 12-bit JPEG stream; JPEG-lossy's scan header has Se = 0, which Lucent corrects
    // (libjpeg-turbo, and pydicom's libjpeg, refuse it as it stands).
    &["JPGExtended.dcm", "JPEG-lossy.dcm"],
];

/// (single-frame file, two-frame file whose first frame holds the same pixels).
const FIRST_FRAME_OF: &[(&str, &str)] = &[
    ("SC_rgb_rle.dcm", "SC_rgb_rle_2frame.dcm"),
    ("SC_rgb_rle_16bit.dcm", "SC_rgb_rle_16bit_2frame.dcm"),
    ("SC_rgb_rle_32bit.dcm", "SC_rgb_rle_32bit_2frame.dcm"),
    ("rtdose_1frame.dcm", "rtdose.dcm"),
    ("rtdose_rle_1frame.dcm", "rtdose_rle.dcm"),
];

#[test]
fn lossless_encodings_decode_identically() {
    let dir = shared().join("dicom/pydicom");
    for (one, two) in FIRST_FRAME_OF {
        let single = decode_file(&dir.join(one)).unwrap().unwrap();
        let obj = preprocess::open(&dir.join(two)).unwrap();
        let first = preprocess::decode(&obj, Some(0)).unwrap();
        assert_eq!(first.frames, 1);
        assert!(first.samples == single.samples, "frame 1 of {two} differs from {one}");
    }
    for group in SAME_PIXELS {
        let reference = decode_file(&dir.join(group[0])).unwrap().unwrap();
        for other in &group[1..] {
            let px = decode_file(&dir.join(other)).unwrap_or_else(|e| panic!("{other}: {e}")).unwrap();
            assert_eq!(
                (px.frames, px.rows, px.columns, px.samples_per_pixel),
                (reference.frames, reference.rows, reference.columns, reference.samples_per_pixel),
                "{other} vs {}: shape",
                group[0]
            );
            assert!(px.samples == reference.samples, "{other} decodes differently from {}", group[0]);
        }
    }
}

/// Transfer syntaxes whose pixels may differ between decoders, and the tolerance allowed:
/// the largest absolute difference, as a fraction of the stored range (2^BitsStored), and the
/// mean absolute difference in stored units.
fn lossy_tolerance(ts: &str) -> Option<(f64, f64)> {
    match ts {
        // JPEG baseline/extended: IDCT implementations differ (libjpeg vs jpeg-decoder).
        "1.2.840.10008.1.2.4.50" | "1.2.840.10008.1.2.4.51" => Some((0.02, 1.0)),
        // JPEG 2000 (lossy) and JPEG-LS near-lossless are decoded exactly by both; allow rounding.
        "1.2.840.10008.1.2.4.91" | "1.2.840.10008.1.2.4.81" => Some((0.01, 0.5)),
        _ => None,
    }
}

fn read_npy(path: &Path) -> (Vec<u64>, String, Vec<i64>) {
    let bytes = std::fs::read(path).unwrap();
    let npy = npyz::NpyFile::new(&bytes[..]).unwrap();
    let shape = npy.shape().to_vec();
    let dtype = match npy.dtype() {
        npyz::DType::Plain(t) => t.to_string(),
        other => format!("{other:?}"),
    };
    let t = dtype.trim_start_matches(['<', '|', '=']).to_string();
    let data: Vec<i64> = match t.as_str() {
        "u1" => npy.into_vec::<u8>().unwrap().into_iter().map(i64::from).collect(),
        "i1" => npy.into_vec::<i8>().unwrap().into_iter().map(i64::from).collect(),
        "u2" => npy.into_vec::<u16>().unwrap().into_iter().map(i64::from).collect(),
        "i2" => npy.into_vec::<i16>().unwrap().into_iter().map(i64::from).collect(),
        "u4" => npy.into_vec::<u32>().unwrap().into_iter().map(i64::from).collect(),
        "i4" => npy.into_vec::<i32>().unwrap().into_iter().map(i64::from).collect(),
        "u8" => npy.into_vec::<u64>().unwrap().into_iter().map(|v| v as i64).collect(),
        "i8" => npy.into_vec::<i64>().unwrap(),
        other => panic!("{}: unexpected dtype {other}", path.display()),
    };
    (shape, t, data)
}

/// pydicom's reference for every corpus file: index → .npy path or error text.
fn pydicom_reference(python: &str, files: &[PathBuf], out: &Path) -> BTreeMap<usize, Result<PathBuf, String>> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/pydicom_reference.py");
    let st = std::process::Command::new(python).arg(script).arg(out).args(files).status().unwrap();
    assert!(st.success(), "pydicom_reference.py failed");
    (0..files.len())
        .map(|i| {
            let npy = out.join(format!("{i}.npy"));
            let r = if npy.exists() {
                Ok(npy)
            } else {
                Err(std::fs::read_to_string(out.join(format!("{i}.err"))).unwrap_or_else(|_| "no output".into()))
            };
            (i, r)
        })
        .collect()
}

#[test]
fn decode_matches_pydicom() {
    let Ok(python) = std::env::var("LUCENT_PYTHON") else {
        eprintln!("SKIPPED decode_matches_pydicom: LUCENT_PYTHON is not set (scripts/test.sh sets it)");
        return;
    };
    let ok = std::process::Command::new(&python)
        .args(["-c", "import pydicom, pylibjpeg, libjpeg, openjpeg, rle"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "LUCENT_PYTHON={python} cannot import pydicom and the pylibjpeg codecs");
    let tmp = tempfile::tempdir().unwrap();
    let files = corpus();
    let reference = pydicom_reference(&python, &files, &tmp.path().join("ref"));
    let mut compared = 0;
    let mut failures = Vec::new();
    let mut notes = Vec::new();
    for (i, path) in files.iter().enumerate() {
        let n = name(path);
        let Ok(ref_npy) = &reference[&i] else { continue };
        let ours = tmp.path().join(format!("{i}.lucent.npy"));
        let out = lucent().args(["dicom", "decode"]).arg(path).arg("--out").arg(&ours).output().unwrap();
        if !out.status.success() {
            let why = String::from_utf8_lossy(&out.stderr);
            if EXPECTED_FAILURES.iter().any(|(f, _)| *f == n) {
                notes.push(format!("{n}: pydicom decodes it, Lucent refuses: {}", why.trim()));
                continue;
            }
            failures.push(format!("{n}: lucent dicom decode failed: {why}"));
            continue;
        }
        if let Some((_, why)) = KNOWN_DIFFERENCES.iter().find(|(f, _)| *f == n) {
            notes.push(format!("{n}: known difference, not compared: {why}"));
            continue;
        }
        let (s1, t1, a) = read_npy(&ours);
        let (s2, _t2, b) = read_npy(ref_npy);
        if s1 != s2 {
            failures.push(format!("{n}: shape {s1:?} vs pydicom {s2:?}"));
            continue;
        }
        let obj = preprocess::open(path).unwrap();
        let ts = obj.meta().transfer_syntax().trim_end_matches('\0').to_string();
        let diffs: Vec<i64> = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).collect();
        let max = diffs.iter().copied().max().unwrap_or(0);
        let mean = diffs.iter().sum::<i64>() as f64 / diffs.len().max(1) as f64;
        match lossy_tolerance(&ts) {
            None if max != 0 => failures.push(format!("{n} ({ts}, lossless): max |diff| {max}, mean {mean:.3}")),
            Some((frac, mean_tol)) => {
                let bits = match t1.as_str() {
                    "u1" | "i1" => 8,
                    _ => 16,
                };
                let bs = lucent::preprocess::decode(&obj, Some(0)).map(|p| p.bits_stored).unwrap_or(bits);
                let allowed = ((1u64 << bs) as f64 * frac).max(2.0);
                if max as f64 > allowed || mean > mean_tol {
                    failures.push(format!(
                        "{n} ({ts}, lossy): max |diff| {max} > {allowed} or mean {mean:.3} > {mean_tol}"
                    ));
                } else if max > 0 {
                    notes.push(format!("{n} ({ts}, lossy): max |diff| {max}, mean {mean:.3}"));
                }
            }
            None => {}
        }
        compared += 1;
    }
    eprintln!("compared {compared} files with pydicom\n{}", notes.join("\n"));
    assert!(failures.is_empty(), "disagreements with pydicom:\n{}", failures.join("\n"));
    assert!(compared >= 55, "only {compared} files compared with pydicom");
}
