//! Any bytes as an NG datagram: splitting, bencode/JSON decoding and request parsing never
//! panic, and an error answer always echoes the cookie.
#![no_main]

use control_plane::ng::bencode::Value;
use control_plane::ng::command;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(v) = Value::decode(data) {
        assert_eq!(Value::decode(&v.encode()).expect("an encoded value decodes"), v);
    }
    match command::split(data) {
        Ok((cookie, dict)) => {
            let _ = command::parse(&dict);
            assert!(command::error(cookie, "x").starts_with(cookie));
        }
        Err(_) => {}
    }
});
