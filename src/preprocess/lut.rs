//! Grayscale and palette transforms: the Modality LUT (rescale or LUT sequence), the VOI LUT
//! (window centre/width with LINEAR, LINEAR_EXACT or SIGMOID per PS3.3 C.11.2.1.2, or the VOI
//! LUT sequence), MONOCHROME1 inversion, presentation to 8 bit, and palette colour lookup.
//!
//! Attributes are looked up at the top level of the data set first, then in the frame's item of
//! the Per-frame Functional Groups Sequence, then in the Shared Functional Groups Sequence
//! (enhanced multi-frame objects keep rescale and window there).

use dicom_core::value::Value;
use dicom_core::Tag;
use dicom_dictionary_std::tags;
use dicom_object::mem::InMemDicomObject;
use dicom_object::DefaultDicomObject;

use super::PixelError;

/// A lookup table: `data[i]` is the output for input `first + i`; outputs use `bits` bits.
#[derive(Debug, Clone, PartialEq)]
pub struct Lut {
    pub first: i64,
    pub bits: u16,
    pub data: Vec<u16>,
}

impl Lut {
    #[inline]
    pub fn lookup(&self, x: i64) -> u16 {
        let i = (x - self.first).clamp(0, self.data.len() as i64 - 1);
        self.data[i as usize]
    }

    pub fn max_output(&self) -> f64 {
        ((1u32 << self.bits.min(16)) - 1) as f64
    }
}

/// Modality LUT: stored values to modality units (for example Hounsfield units).
#[derive(Debug, Clone, PartialEq)]
pub enum ModalityLut {
    Rescale { slope: f64, intercept: f64 },
    Table(Lut),
}

impl ModalityLut {
    #[inline]
    pub fn apply(&self, x: i64) -> f64 {
        match self {
            ModalityLut::Rescale { slope, intercept } => x as f64 * slope + intercept,
            ModalityLut::Table(l) => l.lookup(x) as f64,
        }
    }
}

/// VOI LUT Function (0028,1056).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VoiFunction {
    Linear,
    LinearExact,
    Sigmoid,
}

/// A window: centre and width in modality units.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Window {
    pub center: f64,
    pub width: f64,
}

impl std::str::FromStr for Window {
    type Err = String;
    /// `C,W`, for example `40,400`.
    fn from_str(s: &str) -> Result<Self, String> {
        let (c, w) = s.split_once(',').ok_or_else(|| format!("window {s:?}: expected CENTER,WIDTH"))?;
        let center: f64 = c.trim().parse().map_err(|_| format!("window centre {c:?} is not a number"))?;
        let width: f64 = w.trim().parse().map_err(|_| format!("window width {w:?} is not a number"))?;
        if !center.is_finite() || !width.is_finite() || width <= 0.0 {
            return Err(format!("window {s:?}: the width must be positive"));
        }
        Ok(Window { center, width })
    }
}

/// The VOI transform chosen for a rendering.
#[derive(Debug, Clone, PartialEq)]
pub enum Voi {
    Window(Window, VoiFunction),
    Table(Lut),
    /// Map the frame's minimum..maximum (modality units) linearly to 0..255.
    MinMax,
}

/// Everything needed to present one frame of grayscale or palette data.
#[derive(Debug, Clone, PartialEq)]
pub struct Presentation {
    pub modality: ModalityLut,
    pub windows: Vec<Window>,
    pub function: VoiFunction,
    pub voi_luts: Vec<Lut>,
    /// Red, green and blue palette colour LUTs (PALETTE COLOR).
    pub palette: Option<[Lut; 3]>,
}

