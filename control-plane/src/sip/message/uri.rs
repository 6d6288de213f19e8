//! URI views (RFC 3261 §19.1, §25): SIP and SIPS URIs parsed into sub-slices of the
//! original bytes; any other scheme is checked as an RFC 2396 absoluteURI and kept opaque.

use super::grammar::{
    all_in, escaped_run, find, parse_digits, HNVCHAR, HOSTCHAR, PARAMCHAR, PASSWORD, SCHEME, URIC, USER,
};

/// The URI scheme.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheme {
    Sip,
    Sips,
    Tel,
    /// Any other well-formed scheme; the URI is kept but not interpreted.
    Other,
}

/// Why a URI was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UriError {
    /// The scheme is missing or has characters outside ALPHA *(ALPHA / DIGIT / "+" / "-" / ".").
    #[error("bad or missing URI scheme")]
    Scheme,
    /// The user or password part has a character that must be escaped.
    #[error("bad user or password part")]
    UserInfo,
    /// The host is empty or not a hostname, IPv4 address or [IPv6] reference.
    #[error("bad host")]
    Host,
    /// The port is not a number from 0 to 65535.
    #[error("bad port")]
    Port,
    /// A `;name=value` URI parameter is malformed.
    #[error("bad URI parameter")]
    Param,
    /// A `?name=value` URI header is malformed.
    #[error("bad URI header")]
    Header,
    /// A character outside the URI grammar (often white space).
    #[error("character not allowed in a URI")]
    Char,
}

/// A parsed URI borrowing from the message buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Uri<'a> {
    pub raw: &'a [u8],
    pub scheme: Scheme,
    pub user: Option<&'a [u8]>,
    pub password: Option<&'a [u8]>,
    /// Host as written (an IPv6 reference keeps its brackets). Empty for non-SIP schemes.
    pub host: &'a [u8],
    pub port: Option<u16>,
    /// The parameters after the host, without the leading ';' (empty if none).
    pub params: &'a [u8],
    /// The headers after '?', without the '?' (empty if none).
    pub headers: &'a [u8],
}

impl<'a> Uri<'a> {
    pub fn parse(raw: &'a [u8]) -> Result<Uri<'a>, UriError> {
        let colon = find(b':', raw).ok_or(UriError::Scheme)?;
        let scheme_b = &raw[..colon];
        if scheme_b.is_empty() || !scheme_b[0].is_ascii_alphabetic() || !all_in(scheme_b, &SCHEME) {
            return Err(UriError::Scheme);
        }
        let rest = &raw[colon + 1..];
        let scheme = if scheme_b.eq_ignore_ascii_case(b"sip") {
            Scheme::Sip
        } else if scheme_b.eq_ignore_ascii_case(b"sips") {
            Scheme::Sips
        } else if scheme_b.eq_ignore_ascii_case(b"tel") {
            Scheme::Tel
        } else {
            Scheme::Other
        };
        if !matches!(scheme, Scheme::Sip | Scheme::Sips) {
            // absoluteURI = scheme ":" (hier-part / opaque-part); both are runs of uric.
            if rest.is_empty() || !all_in(rest, &URIC) || !escapes_ok(rest) {
                return Err(UriError::Char);
            }
            return Ok(Uri {
                raw,
                scheme,
                user: None,
                password: None,
                host: &[],
                port: None,
                params: &[],
                headers: &[],
            });
        }
        // userinfo ends at '@', which appears nowhere else in a SIP URI.
        let (user, password, hostpart) = match find(b'@', rest) {
            Some(at) => {
                let info = &rest[..at];
                let (u, p) = match find(b':', info) {
                    Some(c) => (&info[..c], Some(&info[c + 1..])),
                    None => (info, None),
                };
                if !escaped_run(u, &USER) {
                    return Err(UriError::UserInfo);
                }
                if let Some(p) = p {
                    if !p.is_empty() && !escaped_run(p, &PASSWORD) {
                        return Err(UriError::UserInfo);
                    }
                }
                (Some(u), p, &rest[at + 1..])
            }
            None => (None, None, rest),
        };
        let (host, after_host) = split_host(hostpart)?;
        let mut i = 0;
        let mut port = None;
        if after_host.first() == Some(&b':') {
            let end = after_host[1..].iter().position(|c| !c.is_ascii_digit()).map_or(after_host.len(), |p| p + 1);
            port = Some(parse_digits(&after_host[1..end], 65535).ok_or(UriError::Port)? as u16);
            i = end;
        }
        let tail = &after_host[i..];
        let (params_part, headers) = match find(b'?', tail) {
            Some(q) => (&tail[..q], Some(&tail[q + 1..])),
            None => (tail, None),
        };
        let params = match params_part.first() {
            None => params_part,
            Some(b';') => &params_part[1..],
            Some(_) => return Err(UriError::Char),
        };
        if !params_part.is_empty() {
            for p in params.split(|&c| c == b';') {
                let (name, value) = match find(b'=', p) {
                    Some(e) => (&p[..e], Some(&p[e + 1..])),
                    None => (p, None),
                };
                if !escaped_run(name, &PARAMCHAR) || value.is_some_and(|v| !escaped_run(v, &PARAMCHAR)) {
                    return Err(UriError::Param);
                }
            }
        }
        if let Some(headers) = headers {
            if headers.is_empty() {
                return Err(UriError::Header);
            }
            for h in headers.split(|&c| c == b'&') {
                let e = find(b'=', h).ok_or(UriError::Header)?;
                let (name, value) = (&h[..e], &h[e + 1..]);
                if !escaped_run(name, &HNVCHAR) || (!value.is_empty() && !escaped_run(value, &HNVCHAR)) {
                    return Err(UriError::Header);
                }
            }
        }
        Ok(Uri { raw, scheme, user, password, host, port, params, headers: headers.unwrap_or_default() })
    }

    pub fn is_sip(&self) -> bool {
        matches!(self.scheme, Scheme::Sip | Scheme::Sips)
    }

    /// A URI parameter: `None` if absent, `Some(None)` if present without a value.
    pub fn param(&self, name: &str) -> Option<Option<&'a [u8]>> {
        if self.params.is_empty() {
            return None;
        }
        self.params.split(|&c| c == b';').find_map(|p| {
            let (n, v) = match find(b'=', p) {
                Some(e) => (&p[..e], Some(&p[e + 1..])),
                None => (p, None),
            };
            n.eq_ignore_ascii_case(name.as_bytes()).then_some(v)
        })
    }

