//! rtpengine's codec handling for NG offers and answers, sans-IO: what the offer toward
//! the answerer lists, and how the answer maps back to the offerer, with the media plane
//! transcoding where the two sides end up with different codecs.
//!
//! An offer's `codec` dictionary (or the `codec-<verb>-<codec>` flags rtpengine's clients
//! also send):
//! - `strip`: removed from the offer, and not used with the offerer either (`all`: every
//!   codec; `except` names those `all` keeps);
//! - `mask`: removed from the offer, but still the offerer's to send (transcoded);
//! - `transcode` (older clients: `offer`): added to the offer if missing, transcoded from
//!   the offerer's codecs;
//! - `accept` and `set` are taken and change nothing more here.
//!
//! The flag `always transcode` answers the offerer with its own first codec even when
//! the answerer chose another it offered. `ptime` is the packetization asked of the
//! answerer, `ptime-reverse` that toward the offerer (either forces transcoding when
//! the two sides differ).

use crate::media::negotiate::{self, static_pt, AAnswer, TRANSCODABLE};
use crate::sdp::{Attribute, Media, RtpMap};

/// An offer's codec instructions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CodecFlags {
    /// `codec` → `strip`.
    pub strip: Vec<String>,
    /// `codec` → `except`.
    pub except: Vec<String>,
    /// `codec` → `mask`.
    pub mask: Vec<String>,
    /// `codec` → `transcode` / `offer`.
    pub transcode: Vec<String>,
    /// `codec` → `accept`.
    pub accept: Vec<String>,
    /// `codec` → `set`.
    pub set: Vec<String>,
    /// The `always transcode` flag.
    pub always_transcode: bool,
    /// `ptime`: toward the answerer, in ms.
    pub ptime: Option<u32>,
    /// `ptime-reverse`: toward the offerer, in ms.
    pub ptime_reverse: Option<u32>,
}

/// A codec as NG names it: `opus`, `opus/48000`, `opus/48000/2` (the rest ignored).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Named {
    name: String,
    rate: Option<u32>,
    channels: Option<u8>,
}

fn named(spec: &str) -> Named {
    let mut parts = spec.split('/');
    let name = parts.next().unwrap_or_default().trim().to_string();
    let rate = parts.next().and_then(|r| r.trim().parse().ok());
    let channels = parts.next().and_then(|c| c.trim().parse().ok());
    Named { name, rate, channels }
}

impl Named {
    fn matches(&self, m: &RtpMap) -> bool {
        m.encoding.eq_ignore_ascii_case(&self.name)
            && self.rate.is_none_or(|r| r == m.clock_rate)
            && self.channels.is_none_or(|c| m.channels.unwrap_or(1) == c)
    }

    /// The rtpmap to add under `pt` (a codec's usual rate where the name gives none).
    fn rtpmap(&self, pt: u8) -> RtpMap {
        let upper = self.name.to_ascii_uppercase();
        let (rate, channels) = match upper.as_str() {
            "OPUS" => (48000, Some(2)),
            "L16" => (16000, None),
            _ => (8000, None),
        };
        RtpMap {
            pt,
            encoding: self.name.clone(),
            clock_rate: self.rate.unwrap_or(rate),
            channels: self.channels.map(Some).unwrap_or(channels),
        }
    }
}

fn listed(list: &[String], m: &RtpMap) -> bool {
    list.iter().any(|s| named(s).matches(m))
}

fn is_dtmf(m: &RtpMap) -> bool {
    m.encoding.eq_ignore_ascii_case("telephone-event")
}

impl CodecFlags {
    /// Whether any of these ask for codec changes or transcoding.
    pub fn any(&self) -> bool {
        !self.strip.is_empty()
            || !self.mask.is_empty()
            || !self.transcode.is_empty()
            || self.always_transcode
            || self.ptime.is_some()
            || self.ptime_reverse.is_some()
    }

    fn stripped(&self, m: &RtpMap) -> bool {
        if is_dtmf(m) {
            return listed(&self.strip, m);
        }
        let all = self.strip.iter().any(|s| s.eq_ignore_ascii_case("all"));
        (all && !listed(&self.except, m)) || listed(&self.strip, m)
    }

    /// The offerer's section as the media plane may take it from the offerer: its codecs
    /// less the stripped ones (masked ones stay: the offerer still sends them).
    pub fn from_offerer(&self, m: &Media) -> Media {
        let keep: Vec<RtpMap> = m.rtpmaps().into_iter().filter(|r| !self.stripped(r)).collect();
        let mut out = m.clone();
        crate::media::rewrite::set_codecs(&mut out, &keep, &[m]);
        out
    }

