//! One association, from A-ASSOCIATE-RQ to release or abort: negotiation, reassembly of
//! command and data set fragments, and dispatch to the services (C-ECHO, C-STORE).
//!
//! Any protocol violation ends this association with an A-ABORT; nothing here can affect
//! another association. Each association logs exactly one summary line when it ends.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use dicom_ul::pdu::{
    AbortRQServiceProviderReason, AbortRQSource, AssociationRJ, AssociationRJResult,
    AssociationRJServiceProviderPresentationReason, AssociationRJSource, Pdu,
};
use tokio::io::{AsyncRead, AsyncWrite, BufReader};
use tokio::net::TcpStream;

use super::dimse::{self, Command, Response};
use super::negotiation::{self, Accepted, Negotiated};
use super::pdu::{self, PduError, RawPdu};
use super::store_scp;
use super::Shared;

/// How an association ended, for the log line.
#[derive(Debug, Default)]
struct Summary {
    calling_ae: String,
    instances: u64,
    failures: u64,
    bytes: u64,
}

/// Serves one accepted TCP connection. `admitted` is false when the association limit is
/// reached: the request is then read and rejected (transient, local limit exceeded).
pub async fn run(stream: TcpStream, peer: SocketAddr, shared: Arc<Shared>, admitted: bool) {
    let started = Instant::now();
    let _ = stream.set_nodelay(true);
    let (rd, mut wr) = stream.into_split();
    let mut rd = BufReader::with_capacity(256 * 1024, rd);
    let mut summary = Summary::default();
    let outcome = match associate(&mut rd, &mut wr, peer, &shared, admitted, &mut summary).await {
        Ok(outcome) => outcome,
        Err(e) => {
            if let Some(reason) = e.abort_reason() {
                let _ = pdu::write(&mut wr, &Pdu::AbortRQ { source: AbortRQSource::ServiceProvider(reason) }).await;
            }
            format!("aborted: {e}")
        }
    };
    tracing::info!(
        calling_ae = %summary.calling_ae,
        peer = %peer,
        instances = summary.instances,
        failures = summary.failures,
        bytes = summary.bytes,
        duration_ms = started.elapsed().as_millis() as u64,
        outcome = %outcome,
        "association"
    );
}

#[derive(Debug, thiserror::Error)]
enum AssocError {
    #[error("{0}")]
    Pdu(#[from] PduError),
    #[error("peer silent for {0} s")]
    Timeout(u64),
    #[error("protocol violation: {0}")]
    Protocol(String),
    #[error("peer aborted")]
    PeerAborted,
    #[error("network: {0}")]
    Io(#[from] std::io::Error),
}

impl AssocError {
    fn abort_reason(&self) -> Option<AbortRQServiceProviderReason> {
        match self {
            AssocError::Pdu(PduError::Io(_)) | AssocError::Io(_) | AssocError::PeerAborted => None,
            AssocError::Pdu(e) => Some(e.abort_reason()),
            AssocError::Protocol(_) => Some(AbortRQServiceProviderReason::UnexpectedPdu),
            AssocError::Timeout(_) => Some(AbortRQServiceProviderReason::ReasonNotSpecified),
        }
    }
}

async fn read_pdu<R: AsyncRead + Unpin>(
    rd: &mut R,
    max: u32,
    timeout: Duration,
    buf: Vec<u8>,
) -> Result<Option<RawPdu>, AssocError> {
    match tokio::time::timeout(timeout, pdu::read_raw(rd, max, buf)).await {
        Ok(r) => Ok(r?),
        Err(_) => Err(AssocError::Timeout(timeout.as_secs())),
    }
}

async fn associate<R, W>(
    rd: &mut R,
    wr: &mut W,
    peer: SocketAddr,
    shared: &Shared,
    admitted: bool,
    summary: &mut Summary,
) -> Result<String, AssocError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let timeout = shared.idle_timeout;
    let first = read_pdu(rd, 0, timeout, Vec::new())
        .await?
        .ok_or_else(|| AssocError::Protocol("closed before A-ASSOCIATE-RQ".into()))?;
    if first.pdu_type != pdu::PDU_ASSOCIATE_RQ {
        return Err(AssocError::Protocol(format!("expected A-ASSOCIATE-RQ, got PDU type 0x{:02X}", first.pdu_type)));
    }
    let rq = match pdu::decode(&first)? {
        Pdu::AssociationRQ(rq) => rq,
        other => {
            return Err(AssocError::Protocol(format!("expected A-ASSOCIATE-RQ, got {}", other.short_description())))
        }
    };
    summary.calling_ae = rq.calling_ae_title.trim().to_string();
    if !admitted {
        let rj = AssociationRJ {
            result: AssociationRJResult::Transient,
            source: AssociationRJSource::ServiceProviderPresentation(
                AssociationRJServiceProviderPresentationReason::LocalLimitExceeded,
            ),
        };
        pdu::write(wr, &Pdu::AssociationRJ(rj)).await?;
        return Ok("rejected: association limit reached".into());
    }
    let negotiated = match negotiation::negotiate(&rq, peer.ip(), &shared.settings) {
        Ok(n) => n,
        Err(rj) => {
            let why = rj.source.to_string();
            pdu::write(wr, &Pdu::AssociationRJ(rj)).await?;
            return Ok(format!("rejected: {why}"));
        }
    };
    pdu::write(wr, &Pdu::AssociationAC(negotiated.ac.clone())).await?;
    serve_messages(rd, wr, &negotiated, shared, summary).await
}

/// A command whose data set is still arriving.
struct Pending {
    command: Command,
    context: Accepted,
    data: Vec<u8>,
    /// Where a C-STORE's data set is streamed while it arrives.
    sink: Option<Sink>,
}

/// Received data set bytes are written once this much is unwritten (and at the end).
const SINK_CHUNK: usize = 64 * 1024;

/// The storage side of a C-STORE being received: a writer on the blocking pool that opens the
/// instance in the store and appends the data set in order as chunks arrive. The association
/// only queues chunks (their memory is bounded by the data set, which it holds anyway), so
/// reading the next PDU never waits for the disk; when the last fragment arrives only the
/// flush is left.
struct Sink {
    chunks: std::sync::mpsc::Sender<Vec<u8>>,
    done: tokio::task::JoinHandle<Result<store_scp::Receiving, store_scp::Outcome>>,
    written: usize,
}

impl Sink {
    fn start(shared: &Shared, command: &Command, context: &Accepted, calling_ae: &str) -> Sink {
        let (store, command, context, ae) =
            (shared.store.clone(), command.clone(), context.clone(), calling_ae.to_string());
        let (chunks, rx) = std::sync::mpsc::channel::<Vec<u8>>();
        let done = tokio::task::spawn_blocking(move || {
            let mut r = store_scp::begin(&store, &command, &context, &ae)?;
            // The channel closes after the last chunk (`finish`), or when the association ends.
            while let Ok(chunk) = rx.recv() {
                r.append(&chunk)?;
            }
            r.sync()?;
            Ok(r)
        });
        Sink { chunks, done, written: 0 }
    }

