//! The reference call (REFERENCE.md) on the deterministic simulated network: a caller
//! (1000) and a callee that registers as 1001, each a real transaction layer, against
//! the sans-IO switch, on a virtual clock with optional loss. Every step of the call
//! is asserted: statuses, the channel states of both legs, and the teardown. The switch
//! can also "crash": its writes go to a real database, and a new switch recovers from it.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use control_plane::auth::{Algorithm, Authenticator, Credentials, Secret};
use control_plane::b2bua::channel::ChannelState::{self, *};
use control_plane::b2bua::recovery::RecoveryReport;
use control_plane::b2bua::{MediaAnswer, MediaRequest, MediaSettings};
use control_plane::config::Config;
use control_plane::ids::IdGen;
use control_plane::netsim::Network;
use control_plane::sdp::Sdp;
use control_plane::sip::message::write::{response_to, Writer};
use control_plane::sip::message::{Framing, HeaderName, Message, Method};
use control_plane::sip::transaction::{Event, Output, TimerConfig, TransactionLayer, TxId};
use control_plane::sip::transport::{Peer, TransportKind};
use control_plane::storage::{CdrRow, Direction, Loaded, Storage, Write};
use control_plane::switch::Switch;
use ferroswitch_shared::msg::{codec, session_flags, Endpoint, SessionSpec};

const SW: &str = "127.0.0.1:5060";
const UAC: &str = "127.0.0.1:5070";
const UAS: &str = "127.0.0.1:5080";
const SDP_A: &[u8] =
    b"v=0\r\no=a 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 40000 RTP/AVP 0\r\n";
const SDP_B: &[u8] =
    b"v=0\r\no=b 2 2 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 42000 RTP/AVP 0\r\n";

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn parse(buf: Vec<u8>) -> Message {
    Message::parse(Bytes::from(buf), Framing::Datagram).unwrap()
}

/// A scripted user agent: a transaction layer plus what it saw.
struct Ua {
    addr: SocketAddr,
    layer: TransactionLayer,
    ids: IdGen,
    user: String,
    /// Final and provisional statuses received, by method.
    statuses: Vec<(Method, u16)>,
    /// Requests received (method), in order.
    requests: Vec<Method>,
    /// The requests received, whole.
    received: Vec<Message>,
    invite: Option<(TxId, Message)>,
    /// The caller's dialog after a 2xx: (remote target, To value, From value, Call-ID).
    dialog: Option<(String, String, String, String)>,
    cseq: u32,
    auth_tries: u32,
    last_request: Option<Message>,
    /// Whether it ACKs a 2xx (a test can make it lose its ACK).
    ack_2xx: bool,
    /// The body of the last 183 received (early media SDP).
    early_sdp: Option<Vec<u8>>,
    /// The body of the last 2xx to its INVITE.
    answer_sdp: Option<Vec<u8>>,
    /// The body its ACKs carry (an answer to an offer in a 2xx).
    ack_body: Vec<u8>,
    /// The Contact it writes (None: its own address).
    contact: Option<String>,
}

impl Ua {
    fn new(addr: SocketAddr, user: &str, seed: u64) -> Ua {
        Ua {
            addr,
            layer: TransactionLayer::new(TimerConfig::default()),
            ids: IdGen::from_seed(seed),
            user: user.into(),
            statuses: vec![],
            requests: vec![],
            received: vec![],
            invite: None,
            dialog: None,
            cseq: 0,
            auth_tries: 0,
            last_request: None,
            ack_2xx: true,
            early_sdp: None,
            answer_sdp: None,
            ack_body: Vec::new(),
            contact: None,
        }
    }

    fn peer(&self) -> Peer {
        Peer { transport: TransportKind::Udp, remote: addr(SW), local: self.addr }
    }

    fn got(&self, m: Method, status: u16) -> bool {
        self.statuses.contains(&(m, status))
    }

    fn final_status(&self, m: Method) -> Option<u16> {
        self.statuses.iter().rev().find(|(mm, s)| *mm == m && *s >= 200).map(|x| x.1)
    }

    /// Sends a request to the switch.
    #[allow(clippy::too_many_arguments)]
    fn send(
        &mut self,
        now: Instant,
        method: &str,
        ruri: &str,
        to: &str,
        call_id: &str,
        extra: &[(&str, String)],
        body: &[u8],
    ) {
        self.cseq += 1;
        let mut buf = Vec::new();
        let mut w = Writer::request(&mut buf, method.as_bytes(), ruri.as_bytes());
        w.header_fmt("Via", format_args!("SIP/2.0/UDP {};branch=z9hG4bK{};rport", self.addr, self.ids.hex(6)));
        w.header("Max-Forwards", "70");
        w.header_fmt("From", format_args!("<sip:{}@127.0.0.1>;tag=t{}", self.user, self.user));
        w.header("To", to);
        w.header("Call-ID", call_id);
        w.header_fmt("CSeq", format_args!("{} {method}", self.cseq));
        match &self.contact {
            Some(c) => w.header("Contact", c),
            None => w.header_fmt("Contact", format_args!("<sip:{}@{}>", self.user, self.addr)),
        };
        for (n, v) in extra {
            w.header(n, v);
        }
        if !body.is_empty() {
            w.header("Content-Type", "application/sdp");
        }
        w.finish(body);
        let msg = parse(buf);
        self.last_request = Some(msg.clone());
        self.layer.request(now, msg, self.peer()).unwrap();
    }

    /// Answers a digest challenge in `resp` by re-sending the last request with credentials.
    fn answer_challenge(&mut self, now: Instant, resp: &Message) {
        let (hdr, cred) = if resp.status() == Some(401) {
            (HeaderName::WwwAuthenticate, "Authorization")
        } else {
            (HeaderName::ProxyAuthenticate, "Proxy-Authorization")
        };
        let challenge = String::from_utf8_lossy(resp.values(hdr).next().unwrap()).into_owned();
        assert!(challenge.contains("algorithm=MD5"), "{challenge}");
        let field =
            |name: &str| challenge.split(&format!("{name}=\"")).nth(1).unwrap().split('"').next().unwrap().to_string();
        let (realm, nonce) = (field("realm"), field("nonce"));
        let last = self.last_request.clone().unwrap();
        let method = String::from_utf8_lossy(last.method_bytes()).into_owned();
        let uri = String::from_utf8_lossy(last.request_uri_bytes()).into_owned();
        let c = Credentials {
            username: &self.user,
            realm: &realm,
            nonce: &nonce,
            uri: &uri,
            response: "",
            algorithm: Algorithm::Md5,
            qop_auth: Some((1, "cafe")),
            opaque: None,
        };
        let response = Authenticator::expected_response(&c, &method, &Secret::Password("1234".into())).unwrap();
        let value = format!("Digest username=\"{}\", realm=\"{realm}\", nonce=\"{nonce}\", uri=\"{uri}\", response=\"{response}\", algorithm=MD5, qop=auth, nc=00000001, cnonce=\"cafe\"", self.user);
        let to = String::from_utf8_lossy(last.header(HeaderName::To).unwrap()).into_owned();
        let call_id = String::from_utf8_lossy(last.call_id()).into_owned();
        let mut extra = vec![(cred, value)];
        if let Some(e) = last.header(HeaderName::Expires) {
            extra.push(("Expires", String::from_utf8_lossy(e).into_owned()));
        }
        self.auth_tries += 1;
        let body = last.body().to_vec();
        self.send(now, &method, &uri, &to, &call_id, &extra, &body);
    }

    /// Builds and sends an in-dialog request (ACK or BYE) on the caller's dialog.
    fn in_dialog(&mut self, now: Instant, method: &str, cseq: u32) {
        self.in_dialog_with(now, method, cseq, b"");
    }

    /// An in-dialog request with a body (re-INVITE with SDP, INFO).
    fn in_dialog_with(&mut self, now: Instant, method: &str, cseq: u32, body: &[u8]) {
        let (target, to, from, call_id) = self.dialog.clone().unwrap();
        let mut buf = Vec::new();
        let mut w = Writer::request(&mut buf, method.as_bytes(), target.as_bytes());
        w.header_fmt("Via", format_args!("SIP/2.0/UDP {};branch=z9hG4bK{};rport", self.addr, self.ids.hex(6)));
        w.header("Max-Forwards", "70");
        w.header("From", from);
        w.header("To", to);
        w.header("Call-ID", call_id);
        w.header_fmt("CSeq", format_args!("{cseq} {method}"));
        w.header_fmt("Contact", format_args!("<sip:{}@{}>", self.user, self.addr));
        if !body.is_empty() {
            w.header("Content-Type", if method == "INFO" { "application/dtmf-relay" } else { "application/sdp" });
        }
        w.finish(body);
        let msg = parse(buf);
        if method == "ACK" {
            self.layer.send_stateless(self.peer(), Bytes::copy_from_slice(msg.as_bytes()));
        } else {
            self.layer.request(now, msg, self.peer()).unwrap();
        }
    }

    fn respond(&mut self, now: Instant, tx: TxId, req: &Message, code: u16, body: &[u8]) {
        let mut buf = Vec::new();
        let mut w = response_to(req, code, "X", Some(b"uas"), None, &mut buf);
        w.header_fmt("Contact", format_args!("<sip:{}@{}>", self.user, self.addr));
        if !body.is_empty() {
            w.header("Content-Type", "application/sdp");
        }
        w.finish(body);
        self.layer.respond(now, tx, code, Bytes::from(buf)).unwrap();
    }

    /// Reacts to what its layer reports: challenges, ACK for 2xx, BYE and CANCEL answers.
    fn on_event(&mut self, now: Instant, e: Event) {
        match e {
            Event::Response { msg, .. } => {
                let (m, s) = (msg.cseq_method(), msg.status().unwrap());
                if s == 183 {
                    self.early_sdp = Some(msg.body().to_vec());
                }
                if !self.statuses.contains(&(m, s)) || s >= 200 {
                    self.statuses.push((m, s));
                }
                if (s == 401 || s == 407) && self.auth_tries == 0 {
                    self.answer_challenge(now, &msg);
                } else if m == Method::Invite && (200..300).contains(&s) {
                    let target = String::from_utf8_lossy(msg.contacts().next().unwrap().uri.raw).into_owned();
                    let to = String::from_utf8_lossy(msg.header(HeaderName::To).unwrap()).into_owned();
                    let from = String::from_utf8_lossy(msg.header(HeaderName::From).unwrap()).into_owned();
                    let call_id = String::from_utf8_lossy(msg.call_id()).into_owned();
                    self.dialog = Some((target, to, from, call_id));
                    self.answer_sdp = Some(msg.body().to_vec());
                    if self.ack_2xx {
                        let body = self.ack_body.clone();
                        self.in_dialog_with(now, "ACK", msg.cseq(), &body);
                    }
                }
            }
            Event::Request { tx, msg, cancels, .. } => {
                self.requests.push(msg.method());
                self.received.push(msg.clone());
                match (msg.method(), tx) {
                    (Method::Invite, Some(tx)) => self.invite = Some((tx, msg)),
                    (Method::Bye | Method::Info, Some(tx)) => self.respond(now, tx, &msg, 200, b""),
                    (Method::Cancel, Some(tx)) => {
                        self.respond(now, tx, &msg, 200, b"");
                        if let (Some(inv), Some((itx, imsg))) = (cancels, self.invite.clone()) {
                            assert_eq!(inv, itx);
                            self.respond(now, itx, &imsg, 487, b"");
                        }
                    }
                    _ => {}
                }
            }
            _ => {}
        }
    }
}

struct World {
    start: Instant,
    now: Instant,
    net: Network,
    switch: Switch,
    uac: Ua,
    uas: Ua,
    writes: Vec<Write>,
    /// The media plane, faked: it answers every request at once.
    media: Option<FakeMedia>,
}

