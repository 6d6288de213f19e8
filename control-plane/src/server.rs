//! The tokio driver: binds the configured listeners and runs the sans-IO [`Switch`] on
//! one task, feeding it what the transports receive and the passage of time, and
//! sending what it emits. Nothing here decides anything about SIP.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use crate::b2bua::{MediaAnswer, MediaRequest, MediaSettings};
use crate::media::{MediaHandle, MediaNotice, SpawnSpec, SupervisorOptions};
use bytes::Bytes;
use ferroswitch_shared::msg::{SessionSpec, StreamStats};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, watch};
use tracing::{debug, info, warn};

use crate::config::Config;
use crate::ids::IdGen;
use crate::sip::transport::tcp::{self, ConnWriter, TcpLimits};
use crate::sip::transport::{udp, Inbound, Peer, TransportKind};
use crate::storage::{Storage, StorageHandle};
use crate::switch::{Stats, Switch};

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// A listener could not be bound (address in use, not local, no permission).
    #[error("cannot bind {key} {addr}: {source}")]
    Bind { key: &'static str, addr: SocketAddr, source: std::io::Error },
    /// The operating system's random source could not be read.
    #[error("cannot read /dev/urandom: {0}")]
    Random(std::io::Error),
    /// The dialplan file is broken (the error names file and line).
    #[error("dialplan: {0}")]
    Dialplan(crate::dialplan::DialplanError),
    /// The database could not be opened or migrated.
    #[error("storage: {0}")]
    Storage(#[from] crate::storage::StorageError),
}

/// A running switch.
pub struct Server {
    /// The bound UDP addresses (ports resolved when configured as 0).
    pub udp: Vec<SocketAddr>,
    /// The bound TCP addresses.
    pub tcp: Vec<SocketAddr>,
    /// Where the HTTP JSON endpoint listens, if it is on.
    pub http: Option<SocketAddr>,
    /// Where the NG protocol listens, if it is on.
    pub ng: Option<SocketAddr>,
    /// Where the event socket listens, if it is on.
    pub esl: Option<SocketAddr>,
    /// The media plane's supervisor (None with `media.mode = "off"`).
    pub media: Option<MediaHandle>,
    shutdown: watch::Sender<bool>,
    stats: watch::Receiver<Stats>,
    task: tokio::task::JoinHandle<()>,
}

impl Server {
    /// Binds every listener and starts serving on the current tokio runtime.
    /// With `media.mode = "spawn"` the media plane is this same executable run as
    /// `ferroswitch media`.
    pub async fn start(config: Config) -> Result<Server, StartError> {
        let ids = IdGen::from_os().map_err(StartError::Random)?;
        Server::start_with(config, ids, std::env::current_exe().ok()).await
    }

    /// As [`Server::start`], with a chosen identifier generator and media-plane program
    /// (tests; `None`: in spawn mode, only attach to a media plane already running).
    pub async fn start_with(
        config: Config,
        ids: IdGen,
        media_program: Option<std::path::PathBuf>,
    ) -> Result<Server, StartError> {
        let (to_core, from_transports) = mpsc::channel::<Inbound>(4096);
        let mut udp_sockets = HashMap::new();
        let mut udp_addrs = Vec::new();
        for &addr in &config.sip.udp {
            let s = udp::bind(addr).await.map_err(|source| StartError::Bind { key: "sip.udp", addr, source })?;
            let local = s.local_addr().map_err(|source| StartError::Bind { key: "sip.udp", addr, source })?;
            udp_addrs.push(local);
            udp_sockets.insert(local, s.clone());
            tokio::spawn(udp::receive_loop(s, config.sip.max_message_size, to_core.clone()));
        }
        let limits = TcpLimits {
            max_message: config.sip.max_message_size,
            idle_timeout: config.sip.tcp_idle_timeout,
            max_connections: config.sip.tcp_max_connections,
            max_per_source: config.sip.tcp_max_connections_per_source,
            max_pending_bytes: config.sip.tcp_max_pending_bytes,
            message_timeout: config.sip.tcp_message_timeout,
        };
        let mut tcp_addrs = Vec::new();
        for &addr in &config.sip.tcp {
            let l = tcp::bind(addr).await.map_err(|source| StartError::Bind { key: "sip.tcp", addr, source })?;
            tcp_addrs.push(l.local_addr().map_err(|source| StartError::Bind { key: "sip.tcp", addr, source })?);
            tokio::spawn(tcp::accept_loop(l, limits, to_core.clone()));
        }
        drop(to_core);
        let (shutdown, shutdown_rx) = watch::channel(false);
        let (stats_tx, stats) = watch::channel(Stats::default());
        let (storage, loaded) = Storage::open_with(
            &config.storage.dir,
            crate::storage::DEFAULT_QUEUE_CAPACITY,
            config.storage.commit_interval,
        )?;
        let unix_now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let mut switch = Switch::new(&config, ids, Instant::now(), unix_now);
        if let Some(path) = &config.dialplan.file {
            let plan = crate::dialplan::Dialplan::load(path, &crate::dialplan::Variables::new())
                .map_err(StartError::Dialplan)?;
            info!(file = %path.display(), contexts = plan.contexts().count(), "dialplan loaded");
            switch.set_dialplan(plan);
        }
        let locals = udp_addrs
            .iter()
            .map(|&l| Peer { transport: TransportKind::Udp, remote: l, local: l })
            .chain(tcp_addrs.iter().map(|&l| Peer { transport: TransportKind::Tcp, remote: l, local: l }))
            .collect();
        switch.set_locals(locals);
        let mut restored = 0;
        for row in loaded.bindings.iter().filter(|r| r.expires_at > unix_now as i64) {
            if let Some((aor, binding)) = persist::binding_from_row(row, &udp_addrs, &tcp_addrs) {
                switch.restore_binding(&aor, binding);
                restored += 1;
            }
        }
        info!(db = %storage.db_path().display(), restored, "storage open");
        // Recovery: the calls bridged when the previous process died are taken back, the
        // rest is cleared (the driver sends and stores what that emits before anything else).
        switch.recover(Instant::now(), &loaded.calls, &loaded.live_channels, &loaded.dialogs);
        let media = start_media(&config, media_program);
        // Bridged calls' media goes through the media plane when there is one.
        let (reports, task_reports) = mpsc::unbounded_channel();
        if let Some(m) = &media {
            switch.set_media(MediaSettings {
                enabled: true,
                rtp_ip: config.media.rtp_ip,
                prefs: config.media.codec_prefs.clone(),
                rtp_timeout_secs: config.media.rtp_timeout_secs,
                own_ports: (config.media.rtp_port_min, config.media.rtp_port_max),
                max_media: config.sip.max_sdp_media,
            });
            // Calls taken back from the database get their sessions once the media plane
            // (kept running, or restarted and replayed) is attached and reconciled.
            let (handle, to_driver) = (m.clone(), reports.clone());
            tokio::spawn(async move {
                if handle.wait_for(|s| s.ready).await.ready {
                    let held = handle.sessions().await.into_iter().map(|(id, d)| (id, d.spec)).collect();
                    let _ = to_driver.send(TaskReport::Held(held));
                }
            });
            let mut notices = m.subscribe();
            let to_driver = reports.clone();
            tokio::spawn(async move {
                while let Some(notice) = notices.recv().await {
                    let report = match notice {
                        MediaNotice::RtpTimeout { id } => TaskReport::Timeout(id),
                        MediaNotice::Dtmf { id, leg, digit, duration } => TaskReport::Dtmf { id, leg, digit, duration },
                    };
                    if to_driver.send(report).is_err() {
                        break;
                    }
                }
            });
        }
        let ng = match (config.ng.listen, &media) {
            (Some(addr), Some(m)) => {
                let sock = tokio::net::UdpSocket::bind(addr).await.map_err(|source| StartError::Bind {
                    key: "ng.listen",
                    addr,
                    source,
                })?;
                let local = sock.local_addr().map_err(|source| StartError::Bind { key: "ng.listen", addr, source })?;
                let n = &config.ng;
                let settings = crate::ng::core::Settings {
                    own: crate::media::rewrite::OwnMedia {
                        ip: local.ip(),
                        ports: (config.media.rtp_port_min, config.media.rtp_port_max),
                    },
                    timeout_secs: n.timeout_secs,
                    silent_timeout_secs: n.silent_timeout_secs,
                    final_timeout_secs: n.final_timeout_secs,
                    max_calls_per_source: n.max_calls_per_source,
                    max_media: config.sip.max_sdp_media,
                };
                tokio::spawn(crate::ng::server::serve(sock, m.clone(), settings, shutdown_rx.clone()));
                info!(addr = %local, "NG protocol listening");
                Some(local)
            }
            (Some(_), None) => {
                warn!("ng.listen is set but media.mode = \"off\": no NG listener");
                None
            }
            (None, _) => None,
        };
        let http = match config.management.http_listen {
            Some(addr) => {
                let l = tokio::net::TcpListener::bind(addr).await.map_err(|source| StartError::Bind {
                    key: "management.http_listen",
                    addr,
                    source,
                })?;
                let local = l.local_addr().map_err(|source| StartError::Bind {
                    key: "management.http_listen",
                    addr,
                    source,
                })?;
                tokio::spawn(crate::management::serve(
                    l,
                    storage.db_path().to_path_buf(),
                    media.clone(),
                    stats.clone(),
                    shutdown_rx.clone(),
                ));
                info!(addr = %local, "HTTP JSON endpoint listening");
                Some(local)
            }
            None => None,
        };
        // The event hub and the API channel serve the listener and the `socket`
        // application's outbound connections alike.
        let hub = crate::esl::server::Hub::new(esl_core(&udp_addrs));
        switch.set_hostname(&hub.core().hostname);
        let (api_tx, api_rx) = mpsc::channel(256);
        // The event socket's connections run on a thread of their own, so formatting and
        // writing events never takes the SIP driver's time.
        let esl_rt = esl_runtime().map_err(|source| StartError::Bind {
            key: "esl.listen",
            addr: config.esl.listen.unwrap_or_else(|| ([127, 0, 0, 1], 0).into()),
            source,
        })?;
        let esl = match config.esl.listen {
            Some(addr) => {
                let bind = |source| StartError::Bind { key: "esl.listen", addr, source };
                let l = tokio::net::TcpListener::bind(addr).await.map_err(bind)?;
                let local = l.local_addr().map_err(bind)?;
                switch.set_events(true);
                let (cfg, hub) = (config.esl.clone(), hub.clone());
                let l = l.into_std().map_err(bind)?;
                let (api, shut) = (api_tx.clone(), shutdown_rx.clone());
                esl_rt.spawn(async move {
                    match tokio::net::TcpListener::from_std(l) {
                        Ok(l) => crate::esl::server::serve(l, cfg, hub, api, shut).await,
                        Err(e) => tracing::error!(error = %e, "event socket: cannot take its listener"),
                    }
                });
                info!(addr = %local, "event socket listening");
                Some(local)
            }
            None => None,
        };
        let esl_hub = Some(hub);
        let api_calls = Some(api_rx);
        let source = (config.source != crate::config::EMBEDDED_NAME).then(|| std::path::PathBuf::from(&config.source));
        let driver = Driver {
            esl: esl_hub,
            api_tx,
            esl_rt,
            heartbeat: config.esl.listen.map(|_| config.esl.heartbeat),
            notifier: crate::notify::Notifier::from_env(),
            originating: HashMap::default(),
            stopping: false,
            source,
            switch,
            udp: udp_sockets,
            tcp: HashMap::new(),
            tcp_closed: Vec::new(),
            symmetric: config.sip.symmetric_response,
            stats: stats_tx,
            storage,
            media: media.clone(),
            reports,
        };
        let task = tokio::spawn(driver.run(from_transports, task_reports, api_calls, shutdown_rx));
        for a in &udp_addrs {
            info!(addr = %a, "SIP listening on UDP");
        }
        for a in &tcp_addrs {
            info!(addr = %a, "SIP listening on TCP");
        }
        Ok(Server { udp: udp_addrs, tcp: tcp_addrs, http, ng, esl, media, shutdown, stats, task })
    }

    /// The switch's counters as of its last loop turn.
    pub fn stats(&self) -> Stats {
        *self.stats.borrow()
    }

    /// Stops serving and waits for the driver to finish.
    pub async fn stop(self) {
        let _ = self.shutdown.send(true);
        let _ = self.task.await;
        if let Some(m) = &self.media {
            m.stop().await;
        }
    }
}

/// Starts the media supervisor for `media.mode` (spawn or attach).
/// A current-thread runtime on a thread named `esl`, kept for the process's life.
fn esl_runtime() -> std::io::Result<tokio::runtime::Handle> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new().name("esl".into()).spawn(
        move || match tokio::runtime::Builder::new_current_thread().enable_all().build() {
            Ok(rt) => {
                let _ = tx.send(Ok(rt.handle().clone()));
                rt.block_on(std::future::pending::<()>());
            }
            Err(e) => {
                let _ = tx.send(Err(e));
            }
        },
    )?;
    rx.recv().map_err(|_| std::io::Error::other("the event socket's thread ended at start"))?
}

