//! Header parameters: `*( SEMI generic-param )` as used by From, To, Contact, Via,
//! Route and Content-Type (RFC 3261 §25.1, `generic-param`).

use super::grammar::{Cursor, TOKEN};

/// Characters of `host` that are not token characters, so `gen-value = token / host /
/// quoted-string` can be read as one run.
static GEN_VALUE: [bool; 256] = {
    let mut t = TOKEN;
    t[b'[' as usize] = true;
    t[b']' as usize] = true;
    t[b':' as usize] = true;
    t
};

/// Reads `*( SEMI generic-param )` from the cursor, handing each `(name, value)` to
/// `each` as it is read (a quoted value keeps its quotes); `each` returns false to
/// refuse one. Returns the raw slice holding the parameters (starting after the first
/// ';'), or `None` if one is malformed or refused.
pub fn read_params_with<'a>(
    c: &mut Cursor<'a>,
    mut each: impl FnMut(&'a [u8], Option<&'a [u8]>) -> bool,
) -> Option<&'a [u8]> {
    let mut start = None;
    while c.sep(b';') {
        if start.is_none() {
            start = Some(c.i);
        }
        let name = c.token()?;
        let mut value = None;
        if c.sep(b'=') {
            let v = if c.peek() == Some(b'"') { c.quoted_string()? } else { c.take(&GEN_VALUE) };
            if v.is_empty() {
                return None;
            }
            value = Some(v);
        }
        if !each(name, value) {
            return None;
        }
    }
    Some(match start {
        Some(s) => &c.b[s..c.i],
        None => &c.b[c.i..c.i],
    })
}

/// [`read_params_with`] accepting every well-formed parameter.
pub fn read_params<'a>(c: &mut Cursor<'a>) -> Option<&'a [u8]> {
    read_params_with(c, |_, _| true)
}

/// Iterates over a raw parameter list as produced by [`read_params`]: yields
/// `(name, value)` with LWS trimmed and quotes kept on quoted values.
#[derive(Clone)]
pub struct Params<'a> {
    rest: &'a [u8],
}

impl<'a> Params<'a> {
    pub fn new(raw: &'a [u8]) -> Self {
        Params { rest: raw }
    }

    /// `None` if absent, `Some(None)` for a flag parameter, `Some(Some(v))` otherwise.
    pub fn get(&self, name: &str) -> Option<Option<&'a [u8]>> {
        self.clone().find(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes())).map(|(_, v)| v)
    }
}

impl<'a> Iterator for Params<'a> {
    type Item = (&'a [u8], Option<&'a [u8]>);
    fn next(&mut self) -> Option<Self::Item> {
        let s = self.rest;
        if super::grammar::trim_lws(s).is_empty() {
            return None;
        }
        // Find the next ';' outside a quoted string (no quote: one memchr).
        let i = if super::grammar::find(b'"', s).is_none() {
            super::grammar::find(b';', s).unwrap_or(s.len())
        } else {
            let mut i = 0;
            let mut quoted = false;
            while i < s.len() {
                match s[i] {
                    b'\\' if quoted => i += 1,
                    b'"' => quoted = !quoted,
                    b';' if !quoted => break,
                    _ => {}
                }
                i += 1;
            }
            i
        };
        let item = &s[..i.min(s.len())];
        self.rest = if i < s.len() { &s[i + 1..] } else { &s[s.len()..] };
        let (n, v) = match super::grammar::find(b'=', item) {
            Some(e) if !item[..e].contains(&b'"') => (&item[..e], Some(super::grammar::trim_lws(&item[e + 1..]))),
            _ => (item, None),
        };
        Some((super::grammar::trim_lws(n), v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_generic_params_with_lws_rfc4475_3_1_1_1() {
        let raw = b" ;\r\n  tag = 98asjd8 ; newparam =\r\n      newvalue ;\r\n  secondparam ; q = 0.33";
        let mut c = Cursor::new(raw);
        let p = read_params(&mut c).unwrap();
        assert!(c.at_end());
        let params = Params::new(p);
        assert_eq!(params.get("tag"), Some(Some(&b"98asjd8"[..])));
        assert_eq!(params.get("newparam"), Some(Some(&b"newvalue"[..])));
        assert_eq!(params.get("secondparam"), Some(None));
        assert_eq!(params.get("Q"), Some(Some(&b"0.33"[..])));
        assert_eq!(params.clone().count(), 4);
    }

    #[test]
    fn quoted_values_keep_semicolons() {
        let mut c = Cursor::new(b";a=\"x;y\";b");
        let p = read_params(&mut c).unwrap();
        let v: Vec<_> = Params::new(p).collect();
        assert_eq!(v, vec![(&b"a"[..], Some(&b"\"x;y\""[..])), (&b"b"[..], None)]);
    }

    #[test]
    fn empty_params_are_refused_rfc4475_3_1_2_1() {
        assert!(read_params(&mut Cursor::new(b";;;;")).is_none());
        assert!(read_params(&mut Cursor::new(b";tag=")).is_none());
        assert!(read_params(&mut Cursor::new(b";tag=\"open")).is_none());
    }
}
