//! RTP and RTCP headers (RFC 3550), read in place: no copy, no allocation, and a
//! typed refusal for anything that is not a well-formed packet.
//!
//! With rtcp-mux (RFC 5761 §4) RTP and RTCP share a port; [`classify`] tells them apart
//! by the second byte (RTCP packet types 192–223 fall where RTP payload types 64–95
//! with the marker bit would).

/// Why a datagram is not a usable RTP or RTCP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PacketError {
    /// Shorter than a fixed header.
    #[error("{0} bytes: shorter than a 12-byte RTP header")]
    TooShort(usize),
    /// Version is not 2.
    #[error("RTP version {0}, expected 2")]
    Version(u8),
    /// The CSRC list, extension or padding runs past the end.
    #[error("header fields run past the end of the {0}-byte packet")]
    Truncated(usize),
}

/// What a datagram on an RTP port is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// An RTP packet.
    Rtp,
    /// An RTCP packet (compound or not).
    Rtcp,
}

/// RTP or RTCP, by RFC 5761 §4's rule; `None` if it is not version 2 or too short.
pub fn classify(b: &[u8]) -> Option<Kind> {
    if b.len() < 8 || b[0] >> 6 != 2 {
        return None;
    }
    Some(if (192..=223).contains(&b[1]) { Kind::Rtcp } else { Kind::Rtp })
}

/// A read-only view of an RTP packet's header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rtp<'a> {
    bytes: &'a [u8],
    payload_at: usize,
    payload_end: usize,
}

impl<'a> Rtp<'a> {
    /// Checks the header (version, CSRC list, extension, padding) and returns the view.
    pub fn parse(bytes: &'a [u8]) -> Result<Rtp<'a>, PacketError> {
        let n = bytes.len();
        if n < 12 {
            return Err(PacketError::TooShort(n));
        }
        let version = bytes[0] >> 6;
        if version != 2 {
            return Err(PacketError::Version(version));
        }
        let cc = usize::from(bytes[0] & 0x0f);
        let mut at = 12 + 4 * cc;
        if bytes[0] & 0x10 != 0 {
            // Extension: 16-bit profile, 16-bit length in 32-bit words.
            if n < at + 4 {
                return Err(PacketError::Truncated(n));
            }
            let words = usize::from(u16::from_be_bytes([bytes[at + 2], bytes[at + 3]]));
            at += 4 + 4 * words;
        }
        let mut end = n;
        if bytes[0] & 0x20 != 0 {
            let pad = usize::from(bytes[n - 1]);
            if pad == 0 || pad > n {
                return Err(PacketError::Truncated(n));
            }
            end = n - pad;
        }
        if at > end {
            return Err(PacketError::Truncated(n));
        }
        Ok(Rtp { bytes, payload_at: at, payload_end: end })
    }

    /// The marker bit.
    pub fn marker(&self) -> bool {
        self.bytes[1] & 0x80 != 0
    }

    /// The payload type.
    pub fn payload_type(&self) -> u8 {
        self.bytes[1] & 0x7f
    }

    /// The sequence number.
    pub fn seq(&self) -> u16 {
        u16::from_be_bytes([self.bytes[2], self.bytes[3]])
    }

    /// The timestamp.
    pub fn timestamp(&self) -> u32 {
        u32::from_be_bytes([self.bytes[4], self.bytes[5], self.bytes[6], self.bytes[7]])
    }

    /// The synchronization source.
    pub fn ssrc(&self) -> u32 {
        u32::from_be_bytes([self.bytes[8], self.bytes[9], self.bytes[10], self.bytes[11]])
    }

    /// The payload (after CSRCs and extension, before padding).
    pub fn payload(&self) -> &'a [u8] {
        &self.bytes[self.payload_at..self.payload_end]
    }
}

/// Rewrites a packet's sequence number, timestamp and SSRC in place (the header was
/// checked by [`Rtp::parse`], so the first 12 bytes exist).
pub fn rewrite(bytes: &mut [u8], seq: u16, timestamp: u32, ssrc: u32) {
    bytes[2..4].copy_from_slice(&seq.to_be_bytes());
    bytes[4..8].copy_from_slice(&timestamp.to_be_bytes());
    bytes[8..12].copy_from_slice(&ssrc.to_be_bytes());
}

