//! The file layout and durable writes.
//!
//! Instances live at `files/<aa>/<bb>/<sha256(SOP Instance UID)>.dcm`: a two-level fan-out of
//! 65 536 leaf directories, so ten million instances make about 150 entries per directory.
//! A write goes to `tmp/` (same file system), is fsynced, renamed into place, and the
//! destination directory is fsynced, so a crash leaves either the whole file or none.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use ring::digest;

pub const FILES_DIR: &str = "files";
pub const TMP_DIR: &str = "tmp";

/// Relative path of an instance, from its SOP Instance UID.
pub fn relative_path(sop_uid: &str) -> PathBuf {
    let d = digest::digest(&digest::SHA256, sop_uid.as_bytes());
    let hex: String = d.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    PathBuf::from(FILES_DIR).join(&hex[0..2]).join(&hex[2..4]).join(format!("{hex}.dcm"))
}

static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// How a durable write treats an existing file at the destination.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Existing {
    Keep,
    Replace,
}

/// Outcome of [`write_durable`].
#[derive(Debug, PartialEq, Eq)]
pub enum Written {
    New,
    Replaced,
    /// The destination existed and `Existing::Keep` was asked: nothing was written.
    KeptExisting,
}

/// A file being written under `tmp/`, in pieces as they arrive (a C-STORE streams its data set
/// here while the rest is still on the wire). Nothing of it is visible in `files/` until
/// [`PendingFile::commit`]; dropping it removes the temporary file.
pub struct PendingFile {
    file: Option<File>,
    tmp: PathBuf,
    dest: PathBuf,
    /// Folders created for `dest`, outermost first; synced in their parents at commit.
    created: Vec<PathBuf>,
    len: u64,
    /// Bytes handed to the kernel's write-back so far (`sync_file_range`).
    flushing: u64,
    /// Whether everything appended so far has been fsynced.
    synced: bool,
}

/// Start write-back once this much is buffered: the final fsync then waits for the tail only.
const WRITEBACK_CHUNK: u64 = 256 * 1024;