impl Presentation {
    /// Reads the presentation attributes for `frame` (from 0) of `obj`.
    pub fn from_object(obj: &DefaultDicomObject, frame: u32, signed: bool) -> Result<Presentation, PixelError> {
        let root: &InMemDicomObject = obj;
        let modality =
            match find_item(root, frame, tags::MODALITY_LUT_SEQUENCE, tags::PIXEL_VALUE_TRANSFORMATION_SEQUENCE) {
                Some(item) if item.element_opt(tags::LUT_DATA).ok().flatten().is_some() => {
                    ModalityLut::Table(read_lut(item, tags::LUT_DESCRIPTOR, tags::LUT_DATA, signed)?)
                }
                _ => {
                    let slope = find_f64s(root, frame, tags::RESCALE_SLOPE, tags::PIXEL_VALUE_TRANSFORMATION_SEQUENCE)
                        .and_then(|v| v.first().copied())
                        .filter(|s| s.is_finite() && *s != 0.0)
                        .unwrap_or(1.0);
                    let intercept =
                        find_f64s(root, frame, tags::RESCALE_INTERCEPT, tags::PIXEL_VALUE_TRANSFORMATION_SEQUENCE)
                            .and_then(|v| v.first().copied())
                            .filter(|s| s.is_finite())
                            .unwrap_or(0.0);
                    ModalityLut::Rescale { slope, intercept }
                }
            };
        let centers = find_f64s(root, frame, tags::WINDOW_CENTER, tags::FRAME_VOILUT_SEQUENCE).unwrap_or_default();
        let widths = find_f64s(root, frame, tags::WINDOW_WIDTH, tags::FRAME_VOILUT_SEQUENCE).unwrap_or_default();
        let windows = centers
            .iter()
            .zip(&widths)
            .map(|(&center, &width)| Window { center, width })
            .filter(|w| w.center.is_finite() && w.width.is_finite() && w.width > 0.0)
            .collect();
        let function = match find_str(root, frame, tags::VOILUT_FUNCTION, tags::FRAME_VOILUT_SEQUENCE).as_deref() {
            Some("LINEAR_EXACT") => VoiFunction::LinearExact,
            Some("SIGMOID") => VoiFunction::Sigmoid,
            _ => VoiFunction::Linear,
        };
        let mut voi_luts = Vec::new();
        if let Some(items) = root.element_opt(tags::VOILUT_SEQUENCE).ok().flatten().and_then(|e| e.items()) {
            for item in items {
                voi_luts.push(read_lut(item, tags::LUT_DESCRIPTOR, tags::LUT_DATA, signed)?);
            }
        }
        let palette = if root.element_opt(tags::RED_PALETTE_COLOR_LOOKUP_TABLE_DESCRIPTOR).ok().flatten().is_some() {
            Some(read_palette(root)?)
        } else {
            None
        };
        Ok(Presentation { modality, windows, function, voi_luts, palette })
    }

    /// The VOI a viewer shows by default: the first window, else the first VOI LUT, else min/max.
    pub fn default_voi(&self) -> Voi {
        if let Some(w) = self.windows.first() {
            Voi::Window(*w, self.function)
        } else if let Some(l) = self.voi_luts.first() {
            Voi::Table(l.clone())
        } else {
            Voi::MinMax
        }
    }
}

/// Window function per PS3.3 C.11.2.1.2, output in 0..=255 (not rounded).
#[inline]
pub fn window(x: f64, w: Window, f: VoiFunction) -> f64 {
    const Y_MAX: f64 = 255.0;
    let Window { center: c, width } = w;
    match f {
        VoiFunction::Linear => {
            let width = width.max(1.0);
            if x <= c - 0.5 - (width - 1.0) / 2.0 {
                0.0
            } else if x > c - 0.5 + (width - 1.0) / 2.0 {
                Y_MAX
            } else if width <= 1.0 {
                // A width of 1 is a threshold: the interval above is empty.
                Y_MAX
            } else {
                ((x - (c - 0.5)) / (width - 1.0) + 0.5) * Y_MAX
            }
        }
        VoiFunction::LinearExact => {
            if x <= c - width / 2.0 {
                0.0
            } else if x > c + width / 2.0 {
                Y_MAX
            } else {
                ((x - c) / width + 0.5) * Y_MAX
            }
        }
        VoiFunction::Sigmoid => Y_MAX / (1.0 + (-4.0 * (x - c) / width).exp()),
    }
}

