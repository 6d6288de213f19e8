//! A media session's SDP side, shared by the NG server and the B2BUA: the leg spec the
//! media plane gets from a peer's SDP section ([`leg_from`]), and an SDP pointed at the
//! media plane's address and ports ([`rewrite`], [`finish`]), under rtpengine's flags.

use std::net::{IpAddr, SocketAddr};

use ferroswitch_shared::msg::{codec, leg_flags, media_kind, Endpoint, LegSpec, PayloadMap, MAX_CODECS};

use crate::sdp::{Connection, Media, Sdp, ICE_ATTRIBUTES};

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
    /// `codec` → `strip`: encodings removed from the offer (`all` for every one).
    pub codec_strip: Vec<String>,
    /// `codec` → `offer` / `transcode`: encodings added to the offer.
    pub codec_offer: Vec<String>,
    /// `codec` → `mask`: encodings hidden from the other side but still accepted.
    pub codec_mask: Vec<String>,
    /// `codec` → `accept`: encodings accepted from the answer.
    pub codec_accept: Vec<String>,
}

/// Socket address from an IP and port, skipping the unusable `0.0.0.0`/`::` and port 0.
pub fn usable(ip: Option<std::net::IpAddr>, port: u16) -> Option<SocketAddr> {
    ip.filter(|i| !i.is_unspecified()).filter(|_| port != 0).map(|i| SocketAddr::new(i, port))
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
    let demux = flags.rtcp_mux.iter().any(|f| f == "demux");
    if signalled && m.rtcp_mux() && !demux {
        bits |= leg_flags::RTCP_MUX;
    }
    leg.flags = bits;
    if let Some(p) = m.rtcp_port().filter(|&p| p != 0 && signalled) {
        leg.remote_rtcp_port = p;
    }
    for map in m.rtpmaps().into_iter().take(MAX_CODECS) {
        let named = [
            ("PCMU", codec::PCMU),
            ("PCMA", codec::PCMA),
            ("G722", codec::G722),
            ("OPUS", codec::OPUS),
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
    let strip = &flags.codec_strip;
    if !strip.is_empty() {
        let all = strip.iter().any(|s| s.eq_ignore_ascii_case("all"));
        let gone: Vec<String> = m
            .rtpmaps()
            .into_iter()
            .filter(|r| all || strip.iter().any(|s| s.eq_ignore_ascii_case(&r.encoding)))
            .map(|r| r.pt.to_string())
            .collect();
        m.formats.retain(|f| !gone.contains(f));
        m.attributes.retain(|a| {
            let about = a.value.as_deref().and_then(|v| v.split(' ').next()).unwrap_or_default();
            !((a.name == "rtpmap" || a.name == "fmtp") && gone.iter().any(|g| g == about))
        });
    }
    if flags.ice_remove {
        m.strip(ICE_ATTRIBUTES);
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
