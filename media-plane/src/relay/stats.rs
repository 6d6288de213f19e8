//! What a leg's peer sends us, counted per packet (RFC 3550 A.1 and A.8): packets,
//! bytes, loss, reordering, duplicates and interarrival jitter. Fixed-size state, no
//! allocation; time comes in as an argument.

use ferroswitch_shared::msg::LegStats;

/// Sequence numbers this far behind the highest seen count as reordered (or duplicate)
/// packets; further behind, as a restart of the sender (RFC 3550 A.1's MAX_MISORDER).
const MAX_MISORDER: u16 = 100;
/// A jump this far ahead restarts the count (RFC 3550 A.1's MAX_DROPOUT).
const MAX_DROPOUT: u16 = 3000;

/// Receive statistics for one direction of one leg.
#[derive(Debug, Clone, Default)]
pub struct RecvStats {
    started: bool,
    base_seq: u32,
    max_seq: u16,
    cycles: u32,
    /// Bit i: sequence number `max_seq - i` was received (i < 64).
    window: u64,
    received: u64,
    bytes: u64,
    out_of_order: u64,
    duplicates: u64,
    /// RFC 3550 A.8 jitter, scaled by 16.
    jitter16: u32,
    /// Arrival minus RTP timestamp of the previous packet, in timestamp units.
    transit: Option<i64>,
    /// Nanoseconds (on the caller's clock) of the last packet.
    last_ns: Option<u64>,
}

impl RecvStats {
    /// A packet with sequence number `seq` and RTP timestamp `ts`, `len` bytes, arrived
    /// at `now_ns` (any monotonic clock in ns); `clock_rate` is its payload's rate in Hz
    /// (0: unknown, no jitter).
    pub fn on_packet(&mut self, seq: u16, ts: u32, len: usize, now_ns: u64, clock_rate: u32) {
        self.bytes += len as u64;
        self.last_ns = Some(now_ns);
        if !self.started {
            self.started = true;
            self.base_seq = u32::from(seq);
            self.max_seq = seq;
            self.window = 1;
            self.received = 1;
            self.jitter(ts, now_ns, clock_rate);
            return;
        }
        let delta = seq.wrapping_sub(self.max_seq);
        if delta == 0 {
            self.duplicates += 1;
            return;
        }
        if delta < MAX_DROPOUT {
            // In order, possibly with a gap.
            if seq < self.max_seq {
                self.cycles += 1;
            }
            self.window = if delta >= 64 { 0 } else { self.window << delta };
            self.window |= 1;
            self.max_seq = seq;
        } else if self.max_seq.wrapping_sub(seq) <= MAX_MISORDER {
            // Behind the highest seen: a late packet or a duplicate.
            let back = self.max_seq.wrapping_sub(seq);
            if back < 64 && self.window & (1 << back) != 0 {
                self.duplicates += 1;
                return;
            }
            if back < 64 {
                self.window |= 1 << back;
            }
            self.out_of_order += 1;
        } else {
            // A big jump: the sender restarted its sequence. Start over from here.
            self.base_seq = u32::from(seq);
            self.max_seq = seq;
            self.cycles = 0;
            self.window = 1;
            self.received = 0;
            self.transit = None;
        }
        self.received += 1;
        self.jitter(ts, now_ns, clock_rate);
    }

    fn jitter(&mut self, ts: u32, now_ns: u64, clock_rate: u32) {
        if clock_rate == 0 {
            return;
        }
        let arrival = (u128::from(now_ns) * u128::from(clock_rate) / 1_000_000_000) as i64;
        let transit = arrival - i64::from(ts);
        if let Some(prev) = self.transit {
            let d = (transit - prev).unsigned_abs().min(u64::from(u32::MAX)) as u32;
            // J += (|D| - J) / 16, kept scaled by 16 (RFC 3550 A.8).
            self.jitter16 = self.jitter16.wrapping_add(d).wrapping_sub((self.jitter16 + 8) >> 4);
        }
        self.transit = Some(transit);
    }

