//! Bridge dial strings: `[{var=val,...}]endpoint[,endpoint...][|endpoint...]`.
//!
//! `|` separates groups tried in sequence (the next only if the previous failed); `,`
//! separates endpoints of one group, rung at once (the first to answer wins). `{...}`
//! at the very start sets variables on every leg; `[...]` before an endpoint sets
//! variables on that leg only. Values may be wrapped in single quotes to hold `,`.

use std::fmt;

use super::Variables;

/// A parsed bridge dial string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DialString {
    vars: Variables,
    groups: Vec<Vec<Leg>>,
}

/// One endpoint of a dial string, with its own `[...]` variables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leg {
    vars: Variables,
    endpoint: Endpoint,
}

/// Where a leg goes.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Endpoint {
    /// `user/<id>[@domain]`: a user of the directory, at its registered contacts.
    User {
        /// The user id, e.g. `1001`.
        id: String,
        /// The domain after `@`, if given.
        domain: Option<String>,
    },
    /// `sofia/<profile>/<sip-uri>`: a SIP URI through a sofia profile.
    Sofia {
        /// The profile name, e.g. `internal`.
        profile: String,
        /// The URI as written, e.g. `1001@192.0.2.1:5060` or `sip:bob@example.com`.
        uri: String,
    },
    /// `sofia/gateway/<name>/<number>`: a number through a configured gateway.
    Gateway {
        /// The gateway name.
        gateway: String,
        /// The number to dial through it.
        number: String,
    },
    /// `error/<cause>`: fail at once with a hangup cause, e.g. `USER_BUSY`.
    Error {
        /// The cause name or number, as written.
        cause: String,
    },
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::User { id, domain: None } => write!(f, "user/{id}"),
            Endpoint::User { id, domain: Some(d) } => write!(f, "user/{id}@{d}"),
            Endpoint::Sofia { profile, uri } => write!(f, "sofia/{profile}/{uri}"),
            Endpoint::Gateway { gateway, number } => write!(f, "sofia/gateway/{gateway}/{number}"),
            Endpoint::Error { cause } => write!(f, "error/{cause}"),
        }
    }
}

/// Why a dial string could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DialStringError {
    /// The dial string is empty or blank.
    #[error("empty dial string: expected e.g. user/1001")]
    Empty,
    /// A group or an endpoint between separators (or at either end) is empty.
    #[error("empty endpoint at byte {at}: expected an endpoint between separators")]
    EmptyEndpoint {
        /// Byte offset of the empty part.
        at: usize,
    },
    /// A `{`, `[` or `'` is never closed.
    #[error("unclosed {open} opened at byte {at}")]
    Unclosed {
        /// The opening character.
        open: char,
        /// Its byte offset.
        at: usize,
    },
    /// A variable inside `{...}` or `[...]` is not `name=value`.
    #[error("bad variable \"{item}\": expected name=value")]
    BadVariable {
        /// The offending item.
        item: String,
    },
    /// `{...}` appears somewhere other than the start of the dial string.
    #[error("{{...}} variables are only allowed at the start of the dial string (found at byte {at}); use [...] for one endpoint")]
    MisplacedGlobals {
        /// Byte offset of the `{`.
        at: usize,
    },
    /// The endpoint's kind is not one that can be dialled.
    #[error("unknown endpoint \"{endpoint}\": expected user/<id>[@domain], sofia/<profile>/<uri>, sofia/gateway/<name>/<number> or error/<cause>")]
    UnknownEndpoint {
        /// The endpoint as written.
        endpoint: String,
    },
    /// The endpoint's kind is known but a part is missing or malformed.
    #[error("malformed endpoint \"{endpoint}\": expected {expected}")]
    MalformedEndpoint {
        /// The endpoint as written.
        endpoint: String,
        /// The form it should have.
        expected: &'static str,
    },
}

impl DialString {
    /// Parses a dial string.
    pub fn parse(s: &str) -> Result<DialString, DialStringError> {
        if s.trim().is_empty() {
            return Err(DialStringError::Empty);
        }
        let lead = s.len() - s.trim_start().len();
        let (vars, body_start) = if s[lead..].starts_with('{') {
            let close = closing(s, lead, '}')?;
            (parse_vars(&s[lead + 1..close])?, close + 1)
        } else {
            (Variables::new(), 0)
        };
        let mut groups = Vec::new();
        for (gat, group) in split_top(s, body_start, s.len(), '|')? {
            let mut legs = Vec::new();
            for (eat, part) in split_top(s, gat, gat + group.len(), ',')? {
                legs.push(parse_leg(s, eat, part)?);
            }
            groups.push(legs);
        }
        Ok(DialString { vars, groups })
    }

    /// The `{...}` variables, set on every leg.
    pub fn vars(&self) -> &Variables {
        &self.vars
    }

    /// The groups, tried in sequence (`|`); the legs of one group ring at once (`,`).
    pub fn groups(&self) -> &[Vec<Leg>] {
        &self.groups
    }
}

impl Leg {
    /// This leg's `[...]` variables.
    pub fn vars(&self) -> &Variables {
        &self.vars
    }

    /// Where this leg goes.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }
}

