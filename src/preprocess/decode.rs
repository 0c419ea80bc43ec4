//! Pixel decoding: a parsed DICOM object in, stored pixel values out.
//!
//! Native (and deflated) pixel data is read here directly from the Pixel Data element; every
//! encapsulated transfer syntax goes through dicom-pixeldata's codecs (JPEG, JPEG-LS via CharLS,
//! JPEG 2000 via OpenJPEG, RLE), all linked statically. Either way the result is normalised:
//! samples interleaved (planar configuration 0), colour as RGB (YBR_FULL and YBR_FULL_422
//! converted), PALETTE COLOR as stored indices, every sample masked to Bits Stored and
//! sign-extended when Pixel Representation is 1. No LUT is applied here.

use std::panic::{catch_unwind, AssertUnwindSafe};

use dicom_core::value::{PrimitiveValue, Value};
use dicom_dictionary_std::tags;
use dicom_encoding::transfer_syntax::Endianness;
use dicom_encoding::TransferSyntaxIndex;
use dicom_object::file::ReadPreamble;
use dicom_object::{DefaultDicomObject, OpenFileOptions};
use dicom_pixeldata::PixelDecoder;
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;

use super::{attr_int, attr_str, PixelError};

/// The largest decoded pixel buffer Lucent allocates for one object (bounds crafted headers).
pub const MAX_DECODED_BYTES: u64 = 2 << 30;

const RLE_LOSSLESS: &str = "1.2.840.10008.1.2.5";

/// The colour model of decoded samples.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Photometric {
    /// One sample; the minimum is white.
    Monochrome1,
    /// One sample; the minimum is black.
    Monochrome2,
    /// Three samples, R G B (YBR input has been converted).
    Rgb,
    /// One sample: an index into the palette colour LUTs.
    Palette,
}

impl Photometric {
    pub fn is_grayscale(self) -> bool {
        matches!(self, Photometric::Monochrome1 | Photometric::Monochrome2)
    }
}

/// Stored values in their natural type (from Bits Allocated and Pixel Representation).
#[derive(Debug, Clone, PartialEq)]
pub enum Samples {
    U8(Vec<u8>),
    I8(Vec<i8>),
    U16(Vec<u16>),
    I16(Vec<i16>),
    U32(Vec<u32>),
    I32(Vec<i32>),
}