    /// Queues the unwritten tail of `data` once enough has arrived (all of it with `last`).
    fn feed(&mut self, data: &[u8], last: bool) {
        if data.len() - self.written >= SINK_CHUNK || (last && data.len() > self.written) {
            // A send fails only when the writer has stopped on an error, which `finish` reports.
            let _ = self.chunks.send(data[self.written..].to_vec());
            self.written = data.len();
        }
    }

    /// Closes the data set and waits until it is written and flushed.
    async fn finish(self) -> Result<store_scp::Receiving, store_scp::Outcome> {
        drop(self.chunks);
        self.done.await.unwrap_or_else(|e| Err(store_scp::Outcome::internal(format!("storage task failed: {e}"))))
    }
}

async fn serve_messages<R, W>(
    rd: &mut R,
    wr: &mut W,
    n: &Negotiated,
    shared: &Shared,
    summary: &mut Summary,
) -> Result<String, AssocError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let context = |id: u8| n.contexts.iter().find(|c| c.id == id).cloned();
    let mut command_buf: Vec<u8> = Vec::new();
    let mut command_ctx: Option<u8> = None;
    let mut pending: Option<Pending> = None;
    let mut buf = Vec::new();
    loop {
        let raw = match read_pdu(rd, shared.settings.max_pdu, shared.idle_timeout, std::mem::take(&mut buf)).await? {
            Some(raw) => raw,
            None => return Err(AssocError::Protocol("connection closed without A-RELEASE".into())),
        };
        match raw.pdu_type {
            pdu::PDU_P_DATA => {}
            pdu::PDU_RELEASE_RQ => {
                pdu::write(wr, &Pdu::ReleaseRP).await?;
                return Ok(if pending.is_some() {
                    "released with an incomplete data set".into()
                } else {
                    "released".into()
                });
            }
            pdu::PDU_ABORT => return Err(AssocError::PeerAborted),
            other => {
                return Err(AssocError::Protocol(format!("unexpected PDU type 0x{other:02X} during the association")))
            }
        }
        let mut ready: Option<Pending> = None;
        for pdv in pdu::split_pdvs(&raw.body)? {
            let ctx = context(pdv.context_id).ok_or_else(|| {
                AssocError::Protocol(format!("presentation context {} was not accepted", pdv.context_id))
            })?;
            if ready.is_some() {
                return Err(AssocError::Protocol("data after the last fragment of a data set".into()));
            }
            if pdv.is_command {
                if pending.is_some() {
                    return Err(AssocError::Protocol("command fragment while a data set is expected".into()));
                }
                if command_ctx.is_some_and(|c| c != ctx.id) {
                    return Err(AssocError::Protocol("command fragments on different contexts".into()));
                }
                command_ctx = Some(ctx.id);
                command_buf.extend_from_slice(pdv.data);
                if command_buf.len() > 64 * 1024 {
                    return Err(AssocError::Protocol("command set larger than 64 KiB".into()));
                }
                if pdv.is_last {
                    let command = Command::decode(&command_buf).map_err(|e| AssocError::Protocol(e.to_string()))?;
                    command_buf.clear();
                    command_ctx = None;
                    if command.has_data_set {
                        let sink = (command.command_field == dimse::C_STORE_RQ)
                            .then(|| Sink::start(shared, &command, &ctx, &summary.calling_ae));
                        pending = Some(Pending { command, context: ctx, data: Vec::new(), sink });
                    } else {
                        respond_without_data(wr, &command, &ctx, n).await?;
                    }
                }
            } else {
                let p = pending
                    .as_mut()
                    .ok_or_else(|| AssocError::Protocol("data set fragment without a command".into()))?;
                if p.context.id != ctx.id {
                    return Err(AssocError::Protocol("data set fragment on another presentation context".into()));
                }
                if p.data.is_empty() {
                    p.data.reserve(raw.body.len().max(64 * 1024));
                }
                p.data.extend_from_slice(pdv.data);
                if pdv.is_last {
                    ready = pending.take();
                }
            }
        }
        buf = raw.body;
        if let Some(p) = pending.as_mut() {
            if let Some(sink) = p.sink.as_mut() {
                sink.feed(&p.data, false);
            }
        }
        if let Some(p) = ready {
            let bytes = p.data.len() as u64;
            let ctx_id = p.context.id;
            let resp = handle_data_set(p, shared, &summary.calling_ae).await?;
            if resp.status == dimse::status::SUCCESS {
                summary.instances += 1;
                summary.bytes += bytes;
            } else {
                summary.failures += 1;
            }
            pdu::write_command(wr, ctx_id, &resp.encode(), n.peer_max_pdu).await?;
        }
    }
}

