//! Burned-in annotation: which images are likely to carry identifiers in their pixels, and
//! masking them with the configured rectangles.
//!
//! Flagged: BurnedInAnnotation (0028,0301) = YES; and ultrasound (modality US or an ultrasound
//! SOP class) or secondary capture (an SC SOP class) unless BurnedInAnnotation = NO. Objects
//! without Pixel Data are never flagged.
//!
//! Masking works on native pixel data. Encapsulated (compressed) pixel data is first decoded
//! with dicom-pixeldata and the object rewritten as native explicit VR little endian (colour
//! comes out as RGB); LossyImageCompression and its method are kept, so an image that was lossy
//! still says so. BurnedInAnnotation is set to NO only after masking.

use dicom_core::value::PrimitiveValue;
use dicom_core::{DataElement, VR};
use dicom_dictionary_std::tags;
use dicom_encoding::TransferSyntaxIndex;
use dicom_object::DefaultDicomObject;
use dicom_pixeldata::Transcode;
use dicom_transfer_syntax_registry::entries::EXPLICIT_VR_LITTLE_ENDIAN;
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;

use super::DeidError;
use crate::config::MaskRule;

const US_CLASSES: [&str; 4] = [
    "1.2.840.10008.5.1.4.1.1.6.1", // Ultrasound Image
    "1.2.840.10008.5.1.4.1.1.3.1", // Ultrasound Multi-frame Image
    "1.2.840.10008.5.1.4.1.1.6",   // retired
    "1.2.840.10008.5.1.4.1.1.3",   // retired
];
const SC_PREFIX: &str = "1.2.840.10008.5.1.4.1.1.7"; // .7, .7.1 .. .7.4: Secondary Capture

fn text(obj: &DefaultDicomObject, tag: dicom_core::Tag) -> Option<String> {
    obj.get(tag).map(|e| super::actions::strings(e).join("\\").trim().to_string())
}

fn number(obj: &DefaultDicomObject, tag: dicom_core::Tag) -> Option<u32> {
    obj.get(tag).and_then(|e| e.to_int::<u32>().ok())
}

/// Why this object is likely to carry identifiers in its pixels, or `None`.
pub fn assess(obj: &DefaultDicomObject) -> Option<String> {
    obj.get(tags::PIXEL_DATA)?;
    let burned = text(obj, tags::BURNED_IN_ANNOTATION).map(|s| s.to_uppercase());
    if burned.as_deref() == Some("YES") {
        return Some("BurnedInAnnotation is YES".into());
    }
    if burned.as_deref() == Some("NO") {
        return None;
    }
    let modality = text(obj, tags::MODALITY).unwrap_or_default();
    let class = text(obj, tags::SOP_CLASS_UID).unwrap_or_default();
    if modality.eq_ignore_ascii_case("US") || US_CLASSES.contains(&class.as_str()) {
        return Some("ultrasound image without BurnedInAnnotation = NO".into());
    }
    if class == SC_PREFIX || class.starts_with(&format!("{SC_PREFIX}.")) {
        return Some("secondary capture image without BurnedInAnnotation = NO".into());
    }
    None
}

/// The first rule that covers this object (compared before any attribute is changed).
pub fn find_rule<'a>(obj: &DefaultDicomObject, rules: &'a [MaskRule]) -> Option<&'a MaskRule> {
    let modality = text(obj, tags::MODALITY).filter(|m| !m.is_empty()).unwrap_or_else(|| "OT".into());
    let manufacturer = text(obj, tags::MANUFACTURER).unwrap_or_default();
    let model = text(obj, tags::MANUFACTURER_MODEL_NAME).unwrap_or_default();
    let (rows, cols) = (number(obj, tags::ROWS)?, number(obj, tags::COLUMNS)?);
    rules.iter().find(|r| {
        r.modality.trim().eq_ignore_ascii_case(&modality)
            && r.manufacturer.as_ref().is_none_or(|m| m.trim().eq_ignore_ascii_case(&manufacturer))
            && r.model.as_ref().is_none_or(|m| m.trim().eq_ignore_ascii_case(&model))
            && r.rows == rows
            && r.columns == cols
    })
}

