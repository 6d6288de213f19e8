//! The NG listener: one UDP socket, its requests answered concurrently through the media
//! supervisor. Offers create a media session per active m-line and return the SDP
//! rewritten to the media plane's address and ports; answers complete it; `delete`,
//! `query`, `list`, `ping` as rtpengine has them.
//!
//! [`Ng`] is the sans-IO core: datagrams and finished jobs in, answers to send and jobs to
//! run out. A request that needs the media plane becomes a [`Job`], run as its own task,
//! so many calls are set up at once; requests for one Call-ID run one after the other, in
//! arrival order. A retransmitted request (same cookie within [`COOKIE_TTL`]) is never
//! redone: it gets the first answer, or, while that is still being worked out, the answer
//! when it is ready.

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use ferroswitch_media_plane::epoll::{RecvBatch, SendBatch};
use ferroswitch_shared::msg::{media_kind, Endpoint, LegSpec, SessionSpec, StreamStats};
use std::os::fd::AsRawFd;
use tokio::io::Interest;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, watch};
use tracing::{debug, info, warn};

use super::bencode::Value;
use super::command::{self, OfferAnswer, Request};
use crate::media::rewrite::{finish, leg_from, rewrite};
use crate::media::MediaHandle;
use crate::sdp::{Connection, Sdp};
use crate::FastMap;

/// How long an answer is kept for a retransmitted request.
pub const COOKIE_TTL: Duration = Duration::from_secs(30);
/// How long a request waits for the media plane.
const MEDIA_WAIT: Duration = Duration::from_secs(3);
/// Datagrams read with one `recvmmsg`.
const RECV_BATCH: usize = 16;
/// `recvmmsg` calls in one go before the finished jobs get their turn.
const RECV_ROUNDS: usize = 4;
/// Answers sent with one `sendmmsg`.
const SEND_BATCH: usize = 64;
/// The largest datagram (an IPv4 UDP payload is at most 65,507 bytes).
const MAX_DATAGRAM: usize = 65536;

/// One call (Call-ID) the NG side knows.
#[derive(Debug, Clone)]
pub struct Call {
    from_tag: String,
    to_tag: Option<String>,
    /// Per m-line: its media session and the spec the media plane confirmed (None:
    /// rejected).
    sessions: Vec<Option<(u64, SessionSpec)>>,
    created: SystemTime,
}

/// A request that needs the media plane, with the state of its call when it starts.
#[derive(Debug)]
pub struct Job {
    cookie: Vec<u8>,
    call_id: String,
    req: Request,
    call: Option<Call>,
}

/// What a finished [`Job`] answers and does to its call.
#[derive(Debug)]
pub struct Done {
    cookie: Vec<u8>,
    call_id: String,
    answer: Vec<u8>,
    outcome: Outcome,
}

/// What a finished job does to its call.
#[derive(Debug)]
enum Outcome {
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
    calls: FastMap<String, Call>,
    /// Call-IDs with a job running, and the requests waiting behind it.
    busy: FastMap<String, VecDeque<(Vec<u8>, Request)>>,
    cookies: FastMap<Vec<u8>, Cookie>,
    /// Answers, oldest first, to forget their cookies after [`COOKIE_TTL`]. An answer
    /// starts with its cookie and a space.
    expiry: VecDeque<(Instant, Arc<[u8]>)>,
    out: VecDeque<Output>,
}

