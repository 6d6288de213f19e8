//! The driver around [`MediaLink`]: finds or starts the media-plane process, attaches to
//! it over its Unix socket, moves commands and events between the link and the rings,
//! and restarts the media plane when it exits or its heartbeat stalls.
//!
//! One tokio task owns everything. Its loop: push the link's commands into the rings
//! (ringing a core's doorbell only if that core sleeps), drain the event rings into the
//! link, hand the link's events to whoever asked, then announce it is going to sleep and
//! wait for a request, an event doorbell, the socket, the child's exit or the heartbeat
//! tick.
//!
//! Modes: with [`SupervisorOptions::spawn`] set, the supervisor attaches to a media plane
//! already answering on the socket (one that outlived a previous control plane) or else
//! starts one (`ferroswitch media --config FILE`), and restarts it when it dies. Without
//! it the supervisor only attaches, and re-attaches when the media plane comes back.

use std::collections::HashMap;
use std::ffi::OsString;
use std::io::Write;
use std::os::unix::net::UnixStream as StdUnixStream;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::task::Poll;
use std::time::{Duration, Instant};

use ferroswitch_media_plane::server::{BYE, HELLO, REFUSED, WELCOME, WELCOME_LEN};
use ferroswitch_shared::doorbell::Doorbell;
use ferroswitch_shared::fdpass;
use ferroswitch_shared::layout::LAYOUT_HASH;
use ferroswitch_shared::msg::{SessionSpec, StreamStats};
use ferroswitch_shared::segment::{ControlEnds, Segment};
use tokio::io::unix::AsyncFd;
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{error, info, warn};

use super::link::{Desired, HeldSession, LinkEvent, LinkStats, MediaLink};

/// Requests applied in one pass of the attached loop, beyond the one that woke it.
const REQUEST_BATCH: usize = 255;

/// How to start the media plane when none answers.
#[derive(Debug, Clone)]
pub struct SpawnSpec {
    /// The program (normally this `ferroswitch` binary).
    pub program: PathBuf,
    /// Its arguments (normally `media --config FILE`).
    pub args: Vec<OsString>,
}

/// The supervisor's configuration.
#[derive(Debug, Clone)]
pub struct SupervisorOptions {
    /// The media plane's socket.
    pub socket: PathBuf,
    /// Start (and restart) the media plane; `None`: only attach to one run separately.
    pub spawn: Option<SpawnSpec>,
    /// Cores the link expects until a media plane says how many it has.
    pub cores: u16,
    /// A media plane whose heartbeat does not move for this long is restarted.
    pub heartbeat_timeout: Duration,
    /// The first session id (see [`MediaLink::new`]).
    pub first_id: u64,
    /// How long a starting media plane may take to answer on its socket.
    pub start_timeout: Duration,
}

/// What the supervisor reports (also as `GET /media/status`).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct MediaState {
    /// A media plane is attached.
    pub attached: bool,
    /// Attached and reconciled.
    pub ready: bool,
    /// The attached media plane's pid.
    pub media_pid: Option<u32>,
    /// Attachments so far.
    pub attachments: u64,
    /// Media planes this supervisor started (the first included).
    pub spawned: u64,
    /// Sessions the control plane holds.
    pub sessions: usize,
    /// The link's counters.
    pub stats: LinkStats,
    /// Another control plane took the media plane over; this one stopped attaching.
    pub superseded: bool,
    /// Why the last attachment ended, if one did.
    pub last_loss: Option<String>,
    /// Each media core's latest counters, and when they came (a core that stops
    /// reporting is stuck: its heartbeat ages).
    #[serde(skip)]
    pub workers: std::collections::BTreeMap<u16, (ferroswitch_shared::msg::WorkerCounters, Instant)>,
}

/// The answer to a create or update that waits for the media plane.
pub type Confirmed = Result<(u64, SessionSpec), String>;

enum Request {
    Create(SessionSpec, oneshot::Sender<u64>),
    CreateConfirmed(SessionSpec, oneshot::Sender<Confirmed>),
    UpdateConfirmed(u64, SessionSpec, oneshot::Sender<Confirmed>),
    DestroyConfirmed(u64, oneshot::Sender<Option<StreamStats>>),
    Stats(u64, oneshot::Sender<Option<StreamStats>>),
    Update(u64, SessionSpec),
    Destroy(u64, oneshot::Sender<bool>),
    Sessions(oneshot::Sender<Vec<(u64, Desired)>>),
    Query(oneshot::Sender<Vec<HeldSession>>),
    Stop(oneshot::Sender<()>),
    Subscribe(mpsc::UnboundedSender<MediaNotice>),
}

