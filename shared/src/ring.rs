//! A single-producer/single-consumer ring of fixed-size `Pod` slots over a region of
//! (shared) memory: the control plane's commands to a media core, and the core's events
//! back, each travel on one.
//!
//! # Layout
//!
//! ```text
//!  region (aligned to 128, ring_bytes::<T>(capacity) long)
//!  ┌──────────────┬──────────────────────┬──────────────┬──────────────────────┬────────────┐
//!  │ capacity,    │ head (producer),     │ tail         │ consumer_sleeping    │ capacity   │
//!  │ slot size    │ full events          │ (consumer)   │                      │ slots of T │
//!  └──────────────┴──────────────────────┴──────────────┴──────────────────────┴────────────┘
//!    line 0         line 1                 line 2         line 3                 offset 512
//! ```
//!
//! Each "line" is 128 bytes: two cache lines, because Intel's spatial prefetcher fetches
//! lines in adjacent pairs, so 64-byte padding would still let the producer's and the
//! consumer's writes disturb each other. Each index is written by one side only.
//!
//! # Indices
//!
//! `head` counts messages ever published and `tail` messages ever released; both run
//! freely over `u64` (slot = index & (capacity - 1)), so `head - tail` (wrapping) is the
//! number of messages waiting. The producer keeps its own head and a cached tail, and
//! reloads the tail (Acquire) only when the cached view says the ring is full; it copies
//! the message into the slot, then publishes the head (Release). The consumer keeps its
//! own tail and a cached head, reads up to a batch of messages in place, then publishes
//! the tail once (Release) for the whole batch, so a busy consumer writes the shared
//! line once per batch, not once per message.
//!
//! # Sleeping and waking
//!
//! An idle consumer sleeps on a doorbell ([`crate::doorbell`]) and a producer rings it only
//! when the consumer says it sleeps, so a busy pair exchanges messages without a syscall:
//!
//! ```text
//!  consumer: prepare_sleep()                     producer: try_push(m)
//!    sleeping = 1                                  slot = m; head = h + 1   (Release)
//!    fence(SeqCst)                                 consumer_sleeping():
//!    if head != tail: sleeping = 0; stay awake       fence(SeqCst)
//!    else: doorbell.wait(); woke() (sleeping = 0)    if sleeping == 1: doorbell.ring()
//! ```
//!
//! No wake-up is lost: the two `SeqCst` fences are ordered one before the other. If the
//! consumer's comes first, the producer's load of the flag (after its own fence) sees the
//! consumer's `sleeping = 1` (or a later value, which the consumer only writes once it is
//! awake), so the producer rings. If the producer's comes first, the consumer's re-check
//! of the head (after its fence) sees the new head, so it does not sleep. A ring that
//! lands before the consumer actually blocks is kept in the eventfd's counter, so the
//! wait returns at once. The worst case is a spurious ring (the flag was stale), which
//! costs a syscall and no correctness. The fences must be `SeqCst`: with `AcqRel` each
//! side's store may still sit in its store buffer while it loads the other's flag or
//! index, both read the old values, and the consumer sleeps on a message nobody rings for
//! (the loom test `loom_a_consumer_going_to_sleep_is_always_woken` finds that deadlock).
//!
//! # Trust
//!
//! The header lives in memory another process writes. The constructors check it
//! ([`RingError`]) and each end then keeps its own copy of the capacity, so a peer that
//! later scribbles on the header can stop the ring (a producer sees it as full, a
//! consumer as empty) or hand over garbage bytes (any bytes are a valid `Pod`), but can
//! never make this process read or write outside the region.

use std::alloc::{self, Layout};
use std::fmt;
use std::marker::PhantomData;
use std::ptr::NonNull;
use std::sync::Arc;

use bytemuck::Pod;

use crate::sync::{fence, AtomicU32, AtomicU64, Ordering, UnsafeCell};

/// The alignment of the region and of each header line, in bytes.
pub const LINE: usize = 128;

/// The largest capacity a ring may have, in slots.
pub const MAX_CAPACITY: usize = 1 << 30;

/// Something that keeps a ring's memory mapped while an end uses it (a segment's mapping,
/// a heap allocation); dropped with the end.
pub type KeepAlive = Arc<dyn Send + Sync>;

/// One slot: a `T` (exactly, outside loom).
type Slot<T> = UnsafeCell<T>;

/// 128 bytes of header to itself.
#[repr(C, align(128))]
pub(crate) struct Line<T>(pub(crate) T);

/// Fixed at `init`; each end copies it when it is built.
#[repr(C)]
pub(crate) struct Geometry {
    pub(crate) capacity: AtomicU64,
    pub(crate) slot_size: AtomicU64,
}

