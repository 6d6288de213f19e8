//! Opus (RFC 6716, RTP payload RFC 7587) through libopus (Debian's libopus-dev, linked
//! through the `opusic-sys` binding). Mono, at the audio rate the other leg needs (8 kHz
//! toward G.711 saves libopus's resampling and most of its cost); the RTP clock is 48 kHz
//! whatever the rate. The encoder's bitrate, complexity, in-band FEC, DTX and CBR come
//! from [`Params`] (config and the peer's fmtp); the decoder conceals a loss with
//! libopus's own PLC, or recovers it from the next packet's FEC.

use std::ptr::NonNull;

use opusic_sys as sys;

use super::{CodecError, Decoder, Encoder};

/// The encoder's settings for one stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Params {
    /// Target bitrate in bit/s (0: libopus's choice for the rate and frame size).
    pub bitrate: u32,
    /// 0 (cheapest) to 10 (best).
    pub complexity: u8,
    /// In-band forward error correction (the receiver's `useinbandfec=1`).
    pub fec: bool,
    /// Discontinuous transmission in silence (the receiver's `usedtx=1`).
    pub dtx: bool,
    /// Constant bitrate (the receiver's `cbr=1`), else VBR.
    pub cbr: bool,
    /// The highest audio rate the receiver renders (`maxplaybackrate`), in Hz; 0: any.
    pub max_playback_rate: u32,
    /// The loss the FEC is sized for, in percent.
    pub expected_loss_percent: u8,
}

impl Default for Params {
    fn default() -> Params {
        Params {
            bitrate: 0,
            complexity: 5,
            fec: true,
            dtx: false,
            cbr: false,
            max_playback_rate: 0,
            expected_loss_percent: 5,
        }
    }
}

/// libopus's rates.
fn check_rate(rate: u32) -> Result<i32, CodecError> {
    match rate {
        8000 | 12000 | 16000 | 24000 | 48000 => Ok(rate as i32),
        _ => Err(CodecError::Unsupported("Opus at that rate (8, 12, 16, 24 or 48 kHz)")),
    }
}

/// The audio bandwidth that carries everything up to `rate` Hz.
fn bandwidth_for(rate: u32) -> i32 {
    match rate {
        0..=8000 => sys::OPUS_BANDWIDTH_NARROWBAND,
        8001..=12000 => sys::OPUS_BANDWIDTH_MEDIUMBAND,
        12001..=16000 => sys::OPUS_BANDWIDTH_WIDEBAND,
        16001..=24000 => sys::OPUS_BANDWIDTH_SUPERWIDEBAND,
        _ => sys::OPUS_BANDWIDTH_FULLBAND,
    }
}

/// A libopus encoder (mono, VoIP application).
#[derive(Debug)]
pub struct OpusEncoder {
    st: NonNull<sys::OpusEncoder>,
    rate: u32,
}

// SAFETY: the encoder state is plain memory owned by this value; libopus keeps no
// thread-local or global state for it, so moving it to another thread is sound.
unsafe impl Send for OpusEncoder {}

impl OpusEncoder {
    /// An encoder taking PCM at `rate` with `params`.
    pub fn new(rate: u32, params: &Params) -> Result<OpusEncoder, CodecError> {
        let fs = check_rate(rate)?;
        let mut err = 0;
        // SAFETY: valid arguments; the returned pointer is checked before use.
        let st = unsafe { sys::opus_encoder_create(fs, 1, sys::OPUS_APPLICATION_VOIP, &mut err) };
        let st = NonNull::new(st).filter(|_| err == sys::OPUS_OK).ok_or(CodecError::Library(err))?;
        let enc = OpusEncoder { st, rate };
        let bitrate = if params.bitrate == 0 { sys::OPUS_AUTO } else { params.bitrate.clamp(6000, 510_000) as i32 };
        let max_rate = if params.max_playback_rate == 0 { rate } else { params.max_playback_rate.min(rate) };
        for (request, value) in [
            (sys::OPUS_SET_BITRATE_REQUEST, bitrate),
            (sys::OPUS_SET_COMPLEXITY_REQUEST, i32::from(params.complexity.min(10))),
            (sys::OPUS_SET_INBAND_FEC_REQUEST, i32::from(params.fec)),
            (sys::OPUS_SET_PACKET_LOSS_PERC_REQUEST, i32::from(params.expected_loss_percent.min(100))),
            (sys::OPUS_SET_DTX_REQUEST, i32::from(params.dtx)),
            (sys::OPUS_SET_VBR_REQUEST, i32::from(!params.cbr)),
            (sys::OPUS_SET_SIGNAL_REQUEST, sys::OPUS_SIGNAL_VOICE),
            (sys::OPUS_SET_MAX_BANDWIDTH_REQUEST, bandwidth_for(max_rate)),
        ] {
            // SAFETY: each request takes one opus_int32 argument.
            let r = unsafe { sys::opus_encoder_ctl(enc.st.as_ptr(), request, value) };
            if r != sys::OPUS_OK {
                return Err(CodecError::Library(r));
            }
        }
        Ok(enc)
    }
}

