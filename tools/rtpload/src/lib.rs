//! rtpload: an RTP load generator and checker for relays (ferroswitch's media plane,
//! rtpengine over NG, the bare forwarder), and the bare forwarder itself. See
//! tools/rtpload/README.md.

pub mod forwarder;
pub mod load;
pub mod net;
pub mod ng;
pub mod packet;
pub mod procfs;
pub mod report;
pub mod stats;
pub mod target;
pub mod transcode;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use load::{Engine, LoadOptions, ToolSockets};
use report::{RelayUsage, Report};
use target::Target;

/// Pins the calling thread (and the threads it starts later) to CPU `id`.
pub fn pin(id: usize) -> Result<(), String> {
    if core_affinity::set_for_current(core_affinity::CoreId { id }) {
        Ok(())
    } else {
        Err(format!("cannot pin to CPU {id}"))
    }
}

/// One run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The relay under test.
    pub target: Target,
    /// Sessions (two streams each).
    pub sessions: usize,
    /// How hard and how long.
    pub load: LoadOptions,
    /// The relay's process, for its CPU time and wake-ups.
    pub relay_pid: Option<u32>,
    /// The relay's CPU, whose whole busy time (the relay, and the softirq and NAPI work
    /// pinned there) is reported per packet.
    pub relay_cpu: Option<usize>,
    /// Tool socket pairs the sessions are spread over.
    pub socket_pairs: usize,
    /// Shown after the target kind in reports.
    pub label: Option<String>,
    /// Count these system calls of the relay over the measured window with
    /// `perf stat -e syscalls:sys_enter_NAME -p PID` (needs `--relay-pid` and perf).
    pub count_syscalls: Vec<String>,
    /// Where the tool's sockets bind (None: the target's address, or 127.0.0.1).
    pub tool_ip: Option<std::net::IpAddr>,
    /// The media plane's address for ferroswitch's sessions (None: the tool's).
    pub media_ip: Option<std::net::IpAddr>,
}

/// Sets the sessions up, primes them, runs the load, measures, tears down.
pub fn run(opts: &RunOptions) -> Result<Report, String> {
    let ip = match &opts.target {
        _ if opts.tool_ip.is_some() => opts.tool_ip.expect("checked"),
        Target::Ng(a) | Target::Forwarder(a) => a.ip(),
        Target::Ferroswitch(_) => std::net::Ipv4Addr::LOCALHOST.into(),
    };
    let socks = ToolSockets::bind(ip, opts.socket_pairs).map_err(|e| format!("tool sockets: {e}"))?;
    let setup = target::setup(&opts.target, opts.sessions, &socks, opts.media_ip)?;
    let result = measure(opts, &socks, &setup.sessions);
    let down = setup.teardown();
    let report = result?;
    down.map_err(|e| format!("teardown: {e}"))?;
    Ok(report)
}

fn measure(opts: &RunOptions, socks: &ToolSockets, sessions: &[load::SessionPorts]) -> Result<Report, String> {
    let mut engine = Engine::new(socks, sessions, opts.load.batch);
    if !sessions.is_empty() && engine.prime(Duration::from_millis(20), Duration::from_millis(200)) == 0 {
        return Err(format!("nothing came back through the {} relay (priming)", opts.target.kind()));
    }
    let relay_ports: HashSet<u16> = sessions.iter().flat_map(|s| [s.a.port(), s.b.port()]).collect();
    let tool_ports: HashSet<u16> = socks.ports().into_iter().collect();
    let drops = || (procfs::udp_drops(&relay_ports), procfs::udp_drops(&tool_ports));
    let sample = |pid: Option<u32>| pid.map(procfs::sample).transpose().map_err(|e| format!("relay pid: {e}"));
    let (relay_drops0, tool_drops0) = drops();
    let me = Some(std::process::id());
    let perf = match (opts.relay_pid, opts.count_syscalls.is_empty()) {
        (Some(pid), false) => Some(procfs::SyscallCount::start(pid, &opts.count_syscalls)?),
        _ => None,
    };
    let (before, tool_before) = (sample(opts.relay_pid)?, sample(me)?);
    let busy_before = procfs::system_busy_ns();
    let core_before = opts.relay_cpu.and_then(procfs::cpu_idle_ns);
    let t0 = Instant::now();
    let outcome = engine.run(&opts.load);
    let wall = t0.elapsed().as_secs_f64();
    let busy_after = procfs::system_busy_ns();
    let core_after = opts.relay_cpu.and_then(procfs::cpu_idle_ns);
    let (after, tool_after) = (sample(opts.relay_pid)?, sample(me)?);
    let syscalls = perf.map(procfs::SyscallCount::finish).transpose()?;
    let (relay_drops1, tool_drops1) = drops();
    let name = match &opts.label {
        Some(l) => format!("{}:{l}", opts.target.kind()),
        None => opts.target.kind().to_string(),
    };
    let mut r = Report::new(&name, sessions.len(), &outcome);
    if let (Some(a), Some(b)) = (before, after) {
        r.relay = Some(RelayUsage::between(&a, &b, wall, procfs::ticks_per_sec()));
    }
    if let (Some(a), Some(b)) = (tool_before, tool_after) {
        r.tool_cpu_pct = b.run_ns.saturating_sub(a.run_ns) as f64 / 1e7 / wall.max(1e-9);
        if let (Some(b0), Some(b1)) = (busy_before, busy_after) {
            let others = b1.saturating_sub(b0).saturating_sub(b.run_ns.saturating_sub(a.run_ns));
            r.all_us_per_pkt = Some(others as f64 / 1e3 / r.received.max(1) as f64);
        }
    }
    if let (Some(a), Some(b)) = (core_before, core_after) {
        let busy = ((wall * 1e9) as u64).saturating_sub(b.saturating_sub(a));
        r.core_us_per_pkt = Some(busy as f64 / 1e3 / r.received.max(1) as f64);
    }
    r.syscalls = syscalls.unwrap_or_default();
    r.relay_drops = relay_drops1.saturating_sub(relay_drops0);
    r.tool_drops = tool_drops1.saturating_sub(tool_drops0);
    Ok(r)
}
