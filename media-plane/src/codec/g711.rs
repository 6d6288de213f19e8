//! G.711 (ITU-T G.711): µ-law and A-law, one byte per sample at 8 kHz. Decoding is a
//! table built at compile time; encoding follows G.711's segment rules (µ-law with the
//! 0x84 bias and clip at 32,635; A-law's 13-bit magnitude). Concealment repeats the last
//! pitch period, as G.711 Appendix I does ([`super::plc`]).

use super::plc::Concealer;
use super::{CodecError, Decoder, Encoder};

/// µ-law or A-law.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Law {
    /// µ-law (PCMU, payload type 0).
    Mu,
    /// A-law (PCMA, payload type 8).
    A,
}

const fn mu_decode(code: u8) -> i16 {
    let c = !code;
    let exponent = (c >> 4) & 7;
    let mantissa = (c & 0x0f) as i32;
    let magnitude = (((mantissa << 3) + 0x84) << exponent) - 0x84;
    (if c & 0x80 != 0 { -magnitude } else { magnitude }) as i16
}

const fn a_decode(code: u8) -> i16 {
    let c = code ^ 0x55;
    let exponent = (c >> 4) & 7;
    let mantissa = (c & 0x0f) as i32;
    let magnitude = if exponent == 0 { (mantissa << 4) + 8 } else { ((mantissa << 4) + 0x108) << (exponent - 1) };
    (if c & 0x80 != 0 { magnitude } else { -magnitude }) as i16
}

const fn table(law: Law) -> [i16; 256] {
    let mut t = [0i16; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = match law {
            Law::Mu => mu_decode(i as u8),
            Law::A => a_decode(i as u8),
        };
        i += 1;
    }
    t
}

static MU_TABLE: [i16; 256] = table(Law::Mu);
static A_TABLE: [i16; 256] = table(Law::A);

/// The 16-bit sample a code stands for.
pub fn decode_sample(law: Law, code: u8) -> i16 {
    match law {
        Law::Mu => MU_TABLE[usize::from(code)],
        Law::A => A_TABLE[usize::from(code)],
    }
}

/// The code for a 16-bit sample.
pub fn encode_sample(law: Law, sample: i16) -> u8 {
    match law {
        Law::Mu => mu_encode(sample),
        Law::A => a_encode(sample),
    }
}

fn mu_encode(sample: i16) -> u8 {
    const BIAS: i32 = 0x84;
    const CLIP: i32 = 32_635;
    let s = i32::from(sample);
    let sign = if s < 0 { 0x80 } else { 0 };
    let magnitude = s.unsigned_abs().min(CLIP as u32) as i32 + BIAS;
    // The segment: the position of the highest set bit above bit 7.
    let exponent = (31 - (magnitude as u32).leading_zeros()).saturating_sub(7).min(7) as i32;
    let mantissa = (magnitude >> (exponent + 3)) & 0x0f;
    !((sign | (exponent << 4) | mantissa) as u8)
}

fn a_encode(sample: i16) -> u8 {
    let s = i32::from(sample);
    // A-law works on 13 bits: the sign, then the magnitude over 16 (rounded down).
    let (sign, magnitude) = if s >= 0 { (0x80, s >> 3) } else { (0, (-s - 1) >> 3) };
    let magnitude = magnitude.min(0x0fff);
    let code = if magnitude < 32 {
        magnitude >> 1
    } else {
        let exponent = (31 - (magnitude as u32).leading_zeros()) as i32 - 4;
        (exponent << 4) | ((magnitude >> exponent) & 0x0f)
    };
    ((sign | code) as u8) ^ 0x55
}

/// One direction's G.711 state: the concealment's history.
#[derive(Debug, Clone)]
pub struct G711 {
    law: Law,
    plc: Concealer,
}

impl G711 {
    /// A codec for `law`.
    pub fn new(law: Law) -> G711 {
        G711 { law, plc: Concealer::new(8000) }
    }
}

impl Decoder for G711 {
    fn pcm_rate(&self) -> u32 {
        8000
    }

