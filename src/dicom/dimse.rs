//! DIMSE command sets (PS3.7 section 9 and annex E): decoding requests and encoding responses.
//!
//! Command sets are always Implicit VR Little Endian and flat (no sequences), so a small
//! dedicated codec is clearer and faster than a general data set parser, and it bounds every
//! length it reads against the buffer.

use std::collections::BTreeMap;

pub const C_STORE_RQ: u16 = 0x0001;
pub const C_STORE_RSP: u16 = 0x8001;
pub const C_ECHO_RQ: u16 = 0x0030;
pub const C_ECHO_RSP: u16 = 0x8030;
/// Command Data Set Type value meaning "no data set follows".
pub const NO_DATA_SET: u16 = 0x0101;

const AFFECTED_SOP_CLASS_UID: u16 = 0x0002;
const COMMAND_FIELD: u16 = 0x0100;
const MESSAGE_ID: u16 = 0x0110;
const MESSAGE_ID_BEING_RESPONDED_TO: u16 = 0x0120;
const PRIORITY: u16 = 0x0700;
const COMMAND_DATA_SET_TYPE: u16 = 0x0800;
const STATUS: u16 = 0x0900;
const ERROR_COMMENT: u16 = 0x0902;
const AFFECTED_SOP_INSTANCE_UID: u16 = 0x1000;

/// DIMSE status codes used by the services Lucent provides (PS3.4 annex B, PS3.7 annex C).
pub mod status {
    pub const SUCCESS: u16 = 0x0000;
    /// Refused: out of resources.
    pub const OUT_OF_RESOURCES: u16 = 0xA700;
    /// Error: data set does not match SOP class.
    pub const DATA_SET_DOES_NOT_MATCH_SOP_CLASS: u16 = 0xA900;
    /// Error: cannot understand.
    pub const CANNOT_UNDERSTAND: u16 = 0xC000;
    /// Failure: processing failure.
    pub const PROCESSING_FAILURE: u16 = 0x0110;
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CommandError {
    #[error("command set is truncated at byte {0}")]
    Truncated(usize),
    #[error("command element ({0:04X},{1:04X}) is not in group 0000")]
    WrongGroup(u16, u16),
    #[error("command set has no {0}")]
    Missing(&'static str),
    #[error("command element {0} has a bad value")]
    BadValue(&'static str),
}

/// A decoded DIMSE request command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    pub command_field: u16,
    pub message_id: u16,
    pub affected_sop_class_uid: String,
    pub affected_sop_instance_uid: String,
    pub priority: u16,
    pub has_data_set: bool,
}

impl Command {
    pub fn decode(bytes: &[u8]) -> Result<Command, CommandError> {
        let elements = parse_elements(bytes)?;
        let us = |e: u16, name: &'static str| read_us(&elements, e, name);
        let text = |e: u16| elements.get(&e).map(|v| trim_uid(v)).unwrap_or_default();
        let command_field = us(COMMAND_FIELD, "Command Field (0000,0100)")?;
        let message_id = us(MESSAGE_ID, "Message ID (0000,0110)")?;
        let data_set_type = us(COMMAND_DATA_SET_TYPE, "Command Data Set Type (0000,0800)")?;
        Ok(Command {
            command_field,
            message_id,
            affected_sop_class_uid: text(AFFECTED_SOP_CLASS_UID),
            affected_sop_instance_uid: text(AFFECTED_SOP_INSTANCE_UID),
            priority: us(PRIORITY, "Priority").unwrap_or(0),
            has_data_set: data_set_type != NO_DATA_SET,
        })
    }
}

/// A response command: C-ECHO-RSP or C-STORE-RSP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub command_field: u16,
    pub message_id_being_responded_to: u16,
    pub affected_sop_class_uid: String,
    pub affected_sop_instance_uid: Option<String>,
    pub status: u16,
    pub error_comment: Option<String>,
}

impl Response {
    pub fn encode(&self) -> Vec<u8> {
        let mut body = Vec::with_capacity(160);
        put_text(&mut body, AFFECTED_SOP_CLASS_UID, &self.affected_sop_class_uid, 0);
        put_us(&mut body, COMMAND_FIELD, self.command_field);
        put_us(&mut body, MESSAGE_ID_BEING_RESPONDED_TO, self.message_id_being_responded_to);
        put_us(&mut body, COMMAND_DATA_SET_TYPE, NO_DATA_SET);
        put_us(&mut body, STATUS, self.status);
        if let Some(c) = &self.error_comment {
            // LO: at most 64 characters, space padded.
            let c: String =
                c.chars().filter(|c| c.is_ascii() && !c.is_ascii_control() && *c != '\\').take(64).collect();
            put_text(&mut body, ERROR_COMMENT, &c, b' ');
        }
        if let Some(uid) = &self.affected_sop_instance_uid {
            put_text(&mut body, AFFECTED_SOP_INSTANCE_UID, uid, 0);
        }
        let mut out = Vec::with_capacity(body.len() + 12);
        out.extend_from_slice(&[0, 0, 0, 0, 4, 0, 0, 0]);
        out.extend_from_slice(&(body.len() as u32).to_le_bytes());
        out.extend_from_slice(&body);
        out
    }
}

/// A C-ECHO-RQ command set (Verification SOP Class), for the echo SCU.
pub fn echo_request(message_id: u16) -> Vec<u8> {
    let mut body = Vec::with_capacity(64);
    put_text(&mut body, AFFECTED_SOP_CLASS_UID, super::negotiation::VERIFICATION, 0);
    put_us(&mut body, COMMAND_FIELD, C_ECHO_RQ);
    put_us(&mut body, MESSAGE_ID, message_id);
    put_us(&mut body, COMMAND_DATA_SET_TYPE, NO_DATA_SET);
    // (0000,0000) Command Group Length, UL, length 4.
    let mut out = Vec::with_capacity(body.len() + 12);
    out.extend_from_slice(&[0, 0, 0, 0, 4, 0, 0, 0]);
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&body);
    out
}

