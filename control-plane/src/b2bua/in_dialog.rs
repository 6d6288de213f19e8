//! Requests inside a leg's dialog: BYE ends the call; re-INVITE, UPDATE, INFO, OPTIONS
//! and the like are relayed to the other leg and their answers relayed back, each SDP on
//! the way pointed at the media plane; an ACK with SDP answers an offer the switch made.

use bytes::Bytes;
use tracing::{info, warn};

use super::call::{Call, Cx, Side};
use super::channel::HangupCause;
use super::media::Waiting;
use super::messages::{respond_simple, send_ack};
use super::routes::Relay;
use crate::sip::message::write::response_to;
use crate::sip::message::{Framing, HeaderName, Message, Method};
use crate::sip::transaction::TxId;
use crate::sip::transport::Peer;
use crate::storage::Write;

impl Call {
    /// An in-dialog request from leg `side` (its dialog's `key`).
    pub fn on_in_dialog(
        &mut self,
        cx: &mut Cx<'_, '_>,
        side: Side,
        key: &(String, String),
        tx: TxId,
        req: &Message,
        peer: Peer,
    ) {
        if side == Side::A {
            // Any request in the caller's dialog proves it has our 2xx, even if its ACK
            // was lost: stop retransmitting the 2xx.
            if let Some(setup) = &self.a.setup {
                cx.io.tx.acknowledged(cx.io.now, setup.tx);
            }
        }
        if !matches!(req.method(), Method::Ack | Method::Bye) {
            // The row follows the peer's CSeq, for a switch restarted from it (recovery).
            if let Some((d, uuid, direction)) = self.leg_dialog(side) {
                d.remote_cseq = d.remote_cseq.max(req.cseq());
                cx.io.writes.push_back(Write::UpsertDialog(d.row(uuid, direction)));
            }
        }
        match req.method() {
            Method::Bye => {
                respond_simple(cx.io, tx, req, peer, 200);
                match side {
                    Side::A => {
                        info!(call = %self.uuid, "caller hung up");
                        self.a.final_sent = true;
                        self.a.dialog = None;
                        cx.routes.untrack_dialog(cx.io, key);
                        self.hangup_a_quietly(cx, HangupCause::NORMAL_CLEARING);
                    }
                    Side::B(i) => {
                        info!(call = %self.uuid, "callee hung up");
                        if let Some(d) = self.forks[i].dialog.take() {
                            cx.routes.untrack_dialog(cx.io, &d.key());
                        }
                        self.end_fork(cx, i, HangupCause::NORMAL_CLEARING);
                        self.hangup_a(cx, HangupCause::NORMAL_CLEARING, None);
                    }
                }
            }
            Method::Ack => {}
            _ => self.relay(cx, side, tx, req, peer),
        }
    }

    /// An ACK for a 2xx from leg `side` (outside any transaction). One with SDP answers an
    /// offer: the switch's own (late offer) or the other leg's, made in the 2xx to a
    /// re-INVITE without SDP; that leg's peer moves, and in the second case the answer
    /// goes on to the other leg in the ACK the switch owes it.
    pub fn on_ack(&mut self, cx: &mut Cx<'_, '_>, side: Side, ack: &Message) {
        let body = match self.media_body(cx, side, ack) {
            Ok(b) => b,
            Err(why) => {
                warn!(%why, "SDP in an ACK refused");
                None
            }
        };
        let Some(&(owed, cseq)) = cx.routes.pending_acks.get(&cx.id) else { return };
        if owed == side {
            return;
        }
        cx.routes.pending_acks.remove(&cx.id);
        let dialog = match owed {
            Side::A => self.a.dialog.as_ref(),
            Side::B(i) => self.forks.get(i).and_then(|f| f.dialog.as_ref()),
        };
        let Some(d) = dialog else { return };
        send_ack(cx.io, d, cseq, body.as_deref().unwrap_or(ack.body()));
    }

