//! Transaction layer behaviour, driven directly on a virtual clock: exact outputs,
//! states and timer instants, named after the RFC sections they check.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::*;
use crate::sip::message::write::{default_reason, response_to, Writer};
use crate::sip::message::{Framing, HeaderName, Message, Method};
use crate::sip::transport::{Peer, TransportKind};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("test addresses are valid")
}

/// The UAC's view of the UAS, or the UAS's view of a UAC at `192.0.2.10:5060`.
fn peer(transport: TransportKind, remote: &str, local: &str) -> Peer {
    Peer { transport, remote: addr(remote), local: addr(local) }
}

fn to_uas(transport: TransportKind) -> Peer {
    peer(transport, "192.0.2.20:5060", "192.0.2.10:5060")
}

fn from_uac(transport: TransportKind) -> Peer {
    peer(transport, "192.0.2.10:5060", "192.0.2.20:5060")
}

fn parse(buf: Vec<u8>) -> Message {
    Message::parse(Bytes::from(buf), Framing::Datagram).expect("test messages parse")
}

fn via(branch: &str) -> String {
    format!("SIP/2.0/UDP 192.0.2.10:5060;branch={branch}")
}

/// A request from alice (From tag `a1`) to bob with the given top Via, To tag and CSeq.
fn request(method: &str, via: &str, to_tag: Option<&str>, cseq: u32, call_id: &str) -> Message {
    let mut buf = Vec::new();
    let mut w = Writer::request(&mut buf, method.as_bytes(), b"sip:bob@example.com");
    w.header("Via", via);
    w.header("Max-Forwards", "70");
    w.header("From", "\"Alice\" <sip:alice@example.com>;tag=a1");
    match to_tag {
        Some(t) => w.header("To", format!("<sip:bob@example.com>;tag={t}")),
        None => w.header("To", "<sip:bob@example.com>"),
    };
    w.header("Call-ID", call_id);
    w.header_fmt("CSeq", format_args!("{cseq} {method}"));
    w.finish(b"");
    parse(buf)
}

fn invite(branch: &str) -> Message {
    request("INVITE", &via(branch), None, 1, "call-1@192.0.2.10")
}

fn options(branch: &str) -> Message {
    request("OPTIONS", &via(branch), None, 7, "opt-1@192.0.2.10")
}

/// The ACK a UAC sends for a 2xx: a new branch, the 2xx's To tag.
fn ack_for_2xx(branch: &str, to_tag: &str) -> Message {
    request("ACK", &via(branch), Some(to_tag), 1, "call-1@192.0.2.10")
}

fn response_bytes(req: &Message, code: u16, to_tag: Option<&str>) -> Bytes {
    let mut buf = Vec::new();
    response_to(req, code, default_reason(code), to_tag.map(str::as_bytes), None, &mut buf).finish(b"");
    Bytes::from(buf)
}

fn response(req: &Message, code: u16, to_tag: Option<&str>) -> Message {
    Message::parse(response_bytes(req, code, to_tag), Framing::Datagram).expect("test responses parse")
}

fn drain(layer: &mut TransactionLayer) -> Vec<Output> {
    std::iter::from_fn(|| layer.poll_output()).collect()
}

/// A one-line summary of an output: `send INVITE`, `send 486`, `request ACK (no tx)`,
/// `response 180`, `timeout`, `terminated`.
fn describe(out: &Output) -> String {
    match out {
        Output::Transmit { bytes, .. } => {
            let m = Message::parse(bytes.clone(), Framing::Datagram).expect("the layer only sends messages that parse");
            match m.status() {
                Some(code) => format!("send {code}"),
                None => format!("send {}", String::from_utf8_lossy(m.method_bytes())),
            }
        }
        Output::Event(Event::Request { tx, msg, .. }) => format!(
            "request {}{}",
            String::from_utf8_lossy(msg.method_bytes()),
            if tx.is_none() { " (no tx)" } else { "" }
        ),
        Output::Event(Event::Response { msg, .. }) => {
            format!("response {}", msg.status().unwrap_or_default())
        }
        Output::Event(Event::Timeout { .. }) => "timeout".to_string(),
        Output::Event(Event::Terminated { .. }) => "terminated".to_string(),
    }
}

fn outputs(layer: &mut TransactionLayer) -> Vec<String> {
    drain(layer).iter().map(describe).collect()
}

/// Fires timers one deadline at a time until `until`; returns (ms after `t0`, outputs).
fn run_timers(layer: &mut TransactionLayer, t0: Instant, until: Instant) -> Vec<(u64, Vec<String>)> {
    let mut fired = Vec::new();
    while let Some(at) = layer.poll_timeout() {
        if at > until {
            break;
        }
        layer.handle_timeout(at);
        fired.push(((at - t0).as_millis() as u64, outputs(layer)));
    }
    fired
}

fn sends(what: &str, at_ms: &[u64]) -> Vec<(u64, Vec<String>)> {
    at_ms.iter().map(|&t| (t, vec![what.to_string()])).collect()
}

fn transmitted(out: &[Output]) -> Vec<Message> {
    out.iter()
        .filter_map(|o| match o {
            Output::Transmit { bytes, .. } => {
                Some(Message::parse(bytes.clone(), Framing::Datagram).expect("sent messages parse"))
            }
            Output::Event(_) => None,
        })
        .collect()
}

fn layer() -> TransactionLayer {
    TransactionLayer::new(TimerConfig::default())
}

/// A server transaction for an INVITE from the UAC; the 100 and the event are drained.
fn invite_server(l: &mut TransactionLayer, now: Instant, transport: TransportKind) -> (TxId, Message) {
    let inv = invite("z9hG4bKsrv1");
    l.handle_message(now, inv.clone(), from_uac(transport));
    let out = drain(l);
    let tx = out
        .iter()
        .find_map(|o| match o {
            Output::Event(Event::Request { tx, .. }) => *tx,
            _ => None,
        })
        .expect("a new INVITE creates a server transaction");
    (tx, inv)
}

// ---- INVITE client (RFC 3261 §17.1.1, RFC 6026 §8.4) ----

#[test]
fn invite_client_retransmits_at_t1_doubling_and_times_out_at_64_t1_rfc3261_17_1_1_2() {
    let t0 = Instant::now();
    let mut l = layer();
    let tx = l.request(t0, invite("z9hG4bKc1"), to_uas(TransportKind::Udp)).unwrap();
    assert_eq!(outputs(&mut l), ["send INVITE"]);
    assert_eq!(l.state(tx), Some(State::Calling));
    assert_eq!(l.poll_timeout(), Some(t0 + ms(500)));

    let mut expected = sends("send INVITE", &[500, 1_500, 3_500, 7_500, 15_500, 31_500]);
    expected.push((32_000, vec!["timeout".into(), "terminated".into()]));
    assert_eq!(run_timers(&mut l, t0, t0 + ms(100_000)), expected);
    assert_eq!(l.state(tx), None);
    assert!(l.is_empty());
    assert_eq!(l.poll_timeout(), None);
}

