//! The media-plane tests' harness: a worker thread driven through in-process rings, with
//! test sockets playing the legs' peers, on each backend.
#![allow(dead_code)]

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::AtomicUsize;
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use ferroswitch_media_plane::sessions::{SessionTable, PORT_REUSE_DELAY};
use ferroswitch_media_plane::worker::{self, WorkerMsg};
use ferroswitch_shared::doorbell::Doorbell;
use ferroswitch_shared::msg::{
    codec, Command, CommandKind, Created, Endpoint, Event, EventKind, LegSpec, PayloadMap, SessionSpec,
};
use ferroswitch_shared::ring::{pair, Consumer, Producer};
use ferroswitch_shared::segment::MediaEnds;

/// The backend a test runs on: the worker's own (io_uring, epoll), or AF_XDP beside epoll
/// (the XDP program on the loopback of a network namespace of the test's own, the
/// worker's AF_XDP socket on its queue).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Epoll,
    IoUring,
    AfXdp,
}

/// One worker thread and the control plane's ends of its rings.
pub struct Core {
    pub commands: Producer<Command>,
    pub events: Consumer<Event>,
    pub commands_bell: Doorbell,
    pub tx: mpsc::Sender<WorkerMsg>,
    pub wake: Doorbell,
    pub thread: Option<std::thread::JoinHandle<()>>,
    /// The XDP program (AF_XDP), detached after the worker stops.
    pub xdp: Option<ferroswitch_media_plane::xdp::Program>,
    /// The core's number (its table's).
    pub id: u16,
}

impl Core {
    pub fn start_on(port_min: u16, backend: Backend) -> Core {
        Core::start_with(port_min, port_min + 199, backend)
    }

    pub fn start_with(port_min: u16, port_max: u16, backend: Backend) -> Core {
        // Lowest port first, so tests can name ports (the media plane's own tables are random).
        let order = ferroswitch_media_plane::sessions::PortOrder::Sequential;
        Core::start_table(SessionTable::with_order(0, port_min, port_max, PORT_REUSE_DELAY, order), backend)
    }

    pub fn start_table(table: SessionTable, backend: Backend) -> Core {
        let own_ports = table.port_range();
        let id = table.core();
        let (commands, worker_commands) = pair::<Command>(64).unwrap();
        let (worker_events, events) = pair::<Event>(256).unwrap();
        let commands_bell = Doorbell::new().unwrap();
        let events_bell = Doorbell::new().unwrap();
        let wake = Doorbell::new().unwrap();
        let (tx, rx) = mpsc::channel();
        let wake_worker = Doorbell::from_fd(wake.fd().try_clone().unwrap());
        let bell_worker = Doorbell::from_fd(commands_bell.fd().try_clone().unwrap());
        let held = Arc::new(AtomicUsize::new(0));
        let port_range = table.port_range();
        let cfg = worker::WorkerConfig {
            pin: None,
            backend: if backend == Backend::IoUring { worker::Backend::IoUring } else { worker::Backend::Epoll },
            stats_interval: Duration::from_millis(400),
            sqpoll_idle: None,
            busy_poll: Duration::ZERO,
            quarantine_cap: ferroswitch_media_plane::pool::QUARANTINE_CAP,
            policy: ferroswitch_media_plane::relay::session::Policy::default(),
            own_ports,
        };
        let thread = std::thread::spawn(move || worker::run(table, cfg, rx, wake_worker, &held));
        tx.send(WorkerMsg::Attach {
            ends: MediaEnds { commands: worker_commands, events: worker_events },
            commands_bell: bell_worker,
            events_bell,
        })
        .unwrap();
        let xdp = (backend == Backend::AfXdp).then(|| {
            use ferroswitch_media_plane::xdp::{MediaConfig, Mode, Program};
            use ferroswitch_media_plane::xsk::{Xsk, XskMode};
            let cfg = MediaConfig::new(Some(std::net::Ipv4Addr::LOCALHOST), None, port_range);
            let mut p = Program::attach("lo", Mode::Generic, cfg).expect("XDP on the namespace's loopback");
            let lo = std::ffi::CString::new("lo").unwrap();
            // SAFETY: a NUL-terminated name.
            let xsk = Xsk::new(unsafe { libc::if_nametoindex(lo.as_ptr()) }, 0, 256, XskMode::Copy)
                .expect("an AF_XDP socket");
            p.register(0, xsk.fd()).unwrap();
            let owners = ferroswitch_media_plane::handover::Owners::new(port_range.0, port_range.1, 1);
            tx.send(WorkerMsg::Xdp(Box::new(worker::XdpSetup { xsk: Some(Box::new(xsk)), mesh: None, owners })))
                .unwrap();
            p
        });
        wake.ring();
        Core { commands, events, commands_bell, tx, wake, thread: Some(thread), xdp, id }
    }

