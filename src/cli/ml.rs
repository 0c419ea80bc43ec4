//! ML commands: `doctor`, `train`, `models list|show|import|activate|eval`, `predict`,
//! `classify`. Argument handling and output only; the work is in `crate::ml`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};

use super::DataDir;
use crate::config::Config;
use crate::ml::{self, data, metrics, train, DevicePref, Registry, Runtime};

#[derive(Subcommand)]
pub(super) enum MlCommand {
    /// Report the compute device in use (adapter, API, memory) and the active models.
    Doctor {
        #[command(flatten)]
        dir: DataDir,
        #[command(flatten)]
        dev: DeviceArg,
    },
    /// Train a model on local data; nothing leaves the machine.
    Train {
        #[command(subcommand)]
        what: TrainWhat,
    },
    /// Manage models: list, show, import, activate, eval.
    Models {
        #[command(subcommand)]
        action: ModelsAction,
    },
    /// Write `index,probability` for every image of an npz split, in array order.
    Predict {
        /// Model: a name (its active version), NAME-VERSION, or a card file.
        #[arg(long, default_value = "classifier")]
        model: String,
        /// MedMNIST-style npz archive.
        #[arg(long, value_name = "FILE")]
        npz: PathBuf,
        /// Split name: reads `<split>_images` (labels are not needed).
        #[arg(long, default_value = "test")]
        split: String,
        /// Output CSV.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        #[command(flatten)]
        dir: DataDir,
        #[command(flatten)]
        dev: DeviceArg,
    },
    /// Classify image files (PNG; DICOM through the pixel pipeline): label, probability, model.
    Classify {
        /// Image files.
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
        #[arg(long, default_value = "classifier")]
        model: String,
        /// Print one JSON object per line.
        #[arg(long)]
        json: bool,
        /// Also write each file's saliency map as `<stem>.saliency.png` into this folder.
        #[arg(long, value_name = "DIR")]
        saliency: Option<PathBuf>,
        #[command(flatten)]
        dir: DataDir,
        #[command(flatten)]
        dev: DeviceArg,
    },
}

#[derive(Args, Clone)]
pub(super) struct DeviceArg {
    /// Override ml.device: auto, cpu or gpu.
    #[arg(long, value_name = "auto|cpu|gpu")]
    device: Option<String>,
}

#[derive(Subcommand)]
pub(super) enum TrainWhat {
    /// The chest X-ray classifier (pneumonia against normal).
    Classifier(TrainArgs),
}

#[derive(Args)]
pub(super) struct TrainArgs {
    /// Training data: a MedMNIST npz (train and val splits), a folder of two class subfolders
    /// (optionally inside train/ and val/), or an image folder with --labels.
    #[arg(long, value_name = "FILE.npz|DIR")]
    data: PathBuf,
    /// CSV with `file,label` columns (paths relative to --data).
    #[arg(long, value_name = "CSV")]
    labels: Option<PathBuf>,
    #[arg(long, default_value_t = 30)]
    epochs: usize,
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Output folder for the weights, card and checkpoints.
    #[arg(long, value_name = "DIR", default_value = "trained")]
    out: PathBuf,
    /// Continue from the checkpoints in <out>.
    #[arg(long)]
    resume: bool,
    /// Model name.
    #[arg(long, default_value = "classifier")]
    name: String,
    /// Model version recorded in the card and the file names.
    #[arg(long, default_value = "1.0.0")]
    version: String,
    /// Input side in pixels (default: the data's own, 28 for folders).
    #[arg(long)]
    size: Option<usize>,
    #[arg(long, default_value_t = 64)]
    batch_size: usize,
    /// Peak learning rate.
    #[arg(long, default_value_t = 3e-3)]
    lr: f64,
    #[arg(long, default_value_t = 5e-4)]
    weight_decay: f64,
    /// Epochs without a validation-AUC gain before stopping.
    #[arg(long, default_value_t = 8)]
    patience: usize,
    /// Channels of the first stage.
    #[arg(long, default_value_t = 24)]
    width: usize,
    /// Residual blocks per stage, comma-separated.
    #[arg(long, default_value = "1,1,1", value_delimiter = ',')]
    blocks: Vec<usize>,
    #[arg(long, default_value_t = 0.2)]
    dropout: f64,
    /// Networks in the ensemble (seeds S, S+1, …; logits averaged). Each trains with its own
    /// checkpoints in <out>/member-<k>/ (one network: <out>/checkpoint/).
    #[arg(long, default_value_t = 1)]
    members: usize,
    /// Fraction of each class held out for validation (folder data without val/).
    #[arg(long, default_value_t = 0.1)]
    val_fraction: f64,
    #[command(flatten)]
    dir: DataDir,
    #[command(flatten)]
    dev: DeviceArg,
}

