//! The HTTP server: health and the rendered-frame endpoint today; the staff UI, DICOMweb and the API hang off this router.
//!
//! Owns: axum routes and their handlers.
//! Must not: write SQL (it asks `store`), or render user data unescaped.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;

use crate::preprocess::cache::FrameCache;
use crate::store;

mod rendered;

/// What the handlers can see.
#[derive(Clone)]
pub struct AppState {
    pub data_dir: PathBuf,
    pub dicom_up: Arc<AtomicBool>,
    pub min_free_bytes: u64,
    /// Decoded frames for the rendered-frame endpoint (bytes-bounded LRU).
    pub frames: Arc<FrameCache>,
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/studies/{study}/series/{series}/instances/{sop}/frames/{n}/rendered", get(rendered::rendered))
        .with_state(state)
}

#[derive(Serialize)]
struct Health {
    status: &'static str,
    version: &'static str,
    database: String,
    free_disk_bytes: u64,
    disk_below_watermark: bool,
    dicom_listener: &'static str,
}

/// 200 when the database answers, the disk is above the watermark and the DICOM listener is
/// accepting; 503 otherwise. The body says which part is unhealthy.
async fn healthz(State(st): State<AppState>) -> (StatusCode, Json<Health>) {
    let dir = st.data_dir.clone();
    let (database, free) = tokio::task::spawn_blocking(move || {
        let db = store::Reader::open(&dir).and_then(|r| r.ping());
        (db.map(|_| "ok".to_string()).unwrap_or_else(|e| format!("error: {e}")), store::free_bytes(&dir).unwrap_or(0))
    })
    .await
    .unwrap_or_else(|e| (format!("error: {e}"), 0));
    let listener_up = st.dicom_up.load(Ordering::SeqCst);
    let low = free < st.min_free_bytes;
    let healthy = database == "ok" && listener_up && !low;
    let body = Health {
        status: if healthy { "ok" } else { "unhealthy" },
        version: env!("CARGO_PKG_VERSION"),
        database,
        free_disk_bytes: free,
        disk_below_watermark: low,
        dicom_listener: if listener_up { "up" } else { "down" },
    };
    (if healthy { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE }, Json(body))
}

/// Serves the router until `shutdown` fires.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: tokio_util::sync::CancellationToken,
) -> std::io::Result<()> {
    let addr: SocketAddr = listener.local_addr()?;
    tracing::info!(%addr, "HTTP server up");
    axum::serve(listener, router(state)).with_graceful_shutdown(async move { shutdown.cancelled().await }).await
}
