//! Transaction timers (RFC 3261 §17 and Table 4, RFC 6026 §8.4 and §8.7) and the
//! deadline heap that holds them.
//!
//! Each transaction arms at most three timers at once, one per [`Slot`]:
//!
//! | slot         | INVITE client | non-INVITE client | INVITE server        | non-INVITE server |
//! |--------------|---------------|-------------------|----------------------|-------------------|
//! | `Retransmit` | A             | E                 | G, 2xx retransmit    | -                 |
//! | `Timeout`    | B             | F                 | H, L                 | -                 |
//! | `Terminate`  | D, M          | K                 | I                    | J                 |
//!
//! The transaction keeps its armed deadlines; the heap holds `(deadline, tx, slot)`
//! entries and is invalidated lazily: an entry is live only while the transaction still
//! exists and still has that exact deadline in that slot. Re-arming or cancelling a timer
//! is therefore O(1) for the transaction and at most one O(log n) push for the heap.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

use super::TxId;

/// The base intervals every transaction timer derives from (RFC 3261 §17.1.1.1, Table 4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimerConfig {
    /// Round-trip estimate: the first retransmission interval; 64*T1 is the transaction timeout.
    pub t1: Duration,
    /// The longest retransmission interval for non-INVITE requests and INVITE responses.
    pub t2: Duration,
    /// How long a message may stay in the network: the linger time of Timers I and K.
    pub t4: Duration,
}

impl Default for TimerConfig {
    /// RFC 3261 Table 4: T1 = 500 ms, T2 = 4 s, T4 = 5 s.
    fn default() -> Self {
        TimerConfig { t1: Duration::from_millis(500), t2: Duration::from_secs(4), t4: Duration::from_secs(5) }
    }
}

/// Timer D on unreliable transports: RFC 3261 Table 4 asks for "> 32 s"; it covers the
/// server's retransmissions of the final response (64*T1 with the default T1).
pub const TIMER_D_UNRELIABLE: Duration = Duration::from_secs(32);

/// Retransmission intervals are never shorter than this, so a zero T1 or T2 in a
/// configuration cannot make a timer fire again at the instant it fired.
const MIN_RETRANSMIT: Duration = Duration::from_millis(1);

impl TimerConfig {
    /// 64*T1: Timers B, F, H, L, M, and J on unreliable transports.
    pub(super) fn transaction_timeout(&self) -> Duration {
        self.t1.saturating_mul(64)
    }

    /// The first retransmission interval (Timers A, E, G, and the 2xx retransmission).
    pub(super) fn first_retransmit(&self) -> Duration {
        self.t1.max(MIN_RETRANSMIT)
    }

    /// The interval after `previous` for timers that double up to T2 (E, G, 2xx).
    pub(super) fn doubled_capped(&self, previous: Duration) -> Duration {
        previous.saturating_mul(2).min(self.t2).max(MIN_RETRANSMIT)
    }

    /// The interval after `previous` for Timer A, which doubles without a cap.
    pub(super) fn doubled(&self, previous: Duration) -> Duration {
        previous.saturating_mul(2).max(MIN_RETRANSMIT)
    }

    /// The retransmission interval in the non-INVITE Proceeding state (Timer E there).
    pub(super) fn proceeding_retransmit(&self) -> Duration {
        self.t2.max(MIN_RETRANSMIT)
    }
}

/// `now + d`, or `None` ("never") if that instant cannot be represented.
pub(super) fn after(now: Instant, d: Duration) -> Option<Instant> {
    now.checked_add(d)
}

/// Which of a transaction's three timers (see the module table).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(super) enum Slot {
    Retransmit = 0,
    Timeout = 1,
    Terminate = 2,
}

/// The deadlines one transaction has armed, one per [`Slot`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Deadlines([Option<Instant>; 3]);

impl Deadlines {
    pub(super) fn get(&self, slot: Slot) -> Option<Instant> {
        self.0[slot as usize]
    }

    pub(super) fn set(&mut self, slot: Slot, at: Option<Instant>) {
        self.0[slot as usize] = at;
    }

    pub(super) fn clear(&mut self, slot: Slot) {
        self.0[slot as usize] = None;
    }

    /// Slots whose deadline differs from `before` and is set: those need a heap entry.
    pub(super) fn armed_since(self, before: Deadlines) -> impl Iterator<Item = (Slot, Instant)> {
        [Slot::Retransmit, Slot::Timeout, Slot::Terminate].into_iter().filter_map(move |s| match self.get(s) {
            Some(at) if before.get(s) != Some(at) => Some((s, at)),
            _ => None,
        })
    }
}

/// One heap entry. Ordered by deadline, then transaction, then slot, so timers due at the
/// same instant always fire in the same order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Entry {
    pub(super) at: Instant,
    pub(super) tx: TxId,
    pub(super) slot: Slot,
}

/// A min-heap of deadlines with lazy invalidation.
#[derive(Debug, Default)]
pub(super) struct TimerHeap {
    heap: BinaryHeap<Reverse<Entry>>,
}

impl TimerHeap {
    pub(super) fn push(&mut self, tx: TxId, slot: Slot, at: Instant) {
        self.heap.push(Reverse(Entry { at, tx, slot }));
    }

    /// The earliest entry, live or stale.
    pub(super) fn peek(&self) -> Option<Entry> {
        self.heap.peek().map(|r| r.0)
    }

    pub(super) fn pop(&mut self) -> Option<Entry> {
        self.heap.pop().map(|r| r.0)
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.heap.len()
    }

    /// Drops stale entries from the top, so [`TimerHeap::peek`] is the earliest live
    /// deadline; rebuilds the heap when stale entries outnumber live ones by far.
    pub(super) fn prune(&mut self, live_timers: usize, is_live: impl Fn(&Entry) -> bool) {
        while let Some(top) = self.peek() {
            if is_live(&top) {
                break;
            }
            self.heap.pop();
        }
        if self.heap.len() > 1024 && self.heap.len() > 4 * live_timers {
            self.heap.retain(|r| is_live(&r.0));
        }
        // After a flood: give back what the heap no longer needs.
        if self.heap.capacity() > 4096 && self.heap.capacity() > 8 * self.heap.len() {
            self.heap.shrink_to(2 * self.heap.len());
        }
    }
}
