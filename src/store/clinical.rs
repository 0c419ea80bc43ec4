//! SQL for what staff read and write about studies: the worklist, a study's series and
//! instances, AI state and findings, feedback on findings, and reports.

use rusqlite::{params, params_from_iter, Connection, OptionalExtension};
use serde::Serialize;

use super::index::now_rfc3339;

/// Worklist sort orders.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Sort {
    #[default]
    Received,
    Priority,
    StudyDate,
    Patient,
}

/// Filters and page of a worklist query. Dates are DICOM DA (`YYYYMMDD`).
#[derive(Debug, Clone, Default)]
pub struct WorklistQuery {
    pub date_from: Option<String>,
    pub date_to: Option<String>,
    pub modality: Option<String>,
    pub status: Option<String>,
    pub min_priority: Option<i64>,
    /// Only these studies (from the text search), in any order.
    pub study_uids: Option<Vec<String>>,
    pub sort: Sort,
    pub descending: bool,
    pub offset: u64,
    pub limit: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WorklistRow {
    pub study_uid: String,
    pub patient_name: String,
    pub patient_id: String,
    pub accession: String,
    pub modalities: String,
    pub study_date: String,
    pub study_time: String,
    pub description: String,
    pub images: i64,
    pub ai_status: String,
    pub ai_priority: i64,
    pub received_at: String,
    pub report_status: String,
}

/// One page of the worklist and the number of studies matching the filters.
pub fn worklist(c: &Connection, q: &WorklistQuery) -> rusqlite::Result<(Vec<WorklistRow>, u64)> {
    let mut wh: Vec<String> = Vec::new();
    let mut args: Vec<rusqlite::types::Value> = Vec::new();
    let arg = |v: String, args: &mut Vec<rusqlite::types::Value>| {
        args.push(v.into());
        format!("?{}", args.len())
    };
    if let Some(d) = &q.date_from {
        let a = arg(d.clone(), &mut args);
        wh.push(format!("s.study_date >= {a}"));
    }
    if let Some(d) = &q.date_to {
        let a = arg(d.clone(), &mut args);
        wh.push(format!("s.study_date <> '' AND s.study_date <= {a}"));
    }
    if let Some(m) = &q.modality {
        let a = arg(m.clone(), &mut args);
        wh.push(format!("EXISTS (SELECT 1 FROM series se WHERE se.study_fk = s.id AND se.modality = {a})"));
    }
    if let Some(st) = &q.status {
        let a = arg(st.clone(), &mut args);
        wh.push(format!("coalesce(ai.status, 'pending') = {a}"));
    }
    if let Some(p) = q.min_priority {
        args.push(p.into());
        wh.push(format!("coalesce(ai.priority, 0) >= ?{}", args.len()));
    }
    if let Some(uids) = &q.study_uids {
        if uids.is_empty() {
            return Ok((Vec::new(), 0));
        }
        let list: Vec<String> = uids.iter().map(|u| arg(u.clone(), &mut args)).collect();
        wh.push(format!("s.study_uid IN ({})", list.join(", ")));
    }
    let where_sql = if wh.is_empty() { String::new() } else { format!("WHERE {}", wh.join(" AND ")) };
    let dir = if q.descending { "DESC" } else { "ASC" };
    let order = match q.sort {
        Sort::Received => format!("s.created_at {dir}, s.id {dir}"),
        Sort::Priority => format!("coalesce(ai.priority, 0) {dir}, s.created_at DESC"),
        Sort::StudyDate => format!("s.study_date {dir}, s.study_time {dir}, s.id"),
        Sort::Patient => format!("p.name {dir}, s.id"),
    };
    let total: i64 = c.query_row(
        &format!(
            "SELECT count(*) FROM studies s JOIN patients p ON p.id = s.patient_fk
             LEFT JOIN study_ai ai ON ai.study_fk = s.id {where_sql}"
        ),
        params_from_iter(args.iter()),
        |r| r.get(0),
    )?;
    let n = args.len();
    args.push((q.limit.min(1000) as i64).into());
    args.push((q.offset as i64).into());
    // The page is chosen first on cheap columns; the per-study counts run for its rows only.
    let sql = format!(
        "WITH page AS MATERIALIZED (
             SELECT s.id
             FROM studies s JOIN patients p ON p.id = s.patient_fk LEFT JOIN study_ai ai ON ai.study_fk = s.id
             {where_sql} ORDER BY {order} LIMIT ?{} OFFSET ?{})
         SELECT s.study_uid, p.name, p.patient_id, s.accession_number,
                (SELECT group_concat(DISTINCT se.modality) FROM series se WHERE se.study_fk = s.id),
                s.study_date, s.study_time, s.description,
                (SELECT count(*) FROM instances i JOIN series se ON se.id = i.series_fk WHERE se.study_fk = s.id),
                coalesce(ai.status, 'pending'), coalesce(ai.priority, 0), s.created_at,
                coalesce((SELECT CASE WHEN r.signed_at IS NULL THEN 'draft' ELSE 'signed' END
                          FROM reports r WHERE r.study_fk = s.id ORDER BY r.version DESC LIMIT 1), '')
         FROM page JOIN studies s ON s.id = page.id JOIN patients p ON p.id = s.patient_fk
         LEFT JOIN study_ai ai ON ai.study_fk = s.id
         ORDER BY {order}",
        n + 1,
        n + 2
    );
    let mut stmt = c.prepare_cached(&sql)?;
    let rows = stmt.query_map(params_from_iter(args.iter()), |r| {
        Ok(WorklistRow {
            study_uid: r.get(0)?,
            patient_name: r.get(1)?,
            patient_id: r.get(2)?,
            accession: r.get(3)?,
            modalities: r.get::<_, Option<String>>(4)?.unwrap_or_default(),
            study_date: r.get(5)?,
            study_time: r.get(6)?,
            description: r.get(7)?,
            images: r.get(8)?,
            ai_status: r.get(9)?,
            ai_priority: r.get(10)?,
            received_at: r.get(11)?,
            report_status: r.get(12)?,
        })
    })?;
    Ok((rows.collect::<rusqlite::Result<_>>()?, total as u64))
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InstanceRef {
    pub sop_uid: String,
    pub number: Option<i64>,
    pub frames: i64,
    pub rows: Option<i64>,
    pub columns: Option<i64>,
    pub sop_class: String,
    pub transfer_syntax: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SeriesDetail {
    pub series_uid: String,
    pub modality: String,
    pub number: Option<i64>,
    pub description: String,
    pub body_part: String,
    pub instances: Vec<InstanceRef>,
    /// The AI-enhanced series derived from this one, when there is one.
    pub enhanced: Option<Box<SeriesDetail>>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StudyDetail {
    pub study_uid: String,
    pub patient_name: String,
    pub patient_id: String,
    pub birth_date: String,
    pub sex: String,
    pub accession: String,
    pub study_date: String,
    pub study_time: String,
    pub description: String,
    pub referring_physician: String,
    pub ai_status: String,
    pub ai_priority: i64,
    pub ai_detail: String,
    /// Original series; derived ones hang off their original.
    pub series: Vec<SeriesDetail>,
}

fn series_detail(c: &Connection, id: i64) -> rusqlite::Result<SeriesDetail> {
    let (series_uid, modality, number, description, body_part): (String, String, Option<i64>, String, String) = c
        .prepare_cached("SELECT series_uid, modality, series_number, description, body_part FROM series WHERE id = ?1")?
        .query_row(params![id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)))?;
    let mut stmt = c.prepare_cached(
        "SELECT sop_uid, instance_number, coalesce(frames, 1), rows, columns, sop_class, transfer_syntax
         FROM instances WHERE series_fk = ?1 ORDER BY instance_number IS NULL, instance_number, id",
    )?;
    let instances = stmt
        .query_map(params![id], |r| {
            Ok(InstanceRef {
                sop_uid: r.get(0)?,
                number: r.get(1)?,
                frames: r.get(2)?,
                rows: r.get(3)?,
                columns: r.get(4)?,
                sop_class: r.get(5)?,
                transfer_syntax: r.get(6)?,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(SeriesDetail { series_uid, modality, number, description, body_part, instances, enhanced: None })
}

pub fn study(c: &Connection, study_uid: &str) -> rusqlite::Result<Option<StudyDetail>> {
    let head = c
        .prepare_cached(
            "SELECT s.id, s.study_uid, p.name, p.patient_id, p.birth_date, p.sex, s.accession_number,
                    s.study_date, s.study_time, s.description, s.referring_physician,
                    coalesce(ai.status, 'pending'), coalesce(ai.priority, 0), coalesce(ai.detail, '')
             FROM studies s JOIN patients p ON p.id = s.patient_fk LEFT JOIN study_ai ai ON ai.study_fk = s.id
             WHERE s.study_uid = ?1",
        )?
        .query_row(params![study_uid], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                StudyDetail {
                    study_uid: r.get(1)?,
                    patient_name: r.get(2)?,
                    patient_id: r.get(3)?,
                    birth_date: r.get(4)?,
                    sex: r.get(5)?,
                    accession: r.get(6)?,
                    study_date: r.get(7)?,
                    study_time: r.get(8)?,
                    description: r.get(9)?,
                    referring_physician: r.get(10)?,
                    ai_status: r.get(11)?,
                    ai_priority: r.get(12)?,
                    ai_detail: r.get(13)?,
                    series: Vec::new(),
                },
            ))
        })
        .optional()?;
    let Some((id, mut detail)) = head else { return Ok(None) };
    let ids: Vec<(i64, Option<i64>)> = c
        .prepare_cached(
            "SELECT se.id, (SELECT d.derived_fk FROM derived_series d WHERE d.series_fk = se.id AND d.kind = 'enhanced')
             FROM series se WHERE se.study_fk = ?1
               AND NOT EXISTS (SELECT 1 FROM derived_series d WHERE d.derived_fk = se.id)
             ORDER BY se.series_number IS NULL, se.series_number, se.id",
        )?
        .query_map(params![id], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    for (sid, derived) in ids {
        let mut s = series_detail(c, sid)?;
        if let Some(d) = derived {
            s.enhanced = Some(Box::new(series_detail(c, d)?));
        }
        detail.series.push(s);
    }
    Ok(Some(detail))
}

fn study_id(c: &Connection, study_uid: &str) -> rusqlite::Result<Option<i64>> {
    c.prepare_cached("SELECT id FROM studies WHERE study_uid = ?1")?
        .query_row(params![study_uid], |r| r.get(0))
        .optional()
}

/// Records the AI state of a study. False when the study is unknown.
pub fn set_study_ai(
    c: &Connection,
    study_uid: &str,
    status: &str,
    priority: i64,
    detail: &str,
) -> rusqlite::Result<bool> {
    let Some(id) = study_id(c, study_uid)? else { return Ok(false) };
    c.execute(
        "INSERT INTO study_ai (study_fk, status, priority, detail, updated_at) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (study_fk) DO UPDATE SET status = excluded.status, priority = excluded.priority,
             detail = excluded.detail, updated_at = excluded.updated_at",
        params![id, status, priority, detail, now_rfc3339()],
    )?;
    Ok(true)
}

/// Links `derived_uid` to `series_uid` as its `kind` (for example "enhanced") version.
pub fn link_derived(c: &Connection, series_uid: &str, derived_uid: &str, kind: &str) -> rusqlite::Result<bool> {
    let n = c.execute(
        "INSERT INTO derived_series (series_fk, derived_fk, kind)
         SELECT a.id, b.id, ?3 FROM series a, series b WHERE a.series_uid = ?1 AND b.series_uid = ?2
         ON CONFLICT (series_fk, kind) DO UPDATE SET derived_fk = excluded.derived_fk",
        params![series_uid, derived_uid, kind],
    )?;
    Ok(n == 1)
}

/// An AI finding on one instance, as recorded, with the readers' feedback on it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Finding {
    pub id: i64,
    #[serde(flatten)]
    pub result: NewFinding,
    pub created_at: String,
    pub feedback: Vec<Feedback>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Feedback {
    pub user: String,
    pub agrees: bool,
    pub comment: String,
    pub created_at: String,
}

/// What a model found on one instance (the pipeline's output).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct NewFinding {
    pub sop_uid: String,
    pub model_name: String,
    pub model_version: String,
    pub label: String,
    pub probability: f64,
    pub threshold: f64,
    pub saliency_w: i64,
    pub saliency_h: i64,
    /// `saliency_w * saliency_h` bytes, 0..255, row-major.
    #[serde(skip)]
    pub saliency: Option<Vec<u8>>,
}

pub fn add_finding(c: &Connection, study_uid: &str, f: &NewFinding) -> rusqlite::Result<Option<i64>> {
    let Some(id) = study_id(c, study_uid)? else { return Ok(None) };
    c.execute(
        "INSERT INTO findings (study_fk, sop_uid, model_name, model_version, label, probability, threshold,
                               saliency_w, saliency_h, saliency, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
        params![
            id,
            f.sop_uid,
            f.model_name,
            f.model_version,
            f.label,
            f.probability,
            f.threshold,
            f.saliency_w,
            f.saliency_h,
            f.saliency,
            now_rfc3339()
        ],
    )?;
    Ok(Some(c.last_insert_rowid()))
}

pub fn findings(c: &Connection, study_uid: &str) -> rusqlite::Result<Vec<Finding>> {
    let mut stmt = c.prepare_cached(
        "SELECT f.id, f.sop_uid, f.model_name, f.model_version, f.label, f.probability, f.threshold,
                f.saliency_w, f.saliency_h, f.saliency, f.created_at
         FROM findings f JOIN studies s ON s.id = f.study_fk WHERE s.study_uid = ?1 ORDER BY f.id",
    )?;
    let mut out = stmt
        .query_map(params![study_uid], |r| {
            Ok(Finding {
                id: r.get(0)?,
                result: NewFinding {
                    sop_uid: r.get(1)?,
                    model_name: r.get(2)?,
                    model_version: r.get(3)?,
                    label: r.get(4)?,
                    probability: r.get(5)?,
                    threshold: r.get(6)?,
                    saliency_w: r.get(7)?,
                    saliency_h: r.get(8)?,
                    saliency: r.get(9)?,
                },
                created_at: r.get(10)?,
                feedback: Vec::new(),
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let mut fb = c.prepare_cached(
        "SELECT u.name, b.agrees, b.comment, b.created_at FROM finding_feedback b JOIN users u ON u.id = b.user_fk
         WHERE b.finding_fk = ?1 ORDER BY b.id",
    )?;
    for f in &mut out {
        f.feedback = fb
            .query_map(params![f.id], |r| {
                Ok(Feedback { user: r.get(0)?, agrees: r.get(1)?, comment: r.get(2)?, created_at: r.get(3)? })
            })?
            .collect::<rusqlite::Result<_>>()?;
    }
    Ok(out)
}

/// Records a reader's agreement or disagreement with a finding of `study_uid`. False when the
/// finding does not belong to that study.
pub fn add_feedback(
    c: &Connection,
    study_uid: &str,
    finding: i64,
    user_id: i64,
    agrees: bool,
    comment: &str,
) -> rusqlite::Result<bool> {
    let n = c.execute(
        "INSERT INTO finding_feedback (finding_fk, user_fk, agrees, comment, created_at)
         SELECT f.id, ?3, ?4, ?5, ?6 FROM findings f JOIN studies s ON s.id = f.study_fk
         WHERE f.id = ?2 AND s.study_uid = ?1",
        params![study_uid, finding, user_id, agrees, comment, now_rfc3339()],
    )?;
    Ok(n == 1)
}

/// A pipeline job as the jobs page shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Job {
    pub id: i64,
    pub study_uid: String,
    pub kind: String,
    pub status: String,
    pub progress: f64,
    pub attempts: i64,
    pub error: String,
    pub created_at: String,
    pub updated_at: String,
}

/// Queues a job of `kind` for a study; `None` when the study is unknown.
pub fn enqueue_job(c: &Connection, study_uid: &str, kind: &str) -> rusqlite::Result<Option<i64>> {
    let Some(id) = study_id(c, study_uid)? else { return Ok(None) };
    let now = now_rfc3339();
    c.execute(
        "INSERT INTO jobs (study_fk, kind, status, created_at, updated_at) VALUES (?1, ?2, 'queued', ?3, ?3)",
        params![id, kind, now],
    )?;
    Ok(Some(c.last_insert_rowid()))
}

/// Records a job's state; `running` counts an attempt. False when there is no such job.
pub fn set_job_state(c: &Connection, id: i64, status: &str, progress: f64, error: &str) -> rusqlite::Result<bool> {
    let n = c.execute(
        "UPDATE jobs SET status = ?2, progress = ?3, error = ?4, updated_at = ?5,
                         attempts = attempts + (CASE WHEN ?2 = 'running' AND status <> 'running' THEN 1 ELSE 0 END)
         WHERE id = ?1",
        params![id, status, progress.clamp(0.0, 1.0), error, now_rfc3339()],
    )?;
    Ok(n == 1)
}

/// Jobs, newest first; only those with `status` when given.
pub fn jobs(c: &Connection, status: Option<&str>, limit: u64) -> rusqlite::Result<Vec<Job>> {
    let mut stmt = c.prepare_cached(
        "SELECT j.id, s.study_uid, j.kind, j.status, j.progress, j.attempts, j.error, j.created_at, j.updated_at
         FROM jobs j JOIN studies s ON s.id = j.study_fk
         WHERE ?1 IS NULL OR j.status = ?1 ORDER BY j.id DESC LIMIT ?2",
    )?;
    let rows = stmt.query_map(params![status, limit as i64], |r| {
        Ok(Job {
            id: r.get(0)?,
            study_uid: r.get(1)?,
            kind: r.get(2)?,
            status: r.get(3)?,
            progress: r.get(4)?,
            attempts: r.get(5)?,
            error: r.get(6)?,
            created_at: r.get(7)?,
            updated_at: r.get(8)?,
        })
    })?;
    rows.collect()
}

/// Puts a failed job back in the queue (its error kept until it runs again). False unless the
/// job exists and has failed.
pub fn retry_job(c: &Connection, id: i64) -> rusqlite::Result<bool> {
    let n = c.execute(
        "UPDATE jobs SET status = 'queued', progress = 0, updated_at = ?2 WHERE id = ?1 AND status = 'failed'",
        params![id, now_rfc3339()],
    )?;
    Ok(n == 1)
}

/// Counts of jobs by status.
pub fn job_counts(c: &Connection) -> rusqlite::Result<Vec<(String, i64)>> {
    let mut stmt = c.prepare_cached("SELECT status, count(*) FROM jobs GROUP BY status ORDER BY status")?;
    let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
    rows.collect()
}
