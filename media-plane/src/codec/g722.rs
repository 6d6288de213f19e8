//! G.722 (ITU-T G.722, 64 kbit/s, mode 1): 16 kHz audio split by a 24-tap QMF into two
//! 8 kHz sub-bands, the lower coded by 6-bit and the upper by 2-bit ADPCM; one byte per
//! pair of samples. The RTP clock is 8 kHz although the audio is 16 kHz (RFC 3551
//! §4.5.2). Fixed-point arithmetic block by block as the Recommendation states it, so the
//! bitstream matches the ITU reference: the tests run G.722 Appendix II's test sequences
//! and compare with ffmpeg's codec bit for bit. Concealment repeats the last pitch period
//! as for G.711 ([`super::plc`]); G.722 Appendix III/IV's, which also adapts the sub-band
//! decoders' state, is not done.

use super::{CodecError, Decoder, Encoder};

/// The QMF's coefficients (G.722 Table 11), applied symmetrically.
const QMF: [i32; 12] = [3, -11, 12, 32, -210, 951, 3876, -805, 362, -156, 53, -11];

/// Lower band quantizer decision levels (Table 14's q6, times 8).
const Q6: [i32; 32] = [
    0, 35, 72, 110, 150, 190, 233, 276, 323, 370, 422, 473, 530, 587, 650, 714, 786, 858, 940, 1023, 1121, 1219, 1339,
    1458, 1612, 1765, 1980, 2195, 2557, 2919, 0, 0,
];
/// Lower band codes for negative and positive differences, by interval.
const ILN: [i32; 32] = [
    0, 63, 62, 31, 30, 29, 28, 27, 26, 25, 24, 23, 22, 21, 20, 19, 18, 17, 16, 15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5,
    4, 0,
];
const ILP: [i32; 32] = [
    0, 61, 60, 59, 58, 57, 56, 55, 54, 53, 52, 51, 50, 49, 48, 47, 46, 45, 44, 43, 42, 41, 40, 39, 38, 37, 36, 35, 34,
    33, 32, 0,
];
/// Lower band log scale factor multipliers, by magnitude (Table 15's wl).
const WL: [i32; 8] = [-60, -30, 58, 172, 334, 538, 1198, 3042];
/// A 4-bit lower band code's magnitude index.
const RL42: [usize; 16] = [0, 7, 6, 5, 4, 3, 2, 1, 7, 6, 5, 4, 3, 2, 1, 0];
/// The inverse log table (Table 17's ilb).
const ILB: [i32; 32] = [
    2048, 2093, 2139, 2186, 2233, 2282, 2332, 2383, 2435, 2489, 2543, 2599, 2656, 2714, 2774, 2834, 2896, 2960, 3025,
    3091, 3158, 3228, 3298, 3371, 3444, 3520, 3597, 3676, 3756, 3838, 3922, 4008,
];
/// Lower band inverse quantizer outputs, 4-bit (for the predictor) and 6-bit (the signal).
const QM4: [i32; 16] =
    [0, -20456, -12896, -8968, -6288, -4240, -2584, -1200, 20456, 12896, 8968, 6288, 4240, 2584, 1200, 0];
const QM6: [i32; 64] = [
    -136, -136, -136, -136, -24808, -21904, -19008, -16704, -14984, -13512, -12280, -11192, -10232, -9360, -8576,
    -7856, -7192, -6576, -6000, -5456, -4944, -4464, -4008, -3576, -3168, -2776, -2400, -2032, -1688, -1360, -1040,
    -728, 24808, 21904, 19008, 16704, 14984, 13512, 12280, 11192, 10232, 9360, 8576, 7856, 7192, 6576, 6000, 5456,
    4944, 4464, 4008, 3576, 3168, 2776, 2400, 2032, 1688, 1360, 1040, 728, 432, 136, -432, -136,
];
/// Upper band: codes, inverse quantizer, log scale factor multipliers.
const IHN: [i32; 3] = [0, 1, 0];
const IHP: [i32; 3] = [0, 3, 2];
const QM2: [i32; 4] = [-7408, -1616, 7408, 1616];
const WH: [i32; 3] = [0, -214, 798];
const RH2: [usize; 4] = [2, 1, 2, 1];

