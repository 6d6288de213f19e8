//! One session's relay decisions, sans-IO: for a packet that arrived on a leg's port,
//! where it goes (the other leg's peer) or why it is dropped, with latching, strict
//! source, SSRC/sequence/timestamp continuity and RFC 4733 events.
//!
//! Leg `i`'s peer sends to our `legs[i].local`; we forward to the other leg's peer.
//!
//! Latching (rtpengine's model): RTP and RTCP each learn where the peer's packets come
//! from on their own, from the first packet of their own kind (a phone that sends RTCP
//! first latches its RTCP path only; its RTP path still follows the SDP). Only the
//! address the signalling named may be latched: the remote's IP, any port, since a NAT
//! changes ports. With [`leg_flags::LATCH_SIGNALLED`] a leg whose signalling named no
//! address yet (a B-leg before its answer) drops everything; without it, such a leg
//! latches the first source. Once latched, with strict source, packets from anyone else
//! are dropped, except a move to another port of the same IP (a NAT binding that
//! changed) and, for a leg whose signalling named no address, a new SSRC from elsewhere
//! within the learning window after the first latch; both are reported
//! ([`Notice::Relatched`]). Without strict source, a stranger's packets are relayed as
//! they are (never rewritten to the genuine stream's SSRC), and nothing moves.
//!
//! Every datagram not relayed is counted on the leg it arrived on, by [`Drop`] reason;
//! every one relayed is counted as sent on the leg it goes to.

use std::net::{IpAddr, SocketAddr};

use ferroswitch_shared::msg::{codec, leg_flags, LegSpec, LegStats};

use super::rtp::{self, Rtp, TelephoneEvent};
use super::stats::RecvStats;
use crate::codec::opus;
use crate::transcode::{Outbox, Outcome, TranscodeError, Transcoder};

/// Why a packet was not relayed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drop {
    /// Not a valid RTP/RTCP packet.
    Malformed,
    /// From someone other than the signalled (before latching) or latched peer.
    StrictSource,
    /// The other leg's peer is not known yet (no SDP address, nothing latched).
    NoPeer,
    /// From one of the media plane's own sockets: a media loop.
    Loop,
}

/// What to do with a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Send it (possibly rewritten in place) from the other leg's local port to `to`.
    Forward {
        /// The destination.
        to: SocketAddr,
    },
    /// The session transcodes: the packet was admitted and counted, and goes through
    /// [`Relay::transcode`], whose packets go from the other leg's local port to `to`.
    Transcode {
        /// The destination.
        to: SocketAddr,
    },
    /// Do not relay it.
    Drop(Drop),
}

/// Something the control plane (or the log) should hear.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Notice {
    /// Leg `leg`'s peer was learnt from its first RTP (or, `rtcp`, RTCP) packet.
    Latched {
        /// The leg.
        leg: usize,
        /// Its address.
        peer: SocketAddr,
        /// Learnt from RTCP (the RTCP path).
        rtcp: bool,
    },
    /// Leg `leg`'s latched peer moved from `from` to `to` (a NAT binding that changed, or
    /// a new source within the learning window).
    Relatched {
        /// The leg.
        leg: usize,
        /// The address latched before.
        from: SocketAddr,
        /// The new one.
        to: SocketAddr,
        /// The RTCP path.
        rtcp: bool,
    },
    /// An RFC 4733 event ended on leg `leg`.
    Dtmf {
        /// The leg.
        leg: usize,
        /// The event.
        event: TelephoneEvent,
    },
}

/// What [`Relay::apply_flags`] asks of the caller: order a transcoder, and destroy the
/// old one.
pub struct Reorder {
    /// A transcoder for the legs is to be ordered.
    pub order: bool,
    /// The transcoder no longer needed.
    pub old: Option<Box<Transcoder>>,
}

/// How a session's relay behaves beyond its spec (the media plane's configuration).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// After a leg first latches, how long (ns) a new SSRC from another address may
    /// still move the latch of a leg whose signalling named no address.
    pub learning_window_ns: u64,
    /// The Opus encoder's settings where a leg's own do not say otherwise.
    pub opus: opus::Params,
}

impl Default for Policy {
    fn default() -> Policy {
        Policy { learning_window_ns: 3_000_000_000, opus: opus::Params::default() }
    }
}

/// Keeps the stream toward one peer continuous when its source changes.
#[derive(Debug, Clone, Copy, Default)]
struct Continuity {
    /// The SSRC the peer has been seeing, and the last seq/ts sent.
    out: Option<(u32, u16, u32)>,
    /// The current source's SSRC and the offsets applied to it.
    source: Option<(u32, u16, u32)>,
    /// Nanoseconds of the last packet sent.
    last_ns: u64,
}

impl Continuity {
    /// Rewrites `pkt` if its source is not the one the peer first saw.
    fn apply(&mut self, pkt: &mut [u8], ssrc: u32, seq: u16, ts: u32, now_ns: u64, clock_rate: u32) {
        let Some((out_ssrc, last_seq, last_ts)) = self.out else {
            self.out = Some((ssrc, seq, ts));
            self.source = Some((ssrc, 0, 0));
            self.last_ns = now_ns;
            return;
        };
        let (seq_off, ts_off) = match self.source {
            Some((s, so, to)) if s == ssrc => (so, to),
            _ => {
                // A new source: continue right after what the peer saw last.
                let elapsed = now_ns.saturating_sub(self.last_ns);
                let step = (u128::from(elapsed) * u128::from(clock_rate.max(1)) / 1_000_000_000).max(1) as u32;
                let so = last_seq.wrapping_add(1).wrapping_sub(seq);
                let to = last_ts.wrapping_add(step).wrapping_sub(ts);
                self.source = Some((ssrc, so, to));
                (so, to)
            }
        };
        let (new_seq, new_ts) = (seq.wrapping_add(seq_off), ts.wrapping_add(ts_off));
        if ssrc != out_ssrc || seq_off != 0 || ts_off != 0 {
            rtp::rewrite(pkt, new_seq, new_ts, out_ssrc);
        }
        // Only advance on packets that move forward (a late one keeps the high mark).
        if new_seq.wrapping_sub(last_seq) < 0x8000 {
            self.out = Some((out_ssrc, new_seq, new_ts));
        }
        self.last_ns = now_ns;
    }
}

