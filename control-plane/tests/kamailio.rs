//! Kamailio (Debian's, with its rtpengine module) as the SIP proxy and ferroswitch as its
//! rtpengine: Kamailio calls `rtpengine_manage()` on ferroswitch's NG listener for the
//! INVITE (offer), the 200 (answer) and the BYE (delete), while a SIPp caller streams
//! PCMU (`rtp_stream`) to a SIPp callee that echoes it (`-rtp_echo`) through ferroswitch's
//! media plane. Everything runs on 127.0.0.1 on free ports; the Kamailio configuration is
//! written by the test.

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use common::*;
use control_plane::ng::bencode::Value;
use control_plane::sdp::Sdp;

/// Every wait in this test ends by this long (a stuck peer fails the test, never hangs it).
const WAIT: Duration = Duration::from_secs(30);

/// Debian's module directory.
const MODULES: &str = "/usr/lib/x86_64-linux-gnu/kamailio/modules";

/// A stateful proxy on `listen` that sends every INVITE to `callee` and hands the media to
/// the rtpengine at `ng`: offer on the INVITE, answer on a reply with SDP, delete on BYE.
/// Anything else out of a dialog gets 405 (the test's readiness probe).
fn kamailio_cfg(listen: SocketAddr, callee: SocketAddr, ng: SocketAddr, offer_flags: &str) -> String {
    format!(
        r#"#!KAMAILIO
debug=2
log_stderror=yes
children=2
disable_tcp=yes
auto_aliases=no
dns=no
rev_dns=no
listen=udp:{listen}
mpath="{MODULES}/"
loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "rr.so"
loadmodule "pv.so"
loadmodule "maxfwd.so"
loadmodule "textops.so"
loadmodule "siputils.so"
loadmodule "rtpengine.so"
modparam("rtpengine", "rtpengine_sock", "udp:{ng}")

request_route {{
    if (!mf_process_maxfwd_header("10")) {{ sl_send_reply("483", "Too Many Hops"); exit; }}
    if (has_totag()) {{
        if (!loose_route()) {{
            if (is_method("ACK") && t_check_trans()) {{ t_relay(); exit; }}
            sl_send_reply("404", "Not here");
            exit;
        }}
        if (is_method("BYE") || has_body("application/sdp")) {{
            rtpengine_manage("trust-address replace-origin replace-session-connection");
        }}
        t_on_reply("MEDIA");
        t_relay();
        exit;
    }}
    if (is_method("CANCEL")) {{ if (t_check_trans()) {{ t_relay(); }} exit; }}
    if (!is_method("INVITE")) {{ sl_send_reply("405", "Method Not Allowed"); exit; }}
    record_route();
    if (!rtpengine_manage("trust-address replace-origin replace-session-connection{offer_flags}")) {{
        sl_send_reply("503", "No media relay");
        exit;
    }}
    t_on_reply("MEDIA");
    $du = "sip:{callee}";
    t_relay();
    exit;
}}

onreply_route[MEDIA] {{
    if (has_body("application/sdp")) {{
        rtpengine_manage("trust-address replace-origin replace-session-connection");
    }}
}}
"#
    )
}

/// A process in its own process group (Kamailio forks its workers), ended with the group.
struct Group(Child);

impl Group {
    fn spawn(cmd: &mut Command) -> Group {
        use std::os::unix::process::CommandExt;
        Group(cmd.process_group(0).spawn().unwrap_or_else(|e| panic!("start {cmd:?}: {e}")))
    }

    /// Waits for the exit, at most [`WAIT`].
    fn wait(&mut self, what: &str) -> ExitStatus {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(s) = self.0.try_wait().unwrap() {
                return s;
            }
            assert!(Instant::now() < deadline, "{what} did not exit within {WAIT:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        if self.0.try_wait().ok().flatten().is_none() {
            let _ = Command::new("kill").args(["-KILL", "--", &format!("-{}", self.0.id())]).status();
            let _ = self.0.wait();
        }
    }
}

/// Whether something listens on UDP 127.0.0.1:`port` (read from /proc, so probing takes
/// the port from nobody).
fn udp_bound(port: u16) -> bool {
    let table = std::fs::read_to_string("/proc/net/udp").unwrap();
    let needle = format!("0100007F:{port:04X}");
    table.lines().skip(1).any(|l| l.split_whitespace().nth(1) == Some(needle.as_str()))
}