/// The next tick of `i`, or never without one.
async fn tick(i: &mut Option<tokio::time::Interval>) {
    match i {
        Some(i) => {
            i.tick().await;
        }
        None => std::future::pending().await,
    }
}

/// What the event socket's standard headers say of this switch: a Core-UUID of this
/// process, the host's name, the SIP addresses.
fn esl_core(udp: &[SocketAddr]) -> crate::esl::event::Core {
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map_or_else(|_| "ferroswitch".into(), |h| h.trim().to_string());
    let v4 = udp.iter().find(|a| a.is_ipv4()).map_or_else(|| "127.0.0.1".into(), |a| a.ip().to_string());
    let v6 = udp.iter().find(|a| a.is_ipv6()).map_or_else(|| "::1".into(), |a| a.ip().to_string());
    crate::esl::event::Core { uuid: crate::esl::server::new_uuid(), hostname, ipv4: v4, ipv6: v6 }
}

fn start_media(config: &Config, program: Option<std::path::PathBuf>) -> Option<MediaHandle> {
    use crate::config::MediaMode;
    let spawn = match (config.media.mode, program) {
        (MediaMode::Off, _) => return None,
        (MediaMode::Spawn, Some(program)) => {
            let mut args: Vec<std::ffi::OsString> = vec!["media".into()];
            if config.source != crate::config::EMBEDDED_NAME {
                args.push("--config".into());
                args.push(config.source.clone().into());
            }
            Some(SpawnSpec { program, args })
        }
        (MediaMode::Spawn, None) => {
            warn!("media.mode = \"spawn\" without a media-plane program: attaching only");
            None
        }
        (MediaMode::Attach, _) => None,
    };
    let first_id =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_micros() as u64);
    Some(crate::media::supervisor::start(SupervisorOptions {
        socket: config.media.socket.clone(),
        spawn,
        cores: config.media.worker_count() as u16,
        heartbeat_timeout: config.media.heartbeat_timeout,
        first_id,
        start_timeout: std::time::Duration::from_secs(5),
    }))
}

