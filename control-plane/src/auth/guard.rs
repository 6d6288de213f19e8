//! Password guessing, slowed and then stopped, sans-IO (time is an input).
//!
//! Every failed digest response is counted against its source address and, if the user
//! exists, against the user. A source that failed [`GuardConfig::backoff_after`] times
//! within [`GuardConfig::window`] must then wait before each further try, twice as long
//! each time (1 s, 2 s, 4 s...: tries before that get 403 with Retry-After, and are not
//! counted); at [`GuardConfig::ban_after`] failures it is banned for
//! [`GuardConfig::ban`] and everything it sends is dropped unanswered. A user whose
//! credentials failed [`GuardConfig::user_lock_after`] times within the window, from any
//! sources, is locked for [`GuardConfig::user_lock`] (403 to its credentials), which
//! stops a guesser spread over many addresses. Trusted sources are never counted.
//! A success clears its source's count.
//!
//! Memory is bounded: records whose window passed are swept, and at most
//! [`MAX_RECORDS`] sources and as many users are tracked (beyond, a new source is not
//! counted until room is made: the per-source rate limit and the ban keep it small).

use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::FastMap as HashMap;

/// Sources (and users) tracked at most.
pub const MAX_RECORDS: usize = 100_000;
/// How often expired records are swept.
const SWEEP_EVERY: Duration = Duration::from_secs(10);

/// The limits (`[auth]` in the config).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GuardConfig {
    /// Failures from one source before it must wait between tries (0: never).
    pub backoff_after: u32,
    /// Failures from one source before it is banned (0: never).
    pub ban_after: u32,
    /// Failures older than this are forgotten.
    pub window: Duration,
    /// How long a ban lasts.
    pub ban: Duration,
    /// Failures for one user, from anywhere, before it is locked (0: never).
    pub user_lock_after: u32,
    /// How long a lock lasts.
    pub user_lock: Duration,
}

impl Default for GuardConfig {
    fn default() -> GuardConfig {
        GuardConfig {
            backoff_after: 3,
            ban_after: 10,
            window: Duration::from_secs(600),
            ban: Duration::from_secs(900),
            user_lock_after: 30,
            user_lock: Duration::from_secs(300),
        }
    }
}

/// What to do with a request from a source before its credentials are looked at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    /// Go on.
    Open,
    /// Too soon after its last failure: 403, try again after this long.
    Wait(Duration),
    /// Banned: drop it, answer nothing.
    Banned,
}

/// What a failure led to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counted {
    /// The source's failures within the window, this one included.
    pub failures: u32,
    /// The source is now banned (this failure reached the limit).
    pub banned: bool,
    /// The user is now locked.
    pub user_locked: bool,
}

#[derive(Debug, Clone, Copy)]
struct Record {
    window_start: Instant,
    failures: u32,
    last_failure: Instant,
    /// Banned (a source) or locked (a user) until then.
    until: Option<Instant>,
}

impl Record {
    fn new(now: Instant) -> Record {
        Record { window_start: now, failures: 0, last_failure: now, until: None }
    }

    fn expired(&self, now: Instant, window: Duration) -> bool {
        self.until.is_none_or(|u| u <= now) && now.duration_since(self.window_start) >= window
    }

    /// One more failure at `now` (a fresh window if the last one passed).
    fn fail(&mut self, now: Instant, window: Duration) {
        if now.duration_since(self.window_start) >= window {
            (self.window_start, self.failures) = (now, 0);
        }
        self.failures += 1;
        self.last_failure = now;
    }
}

/// The failure counts.
#[derive(Debug)]
pub struct Guard {
    cfg: GuardConfig,
    sources: HashMap<IpAddr, Record>,
    users: HashMap<String, Record>,
    last_sweep: Option<Instant>,
}

impl Guard {
    /// A guard with these limits.
    pub fn new(cfg: GuardConfig) -> Guard {
        Guard { cfg, sources: HashMap::default(), users: HashMap::default(), last_sweep: None }
    }

    /// Whether a request from `ip` at `now` may go on.
    pub fn gate(&mut self, now: Instant, ip: IpAddr) -> Gate {
        self.sweep(now);
        let Some(r) = self.sources.get(&ip) else { return Gate::Open };
        if r.until.is_some_and(|u| now < u) {
            return Gate::Banned;
        }
        let c = &self.cfg;
        if c.backoff_after == 0 || r.failures < c.backoff_after || now.duration_since(r.window_start) >= c.window {
            return Gate::Open;
        }
        let doublings = (r.failures - c.backoff_after).min(16);
        let wait = Duration::from_secs(1 << doublings).min(c.window);
        match (r.last_failure + wait).checked_duration_since(now) {
            Some(left) if !left.is_zero() => Gate::Wait(left),
            _ => Gate::Open,
        }
    }

    /// Whether `user` is locked at `now` (for how much longer).
    pub fn user_locked(&self, now: Instant, user: &str) -> Option<Duration> {
        self.users.get(user).and_then(|r| r.until).and_then(|u| u.checked_duration_since(now)).filter(|d| !d.is_zero())
    }

