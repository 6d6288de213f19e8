//! Character classes and a small cursor for RFC 3261 §25 grammar.
//!
//! Header values may contain folded lines (CRLF followed by SP/HTAB); the framing
//! layer guarantees every CR/LF inside a value span is part of such a fold, so the
//! cursor treats CR and LF as linear white space.

const fn class(chars: &[u8], alnum: bool) -> [bool; 256] {
    let mut t = [false; 256];
    if alnum {
        let mut c = b'0';
        while c <= b'9' {
            t[c as usize] = true;
            c += 1;
        }
        c = b'a';
        while c <= b'z' {
            t[c as usize] = true;
            t[(c - 32) as usize] = true;
            c += 1;
        }
    }
    let mut i = 0;
    while i < chars.len() {
        t[chars[i] as usize] = true;
        i += 1;
    }
    t
}

/// token = 1*(alphanum / "-" / "." / "!" / "%" / "*" / "_" / "+" / "`" / "'" / "~")
pub static TOKEN: [bool; 256] = class(b"-.!%*_+`'~", true);
/// word = token chars plus "(" / ")" / "<" / ">" / ":" / "\" / DQUOTE / "/" / "[" / "]" / "?" / "{" / "}"
pub static WORD: [bool; 256] = class(b"-.!%*_+`'~()<>:\\\"/[]?{}", true);
/// unreserved = alphanum / mark
pub static UNRESERVED: [bool; 256] = class(b"-_.!~*'()", true);
/// user = 1*(unreserved / escaped / user-unreserved)
pub static USER: [bool; 256] = class(b"-_.!~*'()&=+$,;?/", true);
/// password = *(unreserved / escaped / "&" / "=" / "+" / "$" / ",")
pub static PASSWORD: [bool; 256] = class(b"-_.!~*'()&=+$,", true);
/// paramchar = param-unreserved / unreserved / escaped
pub static PARAMCHAR: [bool; 256] = class(b"-_.!~*'()[]/:&+$", true);
/// hname / hvalue = *(hnv-unreserved / unreserved / escaped)
pub static HNVCHAR: [bool; 256] = class(b"-_.!~*'()[]/?:+$", true);
/// hostname characters (labels and dots)
pub static HOSTCHAR: [bool; 256] = class(b"-.", true);
/// uric = reserved / unreserved / escaped (RFC 2396), for non-SIP absolute URIs
pub static URIC: [bool; 256] = class(b";/?:@&=+$,-_.!~*'()%", true);
/// scheme = ALPHA *(ALPHA / DIGIT / "+" / "-" / ".")
pub static SCHEME: [bool; 256] = class(b"+-.", true);

#[inline]
pub fn is_lws(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\r' | b'\n')
}

#[inline]
pub fn all_in(s: &[u8], t: &[bool; 256]) -> bool {
    s.iter().all(|&c| t[c as usize])
}

/// True if `s` is a non-empty run of `allowed` characters and `%HH` escapes.
pub fn escaped_run(s: &[u8], allowed: &[bool; 256]) -> bool {
    if s.is_empty() {
        return false;
    }
    let mut i = 0;
    while i < s.len() {
        let c = s[i];
        if c == b'%' {
            if i + 2 >= s.len() {
                return false;
            }
            if !(s[i + 1].is_ascii_hexdigit() && s[i + 2].is_ascii_hexdigit()) {
                return false;
            }
            i += 3;
        } else if allowed[c as usize] {
            i += 1;
        } else {
            return false;
        }
    }
    true
}

pub fn is_token(s: &[u8]) -> bool {
    !s.is_empty() && all_in(s, &TOKEN)
}

/// Trims linear white space (including folds) on both sides.
pub fn trim_lws(mut s: &[u8]) -> &[u8] {
    while let [first, rest @ ..] = s {
        if is_lws(*first) {
            s = rest;
        } else {
            break;
        }
    }
    while let [rest @ .., last] = s {
        if is_lws(*last) {
            s = rest;
        } else {
            break;
        }
    }
    s
}

/// Parses 1*DIGIT into a u64, refusing overflow beyond `max`.
pub fn parse_digits(s: &[u8], max: u64) -> Option<u64> {
    if s.is_empty() || s.len() > 20 {
        return None;
    }
    let mut v: u64 = 0;
    for &c in s {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add(u64::from(c - b'0'))?;
    }
    (v <= max).then_some(v)
}

/// A forward-only cursor over one header value.
#[derive(Clone, Copy)]
pub struct Cursor<'a> {
    pub b: &'a [u8],
    pub i: usize,
}

impl<'a> Cursor<'a> {
    pub fn new(b: &'a [u8]) -> Self {
        Cursor { b, i: 0 }
    }
    #[inline]
    pub fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }
    #[inline]
    pub fn at_end(&self) -> bool {
        self.i >= self.b.len()
    }
    pub fn rest(&self) -> &'a [u8] {
        &self.b[self.i.min(self.b.len())..]
    }
    /// Skips linear white space; returns whether any was skipped.
    pub fn lws(&mut self) -> bool {
        let start = self.i;
        while self.peek().is_some_and(is_lws) {
            self.i += 1;
        }
        self.i > start
    }
    pub fn eat(&mut self, c: u8) -> bool {
        if self.peek() == Some(c) {
            self.i += 1;
            true
        } else {
            false
        }
    }
    /// `SWS c SWS`, as in SEMI, COLON, EQUAL, SLASH, COMMA.
    pub fn sep(&mut self, c: u8) -> bool {
        let save = self.i;
        self.lws();
        if self.eat(c) {
            self.lws();
            true
        } else {
            self.i = save;
            false
        }
    }
    /// Takes the longest run of characters in `t` (possibly empty).
    pub fn take(&mut self, t: &[bool; 256]) -> &'a [u8] {
        let start = self.i;
        while self.peek().is_some_and(|c| t[c as usize]) {
            self.i += 1;
        }
        &self.b[start..self.i]
    }
    pub fn token(&mut self) -> Option<&'a [u8]> {
        let t = self.take(&TOKEN);
        (!t.is_empty()).then_some(t)
    }
    /// quoted-string = DQUOTE *(qdtext / quoted-pair) DQUOTE; returns the span with quotes.
    pub fn quoted_string(&mut self) -> Option<&'a [u8]> {
        let start = self.i;
        if !self.eat(b'"') {
            return None;
        }
        loop {
            match self.peek() {
                None => {
                    self.i = start;
                    return None;
                }
                Some(b'"') => {
                    self.i += 1;
                    return Some(&self.b[start..self.i]);
                }
                Some(b'\\') => {
                    // quoted-pair = "\" (%x00-09 / %x0B-0C / %x0E-7F)
                    match self.b.get(self.i + 1) {
                        Some(&c) if c <= 0x7f && c != b'\r' && c != b'\n' => self.i += 2,
                        _ => {
                            self.i = start;
                            return None;
                        }
                    }
                }
                // qdtext = LWS / %x21 / %x23-5B / %x5D-7E / UTF8-NONASCII
                Some(c) if c == b'\t' || c == b'\r' || c == b'\n' || (c >= 0x20 && c != 0x7f) => self.i += 1,
                Some(_) => {
                    self.i = start;
                    return None;
                }
            }
        }
    }
}

/// The first `c` in `s`. Header values are short: a plain loop beats `memchr`'s
/// dispatch there (memchr stays for scanning whole messages).
#[inline]
pub fn find(c: u8, s: &[u8]) -> Option<usize> {
    s.iter().position(|&x| x == c)
}
