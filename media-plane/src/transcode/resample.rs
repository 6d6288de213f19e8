//! Sample-rate conversion between the codecs' rates (8, 16, 24, 32, 48 kHz), by a
//! rational factor L/M: a polyphase FIR, its prototype a Kaiser-windowed sinc designed
//! when the resampler is made (allocation then, never per frame).
//!
//! The prototype passes up to 0.4 of the lower rate (3.2 kHz of an 8 kHz leg: the
//! telephone band) within 0.1 dB and stops from 0.5 of it (the lower rate's Nyquist)
//! by more than 70 dB (the tests measure both); it delays the audio by half its length,
//! about 3 ms at 8 kHz.

/// Taps per input sample of the lower rate's transition band: (A − 8) / (2.285 · 2π ·
/// 0.1) for A = 85 dB; a branch has this many times the larger of the two factors over
/// the interpolation factor.
const TAPS: usize = 54;
/// Kaiser β for about 85 dB of stopband.
const BETA: f64 = 8.0;

/// A streaming resampler from one rate to another.
#[derive(Debug, Clone)]
pub struct Resampler {
    from: u32,
    to: u32,
    /// Interpolation and decimation factors.
    up: usize,
    down: usize,
    /// Taps per branch.
    taps: usize,
    /// `up` branches of `taps` coefficients, each reversed so a dot product with the
    /// history runs forward.
    coefs: Vec<f32>,
    /// The last `taps - 1` input samples, then the frame being resampled.
    buf: Vec<f32>,
    /// The next output's position on the upsampled time line, counted from `buf[0]`.
    t: usize,
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// The zeroth-order modified Bessel function of the first kind (its series).
fn bessel_i0(x: f64) -> f64 {
    let (mut sum, mut term) = (1.0, 1.0);
    for k in 1..50 {
        term *= (x / 2.0) / f64::from(k);
        sum += term * term;
    }
    sum
}

/// The prototype low-pass of `n` taps at `up` times the input rate, cutting at `cutoff`
/// (a fraction of that rate), with DC gain `up`.
fn prototype(n: usize, up: usize, cutoff: f64) -> Vec<f64> {
    let mid = (n - 1) as f64 / 2.0;
    let i0b = bessel_i0(BETA);
    (0..n)
        .map(|k| {
            let x = k as f64 - mid;
            let sinc = if x == 0.0 {
                2.0 * cutoff
            } else {
                (2.0 * std::f64::consts::PI * cutoff * x).sin() / (std::f64::consts::PI * x)
            };
            let w = bessel_i0(BETA * (1.0 - (x / mid).powi(2)).max(0.0).sqrt()) / i0b;
            sinc * w * up as f64
        })
        .collect()
}

impl Resampler {
    /// A resampler from `from` Hz to `to` Hz for frames of at most `max_in` samples.
    pub fn new(from: u32, to: u32, max_in: usize) -> Resampler {
        let g = gcd(from as usize, to as usize).max(1);
        let (up, down) = (to as usize / g, from as usize / g);
        let low = from.min(to) as f64;
        // Passband to 0.4 · low, stopband from 0.5 · low: cut in the middle.
        let cutoff = 0.45 * low / (from as f64 * up as f64);
        let taps = TAPS * up.max(down).div_ceil(up);
        let h = prototype(taps * up, up, cutoff);
        let mut coefs = vec![0f32; taps * up];
        for (phase, branch) in coefs.chunks_exact_mut(taps).enumerate() {
            for (i, c) in branch.iter_mut().rev().enumerate() {
                *c = h[phase + i * up] as f32;
            }
        }
        Resampler { from, to, up, down, taps, coefs, buf: vec![0.0; taps - 1 + max_in], t: (taps - 1) * up }
    }

    /// The input rate.
    pub fn from_rate(&self) -> u32 {
        self.from
    }

    /// The output rate.
    pub fn to_rate(&self) -> u32 {
        self.to
    }

    /// Output samples at most for `n` input samples.
    pub fn max_out(&self, n: usize) -> usize {
        n * self.up / self.down + 1
    }

