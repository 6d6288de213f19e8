//! G.729 (Annex A compatible; RTP payload RFC 3551 §4.5.6) through bcg729 (Debian's
//! libbcg729-dev), bound here directly: five functions. A payload is whole 10-byte frames
//! of 10 ms, optionally ended by a 2-byte Annex B comfort-noise (SID) frame. The encoder
//! runs without VAD, so every 10 ms gives a frame; the decoder's frame erasure flag is
//! its concealment.

use std::ptr::NonNull;

use super::{CodecError, Decoder, Encoder};

/// Samples in a G.729 frame (10 ms at 8 kHz).
pub const FRAME: usize = 80;
/// Bytes in a G.729 frame.
pub const FRAME_BYTES: usize = 10;

#[repr(C)]
struct EncoderCtx {
    _opaque: [u8; 0],
}

#[repr(C)]
struct DecoderCtx {
    _opaque: [u8; 0],
}

#[link(name = "bcg729")]
unsafe extern "C" {
    fn initBcg729EncoderChannel(enable_vad: u8) -> *mut EncoderCtx;
    fn closeBcg729EncoderChannel(ctx: *mut EncoderCtx);
    fn bcg729Encoder(ctx: *mut EncoderCtx, input: *const i16, bitstream: *mut u8, len: *mut u8);
    fn initBcg729DecoderChannel() -> *mut DecoderCtx;
    fn closeBcg729DecoderChannel(ctx: *mut DecoderCtx);
    fn bcg729Decoder(
        ctx: *mut DecoderCtx,
        bitstream: *const u8,
        len: u8,
        erasure: u8,
        sid: u8,
        rfc3389: u8,
        signal: *mut i16,
    );
}

/// A bcg729 encoder (VAD off).
#[derive(Debug)]
pub struct G729Encoder {
    ctx: NonNull<EncoderCtx>,
}

// SAFETY: the context is heap memory owned by this value and used by one thread at a time.
unsafe impl Send for G729Encoder {}

impl G729Encoder {
    /// A new encoder.
    pub fn new() -> Result<G729Encoder, CodecError> {
        // SAFETY: no arguments beyond the VAD flag; the pointer is checked.
        let ctx = unsafe { initBcg729EncoderChannel(0) };
        NonNull::new(ctx).map(|ctx| G729Encoder { ctx }).ok_or(CodecError::Library(-1))
    }
}

impl Drop for G729Encoder {
    fn drop(&mut self) {
        // SAFETY: made by initBcg729EncoderChannel, closed once.
        unsafe { closeBcg729EncoderChannel(self.ctx.as_ptr()) }
    }
}

impl Encoder for G729Encoder {
    fn pcm_rate(&self) -> u32 {
        8000
    }

    fn encode(&mut self, pcm: &[i16], payload: &mut [u8]) -> Result<usize, CodecError> {
        if pcm.is_empty() || pcm.len() % FRAME != 0 {
            return Err(CodecError::FrameSize { samples: pcm.len() });
        }
        let need = pcm.len() / FRAME * FRAME_BYTES;
        if payload.len() < need {
            return Err(CodecError::OutputTooSmall { need, have: payload.len() });
        }
        let mut at = 0;
        for frame in pcm.chunks_exact(FRAME) {
            let mut len = 0u8;
            // SAFETY: frame is 80 samples; payload has 10 bytes from `at` (checked above).
            unsafe { bcg729Encoder(self.ctx.as_ptr(), frame.as_ptr(), payload[at..].as_mut_ptr(), &mut len) };
            at += usize::from(len).min(FRAME_BYTES);
        }
        Ok(at)
    }
}

/// A bcg729 decoder.
#[derive(Debug)]
pub struct G729Decoder {
    ctx: NonNull<DecoderCtx>,
}

// SAFETY: as for the encoder.
unsafe impl Send for G729Decoder {}

impl G729Decoder {
    /// A new decoder.
    pub fn new() -> Result<G729Decoder, CodecError> {
        // SAFETY: no arguments; the pointer is checked.
        let ctx = unsafe { initBcg729DecoderChannel() };
        NonNull::new(ctx).map(|ctx| G729Decoder { ctx }).ok_or(CodecError::Library(-1))
    }

    fn frame(&mut self, bits: &[u8], erasure: bool, out: &mut [i16]) {
        debug_assert!(out.len() == FRAME && bits.len() <= FRAME_BYTES);
        let sid = u8::from(bits.len() == 2);
        // SAFETY: bits is `len` bytes (an erased frame is read as nothing), out 80 samples.
        unsafe {
            bcg729Decoder(
                self.ctx.as_ptr(),
                bits.as_ptr(),
                bits.len() as u8,
                u8::from(erasure),
                sid,
                0,
                out.as_mut_ptr(),
            )
        }
    }
}

impl Drop for G729Decoder {
    fn drop(&mut self) {
        // SAFETY: made by initBcg729DecoderChannel, closed once.
        unsafe { closeBcg729DecoderChannel(self.ctx.as_ptr()) }
    }
}

impl Decoder for G729Decoder {
    fn pcm_rate(&self) -> u32 {
        8000
    }

    fn decode(&mut self, payload: &[u8], pcm: &mut [i16]) -> Result<usize, CodecError> {
        let (frames, sid) = (payload.len() / FRAME_BYTES, payload.len() % FRAME_BYTES);
        if payload.is_empty() || (sid != 0 && sid != 2) {
            return Err(CodecError::Malformed("G.729 payload is not 10-byte frames and an optional 2-byte SID"));
        }
        let n = (frames + usize::from(sid == 2)) * FRAME;
        if pcm.len() < n {
            return Err(CodecError::OutputTooSmall { need: n, have: pcm.len() });
        }
        for (bits, out) in payload.chunks(FRAME_BYTES).zip(pcm.chunks_exact_mut(FRAME)) {
            self.frame(bits, false, out);
        }
        Ok(n)
    }

    fn conceal(&mut self, pcm: &mut [i16]) {
        let mut chunks = pcm.chunks_exact_mut(FRAME);
        for out in &mut chunks {
            self.frame(&[0; FRAME_BYTES], true, out);
        }
        chunks.into_remainder().fill(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tone_survives_bcg729_and_bad_payloads_are_refused() {
        let mut enc = G729Encoder::new().unwrap();
        let mut dec = G729Decoder::new().unwrap();
        let (mut e_in, mut e_out) = (0.0, 0.0);
        for f in 0..50 {
            let pcm: Vec<i16> = (0..160)
                .map(|i| ((2.0 * std::f64::consts::PI * 600.0 * (f * 160 + i) as f64 / 8000.0).sin() * 8000.0) as i16)
                .collect();
            let mut payload = [0u8; 20];
            assert_eq!(enc.encode(&pcm, &mut payload), Ok(20));
            let mut out = [0i16; 160];
            assert_eq!(dec.decode(&payload, &mut out), Ok(160));
            if f >= 10 {
                e_in += pcm.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>();
                e_out += out.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>();
            }
        }
        let db = 10.0 * (e_out / e_in).log10();
        assert!(db.abs() < 2.0, "level {db:.2} dB");
        assert!(dec.decode(&[0; 7], &mut [0; 160]).is_err());
        assert_eq!(enc.encode(&[0; 100], &mut [0; 20]), Err(CodecError::FrameSize { samples: 100 }));
        let mut lost = [1i16; 170];
        dec.conceal(&mut lost);
        assert_eq!(&lost[160..], &[0; 10]);
    }
}