impl Drop for OpusEncoder {
    fn drop(&mut self) {
        // SAFETY: made by opus_encoder_create, destroyed once.
        unsafe { sys::opus_encoder_destroy(self.st.as_ptr()) }
    }
}

impl Encoder for OpusEncoder {
    fn pcm_rate(&self) -> u32 {
        self.rate
    }

    fn encode(&mut self, pcm: &[i16], payload: &mut [u8]) -> Result<usize, CodecError> {
        // 2.5, 5, 10, 20, 40 or 60 ms.
        let per_2_5ms = self.rate as usize / 400;
        let frames = pcm.len() / per_2_5ms;
        if pcm.len() % per_2_5ms != 0 || ![1, 2, 4, 8, 16, 24].contains(&frames) {
            return Err(CodecError::FrameSize { samples: pcm.len() });
        }
        let max = payload.len().min(1275) as i32;
        // SAFETY: pcm holds frame_size samples, payload at least max bytes.
        let n =
            unsafe { sys::opus_encode(self.st.as_ptr(), pcm.as_ptr(), pcm.len() as i32, payload.as_mut_ptr(), max) };
        if n < 0 {
            return Err(CodecError::Library(n));
        }
        // With DTX a 1- or 2-byte packet says "nothing new": not sent (RFC 7587 §3.1.3).
        Ok(if n <= 2 { 0 } else { n as usize })
    }
}

/// A libopus decoder (mono: a stereo stream is mixed down by libopus).
///
/// The first good frame after a loss is spliced: libopus's own concealment, run on a
/// copy of the state (libopus documents the state as position independent and freely
/// copied), gives 5 ms of where the stand-in was going, and the new frame is faded in
/// from it. libopus's hybrid mode otherwise steps at that boundary (a click the loss
/// tests catch).
#[derive(Debug)]
pub struct OpusDecoder {
    st: NonNull<sys::OpusDecoder>,
    rate: u32,
    /// A loss was concealed since the last good frame.
    concealed: bool,
    /// Room for a copy of the state (made at the first loss) and the splice's samples.
    shadow: Option<Box<[u64]>>,
    splice: Box<[i16]>,
}

// SAFETY: as for the encoder.
unsafe impl Send for OpusDecoder {}

impl OpusDecoder {
    /// A decoder producing PCM at `rate`.
    pub fn new(rate: u32) -> Result<OpusDecoder, CodecError> {
        let fs = check_rate(rate)?;
        let mut err = 0;
        // SAFETY: valid arguments; the pointer is checked.
        let st = unsafe { sys::opus_decoder_create(fs, 1, &mut err) };
        let st = NonNull::new(st).filter(|_| err == sys::OPUS_OK).ok_or(CodecError::Library(err))?;
        let splice = vec![0i16; rate as usize / 200].into_boxed_slice();
        Ok(OpusDecoder { st, rate, concealed: false, shadow: None, splice })
    }

    /// Where the concealment was heading: 5 ms of it, from a copy of the state, into
    /// `self.splice`; false if there is none.
    fn continuation(&mut self) -> bool {
        // SAFETY: the size of a mono decoder's state, which `st` points to.
        let size = unsafe { sys::opus_decoder_get_size(1) };
        let Ok(size) = usize::try_from(size) else { return false };
        let shadow = self.shadow.get_or_insert_with(|| vec![0u64; size.div_ceil(8)].into_boxed_slice());
        let copy = shadow.as_mut_ptr().cast::<u8>();
        // SAFETY: `st` is `size` bytes of position-independent state (opus.h), `shadow`
        // at least as many; the copy is used as a decoder only here.
        let n = unsafe {
            std::ptr::copy_nonoverlapping(self.st.as_ptr().cast::<u8>(), copy, size);
            let len = self.splice.len() as i32;
            sys::opus_decode(copy.cast(), std::ptr::null(), 0, self.splice.as_mut_ptr(), len, 0)
        };
        n == self.splice.len() as i32
    }

