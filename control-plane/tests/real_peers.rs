//! Real SIP peers against the real binary: SIPp (Debian sip-tester) and sipsak send
//! OPTIONS over UDP and TCP and check the 200. Installs them via ci/ when missing.

mod common;

use std::process::Command;

use common::*;

fn sipp(transport: &str, target: std::net::SocketAddr) -> std::process::Output {
    ensure_tool("sipp");
    let scenario = concat!(env!("CARGO_MANIFEST_DIR"), "/../tools/sipp/options.xml");
    let dir = TempDir::new("sipp");
    Command::new("timeout")
        .current_dir(&dir.0)
        .args([
            "60", "sipp", "-sf", scenario, "-s", "1000", "-m", "20", "-r", "20", "-t", transport,
        ])
        .args([
            "-i",
            "127.0.0.1",
            "-p",
            &free_port().to_string(),
            "-timeout",
            "30s",
            "-timeout_error",
            "-nostdin",
        ])
        .arg(target.to_string())
        .output()
        .expect("run sipp")
}

/// SIPp exits 0 only when every one of the 20 calls passed the scenario (a 200 with
/// Allow, Accept and Supported).
fn assert_all_passed(out: std::process::Output) {
    assert_eq!(
        out.status.code(),
        Some(0),
        "sipp failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn sipp_options_over_udp_all_20_succeed() {
    let sw = SwitchProcess::start("");
    assert_all_passed(sipp("u1", sw.udp));
}

#[test]
fn sipp_options_over_tcp_all_20_succeed() {
    let sw = SwitchProcess::start("");
    assert_all_passed(sipp("t1", sw.tcp));
}

#[test]
fn sipsak_options_gets_200() {
    ensure_tool("sipsak");
    let sw = SwitchProcess::start("");
    let out = Command::new("timeout")
        .args(["20", "sipsak", "-vv", "-l", &free_port().to_string(), "-s"])
        .arg(format!("sip:1000@{}", sw.udp))
        .output()
        .expect("run sipsak");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "sipsak:\n{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("SIP/2.0 200 OK"), "{text}");
}
