//! The B2BUA's media: every bridged call's streams cross the media plane, one media
//! session per m-line. Sans-IO: the B2BUA queues [`MediaRequest`]s, the driver carries
//! them out against the media supervisor and hands back a [`MediaAnswer`] (and RTP
//! timeouts); the SDP work is here, as functions of the SDPs and the sessions.
//!
//! - **Early offer** (A's INVITE has SDP): leg A of each session is A's stream, leg B is
//!   allocated. B is offered, at leg B's ports, the codecs of A's offer the switch accepts
//!   ([`negotiate::b_leg_offer`]); B's answer (183 or 200) gives leg B its peer and becomes
//!   A's answer at leg A's ports, with A's payload types ([`negotiate::a_leg_answer`]).
//! - **Late offer** (no SDP from A): the switch offers B its own preferences; B's 200
//!   becomes the switch's offer to A (B's choice, at leg A's ports), and A's answer comes
//!   in its ACK.
//! - **Re-offers** (re-INVITE, UPDATE) move the sending leg's peer and are pointed at the
//!   other leg's ports, and so are their answers; a stream put on hold stops the RTP timer.
//! - **Echo**: one session whose leg A's media goes back to it.
//!
//! When the legs share no codec the session is marked [`session_flags::TRANSCODE`]
//! instead of failing the call.

use std::net::IpAddr;

use ferroswitch_shared::msg::{session_flags, LegSpec, SessionSpec, StreamStats};

use crate::media::negotiate::{self, CodecPref, TRANSCODABLE};
use crate::media::rewrite::{
    finish, leg_from, rewrite, set_codecs, signalled_peer, speaks_first, Flags, OwnMedia, PeerError,
};
use crate::sdp::{Attribute, Connection, Media, Origin, RtpMap, Sdp};
use crate::storage::CdrMedia;

/// Whether A's offer has an audio stream with none of the switch's codecs (`prefs`) in
/// it and nothing the media plane can transcode from: the call fails with 488.
pub(super) fn offer_without_common_codec(a: &Sdp, prefs: &[CodecPref]) -> bool {
    let can = |name: &str| TRANSCODABLE.iter().any(|t| t.eq_ignore_ascii_case(name));
    a.media.iter().filter(|m| relayed(m) && m.kind.eq_ignore_ascii_case("audio")).any(|m| {
        negotiate::b_leg_offer(m, prefs, TRANSCODABLE).transcode && !m.rtpmaps().iter().any(|r| can(&r.encoding))
    })
}

/// Whether B's answer picked, for an audio stream, a codec A did not offer and the media
/// plane cannot transcode to one A did: A cannot be answered, the B-leg is ended.
pub(super) fn answer_without_common_codec(a_offer: &Sdp, b_answer: &Sdp) -> bool {
    a_offer.media.iter().zip(&b_answer.media).any(|(am, bm)| {
        am.kind.eq_ignore_ascii_case("audio") && relayed(bm) && negotiate::a_leg_answer(am, bm, TRANSCODABLE).is_none()
    })
}

/// The payload type the switch's own offers give telephone-event.
const TELEPHONE_EVENT_PT: u8 = 101;

/// How the B2BUA handles media (from `[media]`).
#[derive(Debug, Clone, PartialEq)]
pub struct MediaSettings {
    /// Bridged calls' media goes through the media plane (false: SDP passes unchanged).
    pub enabled: bool,
    /// The address the media plane uses for calls (None: the SIP listener's).
    pub rtp_ip: Option<IpAddr>,
    /// The switch's codec preferences.
    pub prefs: Vec<CodecPref>,
    /// Seconds without RTP before MEDIA_TIMEOUT (0: never).
    pub rtp_timeout_secs: u32,
    /// The media plane's RTP port range: no peer may be told to send there.
    pub own_ports: (u16, u16),
    /// m= lines an SDP may have (more: 488, before any session is made).
    pub max_media: usize,
}

/// What a peer's address in an SDP is read against: where the leg's signalling came
/// from (a private SDP address other than it is a NAT) and the media plane's own
/// address and ports (a peer there is a media loop, refused).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct PeerCheck {
    pub source: Option<IpAddr>,
    pub own: OwnMedia,
}

