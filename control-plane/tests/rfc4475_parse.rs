//! RFC 4475 torture messages through the parser: each gets the verdict that
//! tests/data/rfc4475/README.md gives it, valid ones survive parse → write → parse with
//! every header kept, and no input (nor any mutation of one) makes the parser panic.

use bytes::Bytes;
use control_plane::sip::message::write::write_message;
use control_plane::sip::message::{Framing, HeaderName, Message, Method, ParseError, Scheme};

fn load(name: &str) -> Bytes {
    let path = format!("{}/tests/data/rfc4475/{name}.dat", env!("CARGO_MANIFEST_DIR"));
    Bytes::from(std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}")))
}

fn parse(name: &str) -> Result<Message, ParseError> {
    Message::parse(load(name), Framing::Datagram)
}

/// (file, expected outcome): `Ok(())` parses; `Err(status)` is refused, and a refused
/// request gets `status` back (responses are dropped, status 0 here).
const VERDICTS: &[(&str, Result<(), u16>)] = &[
    // valid
    ("wsinv", Ok(())),
    ("intmeth", Ok(())),
    ("esc01", Ok(())),
    ("escnull", Ok(())),
    ("esc02", Ok(())),
    ("lwsdisp", Ok(())),
    ("longreq", Ok(())),
    ("dblreq", Ok(())),
    ("semiuri", Ok(())),
    ("transports", Ok(())),
    ("mpart01", Ok(())),
    ("unreason", Ok(())),
    ("noreason", Ok(())),
    // invalid
    ("badinv01", Err(400)),
    ("clerr", Err(400)),
    ("ncl", Err(400)),
    ("scalar02", Err(400)),
    ("scalarlg", Err(0)),
    ("quotbal", Err(400)),
    ("ltgtruri", Err(400)),
    ("lwsruri", Err(400)),
    ("lwsstart", Err(400)),
    ("trws", Err(400)),
    ("escruri", Err(400)),
    // "may reject; better to ignore the Date header if you don't use it": we ignore it.
    ("baddate", Ok(())),
    ("regbadct", Err(400)),
    ("badaspec", Err(400)),
    ("baddn", Err(400)),
    ("badvers", Err(505)),
    ("mismatch01", Err(400)),
    ("mismatch02", Err(501)),
    ("bigcode", Err(0)),
    ("test", Err(400)),
    // semantic: well formed unless a single-valued header repeats or one is missing
    ("badbranch", Ok(())),
    ("insuf", Err(400)),
    ("unkscm", Ok(())),
    ("novelsc", Ok(())),
    ("unksm2", Ok(())),
    ("bext01", Ok(())),
    ("invut", Ok(())),
    ("regaut01", Ok(())),
    ("multi01", Err(400)),
    ("mcl01", Err(400)),
    ("bcast", Ok(())),
    ("zeromf", Ok(())),
    ("cparam01", Ok(())),
    ("cparam02", Ok(())),
    ("regescrt", Ok(())),
    ("sdp01", Ok(())),
    ("inv2543", Ok(())),
];