#[derive(Subcommand)]
pub(super) enum ModelsAction {
    /// List embedded and imported models; `*` marks the active version of each name.
    List {
        #[command(flatten)]
        dir: DataDir,
    },
    /// Print a model's card.
    Show {
        /// NAME, NAME-VERSION or a card file.
        model: String,
        #[command(flatten)]
        dir: DataDir,
    },
    /// Copy a card and the weights beside it into <data-dir>/models after checking them.
    Import {
        /// The card (`<name>-<version>.toml`, with its `.bpk` beside it).
        card: PathBuf,
        #[command(flatten)]
        dir: DataDir,
    },
    /// Make NAME-VERSION the active version of its name.
    Activate {
        model: String,
        #[command(flatten)]
        dir: DataDir,
    },
    /// Measure a model on a labelled npz split: AUC, accuracy at the card's threshold,
    /// sensitivity, specificity, ECE, confusion matrix.
    Eval {
        /// Model name, e.g. classifier.
        name: String,
        /// A specific version (NAME-VERSION) or card file instead of the active one.
        #[arg(long)]
        model: Option<String>,
        #[arg(long, value_name = "FILE.npz")]
        data: PathBuf,
        #[arg(long, default_value = "val")]
        split: String,
        #[arg(long)]
        json: bool,
        /// Also write each image's calibrated probability and label to this CSV (the
        /// `<id>.predictions.csv` beside a card feeds the ROC curve of the models page).
        #[arg(long, value_name = "FILE.csv")]
        save_predictions: Option<PathBuf>,
        #[command(flatten)]
        dir: DataDir,
        #[command(flatten)]
        dev: DeviceArg,
    },
}

fn runtime(dir: &Path, dev: &DeviceArg) -> anyhow::Result<Runtime> {
    let pref = match &dev.device {
        Some(d) => d.parse::<DevicePref>().map_err(anyhow::Error::msg)?,
        None => Config::load(dir)?.ml.device.parse::<DevicePref>().map_err(anyhow::Error::msg)?,
    };
    Ok(ml::select(pref)?)
}

fn command_line() -> String {
    // The program as `lucent` (not the path of whichever build ran), so the card's command
    // can be pasted as it is.
    std::iter::once("lucent".to_string())
        .chain(std::env::args().skip(1))
        .map(
            |a| {
                if a.chars().all(|c| c.is_ascii_alphanumeric() || "-_./=,:".contains(c)) {
                    a
                } else {
                    format!("'{a}'")
                }
            },
        )
        .collect::<Vec<_>>()
        .join(" ")
}

/// DICOM input for the models: the frame as a viewer shows it by default (Modality LUT, VOI,
/// MONOCHROME1 inverted), in grey. `ml` then applies the card's geometry and normalisation.
/// This glue lives here because `ml` must not decode DICOM and `preprocess` must not know `ml`.
fn dicom_frame(path: &Path) -> Result<data::GrayFrame, String> {
    let obj = crate::preprocess::open(path).map_err(|e| e.to_string())?;
    let img = crate::preprocess::render_frame(&obj, 0, &crate::preprocess::RenderOptions::default())
        .map_err(|e| e.to_string())?;
    let g = crate::preprocess::render::to_grayscale(img);
    data::GrayFrame::new(g.width as usize, g.height as usize, g.data).map_err(|e| e.to_string())
}