/// What the media plane reports on its own about a session, for [`MediaHandle::subscribe`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaNotice {
    /// No RTP for the session's `rtp_timeout_secs`.
    RtpTimeout { id: u64 },
    /// An RFC 4733 telephone-event ended on leg `leg` (0: A, 1: B): its digit and how long
    /// it lasted, in timestamp units.
    Dtmf { id: u64, leg: u8, digit: char, duration: u32 },
}

/// The digit of an RFC 4733 event code (0-9, *, #, A-D), as FreeSWITCH writes it.
pub fn dtmf_digit(event: u8) -> Option<char> {
    b"0123456789*#ABCD".get(usize::from(event)).map(|&c| char::from(c))
}

/// The switch's handle on the media plane. Cheap to clone.
#[derive(Clone)]
pub struct MediaHandle {
    tx: mpsc::UnboundedSender<Request>,
    state: watch::Receiver<MediaState>,
}

impl MediaHandle {
    /// Creates a session; its id (the media plane's answer follows asynchronously).
    pub async fn create(&self, spec: SessionSpec) -> Option<u64> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(Request::Create(spec, tx)).ok()?;
        rx.await.ok()
    }

    /// Creates a session and waits until the media plane holds it: its id and the spec
    /// with the local ports filled in, or why it failed.
    pub async fn create_confirmed(&self, spec: SessionSpec) -> Confirmed {
        let (tx, rx) = oneshot::channel();
        self.tx.send(Request::CreateConfirmed(spec, tx)).map_err(|_| "the media supervisor stopped".to_string())?;
        rx.await.unwrap_or_else(|_| Err("the media supervisor stopped".into()))
    }

    /// Replaces a session's spec and waits for the media plane to apply it.
    pub async fn update_confirmed(&self, id: u64, spec: SessionSpec) -> Confirmed {
        let (tx, rx) = oneshot::channel();
        self.tx.send(Request::UpdateConfirmed(id, spec, tx)).map_err(|_| "the media supervisor stopped".to_string())?;
        rx.await.unwrap_or_else(|_| Err("the media supervisor stopped".into()))
    }

    /// Destroys a session and waits for its final counters (None: no such session).
    pub async fn destroy_confirmed(&self, id: u64) -> Option<StreamStats> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(Request::DestroyConfirmed(id, tx)).ok()?;
        rx.await.ok().flatten()
    }

    /// A session's latest counters (from the periodic reports; None before the first).
    pub async fn stats(&self, id: u64) -> Option<StreamStats> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(Request::Stats(id, tx)).ok()?;
        rx.await.ok().flatten()
    }

    /// Replaces a session's spec.
    pub fn update(&self, id: u64, spec: SessionSpec) {
        let _ = self.tx.send(Request::Update(id, spec));
    }

    /// Destroys a session; false if the control plane did not hold it.
    pub async fn destroy(&self, id: u64) -> bool {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Request::Destroy(id, tx)).is_err() {
            return false;
        }
        rx.await.unwrap_or(false)
    }

    /// The sessions the control plane holds, by id.
    pub async fn sessions(&self) -> Vec<(u64, Desired)> {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Request::Sessions(tx)).is_err() {
            return Vec::new();
        }
        let mut v = rx.await.unwrap_or_default();
        v.sort_by_key(|s| s.0);
        v
    }

    /// What the media plane holds, asked of every core: (id, core, generation, spec).
    /// Waits for an attached media plane; `None` if the supervisor stopped.
    pub async fn query_media(&self) -> Option<Vec<HeldSession>> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(Request::Query(tx)).ok()?;
        rx.await.ok()
    }

    /// The sessions' notices (RTP timeouts), from now on.
    pub fn subscribe(&self) -> mpsc::UnboundedReceiver<MediaNotice> {
        let (tx, rx) = mpsc::unbounded_channel();
        let _ = self.tx.send(Request::Subscribe(tx));
        rx
    }

    /// The current state.
    pub fn state(&self) -> MediaState {
        self.state.borrow().clone()
    }

    /// Waits until `f` holds for the state (or the supervisor stops).
    pub async fn wait_for(&self, f: impl Fn(&MediaState) -> bool) -> MediaState {
        let mut rx = self.state.clone();
        let got = rx.wait_for(|s| f(s)).await.map(|s| s.clone());
        got.unwrap_or_else(|_| self.state())
    }

    /// Stops the supervisor. A media plane it started is stopped too (SIGTERM): this is
    /// the orderly end. (A control plane that dies leaves its media plane running.)
    pub async fn stop(&self) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Request::Stop(tx)).is_ok() {
            let _ = rx.await;
        }
    }
}

