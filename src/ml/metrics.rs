//! Metrics and calibration on plain slices: ROC AUC, confusion matrix, sensitivity and
//! specificity, expected calibration error, temperature scaling, and threshold choice.
//!
//! Pure functions with no device or I/O, so they are tested exactly and reused by training
//! (early stopping), `models eval`, and the model card.

use serde::Serialize;

/// The logistic function, safe for large |z|.
pub fn sigmoid(z: f64) -> f64 {
    if z >= 0.0 {
        1.0 / (1.0 + (-z).exp())
    } else {
        let e = z.exp();
        e / (1.0 + e)
    }
}

/// Area under the ROC curve (Mann-Whitney U with ties counted half). `None` when one class is
/// absent.
pub fn roc_auc(scores: &[f64], labels: &[bool]) -> Option<f64> {
    let pos = labels.iter().filter(|&&l| l).count();
    let neg = labels.len() - pos;
    if pos == 0 || neg == 0 {
        return None;
    }
    let mut idx: Vec<usize> = (0..scores.len()).collect();
    idx.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    // Average ranks over ties, then U = sum of positive ranks - pos(pos+1)/2.
    let mut rank_sum_pos = 0.0;
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && scores[idx[j + 1]] == scores[idx[i]] {
            j += 1;
        }
        let avg_rank = (i + j) as f64 / 2.0 + 1.0;
        for &k in &idx[i..=j] {
            if labels[k] {
                rank_sum_pos += avg_rank;
            }
        }
        i = j + 1;
    }
    let u = rank_sum_pos - (pos * (pos + 1)) as f64 / 2.0;
    Some(u / (pos as f64 * neg as f64))
}

/// The ROC curve: (false-positive rate, true-positive rate) points from (0, 0) to (1, 1), one
/// per distinct score, thresholds from high to low (tied scores move both rates at once).
/// Empty when one class is absent.
pub fn roc_points(scores: &[f64], labels: &[bool]) -> Vec<(f64, f64)> {
    let pos = labels.iter().filter(|&&l| l).count() as f64;
    let neg = labels.len() as f64 - pos;
    if pos == 0.0 || neg == 0.0 {
        return Vec::new();
    }
    let mut idx: Vec<usize> = (0..scores.len()).collect();
    idx.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    let (mut tp, mut fp) = (0.0, 0.0);
    let mut out = vec![(0.0, 0.0)];
    let mut i = 0;
    while i < idx.len() {
        let s = scores[idx[i]];
        while i < idx.len() && scores[idx[i]] == s {
            if labels[idx[i]] {
                tp += 1.0;
            } else {
                fp += 1.0;
            }
            i += 1;
        }
        out.push((fp / neg, tp / pos));
    }
    out
}

/// Counts at a threshold: predicted positive when `p >= threshold`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Confusion {
    pub tp: usize,
    pub fp: usize,
    pub tn: usize,
    pub fn_: usize,
}

impl Confusion {
    pub fn at(probs: &[f64], labels: &[bool], threshold: f64) -> Confusion {
        let mut c = Confusion { tp: 0, fp: 0, tn: 0, fn_: 0 };
        for (&p, &l) in probs.iter().zip(labels) {
            match (p >= threshold, l) {
                (true, true) => c.tp += 1,
                (true, false) => c.fp += 1,
                (false, false) => c.tn += 1,
                (false, true) => c.fn_ += 1,
            }
        }
        c
    }
    pub fn total(&self) -> usize {
        self.tp + self.fp + self.tn + self.fn_
    }
    pub fn accuracy(&self) -> f64 {
        ratio(self.tp + self.tn, self.total())
    }
    /// True positive rate (recall on the positive class).
    pub fn sensitivity(&self) -> f64 {
        ratio(self.tp, self.tp + self.fn_)
    }
    /// True negative rate.
    pub fn specificity(&self) -> f64 {
        ratio(self.tn, self.tn + self.fp)
    }
    pub fn balanced_accuracy(&self) -> f64 {
        (self.sensitivity() + self.specificity()) / 2.0
    }
}

fn ratio(a: usize, b: usize) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

