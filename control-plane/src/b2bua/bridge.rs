//! `bridge`: B-legs originated group by group (the legs of a group ring together), their
//! provisional answers relayed to the caller, the first 2xx bridged and the other forks
//! cancelled; a group that fails tries the next, and a bridge that fails goes on by
//! `continue_on_fail` or hangs the caller up.

use bytes::Bytes;
use tracing::{info, warn};

use super::call::{BLeg, Call, Cx, Fork, Phase, Setup, Side};
use super::call_media::FromB;
use super::channel::{Channel, ChannelState, Direction, HangupCause};
use super::dialog::Dialog;
use super::events::EventName;
use super::execute::DEFAULT_CALL_TIMEOUT;
use super::media::{CallMedia, Waiting};
use super::messages::{b_invite, cancel_of, send_ack, BInvite, BuildError};
use super::rows::{call_row, channel_row};
use super::timer::CallTimer;
use super::ResolveRequest;
use crate::dialplan::{DialString, Endpoint, Variables};
use crate::registrar::NatDetection;
use crate::sip::message::uri::unescape;
use crate::sip::message::{Framing, HeaderName, Message};
use crate::sip::transaction::TxId;
use crate::sip::transport::{Peer, TransportKind};
use crate::storage::{Direction as RowDirection, Write};

use super::text;

impl Call {
    /// The `bridge` application with dial string `ds`: its variables set, its groups
    /// queued, `call_timeout` armed, and the first group rung (once the media plane has
    /// the call's sessions, when it is to carry the media).
    pub fn bridge(&mut self, cx: &mut Cx<'_, '_>, ds: &DialString) {
        for (k, v) in ds.vars().iter() {
            self.vars.set(k, v.to_string());
        }
        self.groups = ds.groups().iter().map(|g| g.iter().map(|l| l.endpoint().clone()).collect()).collect();
        self.phase = Phase::Bridging;
        let secs: u64 =
            self.vars.get("call_timeout").and_then(|t| t.parse().ok()).unwrap_or(DEFAULT_CALL_TIMEOUT.as_secs());
        let at = cx.io.now + std::time::Duration::from_secs(secs);
        self.arm(cx, at, CallTimer::NoAnswer);
        if self.want_media(cx) {
            // The B-legs are offered the media plane's ports, once it has them.
            self.request_media(cx, Waiting::Bridge);
        } else {
            self.offer_after_local_answer();
            self.start_group(cx);
        }
    }

    /// Originates the next group of `bridge` (legs ring together; groups in turn).
    pub fn start_group(&mut self, cx: &mut Cx<'_, '_>) {
        if self.media.as_ref().is_some_and(|m| m.waiting.is_some()) {
            return; // on_media_answer starts it
        }
        // A new group: host names still resolving for the last one are forgotten.
        self.group += 1;
        self.pending_resolutions = 0;
        let Some(group) = self.groups.pop_front() else {
            self.bridge_failed(cx);
            return;
        };
        let mut targets: Vec<(String, String, Peer)> = Vec::new(); // (destination user, request URI, peer)
        let mut failure = None;
        for endpoint in group {
            match targets_of(cx.io, &self.uuid, endpoint) {
                Targets::Found(found) => targets.extend(found),
                Targets::Failed(cause) => failure = Some((cause, None)),
                // A host name: its address comes from the resolver (A/AAAA; RFC 3263's
                // NAPTR and SRV steps are not done), and the leg starts then.
                Targets::Resolve { user, uri, host, port } => {
                    let token = cx.routes.token();
                    cx.routes.resolve_out.push_back(ResolveRequest { token, host, port });
                    cx.routes.resolving.insert(token, (cx.id, self.group, user, uri));
                    self.pending_resolutions += 1;
                }
            }
        }
        if let Some(f) = failure {
            self.last_failure = Some(f);
        }
        if targets.is_empty() {
            if self.pending_resolutions == 0 {
                self.next_group_or_continue(cx);
            }
            return;
        }
        let mut started = false;
        for (dest, ruri, peer) in targets {
            started |= self.start_fork(cx, &dest, &ruri, peer);
        }
        if !started {
            self.check_group(cx);
        }
    }

