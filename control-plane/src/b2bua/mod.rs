//! The B2BUA: each call is an A-leg (the caller's INVITE) and B-legs the switch
//! originates, each leg a FreeSWITCH channel running its states ([`channel`]) over its
//! own dialog ([`dialog`]). Sans-IO: it acts through the transaction layer handed to it
//! in [`Io`], and time comes in as `now`.
//!
//! The A-leg goes CS_NEW → CS_INIT → CS_ROUTING (the dialplan is hunted) → CS_EXECUTE,
//! where the applications run in order ([`execute`]); `bridge` originates B-legs
//! ([`bridge`]: CS_NEW → CS_INIT → CS_ROUTING → CS_CONSUME_MEDIA), relays their 180/183
//! to the caller, and on the first 200 moves that B-leg to CS_EXCHANGE_MEDIA, cancels the
//! others and answers the caller with the callee's SDP. A BYE from either side ends both
//! ([`in_dialog`]); each leg then goes CS_HANGUP → CS_REPORTING (its CDR is written) →
//! CS_DESTROY. With the media plane on, each call's media crosses it ([`media`],
//! [`call_media`]): the B2BUA asks for sessions and waits for them before it offers B (or
//! answers for `echo`); without it, or with `bypass_media`, SDP passes between the legs
//! unchanged. After a restart, [`recovery`] takes the bridged calls back from the stored
//! rows.
//!
//! The split follows quinn's between its endpoint and its connections: [`B2bua`] is the
//! router, which finds the call an input belongs to through its indexes ([`routes`]) and
//! hands the input to that one call ([`call::Call`], a state machine with a [`call::Cx`]
//! for the switch's parts and the indexes); a call that finished is forgotten there.
//!
//! **Outputs, and their order.** Within one input, in the order the call makes them: SIP
//! messages go straight to the transaction layer (`io.tx`), storage rows to `io.writes`,
//! media requests to [`B2bua::poll_media`], host names to resolve to
//! [`B2bua::poll_resolve`]. A finished call's last rows (its dialogs' deletion) and its
//! media sessions' destruction come after everything else it did for that input.

mod bridge;
mod call;
mod call_media;
pub mod channel;
pub mod control;
pub mod dialog;
pub mod events;
mod execute;
mod in_dialog;
pub mod media;
mod messages;
pub mod originate;
pub mod recovery;
mod routes;
mod rows;
mod timer;

use std::time::Instant;

use crate::FastMap as HashMap;

use tracing::info;

use crate::config::User;
use crate::dialplan::{Dialplan, Variables};
use crate::ids::IdGen;
use crate::registrar::Registrar;
use crate::sip::message::uri::unescape;
use crate::sip::message::Message;
use crate::sip::transaction::{TransactionLayer, TxId};
use crate::sip::transport::{Peer, TransportKind};
use crate::storage::Write;
use call::{ALeg, Call, Cx, Setup, Side};
use channel::{Channel, ChannelState, Direction, HangupCause};
use events::{ChannelEvent, EventName};
pub use execute::DEFAULT_CALL_TIMEOUT;
use ferroswitch_shared::msg::SessionSpec;
use media::CallMedia;
pub use media::{MediaAnswer, MediaRequest, MediaSettings};
pub use originate::{OriginateError, OriginateRequest, Originated, Then};
use routes::Routes;

/// What the B2BUA works with for one input: the clock and the switch's parts.
pub struct Io<'a> {
    pub now: Instant,
    /// Wall-clock seconds (CDRs and registrations).
    pub unix: u64,
    /// The same instant in µs since the Unix epoch (channel events).
    pub unix_us: u64,
    pub tx: &'a mut TransactionLayer,
    pub ids: &'a mut IdGen,
    pub registrar: &'a Registrar,
    pub users: &'a HashMap<String, User>,
    pub dialplan: &'a Dialplan,
    /// Rows for storage.
    pub writes: &'a mut std::collections::VecDeque<Write>,
    /// The switch's own listeners, to send from and to name in Contact.
    pub locals: &'a [Peer],
}

impl Io<'_> {
    fn uuid(&mut self) -> String {
        let h = self.ids.hex(16);
        format!("{}-{}-4{}-a{}-{}", &h[..8], &h[8..12], &h[13..16], &h[17..20], &h[20..32])
    }

    fn local_for(&self, transport: TransportKind, v4: bool) -> Option<Peer> {
        self.locals.iter().find(|p| p.transport == transport && p.local.is_ipv4() == v4).copied()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct CallId(u64);

/// The largest request the B2BUA builds (a UDP datagram holds 65,507 bytes): a B-leg
/// INVITE beyond fails the leg at once with 413, instead of never reaching the callee.
pub const MAX_BUILT_MESSAGE: usize = 65_000;

/// A host name of a `sofia/` dial string to resolve (A/AAAA), for the leg to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolveRequest {
    /// Answered with the same token.
    pub token: u64,
    /// The host name.
    pub host: String,
    /// The port (the URI's, or 5060).
    pub port: u16,
}