struct Driver {
    /// The configuration file, re-read on SIGHUP (None: the embedded default).
    source: Option<std::path::PathBuf>,
    switch: Switch,
    udp: HashMap<SocketAddr, Arc<UdpSocket>>,
    tcp: HashMap<(SocketAddr, SocketAddr), ConnWriter>,
    /// Connections that closed, forgotten after the next flush (what the switch queued
    /// for them meanwhile, such as a 513 to the message that closed it, goes first).
    tcp_closed: Vec<(SocketAddr, SocketAddr)>,
    symmetric: bool,
    stats: watch::Sender<Stats>,
    storage: StorageHandle,
    /// The media plane (None: `media.mode = "off"`), and where its answers come back.
    media: Option<MediaHandle>,
    reports: mpsc::UnboundedSender<TaskReport>,
    /// The event socket's hub (None: no `esl.listen`): the switch's channel events go out there.
    esl: Option<Arc<crate::esl::server::Hub>>,
    /// The event socket's runtime (its own thread), where outbound connections run.
    esl_rt: tokio::runtime::Handle,
    /// Where outbound connections send their API calls (the driver's own channel).
    api_tx: mpsc::Sender<crate::esl::server::ApiCall>,
    /// How often a HEARTBEAT event goes to the hub.
    heartbeat: Option<std::time::Duration>,
    /// systemd's watchdog, fed from this loop (None: not run under one).
    notifier: Option<crate::notify::Notifier>,
    /// `originate`s waiting for their leg to answer or fail, by job.
    originating: HashMap<u64, tokio::sync::oneshot::Sender<String>>,
    /// `fsctl shutdown` raised SIGTERM already.
    stopping: bool,
}

