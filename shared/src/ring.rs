//! A single-producer/single-consumer ring of fixed-size `Pod` slots over a region of
//! (shared) memory. STUB: signatures only; the implementation lands with issue 4's ring
//! work.

use std::marker::PhantomData;

use bytemuck::Pod;

/// Bytes a ring of `capacity` slots of `T` needs (header included), a multiple of 128.
pub const fn ring_bytes<T>(capacity: usize) -> usize {
    let _ = capacity;
    unimplemented_const()
}

const fn unimplemented_const() -> usize {
    0
}

/// The producer was full; the message was not written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Full;

/// The writing end.
pub struct Producer<T: Pod> {
    _t: PhantomData<T>,
}

/// The reading end.
pub struct Consumer<T: Pod> {
    _t: PhantomData<T>,
}

// SAFETY: each end is used by one thread at a time; the region outlives it (the
// constructor's contract).
unsafe impl<T: Pod + Send> Send for Producer<T> {}
unsafe impl<T: Pod + Send> Send for Consumer<T> {}

impl<T: Pod> Producer<T> {
    /// Writes `msg` and publishes it, or returns [`Full`].
    pub fn try_push(&mut self, msg: &T) -> Result<(), Full> {
        let _ = msg;
        unimplemented!()
    }
    /// Slots free right now (a lower bound).
    pub fn free(&mut self) -> usize {
        unimplemented!()
    }
    /// Whether the consumer has said it is going to sleep (see [`crate::doorbell`]).
    pub fn consumer_sleeping(&self) -> bool {
        unimplemented!()
    }
    /// The ring's capacity in slots.
    pub fn capacity(&self) -> usize {
        unimplemented!()
    }
}

impl<T: Pod> Consumer<T> {
    /// Takes the oldest message, if any.
    pub fn pop(&mut self) -> Option<T> {
        unimplemented!()
    }
    /// Calls `f` on up to `max` messages in order and releases their slots at once;
    /// returns how many it took.
    pub fn drain(&mut self, max: usize, f: impl FnMut(&T)) -> usize {
        let _ = (max, f);
        unimplemented!()
    }
    /// Whether nothing is waiting.
    pub fn is_empty(&self) -> bool {
        unimplemented!()
    }
    /// Announces that this side is about to sleep; returns false (and stays awake) if a
    /// message arrived meanwhile.
    pub fn prepare_sleep(&mut self) -> bool {
        unimplemented!()
    }
    /// Announces that this side is awake again.
    pub fn woke(&mut self) {
        unimplemented!()
    }
}
