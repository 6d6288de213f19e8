//! One direction of a transcoded session, sans-IO: RTP from one leg's peer in, RTP for
//! the other leg's peer out.
//!
//! decode (the sender's codec) → conceal what was lost → resample (only where the two
//! rates differ: Opus decodes and encodes at the other leg's rate, so PCMU ↔ Opus needs
//! none) → a FIFO that adapts the packetization → encode (the receiver's codec, its own
//! ptime) → a new RTP stream: our SSRC, our sequence numbers, timestamps on the
//! receiver's clock that keep the sender's timing (a silence gap stays a gap, with the
//! marker bit on the first packet after it).
//!
//! Losses: a sequence gap up to [`MAX_CONCEAL_MS`] is filled by the decoder's concealment
//! (the frame just before a packet recovered from its in-band FEC where the codec has
//! it); a timestamp gap with no sequence gap is the sender's silence (DTX), kept as a
//! timestamp jump. Reordering: a packet after a gap of up to [`MAX_REORDER`] waits for
//! the next arrival; if that is a missing one, it is decoded in its place (one packet's
//! delay, only while packets are out of order), else the gap is concealed. A packet
//! older than that is dropped.
//!
//! DTMF: RFC 4733 events are passed on with the receiver's payload type and clock, in
//! the same stream; toward a leg without telephone-event they become the digit's two
//! tones in the audio (the sender's audio during an event is dropped). From a leg without
//! telephone-event toward one with it, digits are detected in the decoded audio
//! ([`Detector`]) and sent as events in place of the audio frames they cover, the last
//! packet three times (RFC 4733 §2.5.1.4); each detected digit is reported.

use super::dtmf::{Detected, Detector, ToneGenerator};
use super::resample::Resampler;
use crate::codec::{opus, CodecError, Decoder, Encoder, Kind};
use crate::relay::rtp::Rtp;

/// The longest frame a packet may carry, in ms (RFC 7587's 120 ms Opus maximum).
pub const MAX_FRAME_MS: usize = 120;
/// The longest loss concealed; a longer gap starts the stream afresh.
pub const MAX_CONCEAL_MS: u32 = 100;
/// PCM samples of the longest frame at 48 kHz.
const MAX_SAMPLES: usize = 48 * MAX_FRAME_MS;
/// Packets one input packet may give (a waiting packet's and its own 120 ms in 10 ms
/// frames, plus concealment).
pub const MAX_OUT_PACKETS: usize = 48;
/// The most packets a gap may miss for the packet after it to wait for them.
pub const MAX_REORDER: u16 = 2;
/// Bytes of an output packet: header and the largest payload.
pub const MAX_PACKET: usize = 1500;

/// The packets one input packet gave.
pub struct Packets {
    bufs: Box<[[u8; MAX_PACKET]]>,
    lens: [usize; MAX_OUT_PACKETS],
    count: usize,
}

impl Packets {
    /// Each packet's bytes.
    pub fn iter(&self) -> impl Iterator<Item = &[u8]> {
        self.bufs.iter().zip(&self.lens).take(self.count).map(|(p, &n)| &p[..n])
    }

    /// How many.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The next packet's buffer, if there is room.
    fn next(&mut self) -> Option<&mut [u8; MAX_PACKET]> {
        self.bufs.get_mut(self.count)
    }

    /// The buffer [`Packets::next`] gave holds a packet of `len` bytes.
    fn commit(&mut self, len: usize) {
        self.lens[self.count] = len;
        self.count += 1;
    }
}

/// A worker's scratch space for transcoding, allocated once: PCM buffers and the packets
/// one input packet gives.
pub struct Outbox {
    pcm: Box<[i16]>,
    resampled: Box<[i16]>,
    /// What the last input gave.
    pub packets: Packets,
}

impl Default for Outbox {
    fn default() -> Outbox {
        Outbox::new()
    }
}

impl Outbox {
    /// Empty scratch space.
    pub fn new() -> Outbox {
        Outbox {
            pcm: vec![0; MAX_SAMPLES].into_boxed_slice(),
            resampled: vec![0; MAX_SAMPLES + 1].into_boxed_slice(),
            packets: Packets {
                bufs: vec![[0; MAX_PACKET]; MAX_OUT_PACKETS].into_boxed_slice(),
                lens: [0; MAX_OUT_PACKETS],
                count: 0,
            },
        }
    }
}

