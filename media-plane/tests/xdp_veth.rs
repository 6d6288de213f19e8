//! The af_xdp backend on a veth pair as the media plane sets it up (`server::setup_xdp`):
//! in place both ways, next hops from the kernel's tables, frames handed between
//! workers, the program detached mid-call. Root only; each test makes and removes its own
//! namespaces and links.

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use common::*;
use ferroswitch_shared::msg::{Endpoint, LegSpec};

/// A veth pair, the near end here (10.79.N.1) and the far end in a namespace of its own
/// (10.79.N.2); removed when dropped.
struct Veth {
    ns: String,
    near: String,
    n: u32,
}

impl Veth {
    fn new(n: u32) -> Veth {
        Veth::with_queues(n, 1)
    }

    /// With `queues` receive and transmit queues at each end.
    fn with_queues(n: u32, queues: u32) -> Veth {
        let q = queues.to_string();
        use std::process::Command;
        let ip = |args: &[&str]| assert!(Command::new("ip").args(args).status().unwrap().success(), "ip {args:?}");
        let v = Veth { ns: format!("fsv{}-{n}", std::process::id()), near: format!("fsva{n}"), n };
        let far = format!("fsvb{n}");
        ip(&["netns", "add", &v.ns]);
        let (near_mac, far_mac) = (v.mac(1), v.mac(2));
        ip(&[
            "link",
            "add",
            &v.near,
            "address",
            &near_mac,
            "numtxqueues",
            &q,
            "numrxqueues",
            &q,
            "type",
            "veth",
            "peer",
            "name",
            &far,
            "address",
            &far_mac,
            "numtxqueues",
            &q,
            "numrxqueues",
            &q,
            "netns",
            &v.ns,
        ]);
        ip(&["addr", "add", &format!("10.79.{n}.1/24"), "dev", &v.near]);
        ip(&["addr", "add", &format!("fd79::{n}:1/112"), "dev", &v.near, "nodad"]);
        ip(&["link", "set", &v.near, "up"]);
        ip(&["-n", &v.ns, "addr", "add", &format!("10.79.{n}.2/24"), "dev", &far]);
        ip(&["-n", &v.ns, "addr", "add", &format!("fd79::{n}:2/112"), "dev", &far, "nodad"]);
        ip(&["-n", &v.ns, "link", "set", &far, "up"]);
        v
    }

    /// The MAC of the near (1) or far (2) end.
    fn mac(&self, end: u8) -> String {
        format!("02:79:00:00:{:02x}:{end:02x}", self.n)
    }

    /// Sets the near side's neighbour entry for the far address `ip` to `mac`, by hand.
    fn neighbour(&self, ip: &str, mac: &str) {
        let ok = std::process::Command::new("ip")
            .args(["neigh", "replace", ip, "lladdr", mac, "nud", "permanent", "dev", &self.near])
            .status()
            .unwrap()
            .success();
        assert!(ok, "ip neigh replace {ip}");
    }

    /// A socket on the far side (a socket keeps the namespace it was made in).
    fn far_socket(&self) -> UdpSocket {
        self.far_socket_at(format!("10.79.{}.2:0", self.n))
    }

    /// A socket on the far side at `addr`.
    fn far_socket_at(&self, addr: String) -> UdpSocket {
        self.on_far(move || {
            let s = UdpSocket::bind(addr).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            s
        })
    }

    /// The far namespace's `Udp: InCsumErrors`.
    fn far_csum_errors(&self) -> u64 {
        self.on_far(|| {
            let snmp = std::fs::read_to_string("/proc/thread-self/net/snmp").unwrap();
            let mut lines = snmp.lines().filter(|l| l.starts_with("Udp: "));
            let (names, values) = (lines.next().unwrap(), lines.next().unwrap());
            let i = names.split_whitespace().position(|n| n == "InCsumErrors").unwrap();
            values.split_whitespace().nth(i).unwrap().parse::<u64>().unwrap()
        })
    }
}

impl Drop for Veth {
    fn drop(&mut self) {
        use std::process::Command;
        let _ = Command::new("ip").args(["link", "del", &self.near]).status();
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).status();
    }
}

