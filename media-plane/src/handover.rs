//! Frames handed from one worker to another (the af_xdp backend, issue 13). A NIC whose
//! receive queues are not steered by port (no ntuple rules) spreads a call's frames over
//! every queue, so a worker's AF_XDP socket takes frames for sessions another worker owns.
//! It copies each into a single-producer single-consumer ring toward that worker and
//! rings its doorbell if it sleeps; the owner relays the frame as if it had received it.
//!
//! One ring per ordered pair of workers, so each has one producer thread and one
//! consumer thread: the producer writes a slot, then publishes its index with Release;
//! the consumer reads the index with Acquire, takes the slot, then publishes its own
//! index with Release. A full ring drops the frame (counted by the caller), as a full
//! NIC queue would.

use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;

use ferroswitch_shared::doorbell::Doorbell;

use crate::xsk::FRAME;

/// Frames one ring holds.
pub const SLOTS: usize = 256;

/// Producer and consumer indexes on cache lines of their own.
#[repr(align(64))]
struct Index(AtomicU32);

struct Ring {
    /// `SLOTS` frames of `FRAME` bytes, zeroed by the allocator (pages a ring never
    /// uses, with steered queues, are never touched), and each slot's length.
    bytes: Box<[UnsafeCell<u8>]>,
    lens: Box<[UnsafeCell<u16>]>,
    head: Index,
    tail: Index,
}

// SAFETY: a slot is touched by the producer only between the consumer's index and its
// own, and by the consumer only between its index and the producer's (see the module
// comment); the ends are neither Clone nor Sync.
unsafe impl Sync for Ring {}
// SAFETY: as above.
unsafe impl Send for Ring {}

impl Ring {
    /// Slot `i`'s bytes and length.
    ///
    /// SAFETY: the caller owns slot `i` (see the module comment).
    #[allow(clippy::mut_from_ref)]
    unsafe fn slot(&self, i: u32) -> (&mut [u8], &mut u16) {
        let i = i as usize % SLOTS;
        // SAFETY: inside the allocation; UnsafeCell<u8> has u8's layout; owned per above.
        unsafe {
            let base = UnsafeCell::raw_get(self.bytes.as_ptr().add(i * FRAME));
            (std::slice::from_raw_parts_mut(base, FRAME), &mut *self.lens[i].get())
        }
    }
}

/// The sending end.
pub struct Sender {
    ring: Arc<Ring>,
}

/// The receiving end.
pub struct Receiver {
    ring: Arc<Ring>,
}

/// A ring of [`SLOTS`] frames.
pub fn channel() -> (Sender, Receiver) {
    let zeroed = vec![0u8; SLOTS * FRAME].into_boxed_slice();
    // SAFETY: UnsafeCell<u8> has the same layout as u8.
    let bytes = unsafe { Box::from_raw(Box::into_raw(zeroed) as *mut [UnsafeCell<u8>]) };
    let lens = (0..SLOTS).map(|_| UnsafeCell::new(0)).collect();
    let ring = Arc::new(Ring { bytes, lens, head: Index(AtomicU32::new(0)), tail: Index(AtomicU32::new(0)) });
    (Sender { ring: ring.clone() }, Receiver { ring })
}

impl Sender {
    /// Copies `frame` in; false (dropped) if the ring is full or the frame too long.
    pub fn push(&mut self, frame: &[u8]) -> bool {
        let r = &*self.ring;
        let head = r.head.0.load(Ordering::Relaxed);
        let tail = r.tail.0.load(Ordering::Acquire);
        if head.wrapping_sub(tail) as usize >= SLOTS || frame.len() > FRAME {
            return false;
        }
        // SAFETY: the slot at `head` is the producer's until published below.
        let (bytes, len) = unsafe { r.slot(head) };
        bytes[..frame.len()].copy_from_slice(frame);
        *len = frame.len() as u16;
        r.head.0.store(head.wrapping_add(1), Ordering::Release);
        true
    }
}

impl Receiver {
    /// Hands each waiting frame to `f` (its whole slot, mutable, and its length), oldest
    /// first, at most `max` of them; how many.
    pub fn drain(&mut self, max: usize, mut f: impl FnMut(&mut [u8], usize)) -> usize {
        let r = &*self.ring;
        let tail = r.tail.0.load(Ordering::Relaxed);
        let head = r.head.0.load(Ordering::Acquire);
        let n = (head.wrapping_sub(tail) as usize).min(max);
        for i in 0..n {
            // SAFETY: published by the producer, and not reused until our index moves.
            let (bytes, len) = unsafe { r.slot(tail.wrapping_add(i as u32)) };
            f(bytes, usize::from(*len));
        }
        if n > 0 {
            r.tail.0.store(tail.wrapping_add(n as u32), Ordering::Release);
        }
        n
    }

    /// Whether a frame waits.
    pub fn is_empty(&self) -> bool {
        let r = &*self.ring;
        r.head.0.load(Ordering::Acquire) == r.tail.0.load(Ordering::Relaxed)
    }
}

/// How a worker is woken for frames handed to it: its doorbell, rung only while it says
/// it sleeps.
#[derive(Clone)]
pub struct Wake {
    bell: Arc<Doorbell>,
    sleeping: Arc<AtomicBool>,
}

impl Wake {
    /// The worker's doorbell (the one its loop polls).
    pub fn new(bell: Doorbell) -> Wake {
        Wake { bell: Arc::new(bell), sleeping: Arc::new(AtomicBool::new(false)) }
    }

    /// After pushing: wakes the worker if it sleeps (or is about to).
    pub fn nudge(&self) {
        std::sync::atomic::fence(Ordering::SeqCst);
        if self.sleeping.load(Ordering::Relaxed) {
            self.bell.ring();
        }
    }

