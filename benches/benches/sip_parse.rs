//! SIP message parsing and response building.
//!
//! `cargo bench -p ferroswitch-benches --bench sip_parse`
//! Figures and the machine they came from: docs/performance.md.

use bytes::Bytes;
use control_plane::sip::message::write::response_to;
use control_plane::sip::message::{Framing, Message};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::hint::black_box;

#[path = "messages.rs"]
mod messages;
use messages::{INVITE, OK_200};

fn parse(c: &mut Criterion) {
    let invite = Bytes::from_static(INVITE);
    let ok = Bytes::from_static(OK_200);
    assert_eq!(INVITE.len() - INVITE.windows(4).position(|w| w == b"\r\n\r\n").unwrap() - 4, 238);
    Message::parse(invite.clone(), Framing::Datagram).expect("the benchmark INVITE parses");
    Message::parse(ok.clone(), Framing::Datagram).expect("the benchmark 200 parses");

    let mut g = c.benchmark_group("sip_parse");
    g.throughput(Throughput::Elements(1));
    g.bench_function("invite_with_sdp", |b| {
        b.iter(|| Message::parse(black_box(invite.clone()), Framing::Datagram).unwrap())
    });
    g.bench_function("ok_200", |b| b.iter(|| Message::parse(black_box(ok.clone()), Framing::Datagram).unwrap()));
    g.finish();

    let req = Message::parse(invite, Framing::Datagram).unwrap();
    let source = "192.0.2.20:5062".parse().unwrap();
    let mut buf = Vec::with_capacity(1024);
    let mut g = c.benchmark_group("sip_write");
    g.throughput(Throughput::Elements(1));
    g.bench_function("response_to_invite_reused_buffer", |b| {
        b.iter(|| {
            let mut w = response_to(black_box(&req), 180, "Ringing", Some(b"a6c85cf"), Some(source), &mut buf);
            w.header("Server", "ferroswitch");
            w.finish(b"");
            black_box(buf.len())
        })
    });
    g.finish();
}

criterion_group!(benches, parse);
criterion_main!(benches);