#[test]
fn every_torture_message_gets_its_verdict_rfc4475() {
    let dir = format!("{}/tests/data/rfc4475", env!("CARGO_MANIFEST_DIR"));
    let files = std::fs::read_dir(&dir)
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|x| x == "dat"))
        .count();
    assert_eq!(files, VERDICTS.len(), "every .dat file has a verdict");
    let mut wrong = Vec::new();
    for &(name, want) in VERDICTS {
        let raw = load(name);
        let got = Message::parse(raw.clone(), Framing::Datagram);
        let ok = match (&got, want) {
            (Ok(_), Ok(())) => true,
            (Err(_), Err(0)) => raw.starts_with(b"SIP/"),
            (Err(e), Err(code)) => e.status() == code && !raw.starts_with(b"SIP/"),
            _ => false,
        };
        if !ok {
            wrong.push(format!(
                "{name}: want {want:?}, got {:?}",
                got.map(|_| ()).map_err(|e| (e.status(), e.to_string()))
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn valid_messages_round_trip_keeping_every_header() {
    for &(name, want) in VERDICTS {
        if want.is_err() {
            continue;
        }
        let m1 = parse(name).unwrap();
        let mut out = Vec::new();
        write_message(&m1, &mut out);
        let m2 = Message::parse(Bytes::from(out.clone()), Framing::Datagram)
            .unwrap_or_else(|e| panic!("{name}: reparse failed: {e}\n{}", String::from_utf8_lossy(&out)));
        assert_eq!(m1.headers().len(), m2.headers().len(), "{name}");
        for (a, b) in m1.headers().iter().zip(m2.headers()) {
            assert_eq!(a.name, b.name, "{name}");
            assert_eq!(m1.header_name(a), m2.header_name(b), "{name}");
            assert_eq!(m1.header_value(a), m2.header_value(b), "{name}");
        }
        assert_eq!(m1.body(), m2.body(), "{name}");
        assert_eq!(m1.status(), m2.status(), "{name}");
        assert_eq!(m1.request_uri_bytes(), m2.request_uri_bytes(), "{name}");
        // A second round trip is byte-identical.
        let mut again = Vec::new();
        write_message(&m2, &mut again);
        assert_eq!(out, again, "{name}");
    }
}

#[test]
fn short_tortuous_invite_values_rfc4475_3_1_1_1() {
    let m = parse("wsinv").unwrap();
    assert_eq!(m.method(), Method::Invite);
    assert_eq!(m.max_forwards(), Some(68));
    assert_eq!(m.cseq(), 9);
    assert_eq!(m.cseq_method(), Method::Invite);
    assert_eq!(m.call_id(), b"wsinv.ndaksdj@192.0.2.1");
    assert_eq!(m.to_tag(), Some(&b"1918181833n"[..]));
    assert_eq!(m.from_tag(), Some(&b"98asjd8"[..]));
    assert_eq!(m.branch(), Some(&b"390skdjuw"[..]));
    let vias: Vec<_> = m.vias().map(|v| (v.transport.to_vec(), v.host.to_vec())).collect();
    assert_eq!(
        vias,
        vec![
            (b"UDP".to_vec(), b"192.0.2.2".to_vec()),
            (b"TCP".to_vec(), b"spindle.example.com".to_vec()),
            (b"UDP".to_vec(), b"192.168.255.111".to_vec()),
        ]
    );
    let contact = m.contacts().next().unwrap();
    assert_eq!(contact.params().get("q"), Some(Some(&b"0.33"[..])));
    assert_eq!(contact.params().get("newparam"), Some(Some(&b"newvalue"[..])));
    assert_eq!(m.header(HeaderName::Subject), Some(&b""[..]));
    assert_eq!(m.header_named("NewFangledHeader"), Some(&b"newfangled value\r\n continued newfangled value"[..]));
    assert_eq!(m.header_named("UnknownHeaderWithUnusualValue"), Some(&b";;,,;;,;"[..]));
    assert_eq!(m.request_uri().unwrap().param("unknownparam"), Some(None));
    assert_eq!(m.body().len(), 150);
}

#[test]
fn wide_range_of_valid_characters_rfc4475_3_1_1_2() {
    let m = parse("intmeth").unwrap();
    assert_eq!(m.method(), Method::Extension);
    assert_eq!(m.method_bytes(), b"!interesting-Method0123456789_*+`.%indeed'~");
    assert_eq!(m.cseq(), 139122385);
    assert_eq!(m.call_id(), b"intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{");
    assert_eq!(m.from_tag(), Some(&b"_token~1'+`*%!-."[..]));
}

#[test]
fn escaped_nuls_make_two_distinct_contacts_rfc4475_3_1_1_4() {
    let m = parse("escnull").unwrap();
    let users: Vec<_> = m.contacts().map(|c| c.uri.user.unwrap().to_vec()).collect();
    assert_eq!(users, vec![b"%00".to_vec(), b"%00%00".to_vec()]);
    assert_eq!(m.to().uri.user, Some(&b"null-%00-null"[..]));
}

#[test]
fn percent_in_method_is_not_an_escape_rfc4475_3_1_1_5() {
    let m = parse("esc02").unwrap();
    assert_eq!(m.method(), Method::Extension);
    assert_eq!(m.method_bytes(), b"RE%47IST%45R");
    assert_eq!(m.contacts().count(), 2, "C%6Fntact is an unknown header");
    assert_eq!(m.header_named("C%6Fntact"), Some(&b"<sip:alias2@host2.example.com>"[..]));
}

#[test]
fn trailing_datagram_octets_are_ignored_rfc4475_3_1_1_8() {
    let m = parse("dblreq").unwrap();
    assert_eq!(m.method(), Method::Register);
    assert_eq!(m.call_id(), b"dblreq.0ha0isndaksdj99sdfafnl3lk233412");
    assert_eq!(m.body(), b"");
    assert!(m.buffer().len() > m.as_bytes().len());
}

#[test]
fn semicolon_in_user_part_rfc4475_3_1_1_9() {
    let m = parse("semiuri").unwrap();
    let u = m.request_uri().unwrap();
    assert_eq!(u.user, Some(&b"user;par=u%40example.net"[..]));
    assert_eq!(u.host, b"example.com");
}

#[test]
fn unknown_transports_are_kept_rfc4475_3_1_1_10() {
    let m = parse("transports").unwrap();
    let t: Vec<_> = m.vias().map(|v| String::from_utf8(v.transport.to_vec()).unwrap()).collect();
    assert_eq!(t, ["UDP", "SCTP", "TLS", "UNKNOWN", "TCP"]);
}

#[test]
fn binary_multipart_body_is_framed_by_content_length_rfc4475_3_1_1_11() {
    let m = parse("mpart01").unwrap();
    assert_eq!(m.method(), Method::Message);
    assert_eq!(m.body().len() as u32, m.content_length().unwrap());
    assert!(m.body().contains(&0));
}

#[test]
fn reason_phrases_rfc4475_3_1_1_12_13() {
    let m = parse("unreason").unwrap();
    assert_eq!(m.status(), Some(200));
    assert!(std::str::from_utf8(m.reason()).unwrap().starts_with("= 2**3 * 5**2 "));
    let m = parse("noreason").unwrap();
    assert_eq!(m.status(), Some(100));
    assert_eq!(m.reason(), b"");
}

#[test]
fn long_values_and_many_vias_rfc4475_3_1_1_7() {
    let m = parse("longreq").unwrap();
    assert_eq!(m.vias().count(), 34);
    assert_eq!(m.call_id().len(), 141);
    assert!(m.to().display.unwrap().len() > 100);
}

#[test]
fn non_sip_schemes_parse_rfc4475_3_3_2_to_3_3_4() {
    assert_eq!(parse("unkscm").unwrap().request_uri().unwrap().scheme, Scheme::Other);
    assert_eq!(parse("novelsc").unwrap().request_uri().unwrap().scheme, Scheme::Other);
    let m = parse("unksm2").unwrap();
    assert_eq!(m.to().uri.scheme, Scheme::Other);
    assert_eq!(m.from().uri.scheme, Scheme::Other);
    assert_eq!(m.contacts().next().unwrap().uri.scheme, Scheme::Other);
}

#[test]
fn contact_params_versus_uri_params_rfc4475_3_3_12_to_3_3_14() {
    let c1 = parse("cparam01").unwrap();
    let a = c1.contacts().next().unwrap();
    assert_eq!(a.params().get("unknownparam"), Some(None));
    assert_eq!(a.uri.param("unknownparam"), None);
    let c2 = parse("cparam02").unwrap();
    let b = c2.contacts().next().unwrap();
    assert_eq!(b.uri.param("unknownparam"), Some(None));
    assert_eq!(b.params().get("unknownparam"), None);
    let r = parse("regescrt").unwrap();
    assert_eq!(r.contacts().next().unwrap().uri.headers, b"Route=%3Csip:sip.example.com%3E");
}

#[test]
fn rfc2543_request_body_runs_to_end_of_datagram_rfc4475_3_4_1() {
    let m = parse("inv2543").unwrap();
    assert_eq!(m.branch(), None);
    assert_eq!(m.from_tag(), None);
    assert_eq!(m.max_forwards(), None);
    assert_eq!(m.content_length(), None);
    assert!(m.body().starts_with(b"v=0\r\n"));
    assert_eq!(m.body().len(), m.buffer().len() - (m.buffer().len() - m.body().len()));
}

#[test]
fn refusals_name_the_problem() {
    let e = |n| parse(n).unwrap_err().to_string();
    assert_eq!(e("badvers"), "SIP version not supported");
    assert_eq!(e("multi01"), "CSeq header appears more than once");
    assert_eq!(e("mcl01"), "Content-Length: appears more than once");
    assert_eq!(e("insuf"), "missing From header");
    assert_eq!(e("clerr"), "Content-Length: larger than the message body");
    assert_eq!(e("ncl"), "Content-Length: not a number");
    assert_eq!(e("escruri"), "malformed Request-URI: headers are not allowed in a Request-URI");
    assert_eq!(e("lwsruri"), "malformed Request-URI: white space inside the Request-URI");
    assert_eq!(e("scalar02"), "malformed CSeq header: number must be 0 to 2^32-1");
}

#[test]
fn stream_framing_requires_exact_content_length() {
    let raw = load("lwsdisp");
    assert!(Message::parse(raw.clone(), Framing::Stream).is_ok());
    let m = load("inv2543");
    assert_eq!(
        Message::parse(m, Framing::Stream).unwrap_err(),
        ParseError::ContentLength("required on stream transports")
    );
    let d = load("dblreq");
    assert_eq!(
        Message::parse(d, Framing::Stream).unwrap_err(),
        ParseError::ContentLength("does not match the framed message")
    );
}

#[test]
fn size_limit_is_enforced() {
    let raw = load("longreq");
    assert_eq!(Message::parse_with_limit(raw.clone(), Framing::Datagram, 100).unwrap_err(), ParseError::TooLarge(100));
    assert_eq!(ParseError::TooLarge(100).status(), 513);
}

mod never_panics {
    use super::*;
    use proptest::prelude::*;

    fn corpus() -> Vec<Bytes> {
        VERDICTS.iter().map(|(n, _)| load(n)).collect()
    }

    fn exercise(m: &Message) {
        // Every typed view of a parsed message is available without panicking.
        let _ = (m.method(), m.request_uri(), m.status(), m.call_id(), m.from(), m.to(), m.top_via());
        let _ = (m.vias().count(), m.contacts().count(), m.values(HeaderName::Require).count());
        let mut out = Vec::new();
        write_message(m, &mut out);
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, .. ProptestConfig::default() })]

        #[test]
        fn arbitrary_bytes(data in proptest::collection::vec(any::<u8>(), 0..600)) {
            if let Ok(m) = Message::parse(Bytes::from(data), Framing::Datagram) {
                exercise(&m);
            }
        }

        #[test]
        fn mutated_torture_messages(idx in 0usize..50, edits in proptest::collection::vec((any::<u16>(), any::<u8>(), 0u8..3), 1..8)) {
            let corpus = corpus();
            let mut data = corpus[idx % corpus.len()].to_vec();
            for (pos, byte, op) in edits {
                if data.is_empty() { break; }
                let p = pos as usize % data.len();
                match op {
                    0 => data[p] = byte,
                    1 => { data.remove(p); }
                    _ => data.insert(p, byte),
                }
            }
            for framing in [Framing::Datagram, Framing::Stream] {
                if let Ok(m) = Message::parse(Bytes::from(data.clone()), framing) {
                    exercise(&m);
                }
            }
        }
    }
}

#[test]
fn only_list_headers_split_at_commas_rfc3261_7_3_1() {
    let raw = b"SIP/2.0 401 Unauthorized\r\nVia: SIP/2.0/UDP a;branch=z9hG4bK1, SIP/2.0/UDP b;branch=z9hG4bK2\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:a@b>;tag=2\r\nCall-ID: c\r\nCSeq: 1 REGISTER\r\nWWW-Authenticate: Digest realm=\"r\", nonce=\"n\", algorithm=MD5\r\nWWW-Authenticate: Digest realm=\"r\", nonce=\"n\", algorithm=SHA-256\r\nContent-Length: 0\r\n\r\n";
    let m = Message::parse(Bytes::from_static(raw), Framing::Datagram).unwrap();
    assert_eq!(m.values(HeaderName::Via).count(), 2);
    let auth: Vec<_> = m.values(HeaderName::WwwAuthenticate).collect();
    assert_eq!(
        auth,
        [&b"Digest realm=\"r\", nonce=\"n\", algorithm=MD5"[..], b"Digest realm=\"r\", nonce=\"n\", algorithm=SHA-256"]
    );
}
