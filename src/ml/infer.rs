//! A loaded classifier: weights checked against their card, moved to the selected device,
//! and the input pipeline the card prescribes (resize, normalise), calibrated probabilities
//! and saliency maps.

use std::borrow::Cow;

use burn::module::Module;
use burn::tensor::{Device, Tensor, TensorData};
use burn_store::{BurnpackStore, ModuleSnapshot};
use serde::Serialize;

use super::card::{InputSpec, ModelCard};
use super::data::{GrayFrame, Split};
use super::engine::kernel::Isa;
use super::engine::Engine;
use super::metrics::sigmoid;
use super::model::{Ensemble, Net};
use super::MlError;

/// One image's result.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Prediction {
    /// The network's raw logit.
    pub logit: f64,
    /// Calibrated probability of the positive class (`labels[1]`).
    pub probability: f64,
    /// `probability >= threshold`.
    pub positive: bool,
}

/// A saliency map at the input's resolution, values in [0, 1] (1 = most evidence for the
/// positive class), row-major, for the viewer to overlay.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Saliency {
    pub width: usize,
    pub height: usize,
    pub values: Vec<f32>,
}

/// sha256 of `bytes`, lower-case hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, bytes);
    d.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// Builds the network(s) the card describes and loads `weights` into them, after checking
/// their checksum against the card. Every tensor must match in name and shape. One network
/// is stored as a plain [`Net`]; an ensemble as an [`Ensemble`].
pub fn load_nets(
    card: &ModelCard,
    weights: &Cow<'static, [u8]>,
    device: &Device,
    origin: &str,
) -> Result<Vec<Net>, MlError> {
    let sum = sha256_hex(weights);
    if sum != card.weights_sha256 {
        return Err(MlError::Mismatch(format!(
            "{origin}: the weights do not match the card {}: sha256 {sum}, the card says {} \
             (corrupt or replaced file; re-import the model)",
            card.id(),
            card.weights_sha256
        )));
    }
    // Shipped weights live in the binary's read-only data and load without a copy.
    let mut store = match weights {
        Cow::Borrowed(b) => BurnpackStore::from_static(b),
        Cow::Owned(v) => BurnpackStore::from_bytes(Some(burn::tensor::Bytes::from_bytes_vec(v.clone()))),
    };
    let arch = &card.architecture;
    let refused = |e: String| {
        MlError::Mismatch(format!("{origin}: the weights do not fit the architecture in card {}: {e}", card.id()))
    };
    let (nets, unused) = if arch.members == 1 {
        let mut net = arch.init(device);
        let r = net.load_from(&mut store).map_err(|e| refused(e.to_string()))?;
        (vec![net], r.unused)
    } else {
        let mut ens = Ensemble { members: (0..arch.members).map(|_| arch.init(device)).collect() };
        let r = ens.load_from(&mut store).map_err(|e| refused(e.to_string()))?;
        (ens.members, r.unused)
    };
    if !unused.is_empty() {
        return Err(MlError::Mismatch(format!(
            "{origin}: the weights hold tensors the card's architecture lacks: {unused:?}"
        )));
    }
    Ok(nets.into_iter().map(|n| n.valid()).collect())
}

/// [`load_nets`] for a one-network card.
pub fn load_net(card: &ModelCard, weights: &Cow<'static, [u8]>, device: &Device, origin: &str) -> Result<Net, MlError> {
    if card.architecture.members != 1 {
        return Err(MlError::Mismatch(format!("{origin}: card {} describes an ensemble", card.id())));
    }
    Ok(load_nets(card, weights, device, origin)?.remove(0))
}

/// Serialises a network to burnpack bytes.
pub fn save_net_bytes(net: &Net) -> Result<Vec<u8>, MlError> {
    save_module(net)
}

/// Serialises networks: one as a plain [`Net`], more as an [`Ensemble`].
pub fn save_nets_bytes(nets: &[Net]) -> Result<Vec<u8>, MlError> {
    match nets {
        [one] => save_module(one),
        _ => save_module(&Ensemble { members: nets.to_vec() }),
    }
}

fn save_module<M: Module>(m: &M) -> Result<Vec<u8>, MlError> {
    let mut store = BurnpackStore::from_bytes(None);
    m.save_into(&mut store).map_err(|e| MlError::Io(format!("cannot serialise weights: {e}")))?;
    let bytes = store.get_bytes().map_err(|e| MlError::Io(format!("cannot serialise weights: {e}")))?;
    Ok(bytes.to_vec())
}

/// Element-wise mean of equally long rows (one per ensemble member).
pub fn mean_rows<T: Copy + Into<f64>>(rows: &[Vec<T>]) -> Vec<f64> {
    let k = rows.len().max(1) as f64;
    (0..rows.first().map_or(0, Vec::len)).map(|i| rows.iter().map(|r| r[i].into()).sum::<f64>() / k).collect()
}