    /// Relays an in-dialog request (re-INVITE, UPDATE, INFO, OPTIONS, …) to the other leg
    /// of a bridged call on that leg's dialog; the answer comes back in `relay_response`.
    /// Without a bridged other leg the switch answers itself: 200 to OPTIONS and INFO, 488
    /// to an offer it cannot take. A re-INVITE while one is pending gets 491 (RFC 3261 §14.2).
    pub fn relay(&mut self, cx: &mut Cx<'_, '_>, from: Side, tx: TxId, req: &Message, peer: Peer) {
        let method = req.method();
        let alone = || if matches!(method, Method::Options | Method::Info) { 200 } else { 488 };
        if self.answered.is_none() {
            return respond_simple(cx.io, tx, req, peer, alone());
        }
        let offering = matches!(method, Method::Invite | Method::Update);
        let reoffer_waits = self.media.as_ref().is_some_and(|m| m.waiting == Some(Waiting::Reoffer));
        let id = cx.id;
        if offering
            && (reoffer_waits
                || cx
                    .routes
                    .relays
                    .values()
                    .any(|r| r.call == id && matches!(r.request.method(), Method::Invite | Method::Update)))
        {
            info!(call = %self.uuid, "glare: an offer is already pending");
            return respond_simple(cx.io, tx, req, peer, 491);
        }
        // Streams the call has no session for wait for theirs; the relay resumes then.
        if offering && self.media_for_added_streams(cx, from, tx, req, peer) {
            return;
        }
        // A new offer moves this leg's peer and is pointed at the other leg's ports.
        let body = match self.media_body(cx, from, req) {
            Ok(b) => b,
            Err(why) => {
                warn!(%why, "re-offer refused");
                return respond_simple(cx.io, tx, req, peer, 488);
            }
        };
        let body = body.as_deref().unwrap_or(req.body());
        let uuid = self.uuid.clone();
        let Some((dialog, leg_uuid, direction)) = self.other_side(from).and_then(|s| self.leg_dialog(s)) else {
            return respond_simple(cx.io, tx, req, peer, alone());
        };
        let io = &mut *cx.io;
        let mut buf = Vec::with_capacity(1024 + body.len());
        let mut w = dialog.request(
            &String::from_utf8_lossy(req.method_bytes()),
            &format!("z9hG4bK{}", io.ids.hex(8)),
            &mut buf,
        );
        w.header_fmt("Contact", format_args!("<sip:ferroswitch@{}>", dialog.peer.local));
        for name in [HeaderName::ContentType, HeaderName::Event, HeaderName::ContentDisposition] {
            if let Some(v) = req.header(name) {
                w.header(name.as_str(), v);
            }
        }
        w.finish(body);
        // The request took the next CSeq: the row follows, for a restart (recovery).
        io.writes.push_back(Write::UpsertDialog(dialog.row(leg_uuid, direction)));
        let out_peer = dialog.peer;
        match Message::parse(Bytes::from(buf), Framing::Datagram)
            .map_err(|e| e.to_string())
            .and_then(|m| io.tx.request(io.now, m, out_peer).map_err(|e| e.to_string()))
        {
            Ok(client_tx) => {
                info!(call = %uuid, method = %String::from_utf8_lossy(req.method_bytes()), "relayed in-dialog request");
                cx.routes.relays.insert(client_tx, Relay { call: id, from, server_tx: tx, request: req.clone(), peer });
            }
            Err(e) => {
                warn!(call = %uuid, error = %e, "could not relay in-dialog request");
                respond_simple(io, tx, req, peer, 500);
            }
        }
    }

    /// The other leg answered the request relayed from `relay.from`: the same status and
    /// body go back.
    pub fn relay_response(&mut self, cx: &mut Cx<'_, '_>, relay: &Relay, msg: &Message) {
        let Some(status) = msg.status() else { return };
        let (from, server_tx, peer, request) = (relay.from, relay.server_tx, relay.peer, &relay.request);
        // ACK the other leg's 2xx to a relayed re-INVITE ourselves (RFC 3261 §13.2.2.4),
        // unless the re-INVITE had no offer: then the 2xx carries one, and the ACK must
        // carry the answer, which comes in the sender's ACK (see `on_ack`).
        if request.method() == Method::Invite && (200..300).contains(&status) {
            let other_side = self.other_side(from);
            let other = match other_side {
                Some(Side::B(i)) => self.forks[i].dialog.as_ref(),
                Some(Side::A) => self.a.dialog.as_ref(),
                None => None,
            };
            if let (Some(side), true) = (other_side, request.body().is_empty() && !msg.body().is_empty()) {
                cx.routes.pending_acks.insert(cx.id, (side, msg.cseq()));
            } else if let Some(d) = other {
                send_ack(cx.io, d, msg.cseq(), b"");
            }
        }
        // The answer moves the other leg's peer and is pointed at this leg's ports.
        let other = match (from, self.answered) {
            (Side::A, Some(i)) => Side::B(i),
            _ => Side::A,
        };
        let body = match self.media_body(cx, other, msg) {
            Ok(b) => b,
            Err(why) => {
                warn!(%why, "SDP in a relayed answer refused; passed on as it is");
                None
            }
        };
        let body = body.as_deref().unwrap_or(msg.body());
        let mut buf = Vec::with_capacity(768 + body.len());
        let to_tag = match from {
            Side::A => self.a.to_tag.clone(),
            Side::B(i) => self.forks[i].dialog.as_ref().map(|d| d.local_tag.clone()).unwrap_or_default(),
        };
        let reason = String::from_utf8_lossy(msg.reason()).into_owned();
        let mut w = response_to(request, status, &reason, Some(to_tag.as_bytes()), Some(peer.remote), &mut buf);
        if (200..300).contains(&status) {
            w.header_fmt("Contact", format_args!("<sip:ferroswitch@{}>", peer.local));
        }
        if let Some(ct) = msg.header(HeaderName::ContentType) {
            w.header("Content-Type", ct);
        }
        w.header("Server", crate::SERVER_NAME);
        w.finish(body);
        if let Err(e) = cx.io.tx.respond(cx.io.now, server_tx, status, Bytes::from(buf)) {
            warn!(error = %e, "could not relay the answer");
        }
    }
}
