//! The test packets: 172-byte G.711 RTP packets (12-byte header, 160 bytes of payload,
//! PT 0) whose payload carries what the receiver checks.
//!
//! Payload: magic `RTPL`, stream id (u32 BE), packet index (u64 BE), send time
//! (monotonic ns, u64 BE), flags (bit 0: priming), then µ-law silence (0xff). Stream `s`
//! has a fixed SSRC, first sequence number and first timestamp derived from `s`; packet
//! `k` carries sequence `seq0 + k` and timestamp `ts0 + 160 k`. Priming packets (before
//! the measurement, so relays learn addresses) are indices `0..PRIMING`.

/// Bytes in a test packet.
pub const LEN: usize = 172;
/// RTP header bytes.
pub const HEADER: usize = 12;
/// Timestamp units per packet (20 ms at 8 kHz).
pub const TS_STEP: u32 = 160;
/// Priming packets per stream.
pub const PRIMING: u64 = 2;
const MAGIC: &[u8; 4] = b"RTPL";

/// A stream's fixed RTP identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamId {
    /// The SSRC.
    pub ssrc: u32,
    /// Sequence number of packet 0.
    pub seq0: u16,
    /// Timestamp of packet 0.
    pub ts0: u32,
}

impl StreamId {
    /// Stream `s`'s identity (spread so streams differ in every field).
    pub fn of(s: u32) -> StreamId {
        let h = u64::from(s).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        StreamId { ssrc: (h >> 32) as u32 | 1, seq0: (h >> 16) as u16, ts0: h as u32 }
    }
}

/// What the receiver reads back from a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decoded {
    /// The stream.
    pub stream: u32,
    /// The packet's index in its stream.
    pub index: u64,
    /// When it was sent (monotonic ns).
    pub sent_ns: u64,
    /// A priming packet (not measured).
    pub priming: bool,
    /// The RTP header agrees with the payload (SSRC, sequence, timestamp, PT, version).
    pub header_ok: bool,
}

/// Writes packet `index` of `stream` sent at `sent_ns` into `buf`.
pub fn write(buf: &mut [u8; LEN], stream: u32, index: u64, sent_ns: u64) {
    let id = StreamId::of(stream);
    buf[0] = 0x80;
    buf[1] = 0; // PT 0 (PCMU), no marker
    buf[2..4].copy_from_slice(&id.seq0.wrapping_add(index as u16).to_be_bytes());
    buf[4..8].copy_from_slice(&id.ts0.wrapping_add((index as u32).wrapping_mul(TS_STEP)).to_be_bytes());
    buf[8..12].copy_from_slice(&id.ssrc.to_be_bytes());
    let p = &mut buf[HEADER..];
    p[0..4].copy_from_slice(MAGIC);
    p[4..8].copy_from_slice(&stream.to_be_bytes());
    p[8..16].copy_from_slice(&index.to_be_bytes());
    p[16..24].copy_from_slice(&sent_ns.to_be_bytes());
    p[24] = u8::from(index < PRIMING);
    p[25..].fill(0xff);
}

/// Reads a test packet; `None` if it is not one of ours (wrong length or magic).
pub fn read(buf: &[u8]) -> Option<Decoded> {
    if buf.len() != LEN || &buf[HEADER..HEADER + 4] != MAGIC {
        return None;
    }
    let be32 = |o: usize| u32::from_be_bytes(buf[o..o + 4].try_into().expect("4 bytes"));
    let be64 = |o: usize| u64::from_be_bytes(buf[o..o + 8].try_into().expect("8 bytes"));
    let stream = be32(HEADER + 4);
    let index = be64(HEADER + 8);
    let id = StreamId::of(stream);
    let header_ok = buf[0] == 0x80
        && buf[1] & 0x7f == 0
        && u16::from_be_bytes([buf[2], buf[3]]) == id.seq0.wrapping_add(index as u16)
        && be32(4) == id.ts0.wrapping_add((index as u32).wrapping_mul(TS_STEP))
        && be32(8) == id.ssrc;
    Some(Decoded { stream, index, sent_ns: be64(HEADER + 16), priming: buf[HEADER + 24] & 1 == 1, header_ok })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_packet_reads_back_and_a_rewritten_header_is_caught() {
        let mut b = [0u8; LEN];
        write(&mut b, 7, 70_000, 123_456_789);
        let d = read(&b).unwrap();
        assert_eq!(d, Decoded { stream: 7, index: 70_000, sent_ns: 123_456_789, priming: false, header_ok: true });
        write(&mut b, 7, 1, 5);
        assert!(read(&b).unwrap().priming);
        // A relay that renumbered the stream, or changed the SSRC.
        for (at, byte) in [(3, 1u8), (7, 1), (11, 1), (1, 8)] {
            let mut c = b;
            c[at] ^= byte;
            assert!(!read(&c).unwrap().header_ok, "byte {at}");
        }
        assert_eq!(read(&b[..LEN - 1]), None);
        let mut junk = b;
        junk[HEADER] = b'X';
        assert_eq!(read(&junk), None);
    }

    #[test]
    fn streams_have_distinct_identities() {
        let ids: std::collections::HashSet<u32> = (0..10_000).map(|s| StreamId::of(s).ssrc).collect();
        assert_eq!(ids.len(), 10_000);
    }
}
