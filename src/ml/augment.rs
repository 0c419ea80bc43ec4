//! Training-time augmentation for chest radiographs.
//!
//! What is used, and why:
//! - **No horizontal (or vertical) flips.** A flipped chest film is anatomically wrong (heart
//!   on the right: situs inversus, dextrocardia); the network would learn that laterality does
//!   not matter, and a flipped film is not a plausible input. Rotation by 90° is ruled out for
//!   the same reason.
//! - **Small rotations (±10°), scalings (0.9–1.1) and translations (±8 % of the side)**:
//!   patient positioning and collimation vary by that much between acquisitions.
//! - **Gamma (0.8–1.25), contrast (0.8–1.2) and brightness (±0.08)**: exposure, detector
//!   response and the window a film was exported with vary between machines and sites.
//!
//! Geometry is applied by inverse mapping with bilinear sampling and edge replication (no
//! black corners the network could key on). Everything is driven by the caller's seeded RNG,
//! so an epoch's augmentations are reproducible.

use rand::Rng;

/// Augmentation ranges; `none()` disables every transform.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Augment {
    pub max_rotate_deg: f64,
    pub scale: (f64, f64),
    pub max_shift: f64,
    pub gamma: (f64, f64),
    pub contrast: (f64, f64),
    pub max_brightness: f64,
}

impl Default for Augment {
    fn default() -> Self {
        Augment {
            max_rotate_deg: 10.0,
            scale: (0.9, 1.1),
            max_shift: 0.08,
            gamma: (0.8, 1.25),
            contrast: (0.8, 1.2),
            max_brightness: 0.08,
        }
    }
}

impl Augment {
    pub fn none() -> Augment {
        Augment {
            max_rotate_deg: 0.0,
            scale: (1.0, 1.0),
            max_shift: 0.0,
            gamma: (1.0, 1.0),
            contrast: (1.0, 1.0),
            max_brightness: 0.0,
        }
    }

    /// One line for the model card.
    pub fn describe(&self) -> String {
        format!(
            "rotation ±{}°, scale {}–{}, shift ±{}% of side, gamma {}–{}, contrast {}–{}, brightness ±{}; no flips",
            self.max_rotate_deg,
            self.scale.0,
            self.scale.1,
            self.max_shift * 100.0,
            self.gamma.0,
            self.gamma.1,
            self.contrast.0,
            self.contrast.1,
            self.max_brightness
        )
    }

    /// Writes the augmented image (values in [0, 1]) of the 8-bit `src` (`w`×`h`) into `out`.
    pub fn apply<R: Rng>(&self, src: &[u8], w: usize, h: usize, rng: &mut R, out: &mut [f32]) {
        let uni = |rng: &mut R, (a, b): (f64, f64)| if b > a { rng.gen_range(a..b) } else { a };
        let angle = uni(rng, (-self.max_rotate_deg, self.max_rotate_deg)).to_radians();
        let scale = uni(rng, self.scale);
        let tx = uni(rng, (-self.max_shift, self.max_shift)) * w as f64;
        let ty = uni(rng, (-self.max_shift, self.max_shift)) * h as f64;
        let gamma = uni(rng, self.gamma);
        let contrast = uni(rng, self.contrast);
        let bright = uni(rng, (-self.max_brightness, self.max_brightness));

        let (cx, cy) = ((w as f64 - 1.0) / 2.0, (h as f64 - 1.0) / 2.0);
        let (cos, sin) = (angle.cos() / scale, angle.sin() / scale);
        let px = |x: usize, y: usize| src[y * w + x] as f64 / 255.0;
        let identity = angle == 0.0 && scale == 1.0 && tx == 0.0 && ty == 0.0;
        let mut sum = 0.0;
        for oy in 0..h {
            for ox in 0..w {
                let v = if identity {
                    px(ox, oy)
                } else {
                    // Inverse map: output → source.
                    let (dx, dy) = (ox as f64 - cx - tx, oy as f64 - cy - ty);
                    let sx = (cos * dx + sin * dy + cx).clamp(0.0, (w - 1) as f64);
                    let sy = (-sin * dx + cos * dy + cy).clamp(0.0, (h - 1) as f64);
                    let (x1, y1) = (sx.floor() as usize, sy.floor() as usize);
                    let (x2, y2) = ((x1 + 1).min(w - 1), (y1 + 1).min(h - 1));
                    let (fx, fy) = (sx - x1 as f64, sy - y1 as f64);
                    let top = px(x1, y1) * (1.0 - fx) + px(x2, y1) * fx;
                    let bot = px(x1, y2) * (1.0 - fx) + px(x2, y2) * fx;
                    top * (1.0 - fy) + bot * fy
                };
                let v = v.powf(gamma);
                sum += v;
                out[oy * w + ox] = v as f32;
            }
        }
        let mean = (sum / (w * h) as f64) as f32;
        for v in out.iter_mut() {
            *v = ((*v - mean) * contrast as f32 + mean + bright as f32).clamp(0.0, 1.0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn none_is_identity_and_default_is_seeded() {
        let src: Vec<u8> = (0..64).map(|i| (i * 4) as u8).collect();
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let mut out = vec![0f32; 64];
        Augment::none().apply(&src, 8, 8, &mut rng, &mut out);
        for (o, s) in out.iter().zip(&src) {
            assert!((o - *s as f32 / 255.0).abs() < 1e-6);
        }
        let run = |seed| {
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            let mut out = vec![0f32; 64];
            Augment::default().apply(&src, 8, 8, &mut rng, &mut out);
            out
        };
        assert_eq!(run(7), run(7));
        assert_ne!(run(7), run(8));
        assert!(run(7).iter().all(|v| (0.0..=1.0).contains(v)));
    }

    #[test]
    fn never_mirrors_a_lateral_marker() {
        // A bright column at the far left must stay on the left half under every draw.
        let (w, h) = (16, 16);
        let mut src = vec![0u8; w * h];
        for y in 0..h {
            src[y * w + 1] = 255;
        }
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let mut out = vec![0f32; w * h];
        for _ in 0..200 {
            Augment::default().apply(&src, w, h, &mut rng, &mut out);
            let (mut left, mut right) = (0.0, 0.0);
            for y in 0..h {
                for x in 0..w {
                    if x < w / 2 {
                        left += out[y * w + x];
                    } else {
                        right += out[y * w + x];
                    }
                }
            }
            assert!(left > right, "marker moved to the right half");
        }
    }
}
