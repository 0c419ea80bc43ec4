//! Clinical pages: the worklist (full page, live-refreshed rows, JSON), the study page
//! (header, series, viewer, tags, AI findings, report), and the report and feedback actions.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Extension, Form, Json};
use serde::{Deserialize, Serialize};

use super::auth::Auth;
use super::html::{self, Nav};
use super::{blocking, AppState, WebError};
use crate::pipeline::draft;
use crate::security::rbac::Role;
use crate::store::db::{Finding, ReportRefusal, Sort, StudyDetail, WorklistQuery, WorklistRow};

/// Worklist filters, as the form and the query string carry them.
#[derive(Debug, Default, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct WorklistParams {
    pub from: String,
    pub to: String,
    pub modality: String,
    pub status: String,
    pub priority: String,
    pub q: String,
    pub sort: String,
    pub dir: String,
    pub page: Option<u64>,
}

/// `YYYY-MM-DD` (a date input) or `YYYYMMDD` as DICOM DA; empty is no filter.
fn parse_date(s: &str, what: &str) -> Result<Option<String>, String> {
    let d: String = s.trim().chars().filter(|c| *c != '-').collect();
    if d.is_empty() {
        return Ok(None);
    }
    if d.len() != 8 || !d.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("{what} date {s:?}: use YYYY-MM-DD"));
    }
    Ok(Some(d))
}

impl WorklistParams {
    fn query(&self, st: &AppState) -> Result<WorklistQuery, WebError> {
        let bad = |m: String| WebError::bad_request(m);
        let page_size = u64::from(st.web.worklist_page_size);
        let status = match self.status.trim() {
            "" => None,
            s @ ("pending" | "running" | "done" | "failed") => Some(s.to_string()),
            s => return Err(bad(format!("status {s:?}: pending, running, done or failed"))),
        };
        let min_priority = match self.priority.trim() {
            "" => None,
            p => Some(
                p.parse::<i64>()
                    .ok()
                    .filter(|p| (0..=3).contains(p))
                    .ok_or_else(|| bad(format!("priority {p:?}: 0 to 3")))?,
            ),
        };
        let modality = Some(self.modality.trim().to_ascii_uppercase()).filter(|m| !m.is_empty());
        if modality.as_ref().is_some_and(|m| m.len() > 16 || !m.bytes().all(|b| b.is_ascii_alphanumeric())) {
            return Err(bad("modality: letters and digits, for example CT".into()));
        }
        let sort = match self.sort.as_str() {
            "" | "received" => Sort::Received,
            "priority" => Sort::Priority,
            "date" => Sort::StudyDate,
            "patient" => Sort::Patient,
            s => return Err(bad(format!("sort {s:?}: received, priority, date or patient"))),
        };
        let study_uids = if self.q.trim().is_empty() { None } else { Some(st.search.search(&self.q, 5000)?) };
        Ok(WorklistQuery {
            date_from: parse_date(&self.from, "from").map_err(bad)?,
            date_to: parse_date(&self.to, "to").map_err(bad)?,
            modality,
            status,
            min_priority,
            study_uids,
            sort,
            descending: self.dir != "asc",
            offset: self.page.unwrap_or(1).saturating_sub(1).saturating_mul(page_size),
            limit: page_size,
        })
    }

    /// This query string with another page or sort.
    fn with(&self, page: Option<u64>, sort: Option<&str>) -> String {
        let mut p = self.clone();
        if let Some(s) = sort {
            p.dir = if p.sort == s && p.dir != "asc" { "asc".into() } else { "desc".into() };
            p.sort = s.into();
            p.page = None;
        } else {
            p.page = page;
        }
        serde_urlencoded::to_string(&p).unwrap_or_default()
    }
}

pub struct RowView {
    pub uid: String,
    pub patient: String,
    pub patient_id: String,
    pub accession: String,
    pub modality: String,
    pub date: String,
    pub description: String,
    pub images: i64,
    pub status: String,
    pub priority: i64,
    pub priority_label: &'static str,
    pub priority_class: &'static str,
    pub received: String,
    pub report: String,
}

