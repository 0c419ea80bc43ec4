//! `lucent serve`: starts every service on one data directory and stops them gracefully.
//!
//! Owns: start-up order (config, store, crash recovery, listeners) and shutdown on
//! SIGINT/SIGTERM. Must not: contain protocol or storage logic of its own.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use crate::config::{self, Config};
use crate::dicom;
use crate::store::{Policy, Store};
use crate::web;

/// Command-line overrides of the configuration.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub dicom_port: Option<u16>,
    pub http_port: Option<u16>,
}

pub fn policy(cfg: &Config) -> Policy {
    Policy {
        overwrite_duplicates: cfg.storage.overwrite_duplicates,
        min_free_bytes: cfg.storage.min_free_mb.saturating_mul(1 << 20),
    }
}

pub async fn serve(data_dir: &Path, overrides: Overrides) -> anyhow::Result<()> {
    std::fs::create_dir_all(data_dir).with_context(|| format!("cannot create {}", data_dir.display()))?;
    if config::write_default_if_missing(data_dir)? {
        tracing::info!(dir = %data_dir.display(), "first run: wrote the default configuration");
    }
    let mut cfg = Config::load(data_dir)?;
    if let Some(p) = overrides.dicom_port {
        cfg.dicom.port = p;
    }
    if let Some(p) = overrides.http_port {
        cfg.http.port = p;
    }

    let store = Arc::new(Store::open(data_dir, policy(&cfg))?);
    let (run, previous_start) = store.begin_run()?;
    if let Some(since) = previous_start {
        recover(&store, since).await?;
    }

    let shutdown = CancellationToken::new();
    let listener = dicom::Listener::bind(&cfg.dicom, store.clone()).await?;
    let http_addr = format!("{}:{}", cfg.http.bind, cfg.http.port);
    let http =
        tokio::net::TcpListener::bind(&http_addr).await.with_context(|| format!("cannot listen on {http_addr}"))?;
    let state = web::AppState::open(data_dir, &cfg, listener.up.clone())?;
    if let Some(otp) = web::auth::bootstrap_admin(&state.db)? {
        print_first_admin(&otp);
    }
    println!(
        "lucent {} serving {}: DICOM {}@{} , HTTP http://{}",
        env!("CARGO_PKG_VERSION"),
        data_dir.display(),
        cfg.dicom.ae_title,
        listener.local_addr()?,
        http.local_addr()?
    );

    let signals = tokio::spawn(wait_for_signal(shutdown.clone()));
    let http_task = tokio::spawn(web::serve(http, state, shutdown.clone()));
    listener.run(shutdown.clone()).await;
    shutdown.cancel();
    signals.abort();
    if let Ok(Err(e)) = http_task.await {
        tracing::warn!(error = %e, "HTTP server ended with an error");
    }
    // Last reference: joins the index writer, which checkpoints the WAL.
    match Arc::try_unwrap(store) {
        Ok(store) => drop(store),
        Err(_) => tracing::warn!("storage still in use at shutdown; the index writer stops with the process"),
    }
    run.finish()?;
    tracing::info!("shut down cleanly");
    Ok(())
}

/// Prints the first administrator's one-time password (once: it exists nowhere else).
pub fn print_first_admin(otp: &str) {
    println!(
        "\nFirst administrator created.\n  user:               admin\n  one-time password:  {otp}\n\
         Sign in at the web UI and choose a new password; this one is shown only now.\n"
    );
}

/// Indexes files that a crashed run renamed into place but never committed to the index.
/// Such instances were never acknowledged; keeping them costs nothing and loses nothing.
async fn recover(store: &Arc<Store>, since: u64) -> anyhow::Result<()> {
    let store = store.clone();
    tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        let orphans = store.stale_files_since(since)?;
        let (mut indexed, mut removed) = (0, 0);
        for rel in &orphans {
            let path = store.root().join(rel);
            match std::fs::read(&path)
                .map_err(|e| e.to_string())
                .and_then(|b| dicom::instance::from_part10(b, "").map_err(|e| e.to_string()))
            {
                Ok(inst) => {
                    store.index_existing(rel, inst.attrs)?;
                    indexed += 1;
                }
                Err(e) => {
                    tracing::warn!(file = %path.display(), error = %e, "unreadable file after a crash: removed");
                    std::fs::remove_file(&path)?;
                    removed += 1;
                }
            }
        }
        tracing::warn!(indexed, removed, "previous run did not shut down cleanly: recovery done");
        Ok(())
    })
    .await?
}

async fn wait_for_signal(shutdown: CancellationToken) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
    tracing::info!("shutdown requested: no new associations");
    shutdown.cancel();
}
