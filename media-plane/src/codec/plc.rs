//! Packet-loss concealment for the waveform codecs (G.711, G.722, L16), in the manner of
//! ITU-T G.711 Appendix I: a lost frame is replaced by the last pitch period of the audio
//! before it, repeated, so the stand-in continues the waveform instead of breaking it.
//!
//! - The pitch is the lag (5 to 15 ms: 66 to 200 Hz) at which the last 20 ms best matches
//!   itself (normalised cross-correlation), searched when a loss begins.
//! - The repeated period is cross-faded over a quarter of it at its wrap point, so each
//!   repetition joins the next smoothly.
//! - The first 10 ms are at full level; then the level falls by a fifth each 10 ms, to
//!   silence after 60 ms (a long gap must not buzz).
//! - The first good frame after a loss is cross-faded from the stand-in's continuation
//!   over a quarter pitch period, plus 4 ms for each further 10 ms lost.
//!
//! Unlike Appendix I, no 3.75 ms delay is added to every frame: the wrap point's
//! cross-fade stands in for Appendix I's overlap-add into the history's tail.

/// History kept, in ms (Appendix I's 48.75 ms, rounded up).
const HISTORY_MS: usize = 50;
/// The pitch search's lags, in samples at 8 kHz, and the matched length.
const PITCH_MIN: usize = 40;
const PITCH_MAX: usize = 120;
const CORR_LEN: usize = 160;

/// One stream's concealment state.
#[derive(Debug, Clone)]
pub struct Concealer {
    /// Samples per 8 kHz sample (1 at 8 kHz, 2 at 16 kHz...).
    scale: usize,
    /// The last decoded audio, oldest first; `filled` of it valid.
    history: Box<[i16]>,
    filled: usize,
    /// The period being repeated (wrap-faded), and where the stand-in is in it.
    period: Box<[i16]>,
    pitch: usize,
    at: usize,
    /// Samples concealed in the current loss (0: none).
    erased: usize,
}

impl Concealer {
    /// A concealer for audio at `rate` Hz (a multiple of 8 kHz; others are treated as
    /// the nearest multiple).
    pub fn new(rate: u32) -> Concealer {
        let scale = (rate as usize / 8000).max(1);
        Concealer {
            scale,
            history: vec![0; HISTORY_MS * 8 * scale].into_boxed_slice(),
            filled: 0,
            period: vec![0; PITCH_MAX * scale].into_boxed_slice(),
            pitch: 0,
            at: 0,
            erased: 0,
        }
    }

    /// A good frame was decoded into `pcm`: after a loss it is faded in from the
    /// stand-in's continuation; then it joins the history.
    pub fn good(&mut self, pcm: &mut [i16]) {
        if self.erased > 0 && self.pitch > 0 {
            let ms10 = 80 * self.scale;
            let extra = (self.erased.saturating_sub(1) / ms10) * 32 * self.scale;
            let n = (self.pitch / 4 + extra).min(pcm.len()).min(ms10);
            let gain = self.gain();
            for (i, s) in pcm.iter_mut().take(n).enumerate() {
                let w = (i + 1) as f32 / (n + 1) as f32;
                let synth = f32::from(self.period[self.at]) * gain;
                self.at = (self.at + 1) % self.pitch;
                *s = (f32::from(*s) * w + synth * (1.0 - w)) as i16;
            }
        }
        self.erased = 0;
        self.remember(pcm);
    }

    /// Fills `pcm` with the stand-in for lost audio.
    pub fn conceal(&mut self, pcm: &mut [i16]) {
        if self.erased == 0 && !self.start() {
            pcm.fill(0);
            return;
        }
        for s in pcm.iter_mut() {
            let gain = self.gain();
            *s = if gain <= 0.0 { 0 } else { (f32::from(self.period[self.at]) * gain) as i16 };
            self.at = (self.at + 1) % self.pitch;
            self.erased += 1;
        }
    }

    /// The stand-in's level now: full for 10 ms, then a fifth less each 10 ms.
    fn gain(&self) -> f32 {
        let ms10 = (80 * self.scale) as f32;
        let past = (self.erased as f32 - ms10).max(0.0);
        (1.0 - 0.2 * past / ms10).max(0.0)
    }

    /// Appends `pcm` to the history.
    fn remember(&mut self, pcm: &[i16]) {
        let len = self.history.len();
        let n = pcm.len().min(len);
        self.history.copy_within(n.., 0);
        self.history[len - n..].copy_from_slice(&pcm[pcm.len() - n..]);
        self.filled = (self.filled + n).min(len);
    }

