//! The NG server's sans-IO core: datagrams, finished jobs, media timeouts and the clock
//! in; answers to send and jobs to run out.
//!
//! A request that needs the media plane becomes a [`Job`], run by the driver as its own
//! task, so many calls are set up at once; requests for one Call-ID run one after the
//! other, in arrival order. A retransmitted request (same cookie within [`COOKIE_TTL`])
//! is never redone: it gets the first answer, or, while that is still being worked out,
//! the answer when it is ready.
//!
//! Calls end without a `delete` too, as rtpengine's do: a media session without RTP for
//! the call's `timeout` (its `silent-timeout` while a stream is on hold) is reported by
//! the media plane ([`Ng::handle_media_timeout`]), and a call older than its
//! `final-timeout` is due on the clock ([`Ng::poll_timeout`], [`Ng::handle_timeout`]);
//! either way the core runs a delete of its own, whose answer goes nowhere. An NG
//! client address holds at most [`Settings::max_calls_per_source`] calls.
//!
//! Driver order: feed [`Ng::handle_datagram`], [`Ng::handle_done`],
//! [`Ng::handle_media_timeout`] and, when [`Ng::poll_timeout`]'s instant has come,
//! [`Ng::handle_timeout`]; after each, drain [`Ng::poll_output`], then ask
//! [`Ng::poll_timeout`] again.

use std::collections::{BTreeSet, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use ferroswitch_shared::msg::SessionSpec;
use tracing::{info, warn};

use super::bencode::Value;
use super::codecs::CodecFlags;
use super::command::{self, Request};
use crate::media::rewrite::OwnMedia;
use crate::sdp::Media;
use crate::FastMap;

/// How long an answer is kept for a retransmitted request.
pub const COOKIE_TTL: Duration = Duration::from_secs(30);

/// How the NG side runs calls (`[ng]` in the config; an offer may override the timeouts).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// The media plane's address and port range (peers there are refused).
    pub own: OwnMedia,
    /// Seconds without RTP on a stream before its call is deleted (rtpengine's `timeout`;
    /// 0: never).
    pub timeout_secs: u32,
    /// The same while a stream is on hold (rtpengine's `silent-timeout`; 0: never).
    pub silent_timeout_secs: u32,
    /// Seconds after its first offer a call is deleted whatever it does (rtpengine's
    /// `final-timeout`; 0: never).
    pub final_timeout_secs: u32,
    /// Calls one NG client address may hold (offers beyond are refused).
    pub max_calls_per_source: usize,
    /// m= lines an offer or answer may have (`sip.max_sdp_media`).
    pub max_media: usize,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            own: OwnMedia { ip: IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), ports: (16384, 32767) },
            timeout_secs: 60,
            silent_timeout_secs: 3600,
            final_timeout_secs: 0,
            max_calls_per_source: 2000,
            max_media: 16,
        }
    }
}

/// One call (Call-ID) the NG side knows.
#[derive(Debug, Clone)]
pub struct Call {
    pub(super) from_tag: String,
    pub(super) to_tag: Option<String>,
    /// Per m-line: its media session and the spec the media plane confirmed (None:
    /// rejected).
    pub(super) sessions: Vec<Option<(u64, SessionSpec)>>,
    pub(super) created: SystemTime,
    /// The NG client that offered it.
    pub(super) source: IpAddr,
    /// Its final timeout in seconds (0: none), the offer's or the configured one.
    pub(super) final_timeout_secs: u32,
    /// When that is due (set once the core holds the call).
    pub(super) final_at: Option<Instant>,
    /// The last offer's sections as the offerer may send them (stripped codecs gone) and
    /// its codec instructions, for mapping the answer back.
    pub(super) offered: Option<Box<(Vec<Media>, CodecFlags)>>,
}