/// The outgoing stream's header fields.
#[derive(Debug, Clone, Copy)]
struct Stream {
    ssrc: u32,
    seq: u16,
    /// The next frame's timestamp.
    ts: u32,
    marker: bool,
}

impl Stream {
    /// Writes a header for payload type `pt` at `ts` into `p`; the next sequence number.
    fn header(&mut self, p: &mut [u8], pt: u8, ts: u32, marker: bool) {
        p[0] = 0x80;
        p[1] = pt | if marker { 0x80 } else { 0 };
        p[2..4].copy_from_slice(&self.seq.to_be_bytes());
        p[4..8].copy_from_slice(&ts.to_be_bytes());
        p[8..12].copy_from_slice(&self.ssrc.to_be_bytes());
        self.seq = self.seq.wrapping_add(1);
    }
}

/// One side of a direction: a codec, its payload type, its telephone-event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Side {
    /// The codec.
    pub kind: Kind,
    /// Its payload type.
    pub pt: u8,
    /// Packetization in ms (0: the codec's usual).
    pub ptime: u32,
    /// telephone-event's payload type and clock rate, if the leg has it.
    pub dtmf: Option<(u8, u32)>,
    /// What the leg's peer asked of an Opus encoder in its fmtp.
    pub fmtp: Fmtp,
}

/// A peer's Opus fmtp, as the signalling carried it ([`ferroswitch_shared::msg::LegSpec`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Fmtp {
    /// [`ferroswitch_shared::msg::fmtp_flags`].
    pub flags: u8,
    /// `maxplaybackrate` in kHz (0: any).
    pub max_playback_khz: u8,
    /// `maxaveragebitrate` in kbit/s (0: none).
    pub max_bitrate_kbps: u16,
}

impl Fmtp {
    /// The encoder's settings toward this peer: the configured ones, with what the peer
    /// asked for switched on (FEC, DTX, CBR) and its limits (bitrate, audio bandwidth).
    pub fn apply(&self, configured: &opus::Params) -> opus::Params {
        use ferroswitch_shared::msg::fmtp_flags as f;
        let mut p = *configured;
        p.fec |= self.flags & f::FEC != 0;
        p.dtx |= self.flags & f::DTX != 0;
        p.cbr |= self.flags & f::CBR != 0;
        if self.max_bitrate_kbps > 0 {
            let cap = u32::from(self.max_bitrate_kbps) * 1000;
            p.bitrate = if p.bitrate == 0 { cap } else { p.bitrate.min(cap) };
        }
        if self.max_playback_khz > 0 {
            p.max_playback_rate = u32::from(self.max_playback_khz) * 1000;
        }
        p
    }
}

/// What became of one input packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Decoded (with `concealed` lost samples filled in); its frames are in the outbox.
    Audio {
        /// Samples concealed before it, at the decoder's rate.
        concealed: usize,
    },
    /// A telephone-event passed on (in the outbox) or dropped (no event on the other side).
    Event,
    /// Older than the last packet, or a duplicate: dropped.
    Late,
    /// After a gap: kept until the next packet says whether the gap was a loss or a
    /// reordering (nothing sent yet).
    Held,
    /// A payload type the sender's leg does not speak here (comfort noise...): dropped.
    Unknown,
    /// The payload did not decode.
    Bad(CodecError),
}

