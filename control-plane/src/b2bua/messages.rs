//! The SIP messages the B2BUA builds: responses to the caller's INVITE, a B-leg's INVITE
//! and CANCEL, BYE on a dialog, and its own short answers in a dialog.

use bytes::Bytes;
use tracing::warn;

use super::dialog::Dialog;
use super::{Io, MAX_BUILT_MESSAGE};
use crate::sip::message::write::{default_reason, response_to, Writer};
use crate::sip::message::{Framing, HeaderName, Message};
use crate::sip::transaction::TxId;
use crate::sip::transport::Peer;

/// A response to the caller's INVITE, with our To tag, Contact and an optional SDP body.
pub(super) fn build_to_a(invite: &Message, code: u16, to_tag: &str, peer: Peer, sdp: Option<&[u8]>) -> Bytes {
    let mut buf = Vec::with_capacity(768 + sdp.map_or(0, <[u8]>::len));
    let mut w = response_to(invite, code, default_reason(code), Some(to_tag.as_bytes()), Some(peer.remote), &mut buf);
    if code < 300 {
        w.header_fmt(
            "Contact",
            format_args!(
                "<sip:ferroswitch@{};transport={}>",
                peer.local,
                peer.transport.via_name().to_ascii_lowercase()
            ),
        );
        w.header("Allow", crate::switch::policy::ALLOW);
    }
    w.header("Server", crate::SERVER_NAME);
    match sdp {
        Some(body) if !body.is_empty() => {
            w.header("Content-Type", "application/sdp");
            w.finish(body);
        }
        _ => w.finish(b""),
    }
    Bytes::from(buf)
}

/// What a B-leg's INVITE says, besides what the caller's INVITE gives.
pub(super) struct BInvite<'a> {
    /// The request URI, and the user it is for (in To).
    pub ruri: &'a str,
    pub dest: &'a str,
    /// The caller ID to present (From).
    pub name: &'a str,
    pub number: &'a str,
    pub body: &'a [u8],
    /// The body's type (None: application/sdp).
    pub content_type: Option<&'a [u8]>,
    pub max_forwards: u8,
}

/// Why a B-leg's INVITE could not be built.
#[derive(Debug, thiserror::Error)]
pub(super) enum BuildError {
    #[error("{0} bytes, more than {MAX_BUILT_MESSAGE}")]
    TooLarge(usize),
    #[error("{0}")]
    Unparsable(String),
}

/// A B-leg's INVITE to `peer`, as a parsed message for the transaction layer.
pub(super) fn b_invite(io: &mut Io<'_>, b: &BInvite<'_>, peer: Peer) -> Result<Message, BuildError> {
    let mf = b.max_forwards;
    let host = peer.local;
    let mut buf = Vec::with_capacity(1024 + b.body.len());
    let mut w = Writer::request(&mut buf, b"INVITE", b.ruri.as_bytes());
    w.header_fmt(
        "Via",
        format_args!("SIP/2.0/{} {};branch=z9hG4bK{};rport", peer.transport.via_name(), host, io.ids.hex(8)),
    );
    w.header("Max-Forwards", mf.to_string());
    w.header_fmt("From", format_args!("\"{}\" <sip:{}@{host}>;tag={}", b.name, b.number, io.ids.hex(5)));
    w.header_fmt("To", format_args!("<sip:{}@{host}>", b.dest));
    w.header_fmt("Call-ID", format_args!("{}", io.ids.hex(12)));
    w.header("CSeq", "1 INVITE");
    w.header_fmt(
        "Contact",
        format_args!("<sip:ferroswitch@{host};transport={}>", peer.transport.via_name().to_ascii_lowercase()),
    );
    w.header("Allow", crate::switch::policy::ALLOW);
    w.header("User-Agent", crate::SERVER_NAME);
    if !b.body.is_empty() {
        w.header("Content-Type", b.content_type.unwrap_or(b"application/sdp"));
    }
    w.finish(b.body);
    if buf.len() > MAX_BUILT_MESSAGE {
        return Err(BuildError::TooLarge(buf.len()));
    }
    Message::parse(Bytes::from(buf), Framing::Datagram).map_err(|e| BuildError::Unparsable(e.to_string()))
}

/// The CANCEL of a B-leg's INVITE (RFC 3261 §9.1: its Via, From, To, Call-ID and CSeq number).
pub(super) fn cancel_of(inv: &Message) -> Option<Message> {
    let mut buf = Vec::with_capacity(512);
    let mut w = Writer::request(&mut buf, b"CANCEL", inv.request_uri_bytes());
    w.header("Via", inv.top_via_bytes());
    w.header("Max-Forwards", "70");
    w.header("From", inv.header(HeaderName::From).unwrap_or_default());
    w.header("To", inv.header(HeaderName::To).unwrap_or_default());
    w.header("Call-ID", inv.call_id());
    w.header_fmt("CSeq", format_args!("{} CANCEL", inv.cseq()));
    w.finish(b"");
    Message::parse(Bytes::from(buf), Framing::Datagram).ok()
}

/// A BYE on `d`, sent.
pub(super) fn send_bye(io: &mut Io<'_>, d: &mut Dialog) {
    let mut buf = Vec::with_capacity(512);
    d.request("BYE", &format!("z9hG4bK{}", io.ids.hex(8)), &mut buf).finish(b"");
    match Message::parse(Bytes::from(buf), Framing::Datagram) {
        Ok(bye) => {
            if let Err(e) = io.tx.request(io.now, bye, d.peer) {
                warn!(error = %e, "could not send BYE");
            }
        }
        Err(e) => warn!(error = %e, "could not build BYE"),
    }
}

/// An ACK for the 2xx with `cseq` on `d`, sent (outside any transaction), with `body`.
pub(super) fn send_ack(io: &mut Io<'_>, d: &Dialog, cseq: u32, body: &[u8]) {
    let mut buf = Vec::with_capacity(512 + body.len());
    let mut w = d.ack(cseq, &format!("z9hG4bK{}", io.ids.hex(8)), &mut buf);
    if !body.is_empty() {
        w.header("Content-Type", "application/sdp");
    }
    w.finish(body);
    io.tx.send_stateless(d.peer, Bytes::from(buf));
}

/// The switch's own answer `code` to a request in a dialog, with no body.
pub(super) fn respond_simple(io: &mut Io<'_>, tx: TxId, req: &Message, peer: Peer, code: u16) {
    let mut buf = Vec::with_capacity(512);
    let tag = io.ids.hex(5);
    let mut w = response_to(req, code, default_reason(code), Some(tag.as_bytes()), Some(peer.remote), &mut buf);
    w.header("Server", crate::SERVER_NAME);
    w.finish(b"");
    if let Err(e) = io.tx.respond(io.now, tx, code, Bytes::from(buf)) {
        warn!(error = %e, "could not respond in dialog");
    }
}
