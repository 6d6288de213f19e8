//! What the receiver counts: per stream, which packet indices arrived (in order, after
//! a gap, late, twice) and the RFC 3550 interarrival jitter; over all streams, the
//! one-way latency distribution.

/// How one arrival relates to what the stream delivered before.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    /// The next packet expected.
    InOrder,
    /// Newer than expected: this many before it are missing (so far).
    Gap(u64),
    /// Older than the newest, first time seen: fills a gap.
    Reordered,
    /// Seen already.
    Duplicate,
    /// So much older than the newest that it cannot be told from a duplicate; counted as
    /// a late first arrival.
    TooLate,
}

/// Indices this far behind the newest are remembered exactly.
const WINDOW: u64 = 64;

/// One stream's receive side.
#[derive(Debug, Clone, Default)]
pub struct StreamRx {
    /// Newest index seen, and a bit per index `newest - i` (bit 0: newest).
    newest: Option<u64>,
    seen: u64,
    /// Distinct packets received.
    pub unique: u64,
    /// Packets seen twice.
    pub duplicates: u64,
    /// Packets older than the newest (first arrivals).
    pub reordered: u64,
    /// Of those, beyond the window.
    pub too_late: u64,
    /// Packets whose RTP header did not match their payload.
    pub header_errors: u64,
    jitter_ns: f64,
    last_transit: Option<i64>,
}

impl StreamRx {
    /// Packet `index` (0 is the first measured one) arrived.
    pub fn on_packet(&mut self, index: u64) -> Arrival {
        let Some(newest) = self.newest else {
            self.newest = Some(index);
            self.seen = 1;
            self.unique = 1;
            return if index == 0 { Arrival::InOrder } else { Arrival::Gap(index) };
        };
        if index > newest {
            let shift = index - newest;
            self.seen = if shift >= WINDOW { 0 } else { self.seen << shift } | 1;
            self.newest = Some(index);
            self.unique += 1;
            return if shift == 1 { Arrival::InOrder } else { Arrival::Gap(shift - 1) };
        }
        let behind = newest - index;
        if behind >= WINDOW {
            self.unique += 1;
            self.reordered += 1;
            self.too_late += 1;
            return Arrival::TooLate;
        }
        if self.seen & (1 << behind) != 0 {
            self.duplicates += 1;
            return Arrival::Duplicate;
        }
        self.seen |= 1 << behind;
        self.unique += 1;
        self.reordered += 1;
        Arrival::Reordered
    }

    /// A packet's transit time (receive minus send, ns), for the RFC 3550 §6.4.1
    /// jitter estimate: `J += (|D| - J) / 16`.
    pub fn on_transit(&mut self, transit_ns: i64) {
        if let Some(prev) = self.last_transit {
            let d = (transit_ns - prev).unsigned_abs() as f64;
            self.jitter_ns += (d - self.jitter_ns) / 16.0;
        }
        self.last_transit = Some(transit_ns);
    }

    /// The jitter estimate, in ns.
    pub fn jitter_ns(&self) -> f64 {
        self.jitter_ns
    }
}

/// Latencies in 100 ns buckets up to 100 ms (longer ones land in the last bucket; the
/// maximum is kept exactly).
#[derive(Debug, Clone)]
pub struct Histogram {
    buckets: Vec<u64>,
    count: u64,
    max_ns: u64,
    sum_ns: u128,
}

const BUCKET_NS: u64 = 100;
const BUCKETS: usize = 1_000_000;

impl Default for Histogram {
    fn default() -> Self {
        Histogram { buckets: vec![0; BUCKETS], count: 0, max_ns: 0, sum_ns: 0 }
    }
}

impl Histogram {
    /// Records one latency.
    pub fn add(&mut self, ns: u64) {
        self.buckets[((ns / BUCKET_NS) as usize).min(BUCKETS - 1)] += 1;
        self.count += 1;
        self.max_ns = self.max_ns.max(ns);
        self.sum_ns += u128::from(ns);
    }

    /// Latencies recorded.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The largest.
    pub fn max_ns(&self) -> u64 {
        self.max_ns
    }

    /// The mean (0 when empty).
    pub fn mean_ns(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            self.sum_ns as f64 / self.count as f64
        }
    }

    /// The `q` quantile (0 < q ≤ 1): the upper edge of the bucket holding the
    /// `ceil(q × count)`-th smallest latency, capped at the maximum. 0 when empty.
    pub fn quantile_ns(&self, q: f64) -> u64 {
        if self.count == 0 {
            return 0;
        }
        let rank = ((q * self.count as f64).ceil() as u64).clamp(1, self.count);
        let mut seen = 0;
        for (i, &n) in self.buckets.iter().enumerate() {
            seen += n;
            if seen >= rank {
                if i == BUCKETS - 1 {
                    return self.max_ns;
                }
                return ((i as u64 + 1) * BUCKET_NS).min(self.max_ns);
            }
        }
        self.max_ns
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arrivals_are_classified_and_counted() {
        let mut s = StreamRx::default();
        let got: Vec<Arrival> = [0, 1, 2, 5, 4, 4, 3, 6, 6, 200, 150, 7].iter().map(|&i| s.on_packet(i)).collect();
        use Arrival::*;
        assert_eq!(
            got,
            vec![
                InOrder,
                InOrder,
                InOrder,
                Gap(2),
                Reordered,
                Duplicate,
                Reordered,
                InOrder,
                Duplicate,
                Gap(193),
                Reordered,
                TooLate
            ]
        );
        assert_eq!((s.unique, s.duplicates, s.reordered, s.too_late), (10, 2, 4, 1));
        // Sent 0..=200: 201 packets, 10 distinct arrived.
        assert_eq!(201 - s.unique, 191);
    }

    #[test]
    fn a_stream_that_starts_late_reports_the_gap() {
        let mut s = StreamRx::default();
        assert_eq!(s.on_packet(3), Arrival::Gap(3));
        assert_eq!(s.on_packet(0), Arrival::Reordered);
        assert_eq!(s.on_packet(70), Arrival::Gap(66));
        assert_eq!(s.on_packet(70 - 63), Arrival::Reordered);
        assert_eq!(s.on_packet(3), Arrival::TooLate);
    }

    #[test]
    fn jitter_follows_rfc3550() {
        let mut s = StreamRx::default();
        s.on_transit(1000);
        assert_eq!(s.jitter_ns(), 0.0);
        s.on_transit(1160); // D = 160
        assert_eq!(s.jitter_ns(), 10.0);
        s.on_transit(1000); // D = 160: J = 10 + (160 - 10) / 16
        assert_eq!(s.jitter_ns(), 19.375);
        // Constant transit decays toward 0.
        for _ in 0..200 {
            s.on_transit(1000);
        }
        assert!(s.jitter_ns() < 0.01);
    }

    #[test]
    fn quantiles_come_from_the_buckets() {
        let mut h = Histogram::default();
        assert_eq!(h.quantile_ns(0.5), 0);
        for us in 1..=100u64 {
            h.add(us * 1000 + 50);
        }
        assert_eq!(h.count(), 100);
        assert_eq!(h.quantile_ns(0.5), 50_100);
        assert_eq!(h.quantile_ns(0.99), 99_100);
        assert_eq!(h.quantile_ns(1.0), 100_050); // capped at the max
        assert_eq!(h.max_ns(), 100_050);
        assert_eq!(h.mean_ns(), 50_550.0);
        h.add(5_000_000_000); // beyond the last bucket
        assert_eq!(h.quantile_ns(1.0), 5_000_000_000);
        assert_eq!(h.quantile_ns(0.5), 51_100);
    }
}