/// An even free port whose neighbour two above is free too (SIPp binds both for media).
fn free_media_port() -> u16 {
    loop {
        let port = free_port();
        if port % 2 == 0 && UdpSocket::bind(("127.0.0.1", port + 2)).is_ok() {
            return port;
        }
    }
}

/// SIPp on `port` in `dir`, its messages traced to `dir/<name>.log`.
fn sipp(dir: &Path, name: &str, scenario: &str, port: u16, media_port: u16, extra: &[&str]) -> Group {
    let scenario = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tools/sipp").join(scenario);
    let log = std::fs::File::create(dir.join(format!("{name}.out"))).unwrap();
    Group::spawn(
        Command::new("sipp")
            .current_dir(dir)
            .arg("-sf")
            .arg(scenario)
            .args(["-i", "127.0.0.1", "-p", &port.to_string(), "-mp", &media_port.to_string()])
            .args(["-m", "1", "-timeout", "60s", "-timeout_error", "-nostdin", "-trace_msg", "-message_file"])
            .arg(dir.join(format!("{name}.log")))
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log)),
    )
}

/// The SDP of the first message with an SDP body in a SIPp message log that `dir`
/// ("received"/"sent") matches and that starts with `start`.
fn traced_sdp(log: &Path, dir: &str, start: &str) -> Sdp {
    let text = std::fs::read_to_string(log).unwrap().replace("\r\n", "\n");
    let msg = text
        .split("-----------------------------------------------")
        .filter_map(|chunk| chunk.split_once('\n').map(|(_, rest)| rest))
        .filter(|m| m.lines().next().is_some_and(|l| l.contains(&format!("message {dir}"))))
        .map(|m| m.split_once('\n').map_or("", |(_, rest)| rest).trim_start())
        .find(|m| m.starts_with(start) && m.contains("Content-Type: application/sdp"))
        .unwrap_or_else(|| panic!("no {dir} {start} in {}:\n{text}", log.display()));
    let body = msg.split_once("\n\n").map(|(_, b)| b).unwrap_or_else(|| panic!("no body in {msg}"));
    // The log separates messages with blank lines.
    let body = format!("{}\n", body.trim_end());
    Sdp::parse(body.as_bytes()).unwrap_or_else(|e| panic!("{e}: {body}"))
}

/// The first media's address in an SDP.
fn media_addr(sdp: &Sdp) -> SocketAddr {
    SocketAddr::new(sdp.connection_for(0).and_then(|c| c.ip()).expect("a connection address"), sdp.media[0].port)
}

/// The test's own NG client (ferroswitch answers it beside Kamailio).
struct Ng {
    sock: UdpSocket,
    to: SocketAddr,
    n: u32,
}

impl Ng {
    fn call(&mut self, req: Value) -> Value {
        self.n += 1;
        let cookie = format!("test-{}", self.n);
        let mut d = format!("{cookie} ").into_bytes();
        req.encode_into(&mut d);
        self.sock.send_to(&d, self.to).unwrap();
        let mut buf = vec![0u8; 65536];
        let n = self.sock.recv(&mut buf).expect("an NG answer");
        let body = buf[..n].strip_prefix(format!("{cookie} ").as_bytes()).expect("the answer echoes the cookie");
        Value::decode(body).unwrap()
    }

    fn list(&mut self) -> Vec<String> {
        match self.call(Value::dict([("command", Value::str("list"))])).get("calls") {
            Some(Value::List(calls)) => calls.iter().filter_map(Value::as_str).map(str::to_string).collect(),
            other => panic!("list without calls: {other:?}"),
        }
    }

    fn query(&mut self, call_id: &str) -> Value {
        self.call(Value::dict([("command", Value::str("query")), ("call-id", Value::str(call_id))]))
    }
}

/// A tag's first stream in a query answer: (the media plane's port for that side, packets
/// that side sent).
fn stream(query: &Value, tag: &str) -> Option<(u16, i64)> {
    let Some(Value::List(medias)) = query.get("tags")?.get(tag)?.get("medias") else { return None };
    let Some(Value::List(streams)) = medias.first()?.get("streams") else { return None };
    let port = match streams.first()?.get("local port")? {
        Value::Int(p) => u16::try_from(*p).ok()?,
        _ => return None,
    };
    match streams[0].get("stats")?.get("packets")? {
        Value::Int(n) => Some((port, *n)),
        _ => None,
    }
}