/// A media plane that holds sessions and gives each leg a port, in order from 30000.
#[derive(Default)]
struct FakeMedia {
    sessions: std::collections::BTreeMap<u64, SessionSpec>,
    next_id: u64,
    next_port: u16,
    /// Destroyed sessions with the CDR legs they report to.
    destroyed: Vec<(u64, [Option<String>; 2])>,
    /// Updates applied, in order.
    updates: Vec<(u64, SessionSpec)>,
    /// Refuse creations with this reason.
    refuse: Option<String>,
}

impl FakeMedia {
    fn handle(&mut self, req: MediaRequest) -> Option<MediaAnswer> {
        match req {
            MediaRequest::Create { token, specs } => {
                if let Some(why) = &self.refuse {
                    return Some(MediaAnswer { token, result: Err(why.clone()) });
                }
                let mut held = Vec::new();
                for spec in specs {
                    held.push(spec.map(|mut spec| {
                        for leg in &mut spec.legs {
                            let ip = leg.local.addr().unwrap().ip();
                            leg.local = Endpoint::from_addr(SocketAddr::new(ip, 30000 + self.next_port));
                            self.next_port += 2;
                        }
                        self.next_id += 1;
                        self.sessions.insert(self.next_id, spec);
                        (self.next_id, spec)
                    }));
                }
                Some(MediaAnswer { token, result: Ok(held) })
            }
            MediaRequest::Update { id, spec } => {
                assert!(self.sessions.insert(id, spec).is_some(), "update of an unknown session {id}");
                self.updates.push((id, spec));
                None
            }
            MediaRequest::Destroy { id, cdr, .. } => {
                assert!(self.sessions.remove(&id).is_some(), "destroy of an unknown session {id}");
                self.destroyed.push((id, cdr));
                None
            }
        }
    }
}

impl World {
    fn new(seed: u64, loss: f64) -> World {
        let start = Instant::now();
        let mut net = Network::new(seed);
        net.set_loss(loss).set_delay(Duration::from_millis(2), Duration::from_millis(30));
        let mut switch = Switch::new(&Config::embedded().unwrap(), IdGen::from_seed(seed), start, 1_800_000_000);
        let sw = addr(SW);
        switch.set_locals(vec![Peer { transport: TransportKind::Udp, remote: sw, local: sw }]);
        World {
            start,
            now: start,
            net,
            switch,
            uac: Ua::new(addr(UAC), "1000", seed + 1),
            uas: Ua::new(addr(UAS), "1001", seed + 2),
            writes: vec![],
            media: None,
        }
    }

    /// A world whose switch sends bridged calls' media through a (fake) media plane.
    fn with_media(seed: u64) -> World {
        let mut w = World::new(seed, 0.0);
        w.switch.set_media(MediaSettings { enabled: true, ..MediaSettings::default() });
        w.media = Some(FakeMedia::default());
        w
    }

    /// Runs until `done` holds or `limit` of virtual time passes; returns whether it held.
    fn run_until(&mut self, limit: Duration, done: impl Fn(&World) -> bool) -> bool {
        let bound = self.now + limit;
        loop {
            self.pump();
            if done(self) {
                return true;
            }
            let next = [
                self.net.next_delivery(),
                self.uac.layer.poll_timeout(),
                self.uas.layer.poll_timeout(),
                self.switch.poll_timeout(),
            ]
            .into_iter()
            .flatten()
            .min();
            match next {
                Some(t) if t <= bound => self.now = self.now.max(t),
                _ => {
                    self.now = bound;
                    self.pump();
                    return done(self);
                }
            }
            while let Some(p) = self.net.deliver_due(self.now) {
                let msg = Message::parse(p.bytes.clone(), Framing::Datagram).expect("everyone sends valid SIP");
                let peer = |local: SocketAddr| Peer { transport: TransportKind::Udp, remote: p.from, local };
                if p.to == addr(SW) {
                    self.switch.handle_message(self.now, msg, peer(addr(SW)));
                } else if p.to == self.uac.addr {
                    self.uac.layer.handle_message(self.now, msg, peer(self.uac.addr));
                } else if p.to == self.uas.addr {
                    self.uas.layer.handle_message(self.now, msg, peer(self.uas.addr));
                }
            }
            let now = self.now;
            for ua in [&mut self.uac, &mut self.uas] {
                if ua.layer.poll_timeout().is_some_and(|t| t <= now) {
                    ua.layer.handle_timeout(now);
                }
            }
            if self.switch.poll_timeout().is_some_and(|t| t <= now) {
                self.switch.handle_timeout(now);
            }
        }
    }

    fn pump(&mut self) {
        let now = self.now;
        loop {
            let mut moved = false;
            while let Some((peer, bytes)) = self.switch.poll_transmit() {
                self.net.send(now, addr(SW), peer.remote, bytes);
                moved = true;
            }
            while let Some(w) = self.switch.poll_write() {
                self.writes.push(w);
            }
            // A resolver that knows one name: callee.test is the callee's address.
            while let Some(r) = self.switch.poll_resolve() {
                let result = match r.host.as_str() {
                    "callee.test" => Ok(vec![SocketAddr::new(self.uas.addr.ip(), r.port)]),
                    other => Err(format!("{other}: no such name")),
                };
                self.switch.handle_resolved(now, r.token, result);
                moved = true;
            }
            while let Some(req) = self.switch.poll_media() {
                let media = self.media.as_mut().expect("media requests only with the media plane on");
                if let Some(answer) = media.handle(req) {
                    self.switch.handle_media_answer(now, answer);
                }
                moved = true;
            }
            for ua in [&mut self.uac, &mut self.uas] {
                while let Some(o) = ua.layer.poll_output() {
                    moved = true;
                    match o {
                        Output::Transmit { peer, bytes } => self.net.send(now, ua.addr, peer.remote, bytes),
                        Output::Event(e) => ua.on_event(now, e),
                    }
                }
            }
            if !moved {
                break;
            }
        }
    }

    fn register_callee(&mut self) {
        let now = self.now;
        self.uas.send(
            now,
            "REGISTER",
            "sip:127.0.0.1",
            "<sip:1001@127.0.0.1>",
            "reg-1001",
            &[("Expires", "3600".into())],
            b"",
        );
        assert!(
            self.run_until(Duration::from_secs(20), |w| w.uas.got(Method::Register, 200)),
            "callee registered: {:?}",
            self.uas.statuses
        );
        assert_eq!(self.uas.statuses.iter().map(|x| x.1).collect::<Vec<_>>(), [401, 200]);
        self.uas.auth_tries = 0;
        self.uas.cseq = 0;
    }

    fn call(&mut self, dest: &str) {
        let now = self.now;
        let to = format!("<sip:{dest}@127.0.0.1>");
        self.uac.send(now, "INVITE", &format!("sip:{dest}@127.0.0.1"), &to, "call-a", &[], SDP_A);
    }

    fn callee_invite(&self) -> Option<&Message> {
        self.uas.invite.as_ref().map(|x| &x.1)
    }

    fn callee_answers(&mut self, code: u16, body: &[u8]) {
        let (tx, msg) = self.uas.invite.clone().expect("the callee got the INVITE");
        let now = self.now;
        self.uas.respond(now, tx, &msg, code, body);
    }

    fn histories(&self) -> Vec<(Vec<ChannelState>, Vec<Vec<ChannelState>>)> {
        self.switch.call_histories()
    }

    /// The switch's wall clock now (it started at 1_800_000_000).
    fn unix(&self) -> u64 {
        1_800_000_000 + (self.now - self.start).as_secs()
    }

    /// The switch is killed and started again on the same address: every write it made
    /// goes to a real database, and a new switch (new identifiers, no transactions)
    /// recovers from what that database loads. Returns the loaded rows and the report.
    fn crash_and_recover(&mut self) -> (Loaded, RecoveryReport) {
        let dir = common::TempDir::new("netsim-recovery");
        let (h, _) = Storage::open(&dir.0).expect("open the database");
        for w in &self.writes {
            h.write(w.clone());
        }
        h.close();
        let (h, loaded) = Storage::open(&dir.0).expect("reopen the database");
        h.close();
        let mut switch = Switch::new(&Config::embedded().unwrap(), IdGen::from_seed(9_999), self.now, self.unix());
        let sw = addr(SW);
        switch.set_locals(vec![Peer { transport: TransportKind::Udp, remote: sw, local: sw }]);
        if let Some(media) = &self.media {
            switch.set_media(MediaSettings { enabled: true, ..MediaSettings::default() });
            // The media plane outlived the crash: it still holds the sessions.
            let held: Vec<(u64, SessionSpec)> = media.sessions.iter().map(|(id, spec)| (*id, *spec)).collect();
            let report = switch.recover(self.now, &loaded.calls, &loaded.live_channels, &loaded.dialogs);
            switch.adopt_media(&held);
            self.switch = switch;
            return (loaded, report);
        }
        let report = switch.recover(self.now, &loaded.calls, &loaded.live_channels, &loaded.dialogs);
        self.switch = switch;
        (loaded, report)
    }

    /// The callee hangs up: its BYE goes to the switch on the B-leg dialog.
    fn callee_hangs_up(&mut self, cseq: u32) {
        let inv = self.uas.received.iter().find(|m| m.method() == Method::Invite).unwrap().clone();
        let target = format!("sip:ferroswitch@{SW}");
        let to = String::from_utf8_lossy(inv.header(HeaderName::From).unwrap()).into_owned();
        let from = format!("{};tag=uas", String::from_utf8_lossy(inv.header(HeaderName::To).unwrap()));
        self.uas.dialog = Some((target, to, from, String::from_utf8_lossy(inv.call_id()).into_owned()));
        let now = self.now;
        self.uas.in_dialog(now, "BYE", cseq);
    }

    /// The CDRs written, in order.
    fn cdrs(&self) -> Vec<&CdrRow> {
        self.writes.iter().filter_map(|w| if let Write::InsertCdr(c) = w { Some(c) } else { None }).collect()
    }

    /// Every channel row written was deleted again: no leg is left behind in storage.
    fn assert_channels_cleaned(&self) {
        let made: Vec<&str> = self
            .writes
            .iter()
            .filter_map(|w| if let Write::UpsertChannel(c) = w { Some(c.uuid.as_str()) } else { None })
            .collect();
        let gone: Vec<&str> = self
            .writes
            .iter()
            .filter_map(|w| if let Write::DeleteChannel { uuid } = w { Some(uuid.as_str()) } else { None })
            .collect();
        let mut a = made.clone();
        let mut b = gone.clone();
        a.sort();
        b.sort();
        assert_eq!(a, b, "every channel row is deleted at CS_DESTROY");
        let mut dialogs: Vec<(String, String)> = self
            .writes
            .iter()
            .filter_map(|w| {
                if let Write::UpsertDialog(d) = w {
                    Some((d.call_id.clone(), d.local_tag.clone()))
                } else {
                    None
                }
            })
            .collect();
        // A row is written again when its CSeqs move.
        dialogs.sort();
        dialogs.dedup();
        let ended: Vec<(String, String)> = self
            .writes
            .iter()
            .filter_map(|w| {
                if let Write::DeleteDialog { call_id, local_tag, .. } = w {
                    Some((call_id.clone(), local_tag.clone()))
                } else {
                    None
                }
            })
            .collect();
        assert_eq!(dialogs.len(), ended.len(), "every dialog row is deleted when its leg ends");
        assert!(dialogs.iter().all(|d| ended.contains(d)));
    }

    fn dialog_rows(&self) -> usize {
        self.writes.iter().filter(|w| matches!(w, Write::UpsertDialog(_))).count()
    }

    fn cdr_causes(&self) -> Vec<String> {
        self.writes
            .iter()
            .filter_map(|w| if let Write::InsertCdr(c) = w { Some(c.hangup_cause.clone()) } else { None })
            .collect()
    }
}

const A_PATH: [ChannelState; 4] = [CS_NEW, CS_INIT, CS_ROUTING, CS_EXECUTE];
const B_PATH: [ChannelState; 5] = [CS_NEW, CS_INIT, CS_ROUTING, CS_CONSUME_MEDIA, CS_EXCHANGE_MEDIA];

