//! The SIP edge against strangers, over real sockets: a TCP client trickling a message a
//! byte at a time (slowloris) is closed at the message deadline while others are served,
//! a TCP message over the size limit gets 513 before the close, and a source over its
//! request rate gets 503 with Retry-After while another source is served.

mod common;

use std::io::{Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::time::Duration;

use common::*;

const WAIT: Duration = Duration::from_millis(1500);

#[test]
fn a_tcp_client_trickling_its_message_is_closed_at_the_deadline_and_others_are_served() {
    let sw = SwitchProcess::start("tcp_message_timeout_ms = 400\ntcp_idle_timeout_secs = 60\n");
    let mut slow = TcpStream::connect(sw.tcp).unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let req = options_request("TCP", slow.local_addr().unwrap(), sw.tcp, "slow-1");
    // One byte every 100 ms: the idle timeout (60 s) never fires, the message deadline
    // (400 ms) does, long before the 40 bytes are out.
    let mut closed = false;
    for b in req.as_bytes().iter().take(40) {
        if slow.write_all(&[*b]).is_err() {
            closed = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
        let mut buf = [0u8; 64];
        slow.set_nonblocking(true).unwrap();
        let r = slow.read(&mut buf);
        slow.set_nonblocking(false).unwrap();
        if matches!(r, Ok(0)) {
            closed = true;
            break;
        }
    }
    assert!(closed, "the trickling connection was not closed within 40 bytes");
    // A client that sends its message at once is served.
    let mut quick = TcpStream::connect(sw.tcp).unwrap();
    let local = quick.local_addr().unwrap();
    write_all(&mut quick, options_request("TCP", local, sw.tcp, "quick-1").as_bytes());
    assert_eq!(tcp_read_responses(&mut quick, 1, WAIT).iter().map(|t| status(t)).collect::<Vec<_>>(), [200]);
}

#[test]
fn a_tcp_message_over_the_size_limit_gets_513_then_the_connection_closes() {
    let sw = SwitchProcess::start("max_message_size = 2048\n");
    let mut s = TcpStream::connect(sw.tcp).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    let local = s.local_addr().unwrap();
    // A Content-Length that takes the message past 2048 bytes.
    let req = options_request("TCP", local, sw.tcp, "big-tcp").replace("Content-Length: 0", "Content-Length: 5000");
    write_all(&mut s, req.as_bytes());
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) => panic!("no close after the 513: {e}; got {:?}", String::from_utf8_lossy(&got)),
        }
    }
    let text = String::from_utf8_lossy(&got);
    assert_eq!(status(&text), 513, "{text}");
    assert_eq!(header_values(&text, "Call-ID"), ["big-tcp"]);
}

#[test]
fn a_source_over_its_request_rate_gets_503_with_retry_after_and_others_are_served() {
    let sw = SwitchProcess::start("requests_per_source_per_sec = 5\nrequest_burst_per_source = 5\n");
    let flooder = UdpSocket::bind("127.0.0.1:0").unwrap();
    flooder.set_read_timeout(Some(WAIT)).unwrap();
    let local = flooder.local_addr().unwrap();
    for i in 0..8 {
        let req = options_request("UDP", local, sw.udp, &format!("flood-{i}"));
        flooder.send_to(req.as_bytes(), sw.udp).unwrap();
    }
    let mut statuses = Vec::new();
    let mut buf = [0u8; 4096];
    while statuses.len() < 8 {
        let (n, _) = flooder.recv_from(&mut buf).expect("an answer to every request");
        let text = String::from_utf8_lossy(&buf[..n]).into_owned();
        if status(&text) == 503 {
            assert_eq!(header_values(&text, "Retry-After"), ["1"], "{text}");
        }
        statuses.push(status(&text));
    }
    statuses.sort();
    assert_eq!(statuses, [200, 200, 200, 200, 200, 503, 503, 503], "a burst of 5, then refused");
    let other = UdpSocket::bind("127.0.0.2:0").unwrap();
    let req = options_request("UDP", other.local_addr().unwrap(), sw.udp, "other-1");
    assert_eq!(udp_exchange_from(&other, sw.udp, req.as_bytes()), [200]);
}

fn udp_exchange_from(s: &UdpSocket, to: std::net::SocketAddr, data: &[u8]) -> Vec<u16> {
    s.set_read_timeout(Some(Duration::from_millis(700))).unwrap();
    s.send_to(data, to).unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok((n, _)) = s.recv_from(&mut buf) {
        out.push(status(&String::from_utf8_lossy(&buf[..n])));
    }
    out
}
