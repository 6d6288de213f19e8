//! rtpengine's NG protocol against the real switch and its media plane: a client sets up
//! a call with offer and answer, RTP flows both ways through the media plane on the
//! ports the rewritten SDPs name, and query, list and delete report it.

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use common::SwitchProcess;
use control_plane::ng::bencode::Value;
use control_plane::sdp::Sdp;

struct Client {
    sock: UdpSocket,
    ng: SocketAddr,
    n: u32,
}

impl Client {
    fn new(ng: SocketAddr) -> Client {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        Client { sock, ng, n: 0 }
    }

    /// Sends `req` with a fresh cookie (or `cookie`) and returns the answer dictionary.
    fn call(&mut self, req: Value, cookie: Option<&str>) -> Value {
        self.n += 1;
        let cookie = cookie.map_or_else(|| format!("c{}", self.n), str::to_string);
        let mut d = format!("{cookie} ").into_bytes();
        req.encode_into(&mut d);
        self.sock.send_to(&d, self.ng).unwrap();
        let mut buf = vec![0u8; 65536];
        let (n, _) = self.sock.recv_from(&mut buf).expect("an NG answer");
        let text = &buf[..n];
        let sp = text.iter().position(|&c| c == b' ').unwrap();
        assert_eq!(&text[..sp], cookie.as_bytes(), "the answer echoes the cookie");
        Value::decode(&text[sp + 1..]).unwrap()
    }
}

fn sdp_for(peer: &UdpSocket) -> String {
    let a = peer.local_addr().unwrap();
    format!(
        "v=0\r\no=- 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\nm=audio {port} RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n",
        ip = a.ip(),
        port = a.port()
    )
}

fn media_addr(v: &Value) -> SocketAddr {
    let sdp = Sdp::parse(
        v.get("sdp")
            .and_then(|s| match s {
                Value::Bytes(b) => Some(b.as_slice()),
                _ => None,
            })
            .expect("an SDP in the answer"),
    )
    .unwrap();
    let ip = sdp.connection_for(0).unwrap().ip().unwrap();
    SocketAddr::new(ip, sdp.media[0].port)
}

fn rtp(seq: u16) -> Vec<u8> {
    let mut p = vec![0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9];
    p[2..4].copy_from_slice(&seq.to_be_bytes());
    p.extend([0xd5; 160]);
    p
}