#[test]
fn reference_call_407_ring_answer_bye_from_caller_reference_md() {
    let mut w = World::new(1, 0.0);
    w.register_callee();
    w.call("1001");
    assert!(w.run_until(Duration::from_secs(5), |w| w.callee_invite().is_some()), "{:?}", w.uac.statuses);
    // Steps 1-8: 100 and 407 (the network may reorder them), the re-INVITE with
    // credentials, 100, then the B-leg INVITE.
    let mut seen: Vec<u16> = w.uac.statuses.iter().map(|x| x.1).collect();
    seen.sort();
    seen.dedup();
    assert_eq!(seen, [100, 407]);
    assert_eq!(w.uac.auth_tries, 1);
    let b_invite = w.callee_invite().unwrap().clone();
    assert_eq!(b_invite.body(), SDP_A, "the offer passes unchanged");
    assert_ne!(b_invite.call_id(), b"call-a", "the B-leg is its own dialog");
    assert_eq!(b_invite.request_uri_bytes(), format!("sip:1001@{UAS}").as_bytes());
    // Steps 9-10: 180 relayed.
    w.callee_answers(180, b"");
    assert!(w.run_until(Duration::from_secs(5), |w| w.uac.got(Method::Invite, 180)));
    // Steps 11-14: 200 from B, ACK to B, 200 to A with B's SDP, ACK from A.
    w.callee_answers(200, SDP_B);
    assert!(w.run_until(Duration::from_secs(5), |w| w.uac.got(Method::Invite, 200)
        && w.uas.requests.contains(&Method::Ack)));
    let h = w.histories();
    assert_eq!(h.len(), 1);
    assert_eq!(h[0].0, A_PATH);
    assert_eq!(h[0].1, [B_PATH.to_vec()]);
    // Step 16-17: BYE from the caller ends both legs.
    w.run_until(Duration::from_secs(1), |_| false);
    let now = w.now;
    w.uac.in_dialog(now, "BYE", 10);
    assert!(
        w.run_until(Duration::from_secs(5), |w| w.uac.got(Method::Bye, 200) && w.uas.requests.contains(&Method::Bye))
    );
    assert_eq!(w.switch.calls(), 0);
    assert_eq!(w.cdr_causes(), ["NORMAL_CLEARING", "NORMAL_CLEARING"]);
    assert_eq!(w.dialog_rows(), 2, "one dialog per leg");
    w.assert_channels_cleaned();
    // Everything settles: no transaction left after the timers run out.
    w.run_until(Duration::from_secs(40), |_| false);
    assert_eq!(w.switch.transactions(), 0);
}

#[test]
fn bye_from_callee_ends_both_legs() {
    let mut w = World::new(2, 0.0);
    w.register_callee();
    w.call("1001");
    assert!(w.run_until(Duration::from_secs(5), |w| w.callee_invite().is_some()));
    w.callee_answers(200, SDP_B);
    assert!(w.run_until(Duration::from_secs(5), |w| w.uas.requests.contains(&Method::Ack)));
    w.callee_hangs_up(1);
    assert!(
        w.run_until(Duration::from_secs(5), |w| w.uas.got(Method::Bye, 200) && w.uac.requests.contains(&Method::Bye))
    );
    assert_eq!(w.switch.calls(), 0);
}

#[test]
fn busy_callee_reaches_the_caller_as_486() {
    let mut w = World::new(3, 0.0);
    w.register_callee();
    w.call("1001");
    assert!(w.run_until(Duration::from_secs(5), |w| w.callee_invite().is_some()));
    w.callee_answers(486, b"");
    assert!(w.run_until(Duration::from_secs(5), |w| w.uac.final_status(Method::Invite).is_some_and(|s| s != 407)));
    assert_eq!(w.uac.statuses.last(), Some(&(Method::Invite, 486)));
    assert_eq!(w.switch.calls(), 0);
    assert_eq!(w.cdr_causes(), ["USER_BUSY", "USER_BUSY"]);
    w.assert_channels_cleaned();
}

#[test]
fn unregistered_callee_gets_480_and_unknown_number_404() {
    for (dest, code, cause) in [("1002", 480, "USER_NOT_REGISTERED"), ("5555", 404, "NO_ROUTE_DESTINATION")] {
        let mut w = World::new(4, 0.0);
        w.call(dest);
        assert!(w.run_until(Duration::from_secs(5), |w| w
            .uac
            .statuses
            .iter()
            .any(|&(m, s)| m == Method::Invite && s >= 400 && s != 407)));
        assert_eq!(w.uac.statuses.last(), Some(&(Method::Invite, code)), "{dest}");
        assert_eq!(w.cdr_causes(), [cause], "{dest}");
        assert_eq!(w.switch.calls(), 0);
    }
}

#[test]
fn caller_cancel_before_answer_gets_487_and_cancels_the_callee_rfc3261_9() {
    let mut w = World::new(5, 0.0);
    w.register_callee();
    w.call("1001");
    assert!(w.run_until(Duration::from_secs(5), |w| w.callee_invite().is_some()));
    w.callee_answers(180, b"");
    assert!(w.run_until(Duration::from_secs(5), |w| w.uac.got(Method::Invite, 180)));
    // CANCEL: same branch and CSeq number as the authenticated INVITE.
    let inv = w.uac.last_request.clone().unwrap();
    let mut buf = Vec::new();
    let mut c = Writer::request(&mut buf, b"CANCEL", inv.request_uri_bytes());
    c.header("Via", inv.top_via_bytes());
    c.header("Max-Forwards", "70");
    c.header("From", inv.header(HeaderName::From).unwrap());
    c.header("To", inv.header(HeaderName::To).unwrap());
    c.header("Call-ID", inv.call_id());
    c.header_fmt("CSeq", format_args!("{} CANCEL", inv.cseq()));
    c.finish(b"");
    let now = w.now;
    let peer = w.uac.peer();
    w.uac.layer.request(now, parse(buf), peer).unwrap();
    assert!(w.run_until(Duration::from_secs(10), |w| w.uac.got(Method::Cancel, 200)
        && w.uac.got(Method::Invite, 487)
        && w.uas.requests.contains(&Method::Cancel)));
    assert!(w.run_until(Duration::from_secs(10), |w| w.switch.calls() == 0));
    assert_eq!(w.cdr_causes(), ["ORIGINATOR_CANCEL", "ORIGINATOR_CANCEL"], "B-leg first, then the caller");
    w.assert_channels_cleaned();
}

#[test]
fn no_answer_within_call_timeout_gets_408_and_cancels_the_callee() {
    let mut w = World::new(6, 0.0);
    w.register_callee();
    w.call("1001");
    assert!(w.run_until(Duration::from_secs(5), |w| w.callee_invite().is_some()));
    let t0 = w.now;
    w.callee_answers(180, b"");
    // The default dialplan sets call_timeout=30.
    assert!(w.run_until(Duration::from_secs(40), |w| w.uac.final_status(Method::Invite).is_some_and(|s| s != 407)));
    assert_eq!(w.uac.statuses.last(), Some(&(Method::Invite, 408)));
    let waited = w.now - t0;
    // call_timeout runs from the start of `bridge`; the callee saw the INVITE and the
    // caller the 408 each one network delay (2-30 ms) after the switch sent them.
    assert!(waited > Duration::from_millis(29_950) && waited < Duration::from_millis(30_050), "{waited:?}");
    assert!(w.run_until(Duration::from_secs(5), |w| w.uas.requests.contains(&Method::Cancel) && w.switch.calls() == 0));
    assert_eq!(w.cdr_causes(), ["NO_USER_RESPONSE", "NO_USER_RESPONSE"]);
    w.assert_channels_cleaned();
}

#[test]
fn reference_call_completes_under_20_percent_loss() {
    for seed in 10..16 {
        let mut w = World::new(seed, 0.2);
        w.register_callee();
        w.call("1001");
        assert!(
            w.run_until(Duration::from_secs(30), |w| w.callee_invite().is_some()),
            "seed {seed}: {:?} {:?}",
            w.uac.statuses,
            w.uac.auth_tries
        );
        w.callee_answers(180, b"");
        w.callee_answers(200, SDP_B);
        assert!(
            w.run_until(Duration::from_secs(30), |w| w.uac.got(Method::Invite, 200)),
            "seed {seed}: {:?}",
            w.uac.statuses
        );
        let now = w.now;
        w.uac.in_dialog(now, "BYE", 10);
        assert!(
            w.run_until(Duration::from_secs(40), |w| w.uac.got(Method::Bye, 200) && w.switch.calls() == 0),
            "seed {seed}"
        );
        let _ = w.start;
    }
}

#[test]
fn re_invite_and_info_are_relayed_to_the_other_leg_rfc3261_14() {
    let mut w = World::new(7, 0.0);
    w.register_callee();
    w.call("1001");
    assert!(w.run_until(Duration::from_secs(5), |w| w.callee_invite().is_some()));
    w.callee_answers(200, SDP_B);
    assert!(w.run_until(Duration::from_secs(5), |w| w.uas.requests.contains(&Method::Ack)));
    let acks = w.uas.requests.iter().filter(|m| **m == Method::Ack).count();
    // Hold: a re-INVITE with a new offer from the caller reaches the callee.
    let hold = b"v=0\r\no=a 1 2 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 40000 RTP/AVP 0\r\na=sendonly\r\n";
    let now = w.now;
    w.uac.in_dialog_with(now, "INVITE", 5, hold);
    assert!(
        w.run_until(Duration::from_secs(5), |w| w.uas.requests.iter().filter(|m| **m == Method::Invite).count() == 2)
    );
    let reinvite = w.callee_invite().unwrap().clone();
    assert!(reinvite.to_tag().is_some(), "in the B-leg dialog");
    assert_eq!(reinvite.body(), hold, "the offer passes unchanged");
    // The callee answers; its 200 comes back to the caller and each side gets its ACK.
    w.callee_answers(200, SDP_B);
    assert!(w.run_until(Duration::from_secs(5), |w| w
        .uac
        .statuses
        .iter()
        .filter(|s| **s == (Method::Invite, 200))
        .count()
        == 2));
    assert!(w.run_until(Duration::from_secs(5), |w| w.uas.requests.iter().filter(|m| **m == Method::Ack).count()
        == acks + 1));
    // INFO (DTMF) goes across too, and the callee's 200 comes back.
    let now = w.now;
    w.uac.in_dialog_with(now, "INFO", 6, b"Signal=5\r\nDuration=160\r\n");
    assert!(
        w.run_until(Duration::from_secs(5), |w| w.uac.got(Method::Info, 200) && w.uas.requests.contains(&Method::Info)),
        "caller saw {:?}, callee got {:?}",
        w.uac.statuses,
        w.uas.requests
    );
    assert_eq!(w.switch.calls(), 1);
}

#[test]
fn a_bye_from_the_caller_ends_2xx_retransmissions_when_its_ack_was_lost_rfc3261_13_3_1_4() {
    let mut w = World::new(8, 0.0);
    w.register_callee();
    w.uac.ack_2xx = false;
    w.call("1001");
    assert!(w.run_until(Duration::from_secs(5), |w| w.callee_invite().is_some()));
    w.callee_answers(200, SDP_B);
    assert!(w.run_until(Duration::from_secs(5), |w| w.uac.got(Method::Invite, 200)));
    // The caller never ACKs, but hangs up at once: its BYE proves it has the 2xx.
    let now = w.now;
    w.uac.in_dialog(now, "BYE", 10);
    assert!(w.run_until(Duration::from_secs(5), |w| w.uac.got(Method::Bye, 200)));
    let oks = |w: &World| w.uac.statuses.iter().filter(|s| **s == (Method::Invite, 200)).count();
    let before = oks(&w);
    w.run_until(Duration::from_secs(40), |_| false);
    assert_eq!(oks(&w), before, "no 2xx retransmission after the BYE");
    assert_eq!(w.switch.calls(), 0);
}

