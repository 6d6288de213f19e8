//! The shared relay suite: a media core relaying real UDP, every test on every backend
//! (io_uring, epoll, AF_XDP beside epoll), each with its own port range.

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use common::*;
use ferroswitch_media_plane::sessions::SessionTable;
use ferroswitch_shared::msg::{
    codec, leg_flags, Command, CommandKind, Created, Dtmf, EventKind, Latched, PayloadMap, SessionSpec, StreamStats,
};

fn rtp_and_rtcp_are_relayed_both_ways_from_the_other_legs_port(backend: Backend, ports: u16) {
    let mut core = Core::start_on(ports, backend);
    let (pa, pb, pa_rtcp, pb_rtcp) = (peer(), peer(), peer(), peer());
    let mut leg_a = leg(Some(pa.local_addr().unwrap()), 0);
    leg_a.remote_rtcp_port = pa_rtcp.local_addr().unwrap().port();
    let mut leg_b = leg(Some(pb.local_addr().unwrap()), 0);
    leg_b.remote_rtcp_port = pb_rtcp.local_addr().unwrap().port();
    let [la, lb] = create(&mut core, 1, leg_a, leg_b, 0);
    for seq in 0..20u16 {
        let p = rtp(0, seq, u32::from(seq) * 160, 0xa, &[0xff; 160]);
        pa.send_to(&p, la).unwrap();
        let (got, from) = recv(&pb);
        assert_eq!((got, from), (p, lb), "A→B packet {seq} arrives unchanged from B's local port");
        let q = rtp(0, seq, u32::from(seq) * 160, 0xb, &[0x7f; 160]);
        pb.send_to(&q, lb).unwrap();
        assert_eq!(recv(&pa), (q, la));
    }
    // RTCP goes from our RTCP port (RTP + 1, no rtcp-mux here) to the peer's signalled one.
    let sr = [0x80, 200, 0, 1, 0, 0, 0, 0xa];
    pa_rtcp.send_to(&sr, SocketAddr::new(la.ip(), la.port() + 1)).unwrap();
    let (got, from) = recv(&pb_rtcp);
    assert_eq!((got.as_slice(), from), (&sr[..], SocketAddr::new(lb.ip(), lb.port() + 1)));
    // The periodic report (every 400 ms here) carries the same counters.
    let periodic = *core.expect(EventKind::Stats).body::<StreamStats>();
    assert_eq!((periodic.legs[0].packets, periodic.legs[1].packets), (20, 20));
    core.send(Command::new(CommandKind::Destroy as u16, 0, 1, 1));
    let stats = *core.expect(EventKind::Destroyed).body::<StreamStats>();
    assert_eq!((stats.legs[0].packets, stats.legs[1].packets), (20, 20));
    assert_eq!((stats.legs[0].lost, stats.legs[0].bytes), (0, 20 * 172));
    // The ports are closed: nothing is relayed any more.
    pa.send_to(&rtp(0, 99, 0, 0xa, &[0; 4]), la).unwrap();
    pb.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    assert!(pb.recv_from(&mut [0u8; 64]).is_err());
}

