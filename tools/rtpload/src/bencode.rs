//! Bencode, as rtpengine's NG protocol speaks it: byte strings (`4:spam`), integers
//! (`i42e`), lists (`l...e`) and dictionaries (`d...e`, keys are byte strings, written
//! in sorted order).

use std::collections::BTreeMap;

/// A bencoded value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// `i<n>e`
    Int(i64),
    /// `<len>:<bytes>`
    Bytes(Vec<u8>),
    /// `l<values>e`
    List(Vec<Value>),
    /// `d<key><value>...e`
    Dict(BTreeMap<Vec<u8>, Value>),
}

impl Value {
    /// A byte string from text.
    pub fn str(s: &str) -> Value {
        Value::Bytes(s.as_bytes().to_vec())
    }

    /// A dictionary from `(key, value)` pairs.
    pub fn dict<'a>(pairs: impl IntoIterator<Item = (&'a str, Value)>) -> Value {
        Value::Dict(pairs.into_iter().map(|(k, v)| (k.as_bytes().to_vec(), v)).collect())
    }

    /// The value under `key`, for a dictionary.
    pub fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Dict(d) => d.get(key.as_bytes()),
            _ => None,
        }
    }

    /// The bytes of a byte string, as text (lossy).
    pub fn as_str(&self) -> Option<String> {
        match self {
            Value::Bytes(b) => Some(String::from_utf8_lossy(b).into_owned()),
            _ => None,
        }
    }

    /// The encoding of this value.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode_into(&mut out);
        out
    }

    /// Appends the encoding of this value to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        match self {
            Value::Int(n) => out.extend_from_slice(format!("i{n}e").as_bytes()),
            Value::Bytes(b) => {
                out.extend_from_slice(format!("{}:", b.len()).as_bytes());
                out.extend_from_slice(b);
            }
            Value::List(l) => {
                out.push(b'l');
                for v in l {
                    v.encode_into(out);
                }
                out.push(b'e');
            }
            Value::Dict(d) => {
                out.push(b'd');
                for (k, v) in d {
                    Value::Bytes(k.clone()).encode_into(out);
                    v.encode_into(out);
                }
                out.push(b'e');
            }
        }
    }
}

/// Why bytes are not bencode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError {
    /// Where decoding stopped.
    pub offset: usize,
    /// What was wrong there.
    pub what: &'static str,
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "bencode: {} at byte {}", self.what, self.offset)
    }
}

impl std::error::Error for DecodeError {}

/// Decodes exactly one value filling all of `input`.
pub fn decode(input: &[u8]) -> Result<Value, DecodeError> {
    let mut p = Parser { input, pos: 0, depth: 0 };
    let v = p.value()?;
    if p.pos != input.len() {
        return Err(p.err("trailing bytes"));
    }
    Ok(v)
}

/// Deepest nesting accepted (a hostile reply cannot blow the stack).
const MAX_DEPTH: usize = 64;

struct Parser<'a> {
    input: &'a [u8],
    pos: usize,
    depth: usize,
}

