//! `lucent dicom deid`: de-identify Part 10 files and folders into an output folder.
//!
//! Owns: the arguments, walking inputs, the per-file report and the exit status.
//! Must not: de-identify anything itself (that is `preprocess::deid`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, ValueEnum};

use crate::config::Config;
use crate::preprocess::deid::{DeidError, Deidentifier, Options, Outcome};
use crate::security::Secret;

#[derive(Args)]
pub struct DeidArgs {
    /// Part 10 files, or folders searched recursively (files there without the DICM prefix are
    /// skipped; a named file that is not DICOM is a failure).
    #[arg(required = true, value_name = "IN")]
    pub inputs: Vec<PathBuf>,
    /// Output folder (created if missing); files are named <new SOP Instance UID>.dcm.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Confidentiality profile of PS3.15 Annex E.
    #[arg(long, value_enum, default_value = "basic")]
    pub profile: Profile,
    /// Profile option to apply; repeat for several.
    #[arg(long = "retain", value_enum, value_name = "OPTION")]
    pub retain: Vec<RetainOption>,
    /// Data directory: holds secret.key (created if missing) and config.toml ([[deid.masks]]).
    #[arg(long, value_name = "DIR", env = "LUCENT_DATA_DIR", default_value = "./lucent-data")]
    pub data_dir: PathBuf,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum Profile {
    /// Basic Application Level Confidentiality Profile.
    Basic,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RetainOption {
    /// Retain Longitudinal Temporal Information with Modified Dates (per-patient date shift).
    LongModifiedDates,
    /// Retain Patient Characteristics (sex, age, size, weight, ...).
    PatientCharacteristics,
    /// Retain Device Identity (serial numbers, station names, ...).
    DeviceIdentity,
    /// Clean Descriptors (descriptions and comments redacted instead of removed).
    CleanDescriptors,
}

pub fn run(args: DeidArgs) -> anyhow::Result<ExitCode> {
    let Profile::Basic = args.profile;
    let has = |o| args.retain.contains(&o);
    let options = Options {
        long_modified_dates: has(RetainOption::LongModifiedDates),
        patient_characteristics: has(RetainOption::PatientCharacteristics),
        device_identity: has(RetainOption::DeviceIdentity),
        clean_descriptors: has(RetainOption::CleanDescriptors),
    };
    let cfg = Config::load(&args.data_dir)?;
    let secret = Secret::load_or_create(&args.data_dir)?;
    let deid = Deidentifier::new(secret, options, cfg.deid.masks);
    std::fs::create_dir_all(&args.out).with_context(|| format!("cannot create {}", args.out.display()))?;

    let (mut written, mut masked, mut flagged, mut failed, mut skipped) = (0usize, 0usize, 0usize, 0usize, 0usize);
    let mut seen: HashMap<PathBuf, PathBuf> = HashMap::new();
    for (input, named) in inputs(&args.inputs)? {
        if !named && !has_dicm_prefix(&input) {
            skipped += 1;
            continue;
        }
        // A panic inside a codec must not end the run: it is reported as this file's failure.
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| deid.process_file(&input, &args.out)))
            .unwrap_or_else(|_| Err(DeidError::Write("internal error while decoding or writing (panic)".into())));
        match result {
            Ok(Outcome::Written { path, masked: m }) => {
                if let Some(first) = seen.get(&path) {
                    failed += 1;
                    println!(
                        "failed   {}: same SOP Instance UID as {}; {} holds only one of them",
                        input.display(),
                        first.display(),
                        path.display()
                    );
                    continue;
                }
                seen.insert(path.clone(), input.clone());
                written += 1;
                masked += usize::from(m);
                let note = if m { " (burned-in annotation masked)" } else { "" };
                println!("written  {} -> {}{note}", input.display(), path.display());
            }
            Ok(Outcome::Flagged(reason)) => {
                flagged += 1;
                println!("flagged  {}: {reason}; left out", input.display());
            }
            Err(e) => {
                failed += 1;
                println!("failed   {}: {e}", input.display());
            }
        }
    }
    println!(
        "de-identified: {written} written ({masked} masked), {flagged} flagged and left out, {failed} failed, \
         {skipped} skipped (not DICOM)"
    );
    Ok(if failed == 0 { ExitCode::SUCCESS } else { ExitCode::from(2) })
}

/// Every input file, and whether it was named on the command line; folders recursively, sorted.
fn inputs(paths: &[PathBuf]) -> anyhow::Result<Vec<(PathBuf, bool)>> {
    let mut out = Vec::new();
    for p in paths {
        let meta = std::fs::metadata(p).with_context(|| format!("cannot read {}", p.display()))?;
        if meta.is_dir() {
            let mut files: Vec<PathBuf> = walkdir::WalkDir::new(p)
                .into_iter()
                .filter_map(Result::ok)
                .filter(|e| e.file_type().is_file())
                .map(|e| e.into_path())
                .collect();
            files.sort();
            out.extend(files.into_iter().map(|f| (f, false)));
        } else {
            out.push((p.clone(), true));
        }
    }
    Ok(out)
}

fn has_dicm_prefix(path: &Path) -> bool {
    use std::io::Read;
    let mut head = [0u8; 132];
    std::fs::File::open(path).and_then(|mut f| f.read_exact(&mut head)).is_ok() && &head[128..] == b"DICM"
}
