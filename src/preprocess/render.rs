//! Presentation: decoded frames to 8-bit images (what a viewer shows), resampling, and PNG/JPEG
//! encoding.

use super::decode::{Photometric, Pixels, Samples};
use super::lut::{GrayMapper, Presentation, Voi, VoiFunction, Window};
use super::PixelError;

/// An 8-bit image: `channels` 1 (grey) or 3 (RGB), rows top to bottom.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    pub width: u32,
    pub height: u32,
    pub channels: u8,
    pub data: Vec<u8>,
}

/// What to override from the file's own presentation.
#[derive(Debug, Clone, Copy, Default)]
pub struct RenderOptions {
    /// Window in modality units (replaces the file's window or VOI LUT).
    pub window: Option<Window>,
    /// VOI LUT function for `window` (default: the file's, else LINEAR).
    pub function: Option<VoiFunction>,
}

/// Renders frame `index` (within `pixels`, from 0) for display.
pub fn render(pixels: &Pixels, index: u32, pres: &Presentation, opts: &RenderOptions) -> Result<Image, PixelError> {
    if index >= pixels.frames {
        return Err(PixelError::NoSuchFrame { frame: index, frames: pixels.frames });
    }
    let n = pixels.frame_len();
    let start = index as usize * n;
    let (w, h) = (pixels.columns, pixels.rows);
    let data = match pixels.photometric {
        Photometric::Monochrome1 | Photometric::Monochrome2 => {
            let voi = match opts.window {
                Some(win) => Voi::Window(win, opts.function.unwrap_or(pres.function)),
                None => pres.default_voi(),
            };
            let invert = pixels.photometric == Photometric::Monochrome1;
            gray(&pixels.samples, start, n, &pres.modality, &voi, invert)
        }
        Photometric::Rgb => {
            let shift_max = ((1u64 << pixels.bits_stored.min(32)) - 1) as f64;
            map_samples(&pixels.samples, start, n, |v| {
                if pixels.bits_stored == 8 {
                    v.clamp(0, 255) as u8
                } else {
                    (v.max(0) as f64 * 255.0 / shift_max).round().clamp(0.0, 255.0) as u8
                }
            })
        }
        Photometric::Palette => {
            let luts = pres.palette.as_ref().ok_or(PixelError::Missing("Palette Color Lookup Table"))?;
            let mut out = Vec::with_capacity(n * 3);
            for i in start..start + n {
                let x = pixels.samples.get(i);
                for l in luts {
                    let v = l.lookup(x);
                    out.push(if l.bits > 8 { (v >> (l.bits - 8)) as u8 } else { v as u8 });
                }
            }
            out
        }
    };
    let channels = if pixels.photometric.is_grayscale() { 1 } else { 3 };
    Ok(Image { width: w, height: h, channels, data })
}

fn map_samples(s: &Samples, start: usize, n: usize, f: impl Fn(i64) -> u8) -> Vec<u8> {
    match s {
        Samples::U8(v) => v[start..start + n].iter().map(|&x| f(x as i64)).collect(),
        Samples::I8(v) => v[start..start + n].iter().map(|&x| f(x as i64)).collect(),
        Samples::U16(v) => v[start..start + n].iter().map(|&x| f(x as i64)).collect(),
        Samples::I16(v) => v[start..start + n].iter().map(|&x| f(x as i64)).collect(),
        Samples::U32(v) => v[start..start + n].iter().map(|&x| f(x as i64)).collect(),
        Samples::I32(v) => v[start..start + n].iter().map(|&x| f(x as i64)).collect(),
    }
}

fn min_max<T: Copy + Ord + Into<i64>>(v: &[T]) -> (i64, i64) {
    let mut it = v.iter().copied();
    let Some(first) = it.next() else { return (0, 0) };
    let (lo, hi) = it.fold((first, first), |(a, b), x| (a.min(x), b.max(x)));
    (lo.into(), hi.into())
}

fn gray(s: &Samples, start: usize, n: usize, modality: &super::lut::ModalityLut, voi: &Voi, invert: bool) -> Vec<u8> {
    let range = match s {
        Samples::U8(v) => min_max(&v[start..start + n]),
        Samples::I8(v) => min_max(&v[start..start + n]),
        Samples::U16(v) => min_max(&v[start..start + n]),
        Samples::I16(v) => min_max(&v[start..start + n]),
        Samples::U32(v) => min_max(&v[start..start + n]),
        Samples::I32(v) => min_max(&v[start..start + n]),
    };
    let m = GrayMapper::new(modality, voi, range, invert);
    map_samples(s, start, n, |x| m.map(x))
}