impl Default for MediaSettings {
    fn default() -> Self {
        MediaSettings {
            enabled: false,
            rtp_ip: None,
            prefs: negotiate::parse_codec_string(crate::config::DEFAULT_CODEC_PREFS).expect("the default parses"),
            rtp_timeout_secs: 300,
            own_ports: (16384, 32767),
            max_media: 16,
        }
    }
}

/// What the B2BUA asks of the media plane.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MediaRequest {
    /// Create a session per spec (None: no session for that m-line) and answer with a
    /// [`MediaAnswer`] carrying `token`.
    Create { token: u64, specs: Vec<Option<SessionSpec>> },
    /// Replace a session's spec (no answer).
    Update { id: u64, spec: SessionSpec },
    /// Destroy a session (no answer); its final counters go to the CDRs of `cdr`'s legs
    /// (A's, B's channel uuids; see [`cdr_media`]).
    Destroy { id: u64, cdr: [Option<String>; 2] },
}

/// A leg's CDR counters from a destroyed session's final ones: what the media plane
/// received from the leg's peer (in) and what it sent that peer (out: datagrams actually
/// sent, the other leg's relayed packets, or the leg's own with echo).
pub fn cdr_media(stats: &StreamStats, leg: usize) -> CdrMedia {
    let this = &stats.legs[leg];
    let n = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    CdrMedia {
        media_in_packets: n(this.packets),
        media_in_bytes: n(this.bytes),
        media_out_packets: n(this.sent),
        media_out_bytes: n(this.sent_bytes),
        media_lost: n(this.lost),
        media_dropped: n(this.dropped),
        media_dropped_no_peer: n(this.drop_no_peer),
        media_dropped_strict_source: n(this.drop_strict_source),
        media_dropped_malformed: n(this.drop_malformed),
        media_dropped_loop: n(this.drop_loop),
    }
}

/// The media plane's answer to [`MediaRequest::Create`]: per m-line, the session id and
/// the spec with the local ports filled in, or why it failed (then none was kept).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaAnswer {
    pub token: u64,
    pub result: Result<Vec<Option<(u64, SessionSpec)>>, String>,
}

/// What waits for the media plane's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Waiting {
    /// `bridge`: the B-legs are sent once the sessions exist.
    Bridge,
    /// `answer` (200) or `pre_answer` (183): the switch answers the caller itself, then
    /// the applications go on.
    Answer(u16),
    /// `echo`: the caller is answered once its session exists.
    Echo,
    /// A re-offer with streams the call had no session for: it is relayed once they exist.
    Reoffer,
    /// `originate`: the leg the switch dials is offered the sessions' ports once they exist.
    Dial,
}

/// One call's media.
#[derive(Debug, Clone)]
pub(super) struct CallMedia {
    /// The address the switch's side of both legs uses.
    pub ip: IpAddr,
    /// Per m-line: the session and its spec as last sent (None: no session).
    pub sessions: Vec<Option<(u64, SessionSpec)>>,
    /// A's offer, for A's answer (None: late offer).
    pub a_offer: Option<Sdp>,
    /// The SDP the switch sends once the sessions exist: B's offer (bridge) or its own
    /// answer to A (answer, echo), pointed at the media plane then (None for a call taken
    /// back after a restart).
    pub outgoing: Option<Sdp>,
    /// B's offer, pointed at leg B.
    pub to_b: Vec<u8>,
    /// The switch's own answer to A (answer, pre_answer, echo), pointed at leg A.
    pub local: Option<Vec<u8>>,
    /// What waits for the sessions.
    pub waiting: Option<Waiting>,
    /// The call's RTP timeout (seconds, 0: none).
    pub timeout: u32,
    /// The SDP A was last sent from B's side (a 2xx without SDP reuses the 183's).
    pub to_a: Option<Vec<u8>>,
    /// Where each leg's signalling comes from (A's INVITE, B's target), for NAT detection.
    pub sources: [Option<IpAddr>; 2],
    /// The media plane's RTP port range.
    pub own_ports: (u16, u16),
    /// The call's codec preferences (`absolute_codec_string` or the switch's).
    pub prefs: Vec<CodecPref>,
    /// An in-dialog offer on its way, from leg 0 or 1, for the answer's mapping.
    pub reoffer: Option<(usize, Sdp)>,
}

