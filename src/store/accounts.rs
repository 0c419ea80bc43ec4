//! SQL for administration: staff accounts, their sessions, and DICOM destinations.

use rusqlite::{params, Connection, OptionalExtension};

use super::index::now_rfc3339;

/// One staff account. The role is kept as text here; `security::rbac::Role` parses it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: i64,
    pub name: String,
    pub role: String,
    pub password_hash: String,
    pub must_change_password: bool,
    pub disabled: bool,
    pub failed_logins: i64,
    /// Unix seconds; 0 when not locked.
    pub locked_until: i64,
    pub created_at: String,
    pub password_changed_at: String,
}

impl User {
    /// The account state as people read it, at Unix time `now`.
    pub fn state(&self, now: i64) -> &'static str {
        if self.disabled {
            "disabled"
        } else if self.locked_until > now {
            "locked"
        } else if self.must_change_password {
            "must change password"
        } else {
            "active"
        }
    }
}

/// A live session and its user.
#[derive(Debug, Clone)]
pub struct Session {
    pub user: User,
    pub csrf: String,
    pub created_at: i64,
    pub last_seen: i64,
}

const USER_COLUMNS: &str = "u.id, u.name, u.role, u.password_hash, u.must_change_password, u.disabled,
     u.failed_logins, u.locked_until, u.created_at, u.password_changed_at";

fn user_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<User> {
    Ok(User {
        id: r.get(0)?,
        name: r.get(1)?,
        role: r.get(2)?,
        password_hash: r.get(3)?,
        must_change_password: r.get(4)?,
        disabled: r.get(5)?,
        failed_logins: r.get(6)?,
        locked_until: r.get(7)?,
        created_at: r.get(8)?,
        password_changed_at: r.get(9)?,
    })
}

/// Inserts a user; `None` when the name is taken.
pub fn add_user(
    c: &Connection,
    name: &str,
    role: &str,
    hash: &str,
    must_change: bool,
) -> rusqlite::Result<Option<i64>> {
    let now = now_rfc3339();
    let n = c.execute(
        "INSERT INTO users (name, role, password_hash, must_change_password, created_at, password_changed_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?5) ON CONFLICT (name) DO NOTHING",
        params![name, role, hash, must_change, now],
    )?;
    Ok((n == 1).then(|| c.last_insert_rowid()))
}

pub fn user(c: &Connection, name: &str) -> rusqlite::Result<Option<User>> {
    c.prepare_cached(&format!("SELECT {USER_COLUMNS} FROM users u WHERE u.name = ?1"))?
        .query_row(params![name], user_row)
        .optional()
}

pub fn users(c: &Connection) -> rusqlite::Result<Vec<User>> {
    let mut stmt = c.prepare(&format!("SELECT {USER_COLUMNS} FROM users u ORDER BY u.name"))?;
    let rows = stmt.query_map([], user_row)?;
    rows.collect()
}

pub fn count_users_with_role(c: &Connection, role: &str) -> rusqlite::Result<i64> {
    c.query_row("SELECT count(*) FROM users WHERE role = ?1 AND disabled = 0", params![role], |r| r.get(0))
}

/// Sets a new password hash and ends the user's sessions except `keep` (the session that
/// changed it). Returns false when there is no such user.
pub fn set_password(
    c: &mut Connection,
    user_id: i64,
    hash: &str,
    must_change: bool,
    keep: Option<&[u8]>,
) -> rusqlite::Result<bool> {
    let tx = c.transaction()?;
    let n = tx.execute(
        "UPDATE users SET password_hash = ?2, must_change_password = ?3, password_changed_at = ?4,
                          failed_logins = 0, locked_until = 0
         WHERE id = ?1",
        params![user_id, hash, must_change, now_rfc3339()],
    )?;
    tx.execute("DELETE FROM sessions WHERE user_fk = ?1 AND token_hash IS NOT ?2", params![user_id, keep])?;
    tx.commit()?;
    Ok(n == 1)
}

/// Enables or disables an account; disabling ends its sessions. False when there is no such user.
pub fn set_disabled(c: &mut Connection, user_id: i64, disabled: bool) -> rusqlite::Result<bool> {
    let tx = c.transaction()?;
    let n = tx.execute("UPDATE users SET disabled = ?2 WHERE id = ?1", params![user_id, disabled])?;
    if disabled {
        tx.execute("DELETE FROM sessions WHERE user_fk = ?1", params![user_id])?;
    }
    tx.commit()?;
    Ok(n == 1)
}