/// Maps stored grayscale values to 8-bit display values: Modality LUT, then VOI, then
/// MONOCHROME1 inversion. `values` yields the stored values of one frame.
pub struct GrayMapper {
    /// Table over stored values `lo..=hi` when the range is small; else computed per pixel.
    table: Option<(i64, Vec<u8>)>,
    modality: ModalityLut,
    voi: Voi,
    min_max: (f64, f64),
    invert: bool,
}

impl GrayMapper {
    /// `stored_range`: the smallest and largest stored value of the frame.
    pub fn new(modality: &ModalityLut, voi: &Voi, stored_range: (i64, i64), invert: bool) -> GrayMapper {
        let (lo, hi) = stored_range;
        let mut m =
            GrayMapper { table: None, modality: modality.clone(), voi: voi.clone(), min_max: (0.0, 0.0), invert };
        if let Voi::MinMax = voi {
            let (mut a, mut b) = (f64::INFINITY, f64::NEG_INFINITY);
            if hi - lo <= 1 << 20 {
                for x in lo..=hi {
                    let y = modality.apply(x);
                    a = a.min(y);
                    b = b.max(y);
                }
            } else {
                for y in [modality.apply(lo), modality.apply(hi)] {
                    a = a.min(y);
                    b = b.max(y);
                }
            }
            m.min_max = (a, b);
        }
        if hi >= lo && hi - lo <= 1 << 20 {
            let t = (lo..=hi).map(|x| m.compute(x)).collect();
            m.table = Some((lo, t));
        }
        m
    }

    fn compute(&self, x: i64) -> u8 {
        let y = self.modality.apply(x);
        let v = match &self.voi {
            Voi::Window(w, f) => window(y, *w, *f),
            Voi::Table(l) => l.lookup(y.round() as i64) as f64 / l.max_output() * 255.0,
            Voi::MinMax => {
                let (a, b) = self.min_max;
                if b > a {
                    (y - a) / (b - a) * 255.0
                } else {
                    0.0
                }
            }
        };
        let v = v.round().clamp(0.0, 255.0) as u8;
        if self.invert {
            255 - v
        } else {
            v
        }
    }

    #[inline]
    pub fn map(&self, x: i64) -> u8 {
        match &self.table {
            Some((lo, t)) => t[(x - lo) as usize],
            None => self.compute(x),
        }
    }
}

fn element_f64s(obj: &InMemDicomObject, tag: Tag) -> Option<Vec<f64>> {
    let e = obj.element_opt(tag).ok().flatten()?;
    e.value().to_multi_float64().ok().filter(|v| !v.is_empty())
}

fn element_str(obj: &InMemDicomObject, tag: Tag) -> Option<String> {
    let e = obj.element_opt(tag).ok().flatten()?;
    e.value().to_str().ok().map(|s| s.trim().to_ascii_uppercase()).filter(|s| !s.is_empty())
}

/// The item of functional group `group` for `frame`: per-frame first, then shared.
fn functional_group(root: &InMemDicomObject, frame: u32, group: Tag) -> Option<&InMemDicomObject> {
    let seq_item = |fg: Tag, idx: usize| {
        root.element_opt(fg)
            .ok()
            .flatten()
            .and_then(|e| e.items())
            .and_then(|items| items.get(idx))
            .and_then(|item| item.element_opt(group).ok().flatten())
            .and_then(|e| e.items())
            .and_then(|items| items.first())
    };
    seq_item(tags::PER_FRAME_FUNCTIONAL_GROUPS_SEQUENCE, frame as usize)
        .or_else(|| seq_item(tags::SHARED_FUNCTIONAL_GROUPS_SEQUENCE, 0))
}

fn find_f64s(root: &InMemDicomObject, frame: u32, tag: Tag, group: Tag) -> Option<Vec<f64>> {
    element_f64s(root, tag).or_else(|| functional_group(root, frame, group).and_then(|g| element_f64s(g, tag)))
}

fn find_str(root: &InMemDicomObject, frame: u32, tag: Tag, group: Tag) -> Option<String> {
    element_str(root, tag).or_else(|| functional_group(root, frame, group).and_then(|g| element_str(g, tag)))
}

