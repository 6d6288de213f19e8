//! What the kernel says about the relay: its CPU time and context switches (all
//! threads), and UDP sockets' drop counters.

use std::collections::HashSet;

/// A process's counters at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProcSample {
    /// utime + stime from /proc/PID/stat (all threads, live and exited), in clock ticks.
    pub ticks: u64,
    /// Sum over /proc/PID/task/*/schedstat of time on CPU, ns (live threads).
    pub run_ns: u64,
    /// Voluntary context switches of the live threads (each is a sleep: a wake-up later).
    pub voluntary: u64,
    /// Involuntary context switches of the live threads (preempted).
    pub involuntary: u64,
    /// Each live thread: (tid, name, time on CPU in ns).
    pub threads: Vec<(u32, String, u64)>,
}

/// Clock ticks per second (`sysconf(_SC_CLK_TCK)`).
pub fn ticks_per_sec() -> u64 {
    // SAFETY: sysconf takes no pointers.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as u64
    } else {
        100
    }
}

/// utime + stime from a /proc/PID/stat line (the fields after the command's `)`).
pub fn stat_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After ")": state is field 3 of the man page, so utime (14) and stime (15) are 11, 12.
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

/// Reads `pid`'s counters.
pub fn sample(pid: u32) -> std::io::Result<ProcSample> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let ticks = stat_ticks(&stat).ok_or_else(|| std::io::Error::other(format!("/proc/{pid}/stat: unreadable")))?;
    let mut s = ProcSample { ticks, ..ProcSample::default() };
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))?.flatten() {
        let dir = task.path();
        if let Ok(text) = std::fs::read_to_string(dir.join("schedstat")) {
            let ns = text.split_whitespace().next().and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
            s.run_ns += ns;
            let tid = task.file_name().to_str().and_then(|t| t.parse().ok()).unwrap_or(0);
            let name = std::fs::read_to_string(dir.join("comm")).unwrap_or_default().trim().to_string();
            s.threads.push((tid, name, ns));
        }
        if let Ok(text) = std::fs::read_to_string(dir.join("status")) {
            for line in text.lines() {
                let value = |l: &str| l.split_whitespace().nth(1).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
                if line.starts_with("voluntary_ctxt_switches:") {
                    s.voluntary += value(line);
                } else if line.starts_with("nonvoluntary_ctxt_switches:") {
                    s.involuntary += value(line);
                }
            }
        }
    }
    Ok(s)
}

/// Sum of the `drops` column of /proc/net/udp{,6} lines in `text` whose local port is in
/// `ports`.
pub fn udp_drops_in(text: &str, ports: &HashSet<u16>) -> u64 {
    let mut drops = 0;
    for line in text.lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        let Some(port) = f.get(1).and_then(|a| a.rsplit(':').next()).and_then(|p| u16::from_str_radix(p, 16).ok())
        else {
            continue;
        };
        if ports.contains(&port) {
            drops += f.last().and_then(|d| d.parse::<u64>().ok()).unwrap_or(0);
        }
    }
    drops
}

/// Datagrams the kernel dropped (full receive buffer) on sockets bound to `ports`.
pub fn udp_drops(ports: &HashSet<u16>) -> u64 {
    ["/proc/net/udp", "/proc/net/udp6"]
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .map(|t| udp_drops_in(&t, ports))
        .sum()
}

/// `perf stat` counting a process's system calls, from [`SyscallCount::start`] to
/// [`SyscallCount::finish`].
pub struct SyscallCount {
    child: std::process::Child,
    out: std::path::PathBuf,
}

impl SyscallCount {
    /// Starts counting `names` (e.g. `recvmmsg`) for `pid`; returns once perf counts.
    pub fn start(pid: u32, names: &[String]) -> Result<SyscallCount, String> {
        let events: Vec<String> = names.iter().map(|n| format!("syscalls:sys_enter_{n}")).collect();
        let out = std::env::temp_dir().join(format!("rtpload-perf-{}-{pid}.csv", std::process::id()));
        let child = std::process::Command::new("perf")
            .args(["stat", "-x,", "-e", &events.join(","), "-p", &pid.to_string(), "-o"])
            .arg(&out)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .spawn()
            .map_err(|e| format!("perf: {e}"))?;
        // perf opens its counters in a few ms; anything before that is not counted.
        std::thread::sleep(std::time::Duration::from_millis(300));
        Ok(SyscallCount { child, out })
    }