async fn respond_without_data<W: AsyncWrite + Unpin>(
    wr: &mut W,
    command: &Command,
    ctx: &Accepted,
    n: &Negotiated,
) -> Result<(), AssocError> {
    let resp = match command.command_field {
        dimse::C_ECHO_RQ => Response {
            command_field: dimse::C_ECHO_RSP,
            message_id_being_responded_to: command.message_id,
            affected_sop_class_uid: ctx.abstract_syntax.clone(),
            affected_sop_instance_uid: None,
            status: dimse::status::SUCCESS,
            error_comment: None,
        },
        other => {
            return Err(AssocError::Protocol(format!("command 0x{other:04X} without a data set is not supported")))
        }
    };
    pdu::write_command(wr, ctx.id, &resp.encode(), n.peer_max_pdu).await?;
    Ok(())
}

async fn handle_data_set(p: Pending, shared: &Shared, calling_ae: &str) -> Result<Response, AssocError> {
    let Some(mut sink) = p.sink else {
        return Err(AssocError::Protocol(format!("command 0x{:04X} is not supported", p.command.command_field)));
    };
    let failed = |e: tokio::task::JoinError| store_scp::Outcome::internal(format!("storage task failed: {e}"));
    // The last write and the flush run while the complete data set is checked.
    sink.feed(&p.data, true);
    let (command, context, data, ae) = (p.command.clone(), p.context, p.data, calling_ae.to_string());
    let check = tokio::task::spawn_blocking(move || store_scp::check(&command, &context, &data, &ae));
    let t0 = Instant::now();
    let received = sink.finish().await;
    let t_flush = t0.elapsed();
    let checked = check.await.map_err(failed).and_then(|r| r);
    let t_check = t0.elapsed();
    let outcome = match (received, checked) {
        (Err(outcome), _) | (_, Err(outcome)) => outcome,
        (Ok(receiving), Ok(attrs)) => {
            let store = shared.store.clone();
            tokio::task::spawn_blocking(move || store_scp::commit(&store, receiving, attrs))
                .await
                .unwrap_or_else(failed)
        }
    };
    tracing::debug!(
        flush_us = t_flush.as_micros() as u64,
        check_us = t_check.as_micros() as u64,
        total_us = t0.elapsed().as_micros() as u64,
        "C-STORE completion"
    );
    Ok(Response {
        command_field: dimse::C_STORE_RSP,
        message_id_being_responded_to: p.command.message_id,
        affected_sop_class_uid: p.command.affected_sop_class_uid,
        affected_sop_instance_uid: Some(p.command.affected_sop_instance_uid),
        status: outcome.status,
        error_comment: outcome.comment,
    })
}
