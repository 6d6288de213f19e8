//! Bencode (the NG protocol's encoding): integers, byte strings, lists and dictionaries.
//! A strict, bounded reader (depth and size limits; typed errors naming the offset) and
//! a writer. Dictionaries keep their keys in the order read; rtpengine's clients send
//! them in any order, and lookups go by key.

/// A bencoded value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// `i<n>e`.
    Int(i64),
    /// `<len>:<bytes>`.
    Bytes(Vec<u8>),
    /// `l...e`.
    List(Vec<Value>),
    /// `d...e`, as (key, value) pairs.
    Dict(Vec<(Vec<u8>, Value)>),
}

/// Why input is not bencode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bencode at byte {at}: {what}")]
pub struct BencodeError {
    /// The offset.
    pub at: usize,
    /// What is wrong.
    pub what: &'static str,
}

/// Nesting deeper than this is refused (a request is a dict of flat lists).
pub const MAX_DEPTH: usize = 16;

impl Value {
    /// A byte string from text.
    pub fn str(s: &str) -> Value {
        Value::Bytes(s.as_bytes().to_vec())
    }

    /// A dictionary from (key, value) pairs.
    pub fn dict<'a>(pairs: impl IntoIterator<Item = (&'a str, Value)>) -> Value {
        Value::Dict(pairs.into_iter().map(|(k, v)| (k.as_bytes().to_vec(), v)).collect())
    }

    /// The value of `key` in a dictionary.
    pub fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Dict(d) => d.iter().find(|(k, _)| k == key.as_bytes()).map(|(_, v)| v),
            _ => None,
        }
    }

    /// A byte string as text (lossless only for UTF-8).
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Bytes(b) => std::str::from_utf8(b).ok(),
            _ => None,
        }
    }

    /// The strings of a list (or a single string as a one-item list), for flags.
    pub fn strings(&self) -> Vec<&str> {
        match self {
            Value::List(items) => items.iter().filter_map(Value::as_str).collect(),
            Value::Bytes(_) => self.as_str().into_iter().collect(),
            _ => Vec::new(),
        }
    }

    /// Parses exactly one value filling `input`.
    pub fn decode(input: &[u8]) -> Result<Value, BencodeError> {
        let mut r = Reader { b: input, at: 0 };
        let v = r.value(0)?;
        if r.at != input.len() {
            return Err(r.err("trailing bytes after the value"));
        }
        Ok(v)
    }

    /// The encoding.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(256);
        self.encode_into(&mut out);
        out
    }

    /// Appends the canonical encoding (BEP 3: dictionary keys in sorted order) to `out`,
    /// as a client sends it.
    pub fn encode_canonical_into(&self, out: &mut Vec<u8>) {
        self.write_to(out, true);
    }

    /// Appends the encoding to `out`, dictionary keys in their order.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        self.write_to(out, false);
    }

    fn write_to(&self, out: &mut Vec<u8>, sorted: bool) {
        use std::io::Write as _;
        match self {
            Value::Int(n) => {
                // Writing into a Vec cannot fail.
                let _ = write!(out, "i{n}e");
            }
            Value::Bytes(b) => put_bytes(out, b),
            Value::List(items) => {
                out.push(b'l');
                for i in items {
                    i.write_to(out, sorted);
                }
                out.push(b'e');
            }
            Value::Dict(pairs) => {
                out.push(b'd');
                let mut put = |(k, v): &(Vec<u8>, Value)| {
                    put_bytes(out, k);
                    v.write_to(out, sorted);
                };
                if sorted {
                    let mut order: Vec<&(Vec<u8>, Value)> = pairs.iter().collect();
                    order.sort_by(|a, b| a.0.cmp(&b.0));
                    order.into_iter().for_each(&mut put);
                } else {
                    pairs.iter().for_each(&mut put);
                }
                out.push(b'e');
            }
        }
    }
}

/// A byte string: `<length>:<bytes>`.
fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    use std::io::Write as _;
    // Writing into a Vec cannot fail.
    let _ = write!(out, "{}:", b.len());
    out.extend_from_slice(b);
}

struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn err(&self, what: &'static str) -> BencodeError {
        BencodeError { at: self.at, what }
    }

    fn value(&mut self, depth: usize) -> Result<Value, BencodeError> {
        if depth > MAX_DEPTH {
            return Err(self.err("nested too deeply"));
        }
        match self.b.get(self.at) {
            None => Err(self.err("unexpected end")),
            Some(b'i') => {
                self.at += 1;
                let n = self.number(b'e')?;
                Ok(Value::Int(n))
            }
            Some(b'l') => {
                self.at += 1;
                let mut items = Vec::new();
                while self.b.get(self.at) != Some(&b'e') {
                    items.push(self.value(depth + 1)?);
                }
                self.at += 1;
                Ok(Value::List(items))
            }
            Some(b'd') => {
                self.at += 1;
                let mut pairs: Vec<(Vec<u8>, Value)> = Vec::new();
                while self.b.get(self.at) != Some(&b'e') {
                    let Value::Bytes(k) = self.string()? else { unreachable!("string() returns bytes") };
                    if pairs.iter().any(|(x, _)| *x == k) {
                        return Err(self.err("a dictionary key appears twice"));
                    }
                    let v = self.value(depth + 1)?;
                    pairs.push((k, v));
                }
                self.at += 1;
                Ok(Value::Dict(pairs))
            }
            Some(c) if c.is_ascii_digit() => self.string(),
            Some(_) => Err(self.err("expected i, l, d or a length")),
        }
    }

    fn string(&mut self) -> Result<Value, BencodeError> {
        let n = self.number(b':')?;
        let n = usize::try_from(n).map_err(|_| self.err("negative string length"))?;
        let end = self
            .at
            .checked_add(n)
            .filter(|&e| e <= self.b.len())
            .ok_or_else(|| self.err("string runs past the end"))?;
        let s = self.b[self.at..end].to_vec();
        self.at = end;
        Ok(Value::Bytes(s))
    }

    /// Digits (with an optional minus) up to `end`, which is consumed.
    fn number(&mut self, end: u8) -> Result<i64, BencodeError> {
        let start = self.at;
        let stop = self.b[start..].iter().position(|&c| c == end).ok_or_else(|| self.err("unterminated number"))?;
        let text = &self.b[start..start + stop];
        let digits = text.strip_prefix(b"-").unwrap_or(text);
        let canonical = !digits.is_empty()
            && digits.iter().all(u8::is_ascii_digit)
            && (digits == b"0" || digits[0] != b'0')
            && text != b"-0";
        if !canonical {
            return Err(self.err("not a canonical number"));
        }
        let n = std::str::from_utf8(text)
            .ok()
            .and_then(|t| t.parse().ok())
            .ok_or_else(|| self.err("number out of range"))?;
        self.at = start + stop + 1;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ng_offer_decodes_with_keys_in_any_order() {
        let req = b"d7:call-id4:abcd3:sdp5:v=0\r\n7:command5:offer5:flagsl5:trust7:addresse8:from-tag1:xe";
        let v = Value::decode(req).unwrap();
        assert_eq!(v.get("command").and_then(Value::as_str), Some("offer"));
        assert_eq!(v.get("sdp").and_then(Value::as_str), Some("v=0\r\n"));
        assert_eq!(v.get("flags").unwrap().strings(), vec!["trust", "address"]);
        assert_eq!(Value::decode(&v.encode()).unwrap(), v);
    }

    #[test]
    fn an_rtpengine_offer_reply_decodes() {
        // As rtpengine 10.5 answers an offer (after the cookie and its space).
        let sdp = "v=0\r\no=- 1545997027 1 IN IP4 127.0.0.1\r\ns=tester\r\nt=0 0\r\nm=audio 30000 RTP/AVP 0\r\n\
                   c=IN IP4 127.0.0.1\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\na=rtcp:30001\r\n";
        let reply = format!("d3:sdp{}:{}6:result2:oke", sdp.len(), sdp);
        let v = Value::decode(reply.as_bytes()).unwrap();
        assert_eq!(v.get("result").and_then(Value::as_str), Some("ok"));
        assert_eq!(v.get("sdp").and_then(Value::as_str), Some(sdp));
        let err = Value::decode(b"d6:result5:error12:error-reason15:Unknown call-ide").unwrap();
        assert_eq!(err.get("error-reason").and_then(Value::as_str), Some("Unknown call-id"));
    }

    #[test]
    fn the_canonical_encoding_sorts_keys_at_every_level() {
        let v = Value::dict([
            ("sdp", Value::str("v=0")),
            ("call-id", Value::str("c1")),
            ("flags", Value::List(vec![Value::dict([("b", Value::Int(1)), ("a", Value::Int(2))])])),
        ]);
        let mut out = Vec::new();
        v.encode_canonical_into(&mut out);
        assert_eq!(out, b"d7:call-id2:c15:flagsld1:ai2e1:bi1eee3:sdp3:v=0e".to_vec());
    }

    #[test]
    fn values_round_trip() {
        let v = Value::dict([
            ("result", Value::str("ok")),
            ("n", Value::Int(-42)),
            ("list", Value::List(vec![Value::Int(0), Value::str(""), Value::dict([])])),
        ]);
        assert_eq!(v.encode(), b"d6:result2:ok1:ni-42e4:listli0e0:deee".to_vec());
        assert_eq!(Value::decode(&v.encode()).unwrap(), v);
    }

    #[test]
    fn malformed_input_is_refused_with_its_offset() {
        let cases: &[(&[u8], usize, &str)] = &[
            (b"", 0, "unexpected end"),
            (b"x", 0, "expected i, l, d"),
            (b"i12", 1, "unterminated number"),
            (b"i-0e", 1, "not a canonical"),
            (b"i012e", 1, "not a canonical"),
            (b"ie", 1, "not a canonical"),
            (b"i99999999999999999999e", 1, "out of range"),
            (b"5:ab", 2, "runs past the end"),
            (b"l", 1, "unexpected end"),
            (b"d1:ai1e1:ai2ee", 10, "appears twice"),
            (b"di1ei2ee", 1, "unterminated number"),
            (b"i1ei2e", 3, "trailing bytes"),
        ];
        for (input, at, what) in cases {
            let e = Value::decode(input).unwrap_err();
            assert_eq!(e.at, *at, "{:?}: {e}", String::from_utf8_lossy(input));
            assert!(e.what.contains(what), "{:?}: {e}", String::from_utf8_lossy(input));
        }
        let deep = format!("{}{}", "l".repeat(40), "e".repeat(40));
        assert_eq!(Value::decode(deep.as_bytes()).unwrap_err().what, "nested too deeply");
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        use proptest::prelude::*;
        proptest!(ProptestConfig::with_cases(1024), |(bytes in proptest::collection::vec(any::<u8>(), 0..200))| {
            if let Ok(v) = Value::decode(&bytes) {
                prop_assert_eq!(Value::decode(&v.encode()).unwrap(), v);
            }
        });
    }
}
