//! Transcoded calls as load (issue 12): each call is a PCMU caller and an Opus callee
//! (48 kHz, as WebRTC and mobile clients send), 20 ms packets both ways, through a relay
//! that transcodes between them: ferroswitch's media plane (sessions made with the
//! TRANSCODE flag over the rings) or rtpengine (NG offer with `codec: {mask: [PCMU],
//! transcode: [opus]}`, answered with Opus).
//!
//! The payloads are a voice-like signal (a 150 Hz voice with harmonics; silence would
//! make the encoders cheaper than speech does), 50 pre-encoded frames of each codec
//! looped. What comes back is counted per direction and checked for the receiving side's
//! payload type: a transcoded stream carries new payloads, so the packet-level checks of
//! [`crate::packet`] do not apply; loss is sent minus received.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use control_plane::ng::bencode::Value;
use ferroswitch_media_plane::codec::{opus, Kind};
use ferroswitch_shared::msg::{codec, session_flags, PayloadMap, SessionSpec};

use crate::load::{SessionPorts, ToolSockets};
use crate::ng::{reply_addr, sdp_for, NgClient};
use crate::target::{call_id, ferroswitch_setup, leg_toward, Setup, Target};

/// The Opus payload type the tool's callee uses.
pub const OPUS_PT: u8 = 96;

/// 50 frames (one second) of the voice-like signal in `kind`, at its natural rate.
pub fn payloads(kind: Kind) -> Vec<Vec<u8>> {
    let rate = kind.natural_rate();
    let frame = rate as usize / 50;
    let mut enc = kind.encoder(rate, &opus::Params::default()).expect("the codec is built in");
    let tau = 2.0 * std::f64::consts::PI;
    (0..50)
        .map(|f| {
            let pcm: Vec<i16> = (0..frame)
                .map(|i| {
                    let t = (f * frame + i) as f64 / f64::from(rate);
                    let v = (tau * 150.0 * t).sin() * 4000.0
                        + (tau * 450.0 * t).sin() * 2000.0
                        + (tau * 1300.0 * t).sin() * 800.0;
                    v as i16
                })
                .collect();
            let mut p = vec![0u8; 1500];
            let n = enc.encode(&pcm, &mut p).expect("a 20 ms frame");
            p.truncate(n);
            p
        })
        .collect()
}

/// Sets `n` transcoded calls up on `target` between the tool's sockets.
pub fn setup(target: &Target, n: usize, socks: &ToolSockets) -> Result<Setup, String> {
    match target {
        Target::Ferroswitch(path) => ferroswitch_setup(path.clone(), n, socks, |a, b| {
            let mut callee = leg_toward(b);
            callee.codecs[0] = PayloadMap { clock_rate: 48000, pt: OPUS_PT, codec: codec::OPUS, channels: 2, _pad: 0 };
            SessionSpec { legs: [leg_toward(a), callee], flags: session_flags::TRANSCODE, ..SessionSpec::default() }
        }),
        Target::Ng(addr) => ng_setup(*addr, n, socks),
        Target::Forwarder(_) => Err("the bare forwarder does not transcode".into()),
    }
}

fn ng_setup(addr: SocketAddr, n: usize, socks: &ToolSockets) -> Result<Setup, String> {
    let mut client = NgClient::new(addr, Duration::from_secs(2)).map_err(|e| format!("ng socket: {e}"))?;
    let tag = format!("tc-{}-{}", std::process::id(), crate::net::mono_ns() % 1_000_000_007);
    let mut sessions = Vec::with_capacity(n);
    for i in 0..n {
        let id = call_id(&tag, i);
        let offer = Value::dict([
            ("command", Value::str("offer")),
            ("call-id", Value::str(&id)),
            ("from-tag", Value::str("caller")),
            ("sdp", Value::str(&sdp_for(socks.addr(i, 0), 1))),
            (
                "codec",
                Value::dict([
                    ("mask", Value::List(vec![Value::str("PCMU")])),
                    ("transcode", Value::List(vec![Value::str("opus")])),
                ]),
            ),
        ]);
        let b = reply_addr(&client.call(&offer)?)?;
        let callee = socks.addr(i, 1);
        let sdp = format!(
            "v=0\r\no=- 1 1 IN IP4 {ip}\r\ns=rtpload\r\nc=IN IP4 {ip}\r\nt=0 0\r\nm=audio {port} RTP/AVP {OPUS_PT}\r\n\
             a=rtpmap:{OPUS_PT} opus/48000/2\r\na=ptime:20\r\na=sendrecv\r\n",
            ip = callee.ip(),
            port = callee.port()
        );
        let answer = Value::dict([
            ("command", Value::str("answer")),
            ("call-id", Value::str(&id)),
            ("from-tag", Value::str("caller")),
            ("to-tag", Value::str("callee")),
            ("sdp", Value::str(&sdp)),
        ]);
        let a = reply_addr(&client.call(&answer)?)?;
        sessions.push(SessionPorts { a, b });
    }
    Ok(Setup::ng(sessions, client, tag))
}