/// One direction's state.
pub struct Direction {
    from: Side,
    to: Side,
    dec: Box<dyn Decoder>,
    enc: Box<dyn Encoder>,
    resampler: Option<Resampler>,
    /// Samples waiting for a full output frame, at the encoder's rate.
    fifo: Box<[i16]>,
    fill: usize,
    /// Output frame in samples (at the encoder's rate) and in the receiver's clock.
    frame: usize,
    step: u32,
    out: Stream,
    /// The last input packet's sequence number, and the timestamp expected next.
    last_seq: Option<u16>,
    next_ts: u32,
    /// The last telephone-event's input timestamp and the output one it was given.
    event: Option<(u32, u32)>,
    /// An event being played in-band toward a receiver without telephone-event.
    tone: Option<Tone>,
    /// Digits heard in a sender's audio (it has no telephone-event; the receiver has).
    detector: Option<Detector>,
    /// A detected digit being sent as events.
    sending: Option<Sending>,
    /// The last digit detected and its duration in ms, until taken.
    detected: Option<(u8, u32)>,
    /// DTMF between RFC 4733 and in-band (off: events toward a leg without
    /// telephone-event are dropped, nothing is detected).
    interworking: bool,
    /// A packet that came after a gap, waiting one arrival (the reorder buffer).
    held: Option<Held>,
    held_buf: Box<[u8]>,
}

/// The waiting packet's header fields (its payload is in `held_buf`).
#[derive(Debug, Clone, Copy)]
struct Held {
    seq: u16,
    ts: u32,
    len: usize,
}

/// An RFC 4733 event being played as tones.
struct Tone {
    /// The event's timestamp (its identity) and whether its end was seen.
    ts: u32,
    ended: bool,
    generator: ToneGenerator,
    /// Samples played so far, at the encoder's rate.
    played: usize,
}

/// A detected digit on its way out as RFC 4733 packets.
#[derive(Debug, Clone, Copy)]
struct Sending {
    event: u8,
    /// The event's timestamp and its duration so far, in the receiver's event clock.
    ts: u32,
    duration: u32,
    /// Set once the digit ended: its final duration.
    end: Option<u32>,
    first: bool,
}

/// The rate an Opus side runs at to meet `other` Hz without resampling (libopus's rates).
fn opus_rate(other: u32) -> u32 {
    [8000, 12000, 16000, 24000, 48000].into_iter().find(|&r| r >= other).unwrap_or(48000)
}

/// Scales a count of `from`-clock units to the `to` clock.
fn scale(v: u64, from: u32, to: u32) -> u64 {
    v * u64::from(to) / u64::from(from.max(1))
}

impl Direction {
    /// A direction from `from`'s codec to `to`'s, the outgoing stream seeded by `seed`
    /// (its SSRC, first sequence number and timestamp).
    pub fn new(from: Side, to: Side, params: &opus::Params, seed: u64) -> Result<Direction, CodecError> {
        let dec_rate =
            if from.kind == Kind::Opus { opus_rate(to.kind.natural_rate()) } else { from.kind.natural_rate() };
        let enc_rate = if to.kind == Kind::Opus { opus_rate(from.kind.natural_rate()) } else { to.kind.natural_rate() };
        let dec = from.kind.decoder(dec_rate)?;
        let enc = to.kind.encoder(enc_rate, &to.fmtp.apply(params))?;
        let resampler = (dec_rate != enc_rate).then(|| Resampler::new(dec_rate, enc_rate, MAX_SAMPLES));
        let ptime = to.kind.ptime(to.ptime);
        let frame = (enc_rate * ptime / 1000) as usize;
        let step = to.kind.rtp_clock() * ptime / 1000;
        let fifo_len = frame + (enc_rate as usize * MAX_FRAME_MS / 1000) + 1;
        let detector = (from.dtmf.is_none() && to.dtmf.is_some()).then(|| Detector::new(dec_rate));
        Ok(Direction {
            from,
            to,
            dec,
            enc,
            resampler,
            fifo: vec![0; fifo_len].into_boxed_slice(),
            fill: 0,
            frame,
            step,
            out: Stream { ssrc: seed as u32, seq: (seed >> 32) as u16, ts: (seed >> 16) as u32, marker: true },
            last_seq: None,
            next_ts: 0,
            event: None,
            tone: None,
            detector,
            sending: None,
            detected: None,
            interworking: true,
            held: None,
            held_buf: vec![0; MAX_PACKET].into_boxed_slice(),
        })
    }

    /// The sides it was made for (a re-INVITE that keeps them keeps the direction).
    pub fn sides(&self) -> (Side, Side) {
        (self.from, self.to)
    }

    /// The outgoing stream's SSRC.
    pub fn ssrc(&self) -> u32 {
        self.out.ssrc
    }