impl PendingFile {
    /// Starts a file that will become `root/rel`. Missing folders on the way are created now,
    /// so that the commit's single journal flush covers them too.
    pub fn create(root: &Path, rel: &Path) -> io::Result<PendingFile> {
        let dest = root.join(rel);
        let dir = dest.parent().ok_or_else(|| io::Error::other("instance path has no parent"))?;
        let created = create_dirs(root, dir)?;
        let tmp = root.join(TMP_DIR).join(format!(
            "{}.{}.part",
            std::process::id(),
            TMP_COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let file = File::create(&tmp)?;
        Ok(PendingFile { file: Some(file), tmp, dest, created, len: 0, flushing: 0, synced: false })
    }

    pub fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
        let f = self.file.as_mut().ok_or_else(|| io::Error::other("pending file already closed"))?;
        f.write_all(bytes)?;
        self.synced = false;
        self.len += bytes.len() as u64;
        if self.len - self.flushing >= WRITEBACK_CHUNK {
            start_writeback(f, self.flushing, self.len - self.flushing);
            self.flushing = self.len;
        }
        Ok(())
    }

    /// Flushes the data to stable storage now (`commit` then skips it). Lets the caller overlap
    /// the flush with other work, such as checking the data set.
    pub fn sync_data(&mut self) -> io::Result<()> {
        if !self.synced {
            self.file.as_ref().ok_or_else(|| io::Error::other("pending file already closed"))?.sync_data()?;
            self.synced = true;
        }
        Ok(())
    }

    /// Makes the file durable at its destination: data fsynced, renamed into place, the destination
    /// folder (and any folder created for it) fsynced. Returns only when all of it is on
    /// stable storage. On error, or when the destination exists and `Existing::Keep` was
    /// asked, nothing is left behind.
    pub fn commit(mut self, existing: Existing) -> io::Result<Written> {
        let dest = std::mem::take(&mut self.dest);
        let dir = dest.parent().ok_or_else(|| io::Error::other("instance path has no parent"))?;
        let existed = dest.exists();
        if existed && existing == Existing::Keep {
            return Ok(Written::KeptExisting);
        }
        self.sync_data()?;
        self.file = None;
        if rename_into_place(&self.tmp, &dest, existing)? {
            return Ok(Written::KeptExisting);
        }
        self.len = 0;
        self.tmp = PathBuf::new();
        sync_dir(dir)?;
        for d in &self.created {
            if let Some(parent) = d.parent() {
                sync_dir(parent)?;
            }
        }
        Ok(if existed { Written::Replaced } else { Written::New })
    }
}

impl Drop for PendingFile {
    fn drop(&mut self) {
        if !self.tmp.as_os_str().is_empty() {
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

/// Asks the kernel to start writing a range back now (Linux `sync_file_range`), so that the
/// disk works while the network still delivers the rest. Durability still comes from the
/// fsync in `commit`; this only moves work earlier, and a failure here changes nothing.
fn start_writeback(f: &File, offset: u64, len: u64) {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        // SAFETY: a valid open descriptor; the call only schedules write-back of that range.
        unsafe {
            libc::sync_file_range(f.as_raw_fd(), offset as i64, len as i64, libc::SYNC_FILE_RANGE_WRITE);
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (f, offset, len);
}

/// Renames `tmp` to `dest`. With `Existing::Keep` it never replaces a file that appeared in the
/// meantime (a concurrent association storing the same instance) and returns `true` then.
fn rename_into_place(tmp: &Path, dest: &Path, existing: Existing) -> io::Result<bool> {
    #[cfg(target_os = "linux")]
    if existing == Existing::Keep {
        use rustix::fs::{renameat_with, RenameFlags, CWD};
        return match renameat_with(CWD, tmp, CWD, dest, RenameFlags::NOREPLACE) {
            Ok(()) => Ok(false),
            Err(rustix::io::Errno::EXIST) => Ok(true),
            Err(e) => Err(e.into()),
        };
    }
    if existing == Existing::Keep && dest.exists() {
        return Ok(true);
    }
    fs::rename(tmp, dest)?;
    Ok(false)
}

/// Creates `dir` and any missing parents under `root`, and returns the folders it created,
/// outermost first. The caller makes each one durable in its parent (`sync_dir`) before it
/// relies on anything inside it.
fn create_dirs(root: &Path, dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut missing = Vec::new();
    let mut cur = dir;
    while !cur.is_dir() && cur != root {
        missing.push(cur.to_path_buf());
        cur = cur.parent().unwrap_or(root);
    }
    missing.reverse();
    let mut created = Vec::with_capacity(missing.len());
    for d in missing {
        match fs::create_dir(&d) {
            Ok(()) => created.push(d),
            // Another association created it: it makes that folder durable itself, and we
            // sync it too so that our acknowledgement never depends on theirs.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => created.push(d),
            Err(e) => return Err(e),
        }
    }
    Ok(created)
}

/// fsync of a directory, so that renames and creations inside it survive a power loss.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        File::open(dir)?.sync_all()
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}

/// Bytes available to an unprivileged writer on the file system holding `path`.
pub fn free_bytes(path: &Path) -> io::Result<u64> {
    #[cfg(unix)]
    {
        let s = rustix::fs::statvfs(path)?;
        Ok(s.f_bavail.saturating_mul(s.f_frsize))
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        Ok(u64::MAX)
    }
}

/// Removes leftovers of interrupted writes. Only call when no writer is running.
pub fn clear_tmp(root: &Path) -> io::Result<usize> {
    let mut n = 0;
    for entry in fs::read_dir(root.join(TMP_DIR))? {
        let entry = entry?;
        if entry.file_type()?.is_file() {
            fs::remove_file(entry.path())?;
            n += 1;
        }
    }
    Ok(n)
}

/// Instance files in leaf directories modified at or after `since` (seconds since the epoch).
/// Used after a crash to find files renamed into place whose index row was never committed.
pub fn files_in_dirs_modified_since(root: &Path, since: u64) -> io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let files = root.join(FILES_DIR);
    for a in read_dirs(&files)? {
        for b in read_dirs(&a)? {
            let mtime =
                fs::metadata(&b)?.modified()?.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
            if mtime + 2 < since {
                continue;
            }
            for f in fs::read_dir(&b)? {
                let p = f?.path();
                if p.extension().is_some_and(|e| e == "dcm") {
                    out.push(p.strip_prefix(root).unwrap_or(&p).to_path_buf());
                }
            }
        }
    }
    Ok(out)
}

fn read_dirs(dir: &Path) -> io::Result<Vec<PathBuf>> {
    match fs::read_dir(dir) {
        Ok(rd) => {
            let mut v = Vec::new();
            for e in rd {
                let e = e?;
                if e.file_type()?.is_dir() {
                    v.push(e.path());
                }
            }
            Ok(v)
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes `parts` to `root/rel` durably (see [`PendingFile::commit`]).
    fn write_durable(root: &Path, rel: &Path, parts: &[&[u8]], existing: Existing) -> io::Result<Written> {
        if existing == Existing::Keep && root.join(rel).exists() {
            return Ok(Written::KeptExisting);
        }
        let mut pending = PendingFile::create(root, rel)?;
        for p in parts {
            pending.append(p)?;
        }
        pending.commit(existing)
    }

    #[test]
    fn layout_fans_out_by_hash() {
        let p = relative_path("1.2.3.4");
        let parts: Vec<_> = p.iter().map(|c| c.to_string_lossy().into_owned()).collect();
        assert_eq!(parts[0], "files");
        assert_eq!(parts[1].len(), 2);
        assert_eq!(parts[2].len(), 2);
        assert!(parts[3].starts_with(&format!("{}{}", parts[1], parts[2])));
        assert_ne!(relative_path("1.2.3.4"), relative_path("1.2.3.5"));
    }

    #[test]
    fn durable_write_keeps_or_replaces() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join(TMP_DIR)).unwrap();
        let rel = relative_path("1.2.3");
        let w = write_durable(dir.path(), &rel, &[b"ab", b"cd"], Existing::Keep).unwrap();
        assert_eq!(w, Written::New);
        assert_eq!(fs::read(dir.path().join(&rel)).unwrap(), b"abcd");
        let w = write_durable(dir.path(), &rel, &[b"zz"], Existing::Keep).unwrap();
        assert_eq!(w, Written::KeptExisting);
        assert_eq!(fs::read(dir.path().join(&rel)).unwrap(), b"abcd");
        let w = write_durable(dir.path(), &rel, &[b"zz"], Existing::Replace).unwrap();
        assert_eq!(w, Written::Replaced);
        assert_eq!(fs::read(dir.path().join(&rel)).unwrap(), b"zz");
        assert_eq!(fs::read_dir(dir.path().join(TMP_DIR)).unwrap().count(), 0);
        let found = files_in_dirs_modified_since(dir.path(), 0).unwrap();
        assert_eq!(found, vec![rel]);
    }
}
