//! Lucent as a DICOM client: C-ECHO to a configured destination (the admin page's "Verify").
//! Sending results back (C-STORE SCU) joins this file with the pipeline issue.

use std::time::Duration;

use dicom_ul::association::client::ClientAssociationOptions;
use dicom_ul::pdu::{PDataValue, PDataValueType, Pdu};

use super::dimse;
use super::negotiation::VERIFICATION;

/// Opens an association with `called_ae@host:port`, sends a C-ECHO and releases. `Ok` carries
/// the round-trip time; `Err` says what failed (connection, rejection, status).
pub fn echo(calling_ae: &str, called_ae: &str, host: &str, port: u16, timeout: Duration) -> Result<Duration, String> {
    let t0 = std::time::Instant::now();
    let addr = format!("{called_ae}@{host}:{port}");
    let mut assoc = ClientAssociationOptions::new()
        .calling_ae_title(calling_ae.to_string())
        .called_ae_title(called_ae.to_string())
        .with_abstract_syntax(VERIFICATION)
        .connection_timeout(timeout)
        .read_timeout(timeout)
        .establish_with(&addr)
        .map_err(|e| format!("association with {addr} failed: {e}"))?;
    let pc = assoc
        .presentation_contexts()
        .first()
        .map(|p| p.id)
        .ok_or_else(|| format!("{addr} accepted no presentation context for Verification"))?;
    let rq = Pdu::PData {
        data: vec![PDataValue {
            presentation_context_id: pc,
            value_type: PDataValueType::Command,
            is_last: true,
            data: dimse::echo_request(1),
        }],
    };
    assoc.send(&rq).map_err(|e| format!("sending C-ECHO to {addr}: {e}"))?;
    let status = match assoc.receive().map_err(|e| format!("waiting for the C-ECHO response: {e}"))? {
        Pdu::PData { data } if !data.is_empty() => {
            let bytes: Vec<u8> = data.into_iter().flat_map(|v| v.data).collect();
            let (field, status) = dimse::response_status(&bytes).map_err(|e| format!("bad C-ECHO response: {e}"))?;
            if field != dimse::C_ECHO_RSP {
                return Err(format!("{addr} answered with command field {field:#06x}, not C-ECHO-RSP"));
            }
            status
        }
        other => return Err(format!("{addr} answered {other:?} instead of a C-ECHO response")),
    };
    let _ = assoc.release();
    if status != dimse::status::SUCCESS {
        return Err(format!("{addr} answered C-ECHO with status {status:#06x}"));
    }
    Ok(t0.elapsed())
}
