//! NAT detection, shared by media (an SDP address behind a NAT) and the registrar (a
//! Contact behind one): which addresses a NAT may hide, and whether an address a peer
//! wrote in its message is one the packets cannot come from.

use std::net::IpAddr;

/// Whether a NAT could hide `ip`: private (RFC 1918, RFC 4193), loopback, link-local or
/// shared (RFC 6598) space.
pub fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            v4.is_private() || v4.is_loopback() || v4.is_link_local() || (o[0] == 100 && (o[1] & 0xc0) == 64)
        }
        IpAddr::V6(v6) => {
            let first = v6.segments()[0];
            v6.is_loopback() || (first & 0xfe00) == 0xfc00 || (first & 0xffc0) == 0xfe80
        }
    }
}

/// Whether `written` (an address in a message: SDP, Contact) sits behind a NAT, given
/// that the message came from `source`: it is private and not the source (two loopback
/// addresses are one host, no NAT between them).
pub fn hidden(written: IpAddr, source: IpAddr) -> bool {
    written != source && is_private(written) && !(written.is_loopback() && source.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn private_addresses_other_than_the_source_are_behind_a_nat() {
        for private in ["10.1.2.3", "172.16.0.9", "192.168.1.5", "100.64.0.1", "169.254.1.1", "fd00::5", "fe80::1"] {
            assert!(hidden(ip(private), ip("203.0.113.7")), "{private}");
            assert!(!hidden(ip(private), ip(private)), "{private} is the source");
        }
        assert!(!hidden(ip("198.51.100.4"), ip("203.0.113.7")), "a public address is reachable");
        assert!(!hidden(ip("127.0.0.2"), ip("127.0.0.1")), "one host");
        assert!(!is_private(ip("100.128.0.1")), "just past RFC 6598");
    }
}