/// Starts the supervisor task on the current tokio runtime.
pub fn start(opts: SupervisorOptions) -> MediaHandle {
    let (tx, rx) = mpsc::unbounded_channel();
    let (state_tx, state) = watch::channel(MediaState::default());
    tokio::spawn(Supervisor::new(opts, state_tx).run(rx));
    MediaHandle { tx, state }
}

/// One attachment: the segment's ends and the doorbells.
struct Attachment {
    stream: tokio::net::UnixStream,
    segment: Segment,
    ends: Vec<ControlEnds>,
    /// Per core: (command bell, event bell registered with tokio).
    bells: Vec<(Doorbell, AsyncFd<Doorbell>)>,
    pid: u32,
}

enum Loss {
    Stop(oneshot::Sender<()>),
    Closed,
    Superseded,
    ChildExited(String),
    Stalled,
}

struct Supervisor {
    opts: SupervisorOptions,
    link: MediaLink,
    state: watch::Sender<MediaState>,
    child: Option<tokio::process::Child>,
    queries: HashMap<u32, oneshot::Sender<Vec<HeldSession>>>,
    /// Queries asked while detached: sent at the next attachment.
    deferred_queries: Vec<oneshot::Sender<Vec<HeldSession>>>,
    full_logged: u64,
    /// Callers waiting for the media plane to confirm a session (create or update).
    confirm: HashMap<u64, Vec<oneshot::Sender<Confirmed>>>,
    /// Callers waiting for a session's final counters.
    destroyed: HashMap<u64, Vec<oneshot::Sender<Option<StreamStats>>>>,
    /// Each session's latest periodic counters.
    last_stats: HashMap<u64, StreamStats>,
    /// Who hears about RTP timeouts.
    subscribers: Vec<mpsc::UnboundedSender<MediaNotice>>,
    /// Media planes that died before attaching, in a row (backs restarts off).
    failed_starts: u32,
    /// No new media plane before this.
    next_spawn: Option<Instant>,
}