    pub fn send(&mut self, c: Command) {
        self.commands.try_push(&c).unwrap();
        self.commands_bell.ring();
    }

    /// The next event of `kind` (others are skipped), within 5 s.
    pub fn expect(&mut self, kind: EventKind) -> Event {
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Some(e) = self.events.pop() {
                if e.kind() == Some(kind) {
                    return e;
                }
                continue;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        panic!("no {kind:?} event within 5 s");
    }
}

impl Drop for Core {
    fn drop(&mut self) {
        let _ = self.tx.send(WorkerMsg::Stop);
        self.wake.ring();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        if let Some(p) = self.xdp.take() {
            // Every media frame the program saw went to the worker's AF_XDP socket, none
            // to the kernel for want of one.
            let c = p.counters();
            if !std::thread::panicking() {
                assert_eq!(c.no_socket, 0, "{c:?}");
            }
        }
    }
}

/// Runs `f` directly (the kernel backends).
pub fn direct(f: impl FnOnce() + Send) {
    f()
}

/// Runs `f` on a thread inside a network namespace of its own, its loopback up (the
/// AF_XDP backend's tests: the XDP program there touches nothing else); skipped where
/// that cannot be had (not root, no XDP program in this build).
pub fn in_namespace(f: impl FnOnce() + Send) {
    use std::process::Command;
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: AF_XDP tests need root");
        return;
    }
    if !ferroswitch_media_plane::xdp::Program::built() {
        eprintln!("skipped: this build has no XDP program (install clang, llvm, libbpf-dev)");
        return;
    }
    let name = format!("fsr{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed));
    assert!(Command::new("ip").args(["netns", "add", &name]).status().unwrap().success());
    let ns = std::fs::File::open(format!("/run/netns/{name}")).unwrap();
    let result = std::thread::scope(|s| {
        s.spawn(move || {
            use std::os::fd::AsRawFd;
            // SAFETY: a valid namespace fd; moves this thread only.
            assert_eq!(unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) }, 0, "setns");
            assert!(Command::new("ip").args(["link", "set", "lo", "up"]).status().unwrap().success());
            f()
        })
        .join()
    });
    let _ = Command::new("ip").args(["netns", "del", &name]).status();
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}

pub fn leg(remote: Option<SocketAddr>, flags: u32) -> LegSpec {
    let mut l = LegSpec {
        local: Endpoint::from_addr("127.0.0.1:0".parse().unwrap()),
        remote: remote.map(Endpoint::from_addr).unwrap_or_default(),
        flags,
        codec_count: 2,
        ..LegSpec::default()
    };
    l.codecs[0] = PayloadMap { clock_rate: 8000, pt: 0, codec: codec::PCMU, channels: 1, _pad: 0 };
    l.codecs[1] = PayloadMap { clock_rate: 8000, pt: 101, codec: codec::TELEPHONE_EVENT, channels: 1, _pad: 0 };
    l
}

pub fn create(core: &mut Core, id: u64, a: LegSpec, b: LegSpec, timeout: u32) -> [SocketAddr; 2] {
    let spec = SessionSpec { legs: [a, b], rtp_timeout_secs: timeout, flags: 0 };
    let at = core.id;
    core.send(Command::new(CommandKind::Create as u16, at, id, 1).with_body(&spec));
    let e = core.expect(EventKind::Created);
    let c = e.body::<Created>();
    [c.local[0].addr().unwrap(), c.local[1].addr().unwrap()]
}

pub fn peer() -> UdpSocket {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s
}

pub fn rtp(pt: u8, seq: u16, ts: u32, ssrc: u32, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0x80, pt];
    p.extend(seq.to_be_bytes());
    p.extend(ts.to_be_bytes());
    p.extend(ssrc.to_be_bytes());
    p.extend(payload);
    p
}

pub fn recv(s: &UdpSocket) -> (Vec<u8>, SocketAddr) {
    let mut buf = [0u8; 2048];
    let (n, from) = s.recv_from(&mut buf).expect("a relayed packet");
    (buf[..n].to_vec(), from)
}
