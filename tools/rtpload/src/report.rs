//! The figures of one run, and their two renderings: a line for people and a
//! `RESULT key=value ...` line for scripts.

use crate::load::Outcome;
use crate::procfs::ProcSample;

/// The relay's counters over the measured window.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RelayUsage {
    /// CPU time on the relay's threads (schedstat), seconds.
    pub cpu_secs: f64,
    /// The same from /proc/PID/stat ticks (coarser; includes exited threads).
    pub cpu_secs_ticks: f64,
    /// Voluntary context switches (sleeps, so wake-ups).
    pub wakeups: u64,
    /// Involuntary context switches.
    pub preempted: u64,
    /// Wall-clock seconds between the samples.
    pub wall_secs: f64,
    /// CPU seconds per thread alive at both samples, by name, busiest first.
    pub threads: Vec<(String, f64)>,
}

impl RelayUsage {
    /// The difference between two samples `wall_secs` apart.
    pub fn between(a: &ProcSample, b: &ProcSample, wall_secs: f64, ticks_per_sec: u64) -> RelayUsage {
        RelayUsage {
            cpu_secs: b.run_ns.saturating_sub(a.run_ns) as f64 / 1e9,
            cpu_secs_ticks: b.ticks.saturating_sub(a.ticks) as f64 / ticks_per_sec.max(1) as f64,
            wakeups: b.voluntary.saturating_sub(a.voluntary),
            preempted: b.involuntary.saturating_sub(a.involuntary),
            wall_secs,
            threads: {
                let mut t: Vec<(String, f64)> = b
                    .threads
                    .iter()
                    .filter_map(|(tid, name, ns)| {
                        let before = a.threads.iter().find(|(t, ..)| t == tid)?.2;
                        Some((name.clone(), ns.saturating_sub(before) as f64 / 1e9))
                    })
                    .collect();
                t.sort_by(|x, y| y.1.total_cmp(&x.1));
                t
            },
        }
    }
}

/// Everything a run reports.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Report {
    /// Target kind (and label).
    pub target: String,
    /// Sessions.
    pub sessions: usize,
    /// Offered packets per second, both directions (sent / send time).
    pub offered_pps: f64,
    /// Relayed packets per second (received / time from the first send to the last
    /// arrival).
    pub relayed_pps: f64,
    /// Measured packets sent.
    pub sent: u64,
    /// Distinct ones received.
    pub received: u64,
    /// Sent and never received.
    pub lost: u64,
    /// Received later than the late bound.
    pub late: u64,
    /// Duplicates received.
    pub duplicates: u64,
    /// First arrivals older than the newest of their stream.
    pub reordered: u64,
    /// Packets whose RTP header no longer matched their payload.
    pub header_errors: u64,
    /// Datagrams that were not ours or came in on the wrong socket.
    pub foreign: u64,
    /// Latency quantiles and maximum, µs.
    pub p50_us: f64,
    /// 99th percentile.
    pub p99_us: f64,
    /// Largest.
    pub max_us: f64,
    /// Mean over the streams of the RFC 3550 jitter estimate, µs.
    pub jitter_us: f64,
    /// Largest stream jitter, µs.
    pub jitter_max_us: f64,
    /// The relay's usage, if its pid was given.
    pub relay: Option<RelayUsage>,
    /// Datagrams the kernel dropped on the relay's sockets (receive buffer full).
    pub relay_drops: u64,
    /// ... and on the tool's own sockets (then the loss is the tool's, not the relay's).
    pub tool_drops: u64,
    /// The relay's system calls over the window, by name (when counted).
    pub syscalls: Vec<(String, u64)>,
    /// The tool's own CPU over the window, % of one core (near 100: the tool, not the
    /// relay, may be the limit).
    pub tool_cpu_pct: f64,
    /// Every CPU's busy time over the window (/proc/stat) less the tool's own, per
    /// packet received, µs: the relay's cost including the kernel's softirq and NAPI
    /// work wherever it ran.
    pub all_us_per_pkt: Option<f64>,
    /// The relay's CPU's whole busy time over the window (`--relay-cpu`: the window less
    /// that CPU's idle and iowait time), per packet received, µs.
    pub core_us_per_pkt: Option<f64>,
}

impl Report {
    /// The figures of `o` for `sessions` sessions on `target`.
    pub fn new(target: &str, sessions: usize, o: &Outcome) -> Report {
        let secs = o.send_secs.max(1e-9);
        let (sent, received) = (o.sent_total(), o.received());
        let jitters: Vec<f64> = o.rx.iter().filter(|r| r.unique > 1).map(|r| r.jitter_ns() / 1e3).collect::<Vec<_>>();
        Report {
            target: target.to_string(),
            sessions,
            offered_pps: sent as f64 / secs,
            relayed_pps: received as f64 / o.rx_secs.max(o.send_secs).max(1e-9),
            sent,
            received,
            lost: o.lost(),
            late: o.late,
            duplicates: o.total(|r| r.duplicates),
            reordered: o.total(|r| r.reordered),
            header_errors: o.total(|r| r.header_errors),
            foreign: o.foreign,
            p50_us: o.latency.quantile_ns(0.5) as f64 / 1e3,
            p99_us: o.latency.quantile_ns(0.99) as f64 / 1e3,
            max_us: o.latency.max_ns() as f64 / 1e3,
            jitter_us: if jitters.is_empty() { 0.0 } else { jitters.iter().sum::<f64>() / jitters.len() as f64 },
            jitter_max_us: jitters.iter().copied().fold(0.0, f64::max),
            ..Report::default()
        }
    }

