//! The strict reader: RFC 8866 §5 and §9's grammar, line by line.

use super::{Attribute, Connection, Media, Origin, RtpMap, Sdp};

/// What is wrong with a session description, and on which line (1-based).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("SDP line {line}: {what}")]
pub struct SdpError {
    /// The line.
    pub line: usize,
    /// What is wrong with it.
    pub what: String,
}

/// Bodies larger than this are refused (a SIP message is far smaller).
pub const MAX_SDP: usize = 64 * 1024;

fn err(line: usize, what: impl Into<String>) -> SdpError {
    SdpError { line, what: what.into() }
}

impl Sdp {
    /// Parses `text` (CRLF or LF line ends).
    pub fn parse(text: &[u8]) -> Result<Sdp, SdpError> {
        if text.len() > MAX_SDP {
            return Err(err(0, format!("{} bytes: larger than {MAX_SDP}", text.len())));
        }
        let text = std::str::from_utf8(text).map_err(|e| err(0, format!("not UTF-8: {e}")))?;
        let mut lines = Vec::new();
        for (i, raw) in text.split('\n').enumerate() {
            let l = raw.strip_suffix('\r').unwrap_or(raw);
            if l.is_empty() {
                // Only the trailing empty line after the last line end is allowed.
                if i + 1 == text.split('\n').count() {
                    continue;
                }
                return Err(err(i + 1, "empty line"));
            }
            let b = l.as_bytes();
            if b.len() < 2 || b[1] != b'=' || !b[0].is_ascii_lowercase() {
                return Err(err(i + 1, format!("{l:?}: expected <letter>=<value>")));
            }
            if l.bytes().any(|c| c == 0 || c == b'\r') {
                return Err(err(i + 1, "NUL or CR inside a line"));
            }
            lines.push((i + 1, b[0] as char, &l[2..]));
        }
        let mut it = lines.into_iter().peekable();
        // v=0
        match it.next() {
            Some((_, 'v', "0")) => {}
            Some((n, 'v', v)) => return Err(err(n, format!("version {v:?}, expected 0"))),
            Some((n, t, _)) => return Err(err(n, format!("{t}= before v=: the description must start with v=0"))),
            None => return Err(err(1, "empty description")),
        }
        let origin = match it.next() {
            Some((n, 'o', v)) => origin(n, v)?,
            Some((n, t, _)) => return Err(err(n, format!("{t}= where o= must follow v="))),
            None => return Err(err(2, "no o= line")),
        };
        let session_name = match it.next() {
            Some((_, 's', v)) if !v.is_empty() => v.to_string(),
            Some((n, 's', _)) => return Err(err(n, "empty s= (use a single space or -)")),
            Some((n, t, _)) => return Err(err(n, format!("{t}= where s= must follow o="))),
            None => return Err(err(3, "no s= line")),
        };
        let mut sdp = Sdp {
            origin,
            session_name,
            lines: Vec::new(),
            connection: None,
            attributes: Vec::new(),
            media: Vec::new(),
        };
        let mut times = 0;
        // Session level, in RFC 8866's order: i u e p c b (t r)+ z k a.
        let order = ['i', 'u', 'e', 'p', 'c', 'b', 't', 'r', 'z', 'k', 'a'];
        let mut pos = 0;
        while let Some((n, t, v)) = it.next_if(|l| l.1 != 'm') {
            let p = place(&order, n, t, "session")?;
            let repeatable = matches!(t, 'e' | 'p' | 'b' | 't' | 'r' | 'a');
            if p < pos && !(t == 't' && pos <= 7) && !(t == 'r' && pos <= 7) {
                return Err(err(n, format!("{t}= out of order")));
            }
            if !repeatable && t != 'c' && sdp.lines.iter().any(|(c, _)| *c == t) {
                return Err(err(n, format!("a second {t}= line")));
            }
            pos = pos.max(p);
            match t {
                'c' => {
                    if sdp.connection.is_some() {
                        return Err(err(n, "a second session-level c= line"));
                    }
                    sdp.connection = Some(connection(n, v)?);
                }
                'a' => sdp.attributes.push(attribute(n, v)?),
                't' => {
                    times += 1;
                    let mut f = v.split(' ');
                    let ok = matches!((f.next(), f.next(), f.next()), (Some(a), Some(b), None)
                        if a.parse::<u64>().is_ok() && b.parse::<u64>().is_ok());
                    if !ok {
                        return Err(err(n, format!("t={v:?}: expected <start> <stop>")));
                    }
                    sdp.lines.push((t, v.to_string()));
                }
                'r' if times == 0 => return Err(err(n, "r= before any t=")),
                _ => sdp.lines.push((t, v.to_string())),
            }
        }
        if times == 0 {
            return Err(err(0, "no t= line"));
        }
        // Media sections: m (i) (c)* (b)* (k) (a)*.
        while let Some((n, t, v)) = it.next() {
            if t != 'm' {
                return Err(err(n, format!("{t}= where m= was expected")));
            }
            let mut m = media(n, v)?;
            let order = ['i', 'c', 'b', 'k', 'a'];
            let mut pos = 0;
            while let Some((n, t, v)) = it.next_if(|l| l.1 != 'm') {
                let p = place(&order, n, t, "media")?;
                if p < pos {
                    return Err(err(n, format!("{t}= out of order in the media section")));
                }
                pos = p;
                match t {
                    'c' => {
                        // Several c= lines are allowed for multicast; a switch uses the first.
                        let c = connection(n, v)?;
                        if m.connection.is_none() {
                            m.connection = Some(c);
                        } else {
                            m.lines.push(('c', v.to_string()));
                        }
                    }
                    'a' => m.attributes.push(attribute(n, v)?),
                    _ => m.lines.push((t, v.to_string())),
                }
            }
            sdp.media.push(m);
        }
        // Every active RTP stream needs somewhere to send to.
        for (i, m) in sdp.media.iter().enumerate() {
            if m.port != 0 && sdp.connection_for(i).is_none() {
                return Err(err(0, format!("m={} has no c= line and there is none at session level", m.kind)));
            }
        }
        Ok(sdp)
    }
}