/// The first item of sequence `seq`, at the top level or in the frame's functional group.
fn find_item(root: &InMemDicomObject, frame: u32, seq: Tag, group: Tag) -> Option<&InMemDicomObject> {
    if let Some(item) = root.element_opt(seq).ok().flatten().and_then(|e| e.items()).and_then(|i| i.first()) {
        return Some(item);
    }
    functional_group(root, frame, group)
        .and_then(|g| g.element_opt(seq).ok().flatten())
        .and_then(|e| e.items())
        .and_then(|i| i.first())
}

/// 16-bit words of a LUT Data element (OW, US or SS), or bytes of an 8-bit one (OB).
fn lut_words(obj: &InMemDicomObject, tag: Tag) -> Result<(Vec<u16>, bool), PixelError> {
    let e = obj.element_opt(tag).ok().flatten().ok_or(PixelError::Missing("LUT Data"))?;
    match e.value() {
        Value::Primitive(p) => {
            use dicom_core::value::PrimitiveValue as P;
            Ok(match p {
                P::U16(v) => (v.to_vec(), false),
                P::I16(v) => (v.iter().map(|&x| x as u16).collect(), false),
                P::U8(v) => (v.iter().map(|&x| x as u16).collect(), true),
                other => {
                    let b = other.to_bytes();
                    (b.chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]])).collect(), false)
                }
            })
        }
        _ => Err(PixelError::BadAttribute("LUT Data is not a primitive value".into())),
    }
}

/// Reads a LUT from its descriptor (entries, first mapped value, bits) and data.
pub fn read_lut(obj: &InMemDicomObject, desc_tag: Tag, data_tag: Tag, signed: bool) -> Result<Lut, PixelError> {
    let d = obj.element_opt(desc_tag).ok().flatten().ok_or(PixelError::Missing("LUT Descriptor"))?;
    let desc: Vec<i64> =
        d.value().to_multi_int::<i64>().map_err(|_| PixelError::BadAttribute("LUT Descriptor".into()))?;
    if desc.len() != 3 {
        return Err(PixelError::BadAttribute(format!("LUT Descriptor has {} values, not 3", desc.len())));
    }
    let entries = if desc[0] == 0 { 65536 } else { desc[0] & 0xFFFF } as usize;
    // The first mapped value is US or SS depending on the pixel representation.
    let first = if signed { desc[1] as u16 as i16 as i64 } else { desc[1] & 0xFFFF };
    let bits = desc[2] as u16;
    if !(1..=16).contains(&bits) {
        return Err(PixelError::BadAttribute(format!("LUT Descriptor bits {bits}")));
    }
    let (words, bytes) = lut_words(obj, data_tag)?;
    let data = if words.len() >= entries {
        words[..entries].to_vec()
    } else if bits <= 8 && !bytes && words.len() * 2 >= entries {
        // 8-bit entries packed two to a 16-bit word.
        words.iter().flat_map(|w| [(w & 0xFF), (w >> 8)]).take(entries).collect()
    } else {
        return Err(PixelError::BadAttribute(format!(
            "LUT Data holds {} entries, the descriptor {entries}",
            words.len()
        )));
    };
    Ok(Lut { first, bits, data })
}

