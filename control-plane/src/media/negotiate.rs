//! Codec negotiation as FreeSWITCH does it (late negotiation, REFERENCE.md), sans-IO.
//!
//! 1. The switch's list comes from the configured preferences (a FreeSWITCH codec string
//!    such as `PCMU,PCMA,G722,opus@48000h@20i`), or a call's `absolute_codec_string`.
//! 2. The B-leg offer keeps, in preference order, the codecs of A's offer the switch
//!    accepts, so B can answer with something A speaks, then the other preferences the
//!    media plane can transcode to; if A offered none of them, the preferences
//!    themselves are offered and the call is marked to transcode.
//! 3. A's answer is built from the codec B chose, matched against A's offer (A's payload
//!    type numbers); if A did not offer it, A gets the best codec of its own offer the
//!    switch can transcode from, and the session is marked to transcode.
//!
//! RFC 4733 telephone-event rides along on both legs whenever A offered it.

use crate::sdp::{Media, RtpMap};

/// The codecs the media plane transcodes between (by SDP encoding name).
pub const TRANSCODABLE: &[&str] = &["PCMU", "PCMA", "G722", "opus", "G729", "L16"];

/// One entry of a codec string: `NAME[@<rate>h][@<ptime>i][@<channels>c]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodecPref {
    /// The encoding name (compared case-insensitively).
    pub name: String,
    /// The clock rate, if the string names one.
    pub rate: Option<u32>,
    /// The packetization time in ms, if named.
    pub ptime: Option<u32>,
    /// Channels, if named.
    pub channels: Option<u8>,
}

/// Why a codec string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("codec string {string:?}: {what}")]
pub struct CodecStringError {
    /// The whole string.
    pub string: String,
    /// What is wrong.
    pub what: String,
}

/// Parses a FreeSWITCH codec string (`PCMU,PCMA@8000h@20i,opus@48000h@20i@2c`).
pub fn parse_codec_string(s: &str) -> Result<Vec<CodecPref>, CodecStringError> {
    let bad = |what: String| CodecStringError { string: s.to_string(), what };
    let mut out = Vec::new();
    for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let mut parts = item.split('@');
        let name = parts.next().unwrap_or_default();
        if name.is_empty() || !name.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'.' || c == b'_') {
            return Err(bad(format!("{item:?}: bad codec name")));
        }
        let mut pref = CodecPref { name: name.to_string(), rate: None, ptime: None, channels: None };
        for p in parts {
            let (num, unit) = p.split_at(p.len().saturating_sub(1));
            let n: u32 = num.parse().map_err(|_| bad(format!("{item:?}: {p:?} is not <number><h|i|c>")))?;
            match unit {
                "h" => pref.rate = Some(n),
                "k" => pref.rate = Some(n * 1000),
                "i" => pref.ptime = Some(n),
                "c" => pref.channels = Some(u8::try_from(n).map_err(|_| bad(format!("{item:?}: {n} channels")))?),
                _ => return Err(bad(format!("{item:?}: {p:?} is not <number><h|i|c>"))),
            }
        }
        out.push(pref);
    }
    if out.is_empty() {
        return Err(bad("no codec".into()));
    }
    Ok(out)
}

impl CodecPref {
    /// Whether an offered codec is this one (name, and rate/channels when named).
    pub fn matches(&self, m: &RtpMap) -> bool {
        m.encoding.eq_ignore_ascii_case(&self.name)
            && self.rate.is_none_or(|r| r == m.clock_rate)
            && self.channels.is_none_or(|c| Some(c) == m.channels || (c == 1 && m.channels.is_none()))
    }

    /// This codec as an rtpmap with payload type `pt` (its usual rate when not named).
    pub fn to_rtpmap(&self, pt: u8) -> RtpMap {
        let upper = self.name.to_ascii_uppercase();
        // Opus is always signalled as 48000/2 (RFC 7587 §7); the others here run at 8000.
        let (rate, channels) = if upper == "OPUS" { (48000, Some(2)) } else { (8000, None) };
        RtpMap {
            pt,
            encoding: self.name.clone(),
            clock_rate: self.rate.unwrap_or(rate),
            channels: self.channels.or(channels),
        }
    }
}

/// The static payload type of a codec, when it has one (RFC 3551).
pub fn static_pt(name: &str, rate: u32) -> Option<u8> {
    Some(match (name.to_ascii_uppercase().as_str(), rate) {
        ("PCMU", 8000) => 0,
        ("PCMA", 8000) => 8,
        ("G722", 8000) => 9,
        ("G729", 8000) => 18,
        ("GSM", 8000) => 3,
        _ => return None,
    })
}

