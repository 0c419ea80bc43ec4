//! The CPU inference engine: a trained [`Net`] compiled for inference on the CPU.
//!
//! Owns: folding each BatchNorm into the convolution before it (`w·γ/√(σ²+ε)`, bias
//! `β − μ·γ/√(σ²+ε)`), packing the weights for the microkernels in [`kernel`], and running
//! the network in NHWC with zero borders kept in the buffers (no padding or im2col pass;
//! bias, residual add and ReLU fused into the convolution's store). Global average pooling,
//! the linear head and the closed-form Grad-CAM map follow, as in [`Net::forward_with_cam`].
//! Must not: train (burn and its autodiff own training) or change what the network computes:
//! tests hold it to burn's own forward pass on every ISA the CPU has.
//!
//! Why it exists: burn flex runs each convolution as im2col + a general matrix multiply in
//! NCHW, and at 28×28 with 24–96 channels most of its time goes to building the im2col
//! buffers, separate BatchNorm/ReLU/add passes and memory traffic (see docs/status/ml.md).
//! Work is split across cores by image for a batch and by output row for a single image.

pub mod kernel;
#[cfg(test)]
mod tests;

use rayon::prelude::*;

use self::kernel::{Isa, Tile, BLOCK};
use super::model::Net;
use super::MlError;

/// An activation buffer's shape: `h × w` interior, one zero row/column on every side,
/// `cs` floats per position (channels rounded up to whole blocks; 1 for the input image).
#[derive(Debug, Clone, Copy)]
struct Shape {
    h: usize,
    w: usize,
    c: usize,
    cs: usize,
}

impl Shape {
    fn len(&self) -> usize {
        (self.h + 2) * (self.w + 2) * self.cs
    }
    /// Offset of interior position (y, x).
    fn at(&self, y: usize, x: usize) -> usize {
        ((y + 1) * (self.w + 2) + x + 1) * self.cs
    }
}

/// A group of `v` output blocks computed together, with its packed weights.
#[derive(Debug)]
struct Group {
    block0: usize,
    v: usize,
    /// `[tap][ci][v × 16]`.
    weights: Vec<f32>,
    /// `[v × 16]`.
    bias: Vec<f32>,
}

#[derive(Debug)]
struct Conv {
    k: usize,
    stride: usize,
    src: usize,
    dst: usize,
    residual: Option<usize>,
    relu: bool,
    groups: Vec<Group>,
    /// Tap offsets within the source buffer.
    taps: Vec<usize>,
    /// Positions per tile.
    tile: usize,
}

/// A compiled network for one input size.
#[derive(Debug)]
pub struct Engine {
    isa: Isa,
    shapes: Vec<Shape>,
    convs: Vec<Conv>,
    head_w: Vec<f32>,
    head_b: f32,
    feat: usize,
}

/// One image's outputs: the logit and (when asked) the class-activation map at feature
/// resolution, row-major.
pub struct Output {
    pub logit: f32,
    pub cam: Vec<f32>,
}

fn read(t: burn::tensor::Tensor<1>) -> Result<Vec<f32>, MlError> {
    t.into_data().try_to_vec::<f32>().map_err(|e| MlError::Device(format!("reading weights: {e:?}")))
}

impl Engine {
    /// Compiles `net` for `height × width` inputs with the best ISA this CPU has.
    pub fn compile(net: &Net, height: usize, width: usize) -> Result<Engine, MlError> {
        Engine::compile_for(net, height, width, Isa::detect())
    }

    pub fn compile_for(net: &Net, height: usize, width: usize, isa: Isa) -> Result<Engine, MlError> {
        if height == 0 || width == 0 {
            return Err(MlError::Data("input size must be positive".into()));
        }
        let mut e = Engine { isa, shapes: Vec::new(), convs: Vec::new(), head_w: Vec::new(), head_b: 0.0, feat: 0 };
        e.shapes.push(Shape { h: height, w: width, c: 1, cs: 1 });
        let mut x = e.add_conv(0, &net.stem, &net.stem_bn, true, None)?;
        for b in &net.blocks {
            let t1 = e.add_conv(x, &b.conv1, &b.bn1, true, None)?;
            let skip = match &b.shortcut {
                Some(s) => e.add_conv(x, &s.conv, &s.bn, false, None)?,
                None => x,
            };
            x = e.add_conv(t1, &b.conv2, &b.bn2, true, Some(skip))?;
        }
        e.feat = x;
        e.head_w = read(net.head.weight.val().flatten::<1>(0, 1))?;
        e.head_b = match &net.head.bias {
            Some(b) => read(b.val())?[0],
            None => 0.0,
        };
        if e.head_w.len() != e.shapes[x].c {
            return Err(MlError::Mismatch("head does not match the last stage's channels".into()));
        }
        Ok(e)
    }

    pub fn isa(&self) -> Isa {
        self.isa
    }

