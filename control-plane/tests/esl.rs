//! The event socket against the real binary, over TCP, byte for byte as FreeSWITCH's
//! mod_event_socket speaks (the replies ESL clients match on): the greeting, auth, api,
//! bgapi with its BACKGROUND_JOB, subscriptions, and a SIPp call's channel events.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::*;

/// A switch with its event socket on a free port, password `s3cret`.
fn switch() -> SwitchProcess {
    let sw = SwitchProcess::start_with_ng(
        TempDir::new("esl"),
        "",
        "",
        "\n[esl]\nlisten = \"127.0.0.1:0\"\npassword = \"s3cret\"\n",
    );
    assert!(sw.esl.is_some(), "the switch printed its event socket");
    sw
}

/// One frame from the switch: its headers (in order) and its body.
#[derive(Debug)]
struct Frame {
    headers: Vec<(String, String)>,
    body: String,
}

impl Frame {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

struct Client {
    r: BufReader<TcpStream>,
    w: TcpStream,
}

impl Client {
    fn connect(sw: &SwitchProcess) -> Client {
        Client::over(TcpStream::connect(sw.esl.unwrap()).unwrap())
    }

    /// A connection from loopback address 127.0.0.`last` (a stranger of its own).
    fn connect_from(sw: &SwitchProcess, last: u8) -> Client {
        let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        s.bind(&std::net::SocketAddr::from(([127, 0, 0, last], 0)).into()).unwrap();
        s.connect(&sw.esl.unwrap().into()).unwrap();
        Client::over(s.into())
    }

    fn over(s: TcpStream) -> Client {
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        Client { r: BufReader::new(s.try_clone().unwrap()), w: s }
    }

    fn send(&mut self, text: &str) {
        self.w.write_all(text.as_bytes()).unwrap();
    }

    /// The next frame's raw bytes (head and body).
    fn raw(&mut self) -> String {
        let mut head = String::new();
        loop {
            let mut line = String::new();
            assert!(self.r.read_line(&mut line).unwrap() > 0, "connection closed; got {head:?}");
            head.push_str(&line);
            if line == "\n" {
                break;
            }
        }
        let len =
            head.lines().find_map(|l| l.strip_prefix("Content-Length: ")).map_or(0, |n| n.parse::<usize>().unwrap());
        let mut body = vec![0u8; len];
        self.r.read_exact(&mut body).unwrap();
        head + &String::from_utf8(body).unwrap()
    }

    fn frame(&mut self) -> Frame {
        let raw = self.raw();
        let (head, body) = raw.split_once("\n\n").unwrap();
        let headers = head
            .lines()
            .map(|l| l.split_once(": ").map_or((l.to_string(), String::new()), |(n, v)| (n.into(), v.into())))
            .collect();
        Frame { headers, body: body.to_string() }
    }

