//! [`Db`]: read-write access to the database for everything except instance indexing (which
//! has its own writer thread in [`Store`](super::Store)): accounts, sessions, AI results,
//! reports, worklist reads. A small pool of connections serves concurrent web requests; the
//! write volume here is low (logins, report saves), and SQLite's busy timeout serialises it
//! with the index writer.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rusqlite::Connection;

pub use super::accounts::{Destination, Session, User};
pub use super::clinical::{
    Feedback, Finding, InstanceRef, Job, NewFinding, SeriesDetail, Sort, StudyDetail, WorklistQuery, WorklistRow,
};
pub use super::reports::{Report, ReportRefusal, SearchDoc};
use super::{accounts, clinical, index, reports, schema, StoreError, DB_FILE};

/// Connections kept for reuse; more are opened under load and closed when returned beyond this.
const POOL_KEEP: usize = 8;

pub struct Db {
    path: PathBuf,
    pool: Mutex<Vec<Connection>>,
}

impl Db {
    /// Opens (creating and migrating if needed) the database of data directory `root`.
    pub fn open(root: &Path) -> Result<Db, StoreError> {
        std::fs::create_dir_all(root)?;
        let path = root.join(DB_FILE);
        let mut conn = index::open(&path, false)?;
        schema::migrate(&mut conn)?;
        Ok(Db { path, pool: Mutex::new(vec![conn]) })
    }

    /// Runs `f` on a pooled connection.
    pub fn with<T>(&self, f: impl FnOnce(&mut Connection) -> rusqlite::Result<T>) -> Result<T, StoreError> {
        let pooled = self.pool.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let mut conn = match pooled {
            Some(c) => c,
            None => index::open(&self.path, false)?,
        };
        let out = f(&mut conn);
        let mut pool = self.pool.lock().unwrap_or_else(|e| e.into_inner());
        if pool.len() < POOL_KEEP {
            pool.push(conn);
        }
        Ok(out?)
    }

    // ---- accounts ----

    /// Adds a user; `Ok(None)` when the name is taken.
    pub fn add_user(&self, name: &str, role: &str, hash: &str, must_change: bool) -> Result<Option<i64>, StoreError> {
        self.with(|c| accounts::add_user(c, name, role, hash, must_change))
    }
    pub fn user(&self, name: &str) -> Result<Option<User>, StoreError> {
        self.with(|c| accounts::user(c, name))
    }
    pub fn users(&self) -> Result<Vec<User>, StoreError> {
        self.with(|c| accounts::users(c))
    }
    pub fn count_active_with_role(&self, role: &str) -> Result<i64, StoreError> {
        self.with(|c| accounts::count_users_with_role(c, role))
    }
    pub fn set_password(
        &self,
        user_id: i64,
        hash: &str,
        must_change: bool,
        keep_session: Option<&[u8]>,
    ) -> Result<bool, StoreError> {
        self.with(|c| accounts::set_password(c, user_id, hash, must_change, keep_session))
    }
    pub fn set_disabled(&self, user_id: i64, disabled: bool) -> Result<bool, StoreError> {
        self.with(|c| accounts::set_disabled(c, user_id, disabled))
    }
    pub fn record_login_failure(
        &self,
        user_id: i64,
        max: i64,
        lock_secs: i64,
        now: i64,
    ) -> Result<(i64, i64), StoreError> {
        self.with(|c| accounts::record_failure(c, user_id, max, lock_secs, now))
    }
    pub fn open_session(
        &self,
        token_hash: &[u8],
        user_id: i64,
        csrf: &str,
        now: i64,
        peer: &str,
    ) -> Result<(), StoreError> {
        self.with(|c| accounts::open_session(c, token_hash, user_id, csrf, now, peer))
    }
    pub fn session(&self, token_hash: &[u8]) -> Result<Option<Session>, StoreError> {
        self.with(|c| accounts::session(c, token_hash))
    }
    pub fn touch_session(&self, token_hash: &[u8], now: i64) -> Result<(), StoreError> {
        self.with(|c| accounts::touch_session(c, token_hash, now))
    }
    pub fn delete_session(&self, token_hash: &[u8]) -> Result<(), StoreError> {
        self.with(|c| accounts::delete_session(c, token_hash))
    }
    pub fn purge_sessions(&self, idle_before: i64, created_before: i64) -> Result<usize, StoreError> {
        self.with(|c| accounts::purge_sessions(c, idle_before, created_before))
    }

