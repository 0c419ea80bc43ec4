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
