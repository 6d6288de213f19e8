//! The media-plane process: its workers, and the Unix socket through which a control
//! plane attaches.
//!
//! Attachment: a control plane connects to [`MediaOptions::socket`] and sends
//! [`HELLO`] with its layout hash. The media plane creates a fresh shared segment (one
//! command ring and one event ring per core) and two eventfd doorbells per core, and
//! sends them back with [`WELCOME`] (cores, ring capacity, pid). Each worker then
//! switches to the new rings; sessions live in the workers, not in the segment, so they
//! survive any number of attachments. A second control plane attaching supersedes the
//! first ([`BYE`], then the old socket is closed). When the control plane goes away the
//! workers keep their sessions and the media plane waits for the next one; with no
//! control plane and no session for [`MediaOptions::orphan_exit`], it exits.
//!
//! Liveness: the main thread bumps the segment's `media_heartbeat` every
//! [`MediaOptions::heartbeat`]; a control plane that sees it stall restarts the media
//! plane.

use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ferroswitch_shared::doorbell::Doorbell;
use ferroswitch_shared::fdpass;
use ferroswitch_shared::layout::LAYOUT_HASH;
use ferroswitch_shared::segment::Segment;
use tracing::{info, warn};

use crate::relay::session::Policy;
use crate::sessions::SessionTable;
use crate::worker::{self, Backend, WorkerConfig, WorkerMsg};

/// What a control plane sends first: these 8 bytes, then its layout hash (u64 LE).
pub const HELLO: &[u8; 8] = b"FSWCTL01";
/// The media plane's answer (with the fds): these 8 bytes, cores (u16 LE), 2 zero bytes,
/// ring capacity (u32 LE), pid (u32 LE), 4 zero bytes, layout hash (u64 LE).
pub const WELCOME: &[u8; 8] = b"FSWMED01";
/// The media plane refuses: these 8 bytes, then a UTF-8 reason.
pub const REFUSED: &[u8; 8] = b"FSWERR01";
/// Another control plane took over: these 8 bytes, then the socket closes.
pub const BYE: &[u8; 8] = b"FSWBYE01";
/// Bytes of a [`WELCOME`] message.
pub const WELCOME_LEN: usize = 32;

/// How the media plane runs.
#[derive(Debug, Clone)]
pub struct MediaOptions {
    /// The Unix socket control planes attach through.
    pub socket: PathBuf,
    /// One entry per worker: the CPU to pin it to (None: not pinned).
    pub workers: Vec<Option<usize>>,
    /// The RTP port range, split evenly between the workers.
    pub port_min: u16,
    /// The RTP port range, split evenly between the workers.
    pub port_max: u16,
    /// Slots per ring.
    pub ring_capacity: usize,
    /// How often the heartbeat is bumped.
    pub heartbeat: Duration,
    /// Exit after this long with no control plane and no session.
    pub orphan_exit: Duration,
    /// The I/O backend (None: io_uring when the kernel allows it, else epoll).
    pub backend: Option<Backend>,
    /// How often each session's counters are reported (zero: never).
    pub stats_interval: Duration,
    /// io_uring SQPOLL idle time (None: no SQPOLL).
    pub sqpoll_idle: Option<Duration>,
    /// How long a worker keeps polling after work before it sleeps.
    pub busy_poll: Duration,
    /// After a leg first latches, how long a new SSRC from elsewhere may move the latch
    /// of a leg whose signalling named no address.
    pub learning_window: Duration,
    /// The Opus encoder's settings for transcoded sessions.
    pub opus: crate::codec::opus::Params,
    /// The af_xdp backend: its interface and modes (the workers then run epoll beside
    /// their AF_XDP sockets).
    pub xdp: Option<XdpOptions>,
}

/// The af_xdp backend's settings (`media.xdp_*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XdpOptions {
    /// `media.xdp_interface`.
    pub interface: String,
    /// `media.xdp_mode`: None for auto (native, else generic).
    pub mode: Option<crate::xdp::Mode>,
    /// `media.xdp_bind`: None for auto (zero-copy, else copy).
    pub bind: Option<crate::xsk::XskMode>,
    /// The media addresses (`media.rtp_ip`): UDP to them in the RTP range is the media plane's.
    pub ipv4: Option<std::net::Ipv4Addr>,
    /// The IPv6 one.
    pub ipv6: Option<std::net::Ipv6Addr>,
    /// UMEM frames per worker (a power of two).
    pub frames: u32,
}

