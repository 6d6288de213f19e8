//! Sans-IO HTTP/1.1 for the management endpoint: a strict request-head parser
//! ([`parse_request_head`]), the routing of a head to a [`Resource`] ([`route`]) and the
//! encoding of a [`Response`]. No sockets here, so all of it is tested on byte strings.

use memchr::memmem;

/// The most bytes a request line and its headers may take, final CRLF CRLF included.
pub const MAX_HEAD: usize = 8 * 1024;

/// The CDRs `GET /cdr` returns without `?limit=`.
pub const DEFAULT_CDR_LIMIT: u32 = 100;

/// The largest `?limit=` `GET /cdr` accepts.
pub const MAX_CDR_LIMIT: u32 = 10_000;

/// Why a request head was refused (or, for [`HttpError::Incomplete`], not yet parsed).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HttpError {
    /// The bytes so far hold no complete head (no CRLF CRLF yet): read more.
    #[error("incomplete request head")]
    Incomplete,
    /// No CRLF CRLF within the first [`MAX_HEAD`] bytes.
    #[error("request line and headers exceed {limit} bytes")]
    TooLarge {
        /// The limit, [`MAX_HEAD`].
        limit: usize,
    },
    /// The request line is not `METHOD SP /target SP HTTP/x.y`.
    #[error("malformed request line: expected `METHOD /path HTTP/1.1`")]
    RequestLine,
    /// The version is well formed but neither HTTP/1.0 nor HTTP/1.1.
    #[error("HTTP version {0} is not supported: use HTTP/1.1")]
    Version(String),
    /// A header line is malformed: bare CR or LF, whitespace before the colon, a name
    /// that is not a token, a control character in the value, or a folded line.
    #[error("malformed header on line {line}")]
    Header {
        /// The line of the head, the request line being line 1.
        line: usize,
    },
    /// An HTTP/1.1 request without exactly one Host header (RFC 9112 section 3.2).
    #[error("an HTTP/1.1 request needs exactly one Host header")]
    Host,
    /// The request announces a body (Transfer-Encoding, or a Content-Length other than
    /// 0); this endpoint takes none.
    #[error("a request body is not accepted")]
    Body,
}

impl HttpError {
    /// The status to answer with: 431 when too large, 505 for another version, else 400.
    pub fn status(&self) -> u16 {
        match self {
            HttpError::TooLarge { .. } => 431,
            HttpError::Version(_) => 505,
            _ => 400,
        }
    }
}

/// The HTTP version of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// HTTP/1.0.
    Http10,
    /// HTTP/1.1.
    Http11,
}

/// A parsed request line and headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHead {
    /// The method, case-sensitive as sent (`GET`).
    pub method: String,
    /// The path of the target, before any `?`.
    pub path: String,
    /// What follows the `?` of the target, if there is one.
    pub query: Option<String>,
    /// The HTTP version.
    pub version: Version,
    /// The headers in order, names as sent.
    pub headers: Vec<(String, String)>,
    /// How many bytes of the input the head took, final CRLF CRLF included.
    pub len: usize,
}

impl RequestHead {
    /// The value of the first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// Parses the request head at the start of `buf`: [`HttpError::Incomplete`] until `buf`
/// holds a CRLF CRLF, [`HttpError::TooLarge`] when none is within [`MAX_HEAD`] bytes.
/// Bytes after the head are not looked at.
pub fn parse_request_head(buf: &[u8]) -> Result<RequestHead, HttpError> {
    let window = &buf[..buf.len().min(MAX_HEAD)];
    let Some(end) = memmem::find(window, b"\r\n\r\n") else {
        return Err(if buf.len() >= MAX_HEAD {
            HttpError::TooLarge { limit: MAX_HEAD }
        } else {
            HttpError::Incomplete
        });
    };
    // Every line of `window[..end + 2]` ends in CRLF; a bare LF shows as a line without
    // its CR, a bare CR fails the character checks below.
    let mut lines = window[..end + 2].split_inclusive(|&b| b == b'\n').map(|l| l.strip_suffix(b"\r\n"));
    let request_line = lines.next().flatten().ok_or(HttpError::RequestLine)?;
    let (method, path, query, version) = parse_request_line(request_line)?;

    let mut headers = Vec::new();
    for (i, line) in lines.enumerate() {
        let bad = HttpError::Header { line: i + 2 };
        headers.push(line.and_then(parse_header).ok_or(bad)?);
    }
    let head = RequestHead { method, path, query, version, headers, len: end + 4 };
    check_framing(&head)?;
    Ok(head)
}

fn parse_request_line(line: &[u8]) -> Result<(String, String, Option<String>, Version), HttpError> {
    let mut parts = line.split(|&b| b == b' ');
    let (Some(method), Some(target), Some(version), None) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(HttpError::RequestLine);
    };
    if method.is_empty() || !method.iter().all(|&b| is_tchar(b)) {
        return Err(HttpError::RequestLine);
    }
    if target.first() != Some(&b'/') || !target.iter().all(|&b| (0x21..=0x7e).contains(&b)) {
        return Err(HttpError::RequestLine);
    }
    let version = match version {
        b"HTTP/1.1" => Version::Http11,
        b"HTTP/1.0" => Version::Http10,
        [b'H', b'T', b'T', b'P', b'/', major, b'.', minor] if major.is_ascii_digit() && minor.is_ascii_digit() => {
            return Err(HttpError::Version(ascii(version)));
        }
        _ => return Err(HttpError::RequestLine),
    };
    let target = ascii(target);
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p.to_string(), Some(q.to_string())),
        None => (target, None),
    };
    Ok((ascii(method), path, query, version))
}