/// What background tasks (the media plane, the resolver) tell the SIP driver.
enum TaskReport {
    /// The answer to a B2BUA's session request.
    Answer(MediaAnswer),
    /// A session's RTP timed out.
    Timeout(u64),
    /// A host name's addresses, for a `sofia/` leg.
    Resolved { token: u64, result: Result<Vec<SocketAddr>, String> },
    /// What the media plane holds, once it is ready after the start.
    Held(Vec<(u64, SessionSpec)>),
    /// A session of a call that ended is gone, with its final counters.
    Destroyed { cdr: [Option<String>; 2], stats: Box<StreamStats> },
    /// The `socket` application's connection for this channel ended.
    SocketDone(String),
    /// A telephone-event ended on a session's leg.
    Dtmf { id: u64, leg: u8, digit: char, duration: u32 },
}

/// How long a `sofia/` leg waits for its host name to resolve.
const RESOLVE_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// How long a call waits for the media plane to create its sessions.
const MEDIA_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

/// Creates one session per spec, in order; on a failure, those already created are
/// destroyed and the reason returned.
async fn create_sessions(
    media: &MediaHandle,
    specs: Vec<Option<SessionSpec>>,
) -> Result<Vec<Option<(u64, SessionSpec)>>, String> {
    let mut out: Vec<Option<(u64, SessionSpec)>> = Vec::with_capacity(specs.len());
    for spec in specs {
        let Some(spec) = spec else {
            out.push(None);
            continue;
        };
        let why = match tokio::time::timeout(MEDIA_WAIT, media.create_confirmed(spec)).await {
            Ok(Ok(held)) => {
                out.push(Some(held));
                continue;
            }
            Ok(Err(why)) => why,
            Err(_) => format!("the media plane did not answer in {MEDIA_WAIT:?}"),
        };
        for (id, _) in out.iter().flatten() {
            media.destroy(*id).await;
        }
        return Err(why);
    }
    Ok(out)
}

