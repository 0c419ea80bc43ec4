//! Who is asking, and may they: sessions, login and logout, password changes, the role check
//! and CSRF check that wrap every route (see [`super::routes`]).
//!
//! Sessions are server-side rows (store `sessions`) keyed by the SHA-256 of a 256-bit random
//! cookie token. The cookie is HttpOnly, SameSite=Strict, Path=/, and Secure when configured
//! or when the request came through HTTPS. Idle and absolute lifetimes come from `[web]`.
//! Every state-changing request must carry the session's CSRF token, as the `csrf` form
//! field or the `X-CSRF-Token` header (htmx sends the header, set once on `<body>`). The login
//! form, which has no session yet, uses a double-submit token in a short-lived cookie.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use askama::Template;
use axum::body::Body;
use axum::extract::{ConnectInfo, Form, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::routes::{Kind, RouteSpec};
use super::{html, AppState, WebError};
use crate::security::password;
use crate::security::rbac::Role;
use crate::store::Db;

pub const SESSION_COOKIE: &str = "lucent_session";
const LOGIN_COOKIE: &str = "lucent_login";
/// A session's last-seen time is written at most this often.
const TOUCH_EVERY_SECS: i64 = 30;
/// Largest form body the CSRF check buffers.
const MAX_FORM: usize = 1 << 20;

/// The signed-in user of a request, put into its extensions by [`authorize`].
#[derive(Debug, Clone)]
pub struct Auth {
    pub user_id: i64,
    pub name: String,
    pub role: Role,
    pub csrf: String,
    pub token_hash: [u8; 32],
    pub must_change_password: bool,
}

pub fn now_secs() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
}

fn secure(st: &AppState, headers: &HeaderMap) -> bool {
    st.web.secure_cookies
        || headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("https"))
}

fn set_cookie(name: &str, value: &str, path: &str, max_age: Option<i64>, secure: bool) -> HeaderValue {
    let mut c = format!("{name}={value}; Path={path}; HttpOnly; SameSite=Strict");
    if let Some(a) = max_age {
        c.push_str(&format!("; Max-Age={a}"));
    }
    if secure {
        c.push_str("; Secure");
    }
    HeaderValue::from_str(&c).expect("cookie is ASCII")
}

/// Looks up the session of a request; `None` when absent, unknown, idle too long, too old, or
/// its account is disabled.
pub fn session_of(st: &AppState, headers: &HeaderMap) -> Result<Option<Auth>, WebError> {
    let Some(token) = cookie(headers, SESSION_COOKIE) else { return Ok(None) };
    if token.len() != 64 || !token.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Ok(None);
    }
    let hash = password::sha256(token.as_bytes());
    let Some(s) = st.db.session(&hash)? else { return Ok(None) };
    let now = now_secs();
    let idle = (st.web.session_idle_minutes * 60) as i64;
    let max = (st.web.session_max_hours * 3600) as i64;
    if s.user.disabled || now - s.last_seen > idle || now - s.created_at > max {
        st.db.delete_session(&hash)?;
        return Ok(None);
    }
    let Ok(role) = s.user.role.parse::<Role>() else { return Ok(None) };
    if now - s.last_seen >= TOUCH_EVERY_SECS {
        st.db.touch_session(&hash, now)?;
    }
    Ok(Some(Auth {
        user_id: s.user.id,
        name: s.user.name,
        role,
        csrf: s.csrf,
        token_hash: hash,
        must_change_password: s.user.must_change_password,
    }))
}

fn deny(kind: Kind, status: StatusCode, msg: &str) -> Response {
    match kind {
        Kind::Api | Kind::Public => (status, axum::Json(serde_json::json!({ "error": msg }))).into_response(),
        Kind::Html => html::error_page(status, msg),
    }
}

