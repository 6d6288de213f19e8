//! Prometheus histograms with fixed buckets, kept as plain counters (`Copy`, `Eq`) so
//! the SIP driver's and the media supervisor's published state can hold them: each
//! observation lands in the first bucket whose upper bound holds it, and the page
//! renders them cumulatively with `+Inf`, `_sum` and `_count`.

/// Counts of observations per bucket of `N` upper bounds (given where observed and
/// rendered: [`Histogram::observe`], [`Histogram::render`]), the rest above them, and the
/// sum in millionths.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Histogram<const N: usize> {
    counts: [u64; N],
    above: u64,
    sum_micro: u64,
}

impl<const N: usize> Default for Histogram<N> {
    fn default() -> Self {
        Histogram { counts: [0; N], above: 0, sum_micro: 0 }
    }
}

impl<const N: usize> Histogram<N> {
    /// Counts `value` (negative and NaN values count as 0).
    pub fn observe(&mut self, bounds: &[f64; N], value: f64) {
        let v = if value.is_finite() && value > 0.0 { value } else { 0.0 };
        match bounds.iter().position(|b| v <= *b) {
            Some(i) => self.counts[i] += 1,
            None => self.above += 1,
        }
        self.sum_micro = self.sum_micro.saturating_add((v * 1e6) as u64);
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.counts.iter().sum::<u64>() + self.above
    }

    /// The family's samples in the text format, with `labels` on each (its HELP and TYPE
    /// are the caller's).
    pub fn render(&self, out: &mut String, name: &str, labels: &str, bounds: &[f64; N]) {
        use std::fmt::Write as _;
        let sep = if labels.is_empty() { "" } else { "," };
        let mut cumulative = 0;
        for (b, n) in bounds.iter().zip(self.counts) {
            cumulative += n;
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{b}\"}} {cumulative}");
        }
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {}", self.count());
        let braces = if labels.is_empty() { String::new() } else { format!("{{{labels}}}") };
        let _ = writeln!(out, "{name}_sum{braces} {}", self.sum_micro as f64 / 1e6);
        let _ = writeln!(out, "{name}_count{braces} {}", self.count());
    }
}

/// Seconds from a call's first leg appearing to its answer (`ferroswitch_call_answer_seconds`).
pub const ANSWER_SECONDS: [f64; 10] = [0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];
/// A media leg's packet loss over its life, as a fraction (`ferroswitch_media_leg_loss_ratio`).
pub const LOSS_RATIO: [f64; 7] = [0.0, 0.001, 0.005, 0.01, 0.02, 0.05, 0.1];
/// A media leg's interarrival jitter at its end, in seconds (`ferroswitch_media_leg_jitter_seconds`).
pub const JITTER_SECONDS: [f64; 8] = [0.001, 0.002, 0.005, 0.01, 0.02, 0.03, 0.05, 0.1];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observations_land_in_their_bucket_and_render_cumulatively() {
        let bounds = [0.1, 1.0];
        let mut h = Histogram::<2>::default();
        for v in [0.05, 0.1, 0.5, 3.0, -1.0] {
            h.observe(&bounds, v);
        }
        let mut out = String::new();
        h.render(&mut out, "x_seconds", "core=\"0\"", &bounds);
        assert_eq!(
            out,
            "x_seconds_bucket{core=\"0\",le=\"0.1\"} 3\nx_seconds_bucket{core=\"0\",le=\"1\"} 4\n\
             x_seconds_bucket{core=\"0\",le=\"+Inf\"} 5\nx_seconds_sum{core=\"0\"} 3.65\nx_seconds_count{core=\"0\"} 5\n"
        );
        let mut bare = String::new();
        Histogram::<2>::default().render(&mut bare, "y", "", &bounds);
        assert!(bare.starts_with("y_bucket{le=\"0.1\"} 0\n"), "{bare}");
        assert!(bare.ends_with("y_sum 0\ny_count 0\n"), "{bare}");
    }
}
