//! Free-text search over studies: patient name and ID, accession number, study and series
//! descriptions, and report text, in a tantivy index under `<data-dir>/search/`.
//!
//! Owns: the index files and the query language (words, each matched as a prefix, all
//! required). It follows the database: [`SearchIndex::sync`] reads studies changed since the
//! cursor stored in the last commit's payload, so ingest (network or CLI), report saves and a
//! crash between them all converge; the index can be deleted and rebuilt at any time.
//! Must not: write SQL (it reads through `store::Db`) or decide who may see a result (the web
//! layer filters by role).

use std::collections::HashSet;
use std::path::Path;
use std::sync::Mutex;

use tantivy::collector::TopDocs;
use tantivy::query::{BooleanQuery, Occur, Query, RegexQuery};
use tantivy::schema::{Field, Schema, Value, STORED, STRING, TEXT};
use tantivy::{doc, Index, IndexReader, IndexWriter, ReloadPolicy, TantivyDocument, Term};

use crate::store::Db;

pub const SEARCH_DIR: &str = "search";
/// Studies read from the database per sync step.
const BATCH: u64 = 500;
/// Most words a query may hold.
const MAX_WORDS: usize = 8;

#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    #[error("search index: {0}")]
    Index(#[from] tantivy::TantivyError),
    #[error("search index: {0}")]
    Store(#[from] crate::store::StoreError),
    #[error("search index: {0}")]
    Io(#[from] std::io::Error),
}

struct Fields {
    uid: Field,
    patient: Field,
    accession: Field,
    description: Field,
    report: Field,
}

/// Where indexing has got to: the newest `updated_at` indexed, and every (study, `updated_at`)
/// indexed within [`LATE_COMMIT_SECS`] of it. A timestamp is taken before its transaction
/// commits, so a row can become visible after a newer one was indexed; each sync therefore
/// looks back that far and skips only the exact versions it has already indexed.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct Cursor {
    at: String,
    recent: Vec<(String, String)>,
}

/// How late (seconds) a commit may become visible after its `updated_at` was taken. Index and
/// report transactions take milliseconds; this leaves a wide margin.
const LATE_COMMIT_SECS: u64 = 10;

pub struct SearchIndex {
    index: Index,
    reader: IndexReader,
    fields: Fields,
    writer: Mutex<IndexWriter>,
}

impl SearchIndex {
    /// Opens the index in `<data_dir>/search`, creating it when missing. An index that cannot
    /// be opened (older format, damage) is moved aside and rebuilt from the database.
    pub fn open(data_dir: &Path) -> Result<SearchIndex, SearchError> {
        let dir = data_dir.join(SEARCH_DIR);
        std::fs::create_dir_all(&dir)?;
        let mut sb = Schema::builder();
        let fields = Fields {
            uid: sb.add_text_field("study_uid", STRING | STORED),
            patient: sb.add_text_field("patient", TEXT),
            accession: sb.add_text_field("accession", TEXT),
            description: sb.add_text_field("description", TEXT),
            report: sb.add_text_field("report", TEXT),
        };
        let schema = sb.build();
        let open = |schema: Schema| -> tantivy::Result<Index> {
            let mmap = tantivy::directory::MmapDirectory::open(&dir)
                .map_err(|e| tantivy::TantivyError::SystemError(e.to_string()))?;
            Index::open_or_create(mmap, schema)
        };
        let index = match open(schema.clone()) {
            Ok(i) => i,
            Err(e) => {
                tracing::warn!(error = %e, "search index unusable: rebuilding it from the database");
                let aside = data_dir.join(format!("{SEARCH_DIR}.broken-{}", std::process::id()));
                std::fs::rename(&dir, &aside)?;
                std::fs::create_dir_all(&dir)?;
                open(schema)?
            }
        };
        let writer = index.writer_with_num_threads(1, 15_000_000)?;
        let reader = index.reader_builder().reload_policy(ReloadPolicy::Manual).try_into()?;
        Ok(SearchIndex { index, reader, fields, writer: Mutex::new(writer) })
    }

    fn cursor(&self) -> Cursor {
        self.index
            .load_metas()
            .ok()
            .and_then(|m| m.payload)
            .and_then(|p| serde_json::from_str(&p).ok())
            .unwrap_or_default()
    }

    /// Indexes every study changed since the last sync. Returns how many were (re)indexed.
    pub fn sync(&self, db: &Db) -> Result<usize, SearchError> {
        let mut writer = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        let mut cursor = self.cursor();
        let look_back = crate::store::rfc3339_ago(LATE_COMMIT_SECS);
        let mut from = if cursor.at < look_back { cursor.at.clone() } else { look_back.clone() };
        let mut seen: HashSet<(String, String)> = cursor.recent.drain(..).collect();
        let mut total = 0;
        loop {
            let docs = db.search_docs_since(&from, BATCH)?;
            let fresh: Vec<_> =
                docs.iter().filter(|d| !seen.contains(&(d.study_uid.clone(), d.updated_at.clone()))).collect();
            if !fresh.is_empty() {
                let f = &self.fields;
                for d in &fresh {
                    writer.delete_term(Term::from_field_text(f.uid, &d.study_uid));
                    writer.add_document(doc!(
                        f.uid => d.study_uid.as_str(),
                        f.patient => format!("{} {}", d.patient_name, d.patient_id),
                        f.accession => d.accession.as_str(),
                        f.description => d.description.as_str(),
                        f.report => d.report.as_str(),
                    ))?;
                    seen.insert((d.study_uid.clone(), d.updated_at.clone()));
                    if d.updated_at > cursor.at {
                        cursor.at = d.updated_at.clone();
                    }
                }
                total += fresh.len();
                // Keep only what a later sync can still see again.
                let horizon = if cursor.at < look_back { cursor.at.clone() } else { look_back.clone() };
                cursor.recent = seen.iter().filter(|(_, at)| *at >= horizon).cloned().collect();
                let mut commit = writer.prepare_commit()?;
                commit.set_payload(&serde_json::to_string(&cursor).unwrap_or_default());
                commit.commit()?;
            }
            let last = docs.last().map(|d| d.updated_at.clone());
            match last {
                // A full batch: go on after it (unless the whole batch shares one instant).
                Some(l) if docs.len() as u64 == BATCH && l != from => from = l,
                _ => break,
            }
        }
        if total > 0 {
            self.reader.reload()?;
        }
        Ok(total)
    }

    /// Study Instance UIDs matching every word of `text` (each word as a prefix, in any
    /// field), best first. Anything that is not a letter or digit separates words, so no input
    /// can form query syntax.
    pub fn search(&self, text: &str, limit: usize) -> Result<Vec<String>, SearchError> {
        let words: Vec<String> = text
            .split(|c: char| !c.is_alphanumeric())
            .filter(|w| !w.is_empty())
            .take(MAX_WORDS)
            .map(|w| w.to_lowercase())
            .collect();
        if words.is_empty() {
            return Ok(Vec::new());
        }
        let f = &self.fields;
        let mut must: Vec<(Occur, Box<dyn Query>)> = Vec::new();
        for w in &words {
            // `w` holds only letters and digits: a literal prefix in the regex language.
            let pattern = format!("{w}.*");
            let mut any: Vec<(Occur, Box<dyn Query>)> = Vec::new();
            for field in [f.patient, f.accession, f.description, f.report] {
                any.push((Occur::Should, Box::new(RegexQuery::from_pattern(&pattern, field)?)));
            }
            must.push((Occur::Must, Box::new(BooleanQuery::new(any))));
        }
        let query = BooleanQuery::new(must);
        let searcher = self.reader.searcher();
        let top = searcher.search(&query, &TopDocs::with_limit(limit.max(1)))?;
        let mut out = Vec::with_capacity(top.len());
        for (_, addr) in top {
            let d: TantivyDocument = searcher.doc(addr)?;
            if let Some(uid) = d.get_first(f.uid).and_then(|v| v.as_str()) {
                out.push(uid.to_string());
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{InstanceAttrs, NewInstance, Policy, Store};

    fn put(store: &Store, i: u32, name: &str) {
        let attrs = InstanceAttrs {
            patient_id: format!("P{i}"),
            patient_name: name.into(),
            study_uid: format!("1.2.3.{i}"),
            series_uid: format!("1.2.3.{i}.1"),
            sop_uid: format!("1.2.3.{i}.1.1"),
            ..Default::default()
        };
        store.put(&NewInstance { header: vec![0; 4], dataset: vec![1; 4], attrs }).unwrap();
    }

    #[test]
    fn a_commit_that_becomes_visible_late_is_still_indexed_and_nothing_is_redone() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), Policy { overwrite_duplicates: false, min_free_bytes: 0 }).unwrap();
        let db = Db::open(dir.path()).unwrap();
        let index = SearchIndex::open(dir.path()).unwrap();
        put(&store, 1, "EARLY^ANNA");
        assert_eq!(index.sync(&db).unwrap(), 1);
        assert_eq!(index.sync(&db).unwrap(), 0, "an unchanged database is not re-indexed");
        // A study whose timestamp is older than what was indexed (taken before its commit).
        put(&store, 2, "LATE^BEN");
        let back_dated = crate::store::rfc3339_ago(2);
        db.with(|c| c.execute("UPDATE studies SET updated_at = ?1 WHERE study_uid = '1.2.3.2'", [&back_dated]))
            .unwrap();
        assert!(back_dated < index.cursor().at, "the scenario: older than the newest indexed change");
        assert_eq!(index.sync(&db).unwrap(), 1, "the late study is found");
        assert_eq!(index.search("late", 10).unwrap(), vec!["1.2.3.2".to_string()]);
        assert_eq!(index.sync(&db).unwrap(), 0);
        // The cursor survives reopening (it lives in the commit payload).
        drop(index);
        let again = SearchIndex::open(dir.path()).unwrap();
        assert_eq!(again.sync(&db).unwrap(), 0);
        assert_eq!(again.search("early", 10).unwrap(), vec!["1.2.3.1".to_string()]);
        drop(store);
    }
}