/// How `answer`, `pre_answer` and `echo` went with the media plane.
enum LocalMedia {
    /// The sessions are being made; the application goes on when they exist.
    Waiting,
    /// The caller got the switch's answer at the media plane's ports.
    Done,
    /// No media plane for this call: the applications work as without one.
    Off,
}

/// Every call in progress: the router.
#[derive(Default)]
pub struct B2bua {
    calls: HashMap<CallId, Call>,
    routes: Routes,
    next: u64,
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The switch's media address for a leg whose signalling uses `peer`: the SIP
/// listener's address (loopback for a wildcard listener: set `media.rtp_ip` then).
fn media_ip_of(peer: Peer) -> std::net::IpAddr {
    match peer.local.ip() {
        std::net::IpAddr::V4(ip) if ip.is_unspecified() => std::net::Ipv4Addr::LOCALHOST.into(),
        std::net::IpAddr::V6(ip) if ip.is_unspecified() => std::net::Ipv6Addr::LOCALHOST.into(),
        ip => ip,
    }
}

impl B2bua {
    pub fn new() -> Self {
        Self::default()
    }

    /// Calls in progress.
    pub fn len(&self) -> usize {
        self.calls.len()
    }

    pub fn is_empty(&self) -> bool {
        self.calls.is_empty()
    }

    /// The states each leg of every live call went through (A first), for tests.
    pub fn histories(&self) -> Vec<(Vec<ChannelState>, Vec<Vec<ChannelState>>)> {
        self.calls
            .values()
            .map(|c| (c.a.channel.history().to_vec(), c.forks.iter().map(|f| f.channel.history().to_vec()).collect()))
            .collect()
    }

    /// Hands an input to call `id` (if it is still there), and forgets the call if it
    /// finished on it.
    fn with_call<R>(
        &mut self,
        io: &mut Io<'_>,
        id: CallId,
        f: impl FnOnce(&mut Call, &mut Cx<'_, '_>) -> R,
    ) -> Option<R> {
        let call = self.calls.get_mut(&id)?;
        // Every line the call logs names it: its uuid and its first leg's Call-ID.
        let span = tracing::info_span!(
            "call",
            uuid = %call.uuid,
            call_id = %call.vars.get("sip_call_id").unwrap_or_default()
        );
        let _in_call = span.enter();
        let r = f(call, &mut Cx { io: &mut *io, routes: &mut self.routes, id });
        if call.finished {
            let call = self.calls.remove(&id).expect("looked up above");
            self.routes.forget(io, id, &call);
        }
        Some(r)
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        self.routes.timers.next()
    }

    pub fn handle_timeout(&mut self, io: &mut Io<'_>) {
        while let Some((at, id)) = self.routes.timers.pop_due(io.now) {
            self.with_call(io, id, |call, cx| call.on_timer(cx, at));
        }
    }

    /// A new INVITE (already authenticated or trusted): the A-leg starts and the dialplan
    /// is hunted. `caller` is the authenticated user, if any.
    pub fn on_invite(&mut self, io: &mut Io<'_>, tx: TxId, invite: &Message, peer: Peer, caller: Option<&User>) {
        let id = CallId(self.next);
        self.next += 1;
        let uuid = io.uuid();
        let span = tracing::info_span!("call", uuid = %uuid, call_id = %text(invite.call_id()));
        let _in_call = span.enter();
        let mut channel = Channel::new(uuid.clone(), Direction::Inbound);
        channel.set_state(ChannelState::CS_INIT);
        channel.times.created = io.unix_us;
        let mut vars = Variables::new();
        let dest = invite.request_uri().and_then(|u| u.user.map(|u| text(&unescape(u)))).unwrap_or_default();
        let from = invite.from();
        let from_user = from.uri.user.map(|u| text(&unescape(u))).unwrap_or_default();
        channel.name = format!("sofia/internal/{from_user}@{}", text(from.uri.host_unbracketed()));
        vars.set("uuid", uuid.clone());
        vars.set("destination_number", dest);
        vars.set("network_addr", peer.remote.ip().to_string());
        vars.set("sip_call_id", text(invite.call_id()));
        vars.set("sip_from_user", from_user.clone());
        match caller {
            Some(u) => {
                vars.set("caller_id_name", u.caller_id_name.clone());
                vars.set("caller_id_number", u.caller_id_number.clone());
                vars.set("user_name", u.id.clone());
                for (k, v) in &u.variables {
                    vars.set(k, v.clone());
                }
            }
            None => {
                let name =
                    from.display.map(|d| text(d).trim_matches('"').to_string()).unwrap_or_else(|| from_user.clone());
                vars.set("caller_id_name", name);
                vars.set("caller_id_number", from_user);
            }
        }
        let context = vars.get("user_context").unwrap_or("default").to_string();
        vars.set("context", context);
        let to_tag = io.ids.hex(5);
        let a = ALeg {
            channel,
            setup: Some(Setup { invite: invite.clone(), tx }),
            dialed: None,
            peer,
            to_tag,
            dialog: None,
            answered: false,
            final_sent: false,
            ringing_sent: false,
        };
        let call = Call::new(uuid, a, vars, io.unix);
        call.write_a_row(io);
        self.calls.insert(id, call);
        self.routes.a_invites.insert(tx, id);
        self.routes.channels_created += 1;
        self.routes.calls_started += 1;
        self.with_call(io, id, |call, cx| {
            call.emit(cx, EventName::ChannelState, Side::A, Vec::new(), Vec::new());
            call.emit(cx, EventName::ChannelCreate, Side::A, Vec::new(), Vec::new());
            call.route(cx);
        });
    }

