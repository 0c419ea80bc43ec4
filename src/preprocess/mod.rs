//! Preprocessing: everything between stored DICOM bytes and the pixels a person or a model sees.
//!
//! Owns: pixel decoding of every supported transfer syntax ([`decode`]), the Modality and VOI
//! LUTs and palette lookup ([`lut`]), presentation to 8 bit, resampling and PNG/JPEG encoding
//! ([`render`]), NumPy output ([`npy`]), the one normalisation for model input
//! ([`model_input`], [`standardise`]), and de-identification (PS3.15, [`deid`]).
//! Must not: know HTTP, DIMSE or SQL; it takes parsed objects or bytes and returns values.

pub mod cache;
pub mod decode;
pub mod deid;
pub mod jpeg12;
pub mod lut;
pub mod npy;
pub mod render;
pub mod rle;

use dicom_core::Tag;
use dicom_object::DefaultDicomObject;

pub use decode::{decode, open, parse, Photometric, Pixels, Samples};
pub use lut::{Presentation, VoiFunction, Window};
pub use render::{Format, Image, RenderOptions};

/// Why pixels could not be produced. Every message says what is wrong with the input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PixelError {
    #[error("cannot read: {0}")]
    Io(String),
    #[error("not a DICOM Part 10 file (no DICM prefix after the 128-byte preamble)")]
    NotPart10,
    #[error("cannot parse the data set: {0}")]
    Parse(String),
    #[error("no Pixel Data (7FE0,0010) in this object")]
    NoPixelData,
    #[error("missing {0}")]
    Missing(&'static str),
    #[error("invalid image attributes: {0}")]
    BadAttribute(String),
    #[error("decoded pixel data would take {0} bytes, more than Lucent allows")]
    TooLarge(u64),
    #[error("transfer syntax {0} cannot be decoded")]
    UnsupportedTransferSyntax(String),
    #[error("photometric interpretation {0} is not supported")]
    UnsupportedPhotometric(String),
    #[error("pixel data is truncated: {needed} bytes needed, {got} present")]
    Truncated { needed: u64, got: u64 },
    #[error("pixel data is corrupt: {0}")]
    Corrupt(String),
    #[error("cannot decode the compressed pixel data: {0}")]
    Codec(String),
    #[error("frame {frame} does not exist (the object has {frames} frames, numbered from 0 here)")]
    NoSuchFrame { frame: u32, frames: u32 },
    #[error("cannot encode the image: {0}")]
    Encode(String),
}

/// An integer attribute (US, SS, IS…) of the top-level data set.
pub(crate) fn attr_int(obj: &DefaultDicomObject, tag: Tag) -> Option<i64> {
    obj.element_opt(tag).ok().flatten()?.value().to_int::<i64>().ok()
}

/// A string attribute of the top-level data set, trimmed.
pub(crate) fn attr_str(obj: &DefaultDicomObject, tag: Tag) -> Option<String> {
    let s = obj.element_opt(tag).ok().flatten()?.value().to_str().ok()?.trim().to_string();
    (!s.is_empty()).then_some(s)
}

/// Decodes one frame (from 0) and renders it as a viewer shows it by default, with the
/// overrides in `opts`.
pub fn render_frame(obj: &DefaultDicomObject, frame: u32, opts: &RenderOptions) -> Result<Image, PixelError> {
    let px = decode(obj, Some(frame))?;
    render_decoded(obj, &px, 0, opts)
}

/// Renders frame `index` of already decoded `pixels` of `obj`.
pub fn render_decoded(
    obj: &DefaultDicomObject,
    pixels: &Pixels,
    index: u32,
    opts: &RenderOptions,
) -> Result<Image, PixelError> {
    let pres = Presentation::from_object(obj, pixels.first_frame + index, pixels.signed)?;
    render::render(pixels, index, &pres, opts)
}

/// THE normalisation for models (training and inference both call this): frame `frame` as a
/// viewer shows it by default (Modality LUT, default VOI, MONOCHROME1 inverted), converted to
/// grey (BT.601 luma for colour), centre-cropped to a square and resampled to `size`×`size`.
/// Returns `size*size` bytes, row-major. Models apply their own mean/std with [`standardise`].
pub fn model_input(obj: &DefaultDicomObject, frame: u32, size: u32) -> Result<Vec<u8>, PixelError> {
    let img = render_frame(obj, frame, &RenderOptions::default())?;
    Ok(square_gray(img, size).data)
}

/// Grey, centre-cropped square, resampled to `size`×`size` (the geometry of [`model_input`]).
pub fn square_gray(img: Image, size: u32) -> Image {
    let g = render::to_grayscale(img);
    render::resize(&render::center_square(&g), size, size)
}

/// Maps 8-bit pixels to `(p/255 - mean) / std`, the model-card convention.
pub fn standardise(pixels: &[u8], mean: f32, std: f32) -> Vec<f32> {
    let std = if std > 0.0 { std } else { 1.0 };
    pixels.iter().map(|&p| (p as f32 / 255.0 - mean) / std).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standardise_uses_unit_range() {
        assert_eq!(standardise(&[0, 255], 0.5, 0.5), vec![-1.0, 1.0]);
        assert_eq!(standardise(&[51], 0.0, 0.0), vec![0.2]);
    }

    #[test]
    fn square_gray_geometry() {
        let img = Image { width: 4, height: 2, channels: 3, data: vec![255; 24] };
        let s = square_gray(img, 8);
        assert_eq!((s.width, s.height, s.channels, s.data.len()), (8, 8, 1, 64));
        assert!(s.data.iter().all(|&v| v == 255));
    }
}
