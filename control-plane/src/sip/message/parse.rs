//! Parsing a whole message: start line, header lines (with folding), body framing by
//! Content-Length, then strict checks of the headers the stack relies on.

use bytes::Bytes;

use super::addr::{is_star, valid_qvalue, AddrError, NameAddr};
use super::grammar::{is_token, parse_digits, trim_lws, Cursor, TOKEN, WORD};
use super::header::HeaderName;
use super::uri::{Uri, UriError};
use super::via::{Via, ViaError};
use super::{split_list, Core, Header, Message, Method, Span, StartLine};

/// How the message was delimited by its transport.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// One UDP datagram: without Content-Length the body runs to the end of the
    /// datagram; octets after Content-Length are ignored (RFC 3261 §18.3).
    Datagram,
    /// A message cut from a stream by [`crate::sip::transport::framing`]: Content-Length
    /// is mandatory (RFC 3261 §20.14) and must match exactly.
    Stream,
}

/// Why a message was refused. Requests refused here get [`ParseError::status`] back
/// statelessly; refused responses are dropped.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseError {
    /// Nothing but white space.
    #[error("empty message")]
    Empty,
    /// The message is larger than the configured limit.
    #[error("message larger than {0} bytes")]
    TooLarge(usize),
    /// The request or status line does not follow RFC 3261 §25.1.
    #[error("malformed start line: {0}")]
    StartLine(&'static str),
    /// The SIP-Version is well formed but not SIP/2.0 (answered with 505).
    #[error("SIP version not supported")]
    Version,
    /// The Request-URI is malformed (RFC 3261 §19.1.1: no headers allowed there).
    #[error("malformed Request-URI: {0}")]
    RequestUri(&'static str),
    /// A header line is malformed (no colon, bad name, bare CR or LF).
    #[error("malformed header line {line}: {what}")]
    HeaderLine { line: usize, what: &'static str },
    /// No empty line ends the headers.
    #[error("headers not terminated by an empty line")]
    Unterminated,
    /// Content-Length is malformed, repeated, missing on a stream, or larger than the body.
    #[error("Content-Length: {0}")]
    ContentLength(&'static str),
    /// A mandatory header is missing.
    #[error("missing {0} header")]
    Missing(&'static str),
    /// A single-valued header appears more than once (RFC 4475 §3.3.8).
    #[error("{0} header appears more than once")]
    Duplicate(&'static str),
    /// A header the stack relies on has a malformed value.
    #[error("malformed {header} header: {what}")]
    Header { header: &'static str, what: String },
    /// The CSeq method differs from the request method (RFC 4475 §3.1.2.17-18).
    #[error("CSeq method does not match the request method")]
    CSeqMismatch {
        /// The request method is an extension, so 501 is the better answer.
        extension: bool,
    },
}

impl ParseError {
    /// The status code a request refused for this reason gets.
    pub fn status(&self) -> u16 {
        match self {
            ParseError::Version => 505,
            ParseError::CSeqMismatch { extension: true } => 501,
            ParseError::TooLarge(_) => 513,
            _ => 400,
        }
    }
}

fn header_err(header: HeaderName, what: impl ToString) -> ParseError {
    ParseError::Header { header: header.as_str(), what: what.to_string() }
}

fn span(buf: &[u8], sub: &[u8]) -> Span {
    let start = sub.as_ptr() as usize - buf.as_ptr() as usize;
    debug_assert!(start + sub.len() <= buf.len());
    Span { start: start as u32, end: (start + sub.len()) as u32 }
}

pub(super) fn parse(buf: Bytes, framing: Framing, max_size: usize) -> Result<Message, ParseError> {
    if buf.len() > max_size || buf.len() > u32::MAX as usize {
        return Err(ParseError::TooLarge(max_size));
    }
    let b: &[u8] = &buf;
    // Leading CRLFs are keep-alives or stream padding (RFC 3261 §7.5).
    let mut pos = 0;
    while b[pos..].starts_with(b"\r\n") {
        pos += 2;
    }
    if pos == b.len() {
        return Err(ParseError::Empty);
    }
    let (line, next) = read_line(b, pos).ok_or(ParseError::StartLine("not terminated by CRLF"))?;
    let start = parse_start_line(b, line)?;
    pos = next;

    let mut headers: Vec<Header> = Vec::with_capacity(20);
    let mut line_no = 1;
    loop {
        line_no += 1;
        let (line, next) = match read_line(b, pos) {
            Some(x) => x,
            None => return Err(ParseError::Unterminated),
        };
        pos = next;
        if line.is_empty() {
            break;
        }
        if matches!(line[0], b' ' | b'\t') {
            // Folded continuation of the previous header (RFC 3261 §7.3.1).
            let last = headers
                .last_mut()
                .ok_or(ParseError::HeaderLine { line: line_no, what: "continuation line before any header" })?;
            last.value.end = span(b, line).end;
            continue;
        }
        let (name, name_len, after_colon) = HeaderName::read_line_name(line)
            .ok_or(ParseError::HeaderLine { line: line_no, what: "expected a token header name and a colon" })?;
        let mut value = &line[after_colon..];
        while let [b' ' | b'\t', rest @ ..] = value {
            value = rest;
        }
        headers.push(Header { name, name_span: span(b, &line[..name_len]), value: span(b, value) });
    }
    let body_start = pos;

    let mut msg = Message { buf: Bytes::new(), start, headers, body: Span::default(), core: Core::default() };
    let cl = content_length(b, &msg.headers)?;
    let body_end = match (cl, framing) {
        (Some(n), _) => {
            let end = body_start.checked_add(n as usize).ok_or(ParseError::ContentLength("too large"))?;
            if end > b.len() {
                return Err(ParseError::ContentLength("larger than the message body"));
            }
            if framing == Framing::Stream && end != b.len() {
                return Err(ParseError::ContentLength("does not match the framed message"));
            }
            end
        }
        (None, Framing::Datagram) => b.len(),
        (None, Framing::Stream) => return Err(ParseError::ContentLength("required on stream transports")),
    };
    msg.body = Span { start: body_start as u32, end: body_end as u32 };
    msg.core.content_length = cl;
    validate(b, &mut msg)?;
    msg.buf = buf;
    Ok(msg)
}

/// Returns the line starting at `pos` (without CRLF) and the position after its CRLF.
/// A bare CR or LF inside the line is refused by returning `None` for a missing CRLF.
/// What the transaction layer needs of a final response to an INVITE it is about to send
/// (the ACK's key): Call-ID, CSeq number and To tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DialogIds<'a> {
    pub call_id: &'a [u8],
    pub cseq: u32,
    pub to_tag: Option<&'a [u8]>,
}

/// Reads [`DialogIds`] from a serialized response by scanning its header lines, without
/// parsing and validating the whole message: for the switch's own responses, which its
/// writer built. `None` when anything is unusual (folded lines, a header missing or
/// repeated, a malformed value): the caller then parses the message in full.
pub fn scan_dialog_ids(b: &[u8]) -> Option<DialogIds<'_>> {
    let (_, mut pos) = read_line(b, 0)?;
    let (mut call_id, mut cseq, mut to) = (None, None, None);
    loop {
        let (line, next) = read_line(b, pos)?;
        pos = next;
        if line.is_empty() {
            break;
        }
        if matches!(line[0], b' ' | b'\t') {
            return None;
        }
        let (name, _, after_colon) = HeaderName::read_line_name(line)?;
        let value = trim_lws(&line[after_colon..]);
        let slot = match name {
            HeaderName::CallId => &mut call_id,
            HeaderName::CSeq => &mut cseq,
            HeaderName::To => &mut to,
            _ => continue,
        };
        if slot.replace(value).is_some() {
            return None;
        }
    }
    let call_id = call_id.filter(|c| !c.is_empty())?;
    let mut c = Cursor::new(cseq?);
    let n = parse_digits(c.take(&DIGITS), u32::MAX as u64)?;
    let to_tag = match NameAddr::parse(to?).ok()?.tag_param() {
        Some(Some(t)) if !t.is_empty() && t.iter().all(|&c| TOKEN[c as usize]) => Some(t),
        Some(_) => return None,
        None => None,
    };
    Some(DialogIds { call_id, cseq: n as u32, to_tag })
}

fn read_line(b: &[u8], pos: usize) -> Option<(&[u8], usize)> {
    let rest = b.get(pos..)?;
    // One scan for either byte: the first must be the CR of a CRLF.
    let cr = memchr::memchr2(b'\r', b'\n', rest)?;
    if rest[cr] != b'\r' || rest.get(cr + 1) != Some(&b'\n') {
        return None;
    }
    Some((&rest[..cr], pos + cr + 2))
}

fn parse_start_line(b: &[u8], line: &[u8]) -> Result<StartLine, ParseError> {
    if line.starts_with(b"SIP/") {
        // Status-Line = SIP-Version SP Status-Code SP Reason-Phrase
        let sp = memchr::memchr(b' ', line).ok_or(ParseError::StartLine("no status code"))?;
        check_version(&line[..sp])?;
        let rest = &line[sp + 1..];
        if rest.len() < 4 || rest[3] != b' ' || !rest[..3].iter().all(u8::is_ascii_digit) {
            return Err(ParseError::StartLine("status code must be three digits followed by SP"));
        }
        let code = parse_digits(&rest[..3], 999).unwrap_or(0) as u16;
        if !(100..=699).contains(&code) {
            return Err(ParseError::StartLine("status code out of range"));
        }
        let reason = &rest[4..];
        if reason.iter().any(|&c| c < 0x20 && c != b'\t' || c == 0x7f) {
            return Err(ParseError::StartLine("control character in reason phrase"));
        }
        return Ok(StartLine::Response { code, reason: span(b, reason) });
    }
    // Request-Line = Method SP Request-URI SP SIP-Version, single spaces only.
    let sp1 = memchr::memchr(b' ', line).ok_or(ParseError::StartLine("no Request-URI"))?;
    let method = &line[..sp1];
    if !is_token(method) {
        return Err(ParseError::StartLine("method is not a token"));
    }
    let rest = &line[sp1 + 1..];
    let sp2 = memchr::memchr(b' ', rest).ok_or(ParseError::StartLine("no SIP-Version"))?;
    let uri = &rest[..sp2];
    let version = &rest[sp2 + 1..];
    if uri.is_empty() {
        return Err(ParseError::StartLine("extra space before the Request-URI"));
    }
    if memchr::memchr(b' ', version).is_some() || version.is_empty() {
        // A space inside the URI, or trailing/extra spaces (RFC 4475 §3.1.2.8-10).
        if version.len() > 1 && check_version(version.split(|&c| c == b' ').next_back().unwrap_or(b"")).is_ok() {
            return Err(ParseError::RequestUri("white space inside the Request-URI"));
        }
        return Err(ParseError::StartLine("extra white space in the request line"));
    }
    check_version(version)?;
    let u = Uri::parse(uri).map_err(|e| ParseError::RequestUri(uri_reason(e)))?;
    if !u.headers.is_empty() {
        return Err(ParseError::RequestUri("headers are not allowed in a Request-URI"));
    }
    Ok(StartLine::Request { method: Method::from_bytes(method), method_span: span(b, method), uri: span(b, uri) })
}

fn uri_reason(e: UriError) -> &'static str {
    match e {
        UriError::Scheme => "bad or missing scheme",
        UriError::UserInfo => "bad user part",
        UriError::Host => "bad host",
        UriError::Port => "bad port",
        UriError::Param => "bad parameter",
        UriError::Header => "bad header",
        UriError::Char => "character not allowed in a URI",
    }
}

/// SIP-Version = "SIP" "/" 1*DIGIT "." 1*DIGIT; anything but 2.0 is answered with 505.
fn check_version(v: &[u8]) -> Result<(), ParseError> {
    if v.len() < 4 || !v[..4].eq_ignore_ascii_case(b"SIP/") {
        return Err(ParseError::StartLine("bad SIP-Version"));
    }
    let num = &v[4..];
    let dot = memchr::memchr(b'.', num).ok_or(ParseError::StartLine("bad SIP-Version"))?;
    let (maj, min) = (&num[..dot], &num[dot + 1..]);
    if maj.is_empty() || min.is_empty() || !maj.iter().chain(min).all(u8::is_ascii_digit) {
        return Err(ParseError::StartLine("bad SIP-Version"));
    }
    if num != b"2.0" {
        return Err(ParseError::Version);
    }
    Ok(())
}

fn content_length(b: &[u8], headers: &[Header]) -> Result<Option<u32>, ParseError> {
    let mut found = None;
    for h in headers.iter().filter(|h| h.name == HeaderName::ContentLength) {
        if found.is_some() {
            return Err(ParseError::ContentLength("appears more than once"));
        }
        let v = trim_lws(h.value.get(b));
        found = Some(parse_digits(v, u32::MAX as u64).ok_or(ParseError::ContentLength("not a number"))? as u32);
    }
    Ok(found)
}

/// Strict checks of the headers the stack interprets; fills in `msg.core`.
fn validate(b: &[u8], msg: &mut Message) -> Result<(), ParseError> {
    use HeaderName as H;
    let mut seen_single: u64 = 0;
    let mut have = (false, false, false, false, false); // via, from, to, call-id, cseq
    for h in &msg.headers {
        let v = h.value.get(b);
        if h.name.is_single() {
            let bit = 1u64 << (h.name as u32);
            if seen_single & bit != 0 {
                return Err(ParseError::Duplicate(h.name.as_str()));
            }
            seen_single |= bit;
        }
        match h.name {
            H::Via => {
                for item in split_list(v) {
                    let via = Via::parse(item).map_err(|e: ViaError| header_err(H::Via, e))?;
                    if !have.0 {
                        have.0 = true;
                        msg.core.top_via = span(b, trim_lws(item));
                        msg.core.branch = via.branch().map(|x| span(b, x));
                    }
                }
                if !have.0 {
                    return Err(header_err(H::Via, "empty"));
                }
            }
            H::From | H::To => {
                let a = NameAddr::parse(v).map_err(|e: AddrError| header_err(h.name, e))?;
                let tag = match a.tag_param() {
                    Some(Some(t)) if t.iter().all(|&c| TOKEN[c as usize]) && !t.is_empty() => Some(span(b, t)),
                    Some(_) => return Err(header_err(h.name, "tag must be a token")),
                    None => None,
                };
                if h.name == H::From {
                    have.1 = true;
                    msg.core.from_tag = tag;
                } else {
                    have.2 = true;
                    msg.core.to_tag = tag;
                }
            }
            H::CallId => {
                // callid = word [ "@" word ]
                let id = trim_lws(v);
                let ok = !id.is_empty() && {
                    let mut parts = id.splitn(2, |&c| c == b'@');
                    parts.all(|p| !p.is_empty() && p.iter().all(|&c| WORD[c as usize]))
                };
                if !ok {
                    return Err(header_err(H::CallId, "must be word[@word]"));
                }
                have.3 = true;
                msg.core.call_id = span(b, id);
            }
            H::CSeq => {
                let mut c = Cursor::new(v);
                c.lws();
                let digits = c.take(&DIGITS);
                let n = parse_digits(digits, u32::MAX as u64)
                    .ok_or_else(|| header_err(H::CSeq, "number must be 0 to 2^32-1"))?;
                if !c.lws() {
                    return Err(header_err(H::CSeq, "expected a method after the number"));
                }
                let m = c.token().ok_or_else(|| header_err(H::CSeq, "method is not a token"))?;
                c.lws();
                if !c.at_end() {
                    return Err(header_err(H::CSeq, "unexpected characters after the method"));
                }
                have.4 = true;
                msg.core.cseq = n as u32;
                msg.core.cseq_method = Some(Method::from_bytes(m));
                msg.core.cseq_method_span = span(b, m);
            }
            H::MaxForwards => {
                let n = parse_digits(trim_lws(v), 255).ok_or_else(|| header_err(H::MaxForwards, "must be 0 to 255"))?;
                msg.core.max_forwards = Some(n as u8);
            }
            H::Contact => {
                if is_star(v) {
                    continue;
                }
                for item in split_list(v) {
                    let a = NameAddr::parse(item).map_err(|e| header_err(H::Contact, e))?;
                    for (name, value) in a.params() {
                        if name.eq_ignore_ascii_case(b"q") && !value.is_some_and(valid_qvalue) {
                            return Err(header_err(H::Contact, "bad q value"));
                        }
                        if name.eq_ignore_ascii_case(b"expires")
                            && !value.is_some_and(|x| !x.is_empty() && x.iter().all(u8::is_ascii_digit))
                        {
                            return Err(header_err(H::Contact, "bad expires value"));
                        }
                    }
                }
            }
            H::Route | H::RecordRoute => {
                for item in split_list(v) {
                    let a = NameAddr::parse(item).map_err(|e| header_err(h.name, e))?;
                    if !a.angle {
                        return Err(header_err(h.name, "route URI must be enclosed in <>"));
                    }
                }
            }
            H::Require | H::ProxyRequire | H::Supported | H::Unsupported => {
                for item in split_list(v) {
                    if !is_token(trim_lws(item)) {
                        return Err(header_err(h.name, "option tags must be tokens"));
                    }
                }
            }
            H::ContentType => {
                let mut c = Cursor::new(v);
                c.lws();
                let ok = c.token().is_some() && c.sep(b'/') && c.token().is_some();
                let ok = ok && super::params::read_params(&mut c).is_some() && {
                    c.lws();
                    c.at_end()
                };
                if !ok {
                    return Err(header_err(H::ContentType, "must be type/subtype *(;param)"));
                }
            }
            _ => {}
        }
    }
    if !have.0 {
        return Err(ParseError::Missing("Via"));
    }
    if !have.1 {
        return Err(ParseError::Missing("From"));
    }
    if !have.2 {
        return Err(ParseError::Missing("To"));
    }
    if !have.3 {
        return Err(ParseError::Missing("Call-ID"));
    }
    if !have.4 {
        return Err(ParseError::Missing("CSeq"));
    }
    if let StartLine::Request { method, method_span, .. } = msg.start {
        let cm = msg.core.cseq_method_span.get(b);
        let same = Some(method) == msg.core.cseq_method && (method != Method::Extension || cm == method_span.get(b));
        // ACK and CANCEL carry their own method in CSeq too (RFC 3261 §17.1.1.3, §9.1).
        if !same {
            return Err(ParseError::CSeqMismatch { extension: method == Method::Extension });
        }
    }
    Ok(())
}

static DIGITS: [bool; 256] = {
    let mut t = [false; 256];
    let mut c = b'0';
    while c <= b'9' {
        t[c as usize] = true;
        c += 1;
    }
    t
};

#[cfg(test)]
mod scan_tests {
    use bytes::Bytes;
    use proptest::prelude::*;

    use super::*;

    fn response(headers: &[String]) -> Vec<u8> {
        let mut s = String::from("SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKx\r\n");
        for h in headers {
            s.push_str(h);
            s.push_str("\r\n");
        }
        s.push_str("Content-Length: 0\r\n\r\n");
        s.into_bytes()
    }

    #[test]
    fn unusual_responses_get_no_scan_result() {
        let base = ["From: <sip:a@x>;tag=f".to_string(), "Call-ID: c1".into(), "CSeq: 2 INVITE".into()];
        let with = |extra: &[&str]| {
            let mut h = base.to_vec();
            h.extend(extra.iter().map(|s| s.to_string()));
            scan_dialog_ids(&response(&h)).map(|d| (d.call_id.to_vec(), d.cseq, d.to_tag.map(<[u8]>::to_vec)))
        };
        assert_eq!(with(&["To: <sip:b@x>;tag=t1"]), Some((b"c1".to_vec(), 2, Some(b"t1".to_vec()))));
        assert_eq!(with(&[]), None, "no To");
        assert_eq!(with(&["To: <sip:b@x>;tag=t1", "t: <sip:b@x>;tag=t2"]), None, "two To headers");
        assert_eq!(with(&["To: <sip:b@x>;tag=t1", " ;x=1"]), None, "a folded line");
        assert_eq!(with(&["To: <sip:b@x>;tag="]), None, "an empty tag");
        assert_eq!(with(&["To: <sip:b@x"]), None, "a malformed To");
    }

    proptest! {
        /// Whatever the scan reads agrees with the full parse, for any header order, compact
        /// forms and tags.
        #[test]
        fn the_scan_agrees_with_the_full_parse(
            call_id in "[a-zA-Z0-9.!%*_+`'~()<>:\\\\\"/?{}-]{1,20}(@[a-z0-9.]{1,10})?",
            cseq in any::<u32>(),
            tag in proptest::option::of("[a-zA-Z0-9.!%*_+`'~-]{1,12}"),
            compact in any::<bool>(),
            order in any::<u8>(),
        ) {
            let to = match &tag {
                Some(t) => format!("{}: \"B\" <sip:b@example.com>;tag={t}", if compact { "t" } else { "To" }),
                None => format!("{}: <sip:b@example.com>", if compact { "t" } else { "To" }),
            };
            let mut headers = vec![
                to,
                format!("{}: {call_id}", if compact { "i" } else { "Call-ID" }),
                format!("CSeq: {cseq} INVITE"),
                "From: <sip:a@example.com>;tag=f".to_string(),
            ];
            headers.rotate_left(usize::from(order) % 4);
            let bytes = response(&headers);
            let full = Message::parse(Bytes::from(bytes.clone()), Framing::Datagram).unwrap();
            let ids = scan_dialog_ids(&bytes).unwrap();
            prop_assert_eq!(ids.call_id, full.call_id());
            prop_assert_eq!(ids.cseq, full.cseq());
            prop_assert_eq!(ids.to_tag, full.to_tag());
        }
    }
}
