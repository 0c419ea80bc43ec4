//! Rendering (`lucent dicom render`), the rendered-frame HTTP endpoint, and bad pixel data.

use std::path::{Path, PathBuf};

use dicom_core::{DataElement, PrimitiveValue, VR};
use dicom_dictionary_std::tags;
use dicom_object::{meta::FileMetaTableBuilder, InMemDicomObject};

use lucent::preprocess::{self, PixelError, RenderOptions};

use crate::support::{dcmtk, http_get_bytes, lucent, lucent_in, shared, sign_in, Server};

const SC: &str = "1.2.840.10008.5.1.4.1.1.7";

/// A secondary-capture image with the given pixel attributes, written as a Part 10 file.
fn write_image(path: &Path, ts: &str, photometric: &str, rows: u16, cols: u16, spp: u16, planar: u16, px: Vec<u8>) {
    let text = |tag, vr, v: &str| DataElement::new(tag, vr, PrimitiveValue::from(v));
    let us = |tag, v: u16| DataElement::new(tag, VR::US, PrimitiveValue::from(v));
    let sop = format!("2.25.{}", 1000 + rows as u64 * 7919 + cols as u64 + spp as u64 * 13 + planar as u64);
    let mut obj = InMemDicomObject::from_element_iter([
        text(tags::SOP_CLASS_UID, VR::UI, SC),
        text(tags::SOP_INSTANCE_UID, VR::UI, &sop),
        text(tags::STUDY_INSTANCE_UID, VR::UI, "2.25.77.1"),
        text(tags::SERIES_INSTANCE_UID, VR::UI, "2.25.77.1.1"),
        text(tags::PATIENT_ID, VR::LO, "PIX"),
        text(tags::MODALITY, VR::CS, "OT"),
        us(tags::SAMPLES_PER_PIXEL, spp),
        text(tags::PHOTOMETRIC_INTERPRETATION, VR::CS, photometric),
        us(tags::ROWS, rows),
        us(tags::COLUMNS, cols),
        us(tags::BITS_ALLOCATED, 8),
        us(tags::BITS_STORED, 8),
        us(tags::HIGH_BIT, 7),
        us(tags::PIXEL_REPRESENTATION, 0),
        DataElement::new(tags::PIXEL_DATA, VR::OB, PrimitiveValue::U8(px.into())),
    ]);
    if spp == 3 {
        obj.put(us(tags::PLANAR_CONFIGURATION, planar));
    }
    obj.with_meta(
        FileMetaTableBuilder::new()
            .transfer_syntax(ts)
            .media_storage_sop_class_uid(SC)
            .media_storage_sop_instance_uid(&sop),
    )
    .unwrap()
    .write_to_file(path)
    .unwrap();
}

/// Decodes a PNG: (width, height, channels, bytes).
fn read_png(path: &Path) -> (u32, u32, usize, Vec<u8>) {
    read_png_bytes(&std::fs::read(path).unwrap())
}

fn read_png_bytes(bytes: &[u8]) -> (u32, u32, usize, Vec<u8>) {
    let dec = png::Decoder::new(std::io::Cursor::new(bytes));
    let mut r = dec.read_info().unwrap();
    let mut buf = vec![0; r.output_buffer_size().unwrap()];
    let info = r.next_frame(&mut buf).unwrap();
    buf.truncate(info.buffer_size());
    (info.width, info.height, info.color_type.samples(), buf)
}

fn render(file: &Path, extra: &[&str], out: &Path) {
    let o = lucent().args(["dicom", "render"]).arg(file).args(extra).arg("--out").arg(out).output().unwrap();
    assert!(o.status.success(), "render {}: {}", file.display(), String::from_utf8_lossy(&o.stderr));
}

#[test]
fn monochrome1_renders_inverted() {
    let t = tempfile::tempdir().unwrap();
    let ramp: Vec<u8> = (0..64u32).map(|i| (i * 4) as u8).collect();
    let (m1, m2) = (t.path().join("m1.dcm"), t.path().join("m2.dcm"));
    write_image(&m1, "1.2.840.10008.1.2.1", "MONOCHROME1", 8, 8, 1, 0, ramp.clone());
    write_image(&m2, "1.2.840.10008.1.2.1", "MONOCHROME2", 8, 8, 1, 0, ramp);
    render(&m1, &[], &t.path().join("m1.png"));
    render(&m2, &[], &t.path().join("m2.png"));
    let (_, _, _, a) = read_png(&t.path().join("m1.png"));
    let (_, _, _, b) = read_png(&t.path().join("m2.png"));
    // No window in the file: min..max maps to 0..255; MONOCHROME2 dark to bright, MONOCHROME1
    // the opposite.
    assert_eq!((b[0], b[63]), (0, 255));
    assert_eq!((a[0], a[63]), (255, 0));
    assert!(a.iter().zip(&b).all(|(x, y)| *x == 255 - *y), "MONOCHROME1 is not the inverse of MONOCHROME2");
}