/// Counts a failed login; after `max` consecutive failures the account is locked until
/// `now + lock_secs`. Returns the new failure count and lock time.
pub fn record_failure(
    c: &Connection,
    user_id: i64,
    max: i64,
    lock_secs: i64,
    now: i64,
) -> rusqlite::Result<(i64, i64)> {
    c.query_row(
        "UPDATE users SET
            failed_logins = failed_logins + 1,
            locked_until = CASE WHEN failed_logins + 1 >= ?2 THEN ?3 + ?4 ELSE locked_until END
         WHERE id = ?1 RETURNING failed_logins, locked_until",
        params![user_id, max, now, lock_secs],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
}

/// A successful login: clears the failure count and opens the session.
pub fn open_session(
    c: &mut Connection,
    token_hash: &[u8],
    user_id: i64,
    csrf: &str,
    now: i64,
    peer: &str,
) -> rusqlite::Result<()> {
    let tx = c.transaction()?;
    tx.execute("UPDATE users SET failed_logins = 0, locked_until = 0 WHERE id = ?1", params![user_id])?;
    tx.execute(
        "INSERT INTO sessions (token_hash, user_fk, csrf, created_at, last_seen, peer) VALUES (?1, ?2, ?3, ?4, ?4, ?5)",
        params![token_hash, user_id, csrf, now, peer],
    )?;
    tx.commit()
}

pub fn session(c: &Connection, token_hash: &[u8]) -> rusqlite::Result<Option<Session>> {
    c.prepare_cached(&format!(
        "SELECT {USER_COLUMNS}, s.csrf, s.created_at, s.last_seen
         FROM sessions s JOIN users u ON u.id = s.user_fk WHERE s.token_hash = ?1"
    ))?
    .query_row(params![token_hash], |r| {
        Ok(Session { user: user_row(r)?, csrf: r.get(10)?, created_at: r.get(11)?, last_seen: r.get(12)? })
    })
    .optional()
}

pub fn touch_session(c: &Connection, token_hash: &[u8], now: i64) -> rusqlite::Result<()> {
    c.prepare_cached("UPDATE sessions SET last_seen = ?2 WHERE token_hash = ?1")?.execute(params![token_hash, now])?;
    Ok(())
}

pub fn delete_session(c: &Connection, token_hash: &[u8]) -> rusqlite::Result<()> {
    c.execute("DELETE FROM sessions WHERE token_hash = ?1", params![token_hash])?;
    Ok(())
}

/// Deletes sessions idle since before `idle_before` or created before `created_before`.
pub fn purge_sessions(c: &Connection, idle_before: i64, created_before: i64) -> rusqlite::Result<usize> {
    c.execute("DELETE FROM sessions WHERE last_seen < ?1 OR created_at < ?2", params![idle_before, created_before])
}

/// A DICOM node results are sent to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    pub id: i64,
    pub name: String,
    pub ae_title: String,
    pub host: String,
    pub port: u16,
    pub created_at: String,
}

pub fn destinations(c: &Connection) -> rusqlite::Result<Vec<Destination>> {
    let mut stmt = c.prepare("SELECT id, name, ae_title, host, port, created_at FROM destinations ORDER BY name")?;
    let rows = stmt.query_map([], |r| {
        Ok(Destination {
            id: r.get(0)?,
            name: r.get(1)?,
            ae_title: r.get(2)?,
            host: r.get(3)?,
            port: r.get(4)?,
            created_at: r.get(5)?,
        })
    })?;
    rows.collect()
}

/// Adds a destination; false when the name is taken.
pub fn add_destination(c: &Connection, name: &str, ae: &str, host: &str, port: u16) -> rusqlite::Result<bool> {
    let n = c.execute(
        "INSERT INTO destinations (name, ae_title, host, port, created_at) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (name) DO NOTHING",
        params![name, ae, host, port, now_rfc3339()],
    )?;
    Ok(n == 1)
}

pub fn delete_destination(c: &Connection, id: i64) -> rusqlite::Result<bool> {
    Ok(c.execute("DELETE FROM destinations WHERE id = ?1", params![id])? == 1)
}
