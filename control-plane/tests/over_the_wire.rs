//! The real binary on loopback: OPTIONS over UDP and TCP, every RFC 4475 message over
//! UDP with the answer tests/data/rfc4475/README.md gives it, TCP framing and
//! keep-alives, and configuration refusals.

mod common;

use std::io::Write;
use std::net::{TcpStream, UdpSocket};
use std::process::Command;
use std::time::Duration;

use common::*;

const WAIT: Duration = Duration::from_millis(1500);
const SILENCE: Duration = Duration::from_millis(300);

#[test]
fn options_over_udp_gets_200_with_allow_accept_supported_rfc3261_11_2() {
    let sw = SwitchProcess::start("");
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    let req = options_request("UDP", s.local_addr().unwrap(), sw.udp, "opt-udp-1");
    s.send_to(req.as_bytes(), sw.udp).unwrap();
    let r = collect_responses(&s, WAIT);
    assert_eq!(r.len(), 1, "{r:?}");
    assert_eq!(status(&r[0]), 200);
    assert_eq!(header_values(&r[0], "Allow"), ["INVITE, ACK, BYE, CANCEL, OPTIONS, REGISTER, INFO, UPDATE"]);
    assert_eq!(header_values(&r[0], "Accept"), ["application/sdp"]);
    assert_eq!(header_values(&r[0], "Supported").len(), 1);
    assert_eq!(header_values(&r[0], "Call-ID"), ["opt-udp-1"]);
    assert_eq!(header_values(&r[0], "CSeq"), ["1 OPTIONS"]);
    // RFC 3581: rport filled in with the source port, received added.
    let port = s.local_addr().unwrap().port();
    let via = &header_values(&r[0], "Via")[0];
    assert!(via.ends_with(&format!(";rport={port};received=127.0.0.1")), "{via}");
    let to = &header_values(&r[0], "To")[0];
    assert!(to.contains(";tag="), "{to}");
}

#[test]
fn options_over_tcp_with_pipelining_split_writes_and_keepalive_rfc5626_3_5_1() {
    let sw = SwitchProcess::start("");
    let mut s = TcpStream::connect(sw.tcp).unwrap();
    let local = s.local_addr().unwrap();
    // Two requests in one write.
    let two =
        format!("{}{}", options_request("TCP", local, sw.tcp, "tcp-a"), options_request("TCP", local, sw.tcp, "tcp-b"));
    write_all(&mut s, two.as_bytes());
    let r = tcp_read_responses(&mut s, 2, WAIT);
    assert_eq!(r.iter().map(|t| status(t)).collect::<Vec<_>>(), [200, 200]);
    assert_eq!(header_values(&r[0], "Call-ID"), ["tcp-a"]);
    assert_eq!(header_values(&r[1], "Call-ID"), ["tcp-b"]);
    // One request split across writes.
    let one = options_request("TCP", local, sw.tcp, "tcp-c");
    let (a, b) = one.as_bytes().split_at(37);
    write_all(&mut s, a);
    std::thread::sleep(Duration::from_millis(50));
    write_all(&mut s, b);
    let r = tcp_read_responses(&mut s, 1, WAIT);
    assert_eq!(header_values(&r[0], "Call-ID"), ["tcp-c"]);
    // CRLFCRLF ping → CRLF pong.
    write_all(&mut s, b"\r\n\r\n");
    s.set_read_timeout(Some(WAIT)).unwrap();
    let mut pong = [0u8; 2];
    std::io::Read::read_exact(&mut s, &mut pong).unwrap();
    assert_eq!(&pong, b"\r\n");
}

#[test]
fn tcp_stream_with_negative_content_length_is_closed_rfc4475_3_1_2_3() {
    let sw = SwitchProcess::start("");
    let mut s = TcpStream::connect(sw.tcp).unwrap();
    let raw = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/rfc4475/ncl.dat")).unwrap();
    s.write_all(&raw).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    let mut buf = [0u8; 1024];
    // The connection is closed (EOF), not answered.
    assert_eq!(std::io::Read::read(&mut s, &mut buf).unwrap(), 0);
}