/// Written by the producer only.
#[repr(C)]
pub(crate) struct ProducerLine {
    pub(crate) head: AtomicU64,
    pub(crate) full_events: AtomicU64,
}

/// The ring's header, at the start of its region.
#[repr(C)]
pub(crate) struct RingHeader {
    pub(crate) geometry: Line<Geometry>,
    pub(crate) producer: Line<ProducerLine>,
    pub(crate) tail: Line<AtomicU64>,
    pub(crate) consumer_sleeping: Line<AtomicU32>,
}

impl RingHeader {
    fn new(capacity: u64, slot_size: u64, start: u64) -> RingHeader {
        RingHeader {
            geometry: Line(Geometry { capacity: AtomicU64::new(capacity), slot_size: AtomicU64::new(slot_size) }),
            producer: Line(ProducerLine { head: AtomicU64::new(start), full_events: AtomicU64::new(0) }),
            tail: Line(AtomicU64::new(start)),
            consumer_sleeping: Line(AtomicU32::new(0)),
        }
    }
}

/// Bytes of header before the first slot.
pub(crate) const HEADER_BYTES: usize = size_of::<RingHeader>();

const _: () = assert!(HEADER_BYTES % LINE == 0 && align_of::<RingHeader>() == LINE);

/// Bytes a ring of `capacity` slots of `T` needs (header included), a multiple of 128.
///
/// Saturates instead of overflowing: an absurd capacity asks for about `usize::MAX` bytes,
/// which no region has, so [`init`] refuses it.
pub const fn ring_bytes<T>(capacity: usize) -> usize {
    let bytes = HEADER_BYTES.saturating_add(capacity.saturating_mul(size_of::<Slot<T>>()));
    match bytes.checked_add(LINE - 1) {
        Some(b) => b & !(LINE - 1),
        None => usize::MAX & !(LINE - 1),
    }
}

/// Why a ring could not be set up over a region, or an end built over it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RingError {
    /// The region pointer is null or not aligned to [`LINE`] bytes.
    #[error("ring region at {addr:#x} is null or not aligned to {LINE} bytes")]
    BadRegion {
        /// The region's address.
        addr: usize,
    },
    /// The region is shorter than the ring its header describes (or than a header).
    #[error("ring region is {len} bytes but the ring needs {needed}")]
    TooSmall {
        /// The region's length.
        len: usize,
        /// What the ring needs ([`ring_bytes`]).
        needed: usize,
    },
    /// The capacity is zero, not a power of two, or above [`MAX_CAPACITY`].
    #[error("ring capacity {capacity} is not a power of two between 1 and {MAX_CAPACITY}")]
    BadCapacity {
        /// The capacity asked for or found in the header.
        capacity: u64,
    },
    /// The header's slot size is not this build's message size.
    #[error(
        "ring slots are {found} bytes but this build's message is {expected} bytes; run the same build on both sides"
    )]
    SlotSize {
        /// The header's slot size.
        found: u64,
        /// `size_of::<T>()` here.
        expected: usize,
    },
    /// The header's indices say more messages wait than the ring holds.
    #[error("ring indices are inconsistent: head {head}, tail {tail}, capacity {capacity}")]
    Indices {
        /// The producer's index.
        head: u64,
        /// The consumer's index.
        tail: u64,
        /// The ring's capacity.
        capacity: u64,
    },
    /// The allocator refused the memory for an in-process ring ([`pair`]).
    #[error("could not allocate {bytes} bytes for a ring")]
    Alloc {
        /// The ring's size.
        bytes: usize,
    },
}

/// The producer was full; the message was not written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Full;

fn check_capacity(capacity: u64) -> Result<(), RingError> {
    if capacity.is_power_of_two() && capacity <= MAX_CAPACITY as u64 {
        Ok(())
    } else {
        Err(RingError::BadCapacity { capacity })
    }
}

fn check_region(region: *mut u8) -> Result<NonNull<u8>, RingError> {
    let addr = region as usize;
    match NonNull::new(region) {
        Some(r) if addr % LINE == 0 => Ok(r),
        _ => Err(RingError::BadRegion { addr }),
    }
}

/// Writes a fresh ring header (empty, nobody sleeping, no full events) for `capacity`
/// slots of `T` at the start of `region`.
///
/// # Safety
///
/// `region` must be valid for reads and writes of `len` bytes, and no end may use the
/// ring while it is initialized (in any process). The region's alignment and size and
/// the capacity are checked.
pub unsafe fn init<T: Pod>(region: *mut u8, len: usize, capacity: usize) -> Result<(), RingError> {
    // SAFETY: the caller's contract, forwarded.
    unsafe { init_at::<T>(region, len, capacity, 0) }
}