    /// Lost packets as a percentage of those sent.
    pub fn loss_pct(&self) -> f64 {
        if self.sent == 0 {
            0.0
        } else {
            self.lost as f64 * 100.0 / self.sent as f64
        }
    }

    /// Lost or late packets as a percentage of those sent: what a listener misses.
    pub fn missed_pct(&self) -> f64 {
        if self.sent == 0 {
            0.0
        } else {
            (self.lost + self.late) as f64 * 100.0 / self.sent as f64
        }
    }

    /// The relay's CPU µs per relayed packet.
    pub fn cpu_us_per_pkt(&self) -> Option<f64> {
        self.relay.as_ref().filter(|_| self.received > 0).map(|r| r.cpu_secs * 1e6 / self.received as f64)
    }

    /// The counted system calls per relayed packet: `name:n,...` (those made at all).
    pub fn syscalls_per_pkt(&self) -> String {
        let per: Vec<String> = self
            .syscalls
            .iter()
            .filter(|(_, n)| *n > 0 && self.received > 0)
            .map(|(name, n)| format!("{name}:{:.3}", *n as f64 / self.received as f64))
            .collect();
        if per.is_empty() {
            "-".to_string()
        } else {
            per.join(",")
        }
    }

    /// The relay's threads that used at least 0.5 % of a core: `name:pct,...`.
    pub fn threads(&self) -> String {
        let Some(r) = &self.relay else { return "-".to_string() };
        let busy: Vec<String> = r
            .threads
            .iter()
            .map(|(n, secs)| (n, secs * 100.0 / r.wall_secs.max(1e-9)))
            .filter(|(_, pct)| *pct >= 0.5)
            .map(|(n, pct)| format!("{}:{pct:.1}", n.replace([' ', ',', ':', '='], "_")))
            .collect();
        if busy.is_empty() {
            "-".to_string()
        } else {
            busy.join(",")
        }
    }

    /// The relay's wake-ups (voluntary context switches) per relayed packet.
    pub fn wakeups_per_pkt(&self) -> Option<f64> {
        self.relay.as_ref().filter(|_| self.received > 0).map(|r| r.wakeups as f64 / self.received as f64)
    }

    /// One line for people.
    pub fn human(&self) -> String {
        let r = self;
        let mut s = format!(
            "{}: {} sessions, offered {:.0} pkt/s, relayed {:.0} pkt/s, lost {} of {} ({:.4} %), late {}, \
             dup {} reordered {} bad-header {}, latency p50 {:.1} µs p99 {:.1} µs max {:.1} µs, jitter {:.1} µs",
            r.target,
            r.sessions,
            r.offered_pps,
            r.relayed_pps,
            r.lost,
            r.sent,
            r.loss_pct(),
            r.late,
            r.duplicates,
            r.reordered,
            r.header_errors,
            r.p50_us,
            r.p99_us,
            r.max_us,
            r.jitter_us
        );
        if let (Some(cpu), Some(pct), Some(w)) = (self.cpu_us_per_pkt(), self.cpu_pct(), self.wakeups_per_pkt()) {
            s +=
                &format!(", relay CPU {cpu:.2} µs/pkt ({pct:.1} % of a core: {}), {w:.3} wake-ups/pkt", self.threads());
        }
        s += &format!(
            ", socket drops relay {} tool {}, tool CPU {:.1} %",
            self.relay_drops, self.tool_drops, self.tool_cpu_pct
        );
        s
    }

    /// The relay's CPU as a percentage of one core over the window.
    pub fn cpu_pct(&self) -> Option<f64> {
        self.relay.as_ref().map(|r| r.cpu_secs * 100.0 / r.wall_secs.max(1e-9))
    }

