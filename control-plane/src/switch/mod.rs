//! The switch: the transaction user (RFC 3261 §8.2, §10, §13) above the transaction
//! layer, sans-IO like the layers below it.
//!
//! Parsed messages go in through [`Switch::handle_message`] (parse failures through
//! [`Switch::handle_parse_error`]), time through [`Switch::handle_timeout`]; datagrams
//! and stream writes come out of [`Switch::poll_transmit`], registrar changes to persist
//! out of [`Switch::poll_change`], and [`Switch::poll_timeout`] says when to call back.
//! Every request passes [`policy::check`] first. OPTIONS is answered; REGISTER is
//! digest-authenticated (401) and handed to the [`Registrar`]; INVITE is authenticated
//! (407) unless its source is trusted, then routed; CANCEL is matched to its INVITE;
//! BYE outside a dialog gets 481.

pub mod limits;
pub mod metrics;
pub mod policy;

use std::collections::VecDeque;

use crate::FastMap as HashMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tracing::{debug, info, warn};

use crate::auth::guard::{Gate, Guard};
use crate::auth::{AuthOutcome, Authenticator, Challenger};
use crate::b2bua::channel::ChannelState;
use crate::b2bua::recovery::RecoveryReport;
use crate::b2bua::{B2bua, Io, MediaAnswer, MediaRequest, MediaSettings, ResolveRequest};
use crate::config::{Cidr, Config, User};
use crate::dialplan::Dialplan;
use crate::ids::IdGen;
use crate::registrar::{Change, RegisterError, Registrar};
use crate::sip::message::uri::unescape;
use crate::sip::message::write::{default_reason, error_response_raw, raw_call_id, response_to, Writer};
use crate::sip::message::{HeaderName, Message, Method, ParseError, Scheme};
use crate::sip::transaction::{Event, Output, TimerConfig, TransactionLayer, TxId};
use crate::sip::transport::Peer;
use crate::storage::{CallRow, ChannelRow, DialogRow, Write};
use limits::RateLimit;
use policy::Refusal;

/// Bytes shown as text, converted only when a log line is written (the span's field
/// is formatted only if the span is enabled).
struct Lossy<'a>(&'a [u8]);

impl std::fmt::Display for Lossy<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&String::from_utf8_lossy(self.0))
    }
}

/// Counters a test or the management API can read.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    /// Requests received by method ([`metrics::METHODS`] order), responses sent by
    /// code ([`metrics::CODES`], then one per class for the others).
    pub by_method: [u64; metrics::METHODS.len()],
    pub responses_sent: metrics::ByCode,
    /// Now: calls in progress, live channels, registered AORs.
    pub calls: u64,
    pub channels: u64,
    pub registrations: u64,
    pub requests: u64,
    pub responses_received: u64,
    pub parse_errors: u64,
    pub refused: u64,
    pub challenged: u64,
    pub registered: u64,
    /// Digest responses that did not verify.
    pub auth_failures: u64,
    /// Requests dropped unanswered because their source is banned.
    pub banned_dropped: u64,
    /// Requests refused with 503: over their source's rate, or too many calls.
    pub rate_limited: u64,
    /// Calls started since start (inbound and originated); live transactions and
    /// dialogs; the answered calls' times to answer.
    pub calls_started: u64,
    pub transactions: u64,
    pub dialogs: u64,
    pub answer_seconds: crate::management::histogram::Histogram<10>,
}

/// The switch's transaction user.
pub struct Switch {
    tx: TransactionLayer,
    ids: IdGen,
    auth: Authenticator,
    guard: Guard,
    rate_limit: RateLimit,
    max_calls: usize,
    registrar: Registrar,
    users: HashMap<String, User>,
    realm: String,
    trusted: Vec<Cidr>,
    min_expires: u32,
    /// The clock the switch was started on, and the wall-clock second it corresponds to.
    epoch: Instant,
    epoch_unix: u64,
    out: VecDeque<(Peer, Bytes)>,
    changes: VecDeque<Change>,
    writes: VecDeque<Write>,
    b2bua: B2bua,
    dialplan: Dialplan,
    locals: Vec<Peer>,
    stats: Stats,
    api_state: api::ApiState,
    /// Registration events while an event socket listens.
    events: VecDeque<SwitchEvent>,
    events_on: bool,
}