/// The answer each torture message gets over UDP: the final status, or None when the
/// message is a response and must be dropped.
const WIRE: &[(&str, Option<u16>)] = &[
    // valid: processed (INVITE → 407 challenge, REGISTER → 401, OPTIONS → 200)
    ("wsinv", Some(481)), // a re-INVITE (To has a tag) for a dialog that does not exist, RFC 3261 §12.2.2
    ("intmeth", Some(501)),
    ("esc01", Some(407)),
    ("escnull", Some(401)),
    ("esc02", Some(501)),
    ("lwsdisp", Some(200)),
    ("longreq", Some(407)),
    ("dblreq", Some(401)),
    ("semiuri", Some(200)),
    ("transports", Some(200)),
    ("mpart01", Some(405)),
    ("unreason", None),
    ("noreason", None),
    // invalid
    ("badinv01", Some(400)),
    ("clerr", Some(400)),
    ("ncl", Some(400)),
    ("scalar02", Some(400)),
    ("scalarlg", None),
    ("quotbal", Some(400)),
    ("ltgtruri", Some(400)),
    ("lwsruri", Some(400)),
    ("lwsstart", Some(400)),
    ("trws", Some(400)),
    ("escruri", Some(400)),
    ("baddate", Some(407)),
    ("regbadct", Some(400)),
    ("badaspec", Some(400)),
    ("baddn", Some(400)),
    ("badvers", Some(505)),
    ("mismatch01", Some(400)),
    ("mismatch02", Some(501)),
    ("bigcode", None),
    ("test", Some(400)),
    // semantic
    ("badbranch", Some(200)),
    ("insuf", Some(400)),
    ("unkscm", Some(416)),
    ("novelsc", Some(416)),
    ("unksm2", Some(400)),
    ("bext01", Some(420)),
    ("invut", Some(415)),
    ("regaut01", Some(401)),
    ("multi01", Some(400)),
    ("mcl01", Some(400)),
    ("bcast", None),
    ("zeromf", Some(200)),
    ("cparam01", Some(401)),
    ("cparam02", Some(401)),
    ("regescrt", Some(401)),
    ("sdp01", Some(406)),
    ("inv2543", Some(407)),
];

