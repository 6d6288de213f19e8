//! Serialization into caller-owned buffers, and the response skeletons every layer
//! needs (RFC 3261 §8.2.6: Via, From, To with tag, Call-ID, CSeq copied from the request).

use std::io::Write as _;
use std::net::SocketAddr;

use super::grammar::trim_lws;
use super::params::Params;
use super::{split_list, HeaderName, Message, Via};

/// The reason phrase RFC 3261 §21 gives a status code.
pub fn default_reason(code: u16) -> &'static str {
    match code {
        100 => "Trying",
        180 => "Ringing",
        181 => "Call Is Being Forwarded",
        182 => "Queued",
        183 => "Session Progress",
        200 => "OK",
        202 => "Accepted",
        301 => "Moved Permanently",
        302 => "Moved Temporarily",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        407 => "Proxy Authentication Required",
        408 => "Request Timeout",
        413 => "Request Entity Too Large",
        415 => "Unsupported Media Type",
        416 => "Unsupported URI Scheme",
        420 => "Bad Extension",
        423 => "Interval Too Brief",
        480 => "Temporarily Unavailable",
        481 => "Call/Transaction Does Not Exist",
        482 => "Loop Detected",
        483 => "Too Many Hops",
        486 => "Busy Here",
        487 => "Request Terminated",
        488 => "Not Acceptable Here",
        491 => "Request Pending",
        500 => "Server Internal Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        504 => "Server Time-out",
        505 => "Version Not Supported",
        513 => "Message Too Large",
        603 => "Decline",
        _ => match code / 100 {
            1 => "Session Progress",
            2 => "OK",
            3 => "Redirect",
            4 => "Request Failure",
            5 => "Server Failure",
            _ => "Global Failure",
        },
    }
}

/// Writes the message exactly as parsed (start line, every header with its name and
/// value as received, the body), ending at the body: trailing datagram octets are not kept.
pub fn write_message(msg: &Message, out: &mut Vec<u8>) {
    let buf = msg.buffer();
    let first_header = msg.headers().first().map_or(msg.body.start as usize, |h| h.name_span.start as usize);
    // The start line and its CRLF, without any leading keep-alive CRLFs.
    let head = &buf[..first_header];
    let mut s = 0;
    while head[s..].starts_with(b"\r\n") {
        s += 2;
    }
    let line_end = memchr::memchr(b'\n', &head[s..]).map_or(head.len(), |p| s + p + 1);
    out.extend_from_slice(&head[s..line_end]);
    for h in msg.headers() {
        out.extend_from_slice(h.name_span.get(buf));
        out.extend_from_slice(b": ");
        out.extend_from_slice(h.value.get(buf));
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(msg.body());
}

/// Builds a message header by header into a reused buffer; [`Writer::finish`] adds
/// Content-Length and the body.
pub struct Writer<'a> {
    out: &'a mut Vec<u8>,
}

impl<'a> Writer<'a> {
    /// Starts a request line. `out` is cleared first.
    pub fn request(out: &'a mut Vec<u8>, method: &[u8], uri: &[u8]) -> Self {
        out.clear();
        out.extend_from_slice(method);
        out.push(b' ');
        out.extend_from_slice(uri);
        out.extend_from_slice(b" SIP/2.0\r\n");
        Writer { out }
    }

    /// Starts a status line. `out` is cleared first.
    pub fn response(out: &'a mut Vec<u8>, code: u16, reason: &str) -> Self {
        out.clear();
        let _ = write!(out, "SIP/2.0 {code} {reason}\r\n");
        Writer { out }
    }

    pub fn header(&mut self, name: &str, value: impl AsRef<[u8]>) -> &mut Self {
        self.out.extend_from_slice(name.as_bytes());
        self.out.extend_from_slice(b": ");
        self.out.extend_from_slice(value.as_ref());
        self.out.extend_from_slice(b"\r\n");
        self
    }

    pub fn header_fmt(&mut self, name: &str, value: std::fmt::Arguments<'_>) -> &mut Self {
        self.out.extend_from_slice(name.as_bytes());
        self.out.extend_from_slice(b": ");
        let _ = self.out.write_fmt(value);
        self.out.extend_from_slice(b"\r\n");
        self
    }

