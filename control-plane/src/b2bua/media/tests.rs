use std::net::{IpAddr, SocketAddr};

use ferroswitch_shared::msg::{session_flags, Endpoint, LegStats, SessionSpec, StreamStats};

use super::*;
use crate::media::negotiate::parse_codec_string;

const IP: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 10));

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
    let (specs, mut offer) = plan_bridge(Some(&a), &parse_codec_string("PCMA,PCMU").unwrap(), IP, 60);
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
fn a_is_answered_with_bs_choice_in_as_payload_types_or_marked_to_transcode() {
    let a = sdp("m=audio 4000 RTP/AVP 9 96 101\r\na=rtpmap:96 opus/48000/2\r\na=fmtp:96 useinbandfec=1\r\na=rtpmap:101 telephone-event/8000\r\n");
    let prefs = parse_codec_string("OPUS,G722").unwrap();
    let (specs, _) = plan_bridge(Some(&a), &prefs, IP, 60);
    let mut sessions = confirm(specs);
    // B picks opus under its own number: A hears it under 96.
    let b = sdp("m=audio 5000 RTP/AVP 111 100\r\na=rtpmap:111 opus/48000/2\r\na=fmtp:111 stereo=1\r\na=rtpmap:100 telephone-event/8000\r\n");
    let (answer, updates) = answer_for_a(&a, &b, &mut sessions, IP);
    assert_eq!(answer.media[0].formats, ["96", "101"]);
    assert_eq!(answer.media[0].fmtp(96), Some("stereo=1"), "B's parameters for the codec B chose");
    assert_eq!(answer.media[0].port, 30000);
    assert!(updates.is_empty(), "no transcoding");
    // B picks PCMU, which A did not offer: A gets its best transcodable codec (G722).
    let b = sdp("m=audio 5000 RTP/AVP 0\r\n");
    let (answer, updates) = answer_for_a(&a, &b, &mut sessions, IP);
    assert_eq!(answer.media[0].formats, ["9"]);
    assert_eq!(updates.len(), 1);
    assert_eq!(updates[0].1.flags & session_flags::TRANSCODE, session_flags::TRANSCODE);
}

#[test]
fn the_late_offer_is_the_preferences_with_telephone_event() {
    let (specs, offer) = plan_bridge(None, &parse_codec_string("PCMU,opus,PCMA").unwrap(), IP, 60);
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
    let (specs, answer) = plan_answer(&a, &parse_codec_string("PCMU").unwrap(), IP, 60, true);
    assert_eq!(specs[0].unwrap().flags, session_flags::ECHO);
    assert_eq!(answer.media[0].formats, ["0", "101"]);
    assert_eq!(answer.media[0].direction(answer.direction()), Direction::RecvOnly);
}

#[test]
fn hold_stops_the_rtp_timer_and_resume_restarts_it() {
    let a = sdp("m=audio 4000 RTP/AVP 0\r\n");
    let (specs, _) = plan_bridge(Some(&a), &parse_codec_string("PCMU").unwrap(), IP, 60);
    let mut sessions = confirm(specs);
    let held = sdp("m=audio 4002 RTP/AVP 0\r\na=inactive\r\n");
    let updates = follow(&mut sessions, &held, 0, IP, 60);
    assert_eq!(updates.len(), 1);
    assert_eq!(updates[0].1.rtp_timeout_secs, 0);
    assert_eq!(updates[0].1.legs[0].remote.addr(), Some("198.51.100.1:4002".parse().unwrap()));
    assert_eq!(updates[0].1.legs[0].local.addr(), Some(SocketAddr::new(IP, 30000)), "the local port stays");
    assert!(follow(&mut sessions, &held, 0, IP, 60).is_empty(), "nothing changes the second time");
    let resumed = sdp("m=audio 4002 RTP/AVP 0\r\n");
    assert_eq!(follow(&mut sessions, &resumed, 0, IP, 60)[0].1.rtp_timeout_secs, 60);
}

#[test]
fn cdr_counters_are_in_from_the_leg_and_out_from_the_other() {
    let leg = |packets, bytes| LegStats { packets, bytes, lost: 2, dropped: 1, ..LegStats::default() };
    let stats = StreamStats { legs: [leg(100, 17200), leg(90, 15480)] };
    let a = cdr_media(&stats, 0, false);
    assert_eq!((a.media_in_packets, a.media_in_bytes, a.media_out_packets, a.media_out_bytes), (100, 17200, 90, 15480));
    assert_eq!((a.media_lost, a.media_dropped), (2, 1));
    let b = cdr_media(&stats, 1, false);
    assert_eq!((b.media_in_packets, b.media_out_packets), (90, 100));
    let echo = cdr_media(&stats, 0, true);
    assert_eq!((echo.media_in_packets, echo.media_out_packets), (100, 100));
}
