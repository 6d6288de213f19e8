//! Checking digest credentials against the directory (RFC 7616 §3.4.1), with
//! nonce-count replay protection (RFC 7616 §3.4, `nc`). A nonce that carried a wrong
//! response is burnt: nothing is accepted with it again, so each guess costs a new
//! challenge (and each failure is reported, for [`super::guard`] to count).

use crate::FastMap as HashMap;

use md5::Md5;
use sha2::{Digest, Sha256};

use super::challenge::{Challenger, NonceCheck};
use super::credentials::{self, Algorithm, Credentials};
use crate::ids::hex;

/// What the directory holds for a user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Secret {
    /// The clear password.
    Password(String),
    /// Precomputed H(username:realm:password), lower-case hex, per algorithm; a request
    /// using an algorithm without an entry does not verify.
    Ha1 { md5: Option<String>, sha256: Option<String> },
}

/// The verdict on a request's credentials.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AuthOutcome {
    /// Valid credentials for this user id.
    Authenticated { user: String },
    /// Challenge (again). `stale` when the credentials were right but the nonce expired,
    /// so the client retries without asking its user (RFC 7616 §3.3). Nothing failed:
    /// no usable credentials (the first request), or a nonce from before a restart.
    Challenge { stale: bool },
    /// Credentials that did not verify: a failure to count. Challenged again (with a new
    /// nonce: this one is burnt).
    Failed {
        /// The user the credentials named.
        user: String,
        /// Why.
        reason: Failure,
    },
}

/// Why credentials failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// A wrong response: a wrong password, or a user the directory does not have (the
    /// same to the client, so extensions cannot be enumerated).
    WrongPassword,
    /// A nonce that was burnt by an earlier failure, or a nonce-count seen before.
    Replayed,
}

impl Failure {
    /// The word the log line carries (`reason=`).
    pub fn as_str(self) -> &'static str {
        match self {
            Failure::WrongPassword => "wrong-password",
            Failure::Replayed => "replayed-nonce",
        }
    }
}

/// The nonce-count marking a nonce burnt by a failure.
const BURNT: u32 = u32::MAX;

/// Verifies credentials and remembers the nonce-counts already used.
pub struct Authenticator {
    challenger: Challenger,
    /// The algorithms offered, in order of preference; credentials using another are ignored.
    algorithms: Vec<Algorithm>,
    /// nonce → (highest nc accepted, issue time).
    seen: HashMap<String, (u32, u64)>,
    last_purge: u64,
}

fn h(alg: Algorithm, parts: &[&str]) -> String {
    fn run<D: Digest>(parts: &[&str]) -> String {
        let mut d = D::new();
        for (i, p) in parts.iter().enumerate() {
            if i > 0 {
                d.update(b":");
            }
            d.update(p.as_bytes());
        }
        hex(&d.finalize())
    }
    match alg {
        Algorithm::Md5 => run::<Md5>(parts),
        Algorithm::Sha256 => run::<Sha256>(parts),
    }
}