    /// Whether the switch closed the connection.
    fn closed(&mut self) -> bool {
        let mut b = [0u8; 1];
        matches!(self.r.read(&mut b), Ok(0))
    }
}

/// A plain event's headers, URL-decoded.
fn event_headers(body: &str) -> Vec<(String, String)> {
    body.lines()
        .take_while(|l| !l.is_empty())
        .filter_map(|l| l.split_once(": "))
        .map(|(n, v)| (n.to_string(), decode(v)))
        .collect()
}

fn decode(v: &str) -> String {
    let b = v.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            out.push(u8::from_str_radix(&v[i + 1..i + 3], 16).unwrap());
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}

#[test]
fn the_event_socket_speaks_mod_event_sockets_replies_byte_for_byte() {
    let sw = switch();
    let mut c = Client::connect(&sw);
    assert_eq!(c.raw(), "Content-Type: auth/request\n\n");
    c.send("api status\n\n");
    assert_eq!(c.raw(), "Content-Type: command/reply\nReply-Text: -ERR command not found\n\n", "before auth");
    c.send("auth s3cret\n\n");
    assert_eq!(c.raw(), "Content-Type: command/reply\nReply-Text: +OK accepted\n\n");
    // Two commands in one write, answered in order.
    c.send("api nosuch thing\n\napi uptime\n\n");
    assert_eq!(c.raw(), "Content-Type: api/response\nContent-Length: 31\n\n-ERR nosuch Command not found!\n");
    let up = c.frame();
    assert_eq!(up.header("Content-Type"), Some("api/response"));
    assert!(up.body.parse::<u64>().is_ok(), "uptime in seconds: {:?}", up.body);
    c.send("api status\n\n");
    let status = c.frame().body;
    let lines: Vec<&str> = status.lines().collect();
    assert!(lines[0].starts_with("UP 0 years, 0 days, 0 hours, "), "{status}");
    assert!(lines[1].starts_with("FreeSWITCH (Version ") && lines[1].ends_with(" is ready"), "{status}");
    assert_eq!(lines[2], "0 session(s) since startup");
    assert_eq!(lines[3], "0 session(s) - peak 0, last 5min 0 ");
    c.send("api show channels\n\n");
    assert_eq!(c.frame().body, "\n0 total.\n");
    c.send("api show channels as json\n\n");
    assert_eq!(c.frame().body, "{\"row_count\": 0}\n");
    // bgapi: the reply at once, the output as a BACKGROUND_JOB event to a subscriber.
    c.send("event plain BACKGROUND_JOB\n\n");
    assert_eq!(c.raw(), "Content-Type: command/reply\nReply-Text: +OK event listener enabled plain\n\n");
    c.send("bgapi nosuch\nJob-UUID: 7f4de4bc-17d7-11dd-b7a0-db4edd065621\n\n");
    assert_eq!(
        c.raw(),
        "Content-Type: command/reply\nReply-Text: +OK Job-UUID: 7f4de4bc-17d7-11dd-b7a0-db4edd065621\nJob-UUID: 7f4de4bc-17d7-11dd-b7a0-db4edd065621\n\n"
    );
    let job = c.frame();
    assert_eq!(job.header("Content-Type"), Some("text/event-plain"));
    let h = event_headers(&job.body);
    let get = |n: &str| h.iter().find(|(k, _)| k == n).map(|(_, v)| v.as_str());
    assert_eq!(get("Event-Name"), Some("BACKGROUND_JOB"));
    assert_eq!(get("Job-UUID"), Some("7f4de4bc-17d7-11dd-b7a0-db4edd065621"));
    assert_eq!(get("Job-Command"), Some("nosuch"));
    assert_eq!(get("Content-Length"), Some("31"));
    assert!(job.body.ends_with("\n\n-ERR nosuch Command not found!\n"), "{:?}", job.body);
    // JSON now; the standard headers come first.
    c.send("event json BACKGROUND_JOB\n\nbgapi version\n\n");
    assert_eq!(c.raw(), "Content-Type: command/reply\nReply-Text: +OK event listener enabled json\n\n");
    assert!(c.frame().header("Reply-Text").unwrap().starts_with("+OK Job-UUID: "));
    let job = c.frame();
    assert_eq!(job.header("Content-Type"), Some("text/event-json"));
    let v: serde_json::Value = serde_json::from_str(&job.body).unwrap();
    assert_eq!(v["Event-Name"], "BACKGROUND_JOB");
    assert!(v["_body"].as_str().unwrap().starts_with("FreeSWITCH Version "), "{v}");
    assert!(job.body.starts_with("{\"Event-Name\":\"BACKGROUND_JOB\",\"Core-UUID\":"), "{}", job.body);
    c.send("exit\n\n");
    assert_eq!(c.raw(), "Content-Type: command/reply\nReply-Text: +OK bye\n\n");
    assert_eq!(
        c.raw(),
        "Content-Type: text/disconnect-notice\nContent-Length: 67\n\nDisconnected, goodbye.\nSee you at ClueCon! http://www.cluecon.com/\n"
    );
    assert!(c.closed());
}

#[test]
fn a_wrong_password_gets_err_invalid_the_notice_and_the_door() {
    let sw = switch();
    let mut c = Client::connect(&sw);
    c.raw();
    c.send("auth ClueCon\n\n");
    assert_eq!(c.raw(), "Content-Type: command/reply\nReply-Text: -ERR invalid\n\n");
    assert_eq!(c.frame().header("Content-Type"), Some("text/disconnect-notice"));
    assert!(c.closed());
}

/// A SIPp call 1000 → 1001 (answered, then the caller hangs up): a listener on
/// `event plain ALL` gets each leg's channel events in FreeSWITCH's order, with the
/// caller profile; afterwards no channel is left.
#[test]
fn a_sipp_calls_channel_events_reach_a_listener_in_freeswitchs_order() {
    let sw = switch();
    let mut c = Client::connect(&sw);
    c.raw();
    c.send("auth s3cret\n\nevent plain ALL\n\n");
    c.raw();
    c.raw();
    let out =
        run_call_in(&TempDir::new("esl-call"), &sw, (1, 1), "1001", "uac_call_auth.xml", Some("uas_answer.xml"), &[]);
    assert_all_passed("the call", out);
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut events: Vec<Vec<(String, String)>> = Vec::new();
    while Instant::now() < deadline {
        let f = c.frame();
        assert_eq!(f.header("Content-Type"), Some("text/event-plain"));
        let h = event_headers(&f.body);
        let done = h.iter().any(|(n, v)| n == "Event-Name" && v == "CHANNEL_DESTROY")
            && h.iter().any(|(n, v)| n == "Call-Direction" && v == "inbound");
        events.push(h);
        if done {
            break;
        }
    }
    let get =
        |e: &Vec<(String, String)>, n: &str| e.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone()).unwrap_or_default();
    let a: Vec<String> = events
        .iter()
        .filter(|e| get(e, "Call-Direction") == "inbound")
        .map(|e| get(e, "Event-Name"))
        .filter(|n| n != "CHANNEL_EXECUTE" && n != "CHANNEL_EXECUTE_COMPLETE")
        .collect();
    assert_eq!(
        a,
        [
            "CHANNEL_STATE",
            "CHANNEL_CREATE",
            "CHANNEL_CALLSTATE",
            "CHANNEL_STATE",
            "CHANNEL_STATE",
            "CHANNEL_PROGRESS",
            "CHANNEL_ANSWER",
            "CHANNEL_CALLSTATE",
            "CHANNEL_BRIDGE",
            "CHANNEL_HANGUP",
            "CHANNEL_UNBRIDGE",
            "CHANNEL_STATE",
            "CHANNEL_CALLSTATE",
            "CHANNEL_STATE",
            "CHANNEL_HANGUP_COMPLETE",
            "CHANNEL_DESTROY",
        ]
    );
    let create = events.iter().find(|e| get(e, "Event-Name") == "CHANNEL_CREATE").unwrap();
    assert_eq!(get(create, "Caller-Caller-ID-Number"), "1000");
    assert_eq!(get(create, "Caller-Destination-Number"), "1001");
    assert_eq!(get(create, "Channel-State"), "CS_INIT");
    assert_eq!(get(create, "Answer-State"), "ringing");
    assert_eq!(get(create, "variable_destination_number"), "1001");
    let names: Vec<&str> = create.iter().take(13).map(|(n, _)| n.as_str()).collect();
    assert_eq!(names[..3], ["Event-Name", "Core-UUID", "FreeSWITCH-Hostname"]);
    assert_eq!(names[12], "Event-Sequence");
    let b_create =
        events.iter().find(|e| get(e, "Event-Name") == "CHANNEL_CREATE" && get(e, "Call-Direction") == "outbound");
    assert_eq!(b_create.map(|e| get(e, "Other-Type")).as_deref(), Some("originator"));
    let hangup = events
        .iter()
        .find(|e| get(e, "Event-Name") == "CHANNEL_HANGUP_COMPLETE" && get(e, "Call-Direction") == "inbound")
        .unwrap();
    assert_eq!(get(hangup, "Hangup-Cause"), "NORMAL_CLEARING");
    // Event-Sequence counts up.
    let seqs: Vec<u64> = events.iter().map(|e| get(e, "Event-Sequence").parse().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[1] > w[0]), "{seqs:?}");
    c.send("api show channels\n\n");
    loop {
        let f = c.frame();
        if f.header("Content-Type") == Some("api/response") {
            assert_eq!(f.body, "\n0 total.\n");
            break;
        }
    }
}