impl Driver {
    async fn run(
        mut self,
        mut inbound: mpsc::Receiver<Inbound>,
        mut from_tasks: mpsc::UnboundedReceiver<TaskReport>,
        mut api_calls: Option<mpsc::Receiver<crate::esl::server::ApiCall>>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            .map_err(|e| warn!(error = %e, "SIGHUP reload unavailable"))
            .ok();
        // What start-up emitted: recovery's CDRs, deletes and BYEs.
        self.after_turn().await;
        let interval = |d: Option<std::time::Duration>| {
            d.map(|d| {
                let mut i = tokio::time::interval_at(tokio::time::Instant::now() + d, d);
                i.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                i
            })
        };
        let mut heartbeat = interval(self.heartbeat);
        let mut watchdog = interval(self.notifier.as_ref().and_then(crate::notify::Notifier::watchdog_every));
        loop {
            let deadline = self.switch.poll_timeout();
            let sleep = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(tokio::time::Instant::from_std(d)).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                _ = shutdown.changed() => break,
                item = inbound.recv() => {
                    let Some(item) = item else { break };
                    self.handle(item);
                    // Batch: take what else is already queued before sending.
                    for _ in 0..256 {
                        match inbound.try_recv() {
                            Ok(item) => self.handle(item),
                            Err(_) => break,
                        }
                    }
                }
                Some(input) = from_tasks.recv() => {
                    let now = Instant::now();
                    match input {
                        TaskReport::Answer(a) => self.switch.handle_media_answer(now, a),
                        TaskReport::Timeout(id) => self.switch.handle_media_timeout(now, id),
                        TaskReport::Dtmf { id, leg, digit, duration } => {
                            self.switch.handle_dtmf(now, id, leg, digit, duration)
                        }
                        TaskReport::Held(held) => self.switch.adopt_media(&held),
                        TaskReport::SocketDone(uuid) => self.switch.socket_done(now, &uuid),
                        TaskReport::Resolved { token, result } => self.switch.handle_resolved(now, token, result),
                        TaskReport::Destroyed { cdr, stats } => {
                            for (leg, uuid) in cdr.into_iter().enumerate() {
                                let Some(uuid) = uuid else { continue };
                                let media = crate::b2bua::media::cdr_media(&stats, leg);
                                self.storage.write(crate::storage::Write::AddCdrMedia { uuid, media });
                            }
                        }
                    }
                }
                Some(call) = async {
                    match api_calls.as_mut() {
                        Some(rx) => rx.recv().await,
                        None => std::future::pending().await,
                    }
                } => {
                    let now = Instant::now();
                    let out = match &call.ask {
                        crate::esl::server::Ask::Api { command, args } => {
                            if let Some(hub) = &self.esl {
                                hub.publish_api(command, args);
                            }
                            if command.eq_ignore_ascii_case("originate") {
                                // Answered when the leg answers or fails (after_turn).
                                self.switch.start_originate(now, args)
                            } else {
                                Err(self.switch.api(now, command, args))
                            }
                        }
                        crate::esl::server::Ask::SendMsg { uuid, headers } => {
                            Err(self.switch.sendmsg(now, uuid, headers))
                        }
                    };
                    match out {
                        Ok(job) => {
                            self.originating.insert(job, call.reply);
                        }
                        Err(text) => {
                            let _ = call.reply.send(text);
                        }
                    }
                    if self.switch.take_reload_request() {
                        self.reload();
                    }
                }
                _ = tick(&mut heartbeat) => {
                    if let Some(hub) = &self.esl {
                        let headers = self.switch.heartbeat(Instant::now());
                        hub.publish_switch(crate::switch::SwitchEvent::Heartbeat { headers });
                    }
                }
                _ = tick(&mut watchdog) => {
                    // Sent from this loop: a driver that stops turning is restarted.
                    if let Some(n) = &self.notifier {
                        n.send("WATCHDOG=1");
                    }
                }
                _ = sleep => {}
                Some(()) = async {
                    match hangup.as_mut() {
                        Some(h) => h.recv().await,
                        None => std::future::pending().await,
                    }
                } => self.reload(),
            }
            let now = Instant::now();
            if self.switch.poll_timeout().is_some_and(|d| d <= now) {
                self.switch.handle_timeout(now);
            }
            self.after_turn().await;
        }
        // Everything queued for the database is committed before the process exits.
        let storage = self.storage;
        let _ = tokio::task::spawn_blocking(move || storage.close()).await;
        debug!("SIP driver stopped");
    }

    /// After each turn of the loop: sends what the switch emitted, queues its writes and
    /// publishes its counters.
    async fn after_turn(&mut self) {
        self.flush().await;
        if self.switch.stop_due() && !self.stopping {
            // fsctl shutdown: the process stops as SIGTERM stops it (the database flushed).
            self.stopping = true;
            tracing::info!("fsctl shutdown: no call left; stopping");
            // SAFETY: kill(2) on our own pid has no memory effects.
            unsafe { libc::kill(libc::getpid(), libc::SIGTERM) };
        }
        while let Some((job, text)) = self.switch.poll_originated() {
            if let Some(reply) = self.originating.remove(&job) {
                let _ = reply.send(text);
            }
        }
        while let Some(req) = self.switch.poll_media() {
            self.media_request(req);
        }
        while let Some(r) = self.switch.poll_resolve() {
            let tx = self.reports.clone();
            tokio::spawn(async move {
                let lookup = tokio::net::lookup_host((r.host.as_str(), r.port));
                let result = match tokio::time::timeout(RESOLVE_WAIT, lookup).await {
                    Ok(Ok(addrs)) => Ok(addrs.collect()),
                    Ok(Err(e)) => Err(format!("{}: {e}", r.host)),
                    Err(_) => Err(format!("{}: no answer in {RESOLVE_WAIT:?}", r.host)),
                };
                let _ = tx.send(TaskReport::Resolved { token: r.token, result });
            });
        }
        while let Some(change) = self.switch.poll_change() {
            self.storage.write(persist::write_of(change));
        }
        while let Some(write) = self.switch.poll_write() {
            self.storage.write(write);
        }
        if let Some(hub) = &self.esl {
            while let Some((target, uuid, data)) = self.switch.poll_socket() {
                let (hub, api, reports) = (hub.clone(), self.api_tx.clone(), self.reports.clone());
                self.esl_rt.spawn(async move {
                    crate::esl::outbound::run(target, uuid.clone(), data, hub, api).await;
                    let _ = reports.send(TaskReport::SocketDone(uuid));
                });
            }
            while let Some(e) = self.switch.poll_event() {
                hub.publish_switch(e);
            }
        }
        self.stats.send_replace(self.switch.stats());
    }

    /// SIGHUP: re-reads the directory (the configuration and its users file) and the
    /// dialplan. Whatever fails to load is reported and the previous version stays.
    fn reload(&mut self) {
        let config = match &self.source {
            Some(path) => match Config::load(path) {
                Ok(c) => c,
                Err(e) => {
                    warn!(error = %e, "reload refused: the previous directory and dialplan stay in force");
                    return;
                }
            },
            None => match Config::embedded() {
                Ok(c) => c,
                Err(e) => {
                    warn!(error = %e, "reload refused");
                    return;
                }
            },
        };
        self.switch.set_users(&config.directory.users);
        info!(users = config.directory.users.len(), "directory reloaded");
        match &config.dialplan.file {
            Some(path) => match crate::dialplan::Dialplan::load(path, &crate::dialplan::Variables::new()) {
                Ok(plan) => {
                    info!(file = %path.display(), "dialplan reloaded");
                    self.switch.set_dialplan(plan);
                }
                Err(e) => warn!(error = %e, "dialplan reload refused: the previous dialplan stays in force"),
            },
            None => self.switch.set_dialplan(crate::dialplan::Dialplan::embedded_default()),
        }
    }

    /// Carries out a B2BUA's media request; a creation's answer comes back through
    /// `reports`.
    fn media_request(&self, req: MediaRequest) {
        match (req, self.media.clone()) {
            (MediaRequest::Create { token, specs }, Some(media)) => {
                let tx = self.reports.clone();
                tokio::spawn(async move {
                    let result = create_sessions(&media, specs).await;
                    let _ = tx.send(TaskReport::Answer(MediaAnswer { token, result }));
                });
            }
            (MediaRequest::Create { token, .. }, None) => {
                let result = Err("media.mode = \"off\"".to_string());
                let _ = self.reports.send(TaskReport::Answer(MediaAnswer { token, result }));
            }
            (MediaRequest::Update { id, spec }, Some(media)) => media.update(id, spec),
            (MediaRequest::Destroy { id, cdr }, Some(media)) => {
                let tx = self.reports.clone();
                tokio::spawn(async move {
                    // The final counters go to the legs' CDRs.
                    if let Ok(Some(stats)) = tokio::time::timeout(MEDIA_WAIT, media.destroy_confirmed(id)).await {
                        let _ = tx.send(TaskReport::Destroyed { cdr, stats: Box::new(stats) });
                    }
                });
            }
            (_, None) => {}
        }
    }

    fn handle(&mut self, item: Inbound) {
        let now = Instant::now();
        match item {
            Inbound::Message { peer, msg } => self.switch.handle_message(now, msg, peer),
            Inbound::Malformed { peer, bytes, error } => self.switch.handle_parse_error(&bytes, &error, peer),
            Inbound::Opened { peer, writer } => {
                self.tcp.insert((peer.local, peer.remote), writer);
            }
            Inbound::Closed { peer } => self.tcp_closed.push((peer.local, peer.remote)),
        }
    }

    async fn flush(&mut self) {
        while let Some((peer, bytes)) = self.switch.poll_transmit() {
            self.send(peer, bytes).await;
        }
        for key in self.tcp_closed.drain(..) {
            self.tcp.remove(&key);
        }
    }

    async fn send(&mut self, peer: Peer, bytes: Bytes) {
        match peer.transport {
            TransportKind::Udp => {
                let Some(sock) = self.udp.get(&peer.local) else {
                    warn!(call_id = %call_id_of(&bytes), local = %peer.local, "no UDP socket for outgoing message");
                    return;
                };
                let dest = if bytes.starts_with(b"SIP/") {
                    udp::response_destination(&bytes, peer.remote, self.symmetric).unwrap_or(peer.remote)
                } else {
                    peer.remote
                };
                if let Err(e) = sock.send_to(&bytes, dest).await {
                    warn!(call_id = %call_id_of(&bytes), %dest, error = %e, "UDP send failed");
                }
            }
            TransportKind::Tcp => {
                let key = (peer.local, peer.remote);
                let call_id = call_id_of(&bytes);
                let ok = self.tcp.get(&key).is_some_and(|w| w.send(bytes));
                if !ok {
                    // Gone, or too far behind: drop our end so the connection closes.
                    self.tcp.remove(&key);
                    warn!(%call_id, remote = %peer.remote, "TCP connection unavailable or stuck; message not sent");
                }
            }
        }
    }
}