    /// A loss begins: finds the pitch and builds the period to repeat; false if there
    /// is too little history.
    fn start(&mut self) -> bool {
        let (min, max, corr) = (PITCH_MIN * self.scale, PITCH_MAX * self.scale, CORR_LEN * self.scale);
        let len = self.history.len();
        if self.filled < max + corr.min(len - max) {
            return false;
        }
        let h = &self.history[..];
        let target = &h[len - corr.min(len - max)..];
        let energy = |s: &[i16]| s.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>();
        let mut best = (min, f64::MIN);
        // Coarse (every other lag), then the neighbours of the best.
        let score = |lag: usize| {
            let past = &h[len - target.len() - lag..len - lag];
            let dot: f64 = past.iter().zip(target).map(|(&a, &b)| f64::from(a) * f64::from(b)).sum();
            dot / energy(past).max(1.0).sqrt()
        };
        for lag in (min..=max).step_by(2) {
            let c = score(lag);
            if c > best.1 {
                best = (lag, c);
            }
        }
        for lag in [best.0.saturating_sub(1), best.0 + 1] {
            if (min..=max).contains(&lag) && score(lag) > best.1 {
                best = (lag, score(lag));
            }
        }
        let pitch = best.0;
        // The last period, its end faded into the samples before its start, so that its
        // wrap point is as smooth as the signal itself.
        let ov = (pitch / 4).max(1);
        let start = len - pitch;
        for i in 0..pitch {
            self.period[i] = h[start + i];
        }
        for j in 0..ov {
            let w = (j + 1) as f32 / (ov + 1) as f32;
            let (end, before) = (f32::from(h[len - ov + j]), f32::from(h[start - ov + j]));
            self.period[pitch - ov + j] = (end * (1.0 - w) + before * w) as i16;
        }
        self.pitch = pitch;
        self.at = 0;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The largest second difference: a click shows as a jump far above the signal's own.
    fn roughness(s: &[i16]) -> i32 {
        s.windows(3).map(|w| (i32::from(w[0]) - 2 * i32::from(w[1]) + i32::from(w[2])).abs()).max().unwrap_or(0)
    }

    fn vowel(n: usize, rate: f64) -> Vec<i16> {
        // A 140 Hz voice with its harmonics, like a sustained vowel.
        (0..n)
            .map(|i| {
                let t = i as f64 / rate;
                let tau = 2.0 * std::f64::consts::PI;
                let v: f64 = [(1.0, 4000.0), (2.0, 2500.0), (3.0, 1500.0), (5.0, 700.0)]
                    .iter()
                    .map(|(k, a)| a * (tau * 140.0 * k * t).sin())
                    .sum();
                v as i16
            })
            .collect()
    }

    #[test]
    fn a_lost_frame_continues_the_waveform_without_a_click_and_long_losses_fade_out() {
        let src = vowel(8000, 8000.0);
        let clean = roughness(&src);
        let mut c = Concealer::new(8000);
        let mut out = Vec::new();
        for (i, f) in src.chunks(160).enumerate() {
            let mut frame = f.to_vec();
            if i == 20 || i == 21 {
                c.conceal(&mut frame);
            } else {
                c.good(&mut frame);
            }
            out.extend(frame);
        }
        assert!(roughness(&out) <= clean * 2, "roughness {} against {clean}", roughness(&out));
        // The stand-in has the voice's level (not silence, not a burst).
        let rms = |s: &[i16]| (s.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>() / s.len() as f64).sqrt();
        let (lost, before) = (rms(&out[3200..3280]), rms(&src[3200..3280]));
        assert!(lost > before * 0.7 && lost < before * 1.3, "{lost:.0} against {before:.0}");
        // 60 ms and more: silence.
        let mut long = vec![0i16; 640];
        let mut c = Concealer::new(8000);
        c.good(&mut src[..800].to_vec());
        c.conceal(&mut long);
        assert!(long[480..].iter().all(|&s| s == 0));
        assert!(long[..80].iter().any(|&s| s.abs() > 1000));
    }

    #[test]
    fn without_history_a_loss_is_silence() {
        let mut c = Concealer::new(16000);
        let mut pcm = [5i16; 320];
        c.conceal(&mut pcm);
        assert!(pcm.iter().all(|&s| s == 0));
    }
}