/// Why the media plane could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MediaError {
    /// The socket could not be bound.
    #[error("media socket {path}: {source}")]
    Socket {
        /// The path.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// Another media plane answers on the socket.
    #[error("media socket {0}: another media plane is already listening there")]
    InUse(PathBuf),
    /// A worker thread could not be started.
    #[error("media worker {core}: {source}")]
    Spawn {
        /// The worker.
        core: usize,
        /// The OS error.
        source: std::io::Error,
    },
    /// No workers configured.
    #[error("no media workers configured")]
    NoWorkers,
    /// More workers than one attach message can hand doorbells for.
    #[error("{0} media workers: at most {1} are supported")]
    TooManyWorkers(usize, usize),
    /// The af_xdp backend could not be had (never a silent fallback).
    #[error("{key}: {why}")]
    Xdp {
        /// The configuration key concerned.
        key: &'static str,
        /// What went wrong and what to do.
        why: String,
    },
}

/// The af_xdp backend while it runs: the attached program (its kernel link detaches it
/// when this is dropped or the process dies) and the next-hop listener.
pub struct XdpBackend {
    program: crate::xdp::Program,
    _hops: crate::nexthop::watch::Watcher,
}

impl XdpBackend {
    /// The program's frame counters.
    pub fn counters(&self) -> crate::xdp::Counters {
        self.program.counters()
    }
}