    /// The host without IPv6 brackets.
    pub fn host_unbracketed(&self) -> &'a [u8] {
        strip_brackets(self.host)
    }
}

pub(crate) fn strip_brackets(h: &[u8]) -> &[u8] {
    if h.len() >= 2 && h[0] == b'[' && h[h.len() - 1] == b']' {
        &h[1..h.len() - 1]
    } else {
        h
    }
}

fn escapes_ok(s: &[u8]) -> bool {
    let mut i = 0;
    while let Some(p) = find(b'%', &s[i..]) {
        let at = i + p;
        if at + 2 >= s.len() || !s[at + 1].is_ascii_hexdigit() || !s[at + 2].is_ascii_hexdigit() {
            return false;
        }
        i = at + 3;
    }
    true
}

/// Splits `host` (hostname, IPv4 address or IPv6 reference) off the front of `s`.
/// hostname = *(domainlabel ".") toplabel ["."]; an IPv4 address reads as one.
pub(crate) fn split_host(s: &[u8]) -> Result<(&[u8], &[u8]), UriError> {
    if s.first() == Some(&b'[') {
        let close = find(b']', s).ok_or(UriError::Host)?;
        let inner = std::str::from_utf8(&s[1..close]).map_err(|_| UriError::Host)?;
        inner.parse::<std::net::Ipv6Addr>().map_err(|_| UriError::Host)?;
        return Ok((&s[..=close], &s[close + 1..]));
    }
    // One pass: the host ends at the first non-host character; every label is
    // non-empty and starts and ends with an alphanumeric (a trailing dot is allowed).
    let mut prev = b'.';
    let mut end = 0;
    while end < s.len() {
        let c = s[end];
        match c {
            b'.' if prev.is_ascii_alphanumeric() => {}
            b'-' if prev != b'.' => {}
            c if c.is_ascii_alphanumeric() => {}
            c if HOSTCHAR[c as usize] => return Err(UriError::Host),
            _ => break,
        }
        prev = c;
        end += 1;
    }
    let trailing_dot_ok = prev == b'.' && end > 1 && s[end - 2].is_ascii_alphanumeric();
    if end == 0 || !(prev.is_ascii_alphanumeric() || trailing_dot_ok) {
        return Err(UriError::Host);
    }
    Ok((&s[..end], &s[end..]))
}

