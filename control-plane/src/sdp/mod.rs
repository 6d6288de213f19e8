//! SDP (RFC 8866): a strict parser and a serializer that keeps what it does not
//! interpret. Session- and media-level `c=`, several `m=` lines (port 0 = rejected),
//! attributes kept in order with typed readers for the ones offer/answer needs
//! (`rtpmap`, `fmtp`, `ptime`, `maxptime`, direction, `rtcp`, `rtcp-mux`), and a way to
//! strip ICE or crypto attributes on request.
//!
//! Data flows text → [`Sdp::parse`] → edits on the structs → [`Sdp::write`] → text.
//! Nothing here does I/O; bad input is a [`SdpError`] naming the line, never a panic.

mod parse;
mod write;

pub use parse::SdpError;

/// `o=`: the originator and the session's identity and version (RFC 8866 §5.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// The user name (`-` when none).
    pub username: String,
    /// The session id (digits).
    pub session_id: String,
    /// The version, bumped on every change (RFC 3264 §8).
    pub session_version: u64,
    /// `IN`.
    pub net_type: String,
    /// `IP4` or `IP6`.
    pub addr_type: String,
    /// The originator's address.
    pub address: String,
}

/// `c=`: where media goes (RFC 8866 §5.7).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connection {
    /// `IN`.
    pub net_type: String,
    /// `IP4` or `IP6`.
    pub addr_type: String,
    /// The address (with `/ttl` or `/count` for multicast, kept as written).
    pub address: String,
}

impl Connection {
    /// The address as an IP, if it is one (`0.0.0.0` is an IP: "hold" in old SDP; a
    /// multicast address without its TTL and count).
    pub fn ip(&self) -> Option<std::net::IpAddr> {
        // A multicast address carries /TTL[/count] (RFC 8866 §5.7).
        let addr = self.address.split('/').next().unwrap_or_default();
        addr.parse().ok()
    }
}

/// `a=name[:value]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attribute {
    /// The name.
    pub name: String,
    /// The value (None for a property attribute such as `sendrecv`).
    pub value: Option<String>,
}

/// Media direction (RFC 3264 §5.1, RFC 8866 §6.7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// `a=sendrecv` (the default).
    SendRecv,
    /// `a=sendonly`.
    SendOnly,
    /// `a=recvonly`.
    RecvOnly,
    /// `a=inactive`.
    Inactive,
}

impl Direction {
    /// The attribute name.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::SendRecv => "sendrecv",
            Direction::SendOnly => "sendonly",
            Direction::RecvOnly => "recvonly",
            Direction::Inactive => "inactive",
        }
    }

    /// What the answerer says back to an offer with this direction (RFC 3264 §6.1).
    pub fn answer(self) -> Direction {
        match self {
            Direction::SendOnly => Direction::RecvOnly,
            Direction::RecvOnly => Direction::SendOnly,
            d => d,
        }
    }
}

/// `a=rtpmap:<pt> <encoding>/<clock>[/<channels>]`, or a static payload type's default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtpMap {
    /// The payload type.
    pub pt: u8,
    /// The encoding name as written (`PCMU`, `opus`, `telephone-event`...).
    pub encoding: String,
    /// The clock rate in Hz.
    pub clock_rate: u32,
    /// Channels (audio), if given.
    pub channels: Option<u8>,
}

/// One `m=` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Media {
    /// `audio`, `video`, `application`...
    pub kind: String,
    /// The port (0: this stream is rejected or disabled).
    pub port: u16,
    /// `/<count>` after the port, if written.
    pub port_count: Option<u16>,
    /// `RTP/AVP`, `RTP/SAVPF`, `UDP/TLS/RTP/SAVPF`...
    pub proto: String,
    /// The formats (payload types for RTP).
    pub formats: Vec<String>,
    /// `i=`, `c=`, `b=`, `k=` lines of this section, in order, as (type, value) —
    /// except `c=`, which is parsed into `connection`.
    pub lines: Vec<(char, String)>,
    /// The section's `c=`.
    pub connection: Option<Connection>,
    /// The section's attributes, in order.
    pub attributes: Vec<Attribute>,
}

/// A session description.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sdp {
    /// `o=`.
    pub origin: Origin,
    /// `s=`.
    pub session_name: String,
    /// Session-level `i= u= e= p= b= t= r= z= k=` lines, in order, as (type, value).
    pub lines: Vec<(char, String)>,
    /// The session-level `c=`.
    pub connection: Option<Connection>,
    /// Session-level attributes, in order.
    pub attributes: Vec<Attribute>,
    /// The media sections.
    pub media: Vec<Media>,
}

/// The static payload types' defaults (RFC 3551 §6) for the codecs a switch meets.
pub fn static_rtpmap(pt: u8) -> Option<RtpMap> {
    let (encoding, clock_rate) = match pt {
        0 => ("PCMU", 8000),
        3 => ("GSM", 8000),
        4 => ("G723", 8000),
        8 => ("PCMA", 8000),
        9 => ("G722", 8000),
        13 => ("CN", 8000),
        18 => ("G729", 8000),
        26 => ("JPEG", 90000),
        31 => ("H261", 90000),
        34 => ("H263", 90000),
        _ => return None,
    };
    Some(RtpMap { pt, encoding: encoding.into(), clock_rate, channels: None })
}

fn attr<'a>(attrs: &'a [Attribute], name: &str) -> impl Iterator<Item = &'a Attribute> {
    let name = name.to_string();
    attrs.iter().filter(move |a| a.name.eq_ignore_ascii_case(&name))
}

