//! Training and evaluation data: MedMNIST-style npz archives, folders of class subfolders,
//! and image folders with a CSV of labels; PNG decoding; and the DICOM seam.
//!
//! Everything becomes a [`Split`] of 8-bit grayscale frames of one size, centre-cropped and
//! resized to the model's input. DICOM pixel decoding belongs to `preprocess`: this module
//! only receives an 8-bit grayscale [`GrayFrame`] through [`set_dicom_decoder`], so the model
//! sees exactly the pixels the viewer shows.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use rand::seq::SliceRandom;
use rand::SeedableRng;

use super::MlError;

/// One 8-bit grayscale frame, row-major, `pixels.len() == width * height`.
#[derive(Debug, Clone, PartialEq)]
pub struct GrayFrame {
    pub width: usize,
    pub height: usize,
    pub pixels: Vec<u8>,
}

impl GrayFrame {
    pub fn new(width: usize, height: usize, pixels: Vec<u8>) -> Result<GrayFrame, MlError> {
        if width == 0 || height == 0 || pixels.len() != width * height {
            return Err(MlError::Data(format!(
                "a {width}x{height} frame needs {} pixels, got {}",
                width * height,
                pixels.len()
            )));
        }
        Ok(GrayFrame { width, height, pixels })
    }

    /// Centre-crops to the target aspect ratio, then resizes to `w`×`h` with the pixel
    /// pipeline's resampler (area averaging when shrinking, bilinear when enlarging), so that
    /// training, inference and DICOM input share one geometry (ARCHITECTURE.md invariant 10).
    pub fn resized(&self, w: usize, h: usize) -> GrayFrame {
        use crate::preprocess::render;
        if self.width == w && self.height == h {
            return self.clone();
        }
        let img = render::Image {
            width: self.width as u32,
            height: self.height as u32,
            channels: 1,
            data: self.pixels.clone(),
        };
        // Crop box with the target aspect ratio, centred.
        let (cw, ch) = if self.width * h > self.height * w {
            ((self.height * w / h).max(1), self.height)
        } else {
            (self.width, (self.width * h / w).max(1))
        };
        let cropped =
            render::crop(&img, ((self.width - cw) / 2) as u32, ((self.height - ch) / 2) as u32, cw as u32, ch as u32);
        let out = render::resize(&cropped, w as u32, h as u32);
        GrayFrame { width: out.width as usize, height: out.height as usize, pixels: out.data }
    }
}

/// Decodes a DICOM file to the 8-bit grayscale frame a reader would see (modality and VOI
/// LUTs applied). Supplied by the pixel pipeline (`preprocess`) at start-up.
pub type DicomDecoder = fn(&Path) -> Result<GrayFrame, String>;

static DICOM_DECODER: OnceLock<DicomDecoder> = OnceLock::new();

/// Connects the pixel pipeline's DICOM decoder. The first call wins.
pub fn set_dicom_decoder(decoder: DicomDecoder) {
    let _ = DICOM_DECODER.set(decoder);
}

/// Reads one image file: PNG here, DICOM through the decoder set with [`set_dicom_decoder`].
pub fn read_image(path: &Path) -> Result<GrayFrame, MlError> {
    let ext = path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase);
    match ext.as_deref() {
        Some("png") => read_png(path),
        Some("dcm") | Some("dicom") | None => match DICOM_DECODER.get() {
            Some(decode) => decode(path).map_err(|e| MlError::Data(format!("{}: {e}", path.display()))),
            None => Err(MlError::Data(format!(
                "{}: DICOM input needs the pixel pipeline's decoder, which is not connected in this build \
                 (convert to PNG, or use a build with the preprocess module)",
                path.display()
            ))),
        },
        Some(other) => {
            Err(MlError::Data(format!("{}: unsupported image type `.{other}` (PNG or DICOM)", path.display())))
        }
    }
}

