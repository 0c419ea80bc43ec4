//! The classifier network: a small residual CNN (ResNet-style basic blocks with batch
//! normalisation) ending in global average pooling and one logit.
//!
//! The shape is set by [`Architecture`], which the model card records, so a card always says
//! which network its weights belong to. The default is sized for 28×28 inputs on a 2-core CPU;
//! a site training at 128 or 224 can keep it (global pooling makes it size-agnostic) or add a
//! stage.

use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, Dropout, DropoutConfig, Linear, LinearConfig, PaddingConfig2d};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};

/// The network's shape, as recorded in the model card (`[architecture]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Architecture {
    /// Always `"resnet"` for now: the card names the family so a later one cannot be confused.
    pub kind: String,
    /// Channels of the first stage; each later stage doubles them.
    pub width: usize,
    /// Residual blocks per stage; stages after the first halve the resolution.
    pub blocks: Vec<usize>,
    /// Dropout before the final linear layer (training only).
    pub dropout: f64,
    /// Independently trained networks of this shape (seeds `seed`, `seed + 1`, …) whose
    /// logits are averaged: a deep ensemble, more robust to a shift between the training
    /// and the reading population than any one of them. 1 (the default) is one network.
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub members: usize,
}

fn one() -> usize {
    1
}

fn is_one(n: &usize) -> bool {
    *n == 1
}

impl Default for Architecture {
    fn default() -> Self {
        Architecture { kind: "resnet".into(), width: 24, blocks: vec![1, 1, 1], dropout: 0.2, members: 1 }
    }
}

impl Architecture {
    pub fn validate(&self) -> Result<(), String> {
        if self.kind != "resnet" {
            return Err(format!("unknown architecture kind `{}` (this build knows `resnet`)", self.kind));
        }
        if !(4..=256).contains(&self.width) {
            return Err(format!("architecture.width must be 4..=256, got {}", self.width));
        }
        if self.blocks.is_empty() || self.blocks.len() > 5 || self.blocks.iter().any(|&b| b == 0 || b > 8) {
            return Err(format!("architecture.blocks must be 1 to 5 stages of 1..=8 blocks, got {:?}", self.blocks));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(format!("architecture.dropout must be in [0, 1), got {}", self.dropout));
        }
        if !(1..=9).contains(&self.members) {
            return Err(format!("architecture.members must be 1..=9, got {}", self.members));
        }
        Ok(())
    }

    /// Builds one member network with fresh (seeded by the device) weights.
    pub fn init(&self, device: &Device) -> Net {
        let conv = |i: usize, o: usize, k: usize, s: usize| {
            let pad = k / 2;
            Conv2dConfig::new([i, o], [k, k])
                .with_stride([s, s])
                .with_padding(PaddingConfig2d::Explicit(pad, pad, pad, pad))
                .with_bias(false)
                .init(device)
        };
        let bn = |c: usize| BatchNormConfig::new(c).init(device);
        let w = self.width;
        let mut blocks = Vec::new();
        let mut c_in = w;
        for (stage, &n) in self.blocks.iter().enumerate() {
            let c_out = w << stage;
            for b in 0..n {
                let stride = if stage > 0 && b == 0 { 2 } else { 1 };
                let shortcut = (stride != 1 || c_in != c_out)
                    .then(|| Shortcut { conv: conv(c_in, c_out, 1, stride), bn: bn(c_out) });
                blocks.push(Block {
                    conv1: conv(c_in, c_out, 3, stride),
                    bn1: bn(c_out),
                    conv2: conv(c_out, c_out, 3, 1),
                    bn2: bn(c_out),
                    shortcut,
                });
                c_in = c_out;
            }
        }
        Net {
            stem: conv(1, w, 3, 1),
            stem_bn: bn(w),
            blocks,
            dropout: DropoutConfig::new(self.dropout).init(),
            head: LinearConfig::new(c_in, 1).init(device),
        }
    }
}

#[derive(Module, Debug)]
pub struct Shortcut {
    pub(in crate::ml) conv: Conv2d,
    pub(in crate::ml) bn: BatchNorm,
}

/// A basic residual block: conv3×3-BN-ReLU-conv3×3-BN, plus the (projected) input, then ReLU.
#[derive(Module, Debug)]
pub struct Block {
    pub(in crate::ml) conv1: Conv2d,
    pub(in crate::ml) bn1: BatchNorm,
    pub(in crate::ml) conv2: Conv2d,
    pub(in crate::ml) bn2: BatchNorm,
    pub(in crate::ml) shortcut: Option<Shortcut>,
}

impl Block {
    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let y = relu(self.bn1.forward(self.conv1.forward(x.clone())));
        let y = self.bn2.forward(self.conv2.forward(y));
        let skip = match &self.shortcut {
            Some(s) => s.bn.forward(s.conv.forward(x)),
            None => x,
        };
        relu(y + skip)
    }
}

#[derive(Module, Debug)]
pub struct Net {
    pub(in crate::ml) stem: Conv2d,
    pub(in crate::ml) stem_bn: BatchNorm,
    pub(in crate::ml) blocks: Vec<Block>,
    dropout: Dropout,
    pub(in crate::ml) head: Linear,
}

impl Net {
    /// The last feature maps, `[batch, channels, h, w]`, before pooling.
    pub fn features(&self, x: Tensor<4>) -> Tensor<4> {
        let mut x = relu(self.stem_bn.forward(self.stem.forward(x)));
        for b in &self.blocks {
            x = b.forward(x);
        }
        x
    }

    /// Logits `[batch]` for input `[batch, 1, h, w]` (already normalised).
    pub fn forward(&self, x: Tensor<4>) -> Tensor<1> {
        let f = self.features(x);
        let [n, c, _, _] = f.dims();
        let pooled = f.mean_dims(&[2, 3]).reshape([n, c]);
        let pooled = self.dropout.forward(pooled);
        self.head.forward(pooled).reshape([n])
    }

    /// Logits and class-activation maps `[batch, h, w]` (at feature resolution).
    ///
    /// With global average pooling followed by one linear layer, Grad-CAM's channel weights
    /// (the spatial mean of d logit / d A_k) are exactly `w_k / (h·w)`, so the map
    /// `ReLU(Σ_k w_k A_k)` is Grad-CAM computed in closed form, with no backward pass and on
    /// any device.
    pub fn forward_with_cam(&self, x: Tensor<4>) -> (Tensor<1>, Tensor<3>) {
        let f = self.features(x);
        let [n, c, h, w] = f.dims();
        let logits = self.head.forward(f.clone().mean_dims(&[2, 3]).reshape([n, c])).reshape([n]);
        let weight = self.head.weight.val(); // [c, 1]
        let weight = weight.reshape([1, c, 1, 1]);
        let cam = relu((f * weight).sum_dim(1)).reshape([n, h, w]);
        (logits, cam)
    }
}

/// The members of an ensemble, as they are stored in one weights file (`members.<k>.…`).
/// A single network is stored as a plain [`Net`], so one-member cards keep their format.
#[derive(Module, Debug)]
pub struct Ensemble {
    pub members: Vec<Net>,
}
