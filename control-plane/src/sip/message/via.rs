//! The Via header (RFC 3261 §20.42, §25.1; RFC 3581 rport).

use super::grammar::{parse_digits, Cursor};
use super::params::{read_params, Params};
use super::uri::{split_host, strip_brackets};

/// Why a Via value was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ViaError {
    /// `sent-protocol` is not `SIP / 2.0 / transport`.
    #[error("sent-protocol must be SIP/2.0/<transport>")]
    Protocol,
    /// `sent-by` is not a host with an optional port.
    #[error("bad sent-by")]
    SentBy,
    /// A via-param is malformed (empty, or a bad received/ttl/rport/maddr value).
    #[error("bad via parameter")]
    Param,
    /// Characters after the last parameter.
    #[error("unexpected characters")]
    Trailing,
}

/// One Via value.
#[derive(Clone, Copy, Debug)]
pub struct Via<'a> {
    /// UDP, TCP, TLS, SCTP, WS, or any other token.
    pub transport: &'a [u8],
    pub host: &'a [u8],
    pub port: Option<u16>,
    params: &'a [u8],
}

impl<'a> Via<'a> {
    pub fn parse(v: &'a [u8]) -> Result<Via<'a>, ViaError> {
        let mut c = Cursor::new(v);
        c.lws();
        let name = c.token().ok_or(ViaError::Protocol)?;
        if !name.eq_ignore_ascii_case(b"SIP") || !c.sep(b'/') {
            return Err(ViaError::Protocol);
        }
        if c.token() != Some(b"2.0") || !c.sep(b'/') {
            return Err(ViaError::Protocol);
        }
        let transport = c.token().ok_or(ViaError::Protocol)?;
        if !c.lws() {
            return Err(ViaError::SentBy);
        }
        let (host, after) = split_host(c.rest()).map_err(|_| ViaError::SentBy)?;
        c.i += host.len();
        let _ = after;
        let mut port = None;
        if c.sep(b':') {
            let digits = c.take(&DIGIT);
            port = Some(parse_digits(digits, 65535).ok_or(ViaError::SentBy)? as u16);
        }
        let params = read_params(&mut c).ok_or(ViaError::Param)?;
        c.lws();
        if !c.at_end() {
            return Err(ViaError::Trailing);
        }
        let via = Via {
            transport,
            host,
            port,
            params,
        };
        via.check_params()?;
        Ok(via)
    }

    fn check_params(&self) -> Result<(), ViaError> {
        for (name, value) in self.params() {
            let ok = if name.eq_ignore_ascii_case(b"received") {
                value.is_some_and(|v| {
                    std::str::from_utf8(strip_brackets(v))
                        .is_ok_and(|s| s.parse::<std::net::IpAddr>().is_ok())
                })
            } else if name.eq_ignore_ascii_case(b"ttl") {
                value.is_some_and(|v| parse_digits(v, 255).is_some())
            } else if name.eq_ignore_ascii_case(b"rport") {
                value.is_none_or(|v| parse_digits(v, 65535).is_some())
            } else if name.eq_ignore_ascii_case(b"branch") || name.eq_ignore_ascii_case(b"maddr") {
                value.is_some_and(|v| !v.is_empty() && v[0] != b'"')
            } else {
                true
            };
            if !ok {
                return Err(ViaError::Param);
            }
        }
        Ok(())
    }

    pub fn params(&self) -> Params<'a> {
        Params::new(self.params)
    }

    pub fn branch(&self) -> Option<&'a [u8]> {
        self.params().get("branch").flatten()
    }

    pub fn received(&self) -> Option<&'a [u8]> {
        self.params().get("received").flatten()
    }

    pub fn maddr(&self) -> Option<&'a [u8]> {
        self.params().get("maddr").flatten()
    }

    /// `None`: no rport; `Some(None)`: rport requested; `Some(Some(p))`: filled in.
    pub fn rport(&self) -> Option<Option<u16>> {
        self.params()
            .get("rport")
            .map(|v| v.and_then(|v| parse_digits(v, 65535).map(|p| p as u16)))
    }

    /// True if the branch carries RFC 3261's magic cookie and something after it.
    pub fn has_rfc3261_branch(&self) -> bool {
        self.branch()
            .is_some_and(|b| b.len() > 7 && b.starts_with(b"z9hG4bK"))
    }

    pub fn is_reliable(&self) -> bool {
        !self.transport.eq_ignore_ascii_case(b"UDP")
    }
}

static DIGIT: [bool; 256] = {
    let mut t = [false; 256];
    let mut c = b'0';
    while c <= b'9' {
        t[c as usize] = true;
        c += 1;
    }
    t
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn via_with_folded_lws_everywhere_rfc4475_3_1_1_1() {
        let v = Via::parse(b"SIP  /   2.0\r\n /UDP\r\n    192.0.2.2;branch=390skdjuw").unwrap();
        assert_eq!(v.transport, b"UDP");
        assert_eq!(v.host, b"192.0.2.2");
        assert_eq!(v.branch(), Some(&b"390skdjuw"[..]));
        assert!(!v.has_rfc3261_branch());
        let v = Via::parse(
            b"  SIP  / 2.0  / TCP     spindle.example.com   ;\r\n  branch  =   z9hG4bK9ikj8  ",
        )
        .unwrap();
        assert_eq!(v.transport, b"TCP");
        assert_eq!(v.host, b"spindle.example.com");
        assert_eq!(v.branch(), Some(&b"z9hG4bK9ikj8"[..]));
        assert!(v.has_rfc3261_branch());
    }

    #[test]
    fn rport_received_and_port_rfc3581() {
        let v =
            Via::parse(b"SIP/2.0/UDP [2001:db8::9]:5070;rport;branch=z9hG4bKx;received=192.0.2.1")
                .unwrap();
        assert_eq!(v.host, b"[2001:db8::9]");
        assert_eq!(v.port, Some(5070));
        assert_eq!(v.rport(), Some(None));
        assert_eq!(v.received(), Some(&b"192.0.2.1"[..]));
        let v = Via::parse(b"SIP/2.0/UDP h;rport=1234").unwrap();
        assert_eq!(v.rport(), Some(Some(1234)));
        assert!(!Via::parse(b"SIP/2.0/UDP h;branch=z9hG4bK")
            .unwrap()
            .has_rfc3261_branch());
    }

    #[test]
    fn malformed_vias() {
        assert_eq!(
            Via::parse(b"SIP/2.0/UDP 192.0.2.15;;,;,,").unwrap_err(),
            ViaError::Param
        );
        assert_eq!(
            Via::parse(b"SIP/7.0/UDP c.example.com").unwrap_err(),
            ViaError::Protocol
        );
        assert_eq!(Via::parse(b"SIP/2.0/UDP").unwrap_err(), ViaError::SentBy);
        assert_eq!(
            Via::parse(b"SIP/2.0/UDP h:70000").unwrap_err(),
            ViaError::SentBy
        );
        assert_eq!(
            Via::parse(b"SIP/2.0/UDP h;received=nowhere").unwrap_err(),
            ViaError::Param
        );
        assert_eq!(
            Via::parse(b"SIP/2.0/UDP h;ttl=256").unwrap_err(),
            ViaError::Param
        );
        assert_eq!(
            Via::parse(b"SIP/2.0/UDP h x").unwrap_err(),
            ViaError::Trailing
        );
    }
}