#[test]
fn early_media_183_with_sdp_is_relayed_to_the_caller() {
    let mut w = World::new(9, 0.0);
    w.register_callee();
    w.call("1001");
    assert!(w.run_until(Duration::from_secs(5), |w| w.callee_invite().is_some()));
    w.callee_answers(183, SDP_B);
    assert!(w.run_until(Duration::from_secs(5), |w| w.uac.got(Method::Invite, 183)), "{:?}", w.uac.statuses);
    // The early SDP reaches the caller unchanged; the answer comes later as usual.
    assert_eq!(w.uac.early_sdp.as_deref(), Some(SDP_B));
    w.callee_answers(200, SDP_B);
    assert!(w.run_until(Duration::from_secs(5), |w| w.uac.got(Method::Invite, 200)));
}

#[test]
fn decline_603_from_the_callee_reaches_the_caller() {
    let mut w = World::new(10, 0.0);
    w.register_callee();
    w.call("1001");
    assert!(w.run_until(Duration::from_secs(5), |w| w.callee_invite().is_some()));
    w.callee_answers(603, b"");
    assert!(w.run_until(Duration::from_secs(5), |w| w.uac.final_status(Method::Invite).is_some_and(|s| s != 407)));
    assert_eq!(w.uac.statuses.last(), Some(&(Method::Invite, 603)));
    assert_eq!(w.cdr_causes(), ["CALL_REJECTED", "CALL_REJECTED"]);
    w.assert_channels_cleaned();
}

/// The reference call, answered and talking for a few seconds.
fn bridged_call(seed: u64) -> World {
    let mut w = World::new(seed, 0.0);
    w.register_callee();
    w.call("1001");
    assert!(w.run_until(Duration::from_secs(5), |w| w.callee_invite().is_some()));
    w.callee_answers(200, SDP_B);
    assert!(w.run_until(Duration::from_secs(5), |w| w.uac.got(Method::Invite, 200)
        && w.uas.requests.contains(&Method::Ack)));
    w.run_until(Duration::from_secs(5), |_| false);
    w
}

fn text(b: Option<&[u8]>) -> String {
    String::from_utf8_lossy(b.unwrap_or_default()).into_owned()
}

/// The CDRs written from `since` on are both legs' NORMAL_CLEARING, with the start and
/// answer times of their stored channels and the end time `end` (within the second).
fn assert_cleared_normally(w: &World, since: usize, loaded: &Loaded, call: &str, end: u64) {
    let cdrs: Vec<&CdrRow> =
        w.writes[since..].iter().filter_map(|x| if let Write::InsertCdr(c) = x { Some(c) } else { None }).collect();
    assert_eq!(cdrs.len(), 2, "{cdrs:?}");
    for c in cdrs {
        let stored = loaded.live_channels.iter().find(|r| r.uuid == c.uuid).expect("a stored leg");
        assert_eq!((c.hangup_cause.as_str(), c.q850_cause), ("NORMAL_CLEARING", 16));
        assert_eq!(c.call_uuid.as_deref(), Some(call));
        assert_eq!((c.start_at, c.answer_at), (stored.created_at, stored.answered_at));
        assert!(stored.answered_at.is_some());
        assert!((end..=end + 1).contains(&(c.end_at as u64)), "{} ended at {}, not {end}", c.uuid, c.end_at);
    }
    let deleted: Vec<&Write> = w.writes[since..]
        .iter()
        .filter(|x| matches!(x, Write::DeleteChannel { .. } | Write::DeleteCall { .. } | Write::DeleteDialog { .. }))
        .collect();
    assert_eq!(deleted.len(), 5, "both channels, both dialogs and the call: {deleted:?}");
    w.assert_channels_cleaned();
}

#[test]
fn a_recovered_call_ends_on_the_callees_bye_and_the_caller_gets_its_bye() {
    let mut w = bridged_call(21);
    let (loaded, report) = w.crash_and_recover();
    assert_eq!((report.recovered.len(), report.cleared.len()), (1, 0));
    assert_eq!((loaded.calls.len(), loaded.live_channels.len(), loaded.dialogs.len()), (1, 2, 2));
    assert_eq!(w.histories(), [(A_PATH.to_vec(), vec![B_PATH.to_vec()])], "stored states, reached as usual");
    w.run_until(Duration::from_secs(2), |_| false);
    let (since, end) = (w.writes.len(), w.unix());
    w.callee_hangs_up(1);
    assert!(w.run_until(Duration::from_secs(5), |w| w.uas.got(Method::Bye, 200)
        && w.uac.requests.contains(&Method::Bye)
        && w.switch.calls() == 0));
    // The BYE is in the caller's dialog as its 2xx made it: the switch's To (with its tag)
    // as From, the caller's From as To, to the caller's Contact, the A-leg's next CSeq.
    let bye = w.uac.received.iter().find(|m| m.method() == Method::Bye).unwrap();
    let (_, our_to, our_from, call_id) = w.uac.dialog.clone().unwrap();
    assert_eq!(call_id, "call-a");
    assert_eq!(text(Some(bye.call_id())), call_id);
    assert_eq!(text(bye.header(HeaderName::From)), our_to);
    assert_eq!(text(bye.header(HeaderName::To)), our_from);
    assert_eq!(text(Some(bye.request_uri_bytes())), format!("sip:1000@{UAC}"));
    assert_eq!(bye.cseq(), 1);
    // The caller's 200 reached the switch: one response, and its BYE transaction ends.
    assert!(w.run_until(Duration::from_secs(40), |w| w.switch.transactions() == 0));
    assert_eq!(w.switch.stats().responses_received, 1);
    assert_eq!(w.uac.requests.iter().filter(|m| **m == Method::Bye).count(), 1, "no retransmission");
    assert_cleared_normally(&w, since, &loaded, &report.recovered[0], end);
}

#[test]
fn a_recovered_call_ends_on_the_callers_bye_past_the_cseqs_of_relayed_requests() {
    let mut w = bridged_call(22);
    // INFO before the crash: relayed to the callee with the B-leg's next CSeq (2).
    let now = w.now;
    w.uac.in_dialog_with(now, "INFO", 3, b"Signal=5\r\nDuration=160\r\n");
    assert!(w.run_until(Duration::from_secs(5), |w| w.uac.got(Method::Info, 200)));
    let (loaded, report) = w.crash_and_recover();
    assert_eq!((report.recovered.len(), report.cleared.len()), (1, 0));
    let b_invite = w.uas.received.iter().find(|m| m.method() == Method::Invite).unwrap().clone();
    let b_call_id = text(Some(b_invite.call_id()));
    let cseqs = |call_id: &str| {
        let d = loaded.dialogs.iter().find(|d| d.call_id == call_id).unwrap();
        (d.local_cseq, d.remote_cseq)
    };
    assert_eq!(cseqs("call-a"), (0, 3), "the caller's INFO");
    assert_eq!(cseqs(&b_call_id), (2, 0), "the relayed INFO");
    let (since, end) = (w.writes.len(), w.unix());
    let now = w.now;
    w.uac.in_dialog(now, "BYE", 4);
    assert!(w.run_until(Duration::from_secs(5), |w| w.uac.got(Method::Bye, 200)
        && w.uas.requests.contains(&Method::Bye)
        && w.switch.calls() == 0));
    // The callee's BYE: the B-leg dialog as the switch made it, CSeq past the INFO's.
    let bye = w.uas.received.iter().find(|m| m.method() == Method::Bye).unwrap();
    assert_eq!(text(Some(bye.call_id())), b_call_id);
    assert_eq!(text(bye.header(HeaderName::From)), text(b_invite.header(HeaderName::From)));
    assert_eq!(text(bye.header(HeaderName::To)), format!("{};tag=uas", text(b_invite.header(HeaderName::To))));
    assert_eq!(text(Some(bye.request_uri_bytes())), format!("sip:1001@{UAS}"));
    assert_eq!(bye.cseq(), 3);
    assert!(w.run_until(Duration::from_secs(40), |w| w.switch.transactions() == 0));
    assert_eq!(w.switch.stats().responses_received, 1, "the callee's 200");
    assert_cleared_normally(&w, since, &loaded, &report.recovered[0], end);
}

#[test]
fn a_call_ringing_at_the_crash_is_cleared_with_crash_cdrs() {
    let mut w = World::new(23, 0.0);
    w.register_callee();
    w.call("1001");
    assert!(w.run_until(Duration::from_secs(5), |w| w.callee_invite().is_some()));
    w.callee_answers(180, b"");
    assert!(w.run_until(Duration::from_secs(5), |w| w.uac.got(Method::Invite, 180)));
    let (loaded, report) = w.crash_and_recover();
    assert!(report.recovered.is_empty());
    let mut stored: Vec<&str> = loaded.live_channels.iter().map(|c| c.uuid.as_str()).collect();
    let mut cleared: Vec<&str> = report.cleared.iter().map(String::as_str).collect();
    stored.sort();
    cleared.sort();
    assert_eq!((stored.len(), cleared), (2, stored.clone()));
    assert_eq!(w.switch.calls(), 0);
    w.pump();
    let a = loaded.live_channels.iter().find(|c| c.state == "CS_EXECUTE").expect("the A-leg, running bridge");
    let crashed = w.cdrs();
    assert_eq!(crashed.len(), 2);
    for c in crashed {
        let row = loaded.live_channels.iter().find(|r| r.uuid == c.uuid).unwrap();
        assert_eq!((c.hangup_cause.as_str(), c.q850_cause, c.sip_status), ("CRASH", 700, None));
        assert_eq!((c.start_at, c.answer_at, c.billsec), (row.created_at, None, 0));
        assert_eq!((c.end_at as u64, c.call_uuid.as_deref()), (w.unix(), Some(a.uuid.as_str())));
    }
    w.assert_channels_cleaned();
    // Nothing is sent: neither leg had a dialog. A second restart finds nothing left.
    assert!(w.switch.poll_transmit().is_none());
    let (loaded, report) = w.crash_and_recover();
    assert_eq!((loaded.live_channels.len(), loaded.calls.len(), loaded.dialogs.len()), (0, 0, 0));
    assert_eq!(report, RecoveryReport::default());
}

#[test]
fn a_caller_parked_in_echo_at_the_crash_is_cleared_and_gets_a_bye() {
    let mut w = World::new(24, 0.0);
    w.call("9196");
    assert!(w.run_until(Duration::from_secs(5), |w| w.uac.got(Method::Invite, 200)));
    let (loaded, report) = w.crash_and_recover();
    assert_eq!(loaded.live_channels.len(), 1);
    assert_eq!((report.recovered.len(), report.cleared.clone()), (0, vec![loaded.live_channels[0].uuid.clone()]));
    assert!(
        w.run_until(Duration::from_secs(10), |w| w.uac.requests.contains(&Method::Bye) && w.switch.transactions() == 0)
    );
    let bye = w.uac.received.iter().find(|m| m.method() == Method::Bye).unwrap();
    assert_eq!((text(Some(bye.call_id())).as_str(), bye.cseq()), ("call-a", 1));
    let crashed = w.cdrs();
    assert_eq!(crashed.len(), 1);
    assert_eq!(
        (crashed[0].hangup_cause.as_str(), crashed[0].answer_at),
        ("CRASH", loaded.live_channels[0].answered_at)
    );
    assert!(crashed[0].answer_at.is_some());
    w.assert_channels_cleaned();
}

// ---- The calls' media through the media plane (issue 6), with a fake media plane ----

/// Where the first stream of an SDP points.
fn media_addr(body: &[u8]) -> SocketAddr {
    let sdp = Sdp::parse(body).unwrap();
    SocketAddr::new(sdp.connection_for(0).and_then(|c| c.ip()).unwrap(), sdp.media[0].port)
}

fn media(w: &World) -> &FakeMedia {
    w.media.as_ref().unwrap()
}