fn sat(v: i32) -> i32 {
    v.clamp(-32768, 32767)
}

/// One sub-band's ADPCM state: the adaptive predictor (two poles, six zeros) and the
/// quantizer's scale.
#[derive(Debug, Clone, Copy, Default)]
struct Band {
    /// The signal estimate, its pole and zero parts.
    s: i32,
    sp: i32,
    sz: i32,
    /// Reconstructed signals, partial reconstructions, pole coefficients (and their updates).
    r: [i32; 3],
    p: [i32; 3],
    a: [i32; 3],
    ap: [i32; 3],
    /// Quantized differences and zero coefficients (and their updates).
    d: [i32; 7],
    b: [i32; 7],
    bp: [i32; 7],
    /// The log scale factor and the scale factor.
    nb: i32,
    det: i32,
}

impl Band {
    fn new(det: i32) -> Band {
        Band { det, ..Band::default() }
    }

    /// Blocks 4L/4H: the predictor's update from the quantized difference `d`.
    fn adapt(&mut self, d: i32) {
        self.d[0] = d;
        self.r[0] = sat(self.s + d);
        self.p[0] = sat(self.sz + d);
        let sign = |v: i32| v >> 15;
        // UPPOL2: the second pole.
        let wd1 = sat(self.a[1] << 2);
        let wd2 = if sign(self.p[0]) == sign(self.p[1]) { -wd1 } else { wd1 }.min(32767);
        let mut wd3 = if sign(self.p[0]) == sign(self.p[2]) { 128 } else { -128 };
        wd3 += wd2 >> 7;
        wd3 += (self.a[2] * 32512) >> 15;
        self.ap[2] = wd3.clamp(-12288, 12288);
        // UPPOL1: the first pole, bounded by the second.
        let wd1 = if sign(self.p[0]) == sign(self.p[1]) { 192 } else { -192 };
        let wd2 = (self.a[1] * 32640) >> 15;
        let limit = sat(15360 - self.ap[2]);
        self.ap[1] = sat(wd1 + wd2).clamp(-limit, limit);
        // UPZERO: the six zeros.
        let step = if d == 0 { 0 } else { 128 };
        for i in 1..7 {
            let wd2 = if sign(self.d[i]) == sign(d) { step } else { -step };
            self.bp[i] = sat(wd2 + ((self.b[i] * 32640) >> 15));
        }
        // DELAYA: shift the histories.
        for i in (1..7).rev() {
            self.d[i] = self.d[i - 1];
            self.b[i] = self.bp[i];
        }
        for i in (1..3).rev() {
            self.r[i] = self.r[i - 1];
            self.p[i] = self.p[i - 1];
            self.a[i] = self.ap[i];
        }
        // FILTEP, FILTEZ, PREDIC: the next estimate.
        let wd1 = (self.a[1] * sat(self.r[1] + self.r[1])) >> 15;
        let wd2 = (self.a[2] * sat(self.r[2] + self.r[2])) >> 15;
        self.sp = sat(wd1 + wd2);
        let mut sz = 0;
        for i in (1..7).rev() {
            sz += (self.b[i] * sat(self.d[i] + self.d[i])) >> 15;
        }
        self.sz = sat(sz);
        self.s = sat(self.sp + self.sz);
    }

    /// Blocks 3L/3H: the log scale factor from the code's multiplier, then the scale
    /// factor (`shift`: 8 for the lower band, 10 for the upper; `max` the log's bound).
    fn scale(&mut self, w: i32, shift: i32, max: i32) {
        self.nb = (((self.nb * 127) >> 7) + w).clamp(0, max);
        let wd1 = ILB[((self.nb >> 6) & 31) as usize];
        let wd2 = shift - (self.nb >> 11);
        let wd3 = if wd2 < 0 { wd1 << -wd2 } else { wd1 >> wd2 };
        self.det = wd3 << 2;
    }

    /// The lower band's code for `x` and the band's update.
    fn encode_low(&mut self, x: i32) -> i32 {
        let el = sat(x - self.s);
        let wd = if el >= 0 { el } else { -(el + 1) };
        let mut i = 1;
        while i < 30 && wd >= (Q6[i] * self.det) >> 12 {
            i += 1;
        }
        let code = if el < 0 { ILN[i] } else { ILP[i] };
        self.update_low(code);
        code
    }