    /// Adds conv → BN (folded) → [+ residual] → [ReLU]; returns the output buffer index.
    fn add_conv(
        &mut self,
        src: usize,
        conv: &burn::nn::conv::Conv2d,
        bn: &burn::nn::BatchNorm,
        relu: bool,
        residual: Option<usize>,
    ) -> Result<usize, MlError> {
        let [cout, cin, kh, kw] = conv.weight.val().dims();
        let stride = conv.stride[0];
        if kh != kw || !(kh == 1 || kh == 3) || conv.stride[1] != stride || conv.groups != 1 || conv.dilation != [1, 1]
        {
            return Err(MlError::Mismatch(format!("the CPU engine has no kernel for a {kh}×{kw} convolution")));
        }
        let s = self.shapes[src];
        if s.c != cin {
            return Err(MlError::Mismatch(format!("convolution expects {cin} channels, gets {}", s.c)));
        }
        let k = kh;
        let pad = k / 2;
        let out = Shape {
            h: (s.h + 2 * pad - k) / stride + 1,
            w: (s.w + 2 * pad - k) / stride + 1,
            c: cout,
            cs: cout.div_ceil(BLOCK) * BLOCK,
        };
        if let Some(r) = residual {
            let rs = self.shapes[r];
            if (rs.h, rs.w, rs.cs) != (out.h, out.w, out.cs) {
                return Err(MlError::Mismatch("residual does not match the block's output".into()));
            }
        }
        // Fold BN: y = (conv(x) − μ)·γ/√(σ²+ε) + β.
        let w = conv.weight.val().into_data().try_to_vec::<f32>().map_err(|e| MlError::Device(format!("{e:?}")))?;
        let gamma = read(bn.gamma.val())?;
        let beta = read(bn.beta.val())?;
        let mean = read(bn.running_mean.value())?;
        let var = read(bn.running_var.value())?;
        let scale: Vec<f32> = (0..cout).map(|o| gamma[o] / (var[o] + bn.epsilon as f32).sqrt()).collect();
        let conv_bias = match &conv.bias {
            Some(b) => read(b.val())?,
            None => vec![0.0; cout],
        };
        // Tap (ky, kx) of output (y, x) reads padded input (y·s + ky + 1 − pad, x·s + kx + 1 − pad);
        // the tile's base pointer is at (y·s + 1 − pad, x·s + 1 − pad), so taps are relative.
        let row = (s.w + 2) * s.cs;
        let taps: Vec<usize> = (0..k * k).map(|t| (t / k) * row + (t % k) * s.cs).collect();
        let (max_r, max_v) = self.isa.max_tile();
        let blocks = out.cs / BLOCK;
        let ngroups = blocks.div_ceil(max_v);
        let mut groups = Vec::new();
        let mut b0 = 0;
        for g in 0..ngroups {
            let v = (blocks - b0).div_ceil(ngroups - g);
            let lanes = v * BLOCK;
            let mut weights = vec![0f32; k * k * cin * lanes];
            let mut bias = vec![0f32; lanes];
            for l in 0..lanes {
                let o = b0 * BLOCK + l;
                if o >= cout {
                    continue;
                }
                bias[l] = (conv_bias[o] - mean[o]) * scale[o] + beta[o];
                for ci in 0..cin {
                    for t in 0..k * k {
                        weights[(t * cin + ci) * lanes + l] = w[((o * cin + ci) * k * k) + t] * scale[o];
                    }
                }
            }
            groups.push(Group { block0: b0, v, weights, bias });
            b0 += v;
        }
        // Tile width: the largest that divides the row (no ragged tail) if it is at least
        // half the maximum, else the maximum.
        let tile = (max_r.div_ceil(2)..=max_r).rev().find(|r| out.w % r == 0).unwrap_or(max_r).min(out.w);
        self.shapes.push(out);
        let dst = self.shapes.len() - 1;
        self.convs.push(Conv { k, stride, src, dst, residual, relu, groups, taps, tile });
        Ok(dst)
    }

    /// Computes output rows `rows` of convolution `c` in `bufs`.
    ///
    /// # Safety
    /// `bufs[i]` must point at buffers of `self.shapes[i].len()` floats; the rows written
    /// must not be written concurrently by another call.
    unsafe fn conv_rows(&self, c: &Conv, bufs: &[*mut f32], rows: std::ops::Range<usize>) {
        let (si, so) = (self.shapes[c.src], self.shapes[c.dst]);
        let pad = c.k / 2;
        let src = bufs[c.src] as *const f32;
        let dst = bufs[c.dst];
        let res = c.residual.map(|r| bufs[r] as *const f32);
        for y in rows {
            for g in &c.groups {
                let mut x0 = 0;
                while x0 < so.w {
                    let r = c.tile.min(so.w - x0);
                    let iy = y * c.stride + 1 - pad;
                    let ix = x0 * c.stride + 1 - pad;
                    let o = so.at(y, x0) + g.block0 * BLOCK;
                    let t = Tile {
                        input: src.add((iy * (si.w + 2) + ix) * si.cs),
                        taps: c.taps.as_ptr(),
                        ntaps: c.taps.len(),
                        px_stride: c.stride * si.cs,
                        cin: si.c,
                        weights: g.weights.as_ptr(),
                        bias: g.bias.as_ptr(),
                        residual: res.map_or(std::ptr::null(), |p| p.add(o)),
                        out: dst.add(o),
                        out_px: so.cs,
                        relu: c.relu,
                    };
                    kernel::run(self.isa, r, g.v, &t);
                    x0 += r;
                }
            }
        }
    }

