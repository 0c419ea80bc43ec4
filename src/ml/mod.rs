//! The AI core: device selection, the classifier network, its training loop, inference (a
//! bounded batching queue), the model registry with model cards, and metrics.
//!
//! Owns: everything that touches burn (tensors, devices, weights), `<data-dir>/models/`, and
//! the figures reported for a model.
//! Must not: block the async runtime (inference runs on the queue's own thread, and callers
//! on the runtime await it), write SQL (the registry is plain files; only `store` speaks SQL),
//! or decode DICOM pixels itself (it receives 8-bit frames from `preprocess` through
//! [`data::set_dicom_decoder`]).
//!
//! Map:
//! - [`device`]: wgpu adapter or CPU (burn flex), `ml.device`, what `lucent doctor` prints;
//! - [`model`]: the residual CNN; [`augment`]: training augmentation (no flips);
//! - [`data`]: npz, class folders, CSV labels, PNG, the DICOM seam;
//! - [`train`]: the loop (class weighting, schedule, early stopping, checkpoints, resume);
//! - [`infer`]: a loaded classifier, calibrated probabilities, Grad-CAM saliency;
//! - [`engine`]: the CPU inference engine (BatchNorm folded, fused NHWC SIMD convolutions);
//! - [`queue`]: the bounded batching inference queue;
//! - [`card`], [`registry`]: model cards, shipped and imported models, activation;
//! - [`metrics`]: AUC, ECE, confusion, temperature scaling, threshold choice.

pub mod augment;
pub mod card;
pub mod data;
pub mod device;
pub mod engine;
pub mod infer;
pub mod metrics;
pub mod model;
pub mod queue;
pub mod registry;
pub mod train;

pub use card::ModelCard;
pub use data::{GrayFrame, Split};
pub use device::{select, DeviceInfo, DevicePref, Runtime};
pub use infer::{Classifier, Prediction, Saliency};
pub use queue::{InferenceQueue, QueueConfig};
pub use registry::Registry;

#[derive(Debug, Clone, thiserror::Error)]
pub enum MlError {
    #[error("data: {0}")]
    Data(String),
    #[error("model card: {0}")]
    Card(String),
    #[error("model refused: {0}")]
    Mismatch(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Io(String),
    #[error("device: {0}")]
    Device(String),
    #[error("inference queue full: try again later")]
    QueueFull,
    #[error("training stopped after epoch {0} as asked; continue with --resume")]
    Interrupted(usize),
}

#[cfg(test)]
mod tests;