/// `ferroswitch cli`, as scripts use it (-x) and as a person does (lines on stdin).
#[test]
fn the_cli_runs_api_commands_for_scripts_and_interactively() {
    let sw = switch();
    let port = sw.esl.unwrap().port().to_string();
    let cli = |args: &[&str], stdin: &str| {
        let mut child = std::process::Command::new(binary())
            .args(["cli", "-P", &port])
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, out, _) = cli(&["-p", "s3cret", "-x", "status", "-x", "show channels"], "");
    assert_eq!(code, Some(0));
    assert!(out.starts_with("UP 0 years, 0 days, 0 hours, "), "{out}");
    assert!(out.ends_with("min idle cpu 0.00/99.00\n\n0 total.\n"), "{out:?}");
    let (code, _, err) = cli(&["-p", "wrong", "-x", "status"], "");
    assert_eq!(code, Some(1));
    assert_eq!(err, "ferroswitch cli: authentication failed: -ERR invalid\n");
    let (code, out, _) = cli(&["-p", "s3cret"], "version\n/event plain ALL\nnosuch\n/exit\n");
    assert_eq!(code, Some(0));
    assert!(out.contains("FreeSWITCH Version "), "{out}");
    assert!(out.contains("+OK event listener enabled plain\n"), "{out}");
    assert!(out.contains("-ERR nosuch Command not found!\n"), "{out}");
}

