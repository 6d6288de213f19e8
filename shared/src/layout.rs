//! The layout check both planes make before they share a mapping: a version the code
//! bumps by hand, and a hash of every message type's size and field offsets (and the
//! kind values), and of the ring and segment headers' field offsets, computed at compile
//! time. Two binaries built from different message or header definitions get different
//! hashes, and the later one refuses to attach.

use std::mem::{offset_of, size_of};

use crate::msg::*;
use crate::ring::{RingHeader, HEADER_BYTES, LINE};
use crate::segment::{RingOffsets, SegmentHeader, MAX_CORES};

/// Bumped whenever the meaning of a field changes without changing the layout.
pub const LAYOUT_VERSION: u32 = 1;

/// FNV-1a over the layout facts below.
pub const LAYOUT_HASH: u64 = fnv1a(&[
    size_of::<MsgHeader>() as u64,
    offset_of!(MsgHeader, kind) as u64,
    offset_of!(MsgHeader, core) as u64,
    offset_of!(MsgHeader, seq) as u64,
    offset_of!(MsgHeader, session) as u64,
    offset_of!(MsgHeader, generation) as u64,
    size_of::<Command>() as u64,
    size_of::<Event>() as u64,
    BODY_BYTES as u64,
    size_of::<Endpoint>() as u64,
    offset_of!(Endpoint, port) as u64,
    offset_of!(Endpoint, family) as u64,
    size_of::<PayloadMap>() as u64,
    offset_of!(PayloadMap, pt) as u64,
    offset_of!(PayloadMap, codec) as u64,
    offset_of!(PayloadMap, channels) as u64,
    size_of::<LegSpec>() as u64,
    offset_of!(LegSpec, remote) as u64,
    offset_of!(LegSpec, codecs) as u64,
    offset_of!(LegSpec, flags) as u64,
    offset_of!(LegSpec, remote_rtcp_port) as u64,
    offset_of!(LegSpec, codec_count) as u64,
    offset_of!(LegSpec, ptime_ms) as u64,
    offset_of!(LegSpec, media) as u64,
    MAX_CODECS as u64,
    size_of::<SessionSpec>() as u64,
    offset_of!(SessionSpec, rtp_timeout_secs) as u64,
    size_of::<Created>() as u64,
    size_of::<Latched>() as u64,
    offset_of!(Latched, leg) as u64,
    size_of::<Dtmf>() as u64,
    offset_of!(Dtmf, event) as u64,
    size_of::<LegStats>() as u64,
    offset_of!(LegStats, jitter) as u64,
    size_of::<StreamStats>() as u64,
    size_of::<ErrorInfo>() as u64,
    offset_of!(ErrorInfo, text) as u64,
    size_of::<Count>() as u64,
    CommandKind::Create as u64,
    CommandKind::Update as u64,
    CommandKind::Destroy as u64,
    CommandKind::Query as u64,
    CommandKind::Ping as u64,
    EventKind::Created as u64,
    EventKind::Updated as u64,
    EventKind::Destroyed as u64,
    EventKind::SessionInfo as u64,
    EventKind::QueryDone as u64,
    EventKind::Latched as u64,
    EventKind::Dtmf as u64,
    EventKind::RtpTimeout as u64,
    EventKind::Stats as u64,
    EventKind::Error as u64,
    EventKind::Pong as u64,
    // The ring header (shared/src/ring.rs).
    LINE as u64,
    HEADER_BYTES as u64,
    offset_of!(RingHeader, geometry.0.capacity) as u64,
    offset_of!(RingHeader, geometry.0.slot_size) as u64,
    offset_of!(RingHeader, producer.0.head) as u64,
    offset_of!(RingHeader, producer.0.full_events) as u64,
    offset_of!(RingHeader, tail.0) as u64,
    offset_of!(RingHeader, consumer_sleeping.0) as u64,
    // The segment header (shared/src/segment.rs).
    size_of::<SegmentHeader>() as u64,
    offset_of!(SegmentHeader, layout_hash) as u64,
    offset_of!(SegmentHeader, layout_version) as u64,
    offset_of!(SegmentHeader, header_bytes) as u64,
    offset_of!(SegmentHeader, cores) as u64,
    offset_of!(SegmentHeader, ring_capacity) as u64,
    offset_of!(SegmentHeader, segment_bytes) as u64,
    offset_of!(SegmentHeader, epoch) as u64,
    offset_of!(SegmentHeader, media_pid) as u64,
    offset_of!(SegmentHeader, control_pid) as u64,
    offset_of!(SegmentHeader, media_heartbeat) as u64,
    offset_of!(SegmentHeader, control_heartbeat) as u64,
    size_of::<RingOffsets>() as u64,
    offset_of!(RingOffsets, events) as u64,
    MAX_CORES as u64,
]);

const fn fnv1a(facts: &[u64]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut i = 0;
    while i < facts.len() {
        let mut b = 0;
        while b < 8 {
            h ^= (facts[i] >> (8 * b)) & 0xff;
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
            b += 1;
        }
        i += 1;
    }
    h
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_hash_depends_on_every_fact() {
        assert_ne!(super::fnv1a(&[1, 2]), super::fnv1a(&[2, 1]));
        assert_ne!(super::fnv1a(&[256]), super::fnv1a(&[257]));
        assert_ne!(super::LAYOUT_HASH, 0);
    }
}
