//! Audio codecs for transcoding (issue 12), behind two small traits: a [`Decoder`] turns
//! an RTP payload into 16-bit mono PCM and conceals a lost frame; an [`Encoder`] turns PCM
//! into a payload. Each direction of a transcoding session keeps one of each on its
//! worker; nothing here allocates per packet (callers pass the buffers). A new codec
//! (AMR, EVS...) is one new file implementing the two traits and a line in [`Kind`].
//!
//! Codecs: G.711 µ-law and A-law ([`g711`]), L16 ([`l16`]), G.722 ([`g722`]), Opus through
//! libopus ([`opus`]) and G.729 through bcg729 ([`g729`]).

pub mod g711;
pub mod g722;
pub mod g729;
pub mod l16;
pub mod opus;
pub mod plc;

use ferroswitch_shared::msg::{codec as id, PayloadMap};

/// Why a payload could not be decoded, PCM encoded, or a codec made.
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
    /// The PCM frame's length is not one this codec encodes.
    #[error("{samples} samples is not a frame this codec encodes")]
    FrameSize {
        /// The samples given.
        samples: usize,
    },
    /// The codec library refused (libopus's error code, negative).
    #[error("codec library error {0}")]
    Library(i32),
    /// No such codec, or not at this rate.
    #[error("no codec for {0}")]
    Unsupported(&'static str),
}

/// Decodes one direction's payloads (one codec's state for one stream).
pub trait Decoder: Send {
    /// The PCM sample rate it decodes to, in Hz.
    fn pcm_rate(&self) -> u32;

    /// Decodes one RTP payload into `pcm` (mono, at [`Decoder::pcm_rate`]); the samples
    /// written.
    fn decode(&mut self, payload: &[u8], pcm: &mut [i16]) -> Result<usize, CodecError>;

    /// Fills `pcm` with a stand-in for a lost frame of `pcm.len()` samples, from what was
    /// decoded before (packet-loss concealment).
    fn conceal(&mut self, pcm: &mut [i16]);

    /// Fills `pcm` with the lost frame just before `next`, recovered from `next`'s
    /// redundancy where the codec carries some (Opus in-band FEC), else concealed.
    fn recover(&mut self, _next: &[u8], pcm: &mut [i16]) {
        self.conceal(pcm);
    }
}

/// Encodes one direction's PCM (one codec's state for one stream).
pub trait Encoder: Send {
    /// The PCM sample rate it encodes from, in Hz.
    fn pcm_rate(&self) -> u32;

    /// Encodes `pcm` (mono, at [`Encoder::pcm_rate`], one frame) into `payload`; the bytes
    /// written (0: nothing to send, a codec's discontinuous transmission).
    fn encode(&mut self, pcm: &[i16], payload: &mut [u8]) -> Result<usize, CodecError>;
}

/// A codec the media plane transcodes, from a payload map.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// G.711 µ-law.
    Pcmu,
    /// G.711 A-law.
    Pcma,
    /// 16-bit linear PCM at a clock rate.
    L16(u32),
    /// G.722 (16 kHz audio, an 8 kHz RTP clock: RFC 3551 §4.5.2).
    G722,
    /// Opus (a 48 kHz RTP clock whatever the audio's rate: RFC 7587).
    Opus,
    /// G.729 (Annex A compatible, 8 kHz).
    G729,
}

impl Kind {
    /// The codec a payload map names, if the media plane can transcode it.
    pub fn of(map: &PayloadMap) -> Option<Kind> {
        Some(match map.codec {
            id::PCMU => Kind::Pcmu,
            id::PCMA => Kind::Pcma,
            id::G722 => Kind::G722,
            id::OPUS => Kind::Opus,
            id::G729 => Kind::G729,
            id::L16 if matches!(map.clock_rate, 8000 | 16000 | 24000 | 32000 | 48000) => Kind::L16(map.clock_rate),
            _ => return None,
        })
    }

    /// The audio rate the codec works at natively, in Hz (Opus: its full band).
    pub fn natural_rate(self) -> u32 {
        match self {
            Kind::Pcmu | Kind::Pcma | Kind::G729 => 8000,
            Kind::G722 => 16000,
            Kind::L16(r) => r,
            Kind::Opus => 48000,
        }
    }