    /// A response on a client transaction the B2BUA started. Returns false if it is
    /// not one of ours.
    pub fn on_response(&mut self, io: &mut Io<'_>, tx: TxId, msg: &Message) -> bool {
        if self.routes.relays.contains_key(&tx) {
            let Some(status) = msg.status().filter(|s| *s != 100) else { return true };
            let relay =
                if status >= 200 { self.routes.relays.remove(&tx) } else { self.routes.relays.get(&tx).cloned() };
            if let Some(r) = relay {
                self.with_call(io, r.call, |call, cx| call.relay_response(cx, &r, msg));
            }
            return true;
        }
        if let Some(&id) = self.routes.dialed.get(&tx) {
            self.with_call(io, id, |call, cx| call.on_dialed_response(cx, tx, msg));
            return true;
        }
        let Some(&(id, i)) = self.routes.b_invites.get(&tx) else { return false };
        self.with_call(io, id, |call, cx| call.on_b_response(cx, tx, i, msg));
        true
    }

    /// Timer B on a B-leg INVITE: the callee never answered at all.
    pub fn on_timeout(&mut self, io: &mut Io<'_>, tx: TxId) -> bool {
        if let Some(id) = self.routes.dialed.remove(&tx) {
            self.with_call(io, id, |call, cx| call.on_dialed_timeout(cx));
            return true;
        }
        let Some((id, i)) = self.routes.b_invites.remove(&tx) else { return false };
        self.with_call(io, id, |call, cx| call.on_b_timeout(cx, i));
        true
    }

    /// The next host name to resolve for a `sofia/` endpoint; the driver answers through
    /// [`B2bua::on_resolved`].
    pub fn poll_resolve(&mut self) -> Option<ResolveRequest> {
        self.routes.resolve_out.pop_front()
    }

    /// A host name's addresses (or why there are none): the leg to it starts, if its
    /// group is still ringing; a host that resolves to nothing fails that leg
    /// (NO_ROUTE_DESTINATION).
    pub fn on_resolved(&mut self, io: &mut Io<'_>, token: u64, result: Result<Vec<std::net::SocketAddr>, String>) {
        let Some((id, group, user, ruri)) = self.routes.resolving.remove(&token) else { return };
        self.with_call(io, id, |call, cx| call.on_resolved(cx, group, &user, &ruri, result));
    }

    /// A CANCEL matched to the caller's INVITE (RFC 3261 §9.2): 487 to the INVITE, CANCEL
    /// to every ringing B-leg. Returns false if the INVITE is not one of ours.
    pub fn on_cancel(&mut self, io: &mut Io<'_>, invite_tx: TxId) -> bool {
        let Some(&id) = self.routes.a_invites.get(&invite_tx) else { return false };
        self.with_call(io, id, |call, cx| {
            if !call.a.final_sent {
                info!(call = %call.uuid, "caller cancelled");
                call.hangup_a(cx, HangupCause::ORIGINATOR_CANCEL, Some(487));
            }
        });
        true
    }

    /// An in-dialog request (To tag present). Returns false if no dialog matches (the
    /// switch then answers 481).
    pub fn on_in_dialog(&mut self, io: &mut Io<'_>, tx: TxId, req: &Message, peer: Peer) -> bool {
        let key = (text(req.call_id()), req.to_tag().map(text).unwrap_or_default());
        let Some(&(id, side, _)) = self.routes.dialogs.get(&key) else { return false };
        self.with_call(io, id, |call, cx| call.on_in_dialog(cx, side, &key, tx, req, peer));
        true
    }

