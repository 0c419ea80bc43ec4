//! SQL for reports: drafts (every save kept as a revision), signing, amendments, and the text
//! the search index reads.

use rusqlite::{params, Connection, OptionalExtension, Transaction};
use serde::Serialize;

use super::index::now_rfc3339;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    pub id: i64,
    pub version: i64,
    /// The signed version this one amends.
    pub amends: Option<i64>,
    pub body: String,
    pub author: String,
    pub updated_at: String,
    pub signed_by: Option<String>,
    pub signed_at: Option<String>,
    pub revisions: i64,
}

impl Report {
    pub fn is_signed(&self) -> bool {
        self.signed_at.is_some()
    }
}

/// Why a report change was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReportRefusal {
    NoSuchStudy,
    /// The latest version is signed: amend it first.
    Signed,
    /// The version named is not the latest one (someone amended or signed meanwhile).
    Stale,
    /// There is nothing to sign or amend.
    NoReport,
    NotSigned,
}

/// All versions of a study's report, newest first.
pub fn reports(c: &Connection, study_uid: &str) -> rusqlite::Result<Vec<Report>> {
    let mut stmt = c.prepare_cached(
        "SELECT r.id, r.version, r.amends_fk, r.body, a.name, r.updated_at, sg.name, r.signed_at,
                (SELECT count(*) FROM report_revisions v WHERE v.report_fk = r.id)
         FROM reports r JOIN studies s ON s.id = r.study_fk JOIN users a ON a.id = r.author_fk
         LEFT JOIN users sg ON sg.id = r.signed_by
         WHERE s.study_uid = ?1 ORDER BY r.version DESC",
    )?;
    let rows = stmt.query_map(params![study_uid], |r| {
        Ok(Report {
            id: r.get(0)?,
            version: r.get(1)?,
            amends: r.get(2)?,
            body: r.get(3)?,
            author: r.get(4)?,
            updated_at: r.get(5)?,
            signed_by: r.get(6)?,
            signed_at: r.get(7)?,
            revisions: r.get(8)?,
        })
    })?;
    rows.collect()
}

/// The latest report version of a study: (report id, version, signed?).
type Latest = Option<(i64, i64, bool)>;

