//! The Storage Service Class SCP (PS3.4 annex B): checks a received data set, stores it
//! through `store`, and maps every outcome to a DIMSE status. Runs on a blocking thread.
//! Success is answered only when `Store::put` has made the instance durable.

use super::dimse::{status, Command};
use super::instance::{self, InstanceError};
use super::negotiation::Accepted;
use crate::store::{PutOutcome, Store};

/// The status to answer and an optional Error Comment.
#[derive(Debug)]
pub struct Outcome {
    pub status: u16,
    pub comment: Option<String>,
}

impl Outcome {
    fn fail(status: u16, comment: impl Into<String>) -> Outcome {
        Outcome { status, comment: Some(comment.into()) }
    }

    pub fn internal(comment: String) -> Outcome {
        Outcome::fail(status::PROCESSING_FAILURE, comment)
    }
}

pub fn handle(store: &Store, command: &Command, context: &Accepted, data: Vec<u8>, calling_ae: &str) -> Outcome {
    let sop_class = command.affected_sop_class_uid.as_str();
    let sop_uid = command.affected_sop_instance_uid.as_str();
    if sop_class != context.abstract_syntax {
        return Outcome::fail(
            status::DATA_SET_DOES_NOT_MATCH_SOP_CLASS,
            format!("SOP class {sop_class} sent on a {} context", context.abstract_syntax),
        );
    }
    let t0 = std::time::Instant::now();
    let prepared = match instance::prepare(data, &context.transfer_syntax, Some((sop_class, sop_uid)), calling_ae) {
        Ok(p) => p,
        Err(e @ InstanceError::SopClassMismatch { .. }) => {
            return Outcome::fail(status::DATA_SET_DOES_NOT_MATCH_SOP_CLASS, e.to_string())
        }
        Err(e) => {
            tracing::warn!(sop_uid, error = %e, "rejected data set");
            return Outcome::fail(status::CANNOT_UNDERSTAND, e.to_string());
        }
    };
    let t1 = std::time::Instant::now();
    let put = store.put(&prepared);
    tracing::debug!(
        sop_uid,
        parse_us = (t1 - t0).as_micros() as u64,
        store_us = t1.elapsed().as_micros() as u64,
        "C-STORE timings"
    );
    match put {
        Ok(PutOutcome::Stored | PutOutcome::Replaced) => Outcome { status: status::SUCCESS, comment: None },
        Ok(PutOutcome::Duplicate) => {
            tracing::debug!(sop_uid, "duplicate instance: kept the stored copy");
            Outcome { status: status::SUCCESS, comment: None }
        }
        Err(e) if e.is_out_of_space() => {
            tracing::warn!(sop_uid, error = %e, "out of resources");
            Outcome::fail(status::OUT_OF_RESOURCES, "out of resources: free disk space below the watermark")
        }
        Err(e) => {
            tracing::error!(sop_uid, error = %e, "storing failed");
            Outcome::internal(format!("storage failure: {e}"))
        }
    }
}
