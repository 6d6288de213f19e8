//! A SIPp call's RTP through the real binary's media plane (issue 6's done-when): a SIPp
//! caller as 1000 (407 digest auth) streams PCMU to 1001, a SIPp callee registered from a
//! free port that echoes every packet (`-rtp_echo`). The phones only know the media
//! plane's ports; the media plane's own counters, reported when the session is destroyed,
//! must show every packet both ways in both legs' CDRs. Its own test binary, so no other
//! calls load the machine while the stream is counted.

mod common;

use std::time::{Duration, Instant};

use common::*;

#[test]
fn a_calls_rtp_crosses_the_media_plane_both_ways_and_its_counters_reach_the_cdrs() {
    // The caller streams 100 PCMU packets (one second of mu-law silence, played twice); the
    // callee echoes every packet back. Both go through the media plane: the phones only
    // know its ports. Its final counters land in each leg's CDR.
    let sw = SwitchProcess::start("");
    let logs = TempDir::new("sipp-rtp");
    std::fs::write(logs.0.join("audio.ulaw"), [0xffu8; 8000]).unwrap();
    let out = run_call_in(&logs, &sw, (1, 1), "1001", "uac_call_auth_rtp.xml", Some("uas_answer.xml"), &["-rtp_echo"]);
    assert_all_passed("call with RTP", out);
    // The counters follow the call's end (the media plane reports them when the session goes).
    let deadline = Instant::now() + Duration::from_secs(10);
    while cdrs(&sw).iter().any(|c| c.2.is_none()) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let media: Vec<(String, [i64; 4])> = cdrs(&sw).into_iter().map(|c| (c.0, c.2.unwrap_or_default())).collect();
    assert_eq!(media.len(), 2, "{media:?}");
    let leg = |d: &str| media.iter().find(|(dir, _)| dir == d).map(|x| x.1);
    // A-leg: 100 in from the caller, 100 echoed out to it; B-leg: the same, mirrored.
    assert_eq!(leg("inbound"), Some([100, 100, 0, 0]), "{media:?}");
    assert_eq!(leg("outbound"), Some([100, 100, 0, 0]), "{media:?}");
}

/// A pcap file (Ethernet, IPv4, UDP) holding one RTCP sender report without report
/// blocks, for SIPp's play_pcap_audio.
fn rtcp_pcap() -> Vec<u8> {
    let rtcp: [u8; 28] = [0x80, 200, 0, 6, 0, 0, 0, 0xb, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 4, 0, 0, 0, 5];
    let mut udp = Vec::new();
    udp.extend(40000u16.to_be_bytes());
    udp.extend(40001u16.to_be_bytes());
    udp.extend((8 + rtcp.len() as u16).to_be_bytes());
    udp.extend([0, 0]);
    udp.extend(rtcp);
    let mut ip = vec![0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, 17, 0, 0, 127, 0, 0, 1, 127, 0, 0, 1];
    ip[2..4].copy_from_slice(&(20 + udp.len() as u16).to_be_bytes());
    let mut frame = vec![0u8; 12];
    frame.extend([0x08, 0x00]);
    frame.extend(ip);
    frame.extend(udp);
    let mut pcap = Vec::new();
    pcap.extend(0xa1b2_c3d4u32.to_le_bytes());
    pcap.extend(2u16.to_le_bytes());
    pcap.extend(4u16.to_le_bytes());
    pcap.extend([0u8; 8]);
    pcap.extend(65535u32.to_le_bytes());
    pcap.extend(1u32.to_le_bytes());
    pcap.extend(1u32.to_le_bytes()); // ts_sec
    pcap.extend(0u32.to_le_bytes()); // ts_usec
    pcap.extend((frame.len() as u32).to_le_bytes());
    pcap.extend((frame.len() as u32).to_le_bytes());
    pcap.extend(frame);
    pcap
}

