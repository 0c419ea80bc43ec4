//! Administration pages: users, models (list and card), and the system overview.

use askama::Template;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Extension, Form, Json};
use serde::{Deserialize, Serialize};

use super::auth::Auth;
use super::html::{self, Nav};
use super::{blocking, AppState, WebError};
use crate::ml::registry::Registry;
use crate::security::password;
use crate::security::rbac::Role;

pub struct UserView {
    pub name: String,
    pub role: String,
    pub state: &'static str,
    pub disabled: bool,
    pub created: String,
    pub password_changed: String,
}

#[derive(Template)]
#[template(path = "admin_users.html")]
struct UsersPage {
    nav: Nav,
    users: Vec<UserView>,
    roles: Vec<&'static str>,
    message: String,
    one_time: String,
}

fn users_page(
    st: &AppState,
    auth: &Auth,
    message: String,
    one_time: String,
    status: StatusCode,
) -> Result<Response, WebError> {
    let now = super::auth::now_secs();
    let users = st
        .db
        .users()?
        .into_iter()
        .map(|u| UserView {
            state: u.state(now),
            disabled: u.disabled,
            created: html::when(&u.created_at),
            password_changed: html::when(&u.password_changed_at),
            name: u.name,
            role: u.role,
        })
        .collect();
    let roles = Role::ALL.iter().map(|r| r.as_str()).collect();
    Ok(html::render(status, &UsersPage { nav: Nav::new(auth, "users"), users, roles, message, one_time }))
}

pub async fn users(State(st): State<AppState>, Extension(auth): Extension<Auth>) -> Result<Response, WebError> {
    blocking(move || users_page(&st, &auth, String::new(), String::new(), StatusCode::OK)).await
}

/// Checks a user name: 1 to 64 characters, letters, digits, `.`, `_`, `-`.
pub fn check_user_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 64 || !name.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c)) {
        return Err(format!("user name {name:?}: 1 to 64 letters, digits, '.', '_' or '-'"));
    }
    Ok(())
}

#[derive(Deserialize)]
pub struct AddUserForm {
    name: String,
    role: String,
}

/// Adds a user with a one-time password, shown once to the administrator.
pub async fn add_user(
    State(st): State<AppState>,
    Extension(auth): Extension<Auth>,
    Form(f): Form<AddUserForm>,
) -> Result<Response, WebError> {
    blocking(move || {
        let name = f.name.trim().to_string();
        let fail = |m: String| users_page(&st, &auth, m, String::new(), StatusCode::UNPROCESSABLE_ENTITY);
        if let Err(m) = check_user_name(&name) {
            return fail(m);
        }
        let role: Role = match f.role.parse() {
            Ok(r) => r,
            Err(m) => return fail(m),
        };
        let otp = password::one_time_password().map_err(WebError::internal)?;
        let hash = password::hash(&otp).map_err(WebError::internal)?;
        if st.db.add_user(&name, role.as_str(), &hash, true)?.is_none() {
            return fail(format!("a user named {name} exists already"));
        }
        tracing::info!(admin = %auth.name, user = %name, %role, "user added");
        users_page(&st, &auth, format!("User {name} ({role}) added."), otp, StatusCode::OK)
    })
    .await
}

async fn set_disabled(st: AppState, auth: Auth, name: String, disabled: bool) -> Result<Response, WebError> {
    blocking(move || {
        let user = st.db.user(&name)?.ok_or_else(|| WebError::not_found(format!("no user {name}")))?;
        if disabled && user.id == auth.user_id {
            return users_page(
                &st,
                &auth,
                "You cannot disable your own account.".into(),
                String::new(),
                StatusCode::CONFLICT,
            );
        }
        st.db.set_disabled(user.id, disabled)?;
        tracing::info!(admin = %auth.name, user = %name, disabled, "account state changed");
        Ok(Redirect::to("/admin/users").into_response())
    })
    .await
}

pub async fn disable_user(
    State(st): State<AppState>,
    Extension(auth): Extension<Auth>,
    Path(name): Path<String>,
) -> Result<Response, WebError> {
    set_disabled(st, auth, name, true).await
}

pub async fn enable_user(
    State(st): State<AppState>,
    Extension(auth): Extension<Auth>,
    Path(name): Path<String>,
) -> Result<Response, WebError> {
    set_disabled(st, auth, name, false).await
}