/// The Call-ID of an outgoing message, for log lines.
fn call_id_of(bytes: &[u8]) -> String {
    crate::sip::message::write::raw_call_id(bytes).map(|c| String::from_utf8_lossy(c).into_owned()).unwrap_or_default()
}

/// Between the registrar's bindings and the database's rows.
mod persist {
    use std::net::SocketAddr;

    use crate::registrar::{Binding, Change};
    use crate::sip::transport::{Peer, TransportKind};
    use crate::storage::{BindingRow, Write};

    pub fn write_of(change: Change) -> Write {
        match change {
            Change::Upsert { aor, binding } => Write::UpsertBinding(BindingRow {
                aor,
                contact: binding.contact,
                expires_at: binding.expires_at as i64,
                call_id: binding.call_id,
                cseq: binding.cseq,
                user_agent: binding.user_agent,
                received: binding.source.remote.to_string(),
                transport: binding.source.transport.via_name().to_ascii_lowercase(),
                q: binding.q.as_deref().and_then(|q| q.parse().ok()).unwrap_or(1.0),
                instance_id: binding.instance,
            }),
            Change::Remove { aor, contact } => Write::DeleteBinding { aor, contact },
        }
    }

    /// A stored binding, reached again through the first listener of its transport.
    pub fn binding_from_row(row: &BindingRow, udp: &[SocketAddr], tcp: &[SocketAddr]) -> Option<(String, Binding)> {
        let transport = TransportKind::from_name(&row.transport)?;
        let locals = match transport {
            TransportKind::Udp => udp,
            TransportKind::Tcp => tcp,
        };
        let remote: SocketAddr = row.received.parse().ok()?;
        let local = *locals.iter().find(|l| l.is_ipv4() == remote.is_ipv4())?;
        let binding = Binding {
            contact: row.contact.clone(),
            expires_at: u64::try_from(row.expires_at).ok()?,
            q: (row.q != 1.0).then(|| row.q.to_string()),
            call_id: row.call_id.clone(),
            cseq: row.cseq,
            source: Peer { transport, remote, local },
            user_agent: row.user_agent.clone(),
            instance: row.instance_id.clone(),
        };
        Some((row.aor.clone(), binding))
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn a_binding_survives_the_round_trip_through_a_row() {
            let udp: SocketAddr = "127.0.0.1:5060".parse().unwrap();
            let b = Binding {
                contact: "sip:1000@192.0.2.7:5062".into(),
                expires_at: 1_800_000_000,
                q: Some("0.5".into()),
                call_id: "c1".into(),
                cseq: 7,
                source: Peer { transport: TransportKind::Udp, remote: "192.0.2.7:5062".parse().unwrap(), local: udp },
                user_agent: Some("phone".into()),
                instance: None,
            };
            let Write::UpsertBinding(row) = write_of(Change::Upsert { aor: "1000".into(), binding: b.clone() }) else {
                panic!("an upsert becomes an UpsertBinding")
            };
            assert_eq!(binding_from_row(&row, &[udp], &[]), Some(("1000".to_string(), b)));
            assert_eq!(binding_from_row(&row, &[], &[]), None, "no listener of that transport");
        }
    }
}
