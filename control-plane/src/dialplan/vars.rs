//! Channel variables and the expansion of `${name}` and `$N` in templates.

use std::collections::BTreeMap;

/// Channel variables (FreeSWITCH's channel variable map).
///
/// Names compare case-insensitively, as FreeSWITCH's event headers do: `set` of
/// `Caller_ID_Number` replaces `caller_id_number`. [`Variables::iter`] yields the
/// names as last written, ordered by their lowercase form.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Variables {
    /// Lowercase name → (name as written, value).
    map: BTreeMap<String, (String, String)>,
}

impl Variables {
    /// An empty map.
    pub fn new() -> Variables {
        Variables::default()
    }

    /// The value of `name`, if set.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.map.get(&name.to_ascii_lowercase()).map(|(_, v)| v.as_str())
    }

    /// Sets `name` to `value`, replacing any earlier value.
    pub fn set(&mut self, name: &str, value: impl Into<String>) {
        self.map.insert(name.to_ascii_lowercase(), (name.to_string(), value.into()));
    }

    /// Removes `name`; nothing happens if it is not set.
    pub fn unset(&mut self, name: &str) {
        self.map.remove(&name.to_ascii_lowercase());
    }

    /// Every (name, value), ordered by lowercase name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.map.values().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// How many variables are set.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// True if no variable is set.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

impl<K: AsRef<str>, V: Into<String>> FromIterator<(K, V)> for Variables {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Variables {
        let mut vars = Variables::new();
        for (k, v) in iter {
            vars.set(k.as_ref(), v);
        }
        vars
    }
}

/// Where `${name}` looks a name up.
pub(crate) trait Lookup {
    /// The value of `name`, if set.
    fn lookup(&self, name: &str) -> Option<&str>;
}

impl Lookup for Variables {
    fn lookup(&self, name: &str) -> Option<&str> {
        self.get(name)
    }
}

/// How deep `${${name}}` may nest before the inner text is taken as a plain name.
const MAX_NESTING: usize = 16;

/// Expands `${var}` from `vars` (missing → empty) and `$N` captures; `$${global}` is
/// expanded at load time.
///
/// `captures[0]` is the whole match and `captures[n]` group `n`; a group that did not
/// take part in the match (`None`) or is out of range expands to empty. With an empty
/// `captures` slice, `$N` stays as written, as in FreeSWITCH when the condition had no
/// regex groups. `${${name}}` nests. Inserted values are never expanded again, so a
/// caller-supplied number containing `${...}` stays literal.
pub fn expand(template: &str, vars: &Variables, captures: &[Option<String>]) -> String {
    expand_with(template, vars, captures)
}

/// [`expand`] over any [`Lookup`].
pub(crate) fn expand_with(template: &str, vars: &dyn Lookup, captures: &[Option<String>]) -> String {
    let mut out = String::with_capacity(template.len());
    expand_into(&mut out, template, vars, captures, 0);
    out
}

fn expand_into(out: &mut String, s: &str, vars: &dyn Lookup, captures: &[Option<String>], depth: usize) {
    let bytes = s.as_bytes();
    let mut i = 0;
    while let Some(off) = s[i..].find('$') {
        let at = i + off;
        out.push_str(&s[i..at]);
        if bytes.get(at + 1) == Some(&b'{') {
            match matching_brace(s, at + 2) {
                Some(close) => {
                    let inner = &s[at + 2..close];
                    let name = if inner.contains("${") && depth < MAX_NESTING {
                        let mut n = String::new();
                        expand_into(&mut n, inner, vars, captures, depth + 1);
                        n
                    } else {
                        inner.to_string()
                    };
                    out.push_str(vars.lookup(&name).unwrap_or(""));
                    i = close + 1;
                }
                None => {
                    // An unclosed `${` is literal text.
                    out.push_str(&s[at..]);
                    return;
                }
            }
        } else if !captures.is_empty() && bytes.get(at + 1).is_some_and(u8::is_ascii_digit) {
            let digits_end = s[at + 1..].find(|c: char| !c.is_ascii_digit()).map_or(s.len(), |p| at + 1 + p);
            let group = s[at + 1..digits_end].parse::<usize>().ok();
            if let Some(Some(text)) = group.and_then(|g| captures.get(g)) {
                out.push_str(text);
            }
            i = digits_end;
        } else {
            out.push('$');
            i = at + 1;
        }
    }
    out.push_str(&s[i..]);
}

/// The index of the `}` closing a `${` whose body starts at `from`, counting nested braces.
fn matching_brace(s: &str, from: usize) -> Option<usize> {
    let mut depth = 0usize;
    for (p, b) in s.as_bytes()[from..].iter().enumerate() {
        match b {
            b'{' => depth += 1,
            b'}' if depth == 0 => return Some(from + p),
            b'}' => depth -= 1,
            _ => {}
        }
    }
    None
}

/// FreeSWITCH's `switch_true`: yes, on, true, t, enabled, enable, active, allow, or a
/// non-zero number.
pub(crate) fn is_true(s: &str) -> bool {
    let l = s.trim().to_ascii_lowercase();
    matches!(l.as_str(), "yes" | "on" | "true" | "t" | "enabled" | "enable" | "active" | "allow")
        || l.parse::<i64>().is_ok_and(|n| n != 0)
}

/// FreeSWITCH's `switch_false`: no, off, false, f, disabled, disable, inactive, deny, or 0.
pub(crate) fn is_false(s: &str) -> bool {
    let l = s.trim().to_ascii_lowercase();
    matches!(l.as_str(), "no" | "off" | "false" | "f" | "disabled" | "disable" | "inactive" | "deny")
        || l.parse::<i64>() == Ok(0)
}