    /// Packets expected minus packets received (never negative).
    pub fn lost(&self) -> u64 {
        if !self.started {
            return 0;
        }
        let extended = u64::from(self.cycles) * 65536 + u64::from(self.max_seq);
        let expected = extended + 1 - u64::from(self.base_seq);
        expected.saturating_sub(self.received)
    }

    /// The interarrival jitter, in timestamp units.
    pub fn jitter_units(&self) -> u32 {
        self.jitter16 >> 4
    }

    /// The counters as the rings carry them, with the idle time at `now_ns`.
    pub fn snapshot(&self, now_ns: u64) -> LegStats {
        LegStats {
            packets: self.received + self.duplicates,
            bytes: self.bytes,
            lost: self.lost(),
            out_of_order: self.out_of_order,
            duplicates: self.duplicates,
            jitter: self.jitter_units(),
            idle_ms: self
                .last_ns
                .map_or(u32::MAX, |t| (now_ns.saturating_sub(t) / 1_000_000).min(u64::from(u32::MAX - 1)) as u32),
            ..LegStats::default()
        }
    }

    /// Nanoseconds (caller's clock) of the last packet, if any.
    pub fn last_packet_ns(&self) -> Option<u64> {
        self.last_ns
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    /// Feeds `seqs` 20 ms apart with timestamps 160 apart (8 kHz), as sent.
    fn feed(s: &mut RecvStats, seqs: &[u16]) {
        for (i, &seq) in seqs.iter().enumerate() {
            let ts = u32::from(seq.wrapping_sub(seqs[0])) * 160;
            s.on_packet(seq, ts, 172, i as u64 * 20 * MS, 8000);
        }
    }

    #[test]
    fn in_order_stream_has_no_loss_and_no_jitter() {
        let mut s = RecvStats::default();
        feed(&mut s, &(100..200).collect::<Vec<u16>>());
        let snap = s.snapshot(99 * 20 * MS);
        assert_eq!((snap.packets, snap.lost, snap.out_of_order, snap.duplicates, snap.jitter), (100, 0, 0, 0, 0));
        assert_eq!(snap.bytes, 17_200);
        assert_eq!(snap.idle_ms, 0);
    }

    #[test]
    fn gaps_count_as_lost_and_late_packets_as_reordered_rfc3550_a1() {
        let mut s = RecvStats::default();
        // 5 and 6 lost, 9 arrives after 10, 10 arrives twice.
        feed(&mut s, &[1, 2, 3, 4, 7, 8, 10, 9, 10, 11]);
        let snap = s.snapshot(0);
        assert_eq!((snap.lost, snap.out_of_order, snap.duplicates), (2, 1, 1));
        assert_eq!(snap.packets, 10);
    }

    #[test]
    fn sequence_wrap_keeps_counting_rfc3550_a1() {
        let mut s = RecvStats::default();
        feed(&mut s, &[65533, 65534, 65535, 0, 1, 3]);
        assert_eq!(s.lost(), 1);
        assert_eq!(s.snapshot(0).out_of_order, 0);
    }

    #[test]
    fn jitter_follows_rfc3550_a8() {
        let mut s = RecvStats::default();
        // Every packet 20 ms apart on the wire except one 10 ms late: |D| = 80 units at
        // that packet and 80 again at the next.
        s.on_packet(1, 0, 172, 0, 8000);
        s.on_packet(2, 160, 172, 20 * MS, 8000);
        s.on_packet(3, 320, 172, 50 * MS, 8000);
        s.on_packet(4, 480, 172, 60 * MS, 8000);
        // J1 = 80/16 = 5 (scaled: 80), J2 = 80 + 80 - 5 = 155 → 9 units.
        assert_eq!(s.jitter_units(), 9);
    }

    #[test]
    fn a_sender_restart_resets_the_count_instead_of_a_huge_loss() {
        let mut s = RecvStats::default();
        feed(&mut s, &[1000, 1001, 1002]);
        s.on_packet(40000, 0, 172, 0, 8000);
        s.on_packet(40001, 160, 172, 0, 8000);
        assert_eq!(s.lost(), 0);
        let snap = s.snapshot(5 * MS);
        assert_eq!(snap.idle_ms, 5);
        assert_eq!(RecvStats::default().snapshot(0).idle_ms, u32::MAX);
    }
}