    /// Rewrites the offer's section toward the answerer: stripped and masked codecs out,
    /// transcoded ones in (under free payload types), the ptime asked.
    pub fn toward_answerer(&self, m: &mut Media) {
        let offered = m.rtpmaps();
        let mut codecs: Vec<RtpMap> =
            offered.iter().filter(|r| !self.stripped(r) && !listed(&self.mask, r)).cloned().collect();
        let mut next = 96u8;
        for spec in &self.transcode {
            let n = named(spec);
            if codecs.iter().any(|c| n.matches(c)) {
                continue;
            }
            let taken = |pt: u8| offered.iter().chain(&codecs).any(|c| c.pt == pt);
            let rate = n.rtpmap(0).clock_rate;
            let pt = match static_pt(&n.name, rate).filter(|&p| !taken(p)) {
                Some(p) => p,
                None => {
                    while taken(next) && next < 127 {
                        next += 1;
                    }
                    next
                }
            };
            // Before telephone-event: a codec, not an event, is what the answerer picks first.
            let at = codecs.iter().position(is_dtmf).unwrap_or(codecs.len());
            codecs.insert(at, n.rtpmap(pt));
        }
        let source = m.clone();
        crate::media::rewrite::set_codecs(m, &codecs, &[&source]);
        if let Some(p) = self.ptime {
            set_ptime(m, p);
        }
    }

    /// The answer for the offerer (its section `offered` as [`CodecFlags::from_offerer`]
    /// gave it) from the answerer's section: the codec, and whether to transcode.
    pub fn answer(&self, offered: &Media, answered: &Media) -> Option<AAnswer> {
        let mut ans = negotiate::a_leg_answer(offered, answered, TRANSCODABLE)?;
        if self.always_transcode {
            let can = |r: &RtpMap| !is_dtmf(r) && TRANSCODABLE.iter().any(|t| t.eq_ignore_ascii_case(&r.encoding));
            if let Some(first) = offered.rtpmaps().into_iter().find(can) {
                let b = answered.rtpmaps().into_iter().find(|r| !is_dtmf(r));
                ans.transcode = b.is_some_and(|b| {
                    !(first.encoding.eq_ignore_ascii_case(&b.encoding) && first.clock_rate == b.clock_rate)
                });
                ans.codec = first;
            }
        }
        Some(ans)
    }
}

/// Sets (or replaces) a section's `a=ptime`.
pub fn set_ptime(m: &mut Media, ms: u32) {
    m.attributes.retain(|a| !a.name.eq_ignore_ascii_case("ptime"));
    m.attributes.push(Attribute { name: "ptime".into(), value: Some(ms.to_string()) });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sdp::Sdp;

    fn media(formats: &str, extra: &str) -> Media {
        let text = format!("v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP {formats}\r\n{extra}");
        Sdp::parse(text.as_bytes()).unwrap().media.remove(0)
    }

    fn names(m: &Media) -> Vec<(u8, String)> {
        m.rtpmaps().into_iter().map(|r| (r.pt, format!("{}/{}", r.encoding, r.clock_rate))).collect()
    }

    fn v(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn mask_and_transcode_offer_the_answerer_another_codec_rtpengine_codec_flags() {
        let mut m = media("0 8 101", "a=rtpmap:101 telephone-event/8000\r\n");
        let f = CodecFlags { mask: v(&["PCMU"]), transcode: v(&["opus", "G722"]), ..CodecFlags::default() };
        f.toward_answerer(&mut m);
        assert_eq!(
            names(&m),
            [
                (8, "PCMA/8000".into()),
                (96, "opus/48000".into()),
                (9, "G722/8000".into()),
                (101, "telephone-event/8000".into())
            ]
        );
        // The offerer keeps its masked PCMU.
        let offered = f.from_offerer(&media("0 8 101", "a=rtpmap:101 telephone-event/8000\r\n"));
        assert_eq!(names(&offered)[0], (0, "PCMU/8000".into()));
    }

    #[test]
    fn strip_all_except_keeps_only_the_named_and_ptime_is_set() {
        let mut m = media("0 8 9 18", "");
        let f = CodecFlags { strip: v(&["all"]), except: v(&["PCMA"]), ptime: Some(30), ..CodecFlags::default() };
        f.toward_answerer(&mut m);
        assert_eq!(names(&m), [(8, "PCMA/8000".into())]);
        assert_eq!(m.ptime(), Some(30));
        // A stripped codec is not the offerer's to send either.
        let s = CodecFlags { strip: v(&["PCMU"]), ..CodecFlags::default() };
        assert_eq!(names(&s.from_offerer(&media("0 8", ""))), [(8, "PCMA/8000".into())]);
    }

    #[test]
    fn the_answer_maps_back_and_always_transcode_keeps_the_offerers_first_codec() {
        let offered = media("0 8", "");
        let answered = media("96", "a=rtpmap:96 opus/48000/2\r\n");
        let f = CodecFlags::default();
        let a = f.answer(&offered, &answered).unwrap();
        assert_eq!((a.codec.pt, a.transcode), (0, true));
        // B picked PCMA, which A offered: no transcoding, unless always transcode.
        let pcma = media("8", "");
        assert_eq!(f.answer(&offered, &pcma).map(|a| (a.codec.pt, a.transcode)), Some((8, false)));
        let always = CodecFlags { always_transcode: true, ..CodecFlags::default() };
        assert_eq!(always.answer(&offered, &pcma).map(|a| (a.codec.pt, a.transcode)), Some((0, true)));
        // Nothing transcodes GSM.
        assert_eq!(f.answer(&offered, &media("3", "")), None);
    }
}
