//! The messages on the rings: fixed 256-byte `#[repr(C)]` records that derive
//! [`bytemuck::Pod`], so a ring slot is written and read as plain bytes (no serde, no
//! allocation).
//!
//! Every message starts with a [`MsgHeader`]: what it is, which media core it concerns,
//! the session id and the session's generation. The rest is a 232-byte body whose typed
//! view depends on the kind ([`SessionSpec`] for create/update and for query answers,
//! [`Created`], [`Latched`], [`Dtmf`], [`StreamStats`], [`ErrorInfo`]).
//!
//! Idempotence: the control plane bumps a session's generation whenever it changes the
//! session. A media core applies a create or update only if its generation is newer than
//! the one it holds, and answers with the state it holds either way, so replaying every
//! live session after a restart (or replaying twice) converges on the same table.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use bytemuck::{Pod, Zeroable};

/// Bytes in a message's body.
pub const BODY_BYTES: usize = 232;
/// Payload types a leg can map.
pub const MAX_CODECS: usize = 6;

/// What a [`Command`] asks a media core to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u16)]
#[non_exhaustive]
pub enum CommandKind {
    /// Create the session in the body ([`SessionSpec`]); a local port of 0 asks the core to
    /// allocate one from its range.
    Create = 1,
    /// Replace the session's spec (re-INVITE, new remote address, codec change).
    Update = 2,
    /// Destroy the session; its final stats come back in a [`EventKind::Destroyed`].
    Destroy = 3,
    /// List every session the core holds: one [`EventKind::SessionInfo`] each, then one
    /// [`EventKind::QueryDone`] carrying the count.
    Query = 4,
    /// Answer with [`EventKind::Pong`] (liveness and ring round trips).
    Ping = 5,
}

impl CommandKind {
    /// The kind for a wire value, if known.
    pub fn from_u16(v: u16) -> Option<CommandKind> {
        Some(match v {
            1 => CommandKind::Create,
            2 => CommandKind::Update,
            3 => CommandKind::Destroy,
            4 => CommandKind::Query,
            5 => CommandKind::Ping,
            _ => return None,
        })
    }
}

/// What an [`Event`] reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u16)]
#[non_exhaustive]
pub enum EventKind {
    /// The session exists with this generation; body: [`Created`] (the local ports used).
    Created = 1,
    /// An update was applied; body: [`Created`].
    Updated = 2,
    /// The session is gone; body: [`StreamStats`] (the final counters).
    Destroyed = 3,
    /// Answer to a query, one per session; body: its [`SessionSpec`] (ports filled in).
    SessionInfo = 4,
    /// End of a query's answers; the header's `seq` echoes the query, body: [`Count`].
    QueryDone = 5,
    /// A leg's peer address was learnt from its first packet; body: [`Latched`].
    Latched = 6,
    /// An RFC 4733 telephone-event ended; body: [`Dtmf`].
    Dtmf = 7,
    /// No RTP on a leg for the session's timeout; body: [`StreamStats`].
    RtpTimeout = 8,
    /// Periodic counters; body: [`StreamStats`].
    Stats = 9,
    /// A command could not be applied; body: [`ErrorInfo`].
    Error = 10,
    /// Answer to a ping; the header's `seq` echoes it.
    Pong = 11,
    /// A core's own counters, once a second (session 0); body: [`WorkerCounters`].
    WorkerStats = 12,
}

impl EventKind {
    /// The kind for a wire value, if known.
    pub fn from_u16(v: u16) -> Option<EventKind> {
        Some(match v {
            1 => EventKind::Created,
            2 => EventKind::Updated,
            3 => EventKind::Destroyed,
            4 => EventKind::SessionInfo,
            5 => EventKind::QueryDone,
            6 => EventKind::Latched,
            7 => EventKind::Dtmf,
            8 => EventKind::RtpTimeout,
            9 => EventKind::Stats,
            10 => EventKind::Error,
            11 => EventKind::Pong,
            12 => EventKind::WorkerStats,
            _ => return None,
        })
    }
}