/// What a run counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Packets sent by the callers (PCMU) and the callees (Opus).
    pub sent: [u64; 2],
    /// Packets the callees received (should be Opus) and the callers (PCMU).
    pub received: [u64; 2],
    /// Packets received with another payload type than their side's (not transcoded).
    pub wrong_pt: u64,
}

impl Counts {
    /// Lost (or not transcoded), as a percentage of what was sent, over both directions.
    pub fn loss_pct(&self) -> f64 {
        let sent = self.sent[0] + self.sent[1];
        let got = self.received[0] + self.received[1];
        100.0 * sent.saturating_sub(got) as f64 / sent.max(1) as f64
    }
}

/// Sends 20 ms packets both ways on every call for `secs`, then waits `drain` for the
/// last ones; counts.
pub fn run(socks: &ToolSockets, sessions: &[SessionPorts], secs: f64, drain: Duration) -> Counts {
    let (pcmu, op) = (payloads(Kind::Pcmu), payloads(Kind::Opus));
    let mut c = Counts::default();
    let mut buf = [0u8; 2048];
    let mut packet = Vec::with_capacity(1500);
    let start = Instant::now();
    let frames = (secs * 50.0) as u64;
    let set_nb = |on: bool| {
        for p in 0..socks.pairs() {
            for leg in 0..2 {
                let _ = socks.socket(p, leg).set_nonblocking(on);
            }
        }
    };
    set_nb(true);
    let mut drain_all = |c: &mut Counts| {
        for p in 0..socks.pairs() {
            // The callee's socket (leg 1) gets the callers' audio as Opus, and back.
            for (leg, want) in [(1usize, OPUS_PT), (0usize, 0u8)] {
                while let Ok(n) = socks.socket(p, leg).recv(&mut buf) {
                    if n >= 12 {
                        c.received[leg ^ 1] += 1;
                        if buf[1] & 0x7f != want {
                            c.wrong_pt += 1;
                        }
                    }
                }
            }
        }
    };
    for f in 0..frames {
        let due = start + Duration::from_millis(20 * f);
        while Instant::now() < due {
            drain_all(&mut c);
            std::thread::sleep(Duration::from_micros(200));
        }
        let (seq, idx) = (f as u16, (f % 50) as usize);
        for (i, s) in sessions.iter().enumerate() {
            let ssrc = (i as u32).wrapping_mul(2_654_435_761) | 1;
            for (leg, to, pt, payload, step) in
                [(0usize, s.a, 0u8, &pcmu[idx], 160u32), (1usize, s.b, OPUS_PT, &op[idx], 960u32)]
            {
                packet.clear();
                packet.extend_from_slice(&[0x80, pt]);
                packet.extend_from_slice(&seq.to_be_bytes());
                packet.extend_from_slice(&(f as u32).wrapping_mul(step).to_be_bytes());
                packet.extend_from_slice(&(ssrc ^ leg as u32).to_be_bytes());
                packet.extend_from_slice(payload);
                if socks.socket(i % socks.pairs(), leg).send_to(&packet, to).is_ok() {
                    c.sent[leg] += 1;
                }
            }
        }
        drain_all(&mut c);
    }
    let end = Instant::now() + drain;
    while Instant::now() < end {
        drain_all(&mut c);
        std::thread::sleep(Duration::from_millis(1));
    }
    set_nb(false);
    c
}
