//! `name-addr` / `addr-spec` with parameters: From, To, Contact, Route, Record-Route
//! (RFC 3261 §20.10, §25.1).

use super::grammar::{find, is_lws, Cursor, TOKEN};
use super::params::{read_params_with, Params};
use super::uri::{Uri, UriError};

/// Why an address was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AddrError {
    /// An unquoted display name holds a character outside `token` (quote it).
    #[error("display name must be tokens or a quoted string")]
    DisplayName,
    /// A quoted string is not closed.
    #[error("unterminated quoted string")]
    Quote,
    /// '<' without '>', or white space just inside the angle brackets.
    #[error("malformed <URI>")]
    Angle,
    /// A URI outside '<>' holds ',', '?' or ';' (RFC 3261 §20.10 requires the brackets).
    #[error("a URI with ',', '?' or ';' must be enclosed in <>")]
    NeedsAngle,
    /// The URI itself is malformed.
    #[error("URI: {0}")]
    Uri(UriError),
    /// A header parameter is malformed.
    #[error("bad parameter")]
    Param,
    /// Something follows the address and its parameters.
    #[error("unexpected characters after the address")]
    Trailing,
}

/// One address with its header parameters.
#[derive(Clone, Copy, Debug)]
pub struct NameAddr<'a> {
    /// Display name as written: a quoted string keeps its quotes.
    pub display: Option<&'a [u8]>,
    pub uri: Uri<'a>,
    /// Whether the URI was enclosed in '<>'.
    pub angle: bool,
    params: &'a [u8],
    /// The `tag` parameter: absent, present without a value, or with one.
    tag: Option<Option<&'a [u8]>>,
}

impl<'a> NameAddr<'a> {
    pub fn parse(v: &'a [u8]) -> Result<NameAddr<'a>, AddrError> {
        let mut c = Cursor::new(v);
        c.lws();
        let mut display = None;
        let angle;
        if c.peek() == Some(b'"') {
            let q = c.quoted_string().ok_or(AddrError::Quote)?;
            display = Some(q);
            c.lws();
            if c.peek() != Some(b'<') {
                return Err(AddrError::Angle);
            }
            angle = true;
        } else {
            // Either `*(token LWS) <uri>` or a bare addr-spec.
            let lt = find(b'<', c.rest());
            match lt {
                Some(off) => {
                    let dn = &c.rest()[..off];
                    let mut words = Cursor::new(dn);
                    words.lws();
                    while !words.at_end() {
                        if words.token().is_none() {
                            return Err(AddrError::DisplayName);
                        }
                        words.lws();
                    }
                    let dn = super::grammar::trim_lws(dn);
                    if !dn.is_empty() {
                        display = Some(dn);
                    }
                    c.i += off;
                    angle = true;
                }
                None => angle = false,
            }
        }
        let uri;
        if angle {
            c.eat(b'<');
            let rest = c.rest();
            let gt = find(b'>', rest).ok_or(AddrError::Angle)?;
            let raw = &rest[..gt];
            if raw.first().is_some_and(|&b| is_lws(b)) || raw.last().is_some_and(|&b| is_lws(b)) {
                return Err(AddrError::Angle);
            }
            uri = Uri::parse(raw).map_err(AddrError::Uri)?;
            c.i += gt + 1;
        } else {
            let rest = c.rest();
            let end = rest.iter().position(|&b| b == b';' || b == b',' || is_lws(b)).unwrap_or(rest.len());
            let raw = &rest[..end];
            if raw.contains(&b'?') {
                return Err(AddrError::NeedsAngle);
            }
            uri = Uri::parse(raw).map_err(AddrError::Uri)?;
            c.i += end;
        }
        let mut tag = None;
        let params = read_params_with(&mut c, |name, value| {
            if name.eq_ignore_ascii_case(b"tag") {
                tag = Some(value);
            }
            true
        })
        .ok_or(AddrError::Param)?;
        c.lws();
        if !c.at_end() {
            return Err(AddrError::Trailing);
        }
        Ok(NameAddr { display, uri, angle, params, tag })
    }

    pub fn params(&self) -> Params<'a> {
        Params::new(self.params)
    }

