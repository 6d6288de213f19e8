//! L16 (RFC 3551 §4.5.11): 16-bit linear PCM in network byte order, at the clock rate the
//! SDP gives it (8, 16, 32, 44.1 or 48 kHz are common), mono here. Concealment repeats
//! the last pitch period ([`super::plc`]).

use super::{CodecError, Decoder, Encoder};

/// L16 at one sample rate.
#[derive(Debug, Clone)]
pub struct L16 {
    rate: u32,
    plc: super::plc::Concealer,
}

impl L16 {
    /// L16 at `rate` Hz.
    pub fn new(rate: u32) -> L16 {
        L16 { rate, plc: super::plc::Concealer::new(rate) }
    }
}

impl Decoder for L16 {
    fn pcm_rate(&self) -> u32 {
        self.rate
    }

    fn decode(&mut self, payload: &[u8], pcm: &mut [i16]) -> Result<usize, CodecError> {
        if payload.len() % 2 != 0 {
            return Err(CodecError::Malformed("L16 payload of an odd number of bytes"));
        }
        let n = payload.len() / 2;
        if pcm.len() < n {
            return Err(CodecError::OutputTooSmall { need: n, have: pcm.len() });
        }
        for (out, b) in pcm.iter_mut().zip(payload.chunks_exact(2)) {
            *out = i16::from_be_bytes([b[0], b[1]]);
        }
        self.plc.good(&mut pcm[..n]);
        Ok(n)
    }

    fn conceal(&mut self, pcm: &mut [i16]) {
        self.plc.conceal(pcm);
    }
}

impl Encoder for L16 {
    fn pcm_rate(&self) -> u32 {
        self.rate
    }

    fn encode(&mut self, pcm: &[i16], payload: &mut [u8]) -> Result<usize, CodecError> {
        let n = pcm.len() * 2;
        if payload.len() < n {
            return Err(CodecError::OutputTooSmall { need: n, have: payload.len() });
        }
        for (out, s) in payload.chunks_exact_mut(2).zip(pcm) {
            out.copy_from_slice(&s.to_be_bytes());
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_travel_in_network_byte_order_rfc3551_4_5_11() {
        let mut c = L16::new(16_000);
        let mut payload = [0u8; 6];
        assert_eq!(c.encode(&[1, -2, 0x1234], &mut payload), Ok(6));
        assert_eq!(payload, [0x00, 0x01, 0xff, 0xfe, 0x12, 0x34]);
        let mut pcm = [0i16; 3];
        assert_eq!(c.decode(&payload, &mut pcm), Ok(3));
        assert_eq!(pcm, [1, -2, 0x1234]);
        assert_eq!(
            c.decode(&payload[..5], &mut pcm),
            Err(CodecError::Malformed("L16 payload of an odd number of bytes"))
        );
        assert_eq!(Decoder::pcm_rate(&c), 16_000);
    }
}