/// The af_xdp backend as the media plane sets it up (`server::setup_xdp`) on a veth: a
/// call's RTP both ways between two peers on the far side, sent back out in place by the
/// AF_XDP socket toward the MAC the kernel resolved for them; the far kernel accepts every
/// checksum.
fn af_xdp_over_a_veth(v6: bool) {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 || !ferroswitch_media_plane::xdp::Program::built() {
        eprintln!("skipped: needs root and a build with the XDP program");
        return;
    }
    let v = Veth::new(30 + std::process::id() % 100 * 2 + u32::from(v6));
    let near: std::net::IpAddr =
        if v6 { format!("fd79::{}:1", v.n).parse().unwrap() } else { format!("10.79.{}.1", v.n).parse().unwrap() };
    let ports = if v6 { (23200, 23399) } else { (23000, 23199) };
    let mut core = Core::start_with(ports.0, ports.1, Backend::Epoll);
    // The far host's MAC resolved already: the table the workers start with has it (a
    // peer the kernel has not resolved yet is sent to through the kernel socket, which
    // makes the kernel resolve it).
    let far_ip = if v6 { format!("fd79::{}:2", v.n) } else { format!("10.79.{}.2", v.n) };
    v.neighbour(&far_ip, &v.mac(2));
    let Some(p) = xdp_on(&v, near, &[(&core.tx, &core.wake)], ports) else { return };
    let far = |_| if v6 { v.far_socket_at(format!("[fd79::{}:2]:0", v.n)) } else { v.far_socket() };
    let (a, b) = (far(0), far(1));
    let [la, lb] = far_call(&mut core, 7, near, &a, &b);
    let errors = v.far_csum_errors();
    let udp6_out = || -> u64 {
        let t = std::fs::read_to_string("/proc/net/snmp6").unwrap();
        t.lines().find_map(|l| l.strip_prefix("Udp6OutDatagrams")).unwrap().trim().parse().unwrap()
    };
    let sent_by_kernel = udp6_out();
    for i in 0..10u16 {
        a.send_to(&rtp(0, i, u32::from(i) * 160, 0xa, &[0x55; 160]), la).unwrap();
        let (got, from) = recv(&b);
        assert_eq!((got.len(), from), (172, lb), "A -> B, packet {i}");
        b.send_to(&rtp(0, i, u32::from(i) * 160, 0xb, &[0x66; 160]), lb).unwrap();
        let (got, from) = recv(&a);
        assert_eq!((got.len(), from, got[12]), (172, la, 0x66), "B -> A, packet {i}");
    }
    assert_eq!(v.far_csum_errors() - errors, 0, "UdpInCsumErrors on the far side");
    if v6 {
        // Nothing left through the kernel's UDP (no other test here sends IPv6): both
        // peers are on the far host, whose MAC the kernel's table gave, so all 20 went out
        // in place from the AF_XDP socket.
        assert_eq!(udp6_out() - sent_by_kernel, 0, "sent through the kernel socket");
    }
    let c = p.counters();
    assert_eq!((c.media, c.no_socket, c.other_queue), (20, 0, 0), "every media frame through the AF_XDP socket");
    // The program detached mid-call (a crashed or stopped loader, `ip link set dev X xdp
    // off`): the call goes on through the kernel sockets, which stayed bound.
    drop(p);
    for i in 10..15u16 {
        a.send_to(&rtp(0, i, u32::from(i) * 160, 0xa, &[0x55; 160]), la).unwrap();
        assert_eq!(recv(&b).1, lb, "A -> B through the kernel, packet {i}");
        b.send_to(&rtp(0, i, u32::from(i) * 160, 0xb, &[0x66; 160]), lb).unwrap();
        assert_eq!(recv(&a).1, la, "B -> A through the kernel, packet {i}");
    }
    drop(core);
}

#[test]
fn af_xdp_on_a_veth_relays_both_ways_in_place_with_checksums_the_kernel_accepts() {
    af_xdp_over_a_veth(false);
}

#[test]
fn af_xdp_on_a_veth_relays_ipv6_both_ways_in_place() {
    af_xdp_over_a_veth(true);
}

impl Veth {
    /// The far end's name.
    fn far(&self) -> String {
        format!("fsvb{}", self.n)
    }

    /// Runs `f` on a thread inside the far namespace.
    fn on_far<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let ns = std::fs::File::open(format!("/run/netns/{}", self.ns)).unwrap();
        std::thread::spawn(move || {
            use std::os::fd::AsRawFd;
            // SAFETY: a valid namespace fd; moves this thread only.
            assert_eq!(unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) }, 0, "setns");
            f()
        })
        .join()
        .unwrap()
    }

    /// Runs a shell command in the far namespace (its own /sys).
    fn far_sh(&self, cmd: &str) {
        let ok = std::process::Command::new("ip").args(["netns", "exec", &self.ns, "sh", "-c", cmd]).status().unwrap();
        assert!(ok.success(), "{cmd}");
    }
}