impl From<WorklistRow> for RowView {
    fn from(r: WorklistRow) -> RowView {
        let (priority_label, priority_class) = html::priority(r.ai_priority);
        RowView {
            patient: html::pn(&r.patient_name),
            date: html::da(&r.study_date),
            received: html::when(&r.received_at),
            modality: r.modalities.replace(',', ", "),
            uid: r.study_uid,
            patient_id: r.patient_id,
            accession: r.accession,
            description: r.description,
            images: r.images,
            status: r.ai_status,
            priority: r.ai_priority,
            priority_label,
            priority_class,
            report: r.report_status,
        }
    }
}

pub struct RowsPart {
    pub rows: Vec<RowView>,
    pub total: u64,
    pub page: u64,
    pub pages: u64,
    pub prev: Option<String>,
    pub next: Option<String>,
    pub sort_links: [(String, &'static str, &'static str); 4],
    pub query: String,
    pub refresh: u32,
    pub error: String,
}

fn rows_part(st: &AppState, p: &WorklistParams) -> Result<RowsPart, WebError> {
    let sort_links = [
        (p.with(None, Some("patient")), "patient", "Patient"),
        (p.with(None, Some("date")), "date", "Study date"),
        (p.with(None, Some("priority")), "priority", "AI priority"),
        (p.with(None, Some("received")), "received", "Received"),
    ];
    let mut part = RowsPart {
        rows: Vec::new(),
        total: 0,
        page: 1,
        pages: 1,
        prev: None,
        next: None,
        sort_links,
        query: serde_urlencoded::to_string(p).unwrap_or_default(),
        refresh: st.web.worklist_refresh_seconds,
        error: String::new(),
    };
    let q = match p.query(st) {
        Ok(q) => q,
        Err(e) if e.status == StatusCode::BAD_REQUEST => {
            part.error = e.message;
            return Ok(part);
        }
        Err(e) => return Err(e),
    };
    let (rows, total) = st.db.worklist(&q)?;
    let size = u64::from(st.web.worklist_page_size);
    part.total = total;
    part.pages = total.div_ceil(size).max(1);
    part.page = q.offset / size + 1;
    part.prev = (part.page > 1).then(|| p.with(Some(part.page - 1), None));
    part.next = (part.page < part.pages).then(|| p.with(Some(part.page + 1), None));
    part.rows = rows.into_iter().map(RowView::from).collect();
    Ok(part)
}

#[derive(Template)]
#[template(path = "worklist.html")]
struct WorklistPage {
    nav: Nav,
    f: WorklistParams,
    part: RowsPart,
}

#[derive(Template)]
#[template(path = "worklist_rows.html")]
struct WorklistRows {
    part: RowsPart,
}

pub async fn worklist(
    State(st): State<AppState>,
    Extension(auth): Extension<Auth>,
    Query(p): Query<WorklistParams>,
) -> Result<Response, WebError> {
    let f = p.clone();
    let part = blocking(move || rows_part(&st, &p)).await?;
    Ok(html::render(StatusCode::OK, &WorklistPage { nav: Nav::new(&auth, "worklist"), f, part }))
}

pub async fn worklist_rows(State(st): State<AppState>, Query(p): Query<WorklistParams>) -> Result<Response, WebError> {
    let part = blocking(move || rows_part(&st, &p)).await?;
    Ok(html::render(StatusCode::OK, &WorklistRows { part }))
}

#[derive(Serialize)]
pub struct WorklistJson {
    total: u64,
    offset: u64,
    studies: Vec<WorklistRow>,
}

pub async fn worklist_json(
    State(st): State<AppState>,
    Query(p): Query<WorklistParams>,
) -> Result<Json<WorklistJson>, WebError> {
    blocking(move || {
        let q = p.query(&st)?;
        let (studies, total) = st.db.worklist(&q)?;
        Ok(Json(WorklistJson { total, offset: q.offset, studies }))
    })
    .await
}