/// `sendmsg` on a live call (1000 → 9196, the echo): an `execute` of `hangup USER_BUSY`
/// runs on the channel with the message's Event-UUID as its Application-UUID, and the
/// caller gets the switch's BYE; an unknown uuid is refused in FreeSWITCH's words.
#[test]
fn sendmsg_executes_an_application_on_a_live_call() {
    let sw = switch();
    let mut c = Client::connect(&sw);
    c.raw();
    c.send("auth s3cret\n\nevent plain CHANNEL_ANSWER CHANNEL_EXECUTE CHANNEL_HANGUP\n\n");
    c.raw();
    c.raw();
    c.send("sendmsg nope\ncall-command: hangup\n\n");
    assert_eq!(c.raw(), "Content-Type: command/reply\nReply-Text: -ERR invalid session id [nope]\n\n");
    let udp = sw.udp;
    let logs = TempDir::new("esl-sendmsg");
    let caller = std::thread::spawn(move || sipp_caller(&logs, udp, "9196", "uac_call_wait_bye.xml"));
    let get =
        |h: &[(String, String)], n: &str| h.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone()).unwrap_or_default();
    let uuid = loop {
        let f = c.frame();
        let h = event_headers(&f.body);
        if get(&h, "Event-Name") == "CHANNEL_ANSWER" {
            break get(&h, "Unique-ID");
        }
    };
    c.send(&format!(
        "sendmsg {uuid}\ncall-command: execute\nexecute-app-name: hangup\nexecute-app-arg: USER_BUSY\nEvent-UUID: 0a0b0c0d-1111-2222-3333-444455556666\n\n"
    ));
    let mut replied = false;
    let mut executed = false;
    let cause = loop {
        let f = c.frame();
        if f.header("Content-Type") == Some("command/reply") {
            assert_eq!(f.header("Reply-Text"), Some("+OK"));
            replied = true;
            continue;
        }
        let h = event_headers(&f.body);
        if get(&h, "Event-Name") == "CHANNEL_EXECUTE" && get(&h, "Application") == "hangup" {
            assert_eq!(get(&h, "Application-UUID"), "0a0b0c0d-1111-2222-3333-444455556666");
            assert_eq!(get(&h, "Application-Data"), "USER_BUSY");
            executed = true;
        }
        if get(&h, "Event-Name") == "CHANNEL_HANGUP" && get(&h, "Unique-ID") == uuid {
            break get(&h, "Hangup-Cause");
        }
    };
    assert!(replied && executed);
    assert_eq!(cause, "USER_BUSY");
    let out = caller.join().unwrap();
    assert!(out.status.success(), "SIPp: {}", String::from_utf8_lossy(&out.stdout));
}

