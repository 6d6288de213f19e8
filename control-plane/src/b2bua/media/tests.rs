use std::net::{IpAddr, SocketAddr};

use ferroswitch_shared::msg::{session_flags, Endpoint, LegStats, SessionSpec, StreamStats};

use super::*;
use crate::media::negotiate::parse_codec_string;
use crate::sdp::Direction;

const IP: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 10));
/// Signalling from the SDP's own address, the media plane on 16384-32767.
const PC: PeerCheck = PeerCheck {
    source: Some(IpAddr::V4(std::net::Ipv4Addr::new(198, 51, 100, 1))),
    own: OwnMedia { ip: IP, ports: (16384, 32767) },
};

fn sdp(body: &str) -> Sdp {
    let text = format!("v=0\r\no=a 7 7 IN IP4 198.51.100.1\r\ns=-\r\nc=IN IP4 198.51.100.1\r\nt=0 0\r\n{body}");
    Sdp::parse(text.as_bytes()).unwrap()
}

/// Sessions as the media plane confirms them: leg A on port 30000+, leg B on 31000+.
fn confirm(specs: Vec<Option<SessionSpec>>) -> Vec<Option<(u64, SessionSpec)>> {
    specs
        .into_iter()
        .enumerate()
        .map(|(i, s)| {
            s.map(|mut s| {
                s.legs[0].local = Endpoint::from_addr(SocketAddr::new(IP, 30000 + 2 * i as u16));
                s.legs[1].local = Endpoint::from_addr(SocketAddr::new(IP, 31000 + 2 * i as u16));
                (i as u64 + 1, s)
            })
        })
        .collect()
}

#[test]
fn b_is_offered_the_callers_codecs_the_switch_accepts_in_its_order_without_ice() {
    let a = sdp("m=audio 4000 RTP/AVP 0 8 18 101\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=candidate:1 1 UDP 1 198.51.100.1 4000 typ host\r\nm=video 0 RTP/AVP 96\r\n");
    let (specs, mut offer) = plan_bridge(Some(&a), &parse_codec_string("PCMA,PCMU").unwrap(), 60, &PC);
    assert!(specs[0].is_some() && specs[1].is_none(), "the rejected video stream gets no session");
    let leg_a = specs[0].unwrap().legs[0];
    assert_eq!(leg_a.remote.addr(), Some("198.51.100.1:4000".parse().unwrap()));
    let sessions = confirm(specs);
    point(&mut offer, &sessions, 1, IP);
    let m = &offer.media[0];
    assert_eq!(m.formats, ["8", "0", "101"], "G729 is not in the preferences");
    assert_eq!((m.port, m.rtcp_port()), (31000, Some(31001)));
    assert_eq!(m.fmtp(101), Some("0-15"));
    assert!(m.attribute("candidate").is_none());
    assert_eq!((offer.media[1].port, offer.origin.address.as_str()), (0, "192.0.2.10"));
    assert_eq!(offer.connection.as_ref().unwrap().address, "192.0.2.10");
}

#[test]
fn a_is_answered_with_bs_choice_in_as_payload_types_or_refused_without_a_common_codec() {
    let a = sdp("m=audio 4000 RTP/AVP 9 96 101\r\na=rtpmap:96 opus/48000/2\r\na=fmtp:96 useinbandfec=1\r\na=rtpmap:101 telephone-event/8000\r\n");
    let prefs = parse_codec_string("OPUS,G722").unwrap();
    let (specs, _) = plan_bridge(Some(&a), &prefs, 60, &PC);
    let mut sessions = confirm(specs);
    // B picks opus under its own number: A hears it under 96.
    let b = sdp("m=audio 5000 RTP/AVP 111 100\r\na=rtpmap:111 opus/48000/2\r\na=fmtp:111 stereo=1\r\na=rtpmap:100 telephone-event/8000\r\n");
    let (answer, updates) = answer_for_a(&a, &b, &mut sessions, IP);
    assert_eq!(answer.media[0].formats, ["96", "101"]);
    assert_eq!(answer.media[0].fmtp(96), Some("stereo=1"), "B's parameters for the codec B chose");
    assert_eq!(answer.media[0].port, 30000);
    assert!(updates.is_empty(), "no transcoding");
    assert!(!answer_without_common_codec(&a, &b));
    // B picks PCMU, which A did not offer: A gets its first codec the media plane
    // transcodes (G722), the session transcodes, and leg A speaks G722 first.
    let b = sdp("m=audio 5000 RTP/AVP 0\r\n");
    assert!(!answer_without_common_codec(&a, &b));
    let (answer, updates) = answer_for_a(&a, &b, &mut sessions, IP);
    assert_eq!(answer.media[0].formats, ["9"]);
    assert_eq!(updates.len(), 1);
    let spec = updates[0].1;
    assert_ne!(spec.flags & session_flags::TRANSCODE, 0);
    assert_eq!(spec.legs[0].codecs()[0].pt, 9);
    // B picks a codec the media plane cannot transcode: A cannot be answered.
    assert!(answer_without_common_codec(&a, &sdp("m=audio 5000 RTP/AVP 3\r\n")));
    // A offering nothing the switch prefers nor anything transcodable cannot be bridged;
    // G.729 alone is transcoded to the preferences.
    assert!(offer_without_common_codec(&sdp("m=audio 4000 RTP/AVP 3\r\n"), &prefs));
    assert!(!offer_without_common_codec(&sdp("m=audio 4000 RTP/AVP 18\r\n"), &prefs));
    assert!(!offer_without_common_codec(&a, &prefs));
}