    /// The lower band's update from its 6-bit code (4 bits of it feed the predictor).
    fn update_low(&mut self, code: i32) {
        let ril = (code >> 2) as usize;
        let dlow = (self.det * QM4[ril]) >> 15;
        self.scale(WL[RL42[ril]], 8, 18432);
        self.adapt(dlow);
    }

    /// The upper band's code for `x` and the band's update.
    fn encode_high(&mut self, x: i32) -> i32 {
        let eh = sat(x - self.s);
        let wd = if eh >= 0 { eh } else { -(eh + 1) };
        let mih = if wd >= (564 * self.det) >> 12 { 2 } else { 1 };
        let code = if eh < 0 { IHN[mih] } else { IHP[mih] };
        self.update_high(code);
        code
    }

    /// The upper band's update from its 2-bit code; its reconstructed signal.
    fn update_high(&mut self, code: i32) -> i32 {
        let dhigh = (self.det * QM2[code as usize]) >> 15;
        let rhigh = (dhigh + self.s).clamp(-16384, 16383);
        self.scale(WH[RH2[code as usize]], 10, 22528);
        self.adapt(dhigh);
        rhigh
    }
}

/// The QMF's delay line.
#[derive(Debug, Clone, Copy, Default)]
struct Qmf {
    x: [i32; 24],
}

impl Qmf {
    /// Pushes two values; the filter's two outputs (even-tap sum, odd-tap sum).
    fn push(&mut self, a: i32, b: i32) -> (i32, i32) {
        self.x.copy_within(2.., 0);
        self.x[22] = a;
        self.x[23] = b;
        let (mut even, mut odd) = (0, 0);
        for i in 0..12 {
            even += self.x[2 * i] * QMF[i];
            odd += self.x[2 * i + 1] * QMF[11 - i];
        }
        (even, odd)
    }
}

/// A G.722 encoder (64 kbit/s).
#[derive(Debug, Clone)]
pub struct G722Encoder {
    qmf: Qmf,
    low: Band,
    high: Band,
}

impl Default for G722Encoder {
    fn default() -> G722Encoder {
        G722Encoder::new()
    }
}

impl G722Encoder {
    /// An encoder in the Recommendation's reset state.
    pub fn new() -> G722Encoder {
        G722Encoder { qmf: Qmf::default(), low: Band::new(32), high: Band::new(8) }
    }

    /// The code for two consecutive 16 kHz samples.
    pub fn encode_pair(&mut self, a: i16, b: i16) -> u8 {
        let (even, odd) = self.qmf.push(i32::from(a), i32::from(b));
        let (xlow, xhigh) = ((odd + even) >> 14, (odd - even) >> 14);
        let low = self.low.encode_low(xlow);
        let high = self.high.encode_high(xhigh);
        ((high << 6) | low) as u8
    }
}

impl Encoder for G722Encoder {
    fn pcm_rate(&self) -> u32 {
        16000
    }

    fn encode(&mut self, pcm: &[i16], payload: &mut [u8]) -> Result<usize, CodecError> {
        if pcm.len() % 2 != 0 {
            return Err(CodecError::FrameSize { samples: pcm.len() });
        }
        let n = pcm.len() / 2;
        if payload.len() < n {
            return Err(CodecError::OutputTooSmall { need: n, have: payload.len() });
        }
        for (out, pair) in payload.iter_mut().zip(pcm.chunks_exact(2)) {
            *out = self.encode_pair(pair[0], pair[1]);
        }
        Ok(n)
    }
}

/// A G.722 decoder (64 kbit/s).
#[derive(Debug, Clone)]
pub struct G722Decoder {
    qmf: Qmf,
    low: Band,
    high: Band,
    plc: super::plc::Concealer,
}

impl Default for G722Decoder {
    fn default() -> G722Decoder {
        G722Decoder::new()
    }
}