impl Parser<'_> {
    fn err(&self, what: &'static str) -> DecodeError {
        DecodeError { offset: self.pos, what }
    }

    fn peek(&self) -> Option<u8> {
        self.input.get(self.pos).copied()
    }

    /// Digits (with an optional leading minus) up to `end`, consumed with it.
    fn number(&mut self, end: u8) -> Result<i64, DecodeError> {
        let start = self.pos;
        let rel = self.input[start..].iter().position(|&b| b == end).ok_or_else(|| self.err("unterminated number"))?;
        let text = std::str::from_utf8(&self.input[start..start + rel]).map_err(|_| self.err("bad number"))?;
        let digits = text.strip_prefix('-').unwrap_or(text);
        let canonical = !digits.is_empty()
            && digits.bytes().all(|b| b.is_ascii_digit())
            && (digits == "0" || !digits.starts_with('0'))
            && text != "-0";
        if !canonical {
            return Err(self.err("bad number"));
        }
        let n = text.parse().map_err(|_| self.err("number out of range"))?;
        self.pos = start + rel + 1;
        Ok(n)
    }

    fn bytes(&mut self) -> Result<Vec<u8>, DecodeError> {
        let len = self.number(b':')?;
        let len = usize::try_from(len).map_err(|_| self.err("negative length"))?;
        let end =
            self.pos.checked_add(len).filter(|&e| e <= self.input.len()).ok_or_else(|| self.err("short string"))?;
        let b = self.input[self.pos..end].to_vec();
        self.pos = end;
        Ok(b)
    }

    fn value(&mut self) -> Result<Value, DecodeError> {
        match self.peek() {
            Some(b'i') => {
                self.pos += 1;
                Ok(Value::Int(self.number(b'e')?))
            }
            Some(b'0'..=b'9') => Ok(Value::Bytes(self.bytes()?)),
            Some(open @ (b'l' | b'd')) => {
                self.depth += 1;
                if self.depth > MAX_DEPTH {
                    return Err(self.err("nested too deeply"));
                }
                self.pos += 1;
                let mut list = Vec::new();
                let mut dict = BTreeMap::new();
                loop {
                    match self.peek() {
                        None => return Err(self.err("unterminated container")),
                        Some(b'e') => {
                            self.pos += 1;
                            break;
                        }
                        Some(_) if open == b'l' => list.push(self.value()?),
                        Some(b'0'..=b'9') => {
                            let k = self.bytes()?;
                            let v = self.value()?;
                            dict.insert(k, v);
                        }
                        Some(_) => return Err(self.err("dictionary key is not a string")),
                    }
                }
                self.depth -= 1;
                Ok(if open == b'l' { Value::List(list) } else { Value::Dict(dict) })
            }
            Some(_) => Err(self.err("unexpected byte")),
            None => Err(self.err("empty input")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip() {
        let v = Value::dict([
            ("command", Value::str("offer")),
            ("n", Value::Int(-17)),
            ("zero", Value::Int(0)),
            ("flags", Value::List(vec![Value::str("trust-address"), Value::List(vec![]), Value::Int(3)])),
            ("empty", Value::Bytes(vec![])),
            ("bin", Value::Bytes(vec![0, 255, b':', b'e'])),
            ("nested", Value::dict([("a", Value::dict([]))])),
        ]);
        let enc = v.encode();
        assert_eq!(decode(&enc), Ok(v));
    }

    #[test]
    fn encoding_is_canonical_with_sorted_keys() {
        let v =
            Value::dict([("sdp", Value::str("v=0")), ("call-id", Value::str("c1")), ("command", Value::str("ping"))]);
        assert_eq!(v.encode(), b"d7:call-id2:c17:command4:ping3:sdp3:v=0e".to_vec());
        assert_eq!(Value::Int(42).encode(), b"i42e".to_vec());
        assert_eq!(Value::List(vec![Value::str("a"), Value::Int(-1)]).encode(), b"l1:ai-1ee".to_vec());
    }

    #[test]
    fn an_rtpengine_offer_reply_decodes() {
        // As rtpengine 10.5 answers an offer (after the cookie and its space).
        let sdp = "v=0\r\no=- 1545997027 1 IN IP4 127.0.0.1\r\ns=tester\r\nt=0 0\r\nm=audio 30000 RTP/AVP 0\r\n\
                   c=IN IP4 127.0.0.1\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\na=rtcp:30001\r\n";
        let reply = format!("d3:sdp{}:{}6:result2:oke", sdp.len(), sdp);
        let v = decode(reply.as_bytes()).unwrap();
        assert_eq!(v.get("result").and_then(Value::as_str).as_deref(), Some("ok"));
        assert_eq!(v.get("sdp").and_then(Value::as_str).as_deref(), Some(sdp));
        let err = decode(b"d6:result5:error12:error-reason15:Unknown call-ide").unwrap();
        assert_eq!(err.get("error-reason").and_then(Value::as_str).as_deref(), Some("Unknown call-id"));
    }

    #[test]
    fn malformed_input_is_refused_with_its_offset() {
        for (bad, what) in [
            (&b""[..], "empty input"),
            (b"i12", "unterminated number"),
            (b"i012e", "bad number"),
            (b"i-0e", "bad number"),
            (b"ie", "bad number"),
            (b"5:abc", "short string"),
            (b"l1:a", "unterminated container"),
            (b"di1ei2ee", "dictionary key is not a string"),
            (b"i1ei2e", "trailing bytes"),
            (b"x", "unexpected byte"),
            (b"i99999999999999999999e", "number out of range"),
        ] {
            assert_eq!(decode(bad).map_err(|e| e.what), Err(what), "{:?}", String::from_utf8_lossy(bad));
        }
        let deep = "l".repeat(MAX_DEPTH + 1) + &"e".repeat(MAX_DEPTH + 1);
        assert_eq!(decode(deep.as_bytes()).map_err(|e| e.what), Err("nested too deeply"));
    }
}
