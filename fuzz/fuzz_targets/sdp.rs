//! Any bytes as a session description: parsing never panics, and whatever parses writes
//! back to text that parses to the same description (with every typed reader working).
#![no_main]

use control_plane::sdp::{Direction, Sdp};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = Sdp::parse(data) {
        for (i, m) in s.media.iter().enumerate() {
            let _ = (m.rtpmaps(), m.ptime(), m.maxptime(), m.rtcp_port(), m.rtcp_mux(), s.connection_for(i));
            let _ = m.direction(Direction::SendRecv);
            if let Some(f) = m.formats.first().and_then(|f| f.parse::<u8>().ok()) {
                let _ = m.fmtp(f);
            }
        }
        let again = Sdp::parse(s.write().as_bytes()).expect("a written description re-parses");
        assert_eq!(again, s);
    }
});
