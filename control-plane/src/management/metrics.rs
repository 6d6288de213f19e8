//! `GET /metrics`: the switch's counters in Prometheus' text format (version 0.0.4),
//! sans-IO: what the SIP driver published last, the media supervisor's state, and each
//! plane's process CPU and memory. Labels are bounded (methods, codes, planes): nothing
//! per call.

use std::fmt::Write as _;

use crate::management::histogram::{ANSWER_SECONDS, JITTER_SECONDS, LOSS_RATIO};
use crate::media::supervisor::MediaState;
use crate::switch::metrics::{code_label, METHODS};
use crate::switch::Stats;
use ferroswitch_shared::msg::WorkerCounters;

/// One process's CPU time and resident memory.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Process {
    pub cpu_seconds: f64,
    pub rss_bytes: u64,
}

impl Process {
    /// Process `pid`'s (or this process's, for None) figures from /proc.
    pub fn read(pid: Option<u32>) -> Option<Process> {
        let dir = pid.map_or_else(|| "/proc/self".to_string(), |p| format!("/proc/{p}"));
        let stat = std::fs::read_to_string(format!("{dir}/stat")).ok()?;
        // Fields after the command name (which may hold spaces, inside parentheses).
        let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
        let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
        let status = std::fs::read_to_string(format!("{dir}/status")).ok()?;
        let rss_kb: u64 =
            status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?.trim().trim_end_matches("kB").trim().parse().ok()?;
        Some(Process { cpu_seconds: ticks / hz, rss_bytes: rss_kb * 1024 })
    }
}

/// The text format's writer: each family's HELP and TYPE once, then its samples.
struct Out(String);

impl Out {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl std::fmt::Display) {
        self.0.push_str(name);
        if !labels.is_empty() {
            self.0.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.0.push(',');
                }
                let v = v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n");
                let _ = write!(self.0, "{k}=\"{v}\"");
            }
            self.0.push('}');
        }
        let _ = writeln!(self.0, " {value}");
    }

    fn one(&mut self, name: &str, kind: &str, help: &str, value: impl std::fmt::Display) {
        self.family(name, kind, help);
        self.sample(name, &[], value);
    }
}

/// Each media core's own counters, labelled by core.
fn workers(o: &mut Out, m: &MediaState, now: std::time::Instant) {
    type Get = fn(&WorkerCounters) -> u64;
    /// (name, type, help, its series: a label, its value, and the counter).
    type Family<'a> = (&'a str, &'a str, &'a str, &'a [(&'a str, &'a str, Get)]);
    let cores: Vec<(String, &WorkerCounters, std::time::Instant)> =
        m.workers.iter().map(|(core, (w, at))| (core.to_string(), w, *at)).collect();
    let families: [Family<'_>; 4] = [
        (
            "ferroswitch_media_worker_packets_total",
            "counter",
            "Datagrams (RTP and RTCP) each media core received from and sent to the sessions' peers.",
            &[("direction", "in", |w| w.packets_in), ("direction", "out", |w| w.packets_out)],
        ),
        (
            "ferroswitch_media_worker_bytes_total",
            "counter",
            "Bytes each media core received from and sent to the sessions' peers.",
            &[("direction", "in", |w| w.bytes_in), ("direction", "out", |w| w.bytes_out)],
        ),
        (
            "ferroswitch_media_worker_drops_total",
            "counter",
            "Datagrams each media core did not relay, by reason.",
            &[
                ("reason", "no_peer", |w| w.drop_no_peer),
                ("reason", "strict_source", |w| w.drop_strict_source),
                ("reason", "malformed", |w| w.drop_malformed),
                ("reason", "loop", |w| w.drop_loop),
            ],
        ),
        (
            "ferroswitch_media_worker_lost_packets_total",
            "counter",
            "RTP packets lost on their way in to each media core (by sequence number).",
            &[("", "", |w| w.lost)],
        ),
    ];
    for (name, kind, help, series) in families {
        o.family(name, kind, help);
        for (core, w, _) in &cores {
            for (label, value, get) in series {
                let labels: &[(&str, &str)] =
                    if label.is_empty() { &[("core", core)] } else { &[("core", core), (label, value)] };
                o.sample(name, labels, get(w));
            }
        }
    }
    let gauges: [(&str, &str, &str, Get); 3] = [
        ("ferroswitch_media_worker_sessions", "gauge", "Sessions each media core holds.", |w| u64::from(w.sessions)),
        ("ferroswitch_media_worker_transcoded_sessions", "gauge", "Sessions each media core transcodes.", |w| {
            u64::from(w.transcoded)
        }),
        (
            "ferroswitch_media_worker_dropped_events_total",
            "counter",
            "Events each media core could not hand to the control plane (its event ring was full).",
            |w| w.dropped_events,
        ),
    ];
    for (name, kind, help, get) in gauges {
        o.family(name, kind, help);
        for (core, w, _) in &cores {
            o.sample(name, &[("core", core)], get(w));
        }
    }
    o.family(
        "ferroswitch_media_worker_heartbeat_age_seconds",
        "gauge",
        "Seconds since each media core last reported (it does every second; more: it is stuck or gone).",
    );
    for (core, _, at) in &cores {
        o.sample(
            "ferroswitch_media_worker_heartbeat_age_seconds",
            &[("core", core)],
            now.saturating_duration_since(*at).as_secs_f64(),
        );
    }
}