#[test]
fn every_rfc4475_message_gets_its_answer_over_udp_and_the_switch_stays_up() {
    let mut sw = SwitchProcess::start("");
    assert_eq!(WIRE.len(), 50);
    let mut wrong = Vec::new();
    // Several torture messages share a top Via (branch and sent-by) and method: to a
    // switch that saw the first, the next is a retransmission (RFC 3261 §17.2.3), so
    // each of those goes to a fresh switch.
    let mut keys = std::collections::HashSet::new();
    for &(name, want) in WIRE {
        let raw = std::fs::read(format!("{}/tests/data/rfc4475/{name}.dat", env!("CARGO_MANIFEST_DIR"))).unwrap();
        let text = String::from_utf8_lossy(&raw).into_owned();
        let top_via = text.lines().find(|l| l.starts_with("Via:")).unwrap_or_default().to_string();
        let method = text.split(' ').next().unwrap_or_default().to_string();
        let key = (top_via, method);
        if keys.contains(&key) {
            assert!(sw.is_running(), "the switch must survive the torture messages");
            sw = SwitchProcess::start("");
            keys.clear();
        }
        keys.insert(key);
        let responses = udp_exchange(sw.udp, &raw, if want.is_some() { WAIT } else { SILENCE });
        let finals: Vec<u16> = responses.iter().map(|r| status(r)).filter(|&c| c >= 200).collect();
        let got = finals.first().copied();
        if got != want || finals.len() > 1 {
            wrong.push(format!(
                "{name}: want {want:?}, got {:?}",
                responses.iter().map(|r| status(r)).collect::<Vec<_>>()
            ));
            continue;
        }
        let Some(final_text) = responses.last() else {
            continue;
        };
        // What each kind of answer must carry.
        match want {
            Some(501) | Some(405) => {
                assert_eq!(
                    header_values(final_text, "Allow"),
                    ["INVITE, ACK, BYE, CANCEL, OPTIONS, REGISTER, INFO, UPDATE"],
                    "{name}"
                )
            }
            Some(420) => assert_eq!(
                header_values(final_text, "Unsupported"),
                ["nothingSupportsThis, nothingSupportsThisEither, noProxiesSupportThis, norDoAnyProxiesSupportThis"],
                "{name}"
            ),
            Some(415) => assert_eq!(header_values(final_text, "Accept"), ["application/sdp"], "{name}"),
            Some(401) => {
                let c = header_values(final_text, "WWW-Authenticate");
                assert_eq!(c.len(), 1, "{name}: the default offers MD5 only");
                assert!(c[0].contains("algorithm=MD5") && c[0].contains("qop=\"auth\""), "{name}: {c:?}");
                assert!(c[0].starts_with("Digest realm=\""), "{name}");
            }
            Some(407) => {
                assert_eq!(header_values(final_text, "Proxy-Authenticate").len(), 1, "{name}");
                // INVITE: the challenge alone, sent statelessly (no 100 first: a client
                // that loses it retransmits its INVITE and is challenged again).
                assert_eq!(responses.iter().map(|r| status(r)).collect::<Vec<_>>(), [407], "{name}");
            }
            _ => {}
        }
        if want.is_some() {
            // Every answer echoes the request's Call-ID when the request had one.
            let text = String::from_utf8_lossy(&raw);
            if let Some(cid) = text.lines().find_map(|l| {
                l.strip_prefix("Call-ID: ").or_else(|| l.strip_prefix("i: ")).or_else(|| l.strip_prefix("I: "))
            }) {
                if name != "multi01" {
                    assert_eq!(
                        header_values(final_text, "Call-ID").first().map(String::as_str),
                        Some(cid.trim()),
                        "{name}"
                    );
                }
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    assert!(sw.is_running(), "the switch must survive the torture messages");
    let r =
        udp_exchange(sw.udp, options_request("UDP", "127.0.0.1:9".parse().unwrap(), sw.udp, "after").as_bytes(), WAIT);
    assert_eq!(r.iter().map(|t| status(t)).collect::<Vec<_>>(), [200]);
}

#[test]
fn retransmitted_request_gets_the_same_response_rfc3261_17_2_2() {
    let sw = SwitchProcess::start("");
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    let req = options_request("UDP", s.local_addr().unwrap(), sw.udp, "retrans-1");
    s.send_to(req.as_bytes(), sw.udp).unwrap();
    let first = collect_responses(&s, WAIT);
    s.send_to(req.as_bytes(), sw.udp).unwrap();
    let second = collect_responses(&s, WAIT);
    assert_eq!(first.len(), 1);
    assert_eq!(first, second, "the retransmission is answered from the transaction, byte for byte");
}

#[test]
fn bad_config_exits_non_zero_naming_key_file_and_line() {
    let dir = TempDir::new("badcfg");
    let path = dir.0.join("bad.toml");
    std::fs::write(&path, "[sip]\nudp = [\"127.0.0.1:5070\"]\nmax_mesage_size = 10\n").unwrap();
    let out = Command::new(binary()).arg("--config").arg(&path).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("{}:3: sip.max_mesage_size: unknown field `max_mesage_size`", path.display())),
        "{err}"
    );
}

#[test]
fn public_address_with_default_password_refuses_to_start() {
    let dir = TempDir::new("pubcfg");
    let path = dir.0.join("public.toml");
    std::fs::write(&path, "[sip]\nudp = [\"0.0.0.0:0\"]\ntcp = []\n").unwrap();
    let out = Command::new(binary()).arg("--config").arg(&path).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("directory.default_password: refusing to start: 0.0.0.0:0 is not a loopback address"),
        "{err}"
    );
}

#[test]
fn embedded_default_is_valid() {
    let out = Command::new(binary()).arg("--check-config").output().unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "ferroswitch: <embedded default config/ferroswitch.toml> is valid"
    );
}

#[test]
fn tcp_connections_per_source_are_limited() {
    let sw = SwitchProcess::start("tcp_max_connections_per_source = 2\n");
    let mut kept: Vec<TcpStream> = (0..2).map(|_| TcpStream::connect(sw.tcp).unwrap()).collect();
    // The two allowed connections work.
    for (i, s) in kept.iter_mut().enumerate() {
        let local = s.local_addr().unwrap();
        write_all(s, options_request("TCP", local, sw.tcp, &format!("lim-{i}")).as_bytes());
        assert_eq!(tcp_read_responses(s, 1, WAIT).iter().map(|t| status(t)).collect::<Vec<_>>(), [200]);
    }
    // The third from the same address is closed at once.
    let mut third = TcpStream::connect(sw.tcp).unwrap();
    third.set_read_timeout(Some(WAIT)).unwrap();
    let mut buf = [0u8; 16];
    assert_eq!(std::io::Read::read(&mut third, &mut buf).unwrap(), 0);
}