fn a_symmetric_leg_latches_and_strict_source_drops_strangers(backend: Backend, ports: u16) {
    let mut core = Core::start_on(ports, backend);
    // The stranger has another address: the same IP on another port is the peer whose
    // NAT binding changed, and moves the latch.
    let (pa, pb, stranger) = (peer(), peer(), UdpSocket::bind("127.0.0.2:0").unwrap());
    // B's SDP names a port nobody listens on; B's real peer sends from another (a NAT).
    let nowhere: SocketAddr = "127.0.0.1:9".parse().unwrap();
    let flags = leg_flags::SYMMETRIC | leg_flags::STRICT_SOURCE;
    let [la, lb] = create(&mut core, 2, leg(Some(pa.local_addr().unwrap()), 0), leg(Some(nowhere), flags), 0);
    pb.send_to(&rtp(0, 1, 160, 0xb, &[1; 10]), lb).unwrap();
    assert_eq!(recv(&pa).1, la);
    let latched = core.expect(EventKind::Latched);
    let l = latched.body::<Latched>();
    assert_eq!((l.leg, l.peer.addr()), (1, Some(pb.local_addr().unwrap())));
    // A's media now reaches B's real address.
    pa.send_to(&rtp(0, 1, 160, 0xa, &[2; 10]), la).unwrap();
    assert_eq!(recv(&pb).0, rtp(0, 1, 160, 0xa, &[2; 10]));
    // Someone else sending to B's port is dropped and counted.
    stranger.send_to(&rtp(0, 2, 320, 0xee, &[3; 10]), lb).unwrap();
    pb.send_to(&rtp(0, 2, 320, 0xb, &[4; 10]), lb).unwrap();
    assert_eq!(recv(&pa).0, rtp(0, 2, 320, 0xb, &[4; 10]), "only B's own packet arrives");
    core.send(Command::new(CommandKind::Destroy as u16, 0, 2, 1));
    let stats = *core.expect(EventKind::Destroyed).body::<StreamStats>();
    assert_eq!((stats.legs[1].packets, stats.legs[1].dropped, stats.legs[1].drop_strict_source), (2, 1, 1));
    assert_eq!((stats.legs[0].sent, stats.legs[1].sent), (2, 1));
}

fn telephone_events_and_rtp_timeouts_are_reported(backend: Backend, ports: u16) {
    let mut core = Core::start_on(ports, backend);
    let (pa, pb) = (peer(), peer());
    let [la, _] =
        create(&mut core, 3, leg(Some(pa.local_addr().unwrap()), 0), leg(Some(pb.local_addr().unwrap()), 0), 1);
    // Digit 9: two interim packets, then the end packet three times (RFC 4733 §2.5.1.4).
    for (seq, end, dur) in [(1u16, false, 160u16), (2, false, 320), (3, true, 480), (4, true, 480), (5, true, 480)] {
        let payload = [9, if end { 0x80 | 10 } else { 10 }, (dur >> 8) as u8, dur as u8];
        pa.send_to(&rtp(101, seq, 8000, 0xa, &payload), la).unwrap();
        recv(&pb);
    }
    let d = *core.expect(EventKind::Dtmf).body::<Dtmf>();
    assert_eq!((d.event, d.duration, d.volume, d.leg), (9, 480, 10, 0));
    // Then silence: the 1 s RTP timeout fires once.
    let e = core.expect(EventKind::RtpTimeout);
    assert_eq!(e.header.session, 3);
    assert_eq!(e.body::<StreamStats>().legs[0].packets, 5);
    std::thread::sleep(Duration::from_millis(600));
    assert!(core.events.pop().is_none_or(|e| e.kind() != Some(EventKind::RtpTimeout)), "reported once");
}

fn the_rtp_timer_runs_from_the_sessions_creation_not_the_workers_start(backend: Backend, ports: u16) {
    let mut core = Core::start_on(ports, backend);
    // The worker has run longer than the timeout before the session exists.
    std::thread::sleep(Duration::from_millis(1300));
    let before = Instant::now();
    create(&mut core, 6, leg(None, 0), leg(None, 0), 1);
    let e = core.expect(EventKind::RtpTimeout);
    assert_eq!(e.header.session, 6);
    assert!(before.elapsed() >= Duration::from_secs(1), "timed out {:?} after its creation", before.elapsed());
}

