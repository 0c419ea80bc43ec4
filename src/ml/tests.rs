//! ML unit tests: small, real runs on burn flex (and wgpu where an adapter exists), each a
//! few seconds.

use std::borrow::Cow;

use burn::module::Module;
use rand::{Rng, SeedableRng};

use super::augment::Augment;
use super::data::{Split, TrainingData};
use super::device::{select, DevicePref};
use super::infer::{load_net, net_logits, save_net_bytes, sha256_hex, Classifier};
use super::model::Architecture;
use super::queue::{InferenceQueue, QueueConfig};
use super::registry::Registry;
use super::train::{train_on, TrainOptions};
use super::*;

const S: usize = 12;

/// burn's flex device has one process-wide RNG (weight init, dropout, `Device::seed`). Tests
/// that draw from it hold this lock, so that one test's draws cannot land in the middle of
/// another's seeded training run and break its determinism.
static FLEX_RNG: std::sync::Mutex<()> = std::sync::Mutex::new(());

pub(crate) fn flex_rng() -> std::sync::MutexGuard<'static, ()> {
    FLEX_RNG.lock().unwrap_or_else(|e| e.into_inner())
}

/// Class 1 has a bright square in the upper left, class 0 in the lower right; noise on top.
fn synthetic(n: usize, seed: u64) -> Split {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut s = Split { height: S, width: S, images: Vec::new(), labels: Vec::new() };
    for i in 0..n {
        let pos = i % 3 != 0; // 2:1 imbalance, like the real data
        let (ox, oy) = if pos { (1, 1) } else { (7, 7) };
        for y in 0..S {
            for x in 0..S {
                let inside = (ox..ox + 4).contains(&x) && (oy..oy + 4).contains(&y);
                let base = if inside { 190.0 } else { 60.0 };
                let v: f64 = base + rng.gen_range(-40.0..40.0);
                s.images.push(v.clamp(0.0, 255.0) as u8);
            }
        }
        s.labels.push(pos);
    }
    s
}

fn tiny_opts(out: &std::path::Path) -> TrainOptions {
    let mut o = TrainOptions::new("synthetic".into(), out.to_path_buf());
    o.epochs = 3;
    o.batch_size = 32;
    o.lr = 1e-2;
    o.architecture = Architecture { kind: "resnet".into(), width: 8, blocks: vec![1, 1], dropout: 0.0, members: 1 };
    o.augment = Augment::none();
    o.version = "0.0.1".into();
    o
}

fn tiny_data() -> TrainingData {
    TrainingData {
        train: synthetic(192, 1),
        val: synthetic(60, 2),
        labels: ["normal".into(), "finding".into()],
        val_source: "synthetic".into(),
    }
}

#[test]
fn tiny_training_run_learns_a_separable_task_and_is_deterministic() {
    let _rng = flex_rng();
    let rt = select(DevicePref::Cpu).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = train_on(tiny_data(), "synthetic".into(), &tiny_opts(dir.path()), &rt).unwrap();
    let v = &out.card.validation;
    assert!(v.accuracy > 0.9, "validation accuracy {} (chance is 0.67)", v.accuracy);
    assert!(v.auc > 0.95, "validation AUC {}", v.auc);
    assert!(out.card.calibration.temperature > 0.0);
    assert!(out.card_path.is_file() && out.weights_path.is_file());

    // Same seed, same data: the same outputs, bit for bit. (The weight files' bytes differ:
    // burnpack records each parameter's random ParamId.)
    let outputs = |o: &super::train::TrainOutcome| {
        let c = Classifier::new(o.card.clone(), &Cow::Owned(std::fs::read(&o.weights_path).unwrap()), &rt.device, "t")
            .unwrap();
        c.split_logits(&synthetic(30, 3), 16).unwrap()
    };
    let dir2 = tempfile::tempdir().unwrap();
    let out2 = train_on(tiny_data(), "synthetic".into(), &tiny_opts(dir2.path()), &rt).unwrap();
    assert_eq!(outputs(&out), outputs(&out2));

    // Interrupted after one epoch and resumed: the same result as the uninterrupted run.
    let dir3 = tempfile::tempdir().unwrap();
    let mut o = tiny_opts(dir3.path());
    o.stop_after = Some(1);
    assert!(matches!(train_on(tiny_data(), "synthetic".into(), &o, &rt), Err(MlError::Interrupted(1))));
    o.stop_after = None;
    o.resume = true;
    let out3 = train_on(tiny_data(), "synthetic".into(), &o, &rt).unwrap();
    assert_eq!(outputs(&out), outputs(&out3));
}

