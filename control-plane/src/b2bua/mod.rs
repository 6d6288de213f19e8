//! The B2BUA: each call is an A-leg (the caller's INVITE) and B-legs the switch
//! originates, each leg a FreeSWITCH channel running its states ([`channel`]) over its
//! own dialog ([`dialog`]). Sans-IO: it acts through the transaction layer handed to it
//! in [`Io`], and time comes in as `now`.
//!
//! The A-leg goes CS_NEW → CS_INIT → CS_ROUTING (the dialplan is hunted) → CS_EXECUTE,
//! where the applications run in order; `bridge` originates B-legs (CS_NEW → CS_INIT →
//! CS_ROUTING → CS_CONSUME_MEDIA), relays their 180/183 to the caller, and on the first
//! 200 moves that B-leg to CS_EXCHANGE_MEDIA, cancels the others and answers the caller
//! with the callee's SDP. A BYE from either side ends both; each leg then goes CS_HANGUP
//! → CS_REPORTING (its CDR is written) → CS_DESTROY. With the media plane on, each
//! call's media crosses it ([`media`]): the B2BUA asks for sessions and waits for them
//! before it offers B (or answers for `echo`); without it, or with `bypass_media`, SDP
//! passes between the legs unchanged. After a restart, [`recovery`] takes the bridged calls back from the stored rows.

mod call_media;
use call_media::FromB;
pub mod channel;
pub mod dialog;
pub mod media;
pub mod recovery;

use std::collections::{BTreeSet, VecDeque};

use crate::FastMap as HashMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tracing::{info, warn};

use crate::config::User;
use crate::dialplan::{AppCall, DialString, Dialplan, Endpoint, Variables};
use crate::ids::IdGen;
use crate::media::negotiate::parse_codec_string;
use crate::media::rewrite::OwnMedia;
use crate::registrar::{NatDetection, Registrar};
use crate::sdp::Sdp;
use crate::sip::message::uri::unescape;
use crate::sip::message::write::{default_reason, response_to, Writer};
use crate::sip::message::{Framing, HeaderName, Message, Method};
use crate::sip::transaction::{TransactionLayer, TxId};
use crate::sip::transport::{Peer, TransportKind};
use crate::storage::{CallRow, CdrRow, ChannelRow, Direction as RowDirection, Write};
use channel::{Channel, ChannelState, Direction, HangupCause};
use dialog::Dialog;
use ferroswitch_shared::msg::SessionSpec;
use media::{CallMedia, PeerCheck, Waiting};
pub use media::{MediaAnswer, MediaRequest, MediaSettings};

/// How long `bridge` waits for an answer when the channel sets no `call_timeout`.
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// What the B2BUA works with for one input: the clock and the switch's parts.
pub struct Io<'a> {
    pub now: Instant,
    /// Wall-clock seconds (CDRs and registrations).
    pub unix: u64,
    pub tx: &'a mut TransactionLayer,
    pub ids: &'a mut IdGen,
    pub registrar: &'a Registrar,
    pub users: &'a HashMap<String, User>,
    pub dialplan: &'a Dialplan,
    /// Rows for storage.
    pub writes: &'a mut VecDeque<Write>,
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

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Side {
    A,
    B(usize),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fork {
    Trying,
    Ringing,
    Answered,
    Failed,
    Cancelled,
}

/// The largest request the B2BUA builds (a UDP datagram holds 65,507 bytes): a B-leg
/// INVITE beyond fails the leg at once with 413, instead of never reaching the callee.
pub const MAX_BUILT_MESSAGE: usize = 65_000;

/// The INVITE that set a leg up, and its transaction. Everything that uses them belongs
/// to call set-up: answering or rejecting the caller, the B-leg's offer, CANCEL, the
/// dialog made from a callee's 2xx. A leg recovered after a restart ([`recovery`]) has
/// none: it is past set-up, and its transaction died with the old process (the old
/// `TxId` could even name an unrelated transaction of the new one).
struct Setup {
    invite: Message,
    tx: TxId,
}

struct ALeg {
    channel: Channel,
    setup: Option<Setup>,
    peer: Peer,
    to_tag: String,
    dialog: Option<Dialog>,
    answered: bool,
    final_sent: bool,
    ringing_sent: bool,
}

struct BLeg {
    channel: Channel,
    setup: Option<Setup>,
    /// Where the INVITE went: the callee's registration source, so NAT works.
    peer: Peer,
    dialog: Option<Dialog>,
    state: Fork,
    /// Why the switch cancelled it, if it did.
    cancel_cause: Option<HangupCause>,
    status: Option<u16>,
    started_unix: u64,
    answered_unix: Option<u64>,
    destination: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Running applications.
    Executing,
    /// `bridge` is ringing B-legs.
    Bridging,
    /// A B-leg answered; media flows between the legs.
    Bridged,
    /// `sleep` until the timer.
    Sleeping,
    /// Answered and parked in an application (echo) until someone hangs up.
    Parked,
    /// Tearing down.
    Ending,
}

struct Call {
    uuid: String,
    a: ALeg,
    forks: Vec<BLeg>,
    answered: Option<usize>,
    apps: VecDeque<AppCall>,
    vars: Variables,
    phase: Phase,
    timer: Option<Instant>,
    groups: VecDeque<Vec<Endpoint>>,
    last_failure: Option<(HangupCause, Option<u16>)>,
    created_unix: u64,
    answered_unix: Option<u64>,
    /// The call's media sessions (None: no media plane, `bypass_media`, or not yet asked).
    media: Option<CallMedia>,
    /// Which `bridge` group is ringing (counts up), and its host names still resolving.
    group: u32,
    pending_resolutions: u32,
}

/// A leg's dialog, with the leg's channel uuid and direction (for its row). It takes the
/// legs rather than the call, so the call's other fields stay usable meanwhile.
fn leg_dialog<'c>(
    a: &'c mut ALeg,
    forks: &'c mut [BLeg],
    side: Side,
) -> Option<(&'c mut Dialog, &'c str, RowDirection)> {
    match side {
        Side::A => a.dialog.as_mut().map(|d| (d, a.channel.uuid.as_str(), RowDirection::Inbound)),
        Side::B(i) => {
            let fork = forks.get_mut(i)?;
            fork.dialog.as_mut().map(|d| (d, fork.channel.uuid.as_str(), RowDirection::Outbound))
        }
    }
}

/// An in-dialog request relayed to the other leg, waiting for its answer.
struct Relay {
    call: CallId,
    /// The leg the request came from, its server transaction and the request.
    from: Side,
    server_tx: TxId,
    request: Message,
    peer: Peer,
}

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

