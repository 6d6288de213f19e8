//! Real ESL clients from their registries, unchanged, against the real binary's event
//! socket: greenswitch (PyPI) and modesl (npm) authenticate, run api and bgapi (their
//! BACKGROUND_JOB handlers get the jobs they named), and their event handlers get a SIPp
//! call's channel events. ci/install-esl-clients.sh installs them.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::*;

/// (the virtualenv's python, the node_modules directory), installed by
/// ci/install-esl-clients.sh.
fn clients() -> (String, String) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../ci/install-esl-clients.sh");
    let out = Command::new("bash").arg(script).output().expect("run ci/install-esl-clients.sh");
    assert!(out.status.success(), "ci/install-esl-clients.sh: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    let mut lines = text.lines();
    (lines.next().unwrap().to_string(), lines.next().unwrap().to_string())
}

/// Runs `client` (given the event socket's host, port and password) against a switch:
/// once it prints READY, a SIPp call 1000 → 1001 goes through; then its whole output.
fn drive(client: impl FnOnce(&str, &str, &str) -> Command) -> Vec<String> {
    let sw = SwitchProcess::start_with_ng(
        TempDir::new("esl-client"),
        "",
        "",
        "\n[esl]\nlisten = \"127.0.0.1:0\"\npassword = \"client-secret\"\n",
    );
    let esl = sw.esl.unwrap();
    let mut child = client(&esl.ip().to_string(), &esl.port().to_string(), "client-secret")
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the client");
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
        let line =
            rx.recv_timeout(Duration::from_secs(30)).unwrap_or_else(|_| panic!("quiet before READY: {lines:#?}"));
        let ready = line == "READY";
        lines.push(line);
        if ready {
            break;
        }
    }
    let out = run_call_in(
        &TempDir::new("client-call"),
        &sw,
        (1, 1),
        "1001",
        "uac_call_auth.xml",
        Some("uas_answer.xml"),
        &[],
    );
    assert_all_passed("the call", out);
    while let Ok(line) = rx.recv_timeout(Duration::from_secs(30)) {
        lines.push(line);
    }
    assert!(child.wait().unwrap().success(), "the client failed: {lines:#?}");
    lines
}

#[test]
fn greenswitch_drives_the_event_socket_and_gets_a_calls_events() {
    let (python, _) = clients();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../tools/esl-clients/greenswitch_client.py");
    let lines = drive(|host, port, password| {
        let mut c = Command::new("timeout");
        c.args(["60", &python, script, host, port, password]);
        c
    });
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

#[test]
fn modesl_drives_the_event_socket_and_gets_a_calls_json_events() {
    let (_, node_modules) = clients();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../tools/esl-clients/modesl_client.js");
    let lines = drive(|host, port, password| {
        let mut c = Command::new("timeout");
        c.args(["70", "node", script, host, port, password]).env("NODE_PATH", &node_modules);
        c
    });
    assert_eq!(
        lines,
        [
            "CONNECTED",
            "STATUS UP 0 years",
            "CHANNELS \"{\\\"row_count\\\": 0}\\n\"",
            "JOB uptime true",
            "READY",
            "CALL CHANNEL_CREATE inbound 1001",
            "CALL CHANNEL_CREATE outbound 1001",
            "CALL CHANNEL_ANSWER outbound 1001",
            "CALL CHANNEL_ANSWER inbound 1001",
            "CALL CHANNEL_HANGUP_COMPLETE outbound 1001",
            "CALL CHANNEL_HANGUP_COMPLETE inbound 1001",
        ]
    );
}

/// GET `url`'s status and body (HTTP/1.0, for the exporter's werkzeug server).
fn get(addr: std::net::SocketAddr, path: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, text.split_once("\r\n\r\n")?.1.to_string()))
}