/// Expected calibration error with `bins` equal-width bins of the predicted probability of the
/// positive class: Σ (n_b / n) |mean(y) - mean(p)| over bins.
pub fn expected_calibration_error(probs: &[f64], labels: &[bool], bins: usize) -> f64 {
    let bins = bins.max(1);
    let mut count = vec![0usize; bins];
    let mut sum_p = vec![0f64; bins];
    let mut sum_y = vec![0f64; bins];
    for (&p, &l) in probs.iter().zip(labels) {
        let b = ((p * bins as f64) as usize).min(bins - 1);
        count[b] += 1;
        sum_p[b] += p;
        sum_y[b] += if l { 1.0 } else { 0.0 };
    }
    let n = probs.len().max(1) as f64;
    (0..bins).filter(|&b| count[b] > 0).map(|b| (sum_y[b] - sum_p[b]).abs() / n).sum()
}

/// Mean negative log-likelihood of labels under `sigmoid(logit / t)`.
pub fn nll(logits: &[f64], labels: &[bool], t: f64) -> f64 {
    let n = logits.len().max(1) as f64;
    logits
        .iter()
        .zip(labels)
        .map(|(&z, &l)| {
            let z = z / t;
            // -log sigmoid(z) = softplus(-z); -log(1 - sigmoid(z)) = softplus(z)
            let s = if l { -z } else { z };
            s.max(0.0) + (-s.abs()).exp().ln_1p()
        })
        .sum::<f64>()
        / n
}

/// Temperature scaling (Guo et al. 2017): the `t` in [0.05, 20] minimising validation NLL,
/// by golden-section search on log t (NLL is unimodal in t for a fixed set of logits).
pub fn fit_temperature(logits: &[f64], labels: &[bool]) -> f64 {
    let f = |lt: f64| nll(logits, labels, lt.exp());
    let (mut a, mut b) = (0.05f64.ln(), 20f64.ln());
    let g = (5f64.sqrt() - 1.0) / 2.0;
    let mut c = b - g * (b - a);
    let mut d = a + g * (b - a);
    let (mut fc, mut fd) = (f(c), f(d));
    for _ in 0..100 {
        if fc < fd {
            b = d;
            d = c;
            fd = fc;
            c = b - g * (b - a);
            fc = f(c);
        } else {
            a = c;
            c = d;
            fc = fd;
            d = a + g * (b - a);
            fd = f(d);
        }
    }
    ((a + b) / 2.0).exp()
}

/// The threshold maximising Youden's J (sensitivity + specificity - 1, i.e. balanced accuracy)
/// over the distinct predicted probabilities. Balanced accuracy does not depend on the class
/// mix, so the choice carries over to a population with another prevalence, unlike raw
/// accuracy on a skewed validation set. Ties are broken towards the middle of the widest
/// plateau (the midpoint between neighbouring scores), which keeps a margin on both sides.
pub fn youden_threshold(probs: &[f64], labels: &[bool]) -> f64 {
    let mut sorted: Vec<f64> = probs.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted.dedup();
    if sorted.is_empty() {
        return 0.5;
    }
    // Candidate thresholds: midpoints between consecutive distinct scores (and the ends).
    let mut cands = Vec::with_capacity(sorted.len() + 1);
    cands.push(sorted[0]);
    for w in sorted.windows(2) {
        cands.push((w[0] + w[1]) / 2.0);
    }
    let js: Vec<f64> = cands.iter().map(|&t| Confusion::at(probs, labels, t).balanced_accuracy()).collect();
    let best = js.iter().cloned().fold(f64::MIN, f64::max);
    // Widest run of candidates within 1e-12 of the best; take its middle.
    let (mut best_start, mut best_len, mut i) = (0, 0, 0);
    while i < js.len() {
        if js[i] >= best - 1e-12 {
            let s = i;
            while i < js.len() && js[i] >= best - 1e-12 {
                i += 1;
            }
            if i - s > best_len {
                best_start = s;
                best_len = i - s;
            }
        } else {
            i += 1;
        }
    }
    let lo = cands[best_start];
    let hi = cands[best_start + best_len - 1];
    (lo + hi) / 2.0
}

/// Every figure `models eval` and the card report.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub n: usize,
    pub positives: usize,
    pub auc: f64,
    pub threshold: f64,
    pub accuracy: f64,
    pub balanced_accuracy: f64,
    pub sensitivity: f64,
    pub specificity: f64,
    pub ece: f64,
    pub nll: f64,
    pub confusion: Confusion,
}