/// Every call in progress.
#[derive(Default)]
pub struct B2bua {
    calls: HashMap<CallId, Call>,
    relays: HashMap<TxId, Relay>,
    next: u64,
    a_invites: HashMap<TxId, CallId>,
    b_invites: HashMap<TxId, (CallId, usize)>,
    /// (Call-ID, our tag) → the call, the leg, and the remote tag (for the storage row).
    dialogs: HashMap<(String, String), (CallId, Side, String)>,
    timers: BTreeSet<(Instant, CallId)>,
    media: MediaSettings,
    /// Requests for the media plane, in order.
    media_out: VecDeque<MediaRequest>,
    /// Creations waiting for the media plane, by token.
    media_tokens: HashMap<u64, CallId>,
    /// Re-offers waiting for sessions for the streams they add, by call.
    reoffers: HashMap<CallId, Relay>,
    /// Host names to resolve for `sofia/` endpoints, in order.
    resolve_out: VecDeque<ResolveRequest>,
    /// Resolutions under way, by token: the call, its group, the user and the URI.
    resolving: HashMap<u64, (CallId, u32, String, String)>,
    /// Calls taken back after a restart, with the media sessions their rows name, until
    /// the media plane says what it holds ([`B2bua::adopt_media`]).
    unadopted: HashMap<CallId, Vec<u64>>,
    /// The ACK the switch owes a leg whose 2xx to an offerless re-INVITE made an offer:
    /// that leg and the 2xx's CSeq, by call. The answer comes in the other leg's ACK.
    pending_acks: HashMap<CallId, (Side, u32)>,
    /// Media session → its call (RTP timeouts).
    media_calls: HashMap<u64, CallId>,
    next_token: u64,
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
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

    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.iter().next().map(|(t, _)| *t)
    }

    pub fn handle_timeout(&mut self, io: &mut Io<'_>) {
        while let Some(&(at, id)) = self.timers.iter().next() {
            if at > io.now {
                break;
            }
            self.timers.remove(&(at, id));
            let Some(call) = self.calls.get_mut(&id) else { continue };
            if call.timer != Some(at) {
                continue;
            }
            call.timer = None;
            match call.phase {
                Phase::Bridging => {
                    // call_timeout: nobody answered. FreeSWITCH's NO_ANSWER; the caller
                    // gets 408 as a request that timed out.
                    info!(call = %call.uuid, "no answer before call_timeout");
                    call.last_failure = Some((HangupCause::NO_USER_RESPONSE, None));
                    self.cancel_forks(io, id, HangupCause::NO_USER_RESPONSE);
                    self.next_group_or_continue(io, id);
                }
                Phase::Sleeping => {
                    if let Some(c) = self.calls.get_mut(&id) {
                        c.phase = Phase::Executing;
                    }
                    self.run(io, id);
                }
                _ => {}
            }
        }
    }

    fn arm(&mut self, id: CallId, at: Instant) {
        if let Some(c) = self.calls.get_mut(&id) {
            if let Some(old) = c.timer.replace(at) {
                self.timers.remove(&(old, id));
            }
            self.timers.insert((at, id));
        }
    }

    fn disarm(&mut self, id: CallId) {
        if let Some(c) = self.calls.get_mut(&id) {
            if let Some(old) = c.timer.take() {
                self.timers.remove(&(old, id));
            }
        }
    }

    /// A new INVITE (already authenticated or trusted): the A-leg starts and the dialplan
    /// is hunted. `caller` is the authenticated user, if any.
    pub fn on_invite(&mut self, io: &mut Io<'_>, tx: TxId, invite: &Message, peer: Peer, caller: Option<&User>) {
        let id = CallId(self.next);
        self.next += 1;
        let uuid = io.uuid();
        let mut channel = Channel::new(uuid.clone(), Direction::Inbound);
        channel.set_state(ChannelState::CS_INIT);
        let mut vars = Variables::new();
        let dest = invite.request_uri().and_then(|u| u.user.map(|u| text(&unescape(u)))).unwrap_or_default();
        let from = invite.from();
        let from_user = from.uri.user.map(|u| text(&unescape(u))).unwrap_or_default();
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
            peer,
            to_tag,
            dialog: None,
            answered: false,
            final_sent: false,
            ringing_sent: false,
        };
        io.writes.push_back(Write::UpsertChannel(channel_row(&a.channel, &vars, io.unix, None)));
        let call = Call {
            uuid,
            a,
            forks: Vec::new(),
            answered: None,
            apps: VecDeque::new(),
            vars,
            phase: Phase::Executing,
            timer: None,
            groups: VecDeque::new(),
            last_failure: None,
            created_unix: io.unix,
            answered_unix: None,
            media: None,
            group: 0,
            pending_resolutions: 0,
        };
        self.calls.insert(id, call);
        self.a_invites.insert(tx, id);
        self.route(io, id);
    }

    /// CS_ROUTING: hunt the dialplan, then CS_EXECUTE.
    fn route(&mut self, io: &mut Io<'_>, id: CallId) {
        let Some(call) = self.calls.get_mut(&id) else { return };
        call.a.channel.set_state(ChannelState::CS_ROUTING);
        io.writes.push_back(Write::SetChannelState { uuid: call.uuid.clone(), state: "CS_ROUTING".into() });
        let context = call.vars.get("context").unwrap_or("default").to_string();
        match io.dialplan.hunt(&context, &mut call.vars) {
            Ok(apps) if !apps.is_empty() => {
                info!(call = %call.uuid, %context, apps = apps.len(), "dialplan matched");
                call.apps = apps.into();
                call.a.channel.set_state(ChannelState::CS_EXECUTE);
                io.writes.push_back(Write::SetChannelState { uuid: call.uuid.clone(), state: "CS_EXECUTE".into() });
                self.run(io, id);
            }
            Ok(_) => {
                info!(call = %call.uuid, %context, "no dialplan extension matched");
                self.hangup_a(io, id, HangupCause::NO_ROUTE_DESTINATION, None);
            }
            Err(e) => {
                warn!(call = %call.uuid, error = %e, "dialplan hunt failed");
                self.hangup_a(io, id, HangupCause::NO_ROUTE_DESTINATION, None);
            }
        }
    }

    /// CS_EXECUTE: runs applications until one waits (bridge, sleep, echo) or they run out.
    fn run(&mut self, io: &mut Io<'_>, id: CallId) {
        loop {
            let Some(call) = self.calls.get_mut(&id) else { return };
            if call.phase != Phase::Executing || !call.a.channel.is_up() {
                return;
            }
            if call.media.as_ref().is_some_and(|m| m.waiting.is_some()) {
                return; // on_media_answer goes on
            }
            let Some(app) = call.apps.pop_front() else {
                // The applications ran out: hang up, with the bridge's failure if one failed.
                let (cause, status) = call.last_failure.unwrap_or((HangupCause::NORMAL_CLEARING, None));
                self.hangup_a(io, id, cause, status);
                return;
            };
            let data = app.data.trim().to_string();
            info!(call = %call.uuid, app = %app.app, %data, "execute");
            match app.app.as_str() {
                "set" | "export" => {
                    if let Some((k, v)) = data.split_once('=') {
                        call.vars.set(k.trim().trim_start_matches("nolocal:"), v.to_string());
                    }
                }
                "unset" => call.vars.unset(&data),
                "log" => info!(call = %call.uuid, "{data}"),
                "ring_ready" => self.provisional_a(io, id, 180, None),
                "pre_answer" => match self.local_media(io, id, Waiting::Answer(183)) {
                    LocalMedia::Waiting => return,
                    LocalMedia::Done => {}
                    LocalMedia::Off => self.provisional_a(io, id, 183, None),
                },
                "answer" => match self.local_media(io, id, Waiting::Answer(200)) {
                    LocalMedia::Waiting => return,
                    LocalMedia::Done => {}
                    LocalMedia::Off => self.answer_a(io, id, None),
                },
                "echo" => {
                    call.phase = Phase::Parked;
                    // The media plane loops the caller's RTP. Without it, the caller's own
                    // SDP is the answer, so its media comes straight back to it.
                    match self.local_media(io, id, Waiting::Echo) {
                        LocalMedia::Waiting | LocalMedia::Done => {}
                        LocalMedia::Off => self.answer_a(io, id, None),
                    }
                    if let Some(c) = self.calls.get_mut(&id) {
                        c.phase = Phase::Parked;
                    }
                    return;
                }
                "sleep" => {
                    let ms: u64 = data.parse().unwrap_or(0);
                    call.phase = Phase::Sleeping;
                    let at = io.now + Duration::from_millis(ms);
                    self.arm(id, at);
                    return;
                }
                "hangup" => {
                    let cause = HangupCause::from_name(&data).unwrap_or(HangupCause::NORMAL_CLEARING);
                    self.hangup_a(io, id, cause, None);
                    return;
                }
                "transfer" => {
                    let dest = data.split_whitespace().next().unwrap_or_default().to_string();
                    if let Some(ctx) = data.split_whitespace().nth(2) {
                        call.vars.set("context", ctx.to_string());
                    }
                    call.vars.set("destination_number", dest);
                    call.apps.clear();
                    self.route(io, id);
                    return;
                }
                "bridge" => {
                    match DialString::parse(&data) {
                        Ok(ds) => {
                            for (k, v) in ds.vars().iter() {
                                call.vars.set(k, v.to_string());
                            }
                            call.groups =
                                ds.groups().iter().map(|g| g.iter().map(|l| l.endpoint().clone()).collect()).collect();
                            call.phase = Phase::Bridging;
                            let secs: u64 = call
                                .vars
                                .get("call_timeout")
                                .and_then(|t| t.parse().ok())
                                .unwrap_or(DEFAULT_CALL_TIMEOUT.as_secs());
                            let at = io.now + Duration::from_secs(secs);
                            self.arm(id, at);
                            if self.want_media(id) {
                                // The B-legs are offered the media plane's ports, once it has them.
                                self.request_media(io, id, Waiting::Bridge);
                            } else {
                                self.offer_after_local_answer(id);
                                self.start_group(io, id);
                            }
                        }
                        Err(e) => {
                            warn!(call = %call.uuid, error = %e, "bad dial string");
                            call.last_failure = Some((HangupCause::INVALID_NUMBER_FORMAT, None));
                        }
                    }
                    return;
                }
                other => warn!(call = %call.uuid, app = other, "unknown application"),
            }
        }
    }

    /// Originates the next group of `bridge` (legs ring together; groups in turn).
    fn start_group(&mut self, io: &mut Io<'_>, id: CallId) {
        let Some(call) = self.calls.get_mut(&id) else { return };
        if call.media.as_ref().is_some_and(|m| m.waiting.is_some()) {
            return; // on_media_answer starts it
        }
        // A new group: host names still resolving for the last one are forgotten.
        call.group += 1;
        call.pending_resolutions = 0;
        let Some(group) = call.groups.pop_front() else {
            self.bridge_failed(io, id);
            return;
        };
        let mut targets: Vec<(String, String, Peer)> = Vec::new(); // (destination user, request URI, peer)
        let mut failure = None;
        for endpoint in group {
            match endpoint {
                Endpoint::User { id: user, .. } => {
                    if !io.users.contains_key(&user) {
                        failure = Some((HangupCause::UNALLOCATED_NUMBER, None));
                        continue;
                    }
                    let bindings = io.registrar.lookup(&user, io.unix);
                    if bindings.is_empty() {
                        failure = Some((HangupCause::USER_NOT_REGISTERED, None));
                    }
                    let nat = io.users[&user]
                        .variables
                        .get("nat_detection")
                        .and_then(|v| NatDetection::parse(v))
                        .unwrap_or(io.registrar.nat_detection());
                    for b in bindings {
                        targets.push((user.clone(), b.contact.clone(), b.target(nat)));
                    }
                }
                Endpoint::Sofia { uri, .. } => {
                    // FreeSWITCH's `sofia/<profile>/1001@host` has no scheme: it is a SIP URI.
                    let lower = uri.to_ascii_lowercase();
                    let uri = if lower.starts_with("sip:") || lower.starts_with("sips:") {
                        uri
                    } else {
                        format!("sip:{uri}")
                    };
                    let Ok(parsed) = crate::sip::message::Uri::parse(uri.as_bytes()) else {
                        failure = Some((HangupCause::INVALID_NUMBER_FORMAT, None));
                        continue;
                    };
                    let host = text(parsed.host_unbracketed());
                    let port = parsed.port.unwrap_or(5060);
                    let user = parsed.user.map(|x| text(&unescape(x))).unwrap_or_default();
                    match host.parse::<std::net::IpAddr>() {
                        Ok(ip) => match io.local_for(TransportKind::Udp, ip.is_ipv4()) {
                            Some(l) => targets.push((user, uri.clone(), Peer { remote: (ip, port).into(), ..l })),
                            None => failure = Some((HangupCause::NETWORK_OUT_OF_ORDER, None)),
                        },
                        // A host name: its address comes from the resolver (A/AAAA; RFC 3263's
                        // NAPTR and SRV steps are not done), and the leg starts then.
                        Err(_) => {
                            let token = self.next_token;
                            self.next_token += 1;
                            self.resolve_out.push_back(ResolveRequest { token, host, port });
                            self.resolving.insert(token, (id, call.group, user, uri.clone()));
                            call.pending_resolutions += 1;
                        }
                    }
                }
                Endpoint::Error { cause } => {
                    failure = Some((HangupCause::from_name(&cause).unwrap_or(HangupCause::NORMAL_UNSPECIFIED), None));
                }
                other => {
                    warn!(call = %call.uuid, endpoint = %other, "endpoint not available");
                    failure = Some((HangupCause::NETWORK_OUT_OF_ORDER, None));
                }
            }
        }
        if let Some(f) = failure {
            call.last_failure = Some(f);
        }
        if targets.is_empty() {
            if call.pending_resolutions == 0 {
                self.next_group_or_continue(io, id);
            }
            return;
        }
        let mut started = false;
        for (dest, ruri, peer) in targets {
            started |= self.originate(io, id, &dest, &ruri, peer);
        }
        if !started {
            self.check_group(io, id);
        }
    }

    /// Starts a B-leg INVITE to `peer`; false if it could not be (the call's
    /// `last_failure` says why: the caller is answered with it unless another leg does
    /// better, at once rather than after a timeout).
    fn originate(&mut self, io: &mut Io<'_>, id: CallId, dest: &str, ruri: &str, peer: Peer) -> bool {
        let Some(call) = self.calls.get_mut(&id) else { return false };
        let uuid = io.uuid();
        let mut channel = Channel::new(uuid.clone(), Direction::Outbound);
        channel.set_state(ChannelState::CS_INIT);
        channel.set_state(ChannelState::CS_ROUTING);
        channel.set_state(ChannelState::CS_CONSUME_MEDIA);
        let Some(Setup { invite: a, .. }) = &call.a.setup else { return false };
        let body = call.media.as_ref().map_or(a.body(), |m| m.to_b.as_slice());
        let mf = a.max_forwards().map_or(70, |m| m.saturating_sub(1));
        let host = peer.local;
        let name = call.vars.get("caller_id_name").unwrap_or_default().replace('"', "");
        let number = call.vars.get("caller_id_number").unwrap_or_default().to_string();
        let mut buf = Vec::with_capacity(1024 + body.len());
        let mut w = Writer::request(&mut buf, b"INVITE", ruri.as_bytes());
        w.header_fmt(
            "Via",
            format_args!("SIP/2.0/{} {};branch=z9hG4bK{};rport", peer.transport.via_name(), host, io.ids.hex(8)),
        );
        w.header("Max-Forwards", mf.to_string());
        w.header_fmt("From", format_args!("\"{name}\" <sip:{number}@{host}>;tag={}", io.ids.hex(5)));
        w.header_fmt("To", format_args!("<sip:{dest}@{host}>"));
        w.header_fmt("Call-ID", format_args!("{}", io.ids.hex(12)));
        w.header("CSeq", "1 INVITE");
        w.header_fmt(
            "Contact",
            format_args!("<sip:ferroswitch@{host};transport={}>", peer.transport.via_name().to_ascii_lowercase()),
        );
        w.header("Allow", crate::switch::policy::ALLOW);
        w.header("User-Agent", crate::SERVER_NAME);
        if !body.is_empty() {
            let ct = a.header(HeaderName::ContentType).filter(|_| call.media.is_none());
            w.header("Content-Type", ct.unwrap_or(b"application/sdp"));
        }
        w.finish(body);
        if buf.len() > MAX_BUILT_MESSAGE {
            warn!(call = %call.uuid, bytes = buf.len(), max = MAX_BUILT_MESSAGE, "the B-leg INVITE would be too large: 413");
            call.last_failure = Some((HangupCause::INTERWORKING, Some(413)));
            return false;
        }
        let invite = match Message::parse(Bytes::from(buf), Framing::Datagram) {
            Ok(m) => m,
            Err(e) => {
                warn!(call = %call.uuid, error = %e, "could not build the B-leg INVITE");
                call.last_failure = Some((HangupCause::INTERWORKING, Some(500)));
                return false;
            }
        };
        let tx = match io.tx.request(io.now, invite.clone(), peer) {
            Ok(tx) => tx,
            Err(e) => {
                warn!(call = %call.uuid, error = %e, "could not send the B-leg INVITE");
                call.last_failure = Some((HangupCause::INTERWORKING, Some(500)));
                return false;
            }
        };
        info!(call = %call.uuid, b_uuid = %uuid, %dest, %ruri, to = %peer.remote, "originate");
        let mut vars = Variables::new();
        vars.set("destination_number", dest.to_string());
        vars.set("caller_id_name", name);
        vars.set("caller_id_number", number);
        vars.set("context", call.vars.get("context").unwrap_or("default").to_string());
        io.writes.push_back(Write::UpsertChannel(channel_row(&channel, &vars, io.unix, Some(call.uuid.clone()))));
        call.forks.push(BLeg {
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
        });
        self.b_invites.insert(tx, (id, call.forks.len() - 1));
        true
    }

    /// A response on a client transaction the B2BUA started. Returns false if it is
    /// not one of ours.
    pub fn on_response(&mut self, io: &mut Io<'_>, tx: TxId, msg: &Message) -> bool {
        if self.relays.contains_key(&tx) {
            self.relay_response(io, tx, msg);
            return true;
        }
        let Some(&(id, i)) = self.b_invites.get(&tx) else { return false };
        let Some(status) = msg.status() else { return true };
        let Some(call) = self.calls.get_mut(&id) else { return true };
        match status {
            100 => {}
            101..=199 => {
                if call.forks[i].state == Fork::Trying {
                    call.forks[i].state = Fork::Ringing;
                }
                if call.answered.is_none() && call.a.channel.is_up() {
                    // After a late offer A has made no offer, so B's early SDP is not for A.
                    let late = call.media.as_ref().is_some_and(CallMedia::late);
                    let b_uuid = call.forks[i].channel.uuid.clone();
                    let from_b = if msg.body().is_empty() { FromB::Nothing } else { self.media_from_b(id, i, msg) };
                    let sdp = match from_b {
                        FromB::Sdp(sdp) => Some(sdp),
                        FromB::Nothing => None,
                        FromB::NoCommonCodec => {
                            info!(%b_uuid, "early SDP with no codec in common with the caller: not relayed");
                            None
                        }
                    };
                    let sdp = sdp.filter(|_| !late);
                    let code = if sdp.is_some() { 183 } else { 180 };
                    self.provisional_a(io, id, code, sdp);
                }
            }
            200..=299 => self.fork_answered(io, id, i, msg),
            _ => {
                self.b_invites.remove(&tx);
                let fork = &mut call.forks[i];
                if fork.state == Fork::Cancelled {
                    let cause = fork.cancel_cause.unwrap_or(HangupCause::ORIGINATOR_CANCEL);
                    self.end_fork(io, id, i, cause);
                    return true;
                }
                fork.state = Fork::Failed;
                fork.status = Some(status);
                let cause = HangupCause::from_sip(status);
                info!(call = %call.uuid, b_uuid = %fork.channel.uuid, status, %cause, "B-leg failed");
                call.last_failure = Some((cause, Some(status)));
                self.end_fork(io, id, i, cause);
                self.check_group(io, id);
            }
        }
        true
    }

    /// Timer B on a B-leg INVITE: the callee never answered at all.
    pub fn on_timeout(&mut self, io: &mut Io<'_>, tx: TxId) -> bool {
        let Some((id, i)) = self.b_invites.remove(&tx) else { return false };
        if let Some(call) = self.calls.get_mut(&id) {
            if matches!(call.forks[i].state, Fork::Trying | Fork::Ringing) {
                call.forks[i].state = Fork::Failed;
                call.last_failure = Some((HangupCause::RECOVERY_ON_TIMER_EXPIRE, Some(408)));
                self.end_fork(io, id, i, HangupCause::RECOVERY_ON_TIMER_EXPIRE);
                self.check_group(io, id);
            }
        }
        true
    }

    fn fork_answered(&mut self, io: &mut Io<'_>, id: CallId, i: usize, ok: &Message) {
        let Some(call) = self.calls.get_mut(&id) else { return };
        let peer = call.forks[i].peer;
        let Some(Setup { invite, .. }) = &call.forks[i].setup else { return };
        let Some(mut dialog) = Dialog::uac(invite, ok, peer) else {
            warn!(call = %call.uuid, "2xx without To tag or Contact: no dialog");
            return;
        };
        // ACK every 2xx (retransmissions and late forks included) — RFC 3261 §13.2.2.4.
        let mut buf = Vec::with_capacity(512);
        dialog.ack(ok.cseq(), &format!("z9hG4bK{}", io.ids.hex(8)), &mut buf).finish(b"");
        io.tx.send_stateless(peer, Bytes::from(buf));
        let fork = &mut call.forks[i];
        if fork.state == Fork::Answered {
            return; // a retransmitted 2xx
        }
        let lost = call.answered.is_some() || !call.a.channel.is_up() || fork.state == Fork::Cancelled;
        // The winner's SDP moves leg B's peer and becomes A's answer; one with no codec in
        // common with A ends this leg instead (A gets 488 unless another fork does better).
        let from_b = if lost { FromB::Nothing } else { self.media_from_b(id, i, ok) };
        let incompatible = matches!(from_b, FromB::NoCommonCodec);
        let Some(call) = self.calls.get_mut(&id) else { return };
        let fork = &mut call.forks[i];
        if incompatible {
            info!(call = %call.uuid, b_uuid = %fork.channel.uuid, "B-leg answered with no codec in common with the caller");
            call.last_failure = Some((HangupCause::INCOMPATIBLE_DESTINATION, Some(488)));
        }
        if lost || incompatible {
            // Lost the race (or the caller is gone, or no common codec): end this leg.
            fork.state = Fork::Failed;
            let mut buf = Vec::with_capacity(512);
            dialog.request("BYE", &format!("z9hG4bK{}", io.ids.hex(8)), &mut buf).finish(b"");
            if let Ok(bye) = Message::parse(Bytes::from(buf), Framing::Datagram) {
                let _ = io.tx.request(io.now, bye, peer);
            }
            if incompatible {
                self.end_fork(io, id, i, HangupCause::INCOMPATIBLE_DESTINATION);
                self.check_group(io, id);
            } else {
                self.end_fork(io, id, i, HangupCause::LOSE_RACE);
            }
            return;
        }
        fork.state = Fork::Answered;
        fork.answered_unix = Some(io.unix);
        fork.channel.set_state(ChannelState::CS_EXCHANGE_MEDIA);
        io.writes
            .push_back(Write::SetChannelState { uuid: fork.channel.uuid.clone(), state: "CS_EXCHANGE_MEDIA".into() });
        io.writes.push_back(Write::SetChannelAnswered { uuid: fork.channel.uuid.clone(), answered_at: io.unix as i64 });
        info!(call = %call.uuid, b_uuid = %fork.channel.uuid, "B-leg answered: bridged");
        track_dialog(&mut self.dialogs, io, &dialog, id, Side::B(i), &fork.channel.uuid, RowDirection::Outbound);
        fork.dialog = Some(dialog);
        call.answered = Some(i);
        call.phase = Phase::Bridged;
        if let Some(row) = call_row(call) {
            io.writes.push_back(Write::UpsertCall(row));
        }
        let sdp = match from_b {
            FromB::Sdp(sdp) => sdp,
            // No SDP in the 2xx: the answer came in a 183 already.
            _ => self.calls.get(&id).and_then(|c| c.media.as_ref()?.to_a.clone()).unwrap_or_default(),
        };
        self.disarm(id);
        self.cancel_forks(io, id, HangupCause::LOSE_RACE);
        self.answer_a(io, id, Some(sdp));
    }

    /// Sends CANCEL to every fork still ringing.
    fn cancel_forks(&mut self, io: &mut Io<'_>, id: CallId, cause: HangupCause) {
        let Some(call) = self.calls.get_mut(&id) else { return };
        for fork in call.forks.iter_mut().filter(|f| matches!(f.state, Fork::Trying | Fork::Ringing)) {
            fork.state = Fork::Cancelled;
            fork.cancel_cause = Some(cause);
            let Some(Setup { invite: inv, .. }) = &fork.setup else { continue };
            let mut buf = Vec::with_capacity(512);
            let mut w = Writer::request(&mut buf, b"CANCEL", inv.request_uri_bytes());
            w.header("Via", inv.top_via_bytes());
            w.header("Max-Forwards", "70");
            w.header("From", inv.header(HeaderName::From).unwrap_or_default());
            w.header("To", inv.header(HeaderName::To).unwrap_or_default());
            w.header("Call-ID", inv.call_id());
            w.header_fmt("CSeq", format_args!("{} CANCEL", inv.cseq()));
            w.finish(b"");
            if let Ok(cancel) = Message::parse(Bytes::from(buf), Framing::Datagram) {
                if let Err(e) = io.tx.request(io.now, cancel, fork.peer) {
                    warn!(call = %call.uuid, error = %e, "could not send CANCEL");
                }
            }
        }
    }

    /// When every fork of the current group has failed, tries the next group.
    fn check_group(&mut self, io: &mut Io<'_>, id: CallId) {
        let Some(call) = self.calls.get(&id) else { return };
        if call.phase != Phase::Bridging || call.answered.is_some() {
            return;
        }
        if call.pending_resolutions == 0 && call.forks.iter().all(|f| matches!(f.state, Fork::Failed | Fork::Cancelled))
        {
            self.next_group_or_continue(io, id);
        }
    }

    /// The next host name to resolve for a `sofia/` endpoint; the driver answers through
    /// [`B2bua::on_resolved`].
    pub fn poll_resolve(&mut self) -> Option<ResolveRequest> {
        self.resolve_out.pop_front()
    }

    /// A host name's addresses (or why there are none): the leg to it starts, if its
    /// group is still ringing; a host that resolves to nothing fails that leg
    /// (NO_ROUTE_DESTINATION).
    pub fn on_resolved(&mut self, io: &mut Io<'_>, token: u64, result: Result<Vec<std::net::SocketAddr>, String>) {
        let Some((id, group, user, ruri)) = self.resolving.remove(&token) else { return };
        let Some(call) = self.calls.get_mut(&id) else { return };
        if call.group != group || call.phase != Phase::Bridging || call.answered.is_some() || !call.a.channel.is_up() {
            return;
        }
        call.pending_resolutions -= 1;
        let peer = result.as_ref().ok().and_then(|addrs| {
            addrs.iter().find_map(|a| io.local_for(TransportKind::Udp, a.is_ipv4()).map(|l| Peer { remote: *a, ..l }))
        });
        match peer {
            Some(peer) => {
                if !self.originate(io, id, &user, &ruri, peer) {
                    self.check_group(io, id);
                }
            }
            None => {
                let why = result.err().unwrap_or_else(|| "no address the switch can reach".into());
                info!(call = %call.uuid, %ruri, %why, "host not resolved");
                call.last_failure = Some((HangupCause::NO_ROUTE_DESTINATION, None));
                self.check_group(io, id);
            }
        }
    }

    fn next_group_or_continue(&mut self, io: &mut Io<'_>, id: CallId) {
        let Some(call) = self.calls.get_mut(&id) else { return };
        if call.phase != Phase::Bridging || !call.a.channel.is_up() {
            return;
        }
        if !call.groups.is_empty() && call.timer.is_some() {
            self.start_group(io, id);
        } else {
            self.bridge_failed(io, id);
        }
    }

    /// `bridge` failed: continue with the next application if `continue_on_fail`,
    /// else hang up with the failure's cause.
    fn bridge_failed(&mut self, io: &mut Io<'_>, id: CallId) {
        self.disarm(id);
        let Some(call) = self.calls.get_mut(&id) else { return };
        let (cause, status) = call.last_failure.unwrap_or((HangupCause::NORMAL_UNSPECIFIED, None));
        call.vars.set("originate_disposition", cause.to_string());
        info!(call = %call.uuid, %cause, "bridge failed");
        let go_on = call
            .vars
            .get("continue_on_fail")
            .is_some_and(|v| v == "true" || v.split(',').any(|c| c.trim() == cause.to_string()));
        call.phase = Phase::Executing;
        if go_on {
            self.run(io, id);
        } else {
            self.hangup_a(io, id, cause, status);
        }
    }

    /// A provisional response to the caller (once per code).
    fn provisional_a(&mut self, io: &mut Io<'_>, id: CallId, code: u16, sdp: Option<Vec<u8>>) {
        let Some(call) = self.calls.get_mut(&id) else { return };
        let a = &mut call.a;
        if a.final_sent || (code == 180 && a.ringing_sent && sdp.is_none()) {
            return;
        }
        let Some(setup) = &a.setup else { return };
        a.ringing_sent = true;
        let bytes = build_to_a(&setup.invite, code, &a.to_tag, a.peer, sdp.as_deref());
        if let Err(e) = io.tx.respond(io.now, setup.tx, code, bytes) {
            warn!(call = %call.uuid, error = %e, "could not send provisional response");
        }
    }

    /// Answers the caller: 200 with `sdp`, or the caller's own offer when none is given.
    fn answer_a(&mut self, io: &mut Io<'_>, id: CallId, sdp: Option<Vec<u8>>) {
        let Some(call) = self.calls.get_mut(&id) else { return };
        let a = &mut call.a;
        if a.answered || a.final_sent {
            return;
        }
        let Some(setup) = &a.setup else { return };
        let sdp = sdp.unwrap_or_else(|| setup.invite.body().to_vec());
        let bytes = build_to_a(&setup.invite, 200, &a.to_tag, a.peer, Some(&sdp));
        if let Err(e) = io.tx.respond(io.now, setup.tx, 200, bytes) {
            warn!(call = %call.uuid, error = %e, "could not answer");
            return;
        }
        let dialog = Dialog::uas(&setup.invite, &a.to_tag, a.peer);
        a.answered = true;
        a.final_sent = true;
        call.answered_unix = Some(io.unix);
        io.writes.push_back(Write::SetChannelAnswered { uuid: a.channel.uuid.clone(), answered_at: io.unix as i64 });
        track_dialog(&mut self.dialogs, io, &dialog, id, Side::A, &a.channel.uuid, RowDirection::Inbound);
        a.dialog = Some(dialog);
        info!(call = %call.uuid, "answered");
    }

    /// Ends the A-leg with `cause`: a final response if unanswered, else a BYE; then the
    /// bridged B-leg too, and the call.
    fn hangup_a(&mut self, io: &mut Io<'_>, id: CallId, cause: HangupCause, status: Option<u16>) {
        let Some(call) = self.calls.get_mut(&id) else { return };
        if !call.a.channel.is_up() {
            return;
        }
        call.phase = Phase::Ending;
        if !call.a.final_sent {
            if let Some(setup) = &call.a.setup {
                let code = status.filter(|s| *s >= 300).unwrap_or_else(|| cause.to_sip());
                let bytes = build_to_a(&setup.invite, code, &call.a.to_tag, call.a.peer, None);
                if let Err(e) = io.tx.respond(io.now, setup.tx, code, bytes) {
                    warn!(call = %call.uuid, error = %e, "could not send the final response");
                }
            }
            call.a.final_sent = true;
        } else if let Some(d) = call.a.dialog.as_mut() {
            send_bye(io, d);
        }
        call.a.channel.hangup(cause);
        let cancel_cause = cause;
        self.cancel_forks(io, id, cancel_cause);
        if let Some(call) = self.calls.get_mut(&id) {
            if let Some(i) = call.answered {
                if call.forks[i].channel.is_up() {
                    if let Some(d) = call.forks[i].dialog.as_mut() {
                        send_bye(io, d);
                    }
                    self.end_fork(io, id, i, cause);
                }
            }
        }
        self.maybe_finish(io, id);
    }

    /// A B-leg reaches CS_HANGUP → CS_REPORTING (CDR) → CS_DESTROY.
    fn end_fork(&mut self, io: &mut Io<'_>, id: CallId, i: usize, cause: HangupCause) {
        let Some(call) = self.calls.get_mut(&id) else { return };
        let fork = &mut call.forks[i];
        if !fork.channel.is_up() {
            return;
        }
        fork.channel.hangup(cause);
        fork.channel.finish();
        if let Some(d) = &fork.dialog {
            untrack_dialog(&mut self.dialogs, io, &d.key());
        }
        let cdr = cdr_row(
            &fork.channel,
            &call.uuid,
            &call.vars,
            &fork.destination,
            (fork.started_unix, fork.answered_unix, io.unix),
            fork.channel.cause.unwrap_or(cause),
            fork.status,
        );
        io.writes.push_back(Write::InsertCdr(cdr));
        io.writes.push_back(Write::DeleteChannel { uuid: fork.channel.uuid.clone() });
    }

    /// When the A-leg and every B-leg are down, the A-leg reports and is destroyed.
    fn maybe_finish(&mut self, io: &mut Io<'_>, id: CallId) {
        let Some(call) = self.calls.get_mut(&id) else { return };
        if call.a.channel.is_up() || call.forks.iter().any(|f| f.channel.is_up() && f.state != Fork::Cancelled) {
            return;
        }
        // B-legs still waiting for their 487 end now, with the reason they were cancelled.
        let cancelled: Vec<(usize, HangupCause)> = call
            .forks
            .iter()
            .enumerate()
            .filter(|(_, f)| f.channel.is_up())
            .map(|(i, f)| (i, f.cancel_cause.unwrap_or(HangupCause::ORIGINATOR_CANCEL)))
            .collect();
        for (i, cause) in cancelled {
            self.end_fork(io, id, i, cause);
        }
        let Some(call) = self.calls.get_mut(&id) else { return };
        call.a.channel.finish();
        let cause = call.a.channel.cause.unwrap_or(HangupCause::NORMAL_CLEARING);
        let destination = call.vars.get("destination_number").unwrap_or_default().to_string();
        let cdr = cdr_row(
            &call.a.channel,
            &call.uuid,
            &call.vars,
            &destination,
            (call.created_unix, call.answered_unix, io.unix),
            cause,
            None,
        );
        io.writes.push_back(Write::InsertCdr(cdr));
        io.writes.push_back(Write::DeleteChannel { uuid: call.a.channel.uuid.clone() });
        io.writes.push_back(Write::DeleteCall { uuid: call.uuid.clone() });
        info!(call = %call.uuid, %cause, "call ended");
        // Forks still cancelling keep their transactions; nothing more is expected of them.
        let call = self.calls.remove(&id).expect("looked up above");
        self.disarm_removed(id, &call);
        let b_leg = call.answered.map(|i| call.forks[i].channel.uuid.clone());
        for (session, _) in call.media.iter().flat_map(|m| m.sessions.iter().flatten()) {
            self.media_calls.remove(session);
            self.media_out.push_back(MediaRequest::Destroy {
                id: *session,
                cdr: [Some(call.a.channel.uuid.clone()), b_leg.clone()],
            });
        }
        if let Some(setup) = &call.a.setup {
            self.a_invites.remove(&setup.tx);
        }
        self.relays.retain(|_, r| r.call != id);
        self.reoffers.remove(&id);
        self.pending_acks.remove(&id);
        if let Some(d) = &call.a.dialog {
            untrack_dialog(&mut self.dialogs, io, &d.key());
        }
        for f in &call.forks {
            if let Some(setup) = &f.setup {
                self.b_invites.remove(&setup.tx);
            }
            if let Some(d) = &f.dialog {
                untrack_dialog(&mut self.dialogs, io, &d.key());
            }
        }
    }

    fn disarm_removed(&mut self, id: CallId, call: &Call) {
        if let Some(t) = call.timer {
            self.timers.remove(&(t, id));
        }
    }

    /// A CANCEL matched to the caller's INVITE (RFC 3261 §9.2): 487 to the INVITE, CANCEL
    /// to every ringing B-leg. Returns false if the INVITE is not one of ours.
    pub fn on_cancel(&mut self, io: &mut Io<'_>, invite_tx: TxId) -> bool {
        let Some(&id) = self.a_invites.get(&invite_tx) else { return false };
        let answered = self.calls.get(&id).is_some_and(|c| c.a.final_sent);
        if !answered {
            info!("caller cancelled");
            self.hangup_a(io, id, HangupCause::ORIGINATOR_CANCEL, Some(487));
        }
        true
    }

    /// An in-dialog request (To tag present). Returns false if no dialog matches (the
    /// switch then answers 481).
    pub fn on_in_dialog(&mut self, io: &mut Io<'_>, tx: TxId, req: &Message, peer: Peer) -> bool {
        let key = (text(req.call_id()), req.to_tag().map(text).unwrap_or_default());
        let Some(&(id, side, _)) = self.dialogs.get(&key) else { return false };
        if side == Side::A {
            // Any request in the caller's dialog proves it has our 2xx, even if its ACK
            // was lost: stop retransmitting the 2xx.
            if let Some(setup) = self.calls.get(&id).and_then(|c| c.a.setup.as_ref()) {
                io.tx.acknowledged(io.now, setup.tx);
            }
        }
        if !matches!(req.method(), Method::Ack | Method::Bye) {
            // The row follows the peer's CSeq, for a switch restarted from it (recovery).
            let call = self.calls.get_mut(&id);
            if let Some((d, uuid, direction)) = call.and_then(|c| leg_dialog(&mut c.a, &mut c.forks, side)) {
                d.remote_cseq = d.remote_cseq.max(req.cseq());
                io.writes.push_back(Write::UpsertDialog(d.row(uuid, direction)));
            }
        }
        match req.method() {
            Method::Bye => {
                respond_simple(io, tx, req, peer, 200);
                let Some(call) = self.calls.get_mut(&id) else { return true };
                match side {
                    Side::A => {
                        info!(call = %call.uuid, "caller hung up");
                        call.a.final_sent = true;
                        call.a.dialog = None;
                        untrack_dialog(&mut self.dialogs, io, &key);
                        self.hangup_a_quietly(io, id, HangupCause::NORMAL_CLEARING);
                    }
                    Side::B(i) => {
                        info!(call = %call.uuid, "callee hung up");
                        if let Some(d) = call.forks[i].dialog.take() {
                            untrack_dialog(&mut self.dialogs, io, &d.key());
                        }
                        self.end_fork(io, id, i, HangupCause::NORMAL_CLEARING);
                        self.hangup_a(io, id, HangupCause::NORMAL_CLEARING, None);
                    }
                }
            }
            Method::Ack => {}
            _ => self.relay(io, id, side, tx, req, peer),
        }
        true
    }

    /// An ACK for a 2xx (outside any transaction). One with SDP answers an offer: the
    /// switch's own (late offer) or the other leg's, made in the 2xx to a re-INVITE without
    /// SDP; that leg's peer moves, and in the second case the answer goes on to the other
    /// leg in the ACK the switch owes it.
    pub fn on_ack(&mut self, io: &mut Io<'_>, ack: &Message) {
        if !self.media.enabled && self.pending_acks.is_empty() {
            return; // nothing an ACK could answer: the common case, once per call
        }
        let key = (text(ack.call_id()), ack.to_tag().map(text).unwrap_or_default());
        let Some(&(id, side, _)) = self.dialogs.get(&key) else { return };
        let body = match self.media_body(id, side, ack) {
            Ok(b) => b,
            Err(why) => {
                warn!(%why, "SDP in an ACK refused");
                None
            }
        };
        let Some(&(owed, cseq)) = self.pending_acks.get(&id) else { return };
        if owed == side {
            return;
        }
        self.pending_acks.remove(&id);
        let Some(call) = self.calls.get(&id) else { return };
        let dialog = match owed {
            Side::A => call.a.dialog.as_ref(),
            Side::B(i) => call.forks.get(i).and_then(|f| f.dialog.as_ref()),
        };
        let Some(d) = dialog else { return };
        let body = body.as_deref().unwrap_or(ack.body());
        let mut buf = Vec::with_capacity(512 + body.len());
        let mut w = d.ack(cseq, &format!("z9hG4bK{}", io.ids.hex(8)), &mut buf);
        if !body.is_empty() {
            w.header("Content-Type", "application/sdp");
        }
        w.finish(body);
        io.tx.send_stateless(d.peer, Bytes::from(buf));
    }

    /// Relays an in-dialog request (re-INVITE, UPDATE, INFO, OPTIONS, …) to the other leg
    /// of a bridged call on that leg's dialog; the answer comes back in `relay_response`.
    /// Without a bridged other leg the switch answers itself: 200 to OPTIONS and INFO, 488
    /// to an offer it cannot take. A re-INVITE while one is pending gets 491 (RFC 3261 §14.2).
    fn relay(&mut self, io: &mut Io<'_>, id: CallId, from: Side, tx: TxId, req: &Message, peer: Peer) {
        let method = req.method();
        let Some(call) = self.calls.get(&id) else { return };
        let alone = || if matches!(method, Method::Options | Method::Info) { 200 } else { 488 };
        if call.answered.is_none() {
            return respond_simple(io, tx, req, peer, alone());
        }
        let offering = matches!(method, Method::Invite | Method::Update);
        let reoffer_waits = call.media.as_ref().is_some_and(|m| m.waiting == Some(Waiting::Reoffer));
        if offering
            && (reoffer_waits
                || self
                    .relays
                    .values()
                    .any(|r| r.call == id && matches!(r.request.method(), Method::Invite | Method::Update)))
        {
            info!(call = %call.uuid, "glare: an offer is already pending");
            return respond_simple(io, tx, req, peer, 491);
        }
        // Streams the call has no session for wait for theirs; the relay resumes then.
        if offering && self.media_for_added_streams(id, from, tx, req, peer) {
            return;
        }
        // A new offer moves this leg's peer and is pointed at the other leg's ports.
        let body = match self.media_body(id, from, req) {
            Ok(b) => b,
            Err(why) => {
                warn!(%why, "re-offer refused");
                return respond_simple(io, tx, req, peer, 488);
            }
        };
        let body = body.as_deref().unwrap_or(req.body());
        let Some(call) = self.calls.get_mut(&id) else { return };
        let other = match (from, call.answered) {
            (Side::A, Some(i)) => leg_dialog(&mut call.a, &mut call.forks, Side::B(i)),
            (Side::B(_), Some(_)) => leg_dialog(&mut call.a, &mut call.forks, Side::A),
            _ => None,
        };
        let Some((dialog, uuid, direction)) = other else {
            return respond_simple(io, tx, req, peer, alone());
        };
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
        io.writes.push_back(Write::UpsertDialog(dialog.row(uuid, direction)));
        let out_peer = dialog.peer;
        match Message::parse(Bytes::from(buf), Framing::Datagram)
            .map_err(|e| e.to_string())
            .and_then(|m| io.tx.request(io.now, m, out_peer).map_err(|e| e.to_string()))
        {
            Ok(client_tx) => {
                info!(call = %call.uuid, method = %String::from_utf8_lossy(req.method_bytes()), "relayed in-dialog request");
                self.relays.insert(client_tx, Relay { call: id, from, server_tx: tx, request: req.clone(), peer });
            }
            Err(e) => {
                warn!(call = %call.uuid, error = %e, "could not relay in-dialog request");
                respond_simple(io, tx, req, peer, 500);
            }
        }
    }

    /// The other leg answered a relayed request: the same status and body go back.
    fn relay_response(&mut self, io: &mut Io<'_>, client_tx: TxId, msg: &Message) {
        let Some(status) = msg.status() else { return };
        if status == 100 {
            return;
        }
        let relay = if status >= 200 { self.relays.remove(&client_tx) } else { None };
        let relay_ref = match &relay {
            Some(r) => r,
            None => match self.relays.get(&client_tx) {
                Some(r) => r,
                None => return,
            },
        };
        let (id, from, server_tx, peer) = (relay_ref.call, relay_ref.from, relay_ref.server_tx, relay_ref.peer);
        let request = relay_ref.request.clone();
        // ACK the other leg's 2xx to a relayed re-INVITE ourselves (RFC 3261 §13.2.2.4),
        // unless the re-INVITE had no offer: then the 2xx carries one, and the ACK must
        // carry the answer, which comes in the sender's ACK (see `on_ack`).
        if request.method() == Method::Invite && (200..300).contains(&status) {
            if let Some(call) = self.calls.get(&id) {
                let other_side = match (from, call.answered) {
                    (Side::A, Some(i)) => Some(Side::B(i)),
                    (Side::B(_), Some(_)) => Some(Side::A),
                    _ => None,
                };
                let other = match other_side {
                    Some(Side::B(i)) => call.forks[i].dialog.as_ref(),
                    Some(Side::A) => call.a.dialog.as_ref(),
                    None => None,
                };
                if let (Some(side), true) = (other_side, request.body().is_empty() && !msg.body().is_empty()) {
                    self.pending_acks.insert(id, (side, msg.cseq()));
                } else if let Some(d) = other {
                    let mut buf = Vec::with_capacity(512);
                    d.ack(msg.cseq(), &format!("z9hG4bK{}", io.ids.hex(8)), &mut buf).finish(b"");
                    io.tx.send_stateless(d.peer, Bytes::from(buf));
                }
            }
        }
        // The answer moves the other leg's peer and is pointed at this leg's ports.
        let other = match (from, self.calls.get(&id).and_then(|c| c.answered)) {
            (Side::A, Some(i)) => Side::B(i),
            _ => Side::A,
        };
        let body = match self.media_body(id, other, msg) {
            Ok(b) => b,
            Err(why) => {
                warn!(%why, "SDP in a relayed answer refused; passed on as it is");
                None
            }
        };
        let body = body.as_deref().unwrap_or(msg.body());
        let mut buf = Vec::with_capacity(768 + body.len());
        let to_tag = match self.calls.get(&id) {
            Some(c) => match from {
                Side::A => c.a.to_tag.clone(),
                Side::B(i) => c.forks[i].dialog.as_ref().map(|d| d.local_tag.clone()).unwrap_or_default(),
            },
            None => String::new(),
        };
        let reason = String::from_utf8_lossy(msg.reason()).into_owned();
        let mut w = response_to(&request, status, &reason, Some(to_tag.as_bytes()), Some(peer.remote), &mut buf);
        if (200..300).contains(&status) {
            w.header_fmt("Contact", format_args!("<sip:ferroswitch@{}>", peer.local));
        }
        if let Some(ct) = msg.header(HeaderName::ContentType) {
            w.header("Content-Type", ct);
        }
        w.header("Server", crate::SERVER_NAME);
        w.finish(body);
        if let Err(e) = io.tx.respond(io.now, server_tx, status, Bytes::from(buf)) {
            warn!(error = %e, "could not relay the answer");
        }
    }

    /// The caller is gone (its BYE was answered): end the other leg and the call.
    fn hangup_a_quietly(&mut self, io: &mut Io<'_>, id: CallId, cause: HangupCause) {
        if let Some(call) = self.calls.get_mut(&id) {
            call.a.final_sent = true;
            call.a.dialog = None;
        }
        self.hangup_a(io, id, cause, None);
    }
}

