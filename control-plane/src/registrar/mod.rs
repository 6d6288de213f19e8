//! The registrar (RFC 3261 §10.3), sans-IO.
//!
//! Bindings are kept per address of record (the To user) in memory, where the call path
//! looks them up, and every change comes out as a [`Change`] for storage to persist, so
//! a restarted switch reloads them ([`Registrar::restore`]). Time is an input: seconds
//! of wall-clock time, because bindings outlive the process.

use crate::FastMap as HashMap;

use crate::config::RegistrarConfig;
use crate::sip::message::grammar::{parse_digits, trim_lws};
use crate::sip::message::uri::{unescape, Uri};
use crate::sip::message::{HeaderName, Message, NameAddr};
use crate::sip::transport::Peer;

/// The most contacts one address of record may hold.
pub const MAX_BINDINGS_PER_AOR: usize = 32;

/// One registered contact.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Binding {
    /// The Contact URI as the client wrote it (without angle brackets).
    pub contact: String,
    /// Unix seconds at which the binding lapses.
    pub expires_at: u64,
    /// The Contact's q parameter, as written.
    pub q: Option<String>,
    pub call_id: String,
    pub cseq: u32,
    /// Where the REGISTER came from (its connection, over TCP): requests for this
    /// contact go there when the phone is behind a NAT ([`Binding::target`]).
    pub source: Peer,
    pub user_agent: Option<String>,
    /// The `+sip.instance` contact parameter (RFC 5626), if any.
    pub instance: Option<String>,
}

/// How the registrar tells a phone behind a NAT (`registrar.nat_detection`, or a user's
/// `nat_detection` variable), as FreeSWITCH's `NDLB-received-in-nat-reg` and
/// `aggressive-nat-detection` do.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum NatDetection {
    /// Behind a NAT when the Contact's host is a private or loopback address other than
    /// the REGISTER's source.
    #[default]
    Private,
    /// Behind a NAT whenever the Contact's address and port are not the source's.
    Aggressive,
    /// Always use the source (FreeSWITCH's NDLB-received-in-nat-reg).
    Always,
    /// Always use the Contact.
    Never,
}

impl NatDetection {
    /// The mode a config value names.
    pub fn parse(s: &str) -> Option<NatDetection> {
        Some(match s {
            "private" => NatDetection::Private,
            "aggressive" => NatDetection::Aggressive,
            "always" => NatDetection::Always,
            "never" => NatDetection::Never,
            _ => return None,
        })
    }
}

impl Binding {
    /// Where requests for this contact go. Over TCP the registration's own connection
    /// (the phone's flow, RFC 5626). Over UDP the Contact's address, as FreeSWITCH,
    /// Kamailio and Asterisk do (so a phone registered by a provisioning server, or whose
    /// REGISTER leaves from another port, is reached), unless `nat` says the phone is
    /// behind a NAT: then the REGISTER's source. A Contact with a host name, or of the
    /// other IP family than the source, is reached at the source.
    pub fn target(&self, nat: NatDetection) -> Peer {
        if self.source.transport.is_reliable() {
            return self.source;
        }
        let Some(contact) = contact_address(&self.contact) else { return self.source };
        if contact.is_ipv4() != self.source.local.is_ipv4() {
            return self.source;
        }
        let behind_nat = match nat {
            NatDetection::Always => true,
            NatDetection::Never => false,
            NatDetection::Private => crate::nat::hidden(contact.ip(), self.source.remote.ip()),
            NatDetection::Aggressive => contact != self.source.remote,
        };
        if behind_nat {
            self.source
        } else {
            Peer { remote: contact, ..self.source }
        }
    }
}

/// The IP address and port a Contact URI names (5060 or, for sips, 5061, when it names
/// none); None for a host name.
fn contact_address(contact: &str) -> Option<std::net::SocketAddr> {
    let uri = Uri::parse(contact.as_bytes()).ok()?;
    let host = std::str::from_utf8(uri.host_unbracketed()).ok()?;
    let ip: std::net::IpAddr = host.parse().ok()?;
    let default = if uri.scheme == crate::sip::message::Scheme::Sips { 5061 } else { 5060 };
    Some(std::net::SocketAddr::new(ip, uri.port.unwrap_or(default)))
}

/// A change to persist.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// Insert or replace the binding of `binding.contact` under `aor`.
    Upsert { aor: String, binding: Binding },
    /// Remove one binding.
    Remove { aor: String, contact: String },
}