    fn decode(&mut self, payload: &[u8], pcm: &mut [i16]) -> Result<usize, CodecError> {
        if pcm.len() < payload.len() {
            return Err(CodecError::OutputTooSmall { need: payload.len(), have: pcm.len() });
        }
        let t = match self.law {
            Law::Mu => &MU_TABLE,
            Law::A => &A_TABLE,
        };
        for (out, &code) in pcm.iter_mut().zip(payload) {
            *out = t[usize::from(code)];
        }
        self.plc.good(&mut pcm[..payload.len()]);
        Ok(payload.len())
    }

    fn conceal(&mut self, pcm: &mut [i16]) {
        self.plc.conceal(pcm);
    }
}

impl Encoder for G711 {
    fn pcm_rate(&self) -> u32 {
        8000
    }

    fn encode(&mut self, pcm: &[i16], payload: &mut [u8]) -> Result<usize, CodecError> {
        if payload.len() < pcm.len() {
            return Err(CodecError::OutputTooSmall { need: pcm.len(), have: payload.len() });
        }
        for (out, &s) in payload.iter_mut().zip(pcm) {
            *out = encode_sample(self.law, s);
        }
        Ok(pcm.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_codes_decode_to_g711s_values() {
        // µ-law: 0xff and 0x7f are the two zeros, 0x00/0x80 the extremes (±32,124).
        assert_eq!(
            [0xff, 0x7f, 0x00, 0x80, 0xfe, 0x7e].map(|c| decode_sample(Law::Mu, c)),
            [0, 0, -32124, 32124, 8, -8]
        );
        // A-law: 0xd5/0x55 the smallest steps (±8), 0xaa/0x2a the extremes (±32,256).
        assert_eq!([0xd5, 0x55, 0xaa, 0x2a].map(|c| decode_sample(Law::A, c)), [8, -8, 32256, -32256]);
        assert_eq!((encode_sample(Law::Mu, 0), encode_sample(Law::A, 0)), (0xff, 0xd5));
    }

    #[test]
    fn every_code_survives_decode_then_encode() {
        for c in 0..=255u8 {
            let mu = if c == 0x7f { 0xff } else { c }; // the two zeros encode as 0xff
            assert_eq!(encode_sample(Law::Mu, decode_sample(Law::Mu, c)), mu, "µ-law {c:#04x}");
            assert_eq!(encode_sample(Law::A, decode_sample(Law::A, c)), c, "A-law {c:#04x}");
        }
    }

    #[test]
    fn encoding_stays_within_one_g711_step_of_the_sample() {
        for law in [Law::Mu, Law::A] {
            for s in (i16::MIN..=i16::MAX).step_by(7) {
                let back = decode_sample(law, encode_sample(law, s));
                let err = (i32::from(back) - i32::from(s)).abs();
                // The step at the sample's magnitude: 1/16 of its segment, bounded by the
                // largest segment's and the clip.
                let bound = (i32::from(s).abs() / 16).max(16) + 1032 * i32::from(i32::from(s).abs() > 31_000);
                assert!(err <= bound, "{law:?}: {s} came back as {back}");
            }
        }
    }

    #[test]
    fn a_frame_round_trips_and_a_long_loss_fades_to_silence() {
        let mut c = G711::new(Law::Mu);
        let pcm: Vec<i16> = (0..160).map(|i| ((i as f64 * 0.3).sin() * 8000.0) as i16).collect();
        let mut payload = [0u8; 160];
        assert_eq!(c.encode(&pcm, &mut payload), Ok(160));
        let mut out = [0i16; 160];
        assert_eq!(c.decode(&payload, &mut out), Ok(160));
        assert!(out.iter().zip(&pcm).all(|(a, b)| (i32::from(*a) - i32::from(*b)).abs() <= 300));
        // Too little history for a pitch yet: silence.
        let mut lost = [1i16; 160];
        c.conceal(&mut lost);
        assert!(lost.iter().all(|&s| s == 0));
        for _ in 0..3 {
            c.decode(&payload, &mut out).unwrap();
        }
        let mut lost = [0i16; 480];
        c.conceal(&mut lost);
        assert!(lost[..80].iter().any(|&s| s.abs() > 4000), "the first 10 ms at full level");
        let mut later = [1i16; 80];
        c.conceal(&mut later);
        assert!(later.iter().all(|&s| s == 0), "silence after 60 ms");
        assert_eq!(c.decode(&payload, &mut [0i16; 10]), Err(CodecError::OutputTooSmall { need: 160, have: 10 }));
    }
}