#[test]
fn invite_client_provisional_stops_timer_a_and_b_rfc3261_17_1_1_2() {
    let t0 = Instant::now();
    let mut l = layer();
    let inv = invite("z9hG4bKc2");
    let tx = l.request(t0, inv.clone(), to_uas(TransportKind::Udp)).unwrap();
    drain(&mut l);
    l.handle_message(t0 + ms(100), response(&inv, 180, Some("b1")), to_uas(TransportKind::Udp));
    assert_eq!(outputs(&mut l), ["response 180"]);
    assert_eq!(l.state(tx), Some(State::Proceeding));
    // Timer B only guards Calling: Proceeding waits for the final response.
    assert_eq!(l.poll_timeout(), None);
    l.handle_message(t0 + ms(200), response(&inv, 183, Some("b1")), to_uas(TransportKind::Udp));
    assert_eq!(outputs(&mut l), ["response 183"]);
}

#[test]
fn invite_client_acks_non_2xx_final_with_the_request_fields_rfc3261_17_1_1_3() {
    let t0 = Instant::now();
    let mut l = layer();
    let mut buf = Vec::new();
    let mut w = Writer::request(&mut buf, b"INVITE", b"sip:bob@biloxi.example.com;transport=udp");
    w.header("Via", "SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKack1");
    w.header("Via", "SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKbelow");
    w.header("Max-Forwards", "12");
    w.header("Route", "<sip:p1.example.com;lr>, <sip:p2.example.com;lr>");
    w.header("From", "\"Alice\" <sip:alice@example.com>;tag=a1");
    w.header("To", "<sip:bob@biloxi.example.com>");
    w.header("Call-ID", "ack-call@192.0.2.10");
    w.header("CSeq", "314 INVITE");
    w.header("Contact", "<sip:alice@192.0.2.10>");
    w.finish(b"v=0\r\n");
    let inv = parse(buf);
    let tx = l.request(t0, inv.clone(), to_uas(TransportKind::Udp)).unwrap();
    drain(&mut l);

    l.handle_message(t0 + ms(50), response(&inv, 486, Some("busy7")), to_uas(TransportKind::Udp));
    let out = drain(&mut l);
    assert_eq!(out.iter().map(describe).collect::<Vec<_>>(), ["send ACK", "response 486"]);
    assert_eq!(l.state(tx), Some(State::Completed));
    let ack = &transmitted(&out)[0];
    assert_eq!(ack.method(), Method::Ack);
    assert_eq!(ack.request_uri_bytes(), b"sip:bob@biloxi.example.com;transport=udp");
    assert_eq!(ack.call_id(), b"ack-call@192.0.2.10");
    assert_eq!(ack.cseq(), 314);
    assert_eq!(ack.cseq_method(), Method::Ack);
    assert_eq!(ack.header(HeaderName::CSeq), Some(&b"314 ACK"[..]));
    assert_eq!(ack.header(HeaderName::From), Some(&b"\"Alice\" <sip:alice@example.com>;tag=a1"[..]));
    assert_eq!(ack.header(HeaderName::To), Some(&b"<sip:bob@biloxi.example.com>;tag=busy7"[..]));
    assert_eq!(ack.to_tag(), Some(&b"busy7"[..]));
    let vias: Vec<&[u8]> = ack.values(HeaderName::Via).collect();
    assert_eq!(vias, [&b"SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKack1"[..]]);
    let routes: Vec<&[u8]> = ack.values(HeaderName::Route).collect();
    assert_eq!(routes, [&b"<sip:p1.example.com;lr>"[..], &b"<sip:p2.example.com;lr>"[..]]);
    assert_eq!(ack.max_forwards(), Some(70));
    assert_eq!(ack.content_length(), Some(0));
    assert_eq!(ack.header(HeaderName::Contact), None);
    assert!(ack.body().is_empty());
}

#[test]
fn invite_client_re_acks_retransmitted_final_and_timer_d_ends_at_32_s_rfc3261_17_1_1_2() {
    let t0 = Instant::now();
    let mut l = layer();
    let inv = invite("z9hG4bKc3");
    let tx = l.request(t0, inv.clone(), to_uas(TransportKind::Udp)).unwrap();
    drain(&mut l);
    let busy = response(&inv, 486, Some("b1"));
    l.handle_message(t0 + ms(100), busy.clone(), to_uas(TransportKind::Udp));
    let first_ack = transmitted(&drain(&mut l))[0].as_bytes().to_vec();
    assert_eq!(l.poll_timeout(), Some(t0 + ms(32_100)));

    l.handle_message(t0 + ms(600), busy.clone(), to_uas(TransportKind::Udp));
    let out = drain(&mut l);
    assert_eq!(out.iter().map(describe).collect::<Vec<_>>(), ["send ACK"]);
    assert_eq!(transmitted(&out)[0].as_bytes(), &first_ack[..]);
    // A 2xx after the non-2xx belongs to nothing here.
    l.handle_message(t0 + ms(700), response(&inv, 200, Some("b1")), to_uas(TransportKind::Udp));
    assert!(outputs(&mut l).is_empty());

    assert_eq!(run_timers(&mut l, t0, t0 + ms(100_000)), [(32_100, vec!["terminated".to_string()])]);
    assert_eq!(l.state(tx), None);
}

#[test]
fn invite_client_over_tcp_never_retransmits_and_timer_d_is_zero_rfc3261_17_1_1_2() {
    let t0 = Instant::now();
    let mut l = layer();
    let inv = invite("z9hG4bKc4");
    let tx = l.request(t0, inv.clone(), to_uas(TransportKind::Tcp)).unwrap();
    assert_eq!(outputs(&mut l), ["send INVITE"]);
    // Only Timer B is armed.
    assert_eq!(l.poll_timeout(), Some(t0 + ms(32_000)));
    l.handle_message(t0 + ms(100), response(&inv, 603, Some("d1")), to_uas(TransportKind::Tcp));
    assert_eq!(outputs(&mut l), ["send ACK", "response 603", "terminated"]);
    assert_eq!(l.state(tx), None);
    assert!(l.is_empty());
    assert_eq!(l.poll_timeout(), None);
}

#[test]
fn invite_client_over_tcp_times_out_with_timer_b_only_rfc3261_17_1_1_2() {
    let t0 = Instant::now();
    let mut l = layer();
    l.request(t0, invite("z9hG4bKc5"), to_uas(TransportKind::Tcp)).unwrap();
    drain(&mut l);
    assert_eq!(
        run_timers(&mut l, t0, t0 + ms(100_000)),
        [(32_000, vec!["timeout".to_string(), "terminated".to_string()])]
    );
}