/// A phone registering and unregistering (SIPp as 1001) gives a listener mod_sofia's
/// CUSTOM `sofia::register` and `sofia::unregister` events, and `show registrations`
/// lists the binding meanwhile.
#[test]
fn registrations_come_as_sofia_custom_events_and_show_up_in_show_registrations() {
    let sw = switch();
    let mut c = Client::connect(&sw);
    c.raw();
    c.send("auth s3cret\n\nevent plain CUSTOM sofia::register sofia::unregister\n\n");
    c.raw();
    assert_eq!(c.raw(), "Content-Type: command/reply\nReply-Text: +OK event listener enabled plain\n\n");
    let port = free_port();
    let logs = TempDir::new("esl-register");
    let sipp = |scenario: &str| {
        let out = std::process::Command::new("sipp")
            .current_dir(&logs.0)
            .args(["-sf", &format!("{}/../tools/sipp/{scenario}", env!("CARGO_MANIFEST_DIR"))])
            .args(["-s", "1001", "-au", "1001", "-ap", "1234", "-m", "1", "-p", &port.to_string()])
            .args(["-i", "127.0.0.1", "-nostdin", "-timeout", "10s", "-timeout_error"])
            .arg(sw.udp.to_string())
            .output()
            .unwrap();
        assert!(out.status.success(), "{scenario}: {}", String::from_utf8_lossy(&out.stdout));
    };
    ensure_tool("sipp");
    sipp("register.xml");
    let get =
        |h: &[(String, String)], n: &str| h.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone()).unwrap_or_default();
    let reg = event_headers(&c.frame().body);
    assert_eq!(get(&reg, "Event-Name"), "CUSTOM");
    assert_eq!(get(&reg, "Event-Subclass"), "sofia::register");
    assert_eq!(get(&reg, "from-user"), "1001");
    assert_eq!(get(&reg, "network-ip"), "127.0.0.1");
    assert_eq!(get(&reg, "network-port"), port.to_string());
    assert_eq!(get(&reg, "status"), "Registered(UDP)");
    c.send("api show registrations as json\n\n");
    let v: serde_json::Value = serde_json::from_str(&c.frame().body).unwrap();
    assert_eq!(v["row_count"], 1, "{v}");
    assert_eq!(v["rows"][0]["reg_user"], "1001");
    assert_eq!(v["rows"][0]["network_port"], port.to_string());
    sipp("unregister.xml");
    let unreg = event_headers(&c.frame().body);
    assert_eq!(get(&unreg, "Event-Subclass"), "sofia::unregister");
    assert_eq!(get(&unreg, "from-user"), "1001");
    c.send("api show registrations\n\n");
    assert_eq!(c.frame().body, "\n0 total.\n");
}

/// HEARTBEAT events come every `esl.heartbeat_secs`, with FreeSWITCH's headers.
#[test]
fn heartbeats_come_at_the_configured_interval() {
    let sw = SwitchProcess::start_with_ng(
        TempDir::new("esl-heartbeat"),
        "",
        "",
        "\n[esl]\nlisten = \"127.0.0.1:0\"\npassword = \"s3cret\"\nheartbeat_secs = 1\n",
    );
    let mut c = Client::connect(&sw);
    c.raw();
    c.send("auth s3cret\n\nevent plain HEARTBEAT\n\n");
    c.raw();
    c.raw();
    let get =
        |h: &[(String, String)], n: &str| h.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone()).unwrap_or_default();
    let first = event_headers(&c.frame().body);
    let second = event_headers(&c.frame().body);
    for h in [&first, &second] {
        assert_eq!(get(h, "Event-Name"), "HEARTBEAT");
        assert_eq!(get(h, "Event-Info"), "System Ready");
        assert_eq!(get(h, "Session-Count"), "0");
        assert!(get(h, "Up-Time").starts_with("0 years, 0 days, 0 hours, "), "{h:?}");
    }
    let ms = |h: &[(String, String)]| get(h, "Uptime-msec").parse::<u64>().unwrap();
    assert!(ms(&second) > ms(&first), "uptime counts up");
}

