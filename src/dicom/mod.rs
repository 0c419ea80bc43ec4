//! The DICOM network node: the listener, associations, DIMSE messages and the services
//! (Verification, Storage SCP), one file per concern.
//!
//! Owns: sockets, PDUs, negotiation, DIMSE command sets, and the checks on what peers send.
//! Must not: write SQL or files itself; it hands prepared instances to `store`.
//!
//! Concurrency: one tokio task per association, capped by a semaphore. Parsing and durable
//! storage run on the blocking pool so that no association stalls the others.

mod association;
pub mod dimse;
pub mod dump;
pub mod instance;
pub mod negotiation;
pub mod pdu;
pub mod precheck;
pub mod scu;
pub mod sop_classes;
mod store_scp;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::{DicomConfig, PeerRule};
use crate::store::Store;
use negotiation::{AllowedPeer, Settings};

/// State shared by every association.
pub struct Shared {
    pub settings: Settings,
    pub store: Arc<Store>,
    pub idle_timeout: Duration,
}

/// Resolves `allowed_peers` entries (host names are looked up once, at start-up).
pub async fn resolve_peers(cfg: &DicomConfig) -> anyhow::Result<Vec<AllowedPeer>> {
    let mut out = Vec::new();
    for entry in &cfg.allowed_peers {
        let rule = PeerRule::parse(entry).map_err(anyhow::Error::msg)?;
        let addresses = match &rule.host {
            None => None,
            Some(h) => match h.parse() {
                Ok(ip) => Some(vec![ip]),
                Err(_) => {
                    let found: Vec<_> = tokio::net::lookup_host((h.as_str(), 0))
                        .await
                        .map_err(|e| anyhow::anyhow!("allowed peer `{entry}`: cannot resolve {h}: {e}"))?
                        .map(|a| a.ip())
                        .collect();
                    Some(found)
                }
            },
        };
        out.push(AllowedPeer { ae_title: rule.ae_title, addresses });
    }
    Ok(out)
}

/// A bound DICOM listener.
pub struct Listener {
    listener: TcpListener,
    shared: Arc<Shared>,
    max_associations: usize,
    grace: Duration,
    pub up: Arc<AtomicBool>,
}

impl Listener {
    pub async fn bind(cfg: &DicomConfig, store: Arc<Store>) -> anyhow::Result<Listener> {
        let addr: SocketAddr = format!("{}:{}", cfg.bind, cfg.port).parse()?;
        let listener = TcpListener::bind(addr).await.map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))?;
        let settings = Settings {
            ae_title: cfg.ae_title.clone(),
            check_called_ae: cfg.check_called_ae,
            allowed_peers: resolve_peers(cfg).await?,
            max_pdu: cfg.max_pdu,
        };
        Ok(Listener {
            listener,
            shared: Arc::new(Shared { settings, store, idle_timeout: Duration::from_secs(cfg.idle_timeout_secs) }),
            max_associations: cfg.max_associations as usize,
            grace: Duration::from_secs(cfg.shutdown_grace_secs),
            up: Arc::new(AtomicBool::new(false)),
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Accepts associations until `shutdown` fires, then waits up to the grace period for the
    /// associations in flight.
    pub async fn run(self, shutdown: CancellationToken) {
        let slots = Arc::new(Semaphore::new(self.max_associations));
        let mut tasks = JoinSet::new();
        self.up.store(true, Ordering::SeqCst);
        tracing::info!(addr = %self.listener.local_addr().map(|a| a.to_string()).unwrap_or_default(),
            ae_title = %self.shared.settings.ae_title, "DICOM listener up");
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                accepted = self.listener.accept() => {
                    let (stream, peer) = match accepted {
                        Ok(a) => a,
                        Err(e) => {
                            // EMFILE and the like: back off instead of spinning.
                            tracing::warn!(error = %e, "accept failed");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    };
                    let permit = slots.clone().try_acquire_owned().ok();
                    let shared = self.shared.clone();
                    tasks.spawn(async move {
                        let admitted = permit.is_some();
                        association::run(stream, peer, shared, admitted).await;
                        drop(permit);
                    });
                }
                Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            }
        }
        self.up.store(false, Ordering::SeqCst);
        drop(self.listener);
        if !tasks.is_empty() {
            tracing::info!(
                in_flight = tasks.len(),
                grace_s = self.grace.as_secs(),
                "waiting for associations to finish"
            );
            let drained = tokio::time::timeout(self.grace, async { while tasks.join_next().await.is_some() {} }).await;
            if drained.is_err() {
                tracing::warn!(
                    remaining = tasks.len(),
                    "grace period over: dropping associations (unacknowledged data is not stored)"
                );
                tasks.abort_all();
            }
        }
    }
}