    /// Writes Content-Length, the empty line and the body.
    pub fn finish(self, body: &[u8]) {
        let _ = write!(self.out, "Content-Length: {}\r\n\r\n", body.len());
        self.out.extend_from_slice(body);
    }

    /// Writes the empty line and body without a Content-Length header.
    pub fn finish_without_length(self, body: &[u8]) {
        self.out.extend_from_slice(b"\r\n");
        self.out.extend_from_slice(body);
    }
}

/// Writes the top Via of a request being answered, with `received` and the RFC 3581
/// `rport` value filled in from the address the request came from.
pub fn write_top_via(out: &mut Vec<u8>, via_raw: &[u8], source: Option<SocketAddr>) {
    let Some(source) = source else {
        out.extend_from_slice(via_raw);
        return;
    };
    let Ok(via) = Via::parse(via_raw) else {
        out.extend_from_slice(via_raw);
        return;
    };
    let semi = memchr::memchr(b';', via_raw).unwrap_or(via_raw.len());
    out.extend_from_slice(trim_lws(&via_raw[..semi]));
    let rport_requested = via.rport().is_some();
    let ip = source.ip().to_string();
    let host = super::uri::strip_brackets(via.host);
    let need_received = rport_requested || host != ip.as_bytes();
    for (name, value) in via.params() {
        if name.eq_ignore_ascii_case(b"received") && need_received {
            continue;
        }
        if name.eq_ignore_ascii_case(b"rport") {
            let _ = write!(out, ";rport={}", source.port());
            continue;
        }
        out.push(b';');
        out.extend_from_slice(name);
        if let Some(v) = value {
            out.push(b'=');
            out.extend_from_slice(v);
        }
    }
    if need_received {
        let _ = write!(out, ";received={ip}");
    }
}

/// One `Via:` line of a response: the first one (`*first` still true) gets received
/// and rport for `source`.
fn write_via_line(w: &mut Writer<'_>, via: &[u8], first: &mut bool, source: Option<SocketAddr>) {
    w.out.extend_from_slice(b"Via: ");
    if std::mem::take(first) {
        write_top_via(w.out, via, source);
    } else {
        w.out.extend_from_slice(via);
    }
    w.out.extend_from_slice(b"\r\n");
}

fn has_tag(to_value: &[u8]) -> bool {
    // The To value may be malformed here (error responses); look for a `tag` parameter
    // after the URI.
    let after = match memchr::memrchr(b'>', to_value) {
        Some(p) => &to_value[p..],
        None => to_value,
    };
    let params = match memchr::memchr(b';', after) {
        Some(p) => &after[p + 1..],
        None => return false,
    };
    Params::new(params).get("tag").is_some()
}

/// Starts a response to `req`: status line, every Via (the top one with received and
/// rport for `source`), From, To (with `to_tag` added when the request's To has none
/// and the response is not a 100), Call-ID and CSeq.
pub fn response_to<'a>(
    req: &Message,
    code: u16,
    reason: &str,
    to_tag: Option<&[u8]>,
    source: Option<SocketAddr>,
    out: &'a mut Vec<u8>,
) -> Writer<'a> {
    let mut w = Writer::response(out, code, reason);
    let mut first = true;
    for v in req.values(HeaderName::Via) {
        write_via_line(&mut w, v, &mut first, source);
    }
    let from = req.header(HeaderName::From).unwrap_or_default();
    w.header("From", from);
    let to = req.header(HeaderName::To).unwrap_or_default();
    write_to(&mut w, to, code, to_tag);
    w.header("Call-ID", req.call_id());
    let _ = write!(w.out, "CSeq: {} ", req.cseq());
    w.out.extend_from_slice(req.method_bytes());
    w.out.extend_from_slice(b"\r\n");
    w
}

fn write_to(w: &mut Writer<'_>, to: &[u8], code: u16, to_tag: Option<&[u8]>) {
    w.out.extend_from_slice(b"To: ");
    w.out.extend_from_slice(to);
    if code > 100 && !has_tag(to) {
        if let Some(tag) = to_tag {
            w.out.extend_from_slice(b";tag=");
            w.out.extend_from_slice(tag);
        }
    }
    w.out.extend_from_slice(b"\r\n");
}