/// What the B-leg is offered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BOffer {
    /// The codecs, in order, with payload types (A's numbers where A offered them).
    pub codecs: Vec<RtpMap>,
    /// The telephone-event map to add, if A offered one.
    pub telephone_event: Option<RtpMap>,
    /// None of A's codecs was acceptable: the media plane must transcode.
    pub transcode: bool,
}

/// What A is answered, given B's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AAnswer {
    /// The codec toward A, with A's payload type.
    pub codec: RtpMap,
    /// The telephone-event map toward A, if both sides have one.
    pub telephone_event: Option<RtpMap>,
    /// A and B use different codecs: the media plane must transcode.
    pub transcode: bool,
}

fn is_dtmf(m: &RtpMap) -> bool {
    m.encoding.eq_ignore_ascii_case("telephone-event")
}

/// Step 2: the B-leg offer from A's offered section, the switch's preferences and the
/// codecs the media plane transcodes (`transcodable`, by name). A's codecs the switch
/// accepts come first, in preference order, so B can answer with one A speaks and
/// nothing is transcoded; then, if A offered something the media plane can transcode
/// from, the other transcodable preferences, so a B that speaks none of A's codecs still
/// has one to choose. If A offered none of the preferences, the call is marked to
/// transcode.
pub fn b_leg_offer(a: &Media, prefs: &[CodecPref], transcodable: &[&str]) -> BOffer {
    let offered: Vec<RtpMap> = a.rtpmaps();
    let telephone_event = offered.iter().find(|m| is_dtmf(m)).cloned();
    let mut codecs: Vec<RtpMap> = Vec::new();
    for p in prefs {
        for m in offered.iter().filter(|m| !is_dtmf(m) && p.matches(m)) {
            if !codecs.iter().any(|c| c.pt == m.pt) {
                codecs.push(m.clone());
            }
        }
    }
    let can = |name: &str| transcodable.iter().any(|t| t.eq_ignore_ascii_case(name));
    let transcode = codecs.is_empty();
    let from_a = offered.iter().any(|m| !is_dtmf(m) && can(&m.encoding));
    if !transcode && !from_a {
        return BOffer { codecs, telephone_event, transcode };
    }
    // Further codecs (all the preferences when nothing is in common; else the
    // transcodable ones A did not offer): dynamic types from 96 up, skipping every
    // number A used.
    let taken: Vec<u8> = offered.iter().map(|m| m.pt).collect();
    let mut next = 96u8;
    for p in prefs {
        let extra = if transcode { transcodable.is_empty() || can(&p.name) } else { can(&p.name) };
        if !extra || offered.iter().any(|m| p.matches(m)) {
            continue;
        }
        let rate = p.rate.unwrap_or(p.to_rtpmap(0).clock_rate);
        let pt = match static_pt(&p.name, rate).filter(|s| !taken.contains(s) && !codecs.iter().any(|c| c.pt == *s)) {
            Some(s) => s,
            None => {
                while taken.contains(&next) || codecs.iter().any(|c| c.pt == next) {
                    next = next.saturating_add(1);
                }
                if next > 127 {
                    break;
                }
                next
            }
        };
        codecs.push(p.to_rtpmap(pt));
    }
    BOffer { codecs, telephone_event, transcode }
}