/// Where line type `t` stands in `order`, or an error for a type that has no place at
/// this `level`.
fn place(order: &[char], n: usize, t: char, level: &str) -> Result<usize, SdpError> {
    order.iter().position(|&o| o == t).ok_or_else(|| err(n, format!("{t}= is not a {level}-level line")))
}

fn token_ok(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|c| c.is_ascii_graphic())
}

fn origin(n: usize, v: &str) -> Result<Origin, SdpError> {
    let f: Vec<&str> = v.split(' ').collect();
    if f.len() != 6 || !f.iter().all(|x| token_ok(x)) {
        return Err(err(n, format!("o={v:?}: expected <user> <id> <version> IN <IP4|IP6> <address>")));
    }
    let session_version = f[2].parse().map_err(|_| err(n, format!("o= version {:?} is not a number", f[2])))?;
    if !f[1].bytes().all(|c| c.is_ascii_digit()) {
        return Err(err(n, format!("o= session id {:?} is not a number", f[1])));
    }
    Ok(Origin {
        username: f[0].into(),
        session_id: f[1].into(),
        session_version,
        net_type: f[3].into(),
        addr_type: f[4].into(),
        address: f[5].into(),
    })
}

fn connection(n: usize, v: &str) -> Result<Connection, SdpError> {
    let f: Vec<&str> = v.split(' ').collect();
    if f.len() != 3 || f[0] != "IN" || !matches!(f[1], "IP4" | "IP6") || !token_ok(f[2]) {
        return Err(err(n, format!("c={v:?}: expected IN <IP4|IP6> <address>")));
    }
    let host = f[2].split('/').next().unwrap_or_default();
    let ok = match f[1] {
        "IP4" => host.parse::<std::net::Ipv4Addr>().is_ok() || host.contains(|c: char| c.is_ascii_alphabetic()),
        _ => host.parse::<std::net::Ipv6Addr>().is_ok() || host.contains('.'),
    };
    if !ok {
        return Err(err(n, format!("c= address {host:?} is not an {} address", f[1])));
    }
    Ok(Connection { net_type: f[0].into(), addr_type: f[1].into(), address: f[2].into() })
}

fn attribute(n: usize, v: &str) -> Result<Attribute, SdpError> {
    let (name, value) = match v.split_once(':') {
        Some((a, b)) => (a, Some(b.to_string())),
        None => (v, None),
    };
    if !token_ok(name) {
        return Err(err(n, format!("a={v:?}: bad attribute name")));
    }
    Ok(Attribute { name: name.into(), value })
}

fn media(n: usize, v: &str) -> Result<Media, SdpError> {
    let f: Vec<&str> = v.split(' ').collect();
    if f.len() < 4 || !f.iter().all(|x| token_ok(x)) {
        return Err(err(n, format!("m={v:?}: expected <media> <port> <proto> <fmt> ...")));
    }
    let (port, count) = match f[1].split_once('/') {
        Some((p, c)) => (p, Some(c.parse::<u16>().map_err(|_| err(n, format!("m= port count {c:?}")))?)),
        None => (f[1], None),
    };
    let port = port.parse::<u16>().map_err(|_| err(n, format!("m= port {port:?} is not 0 to 65535")))?;
    if f[2].contains("RTP/") {
        if let Some(bad) = f[3..].iter().find(|x| x.parse::<u8>().map_or(true, |p| p > 127)) {
            return Err(err(n, format!("m= RTP format {bad:?} is not a payload type (0-127)")));
        }
    }
    Ok(Media {
        kind: f[0].into(),
        port,
        port_count: count,
        proto: f[2].into(),
        formats: f[3..].iter().map(|s| s.to_string()).collect(),
        lines: Vec::new(),
        connection: None,
        attributes: Vec::new(),
    })
}

/// `<pt> <encoding>/<clock>[/<channels>]`.
pub(super) fn rtpmap(v: &str) -> Option<RtpMap> {
    let (pt, rest) = v.split_once(' ')?;
    let mut parts = rest.trim().split('/');
    let encoding = parts.next()?.to_string();
    let clock_rate = parts.next()?.parse().ok()?;
    let channels = match parts.next() {
        Some(c) => Some(c.parse().ok()?),
        None => None,
    };
    Some(RtpMap { pt: pt.parse().ok()?, encoding, clock_rate, channels })
}
