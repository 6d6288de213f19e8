//! Transcoding between a session's two legs when they share no codec (issue 12): each
//! leg's first transcodable codec is the one it speaks ([`speaks`]), and each direction
//! ([`direction::Direction`]) decodes one, adapts rate and packetization, and encodes the
//! other. The state lives with the session on its worker; the PCM and packet buffers are
//! the worker's ([`Outbox`]), so a packet allocates nothing.

pub mod direction;
pub mod dtmf;
pub mod factory;
pub mod resample;

use ferroswitch_shared::msg::{codec, LegSpec};

pub use direction::Fmtp;
use direction::{Direction, Side};
pub use direction::{Outbox, Outcome, Packets};

use crate::codec::{opus, CodecError, Kind};
use crate::relay::rtp::Rtp;

/// Why a session cannot be transcoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TranscodeError {
    /// The leg has no codec the media plane transcodes.
    #[error("leg {0} has no codec the media plane transcodes")]
    NoCodec(usize),
    /// A codec could not be made.
    #[error("codec: {0}")]
    Codec(#[from] CodecError),
}

/// The codec a leg speaks (its first transcodable one), with its telephone-event.
pub fn speaks(leg: &LegSpec) -> Option<Side> {
    let (map, kind) = leg.codecs().iter().find_map(|m| Kind::of(m).map(|k| (m, k)))?;
    let dtmf = leg
        .codecs()
        .iter()
        .filter(|m| m.codec == codec::TELEPHONE_EVENT)
        .min_by_key(|m| m.clock_rate.abs_diff(kind.rtp_clock().min(8000)))
        .map(|m| (m.pt, m.clock_rate));
    let fmtp =
        Fmtp { flags: leg.fmtp_flags, max_playback_khz: leg.max_playback_khz, max_bitrate_kbps: leg.max_bitrate_kbps };
    Some(Side { kind, pt: map.pt, ptime: u32::from(leg.ptime_ms), dtmf, fmtp })
}

/// A session's two directions: `dirs[i]` takes leg `i`'s packets to the other leg.
pub struct Transcoder {
    dirs: [Direction; 2],
}

impl Transcoder {
    /// A transcoder between `legs`, each outgoing stream seeded from `seed`.
    pub fn new(legs: &[LegSpec; 2], params: &opus::Params, seed: u64) -> Result<Transcoder, TranscodeError> {
        let a = speaks(&legs[0]).ok_or(TranscodeError::NoCodec(0))?;
        let b = speaks(&legs[1]).ok_or(TranscodeError::NoCodec(1))?;
        let mix = |k: u64| {
            let mut z = seed.wrapping_add(k.wrapping_mul(0x9e37_79b9_7f4a_7c15));
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        };
        Ok(Transcoder { dirs: [Direction::new(a, b, params, mix(1))?, Direction::new(b, a, params, mix(2))?] })
    }

    /// Whether `legs` ask for what this transcoder already does (a re-INVITE that changed
    /// only addresses keeps the codec state).
    pub fn serves(&self, legs: &[LegSpec; 2]) -> bool {
        match (speaks(&legs[0]), speaks(&legs[1])) {
            (Some(a), Some(b)) => self.dirs[0].sides() == (a, b),
            _ => false,
        }
    }

    /// An RTP packet from leg `from`'s peer: what became of it; the packets for the other
    /// leg's peer are in `out.packets`.
    pub fn on_rtp(&mut self, from: usize, rtp: &Rtp, out: &mut Outbox) -> Outcome {
        self.dirs[from & 1].on_packet(rtp, out)
    }

    /// Turns DTMF interworking on or off (on when made).
    pub fn set_dtmf_interworking(&mut self, on: bool) {
        for d in &mut self.dirs {
            d.set_interworking(on);
        }
    }

    /// A digit heard in leg `from`'s audio (a leg without telephone-event) that has
    /// ended: its RFC 4733 event code and duration in ms.
    pub fn take_detected(&mut self, from: usize) -> Option<(u8, u32)> {
        self.dirs[from & 1].take_detected()
    }
}

#[cfg(test)]
mod tests;
