//! Audio codecs for transcoding (issue 12), behind one small trait: decode an RTP payload
//! to 16-bit PCM, conceal a lost frame, encode PCM to a payload. Each session keeps its
//! codecs' state on its worker; nothing here allocates per packet (callers pass the
//! buffers). A new codec (AMR, EVS...) is one new file implementing [`AudioCodec`].
//!
//! So far: G.711 µ-law and A-law ([`g711`]) and L16 ([`l16`]). The relay does not call
//! these yet.

pub mod g711;
pub mod l16;

/// Why a payload could not be decoded or PCM encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CodecError {
    /// The output buffer cannot hold the result.
    #[error("output buffer of {have} holds less than the {need} needed")]
    OutputTooSmall {
        /// Units (samples or bytes) needed.
        need: usize,
        /// Units the buffer has.
        have: usize,
    },
    /// The payload is not one this codec can decode.
    #[error("malformed payload: {0}")]
    Malformed(&'static str),
}

/// One codec's state for one direction of one session.
pub trait AudioCodec: Send {
    /// The PCM sample rate it decodes to and encodes from, in Hz.
    fn pcm_rate(&self) -> u32;

    /// Decodes one RTP payload into `pcm` (mono, at [`AudioCodec::pcm_rate`]); the
    /// samples written.
    fn decode(&mut self, payload: &[u8], pcm: &mut [i16]) -> Result<usize, CodecError>;

    /// Fills `pcm` with a stand-in for a lost frame of `pcm.len()` samples, from what was
    /// decoded before (packet-loss concealment).
    fn conceal(&mut self, pcm: &mut [i16]);

    /// Encodes `pcm` (mono, at [`AudioCodec::pcm_rate`]) into `payload`; the bytes written.
    fn encode(&mut self, pcm: &[i16], payload: &mut [u8]) -> Result<usize, CodecError>;
}