/// An RFC 4733 telephone-event payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TelephoneEvent {
    /// The event (0–9, 10 = *, 11 = #, 12–15 = A–D, 16 = flash).
    pub event: u8,
    /// The end bit.
    pub end: bool,
    /// Volume, in −dBm0.
    pub volume: u8,
    /// Duration so far, in timestamp units.
    pub duration: u16,
}

impl TelephoneEvent {
    /// Reads the first event of a payload (RFC 4733 §2.3); `None` if under 4 bytes.
    pub fn parse(payload: &[u8]) -> Option<TelephoneEvent> {
        let b = payload.get(..4)?;
        Some(TelephoneEvent {
            event: b[0],
            end: b[1] & 0x80 != 0,
            volume: b[1] & 0x3f,
            duration: u16::from_be_bytes([b[2], b[3]]),
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A PCMU packet with 160 bytes of payload.
    pub(crate) fn packet(pt: u8, seq: u16, ts: u32, ssrc: u32) -> Vec<u8> {
        let mut p = vec![0x80, pt, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        rewrite(&mut p, seq, ts, ssrc);
        p.extend(std::iter::repeat_n(0xff, 160));
        p
    }

    #[test]
    fn fixed_header_fields_read_back_rfc3550_5_1() {
        let p = packet(0, 65535, 0xdead_beef, 0x1234_5678);
        let r = Rtp::parse(&p).unwrap();
        assert_eq!((r.payload_type(), r.seq(), r.timestamp(), r.ssrc()), (0, 65535, 0xdead_beef, 0x1234_5678));
        assert!(!r.marker());
        assert_eq!(r.payload().len(), 160);
    }

    #[test]
    fn csrcs_extension_and_padding_are_skipped_rfc3550_5_3() {
        // CC=2, X=1, P=1: 12 + 8 CSRC + 4 ext header + 4 ext word + 3 payload + 2 pad.
        let mut p = vec![0xb2, 0x80 | 8, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3];
        p.extend([0u8; 8]);
        p.extend([0xbe, 0xde, 0, 1, 1, 2, 3, 4]);
        p.extend([7, 8, 9]);
        p.extend([0, 2]);
        let r = Rtp::parse(&p).unwrap();
        assert!(r.marker());
        assert_eq!(r.payload_type(), 8);
        assert_eq!(r.payload(), &[7, 8, 9]);
    }

    #[test]
    fn malformed_packets_are_refused_not_a_panic() {
        assert_eq!(Rtp::parse(&[0x80; 11]), Err(PacketError::TooShort(11)));
        assert_eq!(Rtp::parse(&[0x40; 12]), Err(PacketError::Version(1)));
        // Four CSRCs announced, none present.
        assert_eq!(Rtp::parse(&[0x84, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]), Err(PacketError::Truncated(12)));
        // Padding count larger than the packet.
        let mut p = packet(0, 1, 1, 1);
        p[0] |= 0x20;
        *p.last_mut().unwrap() = 250;
        assert_eq!(Rtp::parse(&p), Err(PacketError::Truncated(172)));
        // Extension length past the end.
        let p = [0x90, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xbe, 0xde, 0, 9];
        assert_eq!(Rtp::parse(&p), Err(PacketError::Truncated(16)));
    }

    #[test]
    fn rtcp_is_told_from_rtp_on_a_muxed_port_rfc5761_4() {
        assert_eq!(classify(&packet(0, 1, 1, 1)), Some(Kind::Rtp));
        assert_eq!(classify(&packet(96, 1, 1, 1)), Some(Kind::Rtp));
        let sr = [0x80, 200, 0, 6, 0, 0, 0, 1];
        assert_eq!(classify(&sr), Some(Kind::Rtcp));
        let rr = [0x81, 201, 0, 7, 0, 0, 0, 1];
        assert_eq!(classify(&rr), Some(Kind::Rtcp));
        assert_eq!(classify(&[0x00, 200, 0, 6, 0, 0, 0, 1]), None);
        assert_eq!(classify(&[0x80, 200]), None);
    }

    #[test]
    fn telephone_events_read_rfc4733_2_3() {
        let e = TelephoneEvent::parse(&[5, 0x80 | 10, 0x03, 0x20]).unwrap();
        assert_eq!(e, TelephoneEvent { event: 5, end: true, volume: 10, duration: 800 });
        assert_eq!(TelephoneEvent::parse(&[1, 2, 3]), None);
    }
}