/// The From and To tags in the query answer (`in dialogue with` names the other).
fn tags(query: &Value) -> Vec<(String, String)> {
    let Some(Value::Dict(tags)) = query.get("tags") else { return Vec::new() };
    tags.iter()
        .filter_map(|(k, v)| {
            let other = v.get("in dialogue with")?.as_str()?;
            Some((String::from_utf8_lossy(k).into_owned(), other.to_string()))
        })
        .collect()
}

#[test]
fn kamailio_rtpengine_manage_runs_a_sipp_call_whose_media_crosses_the_switch() {
    let (caller, callee, sessions) = call_through_kamailio("", "uas_answer.xml");
    assert_eq!(
        (caller.media[0].formats.clone(), callee.media[0].formats.clone()),
        (vec!["0".into()], vec!["0".into()])
    );
    assert!(sessions.contains(r#""transcode":false"#), "{sessions}");
}

/// Kamailio's rtpengine module asking for transcoding (rtpengine's codec flags in
/// `rtpengine_manage`): the callee is offered PCMA only and answers it, the caller keeps
/// its PCMU, and the media plane transcodes the echoed stream both ways.
#[test]
fn kamailio_codec_flags_make_the_switch_transcode_pcmu_to_pcma_and_back() {
    let (caller, callee, sessions) =
        call_through_kamailio(" codec-mask-PCMU codec-transcode-PCMA", "uas_answer_pcma.xml");
    assert_eq!(callee.media[0].formats, ["8"], "the callee is offered PCMA only");
    assert_eq!(caller.media[0].formats, ["0"], "the caller is answered with its PCMU");
    assert!(sessions.contains(r#""transcode":true"#), "{sessions}");
    assert!(sessions.contains(r#""codec":"PCMU"}"#) && sessions.contains(r#""codec":"PCMA"}"#), "{sessions}");
}

/// One SIPp call through Kamailio and the switch (Kamailio's offer with `offer_flags`,
/// the callee running `callee_scenario` and echoing): the SDPs the caller and the callee
/// received, and `/media/sessions` while the media flowed.
fn call_through_kamailio(offer_flags: &str, callee_scenario: &str) -> (Sdp, Sdp, String) {
    ensure_tool("kamailio");
    ensure_tool("sipp");
    assert!(Path::new(MODULES).join("rtpengine.so").exists(), "Debian's kamailio ships rtpengine.so in {MODULES}");
    let sw = SwitchProcess::start("");
    let ng_addr = sw.ng.expect("the switch serves NG");
    let dir = TempDir::new("kamailio");
    let at = |port: u16| SocketAddr::from(([127, 0, 0, 1], port));
    let (proxy, uas, uac) = (at(free_port()), at(free_port()), at(free_port()));
    let (uas_media, uac_media) = (free_media_port(), free_media_port());

    std::fs::write(dir.0.join("kamailio.cfg"), kamailio_cfg(proxy, uas, ng_addr, offer_flags)).unwrap();
    let kamailio_log = dir.0.join("kamailio.err");
    let mut kamailio = Group::spawn(
        Command::new("kamailio")
            .arg("-f")
            .arg(dir.0.join("kamailio.cfg"))
            .args(["-DD", "-E", "-n", "2", "-Y"])
            .arg(&dir.0)
            .arg("-w")
            .arg(&dir.0)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(std::fs::File::create(&kamailio_log).unwrap())),
    );
    let kamailio_says = || std::fs::read_to_string(&kamailio_log).unwrap_or_default();

    // Kamailio is up (its rtpengine module has pinged ferroswitch) once it answers SIP.
    let probe = UdpSocket::bind("127.0.0.1:0").unwrap();
    let deadline = Instant::now() + WAIT;
    loop {
        let local = probe.local_addr().unwrap();
        probe.send_to(options_request("UDP", local, proxy, "probe").as_bytes(), proxy).unwrap();
        let got = collect_responses(&probe, Duration::from_millis(200));
        if got.iter().any(|r| status(r) == 405) {
            break;
        }
        if let Ok(Some(s)) = kamailio.0.try_wait() {
            panic!("kamailio exited ({s}):\n{}", kamailio_says());
        }
        assert!(Instant::now() < deadline, "kamailio did not answer on {proxy}:\n{}", kamailio_says());
    }
    assert!(kamailio_says().contains("found, support for it enabled"), "{}", kamailio_says());

    let mut callee = sipp(&dir.0, "uas", callee_scenario, uas.port(), uas_media, &["-rtp_echo"]);
    let deadline = Instant::now() + WAIT;
    while !udp_bound(uas.port()) {
        assert!(Instant::now() < deadline, "the SIPp callee did not bind {uas}");
        std::thread::sleep(Duration::from_millis(20));
    }
    // One second of PCMU silence, looped by the caller's rtp_stream.
    std::fs::write(dir.0.join("audio.ulaw"), [0xffu8; 8000]).unwrap();
    let proxy_s = proxy.to_string();
    let mut caller =
        sipp(&dir.0, "uac", "uac_call_rtp_until_info.xml", uac.port(), uac_media, &["-s", "1001", &proxy_s]);

    let ng_sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    ng_sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut ng = Ng { sock: ng_sock, to: ng_addr, n: 0 };

    // The call is answered and its media flows both ways through the media plane: each
    // side's counter (what that side sent the media plane) moves.
    let deadline = Instant::now() + WAIT;
    let (call_id, caller_side, callee_side) = loop {
        if let [call_id] = ng.list().as_slice() {
            let q = ng.query(call_id);
            if let [(a, b), _] = tags(&q).as_slice() {
                // The caller's tag: uac_call_rtp_until_info.xml's From tag is <pid>SIPpTag00<n>.
                let (from, to) = if a.contains("SIPpTag00") { (a, b) } else { (b, a) };
                if let (Some(f), Some(t)) = (stream(&q, from), stream(&q, to)) {
                    if f.1 > 0 && t.1 > 0 {
                        break (call_id.clone(), f.0, t.0);
                    }
                }
            }
        }
        assert!(
            Instant::now() < deadline,
            "no media both ways through the switch; kamailio:\n{}\ncaller:\n{}",
            kamailio_says(),
            std::fs::read_to_string(dir.0.join("uac.out")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    // The media plane relays between the phones' SDP addresses and its own two ports.
    let (code, sessions) = sw.http_get("/media/sessions");
    assert_eq!(code, 200);
    let legs = [(caller_side, uac_media), (callee_side, uas_media)];
    for (i, (local, remote)) in legs.into_iter().enumerate() {
        let expected = format!(r#"{{"local":"127.0.0.1:{local}","remote":"127.0.0.1:{remote}","counters":"#);
        assert!(sessions.contains(&expected), "leg {i}: {sessions} has no {expected}");
    }
    assert_eq!(sessions.matches(r#""dropped":0,"#).count(), 2, "nothing dropped on either leg: {sessions}");
    assert_eq!(sessions.matches("\"id\"").count(), 1, "{sessions}");

    // Hang up: the caller sends BYE through Kamailio, which deletes the session first.
    let info = format!(
        "INFO sip:1000@{uac} SIP/2.0\r\nVia: SIP/2.0/UDP {probe};branch=z9hG4bKhangup\r\nMax-Forwards: 70\r\nFrom: <sip:test@{probe}>;tag=hangup\r\nTo: <sip:1000@{uac}>\r\nCall-ID: {call_id}\r\nCSeq: 1 INFO\r\nContent-Length: 0\r\n\r\n",
        probe = probe.local_addr().unwrap()
    );
    probe.send_to(info.as_bytes(), uac).unwrap();
    let status = caller.wait("the SIPp caller");
    assert!(
        status.success(),
        "the SIPp caller failed ({status}):\n{}",
        std::fs::read_to_string(dir.0.join("uac.out")).unwrap_or_default()
    );
    assert_eq!(ng.list(), Vec::<String>::new(), "the BYE deleted the call");
    let gone = ng.query(&call_id);
    assert_eq!(gone.get("error-reason").and_then(Value::as_str), Some(format!("unknown call-id {call_id:?}").as_str()));
    assert_eq!(sw.http_get("/media/sessions"), (200, "[]".to_string()));
    let status = callee.wait("the SIPp callee");
    assert!(
        status.success(),
        "the SIPp callee failed ({status}):\n{}",
        std::fs::read_to_string(dir.0.join("uas.out")).unwrap_or_default()
    );

    // Each phone was told to send to the media plane's port for its side.
    let uas_got = traced_sdp(&dir.0.join("uas.log"), "received", "INVITE ");
    assert_eq!(media_addr(&uas_got), at(callee_side), "the INVITE's SDP at the callee");
    let uac_got = traced_sdp(&dir.0.join("uac.log"), "received", "SIP/2.0 200 OK");
    assert_eq!(media_addr(&uac_got), at(caller_side), "the 200's SDP at the caller");
    (uac_got, uas_got, sessions)
}