/// Attaches the XDP program to the interface and gives each worker an AF_XDP socket on
/// its receive queue (worker `i`, queue `i`; a worker without a queue relays what the
/// others hand it through its kernel sockets, said in the log), rings to hand each other
/// frames for each other's ports, and the kernel's next hops, kept current. `workers`:
/// each worker's sender and wake-up doorbell. Returns the backend, to keep while the
/// media plane runs.
pub fn setup_xdp(
    x: &XdpOptions,
    workers: &[(&mpsc::Sender<WorkerMsg>, &Doorbell)],
    ports: (u16, u16),
) -> Result<XdpBackend, MediaError> {
    use crate::handover::{Mesh, Owners, Wake};
    use crate::worker::XdpSetup;
    use crate::xdp::{MediaConfig, Mode, Program};
    use crate::xsk::{Xsk, XskMode, FRAME};
    let err = |key: &'static str, why: String| MediaError::Xdp { key, why };
    if !Program::built() {
        return Err(err("media.backend", crate::xdp::XdpError::NotBuilt.to_string()));
    }
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let missing = missing_capabilities(&status);
    if !missing.is_empty() {
        return Err(err(
            "media.backend",
            format!(
                "the af_xdp backend needs {} (run as root, or grant them to the binary with setcap)",
                missing.join(", ")
            ),
        ));
    }
    let name = std::ffi::CString::new(x.interface.clone())
        .map_err(|_| err("media.xdp_interface", "a NUL in the name".into()))?;
    // SAFETY: a NUL-terminated name.
    let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
    if ifindex == 0 {
        return Err(err("media.xdp_interface", format!("no interface {:?} here", x.interface)));
    }
    raise_memlock(2 * u64::from(x.frames) * FRAME as u64 * workers.len() as u64).map_err(|e| {
        err(
            "media.xdp_interface",
            format!("{e}: the UMEM counts against RLIMIT_MEMLOCK (raise it, or give the media plane CAP_IPC_LOCK)"),
        )
    })?;
    let span = port_slice(ports.0, ports.1, 0, workers.len()).1 - ports.0 + 1;
    let mut cfg = MediaConfig::new(x.ipv4, x.ipv6, ports);
    if workers.len() > 1 {
        cfg = cfg.with_workers(workers.len() as u16, span);
    }
    let capabilities = "(the media plane needs CAP_NET_ADMIN, CAP_BPF and CAP_NET_RAW)";
    let attach = |mode| Program::attach(&x.interface, mode, cfg);
    let (mut program, mode) = match x.mode {
        Some(m) => (attach(m).map_err(|e| err("media.xdp_mode", format!("{e} {capabilities}")))?, m),
        None => match attach(Mode::Native) {
            Ok(p) => (p, Mode::Native),
            Err(_) => (
                attach(Mode::Generic).map_err(|e| err("media.xdp_mode", format!("{e} {capabilities}")))?,
                Mode::Generic,
            ),
        },
    };
    let queues = rx_queues(&x.interface);
    let wakes = workers
        .iter()
        .enumerate()
        .map(|(i, (_, bell))| {
            bell.fd()
                .try_clone()
                .map(|fd| Wake::new(Doorbell::from_fd(fd)))
                .map_err(|source| MediaError::Spawn { core: i, source })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut meshes: Vec<Option<Mesh>> =
        if workers.len() > 1 { Mesh::build(&wakes).into_iter().map(Some).collect() } else { vec![None] };
    let owners = Owners::new(ports.0, ports.1, workers.len());
    let mut bound = Vec::new();
    for (i, (tx, _)) in workers.iter().enumerate() {
        let mesh = meshes[i].take();
        if i >= queues {
            warn!(core = i, interface = %x.interface, queues, "no receive queue for this media worker: it relays the frames other workers hand it and sends through the kernel (give the interface a queue per worker)");
            let _ = tx.send(WorkerMsg::Xdp(Box::new(XdpSetup { xsk: None, mesh, owners })));
            continue;
        }
        let open = |m| Xsk::new(ifindex, i as u32, x.frames, m);
        let (xsk, bind) = match x.bind {
            Some(m) => (
                open(m)
                    .map_err(|e| err("media.xdp_bind", format!("AF_XDP socket on queue {i}: {e} {capabilities}")))?,
                m,
            ),
            None => match open(XskMode::ZeroCopy) {
                Ok(s) => (s, XskMode::ZeroCopy),
                Err(_) => (
                    open(XskMode::Copy).map_err(|e| {
                        err("media.xdp_bind", format!("AF_XDP socket on queue {i}: {e} {capabilities}"))
                    })?,
                    XskMode::Copy,
                ),
            },
        };
        program.register(i as u32, xsk.fd()).map_err(|e| err("media.xdp_interface", e.to_string()))?;
        bound.push(bind);
        let _ = tx.send(WorkerMsg::Xdp(Box::new(XdpSetup { xsk: Some(Box::new(xsk)), mesh, owners })));
    }
    // Next hops from the kernel's tables, each worker sent its own copy at each change.
    let senders: Vec<mpsc::Sender<WorkerMsg>> = workers.iter().map(|(tx, _)| (*tx).clone()).collect();
    let hops = crate::nexthop::watch::start(ifindex, move |t| {
        for tx in &senders {
            let _ = tx.send(WorkerMsg::NextHops(Box::new(t.clone())));
        }
    })
    .map_err(|e| err("media.xdp_interface", format!("reading the kernel's routes and neighbours (rtnetlink): {e}")))?;
    info!(interface = %x.interface, ?mode, binds = ?bound, queues, "AF_XDP backend: the XDP program is attached");
    Ok(XdpBackend { program, _hops: hops })
}

/// The capabilities the af_xdp backend needs that `status` (/proc/self/status) says this
/// process lacks: CAP_NET_ADMIN (attach XDP), CAP_BPF or CAP_SYS_ADMIN (load it),
/// CAP_NET_RAW (AF_XDP sockets).
fn missing_capabilities(status: &str) -> Vec<&'static str> {
    let Some(eff) =
        status.lines().find_map(|l| l.strip_prefix("CapEff:")).and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
    else {
        return Vec::new(); // unreadable: let the kernel say
    };
    let has = |bit: u32| eff & (1u64 << bit) != 0;
    let (net_admin, net_raw, sys_admin, bpf) = (12, 13, 21, 39);
    let mut missing = Vec::new();
    if !has(net_admin) {
        missing.push("CAP_NET_ADMIN");
    }
    if !has(bpf) && !has(sys_admin) {
        missing.push("CAP_BPF");
    }
    if !has(net_raw) {
        missing.push("CAP_NET_RAW");
    }
    missing
}

/// Receive queues of `interface` (/sys/class/net/IF/queues/rx-*); 1 if unreadable.
fn rx_queues(interface: &str) -> usize {
    ethtool_rx_queues(interface)
        .or_else(|| {
            // /sys shows the namespace it was mounted in, which may not be this thread's.
            std::fs::read_dir(format!("/sys/class/net/{interface}/queues"))
                .ok()
                .map(|d| d.flatten().filter(|e| e.file_name().to_string_lossy().starts_with("rx-")).count())
        })
        .unwrap_or(1)
        .max(1)
}

/// The interface's receive queues as its driver counts its channels (ETHTOOL_GCHANNELS:
/// receive-only plus combined), asked in this thread's network namespace; None where
/// the driver does not say.
fn ethtool_rx_queues(interface: &str) -> Option<usize> {
    #[repr(C)]
    #[derive(Default)]
    struct Channels {
        cmd: u32,
        max_rx: u32,
        max_tx: u32,
        max_other: u32,
        max_combined: u32,
        rx_count: u32,
        tx_count: u32,
        other_count: u32,
        combined_count: u32,
    }
    const ETHTOOL_GCHANNELS: u32 = 0x3c;
    let name = interface.as_bytes();
    if name.len() >= libc::IFNAMSIZ {
        return None;
    }
    let mut ch = Channels { cmd: ETHTOOL_GCHANNELS, ..Channels::default() };
    // SAFETY: a zeroed ifreq is valid; its name is NUL-terminated (checked above) and its
    // data points at `ch`, live for the call; the socket is closed below.
    unsafe {
        let mut ifr: libc::ifreq = std::mem::zeroed();
        for (d, s) in ifr.ifr_name.iter_mut().zip(name) {
            *d = *s as libc::c_char;
        }
        ifr.ifr_ifru.ifru_data = (&mut ch as *mut Channels).cast();
        let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return None;
        }
        let r = libc::ioctl(fd, libc::SIOCETHTOOL, &mut ifr);
        libc::close(fd);
        if r != 0 {
            return None;
        }
    }
    Some((ch.rx_count + ch.combined_count) as usize).filter(|&n| n > 0)
}