impl Media {
    /// The value of the first attribute `name`, if any (`Some(None)` for a property).
    pub fn attribute(&self, name: &str) -> Option<Option<&str>> {
        attr(&self.attributes, name).next().map(|a| a.value.as_deref())
    }

    /// Every format with its `rtpmap` (or the static default); formats with neither are
    /// left out.
    pub fn rtpmaps(&self) -> Vec<RtpMap> {
        let explicit: Vec<RtpMap> =
            attr(&self.attributes, "rtpmap").filter_map(|a| parse::rtpmap(a.value.as_deref()?)).collect();
        self.formats
            .iter()
            .filter_map(|f| {
                let pt: u8 = f.parse().ok()?;
                explicit.iter().find(|m| m.pt == pt).cloned().or_else(|| static_rtpmap(pt))
            })
            .collect()
    }

    /// The `fmtp` parameters of payload type `pt`.
    pub fn fmtp(&self, pt: u8) -> Option<&str> {
        attr(&self.attributes, "fmtp").find_map(|a| {
            let v = a.value.as_deref()?;
            let (p, params) = v.split_once(' ').unwrap_or((v, ""));
            (p.parse::<u8>().ok()? == pt).then_some(params.trim())
        })
    }

    /// `a=ptime` in ms.
    pub fn ptime(&self) -> Option<u32> {
        self.attribute("ptime")?.and_then(|v| v.trim().parse().ok())
    }

    /// `a=maxptime` in ms.
    pub fn maxptime(&self) -> Option<u32> {
        self.attribute("maxptime")?.and_then(|v| v.trim().parse().ok())
    }

    /// The direction: the section's own attribute, else `session` (the session level's).
    pub fn direction(&self, session: Direction) -> Direction {
        direction_of(&self.attributes).unwrap_or(session)
    }

    /// Replaces any direction attribute with `d`.
    pub fn set_direction(&mut self, d: Direction) {
        let at = self.attributes.iter().position(|a| direction_name(&a.name).is_some());
        self.attributes.retain(|a| direction_name(&a.name).is_none());
        let a = Attribute { name: d.as_str().into(), value: None };
        match at {
            Some(i) => self.attributes.insert(i.min(self.attributes.len()), a),
            None => self.attributes.push(a),
        }
    }

    /// `a=rtcp:<port>` (RFC 3605).
    pub fn rtcp_port(&self) -> Option<u16> {
        self.attribute("rtcp")?.and_then(|v| v.split_whitespace().next()?.parse().ok())
    }

    /// Whether `a=rtcp-mux` is present (RFC 5761).
    pub fn rtcp_mux(&self) -> bool {
        self.attribute("rtcp-mux").is_some()
    }

    /// Whether the stream is rejected or disabled (port 0).
    pub fn is_rejected(&self) -> bool {
        self.port == 0
    }

    /// Removes every attribute named in `names` (case-insensitive): e.g. ICE's
    /// `candidate`, `ice-ufrag`, `ice-pwd`, `ice-options`, `end-of-candidates`, or `crypto`.
    pub fn strip(&mut self, names: &[&str]) {
        self.attributes.retain(|a| !names.iter().any(|n| a.name.eq_ignore_ascii_case(n)));
    }
}

/// The ICE attributes (RFC 8839), for [`Media::strip`] and [`Sdp::strip`].
pub const ICE_ATTRIBUTES: &[&str] = &[
    "candidate",
    "ice-ufrag",
    "ice-pwd",
    "ice-options",
    "ice-lite",
    "ice-mismatch",
    "end-of-candidates",
    "remote-candidates",
];

fn direction_name(name: &str) -> Option<Direction> {
    Some(match name.to_ascii_lowercase().as_str() {
        "sendrecv" => Direction::SendRecv,
        "sendonly" => Direction::SendOnly,
        "recvonly" => Direction::RecvOnly,
        "inactive" => Direction::Inactive,
        _ => return None,
    })
}

fn direction_of(attrs: &[Attribute]) -> Option<Direction> {
    attrs.iter().find_map(|a| direction_name(&a.name))
}

impl Sdp {
    /// Whether section `i` puts its stream on hold: no media will come from its sender
    /// (sendonly, inactive, or the old-style `c=0.0.0.0`).
    pub fn is_on_hold(&self, i: usize) -> bool {
        let Some(m) = self.media.get(i) else { return false };
        let zero = self.connection_for(i).and_then(Connection::ip).is_some_and(|ip| ip.is_unspecified());
        zero || matches!(m.direction(self.direction()), Direction::SendOnly | Direction::Inactive)
    }

    /// The session-level direction (sendrecv when absent).
    pub fn direction(&self) -> Direction {
        direction_of(&self.attributes).unwrap_or(Direction::SendRecv)
    }

    /// The connection data that applies to media section `i`: its own `c=`, else the
    /// session's.
    pub fn connection_for(&self, i: usize) -> Option<&Connection> {
        self.media.get(i)?.connection.as_ref().or(self.connection.as_ref())
    }

    /// Removes attributes named in `names` at session level and in every section.
    pub fn strip(&mut self, names: &[&str]) {
        self.attributes.retain(|a| !names.iter().any(|n| a.name.eq_ignore_ascii_case(n)));
        for m in &mut self.media {
            m.strip(names);
        }
    }
}

#[cfg(test)]
mod tests;
