//! The shared mapping: one memfd holding a header and, for every media core, a command
//! ring (control → core) and an event ring (core → control).
//!
//! ```text
//!  0      SegmentHeader: magic, layout version and hash, geometry, pids, epoch,
//!         heartbeats (each plane's on its own 128-byte line)
//!  384    ring table: per core, the offsets of its command and event rings
//!  header_bytes (a multiple of 128)
//!         core 0: command ring (ring_bytes::<Command>(capacity)), event ring
//!         core 1: ...
//! ```
//!
//! The control plane [`Segment::create`]s it and passes [`Segment::fd`] (with the
//! doorbells) over a Unix socket ([`crate::fdpass`]); the media plane
//! [`Segment::attach`]es the fd it receives. Each side then takes its ends once
//! ([`Segment::control_ends`], [`Segment::media_ends`]); the ends keep the mapping alive,
//! so they may outlive the `Segment`.
//!
//! `create` writes the magic last, with Release, after the header and every ring, so a
//! peer that sees the magic (Acquire) sees a complete segment. `attach` trusts nothing in
//! the header: it checks the magic, the layout, the geometry against the file's size,
//! every ring offset against the one the geometry implies, and every ring header, and
//! reports an [`AttachError`] rather than panicking. The memfd is sealed against shrinking
//! (`F_SEAL_SHRINK`), and `attach` refuses one that is not, so a peer cannot truncate the
//! file under a mapping (which would turn reads into SIGBUS).

use std::ffi::CStr;
use std::fmt;
use std::io;
use std::mem::offset_of;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::layout::{LAYOUT_HASH, LAYOUT_VERSION};
use crate::msg::{Command, Event};
use crate::ring::{self, ring_bytes, Consumer, KeepAlive, Producer, RingError, LINE, MAX_CAPACITY};

/// The first 8 bytes of every segment: `b"FSWMEDIA"` read as a little-endian u64.
pub const SEGMENT_MAGIC: u64 = u64::from_le_bytes(*b"FSWMEDIA");

/// The most media cores one segment describes.
pub const MAX_CORES: usize = 1024;

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
    /// The header's core count or ring capacity is out of range.
    #[error("segment header describes {cores} cores with rings of {capacity} slots; expected 1 to {MAX_CORES} cores and a power-of-two capacity up to {MAX_CAPACITY}")]
    BadGeometry {
        /// The header's core count.
        cores: u32,
        /// The header's ring capacity.
        capacity: u32,
    },
    /// A header field disagrees with the geometry (the sizes or the ring table).
    #[error("segment header field {field} is {found}, but its geometry implies {expected}")]
    BadHeader {
        /// The field (`header_bytes`, `segment_bytes`, `ring table`).
        field: &'static str,
        /// What the header holds.
        found: u64,
        /// What the core count and capacity imply.
        expected: u64,
    },
    /// One ring's own header is bad.
    #[error("core {core}'s {ring} ring: {source}")]
    Ring {
        /// The core.
        core: usize,
        /// `"command"` or `"event"`.
        ring: &'static str,
        /// What is wrong with it.
        source: RingError,
    },
    /// The memfd can still shrink, which would make the mapping fault (SIGBUS).
    #[error("segment memfd is not sealed against shrinking (seals {seals:#x}); create it with Segment::create")]
    Unsealed {
        /// The fd's seals (`F_GET_SEALS`; -1 if it has none to report).
        seals: i32,
    },
}