/// `ferroswitch cli` in a terminal (a tmux session): Tab completes a command, Enter runs
/// it, Up brings it back, the cursor keys edit the line, a /-command's reply shows up,
/// and /exit ends the session.
#[test]
fn the_cli_works_interactively_in_a_terminal() {
    ensure_tool("tmux");
    let sw = switch();
    let session = format!("fscli{}", std::process::id());
    let tmux =
        |args: &[&str]| std::process::Command::new("tmux").args(["-L", &session]).args(args).output().expect("tmux");
    let cmd = format!("{} cli -P {} -p s3cret", binary(), sw.esl.unwrap().port());
    assert!(tmux(&["new-session", "-d", "-s", &session, "-x", "200", "-y", "50", &cmd]).status.success());
    struct Kill(String);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = std::process::Command::new("tmux").args(["-L", &self.0, "kill-server"]).output();
        }
    }
    let _kill = Kill(session.clone());
    let screen = || String::from_utf8_lossy(&tmux(&["capture-pane", "-p", "-t", &session]).stdout).into_owned();
    let wait_for = |what: &str| {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let s = screen();
            if s.contains(what) {
                return s;
            }
            assert!(Instant::now() < deadline, "never saw {what:?} on the screen:\n{s}");
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    wait_for("ferroswitch@127.0.0.1>");
    // Tab completes the command; Enter runs it.
    tmux(&["send-keys", "-t", &session, "sta", "Tab"]);
    wait_for("ferroswitch@127.0.0.1> status");
    tmux(&["send-keys", "-t", &session, "Enter"]);
    wait_for("session(s) since startup");
    // Up brings it back from the history; a cursor move and an insertion edit it.
    tmux(&["send-keys", "-t", &session, "Up"]);
    let s = wait_for("ferroswitch@127.0.0.1> status");
    assert!(s.lines().filter(|l| l.starts_with("ferroswitch@127.0.0.1> status")).count() >= 2, "{s}");
    tmux(&["send-keys", "-t", &session, "C-u", "uptme", "Left", "Left", "i", "Enter"]);
    wait_for("ferroswitch@127.0.0.1> uptime");
    tmux(&["send-keys", "-t", &session, "/event plain CHANNEL_CREATE", "Enter"]);
    wait_for("+OK event listener enabled plain");
    tmux(&["send-keys", "-t", &session, "/exit", "Enter"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while tmux(&["has-session", "-t", &session]).status.success() {
        assert!(Instant::now() < deadline, "the CLI did not end on /exit:\n{}", screen());
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// An INVITE from a stranger, as raw UDP; the status of the switch's first final answer.
fn invite_status(sw: &SwitchProcess, call_id: &str) -> u16 {
    let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let me = s.local_addr().unwrap();
    let to = sw.udp;
    let msg = format!(
        "INVITE sip:9196@{to} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK{call_id};rport\r\nMax-Forwards: 70\r\n\
         From: <sip:1000@{to}>;tag=t{call_id}\r\nTo: <sip:9196@{to}>\r\nCall-ID: {call_id}\r\nCSeq: 1 INVITE\r\n\
         Contact: <sip:1000@{me}>\r\nContent-Length: 0\r\n\r\n"
    );
    s.send_to(msg.as_bytes(), to).unwrap();
    collect_responses(&s, Duration::from_secs(2)).iter().map(|r| status(r)).find(|c| *c >= 200).unwrap_or(0)
}

/// The operator's API commands: globals, fsctl pause/resume (new calls refused with 503
/// meanwhile), reloadxml, sofia status, the API event, and uuid_transfer on a live call
/// (to an extension nobody has: the caller's leg is hunted again and hangs up with
/// NO_ROUTE_DESTINATION, and the caller gets the switch's BYE).
#[test]
fn operators_api_commands_do_what_freeswitch_does() {
    let sw = switch();
    let mut c = Client::connect(&sw);
    c.raw();
    c.send("auth s3cret\n\nevent plain API CHANNEL_ANSWER CHANNEL_HANGUP\n\n");
    c.raw();
    c.raw();
    let api = |c: &mut Client, cmd: &str| -> String {
        c.send(&format!("api {cmd}\n\n"));
        loop {
            let f = c.frame();
            if f.header("Content-Type") == Some("api/response") {
                return f.body;
            }
        }
    };
    assert_eq!(api(&mut c, "global_setvar domain=example.test"), "+OK\n");
    assert_eq!(api(&mut c, "global_getvar domain"), "example.test");
    assert_eq!(api(&mut c, "reloadxml"), "+OK [Success]\n");
    let sofia = api(&mut c, "sofia status");
    assert!(
        sofia.contains("internal") && sofia.contains("RUNNING (0)") && sofia.ends_with("1 profile 0 aliases\n"),
        "{sofia}"
    );
    assert_eq!(invite_status(&sw, "api-paused-0"), 407, "a stranger is challenged");
    assert_eq!(api(&mut c, "fsctl pause"), "+OK\n");
    assert_eq!(invite_status(&sw, "api-paused-1"), 503, "paused: refused");
    assert_eq!(api(&mut c, "fsctl resume"), "+OK\n");
    assert_eq!(invite_status(&sw, "api-paused-2"), 407, "resumed");
    // The API events those commands fired, in order.
    c.send("api strepoch\n\n");
    let get =
        |h: &[(String, String)], n: &str| h.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone()).unwrap_or_default();
    loop {
        let f = c.frame();
        if f.header("Content-Type") == Some("text/event-plain") {
            let h = event_headers(&f.body);
            if get(&h, "Event-Name") == "API" && get(&h, "API-Command") == "strepoch" {
                break;
            }
        }
    }
    // A live call to the echo, transferred to an extension nobody has.
    let udp = sw.udp;
    let logs = TempDir::new("esl-transfer");
    let caller = std::thread::spawn(move || sipp_caller(&logs, udp, "9196", "uac_call_wait_bye.xml"));
    let uuid = loop {
        let h = event_headers(&c.frame().body);
        if get(&h, "Event-Name") == "CHANNEL_ANSWER" {
            break get(&h, "Unique-ID");
        }
    };
    assert_eq!(api(&mut c, &format!("uuid_transfer {uuid} 55501234 XML default")), "+OK\n");
    let cause = loop {
        let h = event_headers(&c.frame().body);
        if get(&h, "Event-Name") == "CHANNEL_HANGUP" && get(&h, "Unique-ID") == uuid {
            break get(&h, "Hangup-Cause");
        }
    };
    assert_eq!(cause, "NO_ROUTE_DESTINATION");
    let out = caller.join().unwrap();
    assert!(out.status.success(), "SIPp: {}", String::from_utf8_lossy(&out.stdout));
    assert_eq!(api(&mut c, &format!("uuid_break {uuid}")), "-ERR No such channel!\n");
}

/// What a stranger can do to the event socket without the password: every command but
/// auth gets `-ERR command not found`, a head that never ends is cut off at 64 KiB with the
/// disconnect notice, and a wrong password is answered and disconnected. A client with the
/// password is served meanwhile.
#[test]
fn a_stranger_without_the_password_gets_nothing_and_an_endless_head_is_cut_off() {
    let sw = switch();
    let mut stranger = Client::connect(&sw);
    stranger.raw();
    stranger.send("api status\n\nevent plain ALL\n\nsendmsg x\ncall-command: hangup\n\nbgapi hupall\n\n");
    for _ in 0..4 {
        assert_eq!(stranger.raw(), "Content-Type: command/reply\nReply-Text: -ERR command not found\n\n");
    }
    // 70 KiB of one line, no end.
    let junk = "x".repeat(70 * 1024);
    stranger.send(&junk);
    assert_eq!(stranger.frame().header("Content-Type"), Some("text/disconnect-notice"));
    assert!(stranger.closed());
    let mut guesser = Client::connect(&sw);
    guesser.raw();
    guesser.send("auth guess\n\n");
    assert_eq!(guesser.raw(), "Content-Type: command/reply\nReply-Text: -ERR invalid\n\n");
    assert_eq!(guesser.frame().header("Content-Type"), Some("text/disconnect-notice"));
    assert!(guesser.closed());
    let mut owner = Client::connect(&sw);
    owner.raw();
    owner.send("auth s3cret\n\napi show channels\n\n");
    owner.raw();
    assert_eq!(owner.frame().body, "\n0 total.\n");
}

/// The door against strangers: one address's idle connections take only 16 places (the
/// rest get FreeSWITCH's rude rejection), a password guesser is locked out after 3 wrong
/// passwords (each further one doubles it), and meanwhile the owner, from another
/// address, authenticates and is served.
#[test]
fn a_flood_of_idle_connections_and_a_password_guesser_leave_the_owner_served() {
    const REJECTION: &str = "Content-Type: text/rude-rejection\nContent-Length: 24\n\nAccess Denied, go away.\n";
    let sw = switch();
    let mut idle: Vec<Client> = (0..20).map(|_| Client::connect_from(&sw, 7)).collect();
    let greetings: Vec<String> = idle.iter_mut().map(Client::raw).collect();
    let admitted = greetings.iter().filter(|g| g.as_str() == "Content-Type: auth/request\n\n").count();
    let rejected = greetings.iter().filter(|g| g.as_str() == REJECTION).count();
    assert_eq!((admitted, rejected), (16, 4), "{greetings:#?}");
    // Three wrong passwords are answered; the fourth locks the address out.
    for _ in 0..4 {
        let mut guesser = Client::connect_from(&sw, 9);
        assert_eq!(guesser.raw(), "Content-Type: auth/request\n\n");
        guesser.send("auth guess\n\n");
        assert_eq!(guesser.raw(), "Content-Type: command/reply\nReply-Text: -ERR invalid\n\n");
    }
    // Locked out (1 s, then 2, 4... should a slow machine let one more in, it guesses
    // again and earns a longer one).
    let refused = (0..4).any(|_| {
        let mut guesser = Client::connect_from(&sw, 9);
        let first = guesser.raw();
        if first == REJECTION {
            return true;
        }
        guesser.send("auth guess\n\n");
        guesser.raw();
        false
    });
    assert!(refused, "the guesser was never locked out");
    let mut owner = Client::connect_from(&sw, 1);
    assert_eq!(owner.raw(), "Content-Type: auth/request\n\n");
    owner.send("auth s3cret\n\napi show channels\n\n");
    assert_eq!(owner.raw(), "Content-Type: command/reply\nReply-Text: +OK accepted\n\n");
    assert_eq!(owner.frame().body, "\n0 total.\n");
    drop(idle);
}

/// `log <level>` (fs_cli's `/log`): the switch's own log lines come as `log/data` frames,
/// up to the level asked for; `nolog` stops them.
#[test]
fn log_data_brings_the_switchs_log_lines_up_to_the_level_asked_for() {
    let sw = switch();
    let login = |level: &str, reply: &str| {
        let mut c = Client::connect(&sw);
        c.raw();
        c.send(&format!("auth s3cret\n\nlog {level}\n\n"));
        assert_eq!(c.raw(), "Content-Type: command/reply\nReply-Text: +OK accepted\n\n");
        assert_eq!(c.frame().header("Reply-Text"), Some(reply));
        c
    };
    let mut warnings = login("warning", "+OK log level warning [4]");
    let mut errors = login("err", "+OK log level err [3]");
    // A stranger's 17th idle connection from one address is refused, with a warning.
    let _idle: Vec<Client> = (0..17).map(|_| Client::connect_from(&sw, 20)).collect();
    let line = warnings.frame();
    assert_eq!(line.header("Content-Type"), Some("log/data"), "{line:?}");
    assert_eq!(line.header("Log-Level"), Some("4"));
    assert_eq!(line.header("Log-File"), Some("server.rs"));
    assert!(line.body.contains("[WARNING] control_plane::esl::server event socket: connection refused"), "{line:?}");
    assert!(line.body.contains("peer=127.0.0.20:") && line.body.ends_with('\n'), "{line:?}");
    // Nothing at warning level reached the client that asked for errors only.
    errors.send("api version\n\n");
    assert_eq!(errors.frame().header("Content-Type"), Some("api/response"));
    warnings.send("nolog\n\nnolog\n\n");
    assert_eq!(warnings.frame().header("Reply-Text"), Some("+OK no longer logging"));
    assert_eq!(warnings.frame().header("Reply-Text"), Some("-ERR not loging"));
}

/// `fsctl shutdown elegant` while a call is up: the switch keeps running while that call
/// lasts (`fsctl shutdown cancel` takes it back) and stops once it has ended.
#[test]
fn fsctl_shutdown_elegant_stops_the_switch_once_the_last_call_ends() {
    let mut sw = switch();
    let mut c = Client::connect(&sw);
    c.raw();
    c.send("auth s3cret\n\n");
    c.raw();
    let mut api = |cmd: &str| -> String {
        c.send(&format!("api {cmd}\n\n"));
        c.frame().body
    };
    // A 3 s call to the echo extension.
    let logs = TempDir::new("fsctl-shutdown");
    std::fs::write(logs.0.join("audio.ulaw"), [0xffu8; 8000]).unwrap();
    let udp = sw.udp;
    let caller = std::thread::spawn(move || sipp_caller(&logs, udp, "9196", "uac_call_auth_rtp.xml"));
    let deadline = Instant::now() + Duration::from_secs(10);
    while api("show calls count") != "\n1 total.\n" {
        assert!(Instant::now() < deadline, "the call never came up");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(api("fsctl shutdown elegant"), "+OK\n");
    assert_eq!(api("fsctl shutdown cancel"), "+OK shutdown cancelled\n");
    assert_eq!(api("fsctl shutdown elegant"), "+OK\n");
    assert_eq!(api("show calls count"), "\n1 total.\n", "the call goes on");
    assert!(sw.is_running());
    assert_all_passed("the call", caller.join().unwrap());
    let deadline = Instant::now() + Duration::from_secs(10);
    while sw.is_running() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(!sw.is_running(), "no call left: the switch stopped");
}
