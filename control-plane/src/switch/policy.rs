//! What the switch supports, and the RFC 3261 §8.2 checks every request goes through
//! before its method is looked at: method (405/501), Request-URI scheme (416),
//! extensions (420), content (415, 406), hop count (483).

use crate::sip::message::grammar::trim_lws;
use crate::sip::message::{HeaderName, Message, Method, Scheme};

/// Methods the switch handles (the Allow header).
pub const ALLOWED: &[Method] = &[
    Method::Invite,
    Method::Ack,
    Method::Bye,
    Method::Cancel,
    Method::Options,
    Method::Register,
    Method::Info,
    Method::Update,
];
/// The Allow header value.
pub const ALLOW: &str = "INVITE, ACK, BYE, CANCEL, OPTIONS, REGISTER, INFO, UPDATE";
/// Body types the switch understands (the Accept header).
pub const ACCEPT: &str = "application/sdp";
/// Option tags the switch supports (the Supported header): none beyond the base spec yet.
pub const SUPPORTED: &[&str] = &[];

/// A request refused before method handling: status, reason, and what to tell the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// 501: unknown method; the response carries Allow.
    NotImplemented,
    /// 405: known method the switch does not handle; the response carries Allow.
    NotAllowed,
    /// 416: the Request-URI scheme is not sip or sips.
    UnsupportedScheme,
    /// 420: option tags in Require / Proxy-Require that the switch does not support.
    BadExtension(Vec<String>),
    /// 415: a body of a type the switch cannot read; the response carries Accept.
    UnsupportedMediaType,
    /// 406: the client accepts no body type the switch can answer with.
    NotAcceptable,
    /// 483: Max-Forwards is 0 on a request the switch would have to forward.
    TooManyHops,
}

impl Refusal {
    pub fn status(&self) -> u16 {
        match self {
            Refusal::NotImplemented => 501,
            Refusal::NotAllowed => 405,
            Refusal::UnsupportedScheme => 416,
            Refusal::BadExtension(_) => 420,
            Refusal::UnsupportedMediaType => 415,
            Refusal::NotAcceptable => 406,
            Refusal::TooManyHops => 483,
        }
    }
}

/// Runs the checks in RFC 3261 §8.2 order. ACK and CANCEL skip the extension and
/// content checks (§8.2.2.3, §9.2).
pub fn check(req: &Message) -> Result<(), Refusal> {
    let method = req.method();
    if method == Method::Extension {
        return Err(Refusal::NotImplemented);
    }
    if !ALLOWED.contains(&method) {
        return Err(Refusal::NotAllowed);
    }
    if !matches!(req.request_uri().map(|u| u.scheme), Some(Scheme::Sip | Scheme::Sips)) {
        return Err(Refusal::UnsupportedScheme);
    }
    if matches!(method, Method::Ack | Method::Cancel) {
        return Ok(());
    }
    let unsupported: Vec<String> = req
        .values(HeaderName::Require)
        .chain(req.values(HeaderName::ProxyRequire))
        .map(trim_lws)
        .filter(|tag| !SUPPORTED.iter().any(|s| s.as_bytes().eq_ignore_ascii_case(tag)))
        .map(|t| String::from_utf8_lossy(t).into_owned())
        .collect();
    if !unsupported.is_empty() {
        return Err(Refusal::BadExtension(unsupported));
    }
    // Only offers (INVITE, UPDATE) carry bodies the switch reads; INFO and others are
    // relayed to the other leg with whatever body they have.
    if matches!(method, Method::Invite | Method::Update) && !req.body().is_empty() {
        let sdp = req.header(HeaderName::ContentType).is_some_and(|ct| {
            let media = ct.split(|&c| c == b';').next().map(trim_lws).unwrap_or_default();
            media.eq_ignore_ascii_case(b"application/sdp")
        });
        if !sdp {
            return Err(Refusal::UnsupportedMediaType);
        }
    }
    if method == Method::Invite {
        if req.headers().iter().any(|h| h.name == HeaderName::Accept) && !accepts_sdp(req) {
            return Err(Refusal::NotAcceptable);
        }
        if req.max_forwards() == Some(0) {
            return Err(Refusal::TooManyHops);
        }
    }
    Ok(())
}

fn accepts_sdp(req: &Message) -> bool {
    req.values(HeaderName::Accept).any(|v| {
        let media = trim_lws(v.split(|&c| c == b';').next().unwrap_or_default());
        [&b"application/sdp"[..], b"application/*", b"*/*"].iter().any(|m| media.eq_ignore_ascii_case(m))
    })
}