/// One kind of packet's (RTP's or RTCP's) addresses for a leg's peer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Path {
    /// Where packets of this kind go to the peer: the signalled address, then the latched one.
    to: Option<SocketAddr>,
    /// Where the peer's packets of this kind come from, once learnt.
    latched: Option<SocketAddr>,
}

/// Whether a packet comes from the leg's peer (forward it as its stream), or from a
/// stranger a non-strict leg lets through (forward it untouched).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Admit {
    Peer,
    Stranger,
}

/// Per-leg counters of what was not relayed, and of what was sent to the peer.
#[derive(Debug, Clone, Copy, Default)]
struct Counters {
    rtcp: u64,
    sent: u64,
    sent_bytes: u64,
    no_peer: u64,
    strict_source: u64,
    malformed: u64,
    looped: u64,
}

impl Counters {
    fn drop(&mut self, why: Drop) {
        *match why {
            Drop::Malformed => &mut self.malformed,
            Drop::StrictSource => &mut self.strict_source,
            Drop::NoPeer => &mut self.no_peer,
            Drop::Loop => &mut self.looped,
        } += 1;
    }

    fn dropped(&self) -> u64 {
        self.no_peer + self.strict_source + self.malformed + self.looped
    }
}

/// One leg's relay state.
#[derive(Debug, Clone)]
pub struct Leg {
    spec: LegSpec,
    /// The peer's IP as the signalling named it (None: not named).
    signalled: Option<IpAddr>,
    rtp: Path,
    rtcp: Path,
    /// The SSRC of the stream latched on the RTP path.
    ssrc: Option<u32>,
    /// When the leg first latched (either path).
    first_latch_ns: Option<u64>,
    stats: RecvStats,
    counters: Counters,
    toward: Continuity,
    /// The timestamp of the last telephone event reported (reported once per event).
    dtmf_ts: Option<u32>,
}

impl Leg {
    fn new(spec: LegSpec) -> Leg {
        let remote = spec.remote.addr().filter(|a| !a.ip().is_unspecified());
        let signalled = remote.map(|a| a.ip());
        let peer = remote.filter(|a| a.port() != 0);
        let rtcp_to = peer.map(|p| {
            let port = if spec.flags & leg_flags::RTCP_MUX != 0 {
                p.port()
            } else if spec.remote_rtcp_port != 0 {
                spec.remote_rtcp_port
            } else {
                p.port().wrapping_add(1)
            };
            SocketAddr::new(p.ip(), port)
        });
        Leg {
            spec,
            signalled,
            rtp: Path { to: peer, latched: None },
            rtcp: Path { to: rtcp_to, latched: None },
            ssrc: None,
            first_latch_ns: None,
            stats: RecvStats::default(),
            counters: Counters::default(),
            toward: Continuity::default(),
            dtmf_ts: None,
        }
    }

    fn clock_rate(&self, pt: u8) -> u32 {
        self.spec.codecs().iter().find(|c| c.pt == pt).map_or(8000, |c| c.clock_rate)
    }

    fn is_dtmf(&self, pt: u8) -> bool {
        self.spec.codecs().iter().any(|c| c.pt == pt && c.codec == codec::TELEPHONE_EVENT)
    }

    fn has(&self, flag: u32) -> bool {
        self.spec.flags & flag != 0
    }

    /// Checks `src` (an RTP packet with `ssrc`, or RTCP) against this leg's peer,
    /// latching or moving the latch where this leg may; the reason to drop it otherwise.
    fn admit(
        &mut self,
        leg: usize,
        src: SocketAddr,
        ssrc: Option<u32>,
        now_ns: u64,
        policy: &Policy,
        notices: &mut impl FnMut(Notice),
    ) -> Result<Admit, Drop> {
        let rtcp = ssrc.is_none();
        let (strict, only_signalled) = (self.has(leg_flags::STRICT_SOURCE), self.has(leg_flags::LATCH_SIGNALLED));
        let learns = self.has(leg_flags::SYMMETRIC) || (if rtcp { self.rtcp.to } else { self.rtp.to }).is_none();
        let path = if rtcp { &mut self.rtcp } else { &mut self.rtp };
        if let Some(at) = path.latched {
            if at == src {
                return Ok(Admit::Peer);
            }
            let window = self.first_latch_ns.is_some_and(|t| now_ns.saturating_sub(t) < policy.learning_window_ns);
            let new_source = ssrc.is_some() && ssrc != self.ssrc;
            let moves = src.ip() == at.ip() || (self.signalled.is_none() && window && new_source);
            if moves && learns {
                path.latched = Some(src);
                path.to = Some(src);
                if !rtcp {
                    self.ssrc = ssrc;
                }
                notices(Notice::Relatched { leg, from: at, to: src, rtcp });
                return Ok(Admit::Peer);
            }
            return if strict { Err(Drop::StrictSource) } else { Ok(Admit::Stranger) };
        }
        // Not latched yet: only from the address the signalling named.
        let allowed = match self.signalled {
            Some(ip) => src.ip() == ip,
            None => !only_signalled,
        };
        if !allowed {
            return Err(Drop::StrictSource);
        }
        if learns {
            path.latched = Some(src);
            path.to = Some(src);
            if rtcp {
                // An RTCP-muxed peer gets RTP where its RTCP comes from until its RTP says otherwise.
                if self.has(leg_flags::RTCP_MUX) && self.rtp.latched.is_none() && self.rtp.to.is_none() {
                    self.rtp.to = Some(src);
                }
            } else {
                self.ssrc = ssrc;
                if self.rtcp.latched.is_none() && (self.has(leg_flags::RTCP_MUX) || self.rtcp.to.is_none()) {
                    self.rtcp.to = Some(src);
                }
            }
            self.first_latch_ns.get_or_insert(now_ns);
            notices(Notice::Latched { leg, peer: src, rtcp });
        }
        Ok(Admit::Peer)
    }

    /// New signalling for this leg: the spec changes; a path that learnt nothing takes
    /// the new address, and a peer the signalling moved to another IP is learnt afresh.
    fn update(&mut self, spec: LegSpec) {
        let fresh = Leg::new(spec);
        self.spec = spec;
        if fresh.signalled.is_some() && fresh.signalled != self.signalled {
            self.signalled = fresh.signalled;
            self.rtp = fresh.rtp;
            self.rtcp = fresh.rtcp;
            self.ssrc = None;
            self.first_latch_ns = None;
            return;
        }
        for (path, new) in [(&mut self.rtp, fresh.rtp), (&mut self.rtcp, fresh.rtcp)] {
            if path.latched.is_none() && new.to.is_some() {
                path.to = new.to;
            }
        }
    }

