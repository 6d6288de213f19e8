//! The load generator against the bare forwarder, in-process on loopback: a handful of
//! sessions for about a second, every packet accounted for.

use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rtpload::forwarder::Forwarder;
use rtpload::load::{Engine, LoadOptions, SessionPorts, ToolSockets};
use rtpload::packet::PRIMING;

#[test]
fn every_packet_through_the_bare_forwarder_arrives_in_sequence() {
    const SESSIONS: usize = 6;
    let mut fwd = Forwarder::bind(Ipv4Addr::LOCALHOST.into(), 0, SESSIONS).unwrap();
    let sessions: Vec<SessionPorts> = fwd.pairs().into_iter().map(|(a, b)| SessionPorts { a, b }).collect();
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let t = std::thread::spawn(move || {
        fwd.run(&flag).unwrap();
        fwd.forwarded()
    });

    let socks = ToolSockets::bind(Ipv4Addr::LOCALHOST.into(), 2).unwrap();
    let mut engine = Engine::new(&socks, &sessions, 8);
    // In round 1, whichever of a session's two packets the forwarder reads first finds
    // the other side not learnt yet and is dropped; the rest of the priming comes back.
    let streams = 2 * SESSIONS as u64;
    let primed = engine.prime(Duration::from_millis(20), Duration::from_millis(200));
    assert_eq!(primed, streams * PRIMING - SESSIONS as u64);
    let opts = LoadOptions {
        pps_per_stream: 50.0,
        duration: Duration::from_secs(1),
        drain: Duration::from_secs(5),
        ..LoadOptions::default()
    };
    let o = engine.run(&opts);
    stop.store(true, Ordering::Relaxed);
    let forwarded = t.join().unwrap();

    assert_eq!(o.sent, vec![50; 2 * SESSIONS]);
    for (s, rx) in o.rx.iter().enumerate() {
        assert_eq!((rx.unique, rx.duplicates, rx.reordered, rx.header_errors), (50, 0, 0, 0), "stream {s}");
    }
    assert_eq!((o.received(), o.lost(), o.foreign, o.untimed), (600, 0, 0, 0));
    assert!(o.rx_secs > 0.9 && o.send_secs > 0.9, "{} {}", o.rx_secs, o.send_secs);
    assert_eq!(o.latency.count(), 600);
    assert_eq!(forwarded, 600 + primed);
}