/// Lets this process lock `bytes` more of memory (the UMEM is pinned).
fn raise_memlock(bytes: u64) -> std::io::Result<()> {
    let mut r = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: reads into a live struct.
    if unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut r) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let want = r.rlim_cur.saturating_add(bytes).min(r.rlim_max.max(r.rlim_cur));
    let want = if r.rlim_max == libc::RLIM_INFINITY { libc::RLIM_INFINITY } else { want };
    if want <= r.rlim_cur {
        return Ok(());
    }
    let new = libc::rlimit { rlim_cur: want, rlim_max: r.rlim_max };
    // SAFETY: a live struct; raising the soft limit up to the hard one needs no privilege.
    if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &new) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// The port range of worker `i` of `n`: an even-aligned share of `min..=max`.
pub fn port_slice(min: u16, max: u16, i: usize, n: usize) -> (u16, u16) {
    let (min32, max32) = (u32::from(min), u32::from(max));
    let span = ((max32.saturating_sub(min32) + 1) / n.max(1) as u32) & !1;
    let lo = min32 + span * i as u32;
    let hi = if i + 1 == n { max32 } else { lo + span - 1 };
    (lo as u16, hi.min(65535) as u16)
}

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::Relaxed);
}

/// Runs the media plane until SIGTERM/SIGINT, or until it has been an orphan (no control
/// plane, no session) for [`MediaOptions::orphan_exit`].
pub fn run(opts: MediaOptions) -> Result<(), MediaError> {
    if opts.workers.is_empty() {
        return Err(MediaError::NoWorkers);
    }
    // The segment and two doorbells per core travel in one SCM_RIGHTS message.
    if 1 + 2 * opts.workers.len() > fdpass::MAX_FDS {
        return Err(MediaError::TooManyWorkers(opts.workers.len(), (fdpass::MAX_FDS - 1) / 2));
    }
    let listener = bind(&opts.socket)?;
    // SAFETY: on_signal only stores to an atomic, which is async-signal-safe.
    unsafe {
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
    }
    let backend = match opts.backend {
        // AF_XDP frames come beside epoll's sockets (the kernel path stays).
        _ if opts.xdp.is_some() => Backend::Epoll,
        Some(b) => b,
        None => match crate::uring::probe() {
            Ok(()) => Backend::IoUring,
            Err(why) => {
                warn!(%why, "io_uring unavailable: the media workers use epoll");
                Backend::Epoll
            }
        },
    };
    info!(?backend, "media I/O backend");
    let (stats_interval, sqpoll_idle, busy_poll) = (opts.stats_interval, opts.sqpoll_idle, opts.busy_poll);
    if backend == Backend::IoUring {
        info!(
            multishot_recvmsg = true,
            provided_buffer_ring = true,
            sqpoll = ?sqpoll_idle,
            busy_poll = ?busy_poll,
            "io_uring features in use"
        );
    }
    let n = opts.workers.len();
    let policy = Policy {
        learning_window_ns: opts.learning_window.as_nanos().min(u128::from(u64::MAX)) as u64,
        opus: opts.opus,
    };
    let own_ports = (opts.port_min, opts.port_max);
    let counts: Arc<Vec<AtomicUsize>> = Arc::new((0..n).map(|_| AtomicUsize::new(0)).collect());
    // Transcoders are made and destroyed on their own thread, not on the workers'.
    let factory =
        crate::transcode::factory::Factory::start().map_err(|source| MediaError::Spawn { core: 0, source })?;
    let mut workers = Vec::with_capacity(n);
    for (i, pin) in opts.workers.iter().enumerate() {
        let (lo, hi) = port_slice(opts.port_min, opts.port_max, i, n);
        let table = SessionTable::new(i as u16, lo, hi);
        let quarantine_cap = quarantine_cap(n, lo, hi);
        let (tx, rx) = mpsc::channel();
        let wake = Doorbell::new().map_err(|source| MediaError::Spawn { core: i, source })?;
        let wake_worker =
            Doorbell::from_fd(wake.fd().try_clone().map_err(|source| MediaError::Spawn { core: i, source })?);
        let pin = *pin;
        let counts = counts.clone();
        let handle = std::thread::Builder::new()
            .name(format!("media-core-{i}"))
            .spawn(move || {
                let cfg = WorkerConfig {
                    pin,
                    backend,
                    stats_interval,
                    sqpoll_idle,
                    busy_poll,
                    quarantine_cap,
                    policy,
                    own_ports,
                };
                worker::run(table, cfg, rx, wake_worker, &counts[i])
            })
            .map_err(|source| MediaError::Spawn { core: i, source })?;
        info!(core = i, cpu = ?pin, ports = %format!("{lo}-{hi}"), quarantine_cap, "media worker started");
        let bell = Doorbell::from_fd(wake.fd().try_clone().map_err(|source| MediaError::Spawn { core: i, source })?);
        let _ = tx.send(WorkerMsg::Factory(factory.client(bell)));
        workers.push((tx, wake, handle));
    }
    // Kept while the media plane runs; its kernel link detaches it when the process ends.
    let _xdp = match &opts.xdp {
        Some(x) => {
            let ends: Vec<(&mpsc::Sender<WorkerMsg>, &Doorbell)> =
                workers.iter().map(|(tx, wake, _)| (tx, wake)).collect();
            Some(setup_xdp(x, &ends, (opts.port_min, opts.port_max))?)
        }
        None => None,
    };
    // For scripts and tests; a closed stdout (its reader gone) is not a reason to stop.
    let _ = writeln!(
        std::io::stdout(),
        "ferroswitch-media: listening {} pid {} workers {n}",
        opts.socket.display(),
        std::process::id()
    );
    let mut controller: Option<(UnixStream, Segment)> = None;
    let mut orphan_since = Some(Instant::now());
    let mut last_beat = Instant::now();
    let send_all = |msg: &dyn Fn() -> WorkerMsg| {
        for (tx, wake, _) in &workers {
            let _ = tx.send(msg());
            wake.ring();
        }
    };
    while !STOP.load(Ordering::Relaxed) {
        // Rounded up to a whole ms: poll(0) in the last partial ms would spin.
        let timeout = opts.heartbeat.saturating_sub(last_beat.elapsed()) + Duration::from_micros(999);
        let mut fds = vec![libc::pollfd { fd: listener.as_raw_fd(), events: libc::POLLIN, revents: 0 }];
        if let Some((s, _)) = &controller {
            fds.push(libc::pollfd { fd: s.as_raw_fd(), events: libc::POLLIN, revents: 0 });
        }
        // SAFETY: fds is a valid array for the duration of the call.
        unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout.as_millis() as libc::c_int) };
        if last_beat.elapsed() >= opts.heartbeat {
            last_beat = Instant::now();
            if let Some((_, seg)) = &controller {
                seg.header().media_heartbeat.fetch_add(1, Ordering::Release);
            }
        }
        if fds.get(1).is_some_and(|p| p.revents != 0) {
            let gone = match &mut controller {
                Some((s, _)) => {
                    let mut buf = [0u8; 64];
                    !matches!(s.read(&mut buf), Ok(n) if n > 0)
                }
                None => false,
            };
            if gone {
                controller = None;
                send_all(&|| WorkerMsg::Detach);
                let held: usize = counts.iter().map(|c| c.load(Ordering::Relaxed)).sum();
                warn!(sessions = held, "control plane detached; keeping every session until one attaches");
                orphan_since = Some(Instant::now());
            }
        }
        if fds[0].revents != 0 {
            match listener.accept() {
                Ok((stream, _)) => match attach(stream, n, opts.ring_capacity) {
                    Ok((stream, seg, rings)) => {
                        if let Some((mut old, _)) = controller.take() {
                            let _ = old.write_all(BYE);
                            warn!("a new control plane attached; the previous one is superseded");
                        }
                        for ((tx, wake, _), (ends, commands_bell, events_bell)) in workers.iter().zip(rings) {
                            let _ = tx.send(WorkerMsg::Attach { ends, commands_bell, events_bell });
                            wake.ring();
                        }
                        let held: usize = counts.iter().map(|c| c.load(Ordering::Relaxed)).sum();
                        info!(sessions = held, "control plane attached");
                        controller = Some((stream, seg));
                        orphan_since = None;
                    }
                    Err(e) => warn!(error = %e, "control plane attach refused"),
                },
                Err(e) => warn!(error = %e, "media socket accept failed"),
            }
        }
        if let Some(since) = orphan_since {
            let held: usize = counts.iter().map(|c| c.load(Ordering::Relaxed)).sum();
            if held > 0 {
                orphan_since = Some(Instant::now());
            } else if since.elapsed() >= opts.orphan_exit {
                info!("no control plane and no session: exiting");
                break;
            }
        }
    }
    send_all(&|| WorkerMsg::Stop);
    for (_, _, h) in workers {
        let _ = h.join();
    }
    let _ = std::fs::remove_file(&opts.socket);
    Ok(())
}

