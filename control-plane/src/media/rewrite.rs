//! A media session's SDP side, shared by the NG server and the B2BUA: the leg spec the
//! media plane gets from a peer's SDP section ([`leg_from`]), and an SDP pointed at the
//! media plane's address and ports ([`rewrite`], [`finish`]), under rtpengine's flags.

use std::net::{IpAddr, SocketAddr};

use ferroswitch_shared::msg::{codec, fmtp_flags, leg_flags, media_kind, Endpoint, LegSpec, PayloadMap, MAX_CODECS};

use crate::sdp::{Attribute, Connection, Media, RtpMap, Sdp, ICE_ATTRIBUTES};

/// The flags of an offer or answer that change how media is handled.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Flags {
    /// `trust address`: use the SDP's address, not the packet source.
    pub trust_address: bool,
    /// `SIP source address`: use `received-from` instead of the SDP's address.
    pub sip_source_address: bool,
    /// `symmetric` (the default) / `asymmetric`: learn the peer from its packets, or not.
    pub asymmetric: bool,
    /// `strict source`: after latching, drop packets from anyone else.
    pub strict_source: bool,
    /// `port latching`: latch once, never move.
    pub port_latching: bool,
    /// `ICE=remove`.
    pub ice_remove: bool,
    /// `replace`: `origin`, `session-connection`.
    pub replace: Vec<String>,
    /// `rtcp-mux`: `offer`, `demux`, `accept`, ...
    pub rtcp_mux: Vec<String>,
    /// `direction`: two interface names (kept for the answer).
    pub direction: Vec<String>,
    /// `transport protocol`, e.g. `RTP/AVP`.
    pub transport_protocol: Option<String>,
    /// Every leg latches only from its signalled address, and a leg without one drops
    /// everything (the B2BUA, which always knows its peers' SIP source). Otherwise only a
    /// leg that waits for its signalling (an NG offer's B-leg) or has an address does.
    pub latch_signalled: bool,
}

/// The media plane's own RTP address and port range: a peer there would make packets
/// circulate between the media plane's own sockets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OwnMedia {
    /// The media plane's address for this call.
    pub ip: IpAddr,
    /// Its RTP port range (inclusive).
    pub ports: (u16, u16),
}

/// Why a stream's peer is refused at signalling time.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PeerError {
    /// The media plane's own address and a port in its range: a media loop.
    #[error("media address {0} is the media plane's own (a media loop)")]
    Loop(SocketAddr),
    /// A multicast or broadcast address.
    #[error("media address {0} is multicast or broadcast")]
    NotUnicast(SocketAddr),
}

impl OwnMedia {
    /// Refuses a peer the media plane must never send to: its own sockets, multicast or
    /// broadcast.
    pub fn check(&self, peer: SocketAddr) -> Result<(), PeerError> {
        let ip = peer.ip();
        let broadcast = match ip {
            IpAddr::V4(v4) => v4.is_broadcast() || v4.is_multicast(),
            IpAddr::V6(v6) => v6.is_multicast(),
        };
        if broadcast {
            return Err(PeerError::NotUnicast(peer));
        }
        if ip == self.ip && (self.ports.0..=self.ports.1).contains(&peer.port()) {
            return Err(PeerError::Loop(peer));
        }
        Ok(())
    }
}

/// The peer address the media plane is told for a stream whose SDP names `sdp_ip` and
/// `port`, signalled from `source` (the SIP message's or NG request's source IP):
/// - `trust address`: the SDP's;
/// - `SIP source address`: the source's IP with the SDP's port;
/// - otherwise the SDP's, unless it names a private address other than the source (a
///   phone behind a NAT, whose media comes from the NAT's address, as FreeSWITCH's
///   NAT detection and rtpengine's `SIP-source-address` have it);
/// - an unspecified SDP address (old-style hold) or none: the source's IP with port 0
///   (latching allowed from it, nothing sent until it sends).
///
/// None: port 0 (a rejected stream), or nothing known.
pub fn signalled_peer(sdp_ip: Option<IpAddr>, port: u16, source: Option<IpAddr>, flags: &Flags) -> Option<SocketAddr> {
    if port == 0 {
        return None;
    }
    let sdp_ip = sdp_ip.filter(|i| !i.is_unspecified());
    let ip = match (sdp_ip, source) {
        (Some(ip), _) if flags.trust_address => ip,
        (_, Some(src)) if flags.sip_source_address => src,
        (Some(ip), Some(src)) if crate::nat::hidden(ip, src) => src,
        (Some(ip), _) => ip,
        (None, Some(src)) => return Some(SocketAddr::new(src, 0)),
        (None, None) => return None,
    };
    Some(SocketAddr::new(ip, port))
}