#[test]
fn offer_answer_relay_query_and_delete_through_the_media_plane() {
    let sw = SwitchProcess::start("");
    let mut c = Client::new(sw.ng.expect("the switch serves NG"));
    assert_eq!(
        c.call(Value::dict([("command", Value::str("ping"))]), None).get("result").and_then(Value::as_str),
        Some("pong")
    );

    let (pa, pb) = (UdpSocket::bind("127.0.0.1:0").unwrap(), UdpSocket::bind("127.0.0.1:0").unwrap());
    for s in [&pa, &pb] {
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    }
    let offer = Value::dict([
        ("command", Value::str("offer")),
        ("call-id", Value::str("call-1")),
        ("from-tag", Value::str("tag-a")),
        ("sdp", Value::str(&sdp_for(&pa))),
        ("flags", Value::List(vec![Value::str("trust address")])),
        ("replace", Value::List(vec![Value::str("origin")])),
    ]);
    let to_b = c.call(offer.clone(), Some("offer-1"));
    assert_eq!(to_b.get("result").and_then(Value::as_str), Some("ok"), "{to_b:?}");
    let for_b = media_addr(&to_b);
    assert_ne!(for_b.port(), pa.local_addr().unwrap().port(), "B is sent the media plane's port");
    // A retransmitted offer (same cookie) gets the same answer, without a second session.
    assert_eq!(c.call(offer, Some("offer-1")), to_b);

    let answer = Value::dict([
        ("command", Value::str("answer")),
        ("call-id", Value::str("call-1")),
        ("from-tag", Value::str("tag-a")),
        ("to-tag", Value::str("tag-b")),
        ("sdp", Value::str(&sdp_for(&pb))),
        ("flags", Value::List(vec![Value::str("trust address")])),
    ]);
    let to_a = c.call(answer, None);
    assert_eq!(to_a.get("result").and_then(Value::as_str), Some("ok"), "{to_a:?}");
    let for_a = media_addr(&to_a);

    // RTP both ways through the media plane.
    let mut buf = [0u8; 2048];
    for seq in 0..10u16 {
        pa.send_to(&rtp(seq), for_a).unwrap();
        let (n, from) = pb.recv_from(&mut buf).expect("A's RTP reaches B");
        assert_eq!((&buf[..n], from), (rtp(seq).as_slice(), for_b));
        pb.send_to(&rtp(seq), for_b).unwrap();
        let (n, from) = pa.recv_from(&mut buf).expect("B's RTP reaches A");
        assert_eq!((&buf[..n], from), (rtp(seq).as_slice(), for_a));
    }

    // query names each side's media-plane port and peer, rtpengine's way (its counters come
    // from the media plane's periodic reports, so their values are checked where a call lasts).
    let q = c.call(Value::dict([("command", Value::str("query")), ("call-id", Value::str("call-1"))]), None);
    for (tag, other, port, peer) in [("tag-a", "tag-b", for_a, &pa), ("tag-b", "tag-a", for_b, &pb)] {
        let side = q.get("tags").and_then(|t| t.get(tag)).unwrap_or_else(|| panic!("no {tag} in {q:?}"));
        assert_eq!(side.get("in dialogue with").and_then(Value::as_str), Some(other));
        let Some(Value::List(medias)) = side.get("medias") else { panic!("no medias in {side:?}") };
        assert_eq!(medias.len(), 1);
        assert_eq!(medias[0].get("type").and_then(Value::as_str), Some("audio"));
        let Some(Value::List(streams)) = medias[0].get("streams") else { panic!("no streams in {side:?}") };
        assert_eq!(streams[0].get("local port"), Some(&Value::Int(i64::from(port.port()))));
        let endpoint = streams[0].get("endpoint").expect("the peer's endpoint");
        assert_eq!(endpoint.get("address").and_then(Value::as_str), Some("127.0.0.1"));
        assert_eq!(endpoint.get("port"), Some(&Value::Int(i64::from(peer.local_addr().unwrap().port()))));
    }

    let list = c.call(Value::dict([("command", Value::str("list"))]), None);
    assert_eq!(list.get("calls"), Some(&Value::List(vec![Value::str("call-1")])));
    let del = c.call(Value::dict([("command", Value::str("delete")), ("call-id", Value::str("call-1"))]), None);
    assert_eq!(del.get("result").and_then(Value::as_str), Some("ok"), "{del:?}");
    let rtp_totals = del.get("totals").and_then(|t| t.get("RTP")).expect("totals");
    assert_eq!(rtp_totals.get("packets"), Some(&Value::Int(20)));
    assert_eq!(rtp_totals.get("bytes"), Some(&Value::Int(20 * 172)));
    let again = c.call(Value::dict([("command", Value::str("delete")), ("call-id", Value::str("call-1"))]), None);
    assert_eq!(again.get("result").and_then(Value::as_str), Some("error"));
    assert_eq!(again.get("error-reason").and_then(Value::as_str), Some("unknown call-id \"call-1\""));
    sw.stop();
}

#[test]
fn bad_requests_get_error_answers() {
    let sw = SwitchProcess::start("");
    let mut c = Client::new(sw.ng.expect("the switch serves NG"));
    let e = c.call(Value::dict([("command", Value::str("teleport"))]), None);
    assert_eq!(e.get("error-reason").and_then(Value::as_str), Some("unknown command \"teleport\""));
    let bad_sdp = Value::dict([
        ("command", Value::str("offer")),
        ("call-id", Value::str("x")),
        ("from-tag", Value::str("y")),
        ("sdp", Value::str("v=1\r\n")),
    ]);
    let e = c.call(bad_sdp, None);
    assert_eq!(e.get("error-reason").and_then(Value::as_str), Some("SDP line 1: version \"1\", expected 0"));
    sw.stop();
}