    /// An ACK for a 2xx (outside any transaction); see [`call::Call::on_ack`].
    pub fn on_ack(&mut self, io: &mut Io<'_>, ack: &Message) {
        if !self.routes.media.enabled && self.routes.pending_acks.is_empty() {
            return; // nothing an ACK could answer: the common case, once per call
        }
        let key = (text(ack.call_id()), ack.to_tag().map(text).unwrap_or_default());
        let Some(&(id, side, _)) = self.routes.dialogs.get(&key) else { return };
        self.with_call(io, id, |call, cx| call.on_ack(cx, side, ack));
    }

    /// Calls started since start, established dialogs now, and the answered calls'
    /// times to answer (for `/metrics`).
    pub fn call_metrics(&self) -> (u64, usize, crate::management::histogram::Histogram<10>) {
        (self.routes.calls_started, self.routes.dialogs.len(), self.routes.answer_seconds)
    }

    /// Whether channel events are made (off until an event socket listens).
    pub fn set_events(&mut self, on: bool) {
        self.routes.events_on = on;
        if !on {
            self.routes.events.clear();
        }
    }

    /// The next channel event, in the order they happened.
    pub fn poll_event(&mut self) -> Option<ChannelEvent> {
        self.routes.events.pop_front()
    }

    /// How the B2BUA handles media (the media plane is off until this is called).
    pub fn set_media(&mut self, settings: MediaSettings) {
        self.routes.media = settings;
    }

    /// The next request for the media plane.
    pub fn poll_media(&mut self) -> Option<MediaRequest> {
        self.routes.media_out.pop_front()
    }

    /// The media plane answered a [`MediaRequest::Create`]: the call that asked goes on
    /// ([`call::Call::on_media_answer`]). Sessions of a call that ended meanwhile are
    /// destroyed.
    pub fn on_media_answer(&mut self, io: &mut Io<'_>, answer: MediaAnswer) {
        let id = self.routes.media_tokens.remove(&answer.token);
        let live = id.filter(|id| self.calls.get(id).is_some_and(|c| c.a.channel.is_up() && c.media.is_some()));
        let Some(id) = live else {
            for (session, _) in answer.result.iter().flatten().flatten() {
                self.routes.media_out.push_back(MediaRequest::Destroy { id: *session, cdr: [None, None] });
            }
            return;
        };
        self.with_call(io, id, |call, cx| call.on_media_answer(cx, answer));
    }

    /// The sessions the media plane holds, once it is attached after a restart: calls
    /// taken back from the database get theirs again (by the ids their rows name), so
    /// their re-offers are pointed at the media plane, their RTP timeouts hang them up,
    /// and their hangup destroys them with their counters in the CDRs.
    pub fn adopt_media(&mut self, held: &[(u64, SessionSpec)]) {
        let specs: HashMap<u64, SessionSpec> = held.iter().copied().collect();
        let waiting = std::mem::take(&mut self.routes.unadopted);
        for (id, ids) in waiting {
            let Some(call) = self.calls.get_mut(&id) else { continue };
            let sessions: Vec<Option<(u64, SessionSpec)>> =
                ids.iter().map(|s| specs.get(s).map(|spec| (*s, *spec))).collect();
            if sessions.iter().any(Option::is_none) {
                tracing::warn!(call = %call.uuid, ?ids, "the media plane lost some of this call's sessions");
            }
            for (session, _) in sessions.iter().flatten() {
                self.routes.media_calls.insert(*session, id);
            }
            let b_source = call.answered.and_then(|i| call.forks.get(i)).map(|f| f.peer.remote.ip());
            let sources = [Some(call.a.peer.remote.ip()), b_source];
            let m = &self.routes.media;
            call.media = CallMedia::adopted(sessions, sources, m.own_ports, m.prefs.clone());
            info!(call = %call.uuid, sessions = ids.len(), "media sessions taken back");
        }
    }

    /// A telephone-event ended on leg `leg` (0: the caller's side) of a media session: the
    /// DTMF event of the channel it came from.
    pub fn on_dtmf(&mut self, io: &mut Io<'_>, session: u64, leg: u8, digit: char, duration: u32) {
        let Some(&id) = self.routes.media_calls.get(&session) else { return };
        self.with_call(io, id, |call, cx| call.dtmf(cx, leg, digit, duration));
    }

    /// No RTP on a media session for its timeout: its call hangs up with MEDIA_TIMEOUT.
    pub fn on_media_timeout(&mut self, io: &mut Io<'_>, session: u64) {
        let Some(&id) = self.routes.media_calls.get(&session) else { return };
        self.with_call(io, id, |call, cx| {
            info!(call = %call.uuid, session, "no RTP for the timeout: MEDIA_TIMEOUT");
            call.hangup_a(cx, HangupCause::MEDIA_TIMEOUT, None);
        });
    }
}