/// Blacks out `rule`'s rectangles in every frame, decoding compressed pixel data first, and
/// sets BurnedInAnnotation to NO.
pub fn mask(obj: &mut DefaultDicomObject, rule: &MaskRule) -> Result<(), DeidError> {
    let ts_uid = obj.meta().transfer_syntax().trim_end_matches(['\0', ' ']).to_string();
    let ts = TransferSyntaxRegistry
        .get(&ts_uid)
        .ok_or_else(|| DeidError::Mask(format!("unknown transfer syntax {ts_uid}")))?;
    if ts.is_encapsulated_pixel_data() || ts.uid() != EXPLICIT_VR_LITTLE_ENDIAN.uid() && ts.uid() != "1.2.840.10008.1.2"
    {
        obj.transcode(&EXPLICIT_VR_LITTLE_ENDIAN.erased())
            .map_err(|e| DeidError::Mask(format!("cannot decode pixel data of {ts_uid} to mask it: {e}")))?;
        // A decoded single-frame object needs no Number of Frames, but a stale one must agree.
        obj.remove_element(tags::ENCAPSULATED_PIXEL_DATA_VALUE_TOTAL_LENGTH);
    }
    let geometry = Geometry::of(obj)?;
    let black = geometry.black()?;
    let elem = obj.get(tags::PIXEL_DATA).ok_or_else(|| DeidError::Mask("no Pixel Data".into()))?;
    let value = elem.value().primitive().ok_or_else(|| DeidError::Mask("Pixel Data is not native".into()))?;
    let new_value = match value {
        PrimitiveValue::U8(bytes) => {
            let mut bytes = bytes.to_vec();
            geometry.fill_bytes(&mut bytes, rule, black)?;
            PrimitiveValue::U8(bytes.into_iter().collect())
        }
        PrimitiveValue::U16(words) if geometry.bits_allocated == 16 => {
            let mut words = words.to_vec();
            geometry.fill(&mut words, rule, black as u16)?;
            PrimitiveValue::U16(words.into_iter().collect())
        }
        other => {
            let mut bytes = other.to_bytes().to_vec();
            geometry.fill_bytes(&mut bytes, rule, black)?;
            PrimitiveValue::U8(bytes.into_iter().collect())
        }
    };
    let vr = if geometry.bits_allocated > 8 { VR::OW } else { VR::OB };
    obj.put(DataElement::new(tags::PIXEL_DATA, vr, new_value));
    obj.put(DataElement::new(tags::BURNED_IN_ANNOTATION, VR::CS, "NO"));
    Ok(())
}

struct Geometry {
    rows: usize,
    columns: usize,
    samples: usize,
    planar: bool,
    frames: usize,
    bits_allocated: u32,
    bits_stored: u32,
    signed: bool,
    photometric: String,
}

impl Geometry {
    fn of(obj: &DefaultDicomObject) -> Result<Geometry, DeidError> {
        let need = |tag, name: &str| number(obj, tag).ok_or_else(|| DeidError::Mask(format!("missing or bad {name}")));
        let bits_allocated = need(tags::BITS_ALLOCATED, "Bits Allocated")?;
        Ok(Geometry {
            rows: need(tags::ROWS, "Rows")? as usize,
            columns: need(tags::COLUMNS, "Columns")? as usize,
            samples: number(obj, tags::SAMPLES_PER_PIXEL).unwrap_or(1) as usize,
            planar: number(obj, tags::PLANAR_CONFIGURATION).unwrap_or(0) == 1,
            frames: text(obj, tags::NUMBER_OF_FRAMES).and_then(|s| s.parse().ok()).unwrap_or(1usize).max(1),
            bits_allocated,
            bits_stored: number(obj, tags::BITS_STORED).unwrap_or(bits_allocated),
            signed: number(obj, tags::PIXEL_REPRESENTATION).unwrap_or(0) == 1,
            photometric: text(obj, tags::PHOTOMETRIC_INTERPRETATION).unwrap_or_default().to_uppercase(),
        })
    }

    /// The stored value that displays black, per sample (same for every sample but YBR chroma).
    fn black(&self) -> Result<u64, DeidError> {
        let bs = self.bits_stored.clamp(1, 32);
        match self.photometric.as_str() {
            "MONOCHROME1" if self.signed => Ok((1u64 << (bs - 1)) - 1),
            "MONOCHROME1" => Ok((1u64 << bs) - 1),
            // Two's complement minimum, stored in the allocated width.
            "MONOCHROME2" if self.signed => Ok((1u64 << (bs - 1)).wrapping_neg() & mask_bits(self.bits_allocated)),
            "MONOCHROME2" | "RGB" | "YBR_FULL" => Ok(0),
            other => Err(DeidError::Mask(format!("cannot mask native {other} pixel data"))),
        }
    }

    /// Sample index of (frame, y, x, sample).
    fn index(&self, frame: usize, y: usize, x: usize, s: usize) -> usize {
        let plane = self.rows * self.columns;
        let base = frame * plane * self.samples;
        if self.planar {
            base + s * plane + y * self.columns + x
        } else {
            base + (y * self.columns + x) * self.samples + s
        }
    }

