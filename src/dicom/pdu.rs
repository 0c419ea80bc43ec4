//! PDU framing over tokio sockets (PS3.8 section 9.3).
//!
//! Association PDUs are decoded and encoded with dicom-ul's codec. P-DATA-TF is split into its
//! presentation data values here, without copying the PDU, because it carries every byte of
//! every image. Every length is checked against a limit before anything is allocated.

use dicom_ul::pdu::{AbortRQServiceProviderReason, Pdu};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

pub const PDU_ASSOCIATE_RQ: u8 = 0x01;
pub const PDU_P_DATA: u8 = 0x04;
pub const PDU_RELEASE_RQ: u8 = 0x05;
pub const PDU_ABORT: u8 = 0x07;

/// Largest A-ASSOCIATE-RQ accepted: generous for 128 contexts with many transfer syntaxes.
pub const MAX_ASSOCIATE_RQ: u32 = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum PduError {
    #[error("connection closed in the middle of a PDU")]
    Truncated,
    #[error("unrecognised PDU type 0x{0:02X}")]
    UnknownType(u8),
    #[error("PDU length {len} exceeds the limit of {max}")]
    TooLong { len: u32, max: u32 },
    #[error("malformed PDU: {0}")]
    Malformed(String),
    #[error("network: {0}")]
    Io(#[from] std::io::Error),
}

impl PduError {
    /// The A-ABORT reason that tells the peer what went wrong.
    pub fn abort_reason(&self) -> AbortRQServiceProviderReason {
        match self {
            PduError::UnknownType(_) => AbortRQServiceProviderReason::UnrecognizedPdu,
            PduError::TooLong { .. } | PduError::Malformed(_) => AbortRQServiceProviderReason::InvalidPduParameter,
            _ => AbortRQServiceProviderReason::ReasonNotSpecified,
        }
    }
}

/// One PDU as read from the wire: its type and body (without the 6-byte header).
pub struct RawPdu {
    pub pdu_type: u8,
    pub body: Vec<u8>,
}

/// Reads one PDU. `Ok(None)` means the peer closed the connection between PDUs.
/// P-DATA bodies are limited to `max_pdata`; other PDUs to their own bounds.
pub async fn read_raw<R: AsyncRead + Unpin>(
    r: &mut R,
    max_pdata: u32,
    body: Vec<u8>,
) -> Result<Option<RawPdu>, PduError> {
    let mut header = [0u8; 6];
    let n = read_full(r, &mut header).await?;
    if n == 0 {
        return Ok(None);
    }
    if n < header.len() {
        return Err(PduError::Truncated);
    }
    let pdu_type = header[0];
    let len = u32::from_be_bytes([header[2], header[3], header[4], header[5]]);
    let max = match pdu_type {
        PDU_P_DATA => max_pdata,
        PDU_ASSOCIATE_RQ => MAX_ASSOCIATE_RQ,
        0x02 | 0x03 => MAX_ASSOCIATE_RQ,
        0x05..=0x07 => 4,
        other => return Err(PduError::UnknownType(other)),
    };
    if len > max {
        return Err(PduError::TooLong { len, max });
    }
    let mut body = body;
    body.clear();
    body.resize(len as usize, 0);
    if read_full(r, &mut body).await? < len as usize {
        return Err(PduError::Truncated);
    }
    Ok(Some(RawPdu { pdu_type, body }))
}

async fn read_full<R: AsyncRead + Unpin>(r: &mut R, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        let n = r.read(&mut buf[filled..]).await?;
        if n == 0 {
            break;
        }
        filled += n;
    }
    Ok(filled)
}

/// Decodes a non-P-DATA PDU with dicom-ul's codec.
pub fn decode(raw: &RawPdu) -> Result<Pdu, PduError> {
    let mut full = Vec::with_capacity(raw.body.len() + 6);
    full.push(raw.pdu_type);
    full.push(0);
    full.extend_from_slice(&(raw.body.len() as u32).to_be_bytes());
    full.extend_from_slice(&raw.body);
    match dicom_ul::read_pdu(&full[..], MAX_ASSOCIATE_RQ, false) {
        Ok(Some(pdu)) => Ok(pdu),
        Ok(None) => Err(PduError::Malformed("incomplete PDU".into())),
        Err(e) => Err(PduError::Malformed(e.to_string())),
    }
}

/// One presentation data value inside a P-DATA-TF body.
pub struct Pdv<'a> {
    pub context_id: u8,
    pub is_command: bool,
    pub is_last: bool,
    pub data: &'a [u8],
}