#[test]
fn a_callee_sending_rtcp_before_it_answers_still_gets_and_returns_the_callers_rtp() {
    // As baresip does: RTCP toward leg B before the 200 OK. It must not latch leg B (nothing
    // was signalled yet: dropped and counted), and the 200's SDP still gives leg B its peer
    // (before the fix, the RTCP latched the leg and the caller's RTP never reached B).
    let sw = SwitchProcess::start("");
    let logs = TempDir::new("sipp-rtcp-first");
    std::fs::write(logs.0.join("audio.ulaw"), [0xffu8; 8000]).unwrap();
    std::fs::write(logs.0.join("rtcp_first.pcap"), rtcp_pcap()).unwrap();
    let out = run_call_in(
        &logs,
        &sw,
        (1, 1),
        "1001",
        "uac_call_auth_rtp.xml",
        Some("uas_rtcp_first_answer.xml"),
        &["-rtp_echo"],
    );
    assert_all_passed("call whose callee sends RTCP first", out);
    let deadline = Instant::now() + Duration::from_secs(10);
    while cdrs(&sw).iter().any(|c| c.2.is_none()) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let media: Vec<(String, [i64; 4])> = cdrs(&sw).into_iter().map(|c| (c.0, c.2.unwrap_or_default())).collect();
    let leg = |d: &str| media.iter().find(|(dir, _)| dir == d).map(|x| x.1);
    assert_eq!(leg("inbound"), Some([100, 100, 0, 0]), "{media:?}");
    assert_eq!(leg("outbound"), Some([100, 100, 0, 1]), "B's early RTCP dropped and counted: {media:?}");
    // By reason: from a source nothing had signalled yet.
    let (_, body) = sw.http_get("/cdr");
    let rows: Vec<serde_json::Value> = serde_json::from_str(&body).unwrap();
    let b = rows.iter().find(|r| r["direction"] == "outbound").expect("the B-leg's CDR");
    let reasons = ["no_peer", "strict_source", "malformed", "loop"].map(|r| b[format!("media_dropped_{r}")].as_i64());
    assert_eq!(reasons, [Some(0), Some(1), Some(0), Some(0)], "{b}");
}

/// The CDRs the switch wrote: (direction, hangup cause, media counters if any).
fn cdrs(sw: &SwitchProcess) -> Vec<(String, String, Option<[i64; 4]>)> {
    let (code, body) = sw.http_get("/cdr");
    assert_eq!(code, 200, "{body}");
    let rows: Vec<serde_json::Value> = serde_json::from_str(&body).unwrap();
    rows.iter()
        .map(|r| {
            let n = |k: &str| r[k].as_i64();
            let media = n("media_in_packets")
                .map(|i| [i, n("media_out_packets").unwrap(), n("media_lost").unwrap(), n("media_dropped").unwrap()]);
            (r["direction"].as_str().unwrap().to_string(), r["hangup_cause"].as_str().unwrap().to_string(), media)
        })
        .collect()
}

#[test]
fn echo_9196_sends_the_callers_rtp_back_through_the_media_plane() {
    let sw = SwitchProcess::start("");
    let logs = TempDir::new("sipp-echo");
    std::fs::write(logs.0.join("audio.ulaw"), [0xffu8; 8000]).unwrap();
    let out = run_call_in(&logs, &sw, (1, 1), "9196", "uac_call_auth_rtp.xml", None, &[]);
    assert_all_passed("call to 9196 with RTP", out);
    let deadline = Instant::now() + Duration::from_secs(10);
    while cdrs(&sw).iter().any(|c| c.2.is_none()) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(cdrs(&sw), [("inbound".to_string(), "NORMAL_CLEARING".to_string(), Some([100, 100, 0, 0]))]);
}

#[test]
fn a_call_without_rtp_hangs_up_with_media_timeout() {
    // Neither phone sends RTP; with a 2 s RTP timeout the switch hangs up both legs, and
    // the caller and the callee each get its BYE.
    let sw = SwitchProcess::start_with(TempDir::new("switch"), "", "rtp_timeout_secs = 2");
    let out = run_call_in(
        &TempDir::new("sipp-timeout"),
        &sw,
        (1, 1),
        "1001",
        "uac_call_wait_bye.xml",
        Some("uas_answer.xml"),
        &[],
    );
    assert_all_passed("a call hung up on its RTP timeout", out);
    let mut got: Vec<(String, String)> = cdrs(&sw).into_iter().map(|c| (c.0, c.1)).collect();
    got.sort();
    let want = |d: &str| (d.to_string(), "MEDIA_TIMEOUT".to_string());
    assert_eq!(got, [want("inbound"), want("outbound")]);
}
