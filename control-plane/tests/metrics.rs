//! `GET /metrics` on the real binary after a SIPp call: Prometheus' own checker
//! (promtool, Debian's prometheus package, installed by ci/install-deps.sh test) accepts
//! the page, and the counters say what the call did.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use common::*;

fn sample(page: &str, series: &str) -> f64 {
    page.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')))
        .unwrap_or_else(|| panic!("no {series} in\n{page}"))
        .parse()
        .unwrap()
}

#[test]
fn the_metrics_page_passes_promtool_and_counts_a_calls_sip() {
    ensure_tool("promtool");
    let sw = SwitchProcess::start("");
    // The caller streams 100 PCMU packets; the callee echoes each back: both legs carry
    // 100 in and 100 out across the media plane.
    let logs = TempDir::new("metrics-call");
    std::fs::write(logs.0.join("audio.ulaw"), [0xffu8; 8000]).unwrap();
    let out = run_call_in(&logs, &sw, (1, 1), "1001", "uac_call_auth_rtp.xml", Some("uas_answer.xml"), &["-rtp_echo"]);
    assert_all_passed("the call", out);
    // Each media core reports its counters once a second; the ended legs' histograms
    // follow the sessions' destruction.
    let sum = |page: &str, prefix: &str| -> f64 {
        page.lines().filter(|l| l.starts_with(prefix)).filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok()).sum()
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let page = loop {
        let (status, page) = sw.http_get("/metrics");
        assert_eq!(status, 200);
        let settled = sum(&page, "ferroswitch_media_worker_packets_total{") == 400.0
            && sum(&page, "ferroswitch_media_worker_sessions{") == 0.0
            && sample(&page, "ferroswitch_media_leg_loss_ratio_count") == 2.0;
        if settled || std::time::Instant::now() > deadline {
            break page;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    let mut check = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    check.stdin.take().unwrap().write_all(page.as_bytes()).unwrap();
    let checked = check.wait_with_output().unwrap();
    assert!(
        checked.status.success(),
        "promtool: {}{}\n{page}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );
    // The caller's two INVITEs (the first challenged), its ACKs and BYE; the callee's
    // REGISTER (challenged, then accepted) and its un-REGISTER.
    assert_eq!(sample(&page, "ferroswitch_sip_requests_total{method=\"INVITE\"}"), 2.0);
    assert_eq!(sample(&page, "ferroswitch_sip_requests_total{method=\"BYE\"}"), 1.0);
    assert!(sample(&page, "ferroswitch_sip_requests_total{method=\"REGISTER\"}") >= 3.0);
    assert!(sample(&page, "ferroswitch_sip_responses_sent_total{code=\"407\"}") >= 1.0);
    assert!(sample(&page, "ferroswitch_sip_responses_sent_total{code=\"200\"}") >= 3.0);
    assert_eq!(sample(&page, "ferroswitch_calls"), 0.0);
    assert_eq!(sample(&page, "ferroswitch_channels"), 0.0);
    assert_eq!(sample(&page, "ferroswitch_media_attached"), 1.0);
    // One call, answered; its transactions are done, its dialogs gone.
    assert_eq!(sample(&page, "ferroswitch_calls_total"), 1.0);
    assert_eq!(sample(&page, "ferroswitch_call_answer_seconds_count"), 1.0);
    assert_eq!(sample(&page, "ferroswitch_sip_dialogs"), 0.0);
    // Per media core: 200 datagrams in (100 from each phone) and 200 out, none dropped;
    // both legs ended with no loss.
    let lines = |prefix: &str| page.lines().filter(|l| l.starts_with(prefix)).collect::<Vec<_>>().join("\n");
    assert_eq!(sum(&page, "ferroswitch_media_worker_packets_total{"), 400.0, "{}", lines("ferroswitch_media_worker"));
    for direction in ["in", "out"] {
        let total: f64 = page
            .lines()
            .filter(|l| {
                l.starts_with("ferroswitch_media_worker_packets_total{")
                    && l.contains(&format!("direction=\"{direction}\""))
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum();
        assert_eq!(total, 200.0, "{direction}: {}", lines("ferroswitch_media_worker_packets_total"));
    }
    assert_eq!(sum(&page, "ferroswitch_media_worker_drops_total{"), 0.0, "{}", lines("ferroswitch_media_worker_drops"));
    assert!(
        page.contains("ferroswitch_media_worker_heartbeat_age_seconds{core=\"0\"}"),
        "{}",
        lines("ferroswitch_media_worker")
    );
    assert_eq!(sample(&page, "ferroswitch_media_leg_loss_ratio_bucket{le=\"0\"}"), 2.0);
    assert_eq!(sample(&page, "ferroswitch_media_leg_jitter_seconds_count"), 2.0);
    assert!(sample(&page, "ferroswitch_process_resident_memory_bytes{plane=\"control\"}") > 0.0);
    assert!(sample(&page, "ferroswitch_process_resident_memory_bytes{plane=\"media\"}") > 0.0);
}