/// Normalises 8-bit frames (already at the input size) into the network's input layout.
pub fn normalise_into(pixels: &[u8], spec: &InputSpec, out: &mut Vec<f32>) {
    let (m, s) = (spec.mean as f32, spec.std as f32);
    out.extend(pixels.iter().map(|&p| (p as f32 / 255.0 - m) / s));
}

/// A loaded model: one network, or an ensemble whose members' logits (and saliency maps)
/// are averaged.
pub struct Classifier {
    pub card: ModelCard,
    pub nets: Vec<Net>,
    pub device: Device,
    /// On the CPU, each network compiled by [`Engine`] (what inference runs); on wgpu, none
    /// (burn runs them on the GPU).
    pub engines: Vec<Engine>,
}

impl Classifier {
    pub fn new(
        card: ModelCard,
        weights: &Cow<'static, [u8]>,
        device: &Device,
        origin: &str,
    ) -> Result<Classifier, MlError> {
        let nets = load_nets(&card, weights, device, origin)?;
        // The engine's portable kernels are the reference for its SIMD ones but slower than
        // burn flex, so a CPU without AVX2 (or AVX-512) keeps burn's forward pass.
        let engines = if *device == Device::flex() && Isa::detect() != Isa::Portable {
            nets.iter().map(|n| Engine::compile(n, card.input.height, card.input.width)).collect::<Result<_, _>>()?
        } else {
            Vec::new()
        };
        Ok(Classifier { card, nets, device: device.clone(), engines })
    }

    /// The (first) network, for callers that look at one.
    pub fn net(&self) -> &Net {
        &self.nets[0]
    }

    /// What runs inference: `wgpu`, or the CPU engine and its instruction set.
    pub fn executor(&self) -> String {
        match self.engines.first() {
            Some(e) => format!("CPU engine ({})", e.isa().name()),
            None if self.device == Device::flex() => "burn flex (no AVX2 or AVX-512 for the CPU engine)".into(),
            None => "burn wgpu".into(),
        }
    }

    /// The card's input pipeline for one frame: resize, then normalise.
    pub fn prepare(&self, frame: &GrayFrame) -> Vec<f32> {
        let spec = &self.card.input;
        let f = frame.resized(spec.width, spec.height);
        let mut v = Vec::with_capacity(spec.width * spec.height);
        normalise_into(&f.pixels, spec, &mut v);
        v
    }

    fn pixels(&self) -> usize {
        self.card.input.width * self.card.input.height
    }

    fn tensor(&self, inputs: &[f32]) -> Result<(Tensor<4>, usize), MlError> {
        let p = self.pixels();
        if inputs.is_empty() || inputs.len() % p != 0 {
            return Err(MlError::Data(format!(
                "input of {} values is not a whole number of {p}-pixel images",
                inputs.len()
            )));
        }
        let n = inputs.len() / p;
        let data = TensorData::new(inputs.to_vec(), [n, 1, self.card.input.height, self.card.input.width]);
        Ok((Tensor::from_data(data, &self.device), n))
    }

    pub fn calibrate(&self, logit: f64) -> Prediction {
        let probability = sigmoid(logit / self.card.calibration.temperature);
        Prediction { logit, probability, positive: probability >= self.card.threshold }
    }

    /// Raw logits for prepared inputs (`n * pixels` values), averaged over the members.
    pub fn logits(&self, inputs: &[f32]) -> Result<Vec<f64>, MlError> {
        let mut rows = Vec::with_capacity(self.nets.len());
        if !self.engines.is_empty() {
            for e in &self.engines {
                rows.push(e.forward(inputs, false)?.into_iter().map(|o| o.logit).collect::<Vec<f32>>());
            }
        } else {
            let (x, _) = self.tensor(inputs)?;
            for net in &self.nets {
                rows.push(read_f32(net.forward(x.clone()).into_data())?);
            }
        }
        Ok(mean_rows(&rows))
    }

    pub fn predict(&self, inputs: &[f32]) -> Result<Vec<Prediction>, MlError> {
        Ok(self.logits(inputs)?.into_iter().map(|z| self.calibrate(z)).collect())
    }

