//! DTMF in-band, sans-IO: a dual-tone generator for digits that arrive as RFC 4733
//! events toward a leg without telephone-event, and a Goertzel detector for digits a leg
//! without telephone-event sends as tones.
//!
//! The detector works in blocks of 12.75 ms (102 samples at 8 kHz, scaled to the rate)
//! and follows ITU-T Q.24's limits: each tone within ±3.5 % of its frequency (the
//! Goertzel filters' width), both tones at least −30 dBm0 or so, the low group up to
//! 8 dB above the high group and the high group up to 4 dB above the low (twist), the two
//! tones holding most of the block's energy (speech and noise rejection), and the same
//! digit in two blocks in a row: a tone of 40 ms is detected, one under 25 ms is not; two
//! blocks without it end the digit.

/// µ-law's full-scale sine in dBm0 (G.711: 0 dBm0 is 3.14 dB below it).
#[allow(clippy::approx_constant, reason = "G.711's 3.14 dB, not π")]
const FULL_SCALE_DBM0: f64 = 3.14;

/// The low (row) and high (column) group frequencies.
const ROWS: [f64; 4] = [697.0, 770.0, 852.0, 941.0];
const COLS: [f64; 4] = [1209.0, 1336.0, 1477.0, 1633.0];
/// RFC 4733 event codes by row and column: 1 2 3 A / 4 5 6 B / 7 8 9 C / * 0 # D.
const KEYS: [[u8; 4]; 4] = [[1, 2, 3, 12], [4, 5, 6, 13], [7, 8, 9, 14], [10, 0, 11, 15]];

/// The two frequencies of an RFC 4733 event code (0–15), if it is a DTMF digit.
pub fn frequencies(event: u8) -> Option<(f64, f64)> {
    KEYS.iter().enumerate().find_map(|(r, row)| row.iter().position(|&k| k == event).map(|c| (ROWS[r], COLS[c])))
}

/// A dual-tone oscillator, phase-continuous across calls.
#[derive(Debug, Clone, Copy)]
pub struct ToneGenerator {
    rate: f64,
    /// (phase, step) of the low and high tones, in radians.
    low: (f64, f64),
    high: (f64, f64),
    amplitude: f64,
}

impl ToneGenerator {
    /// The tones of `event` at `rate` Hz, each at `-volume` dBm0 (RFC 4733's volume; µ-law's
    /// full-scale sine is +3.14 dBm0). None if `event` is not a DTMF digit.
    pub fn new(event: u8, volume: u8, rate: u32) -> Option<ToneGenerator> {
        let (lo, hi) = frequencies(event)?;
        let rate = f64::from(rate);
        let tau = 2.0 * std::f64::consts::PI;
        let dbfs = -f64::from(volume.clamp(3, 36)) - FULL_SCALE_DBM0;
        Some(ToneGenerator {
            rate,
            low: (0.0, tau * lo / rate),
            high: (0.0, tau * hi / rate),
            amplitude: 32767.0 * 10f64.powf(dbfs / 20.0),
        })
    }

    /// The sample rate.
    pub fn rate(&self) -> u32 {
        self.rate as u32
    }

    /// Fills `out` with the next samples.
    pub fn fill(&mut self, out: &mut [i16]) {
        let tau = 2.0 * std::f64::consts::PI;
        for s in out {
            let v = self.amplitude * (self.low.0.sin() + self.high.0.sin());
            *s = v.clamp(-32768.0, 32767.0) as i16;
            self.low.0 = (self.low.0 + self.low.1) % tau;
            self.high.0 = (self.high.0 + self.high.1) % tau;
        }
    }
}

/// What the detector saw in a block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Detected {
    /// A digit began (confirmed by a second block).
    Start(u8),
    /// The digit ended after this many samples (at the detector's rate).
    End(u8, u32),
}

/// A Goertzel DTMF detector at one rate.
#[derive(Debug, Clone)]
pub struct Detector {
    block: usize,
    /// 2·cos(ω) for the four rows then the four columns.
    coefs: [f64; 8],
    /// The filters' state and the block's energy so far.
    state: [(f64, f64); 8],
    energy: f64,
    filled: usize,
    /// The last block's digit, the digit being reported and its samples so far.
    last: Option<u8>,
    misses: u8,
    current: Option<(u8, u32)>,
}

impl Detector {
    /// A detector for PCM at `rate` Hz.
    pub fn new(rate: u32) -> Detector {
        let block = (102 * rate as usize / 8000).max(1);
        let mut coefs = [0.0; 8];
        for (c, f) in coefs.iter_mut().zip(ROWS.iter().chain(&COLS)) {
            *c = 2.0 * (2.0 * std::f64::consts::PI * f / f64::from(rate)).cos();
        }
        Detector { block, coefs, state: [(0.0, 0.0); 8], energy: 0.0, filled: 0, last: None, misses: 0, current: None }
    }

    /// The digit being heard, if any.
    pub fn active(&self) -> Option<u8> {
        self.current.map(|(d, _)| d)
    }

    /// Feeds samples; calls `seen` for each start and end.
    pub fn feed(&mut self, pcm: &[i16], mut seen: impl FnMut(Detected)) {
        for &s in pcm {
            let x = f64::from(s);
            self.energy += x * x;
            for (st, &c) in self.state.iter_mut().zip(&self.coefs) {
                let v = x + c * st.0 - st.1;
                *st = (v, st.0);
            }
            self.filled += 1;
            if self.filled == self.block {
                let digit = self.classify();
                self.state = [(0.0, 0.0); 8];
                self.energy = 0.0;
                self.filled = 0;
                self.step(digit, &mut seen);
            }
        }
    }

