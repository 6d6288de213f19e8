//! The switch: the transaction user (RFC 3261 §8.2, §10, §13) above the transaction
//! layer, sans-IO like the layers below it.
//!
//! Parsed messages go in through [`Switch::handle_message`] (parse failures through
//! [`Switch::handle_parse_error`]), time through [`Switch::handle_timeout`]; datagrams
//! and stream writes come out of [`Switch::poll_transmit`], and [`Switch::poll_timeout`]
//! says when to call back. Every request passes [`policy::check`] first; then OPTIONS
//! is answered, REGISTER is challenged with 401 and INVITE with 407 (digest, RFC 7616),
//! CANCEL is matched to its INVITE, and BYE outside a dialog gets 481. The registrar,
//! the dialplan and the B2BUA slot in here (issue 3).

pub mod policy;

use std::collections::VecDeque;
use std::time::Instant;

use bytes::Bytes;
use tracing::{debug, info, warn};

use crate::auth::Challenger;
use crate::config::Config;
use crate::ids::IdGen;
use crate::sip::message::write::{
    default_reason, error_response_raw, raw_call_id, response_to, Writer,
};
use crate::sip::message::{Message, Method, ParseError, Scheme};
use crate::sip::transaction::{Event, Output, TimerConfig, TransactionLayer, TxId};
use crate::sip::transport::Peer;
use policy::Refusal;

/// Counters a test or the management API can read.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    pub requests: u64,
    pub responses_received: u64,
    pub parse_errors: u64,
    pub refused: u64,
    pub challenged: u64,
}

/// The switch's transaction user.
pub struct Switch {
    tx: TransactionLayer,
    ids: IdGen,
    challenger: Challenger,
    realm: String,
    /// Nonce timestamps count seconds from here.
    epoch: Instant,
    out: VecDeque<(Peer, Bytes)>,
    stats: Stats,
}

impl Switch {
    pub fn new(config: &Config, mut ids: IdGen, now: Instant) -> Self {
        let timers = TimerConfig {
            t1: config.sip.t1,
            t2: config.sip.t2,
            t4: config.sip.t4,
        };
        let challenger = Challenger::new(&mut ids);
        Switch {
            tx: TransactionLayer::new(timers),
            ids,
            challenger,
            realm: config.sip.realm.clone(),
            epoch: now,
            out: VecDeque::new(),
            stats: Stats::default(),
        }
    }

    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// Live transactions.
    pub fn transactions(&self) -> usize {
        self.tx.len()
    }

    /// A message parsed from `peer`.
    pub fn handle_message(&mut self, now: Instant, msg: Message, peer: Peer) {
        if msg.is_request() {
            self.stats.requests += 1;
        } else {
            self.stats.responses_received += 1;
        }
        self.tx.handle_message(now, msg, peer);
        self.drain(now);
    }

    /// Bytes from `peer` that did not parse. A request gets a stateless error response
    /// (400, 505, 501 or 513 as the error says); a response is dropped.
    pub fn handle_parse_error(&mut self, raw: &[u8], err: &ParseError, peer: Peer) {
        self.stats.parse_errors += 1;
        let code = err.status();
        let reason = match err {
            ParseError::Version
            | ParseError::CSeqMismatch { extension: true }
            | ParseError::TooLarge(_) => default_reason(code).to_string(),
            other => format!("Bad Request ({other})"),
        };
        let call_id = raw_call_id(raw)
            .map(|c| String::from_utf8_lossy(c).into_owned())
            .unwrap_or_default();
        let span = tracing::info_span!("sip", call_id = %call_id);
        let _enter = span.enter();
        let mut buf = Vec::with_capacity(512);
        let tag = self.ids.hex(5);
        if error_response_raw(
            raw,
            code,
            &reason,
            tag.as_bytes(),
            Some(peer.remote),
            &mut buf,
        ) {
            warn!(peer = %peer.remote, code, error = %err, "refused unparseable request");
            if code == 501 {
                // error_response_raw ends with the blank line; Allow must precede it.
                insert_before_blank_line(&mut buf, &format!("Allow: {}\r\n", policy::ALLOW));
            }
            self.tx.send_stateless(peer, Bytes::from(buf));
            self.drain_outputs_only();
        } else {
            warn!(peer = %peer.remote, error = %err, "dropped unparseable message");
        }
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        self.tx.handle_timeout(now);
        self.drain(now);
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        self.tx.poll_timeout()
    }

    /// The next `(peer, bytes)` to send.
    pub fn poll_transmit(&mut self) -> Option<(Peer, Bytes)> {
        self.out.pop_front()
    }

    fn drain_outputs_only(&mut self) {
        while let Some(o) = self.tx.poll_output() {
            if let Output::Transmit { peer, bytes } = o {
                self.out.push_back((peer, bytes));
            }
        }
    }

    fn drain(&mut self, now: Instant) {
        while let Some(o) = self.tx.poll_output() {
            match o {
                Output::Transmit { peer, bytes } => self.out.push_back((peer, bytes)),
                Output::Event(e) => self.on_event(now, e),
            }
        }
    }

