//! The AF_XDP backend's XDP program on a real interface (issue 13, first step): a veth
//! pair the test makes, one end in a network namespace of its own (the far side, where
//! packets are sent from), the program on the other end in native and generic mode.
//!
//! - UDP to the media address and RTP range is the media plane's (counted); with no
//!   AF_XDP socket on the queue yet it goes on to the kernel socket bound there: a
//!   detached or dead worker loses nothing;
//! - SIP (UDP outside the range), ARP and IPv6 neighbour discovery (both needed for any
//!   datagram to arrive at all) are the kernel's;
//! - IPv6 the same as IPv4;
//! - the program goes when its owner drops it, and when its process is killed.
//!
//! Needs root (network namespaces, XDP); skipped with a message where the kernel or the
//! build cannot have it.

use std::net::UdpSocket;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use ferroswitch_media_plane::xdp::{MediaConfig, Mode, Program, XdpError};
use ferroswitch_media_plane::xsk::{fix_checksums, Xsk, XskMode};

/// A veth pair: `near` in this namespace (10.77.N.1, fd77::N:1), its peer in namespace
/// `ns` (10.77.N.2, fd77::N:2). Removed when dropped.
struct Veth {
    ns: String,
    near: String,
    n: u32,
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip").args(args).output().map_err(|e| format!("ip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim()))
    }
}

static NEXT: AtomicU32 = AtomicU32::new(0);

impl Veth {
    fn new() -> Result<Veth, String> {
        // Distinct for the tests of this process (in parallel) and likely for others'.
        let n = 10 + (std::process::id() % 80) * 3 + NEXT.fetch_add(1, Ordering::Relaxed) % 3;
        let v = Veth { ns: format!("fsx{}-{n}", std::process::id()), near: format!("fsxa{n}"), n };
        let far = format!("fsxb{n}");
        ip(&["netns", "add", &v.ns])?;
        ip(&["link", "add", &v.near, "type", "veth", "peer", "name", &far, "netns", &v.ns])?;
        let (a4, b4) = (format!("10.77.{n}.1/24"), format!("10.77.{n}.2/24"));
        let (a6, b6) = (format!("fd77::{n}:1/112"), format!("fd77::{n}:2/112"));
        ip(&["addr", "add", &a4, "dev", &v.near])?;
        ip(&["addr", "add", &a6, "dev", &v.near, "nodad"])?;
        ip(&["link", "set", &v.near, "up"])?;
        ip(&["-n", &v.ns, "addr", "add", &b4, "dev", &far])?;
        ip(&["-n", &v.ns, "addr", "add", &b6, "dev", &far, "nodad"])?;
        ip(&["-n", &v.ns, "link", "set", &far, "up"])?;
        ip(&["-n", &v.ns, "link", "set", "lo", "up"])?;
        Ok(v)
    }

    fn near_v4(&self) -> String {
        format!("10.77.{}.1", self.n)
    }

    fn near_v6(&self) -> String {
        format!("fd77::{}:1", self.n)
    }

    /// Runs `f` on a thread in the far namespace (`setns` moves only the calling thread).
    fn far<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> std::thread::JoinHandle<T> {
        let ns = std::fs::File::open(format!("/run/netns/{}", self.ns)).expect("the namespace's file");
        std::thread::spawn(move || {
            use std::os::fd::AsRawFd;
            // SAFETY: a valid namespace fd; CLONE_NEWNET moves this thread's network namespace.
            assert_eq!(unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) }, 0, "setns");
            f()
        })
    }

    /// Sends `count` datagrams to `to`:`port` from the far side.
    fn send(&self, to: &str, port: u16, count: usize) {
        let to: std::net::SocketAddr =
            format!("{}:{port}", if to.contains(':') { format!("[{to}]") } else { to.into() }).parse().unwrap();
        self.far(move || {
            let any = if to.is_ipv6() { "[::]:0" } else { "0.0.0.0:0" };
            let s = UdpSocket::bind(any).unwrap();
            for _ in 0..count {
                s.send_to(&[0x80; 172], to).unwrap();
                std::thread::sleep(Duration::from_millis(2));
            }
        })
        .join()
        .expect("the sender");
    }

    /// An AF_XDP socket on the near end's queue 0 with `frames` ring entries, registered
    /// with `p`; None (the test is skipped) where the kernel refuses one.
    fn xsk(&self, p: &mut Program, frames: u32) -> Option<Xsk> {
        let name = std::ffi::CString::new(self.near.clone()).unwrap();
        // SAFETY: a NUL-terminated name.
        let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
        match Xsk::new(ifindex, 0, frames, XskMode::Copy) {
            Ok(x) => {
                p.register(0, x.fd()).unwrap();
                Some(x)
            }
            Err(e) => {
                eprintln!("skipped: the kernel refuses an AF_XDP socket here: {e}");
                None
            }
        }
    }

    /// Whether an XDP program is attached to the near end.
    fn has_xdp(&self) -> bool {
        let out = Command::new("ip").args(["link", "show", "dev", &self.near]).output().unwrap();
        String::from_utf8_lossy(&out.stdout).contains("prog/xdp")
    }
}