fn video_and_rtcp_feedback_are_relayed_like_audio(backend: Backend, ports: u16) {
    let mut core = Core::start_on(ports, backend);
    let (pa, pb) = (peer(), peer());
    // A video m-line with rtcp-mux: H.264 on payload type 96, RTCP on the same port.
    let video = |remote: SocketAddr| {
        let mut l = leg(Some(remote), leg_flags::RTCP_MUX);
        l.media = ferroswitch_shared::msg::media_kind::VIDEO;
        l.codec_count = 1;
        l.codecs[0] = PayloadMap { clock_rate: 90000, pt: 96, codec: codec::OTHER, channels: 0, _pad: 0 };
        l
    };
    let [la, lb] = create(&mut core, 4, video(pa.local_addr().unwrap()), video(pb.local_addr().unwrap()), 0);
    // A large frame fragment (FU-A) with the marker bit.
    let mut frame = rtp(96, 7, 90_000, 0x51, &[0x7c; 1200]);
    frame[1] |= 0x80;
    pa.send_to(&frame, la).unwrap();
    assert_eq!(recv(&pb), (frame, lb));
    // The receiver asks for a key frame: a PLI (RTCP PSFB, PT 206, FMT 1) goes back.
    let pli = [0x81, 206, 0, 2, 0, 0, 0, 0xb, 0, 0, 0, 0xa];
    pb.send_to(&pli, lb).unwrap();
    assert_eq!(recv(&pa), (pli.to_vec(), la));
    // A NACK (RTPFB, PT 205, FMT 1) too.
    let nack = [0x81, 205, 0, 3, 0, 0, 0, 0xb, 0, 0, 0, 0xa, 0, 7, 0, 0];
    pb.send_to(&nack, lb).unwrap();
    assert_eq!(recv(&pa), (nack.to_vec(), la));
}

fn ports_all_held_elsewhere_fail_the_create_and_leave_nothing(backend: Backend, ports: u16) {
    // Another program holds every port of this core's range (ports..ports+199).
    let squatters: Vec<UdpSocket> =
        (ports..ports + 200).filter_map(|p| UdpSocket::bind(("127.0.0.1", p)).ok()).collect();
    assert_eq!(squatters.len(), 200, "the test's port range is free to begin with");
    let mut core = Core::start_on(ports, backend);
    let spec = SessionSpec { legs: [leg(None, 0), leg(None, 0)], rtp_timeout_secs: 0, flags: 0 };
    core.send(Command::new(CommandKind::Create as u16, 0, 9, 1).with_body(&spec));
    let e = core.expect(EventKind::Error);
    assert_eq!(e.body::<ferroswitch_shared::msg::ErrorInfo>().code, ferroswitch_shared::msg::error_code::NO_PORT);
    core.send(Command::new(CommandKind::Query as u16, 0, 0, 0));
    assert_eq!(core.expect(EventKind::QueryDone).body::<ferroswitch_shared::msg::Count>().count, 0);
}

fn an_echo_session_sends_leg_as_media_back_to_it(backend: Backend, ports: u16) {
    let mut core = Core::start_on(ports, backend);
    let pa = peer();
    // The phone's SDP address is unusable (behind NAT): the echo latches it.
    let mut spec = SessionSpec { legs: [leg(None, 0), leg(None, 0)], rtp_timeout_secs: 0, flags: 0 };
    spec.flags = ferroswitch_shared::msg::session_flags::ECHO;
    core.send(Command::new(CommandKind::Create as u16, 0, 5, 1).with_body(&spec));
    let la = core.expect(EventKind::Created).body::<Created>().local[0].addr().unwrap();
    for seq in 0..5u16 {
        let p = rtp(0, seq, u32::from(seq) * 160, 0xe, &[0x55; 160]);
        pa.send_to(&p, la).unwrap();
        assert_eq!(recv(&pa), (p, la), "packet {seq} comes back from the port it went to");
    }
}

