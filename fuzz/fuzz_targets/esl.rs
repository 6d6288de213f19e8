//! Any bytes, cut into reads at fuzzer-chosen points, through the event socket's command
//! decoder and an authenticated session: no panic; every command decoded is answered
//! (a reply, an API request, a close), and every event frame's Content-Length is its
//! body's length.
#![no_main]

use control_plane::esl::event::{Event, Format};
use control_plane::esl::frame::Decoder;
use control_plane::esl::session::Session;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.is_empty() {
        return;
    }
    let step = (data[0] as usize % 64) + 1;
    let mut d = Decoder::new();
    let mut s = Session::new("ClueCon");
    let mut n = 0u64;
    let mut auth = Decoder::new();
    auth.push(b"auth ClueCon\n\n");
    if let Ok(Some(c)) = auth.next_command() {
        s.on_command(&c, || String::new());
    }
    for chunk in data[1..].chunks(step) {
        d.push(chunk);
        loop {
            match d.next_command() {
                Ok(Some(c)) => {
                    let out = s.on_command(&c, || {
                        n += 1;
                        n.to_string()
                    });
                    // An exit or a bad password may end it with nothing more to say.
                    let _ = out;
                    let mut e = Event::default();
                    e.add("Event-Name", &c.line);
                    for (k, v) in &c.headers {
                        e.add(k, v);
                    }
                    e.body = c.body.as_ref().map(|b| String::from_utf8_lossy(b).into_owned());
                    for f in [Format::Plain, Format::Json, Format::Xml] {
                        let frame = e.frame(f);
                        let text = String::from_utf8(frame).unwrap();
                        let (head, body) = text.split_once("\n\n").unwrap();
                        let len: usize = head.lines().next().unwrap().strip_prefix("Content-Length: ").unwrap().parse().unwrap();
                        assert_eq!(len, body.len());
                    }
                }
                Ok(None) => break,
                Err(_) => return,
            }
        }
    }
});