/// An ensemble: member k is the one-network run with seed + k, the classifier averages the
/// members' logits (on the CPU engine and on burn alike), the file round-trips through its
/// card, and an interrupted ensemble resumes to the same result.
#[test]
fn tiny_ensemble_averages_its_members_and_resumes() {
    let _rng = flex_rng();
    let rt = select(DevicePref::Cpu).unwrap();
    let opts = |dir: &std::path::Path, members: usize, seed: u64| {
        let mut o = tiny_opts(dir);
        o.epochs = 2;
        o.seed = seed;
        o.architecture.members = members;
        o
    };
    let load = |o: &super::train::TrainOutcome| {
        Classifier::new(o.card.clone(), &Cow::Owned(std::fs::read(&o.weights_path).unwrap()), &rt.device, "t").unwrap()
    };
    let probe = synthetic(30, 3);
    let dir = tempfile::tempdir().unwrap();
    let ens = train_on(tiny_data(), "synthetic".into(), &opts(dir.path(), 2, 7), &rt).unwrap();
    let m = &ens.card.training.members;
    assert_eq!(m.iter().map(|r| r.seed).collect::<Vec<_>>(), vec![7, 8]);
    assert_eq!(ens.card.training.epochs_run, m.iter().map(|r| r.epochs_run).sum::<usize>());
    assert!(ens.card.validation.auc > 0.95, "ensemble validation AUC {}", ens.card.validation.auc);
    let text = std::fs::read_to_string(&ens.card_path).unwrap();
    assert_eq!(ModelCard::parse(&text, "t").unwrap(), ens.card, "the card round-trips");
    let clf = load(&ens);
    assert_eq!(clf.nets.len(), 2);
    assert_eq!(clf.engines.len(), 2);

    let mut members = Vec::new();
    for seed in [7, 8] {
        let d = tempfile::tempdir().unwrap();
        let one = train_on(tiny_data(), "synthetic".into(), &opts(d.path(), 1, seed), &rt).unwrap();
        members.push(load(&one).split_logits(&probe, 16).unwrap());
    }
    let mean: Vec<f64> = members[0].iter().zip(&members[1]).map(|(a, b)| (a + b) / 2.0).collect();
    let got = clf.split_logits(&probe, 16).unwrap();
    assert!(members[0] != members[1], "members with different seeds should differ");
    for (g, want) in got.iter().zip(&mean) {
        assert!((g - want).abs() < 1e-5, "ensemble logit {g} vs mean of its members {want}");
    }
    // burn's forward pass gives the same average.
    let burn = Classifier { engines: Vec::new(), ..load(&ens) };
    for (a, b) in burn.split_logits(&probe, 16).unwrap().iter().zip(&got) {
        assert!((a - b).abs() < 1e-4 * (1.0 + b.abs()), "burn {a} vs engine {b}");
    }
    let sal = clf.predict_with_saliency(&vec![0.3; S * S]).unwrap();
    assert!(sal[0].1.values.iter().all(|v| (0.0..=1.0).contains(v)));

    // Stopped after member 1's first epoch, resumed: member 2 starts afresh, same result.
    let dir2 = tempfile::tempdir().unwrap();
    let mut o = opts(dir2.path(), 2, 7);
    o.stop_after = Some(1);
    assert!(matches!(train_on(tiny_data(), "synthetic".into(), &o, &rt), Err(MlError::Interrupted(1))));
    assert!(!dir2.path().join("member-1").exists());
    o.stop_after = None;
    o.resume = true;
    let resumed = train_on(tiny_data(), "synthetic".into(), &o, &rt).unwrap();
    assert_eq!(load(&resumed).split_logits(&probe, 16).unwrap(), got);
}

fn trained_card_and_weights(dir: &std::path::Path) -> (ModelCard, Vec<u8>) {
    let rt = select(DevicePref::Cpu).unwrap();
    let mut o = tiny_opts(dir);
    o.epochs = 1;
    let out = train_on(tiny_data(), "synthetic".into(), &o, &rt).unwrap();
    (out.card, std::fs::read(out.weights_path).unwrap())
}