/// The first 24 bytes of every message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Pod, Zeroable, Default)]
#[repr(C)]
pub struct MsgHeader {
    /// A [`CommandKind`] or [`EventKind`] value.
    pub kind: u16,
    /// The media core (worker index) the message concerns.
    pub core: u16,
    /// The sender's sequence number (echoed by answers to queries and pings).
    pub seq: u32,
    /// The session (0 for core-wide messages).
    pub session: u64,
    /// The session's generation this message is about.
    pub generation: u64,
}

/// A message from the control plane to one media core.
#[derive(Clone, Copy, Pod, Zeroable)]
#[repr(C)]
pub struct Command {
    /// Kind, core, session, generation.
    pub header: MsgHeader,
    body: [u64; BODY_BYTES / 8],
}

/// A message from a media core to the control plane.
#[derive(Clone, Copy, Pod, Zeroable)]
#[repr(C)]
pub struct Event {
    /// Kind, core, session, generation.
    pub header: MsgHeader,
    body: [u64; BODY_BYTES / 8],
}

macro_rules! body_views {
    ($t:ty) => {
        impl $t {
            /// A message of `kind` with an all-zero body.
            pub fn new(kind: u16, core: u16, session: u64, generation: u64) -> Self {
                let mut m = <$t>::zeroed();
                m.header = MsgHeader { kind, core, seq: 0, session, generation };
                m
            }

            /// The body as `B` (any body type fits: they are at most [`BODY_BYTES`]).
            pub fn body<B: Body>(&self) -> &B {
                bytemuck::from_bytes(&bytemuck::bytes_of(&self.body)[..size_of::<B>()])
            }

            /// The body as `B`, to fill in.
            pub fn body_mut<B: Body>(&mut self) -> &mut B {
                bytemuck::from_bytes_mut(&mut bytemuck::bytes_of_mut(&mut self.body)[..size_of::<B>()])
            }

            /// Sets the body to `b` (bytes past it are zeroed).
            pub fn with_body<B: Body>(mut self, b: &B) -> Self {
                self.body = [0; BODY_BYTES / 8];
                *self.body_mut::<B>() = *b;
                self
            }
        }

        impl std::fmt::Debug for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct(stringify!($t)).field("header", &self.header).finish_non_exhaustive()
            }
        }

        impl PartialEq for $t {
            fn eq(&self, other: &Self) -> bool {
                bytemuck::bytes_of(self) == bytemuck::bytes_of(other)
            }
        }
    };
}

body_views!(Command);
body_views!(Event);

impl Command {
    /// The command's kind, if known.
    pub fn kind(&self) -> Option<CommandKind> {
        CommandKind::from_u16(self.header.kind)
    }
}

impl Event {
    /// The event's kind, if known.
    pub fn kind(&self) -> Option<EventKind> {
        EventKind::from_u16(self.header.kind)
    }
}

/// A type that can be a message body: plain bytes, at most [`BODY_BYTES`], aligned to at
/// most 8.
pub trait Body: Pod {}

/// An IP address and port in 24 bytes; `family` 0 means "not known" (a leg to latch).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Pod, Zeroable, Default)]
#[repr(C)]
pub struct Endpoint {
    /// IPv4 in the first 4 bytes, or IPv6.
    pub ip: [u8; 16],
    /// The port.
    pub port: u16,
    /// 0 (unknown), 4 or 6.
    pub family: u8,
    /// Zero.
    pub _pad: [u8; 5],
}

impl Endpoint {
    /// The endpoint for `addr`.
    pub fn from_addr(addr: SocketAddr) -> Endpoint {
        let mut e = Endpoint { port: addr.port(), ..Endpoint::default() };
        match addr.ip() {
            IpAddr::V4(v4) => {
                e.family = 4;
                e.ip[..4].copy_from_slice(&v4.octets());
            }
            IpAddr::V6(v6) => {
                e.family = 6;
                e.ip = v6.octets();
            }
        }
        e
    }