type CoreRings = (ferroswitch_shared::segment::MediaEnds, Doorbell, Doorbell);

/// The handshake with a connecting control plane; on success the segment and each core's
/// rings and doorbells (command bell, event bell).
fn attach(
    mut stream: UnixStream,
    cores: usize,
    capacity: usize,
) -> Result<(UnixStream, Segment, Vec<CoreRings>), String> {
    stream.set_read_timeout(Some(Duration::from_secs(2))).map_err(|e| e.to_string())?;
    let mut hello = [0u8; 16];
    stream.read_exact(&mut hello).map_err(|e| format!("no hello: {e}"))?;
    if &hello[..8] != HELLO {
        let _ = stream.write_all(REFUSED).and_then(|_| stream.write_all(b"bad hello"));
        return Err("bad hello".into());
    }
    let theirs = u64::from_le_bytes(hello[8..16].try_into().expect("8 bytes"));
    if theirs != LAYOUT_HASH {
        let why = format!(
            "layout mismatch: control plane {theirs:#x}, media plane {LAYOUT_HASH:#x}; run the same ferroswitch build on both planes"
        );
        let _ = stream.write_all(REFUSED).and_then(|_| stream.write_all(why.as_bytes()));
        return Err(why);
    }
    let seg = Segment::create(cores, capacity).map_err(|e| format!("segment: {e}"))?;
    seg.header().media_pid.store(std::process::id(), Ordering::Relaxed);
    let ends = seg.media_ends().ok_or("segment ends already taken")?;
    let mut bells = Vec::with_capacity(cores * 2);
    for _ in 0..cores * 2 {
        bells.push(Doorbell::new().map_err(|e| format!("eventfd: {e}"))?);
    }
    let mut welcome = [0u8; WELCOME_LEN];
    welcome[..8].copy_from_slice(WELCOME);
    welcome[8..10].copy_from_slice(&(cores as u16).to_le_bytes());
    welcome[12..16].copy_from_slice(&(capacity as u32).to_le_bytes());
    welcome[16..20].copy_from_slice(&std::process::id().to_le_bytes());
    welcome[24..32].copy_from_slice(&LAYOUT_HASH.to_le_bytes());
    let mut fds = vec![seg.fd().as_fd()];
    fds.extend(bells.iter().map(|b| b.fd().as_fd()));
    fdpass::send_with_fds(&stream, &welcome, &fds).map_err(|e| format!("sending the segment: {e}"))?;
    stream.set_read_timeout(None).map_err(|e| e.to_string())?;
    let mut bells = bells.into_iter();
    let rings = ends
        .into_iter()
        .map(|e| {
            let commands_bell = bells.next().expect("two bells per core");
            let events_bell = bells.next().expect("two bells per core");
            (e, commands_bell, events_bell)
        })
        .collect();
    Ok((stream, seg, rings))
}

