//! Two real softphones through the switch, doing what real phones do: baresip (Debian
//! baresip-core) registered as 1000 and 1001 with digest auth, each sending its own tone
//! (1000: 700 Hz, 1001: 1400 Hz) and recording what it hears; every call must carry each
//! phone's tone to the other, checked by frequency and level. baresip answers with RTCP
//! before its first RTP packet, latches symmetric RTP, and holds with a sendonly re-INVITE.
//! Per codec (the same one on both phones): ten calls in a row, hung up alternately by the
//! caller and the callee, then a call put on hold and resumed. The same with phones that
//! share no codec (PCMU-only calling Opus-only, G.722-only calling PCMA-only): the media
//! plane transcodes. Installed via ci/.

mod common;

use std::time::{Duration, Instant};

use common::softphone::{rms_dbfs, tone_dbfs, Codec, Phone, G722, OPUS, PCMA, PCMU, RATE};
use common::*;

struct Pair {
    sw: SwitchProcess,
    caller: Phone,
    callee: Phone,
}

impl Pair {
    /// The switch, and two phones each limited to its own codec.
    fn start(caller: Codec, callee: Codec, rtp_base: u16) -> Pair {
        let sw = SwitchProcess::start("");
        let caller = Phone::start(sw.udp, "1000", caller, 700.0, rtp_base);
        let callee = Phone::start(sw.udp, "1001", callee, 1400.0, rtp_base + 100);
        wait_registered(&sw, &["1000", "1001"]);
        Pair { sw, caller, callee }
    }

    /// Both phones heard the other's tone between `from` and `to`, and not their own.
    fn assert_two_way(&self, from: Instant, to: Instant, what: &str) {
        for (listener, talker) in [(&self.caller, &self.callee), (&self.callee, &self.caller)] {
            let h = listener.hears(talker.tone_hz, from, to);
            assert!(
                h.clear(false),
                "{what}: {} heard {:.2} s: {} Hz at {:.1} dBFS (wanted > -20), its own {} Hz at {:.1} \
                 (wanted < -45), RMS {:.1}; media sessions: {}\n{}",
                listener.user,
                h.secs,
                talker.tone_hz,
                h.tone,
                listener.tone_hz,
                h.own,
                h.rms,
                self.sw.http_get("/media/sessions").1,
                listener.log()
            );
        }
    }

    /// Neither phone played anything but silence between `from` and `to`.
    fn assert_silent(&self, from: Instant, to: Instant, what: &str) {
        for phone in [&self.caller, &self.callee] {
            let heard = phone.heard(from, to);
            let rms = rms_dbfs(&heard);
            if let Ok(dir) = std::env::var("SOFTPHONE_DUMP") {
                let bytes: Vec<u8> = heard.iter().flat_map(|s| s.to_le_bytes()).collect();
                std::fs::write(format!("{dir}/held-{}.raw", phone.user), bytes).unwrap();
            }
            assert!(
                rms < -50.0,
                "{what}: {} heard {:.2} s at RMS {rms:.1} dBFS while on hold (700 Hz {:.1}, 1400 Hz {:.1}); \
                 media sessions: {}",
                phone.user,
                heard.len() as f64 / f64::from(RATE),
                tone_dbfs(&heard, 700.0),
                tone_dbfs(&heard, 1400.0),
                self.sw.http_get("/media/sessions").1,
            );
        }
    }

    /// The caller dials 1001 through the switch; both phones report the call up.
    fn dial(&mut self) -> Instant {
        let (a, b) = (self.caller.events("CALL_ESTABLISHED"), self.callee.events("CALL_ESTABLISHED"));
        let uri = format!("sip:1001@{}", self.sw.udp);
        assert!(self.caller.cmd("dial", &uri), "dial refused:\n{}", self.caller.log());
        self.caller.wait_events("CALL_ESTABLISHED", a + 1, Duration::from_secs(10));
        self.callee.wait_events("CALL_ESTABLISHED", b + 1, Duration::from_secs(10));
        Instant::now()
    }