/// The middleware on every non-public route: session, forced password change, role, CSRF.
pub async fn authorize(State((st, spec)): State<(AppState, RouteSpec)>, req: Request, next: Next) -> Response {
    let st2 = st.clone();
    let headers = req.headers().clone();
    let auth = match tokio::task::spawn_blocking(move || session_of(&st2, &headers)).await {
        Ok(Ok(a)) => a,
        Ok(Err(e)) => return e.into_response(),
        Err(e) => return WebError::internal(e).into_response(),
    };
    let Some(auth) = auth else {
        return match spec.kind {
            Kind::Html if req.headers().contains_key("hx-request") => {
                // An htmx fragment (the worklist's live refresh): a redirect would swap the
                // login form into the page, so ask htmx to load the login page instead.
                let next = req.headers().get("hx-current-url").and_then(|v| v.to_str().ok()).and_then(local_path);
                let login = format!("/login?next={}", urlencode(next.as_deref().unwrap_or("/")));
                let mut r = StatusCode::OK.into_response();
                if let Ok(v) = HeaderValue::from_str(&login) {
                    r.headers_mut().insert("hx-redirect", v);
                }
                r
            }
            Kind::Html => {
                let target = req.uri().path_and_query().map(|p| p.as_str()).unwrap_or("/");
                let next = if req.method() == Method::GET { target } else { "/" };
                Redirect::to(&format!("/login?next={}", urlencode(next))).into_response()
            }
            _ => deny(Kind::Api, StatusCode::UNAUTHORIZED, "not signed in"),
        };
    };
    let path = req.uri().path();
    if auth.must_change_password && path != "/account/password" && path != "/logout" {
        return match spec.kind {
            Kind::Html if req.method() == Method::GET => Redirect::to("/account/password").into_response(),
            _ => deny(spec.kind, StatusCode::FORBIDDEN, "change your one-time password first"),
        };
    }
    if !spec.roles.contains(&auth.role) {
        return deny(spec.kind, StatusCode::FORBIDDEN, &format!("the {} role may not use this page", auth.role));
    }
    let mut req = req;
    if !matches!(*req.method(), Method::GET | Method::HEAD) {
        match check_csrf(req, &auth.csrf).await {
            Ok(r) => req = r,
            Err(msg) => return deny(spec.kind, StatusCode::FORBIDDEN, msg),
        }
    }
    req.extensions_mut().insert(auth);
    next.run(req).await
}

/// Checks the CSRF token (header, or `csrf` field of a urlencoded form) and gives the request
/// back with its body intact.
async fn check_csrf(req: Request, expected: &str) -> Result<Request, &'static str> {
    const MISSING: &str = "the form's security token is missing or stale; reload the page and try again";
    if let Some(h) = req.headers().get("x-csrf-token") {
        return if password::constant_time_eq(h.as_bytes(), expected.as_bytes()) { Ok(req) } else { Err(MISSING) };
    }
    let is_form = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if !is_form {
        return Err(MISSING);
    }
    let (parts, body) = req.into_parts();
    let bytes = axum::body::to_bytes(body, MAX_FORM).await.map_err(|_| "the form is too large")?;
    let ok = form_urlencoded_field(&bytes, "csrf")
        .is_some_and(|t| password::constant_time_eq(t.as_bytes(), expected.as_bytes()));
    if !ok {
        return Err(MISSING);
    }
    Ok(Request::from_parts(parts, Body::from(bytes)))
}

fn form_urlencoded_field(body: &[u8], name: &str) -> Option<String> {
    serde_urlencoded::from_bytes::<Vec<(String, String)>>(body)
        .ok()?
        .into_iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v)
}

pub fn urlencode(s: &str) -> String {
    serde_urlencoded::to_string([("", s)]).map(|q| q[1..].to_string()).unwrap_or_default()
}

/// The path and query of an absolute URL (htmx's `HX-Current-URL`).
fn local_path(url: &str) -> Option<String> {
    let rest = url.split_once("://").map(|(_, r)| r).unwrap_or(url);
    let path = &rest[rest.find('/')?..];
    Some(path.to_string())
}

/// Only local paths may be redirected to after login.
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n) if n.starts_with('/') && !n.starts_with("//") && !n.starts_with("/\\") => n.to_string(),
        _ => "/".to_string(),
    }
}

/// Creates the first administrator when the database has none: user `admin` with a random
/// one-time password, returned so that the caller prints it once. It must be changed at first
/// login.
pub fn bootstrap_admin(db: &Db) -> Result<Option<String>, WebError> {
    if db.count_active_with_role(Role::Admin.as_str())? > 0 || db.user("admin")?.is_some() {
        return Ok(None);
    }
    let otp = password::one_time_password().map_err(WebError::internal)?;
    let hash = password::hash(&otp).map_err(WebError::internal)?;
    Ok(db.add_user("admin", Role::Admin.as_str(), &hash, true)?.map(|_| otp))
}

/// Per-address login attempt counter (one-minute windows).
#[derive(Default)]
pub struct LoginLimiter {
    windows: Mutex<HashMap<IpAddr, (Instant, u32)>>,
}

impl LoginLimiter {
    /// Counts an attempt from `ip`; false when it is over `per_minute`.
    pub fn allow(&self, ip: IpAddr, per_minute: u32) -> bool {
        let mut w = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        if w.len() > 10_000 {
            w.retain(|_, (t, _)| now.duration_since(*t) < Duration::from_secs(60));
        }
        let e = w.entry(ip).or_insert((now, 0));
        if now.duration_since(e.0) >= Duration::from_secs(60) {
            *e = (now, 0);
        }
        e.1 += 1;
        e.1 <= per_minute
    }
}

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    csrf: String,
    next: String,
    message: String,
    username: String,
}

