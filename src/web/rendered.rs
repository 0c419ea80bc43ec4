//! `GET /studies/{study}/series/{series}/instances/{sop}/frames/{n}/rendered`: one frame as a
//! viewer shows it (DICOMweb numbering: frames from 1), PNG or JPEG.
//!
//! Query: `window=C,W[,linear|linear-exact|sigmoid]`, `size=N` (fit inside N×N), `format=png|jpeg`
//! (else the Accept header; PNG by default). Decoding runs on the blocking pool and decoded frames
//! are kept in the bytes-bounded [`FrameCache`](crate::preprocess::cache::FrameCache).

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::AppState;
use crate::preprocess::cache::CachedFrame;
use crate::preprocess::{self, render, Format, PixelError, Presentation, RenderOptions, VoiFunction, Window};

#[derive(Debug, Default, Deserialize)]
pub struct RenderQuery {
    window: Option<String>,
    size: Option<u32>,
    format: Option<String>,
}

/// Largest `size` accepted.
const MAX_SIZE: u32 = 8192;

fn bad(msg: impl Into<String>) -> Response {
    (StatusCode::BAD_REQUEST, msg.into()).into_response()
}

fn parse_window(s: &str) -> Result<(Window, Option<VoiFunction>), String> {
    let mut parts = s.splitn(3, ',');
    let (c, w) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let win: Window = format!("{c},{w}").parse()?;
    let f = match parts.next().map(|f| f.trim().to_ascii_lowercase()) {
        None => None,
        Some(f) if f == "linear" => Some(VoiFunction::Linear),
        Some(f) if f == "linear-exact" || f == "linear_exact" => Some(VoiFunction::LinearExact),
        Some(f) if f == "sigmoid" => Some(VoiFunction::Sigmoid),
        Some(f) => return Err(format!("unknown VOI LUT function {f:?}")),
    };
    Ok((win, f))
}

fn choose_format(q: Option<&str>, headers: &HeaderMap) -> Result<Format, String> {
    if let Some(f) = q {
        return match f.to_ascii_lowercase().as_str() {
            "png" | "image/png" => Ok(Format::Png),
            "jpeg" | "jpg" | "image/jpeg" => Ok(Format::Jpeg),
            other => Err(format!("format {other:?}: png or jpeg")),
        };
    }
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("").to_ascii_lowercase();
    Ok(if accept.contains("image/jpeg") && !accept.contains("image/png") { Format::Jpeg } else { Format::Png })
}

pub(super) enum Failure {
    NotFound(String),
    Pixels(PixelError),
    Internal(String),
}

impl Failure {
    pub(super) fn into_response(self, n: u32) -> Response {
        match self {
            Failure::NotFound(m) => (StatusCode::NOT_FOUND, m).into_response(),
            Failure::Pixels(e @ PixelError::NoSuchFrame { .. }) => {
                (StatusCode::NOT_FOUND, format!("frame {n}: {e}")).into_response()
            }
            Failure::Pixels(e) => (StatusCode::UNPROCESSABLE_ENTITY, e.to_string()).into_response(),
            Failure::Internal(m) => (StatusCode::INTERNAL_SERVER_ERROR, m).into_response(),
        }
    }
}

/// Frame `frame` (from 0) of an instance, decoded, from the cache or the stored file. Keyed by
/// the whole path, so a frame is only served under its own study and series.
pub(super) fn load_frame(
    st: &AppState,
    study: &str,
    series: &str,
    sop: &str,
    frame: u32,
) -> Result<Arc<CachedFrame>, Failure> {
    let key = format!("{study}/{series}/{sop}");
    if let Some(c) = st.frames.get(&key, frame) {
        return Ok(c);
    }
    let path = st
        .db
        .instance_file(study, series, sop)
        .map_err(|e| Failure::Internal(e.to_string()))?
        .ok_or_else(|| Failure::NotFound(format!("no instance {sop} in series {series} of study {study}")))?;
    let obj = preprocess::open(&path).map_err(Failure::Pixels)?;
    let pixels = preprocess::decode(&obj, Some(frame)).map_err(Failure::Pixels)?;
    let presentation = Presentation::from_object(&obj, frame, pixels.signed).map_err(Failure::Pixels)?;
    let c = Arc::new(CachedFrame { pixels, presentation });
    st.frames.insert(&key, frame, c.clone());
    Ok(c)
}

pub async fn rendered(
    State(st): State<AppState>,
    Path((study, series, sop, n)): Path<(String, String, String, u32)>,
    Query(q): Query<RenderQuery>,
    headers: HeaderMap,
) -> Response {
    let Some(frame) = n.checked_sub(1) else {
        return bad("frames are numbered from 1");
    };
    let (window, function) = match q.window.as_deref().map(parse_window).transpose() {
        Ok(Some((w, f))) => (Some(w), f),
        Ok(None) => (None, None),
        Err(e) => return bad(e),
    };
    if let Some(s) = q.size {
        if s == 0 || s > MAX_SIZE {
            return bad(format!("size must be 1..={MAX_SIZE}"));
        }
    }
    let format = match choose_format(q.format.as_deref(), &headers) {
        Ok(f) => f,
        Err(e) => return bad(e),
    };
    let opts = RenderOptions { window, function };
    let size = q.size;
    let result = tokio::task::spawn_blocking(move || -> Result<Vec<u8>, Failure> {
        let cached = load_frame(&st, &study, &series, &sop, frame)?;
        let mut img = render::render(&cached.pixels, 0, &cached.presentation, &opts).map_err(Failure::Pixels)?;
        if let Some(s) = size {
            let (w, h) = render::fit_within(img.width, img.height, s);
            img = render::resize(&img, w, h);
        }
        render::encode(&img, format).map_err(Failure::Pixels)
    })
    .await;
    match result {
        Ok(Ok(bytes)) => {
            ([(header::CONTENT_TYPE, format.mime()), (header::CACHE_CONTROL, "private, max-age=3600")], bytes)
                .into_response()
        }
        Ok(Err(f)) => f.into_response(n),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("render task failed: {e}")).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_query() {
        assert_eq!(parse_window("40,400").unwrap(), (Window { center: 40.0, width: 400.0 }, None));
        assert_eq!(parse_window("-600,1500,sigmoid").unwrap().1, Some(VoiFunction::Sigmoid));
        assert!(parse_window("40").is_err());
        assert!(parse_window("40,400,cubic").is_err());
    }

    #[test]
    fn format_from_accept() {
        let mut h = HeaderMap::new();
        assert_eq!(choose_format(None, &h).unwrap(), Format::Png);
        h.insert(header::ACCEPT, "image/jpeg".parse().unwrap());
        assert_eq!(choose_format(None, &h).unwrap(), Format::Jpeg);
        assert_eq!(choose_format(Some("png"), &h).unwrap(), Format::Png);
        assert!(choose_format(Some("gif"), &h).is_err());
    }
}