    /// One side hangs up; both phones report the call closed.
    fn hang_up(&mut self, by_callee: bool) {
        let (a, b) = (self.caller.events("CALL_CLOSED"), self.callee.events("CALL_CLOSED"));
        let phone = if by_callee { &mut self.callee } else { &mut self.caller };
        assert!(phone.cmd("hangup", ""));
        self.caller.wait_events("CALL_CLOSED", a + 1, Duration::from_secs(10));
        self.callee.wait_events("CALL_CLOSED", b + 1, Duration::from_secs(10));
    }
}

const SETTLE: Duration = Duration::from_millis(500);
const LISTEN: Duration = Duration::from_millis(1000);

/// One codec's pair at a time: the recordings are paced in real time, and four pairs of
/// phones with their switches on two cores at once would measure the machine's load.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn ten_calls_then_hold_and_resume(codec: Codec, rtp_base: u16) {
    calls_between(codec, codec, rtp_base);
}

/// Ten calls from a phone speaking only `caller` to one speaking only `callee` (the same
/// codec: relayed; different ones: transcoded), then a call held and resumed.
fn calls_between(caller: Codec, callee: Codec, rtp_base: u16) {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let mut p = Pair::start(caller, callee, rtp_base);
    let codec = (caller.0, callee.0);
    for n in 1..=10 {
        let up = p.dial();
        std::thread::sleep(SETTLE + LISTEN + Duration::from_millis(100));
        p.assert_two_way(up + SETTLE, up + SETTLE + LISTEN, &format!("{codec:?} call {n}"));
        p.hang_up(n % 2 == 0);
    }
    // Hold (a sendonly re-INVITE from the caller) and resume.
    let up = p.dial();
    std::thread::sleep(SETTLE + LISTEN + Duration::from_millis(100));
    p.assert_two_way(up + SETTLE, up + SETTLE + LISTEN, &format!("{codec:?} before hold"));
    assert!(p.caller.cmd("hold", ""), "hold:\n{}", p.caller.log());
    let held = Instant::now();
    std::thread::sleep(SETTLE + LISTEN + Duration::from_millis(100));
    p.assert_silent(held + SETTLE, held + SETTLE + LISTEN, &format!("{codec:?} on hold"));
    assert!(p.caller.cmd("resume", ""), "resume:\n{}", p.caller.log());
    let resumed = Instant::now();
    std::thread::sleep(SETTLE + LISTEN + Duration::from_millis(100));
    p.assert_two_way(resumed + SETTLE, resumed + SETTLE + LISTEN, &format!("{codec:?} after resume"));
    p.hang_up(true);
    // Every call ended on both legs, and its sessions with it.
    let deadline = Instant::now() + Duration::from_secs(5);
    while p.sw.http_get("/media/sessions").1 != "[]" && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(p.sw.http_get("/media/sessions"), (200, "[]".to_string()));
}

#[test]
fn pcmu_phones_hear_each_other_on_every_call_and_after_hold() {
    ten_calls_then_hold_and_resume(PCMU, 10400);
}

#[test]
fn pcma_phones_hear_each_other_on_every_call_and_after_hold() {
    ten_calls_then_hold_and_resume(PCMA, 10600);
}

#[test]
fn g722_phones_hear_each_other_on_every_call_and_after_hold() {
    ten_calls_then_hold_and_resume(G722, 10800);
}

#[test]
fn opus_phones_hear_each_other_on_every_call_and_after_hold() {
    ten_calls_then_hold_and_resume(OPUS, 11000);
}

#[test]
fn a_pcmu_only_phone_and_an_opus_only_phone_hear_each_other_through_transcoding() {
    calls_between(PCMU, OPUS, 14000);
}

#[test]
fn a_g722_only_phone_and_a_pcma_only_phone_hear_each_other_through_transcoding() {
    calls_between(G722, PCMA, 14400);
}