    /// The address, or `None` for an unknown endpoint (or an invalid family).
    pub fn addr(&self) -> Option<SocketAddr> {
        let ip = match self.family {
            4 => IpAddr::V4(Ipv4Addr::new(self.ip[0], self.ip[1], self.ip[2], self.ip[3])),
            6 => IpAddr::V6(Ipv6Addr::from(self.ip)),
            _ => return None,
        };
        Some(SocketAddr::new(ip, self.port))
    }
}

/// Codec ids in a [`PayloadMap`].
pub mod codec {
    /// Not one the media plane knows: relayed, never transcoded.
    pub const OTHER: u8 = 0;
    /// G.711 µ-law.
    pub const PCMU: u8 = 1;
    /// G.711 A-law.
    pub const PCMA: u8 = 2;
    /// G.722.
    pub const G722: u8 = 3;
    /// Opus.
    pub const OPUS: u8 = 4;
    /// RFC 4733 telephone-event.
    pub const TELEPHONE_EVENT: u8 = 5;
    /// G.729 (and Annex A).
    pub const G729: u8 = 6;
    /// L16, 16-bit linear PCM (RFC 3551 §4.5.11).
    pub const L16: u8 = 7;
}

/// One payload type of a leg: `a=rtpmap:<pt> <codec>/<clock_rate>[/<channels>]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Pod, Zeroable, Default)]
#[repr(C)]
pub struct PayloadMap {
    /// The clock rate in Hz.
    pub clock_rate: u32,
    /// The RTP payload type.
    pub pt: u8,
    /// A [`codec`] id.
    pub codec: u8,
    /// Audio channels (0 or 1: mono).
    pub channels: u8,
    /// Zero.
    pub _pad: u8,
}

/// Per-leg flags ([`LegSpec::flags`]).
pub mod leg_flags {
    /// Learn the peer's address from its first packet (symmetric RTP).
    pub const SYMMETRIC: u32 = 1;
    /// After latching, drop (and count) packets from any other source.
    pub const STRICT_SOURCE: u32 = 1 << 1;
    /// RTP and RTCP share the port (RFC 5761).
    pub const RTCP_MUX: u32 = 1 << 2;
    /// Media flows toward this leg's peer (not sendonly/inactive from our side).
    pub const SEND: u32 = 1 << 3;
    /// Media from this leg's peer is accepted.
    pub const RECV: u32 = 1 << 4;
    /// Latch only from the address the signalling named ([`super::LegSpec::remote`]'s IP,
    /// any port: NATs change ports); a leg with no remote yet latches nothing and drops
    /// what comes (a B-leg before its answer). Without it, a leg with no remote latches
    /// the first source.
    pub const LATCH_SIGNALLED: u32 = 1 << 5;
}

/// Session flags ([`SessionSpec::flags`]).
pub mod session_flags {
    /// Echo: leg A's media goes back to leg A's peer, from leg A's own port (the dialplan's
    /// `echo` application); leg B is not used.
    pub const ECHO: u32 = 1;
    /// The legs share no codec: the media plane transcodes between them (each leg's first
    /// codec is the one it speaks).
    pub const TRANSCODE: u32 = 2;
    /// No DTMF interworking while transcoding (FreeSWITCH's `dtmf_type=none`): RFC 4733
    /// events toward a leg without telephone-event are dropped rather than played as
    /// tones, and in-band digits are not detected.
    pub const NO_DTMF: u32 = 4;
}

/// Media kinds ([`LegSpec::media`]).
pub mod media_kind {
    /// Audio.
    pub const AUDIO: u8 = 1;
    /// Video.
    pub const VIDEO: u8 = 2;
}