#[test]
fn save_then_load_gives_identical_outputs() {
    let _rng = flex_rng();
    let device = burn::tensor::Device::flex();
    let arch = Architecture { kind: "resnet".into(), width: 8, blocks: vec![1, 1], dropout: 0.0, members: 1 };
    device.seed(5);
    let net = arch.init(&device).valid();
    let bytes = save_net_bytes(&net).unwrap();
    let mut card = card::tests::sample();
    card.architecture = arch;
    card.input.width = S;
    card.input.height = S;
    card.weights_sha256 = sha256_hex(&bytes);
    let loaded = load_net(&card, &Cow::Owned(bytes), &device, "test").unwrap();
    let split = synthetic(20, 9);
    let a = net_logits(&net, &device, &card.input, &split, 8).unwrap();
    let b = net_logits(&loaded, &device, &card.input, &split, 8).unwrap();
    assert_eq!(a, b);
    assert!(a.iter().any(|&z| z != a[0]), "outputs should vary across inputs");
}

#[test]
fn corrupt_or_mismatched_models_are_refused_clearly() {
    let _rng = flex_rng();
    let dir = tempfile::tempdir().unwrap();
    let (card, weights) = trained_card_and_weights(dir.path());
    let device = burn::tensor::Device::flex();
    // One flipped byte: checksum mismatch, named as such.
    let mut bad = weights.clone();
    let mid = bad.len() / 2;
    bad[mid] ^= 0xff;
    let err = load_net(&card, &Cow::Owned(bad), &device, "x").unwrap_err().to_string();
    assert!(err.contains("do not match the card") && err.contains("sha256"), "{err}");
    // A card for another architecture, even with the right checksum: refused.
    let mut other = card.clone();
    other.architecture.width = 16;
    let err = load_net(&other, &Cow::Owned(weights.clone()), &device, "x").unwrap_err().to_string();
    assert!(err.contains("do not fit the architecture"), "{err}");
    // Garbage weights with a matching checksum: refused, not a panic.
    let junk = b"definitely not a burnpack file".to_vec();
    let mut jc = card.clone();
    jc.weights_sha256 = sha256_hex(&junk);
    assert!(load_net(&jc, &Cow::Owned(junk), &device, "x").is_err());
    // A truncated card: a parse error naming the file.
    let text = card.to_toml();
    let err = ModelCard::parse(&text[..text.len() / 2], "half.toml").unwrap_err().to_string();
    assert!(err.contains("half.toml"), "{err}");
}

#[test]
fn registry_imports_activates_and_verifies() {
    let _rng = flex_rng();
    let train_dir = tempfile::tempdir().unwrap();
    let (card, _) = trained_card_and_weights(train_dir.path());
    let data = tempfile::tempdir().unwrap();
    let reg = Registry::new(data.path());
    let card_path = train_dir.path().join(format!("{}.toml", card.id()));
    let e = reg.import(&card_path).unwrap();
    assert_eq!(e.card.id(), "classifier-0.0.1");
    reg.activate("classifier-0.0.1").unwrap();
    assert_eq!(reg.active("classifier").unwrap().card.id(), "classifier-0.0.1");
    assert!(reg.all().unwrap().iter().any(|e| e.card.id() == "classifier-0.0.1"));
    let c = reg.resolve("classifier-0.0.1").unwrap().load(&burn::tensor::Device::flex()).unwrap();
    assert_eq!(c.card.id(), "classifier-0.0.1");
    // Tamper with the imported weights: loading is refused.
    let w = reg.dir().join("classifier-0.0.1.bpk");
    let mut bytes = std::fs::read(&w).unwrap();
    bytes[10] ^= 1;
    std::fs::write(&w, bytes).unwrap();
    let err = reg.resolve("classifier-0.0.1").unwrap().load(&burn::tensor::Device::flex()).err().unwrap().to_string();
    assert!(err.contains("do not match"), "{err}");
    assert!(reg.activate("classifier-9.9.9").is_err());
}