    fn for_each(&self, rule: &MaskRule, len: usize, mut f: impl FnMut(usize, usize)) -> Result<(), DeidError> {
        let total = [self.rows, self.columns, self.samples]
            .iter()
            .try_fold(self.frames, |acc, &n| acc.checked_mul(n))
            .ok_or_else(|| DeidError::Mask("Number of Frames × Rows × Columns × Samples overflows".into()))?;
        if self.bits_allocated % 8 != 0 || self.bits_allocated == 0 {
            return Err(DeidError::Mask(format!("cannot mask {}-bit pixel data", self.bits_allocated)));
        }
        if len < total {
            return Err(DeidError::Mask(format!("Pixel Data holds {len} samples, the header says {total}")));
        }
        for frame in 0..self.frames {
            for r in &rule.rects {
                let [x0, y0, w, h] = r.map(|v| v as usize);
                for y in y0.min(self.rows)..(y0 + h).min(self.rows) {
                    for x in x0.min(self.columns)..(x0 + w).min(self.columns) {
                        for s in 0..self.samples {
                            f(self.index(frame, y, x, s), s);
                        }
                    }
                }
            }
        }
        Ok(())
    }

    fn chroma(&self, s: usize, black: u64) -> u64 {
        if self.photometric == "YBR_FULL" && s > 0 {
            1u64 << (self.bits_stored.clamp(1, 32) - 1)
        } else {
            black
        }
    }

    fn fill(&self, words: &mut [u16], rule: &MaskRule, black: u16) -> Result<(), DeidError> {
        self.for_each(rule, words.len(), |i, s| words[i] = self.chroma(s, u64::from(black)) as u16)
    }

    fn fill_bytes(&self, bytes: &mut [u8], rule: &MaskRule, black: u64) -> Result<(), DeidError> {
        let width = (self.bits_allocated / 8) as usize;
        self.for_each(rule, bytes.len() / width.max(1), |i, s| {
            let v = self.chroma(s, black).to_le_bytes();
            bytes[i * width..(i + 1) * width].copy_from_slice(&v[..width]);
        })
    }
}

fn mask_bits(bits: u32) -> u64 {
    if bits >= 64 {
        u64::MAX
    } else {
        (1u64 << bits) - 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(rects: Vec<[u32; 4]>) -> MaskRule {
        MaskRule { modality: "US".into(), manufacturer: None, model: None, rows: 4, columns: 5, rects }
    }

    fn geometry(samples: usize, planar: bool, photometric: &str) -> Geometry {
        Geometry {
            rows: 4,
            columns: 5,
            samples,
            planar,
            frames: 2,
            bits_allocated: 8,
            bits_stored: 8,
            signed: false,
            photometric: photometric.into(),
        }
    }

    #[test]
    fn masks_rectangles_in_every_frame_and_layout() {
        let g = geometry(3, false, "RGB");
        let mut px = vec![200u8; 2 * 4 * 5 * 3];
        g.fill_bytes(&mut px, &rule(vec![[1, 1, 2, 2], [4, 3, 9, 9]]), 0).unwrap();
        let at = |px: &[u8], f, y, x, s| px[g.index(f, y, x, s)];
        for f in 0..2 {
            assert_eq!(at(&px, f, 1, 1, 0), 0);
            assert_eq!(at(&px, f, 2, 2, 2), 0);
            assert_eq!(at(&px, f, 3, 4, 1), 0); // clipped rectangle
            assert_eq!(at(&px, f, 0, 0, 0), 200);
            assert_eq!(at(&px, f, 1, 3, 0), 200);
        }
        assert_eq!(px.iter().filter(|&&v| v == 0).count(), 2 * (4 + 1) * 3);
        let p = geometry(3, true, "YBR_FULL");
        let mut px = vec![200u8; 2 * 4 * 5 * 3];
        p.fill_bytes(&mut px, &rule(vec![[0, 0, 1, 1]]), 0).unwrap();
        assert_eq!((px[0], px[20], px[40]), (0, 128, 128)); // planar: Y plane, Cb plane, Cr plane
    }

    #[test]
    fn black_depends_on_photometric_and_sign() {
        let mut g = geometry(1, false, "MONOCHROME1");
        g.bits_allocated = 16;
        g.bits_stored = 12;
        assert_eq!(g.black().unwrap(), 4095);
        g.photometric = "MONOCHROME2".into();
        assert_eq!(g.black().unwrap(), 0);
        g.signed = true;
        assert_eq!(g.black().unwrap(), 0xF800); // -2048 in 16 bits
        g.photometric = "PALETTE COLOR".into();
        assert!(g.black().is_err());
    }

    #[test]
    fn short_pixel_data_is_an_error() {
        let mut g = geometry(1, false, "MONOCHROME2");
        let mut px = vec![1u8; 10];
        assert!(g.fill_bytes(&mut px, &rule(vec![[0, 0, 1, 1]]), 0).is_err());
        g.frames = usize::MAX / 2;
        assert!(g.fill_bytes(&mut px, &rule(vec![[0, 0, 1, 1]]), 0).is_err());
    }
}
