//! The Storage Service Class SCP (PS3.4 annex B): checks a received data set, stores it
//! through `store`, and maps every outcome to a DIMSE status. Runs on blocking threads.
//!
//! A C-STORE is streamed: [`begin`] runs when the command arrives and opens the instance's
//! temporary file, [`Receiving::append`] writes the data set while it is still on the wire,
//! [`check`] parses the complete data set while [`Receiving::sync`] flushes it, and [`commit`]
//! makes it durable. Success is answered only when `Store::finish` has made the instance
//! durable and indexed it.

use super::dimse::{status, Command};
use super::instance::{self, InstanceError};
use super::negotiation::Accepted;
use crate::store::{Incoming, InstanceAttrs, PutOutcome, Store, StoreError};

/// The status to answer and an optional Error Comment.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub status: u16,
    pub comment: Option<String>,
}

impl Outcome {
    fn success() -> Outcome {
        Outcome { status: status::SUCCESS, comment: None }
    }

    fn fail(status: u16, comment: impl Into<String>) -> Outcome {
        Outcome { status, comment: Some(comment.into()) }
    }

    pub fn internal(comment: String) -> Outcome {
        Outcome::fail(status::PROCESSING_FAILURE, comment)
    }
}

/// An instance whose data set is arriving: the store's temporary file, already holding the
/// Part 10 header.
pub struct Receiving {
    incoming: Incoming,
}

impl Receiving {
    /// Writes the next received piece of the data set.
    pub fn append(&mut self, bytes: &[u8]) -> Result<(), Outcome> {
        self.incoming.append(bytes).map_err(|e| storage_failure("", &e))
    }

    /// Flushes what was written to stable storage (overlapped with [`check`]).
    pub fn sync(&mut self) -> Result<(), Outcome> {
        self.incoming.sync().map_err(|e| storage_failure("", &e))
    }
}

/// Called when a C-STORE-RQ command arrives, before its data set: checks the command against
/// its presentation context and opens the instance in the store. An `Err` is the status to
/// answer once the data set has been received (and discarded).
pub fn begin(store: &Store, command: &Command, context: &Accepted, calling_ae: &str) -> Result<Receiving, Outcome> {
    let sop_class = command.affected_sop_class_uid.as_str();
    let sop_uid = command.affected_sop_instance_uid.as_str();
    if sop_class != context.abstract_syntax {
        return Err(Outcome::fail(
            status::DATA_SET_DOES_NOT_MATCH_SOP_CLASS,
            format!("SOP class {sop_class} sent on a {} context", context.abstract_syntax),
        ));
    }
    if sop_uid.is_empty() {
        return Err(Outcome::fail(status::CANNOT_UNDERSTAND, "the command has no Affected SOP Instance UID"));
    }
    let mut incoming = store.begin(sop_uid).map_err(|e| storage_failure(sop_uid, &e))?;
    let header = instance::part10_header(sop_class, sop_uid, &context.transfer_syntax, calling_ae);
    incoming.append(&header).map_err(|e| storage_failure(sop_uid, &e))?;
    Ok(Receiving { incoming })
}

/// Checks the complete data set against its command: the index attributes, or the status to
/// answer. Runs while the data set's file is being flushed.
pub fn check(command: &Command, context: &Accepted, data: &[u8], calling_ae: &str) -> Result<InstanceAttrs, Outcome> {
    let sop_class = command.affected_sop_class_uid.as_str();
    let sop_uid = command.affected_sop_instance_uid.as_str();
    instance::check(data, &context.transfer_syntax, Some((sop_class, sop_uid)), calling_ae).map_err(|e| match e {
        InstanceError::SopClassMismatch { .. } => {
            Outcome::fail(status::DATA_SET_DOES_NOT_MATCH_SOP_CLASS, e.to_string())
        }
        e => {
            tracing::warn!(sop_uid, error = %e, "rejected data set");
            Outcome::fail(status::CANNOT_UNDERSTAND, e.to_string())
        }
    })
}

/// Makes a checked instance durable and indexes it; the status to answer.
pub fn commit(store: &Store, receiving: Receiving, attrs: InstanceAttrs) -> Outcome {
    let sop_uid = attrs.sop_uid.clone();
    let t0 = std::time::Instant::now();
    let put = store.finish(receiving.incoming, attrs);
    tracing::debug!(sop_uid, store_us = t0.elapsed().as_micros() as u64, "C-STORE commit");
    match put {
        Ok(PutOutcome::Stored | PutOutcome::Replaced) => Outcome::success(),
        Ok(PutOutcome::Duplicate) => {
            tracing::debug!(sop_uid, "duplicate instance: kept the stored copy");
            Outcome::success()
        }
        Err(e) => storage_failure(&sop_uid, &e),
    }
}

fn storage_failure(sop_uid: &str, e: &StoreError) -> Outcome {
    if e.is_out_of_space() {
        tracing::warn!(sop_uid, error = %e, "out of resources");
        Outcome::fail(status::OUT_OF_RESOURCES, "out of resources: free disk space below the watermark")
    } else {
        tracing::error!(sop_uid, error = %e, "storing failed");
        Outcome::internal(format!("storage failure: {e}"))
    }
}