/// One leg of a session: where the media plane listens for this leg's peer, where it
/// sends, and what the peer speaks. 112 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Pod, Zeroable, Default)]
#[repr(C)]
pub struct LegSpec {
    /// The media plane's RTP address for this leg; port 0 in a create: allocate one.
    pub local: Endpoint,
    /// The peer's RTP address from its signalling (family 0: unknown). Port 0 with an
    /// address: the peer's IP is known (latching is allowed from it) but nothing is sent
    /// until a packet comes.
    pub remote: Endpoint,
    /// The leg's payload types, the first `codec_count` of them used.
    pub codecs: [PayloadMap; MAX_CODECS],
    /// [`leg_flags`].
    pub flags: u32,
    /// The peer's RTCP port (0: RTP port + 1, or the RTP port with rtcp-mux).
    pub remote_rtcp_port: u16,
    /// Used entries of `codecs`.
    pub codec_count: u8,
    /// Packetization time in ms (0: the codec's default).
    pub ptime_ms: u8,
    /// A [`media_kind`].
    pub media: u8,
    /// The peer's fmtp for its Opus payload type ([`fmtp_flags`]).
    pub fmtp_flags: u8,
    /// The peer's Opus `maxplaybackrate`, in kHz (0: not given).
    pub max_playback_khz: u8,
    /// Zero.
    pub _pad0: u8,
    /// The peer's Opus `maxaveragebitrate`, in kbit/s (0: not given).
    pub max_bitrate_kbps: u16,
    /// Zero.
    pub _pad: [u8; 2],
}

/// What a peer's Opus fmtp says ([`LegSpec::fmtp_flags`]), RFC 7587 §6.1.
pub mod fmtp_flags {
    /// `useinbandfec=1`: it decodes in-band FEC (send it).
    pub const FEC: u8 = 1;
    /// `usedtx=1`: it wants discontinuous transmission.
    pub const DTX: u8 = 1 << 1;
    /// `cbr=1`: it wants a constant bitrate.
    pub const CBR: u8 = 1 << 2;
    /// `stereo=1`: it prefers stereo.
    pub const STEREO: u8 = 1 << 3;
}

impl LegSpec {
    /// The used payload maps.
    pub fn codecs(&self) -> &[PayloadMap] {
        &self.codecs[..usize::from(self.codec_count).min(MAX_CODECS)]
    }
}

/// A media session: two legs relayed to each other. 232 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Pod, Zeroable, Default)]
#[repr(C)]
pub struct SessionSpec {
    /// Leg A (the caller's side) and leg B.
    pub legs: [LegSpec; 2],
    /// Seconds without RTP before an [`EventKind::RtpTimeout`] (0: never).
    pub rtp_timeout_secs: u32,
    /// [`session_flags`].
    pub flags: u32,
}

/// The local ports a core used for a session ([`EventKind::Created`] and
/// [`EventKind::Updated`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Pod, Zeroable, Default)]
#[repr(C)]
pub struct Created {
    /// Each leg's local RTP endpoint.
    pub local: [Endpoint; 2],
}

/// A leg's peer address, learnt from its first packet (or moved since).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Pod, Zeroable, Default)]
#[repr(C)]
pub struct Latched {
    /// Where the packets come from.
    pub peer: Endpoint,
    /// 0 (A) or 1 (B).
    pub leg: u8,
    /// 1: the RTCP path latched (0: RTP).
    pub rtcp: u8,
    /// 1: the latch moved from an earlier address (a NAT binding that changed).
    pub relatched: u8,
    /// Zero.
    pub _pad: [u8; 5],
}

/// An RFC 4733 event received on a leg.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Pod, Zeroable, Default)]
#[repr(C)]
pub struct Dtmf {
    /// Duration in timestamp units.
    pub duration: u32,
    /// The event code (0-9, 10 = *, 11 = #, 12-15 = A-D).
    pub event: u8,
    /// Volume (dBm0, negated).
    pub volume: u8,
    /// 0 (A) or 1 (B).
    pub leg: u8,
    /// Zero.
    pub _pad: u8,
}