    /// Turns DTMF interworking (RFC 4733 events played as tones, in-band digits detected)
    /// on or off.
    pub fn set_interworking(&mut self, on: bool) {
        self.interworking = on;
        if !on {
            self.tone = None;
            self.sending = None;
        }
    }

    /// A digit detected in the sender's audio that has ended since last asked: its event
    /// code and duration in ms.
    pub fn take_detected(&mut self) -> Option<(u8, u32)> {
        self.detected.take()
    }

    /// One RTP packet from the sender: the packets for the receiver go to `out`.
    pub fn on_packet(&mut self, rtp: &Rtp, out: &mut Outbox) -> Outcome {
        out.packets.count = 0;
        let (pt, seq, ts) = (rtp.payload_type(), rtp.seq(), rtp.timestamp());
        if let Some(last) = self.last_seq {
            let d = seq.wrapping_sub(last) as i16;
            if d <= 0 || self.held.as_ref().is_some_and(|h| h.seq == seq) {
                return Outcome::Late;
            }
        }
        if self.from.dtmf.is_some_and(|(p, _)| p == pt) {
            self.release(out);
            self.last_seq = Some(seq);
            if self.to.dtmf.is_some() {
                self.pass_event(rtp, &mut out.packets);
            } else if self.interworking {
                self.play_event(rtp, out);
            }
            return Outcome::Event;
        }
        if pt != self.from.pt {
            return Outcome::Unknown;
        }
        let Some(held) = self.held.as_ref() else {
            // A packet after a gap waits for the next arrival: the missing one may be
            // only late (reordered), and is then decoded in its place.
            let gap = self.last_seq.map(|l| seq.wrapping_sub(l).wrapping_sub(1));
            if gap.is_some_and(|g| (1..=MAX_REORDER).contains(&g)) && self.hold(seq, ts, rtp.payload()) {
                return Outcome::Held;
            }
            return self.audio(seq, ts, rtp.payload(), out);
        };
        if (seq.wrapping_sub(held.seq) as i16) < 0 {
            // A missing packet, late: in its place, then the one that waited.
            let outcome = self.audio(seq, ts, rtp.payload(), out);
            if self.held.as_ref().is_some_and(|h| h.seq.wrapping_sub(seq) == 1) {
                self.release(out);
            }
            outcome
        } else {
            // The missing one did not come: the waiting packet (its gap concealed), then this.
            self.release(out);
            self.audio(seq, ts, rtp.payload(), out)
        }
    }

    /// Keeps a packet that came after a gap; false if it does not fit.
    fn hold(&mut self, seq: u16, ts: u32, payload: &[u8]) -> bool {
        if payload.len() > self.held_buf.len() {
            return false;
        }
        self.held_buf[..payload.len()].copy_from_slice(payload);
        self.held = Some(Held { seq, ts, len: payload.len() });
        true
    }

    /// Decodes the packet that waited, if any.
    fn release(&mut self, out: &mut Outbox) {
        let Some(h) = self.held.take() else { return };
        let payload = std::mem::take(&mut self.held_buf);
        self.audio(h.seq, h.ts, &payload[..h.len], out);
        self.held_buf = payload;
    }

    /// One audio packet in order: the loss before it concealed, decoded, on to the FIFO.
    fn audio(&mut self, seq: u16, ts: u32, payload: &[u8], out: &mut Outbox) -> Outcome {
        if self.tone.as_ref().is_some_and(|t| !t.ended) {
            // The digit's tones stand for this stretch: the sender's audio of it is dropped.
            self.last_seq = Some(seq);
            return Outcome::Event;
        }
        let concealed = self.catch_up(seq, ts, payload, out);
        self.last_seq = Some(seq);
        let n = match self.dec.decode(payload, &mut out.pcm) {
            Ok(n) => n,
            Err(e) => return Outcome::Bad(e),
        };
        let units = scale(n as u64, self.dec.pcm_rate(), self.from.kind.rtp_clock()) as u32;
        self.next_ts = ts.wrapping_add(units);
        self.listen(n, out);
        self.push(n, out);
        Outcome::Audio { concealed }
    }