/// [`init`] with both indices at `start` (tests start them near a wrap of `u64`).
///
/// # Safety
///
/// As for [`init`].
unsafe fn init_at<T: Pod>(region: *mut u8, len: usize, capacity: usize, start: u64) -> Result<(), RingError> {
    const { assert!(align_of::<T>() <= LINE, "ring slots are aligned to 128 bytes at most") };
    let region = check_region(region)?;
    check_capacity(capacity as u64)?;
    let needed = ring_bytes::<T>(capacity);
    if len < needed {
        return Err(RingError::TooSmall { len, needed });
    }
    // SAFETY: the region is valid for writes of `len >= HEADER_BYTES` bytes (caller),
    // aligned to LINE == align_of::<RingHeader>() (checked), and unused meanwhile (caller).
    unsafe { region.cast::<RingHeader>().write(RingHeader::new(capacity as u64, size_of::<Slot<T>>() as u64, start)) };
    #[cfg(loom)]
    for i in 0..capacity {
        // SAFETY: slot `i < capacity` lies inside the `needed <= len` bytes, aligned (the
        // slots start at a multiple of LINE and T's alignment divides it).
        unsafe { region.add(HEADER_BYTES).cast::<Slot<T>>().add(i).write(UnsafeCell::new(T::zeroed())) };
    }
    Ok(())
}

/// Checks the header at `region` against `len` and `T`; returns it, the capacity and the
/// indices (head, tail) as found.
///
/// # Safety
///
/// `region` must be valid for reads of `len` bytes (its contents may be anything).
unsafe fn open<T: Pod>(region: *mut u8, len: usize) -> Result<(NonNull<RingHeader>, u64, [u64; 2]), RingError> {
    const { assert!(align_of::<T>() <= LINE, "ring slots are aligned to 128 bytes at most") };
    let region = check_region(region)?;
    if len < HEADER_BYTES {
        return Err(RingError::TooSmall { len, needed: HEADER_BYTES });
    }
    let header = region.cast::<RingHeader>();
    // SAFETY: aligned (checked) and at least HEADER_BYTES long (checked); every field is
    // an atomic integer, for which any bytes are a valid value.
    let h = unsafe { header.as_ref() };
    let capacity = h.geometry.0.capacity.load(Ordering::Acquire);
    check_capacity(capacity)?;
    let slot_size = h.geometry.0.slot_size.load(Ordering::Acquire);
    if slot_size != size_of::<Slot<T>>() as u64 {
        return Err(RingError::SlotSize { found: slot_size, expected: size_of::<Slot<T>>() });
    }
    let needed = ring_bytes::<T>(capacity as usize);
    if len < needed {
        return Err(RingError::TooSmall { len, needed });
    }
    let head = h.producer.0.head.load(Ordering::Acquire);
    let tail = h.tail.0.load(Ordering::Acquire);
    if head.wrapping_sub(tail) > capacity {
        return Err(RingError::Indices { head, tail, capacity });
    }
    Ok((header, capacity, [head, tail]))
}

/// What both ends hold: where the ring is, its geometry, and what keeps it mapped.
struct Shared<T> {
    header: NonNull<RingHeader>,
    slots: NonNull<Slot<T>>,
    capacity: u64,
    _keep_alive: Option<KeepAlive>,
}

impl<T: Pod> Shared<T> {
    /// The ring at `region` and its indices (head, tail) when it was checked.
    ///
    /// # Safety
    ///
    /// As for [`Producer::from_raw`].
    unsafe fn new(
        region: *mut u8,
        len: usize,
        keep_alive: Option<KeepAlive>,
    ) -> Result<(Shared<T>, [u64; 2]), RingError> {
        // SAFETY: forwarded from the caller.
        let (header, capacity, indices) = unsafe { open::<T>(region, len)? };
        // SAFETY: `open` checked that the header and `capacity` slots fit in the region.
        let slots = unsafe { header.cast::<u8>().add(HEADER_BYTES).cast::<Slot<T>>() };
        Ok((Shared { header, slots, capacity, _keep_alive: keep_alive }, indices))
    }

    #[inline(always)]
    fn header(&self) -> &RingHeader {
        // SAFETY: checked by `open`; the region stays mapped while this end lives (the
        // keep-alive or the constructor's caller sees to it).
        unsafe { self.header.as_ref() }
    }

    #[inline(always)]
    fn slot(&self, index: u64) -> &Slot<T> {
        // SAFETY: `index & (capacity - 1) < capacity`, and `open` checked that `capacity`
        // slots fit in the region after the header.
        unsafe { &*self.slots.as_ptr().add((index & (self.capacity - 1)) as usize) }
    }
}