impl Supervisor {
    fn new(opts: SupervisorOptions, state: watch::Sender<MediaState>) -> Supervisor {
        let link = MediaLink::new(opts.cores, opts.first_id);
        Supervisor {
            opts,
            link,
            state,
            child: None,
            queries: HashMap::new(),
            deferred_queries: Vec::new(),
            full_logged: 0,
            failed_starts: 0,
            next_spawn: None,
            confirm: HashMap::new(),
            destroyed: HashMap::new(),
            last_stats: HashMap::new(),
            subscribers: Vec::new(),
        }
    }

    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Request>) {
        loop {
            let att = match self.connect(&mut rx).await {
                Ok(Some(a)) => a,
                Ok(None) => return, // stopped while connecting
                Err(stop) => {
                    self.finish(stop).await;
                    return;
                }
            };
            let loss = self.attached(att, &mut rx).await;
            self.link.detached();
            let why = match &loss {
                Loss::Stop(_) => "stopping".to_string(),
                Loss::Closed => "the media plane closed its socket".to_string(),
                Loss::Superseded => "another control plane attached to the media plane".to_string(),
                Loss::ChildExited(s) => format!("the media plane exited ({s})"),
                Loss::Stalled => format!("the media plane's heartbeat stalled for {:?}", self.opts.heartbeat_timeout),
            };
            self.state.send_modify(|s| {
                s.attached = false;
                s.ready = false;
                s.media_pid = None;
                s.last_loss = Some(why.clone());
            });
            match loss {
                Loss::Stop(done) => {
                    self.finish(done).await;
                    return;
                }
                Loss::Superseded => {
                    error!("{why}: this control plane no longer drives the media plane");
                    self.state.send_modify(|s| s.superseded = true);
                    // Keep answering requests (the link keeps its state) until stopped.
                    while let Some(r) = rx.recv().await {
                        if let Err(done) = self.request(r) {
                            self.finish(done).await;
                            return;
                        }
                    }
                    return;
                }
                Loss::Stalled => {
                    warn!("{why}: restarting it");
                    self.kill_child().await;
                }
                _ => warn!("{why}: restarting it"),
            }
        }
    }

    async fn finish(&mut self, done: oneshot::Sender<()>) {
        if let Some(mut c) = self.child.take() {
            if let Some(pid) = c.id() {
                // SAFETY: kill takes no pointers; pid is our child's.
                unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
            }
            let _ = tokio::time::timeout(Duration::from_secs(5), c.wait()).await;
        }
        let _ = done.send(());
    }

    async fn kill_child(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.start_kill();
            let _ = c.wait().await;
        }
    }

    /// Attaches to a media plane, starting one if configured and none answers. `Ok(None)`
    /// if the requests channel closed; `Err` if a stop was requested meanwhile.
    async fn connect(
        &mut self,
        rx: &mut mpsc::UnboundedReceiver<Request>,
    ) -> Result<Option<Attachment>, oneshot::Sender<()>> {
        let mut started_at: Option<Instant> = None;
        let mut backoff = Duration::from_millis(2);
        loop {
            // A child that died before it answered is restarted.
            if let Some(c) = self.child.as_mut() {
                if let Ok(Some(status)) = c.try_wait() {
                    // A media plane that keeps dying at start (a bad config, a port in use)
                    // is restarted ever more slowly: 20 ms, 40 ms, ... up to 5 s.
                    self.failed_starts += 1;
                    let wait = Duration::from_millis(10 << self.failed_starts.min(9)).min(Duration::from_secs(5));
                    warn!(%status, failed_starts = self.failed_starts, retry_in = ?wait, "the media plane exited before it attached");
                    self.next_spawn = Some(Instant::now() + wait);
                    self.child = None;
                    started_at = None;
                }
            }
            match handshake(self.opts.socket.clone()).await {
                Ok(att) => {
                    self.failed_starts = 0;
                    self.next_spawn = None;
                    return Ok(Some(att));
                }
                Err(HandshakeError::Refused(why)) => {
                    error!(socket = %self.opts.socket.display(), "media plane refused: {why}");
                }
                Err(HandshakeError::Unreachable(_)) if self.opts.spawn.is_some() => {
                    let stale = started_at.is_some_and(|t| t.elapsed() > self.opts.start_timeout);
                    if stale {
                        warn!("the media plane did not answer in {:?}; restarting it", self.opts.start_timeout);
                        self.kill_child().await;
                    }
                    if self.child.is_none() && self.next_spawn.is_none_or(|t| Instant::now() >= t) {
                        self.spawn_child();
                        started_at = Some(Instant::now());
                        backoff = Duration::from_millis(2);
                    }
                }
                Err(HandshakeError::Unreachable(e)) => {
                    if started_at.is_none() {
                        info!(socket = %self.opts.socket.display(), error = %e, "waiting for a media plane to attach to");
                        started_at = Some(Instant::now());
                    }
                }
            }
            // Wait a little, answering requests meanwhile.
            let sleep = tokio::time::sleep(backoff);
            tokio::pin!(sleep);
            loop {
                tokio::select! {
                    _ = &mut sleep => break,
                    r = rx.recv() => match r {
                        Some(r) => self.request(r)?,
                        None => return Ok(None),
                    },
                }
            }
            backoff = (backoff * 2).min(Duration::from_millis(100));
        }
    }

    fn spawn_child(&mut self) {
        let Some(spec) = &self.opts.spawn else { return };
        let mut cmd = tokio::process::Command::new(&spec.program);
        cmd.args(&spec.args).stdin(std::process::Stdio::null()).kill_on_drop(false);
        match cmd.spawn() {
            Ok(c) => {
                info!(pid = c.id(), "media plane started");
                self.child = Some(c);
                self.state.send_modify(|s| s.spawned += 1);
            }
            Err(e) => error!(program = %spec.program.display(), error = %e, "cannot start the media plane"),
        }
    }

    /// Serves one attachment until it is lost.
    async fn attached(&mut self, mut att: Attachment, rx: &mut mpsc::UnboundedReceiver<Request>) -> Loss {
        self.link.set_cores(att.ends.len() as u16);
        self.link.attached();
        for q in std::mem::take(&mut self.deferred_queries) {
            let seq = self.link.query();
            self.queries.insert(seq, q);
        }
        att.segment.header().control_pid.store(std::process::id(), Ordering::Relaxed);
        info!(pid = att.pid, cores = att.ends.len(), "attached to the media plane");
        self.state.send_modify(|s| {
            s.attached = true;
            s.media_pid = Some(att.pid);
            s.attachments += 1;
        });
        let mut beat = att.segment.header().media_heartbeat.load(Ordering::Acquire);
        let mut beat_seen = Instant::now();
        let mut tick = tokio::time::interval(self.opts.heartbeat_timeout / 4);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            // Move everything that is ready, then sleep.
            loop {
                let mut moved = self.pump(&mut att);
                moved |= self.deliver();
                if !moved {
                    break;
                }
            }
            let asleep = att.ends.iter_mut().all(|e| e.events.prepare_sleep());
            if !asleep {
                for e in &mut att.ends {
                    e.events.woke();
                }
                tokio::task::yield_now().await;
                continue;
            }
            let retry = self.link.queued() > 0;
            let bells = &att.bells;
            let any_bell = std::future::poll_fn(|cx| {
                for (_, evt) in bells {
                    if let Poll::Ready(Ok(mut g)) = evt.poll_read_ready(cx) {
                        g.get_inner().clear();
                        g.clear_ready();
                        return Poll::Ready(());
                    }
                }
                Poll::Pending
            });
            let child_exit = async {
                match self.child.as_mut() {
                    Some(c) => c.wait().await.map(|s| s.to_string()).unwrap_or_else(|e| e.to_string()),
                    None => std::future::pending().await,
                }
            };
            let loss = tokio::select! {
                r = rx.recv() => match r {
                    // Whatever else is queued goes in the same pass: one doorbell for a
                    // burst of requests (concurrent NG set-ups), not one each.
                    Some(r) => std::iter::once(r)
                        .chain(std::iter::from_fn(|| rx.try_recv().ok()).take(REQUEST_BATCH))
                        .find_map(|r| self.request(r).err().map(Loss::Stop)),
                    None => Some(Loss::Closed),
                },
                _ = any_bell => None,
                status = child_exit => Some(Loss::ChildExited(status)),
                r = att.stream.readable() => match r {
                    Ok(()) => socket_loss(&att.stream),
                    Err(_) => Some(Loss::Closed),
                },
                _ = tick.tick() => {
                    let now = att.segment.header().media_heartbeat.load(Ordering::Acquire);
                    att.segment.header().control_heartbeat.fetch_add(1, Ordering::Release);
                    if now != beat {
                        beat = now;
                        beat_seen = Instant::now();
                        None
                    } else if beat_seen.elapsed() >= self.opts.heartbeat_timeout {
                        Some(Loss::Stalled)
                    } else {
                        None
                    }
                }
                _ = tokio::time::sleep(Duration::from_millis(1)), if retry => None,
            };
            for e in &mut att.ends {
                e.events.woke();
            }
            if let Some(loss) = loss {
                if matches!(loss, Loss::ChildExited(_)) {
                    self.child = None;
                }
                return loss;
            }
        }
    }

    /// Commands into the rings, events out of them; true if anything moved.
    fn pump(&mut self, att: &mut Attachment) -> bool {
        let mut moved = false;
        for (core, ends) in att.ends.iter_mut().enumerate() {
            let mut pushed = false;
            while let Some(c) = self.link.next_command(core as u16) {
                if ends.commands.try_push(&c).is_err() {
                    self.link.unsend(c);
                    self.full_logged += 1;
                    if self.full_logged.is_power_of_two() {
                        warn!(
                            core,
                            waiting = self.link.queued(),
                            ring_full_total = self.link.stats().ring_full,
                            "media command ring full: commands wait (back-pressure)"
                        );
                    }
                    break;
                }
                pushed = true;
            }
            if pushed {
                moved = true;
                if ends.commands.consumer_sleeping() {
                    att.bells[core].0.ring();
                }
            }
            let link = &mut self.link;
            if ends.events.drain(256, |e| link.handle_event(e)) > 0 {
                moved = true;
            }
        }
        moved
    }

    /// The link's events to whoever waits for them; true if there were any.
    fn deliver(&mut self) -> bool {
        let mut any = false;
        while let Some(ev) = self.link.poll_event() {
            any = true;
            match ev {
                LinkEvent::QueryResult { seq, sessions } => {
                    if let Some(tx) = self.queries.remove(&seq) {
                        let _ = tx.send(sessions);
                    }
                }
                LinkEvent::Reconciled { replayed, adopted, kept } => {
                    info!(replayed, adopted, kept, "media plane reconciled");
                    self.state.send_modify(|s| s.ready = true);
                }
                LinkEvent::Failed { id, reason } => {
                    warn!(session = id, %reason, "media command failed");
                    for tx in self.confirm.remove(&id).unwrap_or_default() {
                        let _ = tx.send(Err(reason.clone()));
                    }
                    for tx in self.destroyed.remove(&id).unwrap_or_default() {
                        let _ = tx.send(None);
                    }
                }
                LinkEvent::Ready { id, spec } => {
                    for tx in self.confirm.remove(&id).unwrap_or_default() {
                        let _ = tx.send(Ok((id, spec)));
                    }
                }
                LinkEvent::Destroyed { id, stats } => {
                    self.last_stats.remove(&id);
                    for tx in self.destroyed.remove(&id).unwrap_or_default() {
                        let _ = tx.send(Some(stats));
                    }
                }
                LinkEvent::Stats { id, stats } => {
                    self.last_stats.insert(id, stats);
                }
                LinkEvent::Dtmf { id, dtmf } => {
                    if let Some(digit) = dtmf_digit(dtmf.event) {
                        let notice = MediaNotice::Dtmf { id, leg: dtmf.leg, digit, duration: dtmf.duration };
                        self.subscribers.retain(|s| s.send(notice).is_ok());
                    }
                }
                LinkEvent::Worker { core, counters } => {
                    self.state.send_modify(|s| {
                        s.workers.insert(core, (counters, Instant::now()));
                    });
                }
                LinkEvent::RtpTimeout { id, stats } => {
                    self.last_stats.insert(id, stats);
                    self.subscribers.retain(|s| s.send(MediaNotice::RtpTimeout { id }).is_ok());
                }
                _ => {}
            }
        }
        let (sessions, stats) = (self.link.sessions().len(), self.link.stats());
        self.state.send_if_modified(|s| {
            let changed = s.sessions != sessions || s.stats != stats;
            s.sessions = sessions;
            s.stats = stats;
            changed
        });
        any
    }

    /// Applies a request; `Err` carries a stop request's reply.
    fn request(&mut self, r: Request) -> Result<(), oneshot::Sender<()>> {
        match r {
            Request::Create(spec, tx) => {
                let _ = tx.send(self.link.create(spec));
            }
            Request::Update(id, spec) => {
                self.link.update(id, spec);
            }
            Request::CreateConfirmed(spec, tx) => {
                let id = self.link.create(spec);
                self.confirm.entry(id).or_default().push(tx);
            }
            Request::UpdateConfirmed(id, spec, tx) => {
                if self.link.update(id, spec) {
                    self.confirm.entry(id).or_default().push(tx);
                } else {
                    let _ = tx.send(Err(format!("no session {id}")));
                }
            }
            Request::DestroyConfirmed(id, tx) => {
                if self.link.destroy(id) {
                    self.destroyed.entry(id).or_default().push(tx);
                } else {
                    let _ = tx.send(None);
                }
            }
            Request::Stats(id, tx) => {
                let _ = tx.send(self.last_stats.get(&id).copied());
            }
            Request::Destroy(id, tx) => {
                let _ = tx.send(self.link.destroy(id));
            }
            Request::Sessions(tx) => {
                let _ = tx.send(self.link.sessions().iter().map(|(id, d)| (*id, d.clone())).collect());
            }
            Request::Query(tx) => {
                if self.link.ready() || self.state.borrow().attached {
                    let seq = self.link.query();
                    self.queries.insert(seq, tx);
                } else {
                    self.deferred_queries.push(tx);
                }
            }
            Request::Stop(tx) => return Err(tx),
            Request::Subscribe(tx) => self.subscribers.push(tx),
        }
        let n = self.link.sessions().len();
        self.state.send_if_modified(|s| std::mem::replace(&mut s.sessions, n) != n);
        Ok(())
    }
}