/// The segment's header, at offset 0 of the mapping. Fields after `magic` are valid once
/// the magic is (the creator stores it last, with Release).
#[repr(C, align(128))]
pub struct SegmentHeader {
    /// [`SEGMENT_MAGIC`].
    pub magic: AtomicU64,
    /// The creator's [`LAYOUT_HASH`].
    pub layout_hash: u64,
    /// The creator's [`LAYOUT_VERSION`].
    pub layout_version: u32,
    /// Bytes before the first ring (this header and the ring table), a multiple of 128.
    pub header_bytes: u32,
    /// Media cores described (ring pairs).
    pub cores: u32,
    /// Slots in every ring.
    pub ring_capacity: u32,
    /// The whole segment's size.
    pub segment_bytes: u64,
    /// Free for the planes to use (e.g. bumped by the control plane on each restart).
    pub epoch: AtomicU64,
    /// The media plane's pid, stored by the media plane when it attaches.
    pub media_pid: AtomicU32,
    /// The control plane's pid, stored by the control plane.
    pub control_pid: AtomicU32,
    _reserved: [u8; 72],
    /// Bumped by the media plane's main loop (liveness).
    pub media_heartbeat: AtomicU64,
    _pad_media: [u8; 120],
    /// Bumped by the control plane.
    pub control_heartbeat: AtomicU64,
    _pad_control: [u8; 120],
}

/// Where one core's rings start, from the start of the mapping. The ring table (one per
/// core) follows the [`SegmentHeader`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C)]
pub struct RingOffsets {
    /// The command ring (control → core).
    pub commands: u64,
    /// The event ring (core → control).
    pub events: u64,
}

const _: () = {
    assert!(size_of::<SegmentHeader>() == 3 * LINE);
    assert!(offset_of!(SegmentHeader, media_heartbeat) == LINE);
    assert!(offset_of!(SegmentHeader, control_heartbeat) == 2 * LINE);
};

/// The sizes and offsets `cores` and `capacity` imply.
#[derive(Debug, Clone, Copy)]
struct Geometry {
    cores: usize,
    capacity: usize,
    header_bytes: usize,
    command_bytes: usize,
    event_bytes: usize,
    total: usize,
}

impl Geometry {
    /// None if out of range.
    fn new(cores: usize, capacity: usize) -> Option<Geometry> {
        if !(1..=MAX_CORES).contains(&cores) || !capacity.is_power_of_two() || capacity > MAX_CAPACITY {
            return None;
        }
        let table = size_of::<SegmentHeader>() + cores * size_of::<RingOffsets>();
        let header_bytes = table.div_ceil(LINE) * LINE;
        let command_bytes = ring_bytes::<Command>(capacity);
        let event_bytes = ring_bytes::<Event>(capacity);
        let total = (command_bytes.checked_add(event_bytes)?).checked_mul(cores)?.checked_add(header_bytes)?;
        Some(Geometry { cores, capacity, header_bytes, command_bytes, event_bytes, total })
    }

    fn offsets(&self, core: usize) -> RingOffsets {
        let commands = self.header_bytes + core * (self.command_bytes + self.event_bytes);
        RingOffsets { commands: commands as u64, events: (commands + self.command_bytes) as u64 }
    }
}

/// A `MAP_SHARED` mapping, unmapped when the last holder (segment or ring end) drops.
struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: shared memory; everything in it is accessed through atomics or through ring
// ends that synchronize with each other.
unsafe impl Send for Mapping {}
// SAFETY: as above.
unsafe impl Sync for Mapping {}

impl Mapping {
    fn new(fd: &OwnedFd, len: usize) -> io::Result<Mapping> {
        // SAFETY: a fresh mapping of `len > 0` bytes of `fd` at an address the kernel picks.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ptr = NonNull::new(ptr.cast()).ok_or_else(|| io::Error::other("mmap returned null"))?;
        Ok(Mapping { ptr, len })
    }

    fn header(&self) -> &SegmentHeader {
        // SAFETY: the mapping is page-aligned and at least size_of::<SegmentHeader>() long
        // (checked before mapping); any bytes are valid for its integer and atomic fields.
        unsafe { self.ptr.cast::<SegmentHeader>().as_ref() }
    }

