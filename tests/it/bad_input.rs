//! Malformed input aborts or fails that association only; the listener keeps serving.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

use dicom_ul::pdu::{PDataValue, PDataValueType, Pdu};
use dicom_ul::ClientAssociationOptions;

use crate::support::*;

/// Reads until the server closes or aborts; panics if it keeps the connection open.
fn expect_closed_or_aborted(mut s: TcpStream) {
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    let start = Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(e) => panic!("server neither closed nor aborted within {:?}: {e}", start.elapsed()),
        }
    }
    // Anything the server said must be an A-ABORT (0x07) or an A-ASSOCIATE-RJ (0x03).
    assert!(got.is_empty() || got[0] == 0x07 || got[0] == 0x03, "unexpected reply {:02X?}", &got[..got.len().min(16)]);
}

fn raw(port: u16, bytes: &[u8], close_write: bool) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(bytes).unwrap();
    if close_write {
        s.shutdown(Shutdown::Write).unwrap();
    }
    expect_closed_or_aborted(s);
}

/// An A-ASSOCIATE-RQ, encoded by dicom-ul, to truncate.
fn associate_rq_bytes() -> Vec<u8> {
    use dicom_ul::pdu::{AssociationRQ, PresentationContextProposed, UserVariableItem};
    let rq = AssociationRQ {
        protocol_version: 1,
        calling_ae_title: "FUZZ".into(),
        called_ae_title: "LUCENT".into(),
        application_context_name: "1.2.840.10008.3.1.1.1".into(),
        presentation_contexts: vec![PresentationContextProposed {
            id: 1,
            abstract_syntax: "1.2.840.10008.1.1".into(),
            transfer_syntaxes: vec!["1.2.840.10008.1.2".into()],
        }],
        user_variables: vec![UserVariableItem::MaxLength(16384)],
    };
    let mut v = Vec::new();
    dicom_ul::write_pdu(&mut v, &Pdu::AssociationRQ(rq)).unwrap();
    v
}

/// A C-STORE-RQ command set (Implicit VR Little Endian, with group length).
fn store_command(sop_class: &str, sop_uid: &str) -> Vec<u8> {
    fn el(out: &mut Vec<u8>, e: u16, v: &[u8]) {
        out.extend_from_slice(&0u16.to_le_bytes());
        out.extend_from_slice(&e.to_le_bytes());
        out.extend_from_slice(&(v.len() as u32).to_le_bytes());
        out.extend_from_slice(v);
    }
    let uid = |s: &str| {
        let mut b = s.as_bytes().to_vec();
        if b.len() % 2 == 1 {
            b.push(0);
        }
        b
    };
    let mut body = Vec::new();
    el(&mut body, 0x0002, &uid(sop_class));
    el(&mut body, 0x0100, &1u16.to_le_bytes());
    el(&mut body, 0x0110, &9u16.to_le_bytes());
    el(&mut body, 0x0700, &0u16.to_le_bytes());
    el(&mut body, 0x0800, &0u16.to_le_bytes());
    el(&mut body, 0x1000, &uid(sop_uid));
    let mut out = Vec::new();
    el(&mut out, 0x0000, &(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&body);
    out
}

/// The Status (0000,0900) of a response command set.
fn status_of(pdu: &Pdu) -> u16 {
    let Pdu::PData { data } = pdu else { panic!("expected P-DATA, got {pdu:?}") };
    let bytes: Vec<u8> = data.iter().flat_map(|v| v.data.clone()).collect();
    let mut pos = 0;
    while pos + 8 <= bytes.len() {
        let e = u16::from_le_bytes([bytes[pos + 2], bytes[pos + 3]]);
        let len = u32::from_le_bytes(bytes[pos + 4..pos + 8].try_into().unwrap()) as usize;
        if e == 0x0900 {
            return u16::from_le_bytes([bytes[pos + 8], bytes[pos + 9]]);
        }
        pos += 8 + len;
    }
    panic!("no status in response");
}

/// Sends one C-STORE with the given command SOP class and data set on a CT context.
fn store_status(port: u16, command_class: &str, dataset: Vec<u8>) -> u16 {
    const CT: &str = "1.2.840.10008.5.1.4.1.1.2";
    let mut assoc = ClientAssociationOptions::new()
        .calling_ae_title("BADSCU")
        .called_ae_title("LUCENT")
        .with_presentation_context(CT, vec!["1.2.840.10008.1.2.1"])
        .establish(("127.0.0.1", port))
        .unwrap();
    let pc = assoc.presentation_contexts()[0].id;
    let pdv = |value_type, data| Pdu::PData {
        data: vec![PDataValue { presentation_context_id: pc, value_type, is_last: true, data }],
    };
    assoc.send(&pdv(PDataValueType::Command, store_command(command_class, "1.2.3.4.5.6"))).unwrap();
    assoc.send(&pdv(PDataValueType::Data, dataset)).unwrap();
    let status = status_of(&assoc.receive().unwrap());
    assoc.release().unwrap();
    status
}

#[test]
fn malformed_input_never_succeeds_and_never_hurts_other_associations() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start(&tmp.path().join("data"), &[]);
    let port = server.dicom_port;
    let echo_fast = || {
        let t = Instant::now();
        assert!(server.echo(), "echo failed after bad input: {}", server.log_text());
        assert!(t.elapsed() < Duration::from_secs(3), "echo took {:?}", t.elapsed());
    };

    // Random bytes (seeded, so a failure can be replayed).
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let noise: Vec<u8> = (0..4096)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    raw(port, &noise, false);
    echo_fast();

    // A truncated PDU: the header promises more than arrives before the peer closes.
    let rq = associate_rq_bytes();
    raw(port, &rq[..rq.len() / 2], true);
    echo_fast();

    // A PDU with an absurd length: aborted at once, nothing allocated.
    raw(port, &[0x01, 0x00, 0xFF, 0xFF, 0xFF, 0xF0, 0, 1], false);
    raw(port, &[0x04, 0x00, 0x7F, 0xFF, 0xFF, 0xFF], false);
    echo_fast();

    // A C-STORE whose data set is garbage: a 0xC000-class failure.
    let status = store_status(port, "1.2.840.10008.5.1.4.1.1.2", noise[..1000].to_vec());
    assert!((0xC000..=0xCFFF).contains(&status), "garbage data set got status {status:04X}");
    echo_fast();

    // A C-STORE whose SOP class does not match its presentation context: 0xA900.
    let status = store_status(port, "1.2.840.10008.5.1.4.1.1.4", noise[..100].to_vec());
    assert_eq!(status, 0xA900);
    echo_fast();

    assert_eq!(server.stats()["instances"], 0);
    let (on_disk, tmp_left) = files_on_disk(&server.dir);
    assert!(on_disk.is_empty() && tmp_left.is_empty());
    assert!(!server.log_text().contains("panicked"));
}
