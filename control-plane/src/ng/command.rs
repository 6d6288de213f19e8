//! NG requests and responses, sans-IO: a datagram is `<cookie> <dictionary>` (bencode,
//! or JSON from clients that speak it); [`parse`] turns the dictionary into a
//! [`Request`], [`ok`] and [`error`] build the answers.

use super::bencode::Value;

pub use crate::media::rewrite::Flags;

/// An offer or answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfferAnswer {
    /// The SIP Call-ID.
    pub call_id: String,
    /// The From tag.
    pub from_tag: String,
    /// The To tag (answers).
    pub to_tag: Option<String>,
    /// The SDP.
    pub sdp: Vec<u8>,
    /// Where the SIP message came from (`received-from: [IP4, 1.2.3.4]`).
    pub received_from: Option<std::net::IpAddr>,
    /// Media handling.
    pub flags: Flags,
    /// This call's timeouts, where the request sets them (else the configured ones).
    pub timeouts: Timeouts,
    /// Codec changes and transcoding (`codec`, `always transcode`, `ptime`).
    pub codecs: super::codecs::CodecFlags,
}

/// Per-call timeouts in seconds (`timeout`, `silent-timeout`, `final-timeout` keys, as
/// rtpengine's daemon options of those names; 0: never).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Timeouts {
    /// No RTP for this long deletes the call.
    pub timeout: Option<u32>,
    /// The same while a stream is on hold.
    pub silent: Option<u32>,
    /// The call is deleted this long after its offer.
    pub final_: Option<u32>,
}

/// A request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// `ping`.
    Ping,
    /// `offer`.
    Offer(OfferAnswer),
    /// `answer`.
    Answer(OfferAnswer),
    /// `delete`.
    Delete {
        /// The Call-ID.
        call_id: String,
    },
    /// `query`.
    Query {
        /// The Call-ID.
        call_id: String,
    },
    /// `list`.
    List {
        /// At most this many Call-IDs.
        limit: usize,
    },
}

/// Splits a datagram into its cookie and the request dictionary (bencode or JSON).
pub fn split(datagram: &[u8]) -> Result<(&[u8], Value), String> {
    let sp = datagram.iter().position(|&c| c == b' ').ok_or("no cookie: expected <cookie> <dictionary>")?;
    let (cookie, body) = (&datagram[..sp], &datagram[sp + 1..]);
    if cookie.is_empty() {
        return Err("empty cookie".into());
    }
    let v = if body.first() == Some(&b'{') {
        let j: serde_json::Value = serde_json::from_slice(body).map_err(|e| format!("bad JSON: {e}"))?;
        from_json(&j)
    } else {
        Value::decode(body).map_err(|e| e.to_string())?
    };
    if !matches!(v, Value::Dict(_)) {
        return Err("the request is not a dictionary".into());
    }
    Ok((cookie, v))
}

fn from_json(j: &serde_json::Value) -> Value {
    match j {
        serde_json::Value::Object(m) => {
            Value::Dict(m.iter().map(|(k, v)| (k.as_bytes().to_vec(), from_json(v))).collect())
        }
        serde_json::Value::Array(a) => Value::List(a.iter().map(from_json).collect()),
        serde_json::Value::String(s) => Value::str(s),
        serde_json::Value::Number(n) => Value::Int(n.as_i64().unwrap_or(0)),
        serde_json::Value::Bool(b) => Value::str(if *b { "yes" } else { "no" }),
        serde_json::Value::Null => Value::str(""),
    }
}

fn text(v: &Value, key: &str) -> Result<String, String> {
    v.get(key).and_then(Value::as_str).map(str::to_string).ok_or_else(|| format!("missing {key:?}"))
}

/// One `codec` instruction (`strip`, `transcode`...) for `codec`; unknown verbs (such as
/// `consume`) are ignored, as rtpengine ignores what it does not know.
fn codec_verb(c: &mut super::codecs::CodecFlags, verb: &str, codec: &str) {
    let list = match verb {
        "strip" => &mut c.strip,
        "offer" | "transcode" => &mut c.transcode,
        "mask" => &mut c.mask,
        "accept" => &mut c.accept,
        "set" => &mut c.set,
        "except" => &mut c.except,
        _ => return,
    };
    if !list.iter().any(|x| x.eq_ignore_ascii_case(codec)) {
        list.push(codec.to_string());
    }
}