    /// The ring table's entry for `core` (which must be < the cores `header_bytes` covers).
    fn table(&self, core: usize) -> *mut RingOffsets {
        // SAFETY: callers keep `core` within a table that fits in the mapping.
        unsafe { self.ptr.as_ptr().add(size_of::<SegmentHeader>()).cast::<RingOffsets>().add(core) }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: our own mapping; nothing refers to it any more (the last Arc).
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

/// One mapping.
pub struct Segment {
    map: Arc<Mapping>,
    fd: OwnedFd,
    geometry: Geometry,
    control: Mutex<Option<Vec<ControlEnds>>>,
    media: Mutex<Option<Vec<MediaEnds>>>,
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

/// A memfd, close-on-exec, with `flags` added.
pub(crate) fn memfd(name: &CStr, flags: libc::c_uint) -> io::Result<OwnedFd> {
    // SAFETY: a valid C string; the result is checked.
    let fd = unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC | flags) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh fd nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The OS error after a syscall returned `r < 0`, naming the step.
fn os(what: &'static str, r: libc::c_int) -> io::Result<()> {
    if r < 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(e.kind(), format!("{what}: {e}")));
    }
    Ok(())
}

impl Segment {
    /// A new memfd-backed segment for `cores` cores (1 to [`MAX_CORES`]) with rings of
    /// `capacity` slots (a power of two up to [`MAX_CAPACITY`]); out-of-range values are
    /// `InvalidInput`.
    pub fn create(cores: usize, capacity: usize) -> std::io::Result<Segment> {
        let g = Geometry::new(cores, capacity).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{cores} cores with rings of {capacity} slots: expected 1 to {MAX_CORES} cores and a power-of-two capacity up to {MAX_CAPACITY}"),
            )
        })?;
        let fd = memfd(c"ferroswitch-media", libc::MFD_ALLOW_SEALING)?;
        // SAFETY: plain syscalls on our own fd.
        unsafe {
            os("ftruncate", libc::ftruncate(fd.as_raw_fd(), g.total as libc::off_t))?;
            let seals = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_SEAL;
            os("F_ADD_SEALS", libc::fcntl(fd.as_raw_fd(), libc::F_ADD_SEALS, seals))?;
        }
        let map = Mapping::new(&fd, g.total)?;
        let header = SegmentHeader {
            magic: AtomicU64::new(0),
            layout_hash: LAYOUT_HASH,
            layout_version: LAYOUT_VERSION,
            header_bytes: g.header_bytes as u32,
            cores: cores as u32,
            ring_capacity: capacity as u32,
            segment_bytes: g.total as u64,
            epoch: AtomicU64::new(0),
            media_pid: AtomicU32::new(0),
            control_pid: AtomicU32::new(0),
            _reserved: [0; 72],
            media_heartbeat: AtomicU64::new(0),
            _pad_media: [0; 120],
            control_heartbeat: AtomicU64::new(0),
            _pad_control: [0; 120],
        };
        let base = map.ptr.as_ptr();
        // SAFETY: the mapping is `g.total` bytes, page-aligned, and nobody else has the fd
        // yet; the header, the table (header_bytes) and every ring (g.offsets) lie inside it.
        unsafe {
            base.cast::<SegmentHeader>().write(header);
            for core in 0..cores {
                let at = g.offsets(core);
                map.table(core).write(at);
                let init = ring::init::<Command>(base.add(at.commands as usize), g.command_bytes, capacity)
                    .and_then(|()| ring::init::<Event>(base.add(at.events as usize), g.event_bytes, capacity));
                init.map_err(io::Error::other)?;
            }
        }
        map.header().magic.store(SEGMENT_MAGIC, Ordering::Release);
        Segment::open(fd, map).map_err(io::Error::other)
    }

    /// Maps a segment received from the other plane and checks its header.
    pub fn attach(fd: OwnedFd) -> Result<Segment, AttachError> {
        // SAFETY: `stat` is plain data; fstat fills it in.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: fstat writes into `st`.
        if unsafe { libc::fstat(fd.as_raw_fd(), &mut st) } < 0 {
            return Err(AttachError::Io { what: "fstat", source: io::Error::last_os_error() });
        }
        let len = usize::try_from(st.st_size).unwrap_or(0);
        if len < size_of::<SegmentHeader>() {
            return Err(AttachError::TooSmall { len, needed: size_of::<SegmentHeader>() });
        }
        // SAFETY: F_GET_SEALS takes no pointer.
        let seals = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GET_SEALS) };
        if seals < 0 || seals & libc::F_SEAL_SHRINK == 0 {
            return Err(AttachError::Unsealed { seals });
        }
        let map = Mapping::new(&fd, len).map_err(|source| AttachError::Io { what: "mmap", source })?;
        Segment::open(fd, map)
    }

    /// Checks the mapping's header and rings and builds both sides' ends.
    fn open(fd: OwnedFd, map: Mapping) -> Result<Segment, AttachError> {
        let h = map.header();
        let magic = h.magic.load(Ordering::Acquire);
        if magic != SEGMENT_MAGIC {
            return Err(AttachError::BadMagic { found: magic });
        }
        if h.layout_version != LAYOUT_VERSION || h.layout_hash != LAYOUT_HASH {
            return Err(AttachError::Layout {
                peer_version: h.layout_version,
                peer_hash: h.layout_hash,
                our_version: LAYOUT_VERSION,
                our_hash: LAYOUT_HASH,
            });
        }
        let (cores, capacity) = (h.cores, h.ring_capacity);
        let g = Geometry::new(cores as usize, capacity as usize).ok_or(AttachError::BadGeometry { cores, capacity })?;
        let check = |field, found: u64, expected: usize| {
            if found == expected as u64 {
                Ok(())
            } else {
                Err(AttachError::BadHeader { field, found, expected: expected as u64 })
            }
        };
        check("header_bytes", h.header_bytes.into(), g.header_bytes)?;
        check("segment_bytes", h.segment_bytes, g.total)?;
        if map.len < g.total {
            return Err(AttachError::TooSmall { len: map.len, needed: g.total });
        }
        let map = Arc::new(map);
        let keep: KeepAlive = map.clone();
        let base = map.ptr.as_ptr();
        let (mut control, mut media) = (Vec::with_capacity(g.cores), Vec::with_capacity(g.cores));
        for core in 0..g.cores {
            let want = g.offsets(core);
            // SAFETY: the table (`cores` entries) lies within header_bytes <= total <= len.
            let found = unsafe { map.table(core).read() };
            check("ring table", found.commands, want.commands as usize)?;
            check("ring table", found.events, want.events as usize)?;
            let ring = |ring, source| AttachError::Ring { core, ring, source };
            let (c, e) = (want.commands as usize, want.events as usize);
            // SAFETY: each ring's bytes lie inside the mapping (the offsets are the
            // geometry's, and total <= len), which `keep` keeps mapped for every end. Each
            // ring gets one producer and one consumer here; the Segment hands each side's
            // ends out once, so only one of each is ever used.
            unsafe {
                control.push(ControlEnds {
                    commands: Producer::from_raw(base.add(c), g.command_bytes, Some(keep.clone()))
                        .map_err(|s| ring("command", s))?,
                    events: Consumer::from_raw(base.add(e), g.event_bytes, Some(keep.clone()))
                        .map_err(|s| ring("event", s))?,
                });
                media.push(MediaEnds {
                    commands: Consumer::from_raw(base.add(c), g.command_bytes, Some(keep.clone()))
                        .map_err(|s| ring("command", s))?,
                    events: Producer::from_raw(base.add(e), g.event_bytes, Some(keep.clone()))
                        .map_err(|s| ring("event", s))?,
                });
            }
        }
        Ok(Segment { map, fd, geometry: g, control: Mutex::new(Some(control)), media: Mutex::new(Some(media)) })
    }

    /// The header.
    pub fn header(&self) -> &SegmentHeader {
        self.map.header()
    }

    /// Cores described.
    pub fn cores(&self) -> usize {
        self.geometry.cores
    }

    /// Slots in every ring.
    pub fn capacity(&self) -> usize {
        self.geometry.capacity
    }

    /// The memfd.
    pub fn fd(&self) -> &OwnedFd {
        &self.fd
    }

    /// Takes the control plane's ends (once per segment; None the second time).
    pub fn control_ends(&self) -> Option<Vec<ControlEnds>> {
        self.control.lock().ok()?.take()
    }

    /// Takes the media plane's ends (once per segment; None the second time).
    pub fn media_ends(&self) -> Option<Vec<MediaEnds>> {
        self.media.lock().ok()?.take()
    }
}