    /// Stops perf (SIGINT) and returns each system call's count.
    pub fn finish(mut self) -> Result<Vec<(String, u64)>, String> {
        // SAFETY: kill takes no pointers; the pid is our child's.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGINT) };
        let _ = self.child.wait();
        let text = std::fs::read_to_string(&self.out).map_err(|e| format!("perf output: {e}"))?;
        let _ = std::fs::remove_file(&self.out);
        Ok(perf_counts(&text))
    }
}

/// `(name, count)` from `perf stat -x,` output, for the `syscalls:sys_enter_*` events that
/// were counted.
pub fn perf_counts(text: &str) -> Vec<(String, u64)> {
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            let n = f.first()?.parse().ok()?;
            Some((f.get(2)?.strip_prefix("syscalls:sys_enter_")?.to_string(), n))
        })
        .collect()
}

/// Every CPU's busy time so far (/proc/stat's `cpu` line: user, nice, system, irq,
/// softirq), ns.
pub fn system_busy_ns() -> Option<u64> {
    busy_ns("cpu ")
}

/// CPU `n`'s idle and iowait time so far (its `cpuN` line), ns. Unlike user and system
/// time, which are sampled at the timer tick (and miss work done between ticks, as a
/// paced load's is), these are kept exactly by the idle loop: the CPU's busy time over a
/// window is the window less their growth.
pub fn cpu_idle_ns(n: usize) -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let prefix = format!("cpu{n} ");
    let line = stat.lines().find(|l| l.starts_with(&prefix))?;
    let v: Vec<u64> = line.split_whitespace().skip(1).filter_map(|x| x.parse().ok()).collect();
    Some((v.get(3)? + v.get(4)?) * 1_000_000_000 / ticks_per_sec().max(1))
}

fn busy_ns(prefix: &str) -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().find(|l| l.starts_with(prefix))?;
    let v: Vec<u64> = line.split_whitespace().skip(1).filter_map(|x| x.parse().ok()).collect();
    let busy = v.first()? + v.get(1)? + v.get(2)? + v.get(5)? + v.get(6)?;
    Some(busy * 1_000_000_000 / ticks_per_sec().max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_ticks_skip_a_command_with_spaces_and_parens() {
        let line = "4242 (rtp (engine) x) S 1 4242 4242 0 -1 4194560 1234 0 0 0 150 37 0 0 20 0 3 0 100 1 2";
        assert_eq!(stat_ticks(line), Some(187));
        assert_eq!(stat_ticks("4242 (x) S 1"), None);
    }

    #[test]
    fn drops_are_summed_for_the_ports_asked() {
        let text = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops\n\
             1: 0100007F:4000 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 1 2 ffff 5\n\
             2: 0100007F:4002 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 1 2 ffff 7\n\
             3: 0100007F:0035 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 1 2 ffff 100\n";
        let ports: HashSet<u16> = [0x4000, 0x4002, 0x4004].into();
        assert_eq!(udp_drops_in(text, &ports), 12);
    }

    #[test]
    fn perf_csv_counts_are_read() {
        let text = "# started on Sat Nov 21 17:37:23 2026\n\n152000,,syscalls:sys_enter_recvmmsg,4000,100.00,,\n\
                    <not counted>,,syscalls:sys_enter_sendmmsg,0,100.00,,\n0,,syscalls:sys_enter_poll,4000,100.00,,\n";
        assert_eq!(perf_counts(text), vec![("recvmmsg".to_string(), 152_000), ("poll".to_string(), 0)]);
    }

    #[test]
    fn this_process_can_be_sampled() {
        let s = sample(std::process::id()).unwrap();
        assert!(s.run_ns > 0);
        assert!(s.threads.iter().any(|(tid, _, ns)| *tid == std::process::id() && *ns > 0));
    }
}
