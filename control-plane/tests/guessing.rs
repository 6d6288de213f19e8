//! Password guessing over real sockets: a failed response burns its nonce, a guessing
//! address is slowed (403 with Retry-After) and then banned (nothing it sends is
//! answered) while other addresses are served, and every failure is one log line that the
//! fail2ban filter shipped in ci/fail2ban matches (checked with Debian's fail2ban-regex).

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::process::Command;
use std::time::Duration;

use common::*;
use control_plane::auth::{Algorithm, Authenticator, Credentials, Secret};

/// A REGISTER for 1000 from `s`, with an Authorization for `password` on `nonce` (none
/// without a nonce).
fn register(s: &UdpSocket, switch: SocketAddr, cseq: u32, nonce: Option<&str>, password: &str) -> String {
    let local = s.local_addr().unwrap();
    let auth = nonce.map(|n| {
        let c = Credentials {
            username: "1000",
            realm: "127.0.0.1",
            nonce: n,
            uri: "sip:127.0.0.1",
            response: "",
            algorithm: Algorithm::Md5,
            qop_auth: Some((1, "abc")),
            opaque: None,
        };
        let r = Authenticator::expected_response(&c, "REGISTER", &Secret::Password(password.into())).unwrap();
        format!("Authorization: Digest username=\"1000\", realm=\"127.0.0.1\", nonce=\"{n}\", uri=\"sip:127.0.0.1\", response=\"{r}\", algorithm=MD5, qop=auth, nc=00000001, cnonce=\"abc\"\r\n")
    });
    let msg = format!(
        "REGISTER sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bKguess{cseq}\r\nMax-Forwards: 70\r\nFrom: <sip:1000@127.0.0.1>;tag=g\r\nTo: <sip:1000@127.0.0.1>\r\nCall-ID: guess-{}@x\r\nCSeq: {cseq} REGISTER\r\nContact: <sip:1000@{local}>\r\n{}Content-Length: 0\r\n\r\n",
        local.port(),
        auth.unwrap_or_default()
    );
    s.send_to(msg.as_bytes(), switch).unwrap();
    let mut buf = [0u8; 4096];
    match s.recv_from(&mut buf) {
        Ok((n, _)) => String::from_utf8_lossy(&buf[..n]).into_owned(),
        Err(_) => String::new(),
    }
}

fn nonce_of(resp: &str) -> String {
    let at = resp.find("nonce=\"").expect("a challenge") + 7;
    resp[at..].split('"').next().unwrap().to_string()
}

fn socket(ip: &str) -> UdpSocket {
    let s = UdpSocket::bind((ip, 0)).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(700))).unwrap();
    s
}

#[test]
fn a_burnt_nonce_backoff_then_a_ban_stop_a_guesser_and_fail2ban_matches_every_failure() {
    let log = TempDir::new("guess-log");
    let path = log.0.join("ferroswitch.log");
    let auth = "\n[auth]\nfailures_before_backoff = 3\nfailures_before_ban = 5\nban_secs = 600";
    let sw = SwitchProcess::start_logged(auth, "info", &path);
    let guesser = socket("127.0.0.1");
    let first = register(&guesser, sw.udp, 1, None, "");
    assert_eq!(status(&first), 401);
    let n1 = nonce_of(&first);
    // A wrong guess: challenged again, with a new nonce.
    let r = register(&guesser, sw.udp, 2, Some(&n1), "0000");
    assert_eq!(status(&r), 401);
    let n2 = nonce_of(&r);
    assert_ne!(n1, n2);
    // The burnt nonce refuses even the right password (failure 2), the new one a guess (3).
    assert_eq!(status(&register(&guesser, sw.udp, 3, Some(&n1), "1234")), 401);
    let r = register(&guesser, sw.udp, 4, Some(&n2), "1111");
    assert_eq!(status(&r), 401);
    // Three failures: the next try comes too soon.
    let r = register(&guesser, sw.udp, 5, Some(&nonce_of(&r)), "2222");
    assert_eq!(status(&r), 403, "{r}");
    assert_eq!(header_values(&r, "Retry-After"), ["1"]);
    std::thread::sleep(Duration::from_millis(1100));
    let r = register(&guesser, sw.udp, 6, None, "");
    let r = register(&guesser, sw.udp, 7, Some(&nonce_of(&r)), "3333");
    assert_eq!(status(&r), 401, "failure 4, after waiting");
    std::thread::sleep(Duration::from_millis(2100));
    let r = register(&guesser, sw.udp, 8, None, "");
    let r = register(&guesser, sw.udp, 9, Some(&nonce_of(&r)), "4444");
    assert_eq!(status(&r), 401, "failure 5: banned from now on");
    // Banned: not even an OPTIONS is answered, not even the right password.
    assert_eq!(register(&guesser, sw.udp, 10, None, ""), "");
    let options = options_request("UDP", guesser.local_addr().unwrap(), sw.udp, "guess-opt");
    assert!(udp_exchange_from(&guesser, sw.udp, options.as_bytes()).is_empty());
    // Another address is served.
    let other = socket("127.0.0.2");
    let options = options_request("UDP", other.local_addr().unwrap(), sw.udp, "other-opt");
    assert_eq!(
        udp_exchange_from(&other, sw.udp, options.as_bytes()).iter().map(|r| status(r)).collect::<Vec<_>>(),
        [200]
    );
    let r = register(&other, sw.udp, 1, None, "");
    assert_eq!(status(&register(&other, sw.udp, 2, Some(&nonce_of(&r)), "1234")), 200);

    // Five failure lines, each naming the source, user and realm; fail2ban's filter
    // matches exactly those.
    drop(sw);
    let text = std::fs::read_to_string(&path).unwrap();
    let failures: Vec<&str> = text.lines().filter(|l| l.contains("auth failure:")).collect();
    assert_eq!(failures.len(), 5, "{text}");
    for l in &failures {
        assert!(
            l.contains("source_ip=127.0.0.1 source_port=") && l.contains("user=\"1000\" realm=\"127.0.0.1\""),
            "{l}"
        );
    }
    assert!(text.contains("auth ban: source_ip=127.0.0.1 after 5 failures"), "{text}");
    ensure_tool("fail2ban-regex");
    let filter = format!("{}/../ci/fail2ban/filter.d/ferroswitch.conf", env!("CARGO_MANIFEST_DIR"));
    let out = Command::new("fail2ban-regex")
        .args(["--print-all-matched", "--print-all-missed", path.to_str().unwrap(), &filter])
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{report}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(report.contains("Failregex: 5 total"), "{report}");
    assert!(report.contains("127.0.0.1"), "{report}");
}

/// Sends `data` from `s` and collects what comes back within the socket's timeout.
fn udp_exchange_from(s: &UdpSocket, to: SocketAddr, data: &[u8]) -> Vec<String> {
    s.send_to(data, to).unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok((n, _)) = s.recv_from(&mut buf) {
        out.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    out
}