/// What a readable media socket means: the media plane said [`BYE`] (superseded), closed
/// it, or sent something else (ignored).
fn socket_loss(stream: &tokio::net::UnixStream) -> Option<Loss> {
    let mut buf = [0u8; 64];
    match stream.try_read(&mut buf) {
        Ok(0) => Some(Loss::Closed),
        Ok(n) if buf[..n].starts_with(BYE) => Some(Loss::Superseded),
        Ok(_) => None,
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => None,
        Err(_) => Some(Loss::Closed),
    }
}

#[derive(Debug)]
enum HandshakeError {
    /// Nothing answers on the socket (not started yet, or gone).
    Unreachable(std::io::Error),
    /// A media plane answered and refused (layout mismatch...).
    Refused(String),
}

/// Connects to the media plane's socket and takes the segment and doorbells it sends.
async fn handshake(path: PathBuf) -> Result<Attachment, HandshakeError> {
    let (stream, segment, bells, pid) = tokio::task::spawn_blocking(move || handshake_blocking(&path))
        .await
        .map_err(|e| HandshakeError::Refused(format!("handshake task: {e}")))??;
    let ends = segment.control_ends().ok_or_else(|| HandshakeError::Refused("segment ends taken".into()))?;
    stream.set_nonblocking(true).map_err(HandshakeError::Unreachable)?;
    let stream = tokio::net::UnixStream::from_std(stream).map_err(HandshakeError::Unreachable)?;
    let mut pairs = Vec::with_capacity(ends.len());
    let mut bells = bells.into_iter();
    for _ in 0..ends.len() {
        let (Some(cmd), Some(evt)) = (bells.next(), bells.next()) else {
            return Err(HandshakeError::Refused("too few doorbells".into()));
        };
        // SAFETY: a Doorbell owns its eventfd for its whole life and always returns it.
        let evt = unsafe { AsyncFd::register_with_interest(evt, tokio::io::Interest::READABLE) }
            .map_err(|e| HandshakeError::Unreachable(e.into()))?;
        pairs.push((cmd, evt));
    }
    Ok(Attachment { stream, segment, ends, bells: pairs, pid })
}