/// One direction's counters (what a leg's peer sent us).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Pod, Zeroable, Default)]
#[repr(C)]
pub struct LegStats {
    /// Packets received.
    pub packets: u64,
    /// Bytes received (RTP payload and header).
    pub bytes: u64,
    /// Packets lost (by sequence number).
    pub lost: u64,
    /// Packets received out of order.
    pub out_of_order: u64,
    /// Duplicate packets.
    pub duplicates: u64,
    /// Datagrams (RTP and RTCP) from this leg's peer not relayed, for every reason
    /// below together.
    pub dropped: u64,
    /// Interarrival jitter (RFC 3550 A.8), in timestamp units.
    pub jitter: u32,
    /// Milliseconds since the last packet (u32::MAX: none yet).
    pub idle_ms: u32,
    /// RTCP packets received (and admitted) from this leg's peer.
    pub rtcp_packets: u64,
    /// Datagrams (RTP and RTCP) the media plane sent toward this leg's peer.
    pub sent: u64,
    /// Their bytes.
    pub sent_bytes: u64,
    /// Dropped: the other leg's peer was not known yet (nowhere to send).
    pub drop_no_peer: u64,
    /// Dropped: from a source other than the signalled or latched peer.
    pub drop_strict_source: u64,
    /// Dropped: not a valid RTP/RTCP packet.
    pub drop_malformed: u64,
    /// Dropped: from one of the media plane's own sockets (a media loop).
    pub drop_loop: u64,
}

/// Both legs' counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Pod, Zeroable, Default)]
#[repr(C)]
pub struct StreamStats {
    /// Leg A's and leg B's.
    pub legs: [LegStats; 2],
}

/// Why a command failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Pod, Zeroable)]
#[repr(C)]
pub struct ErrorInfo {
    /// An [`error_code`].
    pub code: u32,
    /// Bytes used in `text`.
    pub len: u32,
    /// A human-readable reason, UTF-8.
    pub text: [u8; 128],
}

impl Default for ErrorInfo {
    fn default() -> ErrorInfo {
        ErrorInfo::zeroed()
    }
}

impl ErrorInfo {
    /// An error with `code` and `text` (cut at 128 bytes, on a character boundary).
    pub fn new(code: u32, text: &str) -> ErrorInfo {
        let mut e = ErrorInfo::zeroed();
        let mut n = text.len().min(e.text.len());
        while !text.is_char_boundary(n) {
            n -= 1;
        }
        e.text[..n].copy_from_slice(&text.as_bytes()[..n]);
        e.code = code;
        e.len = n as u32;
        e
    }

    /// The reason text.
    pub fn text(&self) -> &str {
        let n = (self.len as usize).min(self.text.len());
        std::str::from_utf8(&self.text[..n]).unwrap_or("(invalid UTF-8)")
    }
}

/// [`ErrorInfo::code`] values.
pub mod error_code {
    /// An unknown command kind.
    pub const UNKNOWN_COMMAND: u32 = 1;
    /// Update or destroy of a session the core does not hold.
    pub const NO_SUCH_SESSION: u32 = 2;
    /// No free port in the core's range, or the requested one is taken.
    pub const NO_PORT: u32 = 3;
    /// The spec is invalid (a bad address family, too many codecs...).
    pub const BAD_SPEC: u32 = 4;
    /// The command was sent to the wrong core.
    pub const WRONG_CORE: u32 = 5;
}

/// A count ([`EventKind::QueryDone`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Pod, Zeroable, Default)]
#[repr(C)]
pub struct Count {
    /// How many.
    pub count: u64,
}

/// One media core's counters since it started: every session it held, those still
/// live and those closed, together ([`EventKind::WorkerStats`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Pod, Zeroable, Default)]
#[repr(C)]
pub struct WorkerCounters {
    /// Datagrams (RTP and RTCP) received from the sessions' peers, and their bytes
    /// (RTP's).
    pub packets_in: u64,
    pub bytes_in: u64,
    /// Datagrams sent toward the sessions' peers, and their bytes.
    pub packets_out: u64,
    pub bytes_out: u64,
    /// Datagrams not relayed, by reason (as [`LegStats`] counts them).
    pub drop_no_peer: u64,
    pub drop_strict_source: u64,
    pub drop_malformed: u64,
    pub drop_loop: u64,
    /// RTP packets lost on the way in (by sequence number).
    pub lost: u64,
    /// Events the core could not hand over (its event ring was full).
    pub dropped_events: u64,
    /// Sessions live now, and how many of them transcode.
    pub sessions: u32,
    pub transcoded: u32,
}