/// Decodes a PNG to 8-bit grayscale (RGB by Rec. 601 luma, alpha dropped, 16-bit scaled).
pub fn read_png(path: &Path) -> Result<GrayFrame, MlError> {
    let bad = |e: &dyn std::fmt::Display| MlError::Data(format!("{}: {e}", path.display()));
    let file = std::fs::File::open(path).map_err(|e| bad(&e))?;
    let mut decoder = png::Decoder::new(std::io::BufReader::new(file));
    decoder.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
    let mut reader = decoder.read_info().map_err(|e| bad(&e))?;
    let size = reader.output_buffer_size().ok_or_else(|| bad(&"image too large"))?;
    if size > 512 << 20 {
        return Err(bad(&"image too large (over 512 MiB decoded)"));
    }
    let mut buf = vec![0u8; size];
    let info = reader.next_frame(&mut buf).map_err(|e| bad(&e))?;
    let (w, h) = (info.width as usize, info.height as usize);
    let channels = match info.color_type {
        png::ColorType::Grayscale => 1,
        png::ColorType::GrayscaleAlpha => 2,
        png::ColorType::Rgb => 3,
        png::ColorType::Rgba => 4,
        png::ColorType::Indexed => return Err(bad(&"indexed PNG was not expanded")),
    };
    let mut pixels = Vec::with_capacity(w * h);
    for y in 0..h {
        let row = &buf[y * info.line_size..y * info.line_size + w * channels];
        for px in row.chunks_exact(channels) {
            pixels.push(match channels {
                1 | 2 => px[0],
                _ => (0.299 * px[0] as f64 + 0.587 * px[1] as f64 + 0.114 * px[2] as f64).round() as u8,
            });
        }
    }
    GrayFrame::new(w, h, pixels)
}

/// Writes an 8-bit grayscale PNG (used by tests and to export saliency maps).
pub fn write_png(path: &Path, frame: &GrayFrame) -> Result<(), MlError> {
    let bad = |e: &dyn std::fmt::Display| MlError::Data(format!("{}: {e}", path.display()));
    let file = std::fs::File::create(path).map_err(|e| bad(&e))?;
    let mut enc = png::Encoder::new(std::io::BufWriter::new(file), frame.width as u32, frame.height as u32);
    enc.set_color(png::ColorType::Grayscale);
    enc.set_depth(png::BitDepth::Eight);
    let mut w = enc.write_header().map_err(|e| bad(&e))?;
    w.write_image_data(&frame.pixels).map_err(|e| bad(&e))?;
    w.finish().map_err(|e| bad(&e))
}

/// Labelled frames of one size: `images` holds `len() * height * width` bytes.
#[derive(Debug, Clone, Default)]
pub struct Split {
    pub height: usize,
    pub width: usize,
    pub images: Vec<u8>,
    pub labels: Vec<bool>,
}