/// The only session, with its legs' local addresses.
fn only_session(w: &World) -> (u64, SessionSpec, SocketAddr, SocketAddr) {
    assert_eq!(media(w).sessions.len(), 1, "one session per call with one stream");
    let (&id, &spec) = media(w).sessions.iter().next().unwrap();
    (id, spec, spec.legs[0].local.addr().unwrap(), spec.legs[1].local.addr().unwrap())
}

/// A call from 1000 to 1001 answered with SDP_B, its media through the fake media plane,
/// both sides past their 2xx.
fn bridged_with_media(seed: u64) -> World {
    let mut w = World::with_media(seed);
    w.register_callee();
    w.call("1001");
    assert!(w.run_until(Duration::from_secs(5), |w| w.callee_invite().is_some()));
    w.callee_answers(200, SDP_B);
    assert!(w.run_until(Duration::from_secs(5), |w| w.uas.requests.contains(&Method::Ack)
        && w.uac.got(Method::Invite, 200)));
    w
}

#[test]
fn a_bridged_calls_media_crosses_the_media_plane_both_ways() {
    let mut w = World::with_media(31);
    w.register_callee();
    w.call("1001");
    assert!(w.run_until(Duration::from_secs(5), |w| w.callee_invite().is_some()));
    let (id, spec, leg_a, leg_b) = only_session(&w);
    assert_eq!(spec.legs[0].remote.addr(), Some(addr("127.0.0.1:40000")), "leg A's peer: A's offer");
    assert_eq!(spec.legs[1].remote.addr(), None, "leg B's peer is unknown before B answers");
    assert_eq!(spec.rtp_timeout_secs, 300);
    // B is offered leg B's port (RTCP on the next one), with A's codec first, then the
    // preferences the media plane can transcode to.
    let offer = w.callee_invite().unwrap().body().to_vec();
    assert_eq!(media_addr(&offer), leg_b);
    let offer = Sdp::parse(&offer).unwrap();
    assert_eq!(
        (offer.media[0].formats.clone(), offer.media[0].rtcp_port()),
        (vec!["0".into(), "96".into(), "9".into(), "8".into()], Some(leg_b.port() + 1))
    );
    assert_eq!(offer.origin.address, "127.0.0.1");
    w.callee_answers(180, b"");
    w.callee_answers(200, SDP_B);
    assert!(w.run_until(Duration::from_secs(5), |w| w.uac.got(Method::Invite, 200)));
    // A is answered with leg A's port; leg B's peer is now B's answer.
    assert_eq!(media_addr(w.uac.answer_sdp.as_deref().unwrap()), leg_a);
    assert_eq!(media(&w).sessions[&id].legs[1].remote.addr(), Some(addr("127.0.0.1:42000")));
    assert_eq!(media(&w).sessions[&id].legs[0].remote.addr(), Some(addr("127.0.0.1:40000")));
    // The caller hangs up: the session goes, its counters to both legs' CDRs.
    let now = w.now;
    w.uac.in_dialog(now, "BYE", 10);
    assert!(w.run_until(Duration::from_secs(5), |w| w.uas.requests.contains(&Method::Bye)));
    assert!(media(&w).sessions.is_empty());
    let cdrs = w.cdrs();
    let uuid_of = |d: Direction| cdrs.iter().find(|c| c.direction == d).map(|c| c.uuid.clone());
    assert_eq!(media(&w).destroyed, [(id, [uuid_of(Direction::Inbound), uuid_of(Direction::Outbound)])]);
    assert_eq!(w.cdr_causes(), ["NORMAL_CLEARING", "NORMAL_CLEARING"]);
}

#[test]
fn a_late_offer_gets_the_switchs_offer_on_both_legs_and_the_callers_answer_in_its_ack() {
    let mut w = World::with_media(32);
    w.register_callee();
    w.uac.ack_body = SDP_A.to_vec();
    let now = w.now;
    w.uac.send(now, "INVITE", "sip:1001@127.0.0.1", "<sip:1001@127.0.0.1>", "call-a", &[], b"");
    assert!(w.run_until(Duration::from_secs(5), |w| w.callee_invite().is_some()));
    let (id, spec, leg_a, leg_b) = only_session(&w);
    assert_eq!((spec.legs[0].remote.addr(), spec.legs[1].remote.addr()), (None, None));
    // B gets the switch's offer: the preferences (OPUS,G722,PCMU,PCMA) and telephone-event.
    let offer = w.callee_invite().unwrap().body().to_vec();
    assert_eq!(media_addr(&offer), leg_b);
    let names: Vec<String> =
        Sdp::parse(&offer).unwrap().media[0].rtpmaps().iter().map(|r| r.encoding.clone()).collect();
    assert_eq!(names, ["OPUS", "G722", "PCMU", "PCMA", "telephone-event"]);
    // B answers PCMU: A is offered B's choice at leg A's port, and answers in its ACK.
    w.callee_answers(200, SDP_B);
    assert!(w.run_until(Duration::from_secs(5), |w| w.uac.got(Method::Invite, 200)));
    let to_a = w.uac.answer_sdp.clone().unwrap();
    assert_eq!(media_addr(&to_a), leg_a);
    assert_eq!(Sdp::parse(&to_a).unwrap().media[0].formats, ["0"]);
    assert!(w.run_until(Duration::from_secs(5), |w| media(w).sessions[&id].legs[0].remote.addr().is_some()));
    assert_eq!(media(&w).sessions[&id].legs[0].remote.addr(), Some(addr("127.0.0.1:40000")));
    assert_eq!(media(&w).sessions[&id].legs[1].remote.addr(), Some(addr("127.0.0.1:42000")));
}

#[test]
fn no_media_session_fails_the_call_with_503_before_the_callee_rings() {
    let mut w = World::with_media(33);
    w.media.as_mut().unwrap().refuse = Some("no free port".into());
    w.register_callee();
    w.call("1001");
    assert!(w.run_until(Duration::from_secs(5), |w| w.uac.final_status(Method::Invite) == Some(503)));
    assert!(w.callee_invite().is_none());
    assert_eq!(w.cdr_causes(), ["NORMAL_TEMPORARY_FAILURE"]);
    assert_eq!(w.switch.calls(), 0);
}

#[test]
fn an_rtp_timeout_hangs_the_call_up_with_media_timeout() {
    let mut w = World::with_media(34);
    w.register_callee();
    w.call("1001");
    assert!(w.run_until(Duration::from_secs(5), |w| w.callee_invite().is_some()));
    w.callee_answers(200, SDP_B);
    assert!(w.run_until(Duration::from_secs(5), |w| w.uac.got(Method::Invite, 200)));
    let (id, ..) = only_session(&w);
    let now = w.now;
    w.switch.handle_media_timeout(now, id);
    assert!(w.run_until(Duration::from_secs(5), |w| w.uac.requests.contains(&Method::Bye)
        && w.uas.requests.contains(&Method::Bye)));
    assert_eq!(w.cdr_causes(), ["MEDIA_TIMEOUT", "MEDIA_TIMEOUT"]);
    assert!(media(&w).sessions.is_empty());
    assert_eq!(w.switch.calls(), 0);
}

#[test]
fn hold_and_resume_re_invites_are_pointed_at_the_media_plane_and_pause_the_rtp_timer() {
    let mut w = bridged_with_media(35);
    let (id, _, leg_a, leg_b) = only_session(&w);
    let invites = |w: &World| w.uas.requests.iter().filter(|m| **m == Method::Invite).count();
    let oks = |w: &World| w.uac.statuses.iter().filter(|s| **s == (Method::Invite, 200)).count();
    // Hold from a new address: B gets it at leg B's port, still sendonly; leg A's peer moves.
    let hold = b"v=0\r\no=a 1 2 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.2\r\nt=0 0\r\nm=audio 40010 RTP/AVP 0\r\na=sendonly\r\n";
    let now = w.now;
    w.uac.in_dialog_with(now, "INVITE", 5, hold);
    assert!(w.run_until(Duration::from_secs(5), |w| invites(w) == 2));
    let relayed = w.callee_invite().unwrap().body().to_vec();
    assert_eq!(media_addr(&relayed), leg_b);
    let relayed = Sdp::parse(&relayed).unwrap();
    assert_eq!(relayed.media[0].direction(relayed.direction()), control_plane::sdp::Direction::SendOnly);
    let held = media(&w).sessions[&id];
    assert_eq!((held.legs[0].remote.addr(), held.rtp_timeout_secs), (Some(addr("127.0.0.2:40010")), 0));
    // B's answer comes back at leg A's port.
    w.callee_answers(200, SDP_B);
    assert!(w.run_until(Duration::from_secs(5), |w| oks(w) == 2));
    assert_eq!(media_addr(w.uac.answer_sdp.as_deref().unwrap()), leg_a);
    // Resume: the RTP timer runs again.
    let now = w.now;
    w.uac.in_dialog_with(now, "INVITE", 6, SDP_A);
    assert!(w.run_until(Duration::from_secs(5), |w| invites(w) == 3));
    assert_eq!(media(&w).sessions[&id].rtp_timeout_secs, 300);
    assert_eq!(media(&w).sessions[&id].legs[0].remote.addr(), Some(addr("127.0.0.1:40000")));
}

#[test]
fn a_re_invite_changing_a_legs_codec_mid_call_starts_and_stops_transcoding() {
    let mut w = bridged_with_media(38);
    let (id, spec, _, _) = only_session(&w);
    assert_eq!(spec.flags & session_flags::TRANSCODE, 0, "PCMU both sides: relayed");
    let invites = |w: &World| w.uas.requests.iter().filter(|m| **m == Method::Invite).count();
    let oks = |w: &World| w.uac.statuses.iter().filter(|s| **s == (Method::Invite, 200)).count();
    // A switches to PCMA only; B is offered PCMA and what the media plane transcodes to,
    // and keeps its PCMU.
    let pcma = b"v=0\r\no=a 1 2 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 40000 RTP/AVP 8\r\n";
    let now = w.now;
    w.uac.in_dialog_with(now, "INVITE", 5, pcma);
    assert!(w.run_until(Duration::from_secs(5), |w| invites(w) == 2));
    let offer = Sdp::parse(w.callee_invite().unwrap().body()).unwrap();
    assert_eq!(offer.media[0].formats[0], "8");
    assert!(offer.media[0].formats.iter().any(|f| f == "0"), "PCMU offered too: {:?}", offer.media[0].formats);
    w.callee_answers(200, SDP_B);
    assert!(w.run_until(Duration::from_secs(5), |w| oks(w) == 2));
    let answer = Sdp::parse(w.uac.answer_sdp.as_deref().unwrap()).unwrap();
    assert_eq!(answer.media[0].formats, ["8"], "A is answered with its PCMA");
    let spec = media(&w).sessions[&id];
    assert_ne!(spec.flags & session_flags::TRANSCODE, 0, "PCMA <-> PCMU: transcoded");
    assert_eq!((spec.legs[0].codecs()[0].codec, spec.legs[1].codecs()[0].codec), (codec::PCMA, codec::PCMU));
    // Back to PCMU: relayed again.
    let now = w.now;
    w.uac.in_dialog_with(now, "INVITE", 6, SDP_A);
    assert!(w.run_until(Duration::from_secs(5), |w| invites(w) == 3));
    w.callee_answers(200, SDP_B);
    assert!(w.run_until(Duration::from_secs(5), |w| oks(w) == 3));
    assert_eq!(media(&w).sessions[&id].flags & session_flags::TRANSCODE, 0);
}

#[test]
fn echo_loops_the_callers_media_through_an_echo_session() {
    let mut w = World::with_media(36);
    w.call("9196");
    assert!(w.run_until(Duration::from_secs(5), |w| w.uac.got(Method::Invite, 200)));
    let (id, spec, leg_a, _) = only_session(&w);
    assert_eq!(spec.flags & session_flags::ECHO, session_flags::ECHO);
    assert_eq!(spec.legs[0].remote.addr(), Some(addr("127.0.0.1:40000")));
    let answer = w.uac.answer_sdp.clone().unwrap();
    assert_eq!(media_addr(&answer), leg_a);
    assert_eq!(Sdp::parse(&answer).unwrap().media[0].formats, ["0"]);
    let now = w.now;
    w.uac.in_dialog(now, "BYE", 10);
    assert!(w.run_until(Duration::from_secs(5), |w| w.uac.got(Method::Bye, 200)));
    let a = w.cdrs()[0].uuid.clone();
    assert_eq!(media(&w).destroyed, [(id, [Some(a), None])]);
}