    /// Runs `n` decoded samples through the DTMF detector, if this direction has one.
    fn listen(&mut self, n: usize, out: &Outbox) {
        let Some(d) = self.detector.as_mut().filter(|_| self.interworking) else { return };
        let (rate, te_clock) = (self.dec.pcm_rate(), self.to.dtmf.map_or(8000, |(_, c)| c));
        let (next_ts, sending, detected) = (self.out.ts, &mut self.sending, &mut self.detected);
        d.feed(&out.pcm[..n], |seen| match seen {
            Detected::Start(event) => {
                *sending = Some(Sending { event, ts: next_ts, duration: 0, end: None, first: true });
            }
            Detected::End(event, samples) => {
                let units = scale(u64::from(samples), rate, te_clock) as u32;
                if let Some(s) = sending.as_mut().filter(|s| s.event == event) {
                    s.end = Some(units.max(s.duration));
                }
                *detected = Some((event, samples * 1000 / rate));
            }
        });
    }

    /// An RFC 4733 event toward a receiver without telephone-event: its tones, up to the
    /// duration the event has reached, go into the audio.
    fn play_event(&mut self, rtp: &Rtp, out: &mut Outbox) {
        let Some(ev) = crate::relay::rtp::TelephoneEvent::parse(rtp.payload()) else { return };
        let rate = self.enc.pcm_rate();
        let ts = rtp.timestamp();
        if self.tone.as_ref().is_none_or(|t| t.ts != ts) {
            let Some(generator) = ToneGenerator::new(ev.event, ev.volume, rate) else { return };
            self.tone = Some(Tone { ts, ended: false, generator, played: 0 });
        }
        let te_clock = self.from.dtmf.map_or(8000, |(_, c)| c);
        let Some(t) = self.tone.as_mut().filter(|t| !t.ended) else { return };
        let target = scale(u64::from(ev.duration), te_clock, rate) as usize;
        let n = target.saturating_sub(t.played).min(out.pcm.len());
        t.generator.fill(&mut out.pcm[..n]);
        t.played += n;
        t.ended = ev.end;
        // The sender's clock moves over the digit as if its audio had carried it.
        let units = scale(n as u64, rate, self.from.kind.rtp_clock()) as u32;
        self.next_ts = self.next_ts.wrapping_add(units);
        self.push_pcm(n, out);
    }

    /// Before the packet `seq`/`ts`: conceals a loss, or moves the output's timestamps
    /// over the sender's silence; the samples concealed.
    fn catch_up(&mut self, seq: u16, ts: u32, payload: &[u8], out: &mut Outbox) -> usize {
        let Some(last) = self.last_seq else {
            return 0;
        };
        let clock = self.from.kind.rtp_clock();
        let gap = ts.wrapping_sub(self.next_ts) as i32;
        let lost = seq.wrapping_sub(last).wrapping_sub(1);
        if gap == 0 {
            return 0;
        }
        let max = (clock * MAX_CONCEAL_MS / 1000) as i32;
        if lost == 0 || gap < 0 || gap > max {
            // Silence, or a stream that restarted: the output jumps as far, marked.
            let jump = scale(gap.max(0) as u64, clock, self.to.kind.rtp_clock()) as u32;
            self.out.ts = self.out.ts.wrapping_add(jump);
            self.out.marker = true;
            return 0;
        }
        let total = scale(gap as u64, clock, self.dec.pcm_rate()) as usize;
        // The frame just before this packet may be in its FEC; the rest is concealed.
        let fec = (total / usize::from(lost)).min(out.pcm.len());
        let mut left = total - fec;
        while left > 0 {
            let n = left.min(out.pcm.len());
            self.dec.conceal(&mut out.pcm[..n]);
            self.push(n, out);
            left -= n;
        }
        if fec > 0 {
            self.dec.recover(payload, &mut out.pcm[..fec]);
            self.push(fec, out);
        }
        total
    }

    /// `n` decoded samples in `out.pcm`: resampled into the FIFO; whole frames encoded.
    fn push(&mut self, n: usize, out: &mut Outbox) {
        let (src, len) = match &mut self.resampler {
            Some(r) => {
                let m = r.process(&out.pcm[..n], &mut out.resampled);
                (&out.resampled[..], m)
            }
            None => (&out.pcm[..], n),
        };
        self.fill_fifo(src, len, &mut out.packets);
    }