/// The header lines of bytes that may not parse, read leniently (LF or CRLF endings,
/// continuation lines joined) as `(name, value)` with white space trimmed.
pub fn raw_header_lines(raw: &[u8]) -> Vec<(&[u8], &[u8])> {
    let mut out = Vec::new();
    let mut rest = match memchr::memchr(b'\n', raw) {
        Some(p) => &raw[p + 1..],
        None => return out,
    };
    let base = raw.as_ptr() as usize;
    let mut spans: Vec<(usize, usize)> = Vec::new();
    let mut current: Option<(usize, usize)> = None;
    while !rest.is_empty() {
        let end = memchr::memchr(b'\n', rest).unwrap_or(rest.len());
        let mut line = &rest[..end];
        if let [l @ .., b'\r'] = line {
            line = l;
        }
        let off = line.as_ptr() as usize - base;
        rest = if end < rest.len() { &rest[end + 1..] } else { &[] };
        if line.is_empty() {
            break;
        }
        if matches!(line[0], b' ' | b'\t') {
            if let Some((s, _)) = current {
                current = Some((s, off + line.len()));
            }
            continue;
        }
        spans.extend(current.take());
        current = Some((off, off + line.len()));
    }
    spans.extend(current);
    for (s, e) in spans {
        let line = &raw[s..e];
        if let Some(colon) = memchr::memchr(b':', line) {
            out.push((trim_lws(&line[..colon]), trim_lws(&line[colon + 1..])));
        }
    }
    out
}

/// The Call-ID of bytes that may not parse, for log lines.
pub fn raw_call_id(raw: &[u8]) -> Option<&[u8]> {
    raw_header_lines(raw).into_iter().find(|(n, _)| HeaderName::from_bytes(n) == HeaderName::CallId).map(|(_, v)| v)
}

/// Builds a stateless error response to bytes that failed to parse as a request, copying
/// whatever Via, From, To, Call-ID and CSeq lines can be found (RFC 3261 §8.2.6).
/// Returns false (writing nothing) for a response, or when no header can be found at all.
pub fn error_response_raw(
    raw: &[u8],
    code: u16,
    reason: &str,
    to_tag: &[u8],
    source: Option<SocketAddr>,
    out: &mut Vec<u8>,
) -> bool {
    let mut start = 0;
    while raw[start..].starts_with(b"\r\n") {
        start += 2;
    }
    let raw = &raw[start..];
    if raw.is_empty() || raw.starts_with(b"SIP/") {
        return false;
    }
    let lines = raw_header_lines(raw);
    if lines.is_empty() {
        return false;
    }
    let mut w = Writer::response(out, code, reason);
    let mut first_via = true;
    let mut seen = [false; 4];
    for &(name, value) in &lines {
        if !only_folds(value) {
            continue;
        }
        match HeaderName::from_bytes(name) {
            HeaderName::Via => {
                for v in split_list(value) {
                    write_via_line(&mut w, v, &mut first_via, source);
                }
            }
            HeaderName::From if !seen[0] => {
                seen[0] = true;
                w.header("From", value);
            }
            HeaderName::To if !seen[1] => {
                seen[1] = true;
                write_to(&mut w, value, code, Some(to_tag));
            }
            HeaderName::CallId if !seen[2] => {
                seen[2] = true;
                w.header("Call-ID", value);
            }
            HeaderName::CSeq if !seen[3] => {
                seen[3] = true;
                w.header("CSeq", value);
            }
            _ => {}
        }
    }
    w.header("Server", crate::SERVER_NAME);
    w.finish(b"");
    true
}

/// True if every CR or LF in `v` belongs to a fold (CRLF followed by SP or HTAB).
fn only_folds(v: &[u8]) -> bool {
    let mut i = 0;
    while i < v.len() {
        match v[i] {
            b'\r' => {
                if !(v.get(i + 1) == Some(&b'\n') && matches!(v.get(i + 2), Some(b' ' | b'\t'))) {
                    return false;
                }
                i += 2;
            }
            b'\n' => return false,
            _ => {}
        }
        i += 1;
    }
    true
}
