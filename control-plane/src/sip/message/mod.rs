//! SIP messages (RFC 3261 §7, §25).
//!
//! A received buffer is parsed once into [`Message`]: the start line, one [`Header`]
//! per header line (folded lines joined) and the body, all as byte ranges into the
//! buffer, which the message keeps alive (`bytes::Bytes`, so no copy). The headers
//! the transaction layer and the switch rely on (Via, From, To, Call-ID, CSeq,
//! Max-Forwards, Content-Length, Contact, Route, Content-Type, option tags) are checked
//! strictly while parsing; typed views (`Uri`, `NameAddr`, `Via`) are built on demand
//! from the ranges. Serialization ([`write`]) writes into caller-owned, reused buffers.

pub mod addr;
pub mod grammar;
pub mod header;
pub mod params;
mod parse;
pub mod uri;
pub mod via;
pub mod write;

use bytes::Bytes;

pub use addr::NameAddr;
pub use header::HeaderName;
pub use parse::{scan_dialog_ids, DialogIds, Framing, ParseError};
pub use uri::{Scheme, Uri};
pub use via::Via;

/// The default limit on one message, in bytes (also the largest UDP payload).
pub const DEFAULT_MAX_SIZE: usize = 65_535;

/// A byte range in a message buffer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Span {
    pub start: u32,
    pub end: u32,
}

impl Span {
    #[inline]
    pub fn get<'a>(&self, buf: &'a [u8]) -> &'a [u8] {
        &buf[self.start as usize..self.end as usize]
    }
}

/// Request methods. Method names are case-sensitive (RFC 3261 §7.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Method {
    Invite,
    Ack,
    Bye,
    Cancel,
    Register,
    Options,
    Info,
    Update,
    Prack,
    Subscribe,
    Notify,
    Refer,
    Message,
    Publish,
    /// Any other token; compare the bytes ([`Message::method_bytes`]) to tell them apart.
    Extension,
}

impl Method {
    pub fn from_bytes(b: &[u8]) -> Method {
        match b {
            b"INVITE" => Method::Invite,
            b"ACK" => Method::Ack,
            b"BYE" => Method::Bye,
            b"CANCEL" => Method::Cancel,
            b"REGISTER" => Method::Register,
            b"OPTIONS" => Method::Options,
            b"INFO" => Method::Info,
            b"UPDATE" => Method::Update,
            b"PRACK" => Method::Prack,
            b"SUBSCRIBE" => Method::Subscribe,
            b"NOTIFY" => Method::Notify,
            b"REFER" => Method::Refer,
            b"MESSAGE" => Method::Message,
            b"PUBLISH" => Method::Publish,
            _ => Method::Extension,
        }
    }

    /// The method name; empty for extensions.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Invite => "INVITE",
            Method::Ack => "ACK",
            Method::Bye => "BYE",
            Method::Cancel => "CANCEL",
            Method::Register => "REGISTER",
            Method::Options => "OPTIONS",
            Method::Info => "INFO",
            Method::Update => "UPDATE",
            Method::Prack => "PRACK",
            Method::Subscribe => "SUBSCRIBE",
            Method::Notify => "NOTIFY",
            Method::Refer => "REFER",
            Method::Message => "MESSAGE",
            Method::Publish => "PUBLISH",
            Method::Extension => "",
        }
    }
}

/// One header line (or several joined by folding): its name and raw value.
#[derive(Clone, Copy, Debug)]
pub struct Header {
    pub name: HeaderName,
    pub name_span: Span,
    /// The value after the colon and leading white space, folds included.
    pub value: Span,
}

#[derive(Clone, Copy, Debug)]
enum StartLine {
    Request { method: Method, method_span: Span, uri: Span },
    Response { code: u16, reason: Span },
}

/// The facts the transaction layer matches on, extracted during validation.
#[derive(Clone, Copy, Debug, Default)]
struct Core {
    call_id: Span,
    cseq: u32,
    cseq_method: Option<Method>,
    cseq_method_span: Span,
    from_tag: Option<Span>,
    to_tag: Option<Span>,
    top_via: Span,
    branch: Option<Span>,
    max_forwards: Option<u8>,
    content_length: Option<u32>,
}