/// Compares without an early exit, so timing does not leak how much matched.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Authenticator {
    pub fn new(challenger: Challenger, algorithms: Vec<Algorithm>) -> Self {
        Authenticator { challenger, algorithms, seen: HashMap::default(), last_purge: 0 }
    }

    /// The algorithms offered, most preferred first.
    pub fn algorithms(&self) -> &[Algorithm] {
        &self.algorithms
    }

    pub fn challenger(&self) -> &Challenger {
        &self.challenger
    }

    /// Nonces whose count is being tracked (for tests and metrics).
    pub fn tracked_nonces(&self) -> usize {
        self.seen.len()
    }

    /// The expected `response` for these credentials and secret, or `None` when the
    /// secret has no HA1 for the credentials' algorithm.
    pub fn expected_response(c: &Credentials<'_>, method: &str, secret: &Secret) -> Option<String> {
        let ha1 = match (secret, c.algorithm) {
            (Secret::Password(p), alg) => h(alg, &[c.username, c.realm, p]),
            (Secret::Ha1 { md5: Some(x), .. }, Algorithm::Md5) => x.to_ascii_lowercase(),
            (Secret::Ha1 { sha256: Some(x), .. }, Algorithm::Sha256) => x.to_ascii_lowercase(),
            (Secret::Ha1 { .. }, _) => return None,
        };
        let ha2 = h(c.algorithm, &[method, c.uri]);
        Some(match c.qop_auth {
            Some((nc, cnonce)) => h(c.algorithm, &[&ha1, c.nonce, &format!("{nc:08x}"), cnonce, "auth", &ha2]),
            None => h(c.algorithm, &[&ha1, c.nonce, &ha2]),
        })
    }

    /// Checks the credentials values of a request (`Authorization` or
    /// `Proxy-Authorization`, possibly several) for `realm`. `lookup` finds a user's
    /// secret; an unknown user and a wrong password get the same answer.
    pub fn check<'a>(
        &mut self,
        now_secs: u64,
        method: &str,
        realm: &str,
        values: impl IntoIterator<Item = &'a [u8]>,
        lookup: impl Fn(&str) -> Option<Secret>,
    ) -> AuthOutcome {
        self.purge(now_secs);
        // Credentials for another realm, or of another scheme, are ignored (RFC 4475 §3.3.7).
        let Some(c) = values
            .into_iter()
            .filter_map(|v| credentials::parse(v).ok())
            .find(|c| c.realm == realm && self.algorithms.contains(&c.algorithm))
        else {
            return AuthOutcome::Challenge { stale: false };
        };
        let nonce = self.challenger.check(c.nonce, now_secs);
        if nonce == NonceCheck::Invalid {
            return AuthOutcome::Challenge { stale: false };
        }
        let failed = |reason| AuthOutcome::Failed { user: c.username.to_string(), reason };
        if self.seen.get(c.nonce).is_some_and(|(nc, _)| *nc == BURNT) {
            return failed(Failure::Replayed);
        }
        let issued = c.nonce.split('.').next().and_then(|t| u64::from_str_radix(t, 16).ok()).unwrap_or(now_secs);
        let expected = lookup(c.username).and_then(|secret| Self::expected_response(&c, method, &secret));
        if !expected.is_some_and(|e| same(&e, &c.response.to_ascii_lowercase())) {
            // Burnt: the next guess needs another challenge. A stale nonce has expired
            // anyway; it is not kept.
            if nonce == NonceCheck::Fresh {
                self.seen.insert(c.nonce.to_string(), (BURNT, issued));
            }
            return failed(Failure::WrongPassword);
        }
        if nonce == NonceCheck::Stale {
            return AuthOutcome::Challenge { stale: true };
        }
        if let Some((nc, _)) = c.qop_auth {
            let entry = self.seen.entry(c.nonce.to_string()).or_insert((0, issued));
            if nc <= entry.0 {
                // A replayed (or reordered) nonce-count.
                return failed(Failure::Replayed);
            }
            entry.0 = nc;
        }
        AuthOutcome::Authenticated { user: c.username.to_string() }
    }

    fn purge(&mut self, now_secs: u64) {
        if now_secs == self.last_purge {
            return;
        }
        self.last_purge = now_secs;
        let lifetime = self.challenger.lifetime_secs;
        self.seen.retain(|_, (_, issued)| *issued + lifetime >= now_secs);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::IdGen;

    fn setup() -> (Authenticator, IdGen) {
        let mut ids = IdGen::from_seed(9);
        let a = Authenticator::new(Challenger::new(&mut ids), vec![Algorithm::Md5, Algorithm::Sha256]);
        (a, ids)
    }

    fn credentials(user: &str, realm: &str, nonce: &str, alg: Algorithm, nc: u32, password: &str) -> String {
        let c = Credentials {
            username: user,
            realm,
            nonce,
            uri: "sip:example.com",
            response: "",
            algorithm: alg,
            qop_auth: Some((nc, "0a4f113b")),
            opaque: None,
        };
        let response = Authenticator::expected_response(&c, "REGISTER", &Secret::Password(password.into())).unwrap();
        format!(
            "Digest username=\"{user}\", realm=\"{realm}\", nonce=\"{nonce}\", uri=\"sip:example.com\", response=\"{response}\", algorithm={}, qop=auth, nc={nc:08x}, cnonce=\"0a4f113b\"",
            alg.name()
        )
    }

    fn lookup(user: &str) -> Option<Secret> {
        (user == "1000").then(|| Secret::Password("1234".into()))
    }

    #[test]
    fn rfc7616_3_9_1_md5_and_sha256_example_responses() {
        // RFC 7616 §3.9.1: Mufasa / "Circle of Life" against http-auth@example.org.
        let mut c = Credentials {
            username: "Mufasa",
            realm: "http-auth@example.org",
            nonce: "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",
            uri: "/dir/index.html",
            response: "",
            algorithm: Algorithm::Md5,
            qop_auth: Some((1, "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ")),
            opaque: None,
        };
        let secret = Secret::Password("Circle of Life".into());
        assert_eq!(Authenticator::expected_response(&c, "GET", &secret).unwrap(), "8ca523f5e9506fed4657c9700eebdbec");
        c.algorithm = Algorithm::Sha256;
        assert_eq!(
            Authenticator::expected_response(&c, "GET", &secret).unwrap(),
            "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"
        );
    }

    #[test]
    fn valid_credentials_authenticate_with_either_algorithm() {
        let (mut a, mut ids) = setup();
        for alg in [Algorithm::Md5, Algorithm::Sha256] {
            let nonce = a.challenger().nonce(100, &mut ids);
            let v = credentials("1000", "example.com", &nonce, alg, 1, "1234");
            assert_eq!(
                a.check(100, "REGISTER", "example.com", [v.as_bytes()], lookup),
                AuthOutcome::Authenticated { user: "1000".into() }
            );
        }
    }

    #[test]
    fn unknown_user_and_wrong_password_get_the_same_answer() {
        let (mut a, mut ids) = setup();
        let (n1, n2) = (a.challenger().nonce(100, &mut ids), a.challenger().nonce(100, &mut ids));
        let wrong = credentials("1000", "example.com", &n1, Algorithm::Md5, 1, "nope");
        let unknown = credentials("9999", "example.com", &n2, Algorithm::Md5, 1, "1234");
        let w = a.check(100, "REGISTER", "example.com", [wrong.as_bytes()], lookup);
        let u = a.check(100, "REGISTER", "example.com", [unknown.as_bytes()], lookup);
        assert_eq!(w, AuthOutcome::Failed { user: "1000".into(), reason: Failure::WrongPassword });
        assert_eq!(u, AuthOutcome::Failed { user: "9999".into(), reason: Failure::WrongPassword });
    }

    #[test]
    fn a_wrong_response_burns_its_nonce_so_every_guess_needs_a_new_challenge() {
        let (mut a, mut ids) = setup();
        let nonce = a.challenger().nonce(100, &mut ids);
        let guess = credentials("1000", "example.com", &nonce, Algorithm::Md5, 1, "0000");
        assert!(matches!(
            a.check(100, "REGISTER", "example.com", [guess.as_bytes()], lookup),
            AuthOutcome::Failed { .. }
        ));
        // Even the right password is refused with that nonce now.
        let right = credentials("1000", "example.com", &nonce, Algorithm::Md5, 2, "1234");
        assert_eq!(
            a.check(100, "REGISTER", "example.com", [right.as_bytes()], lookup),
            AuthOutcome::Failed { user: "1000".into(), reason: Failure::Replayed }
        );
        // A fresh nonce works.
        let fresh = a.challenger().nonce(100, &mut ids);
        let right = credentials("1000", "example.com", &fresh, Algorithm::Md5, 1, "1234");
        assert!(matches!(
            a.check(100, "REGISTER", "example.com", [right.as_bytes()], lookup),
            AuthOutcome::Authenticated { .. }
        ));
    }

    #[test]
    fn replayed_nonce_count_is_refused_rfc7616_3_4() {
        let (mut a, mut ids) = setup();
        let nonce = a.challenger().nonce(100, &mut ids);
        let first = credentials("1000", "example.com", &nonce, Algorithm::Md5, 1, "1234");
        let second = credentials("1000", "example.com", &nonce, Algorithm::Md5, 2, "1234");
        assert!(matches!(
            a.check(100, "REGISTER", "example.com", [first.as_bytes()], lookup),
            AuthOutcome::Authenticated { .. }
        ));
        assert_eq!(
            a.check(101, "REGISTER", "example.com", [first.as_bytes()], lookup),
            AuthOutcome::Failed { user: "1000".into(), reason: Failure::Replayed }
        );
        assert!(matches!(
            a.check(102, "REGISTER", "example.com", [second.as_bytes()], lookup),
            AuthOutcome::Authenticated { .. }
        ));
        assert_eq!(a.tracked_nonces(), 1);
        // Once the nonce's lifetime has passed it is forgotten (and would be stale anyway).
        let _ = a.check(100 + 301, "REGISTER", "example.com", std::iter::empty::<&[u8]>(), lookup);
        assert_eq!(a.tracked_nonces(), 0);
    }

    #[test]
    fn expired_nonce_with_right_password_is_stale_rfc7616_3_3() {
        let (mut a, mut ids) = setup();
        let nonce = a.challenger().nonce(100, &mut ids);
        let v = credentials("1000", "example.com", &nonce, Algorithm::Md5, 1, "1234");
        assert_eq!(
            a.check(401, "REGISTER", "example.com", [v.as_bytes()], lookup),
            AuthOutcome::Challenge { stale: true }
        );
        let wrong = credentials("1000", "example.com", &nonce, Algorithm::Md5, 1, "bad");
        assert_eq!(
            a.check(401, "REGISTER", "example.com", [wrong.as_bytes()], lookup),
            AuthOutcome::Failed { user: "1000".into(), reason: Failure::WrongPassword }
        );
    }

    #[test]
    fn forged_nonce_other_realm_and_other_schemes_are_challenged() {
        let (mut a, mut ids) = setup();
        let forged = credentials(
            "1000",
            "example.com",
            "64.0011223344556677.000000000000000000000000",
            Algorithm::Md5,
            1,
            "1234",
        );
        assert_eq!(
            a.check(100, "REGISTER", "example.com", [forged.as_bytes()], lookup),
            AuthOutcome::Challenge { stale: false }
        );
        let nonce = a.challenger().nonce(100, &mut ids);
        let other_realm = credentials("1000", "elsewhere.net", &nonce, Algorithm::Md5, 1, "1234");
        assert_eq!(
            a.check(100, "REGISTER", "example.com", [other_realm.as_bytes()], lookup),
            AuthOutcome::Challenge { stale: false }
        );
        let odd: &[u8] = b"NoOneKnowsThisScheme opaque-data=here";
        assert_eq!(a.check(100, "REGISTER", "example.com", [odd], lookup), AuthOutcome::Challenge { stale: false });
    }

    #[test]
    fn algorithms_not_offered_are_not_accepted() {
        let mut ids = IdGen::from_seed(3);
        let mut a = Authenticator::new(Challenger::new(&mut ids), vec![Algorithm::Sha256]);
        let nonce = a.challenger().nonce(100, &mut ids);
        let md5 = credentials("1000", "example.com", &nonce, Algorithm::Md5, 1, "1234");
        assert_eq!(
            a.check(100, "REGISTER", "example.com", [md5.as_bytes()], lookup),
            AuthOutcome::Challenge { stale: false }
        );
        let sha = credentials("1000", "example.com", &nonce, Algorithm::Sha256, 2, "1234");
        assert!(matches!(
            a.check(100, "REGISTER", "example.com", [sha.as_bytes()], lookup),
            AuthOutcome::Authenticated { .. }
        ));
    }

    #[test]
    fn precomputed_ha1_verifies_rfc7616_3_4_2() {
        let (mut a, mut ids) = setup();
        let nonce = a.challenger().nonce(100, &mut ids);
        let v = credentials("1000", "example.com", &nonce, Algorithm::Md5, 1, "1234");
        let ha1 = h(Algorithm::Md5, &["1000", "example.com", "1234"]);
        let by_ha1 = |u: &str| (u == "1000").then(|| Secret::Ha1 { md5: Some(ha1.to_uppercase()), sha256: None });
        assert!(matches!(
            a.check(100, "REGISTER", "example.com", [v.as_bytes()], by_ha1),
            AuthOutcome::Authenticated { .. }
        ));
        let v = credentials("1000", "example.com", &nonce, Algorithm::Sha256, 2, "1234");
        assert_eq!(
            a.check(100, "REGISTER", "example.com", [v.as_bytes()], by_ha1),
            AuthOutcome::Failed { user: "1000".into(), reason: Failure::WrongPassword }
        );
    }
}
