//! Parses the benchmark INVITE and/or 200 OK in a loop: a fixed workload for
//! `valgrind --tool=callgrind` instruction counts (deterministic, unlike timings).
//! `cargo build --release -p ferroswitch-benches --example parse_loop`
//! `valgrind --tool=callgrind target/release/examples/parse_loop 10000 [invite|ok|both]`

use bytes::Bytes;
use control_plane::sip::message::{Framing, Message};

#[path = "../benches/messages.rs"]
mod messages;

fn main() {
    let n: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(10_000);
    let which = std::env::args().nth(2).unwrap_or_else(|| "both".into());
    let mut set = Vec::new();
    if which != "ok" {
        set.push(Bytes::from_static(messages::INVITE));
    }
    if which != "invite" {
        set.push(Bytes::from_static(messages::OK_200));
    }
    let mut headers = 0;
    for _ in 0..n {
        for m in &set {
            headers += Message::parse(m.clone(), Framing::Datagram).expect("parses").headers().len();
        }
    }
    println!("{n} x {} messages ({which}), {headers} headers", set.len());
}
