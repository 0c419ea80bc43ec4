//! SQL for the DICOM index: upserts as instances arrive, and the read queries.
//! SQL lives only in this module's files: this one, `schema.rs`, `accounts.rs`, `clinical.rs`
//! and `reports.rs`.

use rusqlite::{params, Connection, OptionalExtension, Transaction};
use serde::Serialize;

use super::InstanceAttrs;

/// Opens a connection with the pragmas every Lucent connection uses.
pub fn open(path: &std::path::Path, read_only: bool) -> rusqlite::Result<Connection> {
    use rusqlite::OpenFlags;
    let flags = if read_only {
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX
    } else {
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX
    };
    let conn = Connection::open_with_flags(path, flags)?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    if !read_only {
        conn.pragma_update(None, "journal_mode", "WAL")?;
        // NORMAL (in WAL mode): a commit is atomic and survives a process crash, but the WAL is
        // synced at checkpoints rather than at every commit. The instance file, not its row, is
        // the durable record: it is fsynced before we acknowledge, and after a power loss the
        // crash recovery re-indexes every file of the interrupted run that lacks a current row
        // (ARCHITECTURE.md, invariant 3). This saves one fsync per instance on the hot path.
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
    }
    Ok(conn)
}

/// Inserts or updates the patient, study, series and instance rows of one instance.
/// `replace` updates an existing instance row; otherwise an existing row is kept.
pub fn upsert_instance(
    tx: &Transaction<'_>,
    a: &InstanceAttrs,
    path: &str,
    size: u64,
    replace: bool,
) -> rusqlite::Result<()> {
    let now = now_rfc3339();
    let patient: i64 = tx
        .prepare_cached(
            "INSERT INTO patients (patient_id, issuer, name, birth_date, sex, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT (patient_id, issuer) DO UPDATE SET
                name = excluded.name, birth_date = excluded.birth_date, sex = excluded.sex,
                updated_at = excluded.updated_at
             RETURNING id",
        )?
        .query_row(params![a.patient_id, a.issuer, a.patient_name, a.birth_date, a.sex, now], |r| r.get(0))?;
    let study: i64 = tx
        .prepare_cached(
            "INSERT INTO studies (study_uid, patient_fk, study_date, study_time, accession_number,
                                  study_id, description, referring_physician, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?9)
             ON CONFLICT (study_uid) DO UPDATE SET updated_at = excluded.updated_at
             RETURNING id",
        )?
        .query_row(
            params![
                a.study_uid,
                patient,
                a.study_date,
                a.study_time,
                a.accession_number,
                a.study_id,
                a.study_description,
                a.referring_physician,
                now
            ],
            |r| r.get(0),
        )?;
    let series: i64 = tx
        .prepare_cached(
            "INSERT INTO series (series_uid, study_fk, modality, series_number, description, body_part, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
             ON CONFLICT (series_uid) DO UPDATE SET modality = excluded.modality
             RETURNING id",
        )?
        .query_row(
            params![a.series_uid, study, a.modality, a.series_number, a.series_description, a.body_part, now],
            |r| r.get(0),
        )?;
    let conflict = if replace {
        "ON CONFLICT (sop_uid) DO UPDATE SET series_fk = excluded.series_fk, sop_class = excluded.sop_class,
            instance_number = excluded.instance_number, transfer_syntax = excluded.transfer_syntax,
            rows = excluded.rows, columns = excluded.columns, frames = excluded.frames,
            size = excluded.size, received_at = excluded.received_at, calling_ae = excluded.calling_ae"
    } else {
        "ON CONFLICT (sop_uid) DO NOTHING"
    };
    tx.prepare_cached(&format!(
        "INSERT INTO instances (sop_uid, series_fk, sop_class, instance_number, transfer_syntax,
                                rows, columns, frames, path, size, received_at, calling_ae)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12) {conflict}"
    ))?
    .execute(params![
        a.sop_uid,
        series,
        a.sop_class,
        a.instance_number,
        a.transfer_syntax,
        a.rows,
        a.columns,
        a.frames,
        path,
        size as i64,
        now,
        a.calling_ae
    ])?;
    Ok(())
}

