//! One session's relay decisions, sans-IO: for a packet that arrived on a leg's port,
//! where it goes (the other leg's peer) or why it is dropped, with latching, strict
//! source, SSRC/sequence/timestamp continuity and RFC 4733 events.
//!
//! Leg `i`'s peer sends to our `legs[i].local`; we forward to the other leg's peer.
//! Symmetric RTP (or an unusable SDP address) makes a leg learn its peer from the first
//! packet ("latching"); with strict source, packets from anyone else are then dropped.

use std::net::SocketAddr;

use ferroswitch_shared::msg::{codec, leg_flags, LegSpec, LegStats};

use super::rtp::{self, Rtp, TelephoneEvent};
use super::stats::RecvStats;

/// Why a packet was not relayed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drop {
    /// Not a valid RTP/RTCP packet.
    Malformed,
    /// From someone other than the latched (or signalled) peer, with strict source.
    StrictSource,
    /// The other leg's peer is not known yet (nothing latched, no SDP address).
    NoPeer,
}

/// What to do with a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Send it (possibly rewritten in place) from the other leg's local port to `to`.
    Forward {
        /// The destination.
        to: SocketAddr,
    },
    /// Do not relay it.
    Drop(Drop),
}

/// Something the control plane should hear.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Notice {
    /// Leg `leg`'s peer was learnt.
    Latched {
        /// The leg.
        leg: usize,
        /// Its address.
        peer: SocketAddr,
    },
    /// An RFC 4733 event ended on leg `leg`.
    Dtmf {
        /// The leg.
        leg: usize,
        /// The event.
        event: TelephoneEvent,
    },
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

/// One leg's relay state.
#[derive(Debug, Clone)]
pub struct Leg {
    spec: LegSpec,
    /// Where this leg's peer gets RTP: the SDP address, then the latched one.
    peer: Option<SocketAddr>,
    rtcp_peer: Option<SocketAddr>,
    latched: bool,
    stats: RecvStats,
    rtcp_packets: u64,
    toward: Continuity,
    /// The timestamp of the last telephone event reported (reported once per event).
    dtmf_ts: Option<u32>,
}