impl Drop for Veth {
    fn drop(&mut self) {
        let _ = ip(&["link", "del", &self.near]);
        let _ = ip(&["netns", "del", &self.ns]);
    }
}

/// The topology, or why this machine cannot have it (the test is then skipped).
fn topology() -> Option<Veth> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: the XDP tests need root (network namespaces, XDP)");
        return None;
    }
    if !Program::built() {
        eprintln!("skipped: this build has no XDP program (install clang, llvm, libbpf-dev)");
        return None;
    }
    match Veth::new() {
        Ok(v) => Some(v),
        Err(e) => {
            eprintln!("skipped: cannot make a veth pair in a namespace: {e}");
            None
        }
    }
}

/// Datagrams that reach `sock` within a second of the last one.
fn drain(sock: &UdpSocket) -> usize {
    sock.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
    let mut buf = [0u8; 2048];
    let mut n = 0;
    while sock.recv(&mut buf).is_ok() {
        n += 1;
    }
    n
}

fn attach(v: &Veth, mode: Mode) -> Option<Program> {
    let cfg = MediaConfig::new(Some(v.near_v4().parse().unwrap()), Some(v.near_v6().parse().unwrap()), (20000, 20999));
    match Program::attach(&v.near, mode, cfg) {
        Ok(p) => Some(p),
        // Only the kernel's refusal skips; an object that does not parse is a failure.
        Err(e @ (XdpError::Load(_) | XdpError::Attach { .. })) => {
            eprintln!("skipped: the kernel refuses XDP here: {e}");
            None
        }
        Err(e) => panic!("{e}"),
    }
}

fn media_and_kernel_traffic_are_told_apart(mode: Mode) {
    let Some(v) = topology() else { return };
    let rtp = UdpSocket::bind(format!("{}:20000", v.near_v4())).unwrap();
    let sip = UdpSocket::bind(format!("{}:5060", v.near_v4())).unwrap();
    let rtp6 = UdpSocket::bind(format!("[{}]:20002", v.near_v6())).unwrap();
    let Some(p) = attach(&v, mode) else { return };
    assert!(v.has_xdp());
    assert_eq!(p.interface(), v.near);
    v.send(&v.near_v4(), 20000, 5);
    v.send(&v.near_v4(), 5060, 3);
    v.send(&v.near_v6(), 20002, 4);
    // No AF_XDP socket on the queue yet: the media frames go on to the kernel's socket.
    assert_eq!((drain(&rtp), drain(&sip), drain(&rtp6)), (5, 3, 4), "{mode:?}");
    let c = p.counters();
    assert_eq!((c.media, c.no_socket), (9, 9), "{mode:?}: {c:?}");
    // SIP and the ARP / neighbour discovery the datagrams needed went to the kernel.
    assert!(c.passed >= 3 + 2, "{mode:?}: {c:?}");
    drop(p);
    assert!(!v.has_xdp(), "{mode:?}: detached when dropped");
}

#[test]
fn native_mode_sends_the_media_range_to_the_media_plane_and_the_rest_to_the_kernel() {
    media_and_kernel_traffic_are_told_apart(Mode::Native);
}

#[test]
fn generic_mode_sends_the_media_range_to_the_media_plane_and_the_rest_to_the_kernel() {
    media_and_kernel_traffic_are_told_apart(Mode::Generic);
}