/// Sessions for the streams a re-offer from leg `leg` adds (its sections from index
/// `from` on): that leg's peer from the offer, the other leg's learnt from the answer.
/// None for a section that is rejected or not RTP.
pub(super) fn plan_added(sdp: &Sdp, from: usize, leg: usize, timeout: u32, pc: &PeerCheck) -> Vec<Option<SessionSpec>> {
    let (f, ip) = (flags(), pc.own.ip);
    (from..sdp.media.len())
        .map(|i| {
            let m = &sdp.media[i];
            relayed(m).then(|| {
                let mut legs = [leg_from(m, None, ip, f, false); 2];
                legs[leg] = leg_from(m, peer_of(sdp, i, pc), ip, f, true);
                SessionSpec { legs, rtp_timeout_secs: timeout, flags: 0 }
            })
        })
        .collect()
}

impl CallMedia {
    /// Whether A made no offer (the switch offers A in its 200 and gets A's answer in the ACK).
    pub fn late(&self) -> bool {
        self.a_offer.is_none()
    }

    /// The session ids.
    pub fn ids(&self) -> impl Iterator<Item = u64> + '_ {
        self.sessions.iter().flatten().map(|(id, _)| *id)
    }

    /// Leg `leg`'s peers are read against this.
    pub fn check(&self, leg: usize) -> PeerCheck {
        PeerCheck { source: self.sources[leg & 1], own: OwnMedia { ip: self.ip, ports: self.own_ports } }
    }

    /// The media of a call taken back after a restart: its sessions as the media plane
    /// still holds them (their specs say the address and the RTP timeout); `sources`: the
    /// legs' dialog peers.
    pub fn adopted(
        sessions: Vec<Option<(u64, SessionSpec)>>,
        sources: [Option<IpAddr>; 2],
        own_ports: (u16, u16),
        prefs: Vec<CodecPref>,
    ) -> Option<CallMedia> {
        let (_, first) = sessions.iter().flatten().next()?;
        let ip = first.legs[0].local.addr()?.ip();
        let timeout = sessions.iter().flatten().map(|(_, s)| s.rtp_timeout_secs).max().unwrap_or(0);
        Some(CallMedia {
            ip,
            sessions,
            a_offer: None,
            outgoing: None,
            to_b: Vec::new(),
            local: None,
            waiting: None,
            timeout,
            to_a: None,
            sources,
            own_ports,
            prefs,
            reoffer: None,
        })
    }
}

/// How the B2BUA has the SDP rewritten: ICE is stripped (the media plane is the peer),
/// and the origin and connection name the switch. Every leg latches only from its
/// signalled address and is strict about its source afterwards.
pub(super) fn flags() -> &'static Flags {
    static FLAGS: std::sync::LazyLock<Flags> = std::sync::LazyLock::new(|| Flags {
        ice_remove: true,
        strict_source: true,
        latch_signalled: true,
        replace: vec!["origin".into(), "session-connection".into()],
        ..Flags::default()
    });
    &FLAGS
}

/// Whether section `m` is media the media plane relays (RTP, not rejected).
fn relayed(m: &Media) -> bool {
    !m.is_rejected() && m.proto.to_ascii_uppercase().contains("RTP/")
}

/// The peer's RTP address for section `i` of `sdp` (NAT-detected against the
/// signalling's source); None: nothing known, or an address refused (a loop, multicast),
/// so the leg takes no media at all.
fn peer_of(sdp: &Sdp, i: usize, pc: &PeerCheck) -> Option<std::net::SocketAddr> {
    let m = &sdp.media[i];
    let peer = signalled_peer(sdp.connection_for(i).and_then(Connection::ip), m.port, pc.source, flags())?;
    pc.own.check(peer).ok().map(|()| peer)
}