impl Leg {
    fn new(spec: LegSpec) -> Leg {
        let peer = spec.remote.addr().filter(|a| !a.ip().is_unspecified() && a.port() != 0);
        let rtcp_peer = peer.map(|p| {
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
            peer,
            rtcp_peer,
            latched: false,
            stats: RecvStats::default(),
            rtcp_packets: 0,
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

    /// Checks `src` against this leg's peer, latching it if this leg may; false to drop.
    fn admit(&mut self, leg: usize, src: SocketAddr, rtcp: bool, notices: &mut impl FnMut(Notice)) -> bool {
        let symmetric = self.spec.flags & leg_flags::SYMMETRIC != 0 || self.peer.is_none();
        if !self.latched && symmetric {
            self.latched = true;
            if rtcp {
                self.rtcp_peer = Some(src);
            } else {
                self.peer = Some(src);
                if self.spec.flags & leg_flags::RTCP_MUX != 0 || self.rtcp_peer.is_none() {
                    self.rtcp_peer = Some(src);
                }
            }
            notices(Notice::Latched { leg, peer: src });
            return true;
        }
        if self.spec.flags & leg_flags::STRICT_SOURCE == 0 {
            return true;
        }
        let expected = if rtcp { self.rtcp_peer } else { self.peer };
        expected.is_none_or(|e| e == src) || (rtcp && self.peer.is_some_and(|p| p.ip() == src.ip()))
    }

    /// This leg's counters, at `now_ns`.
    pub fn stats(&self, now_ns: u64) -> LegStats {
        self.stats.snapshot(now_ns)
    }

    /// Where this leg's peer gets RTP (None: not known yet).
    pub fn peer(&self) -> Option<SocketAddr> {
        self.peer
    }
}

/// A session: two legs relayed to each other.
#[derive(Debug, Clone)]
pub struct Relay {
    legs: [Leg; 2],
    /// Leg A's packets go back to leg A (the echo application).
    echo: bool,
}

impl Relay {
    /// A relay for two legs as signalled.
    pub fn new(legs: [LegSpec; 2]) -> Relay {
        Relay { legs: [Leg::new(legs[0]), Leg::new(legs[1])], echo: false }
    }

    /// An echo: what leg A's peer sends comes back to it (from the same port). The peer is
    /// latched from its packets when its SDP address is unusable.
    pub fn echo(leg: LegSpec) -> Relay {
        Relay { legs: [Leg::new(leg), Leg::new(LegSpec::default())], echo: true }
    }

    /// Whether this relay echoes (sends from the receiving leg's own socket).
    pub fn is_echo(&self) -> bool {
        self.echo
    }

    /// New signalling for both legs (a re-INVITE): the specs change, and a leg that was
    /// not latched takes its new SDP address; counters and latched peers stay.
    pub fn update(&mut self, legs: [LegSpec; 2]) {
        for (leg, spec) in self.legs.iter_mut().zip(legs) {
            let fresh = Leg::new(spec);
            leg.spec = spec;
            if !leg.latched {
                leg.peer = fresh.peer;
                leg.rtcp_peer = fresh.rtcp_peer;
            }
        }
    }

    /// Both legs' counters at `now_ns`.
    pub fn stats(&self, now_ns: u64) -> ferroswitch_shared::msg::StreamStats {
        ferroswitch_shared::msg::StreamStats { legs: [self.legs[0].stats(now_ns), self.legs[1].stats(now_ns)] }
    }

    /// Nanoseconds since the newest packet on either leg at `now_ns` (None: none yet).
    pub fn idle_ns(&self, now_ns: u64) -> Option<u64> {
        let last = self.legs.iter().filter_map(|l| l.stats.last_packet_ns()).max()?;
        Some(now_ns.saturating_sub(last))
    }

    /// Leg `i`.
    pub fn leg(&self, i: usize) -> &Leg {
        &self.legs[i & 1]
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
            Err(_) => {
                self.legs[from].stats.on_dropped();
                return Verdict::Drop(Drop::Malformed);
            }
        };
        let leg = &mut self.legs[from];
        if !leg.admit(from, src, false, &mut notices) {
            leg.stats.on_dropped();
            return Verdict::Drop(Drop::StrictSource);
        }
        let clock_rate = leg.clock_rate(pt);
        leg.stats.on_packet(seq, ts, pkt.len(), now_ns, clock_rate);
        if let Some(ev) = dtmf.filter(|e| e.end) {
            if leg.dtmf_ts != Some(ts) {
                leg.dtmf_ts = Some(ts);
                notices(Notice::Dtmf { leg: from, event: ev });
            }
        }
        let to_leg = &mut self.legs[if self.echo { from } else { from ^ 1 }];
        let Some(to) = to_leg.peer else {
            return Verdict::Drop(Drop::NoPeer);
        };
        to_leg.toward.apply(pkt, ssrc, seq, ts, now_ns, clock_rate);
        Verdict::Forward { to }
    }

    /// An RTCP packet from `src` arrived on leg `from`'s RTCP port (or its RTP port with
    /// rtcp-mux): relayed unchanged (feedback such as PLI, FIR and NACK included).
    pub fn on_rtcp(&mut self, from: usize, src: SocketAddr, pkt: &[u8], mut notices: impl FnMut(Notice)) -> Verdict {
        let from = from & 1;
        if rtp::classify(pkt) != Some(rtp::Kind::Rtcp) {
            return Verdict::Drop(Drop::Malformed);
        }
        let leg = &mut self.legs[from];
        if !leg.admit(from, src, true, &mut notices) {
            return Verdict::Drop(Drop::StrictSource);
        }
        leg.rtcp_packets += 1;
        match self.legs[if self.echo { from } else { from ^ 1 }].rtcp_peer {
            Some(to) => Verdict::Forward { to },
            None => Verdict::Drop(Drop::NoPeer),
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

    #[test]
    fn packets_go_to_the_other_legs_signalled_peer_both_ways() {
        let mut r = Relay::new([leg(Some("192.0.2.1:4000"), 0), leg(Some("192.0.2.2:5000"), 0)]);
        let mut p = packet(0, 1, 160, 7);
        assert_eq!(r.on_rtp(0, a("192.0.2.1:4000"), 0, &mut p, |_| {}), Verdict::Forward { to: a("192.0.2.2:5000") });
        assert_eq!(r.on_rtp(1, a("192.0.2.2:5000"), 0, &mut p, |_| {}), Verdict::Forward { to: a("192.0.2.1:4000") });
        // Untouched: a single source needs no rewriting.
        assert_eq!(p, packet(0, 1, 160, 7));
        assert_eq!(r.leg(0).stats(0).packets, 1);
        let rtcp = [0x80, 200, 0, 6, 0, 0, 0, 7];
        assert_eq!(r.on_rtcp(0, a("192.0.2.1:4001"), &rtcp, |_| {}), Verdict::Forward { to: a("192.0.2.2:5001") });
    }

    #[test]
    fn symmetric_legs_latch_from_the_first_packet_and_strict_source_drops_others() {
        let flags = leg_flags::SYMMETRIC | leg_flags::STRICT_SOURCE;
        // Leg B's SDP address is behind a NAT: the packets come from elsewhere.
        let mut r = Relay::new([leg(Some("192.0.2.1:4000"), 0), leg(Some("10.0.0.5:5000"), flags)]);
        let mut heard = Vec::new();
        let mut p = packet(0, 1, 160, 7);
        // Before B latches, A's packets go to B's SDP address.
        assert_eq!(
            r.on_rtp(0, a("192.0.2.1:4000"), 0, &mut p, |n| heard.push(n)),
            Verdict::Forward { to: a("10.0.0.5:5000") }
        );
        assert_eq!(
            r.on_rtp(1, a("198.51.100.9:6000"), 0, &mut p, |n| heard.push(n)),
            Verdict::Forward { to: a("192.0.2.1:4000") }
        );
        assert_eq!(heard, vec![Notice::Latched { leg: 1, peer: a("198.51.100.9:6000") }]);
        assert_eq!(
            r.on_rtp(0, a("192.0.2.1:4000"), 0, &mut p, |_| {}),
            Verdict::Forward { to: a("198.51.100.9:6000") }
        );
        // Someone else on B's port: dropped and counted.
        assert_eq!(r.on_rtp(1, a("203.0.113.66:6000"), 0, &mut p, |_| {}), Verdict::Drop(Drop::StrictSource));
        assert_eq!(r.leg(1).stats(0).dropped, 1);
    }

    #[test]
    fn a_leg_without_a_usable_sdp_address_latches_and_waits_for_its_peer() {
        let mut r = Relay::new([leg(Some("192.0.2.1:4000"), 0), leg(Some("0.0.0.0:0"), 0)]);
        let mut p = packet(0, 1, 160, 7);
        assert_eq!(r.on_rtp(0, a("192.0.2.1:4000"), 0, &mut p, |_| {}), Verdict::Drop(Drop::NoPeer));
        let mut heard = Vec::new();
        assert_eq!(
            r.on_rtp(1, a("192.0.2.7:7000"), 0, &mut p, |n| heard.push(n)),
            Verdict::Forward { to: a("192.0.2.1:4000") }
        );
        assert_eq!(heard, vec![Notice::Latched { leg: 1, peer: a("192.0.2.7:7000") }]);
        assert_eq!(r.on_rtp(0, a("192.0.2.1:4000"), 0, &mut p, |_| {}), Verdict::Forward { to: a("192.0.2.7:7000") });
    }

    #[test]
    fn a_new_source_continues_the_stream_the_far_end_sees() {
        let mut r = Relay::new([leg(Some("192.0.2.1:4000"), 0), leg(Some("192.0.2.2:5000"), 0)]);
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
        let mut r = Relay::new([leg(Some("192.0.2.1:4000"), 0), leg(Some("192.0.2.2:5000"), 0)]);
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
        let mut r = Relay::new([leg(Some("192.0.2.1:4000"), 0), leg(Some("192.0.2.2:5000"), 0)]);
        let mut junk = vec![0x12, 0x34, 0x56];
        assert_eq!(r.on_rtp(0, a("192.0.2.1:4000"), 0, &mut junk, |_| {}), Verdict::Drop(Drop::Malformed));
        assert_eq!(r.leg(0).stats(0).dropped, 1);
        assert_eq!(r.on_rtcp(0, a("192.0.2.1:4001"), &junk, |_| {}), Verdict::Drop(Drop::Malformed));
    }
}