pub struct FindingView {
    pub id: i64,
    pub label: String,
    pub likelihood: &'static str,
    pub probability: String,
    pub threshold: String,
    pub flagged: bool,
    pub model: String,
    pub version: String,
    pub model_link: String,
    pub created: String,
    pub has_saliency: bool,
    pub feedback: Vec<(String, bool, String, String)>,
}

impl From<&Finding> for FindingView {
    fn from(finding: &Finding) -> FindingView {
        let f = &finding.result;
        FindingView {
            id: finding.id,
            label: f.label.clone(),
            likelihood: draft::likelihood(f.probability),
            probability: format!("{:.2}", f.probability),
            threshold: format!("{:.2}", f.threshold),
            flagged: f.probability >= f.threshold,
            model: f.model_name.clone(),
            version: f.model_version.clone(),
            model_link: format!("/admin/models/{}-{}", f.model_name, f.model_version),
            created: html::when(&finding.created_at),
            has_saliency: f.saliency.as_ref().is_some_and(|s| !s.is_empty()),
            feedback: finding
                .feedback
                .iter()
                .map(|b| (b.user.clone(), b.agrees, b.comment.clone(), html::when(&b.created_at)))
                .collect(),
        }
    }
}

pub struct ReportView {
    pub id: i64,
    pub version: i64,
    pub body: String,
    pub author: String,
    pub updated: String,
    pub signed: bool,
    pub signed_by: String,
    pub signed_at: String,
    pub amends: bool,
    pub revisions: i64,
}

pub struct SeriesView {
    pub uid: String,
    pub label: String,
    pub images: usize,
    pub thumb: String,
    pub first_sop: String,
    pub enhanced: bool,
}

#[derive(Template)]
#[template(path = "study.html")]
struct StudyPage {
    nav: Nav,
    s: StudyDetail,
    patient: String,
    birth_date: String,
    study_date: String,
    priority_label: &'static str,
    priority_class: &'static str,
    series: Vec<SeriesView>,
    viewer_json: String,
    findings: Vec<FindingView>,
    current: Option<ReportView>,
    history: Vec<ReportView>,
    draft_text: String,
    can_write: bool,
    notice: String,
}