/// Why a REGISTER was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RegisterError {
    /// An expiry below the minimum: 423 with Min-Expires (RFC 3261 §10.3 step 7).
    #[error("interval too brief (minimum {min_expires} s)")]
    IntervalTooBrief { min_expires: u32 },
    /// `Contact: *` with other contacts or a non-zero Expires (RFC 3261 §10.3 step 6).
    #[error("Contact: * requires Expires: 0 and no other contact")]
    BadWildcard,
    /// A contact whose URI is not sip or sips, or a malformed expires value.
    #[error("bad contact: {0}")]
    BadContact(&'static str),
    /// Same Call-ID with a CSeq not above the stored one (RFC 3261 §10.3 step 7).
    #[error("out-of-order REGISTER (CSeq not above the binding's)")]
    OutOfOrder,
    /// More than [`MAX_BINDINGS_PER_AOR`] contacts.
    #[error("too many contacts for one address of record")]
    TooManyContacts,
}

impl RegisterError {
    /// The status the REGISTER gets.
    pub fn status(&self) -> u16 {
        match self {
            RegisterError::IntervalTooBrief { .. } => 423,
            RegisterError::TooManyContacts => 403,
            _ => 400,
        }
    }
}

/// The outcome of an accepted REGISTER.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Registered {
    /// Every binding of the address of record after the request, for the 200's Contacts.
    pub bindings: Vec<Binding>,
    /// What changed, for storage.
    pub changes: Vec<Change>,
}

/// The bindings of every address of record.
pub struct Registrar {
    config: RegistrarConfig,
    aors: HashMap<String, Vec<Binding>>,
}

/// RFC 3261 §19.1.4 comparison of the parts that identify a contact: scheme, user
/// (unescaped, case-sensitive), host (case-insensitive), port and transport.
pub fn same_contact(a: &str, b: &str) -> bool {
    match (Uri::parse(a.as_bytes()), Uri::parse(b.as_bytes())) {
        (Ok(x), Ok(y)) => {
            let transport = |u: &Uri<'_>| u.param("transport").flatten().map(|t| t.to_ascii_lowercase());
            x.scheme == y.scheme
                && x.user.map(unescape) == y.user.map(unescape)
                && x.host.eq_ignore_ascii_case(y.host)
                && x.port == y.port
                && transport(&x) == transport(&y)
        }
        _ => a == b,
    }
}

impl Registrar {
    pub fn new(config: RegistrarConfig) -> Self {
        Registrar { config, aors: HashMap::default() }
    }

    /// Puts back a binding loaded from storage.
    pub fn restore(&mut self, aor: &str, binding: Binding) {
        let list = self.aors.entry(aor.to_string()).or_default();
        list.retain(|b| !same_contact(&b.contact, &binding.contact));
        list.push(binding);
    }

    /// Unexpired bindings of `aor`, highest q first (then most recent registration).
    pub fn lookup(&self, aor: &str, now_secs: u64) -> Vec<&Binding> {
        let mut v: Vec<&Binding> =
            self.aors.get(aor).map(|l| l.iter().filter(|b| b.expires_at > now_secs).collect()).unwrap_or_default();
        let q = |b: &Binding| b.q.as_deref().and_then(|q| q.parse::<f32>().ok()).unwrap_or(1.0);
        v.sort_by(|a, b| q(b).total_cmp(&q(a)).then(b.expires_at.cmp(&a.expires_at)));
        v
    }

    /// How phones behind a NAT are told (the configured default).
    pub fn nat_detection(&self) -> NatDetection {
        self.config.nat_detection
    }

    /// Every unexpired binding, by address of record (in no particular order).
    pub fn all(&self, now_secs: u64) -> Vec<(&str, &Binding)> {
        self.aors
            .iter()
            .flat_map(|(aor, l)| l.iter().filter(|b| b.expires_at > now_secs).map(move |b| (aor.as_str(), b)))
            .collect()
    }

    /// Number of addresses of record with at least one binding.
    pub fn aor_count(&self) -> usize {
        self.aors.len()
    }

    /// Removes every lapsed binding.
    pub fn purge(&mut self, now_secs: u64) -> Vec<Change> {
        let mut changes = Vec::new();
        self.aors.retain(|aor, list| {
            list.retain(|b| {
                let keep = b.expires_at > now_secs;
                if !keep {
                    changes.push(Change::Remove { aor: aor.clone(), contact: b.contact.clone() });
                }
                keep
            });
            !list.is_empty()
        });
        changes
    }

    /// The earliest instant (unix seconds) a binding lapses.
    pub fn next_expiry(&self) -> Option<u64> {
        self.aors.values().flatten().map(|b| b.expires_at).min()
    }

