//! Reading `Authorization` / `Proxy-Authorization` values (RFC 7616 §3.4, RFC 3261 §25.1
//! `credentials`): `Digest` followed by comma-separated `name=value` parameters.

use crate::sip::message::grammar::{Cursor, TOKEN};

/// The hash the client used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Algorithm {
    Md5,
    Sha256,
}

impl Algorithm {
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Md5 => "MD5",
            Algorithm::Sha256 => "SHA-256",
        }
    }
}

/// Why a credentials value was not usable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CredentialsError {
    /// The scheme is not Digest (RFC 4475 §3.3.7: such credentials are ignored).
    #[error("not Digest credentials")]
    NotDigest,
    /// A parameter is malformed (not `token = token / quoted-string`).
    #[error("malformed digest parameter")]
    Syntax,
    /// username, realm, nonce, uri or response is missing.
    #[error("missing digest parameter {0}")]
    Missing(&'static str),
    /// The algorithm is neither MD5 nor SHA-256 (the -sess variants are not offered).
    #[error("unsupported digest algorithm")]
    Algorithm,
    /// qop is present but not `auth`, or nc/cnonce are missing or malformed with it.
    #[error("bad qop, nc or cnonce")]
    Qop,
}

/// Digest credentials, borrowing from the header value (quotes removed; values with
/// escaped quotes are refused rather than unescaped).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Credentials<'a> {
    pub username: &'a str,
    pub realm: &'a str,
    pub nonce: &'a str,
    pub uri: &'a str,
    pub response: &'a str,
    pub algorithm: Algorithm,
    /// `Some` when qop=auth, with the nonce-count and client nonce.
    pub qop_auth: Option<(u32, &'a str)>,
    pub opaque: Option<&'a str>,
}

/// Parses one credentials value.
pub fn parse(v: &[u8]) -> Result<Credentials<'_>, CredentialsError> {
    let mut c = Cursor::new(v);
    c.lws();
    let scheme = c.token().ok_or(CredentialsError::Syntax)?;
    if !scheme.eq_ignore_ascii_case(b"Digest") {
        return Err(CredentialsError::NotDigest);
    }
    if !c.lws() {
        return Err(CredentialsError::Syntax);
    }
    let (mut username, mut realm, mut nonce, mut uri, mut response) = (None, None, None, None, None);
    let (mut algorithm, mut qop, mut nc, mut cnonce, mut opaque) = (None, None, None, None, None);
    loop {
        let name = c.take(&TOKEN);
        if name.is_empty() || !c.sep(b'=') {
            return Err(CredentialsError::Syntax);
        }
        let value: &[u8] = if c.peek() == Some(b'"') {
            let q = c.quoted_string().ok_or(CredentialsError::Syntax)?;
            let inner = &q[1..q.len() - 1];
            if inner.contains(&b'\\') {
                return Err(CredentialsError::Syntax);
            }
            inner
        } else {
            let t = c.take(&TOKEN);
            if t.is_empty() {
                return Err(CredentialsError::Syntax);
            }
            t
        };
        let value = std::str::from_utf8(value).map_err(|_| CredentialsError::Syntax)?;
        let slot = match name.to_ascii_lowercase().as_slice() {
            b"username" => &mut username,
            b"realm" => &mut realm,
            b"nonce" => &mut nonce,
            b"uri" => &mut uri,
            b"response" => &mut response,
            b"algorithm" => &mut algorithm,
            b"qop" => &mut qop,
            b"nc" => &mut nc,
            b"cnonce" => &mut cnonce,
            b"opaque" => &mut opaque,
            _ => &mut None,
        };
        *slot = Some(value);
        if !c.sep(b',') {
            break;
        }
    }
    c.lws();
    if !c.at_end() {
        return Err(CredentialsError::Syntax);
    }
    let algorithm = match algorithm {
        None => Algorithm::Md5,
        Some(a) if a.eq_ignore_ascii_case("MD5") => Algorithm::Md5,
        Some(a) if a.eq_ignore_ascii_case("SHA-256") => Algorithm::Sha256,
        Some(_) => return Err(CredentialsError::Algorithm),
    };
    let qop_auth = match qop {
        None => None,
        Some(q) if q.eq_ignore_ascii_case("auth") => {
            let nc = nc
                .filter(|n| n.len() == 8)
                .and_then(|n| u32::from_str_radix(n, 16).ok())
                .ok_or(CredentialsError::Qop)?;
            Some((nc, cnonce.filter(|c| !c.is_empty()).ok_or(CredentialsError::Qop)?))
        }
        Some(_) => return Err(CredentialsError::Qop),
    };
    Ok(Credentials {
        username: username.ok_or(CredentialsError::Missing("username"))?,
        realm: realm.ok_or(CredentialsError::Missing("realm"))?,
        nonce: nonce.ok_or(CredentialsError::Missing("nonce"))?,
        uri: uri.ok_or(CredentialsError::Missing("uri"))?,
        response: response.ok_or(CredentialsError::Missing("response"))?,
        algorithm,
        qop_auth,
        opaque,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_digest_credentials_rfc7616_3_4() {
        let v = b"Digest username=\"1000\", realm=\"example.com\",\r\n nonce=\"abc.def.123\", uri=\"sip:example.com\", response=\"0123abcd\", algorithm=SHA-256, cnonce=\"xyz\", qop=auth, nc=0000000a, opaque=\"op\"";
        let c = parse(v).unwrap();
        assert_eq!(
            c,
            Credentials {
                username: "1000",
                realm: "example.com",
                nonce: "abc.def.123",
                uri: "sip:example.com",
                response: "0123abcd",
                algorithm: Algorithm::Sha256,
                qop_auth: Some((10, "xyz")),
                opaque: Some("op"),
            }
        );
    }

    #[test]
    fn defaults_and_refusals() {
        let c = parse(b"digest username=\"a\",realm=\"r\",nonce=\"n\",uri=\"sip:r\",response=\"x\"").unwrap();
        assert_eq!((c.algorithm, c.qop_auth), (Algorithm::Md5, None));
        assert_eq!(parse(b"NoOneKnowsThisScheme opaque-data=here"), Err(CredentialsError::NotDigest));
        assert_eq!(parse(b"Digest username=\"a\""), Err(CredentialsError::Missing("realm")));
        assert_eq!(parse(b"Digest username=\"a\",,realm=\"r\""), Err(CredentialsError::Syntax));
        assert_eq!(
            parse(b"Digest username=\"a\", realm=\"r\", nonce=\"n\", uri=\"u\", response=\"x\", algorithm=MD5-sess"),
            Err(CredentialsError::Algorithm)
        );
        assert_eq!(parse(b"Digest username=\"a\", realm=\"r\", nonce=\"n\", uri=\"u\", response=\"x\", qop=auth, nc=1, cnonce=\"c\""), Err(CredentialsError::Qop));
        assert_eq!(
            parse(b"Digest username=\"a\", realm=\"r\", nonce=\"n\", uri=\"u\", response=\"x\", qop=auth, nc=00000001"),
            Err(CredentialsError::Qop)
        );
        assert_eq!(parse(b"Digest username=\"a\\\"b\", realm=\"r\""), Err(CredentialsError::Syntax));
    }
}
