//! The event socket's door against strangers, sans-IO with time as an input: how many
//! connections one address may hold open before it authenticates, how many the
//! unauthenticated may hold together (the rest stay free for the owner's clients), and a
//! back-off for an address that guesses passwords (after [`FREE_TRIES`] wrong ones, each
//! further one locks it out twice as long, up to [`MAX_LOCKOUT`]). mod_event_socket has
//! none of this: 64 idle connections fill it, and guesses are only as slow as TCP.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Unauthenticated connections one address may hold open at once (an application
/// server opening a pool of connections together stays well under it).
pub const PENDING_PER_SOURCE: u32 = 16;
/// Unauthenticated connections all addresses together may hold (of
/// [`super::server::MAX_CONNECTIONS`]): the rest are kept for clients that authenticate.
pub const PENDING_TOTAL: u32 = 32;
/// Wrong passwords an address may give before it is locked out.
pub const FREE_TRIES: u32 = 3;
/// The longest lockout.
pub const MAX_LOCKOUT: Duration = Duration::from_secs(300);
/// An address's failures are forgotten after this long without one.
pub const FORGET_AFTER: Duration = Duration::from_secs(600);
/// Addresses remembered at most (a flood of sources cannot grow it without end).
const MAX_SOURCES: usize = 4096;

/// Why a connection is refused at the door.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The address guessed wrong too often; it may come back after this long.
    LockedOut(Duration),
    /// The address already holds [`PENDING_PER_SOURCE`] unauthenticated connections.
    TooManyFromSource,
    /// Unauthenticated connections hold [`PENDING_TOTAL`] slots already.
    TooManyPending,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::LockedOut(d) => write!(f, "locked out for {} s after wrong passwords", d.as_secs().max(1)),
            Refusal::TooManyFromSource => {
                write!(f, "{PENDING_PER_SOURCE} connections from this address are not authenticated yet")
            }
            Refusal::TooManyPending => write!(f, "{PENDING_TOTAL} connections are not authenticated yet"),
        }
    }
}

#[derive(Debug, Default, Clone, Copy)]
struct Source {
    pending: u32,
    failures: u32,
    last_failure: Option<Instant>,
    locked_until: Option<Instant>,
}

/// Every address's standing at the door.
#[derive(Debug, Default)]
pub struct Door {
    sources: HashMap<IpAddr, Source>,
    pending: u32,
}

impl Door {
    /// A connection from `ip` at `now`: let in (counted as unauthenticated until
    /// [`Door::authenticated`] or [`Door::closed`]) or refused.
    pub fn admit(&mut self, ip: IpAddr, now: Instant) -> Result<(), Refusal> {
        if self.sources.len() >= MAX_SOURCES {
            self.sources.retain(|_, s| s.pending > 0 || s.locked_until.is_some_and(|t| t > now));
        }
        let s = self.sources.entry(ip).or_default();
        if let Some(until) = s.locked_until.filter(|t| *t > now) {
            return Err(Refusal::LockedOut(until - now));
        }
        if s.pending >= PENDING_PER_SOURCE {
            return Err(Refusal::TooManyFromSource);
        }
        if self.pending >= PENDING_TOTAL {
            return Err(Refusal::TooManyPending);
        }
        s.pending += 1;
        self.pending += 1;
        Ok(())
    }

    /// A connection from `ip` gave the right password: it no longer counts as pending,
    /// and the address's failures are forgiven.
    pub fn authenticated(&mut self, ip: IpAddr) {
        if let Some(s) = self.sources.get_mut(&ip) {
            s.failures = 0;
            s.locked_until = None;
        }
        self.leave(ip);
    }

    /// A connection from `ip` gave a wrong password at `now` (it is closed: call
    /// [`Door::closed`] too). Returns the lockout it earned, if any.
    pub fn failed(&mut self, ip: IpAddr, now: Instant) -> Option<Duration> {
        let s = self.sources.entry(ip).or_default();
        if s.last_failure.is_some_and(|t| now.saturating_duration_since(t) > FORGET_AFTER) {
            s.failures = 0;
        }
        s.failures += 1;
        s.last_failure = Some(now);
        let over = s.failures.checked_sub(FREE_TRIES).filter(|n| *n > 0)?;
        let lockout = Duration::from_secs(1u64 << (over - 1).min(16)).min(MAX_LOCKOUT);
        s.locked_until = Some(now + lockout);
        Some(lockout)
    }

