//! Randomness as an input (STYLE.md §2): tags, branches, Call-IDs and nonces come from a
//! SHA-256 counter-mode generator keyed once, from the OS at start or by a test seed.

use sha2::{Digest, Sha256};

/// A deterministic, seedable generator of unpredictable identifiers.
#[derive(Clone)]
pub struct IdGen {
    key: [u8; 32],
    counter: u64,
    pool: [u8; 32],
    used: usize,
}

impl IdGen {
    /// Keyed by a seed: the same seed gives the same identifiers (tests).
    pub fn from_seed(seed: u64) -> Self {
        let key: [u8; 32] = Sha256::digest(seed.to_le_bytes()).into();
        IdGen { key, counter: 0, pool: [0; 32], used: 32 }
    }

    /// Keyed from the operating system's randomness.
    pub fn from_os() -> std::io::Result<Self> {
        let mut key = [0u8; 32];
        use std::io::Read;
        std::fs::File::open("/dev/urandom")?.read_exact(&mut key)?;
        Ok(IdGen { key, counter: 0, pool: [0; 32], used: 32 })
    }

    pub fn fill(&mut self, out: &mut [u8]) {
        for b in out {
            if self.used == self.pool.len() {
                let mut h = Sha256::new();
                h.update(self.key);
                h.update(self.counter.to_le_bytes());
                self.pool = h.finalize().into();
                self.counter += 1;
                self.used = 0;
            }
            *b = self.pool[self.used];
            self.used += 1;
        }
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut b = [0u8; 8];
        self.fill(&mut b);
        u64::from_le_bytes(b)
    }

    /// `n` random bytes as lowercase hex (a token, usable as tag, branch suffix or nonce).
    pub fn hex(&mut self, n: usize) -> String {
        let mut bytes = vec![0u8; n];
        self.fill(&mut bytes);
        hex(&bytes)
    }

    /// A secret key derived from this generator (for signing nonces).
    pub fn key(&mut self) -> [u8; 32] {
        let mut k = [0u8; 32];
        self.fill(&mut k);
        k
    }
}

pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_ids_different_seed_different_ids() {
        let mut a = IdGen::from_seed(7);
        let mut b = IdGen::from_seed(7);
        let mut c = IdGen::from_seed(8);
        let (x, y, z) = (a.hex(8), b.hex(8), c.hex(8));
        assert_eq!(x, y);
        assert_ne!(x, z);
        assert_eq!(x.len(), 16);
        assert_ne!(a.hex(8), x, "successive ids differ");
    }
}