    /// This leg's counters, at `now_ns`.
    pub fn stats(&self, now_ns: u64) -> LegStats {
        let c = &self.counters;
        LegStats {
            dropped: c.dropped(),
            rtcp_packets: c.rtcp,
            sent: c.sent,
            sent_bytes: c.sent_bytes,
            drop_no_peer: c.no_peer,
            drop_strict_source: c.strict_source,
            drop_malformed: c.malformed,
            drop_loop: c.looped,
            ..self.stats.snapshot(now_ns)
        }
    }

    /// Where this leg's peer gets RTP (None: not known yet).
    pub fn peer(&self) -> Option<SocketAddr> {
        self.rtp.to
    }
}

/// A session: two legs relayed to each other.
pub struct Relay {
    legs: [Leg; 2],
    /// Leg A's packets go back to leg A (the echo application).
    echo: bool,
    policy: Policy,
    /// Set when the legs share no codec: audio is decoded and encoded between them.
    transcoder: Option<Box<Transcoder>>,
    /// Packets the transcoder could not take (late, unknown payload type, undecodable).
    transcode_drops: u64,
    /// A transcoder ordered from the factory and not installed yet (its ticket): the
    /// audio meanwhile is dropped.
    pending: Option<u64>,
    /// `session_flags::NO_DTMF`.
    no_dtmf: bool,
}

impl std::fmt::Debug for Relay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relay")
            .field("legs", &self.legs)
            .field("echo", &self.echo)
            .field("transcodes", &self.transcoder.is_some())
            .finish_non_exhaustive()
    }
}

impl Relay {
    /// A relay for two legs as signalled.
    pub fn new(legs: [LegSpec; 2], policy: Policy) -> Relay {
        Relay {
            legs: [Leg::new(legs[0]), Leg::new(legs[1])],
            echo: false,
            policy,
            transcoder: None,
            transcode_drops: 0,
            pending: None,
            no_dtmf: false,
        }
    }

    /// An echo: what leg A's peer sends comes back to it (from the same port). The peer is
    /// latched from its packets when its SDP address is unusable.
    pub fn echo(leg: LegSpec, policy: Policy) -> Relay {
        Relay { echo: true, ..Relay::new([leg, LegSpec::default()], policy) }
    }

    /// The session's flags (echo, transcoding, `NO_DTMF`), a transcoder they need made
    /// here, now (the worker orders it from its factory instead: [`Relay::apply_flags`]).
    pub fn set_session_flags(&mut self, flags: u32, seed: u64) -> Result<(), TranscodeError> {
        if self.apply_flags(flags)?.order {
            let mut t = Box::new(Transcoder::new(&self.specs(), &self.policy.opus, seed)?);
            t.set_dtmf_interworking(!self.no_dtmf);
            self.pending = None;
            self.transcoder = Some(t);
        }
        Ok(())
    }

    /// The session's flags, where the transcoder is made elsewhere (the worker's codec
    /// factory): echo and DTMF are applied; the transcoder the flags need, if this relay
    /// has none that serves the legs, is returned as what to order (the old one, no longer
    /// right, is handed back to be destroyed). Checks the legs can be transcoded at all.
    pub fn apply_flags(&mut self, flags: u32) -> Result<Reorder, TranscodeError> {
        use ferroswitch_shared::msg::session_flags as sf;
        self.set_echo(flags & sf::ECHO != 0);
        self.no_dtmf = flags & sf::NO_DTMF != 0;
        let specs = [self.legs[0].spec, self.legs[1].spec];
        if flags & sf::TRANSCODE == 0 || self.echo {
            self.pending = None;
            return Ok(Reorder { order: false, old: self.transcoder.take() });
        }
        if let Some(t) = self.transcoder.as_mut().filter(|t| t.serves(&specs)) {
            t.set_dtmf_interworking(!self.no_dtmf);
            return Ok(Reorder { order: false, old: None });
        }
        for (i, leg) in specs.iter().enumerate() {
            crate::transcode::speaks(leg).ok_or(TranscodeError::NoCodec(i))?;
        }
        Ok(Reorder { order: true, old: self.transcoder.take() })
    }

    /// The legs' specs (what a transcoder for them is made from).
    pub fn specs(&self) -> [LegSpec; 2] {
        [self.legs[0].spec, self.legs[1].spec]
    }

    /// A transcoder was ordered under `ticket`: the audio waits for it.
    pub fn set_pending(&mut self, ticket: Option<u64>) {
        self.pending = ticket;
    }

    /// The ticket of the transcoder this relay waits for.
    pub fn pending(&self) -> Option<u64> {
        self.pending
    }

    /// Installs the transcoder ordered; false (and it is handed back) if this relay no
    /// longer waits for that ticket.
    pub fn install(&mut self, ticket: u64, mut t: Box<Transcoder>) -> Result<(), Box<Transcoder>> {
        if self.pending != Some(ticket) || !t.serves(&self.specs()) {
            return Err(t);
        }
        t.set_dtmf_interworking(!self.no_dtmf);
        self.pending = None;
        self.transcoder = Some(t);
        Ok(())
    }

    /// Takes the transcoder out (to destroy it elsewhere).
    pub fn take_transcoder(&mut self) -> Option<Box<Transcoder>> {
        self.transcoder.take()
    }

    /// Turns transcoding on (the legs share no codec: each speaks its first one the media
    /// plane transcodes) or off, the other flags as they are. A transcoder already serving
    /// the legs' codecs is kept (a re-INVITE that moved an address); `seed` seeds a new
    /// one's outgoing streams.
    pub fn set_transcoding(&mut self, on: bool, seed: u64) -> Result<(), TranscodeError> {
        use ferroswitch_shared::msg::session_flags as sf;
        let flags = if on { sf::TRANSCODE } else { 0 }
            | if self.echo { sf::ECHO } else { 0 }
            | if self.no_dtmf { sf::NO_DTMF } else { 0 };
        self.set_session_flags(flags, seed)
    }

    /// Whether the session transcodes.
    pub fn transcodes(&self) -> bool {
        self.transcoder.is_some()
    }

