//! `GET /static/{file}`: the stylesheet, htmx and the viewer script, embedded in the binary
//! from `static/` (rust-embed). Nothing is fetched from anywhere else.

use axum::extract::Path;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

#[derive(rust_embed::RustEmbed)]
#[folder = "static/"]
#[exclude = "README.md"]
struct Static;

fn mime(file: &str) -> &'static str {
    match file.rsplit('.').next() {
        Some("js") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("ico") => "image/x-icon",
        _ => "application/octet-stream",
    }
}

pub async fn asset(Path(file): Path<String>) -> Response {
    match Static::get(&file) {
        Some(f) => (
            [
                (header::CONTENT_TYPE, mime(&file).to_string()),
                (header::CACHE_CONTROL, "public, max-age=3600".to_string()),
                (header::ETAG, format!("\"{}\"", crate::security::password::hex(&f.metadata.sha256_hash()[..8]))),
            ],
            f.data.into_owned(),
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "no such asset").into_response(),
    }
}