#[test]
fn rgb_channels_in_order_for_both_planar_configurations() {
    let t = tempfile::tempdir().unwrap();
    // Pixels: red, green, blue, white.
    let interleaved = vec![255, 0, 0, 0, 255, 0, 0, 0, 255, 255, 255, 255];
    let planar = vec![255, 0, 0, 255, 0, 255, 0, 255, 0, 0, 255, 255];
    let expected = interleaved.clone();
    for (name, pc, data) in [("pc0", 0, interleaved), ("pc1", 1, planar)] {
        let f = t.path().join(format!("{name}.dcm"));
        write_image(&f, "1.2.840.10008.1.2.1", "RGB", 2, 2, 3, pc, data);
        let out = t.path().join(format!("{name}.png"));
        render(&f, &[], &out);
        let (w, h, c, px) = read_png(&out);
        assert_eq!((w, h, c), (2, 2, 3), "{name}");
        assert_eq!(px, expected, "{name}: channel order");
    }
    // A real RGB file: pydicom's US RGB example, compared channel by channel with dcmtk.
    let f = shared().join("dicom/pydicom/SC_rgb_rle.dcm");
    let ours = t.path().join("rgb.png");
    render(&f, &[], &ours);
    let theirs = t.path().join("rgb.ppm");
    let o = dcmtk("dcm2pnm").args(["+op"]).arg(&f).arg(&theirs).output().unwrap();
    assert!(o.status.success(), "dcm2pnm: {}", String::from_utf8_lossy(&o.stderr));
    let ppm = std::fs::read(&theirs).unwrap();
    let (w, h, c, px) = read_png(&ours);
    assert_eq!(c, 3);
    let body = &ppm[ppm.len() - (w * h * 3) as usize..];
    assert_eq!(px, body, "SC_rgb_rle.dcm: Lucent's RGB differs from dcmtk's");
}

/// Our rendering with `--window C,W` against dcmtk's `dcm2pnm +Ww C W` (the same LINEAR function
/// of PS3.3 C.11.2.1.2), and the window must change the output.
#[test]
fn window_argument_matches_dcmtk() {
    let t = tempfile::tempdir().unwrap();
    let f = shared().join("dicom/pydicom/CT_small.dcm");
    let mut previous: Option<Vec<u8>> = None;
    for (c, w) in [(40, 400), (-600, 1500), (300, 50)] {
        let ours = t.path().join(format!("w{c}.png"));
        render(&f, &["--window", &format!("{c},{w}")], &ours);
        let theirs = t.path().join(format!("w{c}.pgm"));
        let o = dcmtk("dcm2pnm")
            .args(["+op", "+Ww", &c.to_string(), &w.to_string()])
            .arg(&f)
            .arg(&theirs)
            .output()
            .unwrap();
        assert!(o.status.success(), "dcm2pnm: {}", String::from_utf8_lossy(&o.stderr));
        let (w_, h_, _, px) = read_png(&ours);
        let pgm = std::fs::read(&theirs).unwrap();
        let body = &pgm[pgm.len() - (w_ * h_) as usize..];
        let max = px.iter().zip(body).map(|(a, b)| (*a as i32 - *b as i32).abs()).max().unwrap();
        assert!(max <= 1, "window {c},{w}: differs from dcmtk by up to {max}");
        if let Some(p) = &previous {
            assert_ne!(p, &px, "window {c},{w} renders like the previous window");
        }
        previous = Some(px);
    }
}

#[test]
fn default_render_uses_the_files_window() {
    let t = tempfile::tempdir().unwrap();
    // MR_small.dcm has Window Center/Width in the file; the default render must equal an
    // explicit render with those values.
    let f = shared().join("dicom/pydicom/MR_small.dcm");
    let obj = preprocess::open(&f).unwrap();
    let pres = preprocess::Presentation::from_object(&obj, 0, true).unwrap();
    let w = pres.windows.first().copied().expect("MR_small.dcm has a window");
    render(&f, &[], &t.path().join("d.png"));
    render(&f, &["--window", &format!("{},{}", w.center, w.width)], &t.path().join("e.png"));
    assert_eq!(read_png(&t.path().join("d.png")).3, read_png(&t.path().join("e.png")).3);
}