#[test]
fn queue_batches_and_bounds_requests() {
    let _rng = flex_rng();
    let dir = tempfile::tempdir().unwrap();
    let (card, weights) = trained_card_and_weights(dir.path());
    let device = burn::tensor::Device::flex();
    let direct = Classifier::new(card.clone(), &Cow::Owned(weights.clone()), &device, "t").unwrap();
    let split = synthetic(40, 4);
    let expected = direct.split_logits(&split, 64).unwrap();
    let c = Classifier::new(card, &Cow::Owned(weights), &device, "t").unwrap();
    let q = InferenceQueue::start(
        c,
        QueueConfig { max_batch: 16, max_wait: std::time::Duration::from_millis(20), capacity: 64 },
    );
    let mut rxs = Vec::new();
    for i in 0..split.len() {
        let mut input = Vec::new();
        infer::normalise_into(split.image(i), &direct.card.input, &mut input);
        rxs.push(q.try_submit(input, i == 0).unwrap());
    }
    for (i, rx) in rxs.into_iter().enumerate() {
        let a = rx.blocking_recv().unwrap().unwrap();
        assert!((a.prediction.logit - expected[i]).abs() < 1e-4, "{} vs {}", a.prediction.logit, expected[i]);
        assert_eq!(a.saliency.is_some(), i == 0);
        assert_eq!(a.model, "classifier-0.0.1");
    }
    let sal = q.infer_blocking(vec![0.0; S * S], true).unwrap().saliency.unwrap();
    assert_eq!((sal.width, sal.height, sal.values.len()), (S, S, S * S));
    assert!(sal.values.iter().all(|v| (0.0..=1.0).contains(v)));
    assert!(q.try_submit(vec![0.0; 3], false).is_err(), "wrong-sized input must be refused");
    // A burst larger than the capacity: the excess is refused, never buffered.
    let q2 = InferenceQueue::start(
        Classifier::new(
            direct.card.clone(),
            &Cow::Owned(std::fs::read(dir.path().join("classifier-0.0.1.bpk")).unwrap()),
            &device,
            "t",
        )
        .unwrap(),
        QueueConfig { max_batch: 1, max_wait: std::time::Duration::from_millis(0), capacity: 2 },
    );
    let mut full = 0;
    let mut held = Vec::new();
    for _ in 0..200 {
        match q2.try_submit(vec![0.0; S * S], false) {
            Ok(rx) => held.push(rx),
            Err(MlError::QueueFull) => full += 1,
            Err(e) => panic!("{e}"),
        }
    }
    assert!(full > 0, "a 200-request burst into a 2-slot queue must see QueueFull");
}

/// The wgpu path (Vulkan via mesa lavapipe here) gives the CPU's outputs within tolerance.
/// `scripts/test.sh` sets LUCENT_REQUIRE_WGPU=1, which makes a missing adapter a failure.
#[test]
fn wgpu_matches_cpu() {
    let _rng = flex_rng();
    let rt = match select(DevicePref::Gpu) {
        Ok(rt) => rt,
        Err(e) => {
            if std::env::var("LUCENT_REQUIRE_WGPU").is_ok_and(|v| v == "1") {
                panic!("no wgpu adapter under scripts/test.sh (is mesa-vulkan-drivers installed?): {e}");
            }
            eprintln!("skipping wgpu_matches_cpu: {e}");
            return;
        }
    };
    let dir = tempfile::tempdir().unwrap();
    let (card, weights) = trained_card_and_weights(dir.path());
    let cpu = Classifier::new(card.clone(), &Cow::Owned(weights.clone()), &burn::tensor::Device::flex(), "t").unwrap();
    let gpu = Classifier::new(card, &Cow::Owned(weights), &rt.device, "t").unwrap();
    let split = synthetic(24, 8);
    let a = cpu.split_logits(&split, 12).unwrap();
    let b = gpu.split_logits(&split, 12).unwrap();
    for (x, y) in a.iter().zip(&b) {
        assert!((x - y).abs() < 1e-3 * (1.0 + x.abs()), "cpu {x} vs wgpu {y} on {}", rt.info.adapter);
    }
    let sa = cpu.predict_with_saliency(&vec![0.1; S * S]).unwrap();
    let sb = gpu.predict_with_saliency(&vec![0.1; S * S]).unwrap();
    for (x, y) in sa[0].1.values.iter().zip(&sb[0].1.values) {
        assert!((x - y).abs() < 1e-3, "saliency differs: {x} vs {y}");
    }
}