    /// A failed response from `ip` for `user` (`known`: the directory has the user).
    pub fn on_failure(&mut self, now: Instant, ip: IpAddr, user: &str, known: bool) -> Counted {
        self.sweep(now);
        let (window, c) = (self.cfg.window, self.cfg);
        let mut counted = Counted { failures: 0, banned: false, user_locked: false };
        if let Some(r) = record(&mut self.sources, ip, now) {
            r.fail(now, window);
            counted.failures = r.failures;
            if c.ban_after > 0 && r.failures >= c.ban_after && r.until.is_none_or(|u| u <= now) {
                r.until = Some(now + c.ban);
                counted.banned = true;
            }
        }
        if known {
            if let Some(r) = record(&mut self.users, user.to_string(), now) {
                r.fail(now, window);
                if c.user_lock_after > 0 && r.failures >= c.user_lock_after && r.until.is_none_or(|u| u <= now) {
                    r.until = Some(now + c.user_lock);
                    counted.user_locked = true;
                }
            }
        }
        counted
    }

    /// A source authenticated: its count starts again (a phone whose password was
    /// fixed). A ban stays.
    pub fn on_success(&mut self, ip: IpAddr) {
        if self.sources.get(&ip).is_some_and(|r| r.until.is_none()) {
            self.sources.remove(&ip);
        }
    }

    /// Sources and users tracked.
    pub fn tracked(&self) -> (usize, usize) {
        (self.sources.len(), self.users.len())
    }

    fn sweep(&mut self, now: Instant) {
        if self.last_sweep.is_some_and(|t| now.duration_since(t) < SWEEP_EVERY) {
            return;
        }
        self.last_sweep = Some(now);
        let window = self.cfg.window;
        self.sources.retain(|_, r| !r.expired(now, window));
        self.users.retain(|_, r| !r.expired(now, window));
    }
}

/// The record for `key`, made if there is room.
fn record<K: std::hash::Hash + Eq>(map: &mut HashMap<K, Record>, key: K, now: Instant) -> Option<&mut Record> {
    if map.len() >= MAX_RECORDS && !map.contains_key(&key) {
        return None;
    }
    Some(map.entry(key).or_insert_with(|| Record::new(now)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_guesser_waits_longer_after_each_failure_then_is_banned_and_others_are_not() {
        let cfg = GuardConfig { backoff_after: 3, ban_after: 6, ..GuardConfig::default() };
        let (mut g, t0, bad, good) = (Guard::new(cfg), Instant::now(), ip("203.0.113.9"), ip("198.51.100.1"));
        let mut t = t0;
        for n in 1..=3 {
            assert_eq!(g.gate(t, bad), Gate::Open, "try {n}");
            assert!(!g.on_failure(t, bad, "1000", true).banned);
        }
        // Three failures: the next try only after 1 s, then 2 s, then 4 s.
        for wait in [1u64, 2, 4] {
            assert_eq!(
                g.gate(t + Duration::from_millis(100), bad),
                Gate::Wait(Duration::from_millis(wait * 1000 - 100))
            );
            t += Duration::from_secs(wait);
            assert_eq!(g.gate(t, bad), Gate::Open);
            let c = g.on_failure(t, bad, "1000", true);
            assert_eq!(c.banned, c.failures == 6);
        }
        assert_eq!(g.gate(t, bad), Gate::Banned);
        assert_eq!(g.gate(t, good), Gate::Open, "another source is not affected");
        // The ban ends (900 s), and the failures have left the window (600 s) by then.
        assert_eq!(g.gate(t + 899 * S, bad), Gate::Banned);
        assert_eq!(g.gate(t + 900 * S, bad), Gate::Open);
    }

    #[test]
    fn a_user_failing_from_many_sources_is_locked() {
        let cfg = GuardConfig { user_lock_after: 5, ..GuardConfig::default() };
        let (mut g, t) = (Guard::new(cfg), Instant::now());
        for i in 0..4 {
            assert!(!g.on_failure(t, ip(&format!("203.0.113.{i}")), "1000", true).user_locked);
        }
        assert_eq!(g.user_locked(t, "1000"), None);
        assert!(g.on_failure(t, ip("203.0.113.200"), "1000", true).user_locked);
        assert_eq!(g.user_locked(t + S, "1000"), Some(299 * S));
        assert_eq!(g.user_locked(t + 300 * S, "1000"), None);
        // Unknown users are never tracked: random names cannot fill the table.
        g.on_failure(t, ip("203.0.113.201"), "no-such-user", false);
        assert_eq!(g.tracked().1, 1);
    }

    #[test]
    fn a_success_clears_the_count_and_old_records_are_swept() {
        let (mut g, t) = (Guard::new(GuardConfig::default()), Instant::now());
        let phone = ip("192.0.2.5");
        for _ in 0..3 {
            g.on_failure(t, phone, "1000", true);
        }
        assert!(matches!(g.gate(t, phone), Gate::Wait(_)));
        g.on_success(phone);
        assert_eq!(g.gate(t, phone), Gate::Open);
        g.on_failure(t, ip("192.0.2.6"), "1001", true);
        assert_eq!(g.tracked(), (1, 2));
        g.gate(t + 601 * S, phone);
        assert_eq!(g.tracked(), (0, 0), "swept once their window passed");
    }
}