/// The Prometheus FreeSWITCH exporter (PyPI), unchanged, scrapes the switch through its
/// event socket (`api json {"command": "status"}`, `show calls as json`, `uuid_dump
/// <uuid> json`) during a call, without an error.
#[test]
fn the_prometheus_freeswitch_exporter_scrapes_a_call_without_errors() {
    let (python, _) = clients();
    let sw = SwitchProcess::start_with_ng(
        TempDir::new("exporter"),
        "",
        "",
        "\n[esl]\nlisten = \"127.0.0.1:0\"\npassword = \"exporter-secret\"\n",
    );
    let esl = sw.esl.unwrap();
    let dir = TempDir::new("exporter-config");
    let config = dir.0.join("esl.yml");
    std::fs::write(&config, format!("default:\n  port: {}\n  password: exporter-secret\n", esl.port())).unwrap();
    let port = free_port();
    let exporter_bin = std::path::Path::new(&python).with_file_name("freeswitch_exporter");
    let mut exporter = Command::new(&exporter_bin)
        .arg(&config)
        .arg(port.to_string())
        .arg("127.0.0.1")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start freeswitch_exporter");
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while get(addr, "/").is_none() {
        assert!(std::time::Instant::now() < deadline, "the exporter never listened");
        std::thread::sleep(Duration::from_millis(100));
    }
    // A call to the echo (9196) that the caller keeps up until the switch hangs up.
    let udp = sw.udp;
    let logs = TempDir::new("exporter-call");
    let caller = std::thread::spawn(move || sipp_caller(&logs, udp, "9196", "uac_call_wait_bye.xml"));
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let page = loop {
        let (status, body) = get(addr, "/esl?target=127.0.0.1").expect("the exporter answers");
        assert_eq!(status, 200, "{body}");
        if body.contains("rtp_channel_info{") {
            break body;
        }
        assert!(std::time::Instant::now() < deadline, "the call never showed: {body}");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(page.contains("freeswitch_up 1.0"), "{page}");
    assert!(page.contains("freeswitch_session_active 1.0"), "{page}");
    assert!(page.contains("freeswitch_info{version=\"1.10.12-release ferroswitch"), "{page}");
    assert!(page.contains("name=\"sofia/internal/1000@"), "{page}");
    let (_, own) = get(addr, "/metrics").unwrap();
    assert!(own.contains("freeswitch_request_errors_total{module=\"default\"} 0.0"), "{own}");
    // The switch ends the call; the caller sees its BYE.
    let cli = Command::new(binary())
        .args(["cli", "-P", &esl.port().to_string(), "-p", "exporter-secret", "-x", "hupall"])
        .output()
        .unwrap();
    assert!(cli.status.success());
    let out = caller.join().unwrap();
    assert!(out.status.success(), "SIPp: {}", String::from_utf8_lossy(&out.stdout));
    let _ = exporter.kill();
    let _ = exporter.wait();
}

/// Outbound mode: the dialplan's `socket` application hands a SIPp call to greenswitch's
/// OutboundESLServer (PyPI), unchanged. It gets the call's data on `connect`, answers the
/// call with a blocking execute (its CHANNEL_EXECUTE_COMPLETE through `myevents`), reads a
/// variable with `getvar`, and hangs the call up; the caller sees the switch's BYE.
#[test]
fn greenswitch_in_outbound_mode_answers_and_hangs_up_a_call_handed_to_it_by_socket() {
    let (python, _) = clients();
    let port = free_port();
    let dir = TempDir::new("outbound");
    let plan = dir.0.join("dialplan.xml");
    std::fs::write(
        &plan,
        format!(
            r#"<include><context name="default"><extension name="app">
            <condition field="destination_number" expression="^7777$">
            <action application="socket" data="127.0.0.1:{port} async full"/>
            <action application="hangup" data="NORMAL_CLEARING"/>
            </condition></extension></context></include>"#
        ),
    )
    .unwrap();
    let sw = SwitchProcess::start_in(dir, &format!("\n[dialplan]\nfile = \"{}\"\n", plan.display()));
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../tools/esl-clients/greenswitch_outbound.py");
    let mut app = Command::new("timeout")
        .args(["60", &python, script, &port.to_string()])
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the outbound server");
    let mut out = BufReader::new(app.stdout.take().unwrap()).lines();
    assert_eq!(out.next().unwrap().unwrap(), "LISTENING");
    let caller = sipp_caller(&TempDir::new("outbound-call"), sw.udp, "7777", "uac_call_wait_bye.xml");
    let lines: Vec<String> = out.map_while(Result::ok).collect();
    assert!(app.wait().unwrap().success(), "the application server failed: {lines:#?}");
    assert_eq!(
        lines,
        ["CONNECTED True 1000 CS_EXECUTE", "ANSWERED CHANNEL_EXECUTE_COMPLETE answer", "GETVAR 7777", "DONE",]
    );
    assert!(caller.status.success(), "SIPp: {}", String::from_utf8_lossy(&caller.stdout));
}