/// The first stream of `sdp` the media plane would be told to send somewhere it must
/// not (its own ports, multicast, broadcast): an offer naming one is refused with 488.
pub(super) fn refused_peer(sdp: &Sdp, pc: &PeerCheck) -> Option<PeerError> {
    (0..sdp.media.len()).filter(|&i| relayed(&sdp.media[i])).find_map(|i| {
        let m = &sdp.media[i];
        let peer = signalled_peer(sdp.connection_for(i).and_then(Connection::ip), m.port, pc.source, flags())?;
        pc.own.check(peer).err()
    })
}

/// The sessions and B's offer for a call whose caller offered `a` (None: late offer).
pub(super) fn plan_bridge(
    a: Option<&Sdp>,
    prefs: &[CodecPref],
    timeout: u32,
    pc: &PeerCheck,
) -> (Vec<Option<SessionSpec>>, Sdp) {
    let (f, ip) = (flags(), pc.own.ip);
    let Some(a) = a else {
        let offer = own_offer(prefs, ip);
        let m = &offer.media[0];
        let leg = leg_from(m, None, ip, f, false);
        return (vec![Some(SessionSpec { legs: [leg, leg], rtp_timeout_secs: timeout, flags: 0 })], offer);
    };
    let mut b = a.clone();
    let mut specs = Vec::with_capacity(a.media.len());
    for (i, m) in a.media.iter().enumerate() {
        if !relayed(m) {
            b.media[i].port = 0;
            specs.push(None);
            continue;
        }
        let mut session = 0;
        if m.kind.eq_ignore_ascii_case("audio") {
            let offer = negotiate::b_leg_offer(m, prefs, TRANSCODABLE);
            let mut codecs = offer.codecs;
            codecs.extend(offer.telephone_event);
            set_codecs(&mut b.media[i], &codecs, &[m]);
            if offer.transcode {
                session |= session_flags::TRANSCODE;
            }
        }
        let leg_a = leg_from(m, peer_of(a, i, pc), ip, f, true);
        let leg_b = leg_from(&b.media[i], None, ip, f, false);
        specs.push(Some(SessionSpec { legs: [leg_a, leg_b], rtp_timeout_secs: timeout, flags: session }));
    }
    (specs, b)
}

/// The sessions for the switch answering A itself, and the answer A gets: per audio
/// stream, the first of A's codecs the switch prefers (else A's first), with
/// telephone-event if offered. `echo`: the sessions send A's media back to it.
pub(super) fn plan_answer(
    a: &Sdp,
    prefs: &[CodecPref],
    timeout: u32,
    echo: bool,
    pc: &PeerCheck,
) -> (Vec<Option<SessionSpec>>, Sdp) {
    let (f, ip) = (flags(), pc.own.ip);
    let mut answer = a.clone();
    let mut specs = Vec::with_capacity(a.media.len());
    for (i, m) in a.media.iter().enumerate() {
        if !relayed(m) {
            answer.media[i].port = 0;
            specs.push(None);
            continue;
        }
        let maps = m.rtpmaps();
        let dtmf = |r: &RtpMap| r.encoding.eq_ignore_ascii_case("telephone-event");
        let choice = prefs
            .iter()
            .find_map(|p| maps.iter().find(|r| !dtmf(r) && p.matches(r)))
            .or_else(|| maps.iter().find(|r| !dtmf(r)));
        if let Some(c) = choice {
            let mut codecs = vec![c.clone()];
            codecs.extend(maps.iter().find(|r| dtmf(r)).cloned());
            set_codecs(&mut answer.media[i], &codecs, &[m]);
        }
        let d = m.direction(a.direction()).answer();
        answer.media[i].set_direction(d);
        let leg = leg_from(m, peer_of(a, i, pc), ip, f, true);
        let flags = if echo { session_flags::ECHO } else { 0 };
        specs.push(Some(SessionSpec { legs: [leg, leg], rtp_timeout_secs: timeout, flags }));
    }
    answer.attributes.retain(|at| !is_direction(&at.name));
    (specs, answer)
}

fn is_direction(name: &str) -> bool {
    ["sendrecv", "sendonly", "recvonly", "inactive"].iter().any(|d| name.eq_ignore_ascii_case(d))
}