/// This namespace's `Udp6OutDatagrams` (what the kernel's sockets sent over IPv6).
fn udp6_out() -> u64 {
    let t = std::fs::read_to_string("/proc/thread-self/net/snmp6").unwrap();
    t.lines().find_map(|l| l.strip_prefix("Udp6OutDatagrams")).unwrap().trim().parse().unwrap()
}

/// The af_xdp backend set up on the veth's near end for `ends`' workers over `ports`.
fn xdp_on(
    v: &Veth,
    near: std::net::IpAddr,
    ends: &[(
        &std::sync::mpsc::Sender<ferroswitch_media_plane::worker::WorkerMsg>,
        &ferroswitch_shared::doorbell::Doorbell,
    )],
    ports: (u16, u16),
) -> Option<ferroswitch_media_plane::server::XdpBackend> {
    use ferroswitch_media_plane::server::{setup_xdp, XdpOptions};
    let opts = XdpOptions {
        interface: v.near.clone(),
        mode: Some(ferroswitch_media_plane::xdp::Mode::Native),
        bind: Some(ferroswitch_media_plane::xsk::XskMode::Copy),
        ipv4: match near {
            std::net::IpAddr::V4(a) => Some(a),
            _ => None,
        },
        ipv6: match near {
            std::net::IpAddr::V6(a) => Some(a),
            _ => None,
        },
        frames: 256,
    };
    match setup_xdp(&opts, ends, ports) {
        Ok(p) => Some(p),
        Err(e) => {
            eprintln!("skipped: the kernel refuses AF_XDP here: {e}");
            None
        }
    }
}

/// A session on `core` between two far-side peers, both legs on `near`.
fn far_call(core: &mut Core, id: u64, near: std::net::IpAddr, a: &UdpSocket, b: &UdpSocket) -> [SocketAddr; 2] {
    let local = |r: SocketAddr| LegSpec { local: Endpoint::from_addr(SocketAddr::new(near, 0)), ..leg(Some(r), 0) };
    create(core, id, local(a.local_addr().unwrap()), local(b.local_addr().unwrap()), 0)
}

/// Sends RTP from `from` to `to` every 10 ms until `rx` gets one (true) or 5 s pass.
fn gets_through(from: &UdpSocket, to: SocketAddr, rx: &UdpSocket) -> bool {
    rx.set_read_timeout(Some(Duration::from_millis(10))).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let mut seq = 1000u16;
    while std::time::Instant::now() < deadline {
        from.send_to(&rtp(0, seq, u32::from(seq) * 160, 0xa, &[0x55; 160]), to).unwrap();
        seq = seq.wrapping_add(1);
        if rx.recv_from(&mut [0u8; 2048]).is_ok() {
            rx.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            return true;
        }
    }
    false
}

/// Sends RTP from `from` to `to` until 10 in a row are lost on the way to `rx` (true), or
/// 5 s pass.
fn stops_getting_through(from: &UdpSocket, to: SocketAddr, rx: &UdpSocket) -> bool {
    rx.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let (mut lost, mut seq) = (0, 2000u16);
    while std::time::Instant::now() < deadline && lost < 10 {
        from.send_to(&rtp(0, seq, u32::from(seq) * 160, 0xa, &[0x55; 160]), to).unwrap();
        seq = seq.wrapping_add(1);
        lost = if rx.recv_from(&mut [0u8; 2048]).is_ok() { 0 } else { lost + 1 };
    }
    rx.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    lost >= 10
}

/// A frame from `src_mac`/`src` to `dst_mac`/`dst` carrying `payload`, checksums done.
fn udp_frame(src_mac: [u8; 6], dst_mac: [u8; 6], src: SocketAddr, dst: SocketAddr, payload: &[u8]) -> Vec<u8> {
    let (std::net::IpAddr::V4(s), std::net::IpAddr::V4(d)) = (src.ip(), dst.ip()) else { panic!("IPv4 only") };
    let mut f = Vec::new();
    f.extend(dst_mac);
    f.extend(src_mac);
    f.extend([0x08, 0x00]);
    let total = (20 + 8 + payload.len()) as u16;
    f.extend([0x45, 0, (total >> 8) as u8, total as u8, 0, 0, 0x40, 0, 64, 17, 0, 0]);
    f.extend(s.octets());
    f.extend(d.octets());
    f.extend(src.port().to_be_bytes());
    f.extend(dst.port().to_be_bytes());
    f.extend(((8 + payload.len()) as u16).to_be_bytes());
    f.extend([0, 0]);
    f.extend(payload);
    assert!(ferroswitch_media_plane::xsk::fix_checksums(&mut f, 14));
    f
}