/// The CUSTOM event of a registrar change: `on_upsert` for a binding made or refreshed,
/// `on_remove` for one removed (by the phone, or lapsed), with mod_sofia's headers.
fn registration_event(
    c: &Change,
    realm: &str,
    unix: u64,
    on_upsert: &'static str,
    on_remove: &'static str,
) -> SwitchEvent {
    let mut h: Vec<(&'static str, String)> = vec![("profile-name", "internal".into())];
    match c {
        Change::Upsert { aor, binding: b } => {
            let proto = if b.source.transport == crate::sip::transport::TransportKind::Tcp { "TCP" } else { "UDP" };
            h.extend([
                ("from-user", aor.clone()),
                ("from-host", realm.to_string()),
                ("contact", format!("\"{aor}\" <{}>", b.contact)),
                ("call-id", b.call_id.clone()),
                ("status", format!("Registered({proto})")),
                ("expires", b.expires_at.saturating_sub(unix).to_string()),
                ("to-user", aor.clone()),
                ("to-host", realm.to_string()),
                ("network-ip", b.source.remote.ip().to_string()),
                ("network-port", b.source.remote.port().to_string()),
                ("username", aor.clone()),
                ("realm", realm.to_string()),
                ("user-agent", b.user_agent.clone().unwrap_or_default()),
            ]);
            SwitchEvent::Custom { subclass: on_upsert, headers: h }
        }
        Change::Remove { aor, contact } => {
            h.extend([
                ("from-user", aor.clone()),
                ("from-host", realm.to_string()),
                ("contact", contact.clone()),
                ("username", aor.clone()),
                ("realm", realm.to_string()),
            ]);
            SwitchEvent::Custom { subclass: on_remove, headers: h }
        }
    }
}

/// An event for the event socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SwitchEvent {
    /// A channel's, from the B2BUA.
    Channel(Box<crate::b2bua::events::ChannelEvent>),
    /// A CUSTOM event (`sofia::register`, `sofia::unregister`, `sofia::expire`) with its headers.
    Custom { subclass: &'static str, headers: Vec<(&'static str, String)> },
    /// A HEARTBEAT, with its headers (the switch's state now).
    Heartbeat { headers: Vec<(&'static str, String)> },
}

/// Builds the B2BUA's view of the switch from disjoint fields, so `self.b2bua` can be
/// borrowed alongside.
macro_rules! io {
    ($s:ident, $now:expr, $unix:expr) => {
        Io {
            now: $now,
            unix: $unix,
            unix_us: $s.unix_us($now),
            tx: &mut $s.tx,
            ids: &mut $s.ids,
            registrar: &$s.registrar,
            users: &$s.users,
            dialplan: &$s.dialplan,
            writes: &mut $s.writes,
            locals: &$s.locals,
        }
    };
}

// After the macro, so the API commands can build the B2BUA's view too.
pub mod api;

impl Switch {
    /// `now` and `unix_now` are the same instant on the monotonic and the wall clock.
    pub fn new(config: &Config, mut ids: IdGen, now: Instant, unix_now: u64) -> Self {
        let timers = TimerConfig { t1: config.sip.t1, t2: config.sip.t2, t4: config.sip.t4 };
        let mut challenger = Challenger::new(&mut ids);
        challenger.lifetime_secs = config.auth.nonce_lifetime_secs;
        let mut tx = TransactionLayer::new(timers);
        tx.set_max_transactions(config.sip.max_transactions);
        Switch {
            tx,
            ids,
            auth: Authenticator::new(challenger, config.auth.algorithms.clone()),
            guard: Guard::new(config.auth.guard),
            rate_limit: RateLimit::new(config.sip.requests_per_source_per_sec, config.sip.request_burst_per_source),
            max_calls: config.sip.max_calls,
            registrar: Registrar::new(config.registrar),
            users: config.directory.users.iter().map(|u| (u.id.clone(), u.clone())).collect(),
            realm: config.sip.realm.clone(),
            trusted: config.auth.trusted.clone(),
            min_expires: config.registrar.min_expires,
            epoch: now,
            epoch_unix: unix_now,
            out: VecDeque::new(),
            changes: VecDeque::new(),
            writes: VecDeque::new(),
            b2bua: B2bua::new(),
            dialplan: Dialplan::embedded_default(),
            locals: Vec::new(),
            stats: Stats::default(),
            api_state: api::ApiState { started: Some(now), ..Default::default() },
            events: VecDeque::new(),
            events_on: false,
        }
    }

    /// Replaces the dialplan (the embedded default until then).
    pub fn set_dialplan(&mut self, dialplan: Dialplan) {
        self.dialplan = dialplan;
    }

    /// Replaces the directory (on reload); calls in progress keep their variables.
    pub fn set_users(&mut self, users: &[User]) {
        self.users = users.iter().map(|u| (u.id.clone(), u.clone())).collect();
    }

    /// The switch's own listeners: B-legs are sent from them and name them in Contact.
    pub fn set_locals(&mut self, locals: Vec<Peer>) {
        self.locals = locals;
    }

    /// Calls in progress.
    pub fn calls(&self) -> usize {
        self.b2bua.len()
    }

    /// The channel states every leg of every live call went through, A-leg first.
    pub fn call_histories(&self) -> Vec<(Vec<ChannelState>, Vec<Vec<ChannelState>>)> {
        self.b2bua.histories()
    }

    /// The next row to write to storage (channels, calls, CDRs).
    pub fn poll_write(&mut self) -> Option<Write> {
        self.writes.pop_front()
    }

    pub fn stats(&self) -> Stats {
        let mut s = self.stats;
        s.calls = self.b2bua.len() as u64;
        s.channels = self.b2bua.live_channels() as u64;
        s.registrations = self.registrar.aor_count() as u64;
        let (started, dialogs, answer) = self.b2bua.call_metrics();
        (s.calls_started, s.dialogs, s.answer_seconds) = (started, dialogs as u64, answer);
        s.transactions = self.tx.len() as u64;
        s
    }

    /// Live transactions.
    pub fn transactions(&self) -> usize {
        self.tx.len()
    }

    pub fn registrar(&self) -> &Registrar {
        &self.registrar
    }

    /// Puts back a binding loaded from storage at start.
    pub fn restore_binding(&mut self, aor: &str, binding: crate::registrar::Binding) {
        self.registrar.restore(aor, binding);
    }

    /// Takes back the calls that were bridged when the previous process stopped, from the
    /// rows it stored, and ends the other stored channels with CRASH (see
    /// [`crate::b2bua::recovery`]). Call it once at start, after [`Switch::set_locals`]
    /// and before any message; the CDRs and deletes come out of [`Switch::poll_write`].
    pub fn recover(
        &mut self,
        now: Instant,
        calls: &[CallRow],
        channels: &[ChannelRow],
        dialogs: &[DialogRow],
    ) -> RecoveryReport {
        let unix = self.unix(now);
        let report = self.b2bua.recover(&mut io!(self, now, unix), calls, channels, dialogs);
        self.drain(now);
        report
    }

    /// The next registrar change to persist.
    pub fn poll_change(&mut self) -> Option<Change> {
        self.changes.pop_front()
    }

    fn unix(&self, now: Instant) -> u64 {
        self.epoch_unix + now.saturating_duration_since(self.epoch).as_secs()
    }

    fn unix_us(&self, now: Instant) -> u64 {
        self.epoch_unix * 1_000_000 + now.saturating_duration_since(self.epoch).as_micros() as u64
    }

    fn instant_of(&self, unix: u64) -> Instant {
        self.epoch + Duration::from_secs(unix.saturating_sub(self.epoch_unix))
    }

    /// A message parsed from `peer`.
    pub fn handle_message(&mut self, now: Instant, msg: Message, peer: Peer) {
        if msg.is_request() {
            self.stats.requests += 1;
            self.stats.by_method[metrics::method_index(msg.method())] += 1;
            let trusted = self.is_trusted(peer);
            if !trusted && self.guard.gate(now, peer.remote.ip()) == Gate::Banned {
                // Banned for guessing passwords: not even a transaction.
                self.stats.banned_dropped += 1;
                return;
            }
            if msg.method() != Method::Ack && !trusted {
                if let Err(wait) = self.rate_limit.admit(now, peer.remote.ip()) {
                    self.stats.rate_limited += 1;
                    debug!(peer = %peer.remote, "over the per-source request rate: 503");
                    return self.refuse_stateless(&msg, peer, 503, wait);
                }
            }
        } else {
            self.stats.responses_received += 1;
        }
        let refused = self.tx.overloaded();
        self.tx.handle_message(now, msg, peer);
        let now_refused = self.tx.overloaded();
        if now_refused > refused && now_refused.is_power_of_two() {
            warn!(
                live = self.tx.len(),
                refused_total = now_refused,
                "sip.max_transactions reached: new requests get 503 with Retry-After"
            );
        }
        self.drain(now);
    }

    /// Bytes from `peer` that did not parse. A request gets a stateless error response
    /// (400, 505, 501 or 513 as the error says); a response is dropped.
    pub fn handle_parse_error(&mut self, raw: &[u8], err: &ParseError, peer: Peer) {
        self.stats.parse_errors += 1;
        let code = err.status();
        let reason = match err {
            ParseError::Version | ParseError::CSeqMismatch { extension: true } | ParseError::TooLarge(_) => {
                default_reason(code).to_string()
            }
            other => format!("Bad Request ({other})"),
        };
        let call_id = raw_call_id(raw).map(|c| String::from_utf8_lossy(c).into_owned()).unwrap_or_default();
        let span = tracing::info_span!("sip", call_id = %call_id);
        let _enter = span.enter();
        let mut buf = Vec::with_capacity(512);
        let tag = self.ids.hex(5);
        if error_response_raw(raw, code, &reason, tag.as_bytes(), Some(peer.remote), &mut buf) {
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
        let unix = self.unix(now);
        if self.b2bua.poll_timeout().is_some_and(|t| t <= now) {
            self.b2bua.handle_timeout(&mut io!(self, now, unix));
        }
        if self.registrar.next_expiry().is_some_and(|t| t <= unix) {
            for c in self.registrar.purge(unix) {
                if let Change::Remove { aor, contact } = &c {
                    info!(%aor, %contact, "registration expired");
                }
                if self.events_on {
                    self.events.push_back(registration_event(
                        &c,
                        &self.realm,
                        unix,
                        "sofia::register",
                        "sofia::expire",
                    ));
                }
                self.changes.push_back(c);
            }
        }
        self.drain(now);
    }

    /// How bridged calls' media is handled (off until called: SDP passes unchanged).
    pub fn set_media(&mut self, settings: MediaSettings) {
        self.b2bua.set_media(settings);
    }

    /// The next request for the media plane; the driver answers creations through
    /// [`Switch::handle_media_answer`].
    pub fn poll_media(&mut self) -> Option<MediaRequest> {
        self.b2bua.poll_media()
    }

    /// The media plane's answer to a [`MediaRequest::Create`].
    pub fn handle_media_answer(&mut self, now: Instant, answer: MediaAnswer) {
        let unix = self.unix(now);
        self.b2bua.on_media_answer(&mut io!(self, now, unix), answer);
        self.drain(now);
    }

    /// What the media plane holds once attached after a start: calls taken back from the
    /// database get their sessions again.
    pub fn adopt_media(&mut self, held: &[(u64, ferroswitch_shared::msg::SessionSpec)]) {
        self.b2bua.adopt_media(held);
    }

    /// The host name the API reports (`hostname`, `show channels`).
    pub fn set_hostname(&mut self, hostname: &str) {
        self.api_state.hostname = hostname.to_string();
    }

    /// Whether the B2BUA makes channel events (an event socket listens).
    pub fn set_events(&mut self, on: bool) {
        self.events_on = on;
        self.b2bua.set_events(on);
    }

    /// The next event for the event socket: the switch's own (registrations) first,
    /// then the B2BUA's channel events.
    pub fn poll_event(&mut self) -> Option<SwitchEvent> {
        self.events.pop_front().or_else(|| self.b2bua.poll_event().map(|c| SwitchEvent::Channel(Box::new(c))))
    }

    /// The next host name a `sofia/` leg waits for; answer with [`Switch::handle_resolved`].
    pub fn poll_resolve(&mut self) -> Option<ResolveRequest> {
        self.b2bua.poll_resolve()
    }

    /// A host name's addresses, or why there are none.
    pub fn handle_resolved(&mut self, now: Instant, token: u64, result: Result<Vec<std::net::SocketAddr>, String>) {
        let unix = self.unix(now);
        self.b2bua.on_resolved(&mut io!(self, now, unix), token, result);
        self.drain(now);
    }

    /// A telephone-event (`digit`, `duration` in timestamp units) ended on leg `leg` of a
    /// media session.
    pub fn handle_dtmf(&mut self, now: Instant, session: u64, leg: u8, digit: char, duration: u32) {
        let unix = self.unix(now);
        self.b2bua.on_dtmf(&mut io!(self, now, unix), session, leg, digit, duration);
        self.drain(now);
    }

    /// A media session saw no RTP for its timeout.
    pub fn handle_media_timeout(&mut self, now: Instant, session: u64) {
        let unix = self.unix(now);
        self.b2bua.on_media_timeout(&mut io!(self, now, unix), session);
        self.drain(now);
    }

    /// When to call [`Switch::handle_timeout`] next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let expiry = self.registrar.next_expiry().map(|t| self.instant_of(t));
        [self.tx.poll_timeout(), expiry, self.b2bua.poll_timeout()].into_iter().flatten().min()
    }

    /// The next `(peer, bytes)` to send.
    pub fn poll_transmit(&mut self) -> Option<(Peer, Bytes)> {
        self.out.pop_front()
    }

    fn drain_outputs_only(&mut self) {
        while let Some(o) = self.tx.poll_output() {
            if let Output::Transmit { peer, bytes } = o {
                self.transmit(peer, bytes);
            }
        }
    }

    /// Queues bytes to send, counting the responses by code.
    fn transmit(&mut self, peer: Peer, bytes: Bytes) {
        if let Some(code) = metrics::response_code(&bytes) {
            self.stats.responses_sent.0[metrics::code_index(code)] += 1;
        }
        self.out.push_back((peer, bytes));
    }

    fn drain(&mut self, now: Instant) {
        while let Some(o) = self.tx.poll_output() {
            match o {
                Output::Transmit { peer, bytes } => self.transmit(peer, bytes),
                Output::Event(e) => self.on_event(now, e),
            }
        }
    }

    fn on_event(&mut self, now: Instant, e: Event) {
        match e {
            Event::Request { tx, msg, peer, cancels } => {
                let span = tracing::info_span!("sip", call_id = %Lossy(msg.call_id()));
                let _enter = span.enter();
                match tx {
                    Some(tx) => self.on_request(now, tx, &msg, peer, cancels),
                    None => {
                        debug!(method = "ACK", "ACK outside a transaction");
                        let unix = self.unix(now);
                        self.b2bua.on_ack(&mut io!(self, now, unix), &msg);
                    }
                }
            }
            Event::Response { tx, msg } => {
                let span = tracing::info_span!("sip", call_id = %Lossy(msg.call_id()));
                let _enter = span.enter();
                let unix = self.unix(now);
                if !self.b2bua.on_response(&mut io!(self, now, unix), tx, &msg) {
                    debug!(?tx, status = msg.status(), "response on a client transaction");
                }
            }
            Event::Timeout { tx } => {
                let unix = self.unix(now);
                if !self.b2bua.on_timeout(&mut io!(self, now, unix), tx) {
                    debug!(?tx, "transaction timed out");
                }
            }
            Event::Terminated { .. } => {}
        }
    }

    fn on_request(&mut self, now: Instant, tx: TxId, req: &Message, peer: Peer, cancels: Option<TxId>) {
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
            let unix = self.unix(now);
            if self.b2bua.on_in_dialog(&mut io!(self, now, unix), tx, req, peer) {
                return;
            }
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
            Method::Register => self.on_register(now, tx, req, peer),
            Method::Invite => self.on_invite(now, tx, req, peer),
            Method::Cancel => {
                // RFC 3261 §9.2: 200 to a CANCEL that matches, then 487 to the INVITE if
                // it is still ringing (the B2BUA also cancels its B-legs).
                let code = if cancels.is_some() { 200 } else { 481 };
                self.respond(now, tx, req, peer, code, |_| {});
                if let Some(invite) = cancels {
                    let unix = self.unix(now);
                    self.b2bua.on_cancel(&mut io!(self, now, unix), invite);
                }
            }
            // In-dialog methods outside any dialog (RFC 3261 §15.1.2, RFC 6086 §4.2).
            Method::Bye | Method::Info | Method::Update => self.respond(now, tx, req, peer, 481, |_| {}),
            Method::Ack => {}
            _ => self.respond(now, tx, req, peer, 405, |w| {
                w.header("Allow", policy::ALLOW);
            }),
        }
    }

    /// The realm of a challenge: the configured one, or the domain of the address
    /// (To for REGISTER, From for other requests).
    fn realm_for(&self, req: &Message) -> String {
        if !self.realm.is_empty() {
            return self.realm.clone();
        }
        let uri = if req.method() == Method::Register { req.to().uri } else { req.from().uri };
        String::from_utf8_lossy(uri.host_unbracketed()).into_owned()
    }

    fn is_trusted(&self, peer: Peer) -> bool {
        self.trusted.iter().any(|n| n.contains(peer.remote.ip()))
    }

    /// Digest-checks `req`; on failure answers it (a challenge, or 403 to a source that
    /// must wait or a user that is locked) and returns `None`. Every failed response is
    /// logged in one fixed format (for fail2ban; see docs/security.md) and counted.
    fn authenticate(&mut self, now: Instant, tx: TxId, req: &Message, peer: Peer) -> Option<String> {
        let (code, credentials, challenge) = if req.method() == Method::Register {
            (401, HeaderName::Authorization, "WWW-Authenticate")
        } else {
            (407, HeaderName::ProxyAuthorization, "Proxy-Authenticate")
        };
        let trusted = self.is_trusted(peer);
        if let (Gate::Wait(left), false) = (self.guard.gate(now, peer.remote.ip()), trusted) {
            return self.refuse_for(tx, req, peer, "too many failed attempts from this address", left);
        }
        let realm = self.realm_for(req);
        let unix = self.unix(now);
        let method = String::from_utf8_lossy(req.method_bytes()).into_owned();
        let users = &self.users;
        let outcome =
            self.auth.check(unix, &method, &realm, req.values(credentials), |u| users.get(u).map(|u| u.secret.clone()));
        let stale = match outcome {
            AuthOutcome::Authenticated { user } => {
                if let (Some(left), false) = (self.guard.user_locked(now, &user), trusted) {
                    return self.refuse_for(tx, req, peer, "this user is locked after failed attempts", left);
                }
                if !trusted {
                    self.guard.on_success(peer.remote.ip());
                }
                return Some(user);
            }
            AuthOutcome::Challenge { stale } => stale,
            AuthOutcome::Failed { user, reason } => {
                self.stats.auth_failures += 1;
                let known = self.users.contains_key(&user);
                let (ip, port) = (peer.remote.ip(), peer.remote.port());
                let counted = (!trusted).then(|| self.guard.on_failure(now, ip, &user, known));
                let failures = counted.map_or(0, |c| c.failures);
                warn!(
                    target: "ferroswitch::auth",
                    "auth failure: source_ip={ip} source_port={port} user={user:?} realm={realm:?} method={method} reason={} failures={failures}",
                    reason.as_str()
                );
                if counted.is_some_and(|c| c.banned) {
                    warn!(target: "ferroswitch::auth", "auth ban: source_ip={ip} after {failures} failures");
                }
                if counted.is_some_and(|c| c.user_locked) {
                    warn!(target: "ferroswitch::auth", "auth lock: user={user:?} after repeated failures");
                }
                if let (Some(left), false) = (self.guard.user_locked(now, &user), trusted) {
                    return self.refuse_for(tx, req, peer, "this user is locked after failed attempts", left);
                }
                false
            }
        };
        self.stats.challenged += 1;
        let values = self.auth.challenger().challenges(&realm, unix, stale, self.auth.algorithms(), &mut self.ids);
        info!(status = code, %realm, stale, "challenged");
        // Statelessly: a stranger's flood of requests without credentials keeps nothing.
        self.respond_stateless(tx, req, peer, code, default_reason(code), |w| {
            for v in &values {
                w.header(challenge, v);
            }
        });
        None
    }

    /// A response sent without a transaction (for a request refused before one is
    /// made), with Retry-After `wait` rounded up to whole seconds.
    fn refuse_stateless(&mut self, req: &Message, peer: Peer, code: u16, wait: Duration) {
        let mut buf = Vec::with_capacity(512);
        let tag = self.ids.hex(5);
        let mut w = response_to(req, code, default_reason(code), Some(tag.as_bytes()), Some(peer.remote), &mut buf);
        w.header_fmt("Retry-After", format_args!("{}", wait.as_millis().div_ceil(1000).max(1)));
        w.finish(b"");
        self.tx.send_stateless(peer, Bytes::from(buf));
        self.drain_outputs_only();
    }

    /// 403 with Retry-After (seconds, rounded up): the guard's answer to a source that
    /// must wait, or to a locked user's credentials.
    fn refuse_for(&mut self, tx: TxId, req: &Message, peer: Peer, why: &str, left: Duration) -> Option<String> {
        let secs = left.as_millis().div_ceil(1000).max(1);
        info!(peer = %peer.remote, %why, retry_after = secs, "refused");
        let reason = format!("Forbidden ({why})");
        self.respond_stateless(tx, req, peer, 403, &reason, |w| {
            w.header("Retry-After", secs.to_string());
        });
        None
    }

    fn on_register(&mut self, now: Instant, tx: TxId, req: &Message, peer: Peer) {
        let to = req.to();
        if !matches!(to.uri.scheme, Scheme::Sip | Scheme::Sips) {
            return self.bad_request(now, tx, req, peer, "address of record must be a sip or sips URI");
        }
        let Some(aor) = to.uri.user.map(|u| String::from_utf8_lossy(&unescape(u)).into_owned()) else {
            return self.bad_request(now, tx, req, peer, "address of record has no user part");
        };
        let Some(user) = self.authenticate(now, tx, req, peer) else { return };
        if user != aor {
            info!(%user, %aor, "credentials of one user for another's address of record");
            return self.respond(now, tx, req, peer, 403, |_| {});
        }
        let unix = self.unix(now);
        match self.registrar.register(unix, &aor, req, peer) {
            Ok(done) => {
                self.stats.registered += 1;
                info!(%aor, contacts = done.bindings.len(), "registered");
                if self.events_on {
                    let realm = self.realm.clone();
                    for c in &done.changes {
                        self.events.push_back(registration_event(
                            c,
                            &realm,
                            unix,
                            "sofia::register",
                            "sofia::unregister",
                        ));
                    }
                }
                self.changes.extend(done.changes);
                let date = http_date(unix);
                self.respond(now, tx, req, peer, 200, |w| {
                    for b in &done.bindings {
                        w.header_fmt("Contact", format_args!("<{}>;expires={}", b.contact, b.expires_at - unix));
                    }
                    w.header("Date", &date);
                });
            }
            Err(e) => {
                info!(%aor, error = %e, "registration refused");
                let min = self.min_expires;
                let reason = match &e {
                    RegisterError::IntervalTooBrief { .. } => default_reason(423).to_string(),
                    other => format!("{} ({other})", default_reason(other.status())),
                };
                self.respond_reason(now, tx, req, peer, e.status(), &reason, |w| {
                    if matches!(e, RegisterError::IntervalTooBrief { .. }) {
                        w.header("Min-Expires", min.to_string());
                    }
                });
            }
        }
    }

    fn on_invite(&mut self, now: Instant, tx: TxId, req: &Message, peer: Peer) {
        if self.api_state.paused {
            info!("new calls are paused (fsctl pause): 503");
            return self.respond(now, tx, req, peer, 503, |w| {
                w.header("Retry-After", "5");
            });
        }
        if self.b2bua.len() >= self.max_calls {
            self.stats.rate_limited += 1;
            warn!(calls = self.b2bua.len(), "sip.max_calls reached: 503");
            return self.respond(now, tx, req, peer, 503, |w| {
                w.header("Retry-After", "5");
            });
        }
        let caller = if self.is_trusted(peer) {
            None
        } else {
            match self.authenticate(now, tx, req, peer) {
                Some(user) => Some(user),
                None => return,
            }
        };
        let unix = self.unix(now);
        let caller = caller.and_then(|u| self.users.get(&u).cloned());
        self.b2bua.on_invite(&mut io!(self, now, unix), tx, req, peer, caller.as_ref());
    }

    /// 400 with the reason in the phrase, counted as refused.
    fn bad_request(&mut self, now: Instant, tx: TxId, req: &Message, peer: Peer, why: &str) {
        self.stats.refused += 1;
        info!(why, "bad request");
        self.respond_reason(now, tx, req, peer, 400, &format!("Bad Request ({why})"), |_| {});
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
        let bytes = self.response(req, peer, code, reason, extra);
        if let Err(e) = self.tx.respond(now, tx, code, bytes) {
            warn!(?tx, error = %e, "could not send response");
        }
    }

    /// A response to `req` with a fresh To tag and the Server header.
    fn response(
        &mut self,
        req: &Message,
        peer: Peer,
        code: u16,
        reason: &str,
        extra: impl FnOnce(&mut Writer<'_>),
    ) -> Bytes {
        let mut buf = Vec::with_capacity(640);
        let tag = self.ids.hex(5);
        let mut w = response_to(req, code, reason, Some(tag.as_bytes()), Some(peer.remote), &mut buf);
        extra(&mut w);
        w.header("Server", crate::SERVER_NAME);
        w.finish(b"");
        Bytes::from(buf)
    }

    /// A final response to server transaction `tx` after which the transaction ends at
    /// once ([`TransactionLayer::respond_and_forget`]): challenges and refusals of the
    /// guard keep no state.
    fn respond_stateless(
        &mut self,
        tx: TxId,
        req: &Message,
        peer: Peer,
        code: u16,
        reason: &str,
        extra: impl FnOnce(&mut Writer<'_>),
    ) {
        let bytes = self.response(req, peer, code, reason, extra);
        if let Err(e) = self.tx.respond_and_forget(tx, code, bytes) {
            warn!(?tx, error = %e, "could not send response");
        }
    }
}

/// RFC 1123 date (RFC 3261 §20.17), e.g. `Sat, 13 Nov 2010 23:29:00 GMT`.
pub fn http_date(unix: u64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let days = unix / 86_400;
    let secs = unix % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{}, {:02} {} {} {:02}:{:02}:{:02} GMT",
        DAYS[(days % 7) as usize],
        day,
        MONTHS[(month - 1) as usize],
        year,
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

fn insert_before_blank_line(buf: &mut Vec<u8>, line: &str) {
    if let Some(p) = memchr::memmem::find(buf, b"\r\n\r\n") {
        let at = p + 2;
        buf.splice(at..at, line.bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::http_date;

    #[test]
    fn dates_are_rfc1123_rfc3261_20_17() {
        assert_eq!(http_date(0), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(http_date(1_289_690_940), "Sat, 13 Nov 2010 23:29:00 GMT");
        assert_eq!(http_date(951_782_400), "Tue, 29 Feb 2000 00:00:00 GMT");
        assert_eq!(http_date(1_795_270_996), "Sat, 21 Nov 2026 14:23:16 GMT");
    }
}
