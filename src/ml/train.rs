//! The training loop for the classifier (`lucent train classifier`).
//!
//! - Class-weighted binary cross-entropy: each class carries half the loss whatever its share
//!   of the data, so the network's scores do not lean on the training prevalence (the test
//!   population's differs).
//! - AdamW with a linear warm-up (first epoch) and cosine decay to zero over `epochs`.
//! - Augmentation from [`super::augment`] (no flips).
//! - Validation AUC after every epoch; the best epoch's weights are kept and training stops
//!   after `patience` epochs without improvement.
//! - A checkpoint (weights, optimiser state, loop state) after every epoch; `resume` continues
//!   from it and gives the same result as an uninterrupted run: every epoch's shuffling,
//!   augmentation and dropout draw from RNGs seeded by (seed, epoch).
//! - At the end, temperature scaling is fitted on validation logits, the threshold is the one
//!   maximising Youden's J (balanced accuracy) on validation, and the card is written with
//!   the measured figures.

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::module::Module;
use burn::optim::{AdamWConfig, GradientsParams};
use burn::tensor::activation::relu;
use burn::tensor::{Tensor, TensorData};
use burn_store::{BurnpackStore, ModuleSnapshot};
use indicatif::{ProgressBar, ProgressStyle};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};

use super::augment::Augment;
use super::card::{Calibration, InputSpec, MemberRun, Metrics, ModelCard, Training};
use super::data::{load_training_data, Split, TrainingData};
use super::device::Runtime;
use super::infer::{load_nets, mean_rows, net_logits, save_net_bytes, save_nets_bytes, sha256_hex};
use super::metrics::{self, sigmoid, Report};
use super::model::{Architecture, Net};
use super::registry::write_atomic;
use super::MlError;

#[derive(Debug, Clone)]
pub struct TrainOptions {
    pub data: PathBuf,
    pub labels_csv: Option<PathBuf>,
    pub epochs: usize,
    pub seed: u64,
    pub out: PathBuf,
    pub resume: bool,
    pub name: String,
    pub version: String,
    pub batch_size: usize,
    pub lr: f64,
    pub weight_decay: f64,
    pub patience: usize,
    /// Input side in pixels; `None` keeps the data's own size (28 for PneumoniaMNIST).
    pub size: Option<usize>,
    pub architecture: Architecture,
    pub augment: Augment,
    pub val_fraction: f64,
    /// The exact command line, recorded in the card.
    pub command: String,
    pub progress: bool,
    /// Stop after this many epochs in this run (the checkpoint stays resumable); for tests
    /// and time-boxed runs.
    pub stop_after: Option<usize>,
}

impl TrainOptions {
    pub fn new(data: PathBuf, out: PathBuf) -> TrainOptions {
        TrainOptions {
            data,
            labels_csv: None,
            epochs: 30,
            seed: 42,
            out,
            resume: false,
            name: "classifier".into(),
            version: "1.0.0".into(),
            batch_size: 64,
            lr: 3e-3,
            weight_decay: 5e-4,
            patience: 8,
            size: None,
            architecture: Architecture::default(),
            augment: Augment::default(),
            val_fraction: 0.1,
            command: String::new(),
            progress: false,
            stop_after: None,
        }
    }
}

/// One epoch's figures.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct EpochLog {
    pub epoch: usize,
    pub train_loss: f64,
    pub val_auc: f64,
    pub val_loss: f64,
    pub lr: f64,
    pub seconds: f64,
}

/// The loop's state, written with every checkpoint.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct LoopState {
    seed: u64,
    epochs: usize,
    data_sha256: String,
    epochs_done: usize,
    best_epoch: usize,
    best_auc: f64,
    best_loss: f64,
    seconds: f64,
    history: Vec<EpochLog>,
}

pub struct TrainOutcome {
    pub card: ModelCard,
    pub card_path: PathBuf,
    pub weights_path: PathBuf,
    pub history: Vec<EpochLog>,
    pub stopped_early: bool,
}