#[derive(Template)]
#[template(path = "admin_destinations.html")]
struct DestinationsPage {
    nav: Nav,
    destinations: Vec<crate::store::db::Destination>,
    message: String,
    error: bool,
}

fn destinations_page(st: &AppState, auth: &Auth, message: String, error: bool) -> Result<Response, WebError> {
    let status = if error { StatusCode::UNPROCESSABLE_ENTITY } else { StatusCode::OK };
    let destinations = st.db.destinations()?;
    Ok(html::render(status, &DestinationsPage { nav: Nav::new(auth, "destinations"), destinations, message, error }))
}

pub async fn destinations(State(st): State<AppState>, Extension(auth): Extension<Auth>) -> Result<Response, WebError> {
    blocking(move || destinations_page(&st, &auth, String::new(), false)).await
}

#[derive(Deserialize)]
pub struct DestinationForm {
    name: String,
    ae_title: String,
    host: String,
    port: String,
}

pub async fn add_destination(
    State(st): State<AppState>,
    Extension(auth): Extension<Auth>,
    Form(f): Form<DestinationForm>,
) -> Result<Response, WebError> {
    blocking(move || {
        let fail = |m: String| destinations_page(&st, &auth, m, true);
        let (name, ae, host) = (f.name.trim(), f.ae_title.trim(), f.host.trim());
        if name.is_empty() || name.len() > 64 {
            return fail("name: 1 to 64 characters".into());
        }
        if let Err(m) = crate::config::validate_ae_title(ae) {
            return fail(m);
        }
        if host.is_empty() || host.len() > 253 || !host.chars().all(|c| c.is_ascii_alphanumeric() || ".-:".contains(c))
        {
            return fail(format!("host {host:?}: an IP address or a host name"));
        }
        let Some(port) = f.port.trim().parse::<u16>().ok().filter(|p| *p > 0) else {
            return fail(format!("port {:?}: 1 to 65535", f.port));
        };
        if !st.db.add_destination(name, ae, host, port)? {
            return fail(format!("a destination named {name} exists already"));
        }
        tracing::info!(admin = %auth.name, destination = name, ae, host, port, "destination added");
        Ok(Redirect::to("/admin/destinations").into_response())
    })
    .await
}

pub async fn delete_destination(
    State(st): State<AppState>,
    Extension(auth): Extension<Auth>,
    Path(id): Path<i64>,
) -> Result<Response, WebError> {
    blocking(move || {
        if !st.db.delete_destination(id)? {
            return Err(WebError::not_found(format!("no destination {id}")));
        }
        tracing::info!(admin = %auth.name, destination = id, "destination removed");
        Ok(Redirect::to("/admin/destinations").into_response())
    })
    .await
}

/// C-ECHO to a destination; the page says whether it answered.
pub async fn verify_destination(
    State(st): State<AppState>,
    Extension(auth): Extension<Auth>,
    Path(id): Path<i64>,
) -> Result<Response, WebError> {
    blocking(move || {
        let d = st.db.destinations()?.into_iter().find(|d| d.id == id);
        let Some(d) = d else { return Err(WebError::not_found(format!("no destination {id}"))) };
        let r = crate::dicom::scu::echo(&st.ae_title, &d.ae_title, &d.host, d.port, std::time::Duration::from_secs(5));
        match r {
            Ok(t) => {
                destinations_page(&st, &auth, format!("{} answered C-ECHO in {} ms.", d.name, t.as_millis()), false)
            }
            Err(m) => destinations_page(&st, &auth, format!("{}: {m}", d.name), true),
        }
    })
    .await
}