type Dialogs = HashMap<(String, String), (CallId, Side, String)>;

/// Indexes an established dialog and writes its `sip_dialogs` row.
fn track_dialog(
    dialogs: &mut Dialogs,
    io: &mut Io<'_>,
    d: &Dialog,
    id: CallId,
    side: Side,
    uuid: &str,
    direction: RowDirection,
) {
    dialogs.insert(d.key(), (id, side, d.remote_tag.clone()));
    io.writes.push_back(Write::UpsertDialog(d.row(uuid, direction)));
}

/// Forgets a dialog and deletes its row.
fn untrack_dialog(dialogs: &mut Dialogs, io: &mut Io<'_>, key: &(String, String)) {
    if let Some((_, _, remote_tag)) = dialogs.remove(key) {
        io.writes.push_back(Write::DeleteDialog { call_id: key.0.clone(), local_tag: key.1.clone(), remote_tag });
    }
}

fn send_bye(io: &mut Io<'_>, d: &mut Dialog) {
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

fn respond_simple(io: &mut Io<'_>, tx: TxId, req: &Message, peer: Peer, code: u16) {
    let mut buf = Vec::with_capacity(512);
    let tag = io.ids.hex(5);
    let mut w = response_to(req, code, default_reason(code), Some(tag.as_bytes()), Some(peer.remote), &mut buf);
    w.header("Server", crate::SERVER_NAME);
    w.finish(b"");
    if let Err(e) = io.tx.respond(io.now, tx, code, Bytes::from(buf)) {
        warn!(error = %e, "could not respond in dialog");
    }
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

/// A response to the caller's INVITE, with our To tag, Contact and an optional SDP body.
fn build_to_a(invite: &Message, code: u16, to_tag: &str, peer: Peer, sdp: Option<&[u8]>) -> Bytes {
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

/// The `calls` row of a bridged call: its legs, when they were bridged, its media sessions.
fn call_row(call: &Call) -> Option<CallRow> {
    let b = call.forks.get(call.answered?)?;
    let media_sessions: Vec<String> = call.media.iter().flat_map(CallMedia::ids).map(|s| s.to_string()).collect();
    Some(CallRow {
        uuid: call.uuid.clone(),
        a_leg_uuid: call.a.channel.uuid.clone(),
        b_leg_uuid: b.channel.uuid.clone(),
        created_at: b.answered_unix.unwrap_or(call.created_unix) as i64,
        media_sessions: media_sessions.join(" "),
    })
}

/// The CDR of one leg at CS_REPORTING; `times` are start, answer and end (unix seconds).
fn cdr_row(
    c: &Channel,
    call_uuid: &str,
    vars: &Variables,
    destination: &str,
    times: (u64, Option<u64>, u64),
    cause: HangupCause,
    sip_status: Option<u16>,
) -> CdrRow {
    let (start, answer, end) = times;
    CdrRow {
        uuid: c.uuid.clone(),
        call_uuid: Some(call_uuid.to_string()),
        direction: if c.direction == Direction::Inbound { RowDirection::Inbound } else { RowDirection::Outbound },
        caller_id_name: vars.get("caller_id_name").unwrap_or_default().to_string(),
        caller_id_number: vars.get("caller_id_number").unwrap_or_default().to_string(),
        destination_number: destination.to_string(),
        context: vars.get("context").unwrap_or_default().to_string(),
        start_at: start as i64,
        answer_at: answer.map(|t| t as i64),
        end_at: end as i64,
        duration: end.saturating_sub(start) as i64,
        billsec: answer.map_or(0, |t| end.saturating_sub(t) as i64),
        hangup_cause: cause.to_string(),
        q850_cause: cause.q850(),
        sip_status,
        media: None,
    }
}

fn channel_row(c: &Channel, vars: &Variables, unix: u64, call_uuid: Option<String>) -> ChannelRow {
    ChannelRow {
        uuid: c.uuid.clone(),
        direction: if c.direction == Direction::Inbound { RowDirection::Inbound } else { RowDirection::Outbound },
        state: c.state().to_string(),
        caller_id_name: vars.get("caller_id_name").unwrap_or_default().to_string(),
        caller_id_number: vars.get("caller_id_number").unwrap_or_default().to_string(),
        destination_number: vars.get("destination_number").unwrap_or_default().to_string(),
        context: vars.get("context").unwrap_or("default").to_string(),
        created_at: unix as i64,
        answered_at: None,
        call_uuid,
    }
}
