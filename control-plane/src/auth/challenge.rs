//! Digest challenges: stateless nonces (issue time, random part and a MAC) and the
//! WWW-Authenticate / Proxy-Authenticate values that carry them.

use std::fmt::Write as _;

use sha2::{Digest, Sha256};

use super::credentials::Algorithm;
use crate::ids::{hex, IdGen};

/// Creates and checks nonces for digest challenges.
pub struct Challenger {
    key: [u8; 32],
    /// How long a nonce stays valid, in seconds.
    pub lifetime_secs: u64,
}

/// What a received nonce turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NonceCheck {
    /// Issued by this switch and still fresh.
    Fresh,
    /// Issued by this switch but expired: challenge again with `stale=true`.
    Stale,
    /// Not one of ours.
    Invalid,
}

impl Challenger {
    pub fn new(ids: &mut IdGen) -> Self {
        Challenger { key: ids.key(), lifetime_secs: 300 }
    }

    fn mac(&self, issued: u64, random: &str) -> String {
        let mut h = Sha256::new();
        h.update(self.key);
        h.update(issued.to_le_bytes());
        h.update(random.as_bytes());
        hex(&h.finalize()[..12])
    }

    /// A nonce issued at `now_secs` (seconds on the switch's clock).
    pub fn nonce(&self, now_secs: u64, ids: &mut IdGen) -> String {
        let random = ids.hex(8);
        format!("{now_secs:x}.{random}.{}", self.mac(now_secs, &random))
    }

    pub fn check(&self, nonce: &str, now_secs: u64) -> NonceCheck {
        let mut parts = nonce.split('.');
        let (Some(t), Some(r), Some(m), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
            return NonceCheck::Invalid;
        };
        let Ok(issued) = u64::from_str_radix(t, 16) else {
            return NonceCheck::Invalid;
        };
        if self.mac(issued, r) != m || issued > now_secs {
            return NonceCheck::Invalid;
        }
        if now_secs - issued > self.lifetime_secs {
            NonceCheck::Stale
        } else {
            NonceCheck::Fresh
        }
    }

    /// One challenge value per algorithm, in `algorithms` order (the order of
    /// preference, RFC 8760 §2.4), all with the same nonce.
    pub fn challenges(
        &self,
        realm: &str,
        now_secs: u64,
        stale: bool,
        algorithms: &[Algorithm],
        ids: &mut IdGen,
    ) -> Vec<String> {
        let nonce = self.nonce(now_secs, ids);
        let opaque = ids.hex(4);
        algorithms
            .iter()
            .map(|alg| {
                let mut s = String::with_capacity(128);
                let _ = write!(
                    s,
                    "Digest realm=\"{realm}\", nonce=\"{nonce}\", opaque=\"{opaque}\", algorithm={}, qop=\"auth\"",
                    alg.name()
                );
                if stale {
                    s.push_str(", stale=true");
                }
                s
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_nonces_are_fresh_then_stale_forged_ones_invalid() {
        let mut ids = IdGen::from_seed(1);
        let c = Challenger::new(&mut ids);
        let n = c.nonce(1000, &mut ids);
        assert_eq!(c.check(&n, 1000), NonceCheck::Fresh);
        assert_eq!(c.check(&n, 1300), NonceCheck::Fresh);
        assert_eq!(c.check(&n, 1301), NonceCheck::Stale);
        assert_eq!(c.check(&n, 999), NonceCheck::Invalid);
        let forged = n.replacen("3e8", "3e9", 1);
        assert_eq!(c.check(&forged, 1001), NonceCheck::Invalid);
        assert_eq!(c.check("abc", 1), NonceCheck::Invalid);
        let other = Challenger::new(&mut ids);
        assert_eq!(other.check(&n, 1000), NonceCheck::Invalid);
    }

    #[test]
    fn challenges_follow_the_configured_order_rfc8760_2_4() {
        let mut ids = IdGen::from_seed(2);
        let c = Challenger::new(&mut ids);
        let v = c.challenges("example.com", 5, true, &[Algorithm::Sha256, Algorithm::Md5], &mut ids);
        let (a, b) = (&v[0], &v[1]);
        assert!(a.starts_with("Digest realm=\"example.com\", nonce=\""), "{a}");
        assert!(a.ends_with("algorithm=SHA-256, qop=\"auth\", stale=true"), "{a}");
        assert!(b.ends_with("algorithm=MD5, qop=\"auth\", stale=true"), "{b}");
        let nonce = |s: &str| s.split("nonce=\"").nth(1).unwrap().split('"').next().unwrap().to_string();
        assert_eq!(nonce(a), nonce(b));
        assert_eq!(c.check(&nonce(a), 5), NonceCheck::Fresh);
        assert_eq!(c.challenges("r", 5, false, &[Algorithm::Md5], &mut ids).len(), 1);
    }
}