/// The leg spec for a peer whose SDP section is `m` at `remote` (None: latch it).
pub fn leg_from(m: &Media, remote: Option<SocketAddr>, media_ip: IpAddr, flags: &Flags, signalled: bool) -> LegSpec {
    let mut leg = LegSpec {
        local: Endpoint::from_addr(SocketAddr::new(media_ip, 0)),
        remote: remote.map(Endpoint::from_addr).unwrap_or_default(),
        media: if m.kind == "video" { media_kind::VIDEO } else { media_kind::AUDIO },
        ptime_ms: m.ptime().and_then(|p| u8::try_from(p).ok()).unwrap_or(0),
        ..LegSpec::default()
    };
    let mut bits = leg_flags::SEND | leg_flags::RECV;
    if !flags.asymmetric {
        bits |= leg_flags::SYMMETRIC;
    }
    if flags.strict_source {
        bits |= leg_flags::STRICT_SOURCE;
    }
    if flags.latch_signalled || !signalled || remote.is_some() {
        bits |= leg_flags::LATCH_SIGNALLED;
    }
    let demux = flags.rtcp_mux.iter().any(|f| f == "demux");
    if signalled && m.rtcp_mux() && !demux {
        bits |= leg_flags::RTCP_MUX;
    }
    leg.flags = bits;
    if let Some(p) = m.rtcp_port().filter(|&p| p != 0 && signalled) {
        leg.remote_rtcp_port = p;
    }
    if let Some(opus) = m.rtpmaps().into_iter().find(|r| r.encoding.eq_ignore_ascii_case("opus")) {
        opus_fmtp(&mut leg, m.fmtp(opus.pt).unwrap_or_default());
    }
    for map in m.rtpmaps().into_iter().take(MAX_CODECS) {
        let named = [
            ("PCMU", codec::PCMU),
            ("PCMA", codec::PCMA),
            ("G722", codec::G722),
            ("OPUS", codec::OPUS),
            ("G729", codec::G729),
            ("L16", codec::L16),
            ("TELEPHONE-EVENT", codec::TELEPHONE_EVENT),
        ];
        let id = named.iter().find(|(n, _)| map.encoding.eq_ignore_ascii_case(n)).map_or(codec::OTHER, |(_, id)| *id);
        leg.codecs[usize::from(leg.codec_count)] = PayloadMap {
            clock_rate: map.clock_rate,
            pt: map.pt,
            codec: id,
            channels: map.channels.unwrap_or(1),
            _pad: 0,
        };
        leg.codec_count += 1;
    }
    leg
}

/// A peer's Opus fmtp (`useinbandfec=1; maxplaybackrate=16000...`, RFC 7587 §6.1) into
/// its leg; unknown or malformed parameters are ignored.
fn opus_fmtp(leg: &mut LegSpec, fmtp: &str) {
    for param in fmtp.split(';') {
        let Some((k, v)) = param.split_once('=') else { continue };
        let (k, v) = (k.trim().to_ascii_lowercase(), v.trim());
        let on = v == "1";
        let bit = match k.as_str() {
            "useinbandfec" => fmtp_flags::FEC,
            "usedtx" => fmtp_flags::DTX,
            "cbr" => fmtp_flags::CBR,
            "stereo" => fmtp_flags::STEREO,
            "maxplaybackrate" => {
                leg.max_playback_khz = v.parse::<u32>().map_or(0, |hz| (hz / 1000).min(48) as u8);
                continue;
            }
            "maxaveragebitrate" => {
                leg.max_bitrate_kbps = v.parse::<u32>().map_or(0, |b| (b / 1000).clamp(6, 510) as u16);
                continue;
            }
            _ => continue,
        };
        if on {
            leg.fmtp_flags |= bit;
        }
    }
}

