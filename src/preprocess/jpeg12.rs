//! 12-bit JPEG (ISO 10918-1 extended, processes 2 and 4: transfer syntax 1.2.840.10008.1.2.4.51
//! with Bits Stored above 8), which dicom-pixeldata's pure-Rust JPEG decoder cannot read.
//! Decoded with libjpeg-turbo 3 (turbojpeg-sys, built from source and linked statically), which
//! also reads 8-bit RGB-labelled streams without a colour marker as coded ([`decode_raw_444`]).

use std::ffi::CStr;

use turbojpeg_sys as tj;

use super::PixelError;

/// One decoded frame: `width × height × samples` values, interleaved.
pub struct Frame12 {
    pub width: u32,
    pub height: u32,
    pub values: Vec<u16>,
}

/// The precision of a JPEG stream (8, 12 or 16), read from its frame header.
pub fn precision(jpeg: &[u8]) -> Result<u32, PixelError> {
    let d = Decompressor::new()?;
    d.header(jpeg)?;
    Ok(d.get(tj::TJPARAM_TJPARAM_PRECISION) as u32)
}

/// Decodes a 12-bit JPEG frame with `samples` components (1: grey, 3: RGB).
pub fn decode(jpeg: &[u8], samples: u16) -> Result<Frame12, PixelError> {
    let fixed = fix_sequential_scan(jpeg);
    let jpeg: &[u8] = fixed.as_deref().unwrap_or(jpeg);
    let d = Decompressor::new()?;
    d.header(jpeg)?;
    let (w, h) = (d.get(tj::TJPARAM_TJPARAM_JPEGWIDTH), d.get(tj::TJPARAM_TJPARAM_JPEGHEIGHT));
    let precision = d.get(tj::TJPARAM_TJPARAM_PRECISION);
    if precision != 12 {
        return Err(PixelError::Codec(format!("expected a 12-bit JPEG stream, found {precision}-bit")));
    }
    if w <= 0 || h <= 0 {
        return Err(PixelError::Corrupt(format!("JPEG frame of {w}x{h}")));
    }
    let format = match samples {
        1 => tj::TJPF_TJPF_GRAY,
        3 => tj::TJPF_TJPF_RGB,
        n => return Err(PixelError::BadAttribute(format!("12-bit JPEG with {n} samples per pixel"))),
    };
    let len = w as usize * h as usize * samples as usize;
    let mut out = vec![0i16; len];
    // SAFETY: `out` holds width × height × samples 16-bit values, what TurboJPEG writes for this
    // pixel format with pitch 0 (tightly packed); the input slice outlives the call.
    let rc = unsafe { tj::tj3Decompress12(d.handle, jpeg.as_ptr(), jpeg.len() as _, out.as_mut_ptr(), 0, format as _) };
    if rc != 0 {
        return Err(PixelError::Codec(format!("12-bit JPEG: {}", d.error())));
    }
    Ok(Frame12 { width: w as u32, height: h as u32, values: out.into_iter().map(|v| v as u16).collect() })
}

/// Some encoders write a sequential (SOF0/SOF1) scan header with a spectral selection other
/// than 0..63 (pydicom's JPEG-lossy.dcm has Se = 0), which libjpeg-turbo refuses; for a
/// sequential DCT scan those fields carry no information, so they are set to 0, 63, 0. Returns
/// the corrected stream, or `None` when nothing needed changing.
fn fix_sequential_scan(jpeg: &[u8]) -> Option<Vec<u8>> {
    let mut pos = 2; // after SOI
    let mut sequential = false;
    while pos + 4 <= jpeg.len() {
        if jpeg[pos] != 0xFF {
            return None;
        }
        let marker = jpeg[pos + 1];
        if marker == 0xFF {
            pos += 1; // fill byte
            continue;
        }
        let len = u16::from_be_bytes([jpeg[pos + 2], jpeg[pos + 3]]) as usize;
        if len < 2 || pos + 2 + len > jpeg.len() {
            return None;
        }
        match marker {
            0xC0 | 0xC1 => sequential = true,
            0xDA => {
                let tail = pos + 2 + len - 3; // Ss, Se, Ah/Al
                if !sequential || jpeg[tail..tail + 3] == [0, 63, 0] {
                    return None;
                }
                let mut v = jpeg.to_vec();
                v[tail..tail + 3].copy_from_slice(&[0, 63, 0]);
                return Some(v);
            }
            _ => {}
        }
        pos += 2 + len;
    }
    None
}

/// Whether an 8-bit JPEG stream carries a JFIF (APP0) or Adobe (APP14) marker, the only
/// in-stream statements of its colour space.
pub fn has_colour_marker(jpeg: &[u8]) -> bool {
    let mut pos = 2;
    while pos + 4 <= jpeg.len() && jpeg[pos] == 0xFF {
        let marker = jpeg[pos + 1];
        if marker == 0xDA {
            return false;
        }
        let len = u16::from_be_bytes([jpeg[pos + 2], jpeg[pos + 3]]) as usize;
        let body = jpeg.get(pos + 4..pos + 2 + len.max(2)).unwrap_or(&[]);
        if (marker == 0xE0 && body.starts_with(b"JFIF")) || (marker == 0xEE && body.starts_with(b"Adobe")) {
            return true;
        }
        pos += 2 + len;
    }
    false
}