/// Binds the socket (0600), replacing a stale file but never a live media plane.
fn bind(path: &std::path::Path) -> Result<UnixListener, MediaError> {
    if path.exists() {
        if UnixStream::connect(path).is_ok() {
            return Err(MediaError::InUse(path.to_path_buf()));
        }
        let _ = std::fs::remove_file(path);
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|source| MediaError::Socket { path: path.to_path_buf(), source })?;
    }
    let l = UnixListener::bind(path).map_err(|source| MediaError::Socket { path: path.to_path_buf(), source })?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|source| MediaError::Socket { path: path.to_path_buf(), source })?;
    Ok(l)
}

/// Most sockets the worker of ports `lo..=hi` keeps in its quarantine: one per port of its
/// range (then every closed session's socket can wait for its port's next session), within
/// its share of the process's descriptor limit less [`FD_RESERVE`]. A worker's sockets,
/// live, bound ahead or quarantined, are on distinct ports of its range (per local
/// address), so this is also what it holds at most when its range is full of calls.
fn quarantine_cap(workers: usize, lo: u16, hi: u16) -> usize {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes the limit into a valid rlimit.
    let soft = if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0 { lim.rlim_cur } else { 1024 };
    let share = usize::try_from(soft).unwrap_or(usize::MAX).saturating_sub(FD_RESERVE) / workers.max(1);
    share.min(usize::from(hi.saturating_sub(lo)) + 1)
}