/// The request in a dictionary.
pub fn parse(v: &Value) -> Result<Request, String> {
    let command = text(v, "command")?;
    Ok(match command.as_str() {
        "ping" => Request::Ping,
        "offer" | "answer" => {
            let mut flags = Flags::default();
            let mut codecs = super::codecs::CodecFlags::default();
            for f in v.get("flags").map(Value::strings).unwrap_or_default() {
                // `codec-<verb>-<codec>`, as rtpengine's clients send besides the dictionary.
                if let Some((verb, codec)) = f.strip_prefix("codec-").and_then(|r| r.split_once('-')) {
                    codec_verb(&mut codecs, verb, codec);
                    continue;
                }
                match f.to_ascii_lowercase().replace('-', " ").as_str() {
                    "always transcode" | "force transcoding" => codecs.always_transcode = true,
                    "trust address" => flags.trust_address = true,
                    "sip source address" => flags.sip_source_address = true,
                    "symmetric" => flags.asymmetric = false,
                    "asymmetric" => flags.asymmetric = true,
                    "strict source" => flags.strict_source = true,
                    "port latching" => flags.port_latching = true,
                    _ => {} // Flags for features not here are ignored, as rtpengine ignores unknown ones.
                }
            }
            let list =
                |k: &str| v.get(k).map(|x| x.strings().iter().map(|s| s.to_string()).collect()).unwrap_or_default();
            flags.replace = list("replace");
            flags.rtcp_mux = list("rtcp-mux");
            flags.direction = list("direction");
            flags.ice_remove = v.get("ICE").and_then(Value::as_str).is_some_and(|s| s.eq_ignore_ascii_case("remove"));
            flags.transport_protocol = v.get("transport-protocol").and_then(Value::as_str).map(str::to_string);
            if let Some(c) = v.get("codec") {
                for verb in ["strip", "offer", "transcode", "mask", "accept", "set", "except"] {
                    for codec in c.get(verb).map(Value::strings).unwrap_or_default() {
                        codec_verb(&mut codecs, verb, codec);
                    }
                }
            }
            let ms = |k: &str| -> Result<Option<u32>, String> {
                let bad = || format!("{k:?} must be a number of milliseconds from 1 to 120");
                let n = match v.get(k) {
                    None => return Ok(None),
                    Some(Value::Int(n)) => u32::try_from(*n).map_err(|_| bad())?,
                    Some(x) => x.as_str().and_then(|t| t.trim().parse().ok()).ok_or_else(bad)?,
                };
                if (1..=120).contains(&n) {
                    Ok(Some(n))
                } else {
                    Err(bad())
                }
            };
            codecs.ptime = ms("ptime")?;
            codecs.ptime_reverse = ms("ptime-reverse")?;
            let seconds = |k: &str| -> Result<Option<u32>, String> {
                let bad = || format!("{k:?} must be a number of seconds");
                match v.get(k) {
                    None => Ok(None),
                    Some(Value::Int(n)) => u32::try_from(*n).map(Some).map_err(|_| bad()),
                    Some(x) => x.as_str().and_then(|t| t.trim().parse().ok()).map(Some).ok_or_else(bad),
                }
            };
            let timeouts = Timeouts {
                timeout: seconds("timeout")?,
                silent: seconds("silent-timeout")?,
                final_: seconds("final-timeout")?,
            };
            let received_from = match v.get("received-from") {
                Some(Value::List(items)) => items.get(1).and_then(Value::as_str).and_then(|s| s.parse().ok()),
                _ => None,
            };
            let oa = OfferAnswer {
                call_id: text(v, "call-id")?,
                from_tag: text(v, "from-tag")?,
                to_tag: v.get("to-tag").and_then(Value::as_str).map(str::to_string),
                sdp: match v.get("sdp") {
                    Some(Value::Bytes(b)) => b.clone(),
                    _ => return Err("missing \"sdp\"".into()),
                },
                received_from,
                flags,
                timeouts,
                codecs,
            };
            if command == "offer" {
                Request::Offer(oa)
            } else {
                if oa.to_tag.is_none() {
                    return Err("an answer needs \"to-tag\"".into());
                }
                Request::Answer(oa)
            }
        }
        "delete" => Request::Delete { call_id: text(v, "call-id")? },
        "query" => Request::Query { call_id: text(v, "call-id")? },
        "list" => Request::List {
            limit: match v.get("limit") {
                Some(Value::Int(n)) if *n > 0 => *n as usize,
                Some(Value::Bytes(b)) => std::str::from_utf8(b).ok().and_then(|s| s.parse().ok()).unwrap_or(32),
                _ => 32,
            },
        },
        other => return Err(format!("unknown command {other:?}")),
    })
}