/// The writing end.
pub struct Producer<T: Pod> {
    ring: Shared<T>,
    /// The next index to write (published in the header after each push).
    head: u64,
    /// The consumer's index when last loaded.
    cached_tail: u64,
    _t: PhantomData<T>,
}

/// The reading end.
pub struct Consumer<T: Pod> {
    ring: Shared<T>,
    /// The next index to read (published in the header after each batch).
    tail: u64,
    /// The producer's index when last loaded.
    cached_head: u64,
    _t: PhantomData<T>,
}

// SAFETY: an end is owned by one thread at a time (`&mut self` everywhere that touches
// its indices); the region outlives it (the keep-alive, or the constructor's contract),
// and the keep-alive is Send + Sync.
unsafe impl<T: Pod + Send> Send for Producer<T> {}
// SAFETY: as for Producer.
unsafe impl<T: Pod + Send> Send for Consumer<T> {}

impl<T: Pod> Producer<T> {
    /// The producer end of the ring at `region`, after checking its header.
    ///
    /// # Safety
    ///
    /// `region` must be valid for reads and writes of `len` bytes for as long as this end
    /// lives (`keep_alive`, if given, is dropped with the end and may be what guarantees
    /// it), and no other producer of this ring may be used while this one is, in any
    /// process (an idle one may exist). The header may hold anything: a bad one is an
    /// error.
    pub unsafe fn from_raw(
        region: *mut u8,
        len: usize,
        keep_alive: Option<KeepAlive>,
    ) -> Result<Producer<T>, RingError> {
        // SAFETY: forwarded from the caller.
        let (ring, [head, tail]) = unsafe { Shared::new(region, len, keep_alive)? };
        Ok(Producer { ring, head, cached_tail: tail, _t: PhantomData })
    }

    /// Writes `msg` and publishes it, or returns [`Full`] (and counts a full event).
    #[inline]
    pub fn try_push(&mut self, msg: &T) -> Result<(), Full> {
        let capacity = self.ring.capacity;
        if self.head.wrapping_sub(self.cached_tail) >= capacity {
            self.cached_tail = self.ring.header().tail.0.load(Ordering::Acquire);
            // A tail past the head (a corrupt peer) also reads as full.
            if self.head.wrapping_sub(self.cached_tail) >= capacity {
                let full = &self.ring.header().producer.0.full_events;
                full.store(full.load(Ordering::Relaxed).wrapping_add(1), Ordering::Relaxed);
                return Err(Full);
            }
        }
        // SAFETY: the slot at `head` is free: the consumer released it (tail > head -
        // capacity, Acquire above or earlier) and reads it again only after the Release
        // store of a head past it, below.
        self.ring.slot(self.head).with_mut(|p| unsafe { p.write(*msg) });
        self.head = self.head.wrapping_add(1);
        self.ring.header().producer.0.head.store(self.head, Ordering::Release);
        Ok(())
    }

    /// Slots free right now (a lower bound: the consumer may release more meanwhile).
    pub fn free(&mut self) -> usize {
        self.cached_tail = self.ring.header().tail.0.load(Ordering::Acquire);
        let used = self.head.wrapping_sub(self.cached_tail);
        self.ring.capacity.saturating_sub(used) as usize
    }

    /// Whether the consumer has said it is going to sleep (see [`crate::doorbell`]); call it
    /// after pushing, and ring the consumer's doorbell if true. See the module docs for
    /// why this cannot miss a consumer that is falling asleep.
    #[inline]
    pub fn consumer_sleeping(&self) -> bool {
        fence(Ordering::SeqCst);
        self.ring.header().consumer_sleeping.0.load(Ordering::Relaxed) != 0
    }

    /// The ring's capacity in slots.
    pub fn capacity(&self) -> usize {
        self.ring.capacity as usize
    }

    /// How many times a push found the ring full (kept in the shared header, so the other
    /// side and monitoring can read it too).
    pub fn full_events(&self) -> u64 {
        self.ring.header().producer.0.full_events.load(Ordering::Relaxed)
    }
}

impl<T: Pod> Consumer<T> {
    /// The consumer end of the ring at `region`, after checking its header.
    ///
    /// # Safety
    ///
    /// As for [`Producer::from_raw`], with "consumer" for "producer".
    pub unsafe fn from_raw(
        region: *mut u8,
        len: usize,
        keep_alive: Option<KeepAlive>,
    ) -> Result<Consumer<T>, RingError> {
        // SAFETY: forwarded from the caller.
        let (ring, [head, tail]) = unsafe { Shared::new(region, len, keep_alive)? };
        Ok(Consumer { ring, tail, cached_head: head, _t: PhantomData })
    }