impl Samples {
    pub fn len(&self) -> usize {
        match self {
            Samples::U8(v) => v.len(),
            Samples::I8(v) => v.len(),
            Samples::U16(v) => v.len(),
            Samples::I16(v) => v.len(),
            Samples::U32(v) => v.len(),
            Samples::I32(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Sample `i` widened to i64.
    #[inline]
    pub fn get(&self, i: usize) -> i64 {
        match self {
            Samples::U8(v) => v[i] as i64,
            Samples::I8(v) => v[i] as i64,
            Samples::U16(v) => v[i] as i64,
            Samples::I16(v) => v[i] as i64,
            Samples::U32(v) => v[i] as i64,
            Samples::I32(v) => v[i] as i64,
        }
    }

    /// Size in bytes of the samples (for cache accounting).
    pub fn byte_len(&self) -> usize {
        match self {
            Samples::U8(v) => v.len(),
            Samples::I8(v) => v.len(),
            Samples::U16(v) => v.len() * 2,
            Samples::I16(v) => v.len() * 2,
            Samples::U32(v) => v.len() * 4,
            Samples::I32(v) => v.len() * 4,
        }
    }

    /// NumPy dtype name of the samples.
    pub fn dtype(&self) -> &'static str {
        match self {
            Samples::U8(_) => "uint8",
            Samples::I8(_) => "int8",
            Samples::U16(_) => "uint16",
            Samples::I16(_) => "int16",
            Samples::U32(_) => "uint32",
            Samples::I32(_) => "int32",
        }
    }
}

/// Decoded frames of one object.
#[derive(Debug, Clone)]
pub struct Pixels {
    pub rows: u32,
    pub columns: u32,
    /// Frames held in `samples`.
    pub frames: u32,
    /// Index (from 0) of the first frame held, within the object.
    pub first_frame: u32,
    pub samples_per_pixel: u16,
    pub bits_allocated: u16,
    pub bits_stored: u16,
    pub signed: bool,
    pub photometric: Photometric,
    /// Photometric Interpretation as written in the file.
    pub stored_photometric: String,
    pub transfer_syntax: String,
    /// Interleaved samples, frame after frame, row after row.
    pub samples: Samples,
}

impl Pixels {
    /// Samples in one frame.
    pub fn frame_len(&self) -> usize {
        self.rows as usize * self.columns as usize * self.samples_per_pixel as usize
    }
}

/// Parses a Part 10 file (preamble, `DICM`, file meta, data set) from memory.
pub fn parse(bytes: &[u8]) -> Result<DefaultDicomObject, PixelError> {
    if bytes.len() < 132 || &bytes[128..132] != b"DICM" {
        return Err(PixelError::NotPart10);
    }
    // dicom-object trusts element lengths; a few hundred hostile bytes can make it allocate
    // gigabytes. The bounded walk refuses those first.
    crate::dicom::instance::precheck_part10(bytes).map_err(|e| PixelError::Parse(e.to_string()))?;
    OpenFileOptions::new().read_preamble(ReadPreamble::Always).from_reader(bytes).map_err(|e| {
        let m = error_chain(&e);
        if m.contains("failed to fill whole buffer") {
            PixelError::Parse(format!("the file is truncated: {m}"))
        } else {
            PixelError::Parse(m)
        }
    })
}

/// Reads and parses a Part 10 file.
pub fn open(path: &std::path::Path) -> Result<DefaultDicomObject, PixelError> {
    let bytes = std::fs::read(path).map_err(|e| PixelError::Io(format!("{}: {e}", path.display())))?;
    parse(&bytes)
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        let m = c.to_string();
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        src = c.source();
    }
    s
}

/// The image pixel module attributes that decoding needs, checked.
#[derive(Debug, Clone)]
struct Layout {
    rows: u32,
    columns: u32,
    frames: u32,
    spp: u16,
    bits_allocated: u16,
    bits_stored: u16,
    high_bit: u16,
    signed: bool,
    planar: bool,
    photometric: String,
}

fn layout(obj: &DefaultDicomObject) -> Result<Layout, PixelError> {
    let need = |tag, name: &'static str| attr_int(obj, tag).ok_or(PixelError::Missing(name));
    let rows = need(tags::ROWS, "Rows")?;
    let columns = need(tags::COLUMNS, "Columns")?;
    let bits_allocated = need(tags::BITS_ALLOCATED, "Bits Allocated")?;
    let spp = attr_int(obj, tags::SAMPLES_PER_PIXEL).unwrap_or(1);
    let bits_stored = attr_int(obj, tags::BITS_STORED).unwrap_or(bits_allocated);
    let high_bit = attr_int(obj, tags::HIGH_BIT).unwrap_or(bits_stored - 1);
    let pr = attr_int(obj, tags::PIXEL_REPRESENTATION).unwrap_or(0);
    let planar = attr_int(obj, tags::PLANAR_CONFIGURATION).unwrap_or(0) == 1;
    let frames = attr_int(obj, tags::NUMBER_OF_FRAMES).unwrap_or(1).max(1);
    let photometric = attr_str(obj, tags::PHOTOMETRIC_INTERPRETATION).unwrap_or_else(|| "MONOCHROME2".into());
    let bad = |what: String| Err(PixelError::BadAttribute(what));
    if rows <= 0 || columns <= 0 || rows > 65535 || columns > 65535 {
        return bad(format!("image size {columns}x{rows}"));
    }
    if ![1, 8, 16, 32].contains(&bits_allocated) {
        return bad(format!("Bits Allocated {bits_allocated} (Lucent decodes 1, 8, 16 and 32)"));
    }
    if bits_stored < 1 || bits_stored > bits_allocated {
        return bad(format!("Bits Stored {bits_stored} with Bits Allocated {bits_allocated}"));
    }
    if high_bit < bits_stored - 1 || high_bit >= bits_allocated {
        return bad(format!("High Bit {high_bit} with Bits Stored {bits_stored}"));
    }
    if spp != 1 && spp != 3 {
        return bad(format!("Samples per Pixel {spp}"));
    }
    if !(0..=1).contains(&pr) {
        return bad(format!("Pixel Representation {pr}"));
    }
    if frames > i32::MAX as i64 {
        return bad(format!("Number of Frames {frames}"));
    }
    let bytes = (rows as u64 * columns as u64 * spp as u64 * frames as u64).saturating_mul(bits_allocated as u64) / 8;
    if bytes > MAX_DECODED_BYTES {
        return Err(PixelError::TooLarge(bytes));
    }
    Ok(Layout {
        rows: rows as u32,
        columns: columns as u32,
        frames: frames as u32,
        spp: spp as u16,
        bits_allocated: bits_allocated as u16,
        bits_stored: bits_stored as u16,
        high_bit: high_bit as u16,
        signed: pr == 1,
        planar,
        photometric: photometric.trim().to_ascii_uppercase(),
    })
}

/// Decodes every frame (`frame: None`) or one frame (from 0) of `obj`.
pub fn decode(obj: &DefaultDicomObject, frame: Option<u32>) -> Result<Pixels, PixelError> {
    let pixel = obj.element_opt(tags::PIXEL_DATA).ok().flatten().ok_or(PixelError::NoPixelData)?;
    let l = layout(obj)?;
    if let Some(f) = frame {
        if f >= l.frames {
            return Err(PixelError::NoSuchFrame { frame: f, frames: l.frames });
        }
    }
    let ts_uid = obj.meta().transfer_syntax().trim_end_matches(['\0', ' ']).to_string();
    let ts =
        TransferSyntaxRegistry.get(&ts_uid).ok_or_else(|| PixelError::UnsupportedTransferSyntax(ts_uid.clone()))?;
    let encapsulated = ts.is_encapsulated_pixel_data();
    let photometric_in = match l.photometric.as_str() {
        "MONOCHROME1" => Photometric::Monochrome1,
        "MONOCHROME2" => Photometric::Monochrome2,
        "PALETTE COLOR" => Photometric::Palette,
        "RGB" | "YBR_FULL" | "YBR_FULL_422" | "YBR_ICT" | "YBR_RCT" | "YBR_PARTIAL_420" | "YBR_PARTIAL_422" => {
            Photometric::Rgb
        }
        other => return Err(PixelError::UnsupportedPhotometric(other.to_string())),
    };
    if (photometric_in == Photometric::Rgb) != (l.spp == 3) {
        return Err(PixelError::BadAttribute(format!(
            "Photometric Interpretation {} with Samples per Pixel {}",
            l.photometric, l.spp
        )));
    }
    let (first, count) = match frame {
        Some(f) => (f, 1),
        None => (0, l.frames),
    };

    // Raw little-endian bytes of the frames wanted, before masking.
    let (raw, ybr, planar, ybr422) = if !encapsulated {
        let bytes: Vec<u8> = match pixel.value() {
            Value::Primitive(p) if p.to_bytes().is_empty() => return Err(PixelError::NoPixelData),
            Value::Primitive(p) => native_bytes(p, ts.endianness(), l.bits_allocated, pixel.vr()),
            Value::PixelSequence(_) => {
                return Err(PixelError::Corrupt("native transfer syntax with encapsulated pixel data".into()))
            }
            Value::Sequence(_) => return Err(PixelError::Corrupt("Pixel Data is a sequence".into())),
        };
        let ybr422 = l.photometric == "YBR_FULL_422";
        let ybr = l.photometric == "YBR_FULL" || ybr422;
        if ybr422 && (l.bits_allocated != 8 || l.columns % 2 != 0) {
            return Err(PixelError::BadAttribute("native YBR_FULL_422 needs 8-bit samples and even columns".into()));
        }
        if photometric_in == Photometric::Rgb && !ybr && l.photometric != "RGB" {
            return Err(PixelError::UnsupportedPhotometric(format!("{} in a native transfer syntax", l.photometric)));
        }
        (slice_native(&bytes, &l, first, count, ybr422)?, ybr, l.planar, ybr422)
    } else {
        if !ts.can_decode_all() {
            return Err(PixelError::UnsupportedTransferSyntax(format!("{} ({})", ts.name(), ts_uid)));
        }
        let Value::PixelSequence(seq) = pixel.value() else {
            return Err(PixelError::Corrupt("compressed transfer syntax with native Pixel Data".into()));
        };
        if seq.fragments().is_empty() {
            return Err(PixelError::Corrupt("encapsulated Pixel Data has no fragments".into()));
        }
        let data = if ts_uid == RLE_LOSSLESS {
            let bps = (l.bits_allocated as usize).div_ceil(8);
            let pixels = l.rows as usize * l.columns as usize;
            if l.bits_allocated == 1 {
                return Err(PixelError::BadAttribute("RLE with Bits Allocated 1".into()));
            }
            let mut out = Vec::with_capacity(pixels * l.spp as usize * bps * count as usize);
            for f in first..first + count {
                let bytes = super::rle::frame_bytes(seq, f, l.frames)?;
                super::rle::decode_frame(&bytes, pixels, l.spp as usize, bps, &mut out)?;
            }
            out
        } else if matches!(ts_uid.as_str(), "1.2.840.10008.1.2.4.50" | "1.2.840.10008.1.2.4.51") && l.bits_stored > 8 {
            // 12-bit JPEG (processes 2/4): libjpeg-turbo, since jpeg-decoder is 8-bit only.
            let mut out = Vec::with_capacity(frame_bytes(&l, false) * count as usize);
            for f in first..first + count {
                let bytes = super::rle::frame_bytes(seq, f, l.frames)?;
                let fr = super::jpeg12::decode(&bytes, l.spp)?;
                if (fr.width, fr.height) != (l.columns, l.rows) {
                    return Err(PixelError::Corrupt(format!(
                        "JPEG frame {} is {}x{}, the header says {}x{}",
                        f + 1,
                        fr.width,
                        fr.height,
                        l.columns,
                        l.rows
                    )));
                }
                out.extend(fr.values.iter().flat_map(|v| v.to_le_bytes()));
            }
            out
        } else if let Some(raw) = rgb_jpeg_as_coded(seq, &l, &ts_uid, first, count)? {
            raw
        } else {
            if ts_uid.starts_with("1.2.840.10008.1.2.4.8") {
                // CharLS 2.4.5 spins on a JPEG-LS stream cut short; refuse one without its
                // end-of-image marker before calling it.
                for f in first..first + count {
                    let bytes = super::rle::frame_bytes(seq, f, l.frames)?;
                    let end = bytes.iter().rposition(|&b| b != 0).map(|p| p + 1).unwrap_or(0);
                    if end < 2 || bytes[end - 2..end] != [0xFF, 0xD9] {
                        return Err(PixelError::Corrupt(format!(
                            "JPEG-LS frame {} has no end-of-image marker (truncated)",
                            f + 1
                        )));
                    }
                }
            }
            let result = catch_unwind(AssertUnwindSafe(|| match frame {
                Some(f) => obj.decode_pixel_data_frame(f).map(|d| d.into_data()),
                None => obj.decode_pixel_data().map(|d| d.into_data()),
            }));
            match result {
                Ok(Ok(d)) => d,
                Ok(Err(e)) => return Err(PixelError::Codec(format!("{}: {}", ts.name(), error_chain(&e)))),
                Err(_) => return Err(PixelError::Codec(format!("{}: the decoder failed on corrupt data", ts.name()))),
            }
        };
        let need = frame_bytes(&l, false) * count as usize;
        if data.len() < need {
            return Err(PixelError::Truncated { needed: need as u64, got: data.len() as u64 });
        }
        // RLE and JPEG-LS keep the stored colour space; the JPEG and JPEG 2000 decoders convert.
        let keeps_colour = ts_uid == RLE_LOSSLESS || ts_uid.starts_with("1.2.840.10008.1.2.4.8");
        let ybr = keeps_colour && (l.photometric == "YBR_FULL" || l.photometric == "YBR_FULL_422");
        (data, ybr, false, false)
    };

    let mut samples = to_samples(&raw, &l, count, ybr422)?;
    if planar && l.spp == 3 {
        deplanarise(&mut samples, l.rows as usize * l.columns as usize);
    }
    if ybr {
        ybr_to_rgb(&mut samples, l.bits_stored);
    }
    Ok(Pixels {
        rows: l.rows,
        columns: l.columns,
        frames: count,
        first_frame: first,
        samples_per_pixel: l.spp,
        bits_allocated: if l.bits_allocated == 1 { 8 } else { l.bits_allocated },
        bits_stored: if l.bits_allocated == 1 { 1 } else { l.bits_stored },
        signed: l.signed && l.bits_allocated != 1,
        photometric: photometric_in,
        stored_photometric: l.photometric.clone(),
        transfer_syntax: ts_uid,
        samples,
    })
}

/// Bytes of one stored frame (`ybr422`: two samples per pixel as stored).
/// An 8-bit JPEG labelled RGB whose frames carry no JFIF/Adobe marker: decoded without colour
/// conversion (see `jpeg12::decode_raw_444`). `None` when that does not apply.
fn rgb_jpeg_as_coded(
    seq: &dicom_core::value::PixelFragmentSequence<Vec<u8>>,
    l: &Layout,
    ts_uid: &str,
    first: u32,
    count: u32,
) -> Result<Option<Vec<u8>>, PixelError> {
    if !matches!(ts_uid, "1.2.840.10008.1.2.4.50" | "1.2.840.10008.1.2.4.51")
        || l.photometric != "RGB"
        || l.spp != 3
        || l.bits_allocated != 8
    {
        return Ok(None);
    }
    let mut out = Vec::with_capacity(frame_bytes(l, false) * count as usize);
    for f in first..first + count {
        let bytes = super::rle::frame_bytes(seq, f, l.frames)?;
        if super::jpeg12::has_colour_marker(&bytes) {
            return Ok(None);
        }
        match super::jpeg12::decode_raw_444(&bytes)? {
            Some((w, h, px)) if (w, h) == (l.columns, l.rows) => out.extend_from_slice(&px),
            _ => return Ok(None),
        }
    }
    Ok(Some(out))
}

fn frame_bytes(l: &Layout, ybr422: bool) -> usize {
    let spp = if ybr422 { 2 } else { l.spp as usize };
    l.rows as usize * l.columns as usize * spp * (l.bits_allocated as usize).div_ceil(8)
}

/// The Pixel Data value as little-endian bytes in the file's sample layout.
fn native_bytes(p: &PrimitiveValue, endianness: Endianness, bits_allocated: u16, vr: dicom_core::VR) -> Vec<u8> {
    let mut bytes = p.to_bytes().into_owned();
    // An OW value kept as raw bytes in a big-endian file holds 8-bit samples in swapped pairs.
    if endianness == Endianness::Big && vr == dicom_core::VR::OW && bits_allocated == 8 {
        if let PrimitiveValue::U8(_) = p {
            bytes.chunks_exact_mut(2).for_each(|c| c.swap(0, 1));
        }
    }
    // A big-endian OW value is read as 16-bit words: 8-bit samples come out of `to_bytes` in
    // the order pydicom and dcmtk use (pairs swapped relative to the file), 32-bit values need
    // their two words swapped.
    if endianness == Endianness::Big
        && matches!(p, PrimitiveValue::U16(_) | PrimitiveValue::I16(_))
        && bits_allocated == 32
    {
        bytes.chunks_exact_mut(4).for_each(|c| {
            c.swap(0, 2);
            c.swap(1, 3)
        })
    }
    if cfg!(target_endian = "big") && matches!(p, PrimitiveValue::U16(_) | PrimitiveValue::I16(_)) {
        bytes.chunks_exact_mut(2).for_each(|c| c.swap(0, 1));
    }
    bytes
}

/// The bytes of frames `first..first+count`, checked against the value's length.
fn slice_native(bytes: &[u8], l: &Layout, first: u32, count: u32, ybr422: bool) -> Result<Vec<u8>, PixelError> {
    if l.bits_allocated == 1 {
        // Frames of 1-bit samples are packed back to back, not byte aligned: unpack to 0/1.
        let per = l.rows as usize * l.columns as usize * l.spp as usize;
        let start = per * first as usize;
        let n = per * count as usize;
        let need = (start + n).div_ceil(8);
        if bytes.len() < need {
            return Err(PixelError::Truncated { needed: need as u64, got: bytes.len() as u64 });
        }
        return Ok((start..start + n).map(|i| (bytes[i / 8] >> (i % 8)) & 1).collect());
    }
    let per = frame_bytes(l, ybr422);
    let start = per * first as usize;
    let end = start + per * count as usize;
    let need = per * l.frames as usize;
    if bytes.len() < need {
        return Err(PixelError::Truncated { needed: need as u64, got: bytes.len() as u64 });
    }
    Ok(bytes[start..end].to_vec())
}

/// Little-endian bytes → typed samples, masked to Bits Stored (shifted by High Bit) and
/// sign-extended; YBR_FULL_422 is upsampled to three samples per pixel.
fn to_samples(raw: &[u8], l: &Layout, count: u32, ybr422: bool) -> Result<Samples, PixelError> {
    if l.bits_allocated == 1 {
        return Ok(Samples::U8(raw.to_vec()));
    }
    let n = l.rows as usize * l.columns as usize * l.spp as usize * count as usize;
    let shift = (l.high_bit + 1 - l.bits_stored) as u32;
    let bs = l.bits_stored as u32;
    let mask: u64 = if bs >= 32 { u32::MAX as u64 } else { (1u64 << bs) - 1 };
    let unsigned = |v: u64| ((v >> shift) & mask) as u32;
    let signed = |v: u64| {
        let u = ((v >> shift) & mask) as i64;
        if bs < 64 && u & (1i64 << (bs - 1)) != 0 {
            (u - (1i64 << bs)) as i32
        } else {
            u as i32
        }
    };
    Ok(match (l.bits_allocated, l.signed) {
        (8, _) if ybr422 => {
            let mut out = Vec::with_capacity(n);
            for c in raw.chunks_exact(4) {
                let (y1, y2, cb, cr) = (c[0], c[1], c[2], c[3]);
                out.extend_from_slice(&[y1, cb, cr, y2, cb, cr]);
            }
            Samples::U8(out.into_iter().map(|v| unsigned(v as u64) as u8).collect())
        }
        (8, false) => Samples::U8(raw[..n].iter().map(|&v| unsigned(v as u64) as u8).collect()),
        (8, true) => Samples::I8(raw[..n].iter().map(|&v| signed(v as u64) as i8).collect()),
        (16, false) => {
            let it = raw[..n * 2].chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]]) as u64);
            if shift == 0 && bs == 16 {
                Samples::U16(it.map(|v| v as u16).collect())
            } else {
                Samples::U16(it.map(|v| unsigned(v) as u16).collect())
            }
        }
        (16, true) => {
            let it = raw[..n * 2].chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]]) as u64);
            Samples::I16(it.map(|v| signed(v) as i16).collect())
        }
        (32, false) => {
            let it = raw[..n * 4].chunks_exact(4).map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]) as u64);
            Samples::U32(it.map(unsigned).collect())
        }
        (32, true) => {
            let it = raw[..n * 4].chunks_exact(4).map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]) as u64);
            Samples::I32(it.map(signed).collect())
        }
        (ba, _) => return Err(PixelError::BadAttribute(format!("Bits Allocated {ba}"))),
    })
}