#[test]
fn render_size_and_jpeg() {
    let t = tempfile::tempdir().unwrap();
    let f = shared().join("dicom/pydicom/MR_small.dcm");
    render(&f, &["--size", "32"], &t.path().join("s.png"));
    let (w, h, _, _) = read_png(&t.path().join("s.png"));
    assert_eq!((w, h), (32, 32));
    render(&f, &[], &t.path().join("s.jpg"));
    assert_eq!(&std::fs::read(t.path().join("s.jpg")).unwrap()[..2], &[0xFF, 0xD8]);
}

#[test]
fn undecodable_file_exits_nonzero_with_reason() {
    let t = tempfile::tempdir().unwrap();
    for (file, why) in [("MR_truncated.dcm", "truncated"), ("rtplan.dcm", "no pixel data")] {
        let o = lucent()
            .args(["dicom", "decode"])
            .arg(shared().join("dicom/pydicom").join(file))
            .arg("--out")
            .arg(t.path().join("x.npy"))
            .output()
            .unwrap();
        assert!(!o.status.success(), "{file} decoded");
        let err = String::from_utf8_lossy(&o.stderr).to_lowercase();
        assert!(err.contains(why), "{file}: {err}");
    }
    let o = lucent().args(["dicom", "render", "/nonexistent.dcm", "--out", "/tmp/x.png"]).output().unwrap();
    assert!(!o.status.success());
    let o = lucent().args(["dicom", "dump"]).arg(shared().join("dicom/pydicom/CT_small.dcm")).output().unwrap();
    assert!(o.status.success());
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("(0028,0010) US [128]") && text.contains("Rows"), "{text}");
    assert!(text.contains("(7FE0,0010)"), "dump lacks Pixel Data");
}

/// Truncations of compressed and native files and flipped bytes in their pixel data give an
/// error (or, for trailing cuts inside padding, a result), never a panic.
#[test]
fn truncated_and_corrupt_pixel_data_give_errors() {
    let dir = shared().join("dicom/pydicom");
    for file in [
        "MR_small_RLE.dcm",
        "MR_small_jp2klossless.dcm",
        // CharLS 2.4.5 spins on truncated JPEG-LS; decode refuses a stream without EOI first.
        "MR_small_jpeg_ls_lossless.dcm",
        "SC_rgb_jpeg_dcmtk.dcm",
        "examples_ybr_color.dcm",
        "MR_small.dcm",
        "SC_rgb_rle_32bit_2frame.dcm",
        "JPEG2000.dcm",
    ] {
        let bytes = std::fs::read(dir.join(file)).unwrap();
        let full = preprocess::decode(&preprocess::parse(&bytes).unwrap(), None).unwrap();
        let step = (bytes.len() / 41).max(1);
        let mut errors = 0;
        for cut in (132..bytes.len()).step_by(step) {
            let r = std::panic::catch_unwind(|| {
                let obj = preprocess::parse(&bytes[..cut])?;
                let px = preprocess::decode(&obj, None)?;
                // Render only when decoding succeeded (trailing cuts inside padding).
                preprocess::render_decoded(&obj, &px, 0, &RenderOptions::default()).map(|_| px)
            });
            match r {
                Err(_) => panic!("{file} cut at {cut}: panic"),
                Ok(Err(_)) => errors += 1,
                Ok(Ok(px)) => assert_eq!(px.samples.len(), full.samples.len(), "{file} cut at {cut}"),
            }
        }
        assert!(errors > 30, "{file}: only {errors} of the truncations were reported as errors");
        // Flip bytes throughout the pixel data: errors or (wrong) pixels, never a panic.
        let pix_start = bytes.len() - bytes.len() / 3;
        for k in 0..24 {
            let mut b = bytes.clone();
            let i = pix_start + (k * 7919) % (bytes.len() - pix_start);
            b[i] ^= 0xA5;
            let r = std::panic::catch_unwind(|| {
                preprocess::parse(&b).and_then(|o| preprocess::decode(&o, None).map(|_| ()))
            });
            assert!(r.is_ok(), "{file}: byte {i} flipped: panic");
        }
    }
}

#[test]
fn native_pixel_data_shorter_than_declared_is_truncated() {
    let t = tempfile::tempdir().unwrap();
    let f = t.path().join("short.dcm");
    // 8×8 declared, 40 bytes present.
    write_image(&f, "1.2.840.10008.1.2.1", "MONOCHROME2", 8, 8, 1, 0, vec![7; 40]);
    let obj = preprocess::open(&f).unwrap();
    match preprocess::decode(&obj, None) {
        Err(PixelError::Truncated { needed: 64, got: 40 }) => {}
        other => panic!("expected Truncated, got {other:?}"),
    }
    // A frame past the end.
    let g = t.path().join("ok.dcm");
    write_image(&g, "1.2.840.10008.1.2.1", "MONOCHROME2", 8, 8, 1, 0, vec![7; 64]);
    let obj = preprocess::open(&g).unwrap();
    assert!(matches!(preprocess::decode(&obj, Some(1)), Err(PixelError::NoSuchFrame { frame: 1, frames: 1 })));
    // A wrong element length in the middle of the file.
    let mut bytes = std::fs::read(&g).unwrap();
    let pos = bytes.windows(4).rposition(|w| w == [0xE0, 0x7F, 0x10, 0x00]).unwrap();
    bytes[pos + 8..pos + 12].copy_from_slice(&0x7FFF_FFF0u32.to_le_bytes());
    assert!(preprocess::parse(&bytes).and_then(|o| preprocess::decode(&o, None)).is_err());
}