/// (study id, its latest report version), or `None` when the study is unknown.
fn latest(tx: &Transaction<'_>, study_uid: &str) -> rusqlite::Result<Option<(i64, Latest)>> {
    let Some(study): Option<i64> =
        tx.query_row("SELECT id FROM studies WHERE study_uid = ?1", params![study_uid], |r| r.get(0)).optional()?
    else {
        return Ok(None);
    };
    let last = tx
        .query_row(
            "SELECT id, version, signed_at IS NOT NULL FROM reports WHERE study_fk = ?1 ORDER BY version DESC LIMIT 1",
            params![study],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()?;
    Ok(Some((study, last)))
}

fn touch_study(tx: &Transaction<'_>, study: i64, now: &str) -> rusqlite::Result<()> {
    // The search index follows studies.updated_at; report text is part of what it indexes.
    tx.execute("UPDATE studies SET updated_at = ?2 WHERE id = ?1", params![study, now])?;
    Ok(())
}

/// Saves `body` as the current draft (creating version 1 when the study has no report) and
/// keeps the text as a revision.
pub fn save_draft(
    c: &mut Connection,
    study_uid: &str,
    user_id: i64,
    body: &str,
) -> rusqlite::Result<Result<i64, ReportRefusal>> {
    let tx = c.transaction()?;
    let Some((study, last)) = latest(&tx, study_uid)? else { return Ok(Err(ReportRefusal::NoSuchStudy)) };
    let now = now_rfc3339();
    let id = match last {
        Some((_, _, true)) => return Ok(Err(ReportRefusal::Signed)),
        Some((id, _, false)) => {
            tx.execute(
                "UPDATE reports SET body = ?2, author_fk = ?3, updated_at = ?4 WHERE id = ?1",
                params![id, body, user_id, now],
            )?;
            id
        }
        None => {
            tx.execute(
                "INSERT INTO reports (study_fk, version, body, author_fk, updated_at) VALUES (?1, 1, ?2, ?3, ?4)",
                params![study, body, user_id, now],
            )?;
            tx.last_insert_rowid()
        }
    };
    tx.execute(
        "INSERT INTO report_revisions (report_fk, body, author_fk, saved_at) VALUES (?1, ?2, ?3, ?4)",
        params![id, body, user_id, now],
    )?;
    touch_study(&tx, study, &now)?;
    tx.commit()?;
    Ok(Ok(id))
}

/// Signs version `report_id`, which must be the latest, unsigned version of the study.
pub fn sign(
    c: &mut Connection,
    study_uid: &str,
    report_id: i64,
    user_id: i64,
) -> rusqlite::Result<Result<(), ReportRefusal>> {
    let tx = c.transaction()?;
    let Some((study, last)) = latest(&tx, study_uid)? else { return Ok(Err(ReportRefusal::NoSuchStudy)) };
    match last {
        None => return Ok(Err(ReportRefusal::NoReport)),
        Some((id, _, _)) if id != report_id => return Ok(Err(ReportRefusal::Stale)),
        Some((_, _, true)) => return Ok(Err(ReportRefusal::Signed)),
        Some(_) => {}
    }
    let now = now_rfc3339();
    tx.execute(
        "UPDATE reports SET signed_by = ?2, signed_at = ?3, updated_at = ?3 WHERE id = ?1",
        params![report_id, user_id, now],
    )?;
    touch_study(&tx, study, &now)?;
    tx.commit()?;
    Ok(Ok(()))
}

/// Starts an amendment of the latest version, which must be signed: a new draft version that
/// links to it and starts from its text.
pub fn amend(c: &mut Connection, study_uid: &str, user_id: i64) -> rusqlite::Result<Result<i64, ReportRefusal>> {
    let tx = c.transaction()?;
    let Some((study, last)) = latest(&tx, study_uid)? else { return Ok(Err(ReportRefusal::NoSuchStudy)) };
    let (old, version) = match last {
        None => return Ok(Err(ReportRefusal::NoReport)),
        Some((_, _, false)) => return Ok(Err(ReportRefusal::NotSigned)),
        Some((id, v, true)) => (id, v),
    };
    let now = now_rfc3339();
    tx.execute(
        "INSERT INTO reports (study_fk, version, amends_fk, body, author_fk, updated_at)
         SELECT study_fk, ?2, id, body, ?3, ?4 FROM reports WHERE id = ?1",
        params![old, version + 1, user_id, now],
    )?;
    let id = tx.last_insert_rowid();
    touch_study(&tx, study, &now)?;
    tx.commit()?;
    Ok(Ok(id))
}

/// What the text search indexes for one study.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchDoc {
    pub study_uid: String,
    pub patient_name: String,
    pub patient_id: String,
    pub accession: String,
    pub description: String,
    pub report: String,
    pub updated_at: String,
}

/// Studies changed at or after `from` (an `updated_at` value), oldest change first.
pub fn changed_since(c: &Connection, from: &str, limit: u64) -> rusqlite::Result<Vec<SearchDoc>> {
    let mut stmt = c.prepare_cached(
        "SELECT s.study_uid, p.name, p.patient_id, s.accession_number,
                s.description || ' ' || coalesce((SELECT group_concat(se.description, ' ') FROM series se
                                                  WHERE se.study_fk = s.id), ''),
                coalesce((SELECT r.body FROM reports r WHERE r.study_fk = s.id ORDER BY r.version DESC LIMIT 1), ''),
                s.updated_at
         FROM studies s JOIN patients p ON p.id = s.patient_fk
         WHERE s.updated_at >= ?1 ORDER BY s.updated_at, s.id LIMIT ?2",
    )?;
    let rows = stmt.query_map(params![from, limit as i64], |r| {
        Ok(SearchDoc {
            study_uid: r.get(0)?,
            patient_name: r.get(1)?,
            patient_id: r.get(2)?,
            accession: r.get(3)?,
            description: r.get(4)?,
            report: r.get(5)?,
            updated_at: r.get(6)?,
        })
    })?;
    rows.collect()
}
