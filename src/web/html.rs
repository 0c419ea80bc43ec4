//! Page plumbing shared by the handlers: rendering askama templates into responses, the
//! navigation bar, error pages, and small formatting helpers used in templates.

use askama::Template;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};

use super::auth::Auth;
use crate::security::rbac::{self, Role};

/// The navigation bar: who is signed in, and the links their role may follow.
#[derive(Debug, Clone)]
pub struct Nav {
    pub user: String,
    pub role: String,
    pub csrf: String,
    pub active: &'static str,
    pub clinical: bool,
    pub admin: bool,
    pub oversight: bool,
}

impl Nav {
    pub fn new(auth: &Auth, active: &'static str) -> Nav {
        let has = |roles: &[Role]| roles.contains(&auth.role);
        Nav {
            user: auth.name.clone(),
            role: auth.role.to_string(),
            csrf: auth.csrf.clone(),
            active,
            clinical: has(rbac::CLINICAL),
            admin: has(rbac::ADMIN),
            oversight: has(rbac::OVERSIGHT),
        }
    }
}

pub fn render(status: StatusCode, t: &impl Template) -> Response {
    match t.render() {
        Ok(body) => {
            let mut r = (status, Html(body)).into_response();
            r.headers_mut().insert(axum::http::header::CACHE_CONTROL, axum::http::HeaderValue::from_static("no-store"));
            r
        }
        Err(e) => super::WebError::internal(e).into_response(),
    }
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    status: u16,
    reason: &'a str,
    message: &'a str,
}

pub fn error_page(status: StatusCode, message: &str) -> Response {
    render(status, &ErrorPage { status: status.as_u16(), reason: status.canonical_reason().unwrap_or(""), message })
}

/// DICOM DA `YYYYMMDD` as `YYYY-MM-DD` (anything else as it is).
pub fn da(s: &str) -> String {
    let s = s.trim();
    if s.len() == 8 && s.bytes().all(|b| b.is_ascii_digit()) {
        format!("{}-{}-{}", &s[..4], &s[4..6], &s[6..])
    } else {
        s.to_string()
    }
}

/// DICOM PN `Family^Given^Middle^Prefix^Suffix` as "Family, Given Middle".
pub fn pn(s: &str) -> String {
    let alphabetic = s.split('=').next().unwrap_or("");
    let mut parts = alphabetic.split('^').map(str::trim);
    let family = parts.next().unwrap_or("");
    let rest: Vec<&str> = parts.take(2).filter(|p| !p.is_empty()).collect();
    match (family.is_empty(), rest.is_empty()) {
        (_, true) => family.to_string(),
        (true, false) => rest.join(" "),
        (false, false) => format!("{family}, {}", rest.join(" ")),
    }
}

/// RFC 3339 UTC `2026-12-04T01:02:03.456Z` as `2026-12-04 01:02 UTC`.
pub fn when(s: &str) -> String {
    if s.len() >= 16 && s.as_bytes()[10] == b'T' {
        format!("{} {} UTC", &s[..10], &s[11..16])
    } else {
        s.to_string()
    }
}

/// Worklist priority: label and CSS class.
pub fn priority(p: i64) -> (&'static str, &'static str) {
    match p {
        i64::MIN..=0 => ("routine", "p0"),
        1 => ("low", "p1"),
        2 => ("high", "p2"),
        _ => ("critical", "p3"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dicom_values_are_formatted_for_people() {
        assert_eq!(da("20261204"), "2026-12-04");
        assert_eq!(da("2026"), "2026");
        assert_eq!(pn("DOE^JOHN^Q"), "DOE, JOHN Q");
        assert_eq!(pn("DOE"), "DOE");
        assert_eq!(pn("^JOHN"), "JOHN");
        assert_eq!(pn("Yamada^Tarou=山田^太郎"), "Yamada, Tarou");
        assert_eq!(when("2026-12-04T01:02:03.456Z"), "2026-12-04 01:02 UTC");
        assert_eq!(priority(3), ("critical", "p3"));
        assert_eq!(priority(0).0, "routine");
    }
}