    fn alloc(&self) -> Vec<Vec<f32>> {
        self.shapes.iter().map(|s| vec![0f32; s.len()]).collect()
    }

    fn load_input(&self, buf: &mut [f32], image: &[f32]) {
        let s = self.shapes[0];
        for y in 0..s.h {
            let o = s.at(y, 0);
            buf[o..o + s.w].copy_from_slice(&image[y * s.w..(y + 1) * s.w]);
        }
    }

    fn head(&self, buf: &[f32], cam: bool) -> Output {
        let s = self.shapes[self.feat];
        let mut pooled = vec![0f32; s.c];
        let mut map = Vec::with_capacity(if cam { s.h * s.w } else { 0 });
        for y in 0..s.h {
            for x in 0..s.w {
                let p = &buf[s.at(y, x)..s.at(y, x) + s.c];
                pooled.iter_mut().zip(p).for_each(|(a, v)| *a += v);
                if cam {
                    let z: f32 = p.iter().zip(&self.head_w).map(|(a, w)| a * w).sum();
                    map.push(z.max(0.0));
                }
            }
        }
        let n = (s.h * s.w) as f32;
        let logit = pooled.iter().zip(&self.head_w).map(|(a, w)| a / n * w).sum::<f32>() + self.head_b;
        Output { logit, cam: map }
    }

    /// Feature-map size of the class-activation maps `(height, width)`.
    pub fn cam_size(&self) -> (usize, usize) {
        let s = self.shapes[self.feat];
        (s.h, s.w)
    }

    /// Runs `n` normalised images (`n × h × w` values, row-major) and returns one output each.
    pub fn forward(&self, inputs: &[f32], cam: bool) -> Result<Vec<Output>, MlError> {
        let s = self.shapes[0];
        let px = s.h * s.w;
        if inputs.is_empty() || inputs.len() % px != 0 {
            return Err(MlError::Data(format!(
                "input of {} values is not a whole number of {px}-pixel images",
                inputs.len()
            )));
        }
        let n = inputs.len() / px;
        let threads = rayon::current_num_threads().max(1);
        if n == 1 || threads == 1 {
            return Ok(inputs.chunks(px).map(|img| self.forward_one_split_rows(img, cam)).collect());
        }
        // Whole images per task: each worker keeps one image's activations in its cache.
        let per = n.div_ceil(threads);
        let outs: Vec<Vec<Output>> = inputs
            .par_chunks(per * px)
            .map(|chunk| {
                let mut bufs = self.alloc();
                let mut out = Vec::with_capacity(chunk.len() / px);
                for img in chunk.chunks(px) {
                    self.load_input(&mut bufs[0], img);
                    let ptrs: Vec<*mut f32> = bufs.iter_mut().map(|b| b.as_mut_ptr()).collect();
                    for c in &self.convs {
                        // SAFETY: every buffer has its shape's length and this task owns them.
                        unsafe { self.conv_rows(c, &ptrs, 0..self.shapes[c.dst].h) };
                    }
                    out.push(self.head(&bufs[self.feat], cam));
                }
                out
            })
            .collect();
        Ok(outs.into_iter().flatten().collect())
    }

    /// One image, each layer's rows split across the worker threads.
    fn forward_one_split_rows(&self, img: &[f32], cam: bool) -> Output {
        struct Ptrs(Vec<*mut f32>);
        // SAFETY: the pointers are only used for disjoint rows of one layer at a time.
        unsafe impl Sync for Ptrs {}
        let mut bufs = self.alloc();
        self.load_input(&mut bufs[0], img);
        let ptrs = &Ptrs(bufs.iter_mut().map(|b| b.as_mut_ptr()).collect());
        let threads = rayon::current_num_threads().max(1);
        for c in &self.convs {
            let h = self.shapes[c.dst].h;
            let band = h.div_ceil(threads * 2).max(1);
            (0..h.div_ceil(band)).into_par_iter().for_each(|i| {
                let rows = i * band..((i + 1) * band).min(h);
                // SAFETY: bands are disjoint; the layer's inputs are complete (the previous
                // layer's parallel loop has returned).
                unsafe { self.conv_rows(c, &ptrs.0, rows) };
            });
        }
        self.head(&bufs[self.feat], cam)
    }
}
