//! The shared mapping. STUB.

use std::os::fd::OwnedFd;
use std::sync::atomic::AtomicU64;

use crate::msg::{Command, Event};
use crate::ring::{Consumer, Producer};

/// Why a segment could not be attached.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AttachError {
    /// The OS refused (mmap, fstat, ...).
    #[error("{what}: {source}")]
    Io {
        /// The step.
        what: &'static str,
        /// The OS error.
        source: std::io::Error,
    },
    /// The mapping does not start with the magic.
    #[error("not a ferroswitch media segment (magic {found:#x})")]
    BadMagic {
        /// What was there.
        found: u64,
    },
    /// Built from another message definition.
    #[error("layout mismatch: peer version {peer_version} hash {peer_hash:#x}, ours version {our_version} hash {our_hash:#x}; run the same ferroswitch build on both planes")]
    Layout {
        /// The peer's.
        peer_version: u32,
        /// The peer's.
        peer_hash: u64,
        /// Ours.
        our_version: u32,
        /// Ours.
        our_hash: u64,
    },
    /// The header's sizes do not fit the mapping.
    #[error("segment is {len} bytes but its header describes {needed}")]
    TooSmall {
        /// The mapping's size.
        len: usize,
        /// What the header needs.
        needed: usize,
    },
}

/// The segment's header.
#[repr(C)]
pub struct SegmentHeader {
    /// Bumped by the media plane's main loop (liveness).
    pub media_heartbeat: AtomicU64,
    /// Bumped by the control plane.
    pub control_heartbeat: AtomicU64,
    /// The media plane's pid.
    pub media_pid: std::sync::atomic::AtomicU32,
    /// The control plane's pid.
    pub control_pid: std::sync::atomic::AtomicU32,
}

/// One mapping.
pub struct Segment {
    _fd: OwnedFd,
}

/// The control plane's ends for one core.
pub struct ControlEnds {
    /// Commands to the core.
    pub commands: Producer<Command>,
    /// Events from the core.
    pub events: Consumer<Event>,
}

/// A media core's ends.
pub struct MediaEnds {
    /// Commands from the control plane.
    pub commands: Consumer<Command>,
    /// Events to the control plane.
    pub events: Producer<Event>,
}

impl Segment {
    /// A new memfd-backed segment for `cores` cores with rings of `capacity` slots.
    pub fn create(cores: usize, capacity: usize) -> std::io::Result<Segment> {
        let _ = (cores, capacity);
        unimplemented!()
    }
    /// Maps a segment received from the other plane and checks its header.
    pub fn attach(fd: OwnedFd) -> Result<Segment, AttachError> {
        let _ = fd;
        unimplemented!()
    }
    /// The header.
    pub fn header(&self) -> &SegmentHeader {
        unimplemented!()
    }
    /// Cores described.
    pub fn cores(&self) -> usize {
        unimplemented!()
    }
    /// The memfd.
    pub fn fd(&self) -> &OwnedFd {
        &self._fd
    }
    /// Takes the control plane's ends (once per segment; None the second time).
    pub fn control_ends(&self) -> Option<Vec<ControlEnds>> {
        unimplemented!()
    }
    /// Takes the media plane's ends (once per segment; None the second time).
    pub fn media_ends(&self) -> Option<Vec<MediaEnds>> {
        unimplemented!()
    }
}
