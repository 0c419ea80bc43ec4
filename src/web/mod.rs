//! The HTTP server: the staff web UI (server-rendered askama pages with htmx), the viewer's
//! data endpoints, a small JSON API, health, and embedded static assets.
//!
//! Owns: the route table ([`routes`], with the roles of every route), sessions, login and CSRF
//! ([`auth`]), page handlers and their view models, and HTTP status mapping.
//! Must not: write SQL (it asks `store`), decide clinical content (drafts come from
//! `pipeline`), or render user data unescaped (askama escapes every value; the templates never
//! use `|safe` on user data).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use serde::Serialize;

use crate::config::WebConfig;
use crate::preprocess::cache::FrameCache;
use crate::search::SearchIndex;
use crate::store::{self, Db};

pub mod admin;
pub mod assets;
pub mod auth;
pub mod html;
pub mod pages;
pub mod pixels;
mod rendered;
pub mod routes;

/// What the handlers can see.
#[derive(Clone)]
pub struct AppState {
    pub data_dir: PathBuf,
    pub dicom_up: Arc<AtomicBool>,
    pub min_free_bytes: u64,
    /// Decoded frames for the rendered-frame endpoint (bytes-bounded LRU).
    pub frames: Arc<FrameCache>,
    pub db: Arc<Db>,
    pub search: Arc<SearchIndex>,
    /// Wakes the search indexer (after a report save) so that search sees it at once.
    pub search_changed: Arc<tokio::sync::Notify>,
    pub web: WebConfig,
    pub ml_device: String,
    /// Our own AE title (calling AE of C-ECHO to destinations).
    pub ae_title: String,
    pub login_limiter: Arc<auth::LoginLimiter>,
}

impl AppState {
    /// State for the data directory `data_dir` (database created and migrated if needed).
    pub fn open(
        data_dir: &std::path::Path,
        cfg: &crate::config::Config,
        dicom_up: Arc<AtomicBool>,
    ) -> anyhow::Result<AppState> {
        let db = Arc::new(Db::open(data_dir)?);
        let search = Arc::new(SearchIndex::open(data_dir)?);
        Ok(AppState {
            data_dir: data_dir.to_path_buf(),
            dicom_up,
            min_free_bytes: cfg.storage.min_free_mb.saturating_mul(1 << 20),
            frames: Arc::new(FrameCache::new(cfg.http.frame_cache_mb << 20)),
            db,
            search,
            search_changed: Arc::new(tokio::sync::Notify::new()),
            web: cfg.web.clone(),
            ml_device: cfg.ml.device.clone(),
            ae_title: cfg.dicom.ae_title.clone(),
            login_limiter: Arc::new(auth::LoginLimiter::default()),
        })
    }
}

/// An error a handler answers with: a status and a message for the person.
#[derive(Debug)]
pub struct WebError {
    pub status: StatusCode,
    pub message: String,
}

impl WebError {
    pub fn internal(e: impl std::fmt::Display) -> WebError {
        tracing::error!(error = %e, "request failed");
        WebError { status: StatusCode::INTERNAL_SERVER_ERROR, message: format!("internal error: {e}") }
    }
    pub fn bad_request(message: String) -> WebError {
        WebError { status: StatusCode::BAD_REQUEST, message }
    }
    pub fn not_found(message: String) -> WebError {
        WebError { status: StatusCode::NOT_FOUND, message }
    }
    pub fn unprocessable(message: String) -> WebError {
        WebError { status: StatusCode::UNPROCESSABLE_ENTITY, message }
    }
}

/// Runs database or file work off the async runtime; a panicked task is an internal error.
pub async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, WebError> + Send + 'static,
) -> Result<T, WebError> {
    tokio::task::spawn_blocking(f).await.map_err(WebError::internal)?
}

impl std::fmt::Display for WebError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.message, self.status)
    }
}

impl std::error::Error for WebError {}

impl From<store::StoreError> for WebError {
    fn from(e: store::StoreError) -> WebError {
        WebError::internal(e)
    }
}

impl From<crate::search::SearchError> for WebError {
    fn from(e: crate::search::SearchError) -> WebError {
        WebError::internal(e)
    }
}

impl IntoResponse for WebError {
    fn into_response(self) -> Response {
        html::error_page(self.status, &self.message)
    }
}

/// The router, built from the route table: every non-public route is wrapped in the session,
/// role and CSRF check for its table entry.
pub fn router(state: AppState) -> Router {
    let mut router = Router::new();
    for (spec, handler) in routes::table() {
        let handler = if spec.kind == routes::Kind::Public {
            handler
        } else {
            handler.route_layer(axum::middleware::from_fn_with_state((state.clone(), spec), auth::authorize))
        };
        router = router.route(spec.path, handler);
    }
    router
        .fallback(|| async { html::error_page(StatusCode::NOT_FOUND, "There is no such page.") })
        .layer(axum::middleware::from_fn(security_headers))
        .with_state(state)
}

/// Headers on every response: no framing, no MIME sniffing, scripts and styles only from us.
async fn security_headers(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let mut r = next.run(req).await;
    let h = r.headers_mut();
    let set = |h: &mut axum::http::HeaderMap, k: &'static str, v: &'static str| {
        h.entry(k).or_insert(axum::http::HeaderValue::from_static(v));
    };
    set(h, "content-security-policy", "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'");
    set(h, "x-content-type-options", "nosniff");
    set(h, "x-frame-options", "DENY");
    set(h, "referrer-policy", "no-referrer");
    r
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

/// Keeps the search index following the database: on start, every few seconds, and at once
/// when woken (report saves). Once a minute it also deletes expired sessions (they are refused
/// as soon as they expire; this only reclaims their rows).
pub async fn run_indexer(state: AppState, shutdown: tokio_util::sync::CancellationToken) {
    let mut last_purge = 0i64;
    loop {
        let st = state.clone();
        let now = auth::now_secs();
        let purge = now - last_purge >= 60;
        if purge {
            last_purge = now;
        }
        let r = tokio::task::spawn_blocking(move || {
            let n = st.search.sync(&st.db)?;
            if purge {
                let idle = (st.web.session_idle_minutes * 60) as i64;
                let max = (st.web.session_max_hours * 3600) as i64;
                st.db.purge_sessions(now - idle, now - max)?;
            }
            Ok::<usize, anyhow::Error>(n)
        })
        .await;
        match r {
            Ok(Ok(n)) if n > 0 => tracing::debug!(studies = n, "search index updated"),
            Ok(Err(e)) => tracing::warn!(error = %e, "search indexing failed; retrying"),
            _ => {}
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = state.search_changed.notified() => {}
            _ = tokio::time::sleep(std::time::Duration::from_secs(2)) => {}
        }
    }
}

/// Serves the router until `shutdown` fires.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: tokio_util::sync::CancellationToken,
) -> std::io::Result<()> {
    let addr: SocketAddr = listener.local_addr()?;
    tracing::info!(%addr, "HTTP server up");
    let indexer = tokio::spawn(run_indexer(state.clone(), shutdown.clone()));
    let app = router(state).into_make_service_with_connect_info::<SocketAddr>();
    use axum::serve::ListenerExt;
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    let r = axum::serve(listener, app).with_graceful_shutdown(async move { shutdown.cancelled().await }).await;
    indexer.abort();
    r
}

#[cfg(test)]
mod tests;
