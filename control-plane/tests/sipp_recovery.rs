//! Recovery through the real binary (FreeSWITCH's name for it): a SIPp caller as 1000 calls
//! 1001, a SIPp callee registered from a fixed port that answers and hangs up 3 s later
//! (tools/sipp/uas_answer_bye_later.xml). About a second after the answer the switch is
//! killed with SIGKILL and started again on the same database and the same UDP address. The
//! callee's BYE reaches the restarted switch, which took the call back from its tables: the
//! caller gets its BYE and both SIPp scenarios pass (run_call.sh -S), both legs' CDRs say
//! NORMAL_CLEARING, and no channel, call or dialog is left. Everything is bounded: SIPp by
//! run_call.sh and an outer timeout(1), every wait here by a deadline.

mod common;

use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

/// tools/sipp/run_call.sh in its own process group, killed (the group) if the test ends
/// before it does. The SIPp processes it starts run under their own timeout(1) and end
/// by themselves.
struct RunCall(Child);

impl RunCall {
    fn start(switch: SocketAddr, logs: &TempDir) -> RunCall {
        ensure_tool("sipp");
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../tools/sipp/run_call.sh");
        let out = std::fs::File::create(logs.0.join("run_call.out")).unwrap();
        let child = Command::new("timeout")
            .args(["120", "bash", script, "-S", "-t", "30", "-m", "1", "-r", "1", "-s", "1001"])
            .args(["-p", &free_port().to_string()])
            .arg("-l")
            .arg(&logs.0)
            .arg(switch.to_string())
            .args(["uac_call_wait_bye.xml", "uas_answer_bye_later.xml"])
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .process_group(0)
            .spawn()
            .expect("run tools/sipp/run_call.sh");
        RunCall(child)
    }

    /// Its exit status, or None if it runs past `limit`.
    fn wait(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Some(status) = self.0.try_wait().unwrap() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        None
    }
}

impl Drop for RunCall {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = Command::new("kill").args(["-KILL", "--", &format!("-{}", self.0.id())]).status();
            let _ = self.0.wait();
        }
    }
}

/// Polls `probe` every 50 ms until it gives a value or `limit` passes.
fn wait_for<T>(limit: Duration, mut probe: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = probe() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn get_json(sw: &SwitchProcess, path: &str) -> Vec<Value> {
    let (code, body) = sw.http_get(path);
    assert_eq!(code, 200, "GET {path}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path}: {e}: {body}"))
}

/// Everything a failed run leaves to read: SIPp's output and the switch's log.
fn logs(sipp: &TempDir, switch_dir: &std::path::Path) -> String {
    let read = |p: std::path::PathBuf| std::fs::read_to_string(&p).unwrap_or_else(|e| format!("{}: {e}", p.display()));
    format!(
        "== run_call.sh\n{}\n== ferroswitch.log\n{}",
        read(sipp.0.join("run_call.out")),
        read(switch_dir.join("ferroswitch.log"))
    )
}

#[test]
fn a_bridged_call_survives_a_killed_switch_and_the_callees_bye_ends_it() {
    let udp: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let sipp = TempDir::new("sipp-recovery");
    let sw = SwitchProcess::start_on(TempDir::new("recovery"), udp);
    let mut run = RunCall::start(udp, &sipp);
    // Bridged once the calls table shows the call: its rows are committed.
    let call = wait_for(Duration::from_secs(20), || get_json(&sw, "/calls").pop());
    let Some(call) = call else { panic!("the call was never bridged\n{}", logs(&sipp, &sw.dir.0)) };
    let call_uuid = call["uuid"].as_str().unwrap().to_string();
    std::thread::sleep(Duration::from_secs(1));
    let dir = sw.kill();
    let sw = SwitchProcess::start_on(dir, udp);
    let status = run.wait(Duration::from_secs(90));
    assert!(
        status.is_some_and(|s| s.success()),
        "SIPp: {status:?} (0: caller and callee passed)\n{}",
        logs(&sipp, &sw.dir.0)
    );
    // Both legs' CDRs, from the rows stored before the kill; nothing left behind.
    let cdrs = wait_for(Duration::from_secs(5), || Some(get_json(&sw, "/cdr")).filter(|c| c.len() == 2));
    let Some(cdrs) = cdrs else { panic!("CDRs: {:?}\n{}", get_json(&sw, "/cdr"), logs(&sipp, &sw.dir.0)) };
    let mut directions: Vec<&str> = cdrs.iter().map(|c| c["direction"].as_str().unwrap()).collect();
    directions.sort();
    assert_eq!(directions, ["inbound", "outbound"]);
    for c in &cdrs {
        assert_eq!((c["hangup_cause"].as_str(), c["q850_cause"].as_u64()), (Some("NORMAL_CLEARING"), Some(16)), "{c}");
        assert_eq!(c["call_uuid"].as_str(), Some(call_uuid.as_str()), "{c}");
        assert!(c["answer_at"].is_i64(), "answered: {c}");
    }
    for path in ["/channels", "/calls", "/dialogs"] {
        assert_eq!(get_json(&sw, path), Vec::<Value>::new(), "{path}");
    }
    let log = std::fs::read_to_string(sw.dir.0.join("ferroswitch.log")).unwrap();
    assert!(log.contains("recovered call") && log.contains(&call_uuid), "{log}");
    assert!(log.contains("recovered 1 calls, cleared 0 channels"), "{log}");
}