/// The switch's own offer (late offer toward B): one audio stream with the preferences
/// and telephone-event.
fn own_offer(prefs: &[CodecPref], ip: IpAddr) -> Sdp {
    let mut next = 96u8;
    let mut codecs: Vec<RtpMap> = Vec::new();
    for p in prefs {
        let probe = p.to_rtpmap(0);
        let pt = negotiate::static_pt(&probe.encoding, probe.clock_rate).unwrap_or_else(|| {
            while next == TELEPHONE_EVENT_PT || codecs.iter().any(|c| c.pt == next) {
                next += 1;
            }
            next
        });
        if !codecs.iter().any(|c| c.pt == pt) {
            codecs.push(p.to_rtpmap(pt));
        }
    }
    codecs.push(RtpMap {
        pt: TELEPHONE_EVENT_PT,
        encoding: "telephone-event".into(),
        clock_rate: 8000,
        channels: None,
    });
    let mut m = Media {
        kind: "audio".into(),
        port: 9,
        port_count: None,
        proto: "RTP/AVP".into(),
        formats: Vec::new(),
        lines: Vec::new(),
        connection: None,
        attributes: vec![Attribute { name: "sendrecv".into(), value: None }],
    };
    set_codecs(&mut m, &codecs, &[]);
    m.attributes.push(Attribute { name: "fmtp".into(), value: Some(format!("{TELEPHONE_EVENT_PT} 0-16")) });
    let family = if ip.is_ipv4() { "IP4" } else { "IP6" };
    Sdp {
        origin: Origin {
            username: "ferroswitch".into(),
            session_id: "1".into(),
            session_version: 1,
            net_type: "IN".into(),
            addr_type: family.into(),
            address: ip.to_string(),
        },
        session_name: "ferroswitch".into(),
        lines: vec![('t', "0 0".into())],
        connection: Some(Connection { net_type: "IN".into(), addr_type: family.into(), address: ip.to_string() }),
        attributes: Vec::new(),
        media: vec![m],
    }
}

/// Points every section of `sdp` at leg `leg` of its session (rejecting sections without
/// one, and keeping rejected ones so), and the session level at `ip`.
pub(super) fn point(sdp: &mut Sdp, sessions: &[Option<(u64, SessionSpec)>], leg: usize, ip: IpAddr) {
    let f = flags();
    for i in 0..sdp.media.len() {
        match sessions.get(i) {
            // A stream the peer rejects (port 0) stays rejected.
            Some(Some((_, spec))) if !sdp.media[i].is_rejected() => rewrite(sdp, i, &spec.legs[leg].local, f),
            _ => sdp.media[i].port = 0,
        }
    }
    finish(sdp, ip, f);
    sdp.origin.username = "ferroswitch".into();
}

/// What a peer's SDP changes: leg `leg` of each session takes the peer's stream from
/// `sdp` (its address, codecs, rtcp), and the RTP timer stops while the stream is on hold.
/// Returns the updates to send.
pub(super) fn follow(
    sessions: &mut [Option<(u64, SessionSpec)>],
    sdp: &Sdp,
    leg: usize,
    timeout: u32,
    pc: &PeerCheck,
) -> Vec<(u64, SessionSpec)> {
    let (f, ip) = (flags(), pc.own.ip);
    let mut updates = Vec::new();
    for (i, m) in sdp.media.iter().enumerate() {
        let Some(Some((id, spec))) = sessions.get_mut(i) else { continue };
        let mut next = *spec;
        if relayed(m) {
            next.legs[leg] = LegSpec { local: spec.legs[leg].local, ..leg_from(m, peer_of(sdp, i, pc), ip, f, true) };
            if spec.flags & session_flags::TRANSCODE != 0 {
                keep_speaking(&spec.legs[leg], &mut next.legs[leg]);
            }
        }
        if next.flags & session_flags::ECHO == 0 {
            next.rtp_timeout_secs = if sdp.is_on_hold(i) || m.is_rejected() { 0 } else { timeout };
        }
        if next != *spec {
            *spec = next;
            updates.push((*id, next));
        }
    }
    updates
}