/// Points m-line `i` at the media plane's `local` endpoint and applies the codec,
/// transport and rtcp-mux flags.
pub fn rewrite(sdp: &mut Sdp, i: usize, local: &Endpoint, flags: &Flags) {
    let Some(addr) = local.addr() else { return };
    let m = &mut sdp.media[i];
    m.port = addr.port();
    m.connection = Some(connection(addr.ip()));
    if let Some(p) = &flags.transport_protocol {
        m.proto = p.clone();
    }
    // rtcp: RTP + 1 unless muxed.
    m.attributes.retain(|a| !a.name.eq_ignore_ascii_case("rtcp"));
    if flags.rtcp_mux.iter().any(|f| f == "demux") {
        m.attributes.retain(|a| !a.name.eq_ignore_ascii_case("rtcp-mux"));
    }
    if !m.rtcp_mux() {
        m.attributes.push(crate::sdp::Attribute { name: "rtcp".into(), value: Some((addr.port() + 1).to_string()) });
    }
    if flags.ice_remove {
        m.strip(ICE_ATTRIBUTES);
    }
}

/// Sets section `m`'s formats to `codecs` (their payload types, in order) with an rtpmap
/// each and the fmtp of the same codec in the first of `sources` that has one (matched
/// by name and rate, so another side's payload type number does not matter); an Opus no
/// source has gets `useinbandfec=1`.
pub fn set_codecs(m: &mut Media, codecs: &[RtpMap], sources: &[&Media]) {
    let source_maps: Vec<(&Media, Vec<RtpMap>)> = sources.iter().map(|s| (*s, s.rtpmaps())).collect();
    let mut lines = Vec::with_capacity(codecs.len() * 2);
    for c in codecs {
        let rate = match c.channels {
            Some(ch) => format!("{}/{}/{ch}", c.encoding, c.clock_rate),
            None => format!("{}/{}", c.encoding, c.clock_rate),
        };
        lines.push(Attribute { name: "rtpmap".into(), value: Some(format!("{} {rate}", c.pt)) });
        let fmtp = source_maps.iter().find_map(|(s, maps)| {
            let r =
                maps.iter().find(|r| r.encoding.eq_ignore_ascii_case(&c.encoding) && r.clock_rate == c.clock_rate)?;
            s.fmtp(r.pt).map(str::to_string)
        });
        // An Opus the switch adds itself (transcoded to): the media plane decodes in-band
        // FEC, so the peer may send it (RFC 7587 §6.1).
        let fmtp = fmtp.or_else(|| c.encoding.eq_ignore_ascii_case("opus").then(|| "useinbandfec=1".to_string()));
        if let Some(params) = fmtp {
            lines.push(Attribute { name: "fmtp".into(), value: Some(format!("{} {params}", c.pt)) });
        }
    }
    m.formats = codecs.iter().map(|c| c.pt.to_string()).collect();
    let rest = m
        .attributes
        .drain(..)
        .filter(|a| !a.name.eq_ignore_ascii_case("rtpmap") && !a.name.eq_ignore_ascii_case("fmtp"));
    lines.extend(rest);
    m.attributes = lines;
}

/// Moves payload type `pt` to the front of a leg's codecs (the one a transcoding media
/// plane encodes toward the leg's peer).
pub fn speaks_first(leg: &mut LegSpec, pt: u8) {
    let n = usize::from(leg.codec_count).min(leg.codecs.len());
    if let Some(i) = leg.codecs[..n].iter().position(|c| c.pt == pt) {
        leg.codecs[..=i].rotate_right(1);
    }
}

/// Session-level changes: the connection line and, if asked, the origin's address.
pub fn finish(sdp: &mut Sdp, media_ip: IpAddr, flags: &Flags) {
    if sdp.connection.is_some() || flags.replace.iter().any(|r| r == "session-connection") {
        sdp.connection = Some(connection(media_ip));
    }
    if flags.replace.iter().any(|r| r == "origin") {
        sdp.origin.addr_type = if media_ip.is_ipv4() { "IP4" } else { "IP6" }.into();
        sdp.origin.address = media_ip.to_string();
    }
    if flags.ice_remove {
        sdp.strip(ICE_ATTRIBUTES);
    }
}