impl Split {
    /// Number of images (labels may be absent for an unlabelled split).
    pub fn len(&self) -> usize {
        self.images.len().checked_div(self.height * self.width).unwrap_or(0)
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    pub fn image(&self, i: usize) -> &[u8] {
        let n = self.height * self.width;
        &self.images[i * n..(i + 1) * n]
    }
    pub fn positives(&self) -> usize {
        self.labels.iter().filter(|&&l| l).count()
    }
    fn push(&mut self, frame: &GrayFrame, label: bool) {
        let f = frame.resized(self.width, self.height);
        self.images.extend_from_slice(&f.pixels);
        self.labels.push(label);
    }
    /// The frames resized to `w`×`h` (a no-op when they already are).
    pub fn resized(self, w: usize, h: usize) -> Split {
        if self.width == w && self.height == h {
            return self;
        }
        let mut out = Split { height: h, width: w, images: Vec::new(), labels: Vec::new() };
        for i in 0..self.len() {
            let f = GrayFrame { width: self.width, height: self.height, pixels: self.image(i).to_vec() };
            out.push(&f, self.labels.get(i).copied().unwrap_or(false));
        }
        if self.labels.is_empty() {
            out.labels.clear();
        }
        out
    }
}

/// Training data: a training and a validation split, and the class names (negative first).
#[derive(Debug, Clone)]
pub struct TrainingData {
    pub train: Split,
    pub val: Split,
    pub labels: [String; 2],
    /// How the validation split was obtained, for the model card.
    pub val_source: String,
}

fn npz_images(
    npz: &mut npyz::npz::NpzArchive<std::io::BufReader<std::fs::File>>,
    path: &Path,
    split: &str,
) -> Result<Split, MlError> {
    let bad = |m: String| MlError::Data(format!("{}: {m}", path.display()));
    let names: Vec<String> = npz.array_names().map(str::to_string).collect();
    let img_name = format!("{split}_images");
    let img = npz
        .by_name(&img_name)
        .map_err(|e| bad(e.to_string()))?
        .ok_or_else(|| bad(format!("no array `{img_name}` (arrays: {})", names.join(", "))))?;
    let shape = img.shape().to_vec();
    if shape.len() != 3 && !(shape.len() == 4 && shape[3] == 1) {
        return Err(bad(format!("`{img_name}` must be N×H×W grayscale, got shape {shape:?}")));
    }
    let (n, h, w) = (shape[0] as usize, shape[1] as usize, shape[2] as usize);
    if n == 0 || h == 0 || w == 0 {
        return Err(bad(format!("`{img_name}` is empty: shape {shape:?}")));
    }
    let images: Vec<u8> = img.into_vec().map_err(|e| bad(format!("`{img_name}` must be uint8: {e}")))?;
    if images.len() != n * h * w {
        return Err(bad(format!("`{img_name}` holds {} values, its shape says {}", images.len(), n * h * w)));
    }
    Ok(Split { height: h, width: w, images, labels: Vec::new() })
}

/// Reads only `<split>_images` (for predicting on a split whose labels are kept apart).
pub fn load_npz_images(path: &Path, split: &str) -> Result<Split, MlError> {
    let mut npz = npyz::npz::NpzArchive::open(path).map_err(|e| MlError::Data(format!("{}: {e}", path.display())))?;
    npz_images(&mut npz, path, split)
}

/// Reads `<split>_images` (N×H×W uint8) and `<split>_labels` (N or N×1, 0/1) from a
/// MedMNIST-style npz archive.
pub fn load_npz_split(path: &Path, split: &str) -> Result<Split, MlError> {
    let bad = |m: String| MlError::Data(format!("{}: {m}", path.display()));
    let mut npz = npyz::npz::NpzArchive::open(path).map_err(|e| bad(e.to_string()))?;
    let Split { height: h, width: w, images, .. } = npz_images(&mut npz, path, split)?;
    let n = images.len() / (h * w);
    let names: Vec<String> = npz.array_names().map(str::to_string).collect();
    let lab_name = format!("{split}_labels");
    let missing = |n: &str| bad(format!("no array `{n}` (arrays: {})", names.join(", ")));
    let lab = npz.by_name(&lab_name).map_err(|e| bad(e.to_string()))?.ok_or_else(|| missing(&lab_name))?;
    let lshape = lab.shape().to_vec();
    if lshape.first() != Some(&(n as u64)) || lshape.iter().skip(1).any(|&d| d != 1) {
        return Err(bad(format!("`{lab_name}` must have shape ({n},) or ({n}, 1), got {lshape:?}")));
    }
    let raw: Vec<i64> = match lab.dtype() {
        npyz::DType::Plain(t) if t.type_char() == npyz::TypeChar::Uint && t.size_field() == 1 => {
            lab.into_vec::<u8>().map_err(|e| bad(e.to_string()))?.into_iter().map(i64::from).collect()
        }
        _ => lab.into_vec::<i64>().map_err(|e| bad(format!("`{lab_name}` must be uint8 or int64: {e}")))?,
    };
    let mut labels = Vec::with_capacity(n);
    for (i, v) in raw.into_iter().enumerate() {
        match v {
            0 => labels.push(false),
            1 => labels.push(true),
            other => return Err(bad(format!("`{lab_name}`[{i}] = {other}: a binary classifier needs labels 0 or 1"))),
        }
    }
    Ok(Split { height: h, width: w, images, labels })
}

/// Loads training data from an npz archive (train and val splits), a folder of class
/// subfolders (optionally with `train/` and `val/` inside), or a folder of images with a
/// labels CSV. Folder data without a `val/` folder is split with `seed`, stratified, holding
/// out `val_fraction` of each class. `size` (width, height) resizes every frame; without it an
/// archive keeps its own size and folder images become 28×28.
pub fn load_training_data(
    path: &Path,
    labels_csv: Option<&Path>,
    size: Option<(usize, usize)>,
    seed: u64,
    val_fraction: f64,
) -> Result<TrainingData, MlError> {
    if path.is_file() {
        let mut train = load_npz_split(path, "train")?;
        let mut val = load_npz_split(path, "val")?;
        if let Some((w, h)) = size {
            train = train.resized(w, h);
            val = val.resized(w, h);
        }
        return Ok(TrainingData {
            train,
            val,
            labels: ["normal".into(), "pneumonia".into()],
            val_source: "the archive's val split".into(),
        });
    }
    if !path.is_dir() {
        return Err(MlError::Data(format!("{}: no such file or folder", path.display())));
    }
    let (w, h) = size.unwrap_or((28, 28));
    let (items, names) = match labels_csv {
        Some(csv) => labelled_by_csv(path, csv)?,
        None if path.join("train").is_dir() && path.join("val").is_dir() => {
            let (tr, names) = class_folders(&path.join("train"), None)?;
            let (va, _) = class_folders(&path.join("val"), Some(&names))?;
            let train = read_items(&tr, w, h)?;
            let val = read_items(&va, w, h)?;
            return Ok(TrainingData { train, val, labels: names, val_source: "the val/ folder".into() });
        }
        None => class_folders(path, None)?,
    };
    let (tr, va) = stratified_split(items, seed, val_fraction);
    Ok(TrainingData {
        train: read_items(&tr, w, h)?,
        val: read_items(&va, w, h)?,
        labels: names,
        val_source: format!("{:.0}% of each class held out with seed {seed}", val_fraction * 100.0),
    })
}

fn read_items(items: &[(PathBuf, bool)], w: usize, h: usize) -> Result<Split, MlError> {
    let mut s = Split { height: h, width: w, images: Vec::new(), labels: Vec::new() };
    for (p, l) in items {
        s.push(&read_image(p)?, *l);
    }
    if s.is_empty() {
        return Err(MlError::Data("no images found".into()));
    }
    Ok(s)
}

fn is_image(p: &Path) -> bool {
    matches!(
        p.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).as_deref(),
        Some("png" | "dcm" | "dicom")
    )
}