    /// Starts a B-leg INVITE to `peer`; false if it could not be (the call's
    /// `last_failure` says why: the caller is answered with it unless another leg does
    /// better, at once rather than after a timeout).
    fn start_fork(&mut self, cx: &mut Cx<'_, '_>, dest: &str, ruri: &str, peer: Peer) -> bool {
        // B is offered the media plane's ports, or else what A offered: a leg the switch
        // dialled itself (originate) made no offer of its own to pass on.
        let (max_forwards, body, content_type) = match (&self.media, &self.a.setup) {
            (Some(m), setup) => (setup.as_ref().map_or(70, |s| forwards(&s.invite)), m.to_b.as_slice(), None),
            (None, Some(Setup { invite: a, .. })) => (forwards(a), a.body(), a.header(HeaderName::ContentType)),
            (None, None) => {
                warn!(call = %self.uuid, "no media plane and no offer from the first leg: nothing to offer a B-leg");
                self.last_failure = Some((HangupCause::INCOMPATIBLE_DESTINATION, None));
                return false;
            }
        };
        let io = &mut *cx.io;
        let uuid = io.uuid();
        let mut channel = Channel::new(uuid.clone(), Direction::Outbound);
        channel.name = format!("sofia/internal/{dest}@{}", peer.remote);
        channel.times.created = io.unix_us;
        let name = self.vars.get("caller_id_name").unwrap_or_default().replace('"', "");
        let number = self.vars.get("caller_id_number").unwrap_or_default().to_string();
        let b = BInvite { ruri, dest, name: &name, number: &number, body, content_type, max_forwards };
        let invite = match b_invite(io, &b, peer) {
            Ok(m) => m,
            Err(BuildError::TooLarge(bytes)) => {
                warn!(call = %self.uuid, bytes, max = super::MAX_BUILT_MESSAGE, "the B-leg INVITE would be too large: 413");
                self.last_failure = Some((HangupCause::INTERWORKING, Some(413)));
                return false;
            }
            Err(e) => {
                warn!(call = %self.uuid, error = %e, "could not build the B-leg INVITE");
                self.last_failure = Some((HangupCause::INTERWORKING, Some(500)));
                return false;
            }
        };
        let tx = match io.tx.request(io.now, invite.clone(), peer) {
            Ok(tx) => tx,
            Err(e) => {
                warn!(call = %self.uuid, error = %e, "could not send the B-leg INVITE");
                self.last_failure = Some((HangupCause::INTERWORKING, Some(500)));
                return false;
            }
        };
        info!(call = %self.uuid, b_uuid = %uuid, %dest, %ruri, to = %peer.remote, "originate");
        let mut vars = Variables::new();
        vars.set("destination_number", dest.to_string());
        vars.set("caller_id_name", name);
        vars.set("caller_id_number", number);
        vars.set("context", self.vars.get("context").unwrap_or("default").to_string());
        vars.set("network_addr", peer.remote.ip().to_string());
        vars.set("uuid", uuid.clone());
        vars.set("call_uuid", self.uuid.clone());
        // Its row says CS_CONSUME_MEDIA, where the leg is once its events below are out.
        let mut row_channel = channel.clone();
        for s in [ChannelState::CS_INIT, ChannelState::CS_ROUTING, ChannelState::CS_CONSUME_MEDIA] {
            row_channel.set_state(s);
        }
        io.writes.push_back(Write::UpsertChannel(channel_row(&row_channel, &vars, io.unix, Some(self.uuid.clone()))));
        self.forks.push(BLeg {
            channel,
            setup: Some(Setup { invite, tx }),
            peer,
            dialog: None,
            state: Fork::Trying,
            cancel_cause: None,
            status: None,
            started_unix: io.unix,
            answered_unix: None,
            destination: dest.to_string(),
            vars,
        });
        let i = self.forks.len() - 1;
        cx.routes.b_invites.insert(tx, (cx.id, i));
        cx.routes.channels_created += 1;
        // FreeSWITCH's order for an originated leg.
        let side = Side::B(i);
        self.emit(cx, EventName::ChannelOutgoing, side, Vec::new(), Vec::new());
        self.leg_state(cx, side, ChannelState::CS_INIT);
        self.emit(cx, EventName::ChannelCreate, side, Vec::new(), Vec::new());
        self.emit(cx, EventName::ChannelOriginate, side, Vec::new(), Vec::new());
        self.leg_state(cx, side, ChannelState::CS_ROUTING);
        self.leg_state(cx, side, ChannelState::CS_CONSUME_MEDIA);
        true
    }