/// Splits a P-DATA-TF body into its PDVs, checking every item length.
pub fn split_pdvs(body: &[u8]) -> Result<Vec<Pdv<'_>>, PduError> {
    let mut out = Vec::with_capacity(1);
    let mut pos = 0usize;
    while pos < body.len() {
        let h = body.get(pos..pos + 6).ok_or_else(|| PduError::Malformed("truncated PDV header".into()))?;
        let len = u32::from_be_bytes([h[0], h[1], h[2], h[3]]) as usize;
        if len < 2 {
            return Err(PduError::Malformed(format!("PDV item length {len} is too short")));
        }
        let data = body
            .get(pos + 6..pos + 4 + len)
            .ok_or_else(|| PduError::Malformed("PDV item runs past the end of the PDU".into()))?;
        out.push(Pdv { context_id: h[4], is_command: h[5] & 1 == 1, is_last: h[5] & 2 == 2, data });
        pos += 4 + len;
    }
    if out.is_empty() {
        return Err(PduError::Malformed("P-DATA-TF without any PDV".into()));
    }
    Ok(out)
}

/// Writes a DIMSE command as P-DATA-TF PDUs no larger than the peer's maximum.
pub async fn write_command<W: AsyncWrite + Unpin>(
    w: &mut W,
    context_id: u8,
    command: &[u8],
    peer_max_pdu: u32,
) -> std::io::Result<()> {
    // A maximum of 0 means unlimited (PS3.8 D.1).
    let max_data = if peer_max_pdu == 0 { usize::MAX } else { (peer_max_pdu as usize).saturating_sub(6).max(1) };
    let mut out = Vec::with_capacity(command.len() + 12);
    let mut chunks = command.chunks(max_data).peekable();
    while let Some(chunk) = chunks.next() {
        let last = chunks.peek().is_none();
        out.push(PDU_P_DATA);
        out.push(0);
        out.extend_from_slice(&((chunk.len() + 6) as u32).to_be_bytes());
        out.extend_from_slice(&((chunk.len() + 2) as u32).to_be_bytes());
        out.push(context_id);
        out.push(if last { 0x03 } else { 0x01 });
        out.extend_from_slice(chunk);
    }
    w.write_all(&out).await
}

/// Encodes and writes a PDU with dicom-ul's codec.
pub async fn write<W: AsyncWrite + Unpin>(w: &mut W, pdu: &Pdu) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(256);
    dicom_ul::write_pdu(&mut buf, pdu).map_err(|e| std::io::Error::other(e.to_string()))?;
    w.write_all(&buf).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_pdvs_and_rejects_overruns() {
        let mut body = Vec::new();
        body.extend_from_slice(&5u32.to_be_bytes());
        body.extend_from_slice(&[1, 0x02, 9, 9, 9]);
        body.extend_from_slice(&3u32.to_be_bytes());
        body.extend_from_slice(&[3, 0x01, 7]);
        let pdvs = split_pdvs(&body).unwrap();
        assert_eq!(pdvs.len(), 2);
        assert!(!pdvs[0].is_command && pdvs[0].is_last && pdvs[0].data == [9, 9, 9]);
        assert!(pdvs[1].is_command && !pdvs[1].is_last && pdvs[1].context_id == 3);
        let mut bad = body.clone();
        bad[3] = 200;
        assert!(split_pdvs(&bad).is_err());
        assert!(split_pdvs(&[]).is_err());
    }

    #[tokio::test]
    async fn read_raw_bounds_lengths_and_detects_truncation() {
        let absurd = [PDU_P_DATA, 0, 0xFF, 0xFF, 0xFF, 0xF0];
        let err = read_raw(&mut &absurd[..], 65536, Vec::new()).await.err().unwrap();
        assert!(matches!(err, PduError::TooLong { .. }));
        let truncated = [PDU_P_DATA, 0, 0, 0, 0, 10, 1, 2];
        assert!(matches!(read_raw(&mut &truncated[..], 65536, Vec::new()).await, Err(PduError::Truncated)));
        let unknown = [0x42, 0, 0, 0, 0, 0];
        assert!(matches!(read_raw(&mut &unknown[..], 65536, Vec::new()).await, Err(PduError::UnknownType(0x42))));
        assert!(read_raw(&mut &[][..], 65536, Vec::new()).await.unwrap().is_none());
    }
}