    /// The RTP clock rate in Hz.
    pub fn rtp_clock(self) -> u32 {
        match self {
            Kind::G722 => 8000,
            k => k.natural_rate(),
        }
    }

    /// The packetization the codec can take closest to `ms` (0: its usual 20 ms).
    pub fn ptime(self, ms: u32) -> u32 {
        let ms = if ms == 0 { 20 } else { ms };
        match self {
            // libopus encodes 2.5 to 60 ms frames; 10, 20, 40 and 60 are the RTP ones.
            Kind::Opus => [10u32, 20, 40, 60].into_iter().min_by_key(|p: &u32| p.abs_diff(ms)).unwrap_or(20),
            Kind::G729 => (ms / 10).clamp(1, 12) * 10,
            _ => ms.clamp(10, 120) / 10 * 10,
        }
    }

    /// A decoder producing PCM at `pcm_rate` (only Opus decodes at a rate other than its
    /// natural one: 8, 12, 16, 24 or 48 kHz).
    pub fn decoder(self, pcm_rate: u32) -> Result<Box<dyn Decoder>, CodecError> {
        Ok(match self {
            Kind::Pcmu => Box::new(g711::G711::new(g711::Law::Mu)),
            Kind::Pcma => Box::new(g711::G711::new(g711::Law::A)),
            Kind::L16(r) => Box::new(l16::L16::new(r)),
            Kind::G722 => Box::new(g722::G722Decoder::new()),
            Kind::Opus => Box::new(opus::OpusDecoder::new(pcm_rate)?),
            Kind::G729 => Box::new(g729::G729Decoder::new()?),
        })
    }

    /// An encoder taking PCM at `pcm_rate` (Opus: 8, 12, 16, 24 or 48 kHz).
    pub fn encoder(self, pcm_rate: u32, params: &opus::Params) -> Result<Box<dyn Encoder>, CodecError> {
        Ok(match self {
            Kind::Pcmu => Box::new(g711::G711::new(g711::Law::Mu)),
            Kind::Pcma => Box::new(g711::G711::new(g711::Law::A)),
            Kind::L16(r) => Box::new(l16::L16::new(r)),
            Kind::G722 => Box::new(g722::G722Encoder::new()),
            Kind::Opus => Box::new(opus::OpusEncoder::new(pcm_rate, params)?),
            Kind::G729 => Box::new(g729::G729Encoder::new()?),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(codec: u8, clock_rate: u32) -> PayloadMap {
        PayloadMap { clock_rate, pt: 96, codec, channels: 1, _pad: 0 }
    }

    #[test]
    fn payload_maps_name_codecs_with_their_clocks_rfc3551_and_rfc7587() {
        assert_eq!(Kind::of(&map(id::G722, 8000)).map(|k| (k.natural_rate(), k.rtp_clock())), Some((16000, 8000)));
        assert_eq!(Kind::of(&map(id::OPUS, 48000)).map(|k| (k.natural_rate(), k.rtp_clock())), Some((48000, 48000)));
        assert_eq!(Kind::of(&map(id::L16, 16000)), Some(Kind::L16(16000)));
        assert_eq!(Kind::of(&map(id::L16, 11025)), None);
        assert_eq!(Kind::of(&map(id::TELEPHONE_EVENT, 8000)), None);
        assert_eq!(Kind::of(&map(id::OTHER, 8000)), None);
    }

    #[test]
    fn each_codec_takes_the_nearest_packetization_it_can() {
        assert_eq!([0, 10, 20, 30, 50, 60, 90].map(|p| Kind::Opus.ptime(p)), [20, 10, 20, 20, 40, 60, 60]);
        assert_eq!([0, 15, 30, 200].map(|p| Kind::G729.ptime(p)), [20, 10, 30, 120]);
        assert_eq!([0, 5, 30, 40].map(|p| Kind::Pcmu.ptime(p)), [20, 10, 30, 40]);
    }
}