impl Ng {
    /// A datagram from `from` at `now`.
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddr, datagram: &[u8]) {
        self.expire(now);
        let (cookie, dict) = match command::split(datagram) {
            Ok(x) => x,
            Err(why) => {
                let cookie = datagram.split(|&c| c == b' ').next().unwrap_or_default();
                warn!(%why, "NG request refused");
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
        match self.busy.get_mut(&call_id) {
            Some(queue) => queue.push_back((cookie, req)),
            None => {
                self.busy.insert(call_id.clone(), VecDeque::new());
                self.start(cookie, call_id, req);
            }
        }
    }

    /// A job's result at `now`: its answer goes out, its call changes, and the next
    /// request for the call starts.
    pub fn handle_done(&mut self, now: Instant, done: Done) {
        self.expire(now);
        match done.outcome {
            Outcome::Keep => {}
            Outcome::Set(call) => {
                self.calls.insert(done.call_id.clone(), call);
            }
            Outcome::Remove => {
                self.calls.remove(&done.call_id);
            }
        }
        let (first, more) = match self.cookies.remove(&done.cookie) {
            Some(Cookie::Pending(first, more)) => (Some(first), more),
            _ => (None, Vec::new()),
        };
        self.answered(now, done.cookie, first.into_iter().chain(more), done.answer);
        let next = self.busy.get_mut(&done.call_id).and_then(VecDeque::pop_front);
        match next {
            Some((cookie, req)) => self.start(cookie, done.call_id, req),
            None => {
                self.busy.remove(&done.call_id);
            }
        }
    }

    /// The next thing for the driver to do.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    fn start(&mut self, cookie: Vec<u8>, call_id: String, req: Request) {
        let call = self.calls.get(&call_id).cloned();
        self.out.push_back(Output::Run(Box::new(Job { cookie, call_id, req, call })));
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

/// Serves NG requests on `socket` until `shutdown` turns true. Datagrams come in with
/// `recvmmsg` and answers go out with `sendmmsg`, a burst of each per system call.
pub async fn serve(socket: UdpSocket, media: MediaHandle, media_ip: IpAddr, mut shutdown: watch::Receiver<bool>) {
    let mut ng = Ng::default();
    let (done_tx, mut done_rx) = mpsc::unbounded_channel();
    let fd = socket.as_raw_fd();
    let mut inbox = RecvBatch::with_sizes(RECV_BATCH, MAX_DATAGRAM);
    let mut outbox = SendBatch::new(SEND_BATCH);
    let mut answers: Vec<(SocketAddr, Arc<[u8]>)> = Vec::new();
    loop {
        tokio::select! {
            r = socket.readable() => {
                if let Err(e) = r {
                    warn!(error = %e, "NG socket failed");
                    return;
                }
                for _ in 0..RECV_ROUNDS {
                    match socket.try_io(Interest::READABLE, || inbox.try_recv(fd)) {
                        Ok(n) => {
                            let now = Instant::now();
                            for i in 0..n {
                                if let Some((datagram, from, _)) = inbox.get(i) {
                                    ng.handle_datagram(now, from, datagram);
                                }
                            }
                            if n < RECV_BATCH {
                                break;
                            }
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                        Err(e) => {
                            warn!(error = %e, "NG receive error");
                            break;
                        }
                    }
                }
            }
            Some(done) = done_rx.recv() => {
                ng.handle_done(Instant::now(), done);
                while let Ok(done) = done_rx.try_recv() {
                    ng.handle_done(Instant::now(), done);
                }
            }
            _ = shutdown.changed() => return,
        }
        while let Some(out) = ng.poll_output() {
            match out {
                Output::Send(to, answer) => answers.push((to, answer)),
                Output::Run(job) => {
                    let (media, done_tx) = (media.clone(), done_tx.clone());
                    tokio::spawn(async move {
                        let _ = done_tx.send(job.run(&media, media_ip).await);
                    });
                }
            }
        }
        send_all(&socket, &mut outbox, &answers).await;
        answers.clear();
    }
}

/// Sends every answer, a batch per `sendmmsg`, waiting while the socket's buffer is full;
/// an answer the kernel refuses is logged and skipped.
async fn send_all(socket: &UdpSocket, outbox: &mut SendBatch, answers: &[(SocketAddr, Arc<[u8]>)]) {
    let fd = socket.as_raw_fd();
    let mut at = 0;
    while at < answers.len() {
        match socket.try_io(Interest::WRITABLE, || outbox.send(fd, &answers[at..])) {
            Ok(n) => at += n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if socket.writable().await.is_err() {
                    return;
                }
            }
            Err(e) => {
                debug!(to = %answers[at].0, error = %e, "NG answer not sent");
                at += 1;
            }
        }
    }
}

impl Job {
    /// Runs the request against the media plane.
    pub async fn run(self, media: &MediaHandle, media_ip: IpAddr) -> Done {
        let Job { cookie, call_id, req, call } = self;
        let (answer, outcome) = match execute(&cookie, req, call, media, media_ip).await {
            Ok(x) => x,
            Err(why) => {
                warn!(%call_id, %why, "NG request failed");
                (command::error(&cookie, &why), Outcome::Keep)
            }
        };
        Done { cookie, call_id, answer, outcome }
    }
}

async fn execute(
    cookie: &[u8],
    req: Request,
    call: Option<Call>,
    media: &MediaHandle,
    media_ip: IpAddr,
) -> Result<(Vec<u8>, Outcome), String> {
    let unknown = |call_id: &str| format!("unknown call-id {call_id:?}");
    match req {
        Request::Offer(o) => offer(cookie, o, call, media, media_ip).await,
        Request::Answer(a) => {
            let call = call.ok_or_else(|| unknown(&a.call_id))?;
            answer(cookie, a, call, media, media_ip).await
        }
        Request::Delete { call_id } => {
            let call = call.ok_or_else(|| unknown(&call_id))?;
            let mut total = StreamStats::default();
            for (id, _) in call.sessions.iter().flatten() {
                if let Some(s) = media.destroy_confirmed(*id).await {
                    add(&mut total, &s);
                }
            }
            info!(%call_id, "NG delete");
            Ok((command::ok(cookie, totals(&total, call.created)), Outcome::Remove))
        }
        Request::Query { call_id } => {
            let call = call.ok_or_else(|| unknown(&call_id))?;
            let mut total = StreamStats::default();
            let mut streams = Vec::with_capacity(call.sessions.len());
            for (i, s) in call.sessions.iter().enumerate() {
                let Some((id, spec)) = s else { continue };
                let stats = media.stats(*id).await.unwrap_or_default();
                add(&mut total, &stats);
                streams.push((i, *spec, stats));
            }
            let mut fields = totals(&total, call.created);
            let mut tags =
                vec![(call.from_tag.as_str(), monologue(&call.from_tag, call.to_tag.as_deref(), 0, &streams))];
            if let Some(t) = &call.to_tag {
                tags.push((t.as_str(), monologue(t, Some(&call.from_tag), 1, &streams)));
            }
            fields.push(("tags", Value::dict(tags)));
            Ok((command::ok(cookie, fields), Outcome::Keep))
        }
        Request::Ping | Request::List { .. } => unreachable!("answered without a job"),
    }
}

async fn offer(
    cookie: &[u8],
    o: OfferAnswer,
    call: Option<Call>,
    media: &MediaHandle,
    media_ip: IpAddr,
) -> Result<(Vec<u8>, Outcome), String> {
    let mut sdp = Sdp::parse(&o.sdp).map_err(|e| e.to_string())?;
    let existing = call.as_ref().map(|c| c.sessions.as_slice()).unwrap_or_default();
    let mut sessions = Vec::with_capacity(sdp.media.len());
    for i in 0..sdp.media.len() {
        let m = &sdp.media[i];
        if m.is_rejected() {
            sessions.push(None);
            continue;
        }
        let ip = command::peer_ip(sdp.connection_for(i).and_then(Connection::ip), &o);
        let a = leg_from(m, command::usable(ip, m.port), media_ip, &o.flags, true);
        let b = LegSpec { remote: Endpoint::default(), ..leg_from(m, None, media_ip, &o.flags, false) };
        let spec = SessionSpec { legs: [a, b], rtp_timeout_secs: 60, flags: 0 };
        let prior = existing.get(i).copied().flatten().map(|(id, _)| id);
        let confirmed = match prior {
            Some(id) => tokio::time::timeout(MEDIA_WAIT, media.update_confirmed(id, spec)).await,
            None => tokio::time::timeout(MEDIA_WAIT, media.create_confirmed(spec)).await,
        };
        let (id, held) = confirmed.map_err(|_| "the media plane did not answer in time".to_string())??;
        rewrite(&mut sdp, i, &held.legs[1].local, &o.flags);
        sessions.push(Some((id, held)));
    }
    finish(&mut sdp, media_ip, &o.flags);
    info!(call_id = %o.call_id, streams = sessions.len(), "NG offer");
    let created = call.map_or_else(SystemTime::now, |c| c.created);
    let call = Call { from_tag: o.from_tag, to_tag: None, sessions, created };
    Ok((command::ok(cookie, vec![("sdp", Value::Bytes(sdp.write().into_bytes()))]), Outcome::Set(call)))
}

async fn answer(
    cookie: &[u8],
    a: OfferAnswer,
    mut call: Call,
    media: &MediaHandle,
    media_ip: IpAddr,
) -> Result<(Vec<u8>, Outcome), String> {
    let mut sdp = Sdp::parse(&a.sdp).map_err(|e| e.to_string())?;
    call.to_tag = a.to_tag.clone();
    for i in 0..sdp.media.len() {
        let Some(Some((id, mut spec))) = call.sessions.get(i).copied() else { continue };
        let m = &sdp.media[i];
        let ip = command::peer_ip(sdp.connection_for(i).and_then(Connection::ip), &a);
        let b = leg_from(m, command::usable(ip, m.port), media_ip, &a.flags, true);
        spec.legs[1] = LegSpec { local: spec.legs[1].local, ..b };
        let (_, held) = tokio::time::timeout(MEDIA_WAIT, media.update_confirmed(id, spec))
            .await
            .map_err(|_| "the media plane did not answer in time".to_string())??;
        rewrite(&mut sdp, i, &held.legs[0].local, &a.flags);
        call.sessions[i] = Some((id, held));
    }
    finish(&mut sdp, media_ip, &a.flags);
    info!(call_id = %a.call_id, "NG answer");
    Ok((command::ok(cookie, vec![("sdp", Value::Bytes(sdp.write().into_bytes()))]), Outcome::Set(call)))
}

fn add(total: &mut StreamStats, s: &StreamStats) {
    for (t, l) in total.legs.iter_mut().zip(&s.legs) {
        t.packets += l.packets;
        t.bytes += l.bytes;
        t.lost += l.lost;
        t.dropped += l.dropped;
    }
}

/// One side of a call as rtpengine's `query` has it under `tags`: its tag, the tag it talks
/// to, and per m-line (`index` counts from 1) the media plane's port for it (`local port`),
/// its peer (`endpoint`) and what the peer sent (`stats`). `leg` 0 is the from-tag's side.
fn monologue(tag: &str, other: Option<&str>, leg: usize, streams: &[(usize, SessionSpec, StreamStats)]) -> Value {
    let medias = streams
        .iter()
        .map(|(i, spec, stats)| {
            let l = &spec.legs[leg];
            let s = &stats.legs[leg];
            let mut stream = vec![
                ("local port", Value::Int(i64::from(l.local.port))),
                (
                    "stats",
                    Value::dict([
                        ("packets", Value::Int(s.packets as i64)),
                        ("bytes", Value::Int(s.bytes as i64)),
                        ("errors", Value::Int(s.dropped as i64)),
                    ]),
                ),
            ];
            if let Some(a) = l.remote.addr() {
                let family = if a.is_ipv4() { "IPv4" } else { "IPv6" };
                stream.push((
                    "endpoint",
                    Value::dict([
                        ("family", Value::str(family)),
                        ("address", Value::str(&a.ip().to_string())),
                        ("port", Value::Int(i64::from(a.port()))),
                    ]),
                ));
            }
            let kind = if l.media == media_kind::VIDEO { "video" } else { "audio" };
            Value::dict([
                ("index", Value::Int(*i as i64 + 1)),
                ("type", Value::str(kind)),
                ("streams", Value::List(vec![Value::dict(stream)])),
            ])
        })
        .collect();
    let mut fields = vec![("tag", Value::str(tag))];
    if let Some(o) = other {
        fields.push(("in dialogue with", Value::str(o)));
    }
    fields.push(("medias", Value::List(medias)));
    Value::dict(fields)
}

/// `created` and `totals` as `query` and `delete` return them.
fn totals(s: &StreamStats, created: SystemTime) -> Vec<(&'static str, Value)> {
    let packets: u64 = s.legs.iter().map(|l| l.packets).sum();
    let bytes: u64 = s.legs.iter().map(|l| l.bytes).sum();
    let errors: u64 = s.legs.iter().map(|l| l.dropped).sum();
    let created = created.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
    let rtp = Value::dict([
        ("packets", Value::Int(packets as i64)),
        ("bytes", Value::Int(bytes as i64)),
        ("errors", Value::Int(errors as i64)),
    ]);
    vec![("created", Value::Int(created)), ("totals", Value::dict([("RTP", rtp)]))]
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
        }
    }

    fn call() -> Call {
        Call { from_tag: "f".into(), to_tag: None, sessions: Vec::new(), created: SystemTime::UNIX_EPOCH }
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