fn read_palette(root: &InMemDicomObject) -> Result<[Lut; 3], PixelError> {
    if root.element_opt(tags::SEGMENTED_RED_PALETTE_COLOR_LOOKUP_TABLE_DATA).ok().flatten().is_some()
        && root.element_opt(tags::RED_PALETTE_COLOR_LOOKUP_TABLE_DATA).ok().flatten().is_none()
    {
        return Err(PixelError::UnsupportedPhotometric("PALETTE COLOR with segmented LUTs".into()));
    }
    let mut luts = [
        read_lut(
            root,
            tags::RED_PALETTE_COLOR_LOOKUP_TABLE_DESCRIPTOR,
            tags::RED_PALETTE_COLOR_LOOKUP_TABLE_DATA,
            false,
        )?,
        read_lut(
            root,
            tags::GREEN_PALETTE_COLOR_LOOKUP_TABLE_DESCRIPTOR,
            tags::GREEN_PALETTE_COLOR_LOOKUP_TABLE_DATA,
            false,
        )?,
        read_lut(
            root,
            tags::BLUE_PALETTE_COLOR_LOOKUP_TABLE_DESCRIPTOR,
            tags::BLUE_PALETTE_COLOR_LOOKUP_TABLE_DATA,
            false,
        )?,
    ];
    // Some writers declare 16 bits but store 8-bit values; present what is there.
    if luts.iter().all(|l| l.bits == 16 && l.data.iter().all(|&v| v <= 255)) {
        for l in &mut luts {
            l.bits = 8;
        }
    }
    Ok(luts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linear_window_follows_the_standard() {
        let w = Window { center: 40.0, width: 400.0 };
        assert_eq!(window(-160.0, w, VoiFunction::Linear), 0.0);
        assert_eq!(window(240.0, w, VoiFunction::Linear), 255.0);
        // x = c - 0.5 maps to the middle of the output range.
        assert!((window(39.5, w, VoiFunction::Linear) - 127.5).abs() < 1e-9);
        // Just above the lower bound c - 0.5 - (w-1)/2 = -160 the output starts rising.
        assert!(window(-159.0, w, VoiFunction::Linear) > 0.0);
    }

    #[test]
    fn linear_exact_and_sigmoid() {
        let w = Window { center: 100.0, width: 50.0 };
        assert_eq!(window(75.0, w, VoiFunction::LinearExact), 0.0);
        assert!((window(100.0, w, VoiFunction::LinearExact) - 127.5).abs() < 1e-9);
        assert_eq!(window(125.1, w, VoiFunction::LinearExact), 255.0);
        assert!((window(100.0, w, VoiFunction::Sigmoid) - 127.5).abs() < 1e-9);
        // At c - w/2 the sigmoid gives 255 / (1 + e^2).
        let lo = window(75.0, w, VoiFunction::Sigmoid);
        assert!((lo - 255.0 / (1.0 + 2f64.exp())).abs() < 1e-9, "{lo}");
    }

    #[test]
    fn mapper_inverts_monochrome1_and_applies_rescale() {
        let m = ModalityLut::Rescale { slope: 2.0, intercept: -100.0 };
        let voi = Voi::Window(Window { center: 0.0, width: 100.0 }, VoiFunction::LinearExact);
        let normal = GrayMapper::new(&m, &voi, (0, 200), false);
        let inverted = GrayMapper::new(&m, &voi, (0, 200), true);
        // stored 50 → 0 HU → mid grey; stored 0 → -100 → black.
        assert_eq!(normal.map(50), 128);
        assert_eq!(normal.map(0), 0);
        assert_eq!(normal.map(200), 255);
        assert_eq!(inverted.map(0), 255);
        assert_eq!(inverted.map(200), 0);
    }

    #[test]
    fn lut_lookup_clamps() {
        let l = Lut { first: 10, bits: 8, data: vec![1, 2, 3] };
        assert_eq!(l.lookup(0), 1);
        assert_eq!(l.lookup(11), 2);
        assert_eq!(l.lookup(99), 3);
    }

    #[test]
    fn window_argument_parses() {
        assert_eq!("40,400".parse::<Window>().unwrap(), Window { center: 40.0, width: 400.0 });
        assert!("40".parse::<Window>().is_err());
        assert!("40,0".parse::<Window>().is_err());
        assert!("a,1".parse::<Window>().is_err());
    }
}

#[cfg(test)]
mod corpus_tests {
    use super::*;

    fn open(name: &str) -> DefaultDicomObject {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/dicom/pydicom");
        crate::preprocess::open(&dir.join(name)).unwrap()
    }

    #[test]
    fn reads_window_and_rescale_from_the_corpus() {
        let ct = Presentation::from_object(&open("CT_small.dcm"), 0, true).unwrap();
        assert_eq!(ct.modality, ModalityLut::Rescale { slope: 1.0, intercept: -1024.0 });
        assert!(ct.windows.is_empty());
        assert_eq!(ct.default_voi(), Voi::MinMax);
        let mr = Presentation::from_object(&open("MR_small.dcm"), 0, true).unwrap();
        assert_eq!(mr.windows, vec![Window { center: 600.0, width: 1600.0 }]);
    }
}
