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
    let out = run_call_in(
        &TempDir::new("metrics-call"),
        &sw,
        (1, 1),
        "1001",
        "uac_call_auth.xml",
        Some("uas_answer.xml"),
        &[],
    );
    assert_all_passed("the call", out);
    let (status, page) = sw.http_get("/metrics");
    assert_eq!(status, 200);
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
    assert!(sample(&page, "ferroswitch_process_resident_memory_bytes{plane=\"control\"}") > 0.0);
    assert!(sample(&page, "ferroswitch_process_resident_memory_bytes{plane=\"media\"}") > 0.0);
}