#[test]
fn the_late_offer_is_the_preferences_with_telephone_event() {
    let (specs, offer) = plan_bridge(None, &parse_codec_string("PCMU,opus,PCMA").unwrap(), 60, &PC);
    assert_eq!(specs.len(), 1);
    let spec = specs[0].unwrap();
    assert_eq!((spec.legs[0].remote.addr(), spec.legs[1].remote.addr()), (None, None));
    let m = &offer.media[0];
    assert_eq!(m.formats, ["0", "96", "8", "101"]);
    assert_eq!(m.fmtp(101), Some("0-16"));
    assert_eq!(spec.legs[0].codec_count, 4);
}

#[test]
fn the_echo_answer_takes_one_preferred_codec_and_answers_the_direction() {
    let a = sdp("m=audio 4000 RTP/AVP 8 0 101\r\na=rtpmap:101 telephone-event/8000\r\na=sendonly\r\n");
    let (specs, answer) = plan_answer(&a, &parse_codec_string("PCMU").unwrap(), 60, true, &PC);
    assert_eq!(specs[0].unwrap().flags, session_flags::ECHO);
    assert_eq!(answer.media[0].formats, ["0", "101"]);
    assert_eq!(answer.media[0].direction(answer.direction()), Direction::RecvOnly);
}

#[test]
fn hold_stops_the_rtp_timer_and_resume_restarts_it() {
    let a = sdp("m=audio 4000 RTP/AVP 0\r\n");
    let (specs, _) = plan_bridge(Some(&a), &parse_codec_string("PCMU").unwrap(), 60, &PC);
    let mut sessions = confirm(specs);
    let held = sdp("m=audio 4002 RTP/AVP 0\r\na=inactive\r\n");
    let updates = follow(&mut sessions, &held, 0, 60, &PC);
    assert_eq!(updates.len(), 1);
    assert_eq!(updates[0].1.rtp_timeout_secs, 0);
    assert_eq!(updates[0].1.legs[0].remote.addr(), Some("198.51.100.1:4002".parse().unwrap()));
    assert_eq!(updates[0].1.legs[0].local.addr(), Some(SocketAddr::new(IP, 30000)), "the local port stays");
    assert!(follow(&mut sessions, &held, 0, 60, &PC).is_empty(), "nothing changes the second time");
    let resumed = sdp("m=audio 4002 RTP/AVP 0\r\n");
    assert_eq!(follow(&mut sessions, &resumed, 0, 60, &PC)[0].1.rtp_timeout_secs, 60);
}

#[test]
fn cdr_counters_are_in_from_the_leg_and_out_from_the_other() {
    // Out is what was sent toward the leg's peer, not what the other leg received: of
    // B's 90 packets only 80 went to A (10 arrived before A's peer was known).
    let leg = |packets, bytes, sent, sent_bytes| LegStats {
        packets,
        bytes,
        lost: 2,
        dropped: 1,
        sent,
        sent_bytes,
        ..LegStats::default()
    };
    let stats = StreamStats { legs: [leg(100, 17200, 80, 13760), leg(90, 15480, 100, 17200)] };
    let a = cdr_media(&stats, 0);
    assert_eq!((a.media_in_packets, a.media_in_bytes, a.media_out_packets, a.media_out_bytes), (100, 17200, 80, 13760));
    assert_eq!((a.media_lost, a.media_dropped), (2, 1));
    let b = cdr_media(&stats, 1);
    assert_eq!((b.media_in_packets, b.media_out_packets), (90, 100));
}

#[test]
fn a_private_sdp_address_behind_a_nat_is_replaced_by_the_sip_source() {
    let a = sdp("m=audio 4000 RTP/AVP 0\r\nc=IN IP4 192.168.1.20\r\n");
    let pc = PeerCheck { source: Some("203.0.113.5".parse().unwrap()), ..PC };
    let (specs, _) = plan_bridge(Some(&a), &parse_codec_string("PCMU").unwrap(), 60, &pc);
    let spec = specs[0].unwrap();
    assert_eq!(spec.legs[0].remote.addr(), Some("203.0.113.5:4000".parse().unwrap()));
    let f = ferroswitch_shared::msg::leg_flags::STRICT_SOURCE | ferroswitch_shared::msg::leg_flags::LATCH_SIGNALLED;
    assert_eq!(spec.legs[0].flags & f, f, "strict, and latched only from the signalled address");
    assert_eq!(spec.legs[1].flags & f, f, "B latches nothing before its answer");
}

#[test]
fn an_offer_naming_the_media_planes_own_port_or_multicast_is_refused() {
    let own = sdp("m=audio 20000 RTP/AVP 0\r\nc=IN IP4 192.0.2.10\r\n");
    assert_eq!(refused_peer(&own, &PC), Some(PeerError::Loop("192.0.2.10:20000".parse().unwrap())));
    let multicast = sdp("m=audio 4000 RTP/AVP 0\r\nc=IN IP4 239.1.1.1/127\r\n");
    assert!(matches!(refused_peer(&multicast, &PC), Some(PeerError::NotUnicast(_))));
    let fine = sdp("m=audio 4000 RTP/AVP 0\r\n");
    assert_eq!(refused_peer(&fine, &PC), None);
    // A refused peer is never handed to the media plane.
    let (specs, _) = plan_bridge(Some(&own), &parse_codec_string("PCMU").unwrap(), 60, &PC);
    assert_eq!(specs[0].unwrap().legs[0].remote.addr(), None);
}