fn the_next_sessions_ports_are_bound_ahead_within_the_range_and_relay(backend: Backend, ports: u16) {
    // Five RTP ports: ports, +2, .. +8 (RTCP up to +9, the range's end).
    let mut core = Core::start_with(ports, ports + 9, backend);
    let (pa, pb) = (peer(), peer());
    let [l0a, l0b] = create(&mut core, 1, leg(None, 0), leg(None, 0), 0);
    assert_eq!([l0a.port(), l0b.port()], [ports, ports + 2]);
    // Once the create is answered the worker binds the next ports: a command after it
    // (the ping) is taken in a later turn, after the refill.
    core.send(Command::new(CommandKind::Ping as u16, 0, 0, 0));
    core.expect(EventKind::Pong);
    for p in ports + 4..=ports + 9 {
        assert!(UdpSocket::bind(("127.0.0.1", p)).is_err(), "port {p} is bound ahead");
    }
    for p in [ports - 2, ports - 1, ports + 10, ports + 11] {
        assert!(UdpSocket::bind(("127.0.0.1", p)).is_ok(), "port {p} is outside the range and left alone");
    }
    // A stranger's packet to a port bound ahead, before its session exists, is dropped.
    let stranger = peer();
    let next: SocketAddr = ("127.0.0.1".parse::<std::net::IpAddr>().unwrap(), ports + 4).into();
    stranger.send_to(&rtp(0, 999, 0, 0xdead, &[0; 160]), next).unwrap();
    // The next session gets the ports the table hands out next, and relays on them.
    let [la, lb] =
        create(&mut core, 2, leg(Some(pa.local_addr().unwrap()), 0), leg(Some(pb.local_addr().unwrap()), 0), 0);
    assert_eq!([la.port(), lb.port()], [ports + 4, ports + 6]);
    let p = rtp(0, 1, 160, 0xa, &[0x11; 160]);
    pa.send_to(&p, la).unwrap();
    assert_eq!(recv(&pb), (p, lb), "the first packet B gets is A's, not the stranger's");
    let p = rtp(0, 1, 160, 0xb, &[0x22; 160]);
    pb.send_to(&p, lb).unwrap();
    assert_eq!(recv(&pa), (p, la));
    // A destroyed session's sockets stay bound, in the quarantine, for the port's next
    // session.
    core.send(Command::new(CommandKind::Destroy as u16, 0, 2, 1));
    core.expect(EventKind::Destroyed);
    core.send(Command::new(CommandKind::Ping as u16, 0, 0, 0));
    core.expect(EventKind::Pong);
    drop(stranger);
    for p in ports + 4..=ports + 7 {
        assert!(UdpSocket::bind(("127.0.0.1", p)).is_err(), "port {p} is still held, quarantined");
    }
}

fn a_freed_ports_next_session_reuses_its_sockets_drops_late_rtp_and_relays(backend: Backend, ports: u16) {
    // No reuse delay, so the next create gets the freed ports at once (the delay itself is
    // the table's, tested there with its clock).
    let table = SessionTable::with_order(
        0,
        ports,
        ports + 199,
        Duration::ZERO,
        ferroswitch_media_plane::sessions::PortOrder::Sequential,
    );
    let mut core = Core::start_table(table, backend);
    let (pa, pb) = (peer(), peer());
    let [a1, b1] = create(&mut core, 1, leg(None, 0), leg(None, 0), 0);
    core.send(Command::new(CommandKind::Destroy as u16, 0, 1, 1));
    core.expect(EventKind::Destroyed);
    for p in [a1, b1] {
        assert!(UdpSocket::bind(p).is_err(), "{p} stays bound while quarantined");
    }
    // Late RTP from the first call's peers reaches the quarantined sockets.
    let late = peer();
    for p in [a1, b1] {
        late.send_to(&rtp(0, 7, 0, 0xdead, &[0x99; 160]), p).unwrap();
    }
    let [a2, b2] =
        create(&mut core, 2, leg(Some(pa.local_addr().unwrap()), 0), leg(Some(pb.local_addr().unwrap()), 0), 0);
    assert_eq!([a2, b2], [a1, b1], "the next session gets the freed ports");
    for round in 0..3u16 {
        let p = rtp(0, round, 160, 0xa, &[0x11; 160]);
        pa.send_to(&p, a2).unwrap();
        assert_eq!(recv(&pb), (p, b2), "what B gets is A's, never the late packet");
        let p = rtp(0, round, 160, 0xb, &[0x22; 160]);
        pb.send_to(&p, b2).unwrap();
        assert_eq!(recv(&pa), (p, a2), "what A gets is B's, never the late packet");
    }
    // Once more around: the second session's sockets go back and serve a third.
    core.send(Command::new(CommandKind::Destroy as u16, 0, 2, 1));
    core.expect(EventKind::Destroyed);
    let [a3, b3] =
        create(&mut core, 3, leg(Some(pa.local_addr().unwrap()), 0), leg(Some(pb.local_addr().unwrap()), 0), 0);
    assert_eq!([a3, b3], [a1, b1]);
    let p = rtp(0, 9, 160, 0xa, &[0x33; 160]);
    pa.send_to(&p, a3).unwrap();
    assert_eq!(recv(&pb), (p, b3));
}

