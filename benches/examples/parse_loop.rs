//! Parses the benchmark INVITE and 200 OK in a loop: a fixed workload for
//! `valgrind --tool=callgrind` instruction counts (deterministic, unlike timings).
//! `cargo build --release -p ferroswitch-benches --example parse_loop`
//! `valgrind --tool=callgrind target/release/examples/parse_loop 10000`

use bytes::Bytes;
use control_plane::sip::message::{Framing, Message};

#[path = "../benches/messages.rs"]
mod messages;

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(10_000);
    let (invite, ok) = (
        Bytes::from_static(messages::INVITE),
        Bytes::from_static(messages::OK_200),
    );
    let mut headers = 0;
    for _ in 0..n {
        headers += Message::parse(invite.clone(), Framing::Datagram)
            .expect("parses")
            .headers()
            .len();
        headers += Message::parse(ok.clone(), Framing::Datagram)
            .expect("parses")
            .headers()
            .len();
    }
    println!("{n} x 2 messages, {headers} headers");
}