    /// Applies an authenticated REGISTER for `aor` (RFC 3261 §10.3 steps 6–8). A request
    /// without Contact only queries. The whole request is refused if any contact is.
    pub fn register(
        &mut self,
        now_secs: u64,
        aor: &str,
        req: &Message,
        source: Peer,
    ) -> Result<Registered, RegisterError> {
        let header_expires = req
            .header(HeaderName::Expires)
            .map(|v| parse_digits(trim_lws(v), u64::MAX).ok_or(RegisterError::BadContact("Expires is not a number")))
            .transpose()?;
        let contact_values: Vec<&[u8]> = req.values(HeaderName::Contact).collect();
        let call_id = String::from_utf8_lossy(req.call_id()).into_owned();
        let cseq = req.cseq();
        let mut changes = Vec::new();
        let existing = self.aors.get(aor).map(Vec::as_slice).unwrap_or_default();

        if contact_values.iter().any(|v| trim_lws(v) == b"*") {
            if contact_values.len() != 1 || header_expires != Some(0) {
                return Err(RegisterError::BadWildcard);
            }
            if existing.iter().any(|b| b.call_id == call_id && b.cseq >= cseq) {
                return Err(RegisterError::OutOfOrder);
            }
            for b in self.aors.remove(aor).unwrap_or_default() {
                changes.push(Change::Remove { aor: aor.to_string(), contact: b.contact });
            }
            return Ok(Registered { bindings: Vec::new(), changes });
        }

        // Check every contact before changing anything.
        let user_agent = req.header(HeaderName::UserAgent).map(|v| String::from_utf8_lossy(v).into_owned());
        let mut updates: Vec<(String, u64, Option<String>, Option<String>)> = Vec::new();
        for a in req.contacts() {
            let (contact, expires, q, instance) = self.read_contact(&a, header_expires)?;
            if let Some(b) = existing.iter().find(|b| same_contact(&b.contact, &contact)) {
                if b.call_id == call_id && b.cseq >= cseq {
                    return Err(RegisterError::OutOfOrder);
                }
            }
            updates.push((contact, expires, q, instance));
        }
        let added =
            updates.iter().filter(|(c, e, ..)| *e > 0 && !existing.iter().any(|b| same_contact(&b.contact, c))).count();
        if existing.len() + added > MAX_BINDINGS_PER_AOR {
            return Err(RegisterError::TooManyContacts);
        }
        let list = self.aors.entry(aor.to_string()).or_default();
        for (contact, expires, q, instance) in updates {
            let pos = list.iter().position(|b| same_contact(&b.contact, &contact));
            if expires == 0 {
                if let Some(p) = pos {
                    let b = list.remove(p);
                    changes.push(Change::Remove { aor: aor.to_string(), contact: b.contact });
                }
                continue;
            }
            let binding = Binding {
                contact,
                expires_at: now_secs + expires,
                q,
                call_id: call_id.clone(),
                cseq,
                source,
                user_agent: user_agent.clone(),
                instance,
            };
            match pos {
                Some(p) => list[p] = binding.clone(),
                None => list.push(binding.clone()),
            }
            changes.push(Change::Upsert { aor: aor.to_string(), binding });
        }
        let bindings: Vec<Binding> = list.iter().filter(|b| b.expires_at > now_secs).cloned().collect();
        if list.is_empty() {
            self.aors.remove(aor);
        }
        Ok(Registered { bindings, changes })
    }

    /// A contact's URI, granted expiry, q and instance.
    #[allow(clippy::type_complexity)]
    fn read_contact(
        &self,
        a: &NameAddr<'_>,
        header_expires: Option<u64>,
    ) -> Result<(String, u64, Option<String>, Option<String>), RegisterError> {
        if !a.uri.is_sip() {
            return Err(RegisterError::BadContact("contact URI must be sip or sips"));
        }
        let params = a.params();
        let param_expires = match params.get("expires") {
            None => None,
            Some(v) => Some(
                v.and_then(|v| parse_digits(v, u64::MAX))
                    .ok_or(RegisterError::BadContact("expires is not a number"))?,
            ),
        };
        let asked = param_expires.or(header_expires).unwrap_or(u64::from(self.config.default_expires));
        let expires = if asked == 0 {
            0
        } else if asked < u64::from(self.config.min_expires) {
            return Err(RegisterError::IntervalTooBrief { min_expires: self.config.min_expires });
        } else {
            asked.min(u64::from(self.config.max_expires))
        };
        let text = |v: Option<Option<&[u8]>>| v.flatten().map(|x| String::from_utf8_lossy(x).into_owned());
        Ok((
            String::from_utf8_lossy(a.uri.raw).into_owned(),
            expires,
            text(params.get("q")),
            text(params.get("+sip.instance")),
        ))
    }
}

#[cfg(test)]
mod tests;