/// Decodes an 8-bit, three-component, 4:4:4 JPEG frame without any colour conversion: the
/// component values as coded, interleaved. For a stream the DICOM header labels RGB and that
/// carries no JFIF/Adobe marker, this is what the encoder meant (dcmtk and pydicom read it so);
/// a decoder that assumes YCbCr would convert it wrongly. `None` when the stream is not 4:4:4.
pub fn decode_raw_444(jpeg: &[u8]) -> Result<Option<(u32, u32, Vec<u8>)>, PixelError> {
    let d = Decompressor::new()?;
    d.header(jpeg)?;
    let (w, h) = (d.get(tj::TJPARAM_TJPARAM_JPEGWIDTH), d.get(tj::TJPARAM_TJPARAM_JPEGHEIGHT));
    if d.get(tj::TJPARAM_TJPARAM_SUBSAMP) != tj::TJSAMP_TJSAMP_444 as i32
        || d.get(tj::TJPARAM_TJPARAM_PRECISION) != 8
        || w <= 0
        || h <= 0
    {
        return Ok(None);
    }
    let n = w as usize * h as usize;
    let mut planes = [vec![0u8; n], vec![0u8; n], vec![0u8; n]];
    let mut ptrs = [planes[0].as_mut_ptr(), planes[1].as_mut_ptr(), planes[2].as_mut_ptr()];
    let mut strides = [w, w, w];
    // SAFETY: three planes of width × height bytes with stride = width, which is what TurboJPEG
    // writes for a 4:4:4 image; the input slice outlives the call.
    let rc = unsafe {
        tj::tj3DecompressToYUVPlanes8(d.handle, jpeg.as_ptr(), jpeg.len() as _, ptrs.as_mut_ptr(), strides.as_mut_ptr())
    };
    if rc != 0 {
        return Err(PixelError::Codec(format!("JPEG: {}", d.error())));
    }
    let mut out = Vec::with_capacity(n * 3);
    for i in 0..n {
        out.extend_from_slice(&[planes[0][i], planes[1][i], planes[2][i]]);
    }
    Ok(Some((w as u32, h as u32, out)))
}

struct Decompressor {
    handle: tj::tjhandle,
}

impl Decompressor {
    fn new() -> Result<Decompressor, PixelError> {
        // SAFETY: plain constructor; a null handle is checked below.
        let handle = unsafe { tj::tj3Init(tj::TJINIT_TJINIT_DECOMPRESS as _) };
        if handle.is_null() {
            return Err(PixelError::Codec("cannot initialise the 12-bit JPEG decoder".into()));
        }
        Ok(Decompressor { handle })
    }

    fn header(&self, jpeg: &[u8]) -> Result<(), PixelError> {
        // SAFETY: valid handle; TurboJPEG only reads `jpeg.len()` bytes.
        let rc = unsafe { tj::tj3DecompressHeader(self.handle, jpeg.as_ptr(), jpeg.len() as _) };
        if rc != 0 {
            return Err(PixelError::Codec(format!("JPEG header: {}", self.error())));
        }
        Ok(())
    }

    fn get(&self, param: tj::TJPARAM) -> i32 {
        // SAFETY: valid handle; reading a parameter has no other effect.
        unsafe { tj::tj3Get(self.handle, param as _) }
    }

    fn error(&self) -> String {
        // SAFETY: TurboJPEG returns a NUL-terminated string owned by the handle.
        unsafe {
            let p = tj::tj3GetErrorStr(self.handle);
            if p.is_null() {
                "unknown error".into()
            } else {
                CStr::from_ptr(p).to_string_lossy().into_owned()
            }
        }
    }
}

impl Drop for Decompressor {
    fn drop(&mut self) {
        // SAFETY: the handle came from tj3Init and is destroyed once.
        unsafe { tj::tj3Destroy(self.handle) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixes_only_a_sequential_scan_header_that_needs_it() {
        // SOI, SOF1 (12-bit, 1x1, one component), SOS with Se = 0.
        let mut j = vec![0xFF, 0xD8, 0xFF, 0xC1, 0x00, 0x0B, 0x0C, 0, 1, 0, 1, 1, 1, 0x11, 0];
        j.extend_from_slice(&[0xFF, 0xDA, 0x00, 0x08, 0x01, 0x01, 0x00, 0x00, 0x00, 0x00]);
        let fixed = fix_sequential_scan(&j).unwrap();
        assert_eq!(&fixed[fixed.len() - 3..], &[0, 63, 0]);
        assert_eq!(fix_sequential_scan(&fixed), None);
        // A progressive frame (SOF2) keeps its spectral selection.
        j[3] = 0xC2;
        assert_eq!(fix_sequential_scan(&j), None);
        // Garbage is left for the decoder to refuse.
        assert_eq!(fix_sequential_scan(&[0xFF, 0xD8, 0x12]), None);
        assert!(decode(&[0xFF, 0xD8, 0x12, 0x34], 1).is_err());
    }
}