/// A parsed, validated SIP message that owns (a reference to) its bytes.
#[derive(Clone)]
pub struct Message {
    buf: Bytes,
    start: StartLine,
    headers: Vec<Header>,
    body: Span,
    core: Core,
}

impl std::fmt::Debug for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let end = self.body.start as usize;
        f.debug_struct("Message").field("head", &String::from_utf8_lossy(&self.buf[..end])).finish()
    }
}

impl Message {
    /// Parses and validates one message with the default size limit.
    pub fn parse(buf: Bytes, framing: Framing) -> Result<Message, ParseError> {
        parse::parse(buf, framing, DEFAULT_MAX_SIZE)
    }

    /// Parses and validates one message, refusing any larger than `max_size` bytes.
    pub fn parse_with_limit(buf: Bytes, framing: Framing, max_size: usize) -> Result<Message, ParseError> {
        parse::parse(buf, framing, max_size)
    }

    /// The buffer the message was parsed from (a datagram may hold trailing octets).
    pub fn buffer(&self) -> &Bytes {
        &self.buf
    }

    /// The message itself, from the start line to the end of the body.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.body.end as usize]
    }

    pub fn is_request(&self) -> bool {
        matches!(self.start, StartLine::Request { .. })
    }

    /// The request method, or for a response the method in its CSeq.
    pub fn method(&self) -> Method {
        match self.start {
            StartLine::Request { method, .. } => method,
            StartLine::Response { .. } => self.core.cseq_method.unwrap_or(Method::Extension),
        }
    }

    /// The method name as received (requests), or the CSeq method (responses).
    pub fn method_bytes(&self) -> &[u8] {
        match self.start {
            StartLine::Request { method_span, .. } => method_span.get(&self.buf),
            StartLine::Response { .. } => self.core.cseq_method_span.get(&self.buf),
        }
    }

    /// The Request-URI as written; empty for responses.
    pub fn request_uri_bytes(&self) -> &[u8] {
        match self.start {
            StartLine::Request { uri, .. } => uri.get(&self.buf),
            StartLine::Response { .. } => &[],
        }
    }

    /// The Request-URI; `None` for responses.
    pub fn request_uri(&self) -> Option<Uri<'_>> {
        match self.start {
            StartLine::Request { uri, .. } => {
                Some(Uri::parse(uri.get(&self.buf)).expect("the Request-URI was validated when the message was parsed"))
            }
            StartLine::Response { .. } => None,
        }
    }

    /// The status code; `None` for requests.
    pub fn status(&self) -> Option<u16> {
        match self.start {
            StartLine::Response { code, .. } => Some(code),
            StartLine::Request { .. } => None,
        }
    }

    pub fn reason(&self) -> &[u8] {
        match self.start {
            StartLine::Response { reason, .. } => reason.get(&self.buf),
            StartLine::Request { .. } => &[],
        }
    }

    /// All header lines in order.
    pub fn headers(&self) -> &[Header] {
        &self.headers
    }

    pub fn header_name(&self, h: &Header) -> &[u8] {
        h.name_span.get(&self.buf)
    }

    /// A header's value with surrounding white space trimmed.
    pub fn header_value(&self, h: &Header) -> &[u8] {
        grammar::trim_lws(h.value.get(&self.buf))
    }

    /// The first value of a known header.
    pub fn header(&self, name: HeaderName) -> Option<&[u8]> {
        self.headers.iter().find(|h| h.name == name).map(|h| self.header_value(h))
    }

    /// The first value of any header, by name (case-insensitive, long form).
    pub fn header_named(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|h| h.name_span.get(&self.buf).eq_ignore_ascii_case(name.as_bytes()))
            .map(|h| self.header_value(h))
    }

    /// Every value of a header across all of its lines. A list header (RFC 3261 §7.3.1,
    /// [`HeaderName::is_list`]) is also split at its commas; any other header (such as
    /// WWW-Authenticate, whose parameters hold commas) yields one value per line.
    pub fn values(&self, name: HeaderName) -> impl Iterator<Item = &[u8]> + '_ {
        let list = name.is_list();
        self.headers.iter().filter(move |h| h.name == name).flat_map(move |h| {
            let v = h.value.get(&self.buf);
            let whole = (!list).then(|| grammar::trim_lws(v));
            split_list(if list { v } else { &[] }).chain(whole)
        })
    }

    pub fn call_id(&self) -> &[u8] {
        self.core.call_id.get(&self.buf)
    }

    pub fn cseq(&self) -> u32 {
        self.core.cseq
    }

    pub fn cseq_method(&self) -> Method {
        self.core.cseq_method.unwrap_or(Method::Extension)
    }

    pub fn from_tag(&self) -> Option<&[u8]> {
        self.core.from_tag.map(|s| s.get(&self.buf))
    }

    pub fn to_tag(&self) -> Option<&[u8]> {
        self.core.to_tag.map(|s| s.get(&self.buf))
    }

    pub fn from(&self) -> NameAddr<'_> {
        let v = self.header_raw(HeaderName::From).expect("From was required when the message was parsed");
        NameAddr::parse(v).expect("From was validated when the message was parsed")
    }

    pub fn to(&self) -> NameAddr<'_> {
        let v = self.header_raw(HeaderName::To).expect("To was required when the message was parsed");
        NameAddr::parse(v).expect("To was validated when the message was parsed")
    }

    fn header_raw(&self, name: HeaderName) -> Option<&[u8]> {
        self.headers.iter().find(|h| h.name == name).map(|h| h.value.get(&self.buf))
    }

    /// The topmost Via value as written.
    pub fn top_via_bytes(&self) -> &[u8] {
        self.core.top_via.get(&self.buf)
    }

    pub fn top_via(&self) -> Via<'_> {
        Via::parse(self.top_via_bytes()).expect("Via was validated when the message was parsed")
    }

    /// Every Via, top first.
    pub fn vias(&self) -> impl Iterator<Item = Via<'_>> + '_ {
        self.values(HeaderName::Via).map(|v| Via::parse(v).expect("Via was validated when the message was parsed"))
    }

    /// The top Via's branch parameter.
    pub fn branch(&self) -> Option<&[u8]> {
        self.core.branch.map(|s| s.get(&self.buf))
    }

    pub fn max_forwards(&self) -> Option<u8> {
        self.core.max_forwards
    }

    pub fn content_length(&self) -> Option<u32> {
        self.core.content_length
    }

    /// Contact addresses (empty for `Contact: *`).
    pub fn contacts(&self) -> impl Iterator<Item = NameAddr<'_>> + '_ {
        self.values(HeaderName::Contact)
            .filter(|v| !addr::is_star(v))
            .map(|v| NameAddr::parse(v).expect("Contact was validated when the message was parsed"))
    }

    pub fn body(&self) -> &[u8] {
        self.body.get(&self.buf)
    }
}

