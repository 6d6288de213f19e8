//! A UAC's transaction layer against the sans-IO switch over the seeded simulated
//! network (STYLE.md §3): loss, delay and reordering on a virtual clock, no sockets.
//! Each seed is one deterministic run; the outcome must hold for every seed.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use control_plane::config::Config;
use control_plane::ids::IdGen;
use control_plane::netsim::Network;
use control_plane::sip::message::write::Writer;
use control_plane::sip::message::{Framing, HeaderName, Message};
use control_plane::sip::transaction::{Event, Output, TimerConfig, TransactionLayer};
use control_plane::sip::transport::{Peer, TransportKind};
use control_plane::switch::Switch;

const UAC: &str = "127.0.0.1:5070";
const SWITCH: &str = "127.0.0.1:5060";

struct Run {
    /// Final statuses the UAC saw, with the virtual time since the start.
    finals: Vec<(u16, Duration, Message)>,
    provisionals: Vec<u16>,
    timeouts: usize,
    switch_transactions_at_end: usize,
    dropped: u64,
}

fn request(method: &str, call_id: &str, extra: &str) -> Message {
    let mut buf = Vec::new();
    let mut w = Writer::request(&mut buf, method.as_bytes(), b"sip:1001@127.0.0.1");
    w.header("Via", format!("SIP/2.0/UDP {UAC};branch=z9hG4bK{call_id};rport"));
    w.header("Max-Forwards", "70");
    w.header("From", "<sip:1000@127.0.0.1>;tag=uac1");
    w.header("To", "<sip:1001@127.0.0.1>");
    w.header("Call-ID", call_id);
    w.header("CSeq", format!("1 {method}"));
    w.header("Contact", format!("<sip:1000@{UAC}>"));
    for line in extra.lines() {
        let (n, v) = line.split_once(": ").unwrap();
        w.header(n, v);
    }
    w.finish(b"");
    Message::parse(Bytes::from(buf), Framing::Datagram).unwrap()
}

/// Runs one request from the UAC through the network to the switch until both sides
/// are idle or 64 virtual seconds pass.
fn run(seed: u64, loss: f64, req: Message) -> Run {
    let start = Instant::now();
    let (uac, sw): (SocketAddr, SocketAddr) = (UAC.parse().unwrap(), SWITCH.parse().unwrap());
    let mut net = Network::new(seed);
    net.set_loss(loss).set_delay(Duration::from_millis(5), Duration::from_millis(80));
    let mut client = TransactionLayer::new(TimerConfig::default());
    let mut switch = Switch::new(&Config::embedded().unwrap(), IdGen::from_seed(seed), start, 1_800_000_000);
    let to_switch = Peer { transport: TransportKind::Udp, remote: sw, local: uac };
    client.request(start, req, to_switch).unwrap();
    let mut out = Run { finals: vec![], provisionals: vec![], timeouts: 0, switch_transactions_at_end: 0, dropped: 0 };
    let mut now = start;
    let bound = start + Duration::from_secs(64);
    loop {
        while let Some(o) = client.poll_output() {
            match o {
                Output::Transmit { peer, bytes } => net.send(now, uac, peer.remote, bytes),
                Output::Event(Event::Response { msg, .. }) => match msg.status().unwrap() {
                    s if s < 200 => out.provisionals.push(s),
                    s => out.finals.push((s, now - start, msg)),
                },
                Output::Event(Event::Timeout { .. }) => out.timeouts += 1,
                Output::Event(_) => {}
            }
        }
        while let Some((peer, bytes)) = switch.poll_transmit() {
            net.send(now, sw, peer.remote, bytes);
        }
        let next = [net.next_delivery(), client.poll_timeout(), switch.poll_timeout()].into_iter().flatten().min();
        let Some(next) = next else { break };
        if next > bound {
            break;
        }
        now = now.max(next);
        while let Some(p) = net.deliver_due(now) {
            let msg = Message::parse(p.bytes.clone(), Framing::Datagram).expect("both sides send valid SIP");
            if p.to == sw {
                switch.handle_message(now, msg, Peer { transport: TransportKind::Udp, remote: p.from, local: sw });
            } else {
                client.handle_message(now, msg, Peer { transport: TransportKind::Udp, remote: p.from, local: uac });
            }
        }
        if client.poll_timeout().is_some_and(|t| t <= now) {
            client.handle_timeout(now);
        }
        if switch.poll_timeout().is_some_and(|t| t <= now) {
            switch.handle_timeout(now);
        }
    }
    out.switch_transactions_at_end = switch.transactions();
    out.dropped = net.counters().dropped;
    out
}