fn offer(call_id: &str, sdp: &str, extra: Vec<(&'static str, Value)>) -> Value {
    let mut fields = vec![
        ("command", Value::str("offer")),
        ("call-id", Value::str(call_id)),
        ("from-tag", Value::str("tag-a")),
        ("sdp", Value::str(sdp)),
    ];
    fields.extend(extra);
    Value::dict(fields)
}

fn error_reason(v: &Value) -> Option<&str> {
    v.get("error-reason").and_then(Value::as_str)
}

#[test]
fn an_offer_naming_the_media_planes_own_port_multicast_or_too_many_streams_is_refused() {
    let sw = SwitchProcess::start("");
    let mut c = Client::new(sw.ng.expect("the switch serves NG"));
    let pa = UdpSocket::bind("127.0.0.1:0").unwrap();
    // A first call tells us a port of the media plane's own.
    let own = media_addr(&c.call(offer("ok-1", &sdp_for(&pa), vec![]), None));
    let looped = format!(
        "v=0\r\no=- 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\nm=audio {port} RTP/AVP 0\r\n",
        ip = own.ip(),
        port = own.port()
    );
    let e = c.call(offer("loop-1", &looped, vec![]), None);
    assert_eq!(error_reason(&e), Some(format!("media address {own} is the media plane's own (a media loop)").as_str()));
    let multicast =
        "v=0\r\no=- 1 1 IN IP4 239.1.2.3\r\ns=-\r\nc=IN IP4 239.1.2.3/16\r\nt=0 0\r\nm=audio 5004 RTP/AVP 0\r\n";
    let e = c.call(offer("mc-1", multicast, vec![]), None);
    assert_eq!(error_reason(&e), Some("media address 239.1.2.3:5004 is multicast or broadcast"));
    let many: String = (0..17).map(|i| format!("m=audio {} RTP/AVP 0\r\n", 5000 + 2 * i)).collect();
    let many = format!("v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n{many}");
    let e = c.call(offer("many-1", &many, vec![]), None);
    assert_eq!(error_reason(&e), Some("17 media streams, at most 16 (sip.max_sdp_media)"));
    // Nothing was set up for the refused offers.
    let list = c.call(Value::dict([("command", Value::str("list"))]), None);
    assert_eq!(list.get("calls"), Some(&Value::List(vec![Value::str("ok-1")])));
    sw.stop();
}

#[test]
fn a_call_without_rtp_is_deleted_at_its_timeout_and_a_source_holds_only_so_many() {
    let dir = common::TempDir::new("switch");
    let sw = SwitchProcess::start_with_ng(dir, "", "", "max_calls_per_source = 2");
    let mut c = Client::new(sw.ng.expect("the switch serves NG"));
    let pa = UdpSocket::bind("127.0.0.1:0").unwrap();
    // A one-second RTP timeout set by the offer; nobody sends RTP.
    let a = c.call(offer("quiet-1", &sdp_for(&pa), vec![("timeout", Value::Int(1))]), None);
    assert_eq!(a.get("result").and_then(Value::as_str), Some("ok"), "{a:?}");
    let b = c.call(offer("busy-1", &sdp_for(&pa), vec![]), None);
    assert_eq!(b.get("result").and_then(Value::as_str), Some("ok"), "{b:?}");
    // Two calls held: a third from the same source is refused.
    let e = c.call(offer("third-1", &sdp_for(&pa), vec![]), None);
    assert_eq!(error_reason(&e), Some("too many calls from 127.0.0.1 (2; ng.max_calls_per_source)"));
    // The quiet call goes by itself (within 10 s); its place is free again.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let calls = loop {
        let list = c.call(Value::dict([("command", Value::str("list"))]), None);
        if list.get("calls") == Some(&Value::List(vec![Value::str("busy-1")])) || std::time::Instant::now() > deadline {
            break list;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(calls.get("calls"), Some(&Value::List(vec![Value::str("busy-1")])), "the quiet call was deleted");
    let again = c.call(offer("third-2", &sdp_for(&pa), vec![]), None);
    assert_eq!(again.get("result").and_then(Value::as_str), Some("ok"), "{again:?}");
    sw.stop();
}