    pub fn destinations(&self) -> Result<Vec<Destination>, StoreError> {
        self.with(|c| accounts::destinations(c))
    }
    pub fn add_destination(&self, name: &str, ae: &str, host: &str, port: u16) -> Result<bool, StoreError> {
        self.with(|c| accounts::add_destination(c, name, ae, host, port))
    }
    pub fn delete_destination(&self, id: i64) -> Result<bool, StoreError> {
        self.with(|c| accounts::delete_destination(c, id))
    }

    // ---- studies, AI results ----

    pub fn worklist(&self, q: &WorklistQuery) -> Result<(Vec<WorklistRow>, u64), StoreError> {
        self.with(|c| clinical::worklist(c, q))
    }
    pub fn study(&self, study_uid: &str) -> Result<Option<StudyDetail>, StoreError> {
        self.with(|c| clinical::study(c, study_uid))
    }
    pub fn set_study_ai(&self, study_uid: &str, status: &str, priority: i64, detail: &str) -> Result<bool, StoreError> {
        self.with(|c| clinical::set_study_ai(c, study_uid, status, priority, detail))
    }
    pub fn link_derived(&self, series_uid: &str, derived_uid: &str, kind: &str) -> Result<bool, StoreError> {
        self.with(|c| clinical::link_derived(c, series_uid, derived_uid, kind))
    }
    pub fn add_finding(&self, study_uid: &str, f: &NewFinding) -> Result<Option<i64>, StoreError> {
        self.with(|c| clinical::add_finding(c, study_uid, f))
    }
    pub fn findings(&self, study_uid: &str) -> Result<Vec<Finding>, StoreError> {
        self.with(|c| clinical::findings(c, study_uid))
    }
    pub fn add_feedback(
        &self,
        study_uid: &str,
        finding: i64,
        user_id: i64,
        agrees: bool,
        comment: &str,
    ) -> Result<bool, StoreError> {
        self.with(|c| clinical::add_feedback(c, study_uid, finding, user_id, agrees, comment))
    }
    /// The stored file of an instance of a study (any series), relative path resolved.
    pub fn instance_file(&self, study: &str, series: &str, sop: &str) -> Result<Option<PathBuf>, StoreError> {
        let root = self.path.parent().unwrap_or(Path::new(".")).to_path_buf();
        Ok(self.with(|c| index::instance_path(c, study, series, sop))?.map(|p| root.join(p)))
    }

    // ---- pipeline jobs ----

    pub fn enqueue_job(&self, study_uid: &str, kind: &str) -> Result<Option<i64>, StoreError> {
        self.with(|c| clinical::enqueue_job(c, study_uid, kind))
    }
    pub fn set_job_state(&self, id: i64, status: &str, progress: f64, error: &str) -> Result<bool, StoreError> {
        self.with(|c| clinical::set_job_state(c, id, status, progress, error))
    }
    pub fn jobs(&self, status: Option<&str>, limit: u64) -> Result<Vec<Job>, StoreError> {
        self.with(|c| clinical::jobs(c, status, limit))
    }
    pub fn retry_job(&self, id: i64) -> Result<bool, StoreError> {
        self.with(|c| clinical::retry_job(c, id))
    }
    pub fn job_counts(&self) -> Result<Vec<(String, i64)>, StoreError> {
        self.with(|c| clinical::job_counts(c))
    }

    // ---- reports ----

    pub fn reports(&self, study_uid: &str) -> Result<Vec<Report>, StoreError> {
        self.with(|c| reports::reports(c, study_uid))
    }
    pub fn save_draft(
        &self,
        study_uid: &str,
        user_id: i64,
        body: &str,
    ) -> Result<Result<i64, ReportRefusal>, StoreError> {
        self.with(|c| reports::save_draft(c, study_uid, user_id, body))
    }
    pub fn sign_report(
        &self,
        study_uid: &str,
        report_id: i64,
        user_id: i64,
    ) -> Result<Result<(), ReportRefusal>, StoreError> {
        self.with(|c| reports::sign(c, study_uid, report_id, user_id))
    }
    pub fn amend_report(&self, study_uid: &str, user_id: i64) -> Result<Result<i64, ReportRefusal>, StoreError> {
        self.with(|c| reports::amend(c, study_uid, user_id))
    }
    pub fn search_docs_since(&self, from: &str, limit: u64) -> Result<Vec<SearchDoc>, StoreError> {
        self.with(|c| reports::changed_since(c, from, limit))
    }

    /// Size of the database file and its WAL, in bytes.
    pub fn size_bytes(&self) -> u64 {
        let wal = self.path.with_extension("db-wal");
        [&self.path, &wal].iter().filter_map(|p| std::fs::metadata(p).ok()).map(|m| m.len()).sum()
    }
}