impl fmt::Debug for Segment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Segment")
            .field("fd", &self.fd)
            .field("bytes", &self.map.len)
            .field("cores", &self.geometry.cores)
            .field("capacity", &self.geometry.capacity)
            .finish_non_exhaustive()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use std::io::Write;
    use std::os::fd::{AsFd, AsRawFd, FromRawFd, RawFd};
    use std::os::unix::net::UnixStream;
    use std::os::unix::process::CommandExt;
    use std::process::{Child, Stdio};
    use std::time::{Duration, Instant};

    use super::*;
    use crate::doorbell::Doorbell;
    use crate::fdpass::{recv_with_fds, send_with_fds};
    use crate::msg::{CommandKind, EventKind, MsgHeader};

    fn dup(seg: &Segment) -> OwnedFd {
        seg.fd().try_clone().unwrap()
    }

    /// Writes `v` at `offset` in the segment's mapping, as a corrupt or hostile peer would.
    fn poke<V: Copy>(seg: &Segment, offset: usize, v: V) {
        assert!(offset + size_of::<V>() <= seg.map.len);
        // SAFETY: inside the mapping; no reference to these bytes is held meanwhile.
        unsafe { std::ptr::write_volatile(seg.map.ptr.as_ptr().add(offset).cast::<V>(), v) };
    }

    /// A new memfd holding the segment's first `len` bytes, sealed against shrinking or not.
    fn copy(seg: &Segment, len: usize, seal: bool) -> OwnedFd {
        let fd = memfd(c"segment-copy", libc::MFD_ALLOW_SEALING).unwrap();
        // SAFETY: the mapping is at least `len` bytes; nothing writes it meanwhile.
        let bytes = unsafe { std::slice::from_raw_parts(seg.map.ptr.as_ptr(), len.min(seg.map.len)) };
        let mut file = std::fs::File::from(fd);
        file.write_all(bytes).unwrap();
        if seal {
            // SAFETY: F_ADD_SEALS takes no pointer.
            assert_eq!(unsafe { libc::fcntl(file.as_raw_fd(), libc::F_ADD_SEALS, libc::F_SEAL_SHRINK) }, 0);
        }
        file.into()
    }

    fn command(i: u64) -> Command {
        let mut c = Command::new(CommandKind::Ping as u16, 0, i * 7 + 1, i);
        c.header.seq = i as u32;
        for (k, b) in bytemuck::bytes_of_mut(&mut c)[size_of::<MsgHeader>()..].iter_mut().enumerate() {
            *b = (i as u8).wrapping_mul(31) ^ k as u8;
        }
        c
    }

    fn echo(c: &Command) -> Event {
        let mut e: Event = bytemuck::cast(*c);
        e.header.kind = EventKind::Pong as u16;
        e
    }

    #[test]
    fn an_attached_dup_shares_the_rings_and_ends_outlive_both_segments() {
        let control = Segment::create(2, 8).unwrap();
        let media = Segment::attach(dup(&control)).unwrap();
        assert_eq!((media.cores(), media.capacity()), (2, 8));
        assert_eq!(media.header().segment_bytes, control.header().segment_bytes);
        let mut c = control.control_ends().unwrap();
        let mut m = media.media_ends().unwrap();
        assert!(control.control_ends().is_none(), "once per segment value");
        assert!(media.media_ends().is_none());
        drop((control, media));

        c[1].commands.try_push(&command(5)).unwrap();
        assert!(m[0].commands.pop().is_none(), "core 0's ring is another ring");
        let got = m[1].commands.pop().unwrap();
        assert_eq!(got, command(5));
        m[1].events.try_push(&echo(&got)).unwrap();
        assert_eq!(c[1].events.pop(), Some(echo(&command(5))));
    }

    #[test]
    fn the_header_holds_the_magic_layout_and_geometry() {
        let seg = Segment::create(3, 16).unwrap();
        let h = seg.header();
        assert_eq!(h.magic.load(Ordering::Relaxed).to_le_bytes(), *b"FSWMEDIA");
        assert_eq!((h.layout_version, h.layout_hash), (LAYOUT_VERSION, LAYOUT_HASH));
        assert_eq!((h.cores, h.ring_capacity, h.header_bytes), (3, 16, 512));
        let ring = (ring_bytes::<Command>(16) + ring_bytes::<Event>(16)) as u64;
        assert_eq!(h.segment_bytes, 512 + 3 * ring);
        // SAFETY: the table has 3 entries inside the mapping.
        let core2 = unsafe { seg.map.table(2).read() };
        assert_eq!(core2, RingOffsets { commands: 512 + 2 * ring, events: 512 + 2 * ring + ring / 2 });
        // SAFETY: fcntl without pointers.
        let seals = unsafe { libc::fcntl(seg.fd().as_raw_fd(), libc::F_GET_SEALS) };
        assert_eq!(seals & libc::F_SEAL_SHRINK, libc::F_SEAL_SHRINK);
    }

    #[test]
    fn create_refuses_out_of_range_geometry() {
        for (cores, capacity) in [(0, 8), (MAX_CORES + 1, 8), (1, 0), (1, 3), (1, MAX_CAPACITY * 2)] {
            let err = Segment::create(cores, capacity).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{cores} {capacity}");
        }
    }

    #[test]
    fn a_different_layout_hash_or_version_is_a_layout_error_with_both_sides_values() {
        let seg = Segment::create(1, 4).unwrap();
        poke(&seg, offset_of!(SegmentHeader, layout_hash), 0xdead_beef_u64);
        match Segment::attach(dup(&seg)) {
            Err(AttachError::Layout { peer_version, peer_hash, our_version, our_hash }) => {
                assert_eq!((peer_version, peer_hash), (LAYOUT_VERSION, 0xdead_beef));
                assert_eq!((our_version, our_hash), (LAYOUT_VERSION, LAYOUT_HASH));
            }
            other => panic!("{other:?}"),
        }
        poke(&seg, offset_of!(SegmentHeader, layout_hash), LAYOUT_HASH);
        poke(&seg, offset_of!(SegmentHeader, layout_version), LAYOUT_VERSION + 1);
        let err = Segment::attach(dup(&seg)).unwrap_err();
        assert!(matches!(err, AttachError::Layout { peer_version, .. } if peer_version == LAYOUT_VERSION + 1));
        assert!(err.to_string().contains("run the same ferroswitch build"), "{err}");
    }

    #[test]
    fn a_mapping_without_the_magic_is_refused() {
        let seg = Segment::create(1, 4).unwrap();
        poke(&seg, 0, u64::from_le_bytes(*b"NOTMEDIA"));
        let err = Segment::attach(dup(&seg)).unwrap_err();
        assert!(matches!(err, AttachError::BadMagic { found } if found == u64::from_le_bytes(*b"NOTMEDIA")));
    }

    #[test]
    fn a_hostile_header_is_an_error_not_a_panic() {
        let seg = Segment::create(2, 4).unwrap();
        let attach = || Segment::attach(dup(&seg)).unwrap_err();
        let cores = offset_of!(SegmentHeader, cores);
        for bad in [0u32, MAX_CORES as u32 + 1, u32::MAX] {
            poke(&seg, cores, bad);
            assert!(matches!(attach(), AttachError::BadGeometry { cores, .. } if cores == bad));
        }
        poke(&seg, cores, 3u32);
        assert!(matches!(attach(), AttachError::BadHeader { field: "segment_bytes", .. }), "one core too many");
        poke(&seg, cores, 2u32);
        poke(&seg, offset_of!(SegmentHeader, ring_capacity), 5u32);
        assert!(matches!(attach(), AttachError::BadGeometry { capacity: 5, .. }));
        poke(&seg, offset_of!(SegmentHeader, ring_capacity), 4u32);
        poke(&seg, offset_of!(SegmentHeader, header_bytes), 128u32);
        assert!(matches!(attach(), AttachError::BadHeader { field: "header_bytes", found: 128, .. }));
        poke(&seg, offset_of!(SegmentHeader, header_bytes), 512u32);

        // Core 1's event ring pointing into core 0's command ring.
        let at = size_of::<SegmentHeader>() + size_of::<RingOffsets>() + offset_of!(RingOffsets, events);
        poke(&seg, at, 512u64);
        assert!(matches!(attach(), AttachError::BadHeader { field: "ring table", found: 512, .. }));
        poke(&seg, at, seg.geometry.offsets(1).events);

        // Core 1's event ring says its slots are another size.
        let slot_size = seg.geometry.offsets(1).events as usize + 8;
        poke(&seg, slot_size, 64u64);
        match attach() {
            AttachError::Ring { core: 1, ring: "event", source: RingError::SlotSize { found: 64, expected } } => {
                assert_eq!(expected, size_of::<Event>())
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_truncated_or_empty_memfd_is_too_small() {
        let seg = Segment::create(2, 4).unwrap();
        let total = seg.map.len;
        let err = Segment::attach(copy(&seg, total - 1, true)).unwrap_err();
        assert!(matches!(err, AttachError::TooSmall { len, needed } if len == total - 1 && needed == total));
        let err = Segment::attach(copy(&seg, 100, true)).unwrap_err();
        assert!(matches!(err, AttachError::TooSmall { len: 100, needed: 384 }));
        let err = Segment::attach(memfd(c"empty", 0).unwrap()).unwrap_err();
        assert!(matches!(err, AttachError::TooSmall { len: 0, .. }));
        assert!(Segment::attach(copy(&seg, total, true)).is_ok(), "a whole, sealed copy attaches");
    }

    #[test]
    fn a_memfd_that_can_shrink_is_refused() {
        let seg = Segment::create(1, 4).unwrap();
        let err = Segment::attach(copy(&seg, seg.map.len, false)).unwrap_err();
        assert!(matches!(err, AttachError::Unsealed { .. }), "{err}");
    }

    /// Set in the child of `two_processes_echo_100k_commands_as_events` to the fd number of
    /// its end of the socket pair.
    const CHILD_ENV: &str = "FERROSWITCH_RING_CHILD";
    const ECHOES: u64 = 100_000;
    const DEADLINE: Duration = Duration::from_secs(10);
    const NAP: Option<Duration> = Some(Duration::from_millis(50));

    /// Kills the child unless it was reaped.
    struct Reap(Option<Child>);

    impl Drop for Reap {
        fn drop(&mut self) {
            if let Some(mut child) = self.0.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }

    /// The media side: attach what the parent sends, echo every command on core 0 as an
    /// event, sleep on the command doorbell when idle.
    #[test]
    #[ignore = "the child half of two_processes_echo_100k_commands_as_events"]
    fn two_processes_child() {
        let Ok(fd) = std::env::var(CHILD_ENV) else { return };
        let fd: RawFd = fd.parse().unwrap();
        // SAFETY: the parent left this fd open for us (and only us) across exec.
        let sock = unsafe { UnixStream::from_raw_fd(fd) };
        let mut n = [0u8; 8];
        let (len, fds) = recv_with_fds(&sock, &mut n, 3).unwrap();
        assert_eq!(len, 8);
        let [memfd, command_bell, event_bell]: [OwnedFd; 3] = fds.try_into().unwrap();
        let (command_bell, event_bell) = (Doorbell::from_fd(command_bell), Doorbell::from_fd(event_bell));
        let seg = Segment::attach(memfd).unwrap();
        seg.header().media_pid.store(std::process::id(), Ordering::Release);
        let MediaEnds { mut commands, mut events } = seg.media_ends().unwrap().swap_remove(0);
        let total = u64::from_le_bytes(n);
        let (mut echoed, start) = (0, Instant::now());
        while echoed < total && start.elapsed() < DEADLINE {
            seg.header().media_heartbeat.fetch_add(1, Ordering::Relaxed);
            let room = events.free();
            let n = commands.drain(room, |c| events.try_push(&echo(c)).expect("room was checked"));
            echoed += n as u64;
            if n > 0 {
                if events.consumer_sleeping() {
                    event_bell.ring();
                }
            } else if room == 0 {
                std::thread::yield_now();
            } else if commands.prepare_sleep() {
                command_bell.wait(NAP);
                commands.woke();
            }
        }
        assert_eq!(echoed, total, "echoed before the deadline");
    }

    #[test]
    fn two_processes_echo_100k_commands_as_events() {
        let seg = Segment::create(2, 256).unwrap();
        let (command_bell, event_bell) = (Doorbell::new().unwrap(), Doorbell::new().unwrap());
        let (sock, theirs) = UnixStream::pair().unwrap();
        let their_fd = theirs.as_raw_fd();
        let mut cmd = std::process::Command::new(std::env::current_exe().unwrap());
        cmd.args(["--exact", "segment::tests::two_processes_child", "--nocapture", "--ignored"])
            .env(CHILD_ENV, their_fd.to_string())
            .stdout(Stdio::null());
        // SAFETY: fcntl is async-signal-safe and touches only the child's copy of the fd.
        unsafe {
            cmd.pre_exec(move || match libc::fcntl(their_fd, libc::F_SETFD, 0) {
                -1 => Err(io::Error::last_os_error()),
                _ => Ok(()),
            });
        }
        let mut child = Reap(Some(cmd.spawn().unwrap()));
        drop(theirs);
        let fds = [seg.fd().as_fd(), command_bell.fd().as_fd(), event_bell.fd().as_fd()];
        send_with_fds(&sock, &ECHOES.to_le_bytes(), &fds).unwrap();

        let ControlEnds { mut commands, mut events } = seg.control_ends().unwrap().swap_remove(0);
        let (mut sent, mut received, start) = (0, 0, Instant::now());
        while received < ECHOES {
            assert!(start.elapsed() < DEADLINE, "{received} of {ECHOES} echoes after {DEADLINE:?}");
            let before = (sent, received);
            while sent < ECHOES && commands.try_push(&command(sent)).is_ok() {
                sent += 1;
            }
            if sent > before.0 && commands.consumer_sleeping() {
                command_bell.ring();
            }
            events.drain(usize::MAX, |e| {
                assert_eq!(*e, echo(&command(received)), "echo {received}");
                received += 1;
            });
            if (sent, received) == before && events.prepare_sleep() {
                event_bell.wait(NAP);
                events.woke();
            }
        }
        let status = loop {
            if let Some(status) = child.0.as_mut().unwrap().try_wait().unwrap() {
                break status;
            }
            assert!(start.elapsed() < DEADLINE, "the child did not exit");
            std::thread::sleep(Duration::from_millis(5));
        };
        assert!(status.success(), "child: {status}");
        assert_eq!(seg.header().media_pid.load(Ordering::Acquire), child.0.as_ref().unwrap().id());
        assert!(seg.header().media_heartbeat.load(Ordering::Relaxed) > 0);
        assert_eq!(events.pop(), None, "nothing but the echoes");
    }
}