fn parse_mac(s: &str) -> [u8; 6] {
    let b: Vec<u8> = s.split(':').map(|h| u8::from_str_radix(h, 16).unwrap()).collect();
    b.try_into().unwrap()
}

/// A stranger on the far link sends a frame with peer A's IP and port and a MAC of its
/// own. Where A's media goes is the kernel's neighbour entry for A, not that frame's
/// source: B's RTP still reaches A. (Learning next hops from frames would send A's media
/// to the stranger's MAC, and A would hear nothing.)
#[test]
fn a_forged_frames_source_mac_does_not_draw_a_peers_media() {
    in_namespace(|| {
        let v = Veth::new(1);
        let near: std::net::IpAddr = "10.79.1.1".parse().unwrap();
        let mut core = Core::start_with(23400, 23599, Backend::Epoll);
        v.neighbour("10.79.1.2", &v.mac(2));
        let Some(p) = xdp_on(&v, near, &[(&core.tx, &core.wake)], (23400, 23599)) else { return };
        let (a, b) = (v.far_socket(), v.far_socket());
        let [la, lb] = far_call(&mut core, 1, near, &a, &b);
        assert!(gets_through(&a, la, &b), "A -> B");
        assert!(gets_through(&b, lb, &a), "B -> A");
        // The forged frame, sent raw on the far end.
        let frame = udp_frame(
            [0x02, 0x66, 0x66, 0x66, 0x66, 0x66],
            parse_mac(&v.mac(1)),
            a.local_addr().unwrap(),
            la,
            &rtp(0, 500, 80_000, 0xa, &[0x55; 160]),
        );
        let far = v.far();
        v.on_far(move || {
            let name = std::ffi::CString::new(far).unwrap();
            // SAFETY: plain socket calls on live values; the fd is closed below.
            unsafe {
                let fd = libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0);
                assert!(fd >= 0, "AF_PACKET socket");
                let mut sll: libc::sockaddr_ll = std::mem::zeroed();
                sll.sll_family = libc::AF_PACKET as u16;
                sll.sll_ifindex = libc::if_nametoindex(name.as_ptr()) as i32;
                sll.sll_halen = 6;
                let n = libc::sendto(
                    fd,
                    frame.as_ptr().cast(),
                    frame.len(),
                    0,
                    (&sll as *const libc::sockaddr_ll).cast(),
                    size_of::<libc::sockaddr_ll>() as u32,
                );
                assert_eq!(n, frame.len() as isize, "the forged frame sent");
                libc::close(fd);
            }
        });
        // The forged frame came through the AF_XDP socket (and, from A's own address, was
        // relayed to B like A's own).
        // (A's probes from above that were still on their way come first.)
        let mut buf = [0u8; 2048];
        loop {
            let (n, _) = b.recv_from(&mut buf).expect("the forged frame relayed to B");
            assert_eq!(n, 172);
            if buf[2..4] == 500u16.to_be_bytes() {
                break;
            }
        }
        while a.set_read_timeout(Some(Duration::from_millis(50))).is_ok() && a.recv_from(&mut buf).is_ok() {}
        a.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        for i in 0..5 {
            b.send_to(&rtp(0, 3000 + i, 0, 0xb, &[0x66; 160]), lb).unwrap();
            assert_eq!(recv(&a).1, la, "B -> A after the forged frame, packet {i}");
        }
        assert_eq!(p.counters().no_socket, 0);
    });
}

