//! NG session set-up rate: several clients in parallel, each running offer → answer →
//! delete for its own calls against one NG server (ferroswitch or rtpengine), and the
//! sessions per second and per-session set-up latency (offer + answer) that came out.
//!
//!   ng-setup-bench --ng 127.0.0.1:2223 [--clients 4] [--calls 2000] [--label NAME]
//!
//! Prints one human line and one `RESULT` line. Exit status 1 if any request failed.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rtpload::ng::NgClient;

fn main() {
    let mut ng: Option<SocketAddr> = None;
    let (mut clients, mut calls, mut label) = (4usize, 2000usize, String::from("ng"));
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || args.next().unwrap_or_else(|| die(&format!("{a} needs a value")));
        match a.as_str() {
            "--ng" => ng = Some(val().parse().unwrap_or_else(|_| die("--ng: expected IP:PORT"))),
            "--clients" => clients = val().parse().unwrap_or_else(|_| die("--clients: a number")),
            "--calls" => calls = val().parse().unwrap_or_else(|_| die("--calls: a number")),
            "--label" => label = val(),
            _ => die(&format!("unknown argument {a}")),
        }
    }
    let ng = ng.unwrap_or_else(|| die("--ng ADDR is required"));
    let run = std::process::id();
    let start = Instant::now();
    let handles: Vec<_> = (0..clients)
        .map(|c| {
            std::thread::spawn(move || -> Result<Vec<Duration>, String> {
                let mut client = NgClient::new(ng, Duration::from_secs(2)).map_err(|e| e.to_string())?;
                // Two addresses standing in for the phones (nothing is sent to them).
                let a: SocketAddr = format!("127.0.0.1:{}", 40000 + 4 * c).parse().expect("address");
                let b: SocketAddr = format!("127.0.0.1:{}", 40002 + 4 * c).parse().expect("address");
                let mut setups = Vec::with_capacity(calls);
                for i in 0..calls {
                    let call_id = format!("bench-{run}-{c}-{i}");
                    let t = Instant::now();
                    client.offer(&call_id, "from", a)?;
                    client.answer(&call_id, "from", "to", b)?;
                    setups.push(t.elapsed());
                    client.delete(&call_id, "from")?;
                }
                Ok(setups)
            })
        })
        .collect();
    let mut all = Vec::new();
    let mut failed = None;
    for h in handles {
        match h.join() {
            Ok(Ok(v)) => all.extend(v),
            Ok(Err(e)) => failed = Some(e),
            Err(_) => failed = Some("a client thread panicked".into()),
        }
    }
    let wall = start.elapsed().as_secs_f64();
    if let Some(e) = failed {
        eprintln!("ng-setup-bench: {e}");
        std::process::exit(1);
    }
    all.sort();
    let pct = |p: f64| all[((all.len() as f64 - 1.0) * p) as usize].as_secs_f64() * 1e6;
    // A session costs offer + answer + delete here; the rate counts complete sessions.
    let rate = all.len() as f64 / wall;
    println!(
        "{label}: {} sessions by {clients} clients in {wall:.2} s: {rate:.0} sessions/s (offer+answer+delete each); set-up p50 {:.0} µs, p99 {:.0} µs",
        all.len(),
        pct(0.5),
        pct(0.99)
    );
    println!(
        "RESULT label={label} clients={clients} sessions={} secs={wall:.3} sessions_per_s={rate:.0} setup_p50_us={:.0} setup_p99_us={:.0}",
        all.len(),
        pct(0.5),
        pct(0.99)
    );
}

fn die(msg: &str) -> ! {
    eprintln!("ng-setup-bench: {msg}");
    std::process::exit(2);
}