    fn on_event(&mut self, now: Instant, e: Event) {
        match e {
            Event::Request {
                tx,
                msg,
                peer,
                cancels,
            } => {
                let call_id = String::from_utf8_lossy(msg.call_id()).into_owned();
                let span = tracing::info_span!("sip", call_id = %call_id);
                let _enter = span.enter();
                match tx {
                    Some(tx) => self.on_request(now, tx, &msg, peer, cancels),
                    None => debug!(method = "ACK", "absorbed ACK outside a transaction"),
                }
            }
            Event::Response { tx, msg } => {
                let call_id = String::from_utf8_lossy(msg.call_id()).into_owned();
                debug!(call_id = %call_id, ?tx, status = msg.status(), "response on a client transaction");
            }
            Event::Timeout { tx } => debug!(?tx, "transaction timed out"),
            Event::Terminated { .. } => {}
        }
    }

    fn on_request(
        &mut self,
        now: Instant,
        tx: TxId,
        req: &Message,
        peer: Peer,
        cancels: Option<TxId>,
    ) {
        let method = req.method();
        debug!(method = %String::from_utf8_lossy(req.method_bytes()), peer = %peer.remote, "request");
        if let Err(refusal) = policy::check(req) {
            self.stats.refused += 1;
            info!(status = refusal.status(), ?refusal, "refused request");
            self.respond(now, tx, req, peer, refusal.status(), |w| match &refusal {
                Refusal::NotImplemented | Refusal::NotAllowed => {
                    w.header("Allow", policy::ALLOW);
                }
                Refusal::BadExtension(tags) => {
                    w.header("Unsupported", tags.join(", "));
                }
                Refusal::UnsupportedMediaType => {
                    w.header("Accept", policy::ACCEPT);
                }
                _ => {}
            });
            return;
        }
        if req.to_tag().is_some() && !matches!(method, Method::Ack | Method::Cancel) {
            // RFC 3261 §12.2.2: a mid-dialog request whose dialog does not exist.
            info!("in-dialog request for an unknown dialog");
            return self.respond(now, tx, req, peer, 481, |_| {});
        }
        match method {
            Method::Options => self.respond(now, tx, req, peer, 200, |w| {
                w.header("Allow", policy::ALLOW);
                w.header("Accept", policy::ACCEPT);
                w.header("Accept-Encoding", "identity");
                w.header("Accept-Language", "en");
                w.header("Supported", policy::SUPPORTED.join(", "));
            }),
            Method::Register => {
                let aor_is_sip = matches!(req.to().uri.scheme, Scheme::Sip | Scheme::Sips);
                if !aor_is_sip {
                    self.stats.refused += 1;
                    info!("REGISTER for a non-SIP address of record");
                    return self.respond_reason(
                        now,
                        tx,
                        req,
                        peer,
                        400,
                        "Bad Request (address of record must be a sip or sips URI)",
                        |_| {},
                    );
                }
                self.challenge(now, tx, req, peer, 401, "WWW-Authenticate");
            }
            Method::Invite => self.challenge(now, tx, req, peer, 407, "Proxy-Authenticate"),
            Method::Cancel => {
                // RFC 3261 §9.2: 200 to a CANCEL that matches; the INVITE itself is
                // answered 487 by whoever holds it (it has already been answered here).
                let code = if cancels.is_some() { 200 } else { 481 };
                self.respond(now, tx, req, peer, code, |_| {});
            }
            Method::Bye => self.respond(now, tx, req, peer, 481, |_| {}),
            Method::Ack => {}
            _ => self.respond(now, tx, req, peer, 405, |w| {
                w.header("Allow", policy::ALLOW);
            }),
        }
    }

    fn challenge(
        &mut self,
        now: Instant,
        tx: TxId,
        req: &Message,
        peer: Peer,
        code: u16,
        header: &str,
    ) {
        self.stats.challenged += 1;
        let realm = if self.realm.is_empty() {
            String::from_utf8_lossy(req.to().uri.host_unbracketed()).into_owned()
        } else {
            self.realm.clone()
        };
        let secs = now.saturating_duration_since(self.epoch).as_secs();
        let challenges = self
            .challenger
            .challenges(&realm, secs, false, &mut self.ids);
        info!(status = code, %realm, "challenged");
        self.respond(now, tx, req, peer, code, |w| {
            for c in &challenges {
                w.header(header, c);
            }
        });
    }

    fn respond(
        &mut self,
        now: Instant,
        tx: TxId,
        req: &Message,
        peer: Peer,
        code: u16,
        extra: impl FnOnce(&mut Writer<'_>),
    ) {
        self.respond_reason(now, tx, req, peer, code, default_reason(code), extra)
    }

    #[allow(clippy::too_many_arguments)]
    fn respond_reason(
        &mut self,
        now: Instant,
        tx: TxId,
        req: &Message,
        peer: Peer,
        code: u16,
        reason: &str,
        extra: impl FnOnce(&mut Writer<'_>),
    ) {
        let mut buf = Vec::with_capacity(640);
        let tag = self.ids.hex(5);
        let mut w = response_to(
            req,
            code,
            reason,
            Some(tag.as_bytes()),
            Some(peer.remote),
            &mut buf,
        );
        extra(&mut w);
        w.header("Server", crate::SERVER_NAME);
        w.finish(b"");
        if let Err(e) = self.tx.respond(now, tx, code, Bytes::from(buf)) {
            warn!(?tx, error = %e, "could not send response");
        }
    }
}

fn insert_before_blank_line(buf: &mut Vec<u8>, line: &str) {
    if let Some(p) = memchr::memmem::find(buf, b"\r\n\r\n") {
        let at = p + 2;
        buf.splice(at..at, line.bytes());
    }
}
