//! The media plane's transcoding, per 20 ms frame: one RTP packet in, the other leg's
//! packet out, for each codec pair; beside it the raw libopus calls the PCMU <-> Opus
//! pair makes (encode 20 ms at 8 kHz, decode 20 ms at 8 kHz, complexity 5), so our
//! overhead over the library is their difference.
//!
//! Also what setting a transcoded session up costs its worker, with the codecs made there
//! or ordered from the codec factory's thread.
//!
//!     taskset -c 1 cargo bench -p ferroswitch-benches --bench transcode

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use ferroswitch_media_plane::codec::{opus, Kind};
use ferroswitch_media_plane::relay::rtp::Rtp;
use ferroswitch_media_plane::transcode::{Outbox, Transcoder};
use ferroswitch_shared::msg::{codec as id, LegSpec, PayloadMap};
use std::hint::black_box;

fn leg(codec: u8, pt: u8, clock: u32) -> LegSpec {
    let mut l = LegSpec { codec_count: 1, ptime_ms: 20, ..LegSpec::default() };
    l.codecs[0] = PayloadMap { clock_rate: clock, pt, codec, channels: 1, _pad: 0 };
    l
}

fn spec(kind: Kind) -> LegSpec {
    match kind {
        Kind::Pcmu => leg(id::PCMU, 0, 8000),
        Kind::Pcma => leg(id::PCMA, 8, 8000),
        Kind::G722 => leg(id::G722, 9, 8000),
        Kind::Opus => leg(id::OPUS, 111, 48000),
        Kind::G729 => leg(id::G729, 18, 8000),
        Kind::L16(r) => leg(id::L16, 96, r),
    }
}

/// One second of a voice-like signal from `kind`'s peer: 50 payloads of 20 ms.
fn payloads(kind: Kind) -> Vec<Vec<u8>> {
    let rate = kind.natural_rate();
    let frame = rate as usize / 50;
    let mut enc = kind.encoder(rate, &opus::Params::default()).unwrap();
    let tau = 2.0 * std::f64::consts::PI;
    (0..50)
        .map(|f| {
            let pcm: Vec<i16> = (0..frame)
                .map(|i| {
                    let t = (f * frame + i) as f64 / f64::from(rate);
                    ((tau * 150.0 * t).sin() * 4000.0
                        + (tau * 450.0 * t).sin() * 2000.0
                        + (tau * 1300.0 * t).sin() * 800.0) as i16
                })
                .collect();
            let mut p = vec![0u8; 1500];
            let n = enc.encode(&pcm, &mut p).unwrap();
            p.truncate(n);
            p
        })
        .collect()
}

fn packet(pt: u8, seq: u16, ts: u32, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0x80, pt, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4];
    p[2..4].copy_from_slice(&seq.to_be_bytes());
    p[4..8].copy_from_slice(&ts.to_be_bytes());
    p.extend_from_slice(payload);
    p
}

fn pairs(c: &mut Criterion) {
    let mut g = c.benchmark_group("transcode_20ms");
    let kinds = [
        (Kind::Pcmu, Kind::Opus),
        (Kind::Opus, Kind::Pcmu),
        (Kind::Pcmu, Kind::Pcma),
        (Kind::Pcma, Kind::G722),
        (Kind::G722, Kind::Pcma),
        (Kind::Pcmu, Kind::G729),
        (Kind::G729, Kind::Pcmu),
        (Kind::L16(16000), Kind::Pcma),
        (Kind::Opus, Kind::G722),
    ];
    for (from, to) in kinds {
        let mut t = Transcoder::new(&[spec(from), spec(to)], &opus::Params::default(), 1).unwrap();
        let mut out = Outbox::new();
        let pt = spec(from).codecs[0].pt;
        let step = from.rtp_clock() / 50;
        let packets: Vec<Vec<u8>> =
            payloads(from).iter().enumerate().map(|(i, p)| packet(pt, i as u16, i as u32 * step, p)).collect();
        let mut n = 0u32;
        g.bench_function(format!("{from:?}->{to:?}"), |b| {
            b.iter(|| {
                // The sequence goes on across the second's payloads, so nothing is late.
                let mut p = packets[(n % 50) as usize].clone();
                p[2..4].copy_from_slice(&(n as u16).to_be_bytes());
                p[4..8].copy_from_slice(&n.wrapping_mul(step).to_be_bytes());
                n += 1;
                black_box(t.on_rtp(0, &Rtp::parse(&p).unwrap(), &mut out));
                black_box(out.packets.len())
            })
        });
    }
    g.finish();
}