#[test]
fn bypass_media_leaves_the_sdp_untouched() {
    let mut w = World::with_media(37);
    w.switch.set_dialplan(bridge_1001_after_setting("bypass_media=true"));
    w.register_callee();
    w.call("1001");
    assert!(w.run_until(Duration::from_secs(5), |w| w.callee_invite().is_some()));
    assert_eq!(w.callee_invite().unwrap().body(), SDP_A);
    w.callee_answers(200, SDP_B);
    assert!(w.run_until(Duration::from_secs(5), |w| w.uac.got(Method::Invite, 200)));
    assert_eq!(w.uac.answer_sdp.as_deref(), Some(SDP_B));
    assert!(media(&w).sessions.is_empty() && media(&w).destroyed.is_empty());
}

#[test]
fn a_re_offer_that_adds_a_stream_gets_a_session_for_it_and_one_that_removes_it_rejects_it() {
    let mut w = bridged_with_media(38);
    let (audio, ..) = only_session(&w);
    let invites = |w: &World| w.uas.requests.iter().filter(|m| **m == Method::Invite).count();
    // The caller adds video: the re-INVITE waits for a session for it, then reaches B with
    // both streams at the media plane.
    let with_video = b"v=0\r\no=a 1 2 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 40000 RTP/AVP 0\r\nm=video 40002 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n";
    let now = w.now;
    w.uac.in_dialog_with(now, "INVITE", 5, with_video);
    assert!(w.run_until(Duration::from_secs(5), |w| invites(w) == 2));
    assert_eq!(media(&w).sessions.len(), 2);
    let (&video, spec) = media(&w).sessions.iter().find(|(id, _)| **id != audio).unwrap();
    assert_eq!(spec.legs[0].remote.addr(), Some(addr("127.0.0.1:40002")), "A's video address");
    let relayed = Sdp::parse(w.callee_invite().unwrap().body()).unwrap();
    assert_eq!(relayed.media.len(), 2);
    assert_eq!(relayed.media[1].port, spec.legs[1].local.addr().unwrap().port());
    assert_eq!(relayed.media[1].formats, ["96"]);
    // B accepts both: A hears video at its leg's port.
    let b_video = b"v=0\r\no=b 2 3 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 42000 RTP/AVP 0\r\nm=video 42002 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n";
    w.callee_answers(200, b_video);
    let oks = |w: &World| w.uac.statuses.iter().filter(|s| **s == (Method::Invite, 200)).count();
    assert!(w.run_until(Duration::from_secs(5), |w| oks(w) == 2));
    let answer = Sdp::parse(w.uac.answer_sdp.as_deref().unwrap()).unwrap();
    let video_spec = media(&w).sessions[&video];
    assert_eq!(answer.media[1].port, video_spec.legs[0].local.addr().unwrap().port());
    assert_eq!(video_spec.legs[1].remote.addr(), Some(addr("127.0.0.1:42002")));
    // The caller drops video again: B sees it rejected; the session stays, its timer off.
    let no_video = b"v=0\r\no=a 1 3 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 40000 RTP/AVP 0\r\nm=video 0 RTP/AVP 96\r\n";
    let now = w.now;
    w.uac.in_dialog_with(now, "INVITE", 6, no_video);
    assert!(w.run_until(Duration::from_secs(5), |w| invites(w) == 3));
    let relayed = Sdp::parse(w.callee_invite().unwrap().body()).unwrap();
    assert_eq!((relayed.media[0].port > 0, relayed.media[1].port), (true, 0));
    assert_eq!(media(&w).sessions[&video].rtp_timeout_secs, 0);
    // Hang-up destroys both sessions.
    w.callee_answers(200, SDP_B);
    assert!(w.run_until(Duration::from_secs(5), |w| oks(w) == 3));
    let now = w.now;
    w.uac.in_dialog(now, "BYE", 7);
    assert!(w.run_until(Duration::from_secs(5), |w| w.uas.requests.contains(&Method::Bye)));
    assert!(media(&w).sessions.is_empty());
    assert_eq!(media(&w).destroyed.len(), 2);
}

#[test]
fn a_re_invite_without_sdp_gets_the_other_legs_offer_and_its_ack_carries_the_answer_on() {
    let mut w = bridged_with_media(39);
    let (id, _, leg_a, leg_b) = only_session(&w);
    let acks = |w: &World| w.uas.received.iter().filter(|m| m.method() == Method::Ack).count();
    let before = acks(&w);
    // The caller asks for an offer: a re-INVITE without SDP reaches B without SDP.
    w.uac.ack_body =
        b"v=0\r\no=a 1 3 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.3\r\nt=0 0\r\nm=audio 40020 RTP/AVP 0\r\n"
            .to_vec();
    let now = w.now;
    w.uac.in_dialog(now, "INVITE", 5);
    assert!(
        w.run_until(Duration::from_secs(5), |w| w.uas.requests.iter().filter(|m| **m == Method::Invite).count() == 2)
    );
    assert!(w.callee_invite().unwrap().body().is_empty());
    // B offers in its 2xx; A gets that offer at leg A's port, and no ACK reaches B yet.
    w.callee_answers(200, SDP_B);
    let oks = |w: &World| w.uac.statuses.iter().filter(|s| **s == (Method::Invite, 200)).count();
    assert!(w.run_until(Duration::from_secs(5), |w| oks(w) == 2 && acks(w) == before + 1));
    assert_eq!(media_addr(w.uac.answer_sdp.as_deref().unwrap()), leg_a);
    // A's answer in its ACK moves leg A and reaches B, pointed at leg B.
    let ack = w.uas.received.iter().rev().find(|m| m.method() == Method::Ack).unwrap();
    assert_eq!(media_addr(ack.body()), leg_b);
    assert_eq!(media(&w).sessions[&id].legs[0].remote.addr(), Some(addr("127.0.0.3:40020")));
}

#[test]
fn a_call_taken_back_after_a_crash_keeps_its_media_sessions() {
    let mut w = bridged_with_media(40);
    let (id, _, _, leg_b) = only_session(&w);
    let (loaded, report) = w.crash_and_recover();
    assert_eq!(report.recovered.len(), 1);
    assert_eq!(loaded.calls[0].media_sessions, id.to_string(), "the row names the session");
    // A re-INVITE after the restart is still pointed at the media plane ...
    let hold = b"v=0\r\no=a 1 2 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 40000 RTP/AVP 0\r\na=sendonly\r\n";
    let now = w.now;
    w.uac.in_dialog_with(now, "INVITE", 5, hold);
    assert!(
        w.run_until(Duration::from_secs(5), |w| w.uas.requests.iter().filter(|m| **m == Method::Invite).count() == 2)
    );
    assert_eq!(media_addr(w.callee_invite().unwrap().body()), leg_b);
    assert_eq!(media(&w).sessions[&id].rtp_timeout_secs, 0, "on hold");
    w.callee_answers(200, SDP_B);
    let oks = |w: &World| w.uac.statuses.iter().filter(|s| **s == (Method::Invite, 200)).count();
    assert!(w.run_until(Duration::from_secs(5), |w| oks(w) == 2));
    // ... and the hangup destroys the session, its counters for both legs' CDRs.
    let now = w.now;
    w.uac.in_dialog(now, "BYE", 6);
    assert!(w.run_until(Duration::from_secs(5), |w| w.uas.requests.contains(&Method::Bye)));
    assert!(media(&w).sessions.is_empty());
    let legs = [Some(loaded.calls[0].a_leg_uuid.clone()), Some(loaded.calls[0].b_leg_uuid.clone())];
    assert_eq!(media(&w).destroyed, [(id, legs)]);
}

/// A dialplan of one context, "default", holding `extensions` (XML).
fn default_context(extensions: &str) -> control_plane::dialplan::Dialplan {
    let xml = format!(
        r#"<document type="freeswitch/xml"><section name="dialplan"><context name="default">{extensions}</context></section></document>"#
    );
    control_plane::dialplan::Dialplan::parse(&xml, "test.xml", &control_plane::dialplan::Variables::new()).unwrap()
}

/// A dialplan whose 1001 sets `variable` (`name=value`), then bridges to user 1001.
fn bridge_1001_after_setting(variable: &str) -> control_plane::dialplan::Dialplan {
    default_context(&format!(
        r#"<extension name="set"><condition field="destination_number" expression="^(1001)$">
        <action application="set" data="{variable}"/>
        <action application="bridge" data="user/$1"/></condition></extension>"#
    ))
}

/// A dialplan whose 5555 bridges to a host name that resolves to the callee, and 6666 to
/// one that does not resolve.
fn dialplan_with_host_names() -> control_plane::dialplan::Dialplan {
    default_context(
        r#"<extension name="gw"><condition field="destination_number" expression="^5555$">
        <action application="bridge" data="sofia/external/1001@callee.test:5080"/></condition></extension>
        <extension name="nx"><condition field="destination_number" expression="^6666$">
        <action application="bridge" data="sofia/external/1001@nowhere.test"/></condition></extension>"#,
    )
}

#[test]
fn a_sofia_dial_string_with_a_host_name_reaches_the_address_it_resolves_to() {
    let mut w = World::new(41, 0.0);
    w.switch.set_dialplan(dialplan_with_host_names());
    w.call("5555");
    assert!(w.run_until(Duration::from_secs(5), |w| w.callee_invite().is_some()), "{:?}", w.uac.statuses);
    assert_eq!(w.callee_invite().unwrap().request_uri_bytes(), b"sip:1001@callee.test:5080");
    w.callee_answers(200, SDP_B);
    assert!(w.run_until(Duration::from_secs(5), |w| w.uac.got(Method::Invite, 200)));
}

#[test]
fn a_host_name_that_does_not_resolve_fails_the_call_with_no_route_destination() {
    let mut w = World::new(42, 0.0);
    w.switch.set_dialplan(dialplan_with_host_names());
    w.call("6666");
    assert!(w.run_until(Duration::from_secs(5), |w| w.uac.statuses.contains(&(Method::Invite, 404))));
    assert_eq!(w.uac.statuses.iter().filter(|s| s.1 >= 300).map(|s| s.1).collect::<Vec<_>>(), [407, 404]);
    assert!(w.callee_invite().is_none());
    assert_eq!(w.cdr_causes(), ["NO_ROUTE_DESTINATION"]);
}

impl World {
    /// The caller calls `dest` offering `sdp`.
    fn call_offering(&mut self, dest: &str, sdp: &[u8]) {
        let now = self.now;
        let to = format!("<sip:{dest}@127.0.0.1>");
        self.uac.send(now, "INVITE", &format!("sip:{dest}@127.0.0.1"), &to, "call-a", &[], sdp);
    }
}

#[test]
fn a_caller_offering_nothing_the_switch_prefers_or_transcodes_gets_488_and_the_callee_never_rings() {
    let mut w = World::with_media(51);
    w.register_callee();
    // GSM only: not in the switch's preferences, and the media plane does not transcode it.
    w.call_offering(
        "1001",
        b"v=0\r\no=a 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 40000 RTP/AVP 3\r\n",
    );
    assert!(w.run_until(Duration::from_secs(5), |w| w.uac.final_status(Method::Invite) == Some(488)));
    assert!(w.callee_invite().is_none());
    assert!(media(&w).sessions.is_empty());
    assert_eq!(w.cdr_causes(), ["INCOMPATIBLE_DESTINATION"]);
    assert_eq!(w.switch.calls(), 0);
}