/// The rendered-frame endpoint, on a running server with imported instances.
#[test]
fn http_rendered_frames() {
    let t = tempfile::tempdir().unwrap();
    let data = t.path().join("data");
    let server = Server::start(&data, &[]);
    let files: Vec<PathBuf> = ["CT_small.dcm", "SC_rgb_rle_2frame.dcm", "MR_small_jp2klossless.dcm"]
        .iter()
        .map(|f| shared().join("dicom/pydicom").join(f))
        .collect();
    let mut args = vec!["import"];
    let paths: Vec<String> = files.iter().map(|p| p.display().to_string()).collect();
    args.extend(paths.iter().map(String::as_str));
    let o = lucent_in(&data, &args);
    assert!(o.status.success(), "import: {}", String::from_utf8_lossy(&o.stderr));
    let cookie = sign_in(&data, server.http_port, "tech", "technologist");
    let get = |path: &str, accept: Option<&str>| http_get_bytes(server.http_port, path, accept, &cookie);
    // Frames need a session.
    assert_eq!(
        http_get_bytes(server.http_port, "/studies/1/series/2/instances/3/frames/1/rendered", None, "").unwrap().0,
        401
    );
    let uids = |f: &Path| {
        let obj = preprocess::open(f).unwrap();
        let s = |tag| obj.element(tag).unwrap().to_str().unwrap().trim_end_matches('\0').to_string();
        (s(tags::STUDY_INSTANCE_UID), s(tags::SERIES_INSTANCE_UID), s(tags::SOP_INSTANCE_UID))
    };
    let url = |f: &Path, n: u32, q: &str| {
        let (st, se, sop) = uids(f);
        format!("/studies/{st}/series/{se}/instances/{sop}/frames/{n}/rendered{q}")
    };

    // Frame 1 of the CT equals the CLI's default rendering.
    let (code, ctype, body) = get(&url(&files[0], 1, ""), None).unwrap();
    assert_eq!((code, ctype.as_str()), (200, "image/png"));
    let cli_png = t.path().join("ct.png");
    render(&files[0], &[], &cli_png);
    assert_eq!(read_png_bytes(&body).3, read_png(&cli_png).3);
    // The window is honoured, and served again from the cache with another window.
    let (_, _, narrow) = get(&url(&files[0], 1, "?window=40,80"), None).unwrap();
    render(&files[0], &["--window", "40,80"], &cli_png);
    assert_eq!(read_png_bytes(&narrow).3, read_png(&cli_png).3);
    // Size and JPEG (by query and by Accept).
    let (code, ctype, body) = get(&url(&files[0], 1, "?size=64&format=jpeg"), None).unwrap();
    assert_eq!((code, ctype.as_str(), &body[..2]), (200, "image/jpeg", &[0xFF, 0xD8][..]));
    let (_, ctype, _) = get(&url(&files[2], 1, ""), Some("image/jpeg")).unwrap();
    assert_eq!(ctype, "image/jpeg");
    let (_, _, small) = get(&url(&files[0], 1, "?size=64"), None).unwrap();
    let (w, h, _, _) = read_png_bytes(&small);
    assert_eq!((w, h), (64, 64));
    // Multi-frame RGB: frame 2 exists, frame 3 does not; frame 0 is a bad request.
    let (code, _, body) = get(&url(&files[1], 2, ""), None).unwrap();
    assert_eq!(code, 200);
    assert_eq!(read_png_bytes(&body).2, 3);
    assert_eq!(get(&url(&files[1], 3, ""), None).unwrap().0, 404);
    assert_eq!(get(&url(&files[1], 0, ""), None).unwrap().0, 400);
    assert_eq!(get(&url(&files[0], 1, "?window=abc"), None).unwrap().0, 400);
    // Unknown instance, and a known instance under the wrong series.
    let (st, _, sop) = uids(&files[0]);
    let wrong = format!("/studies/{st}/series/1.2.3/instances/{sop}/frames/1/rendered");
    assert_eq!(get(&wrong, None).unwrap().0, 404);
    assert!(server.stop());
}