/// Descriptors left for everything but media sockets (rings, eventfds, io_uring, logs).
const FD_RESERVE: usize = 1024;

#[cfg(test)]
mod tests {
    use super::{missing_capabilities, port_slice};

    #[test]
    fn the_af_xdp_backend_names_the_capabilities_it_lacks() {
        assert_eq!(missing_capabilities("Name:\tx\nCapEff:\t000001ffffffffff\n"), Vec::<&str>::new());
        // CAP_NET_ADMIN and CAP_NET_RAW only: no CAP_BPF, no CAP_SYS_ADMIN.
        assert_eq!(missing_capabilities("CapEff:\t0000000000003000\n"), ["CAP_BPF"]);
        // CAP_SYS_ADMIN stands for CAP_BPF (kernels before 5.8).
        assert_eq!(missing_capabilities("CapEff:\t0000000000203000\n"), Vec::<&str>::new());
        assert_eq!(missing_capabilities("CapEff:\t0000000000000000\n"), ["CAP_NET_ADMIN", "CAP_BPF", "CAP_NET_RAW"]);
        assert_eq!(missing_capabilities("no such line"), Vec::<&str>::new());
    }

    #[test]
    fn the_port_range_is_split_into_even_aligned_slices() {
        assert_eq!(port_slice(16384, 32767, 0, 2), (16384, 24575));
        assert_eq!(port_slice(16384, 32767, 1, 2), (24576, 32767));
        assert_eq!(port_slice(20000, 20009, 0, 3), (20000, 20001));
        assert_eq!(port_slice(20000, 20009, 2, 3), (20004, 20009));
        assert_eq!(port_slice(16384, 32767, 0, 1), (16384, 32767));
    }
}