#[derive(Deserialize)]
pub struct LoginQuery {
    next: Option<String>,
}

pub async fn login_form(State(st): State<AppState>, headers: HeaderMap, Query(q): Query<LoginQuery>) -> Response {
    login_page(&st, &headers, safe_next(q.next.as_deref()), String::new(), String::new(), StatusCode::OK)
}

fn login_page(
    st: &AppState,
    headers: &HeaderMap,
    next: String,
    message: String,
    username: String,
    status: StatusCode,
) -> Response {
    let token = match cookie(headers, LOGIN_COOKIE).filter(|t| t.len() == 64) {
        Some(t) => t.to_string(),
        None => match password::token() {
            Ok(t) => t,
            Err(e) => return WebError::internal(e).into_response(),
        },
    };
    let page = LoginPage { csrf: token.clone(), next, message, username };
    let mut resp = html::render(status, &page);
    resp.headers_mut()
        .append(header::SET_COOKIE, set_cookie(LOGIN_COOKIE, &token, "/login", Some(3600), secure(st, headers)));
    resp
}

#[derive(Deserialize)]
pub struct LoginForm {
    username: String,
    password: String,
    #[serde(default)]
    csrf: String,
    next: Option<String>,
}

pub async fn login(
    State(st): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Form(f): Form<LoginForm>,
) -> Response {
    let next = safe_next(f.next.as_deref());
    let again =
        |msg: &str, status| login_page(&st, &headers, next.clone(), msg.to_string(), f.username.clone(), status);
    let expected = cookie(&headers, LOGIN_COOKIE).unwrap_or("");
    if expected.is_empty() || !password::constant_time_eq(expected.as_bytes(), f.csrf.as_bytes()) {
        return again("The login form expired. Please sign in again.", StatusCode::FORBIDDEN);
    }
    if !st.login_limiter.allow(peer.ip(), st.web.login_attempts_per_minute) {
        return again(
            "Too many login attempts from this computer. Wait a minute and try again.",
            StatusCode::TOO_MANY_REQUESTS,
        );
    }
    let st2 = st.clone();
    let (username, pw) = (f.username.trim().to_string(), f.password.clone());
    let outcome = tokio::task::spawn_blocking(move || check_login(&st2, &username, &pw, &peer)).await;
    match outcome {
        Ok(Ok(LoginOutcome::Ok { token, must_change })) => {
            let target = if must_change { "/account/password".to_string() } else { next };
            let mut resp = Redirect::to(&target).into_response();
            let sec = secure(&st, &headers);
            resp.headers_mut().append(header::SET_COOKIE, set_cookie(SESSION_COOKIE, &token, "/", None, sec));
            resp.headers_mut().append(header::SET_COOKIE, set_cookie(LOGIN_COOKIE, "", "/login", Some(0), sec));
            resp
        }
        Ok(Ok(LoginOutcome::Locked { minutes })) => again(
            &format!(
                "This account is locked after too many wrong passwords. Try again in {minutes} minute(s) or ask an administrator."
            ),
            StatusCode::FORBIDDEN,
        ),
        Ok(Ok(LoginOutcome::Wrong)) => again("Wrong user name or password.", StatusCode::UNAUTHORIZED),
        Ok(Err(e)) => e.into_response(),
        Err(e) => WebError::internal(e).into_response(),
    }
}

enum LoginOutcome {
    Ok { token: String, must_change: bool },
    Wrong,
    Locked { minutes: i64 },
}

fn check_login(st: &AppState, username: &str, pw: &str, peer: &SocketAddr) -> Result<LoginOutcome, WebError> {
    let now = now_secs();
    let Some(user) = st.db.user(username)? else {
        // Same work as for a real account, so timing does not reveal which names exist.
        password::verify(pw, password::dummy_hash());
        tracing::info!(user = username, %peer, "login failed: unknown user");
        return Ok(LoginOutcome::Wrong);
    };
    if user.locked_until > now {
        return Ok(LoginOutcome::Locked { minutes: (user.locked_until - now + 59) / 60 });
    }
    let good = password::verify(pw, &user.password_hash);
    if !good || user.disabled {
        let (failures, locked_until) = st.db.record_login_failure(
            user.id,
            i64::from(st.web.login_max_failures),
            (st.web.lockout_minutes * 60) as i64,
            now,
        )?;
        tracing::info!(user = username, %peer, failures, disabled = user.disabled, "login failed");
        if locked_until > now {
            tracing::warn!(user = username, %peer, "account locked after repeated login failures");
            return Ok(LoginOutcome::Locked { minutes: (locked_until - now + 59) / 60 });
        }
        return Ok(LoginOutcome::Wrong);
    }
    let token = password::token().map_err(WebError::internal)?;
    let csrf = password::token().map_err(WebError::internal)?;
    st.db.open_session(&password::sha256(token.as_bytes()), user.id, &csrf, now, &peer.to_string())?;
    tracing::info!(user = username, %peer, role = %user.role, "login");
    Ok(LoginOutcome::Ok { token, must_change: user.must_change_password })
}

