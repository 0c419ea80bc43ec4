//! Embeds the shipped models: every `models/<name>-<version>.toml` with its `.bpk` beside it
//! becomes an entry of `ml::registry`'s embedded list, with its validation predictions
//! (`<name>-<version>.predictions.csv`) when present.

use std::fmt::Write;
use std::path::Path;

fn main() {
    let out = std::env::var("OUT_DIR").expect("OUT_DIR");
    // Read at run time, not compiled in with env!(): cargo reuses a compiled build script
    // across checkouts at other paths (a shared CARGO_TARGET_DIR), and a path baked into it
    // would point at another checkout's models.
    let manifest = std::env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR");
    let dir = Path::new(&manifest).join("models");
    println!("cargo:rerun-if-changed={}", dir.display());
    let mut entries = Vec::new();
    if let Ok(rd) = std::fs::read_dir(&dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.extension().is_some_and(|x| x == "toml") {
                let bpk = p.with_extension("bpk");
                if bpk.is_file() {
                    println!("cargo:rerun-if-changed={}", p.display());
                    println!("cargo:rerun-if-changed={}", bpk.display());
                    entries.push((p, bpk));
                }
            }
        }
    }
    entries.sort();
    // The binary must carry its default models; an empty list would only surface at run time.
    assert!(
        !entries.is_empty(),
        "{} holds no <name>-<version>.toml with its .bpk: the shipped models must be embedded",
        dir.display()
    );
    // burnpack tensors are read in place (zero copy), so the embedded bytes must be aligned.
    let mut code = String::from("#[repr(C, align(64))]\npub struct Aligned<const N: usize>(pub [u8; N]);\n");
    for (i, (_, bpk)) in entries.iter().enumerate() {
        let n = std::fs::metadata(bpk).expect("weights size").len();
        writeln!(code, "static W{i}: Aligned<{n}> = Aligned(*include_bytes!({:?}));", bpk.display().to_string())
            .unwrap();
    }
    code.push_str(
        "/// (file stem, card TOML, weights, validation predictions CSV) of each shipped model.\n\
         pub static MODELS: &[(&str, &str, &[u8], Option<&str>)] = &[\n",
    );
    for (i, (card, _)) in entries.iter().enumerate() {
        let stem = card.file_stem().and_then(|s| s.to_str()).unwrap_or("model");
        let preds = card.with_file_name(format!("{stem}.predictions.csv"));
        println!("cargo:rerun-if-changed={}", preds.display());
        let preds = if preds.is_file() {
            format!("Some(include_str!({:?}))", preds.display().to_string())
        } else {
            "None".to_string()
        };
        writeln!(code, "    ({stem:?}, include_str!({:?}), &W{i}.0, {preds}),", card.display().to_string()).unwrap();
    }
    code.push_str("];\n");
    std::fs::write(Path::new(&out).join("embedded_models.rs"), code).expect("write embedded_models.rs");
}