pub(super) fn run(cmd: MlCommand) -> anyhow::Result<ExitCode> {
    data::set_dicom_decoder(dicom_frame);
    match cmd {
        MlCommand::Doctor { dir, dev } => doctor(&dir.data_dir, &dev)?,
        MlCommand::Train { what: TrainWhat::Classifier(a) } => train_classifier(a)?,
        MlCommand::Models { action } => models(action)?,
        MlCommand::Predict { model, npz, split, out, dir, dev } => {
            let rt = runtime(&dir.data_dir, &dev)?;
            let entry = Registry::new(&dir.data_dir).resolve(&model)?;
            let c = entry.load(&rt.device)?;
            let images = load_images_only(&npz, &split)?;
            let logits = c.split_logits(&images, 256)?;
            let mut text = String::from("index,probability\n");
            for (i, z) in logits.iter().enumerate() {
                text.push_str(&format!("{i},{:.6}\n", c.calibrate(*z).probability));
            }
            std::fs::write(&out, text).with_context(|| format!("cannot write {}", out.display()))?;
            eprintln!(
                "{} predictions from {} on {} written to {}",
                logits.len(),
                c.card.id(),
                c.executor(),
                out.display()
            );
        }
        MlCommand::Classify { files, model, json, saliency, dir, dev } => {
            return classify(&files, &model, json, saliency.as_deref(), &dir.data_dir, &dev)
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Images of a split whose labels may be absent (a held-out test split).
fn load_images_only(npz: &Path, split: &str) -> anyhow::Result<data::Split> {
    match data::load_npz_split(npz, split) {
        Ok(s) => Ok(s),
        Err(e) if e.to_string().contains(&format!("no array `{split}_labels`")) => {
            Ok(data::load_npz_images(npz, split)?)
        }
        Err(e) => Err(e.into()),
    }
}

fn doctor(dir: &Path, dev: &DeviceArg) -> anyhow::Result<()> {
    let cfg = Config::load(dir)?;
    let rt = runtime(dir, dev)?;
    let i = &rt.info;
    println!("ml.device    {}", dev.device.clone().unwrap_or(cfg.ml.device));
    println!("backend      {}", i.backend);
    println!("adapter      {}", i.adapter);
    println!("api          {}", i.api);
    println!("device type  {}", i.device_type);
    println!("driver       {}", i.driver);
    match i.memory_bytes {
        Some(b) => println!("memory       {:.1} GiB ({})", b as f64 / (1u64 << 30) as f64, i.memory_note),
        None => println!("memory       unknown"),
    }
    println!("why          {}", i.reason);
    let reg = Registry::new(dir);
    match reg.active("classifier").and_then(|e| e.load(&rt.device).map(|c| (e, c))) {
        Ok((e, c)) => {
            // A real forward pass proves the device works end to end.
            let p = c.predict(&vec![0.0; c.card.input.width * c.card.input.height])?;
            println!("classifier   {} ({}), forward pass ok (logit {:.3})", c.card.id(), e.origin(), p[0].logit);
            println!("inference    {}", c.executor());
        }
        Err(e) => println!("classifier   not available: {e}"),
    }
    Ok(())
}

fn train_classifier(a: TrainArgs) -> anyhow::Result<()> {
    let rt = runtime(&a.dir.data_dir, &a.dev)?;
    eprintln!("training on {} ({})", rt.info.backend, rt.info.adapter);
    let mut o = train::TrainOptions::new(a.data, a.out);
    o.labels_csv = a.labels;
    o.epochs = a.epochs;
    o.seed = a.seed;
    o.resume = a.resume;
    o.name = a.name;
    o.version = a.version;
    o.size = a.size;
    o.batch_size = a.batch_size;
    o.lr = a.lr;
    o.weight_decay = a.weight_decay;
    o.patience = a.patience;
    o.architecture = ml::model::Architecture {
        kind: "resnet".into(),
        width: a.width,
        blocks: a.blocks,
        dropout: a.dropout,
        members: a.members,
    };
    o.val_fraction = a.val_fraction;
    o.command = command_line();
    o.progress = true;
    let out = train::train(&o, &rt)?;
    let v = &out.card.validation;
    println!(
        "{}: best epoch {} of {}{}; validation AUC {:.4}, accuracy {:.4}, sensitivity {:.4}, specificity {:.4} at threshold {:.4}, temperature {:.3}",
        out.card.id(),
        out.card.training.best_epoch,
        out.card.training.epochs_run,
        if out.stopped_early { " (early stop)" } else { "" },
        v.auc,
        v.accuracy,
        v.sensitivity,
        v.specificity,
        out.card.threshold,
        out.card.calibration.temperature
    );
    for m in &out.card.training.members {
        println!(
            "  member seed {}: best epoch {} of {}, validation AUC {:.4}, {:.0} s",
            m.seed, m.best_epoch, m.epochs_run, m.val_auc, m.seconds
        );
    }
    println!("wrote {} and {}", out.weights_path.display(), out.card_path.display());
    Ok(())
}

fn models(action: ModelsAction) -> anyhow::Result<()> {
    match action {
        ModelsAction::List { dir } => {
            let reg = Registry::new(&dir.data_dir);
            for e in reg.all()? {
                let mark = if reg.is_active(&e) { "*" } else { " " };
                let src = match e.source {
                    ml::registry::Source::Embedded(..) => "embedded".to_string(),
                    ml::registry::Source::File(ref p) => p.display().to_string(),
                };
                println!("{mark} {:<28} val AUC {:.4}  {src}", e.card.id(), e.card.validation.auc);
            }
        }
        ModelsAction::Show { model, dir } => print!("{}", Registry::new(&dir.data_dir).resolve(&model)?.card.to_toml()),
        ModelsAction::Import { card, dir } => {
            let e = Registry::new(&dir.data_dir).import(&card)?;
            println!("imported {} into {}", e.card.id(), e.origin());
        }
        ModelsAction::Activate { model, dir } => {
            let e = Registry::new(&dir.data_dir).activate(&model)?;
            println!("{} is now the active {}", e.card.id(), e.card.name);
        }
        ModelsAction::Eval { name, model, data, split, json, save_predictions, dir, dev } => {
            let rt = runtime(&dir.data_dir, &dev)?;
            let entry = Registry::new(&dir.data_dir).resolve(model.as_deref().unwrap_or(&name))?;
            let c = entry.load(&rt.device)?;
            let s = data::load_npz_split(&data, &split)?;
            let probs: Vec<f64> = c.split_logits(&s, 256)?.into_iter().map(|z| c.calibrate(z).probability).collect();
            let r = metrics::Report::compute(&probs, &s.labels, c.card.threshold);
            if let Some(out) = &save_predictions {
                std::fs::write(out, ml::registry::predictions_csv(&probs, &s.labels))
                    .with_context(|| format!("cannot write {}", out.display()))?;
            }
            if json {
                let mut v = serde_json::to_value(&r)?;
                v["model"] = c.card.id().into();
                v["split"] = split.into();
                println!("{v}");
            } else {
                let cm = r.confusion;
                let [neg, pos] = &c.card.labels;
                println!(
                    "model        {} on {} ({} split, {} images, {} {pos})",
                    c.card.id(),
                    c.executor(),
                    split,
                    r.n,
                    r.positives
                );
                println!("AUC          {:.4}", r.auc);
                println!("threshold    {:.4} (from the card)", r.threshold);
                println!("accuracy     {:.4}", r.accuracy);
                println!("balanced acc {:.4}", r.balanced_accuracy);
                println!("sensitivity  {:.4}", r.sensitivity);
                println!("specificity  {:.4}", r.specificity);
                println!("ECE          {:.4} (15 bins)", r.ece);
                println!("confusion    predicted {neg} / {pos}");
                println!("  true {neg:<9} {:>6} / {:<6}", cm.tn, cm.fp);
                println!("  true {pos:<9} {:>6} / {:<6}", cm.fn_, cm.tp);
            }
        }
    }
    Ok(())
}

fn classify(
    files: &[PathBuf],
    model: &str,
    json: bool,
    saliency: Option<&Path>,
    dir: &Path,
    dev: &DeviceArg,
) -> anyhow::Result<ExitCode> {
    let rt = runtime(dir, dev)?;
    let c = Registry::new(dir).resolve(model)?.load(&rt.device)?;
    if let Some(d) = saliency {
        std::fs::create_dir_all(d).with_context(|| format!("cannot create {}", d.display()))?;
    }
    let mut failed = 0;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    for f in files {
        let result = data::read_image(f).map_err(anyhow::Error::from).and_then(|frame| {
            let input = c.prepare(&frame);
            let mut r = c.predict_with_saliency(&input)?;
            r.pop().context("no result")
        });
        match result {
            Ok((p, s)) => {
                let label = &c.card.labels[p.positive as usize];
                if let Some(d) = saliency {
                    let stem = f.file_stem().and_then(|s| s.to_str()).unwrap_or("image");
                    let px = s.values.iter().map(|v| (v * 255.0).round() as u8).collect();
                    data::write_png(
                        &d.join(format!("{stem}.saliency.png")),
                        &data::GrayFrame::new(s.width, s.height, px)?,
                    )?;
                }
                if json {
                    let v = serde_json::json!({"file": f.display().to_string(), "label": label, "probability": p.probability, "model": c.card.id()});
                    writeln!(out, "{v}")?;
                } else {
                    writeln!(out, "{}\t{label}\t{:.4}\t{}", f.display(), p.probability, c.card.id())?;
                }
            }
            Err(e) => {
                failed += 1;
                eprintln!("{}: {e:#}", f.display());
            }
        }
    }
    if failed > 0 {
        if failed == files.len() {
            bail!("no file could be classified");
        }
        return Ok(ExitCode::from(2));
    }
    Ok(ExitCode::SUCCESS)
}