impl G722Decoder {
    /// A decoder in the Recommendation's reset state.
    pub fn new() -> G722Decoder {
        G722Decoder {
            qmf: Qmf::default(),
            low: Band::new(32),
            high: Band::new(8),
            plc: super::plc::Concealer::new(16000),
        }
    }

    /// The two sub-bands' reconstructed signals for a code.
    fn sub_bands(&mut self, code: u8) -> (i32, i32) {
        let (low6, high2) = (i32::from(code & 0x3f), i32::from(code >> 6));
        // Block 5L: the signal from the 6-bit code; then the predictor from its 4 bits.
        let rlow = (self.low.s + ((self.low.det * QM6[low6 as usize]) >> 15)).clamp(-16384, 16383);
        self.low.update_low(low6);
        (rlow, self.high.update_high(high2))
    }

    /// The two 16 kHz samples for a code.
    pub fn decode_code(&mut self, code: u8) -> (i16, i16) {
        let (rlow, rhigh) = self.sub_bands(code);
        let (even, odd) = self.qmf.push(rlow + rhigh, rlow - rhigh);
        (sat(odd >> 11) as i16, sat(even >> 11) as i16)
    }
}

impl Decoder for G722Decoder {
    fn pcm_rate(&self) -> u32 {
        16000
    }

    fn decode(&mut self, payload: &[u8], pcm: &mut [i16]) -> Result<usize, CodecError> {
        let n = payload.len() * 2;
        if pcm.len() < n {
            return Err(CodecError::OutputTooSmall { need: n, have: pcm.len() });
        }
        for (pair, &code) in pcm.chunks_exact_mut(2).zip(payload) {
            (pair[0], pair[1]) = self.decode_code(code);
        }
        self.plc.good(&mut pcm[..n]);
        Ok(n)
    }