/// The kernel's neighbour table is followed as it changes: a peer's entry pointed at
/// another MAC takes its media away (the frames leave for that MAC), pointed back brings
/// it back, and a peer the kernel has not resolved goes through the kernel socket (which
/// resolves it) before it goes out in place again.
#[test]
fn next_hops_follow_the_kernels_neighbour_table() {
    in_namespace(|| {
        let v = Veth::new(2);
        let near: std::net::IpAddr = "fd79::2:1".parse().unwrap();
        let mut core = Core::start_with(23600, 23799, Backend::Epoll);
        let Some(p) = xdp_on(&v, near, &[(&core.tx, &core.wake)], (23600, 23799)) else { return };
        let (a, b) = (v.far_socket_at("[fd79::2:2]:0".into()), v.far_socket_at("[fd79::2:2]:0".into()));
        let [la, lb] = far_call(&mut core, 1, near, &a, &b);
        // Not resolved at first: the kernel's socket carries A's first frames to B (and
        // resolves B's address).
        let kernel = udp6_out();
        assert!(gets_through(&a, la, &b), "A -> B, unresolved");
        assert!(udp6_out() > kernel, "the first frames went through the kernel socket");
        // Resolved and confirmed (a kernel socket's datagram makes the kernel probe):
        // frames go out in place.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            let before = udp6_out();
            a.send_to(&rtp(0, 1, 160, 0xa, &[0x55; 160]), la).unwrap();
            recv(&b);
            if udp6_out() == before {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "never in place");
            std::thread::sleep(Duration::from_millis(20));
        }
        let before = udp6_out();
        for i in 0..10 {
            a.send_to(&rtp(0, 10 + i, 0, 0xa, &[0x55; 160]), la).unwrap();
            assert_eq!(recv(&b).1, lb);
        }
        assert_eq!(udp6_out() - before, 0, "in place once resolved");
        // Pointed at a MAC nobody has: B hears nothing, then again once it is right.
        v.neighbour("fd79::2:2", "02:79:00:00:99:99");
        assert!(stops_getting_through(&a, la, &b), "the frames followed the changed entry");
        v.neighbour("fd79::2:2", &v.mac(2));
        assert!(gets_through(&a, la, &b), "and came back with it");
        assert_eq!(p.counters().no_socket, 0);
    });
}

/// Two workers, two queues, and every frame arriving on queue 1 (the far end's transmit
/// queue forced by XPS; no ntuple rule steers by port): frames for worker 0's session are
/// handed to worker 0 over its ring, relayed there and sent from its own AF_XDP socket;
/// worker 1's session is relayed where it lands. Nothing goes through the kernel.
#[test]
fn frames_for_another_workers_port_are_handed_to_it() {
    in_namespace(|| {
        use ferroswitch_media_plane::server::port_slice;
        use ferroswitch_media_plane::sessions::{PortOrder, SessionTable, PORT_REUSE_DELAY};
        let v = Veth::with_queues(3, 2);
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()).min(31);
        v.far_sh(&format!(
            "echo 0 > /sys/class/net/{far}/queues/tx-0/xps_cpus && echo {:x} > /sys/class/net/{far}/queues/tx-1/xps_cpus",
            (1u32 << cpus) - 1,
            far = v.far()
        ));
        let near: std::net::IpAddr = "fd79::3:1".parse().unwrap();
        let range = (23800, 23999);
        let mut cores: Vec<Core> = (0..2)
            .map(|i| {
                let (lo, hi) = port_slice(range.0, range.1, i, 2);
                let table = SessionTable::with_order(i as u16, lo, hi, PORT_REUSE_DELAY, PortOrder::Sequential);
                Core::start_table(table, Backend::Epoll)
            })
            .collect();
        v.neighbour("fd79::3:2", &v.mac(2));
        let ends: Vec<_> = cores.iter().map(|c| (&c.tx, &c.wake)).collect();
        let Some(p) = xdp_on(&v, near, &ends, range) else { return };
        let far = || v.far_socket_at("[fd79::3:2]:0".into());
        let (a0, b0, a1, b1) = (far(), far(), far(), far());
        let [la0, lb0] = far_call(&mut cores[0], 1, near, &a0, &b0);
        let [la1, lb1] = far_call(&mut cores[1], 2, near, &a1, &b1);
        assert!(la0.port() < port_slice(range.0, range.1, 1, 2).0, "session 1 on worker 0's ports");
        let kernel = udp6_out();
        for i in 0..10u16 {
            for (a, b, la, lb) in [(&a0, &b0, la0, lb0), (&a1, &b1, la1, lb1)] {
                a.send_to(&rtp(0, i, u32::from(i) * 160, 0xa, &[0x55; 160]), la).unwrap();
                let (got, from) = recv(b);
                assert_eq!((got.len(), from), (172, lb), "A -> B, packet {i}");
                b.send_to(&rtp(0, i, u32::from(i) * 160, 0xb, &[0x66; 160]), lb).unwrap();
                let (got, from) = recv(a);
                assert_eq!((got.len(), from, got[12]), (172, la, 0x66), "B -> A, packet {i}");
            }
        }
        let c = p.counters();
        assert_eq!(udp6_out() - kernel, 0, "sent through the kernel socket ({c:?})");
        assert_eq!((c.media, c.other_queue, c.no_socket), (40, 20, 0), "worker 0's 20 frames handed over: {c:?}");
    });
}
