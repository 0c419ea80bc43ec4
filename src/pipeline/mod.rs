//! The study pipeline: what happens to a study after it arrives (enhance, classify, triage,
//! draft a report, send results back). Today it holds the report drafting; the durable job
//! queue joins it with the pipeline issue.
//!
//! Owns: turning AI results and study context into clinical drafts and priorities.
//! Must not: write SQL (it calls `store`), speak HTTP or DIMSE, or mark anything final: every
//! draft waits for a clinician's signature.

pub mod draft;
