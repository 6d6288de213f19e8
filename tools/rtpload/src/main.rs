//! `rtpload`: drives RTP sessions through a relay and checks what comes back.

use std::process::ExitCode;
use std::time::Duration;

use rtpload::load::LoadOptions;
use rtpload::target::Target;
use rtpload::RunOptions;

const USAGE: &str = "usage: rtpload (--ferroswitch SOCKET | --ng ADDR | --forwarder ADDR) [-n SESSIONS]
       [--pps-per-stream R | --flat-out] [-d SECONDS] [--relay-pid PID] [--relay-cpu N] [--cpu N]
       [--socket-pairs K] [--batch B] [--tick-us U] [--late-ms L] [--label TEXT]
       [--count-syscalls NAME,NAME...] [--tool-ip IP] [--media-ip IP]

  --ferroswitch SOCKET  attach to `ferroswitch media` on its Unix socket (as its control
                        plane) and create the sessions through the rings
  --ng ADDR             rtpengine's NG listener (offer/answer/delete)
  --forwarder ADDR      the bare forwarder: session i uses ports ADDR+2i and ADDR+2i+1
  -n SESSIONS           sessions, each two streams (default 10)
  --pps-per-stream R    packets per second per stream (default 50: 20 ms G.711)
  --flat-out            send as fast as possible, round-robin over the streams
  -d SECONDS            how long to send (default 5)
  --relay-pid PID       report the relay's CPU per packet and wake-ups (all threads)
  --cpu N               pin this tool to CPU N
  --relay-cpu N         report CPU N's whole busy time per packet (the relay's core:
                        the window less its idle and iowait time)
  --socket-pairs K      the tool's caller/callee socket pairs (default 4)
  --batch B             datagrams per sendmmsg (default 16)
  --tick-us U           paced sending wakes at most every U µs (default 100)
  --late-ms L           a packet slower than L ms counts as late (default 100)
  --label TEXT          shown in the report after the target kind
  --count-syscalls L    with --relay-pid: count these system calls of the relay over the
                        measured window (perf stat, syscalls:sys_enter_NAME tracepoints)
  --tool-ip IP          bind the tool's sockets to IP (a namespace's address)
  --media-ip IP         ferroswitch's sessions listen on IP (default: the tool's)

Prints one line for people, then one `RESULT key=value ...` line (missed_pct: lost or
late, as a percentage of the packets sent). Exit status 0 when
the run completed (whatever the loss), 1 when it could not run, 2 on bad arguments.";