impl WorkerCounters {
    /// Adds a session's counters (both legs).
    pub fn add(&mut self, s: &StreamStats) {
        for l in &s.legs {
            self.packets_in += l.packets + l.rtcp_packets;
            self.bytes_in += l.bytes;
            self.packets_out += l.sent;
            self.bytes_out += l.sent_bytes;
            self.drop_no_peer += l.drop_no_peer;
            self.drop_strict_source += l.drop_strict_source;
            self.drop_malformed += l.drop_malformed;
            self.drop_loop += l.drop_loop;
            self.lost += l.lost;
        }
    }
}

impl Body for WorkerCounters {}
impl Body for SessionSpec {}
impl Body for Created {}
impl Body for Latched {}
impl Body for Dtmf {}
impl Body for StreamStats {}
impl Body for ErrorInfo {}
impl Body for Count {}

const _: () = {
    assert!(size_of::<MsgHeader>() == 24);
    assert!(size_of::<Command>() == 256);
    assert!(size_of::<Event>() == 256);
    assert!(size_of::<LegSpec>() == 112);
    assert!(size_of::<SessionSpec>() <= BODY_BYTES);
    assert!(size_of::<StreamStats>() <= BODY_BYTES);
    assert!(size_of::<WorkerCounters>() <= BODY_BYTES);
    assert!(size_of::<LegStats>() == 112);
    assert!(size_of::<ErrorInfo>() <= BODY_BYTES);
    assert!(size_of::<Created>() <= BODY_BYTES);
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_round_trip_v4_v6_and_unknown() {
        for a in ["192.0.2.10:16384", "[2001:db8::1]:30000"] {
            let addr: SocketAddr = a.parse().unwrap();
            assert_eq!(Endpoint::from_addr(addr).addr(), Some(addr));
        }
        assert_eq!(Endpoint::default().addr(), None);
        let bad = Endpoint { family: 5, ..Endpoint::default() };
        assert_eq!(bad.addr(), None);
    }

    #[test]
    fn bodies_are_views_over_the_same_bytes() {
        let mut spec = SessionSpec::default();
        spec.legs[1].remote = Endpoint::from_addr("198.51.100.7:4000".parse().unwrap());
        spec.legs[1].codec_count = 1;
        spec.legs[1].codecs[0] = PayloadMap { clock_rate: 8000, pt: 0, codec: codec::PCMU, channels: 1, _pad: 0 };
        spec.rtp_timeout_secs = 30;
        let cmd = Command::new(CommandKind::Create as u16, 1, 42, 7).with_body(&spec);
        assert_eq!(cmd.kind(), Some(CommandKind::Create));
        assert_eq!(*cmd.body::<SessionSpec>(), spec);
        let copy: Command = *bytemuck::from_bytes(bytemuck::bytes_of(&cmd));
        assert_eq!(copy, cmd);
        assert_eq!(copy.body::<SessionSpec>().legs[1].codecs()[0].codec, codec::PCMU);
        // A smaller body written later leaves no stale bytes behind.
        let short = cmd.with_body(&Count { count: 3 });
        assert_eq!(short.body::<SessionSpec>().rtp_timeout_secs, 0);
        assert_eq!(short.body::<Count>().count, 3);
    }

    #[test]
    fn unknown_kinds_are_none_not_a_panic() {
        assert_eq!(CommandKind::from_u16(0), None);
        assert_eq!(EventKind::from_u16(999), None);
        let e = Event::new(77, 0, 0, 0);
        assert_eq!(e.kind(), None);
    }

    #[test]
    fn error_text_is_cut_on_a_character_boundary() {
        let long = "é".repeat(100); // 200 bytes
        let e = ErrorInfo::new(error_code::BAD_SPEC, &long);
        assert_eq!(e.len, 128);
        assert_eq!(e.text(), "é".repeat(64));
    }
}