    /// Runs a packet [`Relay::on_rtp`] sent here ([`Verdict::Transcode`]) through the
    /// transcoder; the packets for the other leg's peer are in `out.packets` (counted as
    /// sent to it). A digit detected in the leg's audio is a [`Notice::Dtmf`].
    pub fn transcode(&mut self, from: usize, pkt: &[u8], out: &mut Outbox, mut notices: impl FnMut(Notice)) -> Outcome {
        let from = from & 1;
        let (Some(t), Ok(rtp)) = (self.transcoder.as_mut(), Rtp::parse(pkt)) else {
            return Outcome::Unknown;
        };
        let outcome = t.on_rtp(from, &rtp, out);
        if let Some((event, ms)) = t.take_detected(from) {
            let duration = (ms * 8).min(0xffff) as u16;
            notices(Notice::Dtmf { leg: from, event: TelephoneEvent { event, end: true, volume: 10, duration } });
        }
        if !matches!(outcome, Outcome::Audio { .. } | Outcome::Event | Outcome::Held) {
            self.transcode_drops += 1;
        }
        let to = &mut self.legs[from ^ 1].counters;
        for p in out.packets.iter() {
            to.sent += 1;
            to.sent_bytes += p.len() as u64;
        }
        outcome
    }

    /// Packets the transcoder dropped (late, unknown payload type, undecodable).
    pub fn transcode_drops(&self) -> u64 {
        self.transcode_drops
    }

    /// Whether this relay echoes (sends from the receiving leg's own socket).
    pub fn is_echo(&self) -> bool {
        self.echo
    }

    /// Turns echo on or off (the `echo` application after `answer` made the session):
    /// leg A's media goes back to leg A's peer, from leg A's own port.
    pub fn set_echo(&mut self, echo: bool) {
        self.echo = echo;
    }

    /// New signalling for both legs (a re-INVITE): the specs change; a path that learnt
    /// nothing takes its new SDP address, a peer moved to another IP is learnt afresh;
    /// counters stay.
    pub fn update(&mut self, legs: [LegSpec; 2]) {
        for (leg, spec) in self.legs.iter_mut().zip(legs) {
            leg.update(spec);
        }
    }

    /// Both legs' counters at `now_ns`.
    pub fn stats(&self, now_ns: u64) -> ferroswitch_shared::msg::StreamStats {
        ferroswitch_shared::msg::StreamStats { legs: [self.legs[0].stats(now_ns), self.legs[1].stats(now_ns)] }
    }

    /// Nanoseconds since the newest RTP packet on either leg at `now_ns` (None: none yet).
    pub fn idle_ns(&self, now_ns: u64) -> Option<u64> {
        let last = self.legs.iter().filter_map(|l| l.stats.last_packet_ns()).max()?;
        Some(now_ns.saturating_sub(last))
    }

    /// Leg `i`.
    pub fn leg(&self, i: usize) -> &Leg {
        &self.legs[i & 1]
    }

    /// A datagram on leg `from`'s port the worker refused before the relay saw it (a
    /// media loop): counted.
    pub fn refuse(&mut self, from: usize, why: Drop) -> Verdict {
        self.legs[from & 1].counters.drop(why);
        Verdict::Drop(why)
    }

    /// The leg packets from leg `from` go to.
    fn to_leg(&self, from: usize) -> usize {
        if self.echo {
            from
        } else {
            from ^ 1
        }
    }

    /// An RTP packet from `src` arrived on leg `from`'s port at `now_ns`.
    pub fn on_rtp(
        &mut self,
        from: usize,
        src: SocketAddr,
        now_ns: u64,
        pkt: &mut [u8],
        mut notices: impl FnMut(Notice),
    ) -> Verdict {
        let from = from & 1;
        let (ssrc, seq, ts, pt, dtmf) = match Rtp::parse(pkt) {
            Ok(r) => {
                let dtmf =
                    if self.legs[from].is_dtmf(r.payload_type()) { TelephoneEvent::parse(r.payload()) } else { None };
                (r.ssrc(), r.seq(), r.timestamp(), r.payload_type(), dtmf)
            }
            Err(_) => return self.refuse(from, Drop::Malformed),
        };
        let policy = self.policy;
        let leg = &mut self.legs[from];
        let admit = match leg.admit(from, src, Some(ssrc), now_ns, &policy, &mut notices) {
            Ok(a) => a,
            Err(why) => return self.refuse(from, why),
        };
        let clock_rate = leg.clock_rate(pt);
        leg.stats.on_packet(seq, ts, pkt.len(), now_ns, clock_rate);
        if let Some(ev) = dtmf.filter(|e| e.end && admit == Admit::Peer) {
            if leg.dtmf_ts != Some(ts) {
                leg.dtmf_ts = Some(ts);
                notices(Notice::Dtmf { leg: from, event: ev });
            }
        }
        let to_leg = self.to_leg(from);
        let to_leg = &mut self.legs[to_leg];
        let Some(to) = to_leg.rtp.to else {
            return self.refuse(from, Drop::NoPeer);
        };
        if self.transcoder.is_none() && self.pending.is_some() {
            // The transcoder is being made: nothing to send the other side yet.
            return self.refuse(from, Drop::NoPeer);
        }
        match (admit, self.transcoder.is_some()) {
            (Admit::Peer, true) => return Verdict::Transcode { to },
            // A stranger's packets are not the leg's codec stream: never passed on raw.
            (Admit::Stranger, true) => return self.refuse(from, Drop::StrictSource),
            (Admit::Peer, false) => to_leg.toward.apply(pkt, ssrc, seq, ts, now_ns, clock_rate),
            (Admit::Stranger, false) => {}
        }
        to_leg.counters.sent += 1;
        to_leg.counters.sent_bytes += pkt.len() as u64;
        Verdict::Forward { to }
    }

    /// An RTCP packet from `src` arrived on leg `from`'s RTCP port (or its RTP port with
    /// rtcp-mux) at `now_ns`: relayed unchanged (feedback such as PLI, FIR and NACK
    /// included).
    pub fn on_rtcp(
        &mut self,
        from: usize,
        src: SocketAddr,
        now_ns: u64,
        pkt: &[u8],
        mut notices: impl FnMut(Notice),
    ) -> Verdict {
        let from = from & 1;
        if rtp::classify(pkt) != Some(rtp::Kind::Rtcp) {
            return self.refuse(from, Drop::Malformed);
        }
        let policy = self.policy;
        if let Err(why) = self.legs[from].admit(from, src, None, now_ns, &policy, &mut notices) {
            return self.refuse(from, why);
        }
        self.legs[from].counters.rtcp += 1;
        let to_leg = self.to_leg(from);
        let to_leg = &mut self.legs[to_leg];
        match to_leg.rtcp.to {
            Some(to) => {
                to_leg.counters.sent += 1;
                to_leg.counters.sent_bytes += pkt.len() as u64;
                Verdict::Forward { to }
            }
            None => self.refuse(from, Drop::NoPeer),
        }
    }
}