/// Luma (ITU-R BT.601) of an RGB image; a grey image is returned as is.
pub fn to_grayscale(img: Image) -> Image {
    if img.channels == 1 {
        return img;
    }
    let data = img
        .data
        .chunks_exact(3)
        .map(|p| (0.299 * p[0] as f32 + 0.587 * p[1] as f32 + 0.114 * p[2] as f32).round().clamp(0.0, 255.0) as u8)
        .collect();
    Image { channels: 1, data, ..img }
}

/// An RGB copy of a grey image; an RGB image is returned as is.
pub fn to_rgb(img: Image) -> Image {
    if img.channels == 3 {
        return img;
    }
    let data = img.data.iter().flat_map(|&v| [v, v, v]).collect();
    Image { channels: 3, data, ..img }
}

/// The centred square crop of an image (side = the shorter side).
pub fn center_square(img: &Image) -> Image {
    let side = img.width.min(img.height);
    crop(img, (img.width - side) / 2, (img.height - side) / 2, side, side)
}

/// A rectangle of `img` (clamped to its bounds).
pub fn crop(img: &Image, x: u32, y: u32, w: u32, h: u32) -> Image {
    let x = x.min(img.width);
    let y = y.min(img.height);
    let w = w.min(img.width - x);
    let h = h.min(img.height - y);
    let c = img.channels as usize;
    let mut data = Vec::with_capacity(w as usize * h as usize * c);
    for row in y..y + h {
        let s = (row as usize * img.width as usize + x as usize) * c;
        data.extend_from_slice(&img.data[s..s + w as usize * c]);
    }
    Image { width: w, height: h, channels: img.channels, data }
}

/// The size that fits `width`×`height` inside `max`×`max`, keeping the aspect ratio (never
/// enlarging).
pub fn fit_within(width: u32, height: u32, max: u32) -> (u32, u32) {
    if width <= max && height <= max {
        return (width, height);
    }
    let s = max as f64 / width.max(height) as f64;
    (((width as f64 * s).round() as u32).max(1), ((height as f64 * s).round() as u32).max(1))
}

/// Resamples to `width`×`height` with a triangle (bilinear) filter widened by the scale factor
/// when shrinking, so downscaling averages every source pixel (no aliasing).
pub fn resize(img: &Image, width: u32, height: u32) -> Image {
    if width == img.width && height == img.height {
        return img.clone();
    }
    let (width, height) = (width.max(1), height.max(1));
    let c = img.channels as usize;
    let hw = weights(img.width as usize, width as usize);
    let vw = weights(img.height as usize, height as usize);
    // Horizontal pass: (src rows) × (dst columns).
    let mut tmp = vec![0f32; img.height as usize * width as usize * c];
    for y in 0..img.height as usize {
        let src = &img.data[y * img.width as usize * c..(y + 1) * img.width as usize * c];
        let dst = &mut tmp[y * width as usize * c..(y + 1) * width as usize * c];
        for (x, (first, ws)) in hw.iter().enumerate() {
            for ch in 0..c {
                let mut acc = 0f32;
                for (k, w) in ws.iter().enumerate() {
                    acc += w * src[(first + k) * c + ch] as f32;
                }
                dst[x * c + ch] = acc;
            }
        }
    }
    // Vertical pass.
    let row = width as usize * c;
    let mut data = vec![0u8; height as usize * row];
    for (y, (first, ws)) in vw.iter().enumerate() {
        let dst = &mut data[y * row..(y + 1) * row];
        let mut acc = vec![0f32; row];
        for (k, w) in ws.iter().enumerate() {
            let src = &tmp[(first + k) * row..(first + k + 1) * row];
            for (a, s) in acc.iter_mut().zip(src) {
                *a += w * s;
            }
        }
        for (d, a) in dst.iter_mut().zip(acc) {
            *d = a.round().clamp(0.0, 255.0) as u8;
        }
    }
    Image { width, height, channels: img.channels, data }
}