#[test]
fn invite_client_accepted_passes_every_2xx_up_until_timer_m_rfc6026_8_4() {
    let t0 = Instant::now();
    let mut l = layer();
    let inv = invite("z9hG4bKc6");
    let tx = l.request(t0, inv.clone(), to_uas(TransportKind::Udp)).unwrap();
    drain(&mut l);
    let ok = response(&inv, 200, Some("b1"));
    l.handle_message(t0 + ms(100), ok.clone(), to_uas(TransportKind::Udp));
    // No ACK from the layer for a 2xx: the TU sends it.
    assert_eq!(outputs(&mut l), ["response 200"]);
    assert_eq!(l.state(tx), Some(State::Accepted));
    l.handle_message(t0 + ms(600), ok, to_uas(TransportKind::Udp));
    l.handle_message(t0 + ms(700), response(&inv, 200, Some("fork2")), to_uas(TransportKind::Udp));
    let out = drain(&mut l);
    let tags: Vec<Option<&[u8]>> = out
        .iter()
        .map(|o| match o {
            Output::Event(Event::Response { tx: t, msg }) => {
                assert_eq!(*t, tx);
                msg.to_tag()
            }
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(tags, [Some(&b"b1"[..]), Some(&b"fork2"[..])]);
    l.handle_message(t0 + ms(800), response(&inv, 486, Some("x")), to_uas(TransportKind::Udp));
    l.handle_message(t0 + ms(900), response(&inv, 180, Some("x")), to_uas(TransportKind::Udp));
    assert!(outputs(&mut l).is_empty());
    assert_eq!(run_timers(&mut l, t0, t0 + ms(100_000)), [(32_100, vec!["terminated".to_string()])]);
}

// ---- non-INVITE client (RFC 3261 §17.1.2) ----

#[test]
fn non_invite_client_retransmits_capped_at_t2_and_times_out_at_64_t1_rfc3261_17_1_2_2() {
    let t0 = Instant::now();
    let mut l = layer();
    let tx = l.request(t0, options("z9hG4bKn1"), to_uas(TransportKind::Udp)).unwrap();
    assert_eq!(outputs(&mut l), ["send OPTIONS"]);
    assert_eq!(l.state(tx), Some(State::Trying));
    let mut expected =
        sends("send OPTIONS", &[500, 1_500, 3_500, 7_500, 11_500, 15_500, 19_500, 23_500, 27_500, 31_500]);
    expected.push((32_000, vec!["timeout".into(), "terminated".into()]));
    assert_eq!(run_timers(&mut l, t0, t0 + ms(100_000)), expected);
    assert!(l.is_empty());
}

#[test]
fn non_invite_client_in_proceeding_retransmits_every_t2_rfc3261_17_1_2_2() {
    let t0 = Instant::now();
    let mut l = layer();
    let opt = options("z9hG4bKn2");
    let tx = l.request(t0, opt.clone(), to_uas(TransportKind::Udp)).unwrap();
    drain(&mut l);
    l.handle_message(t0 + ms(200), response(&opt, 100, None), to_uas(TransportKind::Udp));
    assert_eq!(outputs(&mut l), ["response 100"]);
    assert_eq!(l.state(tx), Some(State::Proceeding));
    // Timer E keeps its deadline (500 ms), then fires every T2; Timer F still ends it.
    let mut expected = sends("send OPTIONS", &[500, 4_500, 8_500, 12_500, 16_500, 20_500, 24_500, 28_500]);
    expected.push((32_000, vec!["timeout".into(), "terminated".into()]));
    assert_eq!(run_timers(&mut l, t0, t0 + ms(100_000)), expected);
}

#[test]
fn non_invite_client_timer_k_absorbs_retransmitted_responses_for_t4_rfc3261_17_1_2_2() {
    let t0 = Instant::now();
    let mut l = layer();
    let opt = options("z9hG4bKn3");
    let tx = l.request(t0, opt.clone(), to_uas(TransportKind::Udp)).unwrap();
    drain(&mut l);
    let ok = response(&opt, 200, Some("b1"));
    l.handle_message(t0 + ms(100), ok.clone(), to_uas(TransportKind::Udp));
    assert_eq!(outputs(&mut l), ["response 200"]);
    assert_eq!(l.state(tx), Some(State::Completed));
    l.handle_message(t0 + ms(1_000), ok, to_uas(TransportKind::Udp));
    assert!(outputs(&mut l).is_empty());
    assert_eq!(run_timers(&mut l, t0, t0 + ms(100_000)), [(5_100, vec!["terminated".to_string()])]);
}

#[test]
fn non_invite_client_over_tcp_has_no_timer_e_and_zero_timer_k_rfc3261_17_1_2_2() {
    let t0 = Instant::now();
    let mut l = layer();
    let opt = options("z9hG4bKn4");
    l.request(t0, opt.clone(), to_uas(TransportKind::Tcp)).unwrap();
    drain(&mut l);
    assert_eq!(l.poll_timeout(), Some(t0 + ms(32_000)));
    l.handle_message(t0 + ms(100), response(&opt, 404, Some("b1")), to_uas(TransportKind::Tcp));
    assert_eq!(outputs(&mut l), ["response 404", "terminated"]);
    assert!(l.is_empty());
    assert_eq!(l.poll_timeout(), None);
}

// ---- INVITE server (RFC 3261 §17.2.1, RFC 6026 §8.7) ----

#[test]
fn invite_server_sends_100_trying_once_the_tu_has_seen_it_rfc3261_17_2_1() {
    let t0 = Instant::now();
    let mut l = layer();
    let inv = request("INVITE", "SIP/2.0/UDP 192.0.2.10:5060;rport;branch=z9hG4bKt1", None, 1, "call-1@192.0.2.10");
    let from_nat = peer(TransportKind::Udp, "198.51.100.7:40000", "192.0.2.20:5060");
    l.handle_message(t0, inv, from_nat);
    let out = drain(&mut l);
    assert_eq!(out.len(), 2);
    assert!(matches!(out[0], Output::Event(Event::Request { .. })), "the TU sees the request first");
    let Output::Transmit { peer: to, bytes } = &out[1] else {
        panic!("then the 100, got {:?}", out[1]);
    };
    assert_eq!(*to, from_nat);
    let trying = Message::parse(bytes.clone(), Framing::Datagram).unwrap();
    assert_eq!(trying.status(), Some(100));
    assert_eq!(trying.reason(), b"Trying");
    assert_eq!(trying.to_tag(), None);
    assert_eq!(
        trying.top_via_bytes(),
        b"SIP/2.0/UDP 192.0.2.10:5060;rport=40000;branch=z9hG4bKt1;received=198.51.100.7"
    );
    assert_eq!(trying.call_id(), b"call-1@192.0.2.10");
    assert_eq!(trying.header(HeaderName::CSeq), Some(&b"1 INVITE"[..]));
    let Output::Event(Event::Request { tx: Some(tx), msg, peer: p, cancels: None }) = &out[0] else {
        panic!("the first output must be the request, got {:?}", out[0]);
    };
    assert_eq!(msg.method(), Method::Invite);
    assert_eq!(*p, from_nat);
    assert_eq!(l.state(*tx), Some(State::Proceeding));
    // No timer runs while the TU decides.
    assert_eq!(l.poll_timeout(), None);
}

#[test]
fn invite_server_re_sends_last_provisional_for_retransmitted_invite_rfc3261_17_2_1() {
    let t0 = Instant::now();
    let mut l = layer();
    let (tx, inv) = invite_server(&mut l, t0, TransportKind::Udp);
    l.handle_message(t0 + ms(500), inv.clone(), from_uac(TransportKind::Udp));
    assert_eq!(outputs(&mut l), ["send 100"]);
    l.respond(t0 + ms(600), tx, 180, response_bytes(&inv, 180, Some("s1"))).unwrap();
    assert_eq!(outputs(&mut l), ["send 180"]);
    l.handle_message(t0 + ms(1_500), inv, from_uac(TransportKind::Udp));
    let out = drain(&mut l);
    assert_eq!(out.iter().map(describe).collect::<Vec<_>>(), ["send 180"]);
    assert_eq!(transmitted(&out)[0].to_tag(), Some(&b"s1"[..]));
    assert_eq!(l.state(tx), Some(State::Proceeding));
}

#[test]
fn invite_server_retransmits_non_2xx_with_timer_g_until_timer_h_rfc3261_17_2_1() {
    let t0 = Instant::now();
    let mut l = layer();
    let (tx, inv) = invite_server(&mut l, t0, TransportKind::Udp);
    l.respond(t0, tx, 486, response_bytes(&inv, 486, Some("s1"))).unwrap();
    assert_eq!(outputs(&mut l), ["send 486"]);
    assert_eq!(l.state(tx), Some(State::Completed));
    // Retransmitted INVITEs get the final response too.
    l.handle_message(t0 + ms(200), inv, from_uac(TransportKind::Udp));
    assert_eq!(outputs(&mut l), ["send 486"]);
    let mut expected = sends("send 486", &[500, 1_500, 3_500, 7_500, 11_500, 15_500, 19_500, 23_500, 27_500, 31_500]);
    expected.push((32_000, vec!["timeout".into(), "terminated".into()]));
    assert_eq!(run_timers(&mut l, t0, t0 + ms(100_000)), expected);
    assert!(l.is_empty());
}

#[test]
fn invite_server_ack_confirms_and_timer_i_terminates_after_t4_rfc3261_17_2_1() {
    let t0 = Instant::now();
    let mut l = layer();
    let (tx, inv) = invite_server(&mut l, t0, TransportKind::Udp);
    l.respond(t0, tx, 486, response_bytes(&inv, 486, Some("s1"))).unwrap();
    drain(&mut l);
    assert_eq!(run_timers(&mut l, t0, t0 + ms(1_000)), sends("send 486", &[500]));
    // The ACK for a non-2xx reuses the INVITE's branch and carries the response's tag.
    let ack = request("ACK", &via("z9hG4bKsrv1"), Some("s1"), 1, "call-1@192.0.2.10");
    l.handle_message(t0 + ms(1_000), ack.clone(), from_uac(TransportKind::Udp));
    assert!(outputs(&mut l).is_empty(), "the ACK for a non-2xx is absorbed");
    assert_eq!(l.state(tx), Some(State::Confirmed));
    l.handle_message(t0 + ms(2_000), ack, from_uac(TransportKind::Udp));
    l.handle_message(t0 + ms(2_000), inv, from_uac(TransportKind::Udp));
    assert!(outputs(&mut l).is_empty(), "Confirmed absorbs ACKs and INVITEs");
    assert_eq!(run_timers(&mut l, t0, t0 + ms(100_000)), [(6_000, vec!["terminated".to_string()])]);
}

#[test]
fn invite_server_over_tcp_has_no_timer_g_and_zero_timer_i_rfc3261_17_2_1() {
    let t0 = Instant::now();
    let mut l = layer();
    let (tx, inv) = invite_server(&mut l, t0, TransportKind::Tcp);
    l.respond(t0, tx, 480, response_bytes(&inv, 480, Some("s1"))).unwrap();
    assert_eq!(outputs(&mut l), ["send 480"]);
    // Only Timer H.
    assert_eq!(l.poll_timeout(), Some(t0 + ms(32_000)));
    let ack = request("ACK", &via("z9hG4bKsrv1"), Some("s1"), 1, "call-1@192.0.2.10");
    l.handle_message(t0 + ms(100), ack, from_uac(TransportKind::Tcp));
    assert_eq!(outputs(&mut l), ["terminated"]);
    assert!(l.is_empty());
    assert_eq!(l.poll_timeout(), None);
}

#[test]
fn invite_server_retransmits_2xx_until_ack_rfc6026_8_1() {
    let t0 = Instant::now();
    let mut l = layer();
    let (tx, inv) = invite_server(&mut l, t0, TransportKind::Udp);
    l.respond(t0, tx, 200, response_bytes(&inv, 200, Some("s1"))).unwrap();
    assert_eq!(outputs(&mut l), ["send 200"]);
    assert_eq!(l.state(tx), Some(State::Accepted));
    assert_eq!(run_timers(&mut l, t0, t0 + ms(4_000)), sends("send 200", &[500, 1_500, 3_500]));
    // Retransmitted INVITEs are absorbed in Accepted.
    l.handle_message(t0 + ms(3_600), inv, from_uac(TransportKind::Udp));
    assert!(outputs(&mut l).is_empty());
    // The ACK for the 2xx has a branch of its own; it goes to the TU and stops the 2xx.
    l.handle_message(t0 + ms(4_000), ack_for_2xx("z9hG4bKack2xx", "s1"), from_uac(TransportKind::Udp));
    let out = drain(&mut l);
    let [Output::Event(Event::Request { tx: None, msg, cancels: None, .. })] = &out[..] else {
        panic!("expected the ACK for the TU, got {out:?}");
    };
    assert_eq!(msg.method(), Method::Ack);
    assert_eq!(l.state(tx), Some(State::Accepted));
    // A retransmitted ACK goes up as well; nothing else happens until Timer L.
    l.handle_message(t0 + ms(5_000), ack_for_2xx("z9hG4bKack2xx", "s1"), from_uac(TransportKind::Udp));
    assert_eq!(outputs(&mut l), ["request ACK (no tx)"]);
    assert_eq!(run_timers(&mut l, t0, t0 + ms(100_000)), [(32_000, vec!["terminated".to_string()])]);
    assert!(l.is_empty());
}

#[test]
fn invite_server_timer_l_without_ack_reports_timeout_rfc6026_8_7() {
    let t0 = Instant::now();
    let mut l = layer();
    let (tx, inv) = invite_server(&mut l, t0, TransportKind::Udp);
    l.respond(t0, tx, 200, response_bytes(&inv, 200, Some("s1"))).unwrap();
    drain(&mut l);
    // An ACK with another To tag is not for this 2xx.
    l.handle_message(t0 + ms(100), ack_for_2xx("z9hG4bKother", "s2"), from_uac(TransportKind::Udp));
    assert_eq!(outputs(&mut l), ["request ACK (no tx)"]);
    let mut expected = sends("send 200", &[500, 1_500, 3_500, 7_500, 11_500, 15_500, 19_500, 23_500, 27_500, 31_500]);
    expected.push((32_000, vec!["timeout".into(), "terminated".into()]));
    assert_eq!(run_timers(&mut l, t0, t0 + ms(100_000)), expected);
}

#[test]
fn invite_server_retransmits_2xx_over_tcp_too_rfc3261_13_3_1_4() {
    let t0 = Instant::now();
    let mut l = layer();
    let (tx, inv) = invite_server(&mut l, t0, TransportKind::Tcp);
    l.respond(t0, tx, 200, response_bytes(&inv, 200, Some("s1"))).unwrap();
    drain(&mut l);
    // The 2xx is retransmitted end to end whatever the first hop's transport.
    assert_eq!(run_timers(&mut l, t0, t0 + ms(2_000)), sends("send 200", &[500, 1_500]));
    l.handle_message(t0 + ms(2_000), ack_for_2xx("z9hG4bKack", "s1"), from_uac(TransportKind::Tcp));
    assert_eq!(outputs(&mut l), ["request ACK (no tx)"]);
    assert_eq!(run_timers(&mut l, t0, t0 + ms(100_000)), [(32_000, vec!["terminated".to_string()])]);
}

#[test]
fn invite_server_refuses_a_second_final_but_takes_another_2xx_rfc6026_8_7() {
    let t0 = Instant::now();
    let mut l = layer();
    let (tx, inv) = invite_server(&mut l, t0, TransportKind::Udp);
    l.respond(t0, tx, 200, response_bytes(&inv, 200, Some("s1"))).unwrap();
    drain(&mut l);
    assert_eq!(
        l.respond(t0, tx, 486, response_bytes(&inv, 486, Some("s1"))),
        Err(TransactionError::FinalAlreadySent { tx, state: State::Accepted })
    );
    assert_eq!(
        l.respond(t0, tx, 180, response_bytes(&inv, 180, Some("s1"))),
        Err(TransactionError::FinalAlreadySent { tx, state: State::Accepted })
    );
    assert!(outputs(&mut l).is_empty());
    l.respond(t0, tx, 200, response_bytes(&inv, 200, Some("s1"))).unwrap();
    assert_eq!(outputs(&mut l), ["send 200"]);
}

// ---- non-INVITE server (RFC 3261 §17.2.2) ----

#[test]
fn non_invite_server_re_answers_retransmissions_until_timer_j_rfc3261_17_2_2() {
    let t0 = Instant::now();
    let mut l = layer();
    let opt = options("z9hG4bKs1");
    l.handle_message(t0, opt.clone(), from_uac(TransportKind::Udp));
    let out = drain(&mut l);
    let [Output::Event(Event::Request { tx: Some(tx), .. })] = &out[..] else {
        panic!("expected only the request (no 100 for non-INVITE), got {out:?}");
    };
    let tx = *tx;
    assert_eq!(l.state(tx), Some(State::Trying));
    // Trying: nothing to re-send yet.
    l.handle_message(t0 + ms(100), opt.clone(), from_uac(TransportKind::Udp));
    assert!(outputs(&mut l).is_empty());
    l.respond(t0 + ms(200), tx, 100, response_bytes(&opt, 100, None)).unwrap();
    assert_eq!(outputs(&mut l), ["send 100"]);
    assert_eq!(l.state(tx), Some(State::Proceeding));
    l.handle_message(t0 + ms(300), opt.clone(), from_uac(TransportKind::Udp));
    assert_eq!(outputs(&mut l), ["send 100"]);
    l.respond(t0 + ms(400), tx, 200, response_bytes(&opt, 200, Some("s1"))).unwrap();
    assert_eq!(outputs(&mut l), ["send 200"]);
    assert_eq!(l.state(tx), Some(State::Completed));
    l.handle_message(t0 + ms(500), opt.clone(), from_uac(TransportKind::Udp));
    assert_eq!(outputs(&mut l), ["send 200"]);
    assert_eq!(
        l.respond(t0 + ms(600), tx, 500, response_bytes(&opt, 500, Some("s1"))),
        Err(TransactionError::FinalAlreadySent { tx, state: State::Completed })
    );
    assert_eq!(run_timers(&mut l, t0, t0 + ms(100_000)), [(32_400, vec!["terminated".to_string()])]);
    // Once the transaction is gone, the same request is new again.
    l.handle_message(t0 + ms(40_000), opt, from_uac(TransportKind::Udp));
    assert_eq!(outputs(&mut l), ["request OPTIONS"]);
}

#[test]
fn non_invite_server_over_tcp_timer_j_is_zero_rfc3261_17_2_2() {
    let t0 = Instant::now();
    let mut l = layer();
    let opt = options("z9hG4bKs2");
    l.handle_message(t0, opt.clone(), from_uac(TransportKind::Tcp));
    let tx = match &drain(&mut l)[..] {
        [Output::Event(Event::Request { tx: Some(tx), .. })] => *tx,
        other => panic!("unexpected {other:?}"),
    };
    l.respond(t0, tx, 200, response_bytes(&opt, 200, Some("s1"))).unwrap();
    assert_eq!(outputs(&mut l), ["send 200", "terminated"]);
    assert!(l.is_empty());
    assert_eq!(
        l.respond(t0, tx, 200, response_bytes(&opt, 200, Some("s1"))),
        Err(TransactionError::NoSuchTransaction(tx))
    );
}

// ---- matching (RFC 3261 §17.1.3, §17.2.3, §9.2, §8.2.2.2) ----

#[test]
fn cancel_matches_the_invite_server_transaction_by_branch_rfc3261_9_2() {
    let t0 = Instant::now();
    let mut l = layer();
    let (inv_tx, _) = invite_server(&mut l, t0, TransportKind::Udp);
    let cancel = request("CANCEL", &via("z9hG4bKsrv1"), None, 1, "call-1@192.0.2.10");
    l.handle_message(t0 + ms(100), cancel.clone(), from_uac(TransportKind::Udp));
    let out = drain(&mut l);
    let [Output::Event(Event::Request { tx: Some(cancel_tx), msg, cancels, .. })] = &out[..] else {
        panic!("expected the CANCEL for the TU, got {out:?}");
    };
    assert_eq!(msg.method(), Method::Cancel);
    assert_eq!(*cancels, Some(inv_tx));
    assert_ne!(*cancel_tx, inv_tx);
    assert_eq!(l.state(*cancel_tx), Some(State::Trying));
    assert_eq!(l.len(), 2);
    // The CANCEL's own retransmission is absorbed by its own transaction.
    l.handle_message(t0 + ms(200), cancel, from_uac(TransportKind::Udp));
    assert!(outputs(&mut l).is_empty());

    let stray = request("CANCEL", &via("z9hG4bKnomatch"), None, 1, "call-2@192.0.2.10");
    l.handle_message(t0 + ms(300), stray, from_uac(TransportKind::Udp));
    match &drain(&mut l)[..] {
        [Output::Event(Event::Request { tx: Some(_), cancels: None, .. })] => {}
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn cancel_matches_an_rfc2543_invite_rfc3261_9_2() {
    let t0 = Instant::now();
    let mut l = layer();
    let legacy_via = "SIP/2.0/UDP 192.0.2.10:5060";
    let inv = request("INVITE", legacy_via, None, 5, "old@192.0.2.10");
    l.handle_message(t0, inv, from_uac(TransportKind::Udp));
    let inv_tx = match &drain(&mut l)[..] {
        [Output::Event(Event::Request { tx: Some(tx), .. }), _] => *tx,
        other => panic!("unexpected {other:?}"),
    };
    let cancel = request("CANCEL", legacy_via, None, 5, "old@192.0.2.10");
    l.handle_message(t0 + ms(100), cancel, from_uac(TransportKind::Udp));
    match &drain(&mut l)[..] {
        [Output::Event(Event::Request { cancels, .. })] => assert_eq!(*cancels, Some(inv_tx)),
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn merged_request_is_answered_482_and_not_passed_up_rfc3261_8_2_2_2() {
    let t0 = Instant::now();
    let mut l = layer();
    let (first, _) = invite_server(&mut l, t0, TransportKind::Udp);
    // The same INVITE forked back to us along another path: another branch.
    let merged = invite("z9hG4bKpath2");
    l.handle_message(t0 + ms(10), merged.clone(), from_uac(TransportKind::Udp));
    let out = drain(&mut l);
    assert_eq!(out.iter().map(describe).collect::<Vec<_>>(), ["send 482"]);
    let loop_detected = &transmitted(&out)[0];
    assert_eq!(loop_detected.reason(), b"Loop Detected");
    assert_eq!(loop_detected.branch(), Some(&b"z9hG4bKpath2"[..]));
    let tag = loop_detected.to_tag().expect("a 482 carries a To tag").to_vec();
    assert_eq!(l.len(), 2);
    assert_eq!(l.state(first), Some(State::Proceeding));
    // Its retransmission gets the 482 again; its ACK is absorbed.
    l.handle_message(t0 + ms(20), merged, from_uac(TransportKind::Udp));
    assert_eq!(outputs(&mut l), ["send 482"]);
    let tag = String::from_utf8(tag).unwrap();
    let ack = request("ACK", &via("z9hG4bKpath2"), Some(&tag), 1, "call-1@192.0.2.10");
    l.handle_message(t0 + ms(30), ack, from_uac(TransportKind::Udp));
    assert!(outputs(&mut l).is_empty());
    // Timer I ends the hidden transaction without telling the TU.
    assert_eq!(run_timers(&mut l, t0, t0 + ms(100_000)), [(5_030, vec![])]);
    assert_eq!(l.len(), 1);
    assert_eq!(l.state(first), Some(State::Proceeding));

    // A request inside a dialog (To tag) is never a merged request.
    let in_dialog = request("INVITE", &via("z9hG4bKpath3"), Some("s1"), 1, "call-1@192.0.2.10");
    l.handle_message(t0 + ms(40_000), in_dialog, from_uac(TransportKind::Udp));
    assert_eq!(outputs(&mut l), ["request INVITE", "send 100"]);
}

#[test]
fn merged_non_invite_is_answered_482_rfc3261_8_2_2_2() {
    let t0 = Instant::now();
    let mut l = layer();
    l.handle_message(t0, options("z9hG4bKo1"), from_uac(TransportKind::Udp));
    assert_eq!(outputs(&mut l), ["request OPTIONS"]);
    l.handle_message(t0, options("z9hG4bKo2"), from_uac(TransportKind::Udp));
    assert_eq!(outputs(&mut l), ["send 482"]);
    // Timer J ends it silently.
    assert_eq!(run_timers(&mut l, t0, t0 + ms(100_000)), [(32_000, vec![])]);
    assert_eq!(l.len(), 1);
}

/// Checks RFC 2543 matching for requests whose top Via is `legacy_via`.
fn rfc2543_matching(legacy_via: &str) {
    let t0 = Instant::now();
    let mut l = layer();
    let inv = request("INVITE", legacy_via, None, 3, "legacy@192.0.2.10");
    l.handle_message(t0, inv.clone(), from_uac(TransportKind::Udp));
    let tx = match &drain(&mut l)[..] {
        [Output::Event(Event::Request { tx: Some(tx), .. }), _] => *tx,
        other => panic!("unexpected {other:?}"),
    };
    l.handle_message(t0 + ms(500), inv.clone(), from_uac(TransportKind::Udp));
    assert_eq!(outputs(&mut l), ["send 100"], "a retransmission is re-answered");
    l.respond(t0 + ms(600), tx, 486, response_bytes(&inv, 486, Some("s9"))).unwrap();
    assert_eq!(outputs(&mut l), ["send 486"]);
    l.handle_message(t0 + ms(700), inv, from_uac(TransportKind::Udp));
    assert_eq!(outputs(&mut l), ["send 486"]);
    // An ACK whose To tag is not the response's matches nothing.
    let wrong = request("ACK", legacy_via, Some("nope"), 3, "legacy@192.0.2.10");
    l.handle_message(t0 + ms(800), wrong, from_uac(TransportKind::Udp));
    assert_eq!(outputs(&mut l), ["request ACK (no tx)"]);
    assert_eq!(l.state(tx), Some(State::Completed));
    let ack = request("ACK", legacy_via, Some("s9"), 3, "legacy@192.0.2.10");
    l.handle_message(t0 + ms(900), ack, from_uac(TransportKind::Udp));
    assert!(outputs(&mut l).is_empty());
    assert_eq!(l.state(tx), Some(State::Confirmed));
    // Another top Via (or CSeq) is another transaction.
    let other = request("OPTIONS", legacy_via, None, 4, "legacy@192.0.2.10");
    l.handle_message(t0 + ms(1_000), other, from_uac(TransportKind::Udp));
    assert_eq!(outputs(&mut l), ["request OPTIONS"]);
}

#[test]
fn request_with_bare_magic_cookie_branch_uses_rfc2543_matching_rfc3261_17_2_3() {
    rfc2543_matching("SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK");
}

#[test]
fn request_without_branch_uses_rfc2543_matching_rfc3261_17_2_3() {
    rfc2543_matching("SIP/2.0/UDP 192.0.2.10:5060");
}

#[test]
fn request_with_pre_rfc3261_branch_uses_rfc2543_matching_rfc3261_17_2_3() {
    rfc2543_matching("SIP/2.0/UDP 192.0.2.10:5060;branch=390skdjuw");
}

#[test]
fn same_branch_from_another_sent_by_is_another_transaction_rfc3261_17_2_3() {
    let t0 = Instant::now();
    let mut l = layer();
    l.handle_message(t0, options("z9hG4bKsame"), from_uac(TransportKind::Udp));
    let other_host = request("OPTIONS", "SIP/2.0/UDP 192.0.2.99:5060;branch=z9hG4bKsame", None, 8, "opt-2@192.0.2.99");
    l.handle_message(t0, other_host, from_uac(TransportKind::Udp));
    assert_eq!(outputs(&mut l), ["request OPTIONS", "request OPTIONS"]);
    assert_eq!(l.len(), 2);
}

#[test]
fn stray_responses_are_dropped_rfc3261_17_1_3() {
    let t0 = Instant::now();
    let mut l = layer();
    let inv = invite("z9hG4bKmine");
    l.request(t0, inv.clone(), to_uas(TransportKind::Udp)).unwrap();
    drain(&mut l);
    // Unknown branch.
    let other = invite("z9hG4bKnotmine");
    l.handle_message(t0, response(&other, 200, Some("x")), to_uas(TransportKind::Udp));
    // Right branch, wrong CSeq method (a response to a CANCEL we never sent).
    let cancel = request("CANCEL", &via("z9hG4bKmine"), None, 1, "call-1@192.0.2.10");
    l.handle_message(t0, response(&cancel, 200, Some("x")), to_uas(TransportKind::Udp));
    // No branch at all.
    let legacy = request("INVITE", "SIP/2.0/UDP 192.0.2.10:5060", None, 1, "c");
    l.handle_message(t0, response(&legacy, 486, Some("x")), to_uas(TransportKind::Udp));
    assert!(outputs(&mut l).is_empty());
    assert_eq!(l.len(), 1);
}

#[test]
fn stray_ack_is_passed_up_without_a_transaction_rfc3261_17_2_3() {
    let t0 = Instant::now();
    let mut l = layer();
    l.handle_message(t0, ack_for_2xx("z9hG4bKstray", "t1"), from_uac(TransportKind::Udp));
    assert_eq!(outputs(&mut l), ["request ACK (no tx)"]);
    assert!(l.is_empty());
}

// ---- the TU's commands ----

#[test]
fn tu_commands_that_cannot_be_carried_out_are_refused() {
    let t0 = Instant::now();
    let mut l = layer();
    let up = to_uas(TransportKind::Udp);
    assert_eq!(l.request(t0, ack_for_2xx("z9hG4bKa", "t"), up).unwrap_err(), TransactionError::AckIsNotATransaction);
    let no_branch = request("OPTIONS", "SIP/2.0/UDP 192.0.2.10", None, 1, "c");
    assert_eq!(l.request(t0, no_branch, up).unwrap_err(), TransactionError::MissingBranch);
    let inv = invite("z9hG4bKdup");
    assert_eq!(l.request(t0, response(&inv, 200, None), up).unwrap_err(), TransactionError::NotARequest);
    let tx = l.request(t0, inv.clone(), up).unwrap();
    assert_eq!(l.request(t0, inv.clone(), up).unwrap_err(), TransactionError::DuplicateBranch(tx));
    // A CANCEL shares the INVITE's branch but is its own transaction.
    let cancel = request("CANCEL", &via("z9hG4bKdup"), None, 1, "call-1@192.0.2.10");
    assert_ne!(l.request(t0, cancel, up).unwrap(), tx);
    assert_eq!(l.respond(t0, tx, 200, response_bytes(&inv, 200, None)), Err(TransactionError::NoSuchTransaction(tx)));
    assert_eq!(l.respond(t0, TxId(999), 200, Bytes::new()), Err(TransactionError::NoSuchTransaction(TxId(999))));
    let (srv, sinv) = invite_server(&mut l, t0, TransportKind::Udp);
    assert_eq!(l.respond(t0, srv, 99, response_bytes(&sinv, 180, None)), Err(TransactionError::InvalidStatus(99)));
    assert_eq!(l.respond(t0, srv, 700, Bytes::new()), Err(TransactionError::InvalidStatus(700)));
    assert!(matches!(
        l.respond(t0, srv, 200, Bytes::from_static(b"garbage")),
        Err(TransactionError::MalformedResponse(_))
    ));
    assert_eq!(l.state(srv), Some(State::Proceeding));
    drain(&mut l);
    l.send_stateless(up, Bytes::from_static(b"raw"));
    match &drain(&mut l)[..] {
        [Output::Transmit { peer, bytes }] => {
            assert_eq!(*peer, up);
            assert_eq!(&bytes[..], b"raw");
        }
        other => panic!("unexpected {other:?}"),
    }
}

// ---- the timer heap ----

#[test]
fn cancelled_timers_never_surface_and_the_heap_empties() {
    let t0 = Instant::now();
    let mut l = layer();
    let mut invites = Vec::new();
    for i in 0..1_000 {
        let inv = invite(&format!("z9hG4bKheap{i}"));
        l.request(t0, inv.clone(), to_uas(TransportKind::Udp)).unwrap();
        invites.push(inv);
    }
    assert_eq!(l.timer_entries(), 2_000);
    assert_eq!(l.poll_timeout(), Some(t0 + ms(500)));
    // Provisionals cancel Timers A and B: every entry is stale and is dropped.
    for inv in &invites {
        l.handle_message(t0 + ms(100), response(inv, 180, Some("b")), to_uas(TransportKind::Udp));
    }
    assert_eq!(l.poll_timeout(), None);
    assert_eq!(l.timer_entries(), 0);
    assert_eq!(l.len(), 1_000);
}

#[test]
fn many_live_transactions_share_one_heap() {
    let t0 = Instant::now();
    let mut l = layer();
    let n = 10_000;
    for i in 0..n {
        let opt = request("OPTIONS", &via(&format!("z9hG4bKmany{i}")), None, 1, &format!("many-{i}"));
        l.handle_message(t0 + ms(i), opt.clone(), from_uac(TransportKind::Udp));
        let tx = match l.poll_output() {
            Some(Output::Event(Event::Request { tx: Some(tx), .. })) => tx,
            other => panic!("unexpected {other:?}"),
        };
        l.respond(t0 + ms(i), tx, 200, response_bytes(&opt, 200, Some("s"))).unwrap();
        drain(&mut l);
    }
    assert_eq!(l.len(), n as usize);
    assert_eq!(l.timer_entries(), n as usize);
    assert_eq!(l.poll_timeout(), Some(t0 + ms(32_000)));
    l.handle_timeout(t0 + ms(32_000 + n / 2));
    assert_eq!(l.len(), (n / 2 - 1) as usize);
    assert_eq!(l.poll_timeout(), Some(t0 + ms(32_000 + n / 2 + 1)));
    l.handle_timeout(t0 + ms(100_000));
    assert!(l.is_empty());
    assert_eq!(l.timer_entries(), 0);
    let terminated = drain(&mut l).iter().filter(|o| matches!(o, Output::Event(Event::Terminated { .. }))).count();
    assert_eq!(terminated, n as usize);
}

#[test]
fn timer_config_scales_every_timer_rfc3261_table_4() {
    let t0 = Instant::now();
    let mut l = TransactionLayer::new(TimerConfig { t1: ms(100), t2: ms(400), t4: ms(1_000) });
    let opt = options("z9hG4bKcfg");
    l.request(t0, opt.clone(), to_uas(TransportKind::Udp)).unwrap();
    drain(&mut l);
    let mut expected = sends(
        "send OPTIONS",
        &[
            100, 300, 700, 1_100, 1_500, 1_900, 2_300, 2_700, 3_100, 3_500, 3_900, 4_300, 4_700, 5_100, 5_500, 5_900,
            6_300,
        ],
    );
    expected.push((6_400, vec!["timeout".into(), "terminated".into()]));
    assert_eq!(run_timers(&mut l, t0, t0 + ms(100_000)), expected);
    assert_eq!(TimerConfig::default().t1, ms(500));
    assert_eq!(TimerConfig::default().t2, ms(4_000));
    assert_eq!(TimerConfig::default().t4, ms(5_000));
}

#[test]
fn past_the_cap_a_new_request_gets_a_stateless_503_with_retry_after_and_in_dialog_ones_still_pass() {
    let mut layer = TransactionLayer::new(TimerConfig::default());
    layer.set_max_transactions(2);
    let t0 = Instant::now();
    let uac = from_uac(TransportKind::Udp);
    let opt = |n: u32| request("OPTIONS", &via(&format!("z9hG4bKo{n}")), None, 7, &format!("opt-{n}@192.0.2.10"));
    layer.handle_message(t0, opt(1), uac);
    layer.handle_message(t0, opt(2), uac);
    drain(&mut layer);
    assert_eq!(layer.len(), 2);
    layer.handle_message(t0, opt(3), uac);
    let out = drain(&mut layer);
    assert_eq!(out.iter().map(describe).collect::<Vec<_>>(), ["send 503"]);
    let Output::Transmit { bytes, .. } = &out[0] else { unreachable!() };
    let refusal = Message::parse(bytes.clone(), Framing::Datagram).unwrap();
    assert_eq!(refusal.header_named("Retry-After"), Some(&b"5"[..]));
    assert_eq!((layer.len(), layer.overloaded()), (2, 1), "nothing kept for it");
    // A BYE in a dialog still gets its transaction (calls must be able to end).
    layer.handle_message(t0, request("BYE", &via("z9hG4bKb1"), Some("t1"), 2, "call-1@192.0.2.10"), uac);
    assert_eq!(drain(&mut layer).iter().map(describe).collect::<Vec<_>>(), ["request BYE"]);
    assert_eq!(layer.len(), 3);
}

#[test]
fn a_challenge_sent_and_forgotten_keeps_no_state_and_a_retransmission_is_answered_anew() {
    let mut layer = TransactionLayer::new(TimerConfig::default());
    let t0 = Instant::now();
    let uac = from_uac(TransportKind::Udp);
    let inv = invite("z9hG4bKflood");
    layer.handle_message(t0, inv.clone(), uac);
    let out = drain(&mut layer);
    let Some(Output::Event(Event::Request { tx: Some(tx), .. })) = out.iter().find(|o| matches!(o, Output::Event(_)))
    else {
        panic!("no request event: {:?}", out.iter().map(describe).collect::<Vec<_>>())
    };
    let tx = *tx;
    layer.respond_and_forget(tx, 407, response_bytes(&inv, 407, Some("ch1"))).unwrap();
    assert_eq!(outputs(&mut layer), ["send 407", "terminated"]);
    assert!(layer.is_empty(), "nothing kept");
    // No Timer G: nothing is retransmitted, ever.
    layer.handle_timeout(t0 + ms(40_000));
    assert!(outputs(&mut layer).is_empty());
    // The client's retransmission is a new request; its ACK to the 407 matches nothing.
    layer.handle_message(t0 + ms(500), inv, uac);
    assert_eq!(outputs(&mut layer).iter().filter(|o| o.starts_with("request")).count(), 1);
    assert_eq!(layer.respond_and_forget(tx, 407, Bytes::new()), Err(TransactionError::NoSuchTransaction(tx)));
    assert!(matches!(layer.respond_and_forget(tx, 200, Bytes::new()), Err(TransactionError::InvalidStatus(200))));
}

#[test]
fn an_invite_the_tu_answers_at_once_gets_no_100_rfc3261_17_2_1() {
    let t0 = Instant::now();
    let mut l = layer();
    let inv = invite("z9hG4bKquick");
    l.handle_message(t0, inv.clone(), from_uac(TransportKind::Udp));
    let Some(Output::Event(Event::Request { tx: Some(tx), .. })) = l.poll_output() else { panic!("the request first") };
    // The TU answers before the layer's queue is drained: no 100 goes out.
    l.respond(t0, tx, 486, response_bytes(&inv, 486, Some("b1"))).unwrap();
    assert_eq!(outputs(&mut l), ["send 486"]);
}