/// Planar configuration 1 (RRR…GGG…BBB… per frame) → interleaved RGBRGB….
fn deplanarise(s: &mut Samples, pixels: usize) {
    fn go<T: Copy>(v: &mut [T], pixels: usize) {
        for frame in v.chunks_exact_mut(pixels * 3) {
            let planes = frame.to_vec();
            for i in 0..pixels {
                frame[3 * i] = planes[i];
                frame[3 * i + 1] = planes[pixels + i];
                frame[3 * i + 2] = planes[2 * pixels + i];
            }
        }
    }
    match s {
        Samples::U8(v) => go(v, pixels),
        Samples::I8(v) => go(v, pixels),
        Samples::U16(v) => go(v, pixels),
        Samples::I16(v) => go(v, pixels),
        Samples::U32(v) => go(v, pixels),
        Samples::I32(v) => go(v, pixels),
    }
}

/// YBR_FULL → RGB (PS3.3 C.7.6.3.1.2), rounded and clamped to the stored range.
pub fn ybr_to_rgb(s: &mut Samples, bits_stored: u16) {
    let max = ((1u64 << bits_stored.min(32)) - 1) as f64;
    let half = ((1u64 << (bits_stored.min(32) - 1)) as f64).max(0.0);
    let conv = |y: f64, cb: f64, cr: f64| {
        let (cb, cr) = (cb - half, cr - half);
        let r = y + 1.402 * cr;
        let g = y - 0.344136 * cb - 0.714136 * cr;
        let b = y + 1.772 * cb;
        [r, g, b].map(|v| v.round().clamp(0.0, max))
    };
    macro_rules! go {
        ($v:expr, $t:ty) => {
            for px in $v.chunks_exact_mut(3) {
                let c = conv(px[0] as f64, px[1] as f64, px[2] as f64);
                px[0] = c[0] as $t;
                px[1] = c[1] as $t;
                px[2] = c[2] as $t;
            }
        };
    }
    match s {
        Samples::U8(v) => go!(v, u8),
        Samples::U16(v) => go!(v, u16),
        Samples::U32(v) => go!(v, u32),
        // Signed YBR does not occur in practice; leave it as stored.
        _ => {}
    }
}
