//! Transactions over the seeded simulated network (STYLE.md §3): UDP exchanges that must
//! complete despite 30 % loss, random delay (reordering) and duplication, each run
//! deterministic for its seed and finished well inside virtual-time bounds.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use control_plane::netsim::sip::{RunEnd, SipSim, TuContext};
use control_plane::netsim::Network;
use control_plane::sip::message::write::{default_reason, response_to, Writer};
use control_plane::sip::message::{Framing, Message, Method};
use control_plane::sip::transaction::{Event, TimerConfig, TxId};

const SEEDS: [u64; 6] = [1, 2, 3, 0xfeed, 0x5eed_1234, 42];

fn uac_addr() -> SocketAddr {
    SocketAddr::from(([192, 0, 2, 10], 5060))
}

fn uas_addr() -> SocketAddr {
    SocketAddr::from(([192, 0, 2, 20], 5060))
}

fn request(method: &str, branch: &str) -> Message {
    let mut buf = Vec::new();
    let mut w = Writer::request(&mut buf, method.as_bytes(), b"sip:bob@192.0.2.20");
    w.header("Via", format!("SIP/2.0/UDP 192.0.2.10:5060;rport;branch={branch}"));
    w.header("Max-Forwards", "70");
    w.header("From", "<sip:alice@192.0.2.10>;tag=a1");
    w.header("To", "<sip:bob@192.0.2.20>");
    w.header("Call-ID", "netsim-1@192.0.2.10");
    w.header_fmt("CSeq", format_args!("1 {method}"));
    w.finish(b"");
    Message::parse(Bytes::from(buf), Framing::Datagram).expect("test requests parse")
}

/// The UAS: answers an INVITE with 180 then 486, and an OPTIONS with 200.
fn uas(ctx: &mut TuContext<'_>, event: &Event) {
    let Event::Request { tx: Some(tx), msg, peer, .. } = event else {
        return;
    };
    let codes: &[u16] = match msg.method() {
        Method::Invite => &[180, 486],
        Method::Options => &[200],
        _ => &[],
    };
    for &code in codes {
        let mut buf = Vec::new();
        response_to(msg, code, default_reason(code), Some(b"uas-1"), Some(peer.remote), &mut buf).finish(b"");
        ctx.layer
            .respond(ctx.now, *tx, code, Bytes::from(buf))
            .expect("a fresh server transaction takes a provisional and one final");
    }
}

/// What one endpoint saw, as (ms since start, summary) lines.
fn summary(sim: &SipSim, endpoint: usize, t0: Instant) -> Vec<(u128, String)> {
    sim.endpoint(endpoint)
        .log
        .iter()
        .map(|(at, e)| {
            let what = match e {
                Event::Request { tx, msg, .. } => format!(
                    "request {} {}",
                    String::from_utf8_lossy(msg.method_bytes()),
                    if tx.is_some() { "tx" } else { "no tx" }
                ),
                Event::Response { msg, .. } => format!("response {}", msg.status().unwrap_or(0)),
                Event::Timeout { .. } => "timeout".to_string(),
                Event::Terminated { .. } => "terminated".to_string(),
                other => format!("{other:?}"),
            };
            ((*at - t0).as_millis(), what)
        })
        .collect()
}

struct Outcome {
    uac: Vec<(u128, String)>,
    uas: Vec<(u128, String)>,
    end: RunEnd,
    tx: TxId,
    dropped: u64,
}