fn parse_header(line: &[u8]) -> Option<(String, String)> {
    let colon = memchr::memchr(b':', line)?;
    let (name, value) = (&line[..colon], &line[colon + 1..]);
    // Also rejects a folded line (leading SP/HTAB) and whitespace before the colon.
    if name.is_empty() || !name.iter().all(|&b| is_tchar(b)) {
        return None;
    }
    let value = value.trim_ascii();
    if !value.iter().all(|&b| b == b' ' || b == b'\t' || (0x21..=0x7e).contains(&b) || b >= 0x80) {
        return None;
    }
    Some((ascii(name), String::from_utf8_lossy(value).into_owned()))
}

fn check_framing(head: &RequestHead) -> Result<(), HttpError> {
    let mut hosts = 0;
    for (name, value) in &head.headers {
        if name.eq_ignore_ascii_case("host") {
            hosts += 1;
        } else if name.eq_ignore_ascii_case("transfer-encoding")
            || (name.eq_ignore_ascii_case("content-length") && value != "0")
        {
            return Err(HttpError::Body);
        }
    }
    match (head.version, hosts) {
        (Version::Http11, 1) | (Version::Http10, 0 | 1) => Ok(()),
        _ => Err(HttpError::Host),
    }
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Bytes already checked to be ASCII.
fn ascii(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// What a well-formed request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource {
    /// `GET /registrations`: the unexpired bindings.
    Registrations,
    /// `GET /dialogs`: the SIP dialogs.
    Dialogs,
    /// `GET /channels`: the live channels.
    Channels,
    /// `GET /calls`: the bridged calls.
    Calls,
    /// `GET /media/sessions`: the sessions the media plane holds (asked of it).
    MediaSessions,
    /// `GET /media/status`: the supervisor's state and the ring counters (back-pressure).
    MediaStatus,
    /// `GET /metrics`: the counters, in Prometheus' text format.
    Metrics,
    /// `GET /cdr?limit=N`: the `limit` most recent CDRs.
    Cdr {
        /// How many, 1 to [`MAX_CDR_LIMIT`] ([`DEFAULT_CDR_LIMIT`] when not given).
        limit: u32,
    },
}

/// Maps a head to what it asks for, or to the error response: 404 for an unknown path,
/// 405 (with `Allow: GET`) for another method on a known one, 400 for a bad query.
pub fn route(head: &RequestHead) -> Result<Resource, Response> {
    let resource = match head.path.as_str() {
        "/registrations" => Resource::Registrations,
        "/dialogs" => Resource::Dialogs,
        "/channels" => Resource::Channels,
        "/calls" => Resource::Calls,
        "/cdr" => Resource::Cdr { limit: DEFAULT_CDR_LIMIT },
        "/media/sessions" => Resource::MediaSessions,
        "/media/status" => Resource::MediaStatus,
        "/metrics" => Resource::Metrics,
        other => return Err(Response::error(404, &format!("no resource at {other}"))),
    };
    if head.method != "GET" {
        return Err(Response::error(405, &format!("{} is not allowed here: use GET", head.method)));
    }
    let query = head.query.as_deref().filter(|q| !q.is_empty());
    match (resource, query) {
        (r, None) => Ok(r),
        (Resource::Cdr { .. }, Some(q)) => {
            let limit = q
                .strip_prefix("limit=")
                .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|n| n.parse::<u32>().ok())
                .filter(|n| (1..=MAX_CDR_LIMIT).contains(n))
                .ok_or_else(|| {
                    Response::error(400, &format!("bad query {q:?}: expected limit=N with N from 1 to {MAX_CDR_LIMIT}"))
                })?;
            Ok(Resource::Cdr { limit })
        }
        (_, Some(q)) => Err(Response::error(400, &format!("{} takes no query, got {q:?}", head.path))),
    }
}

/// A response: always JSON, always `Connection: close`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// The body: JSON, or Prometheus' text format for `/metrics`.
    pub body: Vec<u8>,
    /// The body's Content-Type.
    pub content_type: &'static str,
}

impl Response {
    /// A 200 with `body` (already JSON).
    pub fn ok(body: Vec<u8>) -> Response {
        Response { status: 200, body, content_type: "application/json" }
    }

    /// A 200 with `body` in Prometheus' text exposition format.
    pub fn metrics(body: String) -> Response {
        Response { status: 200, body: body.into_bytes(), content_type: "text/plain; version=0.0.4; charset=utf-8" }
    }

    /// An error status with `{"error": message}` as the body.
    pub fn error(status: u16, message: &str) -> Response {
        let body = serde_json::json!({ "error": message }).to_string().into_bytes();
        Response { status, body, content_type: "application/json" }
    }

    /// The status line, headers and body as sent.
    pub fn to_bytes(&self) -> Vec<u8> {
        let allow = if self.status == 405 { "Allow: GET\r\n" } else { "" };
        let mut out = format!(
            "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\n{allow}Connection: close\r\n\r\n",
            self.status,
            reason(self.status),
            self.content_type,
            self.body.len()
        )
        .into_bytes();
        out.extend_from_slice(&self.body);
        out
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        505 => "HTTP Version Not Supported",
        _ => "",
    }
}
