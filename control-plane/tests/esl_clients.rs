//! Real ESL clients from their registries, unchanged, against the real binary's event
//! socket: greenswitch (PyPI) and modesl (npm) authenticate, run api and bgapi (their
//! BACKGROUND_JOB handlers get the jobs they named), and their event handlers get a SIPp
//! call's channel events. ci/install-esl-clients.sh installs them.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::softphone::{Phone, PCMU};
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

/// A switch whose event socket listens on a free port with password `client-secret`.
fn esl_switch(tag: &str) -> SwitchProcess {
    SwitchProcess::start_with_ng(
        TempDir::new(tag),
        "",
        "",
        "\n[esl]\nlisten = \"127.0.0.1:0\"\npassword = \"client-secret\"\n",
    )
}

/// Starts `client` (given the event socket's host, port and password) with its stdout
/// read line by line.
fn spawn_client(
    sw: &SwitchProcess,
    client: impl FnOnce(&str, &str, &str) -> Command,
) -> (std::process::Child, mpsc::Receiver<String>) {
    let esl = sw.esl.unwrap();
    let mut child = client(&esl.ip().to_string(), &esl.port().to_string(), "client-secret")
        .stdin(Stdio::piped())
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
    (child, rx)
}

/// Runs `client` against a switch: once it prints READY, a SIPp call 1000 → 1001 goes
/// through; then its whole output.
fn drive(client: impl FnOnce(&str, &str, &str) -> Command) -> Vec<String> {
    let sw = esl_switch("esl-client");
    let (mut child, rx) = spawn_client(&sw, client);
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

/// The client's next line (bounded).
fn next_line(rx: &mpsc::Receiver<String>, lines: &[String]) -> String {
    rx.recv_timeout(Duration::from_secs(30)).unwrap_or_else(|_| panic!("the client went quiet: {lines:#?}"))
}

/// Every line until the client exits, which it must do successfully.
fn rest(mut child: std::process::Child, rx: &mpsc::Receiver<String>, mut lines: Vec<String>) -> Vec<String> {
    while let Ok(line) = rx.recv_timeout(Duration::from_secs(30)) {
        lines.push(line);
    }
    assert!(child.wait().unwrap().success(), "the client failed: {lines:#?}");
    lines
}

const SETTLE: Duration = Duration::from_millis(500);
const LISTEN: Duration = Duration::from_millis(1000);

/// Click-to-call, as a dialer does it with genesis (PyPI): `originate user/1000
/// &bridge(user/1001)` rings baresip 1000, which answers; the API answers `+OK <uuid>`;
/// 1000 is bridged to baresip 1001, and the phones hear each other's tones through the
/// media plane. When 1001 hangs up, the plain events of both channels came in
/// FreeSWITCH's order.
#[test]
fn genesis_click_to_call_rings_one_phone_then_bridges_it_to_another_and_they_hear_each_other() {
    let (python, _) = clients();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../tools/esl-clients/genesis_click_to_call.py");
    let sw = esl_switch("click-to-call");
    let a = Phone::start(sw.udp, "1000", PCMU, 700.0, 13000);
    let mut b = Phone::start(sw.udp, "1001", PCMU, 1400.0, 13100);
    wait_registered(&sw, &["1000", "1001"]);
    let (child, rx) = spawn_client(&sw, |host, port, password| {
        let mut c = Command::new("timeout");
        c.args(["90", &python, script, host, port, password, "1000", "1001"]);
        c
    });
    a.wait_events("CALL_ESTABLISHED", 1, Duration::from_secs(20));
    b.wait_events("CALL_ESTABLISHED", 1, Duration::from_secs(20));
    let mut lines = vec![next_line(&rx, &[])];
    lines.push(next_line(&rx, &lines));
    std::thread::sleep(SETTLE);
    let from = std::time::Instant::now();
    std::thread::sleep(LISTEN);
    let to = std::time::Instant::now();
    for (listener, talker) in [(&a, &b), (&b, &a)] {
        let h = listener.hears(talker.tone_hz, from, to);
        assert!(h.clear(false), "{} heard {h:?} of {} Hz\n{}", listener.user, talker.tone_hz, listener.log());
    }
    assert!(b.cmd("hangup", ""));
    let lines = rest(child, &rx, lines);
    assert_eq!(lines[0], "EVENT +OK event listener enabled plain");
    let uuid = lines[1].strip_prefix("ORIGINATED +OK ").unwrap_or_else(|| panic!("{lines:#?}"));
    assert_eq!(uuid.len(), 36, "{lines:#?}");
    let events: Vec<&str> = lines.iter().filter_map(|l| l.strip_prefix("EV ")).collect();
    let want = [
        // A rings, answers (the user endpoint's CHANNEL_OUTGOING again) and runs bridge
        "CHANNEL_OUTGOING A CS_NEW DOWN ringing",
        "CHANNEL_STATE A CS_INIT DOWN ringing",
        "CHANNEL_CREATE A CS_INIT DOWN ringing",
        "CHANNEL_ORIGINATE A CS_INIT DOWN ringing",
        "CHANNEL_STATE A CS_ROUTING DOWN ringing",
        "CHANNEL_STATE A CS_CONSUME_MEDIA DOWN ringing",
        "CHANNEL_PROGRESS A CS_CONSUME_MEDIA DOWN ringing",
        "CHANNEL_CALLSTATE A CS_CONSUME_MEDIA RINGING ringing",
        "CHANNEL_ANSWER A CS_CONSUME_MEDIA RINGING answered",
        "CHANNEL_CALLSTATE A CS_CONSUME_MEDIA ACTIVE answered",
        "CHANNEL_OUTGOING A CS_CONSUME_MEDIA ACTIVE answered",
        "CHANNEL_STATE A CS_EXECUTE ACTIVE answered",
        "CHANNEL_EXECUTE A CS_EXECUTE ACTIVE answered",
        // B, as bridge originates it
        "CHANNEL_OUTGOING B CS_NEW DOWN ringing",
        "CHANNEL_STATE B CS_INIT DOWN ringing",
        "CHANNEL_CREATE B CS_INIT DOWN ringing",
        "CHANNEL_ORIGINATE B CS_INIT DOWN ringing",
        "CHANNEL_STATE B CS_ROUTING DOWN ringing",
        "CHANNEL_STATE B CS_CONSUME_MEDIA DOWN ringing",
        "CHANNEL_PROGRESS B CS_CONSUME_MEDIA DOWN ringing",
        "CHANNEL_CALLSTATE B CS_CONSUME_MEDIA RINGING ringing",
        "CHANNEL_ANSWER B CS_CONSUME_MEDIA RINGING answered",
        "CHANNEL_CALLSTATE B CS_CONSUME_MEDIA ACTIVE answered",
        "CHANNEL_BRIDGE A CS_EXECUTE ACTIVE answered",
        "CHANNEL_STATE B CS_EXCHANGE_MEDIA ACTIVE answered",
        // B hangs up
        "CHANNEL_HANGUP B CS_EXCHANGE_MEDIA ACTIVE hangup",
        "CHANNEL_STATE B CS_HANGUP ACTIVE hangup",
        "CHANNEL_CALLSTATE B CS_HANGUP HANGUP hangup",
        "CHANNEL_STATE B CS_REPORTING HANGUP hangup",
        "CHANNEL_HANGUP_COMPLETE B CS_REPORTING HANGUP hangup",
        "CHANNEL_DESTROY B CS_REPORTING HANGUP hangup",
        "CHANNEL_STATE B CS_DESTROY HANGUP hangup",
        "CHANNEL_UNBRIDGE A CS_EXECUTE ACTIVE answered",
        "CHANNEL_EXECUTE_COMPLETE A CS_EXECUTE ACTIVE answered",
        "CHANNEL_HANGUP A CS_EXECUTE ACTIVE hangup",
        "CHANNEL_STATE A CS_HANGUP ACTIVE hangup",
        "CHANNEL_CALLSTATE A CS_HANGUP HANGUP hangup",
        "CHANNEL_STATE A CS_REPORTING HANGUP hangup",
        "CHANNEL_HANGUP_COMPLETE A CS_REPORTING HANGUP hangup",
        "CHANNEL_DESTROY A CS_REPORTING HANGUP hangup",
        "CHANNEL_STATE A CS_DESTROY HANGUP hangup",
    ];
    assert_eq!(events, want, "{lines:#?}");
    assert_eq!(lines.last().unwrap(), "A-LEG outbound 9000 1000");
}

/// An originate into `echo` with modesl (npm) taking JSON events filtered on the uuid it
/// chose (`origination_uuid`): baresip 1001 answers
/// and hears its own tone back through the media plane, presses 5 (the DTMF event), and
/// `uuid_kill` ends it; the channel's events came in FreeSWITCH's order.
#[test]
fn modesl_originates_a_phone_into_echo_and_the_phone_hears_itself() {
    let (_, node_modules) = clients();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../tools/esl-clients/modesl_originate_echo.js");
    let sw = esl_switch("originate-echo");
    let mut phone = Phone::start(sw.udp, "1001", PCMU, 1400.0, 13200);
    wait_registered(&sw, &["1001"]);
    let (mut child, rx) = spawn_client(&sw, |host, port, password| {
        let mut c = Command::new("timeout");
        c.args(["90", "node", script, host, port, password, "1001"]).env("NODE_PATH", &node_modules);
        c
    });
    phone.wait_events("CALL_ESTABLISHED", 1, Duration::from_secs(20));
    let mut lines = vec![next_line(&rx, &[])];
    lines.push(next_line(&rx, &lines));
    std::thread::sleep(SETTLE);
    let from = std::time::Instant::now();
    std::thread::sleep(LISTEN);
    let h = phone.hears(phone.tone_hz, from, std::time::Instant::now());
    assert!(h.clear(true), "the phone heard {h:?} of its own tone\n{}", phone.log());
    // The phone presses 5: its RFC 4733 telephone-event comes as the channel's DTMF event.
    assert!(phone.cmd("sndcode", "5"), "sndcode refused\n{}", phone.log());
    lines.push(next_line(&rx, &lines));
    assert_eq!(lines[2], "GOT DTMF 5", "{lines:#?}");
    use std::io::Write as _;
    child.stdin.as_mut().unwrap().write_all(b"kill\n").unwrap();
    let lines = rest(child, &rx, lines);
    assert_eq!(
        lines[..2],
        ["FILTER +OK filter added. [Unique-ID]=[<uuid>]", "ORIGINATED +OK <origination_uuid>"],
        "{lines:#?}"
    );
    assert_eq!(lines[3], "KILLED +OK", "{lines:#?}");
    // The filter let only the channel's own events through (not the API events).
    assert_eq!(lines.last().unwrap(), "OTHERS 0", "{lines:#?}");
    let events: Vec<&str> = lines.iter().filter_map(|l| l.strip_prefix("EV ")).collect();
    let want = [
        "CHANNEL_OUTGOING CS_NEW DOWN",
        "CHANNEL_STATE CS_INIT DOWN",
        "CHANNEL_CREATE CS_INIT DOWN",
        "CHANNEL_ORIGINATE CS_INIT DOWN",
        "CHANNEL_STATE CS_ROUTING DOWN",
        "CHANNEL_STATE CS_CONSUME_MEDIA DOWN",
        "CHANNEL_PROGRESS CS_CONSUME_MEDIA DOWN",
        "CHANNEL_CALLSTATE CS_CONSUME_MEDIA RINGING",
        "CHANNEL_ANSWER CS_CONSUME_MEDIA RINGING",
        "CHANNEL_CALLSTATE CS_CONSUME_MEDIA ACTIVE",
        "CHANNEL_OUTGOING CS_CONSUME_MEDIA ACTIVE",
        "CHANNEL_STATE CS_EXECUTE ACTIVE",
        "CHANNEL_EXECUTE CS_EXECUTE ACTIVE",
        "DTMF CS_EXECUTE ACTIVE 5 true RTP",
        // uuid_kill
        "CHANNEL_HANGUP CS_EXECUTE ACTIVE",
        "CHANNEL_EXECUTE_COMPLETE CS_HANGUP ACTIVE",
        "CHANNEL_STATE CS_HANGUP ACTIVE",
        "CHANNEL_CALLSTATE CS_HANGUP HANGUP",
        "CHANNEL_STATE CS_REPORTING HANGUP",
        "CHANNEL_HANGUP_COMPLETE CS_REPORTING HANGUP",
        "CHANNEL_DESTROY CS_REPORTING HANGUP",
    ];
    assert_eq!(events, want, "{lines:#?}");
    phone.wait_events("CALL_CLOSED", 1, Duration::from_secs(10));
}
