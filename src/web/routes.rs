//! THE route table: every route of the web server, its kind (HTML page, API, public) and the
//! roles allowed on it. The router is built from this table alone, so a route cannot exist
//! without a role decision, and the authorization test walks the same table.

use axum::http::Method;
use axum::routing::{get, post, MethodRouter};

use super::{admin, auth, pages, pixels, rendered, AppState};
use crate::security::rbac::{self, Role};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A page: no session means a redirect to /login.
    Html,
    /// JSON or binary for scripts: no session means 401.
    Api,
    /// No session needed (login form, health, static assets).
    Public,
}

#[derive(Debug, Clone, Copy)]
pub struct RouteSpec {
    pub method: &'static str,
    pub path: &'static str,
    pub kind: Kind,
    pub roles: &'static [Role],
}

impl RouteSpec {
    pub fn method(&self) -> Method {
        self.method.parse().expect("route methods are valid")
    }
}

const fn r(method: &'static str, path: &'static str, kind: Kind, roles: &'static [Role]) -> RouteSpec {
    RouteSpec { method, path, kind, roles }
}

use Kind::{Api, Html, Public};

/// Every route with its handler.
pub fn table() -> Vec<(RouteSpec, MethodRouter<AppState>)> {
    let frame = "/studies/{study}/series/{series}/instances/{sop}/frames/{n}";
    // Leaked once per router: the paths are built at start-up and live as long as the process.
    let leak = |s: String| -> &'static str { Box::leak(s.into_boxed_str()) };
    vec![
        (r("GET", "/healthz", Public, &[]), get(super::healthz)),
        (r("GET", "/static/{*file}", Public, &[]), get(super::assets::asset)),
        (r("GET", "/login", Public, &[]), get(auth::login_form)),
        (r("POST", "/login", Public, &[]), post(auth::login)),
        (r("POST", "/logout", Html, rbac::ANY), post(auth::logout)),
        (r("GET", "/account/password", Html, rbac::ANY), get(auth::password_form)),
        (r("POST", "/account/password", Html, rbac::ANY), post(auth::change_password)),
        (r("GET", "/", Html, rbac::CLINICAL), get(pages::worklist)),
        (r("GET", "/worklist/rows", Html, rbac::CLINICAL), get(pages::worklist_rows)),
        (r("GET", "/api/worklist", Api, rbac::CLINICAL), get(pages::worklist_json)),
        (r("GET", "/studies/{study}", Html, rbac::CLINICAL), get(pages::study)),
        (r("GET", "/studies/{study}/tags", Html, rbac::CLINICAL), get(pages::tags)),
        (r("POST", "/studies/{study}/report", Html, rbac::READERS), post(pages::save_report)),
        (r("POST", "/studies/{study}/report/{id}/sign", Html, rbac::READERS), post(pages::sign_report)),
        (r("POST", "/studies/{study}/report/amend", Html, rbac::READERS), post(pages::amend_report)),
        (r("POST", "/studies/{study}/findings/{id}/feedback", Html, rbac::READERS), post(pages::feedback)),
        (r("GET", "/api/studies/{study}/findings/{id}/saliency", Api, rbac::CLINICAL), get(pixels::saliency)),
        (r("GET", leak(format!("{frame}/rendered")), Api, rbac::CLINICAL), get(rendered::rendered)),
        (r("GET", leak(format!("{frame}/pixels")), Api, rbac::CLINICAL), get(pixels::pixels)),
        (r("GET", "/admin/users", Html, rbac::ADMIN), get(admin::users)),
        (r("POST", "/admin/users", Html, rbac::ADMIN), post(admin::add_user)),
        (r("POST", "/admin/users/{name}/disable", Html, rbac::ADMIN), post(admin::disable_user)),
        (r("POST", "/admin/users/{name}/enable", Html, rbac::ADMIN), post(admin::enable_user)),
        (r("GET", "/admin/destinations", Html, rbac::ADMIN), get(admin::destinations)),
        (r("POST", "/admin/destinations", Html, rbac::ADMIN), post(admin::add_destination)),
        (r("POST", "/admin/destinations/{id}/delete", Html, rbac::ADMIN), post(admin::delete_destination)),
        (r("POST", "/admin/destinations/{id}/verify", Html, rbac::ADMIN), post(admin::verify_destination)),
        (r("GET", "/admin/jobs", Html, rbac::OVERSIGHT), get(admin::jobs)),
        (r("POST", "/admin/jobs/{id}/retry", Html, rbac::ADMIN), post(admin::retry_job)),
        (r("GET", "/admin/models", Html, rbac::OVERSIGHT), get(admin::models)),
        (r("GET", "/admin/models/{id}", Html, rbac::OVERSIGHT), get(admin::model)),
        (r("GET", "/admin/system", Html, rbac::OVERSIGHT), get(admin::system)),
        (r("GET", "/api/system", Api, rbac::OVERSIGHT), get(admin::system_json)),
    ]
}

/// The specs alone (for tests and documentation).
pub fn specs() -> Vec<RouteSpec> {
    table().into_iter().map(|(s, _)| s).collect()
}