/// Class-weighted binary cross-entropy with logits, averaged over the batch.
fn weighted_bce(logits: Tensor<1>, targets: Tensor<1>, weights: Tensor<1>) -> Tensor<1> {
    // max(z, 0) - z*y + log(1 + exp(-|z|)), stable for any z.
    let per = relu(logits.clone()) - logits.clone() * targets + logits.abs().neg().exp().log1p();
    (per * weights).mean()
}

fn lr_at(step: usize, total: usize, warmup: usize, peak: f64) -> f64 {
    if step < warmup {
        peak * (step + 1) as f64 / warmup as f64
    } else {
        let t = (step - warmup) as f64 / (total - warmup).max(1) as f64;
        peak * 0.5 * (1.0 + (std::f64::consts::PI * t.min(1.0)).cos())
    }
}

fn mix(seed: u64, epoch: usize, salt: u64) -> u64 {
    // SplitMix64 of the inputs: independent, reproducible streams per (seed, epoch, purpose).
    let mut z = seed ^ (epoch as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ salt.wrapping_mul(0xD1B5_4A32_D192_ED03);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn data_fingerprint(path: &Path, train: &Split, val: &Split) -> Result<String, MlError> {
    if path.is_file() {
        let bytes = std::fs::read(path).map_err(|e| MlError::Io(format!("{}: {e}", path.display())))?;
        return Ok(sha256_hex(&bytes));
    }
    let mut all = Vec::with_capacity(train.images.len() + val.images.len() + train.len() + val.len());
    for s in [train, val] {
        all.extend_from_slice(&s.images);
        all.extend(s.labels.iter().map(|&l| l as u8));
    }
    Ok(sha256_hex(&all))
}

fn save_checkpoint(net: &Net, path: &Path) -> Result<(), MlError> {
    write_atomic(path, &save_net_bytes(net)?)
}

fn load_into(net: &mut Net, path: &Path) -> Result<(), MlError> {
    let mut store = BurnpackStore::from_file(path).auto_extension(false);
    net.load_from(&mut store).map_err(|e| MlError::Io(format!("{}: cannot load checkpoint: {e}", path.display())))?;
    Ok(())
}

/// Trains a classifier on the data at `opts.data` and writes `<out>/<name>-<version>.bpk`
/// and its card.
pub fn train(opts: &TrainOptions, runtime: &Runtime) -> Result<TrainOutcome, MlError> {
    let size = opts.size.map(|s| (s, s));
    let data = load_training_data(&opts.data, opts.labels_csv.as_deref(), size, opts.seed, opts.val_fraction)?;
    let fingerprint = data_fingerprint(&opts.data, &data.train, &data.val)?;
    train_on(data, fingerprint, opts, runtime)
}

/// One network's run: the loop above, with its checkpoints in `ckpt`.
struct MemberOutcome {
    best_path: PathBuf,
    state: LoopState,
    stopped_early: bool,
}

/// Trains one network with `seed`; `label` is empty for a lone network and names the member
/// of an ensemble (`member 2/5 `); `this_run` counts the epochs run in this invocation across
/// members (for `stop_after`).
#[allow(clippy::too_many_arguments)]
fn train_member(
    train: &Split,
    val: &Split,
    spec: &InputSpec,
    (w_pos, w_neg): (f64, f64),
    data_sha: &str,
    opts: &TrainOptions,
    seed: u64,
    ckpt: &Path,
    label: &str,
    this_run: &mut usize,
    runtime: &Runtime,
) -> Result<MemberOutcome, MlError> {
    let (w, h) = (train.width, train.height);
    let device = runtime.device.clone().autodiff();
    device.seed(seed);
    let mut net = opts.architecture.init(&device);
    let mut optim = AdamWConfig::new().with_weight_decay(opts.weight_decay as f32).init();

    std::fs::create_dir_all(&ckpt).map_err(|e| MlError::Io(format!("{}: {e}", ckpt.display())))?;
    let state_path = ckpt.join("state.toml");
    let mut state = LoopState {
        seed,
        epochs: opts.epochs,
        data_sha256: data_sha.to_string(),
        epochs_done: 0,
        best_epoch: 0,
        best_auc: f64::NEG_INFINITY,
        best_loss: f64::INFINITY,
        seconds: 0.0,
        history: Vec::new(),
    };
    // An ensemble member that had not started when the run was interrupted starts afresh.
    let started_before = state_path.is_file() || label.is_empty();
    if opts.resume && started_before {
        let text = std::fs::read_to_string(&state_path)
            .map_err(|e| MlError::Io(format!("--resume: no checkpoint at {}: {e}", state_path.display())))?;
        let s: LoopState =
            toml::from_str(&text).map_err(|e| MlError::Io(format!("{}: {}", state_path.display(), e.message())))?;
        if s.seed != seed || s.data_sha256 != data_sha || s.epochs != opts.epochs {
            return Err(MlError::Data(format!(
                "--resume: the checkpoint was made with seed {}, {} epochs and data {}; this run has seed {}, {} epochs and data {}",
                s.seed, s.epochs, s.data_sha256, seed, opts.epochs, data_sha
            )));
        }
        load_into(&mut net, &ckpt.join("model.bpk"))?;
        // burn materialises optimiser state on its *default* device (wgpu when there is an
        // adapter) and moves it on the next step; for CPU training, make that default flex so
        // that resuming does not open a GPU (or lavapipe) it will never use.
        let on_cpu = !runtime.is_gpu() && std::env::var_os("BURN_DEVICE").is_none();
        if on_cpu {
            std::env::set_var("BURN_DEVICE", "flex");
        }
        let loaded = optim.load(ckpt.join("optim.bpk"));
        if on_cpu {
            std::env::remove_var("BURN_DEVICE");
        }
        optim = loaded.map_err(|e| MlError::Io(format!("{}: {e:?}", ckpt.join("optim.bpk").display())))?;
        state = s;
    }

    let steps_per_epoch = train.len().div_ceil(opts.batch_size);
    let total_steps = steps_per_epoch * opts.epochs;
    let px = w * h;
    let mut stopped_early = false;
    let since_best = |s: &LoopState| s.epochs_done.saturating_sub(s.best_epoch);
    if state.epochs_done > 0 && since_best(&state) >= opts.patience {
        stopped_early = true;
    }

    while state.epochs_done < opts.epochs && !stopped_early {
        if opts.stop_after.is_some_and(|n| *this_run >= n) {
            return Err(MlError::Interrupted(state.epochs_done));
        }
        *this_run += 1;
        let epoch = state.epochs_done + 1;
        let started = Instant::now();
        device.seed(mix(seed, epoch, 1));
        let mut rng = rand::rngs::StdRng::seed_from_u64(mix(seed, epoch, 2));
        let mut order: Vec<usize> = (0..train.len()).collect();
        order.shuffle(&mut rng);
        let bar = if opts.progress { ProgressBar::new(steps_per_epoch as u64) } else { ProgressBar::hidden() };
        bar.set_style(
            ProgressStyle::with_template("epoch {prefix} [{bar:30}] {pos}/{len} {msg} ({elapsed})")
                .expect("template")
                .progress_chars("=> "),
        );
        bar.set_prefix(format!("{label}{epoch}/{}", opts.epochs));
        let mut buf = vec![0f32; px];
        let (mut loss_sum, mut loss_n) = (0.0, 0usize);
        let mut lr = 0.0;
        for (b, chunk) in order.chunks(opts.batch_size).enumerate() {
            if chunk.len() < 2 {
                continue; // batch norm needs at least two samples
            }
            let step = (epoch - 1) * steps_per_epoch + b;
            lr = lr_at(step, total_steps, steps_per_epoch, opts.lr);
            let mut x = Vec::with_capacity(chunk.len() * px);
            let mut y = Vec::with_capacity(chunk.len());
            let mut wts = Vec::with_capacity(chunk.len());
            for &i in chunk {
                opts.augment.apply(train.image(i), w, h, &mut rng, &mut buf);
                x.extend(buf.iter().map(|&v| ((v as f64 - spec.mean) / spec.std) as f32));
                let l = train.labels[i];
                y.push(if l { 1f32 } else { 0f32 });
                wts.push(if l { w_pos } else { w_neg } as f32);
            }
            let bs = chunk.len();
            let x = Tensor::<4>::from_data(TensorData::new(x, [bs, 1, h, w]), &device);
            let y = Tensor::<1>::from_data(TensorData::new(y, [bs]), &device);
            let wt = Tensor::<1>::from_data(TensorData::new(wts, [bs]), &device);
            let loss = weighted_bce(net.forward(x), y, wt);
            let loss_v = loss.clone().try_into_scalar::<f32>().map_err(|e| MlError::Device(format!("{e:?}")))? as f64;
            let grads = GradientsParams::from_grads(loss.backward(), &net);
            net = optim.step(lr, net, grads);
            loss_sum += loss_v * bs as f64;
            loss_n += bs;
            bar.inc(1);
            bar.set_message(format!("loss {:.4} lr {lr:.2e}", loss_sum / loss_n as f64));
        }
        // Validation on the plain device.
        let valid = net.valid();
        let logits = net_logits(&valid, &runtime.device, &spec, &val, 256)?;
        let auc = metrics::roc_auc(&logits, &val.labels).unwrap_or(0.5);
        let val_loss = weighted_val_loss(&logits, &val.labels);
        let secs = started.elapsed().as_secs_f64();
        bar.finish_and_clear();
        let log =
            EpochLog { epoch, train_loss: loss_sum / loss_n.max(1) as f64, val_auc: auc, val_loss, lr, seconds: secs };
        if opts.progress {
            eprintln!(
                "{label}epoch {epoch}/{}: loss {:.4}  val AUC {:.4}  val loss {:.4}  lr {:.2e}  {:.1}s",
                opts.epochs, log.train_loss, auc, val_loss, lr, secs
            );
        }
        state.history.push(log);
        state.epochs_done = epoch;
        state.seconds += secs;
        let better =
            auc > state.best_auc + 1e-9 || ((auc - state.best_auc).abs() <= 1e-9 && val_loss < state.best_loss);
        if better {
            state.best_auc = auc;
            state.best_loss = val_loss;
            state.best_epoch = epoch;
            save_checkpoint(&valid, &ckpt.join("best.bpk"))?;
        }
        save_checkpoint(&net, &ckpt.join("model.bpk"))?;
        optim.save(ckpt.join("optim.bpk")).map_err(|e| MlError::Io(format!("saving optimiser state: {e:?}")))?;
        let text = toml::to_string(&state).map_err(|e| MlError::Io(e.to_string()))?;
        write_atomic(&state_path, text.as_bytes())?;
        if since_best(&state) >= opts.patience {
            stopped_early = true;
            if opts.progress {
                eprintln!(
                    "{label}early stop: no AUC gain for {} epochs; best epoch {}",
                    opts.patience, state.best_epoch
                );
            }
        }
    }

    Ok(MemberOutcome { best_path: ckpt.join("best.bpk"), state, stopped_early })
}

/// Trains on data already in memory; `data_sha` identifies it in the card and checkpoints.
pub fn train_on(
    data: TrainingData,
    data_sha: String,
    opts: &TrainOptions,
    runtime: &Runtime,
) -> Result<TrainOutcome, MlError> {
    opts.architecture.validate().map_err(MlError::Data)?;
    if opts.epochs == 0 || opts.batch_size < 2 {
        return Err(MlError::Data("epochs must be at least 1 and batch size at least 2".into()));
    }
    let (train, val) = (data.train, data.val);
    let (w, h) = (train.width, train.height);
    if train.positives() == 0
        || train.positives() == train.len()
        || val.positives() == 0
        || val.positives() == val.len()
    {
        return Err(MlError::Data("both classes must appear in the training and the validation data".into()));
    }

    // Normalisation from the training pixels.
    let n_px = train.images.len() as f64;
    let mean = train.images.iter().map(|&p| p as f64 / 255.0).sum::<f64>() / n_px;
    let var = train.images.iter().map(|&p| (p as f64 / 255.0 - mean).powi(2)).sum::<f64>() / n_px;
    let spec = InputSpec { width: w, height: h, channels: 1, mean, std: var.sqrt().max(1e-3) };

    let pos = train.positives() as f64;
    let n = train.len() as f64;
    let (w_pos, w_neg) = (n / (2.0 * pos), n / (2.0 * (n - pos)));

    let members = opts.architecture.members;
    let mut runs = Vec::with_capacity(members);
    let mut this_run = 0;
    for k in 0..members {
        // Member k trains with seed + k, so member 0 is the one-network run of the same seed.
        let (ckpt, label) = if members == 1 {
            (opts.out.join("checkpoint"), String::new())
        } else {
            (opts.out.join(format!("member-{k}")).join("checkpoint"), format!("member {}/{members} ", k + 1))
        };
        let seed = opts.seed + k as u64;
        runs.push(train_member(
            &train,
            &val,
            &spec,
            (w_pos, w_neg),
            &data_sha,
            opts,
            seed,
            &ckpt,
            &label,
            &mut this_run,
            runtime,
        )?);
    }
    let single = Architecture { members: 1, ..opts.architecture.clone() };
    let mut best_nets = Vec::with_capacity(members);
    for r in &runs {
        let mut n = single.init(&runtime.device);
        load_into(&mut n, &r.best_path)?;
        best_nets.push(n);
    }
    // One network keeps its best checkpoint's bytes; an ensemble is written as one file.
    let best_bytes = if members == 1 {
        std::fs::read(&runs[0].best_path).map_err(|e| MlError::Io(format!("best checkpoint: {e}")))?
    } else {
        save_nets_bytes(&best_nets)?
    };
    let state = &runs[0].state;
    let epochs_run: usize = runs.iter().map(|r| r.state.epochs_done).sum();
    let seconds: f64 = runs.iter().map(|r| r.state.seconds).sum();
    let member_runs: Vec<MemberRun> = if members == 1 {
        Vec::new()
    } else {
        runs.iter()
            .map(|r| MemberRun {
                seed: r.state.seed,
                epochs_run: r.state.epochs_done,
                best_epoch: r.state.best_epoch,
                val_auc: r.state.best_auc,
                seconds: (r.state.seconds * 10.0).round() / 10.0,
            })
            .collect()
    };
    let stopped_early = runs.iter().all(|r| r.stopped_early);
    let history: Vec<EpochLog> = runs.iter().flat_map(|r| r.state.history.clone()).collect();
    let sha = sha256_hex(&best_bytes);
    let mut card = ModelCard {
        name: opts.name.clone(),
        version: opts.version.clone(),
        task: "binary classification of a frontal chest radiograph".into(),
        labels: data.labels.clone(),
        threshold: 0.5,
        threshold_rule:
            "maximises Youden's J (balanced accuracy) on the validation split, using calibrated probabilities".into(),
        weights: format!("{}-{}.bpk", opts.name, opts.version),
        weights_sha256: sha,
        intended_use: "Decision support: flags chest radiographs for a radiologist's attention and shows where the \
                       evidence lies. It assists, and does not replace, a radiologist."
            .into(),
        limitations: format!(
            "Trained on {} ({}x{} pixels); other populations, views, ages and devices may perform worse. \
             Not validated for diagnosis, for lateral views or for conditions other than the two classes. The \
             probability is calibrated on the validation split and shifts with prevalence. Never use it without \
             a radiologist's reading.",
            opts.data.file_name().and_then(|f| f.to_str()).unwrap_or("the training data"),
            w,
            h
        ),
        input: spec.clone(),
        architecture: opts.architecture.clone(),
        calibration: Calibration {
            temperature: 1.0,
            method: "temperature scaling (NLL on the validation split)".into(),
        },
        training: Training {
            data: opts.data.display().to_string(),
            data_sha256: data_sha,
            train_images: train.len(),
            train_positives: train.positives(),
            validation: format!("{} images ({} {}), {}", val.len(), val.positives(), data.labels[1], data.val_source),
            command: opts.command.clone(),
            seed: opts.seed,
            epochs_run,
            best_epoch: state.best_epoch,
            batch_size: opts.batch_size,
            optimizer: format!("AdamW, peak lr {}, weight decay {}", opts.lr, opts.weight_decay),
            schedule: "linear warm-up over the first epoch, then cosine decay to 0 over all epochs".into(),
            loss: format!("class-weighted binary cross-entropy (positive {w_pos:.3}, negative {w_neg:.3})"),
            augmentation: opts.augment.describe(),
            seconds: (seconds * 10.0).round() / 10.0,
            device: format!("{} ({})", runtime.info.backend, runtime.info.adapter),
            lucent_version: env!("CARGO_PKG_VERSION").into(),
            members: member_runs,
        },
        validation: Metrics {
            n: 0,
            positives: 0,
            auc: 0.0,
            accuracy: 0.0,
            balanced_accuracy: 0.0,
            sensitivity: 0.0,
            specificity: 0.0,
            ece: 0.0,
            ece_uncalibrated: 0.0,
            nll: 0.0,
        },
    };
    // Loaded back through the card, as inference will load it.
    let nets = load_nets(&card, &Cow::Owned(best_bytes.clone()), &runtime.device, "trained weights")?;
    let rows: Vec<Vec<f64>> =
        nets.iter().map(|n| net_logits(n, &runtime.device, &spec, &val, 256)).collect::<Result<_, _>>()?;
    let logits = mean_rows(&rows);
    let t = metrics::fit_temperature(&logits, &val.labels);
    let raw: Vec<f64> = logits.iter().map(|&z| sigmoid(z)).collect();
    let probs: Vec<f64> = logits.iter().map(|&z| sigmoid(z / t)).collect();
    let threshold = metrics::youden_threshold(&probs, &val.labels).clamp(1e-6, 1.0 - 1e-6);
    let r = Report::compute(&probs, &val.labels, threshold);
    card.calibration.temperature = t;
    card.threshold = threshold;
    card.validation = Metrics {
        n: r.n,
        positives: r.positives,
        auc: r.auc,
        accuracy: r.accuracy,
        balanced_accuracy: r.balanced_accuracy,
        sensitivity: r.sensitivity,
        specificity: r.specificity,
        ece: r.ece,
        ece_uncalibrated: metrics::expected_calibration_error(&raw, &val.labels, 15),
        nll: r.nll,
    };
    let weights_path = opts.out.join(&card.weights);
    let card_path = opts.out.join(format!("{}.toml", card.id()));
    write_atomic(&weights_path, &best_bytes)?;
    let preds = super::registry::predictions_csv(&probs, &val.labels);
    write_atomic(&opts.out.join(super::registry::predictions_file(&card.id())), preds.as_bytes())?;
    write_atomic(&card_path, card.to_toml().as_bytes())?;
    Ok(TrainOutcome { card, card_path, weights_path, history, stopped_early })
}

/// Class-balanced validation loss (the tie-breaker between epochs of equal AUC).
fn weighted_val_loss(logits: &[f64], labels: &[bool]) -> f64 {
    let (mut lp, mut np, mut ln, mut nn) = (0.0, 0usize, 0.0, 0usize);
    for (&z, &l) in logits.iter().zip(labels) {
        if l {
            lp += (-z).max(0.0) + (-z.abs()).exp().ln_1p();
            np += 1;
        } else {
            ln += z.max(0.0) + (-z.abs()).exp().ln_1p();
            nn += 1;
        }
    }
    (lp / np.max(1) as f64 + ln / nn.max(1) as f64) / 2.0
}
