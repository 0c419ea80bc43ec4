//! Storage: the SQLite index and the instance files under the data directory.
//!
//! Owns: the schema and its migrations, the file layout, durable writes, and every SQL
//! statement in Lucent. Other modules call typed methods; none of them sees SQL or a path
//! inside `files/` that it did not get from here.
//! Must not: parse DICOM or speak any network protocol. Callers hand it bytes and attributes.
//!
//! Durability contract of [`Store::put`]: when it returns `Ok`, the file is on stable storage
//! (fsynced, renamed, directory fsynced) and its index row is committed (WAL,
//! `synchronous=NORMAL`: atomic and crash-safe; after a power loss, recovery re-indexes from the
//! files). Index writes go through one writer thread that commits whatever is queued in one
//! transaction (group commit).

mod accounts;
mod clinical;
pub mod db;
mod files;
mod index;
mod reports;
mod schema;

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread::JoinHandle;

pub use db::Db;
pub use files::relative_path;
pub use index::{rfc3339_ago, Stats, StoredInstance};

pub const DB_FILE: &str = "lucent.db";
const RUN_MARKER: &str = "RUNNING";
const LOCK_FILE: &str = "lucent.lock";
/// Most index rows committed in one transaction.
const MAX_BATCH: usize = 256;

/// The identifying and query attributes of one instance, as the index stores them.
/// Absent text attributes are empty strings; absent numbers are `None`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct InstanceAttrs {
    pub patient_id: String,
    pub issuer: String,
    pub patient_name: String,
    pub birth_date: String,
    pub sex: String,
    pub study_uid: String,
    pub study_date: String,
    pub study_time: String,
    pub accession_number: String,
    pub study_id: String,
    pub study_description: String,
    pub referring_physician: String,
    pub series_uid: String,
    pub modality: String,
    pub series_number: Option<i64>,
    pub series_description: String,
    pub body_part: String,
    pub sop_uid: String,
    pub sop_class: String,
    pub instance_number: Option<i64>,
    pub transfer_syntax: String,
    pub rows: Option<i64>,
    pub columns: Option<i64>,
    pub frames: Option<i64>,
    pub calling_ae: String,
}

/// An instance ready to be stored: the Part 10 header (preamble, `DICM`, file meta group)
/// built by the caller, and the data set bytes exactly as received.
#[derive(Debug)]
pub struct NewInstance {
    pub header: Vec<u8>,
    pub dataset: Vec<u8>,
    pub attrs: InstanceAttrs,
}