    /// The worker is about to sleep: from now on producers ring. It must look at its
    /// rings once more after this, before it sleeps.
    pub fn prepare_sleep(&self) {
        self.sleeping.store(true, Ordering::Relaxed);
        std::sync::atomic::fence(Ordering::SeqCst);
    }

    /// The worker is awake again.
    pub fn woke(&self) {
        self.sleeping.store(false, Ordering::Relaxed);
    }
}

/// One worker's ends of the mesh: a ring to each other worker (with its wake-up), and
/// one from each.
pub struct Mesh {
    /// Indexed by worker; None for this worker itself.
    pub to: Vec<Option<(Sender, Wake)>>,
    /// Rings from the other workers.
    pub from: Vec<Receiver>,
    /// This worker's own wake-up (which it flags while it sleeps).
    pub wake: Wake,
}

impl Mesh {
    /// The mesh for workers woken by `wakes` (one each): element `i` is worker `i`'s.
    pub fn build(wakes: &[Wake]) -> Vec<Mesh> {
        let n = wakes.len();
        let mut meshes: Vec<Mesh> = wakes
            .iter()
            .map(|w| Mesh { to: (0..n).map(|_| None).collect(), from: Vec::new(), wake: w.clone() })
            .collect();
        for i in 0..n {
            for j in 0..n {
                if i != j {
                    let (tx, rx) = channel();
                    meshes[i].to[j] = Some((tx, wakes[j].clone()));
                    meshes[j].from.push(rx);
                }
            }
        }
        meshes
    }

    /// Whether any frame waits for this worker.
    pub fn waiting(&self) -> bool {
        self.from.iter().any(|r| !r.is_empty())
    }
}

/// Which worker owns a port: the media plane's range split as `server::port_slice`
/// splits it (even-sized slices, the last one taking the rest).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owners {
    min: u16,
    max: u16,
    span: u32,
    workers: usize,
}

impl Owners {
    /// The range `min..=max` over `workers` workers.
    pub fn new(min: u16, max: u16, workers: usize) -> Owners {
        let span = ((u32::from(max).saturating_sub(u32::from(min)) + 1) / workers.max(1) as u32) & !1;
        Owners { min, max, span, workers: workers.max(1) }
    }

    /// The worker owning `port`; None outside the range.
    pub fn owner(&self, port: u16) -> Option<usize> {
        if port < self.min || port > self.max {
            return None;
        }
        let last = self.workers - 1;
        if self.span == 0 {
            return Some(last);
        }
        Some((((u32::from(port) - u32::from(self.min)) / self.span) as usize).min(last))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_port_belongs_to_the_worker_whose_slice_holds_it() {
        for (min, max, n) in [(16384, 32767, 2), (20000, 20999, 3), (30000, 30005, 4), (40000, 40000, 1)] {
            let o = Owners::new(min, max, n);
            for i in 0..n {
                let (lo, hi) = crate::server::port_slice(min, max, i, n);
                for p in lo..=hi {
                    assert_eq!(o.owner(p), Some(i), "port {p} of {min}-{max} over {n}");
                }
            }
            assert_eq!(o.owner(min.wrapping_sub(1)), None);
            assert_eq!(o.owner(max.saturating_add(1)).filter(|_| max < 65535), None);
        }
    }

    #[test]
    fn frames_come_out_in_order_and_a_full_ring_drops() {
        let (mut tx, mut rx) = channel();
        for i in 0..SLOTS {
            assert!(tx.push(&[i as u8; 60]), "frame {i}");
        }
        assert!(!tx.push(&[0; 60]), "full");
        assert!(!tx.push(&[0; FRAME + 1]), "too long for a slot");
        let mut got = Vec::new();
        assert_eq!(rx.drain(10, |b, len| got.push((b[0], len))), 10);
        assert_eq!(got, (0..10).map(|i| (i as u8, 60)).collect::<Vec<_>>());
        assert!(tx.push(&[0xaa; 1500]), "room again");
        let mut rest = Vec::new();
        rx.drain(usize::MAX, |b, len| rest.push((b[0], len)));
        assert_eq!(rest.len(), SLOTS - 10 + 1);
        assert_eq!(rest.last(), Some(&(0xaa, 1500)));
        assert!(rx.is_empty());
    }

    #[test]
    fn across_threads_every_frame_arrives_once_in_order() {
        let (mut tx, mut rx) = channel();
        const N: u32 = 100_000;
        let producer = std::thread::spawn(move || {
            let mut i = 0u32;
            while i < N {
                if tx.push(&i.to_le_bytes()) {
                    i += 1;
                } else {
                    std::thread::yield_now();
                }
            }
        });
        let mut next = 0u32;
        while next < N {
            rx.drain(64, |b, len| {
                assert_eq!(len, 4);
                assert_eq!(u32::from_le_bytes(b[..4].try_into().unwrap()), next);
                next += 1;
            });
        }
        producer.join().unwrap();
    }

    #[test]
    fn a_sleeping_worker_is_rung_and_an_awake_one_is_not() {
        let bell = Doorbell::new().unwrap();
        let probe = Doorbell::from_fd(bell.fd().try_clone().unwrap());
        let w = Wake::new(bell);
        w.nudge();
        assert!(!probe.clear(), "awake: no syscall, no ring");
        w.prepare_sleep();
        w.nudge();
        assert!(probe.clear(), "asleep: rung");
        w.woke();
        let meshes = Mesh::build(&[w.clone(), Wake::new(Doorbell::new().unwrap())]);
        assert!(meshes[0].to[0].is_none() && meshes[0].to[1].is_some());
        assert_eq!((meshes[0].from.len(), meshes[1].from.len()), (1, 1));
    }
}