/// Exactly two class subfolders; the negative class is the one named like "normal" (or
/// "negative", "0"), else the first alphabetically.
fn class_folders(dir: &Path, expect: Option<&[String; 2]>) -> Result<(Vec<(PathBuf, bool)>, [String; 2]), MlError> {
    let io = |e: std::io::Error| MlError::Data(format!("{}: {e}", dir.display()));
    let mut classes: Vec<String> = std::fs::read_dir(dir)
        .map_err(io)?
        .filter_map(Result::ok)
        .filter(|e| e.path().is_dir())
        .filter_map(|e| e.file_name().to_str().map(str::to_string))
        .collect();
    classes.sort();
    if classes.len() != 2 {
        return Err(MlError::Data(format!(
            "{}: a binary classifier needs exactly two class subfolders, found {classes:?}",
            dir.display()
        )));
    }
    let negative_like = |s: &str| matches!(s.to_ascii_lowercase().as_str(), "normal" | "negative" | "0" | "healthy");
    if negative_like(&classes[1]) && !negative_like(&classes[0]) {
        classes.swap(0, 1);
    }
    let names = [classes[0].clone(), classes[1].clone()];
    if let Some(e) = expect {
        if e != &names {
            return Err(MlError::Data(format!("{}: classes {names:?} differ from {e:?}", dir.display())));
        }
    }
    let mut items = Vec::new();
    for (label, name) in names.iter().enumerate() {
        for entry in walkdir::WalkDir::new(dir.join(name)).sort_by_file_name() {
            let entry = entry.map_err(|e| MlError::Data(e.to_string()))?;
            if entry.file_type().is_file() && is_image(entry.path()) {
                items.push((entry.path().to_path_buf(), label == 1));
            }
        }
    }
    Ok((items, names))
}

/// A CSV with a header naming a file column (`file`, `path`, `filename` or `image`) and a
/// `label` column; paths are relative to `dir`. Labels are 0/1 or two class names.
fn labelled_by_csv(dir: &Path, csv_path: &Path) -> Result<(Vec<(PathBuf, bool)>, [String; 2]), MlError> {
    let bad = |m: String| MlError::Data(format!("{}: {m}", csv_path.display()));
    let mut rdr = csv::Reader::from_path(csv_path).map_err(|e| bad(e.to_string()))?;
    let headers = rdr.headers().map_err(|e| bad(e.to_string()))?.clone();
    let col = |names: &[&str]| headers.iter().position(|h| names.contains(&h.trim().to_ascii_lowercase().as_str()));
    let fcol = col(&["file", "path", "filename", "image"]).ok_or_else(|| bad("no `file` column".into()))?;
    let lcol = col(&["label", "class"]).ok_or_else(|| bad("no `label` column".into()))?;
    let mut rows = Vec::new();
    for (i, rec) in rdr.records().enumerate() {
        let rec = rec.map_err(|e| bad(e.to_string()))?;
        let f = rec.get(fcol).unwrap_or("").trim().to_string();
        let l = rec.get(lcol).unwrap_or("").trim().to_string();
        if f.is_empty() || l.is_empty() {
            return Err(bad(format!("row {}: empty file or label", i + 2)));
        }
        rows.push((dir.join(f), l));
    }
    let mut classes: Vec<String> =
        rows.iter().map(|(_, l)| l.clone()).collect::<std::collections::BTreeSet<_>>().into_iter().collect();
    if classes.len() != 2 {
        return Err(bad(format!("a binary classifier needs exactly two labels, found {classes:?}")));
    }
    let negative_like = |s: &str| matches!(s.to_ascii_lowercase().as_str(), "normal" | "negative" | "0" | "healthy");
    if negative_like(&classes[1]) && !negative_like(&classes[0]) {
        classes.swap(0, 1);
    }
    let items = rows.into_iter().map(|(p, l)| (p, l == classes[1])).collect();
    Ok((items, [classes[0].clone(), classes[1].clone()]))
}

