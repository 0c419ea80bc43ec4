//! Router-level tests: every route of the table against every role, CSRF, escaping, search
//! input, login lockout and session expiry. They run the real router, database and search
//! index in a temporary data directory (no sockets: tower's `oneshot`).

use std::net::SocketAddr;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::connect_info::MockConnectInfo;
use axum::http::{header, Request, StatusCode};
use axum::Router;
use tower::ServiceExt;

use super::routes::{self, Kind};
use super::{router, AppState};
use crate::security::password;
use crate::security::rbac::Role;
use crate::store::{InstanceAttrs, NewInstance, Policy, Store};

struct Fixture {
    _dir: tempfile::TempDir,
    state: AppState,
    app: Router,
    study: String,
    series: String,
    sop: String,
}

const XSS: &str = "<script>alert(1)</script>";

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("data");
    let store = Store::open(&root, Policy { overwrite_duplicates: false, min_free_bytes: 0 }).unwrap();
    for (i, name) in [XSS, "SMITH^ANNA"].iter().enumerate() {
        let attrs = InstanceAttrs {
            patient_id: format!("P{i}"),
            patient_name: name.to_string(),
            study_uid: format!("1.2.826.0.1.{i}"),
            series_uid: format!("1.2.826.0.1.{i}.1"),
            sop_uid: format!("1.2.826.0.1.{i}.1.1"),
            study_date: "20261204".into(),
            accession_number: format!("ACC{i}"),
            study_description: if i == 0 { "Chest PA".into() } else { "CT head".into() },
            modality: if i == 0 { "DX".into() } else { "CT".into() },
            sop_class: "1.2.840.10008.5.1.4.1.1.1.1".into(),
            transfer_syntax: "1.2.840.10008.1.2.1".into(),
            ..Default::default()
        };
        store.put(&NewInstance { header: vec![0; 4], dataset: vec![1; 4], attrs }).unwrap();
    }
    drop(store);
    let cfg = crate::config::Config::default();
    let state = AppState::open(&root, &cfg, Arc::new(AtomicBool::new(true))).unwrap();
    state.search.sync(&state.db).unwrap();
    let app = router(state.clone()).layer(MockConnectInfo(SocketAddr::from(([10, 0, 0, 9], 5555))));
    Fixture {
        _dir: dir,
        state,
        app,
        study: "1.2.826.0.1.0".into(),
        series: "1.2.826.0.1.0.1".into(),
        sop: "1.2.826.0.1.0.1.1".into(),
    }
}

/// A session for a new user of `role`: (cookie header, CSRF token).
fn session(st: &AppState, role: Role, must_change: bool) -> (String, String) {
    let name = format!("{}-{}", role, &password::token().unwrap()[..6]);
    let id = st.db.add_user(&name, role.as_str(), "$argon2id$x", must_change).unwrap().unwrap();
    let token = password::token().unwrap();
    let csrf = password::token().unwrap();
    st.db.open_session(&password::sha256(token.as_bytes()), id, &csrf, super::auth::now_secs(), "test").unwrap();
    (format!("{}={token}", super::auth::SESSION_COOKIE), csrf)
}

struct Resp {
    status: StatusCode,
    location: String,
    body: String,
}

async fn send(app: &Router, method: &str, path: &str, cookie: Option<&str>, csrf: Option<&str>, body: &str) -> Resp {
    let mut b = Request::builder().method(method).uri(path);
    if let Some(c) = cookie {
        b = b.header(header::COOKIE, c);
    }
    if let Some(t) = csrf {
        b = b.header("x-csrf-token", t);
    }
    if method == "POST" {
        b = b.header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
    }
    let resp = app.clone().oneshot(b.body(Body::from(body.to_string())).unwrap()).await.unwrap();
    let status = resp.status();
    let location = resp.headers().get(header::LOCATION).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 24).await.unwrap();
    Resp { status, location, body: String::from_utf8_lossy(&bytes).into_owned() }
}