#[cfg(test)]
mod tests {
    use ferroswitch_shared::msg::{Endpoint, PayloadMap};

    use super::super::rtp::tests::packet;
    use super::*;

    const MS: u64 = 1_000_000;

    fn leg(remote: Option<&str>, flags: u32) -> LegSpec {
        let mut l = LegSpec {
            local: Endpoint::from_addr("127.0.0.1:20000".parse().unwrap()),
            remote: remote.map(|r| Endpoint::from_addr(r.parse().unwrap())).unwrap_or_default(),
            flags,
            codec_count: 2,
            ..LegSpec::default()
        };
        l.codecs[0] = PayloadMap { clock_rate: 8000, pt: 0, codec: codec::PCMU, channels: 1, _pad: 0 };
        l.codecs[1] = PayloadMap { clock_rate: 8000, pt: 101, codec: codec::TELEPHONE_EVENT, channels: 1, _pad: 0 };
        l
    }

    fn a(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    impl Relay {
        fn new2(legs: [LegSpec; 2]) -> Relay {
            Relay::new(legs, Policy::default())
        }
    }

    const RTCP: [u8; 8] = [0x80, 200, 0, 6, 0, 0, 0, 7];

    #[test]
    fn a_transcoding_relay_sends_the_peers_audio_through_the_transcoder_and_never_a_strangers() {
        let mut b = leg(Some("192.0.2.2:5000"), 0);
        b.codecs[0] = PayloadMap { clock_rate: 8000, pt: 8, codec: codec::PCMA, channels: 1, _pad: 0 };
        // Not strict, not symmetric: a stranger would be relayed as it is in a plain relay.
        let mut r = Relay::new2([leg(Some("192.0.2.1:4000"), 0), b]);
        r.set_transcoding(true, 7).unwrap();
        assert!(r.transcodes());
        let mut p = packet(0, 1, 160, 7);
        assert_eq!(r.on_rtp(0, a("192.0.2.1:4000"), 0, &mut p, |_| {}), Verdict::Transcode { to: a("192.0.2.2:5000") });
        let mut out = Outbox::new();
        assert_eq!(r.transcode(0, &p, &mut out, |_| {}), Outcome::Audio { concealed: 0 });
        let sent: Vec<u8> = out.packets.iter().map(|q| Rtp::parse(q).unwrap().payload_type()).collect();
        assert_eq!(sent, [8], "PCMU in, PCMA out");
        assert_eq!(r.leg(1).stats(0).sent, 1);
        let mut stranger = packet(0, 9, 900, 99);
        assert_eq!(r.on_rtp(0, a("203.0.113.5:4000"), 0, &mut stranger, |_| {}), Verdict::Drop(Drop::StrictSource));
        // Off again (a re-INVITE that found a common codec): relayed as before.
        r.set_transcoding(false, 0).unwrap();
        assert_eq!(r.on_rtp(0, a("192.0.2.1:4000"), 0, &mut p, |_| {}), Verdict::Forward { to: a("192.0.2.2:5000") });
        // A leg with nothing transcodable: refused, nothing half made.
        let mut other = leg(Some("192.0.2.2:5000"), 0);
        other.codecs[0].codec = codec::OTHER;
        other.codec_count = 1;
        let mut r = Relay::new2([leg(Some("192.0.2.1:4000"), 0), other]);
        assert!(r.set_transcoding(true, 1).is_err());
        assert!(!r.transcodes());
    }

    #[test]
    fn a_transcoder_made_elsewhere_is_waited_for_then_installed_only_for_its_order() {
        use ferroswitch_shared::msg::session_flags;
        let mut b = leg(Some("192.0.2.2:5000"), 0);
        b.codecs[0] = PayloadMap { clock_rate: 8000, pt: 8, codec: codec::PCMA, channels: 1, _pad: 0 };
        let mut r = Relay::new2([leg(Some("192.0.2.1:4000"), 0), b]);
        let order = r.apply_flags(session_flags::TRANSCODE).unwrap();
        assert!(order.order && order.old.is_none());
        r.set_pending(Some(3));
        // Until it comes, the audio has nowhere to go (and is counted so).
        let mut p = packet(0, 1, 160, 7);
        assert_eq!(r.on_rtp(0, a("192.0.2.1:4000"), 0, &mut p, |_| {}), Verdict::Drop(Drop::NoPeer));
        let specs = r.specs();
        let made = || Box::new(Transcoder::new(&specs, &opus::Params::default(), 1).unwrap());
        let t = made();
        assert!(r.install(2, t).is_err(), "another order's transcoder is handed back");
        let t = made();
        assert!(r.install(3, t).is_ok());
        assert_eq!(r.on_rtp(0, a("192.0.2.1:4000"), 0, &mut p, |_| {}), Verdict::Transcode { to: a("192.0.2.2:5000") });
        // The same flags again: nothing to order. Transcoding off: the transcoder comes back out.
        assert!(!r.apply_flags(session_flags::TRANSCODE).unwrap().order);
        let off = r.apply_flags(0).unwrap();
        assert!(!off.order && off.old.is_some());
        assert_eq!(r.on_rtp(0, a("192.0.2.1:4000"), 0, &mut p, |_| {}), Verdict::Forward { to: a("192.0.2.2:5000") });
        // Nothing transcodable: refused before anything is ordered.
        let mut other = leg(Some("192.0.2.2:5000"), 0);
        other.codecs[0].codec = codec::OTHER;
        other.codec_count = 1;
        let mut r = Relay::new2([leg(Some("192.0.2.1:4000"), 0), other]);
        assert_eq!(r.apply_flags(session_flags::TRANSCODE).err(), Some(TranscodeError::NoCodec(1)));
    }

    #[test]
    fn packets_go_to_the_other_legs_signalled_peer_both_ways() {
        let mut r = Relay::new2([leg(Some("192.0.2.1:4000"), 0), leg(Some("192.0.2.2:5000"), 0)]);
        let mut p = packet(0, 1, 160, 7);
        assert_eq!(r.on_rtp(0, a("192.0.2.1:4000"), 0, &mut p, |_| {}), Verdict::Forward { to: a("192.0.2.2:5000") });
        assert_eq!(r.on_rtp(1, a("192.0.2.2:5000"), 0, &mut p, |_| {}), Verdict::Forward { to: a("192.0.2.1:4000") });
        // Untouched: a single source needs no rewriting.
        assert_eq!(p, packet(0, 1, 160, 7));
        assert_eq!(r.leg(0).stats(0).packets, 1);
        assert_eq!(r.on_rtcp(0, a("192.0.2.1:4001"), 0, &RTCP, |_| {}), Verdict::Forward { to: a("192.0.2.2:5001") });
        assert_eq!((r.leg(1).stats(0).sent, r.leg(0).stats(0).sent), (2, 1));
    }

    #[test]
    fn symmetric_legs_latch_the_signalled_ip_on_any_port_and_strict_source_drops_others() {
        let flags = leg_flags::SYMMETRIC | leg_flags::STRICT_SOURCE;
        // Leg B is behind a NAT: the signalling named its public IP, the port differs.
        let mut r = Relay::new2([leg(Some("192.0.2.1:4000"), 0), leg(Some("198.51.100.9:5000"), flags)]);
        let mut heard = Vec::new();
        let mut p = packet(0, 1, 160, 7);
        // Before B latches, A's packets go to B's signalled address.
        assert_eq!(
            r.on_rtp(0, a("192.0.2.1:4000"), 0, &mut p, |n| heard.push(n)),
            Verdict::Forward { to: a("198.51.100.9:5000") }
        );
        assert_eq!(
            r.on_rtp(1, a("198.51.100.9:6000"), 0, &mut p, |n| heard.push(n)),
            Verdict::Forward { to: a("192.0.2.1:4000") }
        );
        assert_eq!(heard, vec![Notice::Latched { leg: 1, peer: a("198.51.100.9:6000"), rtcp: false }]);
        assert_eq!(
            r.on_rtp(0, a("192.0.2.1:4000"), 0, &mut p, |_| {}),
            Verdict::Forward { to: a("198.51.100.9:6000") }
        );
        // Someone else on B's port: dropped and counted.
        assert_eq!(r.on_rtp(1, a("203.0.113.66:6000"), 0, &mut p, |_| {}), Verdict::Drop(Drop::StrictSource));
        let b = r.leg(1).stats(0);
        assert_eq!((b.dropped, b.drop_strict_source, b.packets), (1, 1, 1));
    }

    #[test]
    fn a_stranger_cannot_win_the_latch_before_the_peer_sends() {
        let flags = leg_flags::SYMMETRIC | leg_flags::STRICT_SOURCE;
        let mut r = Relay::new2([leg(Some("192.0.2.1:4000"), flags), leg(Some("192.0.2.2:5000"), flags)]);
        let mut heard = Vec::new();
        // The stranger's packet reaches B's port first: dropped, nothing latched.
        let mut p = packet(0, 1, 160, 0x5757);
        assert_eq!(
            r.on_rtp(1, a("203.0.113.66:5000"), 0, &mut p, |n| heard.push(n)),
            Verdict::Drop(Drop::StrictSource)
        );
        let mut p = packet(0, 1, 160, 0x5757);
        assert_eq!(
            r.on_rtcp(1, a("203.0.113.66:5001"), 0, &RTCP, |n| heard.push(n)),
            Verdict::Drop(Drop::StrictSource)
        );
        assert!(heard.is_empty());
        // A's audio still goes to B's signalled address, not to the stranger.
        assert_eq!(r.on_rtp(0, a("192.0.2.1:4000"), 0, &mut p, |_| {}), Verdict::Forward { to: a("192.0.2.2:5000") });
        // The genuine peer latches.
        let mut p = packet(0, 1, 160, 8);
        assert_eq!(
            r.on_rtp(1, a("192.0.2.2:5000"), 0, &mut p, |n| heard.push(n)),
            Verdict::Forward { to: a("192.0.2.1:4000") }
        );
        assert_eq!(heard, vec![Notice::Latched { leg: 1, peer: a("192.0.2.2:5000"), rtcp: false }]);
        assert_eq!(r.leg(1).stats(0).drop_strict_source, 2);
    }

    #[test]
    fn after_latching_a_strangers_packets_are_dropped_or_relayed_unrewritten() {
        let strict = leg_flags::SYMMETRIC | leg_flags::STRICT_SOURCE;
        for (flags, expect) in [
            (strict, Verdict::Drop(Drop::StrictSource)),
            (leg_flags::SYMMETRIC, Verdict::Forward { to: a("192.0.2.2:5000") }),
        ] {
            let mut r = Relay::new2([leg(Some("192.0.2.1:4000"), flags), leg(Some("192.0.2.2:5000"), flags)]);
            for i in 0..3u16 {
                let mut p = packet(0, 100 + i, 160 * u32::from(i), 0xaaaa);
                r.on_rtp(0, a("192.0.2.1:4000"), u64::from(i) * 20 * MS, &mut p, |_| {});
            }
            // Injection: another IP, its own SSRC, on A's port.
            let mut p = packet(0, 7, 99, 0x6666);
            assert_eq!(r.on_rtp(0, a("203.0.113.66:4000"), 60 * MS, &mut p, |_| {}), expect);
            // Never disguised as the genuine stream.
            assert_eq!(Rtp::parse(&p).unwrap().ssrc(), 0x6666);
            // The genuine stream still flows to B, and the latch did not move.
            let mut p = packet(0, 103, 480, 0xaaaa);
            assert_eq!(
                r.on_rtp(0, a("192.0.2.1:4000"), 80 * MS, &mut p, |_| {}),
                Verdict::Forward { to: a("192.0.2.2:5000") }
            );
            let mut p = packet(0, 1, 160, 8);
            assert_eq!(
                r.on_rtp(1, a("192.0.2.2:5000"), 80 * MS, &mut p, |_| {}),
                Verdict::Forward { to: a("192.0.2.1:4000") }
            );
        }
    }

    #[test]
    fn a_nat_binding_that_changes_port_moves_the_latch_and_is_reported() {
        let flags = leg_flags::SYMMETRIC | leg_flags::STRICT_SOURCE;
        let mut r = Relay::new2([leg(Some("192.0.2.1:4000"), flags), leg(Some("192.0.2.2:5000"), flags)]);
        let mut heard = Vec::new();
        let mut p = packet(0, 1, 160, 7);
        r.on_rtp(0, a("192.0.2.1:4000"), 0, &mut p, |n| heard.push(n));
        let mut p = packet(0, 2, 320, 7);
        assert_eq!(
            r.on_rtp(0, a("192.0.2.1:4100"), 20 * MS, &mut p, |n| heard.push(n)),
            Verdict::Forward { to: a("192.0.2.2:5000") }
        );
        assert_eq!(
            heard[1],
            Notice::Relatched { leg: 0, from: a("192.0.2.1:4000"), to: a("192.0.2.1:4100"), rtcp: false }
        );
        let mut p = packet(0, 1, 160, 8);
        assert_eq!(r.on_rtp(1, a("192.0.2.2:5000"), 0, &mut p, |_| {}), Verdict::Forward { to: a("192.0.2.1:4100") });
    }

    #[test]
    fn without_a_signalled_address_a_new_ssrc_moves_the_latch_only_within_the_learning_window() {
        let flags = leg_flags::SYMMETRIC | leg_flags::STRICT_SOURCE;
        let mut r = Relay::new2([leg(None, flags), leg(Some("192.0.2.2:5000"), flags)]);
        let mut heard = Vec::new();
        let mut p = packet(0, 1, 160, 0x1111);
        assert_eq!(
            r.on_rtp(0, a("198.51.100.1:4000"), 0, &mut p, |n| heard.push(n)),
            Verdict::Forward { to: a("192.0.2.2:5000") }
        );
        // The same SSRC from elsewhere: not the same stream's new path.
        let mut p = packet(0, 2, 320, 0x1111);
        assert_eq!(r.on_rtp(0, a("198.51.100.2:4000"), MS, &mut p, |_| {}), Verdict::Drop(Drop::StrictSource));
        // A new SSRC within the window (3 s): the latch moves.
        let mut p = packet(0, 50, 9000, 0x2222);
        assert_eq!(
            r.on_rtp(0, a("198.51.100.2:4000"), 2_000 * MS, &mut p, |n| heard.push(n)),
            Verdict::Forward { to: a("192.0.2.2:5000") }
        );
        assert_eq!(heard.len(), 2);
        // After it, nobody else.
        let mut p = packet(0, 1, 160, 0x3333);
        assert_eq!(r.on_rtp(0, a("198.51.100.3:4000"), 3_100 * MS, &mut p, |_| {}), Verdict::Drop(Drop::StrictSource));
    }

    #[test]
    fn rtcp_first_latches_only_the_rtcp_path_and_the_answer_still_gives_rtp_its_peer() {
        let flags = leg_flags::SYMMETRIC | leg_flags::STRICT_SOURCE | leg_flags::LATCH_SIGNALLED;
        // A B-leg before its answer: nothing signalled.
        let mut r = Relay::new2([leg(Some("192.0.2.1:4000"), flags), leg(None, flags)]);
        let mut heard = Vec::new();
        // B's RTCP before its answer reached the media plane: dropped.
        assert_eq!(r.on_rtcp(1, a("192.0.2.2:5001"), 0, &RTCP, |n| heard.push(n)), Verdict::Drop(Drop::StrictSource));
        let mut p = packet(0, 1, 160, 7);
        assert_eq!(r.on_rtp(0, a("192.0.2.1:4000"), 0, &mut p, |n| heard.push(n)), Verdict::Drop(Drop::NoPeer));
        // The answer: B at 192.0.2.2:5000.
        r.update([leg(Some("192.0.2.1:4000"), flags), leg(Some("192.0.2.2:5000"), flags)]);
        // B sends RTCP first (as baresip does on answering), from its RTCP port.
        assert_eq!(
            r.on_rtcp(1, a("192.0.2.2:5001"), MS, &RTCP, |n| heard.push(n)),
            Verdict::Forward { to: a("192.0.2.1:4001") }
        );
        // A's RTP goes to B's RTP address, not to where B's RTCP came from.
        let mut p = packet(0, 2, 320, 7);
        assert_eq!(
            r.on_rtp(0, a("192.0.2.1:4000"), 20 * MS, &mut p, |n| heard.push(n)),
            Verdict::Forward { to: a("192.0.2.2:5000") }
        );
        assert!(heard.contains(&Notice::Latched { leg: 1, peer: a("192.0.2.2:5001"), rtcp: true }));
        let (a_, b) = (r.leg(0).stats(0), r.leg(1).stats(0));
        assert_eq!((a_.drop_no_peer, b.drop_strict_source, b.rtcp_packets, b.sent, a_.sent), (1, 1, 1, 1, 1));
    }

    #[test]
    fn a_reinvite_that_moves_the_peer_to_another_ip_is_learnt_afresh() {
        let flags = leg_flags::SYMMETRIC | leg_flags::STRICT_SOURCE;
        let mut r = Relay::new2([leg(Some("192.0.2.1:4000"), flags), leg(Some("192.0.2.2:5000"), flags)]);
        let mut p = packet(0, 1, 160, 7);
        r.on_rtp(1, a("192.0.2.2:5002"), 0, &mut p, |_| {});
        // Same IP, new port in the SDP: the learnt address stays.
        r.update([leg(Some("192.0.2.1:4000"), flags), leg(Some("192.0.2.2:6000"), flags)]);
        let mut p = packet(0, 1, 160, 8);
        assert_eq!(r.on_rtp(0, a("192.0.2.1:4000"), 0, &mut p, |_| {}), Verdict::Forward { to: a("192.0.2.2:5002") });
        // Another phone (a transfer): its address, and the old one is refused.
        r.update([leg(Some("192.0.2.1:4000"), flags), leg(Some("192.0.2.3:7000"), flags)]);
        assert_eq!(r.on_rtp(0, a("192.0.2.1:4000"), 0, &mut p, |_| {}), Verdict::Forward { to: a("192.0.2.3:7000") });
        assert_eq!(r.on_rtp(1, a("192.0.2.2:5002"), 0, &mut p, |_| {}), Verdict::Drop(Drop::StrictSource));
    }

    #[test]
    fn a_loop_refused_by_the_worker_is_counted_on_its_leg() {
        let mut r = Relay::new2([leg(Some("192.0.2.1:4000"), 0), leg(Some("192.0.2.2:5000"), 0)]);
        assert_eq!(r.refuse(1, Drop::Loop), Verdict::Drop(Drop::Loop));
        let b = r.leg(1).stats(0);
        assert_eq!((b.dropped, b.drop_loop), (1, 1));
    }

    #[test]
    fn a_leg_without_a_usable_sdp_address_latches_and_waits_for_its_peer() {
        let mut r = Relay::new2([leg(Some("192.0.2.1:4000"), 0), leg(Some("0.0.0.0:0"), 0)]);
        let mut p = packet(0, 1, 160, 7);
        assert_eq!(r.on_rtp(0, a("192.0.2.1:4000"), 0, &mut p, |_| {}), Verdict::Drop(Drop::NoPeer));
        let mut heard = Vec::new();
        assert_eq!(
            r.on_rtp(1, a("192.0.2.7:7000"), 0, &mut p, |n| heard.push(n)),
            Verdict::Forward { to: a("192.0.2.1:4000") }
        );
        assert_eq!(heard, vec![Notice::Latched { leg: 1, peer: a("192.0.2.7:7000"), rtcp: false }]);
        assert_eq!(r.on_rtp(0, a("192.0.2.1:4000"), 0, &mut p, |_| {}), Verdict::Forward { to: a("192.0.2.7:7000") });
    }

    #[test]
    fn a_new_source_continues_the_stream_the_far_end_sees() {
        let mut r = Relay::new2([leg(Some("192.0.2.1:4000"), 0), leg(Some("192.0.2.2:5000"), 0)]);
        for i in 0..3u16 {
            let mut p = packet(0, 100 + i, 1000 + 160 * u32::from(i), 0xaaaa);
            r.on_rtp(0, a("192.0.2.1:4000"), u64::from(i) * 20 * MS, &mut p, |_| {});
        }
        // A re-INVITE moved A to another phone: new SSRC, seq and timestamp base.
        let mut p = packet(0, 9000, 555_555, 0xbbbb);
        r.on_rtp(0, a("192.0.2.1:4000"), 60 * MS, &mut p, |_| {});
        let out = Rtp::parse(&p).unwrap();
        assert_eq!((out.ssrc(), out.seq(), out.timestamp()), (0xaaaa, 103, 1000 + 160 * 3));
        let mut p = packet(0, 9001, 555_715, 0xbbbb);
        r.on_rtp(0, a("192.0.2.1:4000"), 80 * MS, &mut p, |_| {});
        let out = Rtp::parse(&p).unwrap();
        assert_eq!((out.ssrc(), out.seq(), out.timestamp()), (0xaaaa, 104, 1000 + 160 * 4));
    }

    #[test]
    fn a_telephone_event_is_reported_once_at_its_end_rfc4733() {
        let mut r = Relay::new2([leg(Some("192.0.2.1:4000"), 0), leg(Some("192.0.2.2:5000"), 0)]);
        let mut heard = Vec::new();
        let ev = |end: bool, dur: u16| {
            let mut p = packet(101, 1, 8000, 7);
            p.truncate(12);
            p.extend([5, if end { 0x8a } else { 0x0a }, (dur >> 8) as u8, dur as u8]);
            p
        };
        for (i, (end, dur)) in
            [(false, 160), (false, 320), (true, 480), (true, 480), (true, 480)].into_iter().enumerate()
        {
            let mut p = ev(end, dur);
            p[3] = i as u8; // new sequence numbers, same event timestamp
            r.on_rtp(0, a("192.0.2.1:4000"), 0, &mut p, |n| heard.push(n));
        }
        assert_eq!(
            heard,
            vec![Notice::Dtmf { leg: 0, event: TelephoneEvent { event: 5, end: true, volume: 10, duration: 480 } }]
        );
    }

    #[test]
    fn garbage_is_dropped_and_counted() {
        let mut r = Relay::new2([leg(Some("192.0.2.1:4000"), 0), leg(Some("192.0.2.2:5000"), 0)]);
        let mut junk = vec![0x12, 0x34, 0x56];
        assert_eq!(r.on_rtp(0, a("192.0.2.1:4000"), 0, &mut junk, |_| {}), Verdict::Drop(Drop::Malformed));
        assert_eq!(r.on_rtcp(0, a("192.0.2.1:4001"), 0, &junk, |_| {}), Verdict::Drop(Drop::Malformed));
        let s = r.leg(0).stats(0);
        assert_eq!((s.dropped, s.drop_malformed), (2, 2));
    }

    mod strangers {
        use proptest::prelude::*;

        use super::*;

        /// The two peers' signalled addresses, then strangers.
        const IPS: [&str; 4] = ["192.0.2.1", "192.0.2.2", "203.0.113.7", "198.51.100.99"];

        proptest! {
            /// Whatever anyone sends, in any order, on strict legs: nothing is ever sent to an
            /// address the signalling did not name, a stranger's packet is never relayed, and
            /// the drop counters add up.
            #[test]
            fn no_stranger_is_ever_relayed_to_or_from(
                packets in prop::collection::vec(
                    (0usize..2, 0usize..4, 0u16..3, any::<bool>(), any::<u32>(), prop::collection::vec(any::<u8>(), 0..24), any::<bool>()),
                    0..300,
                ),
            ) {
                let flags = leg_flags::SYMMETRIC | leg_flags::STRICT_SOURCE | leg_flags::LATCH_SIGNALLED;
                let mut r = Relay::new2([leg(Some("192.0.2.1:4000"), flags), leg(Some("192.0.2.2:5000"), flags)]);
                let mut now = 0;
                for (on, who, port, rtcp, ssrc, payload, well_formed) in packets {
                    now += 7 * MS;
                    let src = SocketAddr::new(IPS[who].parse().unwrap(), 4000 + 1000 * who as u16 + port);
                    let mut pkt = if well_formed {
                        let mut p = packet(0, (now / MS) as u16, (now / MS) as u32 * 8, ssrc);
                        if rtcp {
                            p[1] = 200;
                        }
                        p.extend(&payload);
                        p
                    } else {
                        payload
                    };
                    let v = if rtcp { r.on_rtcp(on, src, now, &pkt, |_| {}) } else { r.on_rtp(on, src, now, &mut pkt, |_| {}) };
                    if let Verdict::Forward { to } = v {
                        prop_assert!(who == on, "{src} on leg {on}'s port was relayed");
                        prop_assert!(to.ip() == IPS[0].parse::<std::net::IpAddr>().unwrap() || to.ip() == IPS[1].parse::<std::net::IpAddr>().unwrap(), "sent to {to}");
                    }
                }
                for i in 0..2 {
                    let s = r.leg(i).stats(now);
                    prop_assert_eq!(s.dropped, s.drop_no_peer + s.drop_strict_source + s.drop_malformed + s.drop_loop);
                }
            }
        }
    }
}
