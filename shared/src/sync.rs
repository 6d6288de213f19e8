//! The atomics and cells the ring uses, swapped for loom's under `--cfg loom` so the loom
//! tests explore every interleaving of the ring's own code (`RUSTFLAGS="--cfg loom"`, see
//! `ci/loom.sh`).
//!
//! Only the ring goes through this module. The segment header lives in a mapping shared
//! with another process and keeps `std` atomics with their fixed layout; under loom the
//! ring's region is a heap allocation instead (loom's types are larger than the real
//! ones, so [`crate::ring::ring_bytes`] grows with them).

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};
#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};

#[cfg(loom)]
pub(crate) use loom::cell::UnsafeCell;

/// `core::cell::UnsafeCell` with loom's closure API, so ring code reads the same with and
/// without loom. `repr(transparent)`: a slot is exactly a `T`.
#[cfg(not(loom))]
#[repr(transparent)]
pub(crate) struct UnsafeCell<T>(core::cell::UnsafeCell<T>);

#[cfg(not(loom))]
impl<T> UnsafeCell<T> {
    /// Runs `f` with a pointer for reading the contents.
    #[inline(always)]
    pub(crate) fn with<R>(&self, f: impl FnOnce(*const T) -> R) -> R {
        f(self.0.get())
    }

    /// Runs `f` with a pointer for writing the contents.
    #[inline(always)]
    pub(crate) fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
        f(self.0.get())
    }
}
