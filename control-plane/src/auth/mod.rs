//! Digest authentication (RFC 3261 §22, RFC 7616 with SHA-256 and MD5, qop=auth), sans-IO.
//!
//! A request without credentials, or with ones that do not verify, gets a challenge built
//! by [`challenge::Challenger`]; credentials are read by [`credentials`] and checked by
//! [`Authenticator`], which also refuses replayed nonce-counts. An unknown user and a
//! wrong password get exactly the same answer, so nobody can enumerate extensions.
//! A failed response burns its nonce, and [`guard`] counts failures per source and per
//! user: a guesser is slowed, then banned.

pub mod challenge;
pub mod credentials;
pub mod guard;
mod verify;

pub use challenge::{Challenger, NonceCheck};
pub use credentials::{Algorithm, Credentials, CredentialsError};
pub use verify::{AuthOutcome, Authenticator, Failure, Secret};