#[test]
fn a_g729_only_caller_is_bridged_through_transcoding_to_the_switchs_codecs() {
    let mut w = World::with_media(54);
    w.register_callee();
    w.call_offering(
        "1001",
        b"v=0\r\no=a 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 40000 RTP/AVP 18\r\n",
    );
    assert!(w.run_until(Duration::from_secs(5), |w| w.callee_invite().is_some()));
    let offer = String::from_utf8_lossy(w.callee_invite().unwrap().body()).into_owned();
    assert!(offer.contains("a=rtpmap:0 PCMU/8000"), "B is offered the preferences: {offer}");
    assert!(!offer.contains(" 18\r\n"), "not G.729, which the switch does not prefer: {offer}");
    w.callee_answers(200, SDP_B);
    assert!(w.run_until(Duration::from_secs(5), |w| w.uac.got(Method::Invite, 200)));
    let answer = String::from_utf8(w.uac.answer_sdp.clone().unwrap()).unwrap();
    assert!(answer.contains("RTP/AVP 18"), "A keeps G.729: {answer}");
    let (_, spec, _, _) = only_session(&w);
    assert_ne!(spec.flags & session_flags::TRANSCODE, 0);
    assert_eq!((spec.legs[0].codecs()[0].codec, spec.legs[1].codecs()[0].codec), (codec::G729, codec::PCMU));
}

#[test]
fn a_callee_answering_a_codec_the_caller_never_offered_is_transcoded_to_the_callers() {
    let mut w = World::with_media(52);
    w.register_callee();
    w.call("1001");
    assert!(w.run_until(Duration::from_secs(5), |w| w.callee_invite().is_some()));
    // A offered PCMU; B answers PCMA anyway.
    let pcma = b"v=0\r\no=b 2 2 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 42000 RTP/AVP 8\r\n";
    w.callee_answers(200, pcma);
    assert!(w.run_until(Duration::from_secs(5), |w| w.uac.got(Method::Invite, 200)));
    let answer = String::from_utf8(w.uac.answer_sdp.clone().unwrap()).unwrap();
    assert!(answer.contains("RTP/AVP 0"), "A is answered with its own PCMU: {answer}");
    let (_, spec, _, _) = only_session(&w);
    assert_ne!(spec.flags & session_flags::TRANSCODE, 0);
    assert_eq!((spec.legs[0].codecs()[0].codec, spec.legs[1].codecs()[0].codec), (codec::PCMU, codec::PCMA));
}

#[test]
fn dtmf_type_none_turns_dtmf_interworking_off_for_the_calls_sessions() {
    let mut w = World::with_media(56);
    w.switch.set_dialplan(bridge_1001_after_setting("dtmf_type=none"));
    w.register_callee();
    w.call("1001");
    assert!(w.run_until(Duration::from_secs(5), |w| w.callee_invite().is_some()));
    let (_, spec, _, _) = only_session(&w);
    assert_ne!(spec.flags & session_flags::NO_DTMF, 0);
    // Without the variable, interworking stays on.
    let mut w = World::with_media(57);
    w.register_callee();
    w.call("1001");
    assert!(w.run_until(Duration::from_secs(5), |w| w.callee_invite().is_some()));
    assert_eq!(only_session(&w).1.flags & session_flags::NO_DTMF, 0);
}

#[test]
fn a_callee_answering_a_codec_nothing_transcodes_is_hung_up_and_the_caller_gets_488() {
    let mut w = World::with_media(55);
    w.register_callee();
    w.call("1001");
    assert!(w.run_until(Duration::from_secs(5), |w| w.callee_invite().is_some()));
    // A offered PCMU; B answers GSM (early media, then the 200).
    let gsm = b"v=0\r\no=b 2 2 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 42000 RTP/AVP 3\r\n";
    w.callee_answers(183, gsm);
    w.callee_answers(200, gsm);
    // B's 2xx is acknowledged, then B is hung up (the network may deliver them in either order).
    assert!(w.run_until(Duration::from_secs(5), |w| w.uac.final_status(Method::Invite) == Some(488)
        && w.uas.requests.contains(&Method::Bye)
        && w.uas.requests.contains(&Method::Ack)));
    assert!(!w.uac.statuses.contains(&(Method::Invite, 183)), "B's GSM early media never reaches A");
    assert!(w.uac.answer_sdp.is_none(), "A was never answered with a codec it did not offer");
    assert!(w.run_until(Duration::from_secs(5), |w| media(w).sessions.is_empty()));
    let mut causes = w.cdr_causes();
    causes.sort();
    assert_eq!(causes, ["INCOMPATIBLE_DESTINATION", "INCOMPATIBLE_DESTINATION"]);
}

#[test]
fn after_a_failed_bridge_continue_on_fail_answers_at_the_media_planes_port_not_the_callers_own() {
    let mut w = World::with_media(53);
    let plan = default_context(
        r#"<extension name="busy"><condition field="destination_number" expression="^(1001)$">
        <action application="set" data="continue_on_fail=true"/>
        <action application="bridge" data="user/$1"/>
        <action application="answer"/>
        <action application="sleep" data="60000"/></condition></extension>"#,
    );
    w.switch.set_dialplan(plan);
    w.register_callee();
    w.call("1001");
    assert!(w.run_until(Duration::from_secs(5), |w| w.callee_invite().is_some()));
    w.callee_answers(486, b"");
    assert!(w.run_until(Duration::from_secs(5), |w| w.uac.got(Method::Invite, 200)));
    let answer = w.uac.answer_sdp.clone().unwrap();
    assert_ne!(media_addr(&answer), addr("127.0.0.1:40000"), "never the caller's own address");
    let (_, spec, leg_a, _) = only_session(&w);
    assert_eq!(media_addr(&answer), leg_a, "the new session's port");
    assert_eq!(spec.legs[0].remote.addr(), Some(addr("127.0.0.1:40000")));
    assert_eq!(media(&w).destroyed.len(), 1, "the failed bridge's session is gone");
}

#[test]
fn an_offer_naming_the_media_planes_own_port_is_refused_with_488() {
    let mut w = World::with_media(54);
    w.register_callee();
    // 127.0.0.1:20000 is the media plane's own address and range: a loop.
    w.call_offering(
        "1001",
        b"v=0\r\no=a 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 20000 RTP/AVP 0\r\n",
    );
    assert!(w.run_until(Duration::from_secs(5), |w| w.uac.final_status(Method::Invite) == Some(488)));
    assert!(w.callee_invite().is_none() && media(&w).sessions.is_empty());
    // In a bridged call, a re-INVITE that names it is refused too, and nothing moves.
    let mut w = bridged_with_media(55);
    let (id, before, _, _) = only_session(&w);
    let now = w.now;
    let looped =
        b"v=0\r\no=a 1 2 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 30000 RTP/AVP 0\r\n";
    w.uac.in_dialog_with(now, "INVITE", 5, looped);
    assert!(w.run_until(Duration::from_secs(5), |w| w.uac.statuses.contains(&(Method::Invite, 488))));
    assert_eq!(media(&w).sessions[&id], before);
}

#[test]
fn an_sdp_with_more_m_lines_than_the_cap_is_refused_with_488_before_any_session() {
    let mut w = World::with_media(56);
    w.register_callee();
    let streams: String = (0..17).map(|i| format!("m=audio {} RTP/AVP 0\r\n", 40000 + 2 * i)).collect();
    let sdp = format!("v=0\r\no=a 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n{streams}");
    w.call_offering("1001", sdp.as_bytes());
    assert!(w.run_until(Duration::from_secs(5), |w| w.uac.final_status(Method::Invite) == Some(488)));
    assert!(w.callee_invite().is_none() && media(&w).sessions.is_empty());
}

impl World {
    /// `ua` (the caller's or the callee's phone) registers `user` with `contact`.
    fn register_as(&mut self, callee_side: bool, user: &str, contact: &str) {
        let now = self.now;
        let ua = if callee_side { &mut self.uas } else { &mut self.uac };
        let (old_user, old_cseq) = (std::mem::replace(&mut ua.user, user.into()), ua.cseq);
        ua.contact = Some(contact.into());
        let to = format!("<sip:{user}@127.0.0.1>");
        ua.send(
            now,
            "REGISTER",
            "sip:127.0.0.1",
            &to,
            &format!("reg-{user}-{contact}"),
            &[("Expires", "3600".into())],
            b"",
        );
        let got = |w: &World| {
            let ua = if callee_side { &w.uas } else { &w.uac };
            ua.got(Method::Register, 200)
        };
        assert!(self.run_until(Duration::from_secs(20), got), "{user} registered with {contact}");
        let ua = if callee_side { &mut self.uas } else { &mut self.uac };
        (ua.user, ua.contact, ua.auth_tries, ua.cseq) = (old_user, None, 0, old_cseq);
        ua.statuses.clear();
    }
}

#[test]
fn a_phone_registered_by_a_third_party_is_reached_at_its_contact() {
    let mut w = World::new(57, 0.0);
    // The caller's host registers 1001 for the phone at 127.0.0.1:5080 (a provisioning
    // server's REGISTER): requests for 1001 go to that Contact, not to the REGISTER's source.
    w.register_as(false, "1001", "<sip:1001@127.0.0.1:5080>");
    w.call("1001");
    assert!(w.run_until(Duration::from_secs(5), |w| w.callee_invite().is_some()), "{:?}", w.uac.requests);
    assert!(!w.uac.requests.contains(&Method::Invite), "not sent back to the registering host");
    w.callee_answers(200, SDP_B);
    assert!(w.run_until(Duration::from_secs(5), |w| w.uac.got(Method::Invite, 200)));
}

#[test]
fn a_phone_behind_a_nat_is_reached_where_its_register_came_from() {
    let mut w = World::new(58, 0.0);
    // Its Contact names its private address; its REGISTER came from 127.0.0.1:5080.
    w.register_as(true, "1001", "<sip:1001@192.168.1.20:5060>");
    w.call("1001");
    assert!(
        w.run_until(Duration::from_secs(5), |w| w.callee_invite().is_some()),
        "the INVITE reached the NAT's address"
    );
    assert_eq!(w.callee_invite().unwrap().request_uri_bytes(), b"sip:1001@192.168.1.20:5060");
}

/// A `bridge` whose dial string does not parse fails the bridge at once: the caller gets
/// 484 (INVALID_NUMBER_FORMAT), or, with `continue_on_fail`, the next application runs.
/// (The call used to wait forever in CS_EXECUTE.)
#[test]
fn a_bridge_with_a_dial_string_that_does_not_parse_fails_at_once() {
    for (go_on, code) in [(false, 484), (true, 200)] {
        let mut w = World::new(61, 0.0);
        let plan = default_context(&format!(
            r#"<extension name="bad"><condition field="destination_number" expression="^1001$">
            <action application="set" data="continue_on_fail={go_on}"/>
            <action application="bridge" data="user/1001,{{unclosed"/>
            <action application="answer"/>
            <action application="sleep" data="60000"/></condition></extension>"#
        ));
        w.switch.set_dialplan(plan);
        w.call("1001");
        assert!(w.run_until(Duration::from_secs(5), |w| w.uac.got(Method::Invite, code)), "continue_on_fail={go_on}");
    }
}

/// Every channel event of a call, as (leg, event, channel state, call state, answer state).
fn event_trace(w: &mut World, a_uuid: &str) -> Vec<String> {
    std::iter::from_fn(|| w.switch.poll_event())
        .filter_map(|e| match e {
            control_plane::switch::SwitchEvent::Channel(c) => Some(*c),
            _ => None,
        })
        .map(|e| {
            let leg = if e.channel.uuid == a_uuid { "A" } else { "B" };
            let c = &e.channel;
            format!("{leg} {} {} {} {}", e.name.as_str(), c.state, c.call_state, c.answer_state)
        })
        .collect()
}