/// The byte offset of the `close` matching the opener at `open_at`, skipping quoted text.
fn closing(s: &str, open_at: usize, close: char) -> Result<usize, DialStringError> {
    let open = s[open_at..].chars().next().unwrap_or(close);
    let mut quote: Option<usize> = None;
    for (i, c) in s[open_at + 1..].char_indices() {
        let at = open_at + 1 + i;
        match (c, quote) {
            (c, None) if c == close => return Ok(at),
            ('\'', None) => quote = Some(at),
            ('\'', Some(_)) => quote = None,
            _ => {}
        }
    }
    match quote {
        Some(at) => Err(DialStringError::Unclosed { open: '\'', at }),
        None => Err(DialStringError::Unclosed { open, at: open_at }),
    }
}

/// Splits `s[from..to]` at `sep` outside `[...]` and quotes; yields (offset, part).
fn split_top(s: &str, from: usize, to: usize, sep: char) -> Result<Vec<(usize, &str)>, DialStringError> {
    let mut parts = Vec::new();
    let mut start = from;
    let mut i = from;
    while i < to {
        let c = s[i..].chars().next().unwrap_or(sep);
        match c {
            '[' => i = closing(s, i, ']')?,
            '\'' => i = closing(s, i, '\'')?,
            c if c == sep => {
                parts.push((start, &s[start..i]));
                start = i + c.len_utf8();
            }
            _ => {}
        }
        i += s[i..].chars().next().map_or(1, char::len_utf8);
    }
    parts.push((start, &s[start..to]));
    Ok(parts)
}

fn parse_leg(s: &str, at: usize, part: &str) -> Result<Leg, DialStringError> {
    let lead = part.len() - part.trim_start().len();
    let at = at + lead;
    let part = part.trim();
    if part.is_empty() {
        return Err(DialStringError::EmptyEndpoint { at });
    }
    if part.starts_with('{') {
        return Err(DialStringError::MisplacedGlobals { at });
    }
    let (vars, endpoint) = if part.starts_with('[') {
        let close = closing(s, at, ']')? - at;
        (parse_vars(&part[1..close])?, part[close + 1..].trim_start())
    } else {
        (Variables::new(), part)
    };
    if endpoint.is_empty() {
        return Err(DialStringError::EmptyEndpoint { at: at + part.len() });
    }
    Ok(Leg { vars, endpoint: parse_endpoint(endpoint)? })
}

/// `name=value,name='a,b'` → variables.
fn parse_vars(inner: &str) -> Result<Variables, DialStringError> {
    let mut vars = Variables::new();
    if inner.trim().is_empty() {
        return Ok(vars);
    }
    for (_, item) in split_top(inner, 0, inner.len(), ',')? {
        let bad = || DialStringError::BadVariable { item: item.to_string() };
        let (name, value) = item.split_once('=').ok_or_else(bad)?;
        let name = name.trim();
        if name.is_empty() || name.contains(|c: char| c.is_whitespace() || "[]{}'".contains(c)) {
            return Err(bad());
        }
        let value = value.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')).unwrap_or(value);
        vars.set(name, value);
    }
    Ok(vars)
}

fn parse_endpoint(e: &str) -> Result<Endpoint, DialStringError> {
    let malformed = |expected: &'static str| DialStringError::MalformedEndpoint { endpoint: e.to_string(), expected };
    if e.contains(|c: char| c.is_whitespace() || "[]{}'".contains(c)) {
        return Err(malformed("no spaces, brackets, braces or quotes inside an endpoint"));
    }
    let nonempty = |s: &str| !s.is_empty();
    let (kind, rest) = e.split_once('/').ok_or_else(|| DialStringError::UnknownEndpoint { endpoint: e.to_string() })?;
    match kind {
        "user" => {
            const FORM: &str = "user/<id>[@domain]";
            let (id, domain) = match rest.split_once('@') {
                Some((id, d)) => (id, Some(d)),
                None => (rest, None),
            };
            if !nonempty(id) || id.contains('/') || domain.is_some_and(|d| d.is_empty() || d.contains(['/', '@'])) {
                return Err(malformed(FORM));
            }
            Ok(Endpoint::User { id: id.to_string(), domain: domain.map(str::to_string) })
        }
        "sofia" => match rest.strip_prefix("gateway/") {
            Some(gw) => {
                const FORM: &str = "sofia/gateway/<name>/<number>";
                let (gateway, number) = gw.split_once('/').ok_or_else(|| malformed(FORM))?;
                if !nonempty(gateway) || !nonempty(number) {
                    return Err(malformed(FORM));
                }
                Ok(Endpoint::Gateway { gateway: gateway.to_string(), number: number.to_string() })
            }
            None => {
                const FORM: &str = "sofia/<profile>/<sip-uri>";
                let (profile, uri) = rest.split_once('/').ok_or_else(|| malformed(FORM))?;
                if !nonempty(profile) || !nonempty(uri) || profile == "gateway" {
                    return Err(malformed(FORM));
                }
                Ok(Endpoint::Sofia { profile: profile.to_string(), uri: uri.to_string() })
            }
        },
        "error" => {
            if !nonempty(rest) || !rest.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(malformed("error/<CAUSE>, e.g. error/USER_BUSY"));
            }
            Ok(Endpoint::Error { cause: rest.to_string() })
        }
        _ => Err(DialStringError::UnknownEndpoint { endpoint: e.to_string() }),
    }
}