#[derive(Template)]
#[template(path = "admin_jobs.html")]
struct JobsPage {
    nav: Nav,
    jobs: Vec<(crate::store::db::Job, String, String)>,
    counts: Vec<(String, i64)>,
    filter: String,
    can_retry: bool,
    message: String,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct JobsQuery {
    status: String,
    notice: String,
}

/// Pipeline jobs: counts by status, the latest 200 (or those of one status), a retry button on
/// failed ones. Study UIDs only: the jobs page shows no patient data.
pub async fn jobs(
    State(st): State<AppState>,
    Extension(auth): Extension<Auth>,
    axum::extract::Query(q): axum::extract::Query<JobsQuery>,
) -> Result<Response, WebError> {
    let status = match q.status.as_str() {
        "" => None,
        s @ ("queued" | "running" | "done" | "failed") => Some(s.to_string()),
        s => return Err(WebError::bad_request(format!("status {s:?}: queued, running, done or failed"))),
    };
    let (jobs, counts) = blocking(move || Ok((st.db.jobs(status.as_deref(), 200)?, st.db.job_counts()?))).await?;
    let jobs = jobs
        .into_iter()
        .map(|j| {
            let pct = format!("{:.0} %", j.progress * 100.0);
            let when = html::when(&j.updated_at);
            (j, pct, when)
        })
        .collect();
    let message = if q.notice == "retried" { "The job is queued again.".to_string() } else { String::new() };
    Ok(html::render(
        StatusCode::OK,
        &JobsPage {
            nav: Nav::new(&auth, "jobs"),
            jobs,
            counts,
            filter: q.status,
            can_retry: auth.role == Role::Admin,
            message,
        },
    ))
}

pub async fn retry_job(
    State(st): State<AppState>,
    Extension(auth): Extension<Auth>,
    Path(id): Path<i64>,
) -> Result<Response, WebError> {
    let ok = blocking(move || Ok(st.db.retry_job(id)?)).await?;
    if !ok {
        return Err(WebError {
            status: StatusCode::CONFLICT,
            message: format!("job {id} does not exist or has not failed"),
        });
    }
    tracing::info!(admin = %auth.name, job = id, "job retried");
    Ok(Redirect::to("/admin/jobs?notice=retried").into_response())
}

pub struct ModelRow {
    pub id: String,
    pub task: String,
    pub origin: String,
    pub active: bool,
    pub auc: String,
    pub sensitivity: String,
    pub specificity: String,
}

#[derive(Template)]
#[template(path = "admin_models.html")]
struct ModelsPage {
    nav: Nav,
    models: Vec<ModelRow>,
}

pub async fn models(State(st): State<AppState>, Extension(auth): Extension<Auth>) -> Result<Response, WebError> {
    let reg = Registry::new(&st.data_dir);
    let (entries, reg) = blocking(move || reg.all().map(|all| (all, reg)).map_err(WebError::internal)).await?;
    let models = entries
        .iter()
        .map(|e| ModelRow {
            id: e.card.id(),
            task: e.card.task.clone(),
            origin: e.origin(),
            active: reg.is_active(e),
            auc: format!("{:.3}", e.card.validation.auc),
            sensitivity: format!("{:.3}", e.card.validation.sensitivity),
            specificity: format!("{:.3}", e.card.validation.specificity),
        })
        .collect();
    Ok(html::render(StatusCode::OK, &ModelsPage { nav: Nav::new(&auth, "models"), models }))
}

#[derive(Template)]
#[template(path = "admin_model.html")]
struct ModelPage {
    nav: Nav,
    id: String,
    card: String,
    /// The ROC curve as an SVG document (plotters output: numbers and fixed labels only).
    roc_svg: String,
    roc_note: String,
}

/// The ROC curve of stored validation predictions as SVG, with the card's operating point.
pub fn roc_svg(preds: &[(f64, bool)], threshold: f64, auc: f64) -> Result<String, String> {
    use plotters::prelude::*;
    let (scores, labels): (Vec<f64>, Vec<bool>) = preds.iter().copied().unzip();
    let pts = crate::ml::metrics::roc_points(&scores, &labels);
    if pts.is_empty() {
        return Err("the stored predictions hold only one class".into());
    }
    let c = crate::ml::metrics::Confusion::at(&scores, &labels, threshold);
    let op = (1.0 - c.specificity(), c.sensitivity());
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (420, 420)).into_drawing_area();
        let e = |e: DrawingAreaErrorKind<std::io::Error>| e.to_string();
        root.fill(&RGBColor(21, 26, 32)).map_err(e)?;
        let fg = RGBColor(216, 222, 230);
        let mut chart = ChartBuilder::on(&root)
            .caption(format!("ROC, validation split (AUC {auc:.3})"), ("sans-serif", 16).into_font().color(&fg))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(44)
            .build_cartesian_2d(0.0..1.0, 0.0..1.0)
            .map_err(e)?;
        chart
            .configure_mesh()
            .x_desc("false-positive rate (1 - specificity)")
            .y_desc("true-positive rate (sensitivity)")
            .axis_style(fg)
            .label_style(("sans-serif", 12).into_font().color(&fg))
            .light_line_style(RGBColor(42, 51, 61))
            .bold_line_style(RGBColor(42, 51, 61))
            .draw()
            .map_err(e)?;
        chart.draw_series(LineSeries::new([(0.0, 0.0), (1.0, 1.0)], RGBColor(90, 100, 110))).map_err(e)?;
        chart.draw_series(LineSeries::new(pts, RGBColor(90, 169, 255).stroke_width(2))).map_err(e)?;
        chart.draw_series([Circle::new(op, 5, RGBColor(255, 179, 71).filled())]).map_err(e)?;
        root.present().map_err(e)?;
    }
    Ok(svg)
}