fn rtcp_before_rtp_latches_only_rtcp_and_strangers_never_latch(backend: Backend, ports: u16) {
    let mut core = Core::start_with(ports, ports + 99, backend);
    let (pa, pa_rtcp, pb, pb_rtcp) = (peer(), peer(), peer(), peer());
    let stranger = UdpSocket::bind("127.0.0.2:0").unwrap();
    let flags = leg_flags::SYMMETRIC | leg_flags::STRICT_SOURCE | leg_flags::LATCH_SIGNALLED;
    let mut leg_a = leg(Some(pa.local_addr().unwrap()), flags);
    leg_a.remote_rtcp_port = pa_rtcp.local_addr().unwrap().port();
    // B before its answer: nothing signalled.
    let [la, lb] = create(&mut core, 1, leg_a, leg(None, flags), 0);
    let rtcp = [0x80, 200, 0, 1, 0, 0, 0, 0xb];
    let lb_rtcp = SocketAddr::new(lb.ip(), lb.port() + 1);
    // A stranger races the callee for both legs' ports before anyone latched.
    stranger.send_to(&rtp(0, 1, 160, 0xee, &[9; 10]), lb).unwrap();
    stranger.send_to(&rtp(0, 1, 160, 0xee, &[9; 10]), la).unwrap();
    // B's answer, then B sends RTCP first (baresip does), from its RTCP socket.
    let mut leg_b = leg(Some(pb.local_addr().unwrap()), flags);
    leg_b.remote_rtcp_port = pb_rtcp.local_addr().unwrap().port();
    let spec = SessionSpec { legs: [leg_a, leg_b], rtp_timeout_secs: 0, flags: 0 };
    core.send(Command::new(CommandKind::Update as u16, 0, 1, 2).with_body(&spec));
    core.expect(EventKind::Updated);
    pb_rtcp.send_to(&rtcp, lb_rtcp).unwrap();
    assert_eq!(recv(&pa_rtcp).0, rtcp, "B's RTCP reaches A's RTCP port");
    // A's RTP reaches B's RTP port (before the fix: dropped, no RTP peer).
    pa.send_to(&rtp(0, 1, 160, 0xa, &[1; 10]), la).unwrap();
    assert_eq!(recv(&pb).0, rtp(0, 1, 160, 0xa, &[1; 10]));
    pb.send_to(&rtp(0, 1, 160, 0xb, &[2; 10]), lb).unwrap();
    assert_eq!(recv(&pa).0, rtp(0, 1, 160, 0xb, &[2; 10]));
    core.send(Command::new(CommandKind::Destroy as u16, 0, 1, 2));
    let st = *core.expect(EventKind::Destroyed).body::<StreamStats>();
    let (a, b) = (st.legs[0], st.legs[1]);
    assert_eq!((a.packets, a.drop_strict_source, a.sent), (1, 1, 2), "A: its packet in, the stranger's refused");
    assert_eq!((b.packets, b.rtcp_packets, b.drop_strict_source, b.sent), (1, 1, 1, 1));
}