    /// libopus's decode: `data` None for concealment, `fec` to recover the frame before.
    fn run(&mut self, data: Option<&[u8]>, pcm: &mut [i16], fec: bool) -> Result<usize, CodecError> {
        let (ptr, len) = data.map_or((std::ptr::null(), 0), |d| (d.as_ptr(), d.len() as i32));
        // Up to 120 ms; concealment and FEC ask for exactly the lost frame, a multiple of 2.5 ms.
        let frame = pcm.len().min(self.rate as usize * 120 / 1000);
        // SAFETY: data is len bytes (or null for PLC), pcm holds frame samples.
        let n = unsafe { sys::opus_decode(self.st.as_ptr(), ptr, len, pcm.as_mut_ptr(), frame as i32, i32::from(fec)) };
        if n < 0 {
            return Err(CodecError::Library(n));
        }
        Ok(n as usize)
    }

    /// Concealment needs whole 2.5 ms blocks: fills what it can, zeroes the rest.
    fn fill(&mut self, data: Option<&[u8]>, pcm: &mut [i16], fec: bool) {
        let block = self.rate as usize / 400;
        let whole = pcm.len() / block * block;
        let got = if whole == 0 { Ok(0) } else { self.run(data, &mut pcm[..whole], fec) };
        let got = got.unwrap_or(0).min(pcm.len());
        pcm[got..].fill(0);
    }
}

impl Drop for OpusDecoder {
    fn drop(&mut self) {
        // SAFETY: made by opus_decoder_create, destroyed once.
        unsafe { sys::opus_decoder_destroy(self.st.as_ptr()) }
    }
}

impl Decoder for OpusDecoder {
    fn pcm_rate(&self) -> u32 {
        self.rate
    }

    fn decode(&mut self, payload: &[u8], pcm: &mut [i16]) -> Result<usize, CodecError> {
        if payload.is_empty() {
            return Err(CodecError::Malformed("empty Opus payload"));
        }
        let spliced = std::mem::take(&mut self.concealed) && self.continuation();
        let n = self.run(Some(payload), pcm, false)?;
        if spliced {
            let m = self.splice.len().min(n);
            for (i, (s, &c)) in pcm.iter_mut().zip(self.splice.iter()).take(m).enumerate() {
                let w = (i + 1) as f32 / (m + 1) as f32;
                *s = (f32::from(*s) * w + f32::from(c) * (1.0 - w)) as i16;
            }
        }
        Ok(n)
    }

    fn conceal(&mut self, pcm: &mut [i16]) {
        self.concealed = true;
        self.fill(None, pcm, false);
    }

    fn recover(&mut self, next: &[u8], pcm: &mut [i16]) {
        if next.is_empty() {
            return self.conceal(pcm);
        }
        self.concealed = true;
        self.fill(Some(next), pcm, true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(rate: u32, hz: f64, n: usize, at: usize) -> Vec<i16> {
        (0..n)
            .map(|i| ((2.0 * std::f64::consts::PI * hz * (at + i) as f64 / f64::from(rate)).sin() * 8000.0) as i16)
            .collect()
    }

    #[test]
    fn a_tone_survives_encode_then_decode_at_8_and_48_khz() {
        for rate in [8000u32, 16000, 48000] {
            let frame = rate as usize / 50;
            let mut enc = OpusEncoder::new(rate, &Params::default()).unwrap();
            let mut dec = OpusDecoder::new(rate).unwrap();
            let mut payload = [0u8; 1500];
            let mut out = vec![0i16; frame];
            let mut energy = (0.0, 0.0);
            for f in 0..50 {
                let pcm = tone(rate, 1000.0, frame, f * frame);
                let n = enc.encode(&pcm, &mut payload).unwrap();
                assert!(n > 2 && n < 200, "{rate}: {n} bytes");
                assert_eq!(dec.decode(&payload[..n], &mut out), Ok(frame));
                if f >= 10 {
                    energy.0 += pcm.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>();
                    energy.1 += out.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>();
                }
            }
            let db = 10.0 * (energy.1 / energy.0).log10();
            assert!(db.abs() < 1.5, "{rate}: level {db:.2} dB");
        }
    }

    #[test]
    fn frame_sizes_libopus_refuses_are_a_typed_error_and_losses_are_concealed() {
        let mut enc = OpusEncoder::new(8000, &Params::default()).unwrap();
        assert_eq!(enc.encode(&[0; 100], &mut [0; 1500]), Err(CodecError::FrameSize { samples: 100 }));
        assert!(OpusEncoder::new(44100, &Params::default()).is_err());
        let mut dec = OpusDecoder::new(8000).unwrap();
        assert_eq!(dec.decode(&[], &mut [0; 160]), Err(CodecError::Malformed("empty Opus payload")));
        let mut pcm = [7i16; 165];
        dec.conceal(&mut pcm);
        assert!(pcm[160..].iter().all(|&s| s == 0), "the part past whole 2.5 ms blocks is silence");
    }
}