/// Decodes %HH escapes (RFC 3261 §19.1.4 comparisons). Invalid escapes stay as written.
pub fn unescape(s: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    if !s.contains(&b'%') {
        return std::borrow::Cow::Borrowed(s);
    }
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'%' && i + 2 < s.len() {
            let hex = |c: u8| (c as char).to_digit(16);
            if let (Some(a), Some(b)) = (hex(s[i + 1]), hex(s[i + 2])) {
                out.push((a * 16 + b) as u8);
                i += 3;
                continue;
            }
        }
        out.push(s[i]);
        i += 1;
    }
    std::borrow::Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sip_uri_parts_rfc3261_19_1_1() {
        let u = Uri::parse(b"sip:alice:secret@[2001:db8::1]:5070;transport=tcp;lr?subject=project&priority=urgent")
            .unwrap();
        assert_eq!(u.scheme, Scheme::Sip);
        assert_eq!(u.user, Some(&b"alice"[..]));
        assert_eq!(u.password, Some(&b"secret"[..]));
        assert_eq!(u.host, b"[2001:db8::1]");
        assert_eq!(u.host_unbracketed(), b"2001:db8::1");
        assert_eq!(u.port, Some(5070));
        assert_eq!(u.param("transport"), Some(Some(&b"tcp"[..])));
        assert_eq!(u.param("LR"), Some(None));
        assert_eq!(u.param("maddr"), None);
        assert_eq!(u.headers, b"subject=project&priority=urgent");
    }

    #[test]
    fn user_part_may_hold_semicolons_rfc4475_3_1_1_9() {
        let u = Uri::parse(b"sip:user;par=u%40example.net@example.com").unwrap();
        assert_eq!(u.user, Some(&b"user;par=u%40example.net"[..]));
        assert_eq!(u.host, b"example.com");
        assert_eq!(u.params, b"");
    }

    #[test]
    fn unusual_userinfo_rfc4475_3_1_1_2() {
        let u = Uri::parse(
            b"sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*:&it+has=1,weird!*pas$wo~d_too.(doesn't-it)@example.com",
        )
        .unwrap();
        assert_eq!(u.user, Some(&b"1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*"[..]));
        assert_eq!(u.password, Some(&b"&it+has=1,weird!*pas$wo~d_too.(doesn't-it)"[..]));
        assert_eq!(u.host, b"example.com");
    }

    #[test]
    fn other_schemes_are_opaque_rfc4475_3_3_2() {
        for raw in
            [&b"nobodyKnowsThisScheme:totallyopaquecontent"[..], b"soap.beep://192.0.2.103:3002", b"isbn:2983792873"]
        {
            let u = Uri::parse(raw).unwrap();
            assert_eq!(u.scheme, Scheme::Other);
            assert!(!u.is_sip());
        }
    }

    #[test]
    fn malformed_uris_are_refused() {
        assert_eq!(Uri::parse(b"<sip:user@example.com>"), Err(UriError::Scheme));
        assert_eq!(Uri::parse(b"sip:user@example.com; lr"), Err(UriError::Param));
        assert_eq!(Uri::parse(b"sip:user@exa mple.com"), Err(UriError::Char));
        assert_eq!(Uri::parse(b"sip:user@example.com:99999"), Err(UriError::Port));
        assert_eq!(Uri::parse(b"sip:us er@example.com"), Err(UriError::UserInfo));
        assert_eq!(Uri::parse(b"sip:@example.com"), Err(UriError::UserInfo));
        assert_eq!(Uri::parse(b"sip:user@"), Err(UriError::Host));
        assert_eq!(Uri::parse(b"sip:user@[::zz]"), Err(UriError::Host));
        assert_eq!(Uri::parse(b"sip:user@host;%zz"), Err(UriError::Param));
        assert_eq!(Uri::parse(b"sip:user@host?"), Err(UriError::Header));
        assert_eq!(Uri::parse(b"sip:user@-host"), Err(UriError::Host));
    }

    #[test]
    fn unescape_decodes_once() {
        assert_eq!(&*unescape(b"%75se%72"), b"user");
        assert_eq!(&*unescape(b"v%61lue%25%34%31"), b"value%41");
        assert_eq!(&*unescape(b"null-%00-null"), b"null-\0-null");
        assert_eq!(&*unescape(b"100%"), b"100%");
    }
}