fn handshake_blocking(path: &std::path::Path) -> Result<(StdUnixStream, Segment, Vec<Doorbell>, u32), HandshakeError> {
    let mut s = StdUnixStream::connect(path).map_err(HandshakeError::Unreachable)?;
    s.set_read_timeout(Some(Duration::from_secs(2))).map_err(HandshakeError::Unreachable)?;
    let mut hello = [0u8; 16];
    hello[..8].copy_from_slice(HELLO);
    hello[8..].copy_from_slice(&LAYOUT_HASH.to_le_bytes());
    s.write_all(&hello).map_err(HandshakeError::Unreachable)?;
    let mut buf = [0u8; 512];
    let (n, fds) = fdpass::recv_with_fds(&s, &mut buf, fdpass::MAX_FDS).map_err(HandshakeError::Unreachable)?;
    if n >= 8 && &buf[..8] == REFUSED {
        return Err(HandshakeError::Refused(String::from_utf8_lossy(&buf[8..n]).into_owned()));
    }
    if n < WELCOME_LEN || &buf[..8] != WELCOME {
        return Err(HandshakeError::Refused(format!("unexpected answer ({n} bytes)")));
    }
    let cores = u16::from_le_bytes([buf[8], buf[9]]);
    let pid = u32::from_le_bytes(buf[16..20].try_into().expect("4 bytes"));
    let hash = u64::from_le_bytes(buf[24..32].try_into().expect("8 bytes"));
    if hash != LAYOUT_HASH {
        return Err(HandshakeError::Refused(format!(
            "layout mismatch: media plane {hash:#x}, control plane {LAYOUT_HASH:#x}; run the same ferroswitch build on both planes"
        )));
    }
    let mut fds = fds.into_iter();
    let Some(memfd) = fds.next() else {
        return Err(HandshakeError::Refused("no segment fd".into()));
    };
    let segment = Segment::attach(memfd).map_err(|e| HandshakeError::Refused(e.to_string()))?;
    if segment.cores() != usize::from(cores) {
        return Err(HandshakeError::Refused(format!("welcome says {cores} cores, segment {}", segment.cores())));
    }
    let bells: Vec<Doorbell> = fds.map(Doorbell::from_fd).collect();
    s.set_read_timeout(None).map_err(HandshakeError::Unreachable)?;
    Ok((s, segment, bells, pid))
}