pub async fn logout(
    State(st): State<AppState>,
    headers: HeaderMap,
    axum::Extension(auth): axum::Extension<Auth>,
) -> Response {
    let db = st.db.clone();
    let _ = tokio::task::spawn_blocking(move || db.delete_session(&auth.token_hash)).await;
    let mut resp = Redirect::to("/login").into_response();
    resp.headers_mut().append(header::SET_COOKIE, set_cookie(SESSION_COOKIE, "", "/", Some(0), secure(&st, &headers)));
    resp
}

#[derive(Template)]
#[template(path = "password.html")]
struct PasswordPage {
    nav: html::Nav,
    forced: bool,
    message: String,
    min_len: usize,
}

pub async fn password_form(axum::Extension(auth): axum::Extension<Auth>) -> Response {
    let forced = auth.must_change_password;
    html::render(
        StatusCode::OK,
        &PasswordPage {
            nav: html::Nav::new(&auth, "account"),
            forced,
            message: String::new(),
            min_len: password::MIN_LEN,
        },
    )
}

#[derive(Deserialize)]
pub struct PasswordForm {
    current: String,
    new: String,
    confirm: String,
}

pub async fn change_password(
    State(st): State<AppState>,
    axum::Extension(auth): axum::Extension<Auth>,
    Form(f): Form<PasswordForm>,
) -> Response {
    let a = auth.clone();
    let result = tokio::task::spawn_blocking(move || -> Result<Result<(), String>, WebError> {
        let Some(user) = st.db.user(&a.name)? else { return Ok(Err("your account no longer exists".into())) };
        if !password::verify(&f.current, &user.password_hash) {
            return Ok(Err("The current password is wrong.".into()));
        }
        if f.new != f.confirm {
            return Ok(Err("The new password and its confirmation differ.".into()));
        }
        if f.new == f.current {
            return Ok(Err("The new password must differ from the current one.".into()));
        }
        if let Err(m) = password::check_policy(&f.new, &a.name) {
            return Ok(Err(format!("Choose another password: {m}.")));
        }
        let hash = password::hash(&f.new).map_err(WebError::internal)?;
        st.db.set_password(user.id, &hash, false, Some(&a.token_hash))?;
        tracing::info!(user = %a.name, "password changed");
        Ok(Ok(()))
    })
    .await;
    match result {
        Ok(Ok(Ok(()))) => Redirect::to("/").into_response(),
        Ok(Ok(Err(message))) => html::render(
            StatusCode::UNPROCESSABLE_ENTITY,
            &PasswordPage {
                nav: html::Nav::new(&auth, "account"),
                forced: auth.must_change_password,
                message,
                min_len: password::MIN_LEN,
            },
        ),
        Ok(Err(e)) => e.into_response(),
        Err(e) => WebError::internal(e).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_local_paths_are_followed_after_login() {
        assert_eq!(safe_next(Some("/studies/1.2.3")), "/studies/1.2.3");
        assert_eq!(safe_next(Some("//evil.example/x")), "/");
        assert_eq!(safe_next(Some("/\\evil.example")), "/");
        assert_eq!(safe_next(Some("https://evil.example")), "/");
        assert_eq!(safe_next(None), "/");
    }

    #[test]
    fn current_url_gives_its_local_path() {
        assert_eq!(local_path("http://lucent:8080/?q=smith").as_deref(), Some("/?q=smith"));
        assert_eq!(local_path("https://h/studies/1.2").as_deref(), Some("/studies/1.2"));
        assert_eq!(local_path("http://h").as_deref(), None);
        // Whatever it gives still passes safe_next before use.
        assert_eq!(safe_next(local_path("http://h//evil").as_deref()), "/");
    }

    #[test]
    fn cookies_are_parsed_from_any_header_position() {
        let mut h = HeaderMap::new();
        h.append(header::COOKIE, HeaderValue::from_static("a=1; lucent_session=abc"));
        assert_eq!(cookie(&h, SESSION_COOKIE), Some("abc"));
        assert_eq!(cookie(&h, "b"), None);
        let c = set_cookie("x", "y", "/", Some(0), true);
        assert_eq!(c.to_str().unwrap(), "x=y; Path=/; HttpOnly; SameSite=Strict; Max-Age=0; Secure");
    }

    #[test]
    fn limiter_counts_per_address() {
        let l = LoginLimiter::default();
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        assert!((0..3).all(|_| l.allow(a, 3)));
        assert!(!l.allow(a, 3));
        assert!(l.allow(b, 3));
    }
}