/// A request that needs the media plane, with the state of its call when it starts.
#[derive(Debug)]
pub struct Job {
    pub(super) cookie: Vec<u8>,
    pub(super) call_id: String,
    pub(super) req: Request,
    pub(super) call: Option<Call>,
    /// Where the request came from.
    pub(super) source: IpAddr,
    pub(super) settings: Settings,
    /// The request offers a call not held yet: it counts against its source until done.
    pub(super) new_call: bool,
}

/// What a finished [`Job`] answers and does to its call.
#[derive(Debug)]
pub struct Done {
    pub(super) cookie: Vec<u8>,
    pub(super) call_id: String,
    pub(super) answer: Vec<u8>,
    pub(super) outcome: Outcome,
    pub(super) source: IpAddr,
    pub(super) new_call: bool,
}

/// What a finished job does to its call.
#[derive(Debug)]
pub(super) enum Outcome {
    Keep,
    Set(Call),
    Remove,
}

/// What the core asks of its driver.
#[derive(Debug)]
pub enum Output {
    /// Send an answer (shared with the cookie cache).
    Send(SocketAddr, Arc<[u8]>),
    /// Run a job ([`Job::run`]) and hand its result to [`Ng::handle_done`].
    Run(Box<Job>),
}

/// A cookie seen within [`COOKIE_TTL`].
enum Cookie {
    /// Its job runs; these addresses (the first copy's, and any retransmission's) get the
    /// answer.
    Pending(SocketAddr, Vec<SocketAddr>),
    /// Answered with this (held at its exact size: the cache keeps every answer for
    /// [`COOKIE_TTL`], and at set-up rates its growth is most of what the server allocates).
    Answered(Arc<[u8]>),
}

/// The NG server's state, sans-IO.
#[derive(Default)]
pub struct Ng {
    settings: Settings,
    pub(super) calls: FastMap<String, Call>,
    /// Call-IDs with a job running, and the requests waiting behind it (with where each
    /// came from).
    pub(super) busy: FastMap<String, VecDeque<(Vec<u8>, Request, SocketAddr)>>,
    cookies: FastMap<Vec<u8>, Cookie>,
    /// Answers, oldest first, to forget their cookies after [`COOKIE_TTL`]. An answer
    /// starts with its cookie and a space.
    pub(super) expiry: VecDeque<(Instant, Arc<[u8]>)>,
    out: VecDeque<Output>,
    /// Calls per NG client address: those held, and offers of new ones still running.
    per_source: FastMap<IpAddr, usize>,
    /// Media session → its call, for RTP timeouts.
    by_session: FastMap<u64, String>,
    /// Final timeouts, earliest first.
    deadlines: BTreeSet<(Instant, String)>,
}

impl Ng {
    /// A core running calls by `settings`.
    pub fn new(settings: Settings) -> Ng {
        Ng { settings, ..Ng::default() }
    }

