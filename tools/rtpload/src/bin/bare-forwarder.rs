//! `bare-forwarder`: the bare recvmmsg/sendmmsg forwarder (the machine's ceiling for a
//! UDP relay), until SIGTERM or SIGINT.
//!
//! ```text
//! bare-forwarder --listen 127.0.0.1:16384 --pairs 2000 [--cpu 1]
//! ```
//! Pair `i` is port `16384 + 2i` ↔ `16384 + 2i + 1`. Prints `bare-forwarder: ready ...`
//! once every socket is bound, and the datagrams it forwarded when it stops.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};

use rtpload::forwarder::Forwarder;

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::Relaxed);
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (mut listen, mut pairs, mut cpu): (Option<SocketAddr>, usize, Option<usize>) = (None, 0, None);
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let v = it.next();
        let ok = match (a.as_str(), v) {
            ("--listen", Some(v)) => v.parse().map(|x| listen = Some(x)).is_ok(),
            ("--pairs", Some(v)) => v.parse().map(|x| pairs = x).is_ok(),
            ("--cpu", Some(v)) => v.parse().map(|x| cpu = Some(x)).is_ok(),
            _ => false,
        };
        if !ok {
            eprintln!("usage: bare-forwarder --listen IP:BASE_PORT --pairs N [--cpu C]");
            return ExitCode::from(2);
        }
    }
    let Some(listen) = listen.filter(|a| a.port() != 0 && pairs > 0) else {
        eprintln!("usage: bare-forwarder --listen IP:BASE_PORT --pairs N [--cpu C]");
        return ExitCode::from(2);
    };
    if let Some(Err(e)) = cpu.map(rtpload::pin) {
        eprintln!("bare-forwarder: {e}");
        return ExitCode::FAILURE;
    }
    // SAFETY: the handler only stores to an atomic.
    unsafe {
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
    }
    let mut f = match Forwarder::bind(listen.ip(), listen.port(), pairs) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("bare-forwarder: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!("bare-forwarder: ready {pairs} pairs from {listen} pid {}", std::process::id());
    if let Err(e) = f.run(&STOP) {
        eprintln!("bare-forwarder: {e}");
        return ExitCode::FAILURE;
    }
    println!("bare-forwarder: forwarded {}", f.forwarded());
    ExitCode::SUCCESS
}