#[test]
fn the_program_goes_with_a_killed_process() {
    let Some(v) = topology() else { return };
    // The kernel takes the program here (else skipped); then the child must too.
    let Some(p) = attach(&v, Mode::Native) else { return };
    drop(p);
    // This test binary again, running only `holder`, which attaches and waits.
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "holder", "--ignored", "--nocapture"])
        .env("FSX_HOLD_IFACE", &v.near)
        .env("FSX_HOLD_V4", v.near_v4())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !v.has_xdp() {
        assert!(Instant::now() < deadline, "the child did not attach");
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the child exited ({status}) before attaching: see its output above");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while v.has_xdp() {
        assert!(Instant::now() < deadline, "the program outlived its process");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Attaches to `$FSX_HOLD_IFACE` and sleeps (run by `the_program_goes_with_a_killed_process`).
#[test]
#[ignore = "run by the_program_goes_with_a_killed_process"]
fn holder() {
    let Ok(iface) = std::env::var("FSX_HOLD_IFACE") else { return };
    let v4 = std::env::var("FSX_HOLD_V4").unwrap().parse().unwrap();
    let _p = Program::attach(&iface, Mode::Native, MediaConfig::new(Some(v4), None, (20000, 20999))).unwrap();
    std::thread::sleep(Duration::from_secs(60));
}

/// `Udp: ... InCsumErrors` of the calling thread's namespace.
fn udp_csum_errors() -> u64 {
    let snmp = std::fs::read_to_string("/proc/thread-self/net/snmp").unwrap();
    let mut lines = snmp.lines().filter(|l| l.starts_with("Udp: "));
    let (names, values) = (lines.next().unwrap(), lines.next().unwrap());
    let i = names.split_whitespace().position(|n| n == "InCsumErrors").unwrap();
    values.split_whitespace().nth(i).unwrap().parse().unwrap()
}

/// The worker's part in the socket tests: an IPv4 frame sent back where it came from
/// (addresses and ports swapped), its checksums computed.
fn turn_around(f: &mut [u8], len: usize) -> Option<usize> {
    let (eth, ip, udp) = (0, 14, 34);
    for k in 0..6 {
        f.swap(eth + k, eth + 6 + k);
    }
    for k in 0..4 {
        f.swap(ip + 12 + k, ip + 16 + k);
    }
    for k in 0..2 {
        f.swap(udp + k, udp + 2 + k);
    }
    fix_checksums(&mut f[..len], ip).then_some(len)
}

#[test]
fn an_af_xdp_socket_takes_the_media_frames_and_its_replies_pass_the_kernels_checksum_checks() {
    let Some(v) = topology() else { return };
    let kernel = UdpSocket::bind(format!("{}:20004", v.near_v4())).unwrap();
    let Some(mut p) = attach(&v, Mode::Native) else { return };
    let Some(mut x) = v.xsk(&mut p, 64) else { return };
    // The far side sends five datagrams to the media port and waits for what comes back.
    let to: std::net::SocketAddr = format!("{}:20004", v.near_v4()).parse().unwrap();
    let far = v.far(move || {
        let errors_before = udp_csum_errors();
        let s = UdpSocket::bind("0.0.0.0:0").unwrap();
        s.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
        let mut got = Vec::new();
        for i in 0..5u8 {
            s.send_to(&[i; 100], to).unwrap();
            let mut buf = [0u8; 200];
            if let Ok((n, from)) = s.recv_from(&mut buf) {
                got.push((buf[..n].to_vec(), from));
            }
        }
        (got, udp_csum_errors() - errors_before)
    });
    // The worker's side: each frame turned around.
    let mut frames = 0;
    let deadline = Instant::now() + Duration::from_secs(5);
    while frames < 5 && Instant::now() < deadline {
        frames += x.poll(turn_around);
        std::thread::sleep(Duration::from_millis(1));
    }
    // Let the last reply leave before the far side stops listening.
    for _ in 0..50 {
        x.poll(|_, _| None);
        std::thread::sleep(Duration::from_millis(2));
    }
    let (got, csum_errors) = far.join().unwrap();
    assert_eq!(frames, 5, "the AF_XDP socket took the five datagrams");
    assert_eq!(drain(&kernel), 0, "none reached the kernel's socket");
    assert_eq!(got.len(), 5, "five replies came back: {:?}", got.iter().map(|g| g.0[0]).collect::<Vec<_>>());
    for (i, (payload, from)) in got.iter().enumerate() {
        assert_eq!(payload, &vec![i as u8; 100]);
        assert_eq!(*from, to, "from the media address and port");
    }
    assert_eq!(csum_errors, 0, "UdpInCsumErrors at the receiver");
    assert_eq!(p.counters().no_socket, 0);
}

/// A burst of 200 frames taken in one poll and sent back in place: copy mode sends at
/// most 32 frames per kick (`xsk_generic_xmit`'s batch), so one flush must kick until the
/// TX ring is empty; all 200 come back without another frame arriving to flush them.
#[test]
fn a_burst_larger_than_one_copy_mode_kick_is_sent_by_one_flush() {
    let Some(v) = topology() else { return };
    let Some(mut p) = attach(&v, Mode::Native) else { return };
    let Some(mut x) = v.xsk(&mut p, 512) else { return };
    let to: std::net::SocketAddr = format!("{}:20005", v.near_v4()).parse().unwrap();
    let far = v.far(move || {
        let s = UdpSocket::bind("0.0.0.0:0").unwrap();
        for i in 0..200u8 {
            s.send_to(&[i; 100], to).unwrap();
        }
        s
    });
    let s = far.join().unwrap();
    // All 200 wait in the RX ring; one poll takes them and sends them back.
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut frames = 0;
    while frames == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
        frames = x.poll(turn_around);
    }
    assert_eq!(frames, 200, "one poll took the burst");
    s.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
    let mut back = 0;
    while s.recv_from(&mut [0u8; 256]).is_ok() {
        back += 1;
    }
    assert_eq!(back, 200, "every frame of the burst came back");
}