/// The whole `/metrics` page.
pub fn render(
    stats: &Stats,
    media: Option<&MediaState>,
    control: Option<Process>,
    media_process: Option<Process>,
    now: std::time::Instant,
) -> String {
    let mut o = Out(String::with_capacity(4096));
    o.family("ferroswitch_sip_requests_total", "counter", "SIP requests received, by method.");
    for (m, n) in METHODS.iter().zip(stats.by_method) {
        o.sample("ferroswitch_sip_requests_total", &[("method", m)], n);
    }
    o.family(
        "ferroswitch_sip_responses_sent_total",
        "counter",
        "SIP responses sent (retransmissions included), by code.",
    );
    for (i, n) in stats.responses_sent.0.iter().enumerate() {
        o.sample("ferroswitch_sip_responses_sent_total", &[("code", &code_label(i))], n);
    }
    o.one("ferroswitch_sip_responses_received_total", "counter", "SIP responses received.", stats.responses_received);
    o.one("ferroswitch_sip_parse_errors_total", "counter", "SIP messages that did not parse.", stats.parse_errors);
    o.one("ferroswitch_sip_refused_total", "counter", "SIP requests refused by policy.", stats.refused);
    o.one("ferroswitch_auth_challenges_total", "counter", "Digest challenges sent.", stats.challenged);
    o.one("ferroswitch_auth_failures_total", "counter", "Digest responses that did not verify.", stats.auth_failures);
    o.one(
        "ferroswitch_banned_dropped_total",
        "counter",
        "Requests dropped because their source is banned.",
        stats.banned_dropped,
    );
    o.one(
        "ferroswitch_rate_limited_total",
        "counter",
        "Requests refused with 503: over their source's rate or sip.max_calls.",
        stats.rate_limited,
    );
    o.one("ferroswitch_registrations_total", "counter", "Successful REGISTERs.", stats.registered);
    o.one("ferroswitch_registrations", "gauge", "Registered addresses of record.", stats.registrations);
    o.one("ferroswitch_calls", "gauge", "Calls in progress.", stats.calls);
    o.one("ferroswitch_channels", "gauge", "Live channels (call legs).", stats.channels);
    o.one(
        "ferroswitch_calls_total",
        "counter",
        "Calls started (inbound INVITEs and originates); rate() of it is the CPS.",
        stats.calls_started,
    );
    o.one("ferroswitch_sip_transactions", "gauge", "SIP transactions in progress.", stats.transactions);
    o.one("ferroswitch_sip_dialogs", "gauge", "Established SIP dialogs.", stats.dialogs);
    o.family(
        "ferroswitch_call_answer_seconds",
        "histogram",
        "Seconds from a call's first leg appearing to its answer, for the answered calls.",
    );
    stats.answer_seconds.render(&mut o.0, "ferroswitch_call_answer_seconds", "", &ANSWER_SECONDS);
    if let Some(m) = media {
        o.one(
            "ferroswitch_media_attached",
            "gauge",
            "1 while a media plane is attached and reconciled.",
            u8::from(m.ready),
        );
        o.one("ferroswitch_media_sessions", "gauge", "Media sessions the control plane holds.", m.sessions);
        o.one("ferroswitch_media_attachments_total", "counter", "Media plane attachments.", m.attachments);
        o.one("ferroswitch_media_spawned_total", "counter", "Media planes started by the supervisor.", m.spawned);
        o.one("ferroswitch_media_commands_total", "counter", "Commands sent to the media plane.", m.stats.commands);
        o.one(
            "ferroswitch_media_ring_full_total",
            "counter",
            "Times a command ring was full (back-pressure).",
            m.stats.ring_full,
        );
        o.one("ferroswitch_media_events_total", "counter", "Events received from the media plane.", m.stats.events);
        o.one(
            "ferroswitch_media_errors_total",
            "counter",
            "Error events received from the media plane.",
            m.stats.errors,
        );
        o.family(
            "ferroswitch_media_leg_loss_ratio",
            "histogram",
            "Each ended media leg's packet loss over its life (fraction of the packets expected).",
        );
        m.stats.leg_loss.render(&mut o.0, "ferroswitch_media_leg_loss_ratio", "", &LOSS_RATIO);
        o.family(
            "ferroswitch_media_leg_jitter_seconds",
            "histogram",
            "Each ended media leg's interarrival jitter at its end, in seconds.",
        );
        m.stats.leg_jitter_seconds.render(&mut o.0, "ferroswitch_media_leg_jitter_seconds", "", &JITTER_SECONDS);
        workers(&mut o, m, now);
    }
    o.family("ferroswitch_process_cpu_seconds_total", "counter", "CPU time of each plane's process (user and system).");
    for (plane, p) in [("control", control), ("media", media_process)] {
        if let Some(p) = p {
            o.sample("ferroswitch_process_cpu_seconds_total", &[("plane", plane)], p.cpu_seconds);
        }
    }
    o.family("ferroswitch_process_resident_memory_bytes", "gauge", "Resident memory of each plane's process.");
    for (plane, p) in [("control", control), ("media", media_process)] {
        if let Some(p) = p {
            o.sample("ferroswitch_process_resident_memory_bytes", &[("plane", plane)], p.rss_bytes);
        }
    }
    o.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_family_has_help_and_type_and_samples_are_well_formed() {
        let mut s = Stats::default();
        s.by_method[0] = 3;
        s.responses_sent.0[crate::switch::metrics::code_index(486)] = 2;
        s.calls = 1;
        let mut media = MediaState::default();
        let w = WorkerCounters { packets_in: 10, drop_loop: 2, sessions: 1, ..WorkerCounters::default() };
        let now = std::time::Instant::now();
        media.workers.insert(1, (w, now));
        media.stats.leg_loss.observe(&LOSS_RATIO, 0.003);
        let text = render(&s, Some(&media), Some(Process { cpu_seconds: 1.5, rss_bytes: 4096 }), None, now);
        assert!(text.contains("ferroswitch_media_worker_packets_total{core=\"1\",direction=\"in\"} 10\n"));
        assert!(text.contains("ferroswitch_media_worker_drops_total{core=\"1\",reason=\"loop\"} 2\n"));
        assert!(text.contains("ferroswitch_media_worker_lost_packets_total{core=\"1\"} 0\n"));
        assert!(text.contains("ferroswitch_media_worker_sessions{core=\"1\"} 1\n"));
        assert!(text.contains("ferroswitch_media_worker_heartbeat_age_seconds{core=\"1\"} 0\n"));
        assert!(text.contains("ferroswitch_media_leg_loss_ratio_bucket{le=\"0.005\"} 1\n"));
        assert!(text.contains("ferroswitch_sip_requests_total{method=\"INVITE\"} 3\n"));
        assert!(text.contains("ferroswitch_sip_responses_sent_total{code=\"486\"} 2\n"));
        assert!(text.contains("ferroswitch_calls 1\n"));
        assert!(text.contains("ferroswitch_process_cpu_seconds_total{plane=\"control\"} 1.5\n"));
        let mut seen = std::collections::HashSet::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let name = rest.split(' ').next().unwrap();
                assert!(seen.insert(name.to_string()), "{name} declared twice");
            } else if !line.starts_with("# HELP ") {
                let name = line.split(['{', ' ']).next().unwrap();
                let family = ["_bucket", "_sum", "_count"]
                    .iter()
                    .find_map(|s| name.strip_suffix(s).filter(|f| seen.contains(*f)))
                    .unwrap_or(name);
                assert!(seen.contains(family), "{name} sampled before its TYPE");
                let value = line.rsplit(' ').next().unwrap();
                assert!(value.parse::<f64>().is_ok(), "{line}");
            }
        }
    }

    #[test]
    fn this_process_reads_from_proc() {
        let p = Process::read(None).unwrap();
        assert!(p.rss_bytes > 0);
    }
}
