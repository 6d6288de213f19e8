//! The Via header (RFC 3261 §20.42, §25.1; RFC 3581 rport).

use super::grammar::{parse_digits, Cursor};
use super::params::{read_params_with, Params};
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
    branch: Option<&'a [u8]>,
    received: Option<&'a [u8]>,
    maddr: Option<&'a [u8]>,
    rport: Option<Option<u16>>,
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
        let (mut branch, mut received, mut maddr, mut rport) = (None, None, None, None);
        // One pass over the parameters, checking and recording the ones RFC 3261 and
        // RFC 3581 define as they are read.
        let params = read_params_with(&mut c, |name, value| {
            let is = |n: &str| name.eq_ignore_ascii_case(n.as_bytes());
            if is("branch") {
                branch = value;
                value.is_some_and(|v| v[0] != b'"')
            } else if is("received") {
                received = value;
                value.is_some_and(is_ip_address)
            } else if is("rport") {
                match value {
                    None => {
                        rport = Some(None);
                        true
                    }
                    Some(v) => match parse_digits(v, 65535) {
                        Some(p) => {
                            rport = Some(Some(p as u16));
                            true
                        }
                        None => false,
                    },
                }
            } else if is("maddr") {
                maddr = value;
                value.is_some_and(|v| v[0] != b'"')
            } else if is("ttl") {
                value.is_some_and(|v| parse_digits(v, 255).is_some())
            } else {
                true
            }
        })
        .ok_or(ViaError::Param)?;
        c.lws();
        if !c.at_end() {
            return Err(ViaError::Trailing);
        }
        Ok(Via { transport, host, port, params, branch, received, maddr, rport })
    }

    pub fn params(&self) -> Params<'a> {
        Params::new(self.params)
    }

    pub fn branch(&self) -> Option<&'a [u8]> {
        self.branch
    }

    pub fn received(&self) -> Option<&'a [u8]> {
        self.received
    }

    pub fn maddr(&self) -> Option<&'a [u8]> {
        self.maddr
    }

    /// `None`: no rport; `Some(None)`: rport requested; `Some(Some(p))`: filled in.
    pub fn rport(&self) -> Option<Option<u16>> {
        self.rport
    }

    /// True if the branch carries RFC 3261's magic cookie and something after it.
    pub fn has_rfc3261_branch(&self) -> bool {
        self.branch().is_some_and(|b| b.len() > 7 && b.starts_with(b"z9hG4bK"))
    }

    pub fn is_reliable(&self) -> bool {
        !self.transport.eq_ignore_ascii_case(b"UDP")
    }
}

/// IPv4address / IPv6address (RFC 3261 §25.1), for `received`. Dotted quads are
/// checked by hand: this runs on every Via of every message.
fn is_ip_address(v: &[u8]) -> bool {
    if v.iter().all(|&c| c.is_ascii_digit() || c == b'.') {
        let mut parts = 0;
        for octet in v.split(|&c| c == b'.') {
            parts += 1;
            if octet.is_empty() || octet.len() > 3 || parse_digits(octet, 255).is_none() {
                return false;
            }
        }
        return parts == 4;
    }
    std::str::from_utf8(strip_brackets(v)).is_ok_and(|s| s.parse::<std::net::Ipv6Addr>().is_ok())
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
        let v = Via::parse(b"  SIP  / 2.0  / TCP     spindle.example.com   ;\r\n  branch  =   z9hG4bK9ikj8  ").unwrap();
        assert_eq!(v.transport, b"TCP");
        assert_eq!(v.host, b"spindle.example.com");
        assert_eq!(v.branch(), Some(&b"z9hG4bK9ikj8"[..]));
        assert!(v.has_rfc3261_branch());
    }

    #[test]
    fn rport_received_and_port_rfc3581() {
        let v = Via::parse(b"SIP/2.0/UDP [2001:db8::9]:5070;rport;branch=z9hG4bKx;received=192.0.2.1").unwrap();
        assert_eq!(v.host, b"[2001:db8::9]");
        assert_eq!(v.port, Some(5070));
        assert_eq!(v.rport(), Some(None));
        assert_eq!(v.received(), Some(&b"192.0.2.1"[..]));
        let v = Via::parse(b"SIP/2.0/UDP h;rport=1234").unwrap();
        assert_eq!(v.rport(), Some(Some(1234)));
        assert!(!Via::parse(b"SIP/2.0/UDP h;branch=z9hG4bK").unwrap().has_rfc3261_branch());
    }

    #[test]
    fn received_must_be_an_ip_address_rfc3261_25_1() {
        for ok in ["192.0.2.1", "0.0.0.0", "255.255.255.255", "2001:db8::1", "[2001:db8::1]", "::1"] {
            assert!(is_ip_address(ok.as_bytes()), "{ok}");
        }
        for bad in ["192.0.2", "192.0.2.256", "1.2.3.4.5", "1..2.3", "", "host", "1234.1.1.1", "::zz"] {
            assert!(!is_ip_address(bad.as_bytes()), "{bad}");
        }
    }

    #[test]
    fn malformed_vias() {
        assert_eq!(Via::parse(b"SIP/2.0/UDP 192.0.2.15;;,;,,").unwrap_err(), ViaError::Param);
        assert_eq!(Via::parse(b"SIP/7.0/UDP c.example.com").unwrap_err(), ViaError::Protocol);
        assert_eq!(Via::parse(b"SIP/2.0/UDP").unwrap_err(), ViaError::SentBy);
        assert_eq!(Via::parse(b"SIP/2.0/UDP h:70000").unwrap_err(), ViaError::SentBy);
        assert_eq!(Via::parse(b"SIP/2.0/UDP h;received=nowhere").unwrap_err(), ViaError::Param);
        assert_eq!(Via::parse(b"SIP/2.0/UDP h;ttl=256").unwrap_err(), ViaError::Param);
        assert_eq!(Via::parse(b"SIP/2.0/UDP h x").unwrap_err(), ViaError::Trailing);
    }
}
