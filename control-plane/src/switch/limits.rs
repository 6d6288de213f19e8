//! A per-source request rate limit, sans-IO (time is an input): a token bucket per
//! source address, `rate` requests a second with bursts of up to `burst`. A request past
//! it is refused with 503 and Retry-After before any transaction is made for it.
//!
//! Memory is bounded: buckets that have refilled are swept, and at most [`MAX_SOURCES`]
//! are held (a source beyond is let through rather than tracked).

use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::FastMap as HashMap;

/// Sources tracked at most.
pub const MAX_SOURCES: usize = 100_000;
const SWEEP_EVERY: Duration = Duration::from_secs(5);

/// The limit.
#[derive(Debug)]
pub struct RateLimit {
    /// Requests a second (0: off).
    rate: f64,
    burst: f64,
    buckets: HashMap<IpAddr, (f64, Instant)>,
    last_sweep: Option<Instant>,
}

impl RateLimit {
    /// `rate` requests a second per source (0: no limit), bursts of `burst` (at least 1).
    pub fn new(rate: u32, burst: u32) -> RateLimit {
        RateLimit {
            rate: f64::from(rate),
            burst: f64::from(burst.max(1)),
            buckets: HashMap::default(),
            last_sweep: None,
        }
    }

    /// Whether a request from `ip` at `now` is within the limit (taking a token); if
    /// not, how long until one is there.
    pub fn admit(&mut self, now: Instant, ip: IpAddr) -> Result<(), Duration> {
        if self.rate <= 0.0 {
            return Ok(());
        }
        self.sweep(now);
        let (rate, burst) = (self.rate, self.burst);
        if self.buckets.len() >= MAX_SOURCES && !self.buckets.contains_key(&ip) {
            return Ok(());
        }
        let (tokens, last) = self.buckets.entry(ip).or_insert((burst, now));
        *tokens = (*tokens + now.duration_since(*last).as_secs_f64() * rate).min(burst);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - *tokens) / rate))
        }
    }

    fn sweep(&mut self, now: Instant) {
        if self.last_sweep.is_some_and(|t| now.duration_since(t) < SWEEP_EVERY) {
            return;
        }
        self.last_sweep = Some(now);
        let (rate, burst) = (self.rate, self.burst);
        // A bucket full again is the same as no bucket.
        self.buckets.retain(|_, (tokens, last)| *tokens + now.duration_since(*last).as_secs_f64() * rate < burst);
    }

    /// Sources tracked.
    pub fn tracked(&self) -> usize {
        self.buckets.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_source_gets_its_burst_then_its_rate_and_others_are_not_affected() {
        let (mut l, t0) = (RateLimit::new(10, 5), Instant::now());
        let (a, b): (IpAddr, IpAddr) = ("203.0.113.1".parse().unwrap(), "203.0.113.2".parse().unwrap());
        for _ in 0..5 {
            assert_eq!(l.admit(t0, a), Ok(()));
        }
        assert_eq!(l.admit(t0, a), Err(Duration::from_millis(100)));
        assert_eq!(l.admit(t0, b), Ok(()));
        // 10 a second: one more every 100 ms.
        assert_eq!(l.admit(t0 + Duration::from_millis(100), a), Ok(()));
        assert!(l.admit(t0 + Duration::from_millis(150), a).is_err());
        // Idle long enough, the bucket is full and forgotten.
        assert_eq!(l.admit(t0 + Duration::from_secs(10), b), Ok(()));
        assert_eq!(l.tracked(), 1);
        assert_eq!(RateLimit::new(0, 0).admit(t0, a), Ok(()), "0: off");
    }
}
