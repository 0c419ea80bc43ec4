//! Classifier throughput: inference images/s at batch 1 and 64 on flex (CPU) and on wgpu
//! (lavapipe here, a real GPU where there is one), and training seconds per epoch on flex.
//!
//! Run: `cargo bench --bench classifier` (optionally `-- --data FILE.npz`; defaults to
//! ../shared/data/pneumoniamnist/pneumoniamnist_trainval.npz). The network is the shipped
//! architecture (width 24, blocks 1,1,1, 28×28). `benches/torch_classifier.py` measures the
//! identical network in PyTorch on the CPU for comparison.

use std::borrow::Cow;
use std::path::PathBuf;
use std::time::Instant;

use burn::module::Module;

use lucent::ml::data::{load_npz_split, TrainingData};
use lucent::ml::engine::kernel::Isa;
use lucent::ml::engine::Engine;
use lucent::ml::infer::{in_batches, net_logits, save_net_bytes, sha256_hex, Classifier};
use lucent::ml::model::Architecture;
use lucent::ml::train::{train_on, TrainOptions};
use lucent::ml::{card, select, DevicePref, Runtime};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let data = args
        .iter()
        .position(|a| a == "--data")
        .and_then(|i| args.get(i + 1))
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("../shared/data/pneumoniamnist/pneumoniamnist_trainval.npz"));
    let skip_train = args.iter().any(|a| a == "--no-train");
    println!("command: cargo bench --bench classifier -- --data {}", data.display());
    let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    println!("machine: {threads} hardware threads");
    let val = load_npz_split(&data, "val").expect("val split");
    let arch = Architecture::default();

    let flex = select(DevicePref::Cpu).unwrap();
    bench_inference(&flex, &arch, &val);
    bench_shipped(&flex, &val);
    match select(DevicePref::Gpu) {
        Ok(gpu) => bench_inference(&gpu, &arch, &val),
        Err(e) => println!("wgpu: not measured ({e})"),
    }
    if !skip_train {
        let train = load_npz_split(&data, "train").expect("train split");
        let dir = std::env::temp_dir().join(format!("lucent-bench-{}", std::process::id()));
        let mut o = TrainOptions::new(data.clone(), dir.clone());
        o.epochs = 2;
        o.version = "bench".into();
        let td = TrainingData {
            train,
            val: val.clone(),
            labels: ["normal".into(), "pneumonia".into()],
            val_source: "val".into(),
        };
        let out = train_on(td, "bench".into(), &o, &flex).expect("train");
        for e in &out.history {
            println!(
                "flex training: epoch {} {:.1} s (4708 images, batch 64, augmentation, plus validation of 524)",
                e.epoch, e.seconds
            );
        }
        let _ = std::fs::remove_dir_all(dir);
    }
}

fn bench_inference(rt: &Runtime, arch: &Architecture, val: &lucent::ml::Split) {
    rt.device.seed(1);
    let net = arch.init(&rt.device).valid();
    let bytes = save_net_bytes(&net).unwrap();
    let mut c = card::ModelCard::parse(&sample_card(), "bench").unwrap();
    c.architecture = arch.clone();
    c.weights_sha256 = sha256_hex(&bytes);
    let clf = Classifier::new(c, &Cow::Owned(bytes), &rt.device, "bench").unwrap();
    // On the CPU, burn flex's own forward pass and the CPU engine with each kernel family the
    // CPU has (Lucent runs the best one); on wgpu, burn's.
    let burn_path = |sub: &lucent::ml::Split, batch: usize| {
        net_logits(clf.net(), &rt.device, &clf.card.input, sub, batch).unwrap();
    };
    let mut paths: Vec<(String, Box<dyn Fn(&lucent::ml::Split, usize) + '_>)> =
        vec![(format!("burn {} ({})", rt.info.backend, rt.info.adapter), Box::new(burn_path))];
    if !rt.is_gpu() {
        for isa in Isa::available() {
            let engine = Engine::compile_for(clf.net(), clf.card.input.height, clf.card.input.width, isa).unwrap();
            let spec = clf.card.input.clone();
            let run = move |sub: &lucent::ml::Split, batch: usize| {
                in_batches(sub, &spec, batch, |inputs, _| {
                    Ok(engine.forward(inputs, false)?.iter().map(|o| o.logit as f64).collect())
                })
                .unwrap();
            };
            paths.push((format!("CPU engine ({})", isa.name()), Box::new(run)));
        }
    }
    for (label, run) in paths {
        time_batches(&label, val, &*run);
    }
}

/// The first `n` images of `val`.
fn head(val: &lucent::ml::Split, n: usize) -> lucent::ml::Split {
    lucent::ml::Split {
        height: val.height,
        width: val.width,
        images: val.images[..n * val.height * val.width].to_vec(),
        labels: val.labels[..n].to_vec(),
    }
}

/// Images/s of `run` at batch 1 (128 images a pass) and 64 (the whole split a pass): a
/// warm-up pass (kernel compilation on wgpu, allocator pools), then passes for at least 2 s.
fn time_batches(label: &str, val: &lucent::ml::Split, run: &dyn Fn(&lucent::ml::Split, usize)) {
    for batch in [1usize, 64] {
        let sub = head(val, if batch == 1 { 128.min(val.len()) } else { val.len() });
        run(&sub, batch);
        let start = Instant::now();
        let mut images = 0;
        while start.elapsed().as_secs_f64() < 2.0 {
            run(&sub, batch);
            images += sub.len();
        }
        let secs = start.elapsed().as_secs_f64();
        println!("{label}: inference batch {batch:>2}: {:.0} images/s", images as f64 / secs);
    }
}

/// The classifier Lucent runs by default (the newest embedded one, ensemble members and all),
/// end to end through `Classifier::split_logits`: normalisation, every member, averaging.
fn bench_shipped(rt: &Runtime, val: &lucent::ml::Split) {
    let entry = lucent::ml::registry::embedded()
        .unwrap()
        .into_iter()
        .filter(|e| e.card.name == "classifier")
        .last()
        .expect("an embedded classifier");
    let clf = entry.load(&rt.device).unwrap();
    let label = format!(
        "shipped {} ({} network{}, {})",
        clf.card.id(),
        clf.nets.len(),
        if clf.nets.len() == 1 { "" } else { "s" },
        clf.executor()
    );
    time_batches(&label, val, &|sub, batch| {
        clf.split_logits(sub, batch).unwrap();
    });
}

fn sample_card() -> String {
    r#"
name = "classifier"
version = "bench"
task = "bench"
labels = ["normal", "pneumonia"]
threshold = 0.5
threshold_rule = "bench"
weights = "classifier-bench.bpk"
weights_sha256 = "0000000000000000000000000000000000000000000000000000000000000000"
intended_use = "benchmark"
limitations = "benchmark"
[input]
width = 28
height = 28
channels = 1
mean = 0.5
std = 0.25
[architecture]
kind = "resnet"
width = 24
blocks = [1, 1, 1]
dropout = 0.2
[calibration]
temperature = 1.0
method = "none"
[training]
data = "-"
data_sha256 = "-"
train_images = 0
train_positives = 0
validation = "-"
command = "-"
seed = 0
epochs_run = 0
best_epoch = 0
batch_size = 64
optimizer = "-"
schedule = "-"
loss = "-"
augmentation = "-"
seconds = 0.0
device = "-"
lucent_version = "-"
[validation]
n = 0
positives = 0
auc = 0.0
accuracy = 0.0
balanced_accuracy = 0.0
sensitivity = 0.0
specificity = 0.0
ece = 0.0
ece_uncalibrated = 0.0
nll = 0.0
"#
    .to_string()
}