pub fn connection(ip: IpAddr) -> Connection {
    Connection {
        net_type: "IN".into(),
        addr_type: if ip.is_ipv4() { "IP4" } else { "IP6" }.into(),
        address: ip.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_peers_opus_fmtp_reaches_its_leg_rfc7587_6_1() {
        let text = "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 111 0\r\na=rtpmap:111 opus/48000/2\r\na=fmtp:111 maxplaybackrate=16000; useinbandfec=1;usedtx=0; stereo=1; maxaveragebitrate=24000; junk\r\n";
        let m = &Sdp::parse(text.as_bytes()).unwrap().media[0];
        let leg = leg_from(m, None, ip("192.0.2.9"), &Flags::default(), true);
        assert_eq!(leg.fmtp_flags, fmtp_flags::FEC | fmtp_flags::STEREO);
        assert_eq!((leg.max_playback_khz, leg.max_bitrate_kbps), (16, 24));
        let plain =
            "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n";
        let leg =
            leg_from(&Sdp::parse(plain.as_bytes()).unwrap().media[0], None, ip("192.0.2.9"), &Flags::default(), true);
        assert_eq!((leg.fmtp_flags, leg.max_playback_khz, leg.max_bitrate_kbps), (0, 0, 0));
    }

    #[test]
    fn a_private_sdp_address_other_than_the_source_is_a_nat_and_the_source_is_used() {
        let f = Flags::default();
        let src = Some(ip("198.51.100.7"));
        assert_eq!(signalled_peer(Some(ip("192.168.1.5")), 4000, src, &f), Some(sa("198.51.100.7:4000")));
        assert_eq!(signalled_peer(Some(ip("100.64.3.3")), 4000, src, &f), Some(sa("198.51.100.7:4000")));
        // A public SDP address elsewhere than the signalling (an SBC's media address): trusted.
        assert_eq!(signalled_peer(Some(ip("203.0.113.9")), 4000, src, &f), Some(sa("203.0.113.9:4000")));
        // The same private address as the source: no NAT in between.
        let lan = Some(ip("10.0.0.5"));
        assert_eq!(signalled_peer(Some(ip("10.0.0.5")), 4000, lan, &f), Some(sa("10.0.0.5:4000")));
        let lo = Some(ip("127.0.0.1"));
        assert_eq!(signalled_peer(Some(ip("127.0.0.2")), 4000, lo, &f), Some(sa("127.0.0.2:4000")));
        // Old-style hold: the source's IP, nothing to send to.
        assert_eq!(signalled_peer(Some(ip("0.0.0.0")), 4000, src, &f), Some(sa("198.51.100.7:0")));
        assert_eq!(signalled_peer(Some(ip("192.168.1.5")), 0, src, &f), None);
        assert_eq!(signalled_peer(None, 4000, None, &f), None);
        let trust = Flags { trust_address: true, ..Flags::default() };
        assert_eq!(signalled_peer(Some(ip("192.168.1.5")), 4000, src, &trust), Some(sa("192.168.1.5:4000")));
        let source = Flags { sip_source_address: true, ..Flags::default() };
        assert_eq!(signalled_peer(Some(ip("203.0.113.9")), 4000, src, &source), Some(sa("198.51.100.7:4000")));
    }

    #[test]
    fn the_media_planes_own_ports_multicast_and_broadcast_are_refused() {
        let own = OwnMedia { ip: ip("192.0.2.1"), ports: (16384, 32767) };
        assert_eq!(own.check(sa("192.0.2.1:20000")), Err(PeerError::Loop(sa("192.0.2.1:20000"))));
        assert_eq!(own.check(sa("192.0.2.1:5004")), Ok(()));
        assert_eq!(own.check(sa("192.0.2.2:20000")), Ok(()));
        assert_eq!(own.check(sa("224.0.0.1:20000")), Err(PeerError::NotUnicast(sa("224.0.0.1:20000"))));
        assert_eq!(own.check(sa("255.255.255.255:4000")), Err(PeerError::NotUnicast(sa("255.255.255.255:4000"))));
        assert_eq!(own.check(sa("[ff02::1]:4000")), Err(PeerError::NotUnicast(sa("[ff02::1]:4000"))));
    }
}