/// Step 4: A's answer from B's answered section, A's offered section and the codecs the
/// media plane can transcode between (`transcodable`, by name). `None` if nothing fits:
/// the call cannot be bridged (a 488 toward A).
pub fn a_leg_answer(a: &Media, b: &Media, transcodable: &[&str]) -> Option<AAnswer> {
    let a_maps = a.rtpmaps();
    let b_maps = b.rtpmaps();
    let b_choice = b_maps.iter().find(|m| !is_dtmf(m))?;
    let b_te = b_maps.iter().find(|m| is_dtmf(m));
    let a_te = a_maps.iter().find(|m| is_dtmf(m));
    let telephone_event = a_te.filter(|_| b_te.is_some()).cloned();
    let same = |m: &&RtpMap| {
        !is_dtmf(m) && m.encoding.eq_ignore_ascii_case(&b_choice.encoding) && m.clock_rate == b_choice.clock_rate
    };
    if let Some(m) = a_maps.iter().find(same) {
        return Some(AAnswer { codec: m.clone(), telephone_event, transcode: false });
    }
    let can = |name: &str| transcodable.iter().any(|t| t.eq_ignore_ascii_case(name));
    if !can(&b_choice.encoding) {
        return None;
    }
    let codec = a_maps.iter().find(|m| !is_dtmf(m) && can(&m.encoding))?.clone();
    Some(AAnswer { codec, telephone_event, transcode: true })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sdp::Sdp;

    fn media(formats: &str, extra: &str) -> Media {
        let text = format!("v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP {formats}\r\n{extra}");
        Sdp::parse(text.as_bytes()).unwrap().media.remove(0)
    }

    fn prefs(s: &str) -> Vec<CodecPref> {
        parse_codec_string(s).unwrap()
    }

    fn names(v: &[RtpMap]) -> Vec<(u8, &str)> {
        v.iter().map(|m| (m.pt, m.encoding.as_str())).collect()
    }

    #[test]
    fn codec_strings_follow_freeswitch_syntax() {
        assert_eq!(
            prefs("PCMU, opus@48000h@20i@2c,G722@16k"),
            vec![
                CodecPref { name: "PCMU".into(), rate: None, ptime: None, channels: None },
                CodecPref { name: "opus".into(), rate: Some(48000), ptime: Some(20), channels: Some(2) },
                CodecPref { name: "G722".into(), rate: Some(16000), ptime: None, channels: None },
            ]
        );
        assert_eq!(parse_codec_string("").unwrap_err().what, "no codec");
        assert!(parse_codec_string("PCMU@20x").unwrap_err().what.contains("<number><h|i|c>"));
        assert!(parse_codec_string("PC MU").unwrap_err().what.contains("bad codec name"));
    }

    #[test]
    fn the_b_offer_keeps_as_offered_codecs_in_preference_order() {
        let a = media("0 8 9 101", "a=rtpmap:101 telephone-event/8000\r\n");
        let o = b_leg_offer(&a, &prefs("G722,PCMA,opus"), &[]);
        assert_eq!(names(&o.codecs), vec![(9, "G722"), (8, "PCMA")]);
        assert_eq!(o.telephone_event.map(|t| t.pt), Some(101));
        assert!(!o.transcode);
    }

    #[test]
    fn the_b_offer_adds_what_the_media_plane_can_transcode_to_after_as_codecs() {
        let a = media("0 96", "a=rtpmap:96 telephone-event/8000\r\n");
        let all = ["PCMU", "PCMA", "G722", "opus"];
        let o = b_leg_offer(&a, &prefs("opus,G722,PCMU,PCMA,AMR"), &all);
        // A's PCMU first (no transcoding if B takes it), then the rest; 96 is A's.
        assert_eq!(names(&o.codecs), vec![(0, "PCMU"), (97, "opus"), (9, "G722"), (8, "PCMA")]);
        assert!(!o.transcode);
        // A offered nothing the media plane transcodes from: nothing is added.
        let a = media("3", "");
        let o = b_leg_offer(&a, &prefs("GSM,opus"), &all);
        assert_eq!(names(&o.codecs), vec![(3, "GSM")]);
    }

    #[test]
    fn nothing_in_common_offers_the_preferences_and_transcodes() {
        let a = media("0 101", "a=rtpmap:101 telephone-event/8000\r\n");
        let o = b_leg_offer(&a, &prefs("opus,G722,AMR"), &[]);
        assert_eq!(names(&o.codecs), vec![(96, "opus"), (9, "G722"), (97, "AMR")]);
        // With transcoding, only what the media plane can make is offered.
        let o = b_leg_offer(&a, &prefs("opus,G722,AMR"), &["opus", "G722", "PCMU"]);
        assert_eq!(names(&o.codecs), vec![(96, "opus"), (9, "G722")]);
        assert_eq!((o.codecs[0].clock_rate, o.codecs[0].channels), (48000, Some(2)));
        assert!(o.transcode);
        // A's telephone-event number is never reused for a codec.
        let a = media("0 96", "a=rtpmap:96 telephone-event/8000\r\n");
        let o = b_leg_offer(&a, &prefs("opus"), &[]);
        assert_eq!(names(&o.codecs), vec![(97, "opus")]);
    }

    #[test]
    fn a_is_answered_with_bs_codec_under_as_payload_type() {
        let a = media("111 0 101", "a=rtpmap:111 opus/48000/2\r\na=rtpmap:101 telephone-event/8000\r\n");
        let b = media("96 101", "a=rtpmap:96 opus/48000/2\r\na=rtpmap:101 telephone-event/8000\r\n");
        let ans = a_leg_answer(&a, &b, &["PCMU", "PCMA", "G722", "opus"]).unwrap();
        assert_eq!((ans.codec.pt, ans.codec.encoding.as_str(), ans.transcode), (111, "opus", false));
        assert_eq!(ans.telephone_event.map(|t| t.pt), Some(101));
    }

    #[test]
    fn a_codec_a_never_offered_is_transcoded_or_refused() {
        let a = media("0", "");
        let b = media("9", "");
        let ans = a_leg_answer(&a, &b, &["PCMU", "G722"]).unwrap();
        assert_eq!((ans.codec.pt, ans.codec.encoding.as_str(), ans.transcode), (0, "PCMU", true));
        assert_eq!(ans.telephone_event, None);
        // B picked something the media plane cannot transcode: no answer (488 to A).
        let b = media("18", "");
        assert_eq!(a_leg_answer(&a, &b, &["PCMU", "G722"]), None);
    }
}