    /// A response to B-leg `i`'s INVITE (on transaction `tx`).
    pub fn on_b_response(&mut self, cx: &mut Cx<'_, '_>, tx: TxId, i: usize, msg: &Message) {
        let Some(status) = msg.status() else { return };
        match status {
            100 => {}
            101..=199 => {
                if self.forks[i].state == Fork::Trying {
                    self.forks[i].state = Fork::Ringing;
                }
                self.leg_progress(cx, Side::B(i), !msg.body().is_empty());
                if self.answered.is_none() && self.a.channel.is_up() {
                    // After a late offer A has made no offer, so B's early SDP is not for A.
                    let late = self.media.as_ref().is_some_and(CallMedia::late);
                    let from_b = if msg.body().is_empty() { FromB::Nothing } else { self.media_from_b(cx, i, msg) };
                    let sdp = match from_b {
                        FromB::Sdp(sdp) => Some(sdp),
                        FromB::Nothing => None,
                        FromB::NoCommonCodec => {
                            let b_uuid = &self.forks[i].channel.uuid;
                            info!(%b_uuid, "early SDP with no codec in common with the caller: not relayed");
                            None
                        }
                    };
                    let sdp = sdp.filter(|_| !late);
                    let code = if sdp.is_some() { 183 } else { 180 };
                    self.provisional_a(cx, code, sdp);
                }
            }
            200..=299 => self.fork_answered(cx, i, msg),
            _ => {
                cx.routes.b_invites.remove(&tx);
                let fork = &mut self.forks[i];
                if fork.state == Fork::Cancelled {
                    let cause = fork.cancel_cause.unwrap_or(HangupCause::ORIGINATOR_CANCEL);
                    self.end_fork(cx, i, cause);
                    return;
                }
                fork.state = Fork::Failed;
                fork.status = Some(status);
                let cause = HangupCause::from_sip(status);
                info!(call = %self.uuid, b_uuid = %fork.channel.uuid, status, %cause, "B-leg failed");
                self.last_failure = Some((cause, Some(status)));
                self.end_fork(cx, i, cause);
                self.check_group(cx);
            }
        }
    }

    /// Timer B on B-leg `i`'s INVITE: the callee never answered at all.
    pub fn on_b_timeout(&mut self, cx: &mut Cx<'_, '_>, i: usize) {
        if matches!(self.forks[i].state, Fork::Trying | Fork::Ringing) {
            self.forks[i].state = Fork::Failed;
            self.last_failure = Some((HangupCause::RECOVERY_ON_TIMER_EXPIRE, Some(408)));
            self.end_fork(cx, i, HangupCause::RECOVERY_ON_TIMER_EXPIRE);
            self.check_group(cx);
        }
    }

