//! A deterministic simulated datagram network for tests (STYLE.md §3).
//!
//! [`Network`] carries opaque datagrams between socket addresses with seeded loss,
//! duplication and a random one-way delay (so packets overtake each other). Nothing here
//! knows SIP: the transaction tests drive it through [`sip::SipSim`], and the
//! control↔media ring protocol can drive it the same way.
//!
//! Data flow: the driver owns a virtual clock. It calls [`Network::send`] for every
//! datagram an endpoint emits at `now`; the network decides the copy's fate at once
//! (dropped, or queued for `now + delay`, maybe twice), drawing from its own
//! [`SplitMix64`], so one seed always gives the same run. The driver advances its clock
//! to [`Network::next_delivery`] (or an endpoint's timer, if earlier) and drains
//! [`Network::deliver_due`].

pub mod sip;

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;

/// SplitMix64 (Steele, Lea, Flood 2014): a tiny, seedable PRNG whose sequence is fixed by
/// its definition, so a test's outcome cannot change with a dependency's version.
#[derive(Clone, Debug)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    /// A generator whose sequence is determined by `seed`.
    pub fn new(seed: u64) -> Self {
        SplitMix64 { state: seed }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A uniform value in `[0, 1)` with 53 bits of precision.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// True with probability `p` (always false for `p <= 0`, always true for `p >= 1`).
    pub fn chance(&mut self, p: f64) -> bool {
        self.next_f64() < p
    }

    /// A uniform duration in `[min, max]` (nanosecond resolution).
    pub fn duration_between(&mut self, min: Duration, max: Duration) -> Duration {
        let span = max.saturating_sub(min).as_nanos().min(u128::from(u64::MAX)) as u64;
        if span == 0 {
            return min;
        }
        let offset = self.next_u64() % span.saturating_add(1);
        min + Duration::from_nanos(offset)
    }
}

/// One datagram handed out by [`Network::deliver_due`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Packet {
    /// The sender's address.
    pub from: SocketAddr,
    /// The receiver's address.
    pub to: SocketAddr,
    /// The payload, as sent.
    pub bytes: Bytes,
    /// When it was sent.
    pub sent_at: Instant,
    /// When it arrives.
    pub deliver_at: Instant,
}

/// What happened to the traffic so far. Always `sent + duplicated == dropped + delivered
/// + in flight`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Calls to [`Network::send`].
    pub sent: u64,
    /// Copies lost (a duplicated datagram can lose either copy).
    pub dropped: u64,
    /// Extra copies made.
    pub duplicated: u64,
    /// Copies handed out by [`Network::deliver_due`].
    pub delivered: u64,
}

/// A packet in flight, ordered by arrival time and then by the order it was queued, so
/// ties always resolve the same way.
#[derive(Debug)]
struct InFlight {
    seq: u64,
    packet: Packet,
}

impl PartialEq for InFlight {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == std::cmp::Ordering::Equal
    }
}

impl Eq for InFlight {}

impl PartialOrd for InFlight {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for InFlight {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.packet.deliver_at, self.seq).cmp(&(other.packet.deliver_at, other.seq))
    }
}

/// A seeded network of unreliable datagram links between any two addresses.
#[derive(Debug)]
pub struct Network {
    rng: SplitMix64,
    loss: f64,
    duplication: f64,
    min_delay: Duration,
    max_delay: Duration,
    in_flight: BinaryHeap<Reverse<InFlight>>,
    next_seq: u64,
    counters: Counters,
}

impl Network {
    /// A lossless network with a fixed 1 ms one-way delay, drawing from `seed`.
    pub fn new(seed: u64) -> Self {
        Network {
            rng: SplitMix64::new(seed),
            loss: 0.0,
            duplication: 0.0,
            min_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(1),
            in_flight: BinaryHeap::new(),
            next_seq: 0,
            counters: Counters::default(),
        }
    }

    /// Each copy of a datagram is lost with probability `p` (clamped to `[0, 1]`).
    pub fn set_loss(&mut self, p: f64) -> &mut Self {
        self.loss = clamp_probability(p);
        self
    }

    /// Each datagram is sent twice with probability `p` (clamped to `[0, 1]`); each copy
    /// has its own delay and its own chance of loss.
    pub fn set_duplication(&mut self, p: f64) -> &mut Self {
        self.duplication = clamp_probability(p);
        self
    }

    /// One-way delay is uniform in `[min, max]` (swapped if given the wrong way round);
    /// a range wider than the gap between two sends reorders them.
    pub fn set_delay(&mut self, min: Duration, max: Duration) -> &mut Self {
        self.min_delay = min.min(max);
        self.max_delay = min.max(max);
        self
    }