    /// A datagram from `from` at `now`.
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddr, datagram: &[u8]) {
        self.expire(now);
        let (cookie, dict) = match command::split(datagram) {
            Ok(x) => x,
            Err(why) => {
                let cookie = datagram.split(|&c| c == b' ').next().unwrap_or_default();
                warn!(%why, %from, "NG request refused");
                self.out.push_back(Output::Send(from, command::error(cookie, &why).into()));
                return;
            }
        };
        match self.cookies.get_mut(cookie) {
            Some(Cookie::Answered(answer)) => {
                self.out.push_back(Output::Send(from, answer.clone()));
                return;
            }
            Some(Cookie::Pending(_, more)) => {
                more.push(from);
                return;
            }
            None => {}
        }
        let cookie = cookie.to_vec();
        let req = match command::parse(&dict) {
            Ok(req) => req,
            Err(why) => {
                let answer = command::error(&cookie, &why);
                return self.answered(now, cookie, [from], answer);
            }
        };
        let call_id = match &req {
            Request::Ping => return self.answered(now, cookie.clone(), [from], command::pong(&cookie)),
            Request::List { limit } => {
                let mut ids: Vec<&String> = self.calls.keys().collect();
                ids.sort();
                let calls = ids.into_iter().take(*limit).map(|c| Value::str(c)).collect();
                let answer = command::ok(&cookie, vec![("calls", Value::List(calls))]);
                return self.answered(now, cookie, [from], answer);
            }
            Request::Offer(o) | Request::Answer(o) => o.call_id.clone(),
            Request::Delete { call_id } | Request::Query { call_id } => call_id.clone(),
        };
        self.cookies.insert(cookie.clone(), Cookie::Pending(from, Vec::new()));
        self.enqueue(now, call_id, cookie, req, from);
    }

    /// No RTP on media session `session` for its timeout: its call is deleted.
    pub fn handle_media_timeout(&mut self, now: Instant, session: u64) {
        let Some(call_id) = self.by_session.get(&session).cloned() else { return };
        info!(%call_id, session, "NG call deleted: no media for its timeout");
        self.delete_internally(now, call_id);
    }

    /// When [`Ng::handle_timeout`] is next due (a final timeout, or a cached answer to
    /// forget).
    pub fn poll_timeout(&self) -> Option<Instant> {
        let deadline = self.deadlines.first().map(|(t, _)| *t);
        let cookie = self.expiry.front().map(|(t, _)| *t + COOKIE_TTL);
        deadline.into_iter().chain(cookie).min()
    }

    /// The clock reached `now`: calls past their final timeout are deleted, old answers
    /// forgotten.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.expire(now);
        while let Some((t, _)) = self.deadlines.first() {
            if *t > now {
                break;
            }
            let (_, call_id) = self.deadlines.pop_first().expect("first exists");
            info!(%call_id, "NG call deleted: final timeout");
            self.delete_internally(now, call_id);
        }
    }

    /// A job's result at `now`: its answer goes out, its call changes, and the next
    /// request for the call starts.
    pub fn handle_done(&mut self, now: Instant, done: Done) {
        self.expire(now);
        let kept = matches!(done.outcome, Outcome::Set(_));
        match done.outcome {
            Outcome::Keep => {}
            Outcome::Set(call) => self.hold(now, done.call_id.clone(), call),
            Outcome::Remove => self.forget(&done.call_id),
        }
        if done.new_call && !kept {
            self.uncount(done.source);
        }
        self.reply(now, done.cookie, done.answer);
        self.advance(now, done.call_id);
    }

    /// The next thing for the driver to do.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    /// Runs `req` now, or after the Call-ID's running request.
    fn enqueue(&mut self, now: Instant, call_id: String, cookie: Vec<u8>, req: Request, from: SocketAddr) {
        match self.busy.get_mut(&call_id) {
            Some(queue) => queue.push_back((cookie, req, from)),
            None => {
                self.busy.insert(call_id.clone(), VecDeque::new());
                if !self.start(now, cookie, call_id.clone(), req, from) {
                    self.advance(now, call_id);
                }
            }
        }
    }

    /// The Call-ID's running request is done: the next one waiting starts (those answered
    /// at once, in a loop rather than by recursion).
    fn advance(&mut self, now: Instant, call_id: String) {
        loop {
            let Some((cookie, req, from)) = self.busy.get_mut(&call_id).and_then(VecDeque::pop_front) else {
                self.busy.remove(&call_id);
                return;
            };
            if self.start(now, cookie, call_id.clone(), req, from) {
                return;
            }
        }
    }

    /// The answer to the request with `cookie` goes to every address that sent it (none
    /// for the core's own requests).
    fn reply(&mut self, now: Instant, cookie: Vec<u8>, answer: Vec<u8>) {
        if cookie.is_empty() {
            return;
        }
        let (first, more) = match self.cookies.remove(&cookie) {
            Some(Cookie::Pending(first, more)) => (Some(first), more),
            _ => (None, Vec::new()),
        };
        self.answered(now, cookie, first.into_iter().chain(more), answer);
    }

    /// A delete of the core's own (no cookie: its answer goes nowhere).
    fn delete_internally(&mut self, now: Instant, call_id: String) {
        let from = SocketAddr::new(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), 0);
        self.enqueue(now, call_id.clone(), Vec::new(), Request::Delete { call_id }, from);
    }

    /// Starts `req` as a job (true), or answers it at once (false: refused, or nothing
    /// left to do).
    fn start(&mut self, now: Instant, cookie: Vec<u8>, call_id: String, req: Request, from: SocketAddr) -> bool {
        let call = self.calls.get(&call_id).cloned();
        if cookie.is_empty() && call.is_none() {
            return false; // the core's own delete of a call deleted meanwhile
        }
        let new_call = call.is_none() && matches!(req, Request::Offer(_));
        let source = from.ip();
        if new_call {
            let held = self.per_source.get(&source).copied().unwrap_or(0);
            if held >= self.settings.max_calls_per_source {
                warn!(%call_id, %source, held, "NG offer refused: too many calls from this source");
                let why = format!("too many calls from {source} ({held}; ng.max_calls_per_source)");
                let answer = command::error(&cookie, &why);
                self.reply(now, cookie, answer);
                return false;
            }
            *self.per_source.entry(source).or_insert(0) += 1;
        }
        let job = Job { cookie, call_id, req, call, source, settings: self.settings, new_call };
        self.out.push_back(Output::Run(Box::new(job)));
        true
    }

    /// Holds `call` (new, or changed by an answer or re-offer): its sessions are indexed
    /// for timeouts, a new call's final timeout is set.
    fn hold(&mut self, now: Instant, call_id: String, mut call: Call) {
        let old = self.calls.get(&call_id);
        let new = old.is_none();
        for (id, _) in old.into_iter().flat_map(|c| c.sessions.iter().flatten()) {
            self.by_session.remove(id);
        }
        for (id, _) in call.sessions.iter().flatten() {
            self.by_session.insert(*id, call_id.clone());
        }
        if new && call.final_timeout_secs > 0 {
            let at = now + Duration::from_secs(u64::from(call.final_timeout_secs));
            self.deadlines.insert((at, call_id.clone()));
            call.final_at = Some(at);
        }
        self.calls.insert(call_id, call);
    }

    /// Forgets a deleted call.
    fn forget(&mut self, call_id: &str) {
        let Some(call) = self.calls.remove(call_id) else { return };
        for (id, _) in call.sessions.iter().flatten() {
            self.by_session.remove(id);
        }
        if let Some(at) = call.final_at {
            self.deadlines.remove(&(at, call_id.to_string()));
        }
        self.uncount(call.source);
    }

    fn uncount(&mut self, source: IpAddr) {
        if let Some(n) = self.per_source.get_mut(&source) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.per_source.remove(&source);
            }
        }
    }

    fn answered(&mut self, now: Instant, cookie: Vec<u8>, to: impl IntoIterator<Item = SocketAddr>, answer: Vec<u8>) {
        debug_assert!(answer.starts_with(&cookie) && answer.get(cookie.len()) == Some(&b' '));
        let answer: Arc<[u8]> = answer.into();
        for addr in to {
            self.out.push_back(Output::Send(addr, answer.clone()));
        }
        self.expiry.push_back((now, answer.clone()));
        self.cookies.insert(cookie, Cookie::Answered(answer));
    }

    fn expire(&mut self, now: Instant) {
        while let Some((t, _)) = self.expiry.front() {
            if now.duration_since(*t) < COOKIE_TTL {
                break;
            }
            let (_, answer) = self.expiry.pop_front().expect("front exists");
            let cookie = answer.split(|&c| c == b' ').next().unwrap_or_default();
            // A cookie reused after it expired is pending, or answered anew: keep that one.
            if matches!(self.cookies.get(cookie), Some(Cookie::Answered(a)) if Arc::ptr_eq(a, &answer)) {
                self.cookies.remove(cookie);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offer(cookie: &str, call_id: &str) -> Vec<u8> {
        format!("{cookie} d7:command5:offer7:call-id{}:{call_id}8:from-tag1:f3:sdp3:v=0e", call_id.len()).into_bytes()
    }

    fn answer(cookie: &str, call_id: &str) -> Vec<u8> {
        format!("{cookie} d7:command6:answer7:call-id{}:{call_id}8:from-tag1:f6:to-tag1:t3:sdp3:v=0e", call_id.len())
            .into_bytes()
    }

    fn drain(ng: &mut Ng) -> Vec<Output> {
        std::iter::from_fn(|| ng.poll_output()).collect()
    }

    /// The jobs among `out`, as (cookie, Call-ID, whether the call existed when it started).
    fn jobs(out: &[Output]) -> Vec<(String, String, bool)> {
        out.iter()
            .filter_map(|o| match o {
                Output::Run(j) => {
                    Some((String::from_utf8_lossy(&j.cookie).into_owned(), j.call_id.clone(), j.call.is_some()))
                }
                Output::Send(..) => None,
            })
            .collect()
    }

    fn sends(out: &[Output]) -> Vec<(SocketAddr, Vec<u8>)> {
        out.iter()
            .filter_map(|o| match o {
                Output::Send(to, a) => Some((*to, a.to_vec())),
                Output::Run(_) => None,
            })
            .collect()
    }

    fn done(cookie: &str, call_id: &str, outcome: Outcome) -> Done {
        Done {
            cookie: cookie.as_bytes().to_vec(),
            call_id: call_id.to_string(),
            answer: format!("{cookie} d6:result2:oke").into_bytes(),
            outcome,
            source: FROM.ip(),
            new_call: false,
        }
    }

    const FROM: SocketAddr = SocketAddr::new(IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 5000);

    fn call() -> Call {
        call_with(&[])
    }

    fn call_with(sessions: &[u64]) -> Call {
        Call {
            from_tag: "f".into(),
            to_tag: None,
            sessions: sessions.iter().map(|&id| Some((id, SessionSpec::default()))).collect(),
            created: SystemTime::UNIX_EPOCH,
            source: FROM.ip(),
            final_timeout_secs: 0,
            offered: None,
            final_at: None,
        }
    }

    /// Runs the job `out` holds to the outcome `outcome` (its own answer).
    fn finish(ng: &mut Ng, now: Instant, out: &[Output], outcome: Outcome) {
        let Some(Output::Run(j)) = out.iter().find(|o| matches!(o, Output::Run(_))) else { panic!("no job") };
        let answer = if j.cookie.is_empty() { Vec::new() } else { [&j.cookie[..], b" d6:result2:oke"].concat() };
        let done = Done {
            cookie: j.cookie.clone(),
            call_id: j.call_id.clone(),
            answer,
            outcome,
            source: j.source,
            new_call: j.new_call,
        };
        ng.handle_done(now, done);
    }

    fn delete_jobs(out: &[Output]) -> Vec<String> {
        out.iter()
            .filter_map(|o| match o {
                Output::Run(j) if j.cookie.is_empty() && matches!(j.req, Request::Delete { .. }) => {
                    Some(j.call_id.clone())
                }
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_call_without_rtp_for_its_timeout_is_deleted_by_the_core_and_its_answer_goes_nowhere() {
        let (mut ng, t0) = (Ng::default(), Instant::now());
        ng.handle_datagram(t0, FROM, &offer("c1", "x"));
        let out = drain(&mut ng);
        finish(&mut ng, t0, &out, Outcome::Set(call_with(&[41, 42])));
        drain(&mut ng);
        // The media plane reports session 42 silent: the call is deleted.
        ng.handle_media_timeout(t0, 42);
        let out = drain(&mut ng);
        assert_eq!(delete_jobs(&out), ["x"]);
        finish(&mut ng, t0, &out, Outcome::Remove);
        assert!(drain(&mut ng).is_empty(), "nobody is answered");
        assert!(ng.calls.is_empty() && ng.by_session.is_empty() && ng.per_source.is_empty());
        // A late report for a call already gone does nothing.
        ng.handle_media_timeout(t0, 41);
        assert!(drain(&mut ng).is_empty());
    }

    #[test]
    fn a_call_past_its_final_timeout_is_deleted_on_the_clock() {
        let settings = Settings { final_timeout_secs: 10, ..Settings::default() };
        let (mut ng, t0) = (Ng::new(settings), Instant::now());
        ng.handle_datagram(t0, FROM, &offer("c1", "x"));
        let out = drain(&mut ng);
        let Some(Output::Run(j)) = out.first() else { panic!("no job") };
        assert_eq!(j.settings.final_timeout_secs, 10);
        finish(&mut ng, t0, &out, Outcome::Set(Call { final_timeout_secs: 10, ..call_with(&[7]) }));
        drain(&mut ng);
        assert_eq!(ng.poll_timeout(), Some(t0 + Duration::from_secs(10)));
        ng.handle_timeout(t0 + Duration::from_secs(9));
        assert!(delete_jobs(&drain(&mut ng)).is_empty());
        ng.handle_timeout(t0 + Duration::from_secs(10));
        assert_eq!(delete_jobs(&drain(&mut ng)), ["x"]);
    }

    #[test]
    fn a_source_may_hold_only_so_many_calls_and_a_delete_frees_one() {
        let settings = Settings { max_calls_per_source: 2, ..Settings::default() };
        let (mut ng, t0) = (Ng::new(settings), Instant::now());
        let other: SocketAddr = "127.0.0.2:5000".parse().unwrap();
        // Two offers run (counted while they run), the third is refused at once.
        for (c, id) in [("c1", "x"), ("c2", "y"), ("c3", "z")] {
            ng.handle_datagram(t0, FROM, &offer(c, id));
        }
        let out = drain(&mut ng);
        assert_eq!(jobs(&out).len(), 2);
        let refused = String::from_utf8(sends(&out)[0].1.clone()).unwrap();
        assert!(refused.starts_with("c3 ") && refused.contains("too many calls from 127.0.0.1"), "{refused}");
        // Another source is not affected.
        ng.handle_datagram(t0, other, &offer("c4", "w"));
        assert_eq!(jobs(&drain(&mut ng)).len(), 1);
        // A failed offer frees its place; a re-offer of a held call needs none.
        for o in out.iter().filter(|o| matches!(o, Output::Run(_))) {
            let Output::Run(j) = o else { continue };
            let outcome = if j.call_id == "x" { Outcome::Set(call()) } else { Outcome::Keep };
            let done = Done {
                cookie: j.cookie.clone(),
                call_id: j.call_id.clone(),
                answer: [&j.cookie[..], b" d6:result2:oke"].concat(),
                outcome,
                source: j.source,
                new_call: j.new_call,
            };
            ng.handle_done(t0, done);
        }
        drain(&mut ng);
        ng.handle_datagram(t0, FROM, &offer("c5", "x"));
        ng.handle_datagram(t0, FROM, &offer("c6", "v"));
        let out = drain(&mut ng);
        assert_eq!(jobs(&out).len(), 2, "{:?}", sends(&out));
        ng.handle_datagram(t0, FROM, &offer("c7", "u"));
        assert_eq!(jobs(&drain(&mut ng)).len(), 0, "x and v hold both places");
    }

    #[test]
    fn a_retransmission_while_the_request_runs_is_not_redone_and_gets_the_answer_when_it_is_ready() {
        let (mut ng, t0) = (Ng::default(), Instant::now());
        let (a, b): (SocketAddr, SocketAddr) = ("127.0.0.1:5000".parse().unwrap(), "127.0.0.1:5001".parse().unwrap());
        ng.handle_datagram(t0, a, &offer("c1", "x"));
        assert_eq!(jobs(&drain(&mut ng)), vec![("c1".into(), "x".into(), false)]);
        ng.handle_datagram(t0, a, &offer("c1", "x"));
        ng.handle_datagram(t0, b, &offer("c1", "x"));
        assert!(drain(&mut ng).is_empty(), "copies of a running request wait for its answer");
        ng.handle_done(t0, done("c1", "x", Outcome::Set(call())));
        let answer = b"c1 d6:result2:oke".to_vec();
        let out = drain(&mut ng);
        assert_eq!(sends(&out), vec![(a, answer.clone()), (a, answer.clone()), (b, answer.clone())]);
        assert!(jobs(&out).is_empty());
        ng.handle_datagram(t0 + Duration::from_secs(29), b, &offer("c1", "x"));
        let out = drain(&mut ng);
        assert_eq!((sends(&out), jobs(&out)), (vec![(b, answer)], vec![]), "answered from the cache");
    }

    #[test]
    fn requests_for_one_call_run_in_arrival_order_while_other_calls_run_at_once() {
        let (mut ng, t0) = (Ng::default(), Instant::now());
        let from: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        ng.handle_datagram(t0, from, &offer("c1", "x"));
        ng.handle_datagram(t0, from, &answer("c2", "x"));
        ng.handle_datagram(t0, from, &offer("c3", "y"));
        let out = drain(&mut ng);
        assert_eq!(jobs(&out), vec![("c1".into(), "x".into(), false), ("c3".into(), "y".into(), false)]);
        // The answer starts when the offer is done, and sees the call the offer made.
        ng.handle_done(t0, done("c1", "x", Outcome::Set(call())));
        let out = drain(&mut ng);
        assert_eq!(sends(&out).len(), 1);
        assert_eq!(jobs(&out), vec![("c2".into(), "x".into(), true)]);
        ng.handle_done(t0, done("c2", "x", Outcome::Remove));
        assert!(jobs(&drain(&mut ng)).is_empty());
        assert!(ng.calls.is_empty() && !ng.busy.contains_key("x"));
        assert!(ng.busy.contains_key("y"));
    }

    #[test]
    fn an_answer_is_forgotten_after_the_cookie_ttl_and_the_same_cookie_runs_again() {
        let (mut ng, t0) = (Ng::default(), Instant::now());
        let from: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        ng.handle_datagram(t0, from, &offer("c1", "x"));
        drain(&mut ng);
        ng.handle_done(t0, done("c1", "x", Outcome::Keep));
        drain(&mut ng);
        ng.handle_datagram(t0 + COOKIE_TTL, from, &offer("c1", "x"));
        assert_eq!(jobs(&drain(&mut ng)), vec![("c1".into(), "x".into(), false)]);
        assert_eq!(ng.expiry.len(), 0);
    }

    #[test]
    fn ping_list_and_bad_requests_are_answered_at_once() {
        let (mut ng, t0) = (Ng::default(), Instant::now());
        let from: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        ng.handle_datagram(t0, from, b"p d7:command4:pinge");
        ng.handle_datagram(t0, from, b"l d7:command4:liste");
        ng.handle_datagram(t0, from, b"e d7:command4:ropee");
        let got: Vec<String> =
            sends(&drain(&mut ng)).into_iter().map(|(_, a)| String::from_utf8_lossy(&a).into_owned()).collect();
        assert_eq!(
            got,
            vec![
                "p d6:result4:ponge",
                "l d6:result2:ok5:callslee",
                "e d6:result5:error12:error-reason22:unknown command \"rope\"e"
            ]
        );
    }
}