    fn fork_answered(&mut self, cx: &mut Cx<'_, '_>, i: usize, ok: &Message) {
        let peer = self.forks[i].peer;
        let Some(Setup { invite, .. }) = &self.forks[i].setup else { return };
        let Some(mut dialog) = Dialog::uac(invite, ok, peer) else {
            warn!(call = %self.uuid, "2xx without To tag or Contact: no dialog");
            return;
        };
        // ACK every 2xx (retransmissions and late forks included) — RFC 3261 §13.2.2.4.
        send_ack(cx.io, &dialog, ok.cseq(), b"");
        let fork = &self.forks[i];
        if fork.state == Fork::Answered {
            return; // a retransmitted 2xx
        }
        let lost = self.answered.is_some() || !self.a.channel.is_up() || fork.state == Fork::Cancelled;
        // The winner's SDP moves leg B's peer and becomes A's answer; one with no codec in
        // common with A ends this leg instead (A gets 488 unless another fork does better).
        let from_b = if lost { FromB::Nothing } else { self.media_from_b(cx, i, ok) };
        let incompatible = matches!(from_b, FromB::NoCommonCodec);
        if incompatible {
            let b_uuid = &self.forks[i].channel.uuid;
            info!(call = %self.uuid, %b_uuid, "B-leg answered with no codec in common with the caller");
            self.last_failure = Some((HangupCause::INCOMPATIBLE_DESTINATION, Some(488)));
        }
        if lost || incompatible {
            // Lost the race (or the caller is gone, or no common codec): end this leg.
            self.forks[i].state = Fork::Failed;
            let io = &mut *cx.io;
            let mut buf = Vec::with_capacity(512);
            dialog.request("BYE", &format!("z9hG4bK{}", io.ids.hex(8)), &mut buf).finish(b"");
            if let Ok(bye) = Message::parse(Bytes::from(buf), Framing::Datagram) {
                let _ = io.tx.request(io.now, bye, peer);
            }
            if incompatible {
                self.end_fork(cx, i, HangupCause::INCOMPATIBLE_DESTINATION);
                self.check_group(cx);
            } else {
                self.end_fork(cx, i, HangupCause::LOSE_RACE);
            }
            return;
        }
        self.leg_answered(cx, Side::B(i));
        let fork = &mut self.forks[i];
        let io = &mut *cx.io;
        fork.state = Fork::Answered;
        fork.answered_unix = Some(io.unix);
        io.writes
            .push_back(Write::SetChannelState { uuid: fork.channel.uuid.clone(), state: "CS_EXCHANGE_MEDIA".into() });
        io.writes.push_back(Write::SetChannelAnswered { uuid: fork.channel.uuid.clone(), answered_at: io.unix as i64 });
        info!(call = %self.uuid, b_uuid = %fork.channel.uuid, "B-leg answered: bridged");
        cx.routes.track_dialog(io, &dialog, cx.id, Side::B(i), &fork.channel.uuid, RowDirection::Outbound);
        fork.dialog = Some(dialog);
        self.answered = Some(i);
        self.phase = Phase::Bridged;
        if let Some(row) = call_row(self) {
            cx.io.writes.push_back(Write::UpsertCall(row));
        }
        let sdp = match from_b {
            FromB::Sdp(sdp) => sdp,
            // No SDP in the 2xx: the answer came in a 183 already.
            _ => self.media.as_ref().and_then(|m| m.to_a.clone()).unwrap_or_default(),
        };
        self.disarm(cx);
        self.cancel_forks(cx, HangupCause::LOSE_RACE);
        self.answer_a(cx, Some(sdp));
        self.bridged(cx, i);
        self.leg_state(cx, Side::B(i), ChannelState::CS_EXCHANGE_MEDIA);
    }

    /// Sends CANCEL to every fork still ringing.
    pub fn cancel_forks(&mut self, cx: &mut Cx<'_, '_>, cause: HangupCause) {
        for fork in self.forks.iter_mut().filter(|f| matches!(f.state, Fork::Trying | Fork::Ringing)) {
            fork.state = Fork::Cancelled;
            fork.cancel_cause = Some(cause);
            let Some(cancel) = fork.setup.as_ref().and_then(|s| cancel_of(&s.invite)) else { continue };
            if let Err(e) = cx.io.tx.request(cx.io.now, cancel, fork.peer) {
                warn!(call = %self.uuid, error = %e, "could not send CANCEL");
            }
        }
    }

    /// When every fork of the current group has failed, tries the next group.
    pub fn check_group(&mut self, cx: &mut Cx<'_, '_>) {
        if self.phase != Phase::Bridging || self.answered.is_some() {
            return;
        }
        if self.pending_resolutions == 0 && self.forks.iter().all(|f| matches!(f.state, Fork::Failed | Fork::Cancelled))
        {
            self.next_group_or_continue(cx);
        }
    }

    /// A host name of group `group` resolved (or not): the leg to it starts, if that
    /// group is still ringing; a host that resolves to nothing fails that leg
    /// (NO_ROUTE_DESTINATION).
    pub fn on_resolved(
        &mut self,
        cx: &mut Cx<'_, '_>,
        group: u32,
        user: &str,
        ruri: &str,
        result: Result<Vec<std::net::SocketAddr>, String>,
    ) {
        if self.group != group || self.phase != Phase::Bridging || self.answered.is_some() || !self.a.channel.is_up() {
            return;
        }
        self.pending_resolutions -= 1;
        let peer = result.as_ref().ok().and_then(|addrs| {
            addrs
                .iter()
                .find_map(|a| cx.io.local_for(TransportKind::Udp, a.is_ipv4()).map(|l| Peer { remote: *a, ..l }))
        });
        match peer {
            Some(peer) => {
                if !self.start_fork(cx, user, ruri, peer) {
                    self.check_group(cx);
                }
            }
            None => {
                let why = result.err().unwrap_or_else(|| "no address the switch can reach".into());
                info!(call = %self.uuid, %ruri, %why, "host not resolved");
                self.last_failure = Some((HangupCause::NO_ROUTE_DESTINATION, None));
                self.check_group(cx);
            }
        }
    }

