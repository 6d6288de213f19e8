//! Any bytes as a UDP datagram and as a framed stream message: parsing never panics,
//! every typed view of an accepted message works, serialization re-parses to the same
//! headers, a refused request still gets a well-formed error response, and the
//! transaction layer's header scan never disagrees with the full parse.
#![no_main]

use bytes::Bytes;
use control_plane::sip::message::write::{error_response_raw, write_message};
use control_plane::sip::message::{scan_dialog_ids, Framing, HeaderName, Message};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for framing in [Framing::Datagram, Framing::Stream] {
        match Message::parse(Bytes::copy_from_slice(data), framing) {
            Ok(m) => {
                let _ = (m.method(), m.request_uri(), m.status(), m.call_id(), m.from(), m.to(), m.top_via());
                let _ = (m.vias().count(), m.contacts().count(), m.values(HeaderName::Require).count());
                let mut out = Vec::new();
                write_message(&m, &mut out);
                let again = Message::parse(Bytes::from(out), Framing::Datagram).expect("a written message re-parses");
                assert_eq!(again.headers().len(), m.headers().len());
                assert_eq!(again.body(), m.body());
                if let (Some(ids), Framing::Datagram) = (scan_dialog_ids(data), framing) {
                    assert_eq!((ids.call_id, ids.cseq, ids.to_tag), (m.call_id(), m.cseq(), m.to_tag()));
                }
            }
            Err(e) => {
                // Never panics on bytes the parser refuses either.
                let _ = scan_dialog_ids(data);
                let mut out = Vec::new();
                if error_response_raw(data, e.status(), "Bad Request", b"tag", None, &mut out) {
                    assert!(out.starts_with(b"SIP/2.0 "));
                    assert!(out.ends_with(b"\r\n\r\n"));
                }
            }
        }
    }
});