/// Splits a list header value on commas outside quoted strings and angle brackets,
/// trimming white space around each element and skipping empty ones.
pub fn split_list(v: &[u8]) -> impl Iterator<Item = &[u8]> {
    // Most values hold no comma at all: then the value is the one element.
    let single = grammar::find(b',', v).is_none();
    let mut rest = if single { &[][..] } else { v };
    let mut whole = if single { Some(grammar::trim_lws(v)).filter(|t| !t.is_empty()) } else { None };
    std::iter::from_fn(move || loop {
        if let Some(w) = whole.take() {
            return Some(w);
        }
        if rest.is_empty() {
            return None;
        }
        let mut i = 0;
        let mut quoted = false;
        let mut angle = false;
        while i < rest.len() {
            match rest[i] {
                b'\\' if quoted => i += 1,
                b'"' if !angle => quoted = !quoted,
                b'<' if !quoted => angle = true,
                b'>' if !quoted => angle = false,
                b',' if !quoted && !angle => break,
                _ => {}
            }
            i += 1;
        }
        let i = i.min(rest.len());
        let item = grammar::trim_lws(&rest[..i]);
        rest = if i < rest.len() { &rest[i + 1..] } else { &[] };
        if !item.is_empty() {
            return Some(item);
        }
    })
}