    /// The digit a full block holds, if it passes Q.24's tests.
    fn classify(&self) -> Option<u8> {
        let n = self.block as f64;
        let mut power = [0.0; 8];
        for (p, (&(s1, s2), &c)) in power.iter_mut().zip(self.state.iter().zip(&self.coefs)) {
            // Normalised so a sine holding all of the block's energy scores 1.
            *p = (s1 * s1 + s2 * s2 - c * s1 * s2) * 2.0 / (n * self.energy.max(1.0));
        }
        let best = |g: &[f64]| {
            let (i, &p) = g.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).expect("four filters");
            let dominant = g.iter().enumerate().all(|(j, &q)| j == i || q * 6.3 < p);
            (i, p, dominant)
        };
        let (r, pr, row_ok) = best(&power[..4]);
        let (c, pc, col_ok) = best(&power[4..]);
        // Each tone above about -30 dBm0 (amplitude ~700): energy per sample over 2.5e5.
        let loud = self.energy / n > 2.5e5 * 2.0;
        let twist = pr <= pc * 6.3 && pc <= pr * 2.5;
        (row_ok && col_ok && loud && twist && pr + pc > 0.7).then(|| KEYS[r][c])
    }

    fn step(&mut self, digit: Option<u8>, seen: &mut impl FnMut(Detected)) {
        let block = self.block as u32;
        match (self.current, digit) {
            (Some((d, n)), Some(x)) if x == d => {
                self.current = Some((d, n + block));
                self.misses = 0;
            }
            (Some((d, n)), _) => {
                self.misses += 1;
                if self.misses >= 2 {
                    seen(Detected::End(d, n));
                    self.current = None;
                    self.misses = 0;
                }
            }
            (None, Some(x)) if self.last == Some(x) => {
                self.current = Some((x, 2 * block));
                self.misses = 0;
                seen(Detected::Start(x));
            }
            _ => {}
        }
        self.last = digit;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn detect(pcm: &[i16], rate: u32) -> Vec<Detected> {
        let mut d = Detector::new(rate);
        let mut out = Vec::new();
        d.feed(pcm, |x| out.push(x));
        out
    }

    fn digit(event: u8, ms: u32, rate: u32) -> Vec<i16> {
        let mut g = ToneGenerator::new(event, 10, rate).unwrap();
        let mut v = vec![0i16; (rate * ms / 1000) as usize];
        g.fill(&mut v);
        v
    }

    fn silence(ms: u32, rate: u32) -> Vec<i16> {
        vec![0; (rate * ms / 1000) as usize]
    }

    #[test]
    fn every_digit_of_40_ms_is_detected_at_8_16_and_48_khz_q24() {
        for rate in [8000, 16000, 48000] {
            for event in 0..16 {
                let mut pcm = silence(30, rate);
                pcm.extend(digit(event, 40, rate));
                pcm.extend(silence(60, rate));
                let got = detect(&pcm, rate);
                assert_eq!(got.len(), 2, "{rate} Hz, event {event}: {got:?}");
                assert_eq!(got[0], Detected::Start(event));
                assert!(matches!(got[1], Detected::End(e, _) if e == event));
            }
        }
    }

    #[test]
    fn a_tone_under_25_ms_speech_like_sound_and_excess_twist_are_not_digits() {
        let mut pcm = digit(5, 20, 8000);
        pcm.extend(silence(60, 8000));
        assert_eq!(detect(&pcm, 8000), []);
        // One tone alone (a row without its column), and a chirp.
        let one: Vec<i16> = (0..800)
            .map(|i| ((2.0 * std::f64::consts::PI * 770.0 * i as f64 / 8000.0).sin() * 8000.0) as i16)
            .collect();
        assert_eq!(detect(&one, 8000), []);
        let chirp: Vec<i16> = (0..8000)
            .map(|i| {
                let t = i as f64 / 8000.0;
                ((2.0 * std::f64::consts::PI * (300.0 + 1500.0 * t) * t).sin() * 8000.0) as i16
            })
            .collect();
        assert_eq!(detect(&chirp, 8000), []);
        // The high tone 10 dB over the low: beyond the 4 dB Q.24 allows.
        let twisted: Vec<i16> = (0..800)
            .map(|i| {
                let t = i as f64 / 8000.0;
                let tau = 2.0 * std::f64::consts::PI;
                ((tau * 770.0 * t).sin() * 2000.0 + (tau * 1336.0 * t).sin() * 6300.0) as i16
            })
            .collect();
        assert_eq!(detect(&twisted, 8000), []);
    }

    #[test]
    fn two_digits_with_a_40_ms_pause_are_two_digits() {
        let mut pcm = digit(1, 60, 8000);
        pcm.extend(silence(40, 8000));
        pcm.extend(digit(1, 60, 8000));
        pcm.extend(silence(60, 8000));
        let starts = detect(&pcm, 8000).into_iter().filter(|d| matches!(d, Detected::Start(1))).count();
        assert_eq!(starts, 2);
    }

    #[test]
    fn the_generator_makes_the_two_tones_at_the_volume_asked() {
        assert_eq!(frequencies(11), Some((941.0, 1477.0)));
        assert_eq!(frequencies(16), None, "flash is not a tone pair");
        let pcm = digit(11, 100, 8000);
        let rms = (pcm.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>() / pcm.len() as f64).sqrt();
        // Two tones at -13.14 dBFS each: RMS = a·√2·... = 32767·10^(-13.14/20) (each tone's RMS is a/√2).
        let each = 32767.0 * 10f64.powf((-10.0 - FULL_SCALE_DBM0) / 20.0) / 2f64.sqrt();
        assert!((rms - each * 2f64.sqrt()).abs() < 50.0, "rms {rms}");
    }
}