/// A concrete path for a route pattern.
fn concrete(path: &str, f: &Fixture) -> String {
    path.replace("{study}", &f.study)
        .replace("{series}", &f.series)
        .replace("{sop}", &f.sop)
        .replace("{n}", "1")
        .replace("{id}", "1")
        .replace("{name}", "nobody")
        .replace("{*file}", "lucent.css")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_enforces_its_roles() {
    let f = fixture();
    let specs = routes::specs();
    assert!(specs.len() >= 25, "the route table lists every route");
    for spec in &specs {
        let path = concrete(spec.path, &f);
        if spec.kind == Kind::Public {
            if spec.method == "GET" {
                let r = send(&f.app, spec.method, &path, None, None, "").await;
                assert_eq!(r.status, StatusCode::OK, "GET {path} is public");
            }
            continue;
        }
        // Fresh sessions per route: some routes (logout) end the session they run in.
        let sessions: Vec<(Role, (String, String))> =
            Role::ALL.iter().map(|&r| (r, session(&f.state, r, false))).collect();
        // No session: a page redirects to the login form, an API call gets 401.
        let r = send(&f.app, spec.method, &path, None, None, "").await;
        match spec.kind {
            Kind::Html => {
                assert_eq!(r.status, StatusCode::SEE_OTHER, "{} {path} without a session", spec.method);
                assert!(r.location.starts_with("/login?next="), "{} {path}: {}", spec.method, r.location);
            }
            _ => assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{} {path} without a session", spec.method),
        }
        // A forged or unknown cookie is no session either.
        let r = send(&f.app, spec.method, &path, Some("lucent_session=00ff"), None, "").await;
        assert!(matches!(r.status, StatusCode::SEE_OTHER | StatusCode::UNAUTHORIZED), "{path}: {}", r.status);
        for (role, (cookie, csrf)) in &sessions {
            let r = send(&f.app, spec.method, &path, Some(cookie), Some(csrf), "").await;
            if spec.roles.contains(role) {
                assert!(
                    r.status != StatusCode::FORBIDDEN && r.status != StatusCode::UNAUTHORIZED,
                    "{} {path}: {role} is allowed but got {}",
                    spec.method,
                    r.status
                );
            } else {
                assert_eq!(r.status, StatusCode::FORBIDDEN, "{} {path}: {role} is not allowed", spec.method);
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_changes_need_the_sessions_csrf_token() {
    let f = fixture();
    let (cookie, csrf) = session(&f.state, Role::Radiologist, false);
    let path = format!("/studies/{}/report", f.study);
    let body = "body=Findings%3A+none";
    // No token, a wrong token, another session's token: refused, nothing saved.
    let (_, other) = session(&f.state, Role::Radiologist, false);
    for t in [None, Some("0".repeat(64)), Some(other)] {
        let r = send(&f.app, "POST", &path, Some(&cookie), t.as_deref(), body).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "token {t:?}");
    }
    let form_no_token = send(&f.app, "POST", &path, Some(&cookie), None, &format!("{body}&csrf=bad")).await;
    assert_eq!(form_no_token.status, StatusCode::FORBIDDEN);
    assert!(f.state.db.reports(&f.study).unwrap().is_empty());
    // The right token, as header or as form field: saved.
    let r = send(&f.app, "POST", &path, Some(&cookie), Some(&csrf), body).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let r = send(&f.app, "POST", &path, Some(&cookie), None, &format!("body=second&csrf={csrf}")).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let reports = f.state.db.reports(&f.study).unwrap();
    assert_eq!((reports.len(), reports[0].body.as_str(), reports[0].revisions), (1, "second", 2));
    // Logging out is a state change too.
    assert_eq!(send(&f.app, "POST", "/logout", Some(&cookie), None, "").await.status, StatusCode::FORBIDDEN);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn patient_data_and_report_html_are_escaped() {
    let f = fixture();
    let (cookie, csrf) = session(&f.state, Role::Radiologist, false);
    let list = send(&f.app, "GET", "/", Some(&cookie), None, "").await;
    assert_eq!(list.status, StatusCode::OK);
    assert!(list.body.contains("&#60;script&#62;alert(1)&#60;/script&#62;"), "worklist shows the name escaped");
    assert!(!list.body.contains(XSS));
    let report = "<img src=x onerror=alert(2)><b>bold</b>";
    let path = format!("/studies/{}/report", f.study);
    let body = serde_urlencoded::to_string([("body", report)]).unwrap();
    assert_eq!(send(&f.app, "POST", &path, Some(&cookie), Some(&csrf), &body).await.status, StatusCode::SEE_OTHER);
    let page = send(&f.app, "GET", &format!("/studies/{}", f.study), Some(&cookie), None, "").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(!page.body.contains(XSS) && !page.body.contains("<img src=x"), "nothing user-supplied is live HTML");
    assert!(
        page.body.contains("&#60;img src=x onerror=alert(2)&#62;&#60;b&#62;bold&#60;/b&#62;"),
        "report text escaped"
    );
    // The viewer's data attribute holds the JSON escaped too.
    assert!(page.body.contains("data-viewer=\"{&#34;"), "viewer data is attribute-escaped");
    // Every response forbids inline script through the CSP.
    let r = f.app.clone().oneshot(Request::get("/login").body(Body::empty()).unwrap()).await.unwrap();
    let csp = r.headers().get("content-security-policy").unwrap().to_str().unwrap();
    assert!(csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_input_cannot_inject() {
    let f = fixture();
    let (cookie, _) = session(&f.state, Role::Referrer, false);
    let count = |body: &str| -> String {
        let i = body.find(" stud").expect("count line");
        body[..i].rsplit('>').next().unwrap().trim().to_string()
    };
    let all = send(&f.app, "GET", "/worklist/rows", Some(&cookie), None, "").await;
    assert_eq!(count(&all.body), "2");
    for evil in [
        "' OR '1'='1",
        "x'); DROP TABLE studies; --",
        "\" OR 1=1 --",
        "*:*",
        "patient:* OR accession:*",
        "smith) OR (1=1",
    ] {
        let q = serde_urlencoded::to_string([("q", evil)]).unwrap();
        let r = send(&f.app, "GET", &format!("/worklist/rows?{q}"), Some(&cookie), None, "").await;
        assert_eq!(r.status, StatusCode::OK, "{evil}");
        assert_ne!(count(&r.body), "2", "{evil} must not match everything");
    }
    // The tables are intact and real searches work, by name prefix, accession and description.
    for (q, n) in [("smith", "1"), ("acc1", "1"), ("chest", "1"), ("ACC", "2"), ("nosuchthing", "0")] {
        let r = send(&f.app, "GET", &format!("/worklist/rows?q={q}"), Some(&cookie), None, "").await;
        assert_eq!(count(&r.body), n, "search {q}");
    }
    // Bad filter values get a message, not an error page.
    let r = send(&f.app, "GET", "/worklist/rows?from=yesterday", Some(&cookie), None, "").await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.body.contains("use YYYY-MM-DD"), "{}", r.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_changes_one_time_password_and_locks_after_failures() {
    let f = fixture();
    let otp = super::auth::bootstrap_admin(&f.state.db).unwrap().expect("first admin created");
    assert!(super::auth::bootstrap_admin(&f.state.db).unwrap().is_none(), "only once");
    let login = |user: &str, pw: &str| {
        let app = f.app.clone();
        let (user, pw) = (user.to_string(), pw.to_string());
        async move {
            let page = app.clone().oneshot(Request::get("/login").body(Body::empty()).unwrap()).await.unwrap();
            let set = page.headers().get(header::SET_COOKIE).unwrap().to_str().unwrap().to_string();
            let token = set.split(';').next().unwrap().split_once('=').unwrap().1.to_string();
            let body = serde_urlencoded::to_string([("username", user.as_str()), ("password", &pw), ("csrf", &token)])
                .unwrap();
            let cookie = format!("lucent_login={token}");
            let r = app
                .oneshot(
                    Request::post("/login")
                        .header(header::COOKIE, cookie)
                        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                        .body(Body::from(body))
                        .unwrap(),
                )
                .await
                .unwrap();
            let status = r.status();
            let loc = r.headers().get(header::LOCATION).map(|v| v.to_str().unwrap().to_string()).unwrap_or_default();
            let session = r
                .headers()
                .get_all(header::SET_COOKIE)
                .iter()
                .map(|v| v.to_str().unwrap().to_string())
                .find(|c| c.starts_with("lucent_session=") && !c.starts_with("lucent_session=;"));
            (status, loc, session)
        }
    };
    // The one-time password works once, and forces a change before anything else.
    let (status, loc, session) = login("admin", &otp).await;
    assert_eq!((status, loc.as_str()), (StatusCode::SEE_OTHER, "/account/password"));
    let set = session.unwrap();
    assert!(set.contains("HttpOnly") && set.contains("SameSite=Strict"), "{set}");
    let cookie = set.split(';').next().unwrap().to_string();
    let r = send(&f.app, "GET", "/admin/users", Some(&cookie), None, "").await;
    assert_eq!((r.status, r.location.as_str()), (StatusCode::SEE_OTHER, "/account/password"));
    let auth = super::auth::session_of(&f.state, &{
        let mut h = axum::http::HeaderMap::new();
        h.insert(header::COOKIE, cookie.parse().unwrap());
        h
    })
    .unwrap()
    .unwrap();
    let weak =
        serde_urlencoded::to_string([("current", otp.as_str()), ("new", "short"), ("confirm", "short")]).unwrap();
    let r = send(&f.app, "POST", "/account/password", Some(&cookie), Some(&auth.csrf), &weak).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.body.contains("at least 12"), "{}", r.body);
    let good = serde_urlencoded::to_string([
        ("current", otp.as_str()),
        ("new", "a new long passphrase"),
        ("confirm", "a new long passphrase"),
    ])
    .unwrap();
    let r = send(&f.app, "POST", "/account/password", Some(&cookie), Some(&auth.csrf), &good).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(send(&f.app, "GET", "/admin/users", Some(&cookie), None, "").await.status, StatusCode::OK);
    assert_eq!(login("admin", &otp).await.0, StatusCode::UNAUTHORIZED, "the one-time password is gone");

    // Five consecutive wrong passwords (the stale one-time password was the first) lock the
    // account; then even the right one is refused.
    for i in 2..=6 {
        let (status, _, _) = login("admin", "wrong password!").await;
        let expected = if i < 5 { StatusCode::UNAUTHORIZED } else { StatusCode::FORBIDDEN };
        assert_eq!(status, expected, "failure {i}");
    }
    let (status, _, session) = login("admin", "a new long passphrase").await;
    assert_eq!((status, session), (StatusCode::FORBIDDEN, None), "locked");
    // Unknown users get the same answer as wrong passwords.
    assert_eq!(login("nobody", "whatever").await.0, StatusCode::UNAUTHORIZED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_session_sends_htmx_to_the_login_page() {
    let f = fixture();
    let req = Request::get("/worklist/rows")
        .header("hx-request", "true")
        .header("hx-current-url", "http://lucent:8080/?q=smith")
        .body(Body::empty())
        .unwrap();
    let r = f.app.clone().oneshot(req).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers().get("hx-redirect").unwrap(), "/login?next=%2F%3Fq%3Dsmith");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_and_disabled_sessions_end() {
    let f = fixture();
    let st = &f.state;
    let id = st.db.add_user("idle", "radiologist", "$argon2id$x", false).unwrap().unwrap();
    let token = password::token().unwrap();
    let long_ago = super::auth::now_secs() - 16 * 60;
    st.db.open_session(&password::sha256(token.as_bytes()), id, "c", long_ago, "t").unwrap();
    let r = send(&f.app, "GET", "/", Some(&format!("lucent_session={token}")), None, "").await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "a session idle for 16 minutes has ended");
    let (cookie, _) = session(st, Role::Technologist, false);
    assert_eq!(send(&f.app, "GET", "/", Some(&cookie), None, "").await.status, StatusCode::OK);
    let user = st.db.users().unwrap().into_iter().find(|u| u.role == "technologist").unwrap();
    st.db.set_disabled(user.id, true).unwrap();
    assert_eq!(send(&f.app, "GET", "/", Some(&cookie), None, "").await.status, StatusCode::SEE_OTHER);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_reports_are_immutable_and_amendments_link_back() {
    let f = fixture();
    let (cookie, csrf) = session(&f.state, Role::Radiologist, false);
    let base = format!("/studies/{}/report", f.study);
    let post = |path: String, body: &'static str| {
        let (app, cookie, csrf) = (f.app.clone(), cookie.clone(), csrf.clone());
        async move { send(&app, "POST", &path, Some(&cookie), Some(&csrf), body).await }
    };
    assert_eq!(post(base.clone(), "body=first").await.status, StatusCode::SEE_OTHER);
    let id = f.state.db.reports(&f.study).unwrap()[0].id;
    // Signing needs the explicit confirmation.
    assert_eq!(post(format!("{base}/{id}/sign"), "").await.status, StatusCode::BAD_REQUEST);
    assert_eq!(post(format!("{base}/{id}/sign"), "confirm=yes").await.status, StatusCode::SEE_OTHER);
    let page = send(&f.app, "GET", &format!("/studies/{}", f.study), Some(&cookie), None, "").await;
    assert!(page.body.contains("id=\"report-signed\"") && !page.body.contains("id=\"report-body\""), "read-only");
    // Neither the web nor the database lets it change.
    assert_eq!(post(base.clone(), "body=changed").await.status, StatusCode::CONFLICT);
    assert_eq!(post(format!("{base}/{id}/sign"), "confirm=yes").await.status, StatusCode::CONFLICT);
    assert_eq!(f.state.db.reports(&f.study).unwrap()[0].body, "first");
    let direct = f.state.db.with(|c| c.execute("UPDATE reports SET body = 'x' WHERE id = ?1", [id]));
    assert!(direct.is_err(), "the trigger refuses updates of signed reports");
    // An amendment is a new version that links to the signed one.
    assert_eq!(post(format!("{base}/amend"), "").await.status, StatusCode::SEE_OTHER);
    assert_eq!(post(base.clone(), "body=corrected").await.status, StatusCode::SEE_OTHER);
    let reports = f.state.db.reports(&f.study).unwrap();
    assert_eq!(reports.len(), 2);
    assert_eq!((reports[0].version, reports[0].amends, reports[0].body.as_str()), (2, Some(id), "corrected"));
    assert!(reports[1].is_signed() && reports[1].body == "first");
    // Report text is searchable once saved.
    f.state.search.sync(&f.state.db).unwrap();
    assert!(f.state.search.search("corrected", 10).unwrap().contains(&f.study));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn findings_show_calibrated_wording_model_link_and_banner_and_take_feedback() {
    let f = fixture();
    let st = &f.state;
    let finding = crate::store::db::NewFinding {
        sop_uid: f.sop.clone(),
        model_name: "classifier".into(),
        model_version: "1.0.0".into(),
        label: "pneumonia".into(),
        probability: 0.83,
        threshold: 0.37,
        saliency_w: 2,
        saliency_h: 2,
        saliency: Some(vec![0, 64, 128, 255]),
    };
    let fid = st.db.add_finding(&f.study, &finding).unwrap().unwrap();
    st.db.set_study_ai(&f.study, "done", 2, "").unwrap();
    let (cookie, csrf) = session(st, Role::Radiologist, false);
    let page = send(&f.app, "GET", &format!("/studies/{}", f.study), Some(&cookie), None, "").await;
    assert!(page.body.contains("AI-generated — verify"));
    assert!(page.body.contains("pneumonia: likely"));
    assert!(page.body.contains("Calibrated probability 0.83 (model threshold 0.37)"));
    assert!(page.body.contains("href=\"/admin/models/classifier-1.0.0\""));
    // The draft is generated from the finding, with AI statements marked.
    assert!(page.body.contains("[AI: classifier 1.0.0]"));
    let sal =
        send(&f.app, "GET", &format!("/api/studies/{}/findings/{fid}/saliency", f.study), Some(&cookie), None, "")
            .await;
    assert_eq!(sal.status, StatusCode::OK);
    let path = format!("/studies/{}/findings/{fid}/feedback", f.study);
    let r = send(&f.app, "POST", &path, Some(&cookie), Some(&csrf), "verdict=disagree&comment=atelectasis").await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    let fb = &st.db.findings(&f.study).unwrap()[0].feedback;
    assert_eq!((fb.len(), fb[0].agrees, fb[0].comment.as_str()), (1, false, "atelectasis"));
    let bad = send(&f.app, "POST", &path, Some(&cookie), Some(&csrf), "verdict=maybe").await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    // A finding of another study cannot be judged through this one.
    let other = format!("/studies/1.2.826.0.1.1/findings/{fid}/feedback");
    assert_eq!(
        send(&f.app, "POST", &other, Some(&cookie), Some(&csrf), "verdict=agree").await.status,
        StatusCode::NOT_FOUND
    );
    // The worklist shows the AI state and sorts by priority.
    let rows = send(&f.app, "GET", "/worklist/rows?sort=priority", Some(&cookie), None, "").await;
    let first = rows.body.find("data-study=\"").map(|i| &rows.body[i + 12..i + 12 + f.study.len()]);
    assert_eq!(first, Some(f.study.as_str()));
    assert!(rows.body.contains("class=\"prio p2\""));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_page_shows_progress_and_failures_and_retries() {
    let f = fixture();
    let st = &f.state;
    let running = st.db.enqueue_job(&f.study, "classify").unwrap().unwrap();
    let failed = st.db.enqueue_job(&f.study, "enhance").unwrap().unwrap();
    st.db.set_job_state(running, "running", 0.4, "").unwrap();
    st.db.set_job_state(failed, "running", 0.1, "").unwrap();
    st.db.set_job_state(failed, "failed", 0.1, "wgpu device lost").unwrap();
    let (admin, csrf) = session(st, Role::Admin, false);
    let page = send(&f.app, "GET", "/admin/jobs", Some(&admin), None, "").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("wgpu device lost") && page.body.contains("40 %"), "{}", page.body);
    assert!(page.body.contains(&format!("/admin/jobs/{failed}/retry")));
    assert!(!page.body.contains(&format!("/admin/jobs/{running}/retry")), "only failed jobs can be retried");
    assert!(!page.body.contains(XSS) && !page.body.contains("SMITH"), "no patient data on the jobs page");
    assert!(!page.body.contains("&#60;script&#62;alert(1)"), "not even escaped: the jobs' patient is not shown");
    let only = send(&f.app, "GET", "/admin/jobs?status=failed", Some(&admin), None, "").await;
    assert!(only.body.contains("enhance") && !only.body.contains("classify"));
    let r = send(&f.app, "POST", &format!("/admin/jobs/{failed}/retry"), Some(&admin), Some(&csrf), "").await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    let job = st.db.jobs(None, 10).unwrap().into_iter().find(|j| j.id == failed).unwrap();
    assert_eq!((job.status.as_str(), job.attempts), ("queued", 1));
    let again = send(&f.app, "POST", &format!("/admin/jobs/{failed}/retry"), Some(&admin), Some(&csrf), "").await;
    assert_eq!(again.status, StatusCode::CONFLICT, "a queued job is not retried twice");
    // Auditors see the page but cannot retry.
    let (auditor, _) = session(st, Role::Auditor, false);
    let page = send(&f.app, "GET", "/admin/jobs", Some(&auditor), None, "").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(!page.body.contains("/retry\""), "no retry button for auditors");
}