fn stratified_split(items: Vec<(PathBuf, bool)>, seed: u64, frac: f64) -> (Vec<(PathBuf, bool)>, Vec<(PathBuf, bool)>) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed ^ 0x5eed_5b17);
    let mut by_class: BTreeMap<bool, Vec<(PathBuf, bool)>> = BTreeMap::new();
    for it in items {
        by_class.entry(it.1).or_default().push(it);
    }
    let (mut train, mut val) = (Vec::new(), Vec::new());
    for (_, mut v) in by_class {
        v.shuffle(&mut rng);
        let k = ((v.len() as f64 * frac).round() as usize).clamp(1, v.len().saturating_sub(1).max(1));
        val.extend(v.drain(..k));
        train.extend(v);
    }
    (train, val)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resize_averages_when_shrinking_and_keeps_size_when_equal() {
        let f = GrayFrame::new(4, 2, vec![0, 100, 200, 255, 0, 100, 200, 255]).unwrap();
        let r = f.resized(2, 1);
        // The 4×2 frame is cropped to 2×1 aspect (all of it), then each output pixel averages
        // a 2×2 block.
        assert_eq!(r.pixels, vec![50, 228]);
        assert_eq!(f.resized(4, 2), f);
        assert!(GrayFrame::new(3, 3, vec![0; 8]).is_err());
    }

    #[test]
    fn png_round_trip_and_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.png");
        let f = GrayFrame::new(3, 2, vec![1, 2, 3, 4, 5, 6]).unwrap();
        write_png(&p, &f).unwrap();
        assert_eq!(read_image(&p).unwrap(), f);
        let bad = dir.path().join("bad.png");
        std::fs::write(&bad, b"not a png").unwrap();
        assert!(read_image(&bad).unwrap_err().to_string().contains("bad.png"));
        let dcm = dir.path().join("x.dcm");
        std::fs::write(&dcm, b"").unwrap();
        if DICOM_DECODER.get().is_none() {
            assert!(read_image(&dcm).unwrap_err().to_string().contains("decoder"));
        }
    }

    #[test]
    fn npz_errors_name_the_problem() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.npz");
        std::fs::write(&p, b"PK garbage").unwrap();
        assert!(load_npz_split(&p, "train").is_err());
        assert!(load_training_data(&dir.path().join("missing"), None, None, 0, 0.1).is_err());
    }

    #[test]
    fn class_folders_and_csv_labels() {
        let dir = tempfile::tempdir().unwrap();
        for (class, n) in [("PNEUMONIA", 5), ("NORMAL", 5)] {
            std::fs::create_dir_all(dir.path().join(class)).unwrap();
            for i in 0..n {
                let v = if class == "NORMAL" { 10 } else { 200 };
                write_png(
                    &dir.path().join(class).join(format!("{i}.png")),
                    &GrayFrame::new(8, 8, vec![v; 64]).unwrap(),
                )
                .unwrap();
            }
        }
        let d = load_training_data(dir.path(), None, Some((4, 4)), 1, 0.2).unwrap();
        assert_eq!(d.labels, ["NORMAL".to_string(), "PNEUMONIA".to_string()]);
        assert_eq!(d.train.len() + d.val.len(), 10);
        assert_eq!(d.val.len(), 2);
        for s in [&d.train, &d.val] {
            for i in 0..s.len() {
                assert_eq!(s.image(i)[0] > 100, s.labels[i]);
            }
        }
        let csv = dir.path().join("labels.csv");
        std::fs::write(&csv, "file,label\nNORMAL/0.png,0\nPNEUMONIA/0.png,1\nNORMAL/1.png,0\nPNEUMONIA/1.png,1\n")
            .unwrap();
        let d = load_training_data(dir.path(), Some(&csv), Some((4, 4)), 1, 0.5).unwrap();
        assert_eq!(d.labels, ["0".to_string(), "1".to_string()]);
        assert_eq!(d.train.len() + d.val.len(), 4);
    }
}