    fn conceal(&mut self, pcm: &mut [i16]) {
        // The stand-in is audio only: the sub-band predictors keep their state, and the
        // next good frame is faded in from the stand-in.
        self.plc.conceal(pcm);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(hz: f64, n: usize) -> Vec<i16> {
        (0..n).map(|i| ((2.0 * std::f64::consts::PI * hz * i as f64 / 16000.0).sin() * 10000.0) as i16).collect()
    }

    fn energy(s: &[i16]) -> f64 {
        s.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>()
    }

    fn round_trip(inp: &[i16]) -> Vec<i16> {
        let mut enc = G722Encoder::new();
        let mut dec = G722Decoder::new();
        let mut codes = vec![0u8; inp.len() / 2];
        assert_eq!(enc.encode(inp, &mut codes), Ok(inp.len() / 2));
        let mut out = vec![0i16; inp.len()];
        assert_eq!(dec.decode(&codes, &mut out), Ok(inp.len()));
        out
    }

    #[test]
    fn tones_in_both_sub_bands_come_back_at_their_level() {
        for hz in [400.0, 1000.0, 3000.0, 5000.0, 6500.0] {
            let inp = tone(hz, 8000);
            let out = round_trip(&inp);
            let db = 10.0 * (energy(&out[800..]) / energy(&inp[800..])).log10();
            assert!(db.abs() < 0.5, "{hz} Hz: {db:.2} dB");
        }
    }

    #[test]
    fn the_two_qmfs_delay_the_audio_by_22_samples() {
        // Noise, band-limited by a 3-tap average so ADPCM follows it: its
        // cross-correlation with the output peaks at one lag only.
        let mut x = 12345u32;
        let noise: Vec<i16> = (0..8000)
            .map(|_| {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                ((x >> 16) as i16) >> 3
            })
            .collect();
        let inp: Vec<i16> =
            noise.windows(3).map(|w| ((i32::from(w[0]) + i32::from(w[1]) + i32::from(w[2])) / 3) as i16).collect();
        let inp = &inp[..7996];
        let out = round_trip(inp);
        let corr =
            |lag: usize| inp[..7900].iter().zip(&out[lag..]).map(|(&a, &b)| i64::from(a) * i64::from(b)).sum::<i64>();
        let lag = (0..64).max_by_key(|&l| corr(l)).unwrap();
        assert_eq!(lag, 22);
    }

    fn samples(name: &str) -> Vec<i16> {
        let path = format!("{}/tests/data/g722/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read(path).expect("test data").chunks_exact(2).map(|b| i16::from_le_bytes([b[0], b[1]])).collect()
    }

    /// Bit for bit against an independent implementation (ffmpeg's; see
    /// tests/data/g722/README.md): a codec whose encoder and decoder mirror the same
    /// mistake would still round-trip, this would not.
    #[test]
    fn bitstream_and_decoded_audio_match_ffmpegs_g722_exactly() {
        let dir = format!("{}/tests/data/g722", env!("CARGO_MANIFEST_DIR"));
        let theirs = std::fs::read(format!("{dir}/ffmpeg.g722")).expect("test data");
        let input = samples("input.s16le");
        let mut codes = vec![0u8; input.len() / 2];
        assert_eq!(G722Encoder::new().encode(&input, &mut codes), Ok(4000));
        let first = codes.iter().zip(&theirs).position(|(a, b)| a != b);
        assert_eq!(first, None, "the encoders part at code {first:?}");
        let mut out = vec![0i16; theirs.len() * 2];
        assert_eq!(G722Decoder::new().decode(&theirs, &mut out), Ok(8000));
        let expected = samples("ffmpeg-decoded.s16le");
        let first = out.iter().zip(&expected).position(|(a, b)| a != b);
        assert_eq!(first, None, "the decoders part at sample {first:?}");
    }

    fn words(name: &str) -> Vec<u16> {
        let path = format!("{}/tests/data/g722/itu/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read(path).expect("test data").chunks_exact(2).map(|b| u16::from_le_bytes([b[0], b[1]])).collect()
    }

    /// G.722 Appendix II: with the QMFs bypassed, each input word (shifted right once)
    /// goes to both sub-band encoders, and the codes must be the sequence's exactly.
    #[test]
    fn the_encoder_gives_the_itu_sequences_codes_g722_appendix_ii() {
        for (input, expected) in [("bt1c1.xmt", "bt2r1.cod"), ("bt1c2.xmt", "bt2r2.cod")] {
            let (input, expected) = (words(input), words(expected));
            assert_eq!(input.len(), expected.len());
            let mut enc = G722Encoder::new();
            for (i, (&w, &e)) in input.iter().zip(&expected).enumerate() {
                if w & 1 == 1 {
                    enc = G722Encoder::new();
                    assert_eq!(e, 1, "a reset stays a reset at word {i}");
                    continue;
                }
                let x = i32::from((w as i16) >> 1);
                let code = (enc.high.encode_high(x) << 6) | enc.low.encode_low(x);
                assert_eq!(code, i32::from(e >> 8), "word {i}");
            }
        }
    }

    /// G.722 Appendix II: each code sequence's lower and higher band reconstructions.
    #[test]
    fn the_decoder_gives_the_itu_sequences_sub_band_signals_g722_appendix_ii() {
        for (codes, low, high) in [
            ("bt2r1.cod", "bt3l1.rc1", "bt3h1.rc0"),
            ("bt2r2.cod", "bt3l2.rc1", "bt3h2.rc0"),
            ("bt1d3.cod", "bt3l3.rc1", "bt3h3.rc0"),
        ] {
            let (codes, low, high) = (words(codes), words(low), words(high));
            let mut dec = G722Decoder::new();
            for (i, &w) in codes.iter().enumerate() {
                if w & 1 == 1 {
                    dec = G722Decoder::new();
                    continue;
                }
                let (rlow, rhigh) = dec.sub_bands((w >> 8) as u8);
                assert_eq!(((rlow << 1) & 0xfffe) as u16, low[i], "lower band, word {i}");
                assert_eq!(((rhigh << 1) & 0xfffe) as u16, high[i], "higher band, word {i}");
            }
        }
    }

    #[test]
    fn odd_frames_and_short_buffers_are_typed_errors() {
        let mut enc = G722Encoder::new();
        assert_eq!(enc.encode(&[0; 3], &mut [0; 4]), Err(CodecError::FrameSize { samples: 3 }));
        let mut dec = G722Decoder::new();
        assert_eq!(dec.decode(&[0; 80], &mut [0; 100]), Err(CodecError::OutputTooSmall { need: 160, have: 100 }));
    }
}