    pub fn tag(&self) -> Option<&'a [u8]> {
        self.tag.flatten()
    }

    /// `None` if there is no tag parameter, `Some(None)` if it has no value.
    pub fn tag_param(&self) -> Option<Option<&'a [u8]>> {
        self.tag
    }
}

/// Contact's special value `*` (RFC 3261 §10.2.2).
pub fn is_star(v: &[u8]) -> bool {
    super::grammar::trim_lws(v) == b"*"
}

/// qvalue = ("0" ["." 0*3DIGIT]) / ("1" ["." 0*3("0")])
pub fn valid_qvalue(v: &[u8]) -> bool {
    match v {
        [b'0'] | [b'1'] => true,
        [b'0', b'.', rest @ ..] => rest.len() <= 3 && rest.iter().all(u8::is_ascii_digit),
        [b'1', b'.', rest @ ..] => rest.len() <= 3 && rest.iter().all(|&c| c == b'0'),
        _ => false,
    }
}

/// True if `s` is a valid unquoted display-name word.
pub fn is_token_word(s: &[u8]) -> bool {
    !s.is_empty() && s.iter().all(|&c| TOKEN[c as usize])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_display_name_with_escapes_rfc4475_3_1_1_1() {
        let a = NameAddr::parse(b"\"J Rosenberg \\\\\\\"\"       <sip:jdrosen@example.com>\r\n  ;\r\n  tag = 98asjd8")
            .unwrap();
        assert_eq!(a.display, Some(&b"\"J Rosenberg \\\\\\\"\""[..]));
        assert_eq!(a.uri.host, b"example.com");
        assert_eq!(a.tag(), Some(&b"98asjd8"[..]));
    }

    #[test]
    fn token_display_name_without_lws_before_angle_rfc4475_3_1_1_6() {
        let a = NameAddr::parse(b"caller<sip:caller@example.com>;tag=323").unwrap();
        assert_eq!(a.display, Some(&b"caller"[..]));
        assert_eq!(a.tag(), Some(&b"323"[..]));
    }

    #[test]
    fn addr_spec_params_belong_to_the_header_rfc4475_3_3_12() {
        let a = NameAddr::parse(b"sip:+19725552222@gw1.example.net;unknownparam").unwrap();
        assert!(!a.angle);
        assert_eq!(a.uri.params, b"");
        assert_eq!(a.params().get("unknownparam"), Some(None));
        let b = NameAddr::parse(b"<sip:+19725552222@gw1.example.net;unknownparam>").unwrap();
        assert_eq!(b.uri.param("unknownparam"), Some(None));
        assert_eq!(b.params().get("unknownparam"), None);
    }

    #[test]
    fn malformed_addresses_rfc4475_3_1_2() {
        assert_eq!(NameAddr::parse(b"\"Mr. J. User <sip:j.user@example.com>").unwrap_err(), AddrError::Quote);
        assert_eq!(NameAddr::parse(b"\"Watson, Thomas\" < sip:t.watson@example.org >").unwrap_err(), AddrError::Angle);
        assert_eq!(NameAddr::parse(b"Watson, Thomas <sip:t.watson@example.org>").unwrap_err(), AddrError::DisplayName);
        assert_eq!(
            NameAddr::parse(b"sip:user@example.com?Route=%3Csip:sip.example.com%3E").unwrap_err(),
            AddrError::NeedsAngle
        );
        assert_eq!(NameAddr::parse(b"\"Joe\" <sip:joe@example.org>;;;;").unwrap_err(), AddrError::Param);
        assert!(matches!(NameAddr::parse(b"alan@jasomi.com").unwrap_err(), AddrError::Uri(_)));
        assert_eq!(NameAddr::parse(b"<sip:a@b> junk").unwrap_err(), AddrError::Trailing);
    }

    #[test]
    fn qvalues_rfc3261_25_1() {
        for ok in [&b"0"[..], b"1", b"0.33", b"0.", b"1.000", b"0.999"] {
            assert!(valid_qvalue(ok), "{}", String::from_utf8_lossy(ok));
        }
        for bad in [&b"1.5"[..], b"2", b"0.1234", b"", b".5"] {
            assert!(!valid_qvalue(bad), "{}", String::from_utf8_lossy(bad));
        }
    }
}
