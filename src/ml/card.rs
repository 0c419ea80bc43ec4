//! Model cards: the TOML file beside each `<name>-<version>.bpk` that says what the weights
//! are, how they were made, how well they did, and what they must not be used for.
//!
//! A card is parsed strictly (unknown keys are refused) and checked for consistency; the
//! weights' sha256 in the card is compared with the weights before they are loaded.

use serde::{Deserialize, Serialize};

use super::model::Architecture;
use super::MlError;

/// How an 8-bit grayscale frame becomes the network's input: resize to `width`×`height`
/// (centre crop to the aspect ratio, then area/bilinear), scale to [0, 1], then
/// `(x - mean) / std`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputSpec {
    pub width: usize,
    pub height: usize,
    pub channels: usize,
    pub mean: f64,
    pub std: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Calibration {
    /// Temperature scaling: probability = sigmoid(logit / temperature).
    pub temperature: f64,
    pub method: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Training {
    pub data: String,
    pub data_sha256: String,
    pub train_images: usize,
    pub train_positives: usize,
    pub validation: String,
    pub command: String,
    pub seed: u64,
    pub epochs_run: usize,
    pub best_epoch: usize,
    pub batch_size: usize,
    pub optimizer: String,
    pub schedule: String,
    pub loss: String,
    pub augmentation: String,
    pub seconds: f64,
    pub device: String,
    pub lucent_version: String,
    /// For an ensemble, each member's run (member k trains with seed `seed + k`); empty for
    /// one network, whose figures are the fields above.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<MemberRun>,
}

/// One ensemble member's training run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemberRun {
    pub seed: u64,
    pub epochs_run: usize,
    pub best_epoch: usize,
    /// The member's own validation AUC at its best epoch.
    pub val_auc: f64,
    pub seconds: f64,
}

/// Figures measured on the validation split with the card's temperature and threshold.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Metrics {
    pub n: usize,
    pub positives: usize,
    pub auc: f64,
    pub accuracy: f64,
    pub balanced_accuracy: f64,
    pub sensitivity: f64,
    pub specificity: f64,
    pub ece: f64,
    pub ece_uncalibrated: f64,
    pub nll: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelCard {
    pub name: String,
    pub version: String,
    pub task: String,
    /// Class names, negative first; the probability is that of `labels[1]`.
    pub labels: [String; 2],
    /// Predict `labels[1]` when the calibrated probability is at least this.
    pub threshold: f64,
    pub threshold_rule: String,
    /// The weights file, beside the card.
    pub weights: String,
    pub weights_sha256: String,
    pub intended_use: String,
    pub limitations: String,
    pub input: InputSpec,
    pub architecture: Architecture,
    pub calibration: Calibration,
    pub training: Training,
    pub validation: Metrics,
}

impl ModelCard {
    pub fn parse(text: &str, origin: &str) -> Result<ModelCard, MlError> {
        let card: ModelCard = toml::from_str(text).map_err(|e| MlError::Card(format!("{origin}: {}", e.message())))?;
        card.validate().map_err(|m| MlError::Card(format!("{origin}: {m}")))?;
        Ok(card)
    }

    pub fn to_toml(&self) -> String {
        let body = toml::to_string(self).expect("card serialises");
        format!(
            "# Model card for {}-{} (Lucent). Written by `lucent train`; the figures are measured.\n\n{body}",
            self.name, self.version
        )
    }

    /// `<name>-<version>`, the registry id.
    pub fn id(&self) -> String {
        format!("{}-{}", self.name, self.version)
    }

    fn validate(&self) -> Result<(), String> {
        let ok_part = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "._".contains(c));
        if !ok_part(&self.name) || self.name.contains('.') {
            return Err(format!("name `{}` must be letters, digits or _", self.name));
        }
        if !ok_part(&self.version) {
            return Err(format!("version `{}` must be letters, digits, . or _", self.version));
        }
        if self.weights != format!("{}.bpk", self.id()) {
            return Err(format!("weights must be `{}.bpk`, got `{}`", self.id(), self.weights));
        }
        if self.weights_sha256.len() != 64 || !self.weights_sha256.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err("weights_sha256 must be 64 hex digits".into());
        }
        if !(self.threshold > 0.0 && self.threshold < 1.0) {
            return Err(format!("threshold must be in (0, 1), got {}", self.threshold));
        }
        if !(self.calibration.temperature > 0.0 && self.calibration.temperature.is_finite()) {
            return Err(format!("calibration.temperature must be positive, got {}", self.calibration.temperature));
        }
        let i = &self.input;
        if i.channels != 1 {
            return Err(format!("input.channels must be 1 (grayscale), got {}", i.channels));
        }
        if !(8..=1024).contains(&i.width) || !(8..=1024).contains(&i.height) {
            return Err(format!("input size {}x{} must be 8..=1024 on each side", i.width, i.height));
        }
        if !(i.std > 0.0 && i.std.is_finite() && i.mean.is_finite()) {
            return Err("input.std must be positive and input.mean finite".into());
        }
        self.architecture.validate()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn sample() -> ModelCard {
        ModelCard {
            name: "classifier".into(),
            version: "0.0.1".into(),
            task: "binary classification".into(),
            labels: ["normal".into(), "pneumonia".into()],
            threshold: 0.5,
            threshold_rule: "test".into(),
            weights: "classifier-0.0.1.bpk".into(),
            weights_sha256: "0".repeat(64),
            intended_use: "tests".into(),
            limitations: "tests".into(),
            input: InputSpec { width: 28, height: 28, channels: 1, mean: 0.5, std: 0.25 },
            architecture: Architecture::default(),
            calibration: Calibration { temperature: 1.0, method: "none".into() },
            training: Training {
                data: "x".into(),
                data_sha256: "y".into(),
                train_images: 1,
                train_positives: 1,
                validation: "v".into(),
                command: "c".into(),
                seed: 1,
                epochs_run: 1,
                best_epoch: 1,
                batch_size: 1,
                optimizer: "o".into(),
                schedule: "s".into(),
                loss: "l".into(),
                augmentation: "a".into(),
                seconds: 1.0,
                device: "d".into(),
                lucent_version: "0".into(),
                members: Vec::new(),
            },
            validation: Metrics {
                n: 1,
                positives: 1,
                auc: 1.0,
                accuracy: 1.0,
                balanced_accuracy: 1.0,
                sensitivity: 1.0,
                specificity: 1.0,
                ece: 0.0,
                ece_uncalibrated: 0.0,
                nll: 0.0,
            },
        }
    }

    #[test]
    fn card_round_trips_and_rejects_inconsistencies() {
        let c = sample();
        assert_eq!(ModelCard::parse(&c.to_toml(), "t").unwrap(), c);
        let mut bad = c.clone();
        bad.weights = "other.bpk".into();
        assert!(ModelCard::parse(&bad.to_toml(), "t").unwrap_err().to_string().contains("weights must be"));
        let mut bad = c.clone();
        bad.threshold = 1.5;
        assert!(ModelCard::parse(&bad.to_toml(), "t").is_err());
        let text = c.to_toml().replace("task =", "colour = \"blue\"\ntask =");
        assert!(ModelCard::parse(&text, "t").unwrap_err().to_string().contains("colour"));
    }
}
