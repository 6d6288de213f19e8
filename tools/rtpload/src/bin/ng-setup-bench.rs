//! NG session set-up rate: several clients in parallel, each running offer → answer →
//! delete for its own calls against one NG server (ferroswitch or rtpengine), and the
//! sessions per second and per-session set-up latency (offer + answer) that came out.
//!
//!   ng-setup-bench --ng 127.0.0.1:2223 [--clients 4] [--threads N] [--calls 2000] [--label NAME]
//!
//! A client has one request out at a time. `--threads` spreads the clients over that many
//! threads, each with one socket and its clients' requests in flight together (default:
//! a thread per client), so that on a small machine the client side is not the limit: a
//! thread busy with replies takes the next ones without being woken for each.
//!
//! Prints one human line and one `RESULT` line. Exit status 1 if any request failed.

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use control_plane::ng::bencode::Value;
use rtpload::ng::{answer_request, check_reply, delete_request, frame, offer_request, reply_addr, split_reply};

/// Silence after which a thread sends its outstanding requests again (same cookie).
const RETRY: Duration = Duration::from_secs(2);
/// Tries per request.
const TRIES: u32 = 3;

fn main() {
    let mut ng: Option<SocketAddr> = None;
    let (mut clients, mut calls, mut label) = (4usize, 2000usize, String::from("ng"));
    let mut threads: Option<usize> = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || args.next().unwrap_or_else(|| die(&format!("{a} needs a value")));
        match a.as_str() {
            "--ng" => ng = Some(val().parse().unwrap_or_else(|_| die("--ng: expected IP:PORT"))),
            "--clients" => clients = val().parse().unwrap_or_else(|_| die("--clients: a number")),
            "--threads" => threads = Some(val().parse().unwrap_or_else(|_| die("--threads: a number"))),
            "--calls" => calls = val().parse().unwrap_or_else(|_| die("--calls: a number")),
            "--label" => label = val(),
            _ => die(&format!("unknown argument {a}")),
        }
    }
    let ng = ng.unwrap_or_else(|| die("--ng ADDR is required"));
    let run = std::process::id();
    let start = Instant::now();
    let threads = threads.unwrap_or(clients).clamp(1, clients.max(1));
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            // Clients t, t + threads, t + 2 * threads ...
            let mine: Vec<usize> = (t..clients).step_by(threads).collect();
            std::thread::spawn(move || run_clients(ng, run, &mine, calls))
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

/// One client's place in its calls.
struct Client {
    /// Its number (its calls' Call-IDs and phone addresses).
    n: usize,
    /// The call it is on, and its step there: 0 offer, 1 answer, 2 delete.
    call: usize,
    step: u8,
    /// When the call's offer went out.
    started: Instant,
    /// The request out, its cookie and datagram, when it was sent and how often.
    request: Value,
    cookie: String,
    msg: Vec<u8>,
    sent: Instant,
    tries: u32,
}

/// Runs `clients`' calls over one socket, every client's request out at once; the set-up
/// time (offer + answer) of each call.
fn run_clients(ng: SocketAddr, run: u32, clients: &[usize], calls: usize) -> Result<Vec<Duration>, String> {
    let sock = UdpSocket::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    sock.set_read_timeout(Some(Duration::from_millis(100))).map_err(|e| e.to_string())?;
    let port = sock.local_addr().map_err(|e| e.to_string())?.port();
    let mut setups = Vec::with_capacity(clients.len() * calls);
    let mut sent = 0u64;
    let mut next = |c: &mut Client, now: Instant| -> Result<(), String> {
        // Two addresses standing in for the phones (nothing is sent to them).
        let a: SocketAddr = format!("127.0.0.1:{}", 40000 + 4 * c.n).parse().expect("address");
        let b: SocketAddr = format!("127.0.0.1:{}", 40002 + 4 * c.n).parse().expect("address");
        let call_id = format!("bench-{run}-{}-{}", c.n, c.call);
        c.request = match c.step {
            0 => offer_request(&call_id, "from", a),
            1 => answer_request(&call_id, "from", "to", b),
            _ => delete_request(&call_id, "from"),
        };
        sent += 1;
        // Unique per process, socket and client: a server answers a repeated cookie from
        // its cache without redoing it. The client number leads, to find it by.
        c.cookie = format!("{}_{}_{port}_{sent}", c.n, std::process::id());
        c.msg = frame(&c.cookie, &c.request);
        (c.sent, c.tries) = (now, 1);
        sock.send_to(&c.msg, ng).map(|_| ()).map_err(|e| format!("ng send to {ng}: {e}"))
    };
    let now = Instant::now();
    let mut cs: Vec<Client> = clients
        .iter()
        .map(|&n| Client {
            n,
            call: 0,
            step: 0,
            started: now,
            request: Value::Int(0),
            cookie: String::new(),
            msg: Vec::new(),
            sent: now,
            tries: 0,
        })
        .collect();
    let mut active = 0;
    for c in cs.iter_mut().filter(|_| calls > 0) {
        next(c, now)?;
        active += 1;
    }
    let mut buf = vec![0u8; 65536];
    let mut last_check = now;
    while active > 0 {
        match sock.recv_from(&mut buf) {
            Ok((n, from)) if from == ng => {
                let Some((cookie, body)) = split_reply(&buf[..n]) else { continue };
                let Some(i) = std::str::from_utf8(cookie)
                    .ok()
                    .and_then(|k| k.split('_').next()?.parse::<usize>().ok())
                    .and_then(|n| clients.iter().position(|&m| m == n))
                else {
                    continue;
                };
                let c = &mut cs[i];
                if c.tries == 0 || c.cookie.as_bytes() != cookie {
                    continue; // a late answer to an earlier try
                }
                let reply = check_reply(&c.request, body)?;
                let now = Instant::now();
                match c.step {
                    0 => {
                        reply_addr(&reply)?;
                        c.step = 1;
                    }
                    1 => {
                        reply_addr(&reply)?;
                        setups.push(now - c.started);
                        c.step = 2;
                    }
                    _ => {
                        (c.call, c.step, c.started) = (c.call + 1, 0, now);
                    }
                }
                if c.call == calls {
                    c.tries = 0;
                    active -= 1;
                } else {
                    next(c, now)?;
                }
            }
            Ok(_) => {}
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(e) => return Err(format!("ng receive: {e}")),
        }
        let now = Instant::now();
        if now - last_check < Duration::from_millis(100) {
            continue;
        }
        last_check = now;
        for c in cs.iter_mut().filter(|c| c.tries > 0 && now - c.sent >= RETRY) {
            if c.tries == TRIES {
                return Err(format!("ng: no answer from {ng} after {TRIES} tries"));
            }
            (c.sent, c.tries) = (now, c.tries + 1);
            sock.send_to(&c.msg, ng).map_err(|e| format!("ng send to {ng}: {e}"))?;
        }
    }
    Ok(setups)
}

fn die(msg: &str) -> ! {
    eprintln!("ng-setup-bench: {msg}");
    std::process::exit(2);
}