/// For each output index: the first source index and the normalised filter weights. Shrinking
/// uses the area of overlap (a box filter: every source pixel counts once); enlarging uses a
/// triangle (bilinear) filter.
fn weights(src: usize, dst: usize) -> Vec<(usize, Vec<f32>)> {
    let scale = src as f64 / dst as f64;
    (0..dst)
        .map(|i| {
            let (lo, ws): (usize, Vec<f64>) = if scale >= 1.0 {
                let (a, b) = (i as f64 * scale, (i + 1) as f64 * scale);
                let lo = a.floor() as usize;
                let hi = (b.ceil() as usize).min(src);
                (lo, (lo..hi).map(|j| (b.min(j as f64 + 1.0) - a.max(j as f64)).max(0.0)).collect())
            } else {
                let center = (i as f64 + 0.5) * scale - 0.5;
                let lo = center.floor().max(0.0) as usize;
                let hi = (lo + 2).min(src);
                (lo, (lo..hi).map(|j| (1.0 - (j as f64 - center).abs()).max(0.0)).collect())
            };
            let sum: f64 = ws.iter().sum();
            let ws: Vec<f32> = if sum > 0.0 {
                ws.iter().map(|w| (w / sum) as f32).collect()
            } else {
                // At the edges of an enlargement the only neighbour may have weight 0: nearest.
                let mut v = vec![0.0; ws.len().max(1)];
                v[0] = 1.0;
                v
            };
            (lo, ws)
        })
        .collect()
}

/// Output image formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Png,
    Jpeg,
}

impl Format {
    pub fn mime(self) -> &'static str {
        match self {
            Format::Png => "image/png",
            Format::Jpeg => "image/jpeg",
        }
    }
}

/// Encodes as PNG (fast deflate) or JPEG (quality 90).
pub fn encode(img: &Image, format: Format) -> Result<Vec<u8>, PixelError> {
    let mut out = Vec::new();
    match format {
        Format::Png => {
            let mut enc = png::Encoder::new(&mut out, img.width, img.height);
            enc.set_color(if img.channels == 1 { png::ColorType::Grayscale } else { png::ColorType::Rgb });
            enc.set_depth(png::BitDepth::Eight);
            enc.set_compression(png::Compression::Fast);
            let mut w = enc.write_header().map_err(|e| PixelError::Encode(e.to_string()))?;
            w.write_image_data(&img.data).map_err(|e| PixelError::Encode(e.to_string()))?;
            w.finish().map_err(|e| PixelError::Encode(e.to_string()))?;
        }
        Format::Jpeg => {
            let (w, h) = (u16::try_from(img.width), u16::try_from(img.height));
            let (Ok(w), Ok(h)) = (w, h) else {
                return Err(PixelError::Encode("image too large for JPEG".into()));
            };
            let ct = if img.channels == 1 { jpeg_encoder::ColorType::Luma } else { jpeg_encoder::ColorType::Rgb };
            jpeg_encoder::Encoder::new(&mut out, 90)
                .encode(&img.data, w, h, ct)
                .map_err(|e| PixelError::Encode(e.to_string()))?;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn img(w: u32, h: u32, data: Vec<u8>) -> Image {
        Image { width: w, height: h, channels: 1, data }
    }

    #[test]
    fn downscale_averages() {
        let i = img(4, 2, vec![0, 0, 200, 200, 0, 0, 200, 200]);
        let r = resize(&i, 2, 1);
        assert_eq!(r.data, vec![0, 200]);
        let flat = resize(&img(6, 6, vec![77; 36]), 3, 3);
        assert!(flat.data.iter().all(|&v| v == 77));
    }

    #[test]
    fn upscale_interpolates_and_keeps_constant() {
        let r = resize(&img(2, 1, vec![0, 100]), 4, 1);
        assert_eq!(r.data.len(), 4);
        assert!(r.data[0] <= r.data[1] && r.data[1] <= r.data[2] && r.data[2] <= r.data[3]);
        assert!(resize(&img(3, 3, vec![9; 9]), 7, 5).data.iter().all(|&v| v == 9));
    }

    #[test]
    fn fit_keeps_aspect() {
        assert_eq!(fit_within(2614, 3072, 256), (218, 256));
        assert_eq!(fit_within(100, 50, 256), (100, 50));
    }

    #[test]
    fn crop_and_square() {
        let i = img(3, 2, vec![1, 2, 3, 4, 5, 6]);
        assert_eq!(center_square(&i).data, vec![1, 2, 4, 5]);
        assert_eq!(crop(&i, 1, 1, 5, 5).data, vec![5, 6]);
    }

    #[test]
    fn luma() {
        let rgb = Image { width: 2, height: 1, channels: 3, data: vec![255, 0, 0, 255, 255, 255] };
        assert_eq!(to_grayscale(rgb).data, vec![76, 255]);
    }

    #[test]
    fn png_and_jpeg_encode() {
        let i = img(8, 8, (0..64).collect());
        let p = encode(&i, Format::Png).unwrap();
        assert_eq!(&p[1..4], b"PNG");
        let j = encode(&i, Format::Jpeg).unwrap();
        assert_eq!(&j[..2], &[0xFF, 0xD8]);
    }
}
