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
    let media = loop {
        let (code, body) = sw.http_get("/cdr");
        assert_eq!(code, 200, "{body}");
        let rows: Vec<serde_json::Value> = serde_json::from_str(&body).unwrap();
        let counted: Vec<(String, [i64; 4])> = rows
            .iter()
            .filter(|r| r["media_in_packets"].is_i64())
            .map(|r| {
                let n = |k: &str| r[k].as_i64().unwrap();
                let dir = r["direction"].as_str().unwrap().to_string();
                (dir, [n("media_in_packets"), n("media_out_packets"), n("media_lost"), n("media_dropped")])
            })
            .collect();
        if counted.len() == 2 || Instant::now() > deadline {
            assert_eq!(rows.len(), 2, "{body}");
            break counted;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let leg = |d: &str| media.iter().find(|(dir, _)| dir == d).map(|x| x.1);
    // A-leg: 100 in from the caller, 100 echoed out to it; B-leg: the same, mirrored.
    assert_eq!(leg("inbound"), Some([100, 100, 0, 0]), "{media:?}");
    assert_eq!(leg("outbound"), Some([100, 100, 0, 0]), "{media:?}");
}
