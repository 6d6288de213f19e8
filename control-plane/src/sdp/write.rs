//! The writer: every line in RFC 8866's order, CRLF-terminated.

use std::fmt::Write as _;

use super::{Attribute, Sdp};

fn attributes(out: &mut String, attrs: &[Attribute]) {
    for a in attrs {
        match &a.value {
            Some(v) => {
                let _ = write!(out, "a={}:{v}\r\n", a.name);
            }
            None => {
                let _ = write!(out, "a={}\r\n", a.name);
            }
        }
    }
}

impl Sdp {
    /// The description as text.
    pub fn write(&self) -> String {
        let mut out = String::with_capacity(512);
        let o = &self.origin;
        let _ = write!(
            out,
            "v=0\r\no={} {} {} {} {} {}\r\ns={}\r\n",
            o.username, o.session_id, o.session_version, o.net_type, o.addr_type, o.address, self.session_name
        );
        // RFC 8866 §5's order: i u e p c b (t r) z k a.
        let before_c = |t: char| matches!(t, 'i' | 'u' | 'e' | 'p');
        for (t, v) in self.lines.iter().filter(|(t, _)| before_c(*t)) {
            let _ = write!(out, "{t}={v}\r\n");
        }
        if let Some(c) = &self.connection {
            let _ = write!(out, "c={} {} {}\r\n", c.net_type, c.addr_type, c.address);
        }
        for (t, v) in self.lines.iter().filter(|(t, _)| !before_c(*t)) {
            let _ = write!(out, "{t}={v}\r\n");
        }
        attributes(&mut out, &self.attributes);
        for m in &self.media {
            let port = match m.port_count {
                Some(c) => format!("{}/{c}", m.port),
                None => m.port.to_string(),
            };
            let _ = write!(out, "m={} {port} {} {}\r\n", m.kind, m.proto, m.formats.join(" "));
            for (t, v) in m.lines.iter().filter(|(t, _)| *t == 'i') {
                let _ = write!(out, "{t}={v}\r\n");
            }
            if let Some(c) = &m.connection {
                let _ = write!(out, "c={} {} {}\r\n", c.net_type, c.addr_type, c.address);
            }
            for (t, v) in m.lines.iter().filter(|(t, _)| *t != 'i') {
                let _ = write!(out, "{t}={v}\r\n");
            }
            attributes(&mut out, &m.attributes);
        }
        out
    }
}