fn parse(args: &[String]) -> Result<(RunOptions, Option<usize>), String> {
    let mut target = None;
    let mut o = RunOptions {
        target: Target::Forwarder("127.0.0.1:0".parse().expect("address")),
        sessions: 10,
        load: LoadOptions::default(),
        relay_pid: None,
        relay_cpu: None,
        socket_pairs: 4,
        label: None,
        count_syscalls: Vec::new(),
        tool_ip: None,
        media_ip: None,
    };
    let mut cpu = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{a} needs a value"));
        let num = |v: &String| v.parse::<f64>().ok().filter(|x| x.is_finite() && *x >= 0.0);
        let bad = |v: &String| format!("{a}: bad value {v:?}");
        match a.as_str() {
            "--ferroswitch" => target = Some(Target::Ferroswitch(value()?.into())),
            "--ng" => {
                let v = value()?;
                target = Some(Target::Ng(v.parse().map_err(|_| bad(v))?));
            }
            "--forwarder" => {
                let v = value()?;
                target = Some(Target::Forwarder(v.parse().map_err(|_| bad(v))?));
            }
            "-n" | "--sessions" => {
                let v = value()?;
                o.sessions = v.parse().map_err(|_| bad(v))?;
            }
            "--pps-per-stream" => {
                let v = value()?;
                o.load.pps_per_stream = num(v).filter(|x| *x > 0.0).ok_or_else(|| bad(v))?;
            }
            "--flat-out" => o.load.flat_out = true,
            "-d" | "--duration" => {
                let v = value()?;
                o.load.duration = Duration::from_secs_f64(num(v).filter(|x| *x > 0.0).ok_or_else(|| bad(v))?);
            }
            "--relay-pid" => {
                let v = value()?;
                o.relay_pid = Some(v.parse().map_err(|_| bad(v))?);
            }
            "--relay-cpu" => {
                let v = value()?;
                o.relay_cpu = Some(v.parse().map_err(|_| bad(v))?);
            }
            "--cpu" => {
                let v = value()?;
                cpu = Some(v.parse().map_err(|_| bad(v))?);
            }
            "--socket-pairs" => {
                let v = value()?;
                o.socket_pairs = v.parse().ok().filter(|k| *k > 0).ok_or_else(|| bad(v))?;
            }
            "--batch" => {
                let v = value()?;
                o.load.batch = v.parse().ok().filter(|b| (1..=1024).contains(b)).ok_or_else(|| bad(v))?;
            }
            "--tick-us" => {
                let v = value()?;
                o.load.tick = Duration::from_secs_f64(num(v).ok_or_else(|| bad(v))? / 1e6);
            }
            "--late-ms" => {
                let v = value()?;
                o.load.late = Duration::from_secs_f64(num(v).ok_or_else(|| bad(v))? / 1e3);
            }
            "--label" => o.label = Some(value()?.clone()),
            "--tool-ip" => {
                let v = value()?;
                o.tool_ip = Some(v.parse().map_err(|_| bad(v))?);
            }
            "--media-ip" => {
                let v = value()?;
                o.media_ip = Some(v.parse().map_err(|_| bad(v))?);
            }
            "--count-syscalls" => {
                o.count_syscalls = value()?.split(',').filter(|n| !n.is_empty()).map(String::from).collect()
            }
            "-h" | "--help" => return Err(String::new()),
            _ => return Err(format!("unknown argument {a:?}")),
        }
    }
    o.target = target.ok_or("one of --ferroswitch, --ng, --forwarder is needed")?;
    Ok((o, cpu))
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (opts, cpu) = match parse(&args) {
        Ok(p) => p,
        Err(e) if e.is_empty() => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("rtpload: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    // Before any thread starts, so every thread (the supervisor's too) inherits it.
    if let Some(Err(e)) = cpu.map(rtpload::pin) {
        eprintln!("rtpload: {e}");
        return ExitCode::FAILURE;
    }
    rtpload::net::tight_timers();
    match rtpload::run(&opts) {
        Ok(r) => {
            println!("{}", r.human());
            println!("{}", r.machine());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("rtpload: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn arguments_parse_and_bad_ones_say_why() {
        let (o, cpu) = parse(&words("--ng 127.0.0.1:2223 -n 500 -d 2.5 --relay-pid 42 --cpu 0 --flat-out")).unwrap();
        assert_eq!(o.target, Target::Ng("127.0.0.1:2223".parse().unwrap()));
        assert_eq!((o.sessions, o.relay_pid, cpu, o.load.flat_out), (500, Some(42), Some(0), true));
        assert_eq!(o.load.duration, Duration::from_millis(2500));
        let (o, _) = parse(&words("--ferroswitch /tmp/m.sock --pps-per-stream 100 --tick-us 20 --late-ms 50")).unwrap();
        assert_eq!(o.target, Target::Ferroswitch("/tmp/m.sock".into()));
        assert_eq!((o.load.pps_per_stream, o.load.tick), (100.0, Duration::from_micros(20)));
        assert_eq!(o.load.late, Duration::from_millis(50));
        let (o, _) = parse(&words("--forwarder 127.0.0.1:1 --count-syscalls recvmmsg,sendto")).unwrap();
        assert_eq!(o.count_syscalls, vec!["recvmmsg", "sendto"]);
        assert_eq!(parse(&words("-n 5")).unwrap_err(), "one of --ferroswitch, --ng, --forwarder is needed");
        assert_eq!(parse(&words("--ng nowhere")).unwrap_err(), "--ng: bad value \"nowhere\"");
        assert_eq!(parse(&words("--forwarder 127.0.0.1:1 -d")).unwrap_err(), "-d needs a value");
        assert_eq!(parse(&words("--forwarder 127.0.0.1:1 -d 0")).unwrap_err(), "-d: bad value \"0\"");
        assert!(parse(&words("--bogus")).unwrap_err().contains("unknown argument"));
    }
}