    /// Every figure as `(key, value)`, "-" where unknown: the machine-readable line.
    pub fn fields(&self) -> Vec<(&'static str, String)> {
        let opt = |v: Option<f64>, prec: usize| v.map_or("-".to_string(), |v| format!("{v:.prec$}"));
        let per_pkt_ticks =
            self.relay.as_ref().filter(|_| self.received > 0).map(|r| r.cpu_secs_ticks * 1e6 / self.received as f64);
        vec![
            ("target", self.target.clone()),
            ("sessions", self.sessions.to_string()),
            ("offered_pps", format!("{:.0}", self.offered_pps)),
            ("relayed_pps", format!("{:.0}", self.relayed_pps)),
            ("sent", self.sent.to_string()),
            ("received", self.received.to_string()),
            ("lost", self.lost.to_string()),
            ("loss_pct", format!("{:.4}", self.loss_pct())),
            ("late", self.late.to_string()),
            ("missed_pct", format!("{:.4}", self.missed_pct())),
            ("dup", self.duplicates.to_string()),
            ("reordered", self.reordered.to_string()),
            ("header_errors", self.header_errors.to_string()),
            ("foreign", self.foreign.to_string()),
            ("p50_us", format!("{:.1}", self.p50_us)),
            ("p99_us", format!("{:.1}", self.p99_us)),
            ("max_us", format!("{:.1}", self.max_us)),
            ("jitter_us", format!("{:.2}", self.jitter_us)),
            ("jitter_max_us", format!("{:.2}", self.jitter_max_us)),
            ("cpu_us_per_pkt", opt(self.cpu_us_per_pkt(), 3)),
            ("cpu_us_per_pkt_ticks", opt(per_pkt_ticks, 3)),
            ("cpu_pct", opt(self.cpu_pct(), 1)),
            ("wakeups_per_pkt", opt(self.wakeups_per_pkt(), 4)),
            ("preempted", self.relay.as_ref().map_or("-".to_string(), |r| r.preempted.to_string())),
            ("threads", self.threads()),
            ("syscalls_per_pkt", self.syscalls_per_pkt()),
            ("relay_drops", self.relay_drops.to_string()),
            ("tool_drops", self.tool_drops.to_string()),
            ("tool_cpu_pct", format!("{:.1}", self.tool_cpu_pct)),
            ("all_us_per_pkt", opt(self.all_us_per_pkt, 3)),
            ("core_us_per_pkt", opt(self.core_us_per_pkt, 3)),
        ]
    }

    /// One `RESULT key=value ...` line for scripts.
    pub fn machine(&self) -> String {
        let mut line = "RESULT".to_string();
        for (k, v) in self.fields() {
            line += &format!(" {k}={v}");
        }
        line
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::StreamRx;

    #[test]
    fn loss_latency_and_cpu_add_up() {
        let mut o =
            Outcome { sent: vec![100, 100], rx: vec![StreamRx::default(), StreamRx::default()], ..Default::default() };
        for i in 0..100 {
            o.rx[0].on_packet(i);
        }
        for i in (0..100).filter(|i| i % 10 != 3) {
            o.rx[1].on_packet(i);
        }
        o.rx[1].on_packet(98); // a duplicate
        for us in 1..=190u64 {
            o.latency.add(us * 1000);
        }
        o.send_secs = 2.0;
        o.rx_secs = 1.9; // the last arrival came before the last send: the send time counts
        o.late = 3;
        let mut r = Report::new("forwarder", 1, &o);
        assert_eq!((r.sent, r.received, r.lost, r.duplicates), (200, 190, 10, 1));
        assert_eq!((r.loss_pct(), r.missed_pct()), (5.0, 6.5));
        assert_eq!((r.offered_pps, r.relayed_pps), (100.0, 95.0));
        assert_eq!((r.p50_us, r.p99_us, r.max_us), (95.1, 189.1, 190.0));
        assert_eq!(r.cpu_us_per_pkt(), None);
        let a = ProcSample {
            ticks: 10,
            run_ns: 1_000_000,
            voluntary: 5,
            involuntary: 0,
            threads: vec![(1, "main".into(), 1_000_000), (2, "gone".into(), 0)],
        };
        let b = ProcSample {
            ticks: 12,
            run_ns: 20_000_000,
            voluntary: 100,
            involuntary: 2,
            threads: vec![(1, "main".into(), 10_000_000), (3, "new".into(), 1), (4, "worker 0".into(), 0)],
        };
        r.relay = Some(RelayUsage::between(&a, &b, 1.0, 100));
        assert!((r.cpu_us_per_pkt().unwrap() - 100.0).abs() < 1e-9); // 19 ms / 190
        assert!((r.wakeups_per_pkt().unwrap() - 0.5).abs() < 1e-12);
        let line = r.machine();
        assert!(
            line.starts_with("RESULT target=forwarder sessions=1 offered_pps=100 relayed_pps=95 sent=200"),
            "{line}"
        );
        assert!(line.contains(" loss_pct=5.0000 ") && line.contains(" cpu_us_per_pkt=100.000 "), "{line}");
        assert!(line.contains(" cpu_us_per_pkt_ticks=105.263 ") && line.contains(" cpu_pct=1.9 "), "{line}");
        assert!(r.human().contains("lost 10 of 200 (5.0000 %), late 3,"), "{}", r.human());
        assert!(line.contains(" late=3 missed_pct=6.5000 "), "{line}");
        assert!(line.contains(" threads=main:0.9 syscalls_per_pkt=- "), "{line}");
        r.syscalls = vec![("recvmmsg".into(), 95), ("poll".into(), 0), ("sendto".into(), 190)];
        assert_eq!(r.syscalls_per_pkt(), "recvmmsg:0.500,sendto:1.000");
        o.rx_secs = 4.0; // still arriving long after the sends: the relay fell behind
        assert_eq!(Report::new("x", 1, &o).relayed_pps, 47.5);
    }
}
