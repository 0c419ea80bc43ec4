//! Security primitives of the appliance.
//!
//! Owns: cryptography (through `ring`, and `argon2` for password hashing), the appliance secret
//! (`<data-dir>/secret.key`), keyed derivations from it, password hashing and policy, session
//! and CSRF tokens ([`password`]), roles ([`rbac`]), and later the audit chain.
//! Must not: roll its own primitives (every MAC, hash and random byte comes from `ring`), log or
//! print key material or passwords, or touch the database.

pub mod password;
pub mod rbac;

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};

/// File name of the appliance secret inside the data directory.
pub const SECRET_FILE: &str = "secret.key";
/// Length of the appliance secret in bytes.
pub const SECRET_LEN: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum SecurityError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
    #[error("{path} holds {len} bytes; an appliance secret has exactly {SECRET_LEN}")]
    BadLength { path: PathBuf, len: usize },
    #[error("the system random number generator failed")]
    Random,
    #[error("password hashing failed: {0}")]
    Hash(String),
}

/// The appliance secret: 32 random bytes. Its `Debug` output never shows the bytes.
#[derive(Clone)]
pub struct Secret {
    key: hmac::Key,
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

impl Secret {
    /// A secret from known bytes (tests, and keys loaded from elsewhere).
    pub fn from_bytes(bytes: &[u8; SECRET_LEN]) -> Secret {
        Secret { key: hmac::Key::new(hmac::HMAC_SHA256, bytes) }
    }

    /// HMAC-SHA256 of `message` under the secret, domain-separated by `context` (a fixed,
    /// purpose-naming string such as `"deid/uid"`), so one secret serves several purposes
    /// without one derivation revealing another.
    pub fn derive(&self, context: &str, message: &[u8]) -> [u8; 32] {
        let mut ctx = hmac::Context::with_key(&self.key);
        ctx.update(&(context.len() as u64).to_be_bytes());
        ctx.update(context.as_bytes());
        ctx.update(message);
        let tag = ctx.sign();
        let mut out = [0u8; 32];
        out.copy_from_slice(tag.as_ref());
        out
    }

    /// Loads `<data_dir>/secret.key`, or creates it (32 bytes from the system random number
    /// generator, mode 0600, fsynced, published by an atomic link so that two processes
    /// starting at once end up with the same key).
    pub fn load_or_create(data_dir: &Path) -> Result<Secret, SecurityError> {
        let path = data_dir.join(SECRET_FILE);
        match std::fs::read(&path) {
            Ok(bytes) => return Self::check(&path, &bytes),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => return Err(SecurityError::Read { path, source }),
        }
        let werr = |path: &Path| {
            let path = path.to_path_buf();
            move |source| SecurityError::Write { path, source }
        };
        std::fs::create_dir_all(data_dir).map_err(werr(data_dir))?;
        let mut bytes = [0u8; SECRET_LEN];
        SystemRandom::new().fill(&mut bytes).map_err(|_| SecurityError::Random)?;
        let tmp = data_dir.join(format!(".{SECRET_FILE}.{}.tmp", std::process::id()));
        let written = (|| {
            let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp)?;
            f.write_all(&bytes)?;
            f.sync_all()
        })();
        if let Err(source) = written {
            let _ = std::fs::remove_file(&tmp);
            return Err(SecurityError::Write { path: tmp, source });
        }
        // A hard link never replaces an existing file: whoever links first wins.
        let linked = std::fs::hard_link(&tmp, &path);
        let _ = std::fs::remove_file(&tmp);
        match linked {
            Ok(()) => {
                std::fs::File::open(data_dir).and_then(|d| d.sync_all()).map_err(werr(data_dir))?;
                Ok(Self::from_bytes(&bytes))
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let bytes =
                    std::fs::read(&path).map_err(|source| SecurityError::Read { path: path.clone(), source })?;
                Self::check(&path, &bytes)
            }
            Err(source) => Err(SecurityError::Write { path, source }),
        }
    }

    fn check(path: &Path, bytes: &[u8]) -> Result<Secret, SecurityError> {
        let arr: &[u8; SECRET_LEN] =
            bytes.try_into().map_err(|_| SecurityError::BadLength { path: path.to_path_buf(), len: bytes.len() })?;
        if let Ok(meta) = std::fs::metadata(path) {
            if meta.permissions().mode() & 0o077 != 0 {
                tracing::warn!(path = %path.display(), "appliance secret is readable by group or others; chmod 600 it");
            }
        }
        Ok(Self::from_bytes(arr))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_is_created_once_with_mode_0600_and_reloaded() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let a = Secret::load_or_create(&data).unwrap();
        let path = data.join(SECRET_FILE);
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(meta.len(), SECRET_LEN as u64);
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        let b = Secret::load_or_create(&data).unwrap();
        assert_eq!(a.derive("t", b"x"), b.derive("t", b"x"));
        // No temporary file is left behind.
        assert_eq!(std::fs::read_dir(&data).unwrap().count(), 1);
        // Another data directory gets another key.
        let c = Secret::load_or_create(&dir.path().join("other")).unwrap();
        assert_ne!(a.derive("t", b"x"), c.derive("t", b"x"));
    }

    #[test]
    fn wrong_length_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(SECRET_FILE), b"short").unwrap();
        let err = Secret::load_or_create(dir.path()).unwrap_err();
        assert!(matches!(err, SecurityError::BadLength { len: 5, .. }), "{err}");
    }

    #[test]
    fn derivations_are_keyed_and_domain_separated() {
        let k = Secret::from_bytes(&[7; 32]);
        assert_eq!(k.derive("a", b"m"), k.derive("a", b"m"));
        assert_ne!(k.derive("a", b"m"), k.derive("b", b"m"));
        // The context length is bound in, so ("ab", "c") and ("a", "bc") differ.
        assert_ne!(k.derive("ab", b"c"), k.derive("a", b"bc"));
        assert_ne!(k.derive("a", b"m"), Secret::from_bytes(&[8; 32]).derive("a", b"m"));
        assert_eq!(format!("{k:?}"), "Secret(..)");
    }
}