    /// Messages waiting according to `head`; a head that claims more than the ring holds
    /// (a corrupt peer) counts as none.
    #[inline(always)]
    fn waiting(&self, head: u64) -> u64 {
        let n = head.wrapping_sub(self.tail);
        if n > self.ring.capacity {
            0
        } else {
            n
        }
    }

    /// Takes the oldest message, if any.
    #[inline]
    pub fn pop(&mut self) -> Option<T> {
        let mut out = None;
        self.drain(1, |m| out = Some(*m));
        out
    }

    /// Calls `f` on up to `max` messages in order and releases their slots at once;
    /// returns how many it took.
    ///
    /// `f` sees each message in place in its slot. If `f` panics, none of this batch's
    /// slots are released: the next drain sees the batch again.
    #[inline]
    pub fn drain(&mut self, max: usize, mut f: impl FnMut(&T)) -> usize {
        let max = max as u64;
        let mut n = self.waiting(self.cached_head);
        if n < max {
            self.cached_head = self.ring.header().producer.0.head.load(Ordering::Acquire);
            n = self.waiting(self.cached_head);
        }
        let n = n.min(max);
        for i in 0..n {
            // SAFETY: slots in [tail, head) were written before the head's Release store
            // that the Acquire load of `cached_head` saw, and the producer does not touch
            // them again until the tail below moves past them.
            self.ring.slot(self.tail.wrapping_add(i)).with(|p| f(unsafe { &*p }));
        }
        if n > 0 {
            self.tail = self.tail.wrapping_add(n);
            self.ring.header().tail.0.store(self.tail, Ordering::Release);
        }
        n as usize
    }

    /// Whether nothing is waiting.
    pub fn is_empty(&self) -> bool {
        self.waiting(self.cached_head) == 0
            && self.waiting(self.ring.header().producer.0.head.load(Ordering::Acquire)) == 0
    }

    /// Announces that this side is about to sleep; returns false (and stays awake) if a
    /// message arrived meanwhile. After true, wait on the doorbell, then call
    /// [`Consumer::woke`]. See the module docs for the protocol.
    pub fn prepare_sleep(&mut self) -> bool {
        let h = self.ring.header();
        h.consumer_sleeping.0.store(1, Ordering::Relaxed);
        fence(Ordering::SeqCst);
        self.cached_head = h.producer.0.head.load(Ordering::Acquire);
        if self.waiting(self.cached_head) != 0 {
            h.consumer_sleeping.0.store(0, Ordering::Relaxed);
            return false;
        }
        true
    }

    /// Announces that this side is awake again.
    pub fn woke(&mut self) {
        self.ring.header().consumer_sleeping.0.store(0, Ordering::Relaxed);
    }

    /// The ring's capacity in slots.
    pub fn capacity(&self) -> usize {
        self.ring.capacity as usize
    }

    /// How many times the producer found the ring full.
    pub fn full_events(&self) -> u64 {
        self.ring.header().producer.0.full_events.load(Ordering::Relaxed)
    }
}

impl<T: Pod> fmt::Debug for Producer<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Producer").field("capacity", &self.ring.capacity).field("head", &self.head).finish()
    }
}

impl<T: Pod> fmt::Debug for Consumer<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Consumer").field("capacity", &self.ring.capacity).field("tail", &self.tail).finish()
    }
}

/// A heap allocation aligned to [`LINE`], freed when the last end drops.
struct HeapRegion {
    ptr: NonNull<u8>,
    layout: Layout,
}

// SAFETY: the allocation is plain memory; the ends synchronize their use of it.
unsafe impl Send for HeapRegion {}
// SAFETY: as above.
unsafe impl Sync for HeapRegion {}

impl Drop for HeapRegion {
    fn drop(&mut self) {
        // SAFETY: allocated in `pair_at` with this layout, freed once (the last Arc).
        unsafe { alloc::dealloc(self.ptr.as_ptr(), self.layout) }
    }
}

/// A ring of `capacity` slots in this process's heap (threads of one process, tests,
/// benchmarks); the memory is freed when both ends are dropped.
pub fn pair<T: Pod>(capacity: usize) -> Result<(Producer<T>, Consumer<T>), RingError> {
    pair_at(capacity, 0)
}

