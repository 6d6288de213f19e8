//! `[log] format = "json"`: every stderr line of the real binary is one JSON object, and
//! a line about a SIP message carries its Call-ID.

mod common;

use std::net::UdpSocket;
use std::time::Duration;

use common::*;

#[test]
fn json_logs_are_one_object_per_line_with_the_call_id() {
    let dir = TempDir::new("json-log");
    let log = dir.0.join("stderr.log");
    let sw = SwitchProcess::start_logged_as("", "level = \"debug\"\nformat = \"json\"", &log);
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    let call_id = "json-log-call-id-1";
    s.send_to(options_request("UDP", s.local_addr().unwrap(), sw.udp, call_id).as_bytes(), sw.udp).unwrap();
    let got = collect_responses(&s, Duration::from_secs(2));
    assert_eq!(got.iter().map(|r| status(r)).collect::<Vec<_>>(), [200]);
    drop(sw.stop());
    std::thread::sleep(Duration::from_millis(300));
    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<serde_json::Value> =
        text.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"))).collect();
    assert!(lines.len() > 3, "{text}");
    assert!(lines.iter().all(|v| v["level"].is_string() && v["fields"].is_object()), "{text}");
    let about_it = lines.iter().filter(|v| v["span"]["call_id"] == call_id).count();
    assert!(about_it > 0, "no line carries the Call-ID:\n{text}");
    assert!(!text.contains('\u{1b}'), "no ANSI colours in a file");
}