/// (Command Field, Status) of a response command set.
pub fn response_status(bytes: &[u8]) -> Result<(u16, u16), CommandError> {
    let elements = parse_elements(bytes)?;
    Ok((
        read_us(&elements, COMMAND_FIELD, "Command Field (0000,0100)")?,
        read_us(&elements, STATUS, "Status (0000,0900)")?,
    ))
}

/// A US command element (exactly two bytes).
fn read_us(elements: &BTreeMap<u16, &[u8]>, e: u16, name: &'static str) -> Result<u16, CommandError> {
    let v = elements.get(&e).ok_or(CommandError::Missing(name))?;
    if v.len() != 2 {
        return Err(CommandError::BadValue(name));
    }
    Ok(u16::from_le_bytes([v[0], v[1]]))
}

fn put_header(out: &mut Vec<u8>, element: u16, len: usize) {
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&element.to_le_bytes());
    out.extend_from_slice(&(len as u32).to_le_bytes());
}

fn put_us(out: &mut Vec<u8>, element: u16, v: u16) {
    put_header(out, element, 2);
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_text(out: &mut Vec<u8>, element: u16, v: &str, pad: u8) {
    let padded = v.len() + (v.len() & 1);
    put_header(out, element, padded);
    out.extend_from_slice(v.as_bytes());
    if v.len() & 1 == 1 {
        out.push(pad);
    }
}

fn trim_uid(v: &[u8]) -> String {
    String::from_utf8_lossy(v).trim_end_matches(['\0', ' ']).trim_start().to_string()
}

fn parse_elements(bytes: &[u8]) -> Result<BTreeMap<u16, &[u8]>, CommandError> {
    let mut map = BTreeMap::new();
    let mut pos = 0usize;
    while pos < bytes.len() {
        let header = bytes.get(pos..pos + 8).ok_or(CommandError::Truncated(pos))?;
        let group = u16::from_le_bytes([header[0], header[1]]);
        let element = u16::from_le_bytes([header[2], header[3]]);
        let len = u32::from_le_bytes([header[4], header[5], header[6], header[7]]) as usize;
        if group != 0x0000 {
            return Err(CommandError::WrongGroup(group, element));
        }
        let start = pos + 8;
        let value = start.checked_add(len).and_then(|end| bytes.get(start..end)).ok_or(CommandError::Truncated(pos))?;
        map.insert(element, value);
        pos = start + len;
    }
    Ok(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(field: u16, with_data: bool) -> Vec<u8> {
        let mut body = Vec::new();
        put_text(&mut body, AFFECTED_SOP_CLASS_UID, "1.2.840.10008.5.1.4.1.1.2", 0);
        put_us(&mut body, COMMAND_FIELD, field);
        put_us(&mut body, MESSAGE_ID, 7);
        put_us(&mut body, PRIORITY, 0);
        put_us(&mut body, COMMAND_DATA_SET_TYPE, if with_data { 0x0000 } else { NO_DATA_SET });
        put_text(&mut body, AFFECTED_SOP_INSTANCE_UID, "1.2.3.4", 0);
        body
    }

    #[test]
    fn decodes_a_store_request() {
        let c = Command::decode(&request(C_STORE_RQ, true)).unwrap();
        assert_eq!(c.command_field, C_STORE_RQ);
        assert_eq!(c.message_id, 7);
        assert_eq!(c.affected_sop_class_uid, "1.2.840.10008.5.1.4.1.1.2");
        assert_eq!(c.affected_sop_instance_uid, "1.2.3.4");
        assert!(c.has_data_set);
    }

    #[test]
    fn rejects_truncated_and_foreign_elements() {
        let full = request(C_ECHO_RQ, false);
        assert!(matches!(Command::decode(&full[..full.len() - 3]), Err(CommandError::Truncated(_))));
        let mut wrong = full.clone();
        wrong[0] = 8;
        assert!(matches!(Command::decode(&wrong), Err(CommandError::WrongGroup(8, _))));
        let mut huge = full;
        huge[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(Command::decode(&huge), Err(CommandError::Truncated(0))));
    }

    #[test]
    fn response_round_trips_with_group_length() {
        let r = Response {
            command_field: C_STORE_RSP,
            message_id_being_responded_to: 7,
            affected_sop_class_uid: "1.2.840.10008.5.1.4.1.1.2".into(),
            affected_sop_instance_uid: Some("1.2.3".into()),
            status: status::OUT_OF_RESOURCES,
            error_comment: Some("disk full".into()),
        };
        let bytes = r.encode();
        let map = parse_elements(&bytes).unwrap();
        let gl = u32::from_le_bytes(map[&0x0000].try_into().unwrap()) as usize;
        assert_eq!(gl, bytes.len() - 12);
        assert_eq!(map[&STATUS], &0xA700u16.to_le_bytes());
        assert_eq!(trim_uid(map[&AFFECTED_SOP_INSTANCE_UID]), "1.2.3");
        assert_eq!(map[&ERROR_COMMENT], b"disk full ");
    }
}
