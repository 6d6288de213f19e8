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

/// Every line the B2BUA logs about a call names the call's channel UUID and its
/// Call-ID, whatever started it (a SIP message, a timer, the media plane).
#[test]
fn every_line_about_a_call_carries_its_channel_uuid_and_call_id() {
    let dir = TempDir::new("json-log-call");
    let log = dir.0.join("stderr.log");
    let sw = SwitchProcess::start_logged_as("", "level = \"debug\"\nformat = \"json\"", &log);
    let out = run_call_in(&dir, &sw, (1, 1), "1001", "uac_call_auth.xml", Some("uas_answer.xml"), &[]);
    assert_all_passed("the call", out);
    drop(sw.stop());
    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<serde_json::Value> = text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    // The B2BUA's lines (but start-up's summary of the calls it recovered: none).
    let about_calls: Vec<&serde_json::Value> = lines
        .iter()
        .filter(|v| {
            v["target"].as_str().is_some_and(|t| t.starts_with("control_plane::b2bua") && !t.ends_with("::recovery"))
        })
        .collect();
    assert!(about_calls.len() >= 5, "{text}");
    let uuids: std::collections::BTreeSet<&str> =
        about_calls.iter().filter_map(|v| v["span"]["uuid"].as_str()).collect();
    for v in &about_calls {
        let (uuid, call_id) = (v["span"]["uuid"].as_str().unwrap_or(""), v["span"]["call_id"].as_str().unwrap_or(""));
        assert!(uuid.len() == 36 && !call_id.is_empty(), "a line without its call's uuid and Call-ID: {v}");
    }
    assert_eq!(uuids.len(), 1, "one call, one uuid: {uuids:?}");
}