    /// Predictions with Grad-CAM saliency maps upsampled to the input size.
    pub fn predict_with_saliency(&self, inputs: &[f32]) -> Result<Vec<(Prediction, Saliency)>, MlError> {
        // Per member: logits and CAMs; all members share one feature-map size.
        let (mut logit_rows, mut cam_rows) = (Vec::new(), Vec::new());
        let (mut fh, mut fw) = (0, 0);
        if !self.engines.is_empty() {
            for e in &self.engines {
                (fh, fw) = e.cam_size();
                let outs = e.forward(inputs, true)?;
                logit_rows.push(outs.iter().map(|o| o.logit).collect::<Vec<f32>>());
                cam_rows.push(outs.into_iter().flat_map(|o| o.cam).collect::<Vec<f32>>());
            }
        } else {
            let (x, _) = self.tensor(inputs)?;
            for net in &self.nets {
                let (logits, cam) = net.forward_with_cam(x.clone());
                [_, fh, fw] = cam.dims();
                logit_rows.push(read_f32(logits.into_data())?);
                cam_rows.push(read_f32(cam.into_data())?);
            }
        }
        let (logits, cam) = (mean_rows(&logit_rows), mean_rows(&cam_rows));
        let n = logits.len();
        let (w, h) = (self.card.input.width, self.card.input.height);
        let mut out = Vec::with_capacity(n);
        for i in 0..n {
            let m: Vec<f32> = cam[i * fh * fw..(i + 1) * fh * fw].iter().map(|&v| v as f32).collect();
            let values = upsample(&m, fw, fh, w, h);
            out.push((self.calibrate(logits[i]), Saliency { width: w, height: h, values }));
        }
        Ok(out)
    }

    /// Logits for every image of a split, in order, `batch` at a time.
    pub fn split_logits(&self, split: &Split, batch: usize) -> Result<Vec<f64>, MlError> {
        if self.engines.is_empty() {
            let rows: Vec<Vec<f64>> = self
                .nets
                .iter()
                .map(|n| net_logits(n, &self.device, &self.card.input, split, batch))
                .collect::<Result<_, _>>()?;
            return Ok(mean_rows(&rows));
        }
        in_batches(split, &self.card.input, batch, |inputs, _| self.logits(inputs))
    }
}

/// Logits of `net` for every image of `split` (resized to the spec if needed), in order.
pub fn net_logits(
    net: &Net,
    device: &Device,
    spec: &InputSpec,
    split: &Split,
    batch: usize,
) -> Result<Vec<f64>, MlError> {
    in_batches(split, spec, batch, |inputs, n| {
        let data = TensorData::new(inputs.to_vec(), [n, 1, spec.height, spec.width]);
        Ok(read_f32(net.forward(Tensor::from_data(data, device)).into_data())?.into_iter().map(f64::from).collect())
    })
}

/// Runs `f` on the normalised images of `split` (resized to the spec if needed), `batch` at
/// a time (`f` gets the values and the number of images), and concatenates its answers.
pub fn in_batches(
    split: &Split,
    spec: &InputSpec,
    batch: usize,
    mut f: impl FnMut(&[f32], usize) -> Result<Vec<f64>, MlError>,
) -> Result<Vec<f64>, MlError> {
    let split = fit_split(split, spec);
    let batch = batch.max(1);
    let mut out = Vec::with_capacity(split.len());
    let mut buf = Vec::new();
    for start in (0..split.len()).step_by(batch) {
        buf.clear();
        let end = (start + batch).min(split.len());
        for i in start..end {
            normalise_into(split.image(i), spec, &mut buf);
        }
        out.extend(f(&buf, end - start)?);
    }
    Ok(out)
}

fn read_f32(d: TensorData) -> Result<Vec<f32>, MlError> {
    d.try_to_vec::<f32>().map_err(|e| MlError::Device(format!("reading results: {e:?}")))
}

/// The split at the spec's input size (borrowed when it already is).
fn fit_split<'a>(split: &'a Split, spec: &InputSpec) -> Cow<'a, Split> {
    if split.width != spec.width || split.height != spec.height {
        Cow::Owned(split.clone().resized(spec.width, spec.height))
    } else {
        Cow::Borrowed(split)
    }
}

/// Bilinear upsampling of a `fw`×`fh` map to `w`×`h`, scaled to [0, 1] by its maximum.
fn upsample(m: &[f32], fw: usize, fh: usize, w: usize, h: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(w * h);
    for y in 0..h {
        let sy = ((y as f32 + 0.5) * fh as f32 / h as f32 - 0.5).clamp(0.0, (fh - 1) as f32);
        let (y1, ty) = (sy.floor() as usize, sy - sy.floor());
        let y2 = (y1 + 1).min(fh - 1);
        for x in 0..w {
            let sx = ((x as f32 + 0.5) * fw as f32 / w as f32 - 0.5).clamp(0.0, (fw - 1) as f32);
            let (x1, tx) = (sx.floor() as usize, sx - sx.floor());
            let x2 = (x1 + 1).min(fw - 1);
            let top = m[y1 * fw + x1] * (1.0 - tx) + m[y1 * fw + x2] * tx;
            let bot = m[y2 * fw + x1] * (1.0 - tx) + m[y2 * fw + x2] * tx;
            out.push(top * (1.0 - ty) + bot * ty);
        }
    }
    let max = out.iter().cloned().fold(0.0f32, f32::max);
    if max > 0.0 {
        out.iter_mut().for_each(|v| *v /= max);
    }
    out
}