#[derive(Serialize)]
struct ViewerSeries<'a> {
    uid: &'a str,
    label: String,
    modality: &'a str,
    instances: Vec<(&'a str, i64)>,
    enhanced: Option<(String, Vec<(&'a str, i64)>)>,
}

#[derive(Serialize)]
struct ViewerFinding<'a> {
    id: i64,
    sop: &'a str,
    label: &'a str,
    saliency: bool,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct StudyQuery {
    notice: String,
}

pub async fn study(
    State(st): State<AppState>,
    Extension(auth): Extension<Auth>,
    Path(uid): Path<String>,
    Query(sq): Query<StudyQuery>,
) -> Result<Response, WebError> {
    let db = st.db.clone();
    let u = uid.clone();
    let (detail, findings, reports) = blocking(move || Ok((db.study(&u)?, db.findings(&u)?, db.reports(&u)?))).await?;
    let Some(s) = detail else {
        return Ok(html::error_page(StatusCode::NOT_FOUND, &format!("No study {uid} is stored.")));
    };
    let series: Vec<SeriesView> = s
        .series
        .iter()
        .map(|se| {
            let mid = se.instances.get(se.instances.len() / 2);
            SeriesView {
                uid: se.series_uid.clone(),
                label: series_label(se.number, &se.modality, &se.description),
                images: se.instances.len(),
                thumb: mid
                    .map(|i| {
                        format!(
                            "/studies/{}/series/{}/instances/{}/frames/1/rendered?size=96",
                            s.study_uid, se.series_uid, i.sop_uid
                        )
                    })
                    .unwrap_or_default(),
                first_sop: se.instances.first().map(|i| i.sop_uid.clone()).unwrap_or_default(),
                enhanced: se.enhanced.is_some(),
            }
        })
        .collect();
    let viewer = serde_json::json!({
        "study": s.study_uid,
        "series": s.series.iter().map(|se| ViewerSeries {
            uid: &se.series_uid,
            label: series_label(se.number, &se.modality, &se.description),
            modality: &se.modality,
            instances: se.instances.iter().map(|i| (i.sop_uid.as_str(), i.frames.max(1))).collect(),
            enhanced: se.enhanced.as_ref().map(|e| {
                (e.series_uid.clone(), e.instances.iter().map(|i| (i.sop_uid.as_str(), i.frames.max(1))).collect())
            }),
        }).collect::<Vec<_>>(),
        "findings": findings.iter().map(|f| ViewerFinding {
            id: f.id,
            sop: &f.result.sop_uid,
            label: &f.result.label,
            saliency: f.result.saliency.as_ref().is_some_and(|g| !g.is_empty()),
        }).collect::<Vec<_>>(),
    });
    let to_view = |r: &crate::store::db::Report| ReportView {
        id: r.id,
        version: r.version,
        body: r.body.clone(),
        author: r.author.clone(),
        updated: html::when(&r.updated_at),
        signed: r.is_signed(),
        signed_by: r.signed_by.clone().unwrap_or_default(),
        signed_at: r.signed_at.as_deref().map(html::when).unwrap_or_default(),
        amends: r.amends.is_some(),
        revisions: r.revisions,
    };
    let current = reports.first().map(to_view);
    let history = reports.iter().skip(1).map(to_view).collect();
    let draft_text = match &current {
        Some(r) => r.body.clone(),
        None => draft::draft(&s, &findings),
    };
    let (priority_label, priority_class) = html::priority(s.ai_priority);
    let notice = match sq.notice.as_str() {
        "saved" => "Draft saved.",
        "signed" => "Report signed. It can no longer be changed; amend it to correct it.",
        "amending" => "Amendment started from the signed text.",
        "feedback" => "Your assessment of the AI finding was recorded.",
        _ => "",
    }
    .to_string();
    let page = StudyPage {
        nav: Nav::new(&auth, "worklist"),
        patient: html::pn(&s.patient_name),
        birth_date: html::da(&s.birth_date),
        study_date: html::da(&s.study_date),
        priority_label,
        priority_class,
        series,
        viewer_json: viewer.to_string(),
        findings: findings.iter().map(FindingView::from).collect(),
        current,
        history,
        draft_text,
        can_write: auth.role == Role::Radiologist,
        notice,
        s,
    };
    Ok(html::render(StatusCode::OK, &page))
}

fn series_label(number: Option<i64>, modality: &str, description: &str) -> String {
    let mut l = number.map(|n| format!("#{n} ")).unwrap_or_default();
    l.push_str(modality);
    if !description.is_empty() {
        l.push(' ');
        l.push_str(description);
    }
    l
}

#[derive(Deserialize)]
pub struct TagsQuery {
    series: String,
    sop: String,
}

#[derive(Template)]
#[template(path = "tags.html")]
struct TagsPart {
    sop: String,
    dump: String,
}

/// The DICOM attributes of one instance (an htmx fragment).
pub async fn tags(
    State(st): State<AppState>,
    Path(study): Path<String>,
    Query(q): Query<TagsQuery>,
) -> Result<Response, WebError> {
    blocking(move || {
        let path = st
            .db
            .instance_file(&study, &q.series, &q.sop)?
            .ok_or_else(|| WebError::not_found(format!("no instance {} in this study", q.sop)))?;
        let obj = crate::preprocess::open(&path).map_err(|e| WebError::unprocessable(e.to_string()))?;
        Ok(html::render(StatusCode::OK, &TagsPart { sop: q.sop, dump: crate::dicom::dump::dump(&obj) }))
    })
    .await
}

fn study_url(uid: &str, notice: &str) -> String {
    format!("/studies/{uid}?notice={notice}#report")
}

fn refusal(r: ReportRefusal) -> WebError {
    let m = match r {
        ReportRefusal::NoSuchStudy => return WebError::not_found("no such study".into()),
        ReportRefusal::Signed => "This report is signed and cannot change. Amend it to correct it.",
        ReportRefusal::Stale => "Someone changed this report meanwhile. Reload the page.",
        ReportRefusal::NoReport => "There is no report to sign or amend yet. Save a draft first.",
        ReportRefusal::NotSigned => "Only a signed report can be amended; edit the draft instead.",
    };
    WebError { status: StatusCode::CONFLICT, message: m.into() }
}

/// Longest report text accepted.
const MAX_REPORT: usize = 100_000;

#[derive(Deserialize)]
pub struct ReportForm {
    body: String,
}

pub async fn save_report(
    State(st): State<AppState>,
    Extension(auth): Extension<Auth>,
    Path(uid): Path<String>,
    Form(f): Form<ReportForm>,
) -> Result<Response, WebError> {
    if f.body.len() > MAX_REPORT {
        return Err(WebError::bad_request(format!("the report is longer than {MAX_REPORT} characters")));
    }
    if f.body.trim().is_empty() {
        return Err(WebError::bad_request("the report is empty".into()));
    }
    let u = uid.clone();
    let st2 = st.clone();
    blocking(move || st2.db.save_draft(&u, auth.user_id, &f.body)?.map_err(refusal)).await?;
    st.search_changed.notify_one();
    Ok(Redirect::to(&study_url(&uid, "saved")).into_response())
}

#[derive(Deserialize)]
pub struct SignForm {
    #[serde(default)]
    confirm: String,
}

pub async fn sign_report(
    State(st): State<AppState>,
    Extension(auth): Extension<Auth>,
    Path((uid, id)): Path<(String, i64)>,
    Form(f): Form<SignForm>,
) -> Result<Response, WebError> {
    if f.confirm != "yes" {
        return Err(WebError::bad_request(
            "Confirm that you reviewed the images and every AI statement before signing.".into(),
        ));
    }
    let u = uid.clone();
    let name = auth.name.clone();
    blocking(move || st.db.sign_report(&u, id, auth.user_id)?.map_err(refusal)).await?;
    tracing::info!(study = %uid, report = id, user = %name, "report signed");
    Ok(Redirect::to(&study_url(&uid, "signed")).into_response())
}

pub async fn amend_report(
    State(st): State<AppState>,
    Extension(auth): Extension<Auth>,
    Path(uid): Path<String>,
) -> Result<Response, WebError> {
    let u = uid.clone();
    blocking(move || st.db.amend_report(&u, auth.user_id)?.map_err(refusal)).await?;
    Ok(Redirect::to(&study_url(&uid, "amending")).into_response())
}

#[derive(Deserialize)]
pub struct FeedbackForm {
    verdict: String,
    #[serde(default)]
    comment: String,
}

pub async fn feedback(
    State(st): State<AppState>,
    Extension(auth): Extension<Auth>,
    Path((uid, id)): Path<(String, i64)>,
    Form(f): Form<FeedbackForm>,
) -> Result<Response, WebError> {
    let agrees = match f.verdict.as_str() {
        "agree" => true,
        "disagree" => false,
        v => return Err(WebError::bad_request(format!("verdict {v:?}: agree or disagree"))),
    };
    if f.comment.len() > 4000 {
        return Err(WebError::bad_request("the comment is longer than 4000 characters".into()));
    }
    let u = uid.clone();
    let found = blocking(move || Ok(st.db.add_feedback(&u, id, auth.user_id, agrees, f.comment.trim())?)).await?;
    if !found {
        return Err(WebError::not_found("no such finding in this study".into()));
    }
    Ok(Redirect::to(&format!("/studies/{uid}?notice=feedback#findings")).into_response())
}