    /// Sends a datagram at `now`.
    pub fn send(&mut self, now: Instant, from: SocketAddr, to: SocketAddr, bytes: Bytes) {
        self.counters.sent += 1;
        let copies = if self.rng.chance(self.duplication) {
            self.counters.duplicated += 1;
            2
        } else {
            1
        };
        for _ in 0..copies {
            if self.rng.chance(self.loss) {
                self.counters.dropped += 1;
                continue;
            }
            let delay = self.rng.duration_between(self.min_delay, self.max_delay);
            let Some(deliver_at) = now.checked_add(delay) else {
                self.counters.dropped += 1;
                continue;
            };
            self.next_seq += 1;
            self.in_flight.push(Reverse(InFlight {
                seq: self.next_seq,
                packet: Packet { from, to, bytes: bytes.clone(), sent_at: now, deliver_at },
            }));
        }
    }

    /// When the next datagram arrives; `None` if nothing is in flight.
    pub fn next_delivery(&self) -> Option<Instant> {
        self.in_flight.peek().map(|r| r.0.packet.deliver_at)
    }

    /// The next datagram due at or before `now`, in arrival order.
    pub fn deliver_due(&mut self, now: Instant) -> Option<Packet> {
        if self.next_delivery()? > now {
            return None;
        }
        let Reverse(p) = self.in_flight.pop()?;
        self.counters.delivered += 1;
        Some(p.packet)
    }

    /// Datagrams sent but not yet delivered.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Traffic counters so far.
    pub fn counters(&self) -> Counters {
        self.counters
    }
}

fn clamp_probability(p: f64) -> f64 {
    if p.is_nan() {
        0.0
    } else {
        p.clamp(0.0, 1.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([192, 0, 2, 1], port))
    }

    /// Sends 1000 numbered datagrams 1 ms apart and returns (arrival offset in µs, number).
    fn run(seed: u64, loss: f64, dup: f64) -> (Vec<(u128, u16)>, Counters) {
        let t0 = Instant::now();
        let mut net = Network::new(seed);
        net.set_loss(loss).set_duplication(dup).set_delay(Duration::from_millis(5), Duration::from_millis(50));
        for i in 0..1000u16 {
            let now = t0 + Duration::from_millis(u64::from(i));
            net.send(now, addr(1), addr(2), Bytes::copy_from_slice(&i.to_be_bytes()));
        }
        let mut got = Vec::new();
        while let Some(at) = net.next_delivery() {
            while let Some(p) = net.deliver_due(at) {
                assert_eq!(p.deliver_at, at);
                assert_eq!((p.from, p.to), (addr(1), addr(2)));
                let n = u16::from_be_bytes([p.bytes[0], p.bytes[1]]);
                got.push(((p.deliver_at - t0).as_micros(), n));
            }
        }
        (got, net.counters())
    }

    #[test]
    fn splitmix64_matches_the_reference_sequence() {
        // Reference values of SplitMix64 seeded with 0 (Vigna's splitmix64.c).
        let mut r = SplitMix64::new(0);
        assert_eq!(r.next_u64(), 0xe220_a839_7b1d_cdaf);
        assert_eq!(r.next_u64(), 0x6e78_9e6a_a1b9_65f4);
        assert_eq!(r.next_u64(), 0x06c4_5d18_8009_454f);
    }

    #[test]
    fn same_seed_gives_the_same_run() {
        assert_eq!(run(7, 0.3, 0.1), run(7, 0.3, 0.1));
        assert_ne!(run(7, 0.3, 0.1).0, run(8, 0.3, 0.1).0);
    }

    #[test]
    fn counters_account_for_every_copy() {
        let (got, c) = run(42, 0.3, 0.1);
        assert_eq!(c.sent, 1000);
        assert_eq!(c.delivered, got.len() as u64);
        assert_eq!(c.sent + c.duplicated, c.dropped + c.delivered);
        // 30 % loss and 10 % duplication, within a wide margin for 1000 draws.
        assert!((230..=370).contains(&c.dropped), "dropped {}", c.dropped);
        assert!((60..=140).contains(&c.duplicated), "duplicated {}", c.duplicated);
    }

    #[test]
    fn random_delay_reorders_but_stays_within_bounds() {
        let (got, c) = run(3, 0.0, 0.0);
        assert_eq!(c.delivered, 1000);
        assert!(got.windows(2).any(|w| w[1].1 < w[0].1), "nothing reordered");
        for &(at, n) in &got {
            let sent = u128::from(n) * 1000;
            assert!((sent + 5_000..=sent + 50_000).contains(&at));
        }
    }

    #[test]
    fn nothing_is_delivered_before_its_time() {
        let t0 = Instant::now();
        let mut net = Network::new(1);
        net.set_delay(Duration::from_millis(10), Duration::from_millis(10));
        net.send(t0, addr(1), addr(2), Bytes::from_static(b"x"));
        assert_eq!(net.next_delivery(), Some(t0 + Duration::from_millis(10)));
        assert_eq!(net.deliver_due(t0 + Duration::from_millis(9)), None);
        let p = net.deliver_due(t0 + Duration::from_millis(10)).unwrap();
        assert_eq!(p.bytes, Bytes::from_static(b"x"));
        assert_eq!(net.in_flight(), 0);
        assert_eq!(net.next_delivery(), None);
    }

    #[test]
    fn total_loss_drops_everything() {
        let (got, c) = run(5, 1.0, 0.0);
        assert!(got.is_empty());
        assert_eq!(c.dropped, 1000);
    }
}
