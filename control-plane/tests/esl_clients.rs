//! Real ESL clients from their registries, unchanged, against the real binary's event
//! socket: greenswitch (PyPI) authenticates, runs api and bgapi (its BACKGROUND_JOB
//! handler gets the job it named), and its event handlers get a SIPp call's channel events.
//! ci/install-esl-clients.sh installs them.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::*;

/// The virtualenv's python with the clients, installed by ci/install-esl-clients.sh.
fn clients_python() -> String {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../ci/install-esl-clients.sh");
    let out = Command::new("bash").arg(script).output().expect("run ci/install-esl-clients.sh");
    assert!(out.status.success(), "ci/install-esl-clients.sh: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

#[test]
fn greenswitch_drives_the_event_socket_and_gets_a_calls_events() {
    let python = clients_python();
    let sw = SwitchProcess::start_with_ng(
        TempDir::new("greenswitch"),
        "",
        "",
        "\n[esl]\nlisten = \"127.0.0.1:0\"\npassword = \"gs-secret\"\n",
    );
    let esl = sw.esl.unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../tools/esl-clients/greenswitch_client.py");
    let mut child = Command::new("timeout")
        .args(["60", &python, script, &esl.ip().to_string(), &esl.port().to_string(), "gs-secret"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the greenswitch client");
    let (tx, rx) = mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut lines = Vec::new();
    loop {
        let line = rx.recv_timeout(Duration::from_secs(30)).expect("the client went quiet before READY");
        let ready = line == "READY";
        lines.push(line);
        if ready {
            break;
        }
    }
    let out =
        run_call_in(&TempDir::new("gs-call"), &sw, (1, 1), "1001", "uac_call_auth.xml", Some("uas_answer.xml"), &[]);
    assert_all_passed("the call", out);
    while let Ok(line) = rx.recv_timeout(Duration::from_secs(30)) {
        lines.push(line);
    }
    assert!(child.wait().unwrap().success(), "the client failed: {lines:#?}");
    let want_start = [
        "CONNECTED",
        "STATUS UP 0 years",
        "CHANNELS '{\"row_count\": 0}\\n'",
        "UNKNOWN '-ERR no_such_api Command not found!\\n'",
        "EVENT +OK event listener enabled plain",
        "BGAPI +OK Job-UUID: 11111111-2222-3333-4444-555555555555",
        "JOB 11111111-2222-3333-4444-555555555555 uptime",
        "READY",
    ];
    assert_eq!(lines[..want_start.len()], want_start, "{lines:#?}");
    let calls: Vec<&str> = lines[want_start.len()..].iter().map(String::as_str).collect();
    assert_eq!(
        calls,
        [
            "CALL CHANNEL_CREATE inbound 1001 -",
            "CALL CHANNEL_CREATE outbound 1001 -",
            "CALL CHANNEL_ANSWER outbound 1001 -",
            "CALL CHANNEL_ANSWER inbound 1001 -",
            "CALL CHANNEL_BRIDGE inbound 1001 -",
            "CALL CHANNEL_HANGUP_COMPLETE outbound 1001 NORMAL_CLEARING",
            "CALL CHANNEL_HANGUP_COMPLETE inbound 1001 NORMAL_CLEARING",
        ]
    );
}