impl NewInstance {
    pub fn len(&self) -> u64 {
        (self.header.len() + self.dataset.len()) as u64
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutOutcome {
    Stored,
    /// The SOP Instance UID was already stored and the stored copy was kept.
    Duplicate,
    /// The SOP Instance UID was already stored and has been replaced (overwrite enabled).
    Replaced,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("free space {free} bytes is below the watermark of {watermark} bytes")]
    OutOfSpace { free: u64, watermark: u64 },
    #[error("file system: {0}")]
    Io(#[from] io::Error),
    #[error("database: {0}")]
    Db(#[from] rusqlite::Error),
    #[error("index: {0}")]
    Index(String),
    #[error("no database in {0}; run `lucent init --data-dir {0}` first")]
    NotInitialised(String),
    #[error("another `lucent serve` is already running on {0}")]
    Locked(String),
    #[error("the index writer has stopped")]
    WriterGone,
}

impl StoreError {
    pub fn is_out_of_space(&self) -> bool {
        match self {
            StoreError::OutOfSpace { .. } => true,
            StoreError::Io(e) => e.raw_os_error() == Some(28), // ENOSPC
            _ => false,
        }
    }
}

/// Storage policy, from the `[storage]` config section.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    pub overwrite_duplicates: bool,
    pub min_free_bytes: u64,
}

struct IndexJob {
    attrs: InstanceAttrs,
    path: String,
    size: u64,
    replace: bool,
    reply: mpsc::SyncSender<Result<(), String>>,
}

/// An instance being received: see [`Store::begin`].
pub struct Incoming {
    rel: PathBuf,
    /// `None` when the instance is a duplicate whose stored copy is kept: nothing is written.
    file: Option<files::PendingFile>,
    len: u64,
}

impl Incoming {
    /// Appends received bytes (the Part 10 header first, then the data set as it arrives).
    pub fn append(&mut self, bytes: &[u8]) -> Result<(), StoreError> {
        if let Some(f) = self.file.as_mut() {
            f.append(bytes)?;
        }
        self.len += bytes.len() as u64;
        Ok(())
    }

    /// Flushes what was appended to stable storage now, so that the caller can overlap the
    /// flush with its own checks; [`Store::finish`] then has only the rename left.
    pub fn sync(&mut self) -> Result<(), StoreError> {
        if let Some(f) = self.file.as_mut() {
            f.sync_data()?;
        }
        Ok(())
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// Handle on the data directory. Cheap to share behind an `Arc`; `put` may be called from many
/// threads at once.
pub struct Store {
    root: PathBuf,
    policy: Policy,
    writer: Option<mpsc::Sender<IndexJob>>,
    writer_thread: Option<JoinHandle<()>>,
}

impl Store {
    /// Creates the data directory, database and folders if needed, and migrates the schema.
    pub fn open(root: &Path, policy: Policy) -> Result<Store, StoreError> {
        for d in [root.to_path_buf(), root.join(files::FILES_DIR), root.join(files::TMP_DIR)] {
            fs::create_dir_all(&d)?;
        }
        let mut conn = index::open(&root.join(DB_FILE), false)?;
        schema::migrate(&mut conn)?;
        let (tx, rx) = mpsc::channel::<IndexJob>();
        let thread =
            std::thread::Builder::new().name("lucent-index-writer".into()).spawn(move || writer_loop(conn, rx))?;
        Ok(Store { root: root.to_path_buf(), policy, writer: Some(tx), writer_thread: Some(thread) })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Stores one instance durably and indexes it. See the module documentation.
    pub fn put(&self, inst: &NewInstance) -> Result<PutOutcome, StoreError> {
        let mut incoming = self.begin(&inst.attrs.sop_uid)?;
        incoming.append(&inst.header)?;
        incoming.append(&inst.dataset)?;
        self.finish(incoming, inst.attrs.clone())
    }

    /// Starts receiving the instance `sop_uid`: its bytes go to a temporary file as they
    /// arrive ([`Incoming::append`]); [`Store::finish`] makes it durable and indexes it.
    /// Dropping the `Incoming` discards it. Fails when free space is below the watermark.
    pub fn begin(&self, sop_uid: &str) -> Result<Incoming, StoreError> {
        self.check_space()?;
        let rel = files::relative_path(sop_uid);
        // A duplicate that will be kept needs no copy at all.
        let file = if !self.policy.overwrite_duplicates && self.root.join(&rel).exists() {
            None
        } else {
            Some(files::PendingFile::create(&self.root, &rel)?)
        };
        Ok(Incoming { rel, file, len: 0 })
    }

    /// Makes a received instance durable and commits its index row (see the module
    /// documentation). `attrs.sop_uid` must be the UID given to [`Store::begin`].
    pub fn finish(&self, incoming: Incoming, attrs: InstanceAttrs) -> Result<PutOutcome, StoreError> {
        if files::relative_path(&attrs.sop_uid) != incoming.rel {
            return Err(StoreError::Index(format!("instance {} was begun under another UID", attrs.sop_uid)));
        }
        self.check_space()?;
        let rel_str = rel_string(&incoming.rel);
        let (len, written) = match incoming.file {
            None => (incoming.len, files::Written::KeptExisting),
            Some(file) => {
                let existing =
                    if self.policy.overwrite_duplicates { files::Existing::Replace } else { files::Existing::Keep };
                let t0 = std::time::Instant::now();
                let written = file.commit(existing)?;
                tracing::trace!(file_us = t0.elapsed().as_micros() as u64, "durable write");
                (incoming.len, written)
            }
        };
        match written {
            files::Written::KeptExisting => {
                // Already stored. Index it in case the copy on disk predates a crash and was
                // never indexed; an existing row is left as it is.
                let size = fs::metadata(self.root.join(&incoming.rel))?.len();
                self.index(attrs, rel_str, size, false)?;
                Ok(PutOutcome::Duplicate)
            }
            files::Written::New | files::Written::Replaced => {
                let replaced = written == files::Written::Replaced;
                if let Err(e) = self.index(attrs, rel_str, len, replaced) {
                    if !replaced {
                        // Never leave an unindexed file for an instance we did not acknowledge.
                        let _ = fs::remove_file(self.root.join(&incoming.rel));
                    }
                    return Err(e);
                }
                Ok(if replaced { PutOutcome::Replaced } else { PutOutcome::Stored })
            }
        }
    }

    fn check_space(&self) -> Result<(), StoreError> {
        let free = files::free_bytes(&self.root)?;
        let watermark = self.policy.min_free_bytes;
        if free < watermark {
            return Err(StoreError::OutOfSpace { free, watermark });
        }
        Ok(())
    }

    /// Indexes a file that is already in place (crash recovery): the file is the truth, so an
    /// existing row is brought up to date.
    pub fn index_existing(&self, rel: &Path, attrs: InstanceAttrs) -> Result<(), StoreError> {
        let size = fs::metadata(self.root.join(rel))?.len();
        self.index(attrs, rel_string(rel), size, true)
    }

    fn index(&self, attrs: InstanceAttrs, path: String, size: u64, replace: bool) -> Result<(), StoreError> {
        let (reply, wait) = mpsc::sync_channel(1);
        let job = IndexJob { attrs, path, size, replace, reply };
        self.writer.as_ref().ok_or(StoreError::WriterGone)?.send(job).map_err(|_| StoreError::WriterGone)?;
        match wait.recv() {
            Ok(Ok(())) => Ok(()),
            Ok(Err(msg)) => Err(StoreError::Index(msg)),
            Err(_) => Err(StoreError::WriterGone),
        }
    }

    /// Marks the start of a `serve` run: takes the data directory's lock, clears leftovers of
    /// interrupted writes, and reports when the previous run started if it did not end cleanly.
    pub fn begin_run(&self) -> Result<(RunGuard, Option<u64>), StoreError> {
        let lock = File::options().create(true).truncate(false).write(true).open(self.root.join(LOCK_FILE))?;
        #[cfg(unix)]
        rustix::fs::flock(&lock, rustix::fs::FlockOperation::NonBlockingLockExclusive)
            .map_err(|_| StoreError::Locked(self.root.display().to_string()))?;
        let marker = self.root.join(RUN_MARKER);
        let previous = fs::read_to_string(&marker).ok().map(|s| s.trim().parse::<u64>().unwrap_or(0));
        files::clear_tmp(&self.root)?;
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_secs();
        fs::write(&marker, now.to_string())?;
        files::sync_dir(&self.root)?;
        Ok((RunGuard { _lock: lock, marker }, previous))
    }

    /// Instance files whose index row is missing or out of date: a crash between rename and
    /// commit, or a power loss before the WAL reached the disk. `since` is the crashed run's
    /// start time; only leaf folders modified since then are listed.
    pub fn stale_files_since(&self, since: u64) -> Result<Vec<PathBuf>, StoreError> {
        let conn = index::open(&self.root.join(DB_FILE), true)?;
        let mut out = Vec::new();
        for rel in files::files_in_dirs_modified_since(&self.root, since)? {
            let size = fs::metadata(self.root.join(&rel))?.len();
            if index::indexed_size(&conn, &rel_string(&rel))? != Some(size) {
                out.push(rel);
            }
        }
        Ok(out)
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        self.writer.take();
        if let Some(t) = self.writer_thread.take() {
            let _ = t.join();
        }
    }
}

/// Held while `serve` runs. `finish` records a clean shutdown.
pub struct RunGuard {
    _lock: File,
    marker: PathBuf,
}

impl RunGuard {
    pub fn finish(self) -> io::Result<()> {
        fs::remove_file(&self.marker)
    }
}

/// Read-only access for CLI commands, safe while `serve` writes (WAL).
pub struct Reader {
    root: PathBuf,
    conn: rusqlite::Connection,
}

impl Reader {
    pub fn open(root: &Path) -> Result<Reader, StoreError> {
        let db = root.join(DB_FILE);
        if !db.exists() {
            return Err(StoreError::NotInitialised(root.display().to_string()));
        }
        Ok(Reader { root: root.to_path_buf(), conn: index::open(&db, true)? })
    }

    pub fn stats(&self) -> Result<Stats, StoreError> {
        Ok(index::stats(&self.conn)?)
    }

    pub fn instances(&self, study_uid: Option<&str>) -> Result<Vec<StoredInstance>, StoreError> {
        Ok(index::list_instances(&self.conn, study_uid)?)
    }

    /// Absolute path of the file of instance `sop` in series `series` of study `study`, or
    /// `None` when no such instance is stored.
    pub fn instance_file(&self, study: &str, series: &str, sop: &str) -> Result<Option<PathBuf>, StoreError> {
        Ok(index::instance_path(&self.conn, study, series, sop)?.map(|p| self.root.join(p)))
    }

    /// Absolute path of a stored instance's file.
    pub fn file_path(&self, inst: &StoredInstance) -> PathBuf {
        self.root.join(&inst.path)
    }

    /// Runs a trivial query: the database answers.
    pub fn ping(&self) -> Result<(), StoreError> {
        self.conn.query_row("SELECT 1", [], |_| Ok(()))?;
        Ok(())
    }
}

/// Free bytes on the data directory's file system.
pub fn free_bytes(root: &Path) -> io::Result<u64> {
    files::free_bytes(root)
}

fn rel_string(rel: &Path) -> String {
    rel.to_string_lossy().replace('\\', "/")
}

fn writer_loop(mut conn: rusqlite::Connection, rx: mpsc::Receiver<IndexJob>) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(j) => batch.push(j),
                Err(_) => break,
            }
        }
        let commit = |conn: &mut rusqlite::Connection, jobs: &[IndexJob]| -> rusqlite::Result<()> {
            let tx = conn.transaction()?;
            for j in jobs {
                index::upsert_instance(&tx, &j.attrs, &j.path, j.size, j.replace)?;
            }
            tx.commit()
        };
        match commit(&mut conn, &batch) {
            Ok(()) => batch.iter().for_each(|j| drop(j.reply.send(Ok(())))),
            Err(_) if batch.len() > 1 => {
                // Isolate the failing row so that one bad instance does not fail the others.
                for j in &batch {
                    let r = commit(&mut conn, std::slice::from_ref(j)).map_err(|e| e.to_string());
                    let _ = j.reply.send(r);
                }
            }
            Err(e) => drop(batch[0].reply.send(Err(e.to_string()))),
        }
    }
    let _ = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()));
}
