//! The AI commands through the real binary: doctor, the shipped classifier's card and
//! validation figures, predict, classify, import/activate, and refusal of tampered models.

use crate::support::*;

fn text(out: &std::process::Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

fn npz() -> std::path::PathBuf {
    shared().join("pneumoniamnist/pneumoniamnist_trainval.npz")
}

#[test]
fn ml_commands_have_help_and_doctor_reports_the_device() {
    for cmd in [
        &["doctor", "--help"][..],
        &["train", "classifier", "--help"],
        &["models", "eval", "--help"],
        &["predict", "--help"],
        &["classify", "--help"],
    ] {
        let out = lucent().args(cmd).output().unwrap();
        assert!(out.status.success(), "{cmd:?}");
    }
    let tmp = tempfile::tempdir().unwrap();
    let out = lucent_in(tmp.path(), &["doctor", "--device", "cpu"]);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(t.contains("backend      flex") && t.contains("memory"), "{t}");
    assert!(t.contains("forward pass ok"), "the shipped classifier should load and run: {t}");
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        assert!(t.contains("inference    CPU engine ("), "the CPU runs the compiled engine: {t}");
    }
    let out = lucent_in(tmp.path(), &["doctor", "--device", "tpu"]);
    assert!(!out.status.success() && text(&out).contains("auto"), "{}", text(&out));
}

#[test]
fn shipped_classifier_meets_its_card_on_validation() {
    let tmp = tempfile::tempdir().unwrap();
    let out = lucent_in(tmp.path(), &["models", "show", "classifier"]);
    let card = text(&out);
    assert!(out.status.success(), "{card}");
    assert!(card.contains("threshold =") && card.contains("weights_sha256") && card.contains("radiologist"), "{card}");
    let out = lucent_in(
        tmp.path(),
        &[
            "models",
            "eval",
            "classifier",
            "--data",
            npz().to_str().unwrap(),
            "--split",
            "val",
            "--json",
            "--device",
            "cpu",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["n"], 524);
    assert!(v["auc"].as_f64().unwrap() >= 0.99, "validation AUC {}", v["auc"]);
    let c = &v["confusion"];
    let total: u64 = ["tp", "fp", "tn", "fn_"].iter().map(|k| c[k].as_u64().unwrap()).sum();
    assert_eq!(total, 524);

    // predict writes one row per image, in order, with probabilities in [0, 1].
    let csv = tmp.path().join("preds.csv");
    let out = lucent_in(
        tmp.path(),
        &[
            "predict",
            "--model",
            "classifier",
            "--npz",
            npz().to_str().unwrap(),
            "--split",
            "val",
            "--out",
            csv.to_str().unwrap(),
            "--device",
            "cpu",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let body = std::fs::read_to_string(&csv).unwrap();
    let lines: Vec<&str> = body.lines().collect();
    assert_eq!(lines[0], "index,probability");
    assert_eq!(lines.len(), 525);
    for (i, l) in lines[1..].iter().enumerate() {
        let (idx, p) = l.split_once(',').unwrap();
        assert_eq!(idx.parse::<usize>().unwrap(), i);
        assert!((0.0..=1.0).contains(&p.parse::<f64>().unwrap()));
    }
}

#[test]
fn classify_png_and_refuse_tampered_imports() {
    let tmp = tempfile::tempdir().unwrap();
    // Two validation images as PNG files, and one that is not an image.
    let split = lucent::ml::data::load_npz_split(&npz(), "val").unwrap();
    let mut files = Vec::new();
    for i in [0usize, 1] {
        let p = tmp.path().join(format!("val{i}.png"));
        let f = lucent::ml::GrayFrame::new(28, 28, split.image(i).to_vec()).unwrap();
        lucent::ml::data::write_png(&p, &f).unwrap();
        files.push(p);
    }
    let junk = tmp.path().join("junk.png");
    std::fs::write(&junk, b"nope").unwrap();
    let sal = tmp.path().join("sal");
    let mut args = vec!["classify", "--json", "--device", "cpu", "--saliency", sal.to_str().unwrap()];
    args.extend(files.iter().map(|p| p.to_str().unwrap()));
    args.push(junk.to_str().unwrap());
    let out = lucent_in(tmp.path(), &args);
    assert_eq!(out.status.code(), Some(2), "one bad file of three: exit 2\n{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let rows: Vec<serde_json::Value> = stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(rows.len(), 2);
    for r in &rows {
        assert!(["normal", "pneumonia"].contains(&r["label"].as_str().unwrap()), "{r}");
        assert!(r["model"].as_str().unwrap().starts_with("classifier-"));
    }
    assert!(String::from_utf8_lossy(&out.stderr).contains("junk.png"));
    assert!(sal.join("val0.saliency.png").is_file());

    // Export the shipped model, tamper with a copy, and try to import it.
    let show = lucent_in(tmp.path(), &["models", "show", "classifier"]);
    let card_text = String::from_utf8_lossy(&show.stdout).to_string();
    let card = lucent::ml::ModelCard::parse(&card_text, "shown").unwrap();
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models").join(&card.weights);
    let bad_dir = tmp.path().join("bad");
    std::fs::create_dir_all(&bad_dir).unwrap();
    let mut w = std::fs::read(&src).unwrap();
    let n = w.len();
    w[n - 5] ^= 0x55;
    std::fs::write(bad_dir.join(&card.weights), w).unwrap();
    let bad_card = bad_dir.join(format!("{}.toml", card.id()));
    std::fs::write(&bad_card, &card_text).unwrap();
    let out = lucent_in(tmp.path(), &["models", "import", bad_card.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(text(&out).contains("do not match the card"), "{}", text(&out));
    let out = lucent_in(tmp.path(), &["models", "activate", "classifier-0.0.0"]);
    assert!(!out.status.success() && text(&out).contains("no model"), "{}", text(&out));
}
