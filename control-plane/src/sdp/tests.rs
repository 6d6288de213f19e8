use super::*;

/// A SIPp-style G.711 offer with telephone-event.
const OFFER: &str = "v=0\r\n\
o=1000 53655765 2353687637 IN IP4 192.0.2.10\r\n\
s=-\r\n\
c=IN IP4 192.0.2.10\r\n\
t=0 0\r\n\
m=audio 16384 RTP/AVP 0 8 101\r\n\
a=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=fmtp:101 0-16\r\n\
a=ptime:20\r\n\
a=sendrecv\r\n";

/// A WebRTC-ish offer: audio and video, ICE, rtcp-mux, media-level c=, unknown attrs.
const WEBRTC: &str = "v=0\r\n\
o=- 4611731400430051336 2 IN IP4 127.0.0.1\r\n\
s=-\r\n\
t=0 0\r\n\
a=group:BUNDLE 0 1\r\n\
a=msid-semantic: WMS\r\n\
m=audio 9 UDP/TLS/RTP/SAVPF 111 0\r\n\
c=IN IP4 198.51.100.1\r\n\
a=rtcp:9 IN IP4 0.0.0.0\r\n\
a=candidate:1 1 udp 2122260223 198.51.100.1 54321 typ host\r\n\
a=ice-ufrag:abcd\r\n\
a=ice-pwd:0123456789abcdef01234567\r\n\
a=rtcp-mux\r\n\
a=rtpmap:111 opus/48000/2\r\n\
a=fmtp:111 minptime=10;useinbandfec=1\r\n\
a=sendonly\r\n\
m=video 0 UDP/TLS/RTP/SAVPF 96\r\n\
c=IN IP4 198.51.100.1\r\n\
a=rtpmap:96 VP8/90000\r\n\
a=inactive\r\n";

#[test]
fn an_offer_parses_into_its_parts_rfc8866_5() {
    let s = Sdp::parse(OFFER.as_bytes()).unwrap();
    assert_eq!(s.origin.session_version, 2353687637);
    assert_eq!(s.connection.as_ref().unwrap().ip(), Some("192.0.2.10".parse().unwrap()));
    let m = &s.media[0];
    assert_eq!((m.kind.as_str(), m.port, m.proto.as_str()), ("audio", 16384, "RTP/AVP"));
    assert_eq!(m.formats, vec!["0", "8", "101"]);
    // PCMA has no rtpmap line: its static default applies (RFC 3551 §6).
    let maps: Vec<(u8, String, u32)> = m.rtpmaps().into_iter().map(|r| (r.pt, r.encoding, r.clock_rate)).collect();
    assert_eq!(maps, vec![(0, "PCMU".into(), 8000), (8, "PCMA".into(), 8000), (101, "telephone-event".into(), 8000)]);
    assert_eq!(m.fmtp(101), Some("0-16"));
    assert_eq!(m.ptime(), Some(20));
    assert_eq!(m.direction(s.direction()), Direction::SendRecv);
}

#[test]
fn writing_gives_back_the_same_text_and_parses_again() {
    for text in [OFFER, WEBRTC] {
        let s = Sdp::parse(text.as_bytes()).unwrap();
        assert_eq!(s.write(), text);
        assert_eq!(Sdp::parse(s.write().as_bytes()).unwrap(), s);
    }
}

#[test]
fn media_level_details_rtcp_mux_direction_and_rejected_streams() {
    let s = Sdp::parse(WEBRTC.as_bytes()).unwrap();
    let (audio, video) = (&s.media[0], &s.media[1]);
    assert!(audio.rtcp_mux());
    assert_eq!(audio.rtcp_port(), Some(9));
    assert_eq!(audio.direction(s.direction()), Direction::SendOnly);
    assert_eq!(audio.direction(s.direction()).answer(), Direction::RecvOnly);
    assert_eq!(audio.rtpmaps()[0], RtpMap { pt: 111, encoding: "opus".into(), clock_rate: 48000, channels: Some(2) });
    assert_eq!(audio.fmtp(111), Some("minptime=10;useinbandfec=1"));
    assert!(video.is_rejected());
    assert_eq!(s.connection_for(0).unwrap().address, "198.51.100.1");
    // Unknown attributes are kept, in order.
    assert_eq!(s.attributes[1], Attribute { name: "msid-semantic".into(), value: Some(" WMS".into()) });
}