#[test]
fn idle_tcp_connection_is_closed() {
    let sw = SwitchProcess::start("tcp_idle_timeout_secs = 1\n");
    let mut s = TcpStream::connect(sw.tcp).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut buf = [0u8; 16];
    assert_eq!(std::io::Read::read(&mut s, &mut buf).unwrap(), 0, "closed after the idle timeout");
}

#[test]
fn oversized_udp_request_gets_513() {
    let sw = SwitchProcess::start("max_message_size = 1024\n");
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut req = options_request("UDP", s.local_addr().unwrap(), sw.udp, "big-1");
    req.insert_str(req.len() - 2, &format!("X-Padding: {}\r\n", "p".repeat(1500)));
    s.send_to(req.as_bytes(), sw.udp).unwrap();
    let r = collect_responses(&s, WAIT);
    assert_eq!(r.iter().map(|t| status(t)).collect::<Vec<_>>(), [513]);
    assert_eq!(header_values(&r[0], "Call-ID"), ["big-1"]);
}

#[test]
fn ipv6_loopback_udp_and_tcp() {
    let dir = TempDir::new("v6");
    let path = dir.0.join("v6.toml");
    let config = format!(
        "[sip]\nudp = [\"[::1]:0\"]\ntcp = [\"[::1]:0\"]\n[storage]\ndir = \"{}\"\n[management]\nhttp_listen = \"\"\n[esl]\nlisten = \"\"\n[ng]\nlisten = \"\"\n[log]\nlevel = \"warn\"\n",
        dir.0.join("var").display()
    );
    std::fs::write(&path, config).unwrap();
    let mut child =
        Command::new(binary()).arg("--config").arg(&path).stdout(std::process::Stdio::piped()).spawn().unwrap();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(child.stdout.take().unwrap()));
    let mut addrs = Vec::new();
    while addrs.len() < 2 {
        let l = lines.next().unwrap().unwrap();
        if let Some(a) = l
            .strip_prefix("ferroswitch: listening sip/udp ")
            .or_else(|| l.strip_prefix("ferroswitch: listening sip/tcp "))
        {
            addrs.push(a.parse::<std::net::SocketAddr>().unwrap());
        }
    }
    let s = UdpSocket::bind("[::1]:0").unwrap();
    s.send_to(options_request("UDP", s.local_addr().unwrap(), addrs[0], "v6-udp").as_bytes(), addrs[0]).unwrap();
    let r = collect_responses(&s, WAIT);
    assert_eq!(r.iter().map(|t| status(t)).collect::<Vec<_>>(), [200]);
    assert!(header_values(&r[0], "Via")[0].ends_with(";received=::1"), "{:?}", header_values(&r[0], "Via"));
    let mut t = TcpStream::connect(addrs[1]).unwrap();
    let local = t.local_addr().unwrap();
    write_all(&mut t, options_request("TCP", local, addrs[1], "v6-tcp").as_bytes());
    assert_eq!(tcp_read_responses(&mut t, 1, WAIT).iter().map(|x| status(x)).collect::<Vec<_>>(), [200]);
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn configured_algorithms_are_offered_in_order_rfc8760_2_4() {
    let sw = SwitchProcess::start("\n[auth]\nalgorithms = [\"SHA-256\", \"MD5\"]\n");
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    let local = s.local_addr().unwrap();
    let reg = format!(
        "REGISTER sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bKalg1;rport\r\nMax-Forwards: 70\r\nFrom: <sip:1000@127.0.0.1>;tag=a\r\nTo: <sip:1000@127.0.0.1>\r\nCall-ID: alg-1\r\nCSeq: 1 REGISTER\r\nContact: <sip:1000@{local}>\r\nContent-Length: 0\r\n\r\n"
    );
    s.send_to(reg.as_bytes(), sw.udp).unwrap();
    let r = collect_responses(&s, WAIT);
    let c = header_values(&r[0], "WWW-Authenticate");
    assert_eq!(c.len(), 2);
    assert!(c[0].contains("algorithm=SHA-256") && c[1].contains("algorithm=MD5"), "{c:?}");
}