/// The channel events of a call bridged to a registered user who answers and then hangs
/// up, in FreeSWITCH's order for each leg (its mod_event_socket's CHANNEL_* events).
#[test]
fn a_bridged_call_emits_freeswitchs_channel_events_in_order() {
    let mut w = World::new(62, 0.0);
    w.switch.set_events(true);
    w.register_callee();
    w.call("1001");
    assert!(w.run_until(Duration::from_secs(5), |w| w.callee_invite().is_some()));
    w.callee_answers(200, SDP_B);
    assert!(w.run_until(Duration::from_secs(5), |w| w.uas.requests.contains(&Method::Ack)));
    w.callee_hangs_up(1);
    assert!(w.run_until(Duration::from_secs(5), |w| w.switch.calls() == 0));
    let first = loop {
        match w.switch.poll_event().expect("events") {
            control_plane::switch::SwitchEvent::Channel(c) => break *c,
            _ => continue,
        }
    };
    let a_uuid = first.channel.uuid.clone();
    let mut trace = vec![format!("A {} {}", first.name.as_str(), first.channel.state)];
    trace.extend(event_trace(&mut w, &a_uuid));
    // The dialplan's applications before the bridge (each set runs and completes).
    let apps = trace.iter().filter(|t| t.starts_with("A CHANNEL_EXECUTE ")).count();
    assert!(apps >= 1, "{trace:#?}");
    let mut want = vec![
        "A CHANNEL_STATE CS_INIT",
        "A CHANNEL_CREATE CS_INIT DOWN ringing",
        "A CHANNEL_CALLSTATE CS_ROUTING RINGING ringing",
        "A CHANNEL_STATE CS_ROUTING RINGING ringing",
        "A CHANNEL_STATE CS_EXECUTE RINGING ringing",
    ];
    for _ in 1..apps {
        want.extend([
            "A CHANNEL_EXECUTE CS_EXECUTE RINGING ringing",
            "A CHANNEL_EXECUTE_COMPLETE CS_EXECUTE RINGING ringing",
        ]);
    }
    want.extend([
        // bridge
        "A CHANNEL_EXECUTE CS_EXECUTE RINGING ringing",
        "B CHANNEL_OUTGOING CS_NEW DOWN ringing",
        "B CHANNEL_STATE CS_INIT DOWN ringing",
        "B CHANNEL_CREATE CS_INIT DOWN ringing",
        "B CHANNEL_ORIGINATE CS_INIT DOWN ringing",
        "B CHANNEL_STATE CS_ROUTING DOWN ringing",
        "B CHANNEL_STATE CS_CONSUME_MEDIA DOWN ringing",
        "B CHANNEL_ANSWER CS_CONSUME_MEDIA DOWN answered",
        "B CHANNEL_CALLSTATE CS_CONSUME_MEDIA ACTIVE answered",
        "A CHANNEL_ANSWER CS_EXECUTE RINGING answered",
        "A CHANNEL_CALLSTATE CS_EXECUTE ACTIVE answered",
        "A CHANNEL_BRIDGE CS_EXECUTE ACTIVE answered",
        "B CHANNEL_STATE CS_EXCHANGE_MEDIA ACTIVE answered",
        // B hangs up
        "B CHANNEL_HANGUP CS_EXCHANGE_MEDIA ACTIVE hangup",
        "B CHANNEL_STATE CS_HANGUP ACTIVE hangup",
        "B CHANNEL_CALLSTATE CS_HANGUP HANGUP hangup",
        "B CHANNEL_STATE CS_REPORTING HANGUP hangup",
        "B CHANNEL_HANGUP_COMPLETE CS_REPORTING HANGUP hangup",
        "B CHANNEL_DESTROY CS_REPORTING HANGUP hangup",
        "B CHANNEL_STATE CS_DESTROY HANGUP hangup",
        "A CHANNEL_UNBRIDGE CS_EXECUTE ACTIVE answered",
        "A CHANNEL_EXECUTE_COMPLETE CS_EXECUTE ACTIVE answered",
        "A CHANNEL_HANGUP CS_EXECUTE ACTIVE hangup",
        "A CHANNEL_STATE CS_HANGUP ACTIVE hangup",
        "A CHANNEL_CALLSTATE CS_HANGUP HANGUP hangup",
        "A CHANNEL_STATE CS_REPORTING HANGUP hangup",
        "A CHANNEL_HANGUP_COMPLETE CS_REPORTING HANGUP hangup",
        "A CHANNEL_DESTROY CS_REPORTING HANGUP hangup",
        "A CHANNEL_STATE CS_DESTROY HANGUP hangup",
    ]);
    assert_eq!(trace, want);
}

/// Without a listener no event is made.
#[test]
fn no_channel_event_is_made_while_nobody_listens() {
    let mut w = bridged_call(63);
    assert!(w.switch.poll_event().is_none());
}

/// The channel events of `originate user/1001 &echo`: one outbound channel, in
/// FreeSWITCH's order (CHANNEL_OUTGOING again on answer, as its user endpoint does), the
/// API answered `+OK <uuid>` only once the phone answers; without a media plane the ACK
/// answers the phone's offer with itself (its media comes back, as echo does).
#[test]
fn an_originate_runs_freeswitchs_channel_states_and_answers_the_api_on_answer() {
    let mut w = World::new(64, 0.0);
    w.switch.set_events(true);
    w.register_callee();
    let now = w.now;
    let job = w.switch.start_originate(now, "{origination_caller_id_number=4242}user/1001 &echo").unwrap();
    assert!(w.run_until(Duration::from_secs(5), |w| w.callee_invite().is_some()));
    let invite = w.callee_invite().unwrap().clone();
    assert!(invite.body().is_empty(), "no media plane: a late offer");
    assert!(String::from_utf8_lossy(invite.header(HeaderName::From).unwrap()).contains("<sip:4242@"));
    w.callee_answers(180, b"");
    w.run_until(Duration::from_millis(500), |_| false);
    assert_eq!(w.switch.poll_originated(), None, "not before the answer");
    w.callee_answers(200, SDP_B);
    assert!(w.run_until(Duration::from_secs(5), |w| w.uas.requests.contains(&Method::Ack)));
    let ack = w.uas.received.iter().find(|m| m.method() == Method::Ack).unwrap();
    assert_eq!(ack.body(), SDP_B, "the ACK answers with the phone's own offer");
    let (got, text) = w.switch.poll_originated().expect("the API's answer");
    assert_eq!(got, job);
    let uuid = text.strip_prefix("+OK ").and_then(|t| t.strip_suffix('\n')).expect("+OK <uuid>").to_string();
    w.callee_hangs_up(1);
    assert!(w.run_until(Duration::from_secs(5), |w| w.switch.calls() == 0));
    let trace: Vec<String> = event_trace(&mut w, &uuid).into_iter().filter(|t| !t.starts_with("B ")).collect();
    let want = [
        "A CHANNEL_OUTGOING CS_NEW DOWN ringing",
        "A CHANNEL_STATE CS_INIT DOWN ringing",
        "A CHANNEL_CREATE CS_INIT DOWN ringing",
        "A CHANNEL_ORIGINATE CS_INIT DOWN ringing",
        "A CHANNEL_STATE CS_ROUTING DOWN ringing",
        "A CHANNEL_STATE CS_CONSUME_MEDIA DOWN ringing",
        "A CHANNEL_PROGRESS CS_CONSUME_MEDIA DOWN ringing",
        "A CHANNEL_CALLSTATE CS_CONSUME_MEDIA RINGING ringing",
        "A CHANNEL_ANSWER CS_CONSUME_MEDIA RINGING answered",
        "A CHANNEL_CALLSTATE CS_CONSUME_MEDIA ACTIVE answered",
        "A CHANNEL_OUTGOING CS_CONSUME_MEDIA ACTIVE answered",
        "A CHANNEL_STATE CS_EXECUTE ACTIVE answered",
        "A CHANNEL_EXECUTE CS_EXECUTE ACTIVE answered",
        "A CHANNEL_HANGUP CS_EXECUTE ACTIVE hangup",
        "A CHANNEL_EXECUTE_COMPLETE CS_HANGUP ACTIVE hangup",
        "A CHANNEL_STATE CS_HANGUP ACTIVE hangup",
        "A CHANNEL_CALLSTATE CS_HANGUP HANGUP hangup",
        "A CHANNEL_STATE CS_REPORTING HANGUP hangup",
        "A CHANNEL_HANGUP_COMPLETE CS_REPORTING HANGUP hangup",
        "A CHANNEL_DESTROY CS_REPORTING HANGUP hangup",
        "A CHANNEL_STATE CS_DESTROY HANGUP hangup",
    ];
    assert_eq!(trace, want);
    // Its CDR says outbound.
    let cdr = w.writes.iter().find_map(|x| match x {
        Write::InsertCdr(c) if c.uuid == uuid => Some(c.clone()),
        _ => None,
    });
    assert_eq!(cdr.expect("a CDR").direction, Direction::Outbound);
}

/// An originate the phone refuses answers the API with the cause; one to a user who is
/// not registered, or who does not exist, answers at once; one nobody answers is
/// cancelled at its timeout with NO_ANSWER.
#[test]
fn an_originate_that_fails_answers_the_api_with_freeswitchs_cause() {
    let mut w = World::new(65, 0.0);
    let now = w.now;
    assert_eq!(w.switch.start_originate(now, "user/1001 &echo"), Err("-ERR USER_NOT_REGISTERED\n".into()));
    assert_eq!(w.switch.start_originate(now, "user/7777 &echo"), Err("-ERR SUBSCRIBER_ABSENT\n".into()));
    assert!(w.switch.start_originate(now, "user/1001").unwrap_err().starts_with("-USAGE: "));
    w.register_callee();
    let now = w.now;
    let job = w.switch.start_originate(now, "user/1001 9196 XML default").unwrap();
    assert!(w.run_until(Duration::from_secs(5), |w| w.callee_invite().is_some()));
    w.callee_answers(486, b"");
    assert!(w.run_until(Duration::from_secs(5), |w| w.switch.calls() == 0));
    assert_eq!(w.switch.poll_originated(), Some((job, "-ERR USER_BUSY\n".into())));

    let mut w = World::new(66, 0.0);
    w.register_callee();
    let now = w.now;
    let job = w.switch.start_originate(now, "user/1001 &park() XML default '' '' 3").unwrap();
    assert!(w.run_until(Duration::from_secs(2), |w| w.callee_invite().is_some()));
    w.callee_answers(180, b"");
    assert!(w.run_until(Duration::from_secs(10), |w| w.uas.requests.contains(&Method::Cancel)));
    assert!(w.run_until(Duration::from_secs(5), |w| w.switch.calls() == 0));
    assert_eq!(w.switch.poll_originated(), Some((job, "-ERR NO_ANSWER\n".into())));
}

/// With the media plane, the originated leg is offered the media plane's port (the
/// switch's own offer), its answer becomes leg A's peer, `echo` loops it, and
/// `&bridge(...)` from it offers the second phone what the first chose.
#[test]
fn an_originate_with_the_media_plane_offers_its_ports_and_echoes() {
    let mut w = World::with_media(67);
    w.register_callee();
    let now = w.now;
    w.switch.start_originate(now, "user/1001 &echo").unwrap();
    assert!(w.run_until(Duration::from_secs(5), |w| w.callee_invite().is_some()));
    let offer = w.callee_invite().unwrap().body().to_vec();
    assert_eq!(media_addr(&offer), addr("127.0.0.1:30000"), "leg A's port");
    w.callee_answers(200, SDP_B);
    assert!(w.run_until(Duration::from_secs(5), |w| w.uas.requests.contains(&Method::Ack)));
    let media = w.media.as_ref().unwrap();
    let (_, spec) = media.sessions.iter().next().expect("a session");
    assert_eq!(spec.legs[0].remote.addr(), Some(addr("127.0.0.1:42000")), "the phone's answer is leg A's peer");
    assert_ne!(spec.flags & session_flags::ECHO, 0, "echo loops it");
    let ack = w.uas.received.iter().find(|m| m.method() == Method::Ack).unwrap();
    assert!(ack.body().is_empty(), "the offer was the switch's: the ACK has no SDP");
}