impl Report {
    /// `probs` are calibrated probabilities; `logits` the calibrated logits (for NLL).
    pub fn compute(probs: &[f64], labels: &[bool], threshold: f64) -> Report {
        let c = Confusion::at(probs, labels, threshold);
        let logits: Vec<f64> =
            probs.iter().map(|&p| (p.clamp(1e-12, 1.0 - 1e-12) / (1.0 - p.clamp(1e-12, 1.0 - 1e-12))).ln()).collect();
        Report {
            n: labels.len(),
            positives: labels.iter().filter(|&&l| l).count(),
            auc: roc_auc(probs, labels).unwrap_or(f64::NAN),
            threshold,
            accuracy: c.accuracy(),
            balanced_accuracy: c.balanced_accuracy(),
            sensitivity: c.sensitivity(),
            specificity: c.specificity(),
            ece: expected_calibration_error(probs, labels, 15),
            nll: nll(&logits, labels, 1.0),
            confusion: c,
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn roc_points_trace_the_curve_and_match_the_auc() {
        let scores = [0.9, 0.8, 0.8, 0.3, 0.1];
        let labels = [true, true, false, false, true];
        let pts = super::roc_points(&scores, &labels);
        assert_eq!(pts.first(), Some(&(0.0, 0.0)));
        assert_eq!(pts.last(), Some(&(1.0, 1.0)));
        assert_eq!(pts[2], (0.5, 2.0 / 3.0), "the tie at 0.8 moves both rates");
        // Trapezoids under the points equal the rank AUC.
        let area: f64 = pts.windows(2).map(|w| (w[1].0 - w[0].0) * (w[1].1 + w[0].1) / 2.0).sum();
        assert!((area - super::roc_auc(&scores, &labels).unwrap()).abs() < 1e-12);
        assert!(super::roc_points(&[0.5], &[true]).is_empty());
    }

    use super::*;

    #[test]
    fn auc_matches_hand_computed_values() {
        assert_eq!(roc_auc(&[0.1, 0.2, 0.8, 0.9], &[false, false, true, true]), Some(1.0));
        assert_eq!(roc_auc(&[0.9, 0.8, 0.2, 0.1], &[false, false, true, true]), Some(0.0));
        // One inversion out of 4 pairs; a tie counts half.
        assert_eq!(roc_auc(&[0.1, 0.6, 0.5, 0.9], &[false, false, true, true]), Some(0.75));
        assert_eq!(roc_auc(&[0.5, 0.5], &[false, true]), Some(0.5));
        assert_eq!(roc_auc(&[0.5, 0.6], &[true, true]), None);
    }

    #[test]
    fn confusion_and_rates() {
        let p = [0.9, 0.7, 0.4, 0.2, 0.6];
        let y = [true, true, true, false, false];
        let c = Confusion::at(&p, &y, 0.5);
        assert_eq!(c, Confusion { tp: 2, fp: 1, tn: 1, fn_: 1 });
        assert!((c.sensitivity() - 2.0 / 3.0).abs() < 1e-12);
        assert!((c.specificity() - 0.5).abs() < 1e-12);
        assert!((c.accuracy() - 0.6).abs() < 1e-12);
    }

    #[test]
    fn ece_is_zero_when_calibrated_and_large_when_not() {
        let p = [0.25; 8];
        let y = [true, false, false, false, true, false, false, false];
        assert!(expected_calibration_error(&p, &y, 10) < 1e-12);
        let p = [0.99; 4];
        let y = [false; 4];
        assert!((expected_calibration_error(&p, &y, 10) - 0.99).abs() < 1e-12);
    }

    #[test]
    fn temperature_recovers_overconfidence() {
        // Logits drawn as 3x a calibrated logit: the fitted temperature should be near 3.
        let mut logits = Vec::new();
        let mut labels = Vec::new();
        let mut state = 12345u64;
        for i in 0..4000 {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let u = (state >> 11) as f64 / (1u64 << 53) as f64;
            let z = (i as f64 / 4000.0 - 0.5) * 8.0; // calibrated logit
            labels.push(u < sigmoid(z));
            logits.push(3.0 * z);
        }
        let t = fit_temperature(&logits, &labels);
        assert!((t - 3.0).abs() < 0.3, "t = {t}");
        assert!(nll(&logits, &labels, t) < nll(&logits, &labels, 1.0));
    }

    #[test]
    fn youden_threshold_separates_and_ignores_prevalence() {
        // Negatives below 0.3, positives above 0.7, many more positives: the threshold falls
        // between the classes, not at a prevalence-driven point.
        let mut p = vec![0.1, 0.2, 0.25];
        let mut y = vec![false, false, false];
        for i in 0..30 {
            p.push(0.7 + i as f64 * 0.01);
            y.push(true);
        }
        let t = youden_threshold(&p, &y);
        assert!(t > 0.25 && t < 0.7, "t = {t}");
        assert_eq!(Confusion::at(&p, &y, t).balanced_accuracy(), 1.0);
    }
}
