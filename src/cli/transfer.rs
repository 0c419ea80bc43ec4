//! `lucent import` and `lucent export`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};

use crate::config::Config;
use crate::dicom::instance;
use crate::server;
use crate::store::{PutOutcome, Reader, Store};

/// Source AE recorded for imported instances.
const IMPORT_AE: &str = "";

pub fn import(data_dir: &Path, paths: &[PathBuf]) -> anyhow::Result<ExitCode> {
    let cfg = Config::load(data_dir)?;
    std::fs::create_dir_all(data_dir)?;
    let store = Store::open(data_dir, server::policy(&cfg))?;
    let mut files = Vec::new();
    for p in paths {
        if !p.exists() {
            anyhow::bail!("{} does not exist", p.display());
        }
        for entry in walkdir::WalkDir::new(p).follow_links(true).sort_by_file_name() {
            let entry = entry.with_context(|| format!("cannot walk {}", p.display()))?;
            if entry.file_type().is_file() {
                files.push(entry.into_path());
            }
        }
    }
    let bar = ProgressBar::new(files.len() as u64);
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} files, {per_sec}, eta {eta}").expect("valid template"),
    );
    let next = AtomicUsize::new(0);
    let (imported, duplicates) = (AtomicUsize::new(0), AtomicUsize::new(0));
    let rejected = Mutex::new(Vec::<(PathBuf, String)>::new());
    let fatal = Mutex::new(None::<anyhow::Error>);
    // A few workers: durable writes wait on fsync, and concurrent ones share index commits.
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(path) = files.get(i) else { break };
                let prepared = std::fs::read(path)
                    .map_err(|e| e.to_string())
                    .and_then(|b| instance::from_part10(b, IMPORT_AE).map_err(|e| e.to_string()));
                match prepared {
                    Err(reason) => rejected.lock().unwrap().push((path.clone(), reason)),
                    Ok(inst) => match store.put(&inst) {
                        Ok(PutOutcome::Duplicate) => drop(duplicates.fetch_add(1, Ordering::Relaxed)),
                        Ok(_) => {
                            imported.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) if e.is_out_of_space() => {
                            *fatal.lock().unwrap() = Some(anyhow::anyhow!("stopped: {e}"));
                            next.store(files.len(), Ordering::Relaxed);
                        }
                        Err(e) => rejected.lock().unwrap().push((path.clone(), e.to_string())),
                    },
                }
                bar.inc(1);
            });
        }
    });
    bar.finish_and_clear();
    let mut rejected = rejected.into_inner().unwrap();
    rejected.sort();
    for (path, reason) in &rejected {
        println!("rejected {}: {reason}", path.display());
    }
    println!(
        "imported {}, duplicates {}, rejected {}",
        imported.load(Ordering::Relaxed),
        duplicates.load(Ordering::Relaxed),
        rejected.len()
    );
    if let Some(e) = fatal.into_inner().unwrap() {
        return Err(e);
    }
    Ok(if rejected.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(2) })
}

pub fn export(data_dir: &Path, out: &Path, study: Option<&str>) -> anyhow::Result<()> {
    let reader = Reader::open(data_dir)?;
    let instances = reader.instances(study)?;
    if instances.is_empty() {
        anyhow::bail!("no instances{}", study.map(|s| format!(" for study {s}")).unwrap_or_default());
    }
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let bar = ProgressBar::new(instances.len() as u64);
    for inst in &instances {
        let dest = out.join(format!("{}.dcm", inst.sop_uid));
        std::fs::copy(reader.file_path(inst), &dest).with_context(|| format!("cannot write {}", dest.display()))?;
        bar.inc(1);
    }
    bar.finish_and_clear();
    println!("exported {} instances to {}", instances.len(), out.display());
    Ok(())
}
