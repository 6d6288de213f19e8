//! `transload`: transcoded calls (a PCMU caller, an Opus callee) through a relay, paced at
//! 20 ms both ways; reports loss and the relay's CPU. See `rtpload::transcode`.
//!
//!     transload --ferroswitch SOCKET -n 100 -d 10 --relay-pid PID --cpu 0
//!     transload --ng 127.0.0.1:22222 -n 50 -d 10 --relay-pid PID --cpu 0   # rtpengine

use std::process::ExitCode;
use std::time::{Duration, Instant};

use rtpload::load::ToolSockets;
use rtpload::target::Target;
use rtpload::{procfs, transcode};

const USAGE: &str = "usage: transload (--ferroswitch SOCKET | --ng ADDR) [-n CALLS] [-d SECONDS]
       [--relay-pid PID] [--cpu N] [--socket-pairs K] [--label TEXT]
Prints one line for people, then `RESULT target=... calls=N sent=... received=...
loss_pct=... wrong_pt=... relay_cpu_pct=... relay_us_per_call_s=...`.";

struct Args {
    target: Target,
    calls: usize,
    secs: f64,
    pid: Option<u32>,
    cpu: Option<usize>,
    pairs: usize,
    label: String,
}

fn parse(args: &[String]) -> Result<Args, String> {
    let (mut target, mut calls, mut secs, mut pid, mut cpu, mut pairs, mut label) =
        (None, 10, 5.0, None, None, 4, String::new());
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let v = it.next().ok_or_else(|| format!("{a} needs a value"))?;
        let bad = || format!("{a}: bad value {v:?}");
        match a.as_str() {
            "--ferroswitch" => target = Some(Target::Ferroswitch(v.into())),
            "--ng" => target = Some(Target::Ng(v.parse().map_err(|_| bad())?)),
            "-n" => calls = v.parse().map_err(|_| bad())?,
            "-d" => secs = v.parse().ok().filter(|s: &f64| *s > 0.0).ok_or_else(bad)?,
            "--relay-pid" => pid = Some(v.parse().map_err(|_| bad())?),
            "--cpu" => cpu = Some(v.parse().map_err(|_| bad())?),
            "--socket-pairs" => pairs = v.parse().ok().filter(|k| *k > 0).ok_or_else(bad)?,
            "--label" => label = v.clone(),
            _ => return Err(format!("unknown argument {a:?}")),
        }
    }
    let target = target.ok_or("one of --ferroswitch, --ng is needed")?;
    Ok(Args { target, calls, secs, pid, cpu, pairs, label })
}

fn run(a: &Args) -> Result<String, String> {
    let socks =
        ToolSockets::bind(std::net::Ipv4Addr::LOCALHOST.into(), a.pairs).map_err(|e| format!("sockets: {e}"))?;
    let setup = transcode::setup(&a.target, a.calls, &socks)?;
    let before = a.pid.map(procfs::sample).transpose().map_err(|e| format!("relay pid: {e}"))?;
    let t0 = Instant::now();
    let c = transcode::run(&socks, &setup.sessions, a.secs, Duration::from_millis(300));
    let wall = t0.elapsed().as_secs_f64();
    let after = a.pid.map(procfs::sample).transpose().map_err(|e| format!("relay pid: {e}"))?;
    setup.teardown().map_err(|e| format!("teardown: {e}"))?;
    let cpu = match (before, after) {
        (Some(b), Some(e)) => e.run_ns.saturating_sub(b.run_ns) as f64 / 1e9 / wall,
        _ => f64::NAN,
    };
    let name =
        if a.label.is_empty() { a.target.kind().to_string() } else { format!("{}:{}", a.target.kind(), a.label) };
    let per_call = cpu * 1e6 / a.calls.max(1) as f64;
    Ok(format!(
        "{name}: {} calls, sent {}+{}, received {}+{}, loss {:.3} %, wrong payload type {}, relay CPU {:.1} % ({per_call:.0} µs per call-second)\n\
         RESULT target={name} calls={} sent={} received={} loss_pct={:.4} wrong_pt={} relay_cpu_pct={:.2} relay_us_per_call_s={per_call:.1}",
        a.calls,
        c.sent[0],
        c.sent[1],
        c.received[0],
        c.received[1],
        c.loss_pct(),
        c.wrong_pt,
        cpu * 100.0,
        a.calls,
        c.sent[0] + c.sent[1],
        c.received[0] + c.received[1],
        c.loss_pct(),
        c.wrong_pt,
        cpu * 100.0,
    ))
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let a = match parse(&args) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("transload: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    if let Some(Err(e)) = a.cpu.map(rtpload::pin) {
        eprintln!("transload: {e}");
        return ExitCode::FAILURE;
    }
    match run(&a) {
        Ok(out) => {
            println!("{out}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("transload: {e}");
            ExitCode::FAILURE
        }
    }
}
