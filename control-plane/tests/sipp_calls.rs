//! SIPp calls through the real binary's B2BUA (the reference call in shared/REFERENCE.md):
//! a SIPp caller as 1000 (407 digest auth) to 1001, where a SIPp callee registered from a
//! fixed free port answers, is busy, or is cancelled; plus 480 (not registered) and 404
//! (unknown number). Each test starts its own switch on ephemeral loopback ports and drives
//! tools/sipp/run_call.sh (REGISTER 1001, callee in the background on the registered port,
//! caller with -m/-r, strict: both SIPp sides must pass every call, everything bounded).
//! The scenario pairs themselves are checked SIPp-to-SIPp by tools/sipp/selftest.sh.

mod common;

use std::process::Output;

use common::*;

/// Runs `calls` calls at `rate` calls/s from 1000 to `called`; `callee` is a scenario in
/// tools/sipp/ run as the registered 1001, or None when nobody registers.
fn run_call(sw: &SwitchProcess, calls: u32, rate: u32, called: &str, caller: &str, callee: Option<&str>) -> Output {
    run_call_in(&TempDir::new("sipp-call"), sw, (calls, rate), called, caller, callee, &[])
}

#[test]
fn basic_call_200_calls_at_20_cps_all_succeed() {
    // INVITE -> 407 -> ACK -> INVITE (auth) -> 100 -> 180 -> 200 -> ACK -> 500 ms -> BYE -> 200,
    // with the callee answering the switch's own INVITE and getting the BYE.
    let sw = SwitchProcess::start("");
    assert_all_passed("basic call", run_call(&sw, 200, 20, "1001", "uac_call_auth.xml", Some("uas_answer.xml")));
}

#[test]
fn callee_hangs_up_and_the_caller_gets_the_bye() {
    let sw = SwitchProcess::start("");
    assert_all_passed(
        "BYE from the callee",
        run_call(&sw, 5, 5, "1001", "uac_call_wait_bye.xml", Some("uas_answer_then_bye.xml")),
    );
}

#[test]
fn caller_cancels_while_ringing_200_and_487_and_the_callee_is_cancelled() {
    let sw = SwitchProcess::start("");
    assert_all_passed("CANCEL", run_call(&sw, 5, 5, "1001", "uac_call_cancel.xml", Some("uas_cancelled.xml")));
}

#[test]
fn busy_callee_486_reaches_the_caller() {
    let sw = SwitchProcess::start("");
    assert_all_passed("busy", run_call(&sw, 5, 5, "1001", "uac_call_busy.xml", Some("uas_busy.xml")));
}

#[test]
fn unregistered_callee_gives_480() {
    let sw = SwitchProcess::start("");
    assert_all_passed("not registered", run_call(&sw, 5, 5, "1019", "uac_call_unavailable.xml", None));
}

#[test]
fn unknown_number_gives_404() {
    let sw = SwitchProcess::start("");
    assert_all_passed("unknown number", run_call(&sw, 5, 5, "5555", "uac_call_notfound.xml", None));
}

#[test]
fn a_sofia_dial_string_to_localhost_resolves_and_reaches_the_callee() {
    // 5555 bridges to sofia/external/1001@localhost:<port>: the host name goes through the
    // system resolver (/etc/hosts), and the SIPp callee listening on that port answers.
    let port = free_port();
    let dir = TempDir::new("switch-dns");
    let plan = dir.0.join("dialplan.xml");
    std::fs::write(
        &plan,
        format!(
            r#"<include><context name="default"><extension name="by_name">
            <condition field="destination_number" expression="^5555$">
            <action application="bridge" data="sofia/external/1001@localhost:{port}"/>
            </condition></extension></context></include>"#
        ),
    )
    .unwrap();
    let sw = SwitchProcess::start_in(dir, &format!("\n[dialplan]\nfile = \"{}\"\n", plan.display()));
    ensure_tool("sipp");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../tools/sipp/run_call.sh");
    let logs = TempDir::new("sipp-dns");
    let out = std::process::Command::new("timeout")
        .args(["150", "bash", script, "-S", "-t", "30", "-m", "3", "-r", "3", "-s", "5555"])
        .args(["-p", &port.to_string()])
        .arg("-l")
        .arg(&logs.0)
        .arg(sw.udp.to_string())
        .args(["uac_call_auth.xml", "uas_answer.xml"])
        .output()
        .expect("run tools/sipp/run_call.sh");
    assert_all_passed("a call to a host name", out);
}