    /// Resamples `input` (at most the `max_in` given at creation; more is cut) into
    /// `out`; the samples written (stops early if `out` is full).
    pub fn process(&mut self, input: &[i16], out: &mut [i16]) -> usize {
        let (taps, hist) = (self.taps, self.taps - 1);
        let n = input.len().min(self.buf.len() - hist);
        for (b, &s) in self.buf[hist..hist + n].iter_mut().zip(input) {
            *b = f32::from(s);
        }
        let len = hist + n;
        let mut written = 0;
        while self.t / self.up < len && written < out.len() {
            let (at, phase) = (self.t / self.up, self.t % self.up);
            let window = &self.buf[at + 1 - taps..=at];
            let branch = &self.coefs[phase * taps..(phase + 1) * taps];
            let y: f32 = window.iter().zip(branch).map(|(x, c)| x * c).sum();
            out[written] = y.round().clamp(-32768.0, 32767.0) as i16;
            written += 1;
            self.t += self.down;
        }
        // An `out` too small for the frame: the outputs that did not fit are skipped.
        while self.t / self.up < len {
            self.t += self.down;
        }
        // Keep the last taps - 1 samples as history.
        self.buf.copy_within(n..len, 0);
        self.t -= n * self.up;
        written
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The prototype's gain at `f` (a fraction of its rate), in dB relative to `up`.
    fn response_db(r: &Resampler, f: f64) -> f64 {
        // Branch `p` holds taps p, p + up, ... reversed: undo that to walk the prototype.
        let mut h = vec![0.0f64; r.taps * r.up];
        for (p, b) in r.coefs.chunks_exact(r.taps).enumerate() {
            for (i, c) in b.iter().rev().enumerate() {
                h[p + i * r.up] = f64::from(*c);
            }
        }
        let (mut re, mut im) = (0.0f64, 0.0f64);
        for (k, c) in h.into_iter().enumerate() {
            let w = 2.0 * std::f64::consts::PI * f * k as f64;
            re += c * w.cos();
            im -= c * w.sin();
        }
        20.0 * ((re * re + im * im).sqrt() / r.up as f64).log10()
    }

    #[test]
    fn passband_ripple_is_under_0_1_db_and_stopband_over_70_db() {
        for (from, to) in [(8000, 48000), (48000, 8000), (8000, 16000), (16000, 8000), (16000, 48000)] {
            let r = Resampler::new(from, to, 960);
            let rate = f64::from(from) * r.up as f64;
            let low = f64::from(from.min(to));
            let pass = (0..=100).map(|i| response_db(&r, 0.4 * low * f64::from(i) / 100.0 / rate));
            let (lo, hi) = pass.fold((f64::MAX, f64::MIN), |(lo, hi), d| (lo.min(d), hi.max(d)));
            assert!(hi - lo < 0.1 && hi.abs() < 0.1 && lo.abs() < 0.1, "{from}->{to}: passband {lo:.3}..{hi:.3} dB");
            let stop = (0..=400)
                .map(|i| response_db(&r, (0.5 * low + (rate / 2.0 - 0.5 * low) * f64::from(i) / 400.0) / rate));
            let worst = stop.fold(f64::MIN, f64::max);
            assert!(worst < -70.0, "{from}->{to}: stopband {worst:.1} dB");
        }
    }

    fn tone(rate: u32, hz: f64, n: usize) -> Vec<i16> {
        (0..n)
            .map(|i| ((2.0 * std::f64::consts::PI * hz * i as f64 / f64::from(rate)).sin() * 10000.0) as i16)
            .collect()
    }

    fn rms(s: &[i16]) -> f64 {
        (s.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>() / s.len() as f64).sqrt()
    }

    fn run(from: u32, to: u32, input: &[i16], frame: usize) -> Vec<i16> {
        let mut r = Resampler::new(from, to, frame);
        let mut out = Vec::new();
        let mut buf = vec![0i16; r.max_out(frame)];
        for f in input.chunks(frame) {
            let n = r.process(f, &mut buf);
            out.extend_from_slice(&buf[..n]);
        }
        out
    }

    #[test]
    fn frames_keep_their_length_and_tones_their_level() {
        // 20 ms frames: 160 at 8 kHz become exactly 960 at 48 kHz and back.
        let mut r = Resampler::new(8000, 48000, 160);
        let mut out = [0i16; 961];
        assert!((0..10).all(|_| r.process(&[0; 160], &mut out) == 960));
        let mut r = Resampler::new(48000, 8000, 960);
        assert!((0..10).all(|_| r.process(&[0; 960], &mut out) == 160));
        let up = run(8000, 48000, &tone(8000, 1000.0, 8000), 160);
        assert_eq!(up.len(), 48000);
        let back = run(48000, 8000, &up, 960);
        assert_eq!(back.len(), 8000);
        let db = 20.0 * (rms(&back[800..]) / rms(&tone(8000, 1000.0, 8000)[800..])).log10();
        assert!(db.abs() < 0.1, "1 kHz up and down: {db:.3} dB");
    }

    #[test]
    fn what_the_lower_rate_cannot_carry_is_removed_not_aliased() {
        // 5 kHz at 48 kHz has no place at 8 kHz: it would alias to 3 kHz.
        let out = run(48000, 8000, &tone(48000, 5000.0, 48000), 960);
        let db = 20.0 * (rms(&out[800..]) / rms(&tone(48000, 5000.0, 48000))).log10();
        assert!(db < -70.0, "5 kHz leaked at {db:.1} dB");
    }
}