pub async fn model(
    State(st): State<AppState>,
    Extension(auth): Extension<Auth>,
    Path(id): Path<String>,
) -> Result<Response, WebError> {
    let reg = Registry::new(&st.data_dir);
    let entry = blocking(move || reg.all().map_err(WebError::internal)).await?;
    let Some(e) = entry.into_iter().find(|e| e.card.id() == id) else {
        return Err(WebError::not_found(format!("no model {id}")));
    };
    let (roc_svg, roc_note) = match e.predictions().map_err(WebError::internal)? {
        Some(p) => match roc_svg(&p, e.card.threshold, e.card.validation.auc) {
            Ok(svg) => (
                svg,
                format!(
                    "{} validation predictions; the dot is the operating point at threshold {:.3}.",
                    p.len(),
                    e.card.threshold
                ),
            ),
            Err(m) => (String::new(), m),
        },
        None => (String::new(), "No validation predictions are stored with this model.".into()),
    };
    Ok(html::render(
        StatusCode::OK,
        &ModelPage { nav: Nav::new(&auth, "models"), id, card: e.card.to_toml(), roc_svg, roc_note },
    ))
}

#[derive(Serialize)]
pub struct SystemInfo {
    version: &'static str,
    sqlite: &'static str,
    data_dir: String,
    free_disk_bytes: u64,
    database_bytes: u64,
    compute: crate::ml::device::DeviceInfo,
    dicom_listener: bool,
}

fn system_info(st: &AppState) -> Result<SystemInfo, WebError> {
    let pref = st.ml_device.parse().unwrap_or_default();
    let compute = crate::ml::device::select(pref).map_err(WebError::internal)?.info;
    Ok(SystemInfo {
        version: env!("CARGO_PKG_VERSION"),
        sqlite: rusqlite::version(),
        data_dir: st.data_dir.display().to_string(),
        free_disk_bytes: crate::store::free_bytes(&st.data_dir).unwrap_or(0),
        database_bytes: st.db.size_bytes(),
        compute,
        dicom_listener: st.dicom_up.load(std::sync::atomic::Ordering::SeqCst),
    })
}

#[derive(Template)]
#[template(path = "admin_system.html")]
struct SystemPage {
    nav: Nav,
    i: SystemInfo,
    free: String,
    db: String,
}

fn human(bytes: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u < units.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    format!("{v:.1} {}", units[u])
}

pub async fn system(State(st): State<AppState>, Extension(auth): Extension<Auth>) -> Result<Response, WebError> {
    let i = blocking(move || system_info(&st)).await?;
    let (free, db) = (human(i.free_disk_bytes), human(i.database_bytes));
    Ok(html::render(StatusCode::OK, &SystemPage { nav: Nav::new(&auth, "system"), i, free, db }))
}

pub async fn system_json(State(st): State<AppState>) -> Result<Json<SystemInfo>, WebError> {
    Ok(Json(blocking(move || system_info(&st)).await?))
}

#[cfg(test)]
mod tests {
    #[test]
    fn roc_svg_draws_the_curve() {
        let preds = [(0.9, true), (0.7, true), (0.6, false), (0.2, false), (0.4, true)];
        let svg = super::roc_svg(&preds, 0.5, 0.833).unwrap();
        assert!(svg.starts_with("<svg") && svg.contains("polyline") && svg.contains("AUC 0.833"), "{}", &svg[..200]);
        assert!(super::roc_svg(&[(0.5, true)], 0.5, 0.5).is_err());
    }

    #[test]
    fn user_names_and_sizes() {
        assert!(super::check_user_name("dr.smith-2").is_ok());
        assert!(super::check_user_name("").is_err());
        assert!(super::check_user_name("a b").is_err());
        assert!(super::check_user_name("<script>").is_err());
        assert_eq!(super::human(1536), "1.5 KiB");
        assert_eq!(super::human(5), "5.0 B");
    }
}