/// Counts for `lucent stats`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Stats {
    pub patients: u64,
    pub studies: u64,
    pub series: u64,
    pub instances: u64,
    pub bytes: u64,
}

pub fn stats(conn: &Connection) -> rusqlite::Result<Stats> {
    conn.query_row(
        "SELECT (SELECT count(*) FROM patients), (SELECT count(*) FROM studies),
                (SELECT count(*) FROM series), (SELECT count(*) FROM instances),
                (SELECT coalesce(sum(size), 0) FROM instances)",
        [],
        |r| {
            Ok(Stats {
                patients: r.get::<_, i64>(0)? as u64,
                studies: r.get::<_, i64>(1)? as u64,
                series: r.get::<_, i64>(2)? as u64,
                instances: r.get::<_, i64>(3)? as u64,
                bytes: r.get::<_, i64>(4)? as u64,
            })
        },
    )
}

/// One stored instance, as `export` and lookups need it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StoredInstance {
    pub sop_uid: String,
    pub study_uid: String,
    pub path: String,
    pub size: u64,
}

/// Every instance, or those of one study, in arrival order.
pub fn list_instances(conn: &Connection, study_uid: Option<&str>) -> rusqlite::Result<Vec<StoredInstance>> {
    let mut stmt = conn.prepare(
        "SELECT i.sop_uid, st.study_uid, i.path, i.size
         FROM instances i JOIN series se ON se.id = i.series_fk JOIN studies st ON st.id = se.study_fk
         WHERE ?1 IS NULL OR st.study_uid = ?1
         ORDER BY i.id",
    )?;
    let rows = stmt.query_map(params![study_uid], |r| {
        Ok(StoredInstance {
            sop_uid: r.get(0)?,
            study_uid: r.get(1)?,
            path: r.get(2)?,
            size: r.get::<_, i64>(3)? as u64,
        })
    })?;
    rows.collect()
}

/// The stored path of one instance, when it belongs to that study and series.
pub fn instance_path(conn: &Connection, study: &str, series: &str, sop: &str) -> rusqlite::Result<Option<String>> {
    conn.prepare_cached(
        "SELECT i.path
         FROM instances i JOIN series se ON se.id = i.series_fk JOIN studies st ON st.id = se.study_fk
         WHERE i.sop_uid = ?1 AND se.series_uid = ?2 AND st.study_uid = ?3",
    )?
    .query_row(params![sop, series, study], |r| r.get(0))
    .optional()
}

/// The size recorded for a file, or `None` when no row points at it.
pub fn indexed_size(conn: &Connection, path: &str) -> rusqlite::Result<Option<u64>> {
    conn.prepare_cached("SELECT size FROM instances WHERE path = ?1")?
        .query_row(params![path], |r| r.get::<_, i64>(0))
        .optional()
        .map(|o| o.map(|s| s as u64))
}

/// The time `secs` seconds ago, in the same format as [`now_rfc3339`] (so the two compare as
/// strings).
pub fn rfc3339_ago(secs: u64) -> String {
    let d = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    rfc3339(d.as_secs().saturating_sub(secs), d.subsec_millis())
}

pub fn now_rfc3339() -> String {
    let d = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    rfc3339(d.as_secs(), d.subsec_millis())
}

/// Formats a Unix time as `YYYY-MM-DDTHH:MM:SS.mmmZ` (civil-from-days, proleptic Gregorian).
fn rfc3339(secs: u64, millis: u32) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{millis:03}Z", rem / 3600, (rem / 60) % 60, rem % 60)
}

#[cfg(test)]
mod tests {
    #[test]
    fn rfc3339_formats_known_instants() {
        assert_eq!(super::rfc3339(0, 0), "1970-01-01T00:00:00.000Z");
        assert_eq!(super::rfc3339(1_796_333_400, 5), "2026-12-03T21:30:00.005Z");
        assert_eq!(super::rfc3339(951_782_400, 0), "2000-02-29T00:00:00.000Z");
    }
}