    /// `n` samples already at the encoder's rate in `out.pcm` (generated tones) into the FIFO.
    fn push_pcm(&mut self, n: usize, out: &mut Outbox) {
        self.fill_fifo(&out.pcm, n, &mut out.packets);
    }

    /// `src[..len]` into the FIFO, whole frames encoded.
    fn fill_fifo(&mut self, src: &[i16], len: usize, packets: &mut Packets) {
        let mut at = 0;
        while at < len {
            let take = (len - at).min(self.fifo.len() - self.fill);
            self.fifo[self.fill..self.fill + take].copy_from_slice(&src[at..at + take]);
            self.fill += take;
            at += take;
            while self.fill >= self.frame {
                self.emit(packets);
                self.fifo.copy_within(self.frame..self.fill, 0);
                self.fill -= self.frame;
            }
        }
    }

    /// Encodes the FIFO's first frame into a packet (none if the outbox is full or the
    /// encoder has nothing to send).
    fn emit(&mut self, out: &mut Packets) {
        let ts = self.out.ts;
        self.out.ts = ts.wrapping_add(self.step);
        if self.sending.is_some() {
            return self.emit_event(out);
        }
        let Some(p) = out.next() else { return };
        let n = match self.enc.encode(&self.fifo[..self.frame], &mut p[12..]) {
            Ok(n) if n > 0 => n,
            // Nothing this frame (DTX), or an encoder that refused: the next one is marked.
            _ => {
                self.out.marker = true;
                return;
            }
        };
        let marker = std::mem::take(&mut self.out.marker);
        self.out.header(p, self.to.pt, ts, marker);
        out.commit(12 + n);
    }

    /// A detected digit's event packet in place of an audio frame: its duration grows by
    /// the frame; once the digit ended, the final packet three times.
    fn emit_event(&mut self, out: &mut Packets) {
        let Some((pt, clock)) = self.to.dtmf else { return };
        let Some(s) = self.sending.as_mut() else { return };
        let frame_units = scale(self.frame as u64, self.enc.pcm_rate(), clock) as u32;
        s.duration = s.duration.saturating_add(frame_units).min(0xffff);
        let (event, ts, marker) = (s.event, s.ts, std::mem::take(&mut s.first));
        let (duration, copies) = match s.end {
            Some(d) => (d.min(0xffff), 3),
            None => (s.duration, 1),
        };
        let end = copies == 3;
        if end {
            self.sending = None;
            // The audio after the digit starts a new talk spurt.
            self.out.marker = true;
        }
        for _ in 0..copies {
            let Some(p) = out.next() else { return };
            self.out.header(p, pt, ts, marker);
            p[12] = event;
            p[13] = if end { 0x80 } else { 0 } | 10;
            p[14..16].copy_from_slice(&(duration as u16).to_be_bytes());
            out.commit(16);
        }
    }

    /// An RFC 4733 event: on to the receiver with its payload type and clock, at the
    /// output time the event started.
    fn pass_event(&mut self, rtp: &Rtp, out: &mut Packets) {
        let Some((to_pt, to_clock)) = self.to.dtmf else { return };
        let from_clock = self.from.dtmf.map_or(8000, |(_, c)| c);
        let payload = rtp.payload();
        if payload.len() < 4 || payload.len() + 12 > MAX_PACKET {
            return;
        }
        let ts = match self.event {
            Some((in_ts, out_ts)) if in_ts == rtp.timestamp() => out_ts,
            _ => {
                let t = self.out.ts;
                self.event = Some((rtp.timestamp(), t));
                t
            }
        };
        let Some(p) = out.next() else { return };
        self.out.header(p, to_pt, ts, rtp.marker());
        p[12..12 + payload.len()].copy_from_slice(payload);
        if from_clock != to_clock {
            let d = u16::from_be_bytes([payload[2], payload[3]]);
            let d = scale(u64::from(d), from_clock, to_clock).min(0xffff) as u16;
            p[14..16].copy_from_slice(&d.to_be_bytes());
        }
        out.commit(12 + payload.len());
    }
}
