//! Data for the viewer canvas: one frame's values for client-side window/level, and a
//! finding's saliency grid for the heatmap overlay.
//!
//! `GET …/frames/{n}/pixels` (frames from 1): for grayscale images, the Modality-LUT output
//! (rescaled values, for example Hounsfield units) as little-endian `f32`, row-major; headers
//! `X-Rows`, `X-Columns`, `X-Samples: 1`, `X-Window-Center`/`X-Window-Width` (the file's
//! default window, or the value range), `X-Invert` (`1` for MONOCHROME1). For colour and
//! palette images, 8-bit RGB as a viewer shows it, with `X-Samples: 3`.

use axum::extract::{Path, State};
use axum::http::{header, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use super::rendered::{load_frame, Failure};
use super::AppState;
use crate::preprocess::lut::Voi;
use crate::preprocess::{render, Photometric, RenderOptions};

/// Response headers (name, value) of the pixel endpoint.
type Headers = Vec<(&'static str, String)>;

pub async fn pixels(
    State(st): State<AppState>,
    Path((study, series, sop, n)): Path<(String, String, String, u32)>,
) -> Response {
    let Some(frame) = n.checked_sub(1) else {
        return (StatusCode::BAD_REQUEST, "frames are numbered from 1").into_response();
    };
    let result = tokio::task::spawn_blocking(move || -> Result<(Headers, Vec<u8>), Failure> {
        let c = load_frame(&st, &study, &series, &sop, frame)?;
        let px = &c.pixels;
        let (rows, cols) = (px.rows, px.columns);
        let mut h = vec![("x-rows", rows.to_string()), ("x-columns", cols.to_string())];
        if px.photometric.is_grayscale() && px.samples_per_pixel == 1 {
            let m = &c.presentation.modality;
            let n = px.frame_len();
            let mut body = Vec::with_capacity(n * 4);
            let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
            for i in 0..n {
                let v = m.apply(px.samples.get(i));
                lo = lo.min(v);
                hi = hi.max(v);
                body.extend_from_slice(&(v as f32).to_le_bytes());
            }
            let (center, width) = match c.presentation.default_voi() {
                Voi::Window(w, _) => (w.center, w.width),
                // A VOI LUT table or no window: start from the value range.
                _ if hi > lo => ((lo + hi) / 2.0, hi - lo),
                _ => (lo, 1.0),
            };
            h.push(("x-samples", "1".into()));
            h.push(("x-window-center", format!("{center}")));
            h.push(("x-window-width", format!("{width}")));
            h.push(("x-invert", if px.photometric == Photometric::Monochrome1 { "1" } else { "0" }.into()));
            Ok((h, body))
        } else {
            let img = render::render(px, 0, &c.presentation, &RenderOptions::default()).map_err(Failure::Pixels)?;
            let rgb = if img.channels == 3 { img } else { render::to_rgb(img) };
            h.push(("x-samples", "3".into()));
            Ok((h, rgb.data))
        }
    })
    .await;
    match result {
        Ok(Ok((headers, body))) => {
            let mut r = body.into_response();
            let hm = r.headers_mut();
            hm.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
            hm.insert(header::CACHE_CONTROL, HeaderValue::from_static("private, max-age=3600"));
            for (k, v) in headers {
                if let Ok(v) = HeaderValue::from_str(&v) {
                    hm.insert(HeaderName::from_static(k), v);
                }
            }
            r
        }
        Ok(Err(f)) => f.into_response(n),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("pixel task failed: {e}")).into_response(),
    }
}

/// A finding's saliency grid: `X-Width`×`X-Height` bytes (0..255), row-major, over the image
/// the model saw (the centred square of the frame).
pub async fn saliency(State(st): State<AppState>, Path((study, id)): Path<(String, i64)>) -> Response {
    let db = st.db.clone();
    let found = tokio::task::spawn_blocking(move || db.findings(&study)).await;
    let findings = match found {
        Ok(Ok(f)) => f,
        Ok(Err(e)) => return super::WebError::from(e).into_response(),
        Err(e) => return super::WebError::internal(e).into_response(),
    };
    let Some(f) = findings.into_iter().find(|f| f.id == id) else {
        return (StatusCode::NOT_FOUND, "no such finding in this study").into_response();
    };
    let f = f.result;
    match f.saliency {
        Some(grid) if grid.len() as i64 == f.saliency_w * f.saliency_h && !grid.is_empty() => (
            [
                (header::CONTENT_TYPE, "application/octet-stream".to_string()),
                (HeaderName::from_static("x-width"), f.saliency_w.to_string()),
                (HeaderName::from_static("x-height"), f.saliency_h.to_string()),
            ],
            grid,
        )
            .into_response(),
        _ => (StatusCode::NOT_FOUND, "this finding has no saliency map").into_response(),
    }
}