/// Runs one `method` exchange from the UAC to the UAS with 30 % loss on `seed`.
fn exchange(seed: u64, method: &str, t0: Instant) -> Outcome {
    let mut net = Network::new(seed);
    net.set_loss(0.3).set_delay(Duration::from_millis(5), Duration::from_millis(80)).set_duplication(0.05);
    let mut sim = SipSim::new(net, t0);
    let uac = sim.add_endpoint(uac_addr(), TimerConfig::default(), |_: &mut TuContext<'_>, _: &Event| {});
    let uas_ep = sim.add_endpoint(uas_addr(), TimerConfig::default(), uas);
    let to_uas = sim.peer(uac, uas_ep);
    let msg = request(method, "z9hG4bKnetsim1");
    let tx = sim
        .with_endpoint(uac, |ctx| ctx.layer.request(ctx.now, msg, to_uas))
        .expect("the request starts a client transaction");
    let end = sim.run(t0 + Duration::from_secs(120));
    assert!(sim.endpoint(uac).layer.is_empty());
    assert!(sim.endpoint(uas_ep).layer.is_empty());
    Outcome {
        uac: summary(&sim, uac, t0),
        uas: summary(&sim, uas_ep, t0),
        end,
        tx,
        dropped: sim.net.counters().dropped,
    }
}

fn finals(log: &[(u128, String)]) -> Vec<&str> {
    log.iter().map(|(_, s)| s.as_str()).filter(|s| s.starts_with("response ") && !s.starts_with("response 1")).collect()
}

fn count(log: &[(u128, String)], what: &str) -> usize {
    log.iter().filter(|(_, s)| s == what).count()
}

#[test]
fn invite_busy_exchange_completes_over_udp_with_30_percent_loss_rfc3261_17() {
    let t0 = Instant::now();
    let mut lossy_runs = 0;
    for seed in SEEDS {
        let o = exchange(seed, "INVITE", t0);
        // The UAC got the 486 exactly once (retransmissions are absorbed and re-ACKed).
        assert_eq!(finals(&o.uac), ["response 486"], "seed {seed}: {:?}", o.uac);
        // The UAS got the INVITE once, and its 486 was ACKed: no Timer H timeout.
        assert_eq!(count(&o.uas, "request INVITE tx"), 1, "seed {seed}: {:?}", o.uas);
        assert_eq!(count(&o.uas, "timeout"), 0, "seed {seed}: {:?}", o.uas);
        assert_eq!(count(&o.uac, "timeout"), 0, "seed {seed}: {:?}", o.uac);
        assert_eq!(count(&o.uas, "terminated"), 1);
        assert_eq!(o.uac.last().map(|(_, s)| s.as_str()), Some("terminated"));
        assert_eq!(o.tx, control_plane::sip::transaction::TxId(1));
        // Everything, Timer D's 32 s included, is over within 64 s of virtual time.
        match o.end {
            RunEnd::Idle(at) => assert!(at - t0 <= Duration::from_secs(64), "seed {seed}"),
            RunEnd::Bound(_) => panic!("seed {seed}: still running at the bound"),
        }
        if o.dropped > 0 {
            lossy_runs += 1;
        }
        // The same seed gives the same run.
        let again = exchange(seed, "INVITE", t0);
        assert_eq!((again.uac, again.uas), (o.uac, o.uas), "seed {seed}");
    }
    assert!(lossy_runs >= SEEDS.len() / 2, "loss never happened");
}

#[test]
fn options_exchange_completes_over_udp_with_30_percent_loss_rfc3261_17() {
    let t0 = Instant::now();
    for seed in SEEDS {
        let o = exchange(seed, "OPTIONS", t0);
        assert_eq!(finals(&o.uac), ["response 200"], "seed {seed}: {:?}", o.uac);
        assert_eq!(count(&o.uac, "timeout"), 0, "seed {seed}: {:?}", o.uac);
        assert_eq!(count(&o.uas, "request OPTIONS tx"), 1, "seed {seed}: {:?}", o.uas);
        match o.end {
            // Timer J (64*T1) after the 200 bounds the run.
            RunEnd::Idle(at) => assert!(at - t0 <= Duration::from_secs(64), "seed {seed}"),
            RunEnd::Bound(_) => panic!("seed {seed}: still running at the bound"),
        }
        let again = exchange(seed, "OPTIONS", t0);
        assert_eq!((again.uac, again.uas), (o.uac, o.uas), "seed {seed}");
    }
}

#[test]
fn lossless_invite_exchange_has_exact_timing() {
    let t0 = Instant::now();
    let mut net = Network::new(9);
    net.set_delay(Duration::from_millis(10), Duration::from_millis(10));
    let mut sim = SipSim::new(net, t0);
    let uac = sim.add_endpoint(uac_addr(), TimerConfig::default(), |_: &mut TuContext<'_>, _: &Event| {});
    let uas_ep = sim.add_endpoint(uas_addr(), TimerConfig::default(), uas);
    let to_uas = sim.peer(uac, uas_ep);
    let msg = request("INVITE", "z9hG4bKexact");
    sim.with_endpoint(uac, |ctx| ctx.layer.request(ctx.now, msg, to_uas)).unwrap();
    let end = sim.run(t0 + Duration::from_secs(120));
    let s = |v: &[(u128, &str)]| -> Vec<(u128, String)> { v.iter().map(|(t, x)| (*t, x.to_string())).collect() };
    // 180/486 arrive 20 ms after sending (no 100: the UAS's TU answered at once, §17.2.1);
    // the ACK reaches the UAS at 30 ms; Timer I (T4) ends the UAS side at 5.03 s and
    // Timer D (32 s) the UAC side at 32.02 s.
    assert_eq!(summary(&sim, uac, t0), s(&[(20, "response 180"), (20, "response 486"), (32_020, "terminated")]));
    assert_eq!(summary(&sim, uas_ep, t0), s(&[(10, "request INVITE tx"), (5_030, "terminated")]));
    assert_eq!(end, RunEnd::Idle(t0 + Duration::from_millis(32_020)));
    let c = sim.net.counters();
    // INVITE, 180, 486, ACK.
    assert_eq!((c.sent, c.delivered, c.dropped), (4, 4, 0));
}