/// [`pair`] with both indices starting at `start`.
fn pair_at<T: Pod>(capacity: usize, start: u64) -> Result<(Producer<T>, Consumer<T>), RingError> {
    check_capacity(capacity as u64)?;
    let bytes = ring_bytes::<T>(capacity);
    let layout = Layout::from_size_align(bytes, LINE).map_err(|_| RingError::Alloc { bytes })?;
    // SAFETY: the layout's size is at least HEADER_BYTES > 0.
    let ptr = NonNull::new(unsafe { alloc::alloc_zeroed(layout) }).ok_or(RingError::Alloc { bytes })?;
    let region = Arc::new(HeapRegion { ptr, layout });
    let keep: KeepAlive = region.clone();
    // SAFETY: a fresh allocation of `bytes` bytes that nothing else uses; both ends keep it
    // alive; one producer and one consumer are built.
    unsafe {
        init_at::<T>(ptr.as_ptr(), bytes, capacity, start)?;
        Ok((
            Producer::from_raw(ptr.as_ptr(), bytes, Some(keep.clone()))?,
            Consumer::from_raw(ptr.as_ptr(), bytes, Some(keep))?,
        ))
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use std::collections::VecDeque;
    use std::mem::offset_of;

    use proptest::prelude::*;

    use super::*;

    #[test]
    fn ring_bytes_is_the_header_plus_slots_rounded_to_128() {
        assert_eq!(HEADER_BYTES, 512);
        assert_eq!(ring_bytes::<[u8; 256]>(4), 512 + 1024);
        assert_eq!(ring_bytes::<u64>(1), 512 + 128);
        assert_eq!(ring_bytes::<[u8; 3]>(5), 512 + 128);
        assert_eq!(ring_bytes::<u64>(usize::MAX) % LINE, 0, "saturates instead of overflowing");
    }

    #[test]
    fn indices_and_sleep_flag_sit_on_their_own_128_byte_lines() {
        let head = offset_of!(RingHeader, producer.0.head);
        let tail = offset_of!(RingHeader, tail.0);
        let sleeping = offset_of!(RingHeader, consumer_sleeping.0);
        let geometry = offset_of!(RingHeader, geometry.0.capacity);
        let lines = [geometry / LINE, head / LINE, tail / LINE, sleeping / LINE];
        assert_eq!(lines, [0, 1, 2, 3]);
        assert_eq!(offset_of!(RingHeader, producer.0.full_events) / LINE, 1, "the producer writes it");
    }

    #[test]
    fn messages_come_out_in_order_and_a_push_past_capacity_is_refused() {
        let (mut p, mut c) = pair::<u64>(4).unwrap();
        for i in 0..4 {
            p.try_push(&i).unwrap();
        }
        assert_eq!(p.try_push(&99), Err(Full));
        assert_eq!(p.full_events(), 1);
        assert_eq!(c.full_events(), 1);
        assert_eq!(c.pop(), Some(0));
        p.try_push(&4).unwrap();
        let mut got = vec![];
        assert_eq!(c.drain(usize::MAX, |m| got.push(*m)), 4);
        assert_eq!(got, [1, 2, 3, 4]);
        assert_eq!(c.pop(), None);
        assert!(c.is_empty());
    }

    #[test]
    fn drain_takes_at_most_max_and_publishes_the_tail_once_per_batch() {
        let (mut p, mut c) = pair::<u32>(8).unwrap();
        for i in 0..6 {
            p.try_push(&i).unwrap();
        }
        let mut seen = vec![];
        let tail = &c.ring.header().tail.0 as *const AtomicU64;
        let n = c.drain(4, |m| {
            // SAFETY: the header outlives the drain; reading an atomic is fine.
            assert_eq!(unsafe { &*tail }.load(Ordering::Relaxed), 0, "tail moves after the batch");
            seen.push(*m)
        });
        assert_eq!((n, seen.as_slice()), (4, &[0, 1, 2, 3][..]));
        assert_eq!(c.ring.header().tail.0.load(Ordering::Relaxed), 4);
        assert_eq!(p.free(), 6);
        assert_eq!(c.drain(0, |_| unreachable!()), 0);
    }

    #[test]
    fn ends_keep_the_memory_alive_after_the_other_end_drops() {
        let (mut p, mut c) = pair::<u64>(2).unwrap();
        p.try_push(&7).unwrap();
        drop(p);
        assert_eq!(c.pop(), Some(7));
    }

    fn region(len: usize) -> (Vec<Line<[u8; LINE]>>, *mut u8) {
        let mut v: Vec<Line<[u8; LINE]>> = (0..len.div_ceil(LINE)).map(|_| Line([0; LINE])).collect();
        let ptr = v.as_mut_ptr().cast::<u8>();
        (v, ptr)
    }

    #[test]
    fn init_refuses_bad_capacities_short_and_misaligned_regions() {
        let (_mem, r) = region(ring_bytes::<u64>(8));
        let len = ring_bytes::<u64>(8);
        // SAFETY: `r` is valid for `len` bytes (and one byte less or more offset stays inside).
        unsafe {
            for capacity in [0, 3, 6, MAX_CAPACITY * 2] {
                assert_eq!(init::<u64>(r, len, capacity), Err(RingError::BadCapacity { capacity: capacity as u64 }));
            }
            assert_eq!(init::<u64>(r, len - 1, 8), Err(RingError::TooSmall { len: len - 1, needed: len }));
            assert_eq!(init::<u64>(r.add(8), len - 8, 1), Err(RingError::BadRegion { addr: r as usize + 8 }));
            assert_eq!(init::<u64>(std::ptr::null_mut(), len, 1), Err(RingError::BadRegion { addr: 0 }));
            assert_eq!(init::<u64>(r, len, 8), Ok(()));
        }
    }

    #[test]
    fn an_end_refuses_a_header_for_another_message_size() {
        let len = ring_bytes::<[u64; 2]>(4);
        let (_mem, r) = region(len);
        // SAFETY: `r` is valid for `len` bytes for the whole test.
        unsafe {
            init::<u64>(r, len, 4).unwrap();
            let err = Consumer::<[u64; 2]>::from_raw(r, len, None).unwrap_err();
            assert_eq!(err, RingError::SlotSize { found: 8, expected: 16 });
            assert!(Producer::<u64>::from_raw(r, len, None).is_ok());
            assert_eq!(
                Producer::<u64>::from_raw(r, HEADER_BYTES - 1, None).unwrap_err(),
                RingError::TooSmall { len: HEADER_BYTES - 1, needed: HEADER_BYTES }
            );
        }
    }

    #[test]
    fn an_end_refuses_a_corrupt_header_without_panicking() {
        let len = ring_bytes::<u64>(4);
        let (_mem, r) = region(len);
        // SAFETY: `r` is valid for `len` bytes for the whole test; no end is alive while the
        // header is written through the pointer.
        unsafe {
            init::<u64>(r, len, 4).unwrap();
            let h = &*r.cast::<RingHeader>();
            h.geometry.0.capacity.store(1 << 20, Ordering::Relaxed);
            let needed = ring_bytes::<u64>(1 << 20);
            assert_eq!(Producer::<u64>::from_raw(r, len, None).unwrap_err(), RingError::TooSmall { len, needed });
            h.geometry.0.capacity.store(5, Ordering::Relaxed);
            assert_eq!(Consumer::<u64>::from_raw(r, len, None).unwrap_err(), RingError::BadCapacity { capacity: 5 });
            h.geometry.0.capacity.store(4, Ordering::Relaxed);
            h.producer.0.head.store(10, Ordering::Relaxed);
            h.tail.0.store(5, Ordering::Relaxed);
            let err = Consumer::<u64>::from_raw(r, len, None).unwrap_err();
            assert_eq!(err, RingError::Indices { head: 10, tail: 5, capacity: 4 });
            for b in std::slice::from_raw_parts_mut(r, HEADER_BYTES) {
                *b = 0xff;
            }
            assert!(Producer::<u64>::from_raw(r, len, None).is_err());
        }
    }

    #[test]
    fn a_peer_that_corrupts_the_indices_later_stalls_the_ring_but_no_end_leaves_it() {
        let (mut p, mut c) = pair::<u64>(4).unwrap();
        p.try_push(&1).unwrap();
        let h = p.ring.header();
        // The "peer" moves the head behind the tail and the tail past the head.
        h.producer.0.head.store(u64::MAX - 10, Ordering::Relaxed);
        assert_eq!(c.pop(), None, "a head more than capacity ahead reads as empty");
        assert!(c.is_empty());
        assert!(c.prepare_sleep());
        h.tail.0.store(50, Ordering::Relaxed);
        for _ in 0..4 {
            p.try_push(&2).unwrap_or(());
        }
        assert_eq!(p.try_push(&3), Err(Full), "a tail ahead of the head reads as full");
        assert_eq!(p.free(), 0);
    }

    #[test]
    fn prepare_sleep_stays_awake_when_a_message_is_waiting() {
        let (mut p, mut c) = pair::<u64>(2).unwrap();
        assert!(!p.consumer_sleeping());
        assert!(c.prepare_sleep());
        assert!(p.consumer_sleeping());
        c.woke();
        assert!(!p.consumer_sleeping());
        p.try_push(&1).unwrap();
        assert!(!c.prepare_sleep(), "a message arrived: do not sleep");
        assert!(!p.consumer_sleeping(), "the flag was taken back");
        assert_eq!(c.pop(), Some(1));
    }

    #[test]
    fn two_threads_move_200k_messages_in_order() {
        const N: u64 = 200_000;
        let (mut p, mut c) = pair::<[u64; 4]>(64).unwrap();
        let consumer = std::thread::spawn(move || {
            let mut next = 0;
            while next < N {
                c.drain(16, |m| {
                    assert_eq!(*m, [next, !next, next * 3, next ^ 0x55]);
                    next += 1;
                });
                std::hint::spin_loop();
            }
            c.pop()
        });
        for i in 0..N {
            while p.try_push(&[i, !i, i * 3, i ^ 0x55]).is_err() {
                std::thread::yield_now();
            }
        }
        assert_eq!(consumer.join().unwrap(), None);
    }

    #[derive(Debug, Clone)]
    enum Op {
        Push,
        Pop,
        Drain(usize),
        Free,
        IsEmpty,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => Just(Op::Push),
            2 => Just(Op::Pop),
            2 => (0usize..10).prop_map(Op::Drain),
            1 => Just(Op::Free),
            1 => Just(Op::IsEmpty),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        /// Against a VecDeque: the same messages in the same order, Full exactly when the
        /// model holds `capacity`, the full counter, across a wrap of the u64 indices.
        #[test]
        fn the_ring_behaves_like_a_bounded_queue_across_index_wrap(
            capacity in prop::sample::select(vec![1usize, 2, 4, 8]),
            start_back in 0u64..24,
            ops in prop::collection::vec(op(), 1..200),
        ) {
            let start = u64::MAX - start_back;
            let (mut p, mut c) = pair_at::<[u32; 3]>(capacity, start).unwrap();
            let mut model = VecDeque::new();
            let mut next = 0u32;
            let mut fulls = 0;
            for op in ops {
                match op {
                    Op::Push => {
                        let m = [next, next.wrapping_mul(7), !next];
                        let r = p.try_push(&m);
                        if model.len() == capacity {
                            prop_assert_eq!(r, Err(Full));
                            fulls += 1;
                        } else {
                            prop_assert_eq!(r, Ok(()));
                            model.push_back(m);
                            next += 1;
                        }
                    }
                    Op::Pop => prop_assert_eq!(c.pop(), model.pop_front()),
                    Op::Drain(max) => {
                        let mut got = vec![];
                        let n = c.drain(max, |m| got.push(*m));
                        let want: Vec<_> = model.drain(..max.min(model.len())).collect();
                        prop_assert_eq!(n, want.len());
                        prop_assert_eq!(got, want);
                    }
                    Op::Free => prop_assert_eq!(p.free(), capacity - model.len()),
                    Op::IsEmpty => prop_assert_eq!(c.is_empty(), model.is_empty()),
                }
                prop_assert_eq!(p.full_events(), fulls);
            }
        }
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    //! `RUSTFLAGS="--cfg loom" cargo test -p ferroswitch-shared --release --lib loom`
    //! (ci/loom.sh). Each model explores every interleaving of the ring's atomics (no
    //! preemption bound: both finish in seconds), and loom's cells report any slot access
    //! that is not ordered after the write it reads (a torn or early read).

    use loom::model;
    use loom::sync::Notify;
    use loom::thread;

    use super::*;

    #[test]
    fn loom_three_messages_through_two_slots_arrive_once_in_order_untorn() {
        model(|| {
            let (mut p, mut c) = pair::<[u64; 2]>(2).unwrap();
            let producer = thread::spawn(move || {
                for i in 1..=3u64 {
                    while p.try_push(&[i, i * 100]).is_err() {
                        thread::yield_now();
                    }
                }
            });
            let mut got = vec![];
            while got.len() < 3 {
                if c.drain(2, |m| got.push(*m)) == 0 {
                    thread::yield_now();
                }
            }
            producer.join().unwrap();
            assert_eq!(got, [[1, 100], [2, 200], [3, 300]]);
            assert_eq!(c.pop(), None);
        });
    }

    #[test]
    fn loom_a_consumer_going_to_sleep_is_always_woken() {
        model(|| {
            let (mut p, mut c) = pair::<u64>(2).unwrap();
            let bell = std::sync::Arc::new(Notify::new());
            let ring = bell.clone();
            let producer = thread::spawn(move || {
                for i in 1..=2u64 {
                    p.try_push(&i).unwrap();
                    if p.consumer_sleeping() {
                        ring.notify();
                    }
                }
            });
            let mut got = vec![];
            while got.len() < 2 {
                if let Some(m) = c.pop() {
                    got.push(m);
                } else if c.prepare_sleep() {
                    // A lost wake-up leaves this thread blocked forever: loom reports a
                    // deadlock.
                    bell.wait();
                    c.woke();
                }
            }
            producer.join().unwrap();
            assert_eq!(got, [1, 2]);
        });
    }
}