    /// An unauthenticated connection from `ip` ended.
    pub fn closed(&mut self, ip: IpAddr) {
        self.leave(ip);
    }

    fn leave(&mut self, ip: IpAddr) {
        if let Some(s) = self.sources.get_mut(&ip).filter(|s| s.pending > 0) {
            s.pending -= 1;
            self.pending -= 1;
        }
    }
}

/// Whether `given` is `expected`, in a time that depends only on `given`'s length (a
/// guesser learns nothing from how fast a wrong password is refused).
pub fn same_password(given: &str, expected: &str) -> bool {
    let (g, e) = (given.as_bytes(), expected.as_bytes());
    let mut diff = u8::from(g.len() != e.len());
    for (i, &b) in g.iter().enumerate() {
        diff |= b ^ e.get(i).copied().unwrap_or(!b);
    }
    diff == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([127, 0, 0, last])
    }

    #[test]
    fn one_address_holds_only_a_few_unauthenticated_connections() {
        let (mut d, now) = (Door::default(), Instant::now());
        for _ in 0..PENDING_PER_SOURCE {
            assert_eq!(d.admit(ip(5), now), Ok(()));
        }
        assert_eq!(d.admit(ip(5), now), Err(Refusal::TooManyFromSource));
        assert_eq!(d.admit(ip(6), now), Ok(()), "another address is let in");
        d.authenticated(ip(5));
        assert_eq!(d.admit(ip(5), now), Ok(()), "an authenticated one frees its place");
        d.closed(ip(5));
        assert_eq!(d.admit(ip(5), now), Ok(()));
    }

    #[test]
    fn the_unauthenticated_together_leave_room_for_the_owner() {
        let (mut d, now) = (Door::default(), Instant::now());
        let mut admitted = 0;
        for last in 1..=100u8 {
            if d.admit(ip(last), now).is_ok() {
                admitted += 1;
            }
        }
        assert_eq!(admitted, PENDING_TOTAL);
        assert_eq!(d.admit(ip(200), now), Err(Refusal::TooManyPending));
        d.closed(ip(1));
        assert_eq!(d.admit(ip(200), now), Ok(()));
    }

    #[test]
    fn a_guesser_is_locked_out_twice_as_long_each_time_and_forgiven_by_the_right_password() {
        let (mut d, t0) = (Door::default(), Instant::now());
        for _ in 0..FREE_TRIES {
            assert_eq!(d.failed(ip(9), t0), None);
        }
        assert_eq!(d.failed(ip(9), t0), Some(Duration::from_secs(1)));
        assert_eq!(d.admit(ip(9), t0), Err(Refusal::LockedOut(Duration::from_secs(1))));
        assert_eq!(d.admit(ip(8), t0), Ok(()), "only the guesser is locked out");
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(d.admit(ip(9), t1), Ok(()), "it may come back after its lockout");
        assert_eq!(d.failed(ip(9), t1), Some(Duration::from_secs(2)));
        assert_eq!(d.failed(ip(9), t1), Some(Duration::from_secs(4)));
        let mut t = t1;
        for _ in 0..20 {
            t += Duration::from_secs(1);
            d.failed(ip(9), t);
        }
        assert_eq!(d.failed(ip(9), t), Some(MAX_LOCKOUT), "capped");
        d.authenticated(ip(9));
        assert_eq!(d.failed(ip(9), t), None, "forgiven");
        // Failures long apart are forgotten.
        let mut d = Door::default();
        for i in 0..10u64 {
            assert_eq!(d.failed(ip(7), t0 + FORGET_AFTER * (i as u32 + 1) + Duration::from_secs(i)), None);
        }
    }

    #[test]
    fn passwords_compare_whole() {
        assert!(same_password("ClueCon", "ClueCon"));
        for wrong in ["", "C", "ClueCo", "ClueCon!", "clueCon", "ClueCoN"] {
            assert!(!same_password(wrong, "ClueCon"), "{wrong}");
        }
        assert!(same_password("", ""));
    }
}
