//! Versioned SQLite migrations. `PRAGMA user_version` records how many have been applied;
//! each runs once, in its own transaction, in order. Never edit a released migration: add one.

use rusqlite::Connection;

/// Migration `i` brings the schema from version `i` to `i + 1`.
const MIGRATIONS: &[&str] = &[
    // 1: the DICOM index (patient / study / series / instance).
    r#"
    CREATE TABLE patients (
        id          INTEGER PRIMARY KEY,
        patient_id  TEXT NOT NULL,          -- (0010,0020), '' when absent
        issuer      TEXT NOT NULL,          -- (0010,0021), '' when absent
        name        TEXT NOT NULL,          -- (0010,0010)
        birth_date  TEXT NOT NULL,          -- (0010,0030) DA
        sex         TEXT NOT NULL,          -- (0010,0040)
        updated_at  TEXT NOT NULL,
        UNIQUE (patient_id, issuer)
    );
    CREATE INDEX patients_name ON patients (name);

    CREATE TABLE studies (
        id                  INTEGER PRIMARY KEY,
        study_uid           TEXT NOT NULL UNIQUE,   -- (0020,000D)
        patient_fk          INTEGER NOT NULL REFERENCES patients (id),
        study_date          TEXT NOT NULL,          -- (0008,0020) DA
        study_time          TEXT NOT NULL,          -- (0008,0030) TM
        accession_number    TEXT NOT NULL,          -- (0008,0050)
        study_id            TEXT NOT NULL,          -- (0020,0010)
        description         TEXT NOT NULL,          -- (0008,1030)
        referring_physician TEXT NOT NULL,          -- (0008,0090)
        created_at          TEXT NOT NULL,
        updated_at          TEXT NOT NULL
    );
    CREATE INDEX studies_patient ON studies (patient_fk);
    CREATE INDEX studies_date ON studies (study_date);
    CREATE INDEX studies_accession ON studies (accession_number);

    CREATE TABLE series (
        id              INTEGER PRIMARY KEY,
        series_uid      TEXT NOT NULL UNIQUE,   -- (0020,000E)
        study_fk        INTEGER NOT NULL REFERENCES studies (id),
        modality        TEXT NOT NULL,          -- (0008,0060)
        series_number   INTEGER,                -- (0020,0011)
        description     TEXT NOT NULL,          -- (0008,103E)
        body_part       TEXT NOT NULL,          -- (0018,0015)
        created_at      TEXT NOT NULL
    );
    CREATE INDEX series_study ON series (study_fk);

    CREATE TABLE instances (
        id               INTEGER PRIMARY KEY,
        sop_uid          TEXT NOT NULL UNIQUE,  -- (0008,0018)
        series_fk        INTEGER NOT NULL REFERENCES series (id),
        sop_class        TEXT NOT NULL,         -- (0008,0016)
        instance_number  INTEGER,               -- (0020,0013)
        transfer_syntax  TEXT NOT NULL,         -- as received
        rows             INTEGER,
        columns          INTEGER,
        frames           INTEGER,
        path             TEXT NOT NULL UNIQUE,  -- relative to the data directory
        size             INTEGER NOT NULL,      -- bytes of the stored Part 10 file
        received_at      TEXT NOT NULL,         -- RFC 3339, UTC
        calling_ae       TEXT NOT NULL          -- who sent it ('' for a CLI import)
    );
    CREATE INDEX instances_series ON instances (series_fk);
    "#,
    // 2: staff accounts, sessions, AI results as the UI shows them, and reports.
    r#"
    CREATE TABLE users (
        id                   INTEGER PRIMARY KEY,
        name                 TEXT NOT NULL UNIQUE COLLATE NOCASE,
        role                 TEXT NOT NULL CHECK (role IN
                                 ('admin', 'radiologist', 'technologist', 'referrer', 'auditor')),
        password_hash        TEXT NOT NULL,          -- PHC string, argon2id
        must_change_password INTEGER NOT NULL DEFAULT 1,
        disabled             INTEGER NOT NULL DEFAULT 0,
        failed_logins        INTEGER NOT NULL DEFAULT 0,  -- consecutive failures
        locked_until         INTEGER NOT NULL DEFAULT 0,  -- Unix seconds
        created_at           TEXT NOT NULL,
        password_changed_at  TEXT NOT NULL
    );

    -- A session is known by the SHA-256 of its cookie token: a copy of the database does not
    -- hold live tokens.
    CREATE TABLE sessions (
        token_hash  BLOB PRIMARY KEY,
        user_fk     INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
        csrf        TEXT NOT NULL,
        created_at  INTEGER NOT NULL,   -- Unix seconds
        last_seen   INTEGER NOT NULL,   -- Unix seconds
        peer        TEXT NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX sessions_user ON sessions (user_fk);

    -- AI state of a study as the worklist shows it; the pipeline writes it.
    CREATE TABLE study_ai (
        study_fk    INTEGER PRIMARY KEY REFERENCES studies (id),
        status      TEXT NOT NULL CHECK (status IN ('pending', 'running', 'done', 'failed')),
        priority    INTEGER NOT NULL DEFAULT 0,   -- 0 routine .. 3 critical
        detail      TEXT NOT NULL DEFAULT '',
        updated_at  TEXT NOT NULL
    );
    CREATE INDEX study_ai_priority ON study_ai (priority);

    -- One AI finding: a model's output on one instance. Always AI-generated, never final.
    CREATE TABLE findings (
        id              INTEGER PRIMARY KEY,
        study_fk        INTEGER NOT NULL REFERENCES studies (id),
        sop_uid         TEXT NOT NULL,
        model_name      TEXT NOT NULL,
        model_version   TEXT NOT NULL,
        label           TEXT NOT NULL,
        probability     REAL NOT NULL,          -- calibrated
        threshold       REAL NOT NULL,
        saliency_w      INTEGER NOT NULL DEFAULT 0,
        saliency_h      INTEGER NOT NULL DEFAULT 0,
        saliency        BLOB,                   -- saliency_w*saliency_h bytes, 0..255, row-major
        created_at      TEXT NOT NULL
    );
    CREATE INDEX findings_study ON findings (study_fk);

    CREATE TABLE finding_feedback (
        id          INTEGER PRIMARY KEY,
        finding_fk  INTEGER NOT NULL REFERENCES findings (id),
        user_fk     INTEGER NOT NULL REFERENCES users (id),
        agrees      INTEGER NOT NULL,
        comment     TEXT NOT NULL,
        created_at  TEXT NOT NULL
    );
    CREATE INDEX finding_feedback_finding ON finding_feedback (finding_fk);

    -- A derived series (for example AI-enhanced) of an original series.
    CREATE TABLE derived_series (
        series_fk   INTEGER NOT NULL REFERENCES series (id),
        derived_fk  INTEGER NOT NULL REFERENCES series (id),
        kind        TEXT NOT NULL,              -- 'enhanced'
        PRIMARY KEY (series_fk, kind)
    );

    -- Reports: version 1 is the first report of a study; an amendment of a signed version is
    -- the next version. A signed version never changes (trigger below).
    CREATE TABLE reports (
        id          INTEGER PRIMARY KEY,
        study_fk    INTEGER NOT NULL REFERENCES studies (id),
        version     INTEGER NOT NULL,
        amends_fk   INTEGER REFERENCES reports (id),
        body        TEXT NOT NULL,
        author_fk   INTEGER NOT NULL REFERENCES users (id),
        updated_at  TEXT NOT NULL,
        signed_by   INTEGER REFERENCES users (id),
        signed_at   TEXT,
        UNIQUE (study_fk, version)
    );
    CREATE TRIGGER reports_signed_are_immutable BEFORE UPDATE ON reports
        WHEN OLD.signed_at IS NOT NULL
        BEGIN SELECT RAISE(ABORT, 'a signed report cannot change; amend it'); END;
    CREATE TRIGGER reports_signed_are_kept BEFORE DELETE ON reports
        WHEN OLD.signed_at IS NOT NULL
        BEGIN SELECT RAISE(ABORT, 'a signed report cannot be deleted'); END;

    -- Every saved draft text, so that edits can be followed.
    CREATE TABLE report_revisions (
        id          INTEGER PRIMARY KEY,
        report_fk   INTEGER NOT NULL REFERENCES reports (id),
        body        TEXT NOT NULL,
        author_fk   INTEGER NOT NULL REFERENCES users (id),
        saved_at    TEXT NOT NULL
    );
    CREATE INDEX report_revisions_report ON report_revisions (report_fk);
    CREATE INDEX studies_created ON studies (created_at);
    CREATE INDEX studies_updated ON studies (updated_at);   -- the search indexer's cursor

    -- Durable pipeline jobs (enhance, classify, report, send): the admin jobs page shows them
    -- and retries failed ones; the pipeline's workers claim queued ones.
    CREATE TABLE jobs (
        id          INTEGER PRIMARY KEY,
        study_fk    INTEGER NOT NULL REFERENCES studies (id),
        kind        TEXT NOT NULL,
        status      TEXT NOT NULL CHECK (status IN ('queued', 'running', 'done', 'failed')),
        progress    REAL NOT NULL DEFAULT 0,    -- 0..1
        attempts    INTEGER NOT NULL DEFAULT 0,
        error       TEXT NOT NULL DEFAULT '',
        created_at  TEXT NOT NULL,
        updated_at  TEXT NOT NULL
    );
    CREATE INDEX jobs_status ON jobs (status, id);

    -- DICOM nodes Lucent sends results to (and verifies with C-ECHO).
    CREATE TABLE destinations (
        id          INTEGER PRIMARY KEY,
        name        TEXT NOT NULL UNIQUE COLLATE NOCASE,
        ae_title    TEXT NOT NULL,
        host        TEXT NOT NULL,
        port        INTEGER NOT NULL CHECK (port BETWEEN 1 AND 65535),
        created_at  TEXT NOT NULL
    );
    "#,
];

pub fn migrate(conn: &mut Connection) -> Result<usize, super::StoreError> {
    let current: usize = conn.query_row("PRAGMA user_version", [], |r| r.get::<_, i64>(0))? as usize;
    if current > MIGRATIONS.len() {
        return Err(super::StoreError::Index(format!(
            "database schema version {current} is newer than this build supports ({}); \
             upgrade lucent",
            MIGRATIONS.len()
        )));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(current) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)?;
        tx.commit()?;
    }
    Ok(MIGRATIONS.len() - current)
}