    pub fn next_group_or_continue(&mut self, cx: &mut Cx<'_, '_>) {
        if self.phase != Phase::Bridging || !self.a.channel.is_up() {
            return;
        }
        if !self.groups.is_empty() && self.timer.is_some() {
            self.start_group(cx);
        } else {
            self.bridge_failed(cx);
        }
    }

    /// `bridge` failed: continue with the next application if `continue_on_fail`,
    /// else hang up with the failure's cause.
    pub fn bridge_failed(&mut self, cx: &mut Cx<'_, '_>) {
        self.disarm(cx);
        let (cause, status) = self.last_failure.unwrap_or((HangupCause::NORMAL_UNSPECIFIED, None));
        self.vars.set("originate_disposition", cause.to_string());
        info!(call = %self.uuid, %cause, "bridge failed");
        let go_on = self
            .vars
            .get("continue_on_fail")
            .is_some_and(|v| v == "true" || v.split(',').any(|c| c.trim() == cause.to_string()));
        self.phase = Phase::Executing;
        if go_on {
            self.run(cx);
        } else {
            self.hangup_a(cx, cause, status);
        }
    }
}

/// The Max-Forwards a request on behalf of `a` carries on (RFC 3261 §16.6).
fn forwards(a: &Message) -> u8 {
    a.max_forwards().map_or(70, |m| m.saturating_sub(1))
}

/// Where an endpoint of a dial string is reached ([`targets_of`]).
pub(super) enum Targets {
    /// (destination user, request URI, peer): one per registration of a `user/`.
    Found(Vec<(String, String, Peer)>),
    /// A `sofia/` URI whose host is a name, to resolve first.
    Resolve { user: String, uri: String, host: String, port: u16 },
    /// Nowhere, for this reason.
    Failed(HangupCause),
}

/// Where `endpoint` is reached now: a user's registrations (UNALLOCATED_NUMBER if the
/// directory has no such user, USER_NOT_REGISTERED without one), a `sofia/` URI's
/// address, or the name to resolve for it.
pub(super) fn targets_of(io: &super::Io<'_>, call: &str, endpoint: Endpoint) -> Targets {
    match endpoint {
        Endpoint::User { id: user, .. } => {
            let Some(u) = io.users.get(&user) else { return Targets::Failed(HangupCause::UNALLOCATED_NUMBER) };
            let bindings = io.registrar.lookup(&user, io.unix);
            if bindings.is_empty() {
                return Targets::Failed(HangupCause::USER_NOT_REGISTERED);
            }
            let nat = u
                .variables
                .get("nat_detection")
                .and_then(|v| NatDetection::parse(v))
                .unwrap_or(io.registrar.nat_detection());
            Targets::Found(bindings.into_iter().map(|b| (user.clone(), b.contact.clone(), b.target(nat))).collect())
        }
        Endpoint::Sofia { uri, .. } => {
            // FreeSWITCH's `sofia/<profile>/1001@host` has no scheme: it is a SIP URI.
            let lower = uri.to_ascii_lowercase();
            let uri = if lower.starts_with("sip:") || lower.starts_with("sips:") { uri } else { format!("sip:{uri}") };
            let Ok(parsed) = crate::sip::message::Uri::parse(uri.as_bytes()) else {
                return Targets::Failed(HangupCause::INVALID_NUMBER_FORMAT);
            };
            let host = text(parsed.host_unbracketed());
            let port = parsed.port.unwrap_or(5060);
            let user = parsed.user.map(|x| text(&unescape(x))).unwrap_or_default();
            match host.parse::<std::net::IpAddr>() {
                Ok(ip) => match io.local_for(TransportKind::Udp, ip.is_ipv4()) {
                    Some(l) => Targets::Found(vec![(user, uri.clone(), Peer { remote: (ip, port).into(), ..l })]),
                    None => Targets::Failed(HangupCause::NETWORK_OUT_OF_ORDER),
                },
                Err(_) => Targets::Resolve { user, uri: uri.clone(), host, port },
            }
        }
        Endpoint::Error { cause } => {
            Targets::Failed(HangupCause::from_name(&cause).unwrap_or(HangupCause::NORMAL_UNSPECIFIED))
        }
        other => {
            warn!(%call, endpoint = %other, "endpoint not available");
            Targets::Failed(HangupCause::NETWORK_OUT_OF_ORDER)
        }
    }
}