const SEEDS: std::ops::Range<u64> = 1..21;

#[test]
fn options_completes_with_200_under_30_percent_loss_rfc3261_17_1_2() {
    let mut total_dropped = 0;
    for seed in SEEDS {
        let r = run(seed, 0.3, request("OPTIONS", &format!("opt{seed}"), ""));
        assert_eq!(r.finals.iter().map(|f| f.0).collect::<Vec<_>>(), [200], "seed {seed}");
        assert_eq!(r.timeouts, 0, "seed {seed}");
        assert!(r.finals[0].1 < Duration::from_secs(32), "seed {seed}: before Timer F");
        let ok = &r.finals[0].2;
        assert_eq!(
            ok.header(HeaderName::Allow),
            Some(&b"INVITE, ACK, BYE, CANCEL, OPTIONS, REGISTER, INFO, UPDATE"[..])
        );
        assert_eq!(r.switch_transactions_at_end, 0, "seed {seed}: Timer J ended the server transaction");
        total_dropped += r.dropped;
    }
    assert!(total_dropped > 0, "the runs really lost packets");
}

#[test]
fn invite_is_challenged_with_407_and_the_ack_is_absorbed_under_loss_rfc3261_17_2_1() {
    for seed in SEEDS {
        let r = run(seed, 0.3, request("INVITE", &format!("inv{seed}"), ""));
        assert_eq!(r.finals.iter().map(|f| f.0).collect::<Vec<_>>(), [407], "seed {seed}");
        let challenge = r.finals[0].2.values(HeaderName::ProxyAuthenticate).count();
        assert_eq!(challenge, 1, "seed {seed}: the default offers MD5 only");
        assert!(r.finals[0].2.to_tag().is_some(), "seed {seed}: the 407 carries a To tag");
        assert_eq!(r.timeouts, 0, "seed {seed}");
        assert_eq!(r.switch_transactions_at_end, 0, "seed {seed}: ACK (or Timer H) ended the server transaction");
    }
}

#[test]
fn register_is_challenged_with_401_under_loss_rfc3261_10_3() {
    for seed in SEEDS {
        let r = run(seed, 0.3, request("REGISTER", &format!("reg{seed}"), "Expires: 3600"));
        assert_eq!(r.finals.iter().map(|f| f.0).collect::<Vec<_>>(), [401], "seed {seed}");
        let c: Vec<_> = r.finals[0]
            .2
            .values(HeaderName::WwwAuthenticate)
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .collect();
        assert_eq!(c.len(), 1, "seed {seed}");
        assert!(c[0].contains("realm=\"127.0.0.1\"") && c[0].contains("algorithm=MD5"), "{c:?}");
    }
}

#[test]
fn unknown_method_gets_501_with_allow_rfc3261_8_2_1() {
    let r = run(1, 0.0, request("FROBNICATE", "frob", ""));
    assert_eq!(r.finals.iter().map(|f| f.0).collect::<Vec<_>>(), [501]);
    assert_eq!(
        r.finals[0].2.header(HeaderName::Allow),
        Some(&b"INVITE, ACK, BYE, CANCEL, OPTIONS, REGISTER, INFO, UPDATE"[..])
    );
}

#[test]
fn bye_outside_a_dialog_gets_481_rfc3261_15_1_2() {
    let r = run(1, 0.0, request("BYE", "bye1", ""));
    assert_eq!(r.finals.iter().map(|f| f.0).collect::<Vec<_>>(), [481]);
}