#[test]
fn ice_can_be_stripped_and_hold_set() {
    let mut s = Sdp::parse(WEBRTC.as_bytes()).unwrap();
    s.strip(ICE_ATTRIBUTES);
    let names: Vec<&str> = s.media[0].attributes.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(names, vec!["rtcp", "rtcp-mux", "rtpmap", "fmtp", "sendonly"]);
    let mut s = Sdp::parse(OFFER.as_bytes()).unwrap();
    s.media[0].set_direction(Direction::SendOnly);
    assert!(s.write().contains("a=ptime:20\r\na=sendonly\r\n"));
    assert!(!s.write().contains("sendrecv"));
}

#[test]
fn lf_line_ends_are_accepted() {
    let lf = OFFER.replace("\r\n", "\n");
    assert_eq!(Sdp::parse(lf.as_bytes()).unwrap(), Sdp::parse(OFFER.as_bytes()).unwrap());
}

#[test]
fn malformed_descriptions_name_the_line() {
    let cases: &[(&str, usize, &str)] = &[
        ("", 1, "empty description"),
        ("v=1\r\n", 1, "version \"1\""),
        ("o=a 1 1 IN IP4 h\r\n", 1, "before v="),
        ("v=0\r\no=a 1 IN IP4 h\r\ns=-\r\nt=0 0\r\n", 2, "expected <user>"),
        ("v=0\r\no=a x 1 IN IP4 h\r\ns=-\r\nt=0 0\r\n", 2, "session id"),
        ("v=0\r\no=a 1 1 IN IP4 h\r\ns=\r\nt=0 0\r\n", 3, "empty s="),
        ("v=0\r\no=a 1 1 IN IP4 h\r\ns=-\r\n", 0, "no t= line"),
        ("v=0\r\no=a 1 1 IN IP4 h\r\ns=-\r\nt=0 0\r\nc=IN IP4 1.2.3.4\r\n", 5, "out of order"),
        ("v=0\r\no=a 1 1 IN IP4 h\r\ns=-\r\nc=IN IP5 1.2.3.4\r\nt=0 0\r\n", 4, "expected IN"),
        ("v=0\r\no=a 1 1 IN IP4 h\r\ns=-\r\nc=IN IP4 300.1.1.1\r\nt=0 0\r\n", 4, "not an IP4"),
        ("v=0\r\no=a 1 1 IN IP4 h\r\ns=-\r\nt=0 0\r\nm=audio 99999 RTP/AVP 0\r\n", 5, "port"),
        ("v=0\r\no=a 1 1 IN IP4 h\r\ns=-\r\nt=0 0\r\nm=audio 4000 RTP/AVP 200\r\n", 5, "payload type"),
        ("v=0\r\no=a 1 1 IN IP4 h\r\ns=-\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n", 0, "no c= line"),
        ("v=0\r\no=a 1 1 IN IP4 h\r\ns=-\r\nt=0 0\r\nx=1\r\n", 5, "not a session-level"),
        ("v=0\r\no=a 1 1 IN IP4 h\r\ns=-\r\nt=0 0\r\n\r\nm=audio 0 RTP/AVP 0\r\n", 5, "empty line"),
        ("v=0\r\no=a 1 1 IN IP4 h\r\ns=-\r\nt=0 0\r\nbogus\r\n", 5, "expected <letter>="),
    ];
    for (text, line, what) in cases {
        let e = Sdp::parse(text.as_bytes()).unwrap_err();
        assert_eq!(e.line, *line, "{text:?}: {e}");
        assert!(e.what.contains(what), "{text:?}: {e}");
    }
    assert!(Sdp::parse(&[0xff, 0xfe]).unwrap_err().what.contains("UTF-8"));
}

#[test]
fn arbitrary_bytes_never_panic() {
    use proptest::prelude::*;
    proptest!(ProptestConfig::with_cases(512), |(bytes in proptest::collection::vec(any::<u8>(), 0..400))| {
        let _ = Sdp::parse(&bytes);
    });
    proptest!(ProptestConfig::with_cases(256), |(cut in 0..OFFER.len())| {
        // Every prefix of a valid offer is either valid or an error, and what parses
        // writes back to something that parses the same.
        if let Ok(s) = Sdp::parse(&OFFER.as_bytes()[..cut]) {
            prop_assert_eq!(Sdp::parse(s.write().as_bytes()).unwrap(), s);
        }
    });
}