/// A's answer from B's answer (early offer): B's section with, for audio, the codec B
/// chose as A offered it (A's payload type), or the best one A can be transcoded to.
/// Sessions whose legs differ in codec are marked to transcode. Sections B left out are
/// rejected. Returns the answer (pointed at leg A) and the sessions' updates.
pub(super) fn answer_for_a(
    a_offer: &Sdp,
    b_answer: &Sdp,
    sessions: &mut [Option<(u64, SessionSpec)>],
    ip: IpAddr,
) -> (Sdp, Vec<(u64, SessionSpec)>) {
    answer_to(a_offer, b_answer, sessions, 0, ip)
}

/// The answer for the leg that offered (`offerer`: 0 or 1) from the other leg's answer:
/// as [`answer_for_a`], for in-dialog offers from either side.
pub(super) fn answer_to(
    a_offer: &Sdp,
    b_answer: &Sdp,
    sessions: &mut [Option<(u64, SessionSpec)>],
    offerer: usize,
    ip: IpAddr,
) -> (Sdp, Vec<(u64, SessionSpec)>) {
    let mut out = b_answer.clone();
    out.media.truncate(a_offer.media.len());
    for m in &a_offer.media[out.media.len()..] {
        out.media.push(Media { port: 0, ..m.clone() });
    }
    let mut updates = Vec::new();
    for i in 0..out.media.len() {
        let (am, bm) = (&a_offer.media[i], &b_answer.media.get(i));
        let Some(bm) = bm else { continue };
        if !am.kind.eq_ignore_ascii_case("audio") || !relayed(bm) {
            continue;
        }
        let Some(ans) = negotiate::a_leg_answer(am, bm, TRANSCODABLE) else { continue };
        let a_pt = ans.codec.pt;
        let mut codecs = vec![ans.codec];
        codecs.extend(ans.telephone_event);
        set_codecs(&mut out.media[i], &codecs, &[bm, am]);
        if let Some(Some((id, spec))) = sessions.get_mut(i) {
            let before = *spec;
            spec.flags = if ans.transcode {
                spec.flags | session_flags::TRANSCODE
            } else {
                spec.flags & !session_flags::TRANSCODE
            };
            if ans.transcode {
                // The offerer speaks the codec it is answered with: first in its list.
                speaks_first(&mut spec.legs[offerer], a_pt);
            }
            if *spec != before {
                updates.push((*id, *spec));
            }
        }
    }
    point(&mut out, sessions, offerer, ip);
    (out, updates)
}

/// An in-dialog offer on its way to the other leg: each relayed audio stream offers the
/// sender's codecs the switch accepts, then those the media plane can transcode to (so
/// the other side can keep the codec it speaks).
pub(super) fn reoffer(sdp: &mut Sdp, prefs: &[CodecPref]) {
    for i in 0..sdp.media.len() {
        let m = &sdp.media[i];
        if !relayed(m) || !m.kind.eq_ignore_ascii_case("audio") {
            continue;
        }
        let offer = negotiate::b_leg_offer(m, prefs, TRANSCODABLE);
        let source = m.clone();
        let mut codecs = offer.codecs;
        codecs.extend(offer.telephone_event);
        set_codecs(&mut sdp.media[i], &codecs, &[&source]);
    }
}

/// A transcoded leg's new codec list keeps the codec it spoke first, if still there (a
/// re-offer listing several does not switch the media plane's encoder).
fn keep_speaking(old: &LegSpec, new: &mut LegSpec) {
    let Some(first) = old.codecs().first().copied() else { return };
    let same = new.codecs().iter().find(|c| c.codec == first.codec && c.clock_rate == first.clock_rate).map(|c| c.pt);
    if let Some(pt) = same.filter(|_| first.codec != ferroswitch_shared::msg::codec::OTHER) {
        speaks_first(new, pt);
    }
}

/// Merges `later` updates into `earlier` (one spec per session, the latest).
pub(super) fn merge(mut earlier: Vec<(u64, SessionSpec)>, later: Vec<(u64, SessionSpec)>) -> Vec<(u64, SessionSpec)> {
    for (id, spec) in later {
        match earlier.iter_mut().find(|(i, _)| *i == id) {
            Some(e) => e.1 = spec,
            None => earlier.push((id, spec)),
        }
    }
    earlier
}

#[cfg(test)]
mod tests;