/// A successful answer: `result: ok` and `fields`.
pub fn ok(cookie: &[u8], fields: Vec<(&str, Value)>) -> Vec<u8> {
    let mut pairs = vec![("result", Value::str("ok"))];
    pairs.extend(fields);
    frame(cookie, Value::dict(pairs))
}

/// The answer to `ping`.
pub fn pong(cookie: &[u8]) -> Vec<u8> {
    frame(cookie, Value::dict([("result", Value::str("pong"))]))
}

/// An error answer: `result: error` and `error-reason`.
pub fn error(cookie: &[u8], reason: &str) -> Vec<u8> {
    frame(cookie, Value::dict([("result", Value::str("error")), ("error-reason", Value::str(reason))]))
}

fn frame(cookie: &[u8], v: Value) -> Vec<u8> {
    // Room for an answer with a short SDP, so that it is not grown step by step.
    let mut out = Vec::with_capacity(cookie.len() + 512);
    out.extend_from_slice(cookie);
    out.push(b' ');
    v.encode_into(&mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_offer_with_flags_parses() {
        let d = b"abc123 d7:command5:offer7:call-id3:c-18:from-tag3:f-13:sdp3:v=05:flagsl13:trust address13:strict sourcee3:ICE6:remove7:replacel6:origine8:rtcp-muxl5:demuxe13:received-froml3:IP49:192.0.2.9e5:codecd5:stripl4:PCMAeee";
        let (cookie, v) = split(d).unwrap();
        assert_eq!(cookie, b"abc123");
        let Request::Offer(o) = parse(&v).unwrap() else { panic!("not an offer") };
        assert_eq!((o.call_id.as_str(), o.from_tag.as_str(), o.sdp.as_slice()), ("c-1", "f-1", &b"v=0"[..]));
        assert!(o.flags.trust_address && o.flags.strict_source && o.flags.ice_remove);
        assert_eq!(
            (o.flags.replace.clone(), o.flags.rtcp_mux.clone()),
            (vec!["origin".to_string()], vec!["demux".to_string()])
        );
        assert_eq!(o.received_from, Some("192.0.2.9".parse().unwrap()));
        assert_eq!(o.codecs.strip, vec!["PCMA"]);
    }

    #[test]
    fn json_requests_are_accepted_too() {
        let d = br#"c1 {"command":"answer","call-id":"x","from-tag":"a","to-tag":"b","sdp":"v=0"}"#;
        let (_, v) = split(d).unwrap();
        assert!(matches!(parse(&v).unwrap(), Request::Answer(OfferAnswer { to_tag: Some(_), .. })));
    }

    #[test]
    fn bad_requests_say_why() {
        assert_eq!(split(b"nocookie").unwrap_err(), "no cookie: expected <cookie> <dictionary>");
        assert_eq!(split(b"c li1ee").unwrap_err(), "the request is not a dictionary");
        assert!(split(b"c d3:fooe").unwrap_err().contains("bencode"));
        let (_, v) = split(b"c d7:command4:ropee").unwrap();
        assert_eq!(parse(&v).unwrap_err(), "unknown command \"rope\"");
        let (_, v) = split(b"c d7:command5:offer7:call-id1:xe").unwrap();
        assert_eq!(parse(&v).unwrap_err(), "missing \"from-tag\"");
        let (_, v) = split(b"c d7:command6:answer7:call-id1:x8:from-tag1:a3:sdp3:v=0e").unwrap();
        assert_eq!(parse(&v).unwrap_err(), "an answer needs \"to-tag\"");
    }

    #[test]
    fn answers_are_framed_with_the_cookie() {
        assert_eq!(ok(b"k", vec![]), b"k d6:result2:oke".to_vec());
        assert_eq!(error(b"k", "no"), b"k d6:result5:error12:error-reason2:noe".to_vec());
    }
}