/// libopus alone: what PCMU <-> Opus costs at the least.
fn libopus(c: &mut Criterion) {
    use opusic_sys as sys;
    let mut g = c.benchmark_group("libopus_raw_20ms");
    let mut err = 0;
    // SAFETY: valid arguments; checked below.
    let enc = unsafe { sys::opus_encoder_create(8000, 1, sys::OPUS_APPLICATION_VOIP, &mut err) };
    assert!(!enc.is_null() && err == 0);
    // SAFETY: the encoder is valid; each request takes one int.
    unsafe {
        sys::opus_encoder_ctl(enc, sys::OPUS_SET_COMPLEXITY_REQUEST, 5i32);
        sys::opus_encoder_ctl(enc, sys::OPUS_SET_INBAND_FEC_REQUEST, 1i32);
        sys::opus_encoder_ctl(enc, sys::OPUS_SET_PACKET_LOSS_PERC_REQUEST, 5i32);
    }
    // SAFETY: as above.
    let dec = unsafe { sys::opus_decoder_create(8000, 1, &mut err) };
    assert!(!dec.is_null() && err == 0);
    let pcm: Vec<i16> = (0..160).map(|i| ((i as f64 * 0.12).sin() * 4000.0) as i16).collect();
    let mut buf = [0u8; 1500];
    g.bench_function("encode 8 kHz", |b| {
        // SAFETY: pcm holds 160 samples, buf 1500 bytes.
        b.iter(|| unsafe { sys::opus_encode(enc, pcm.as_ptr(), 160, buf.as_mut_ptr(), 1500) })
    });
    let at48 = payloads(Kind::Opus);
    let mut out = [0i16; 960];
    let mut i = 0;
    g.bench_function("decode 8 kHz", |b| {
        b.iter(|| {
            let p = &at48[i % 50];
            i += 1;
            // SAFETY: p is len bytes, out 960 samples (160 asked).
            unsafe { sys::opus_decode(dec, p.as_ptr(), p.len() as i32, out.as_mut_ptr(), 160, 0) }
        })
    });
    g.bench_function("create+destroy encoder and decoder", |b| {
        b.iter_batched(
            || (),
            |_| {
                // SAFETY: created, then destroyed once.
                unsafe {
                    let e = sys::opus_encoder_create(8000, 1, sys::OPUS_APPLICATION_VOIP, &mut err);
                    let d = sys::opus_decoder_create(48000, 1, &mut err);
                    sys::opus_encoder_destroy(e);
                    sys::opus_decoder_destroy(d);
                }
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

/// What a transcoded session's set-up costs its worker: the codecs made there, or the
/// transcoder ordered from the factory thread (which makes it on another core).
fn setup(c: &mut Criterion) {
    use ferroswitch_media_plane::relay::session::{Policy, Relay};
    use ferroswitch_media_plane::transcode::factory::{Factory, Order};
    use ferroswitch_shared::doorbell::Doorbell;
    use ferroswitch_shared::msg::session_flags::TRANSCODE;
    let mut g = c.benchmark_group("transcoded_session_setup");
    let legs = [spec(Kind::Pcmu), spec(Kind::Opus)];
    g.bench_function("codecs made on the worker", |b| {
        b.iter_batched(
            || Relay::new(legs, Policy::default()),
            |mut r| {
                r.set_session_flags(TRANSCODE, 1).unwrap();
                r
            },
            BatchSize::SmallInput,
        )
    });
    let factory = Factory::start().unwrap();
    let client = factory.client(Doorbell::new().unwrap());
    let mut ticket = 0u64;
    g.bench_function("ordered from the factory", |b| {
        b.iter_batched(
            || {
                while let Some(made) = client.take() {
                    if let Ok(t) = made.result {
                        client.destroy(t);
                    }
                }
                Relay::new(legs, Policy::default())
            },
            |mut r| {
                let o = r.apply_flags(TRANSCODE).unwrap();
                ticket += 1;
                if o.order && client.order(Order { ticket, legs: r.specs(), params: opus::Params::default(), seed: 1 })
                {
                    r.set_pending(Some(ticket));
                }
                r
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

criterion_group!(benches, pairs, libopus, setup);
criterion_main!(benches);