fn a_session_pointed_at_its_own_port_drops_the_loop(backend: Backend, ports: u16) {
    let mut core = Core::start_with(ports, ports + 99, backend);
    let pa = peer();
    let [la, _] = create(&mut core, 1, leg(Some(pa.local_addr().unwrap()), 0), leg(None, 0), 0);
    // B's "peer" is A's own media port: every packet would come back forever.
    let spec =
        SessionSpec { legs: [leg(Some(pa.local_addr().unwrap()), 0), leg(Some(la), 0)], rtp_timeout_secs: 0, flags: 0 };
    core.send(Command::new(CommandKind::Update as u16, 0, 1, 2).with_body(&spec));
    core.expect(EventKind::Updated);
    pa.send_to(&rtp(0, 1, 160, 0xa, &[1; 10]), la).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    core.send(Command::new(CommandKind::Destroy as u16, 0, 1, 2));
    let st = *core.expect(EventKind::Destroyed).body::<StreamStats>();
    assert_eq!((st.legs[0].packets, st.legs[0].drop_loop, st.legs[1].sent), (1, 1, 1), "one trip, then dropped");
}

/// Every relay test, on each backend, each with a port range of its own.
macro_rules! on_backend {
    ($name:ident, $backend:expr, $base:expr, $wrap:path) => {
        mod $name {
            use super::*;

            #[test]
            fn rtp_and_rtcp_are_relayed_both_ways() {
                $wrap(|| super::rtp_and_rtcp_are_relayed_both_ways_from_the_other_legs_port($backend, $base));
            }

            #[test]
            fn symmetric_latching_and_strict_source() {
                $wrap(|| super::a_symmetric_leg_latches_and_strict_source_drops_strangers($backend, $base + 400));
            }

            #[test]
            fn dtmf_and_rtp_timeout_events() {
                $wrap(|| super::telephone_events_and_rtp_timeouts_are_reported($backend, $base + 800));
            }

            #[test]
            fn rtp_timer_starts_at_creation() {
                $wrap(|| {
                    super::the_rtp_timer_runs_from_the_sessions_creation_not_the_workers_start($backend, $base + 600)
                });
            }

            #[test]
            fn echo() {
                $wrap(|| super::an_echo_session_sends_leg_as_media_back_to_it($backend, $base + 1800));
            }

            #[test]
            fn no_free_port() {
                $wrap(|| super::ports_all_held_elsewhere_fail_the_create_and_leave_nothing($backend, $base + 1600));
            }

            #[test]
            fn reused_sockets() {
                $wrap(|| {
                    super::a_freed_ports_next_session_reuses_its_sockets_drops_late_rtp_and_relays(
                        $backend,
                        $base + 1000,
                    )
                });
            }

            #[test]
            fn ports_bound_ahead() {
                $wrap(|| {
                    super::the_next_sessions_ports_are_bound_ahead_within_the_range_and_relay($backend, $base + 200)
                });
            }

            #[test]
            fn rtcp_first_and_strangers() {
                $wrap(|| super::rtcp_before_rtp_latches_only_rtcp_and_strangers_never_latch($backend, $base + 1400));
            }

            #[test]
            fn media_loop() {
                $wrap(|| super::a_session_pointed_at_its_own_port_drops_the_loop($backend, $base + 1500));
            }

            #[test]
            fn video_and_rtcp_feedback() {
                $wrap(|| super::video_and_rtcp_feedback_are_relayed_like_audio($backend, $base + 1200));
            }
        }
    };
}

// Each backend's tests take 200-port blocks from its base, all below the kernel's
// ephemeral range (32768 and up), where any client socket could take a port under a test.
on_backend!(epoll, Backend::Epoll, 26000, direct);
on_backend!(io_uring, Backend::IoUring, 28000, direct);
// In namespaces of their own: the same ports as epoll's cannot collide.
on_backend!(af_xdp, Backend::AfXdp, 26000, in_namespace);
