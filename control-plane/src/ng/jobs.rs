//! The NG requests that need the media plane, run as their own tasks: offer and
//! answer (sessions made or updated, the SDP pointed at the media plane), delete and
//! query (the counters, in rtpengine's shapes).

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, SystemTime};

use ferroswitch_shared::msg::{media_kind, session_flags, Endpoint, LegSpec, SessionSpec, StreamStats};
use tracing::{info, warn};

use super::bencode::Value;
use super::command::{self, OfferAnswer, Request};
use super::core::{Call, Done, Job, Outcome, Settings};
use crate::media::rewrite::{finish, leg_from, rewrite, set_codecs, signalled_peer, speaks_first, OwnMedia};
use crate::media::MediaHandle;
use crate::sdp::{Connection, Sdp};

/// How long a request waits for the media plane.
const MEDIA_WAIT: Duration = Duration::from_secs(3);

impl Job {
    /// Runs the request against the media plane.
    pub async fn run(self, media: &MediaHandle) -> Done {
        let Job { cookie, call_id, req, call, source, settings, new_call } = self;
        let (answer, outcome) = match execute(&cookie, req, call, media, source, &settings).await {
            Ok(x) => x,
            Err(why) => {
                warn!(%call_id, %source, %why, "NG request failed");
                (command::error(&cookie, &why), Outcome::Keep)
            }
        };
        Done { cookie, call_id, answer, outcome, source, new_call }
    }
}

async fn execute(
    cookie: &[u8],
    req: Request,
    call: Option<Call>,
    media: &MediaHandle,
    source: IpAddr,
    settings: &Settings,
) -> Result<(Vec<u8>, Outcome), String> {
    let unknown = |call_id: &str| format!("unknown call-id {call_id:?}");
    match req {
        Request::Offer(o) => offer(cookie, o, call, media, source, settings).await,
        Request::Answer(a) => {
            let call = call.ok_or_else(|| unknown(&a.call_id))?;
            answer(cookie, a, call, media, settings).await
        }
        Request::Delete { call_id } => {
            let call = call.ok_or_else(|| unknown(&call_id))?;
            let mut total = StreamStats::default();
            for (id, _) in call.sessions.iter().flatten() {
                if let Some(s) = media.destroy_confirmed(*id).await {
                    add(&mut total, &s);
                }
            }
            info!(%call_id, "NG delete");
            Ok((command::ok(cookie, totals(&total, call.created)), Outcome::Remove))
        }
        Request::Query { call_id } => {
            let call = call.ok_or_else(|| unknown(&call_id))?;
            let mut total = StreamStats::default();
            let mut streams = Vec::with_capacity(call.sessions.len());
            for (i, s) in call.sessions.iter().enumerate() {
                let Some((id, spec)) = s else { continue };
                let stats = media.stats(*id).await.unwrap_or_default();
                add(&mut total, &stats);
                streams.push((i, *spec, stats));
            }
            let mut fields = totals(&total, call.created);
            let mut tags =
                vec![(call.from_tag.as_str(), monologue(&call.from_tag, call.to_tag.as_deref(), 0, &streams))];
            if let Some(t) = &call.to_tag {
                tags.push((t.as_str(), monologue(t, Some(&call.from_tag), 1, &streams)));
            }
            fields.push(("tags", Value::dict(tags)));
            Ok((command::ok(cookie, fields), Outcome::Keep))
        }
        Request::Ping | Request::List { .. } => unreachable!("answered without a job"),
    }
}

/// The peer the media plane is told for stream `i` of `sdp` (NAT-detected against
/// `received-from` unless the flags say otherwise), refused if it would loop or is not
/// unicast.
fn stream_peer(sdp: &Sdp, i: usize, req: &OfferAnswer, own: &OwnMedia) -> Result<Option<SocketAddr>, String> {
    let sdp_ip = sdp.connection_for(i).and_then(Connection::ip);
    let peer = signalled_peer(sdp_ip, sdp.media[i].port, req.received_from, &req.flags);
    if let Some(p) = peer {
        own.check(p).map_err(|e| e.to_string())?;
    }
    Ok(peer)
}

/// The request's SDP, refused if it does not parse or has too many m= lines.
fn parse_sdp(body: &[u8], settings: &Settings) -> Result<Sdp, String> {
    let sdp = Sdp::parse(body).map_err(|e| e.to_string())?;
    if sdp.media.len() > settings.max_media {
        return Err(format!("{} media streams, at most {} (sip.max_sdp_media)", sdp.media.len(), settings.max_media));
    }
    Ok(sdp)
}

/// Every stream's peer ([`stream_peer`]; None for a rejected stream), all checked before
/// any session is made or changed.
fn stream_peers(sdp: &Sdp, req: &OfferAnswer, own: &OwnMedia) -> Result<Vec<Option<SocketAddr>>, String> {
    (0..sdp.media.len())
        .map(|i| if sdp.media[i].is_rejected() { Ok(None) } else { stream_peer(sdp, i, req, own) })
        .collect()
}

/// The RTP timeout for stream `i` of `sdp`: the silent one while it is on hold.
fn rtp_timeout(sdp: &Sdp, i: usize, req: &OfferAnswer, settings: &Settings) -> u32 {
    if sdp.is_on_hold(i) {
        req.timeouts.silent.unwrap_or(settings.silent_timeout_secs)
    } else {
        req.timeouts.timeout.unwrap_or(settings.timeout_secs)
    }
}

async fn offer(
    cookie: &[u8],
    o: OfferAnswer,
    call: Option<Call>,
    media: &MediaHandle,
    source: IpAddr,
    settings: &Settings,
) -> Result<(Vec<u8>, Outcome), String> {
    let media_ip = settings.own.ip;
    let mut sdp = parse_sdp(&o.sdp, settings)?;
    let peers = stream_peers(&sdp, &o, &settings.own)?;
    let existing = call.as_ref().map(|c| c.sessions.as_slice()).unwrap_or_default();
    let mut sessions = Vec::with_capacity(sdp.media.len());
    let mut offered = Vec::with_capacity(sdp.media.len());
    for (i, peer) in peers.into_iter().enumerate() {
        let audio = sdp.media[i].kind.eq_ignore_ascii_case("audio");
        let from_a = if audio { o.codecs.from_offerer(&sdp.media[i]) } else { sdp.media[i].clone() };
        offered.push(from_a.clone());
        let m = &sdp.media[i];
        if m.is_rejected() {
            sessions.push(None);
            continue;
        }
        let a = leg_from(&from_a, peer, media_ip, &o.flags, true);
        let b = LegSpec { remote: Endpoint::default(), ..leg_from(m, None, media_ip, &o.flags, false) };
        // Kept across a re-offer: a transcoding call goes on transcoding until its answer says.
        let prior_flags = existing.get(i).copied().flatten().map_or(0, |(_, s)| s.flags & session_flags::TRANSCODE);
        let spec =
            SessionSpec { legs: [a, b], rtp_timeout_secs: rtp_timeout(&sdp, i, &o, settings), flags: prior_flags };
        let prior = existing.get(i).copied().flatten().map(|(id, _)| id);
        let confirmed = match prior {
            Some(id) => tokio::time::timeout(MEDIA_WAIT, media.update_confirmed(id, spec)).await,
            None => tokio::time::timeout(MEDIA_WAIT, media.create_confirmed(spec)).await,
        };
        let (id, held) = confirmed.map_err(|_| "the media plane did not answer in time".to_string())??;
        if audio {
            o.codecs.toward_answerer(&mut sdp.media[i]);
        }
        rewrite(&mut sdp, i, &held.legs[1].local, &o.flags);
        sessions.push(Some((id, held)));
    }
    finish(&mut sdp, media_ip, &o.flags);
    info!(call_id = %o.call_id, streams = sessions.len(), "NG offer");
    let offered = Some(Box::new((offered, o.codecs.clone())));
    let final_timeout_secs = o.timeouts.final_.unwrap_or(settings.final_timeout_secs);
    let call = match call {
        Some(c) => Call { from_tag: o.from_tag, to_tag: None, sessions, offered, ..c },
        None => Call {
            from_tag: o.from_tag,
            to_tag: None,
            sessions,
            offered,
            created: SystemTime::now(),
            source,
            final_timeout_secs,
            final_at: None,
        },
    };
    Ok((command::ok(cookie, vec![("sdp", Value::Bytes(sdp.write().into_bytes()))]), Outcome::Set(call)))
}

async fn answer(
    cookie: &[u8],
    a: OfferAnswer,
    mut call: Call,
    media: &MediaHandle,
    settings: &Settings,
) -> Result<(Vec<u8>, Outcome), String> {
    let media_ip = settings.own.ip;
    let mut sdp = parse_sdp(&a.sdp, settings)?;
    let peers = stream_peers(&sdp, &a, &settings.own)?;
    call.to_tag = a.to_tag.clone();
    for (i, peer) in peers.into_iter().enumerate() {
        let Some(Some((id, mut spec))) = call.sessions.get(i).copied() else { continue };
        let m = &sdp.media[i];
        let b = leg_from(m, peer, media_ip, &a.flags, true);
        spec.legs[1] = LegSpec { local: spec.legs[1].local, ..b };
        if sdp.is_on_hold(i) {
            spec.rtp_timeout_secs = rtp_timeout(&sdp, i, &a, settings);
        }
        if let Some((offered, codecs)) = call.offered.as_deref() {
            if let Some(am) = offered.get(i).filter(|am| am.kind.eq_ignore_ascii_case("audio") && !m.is_rejected()) {
                map_answer(&mut sdp.media[i], am, codecs, &a.codecs, &mut spec)?;
            }
        }
        let (_, held) = tokio::time::timeout(MEDIA_WAIT, media.update_confirmed(id, spec))
            .await
            .map_err(|_| "the media plane did not answer in time".to_string())??;
        rewrite(&mut sdp, i, &held.legs[0].local, &a.flags);
        call.sessions[i] = Some((id, held));
    }
    finish(&mut sdp, media_ip, &a.flags);
    info!(call_id = %a.call_id, "NG answer");
    Ok((command::ok(cookie, vec![("sdp", Value::Bytes(sdp.write().into_bytes()))]), Outcome::Set(call)))
}

/// The answerer's section `m`, on its way to the offerer: mapped to the codec the
/// offerer gets (its own where the answerer chose one it did not offer: transcoded), the
/// session marked to transcode or not, each leg's ptime as asked. An answer with nothing
/// the media plane can make into one of the offerer's codecs is refused.
fn map_answer(
    m: &mut crate::sdp::Media,
    offered: &crate::sdp::Media,
    offer: &super::codecs::CodecFlags,
    answer: &super::codecs::CodecFlags,
    spec: &mut SessionSpec,
) -> Result<(), String> {
    let ans = offer
        .answer(offered, m)
        .ok_or_else(|| "the answer's codec is none the offer had and none the media plane transcodes".to_string())?;
    if let Some(p) = offer.ptime.filter(|_| m.ptime().is_none()) {
        spec.legs[1].ptime_ms = u8::try_from(p).unwrap_or(0);
    }
    let reverse = answer.ptime.or(offer.ptime_reverse);
    if let Some(p) = reverse {
        spec.legs[0].ptime_ms = u8::try_from(p).unwrap_or(0);
    }
    let repacketize =
        spec.legs[0].ptime_ms != 0 && spec.legs[1].ptime_ms != 0 && spec.legs[0].ptime_ms != spec.legs[1].ptime_ms;
    if ans.transcode || repacketize {
        spec.flags |= session_flags::TRANSCODE;
        speaks_first(&mut spec.legs[0], ans.codec.pt);
        let source = m.clone();
        let mut codecs = vec![ans.codec];
        codecs.extend(ans.telephone_event);
        set_codecs(m, &codecs, &[&source, offered]);
        if let Some(p) = reverse {
            super::codecs::set_ptime(m, p);
        }
    } else {
        spec.flags &= !session_flags::TRANSCODE;
    }
    Ok(())
}

fn add(total: &mut StreamStats, s: &StreamStats) {
    for (t, l) in total.legs.iter_mut().zip(&s.legs) {
        t.packets += l.packets;
        t.bytes += l.bytes;
        t.lost += l.lost;
        t.dropped += l.dropped;
    }
}

/// One side of a call as rtpengine's `query` has it under `tags`: its tag, the tag it talks
/// to, and per m-line (`index` counts from 1) the media plane's port for it (`local port`),
/// its peer (`endpoint`) and what the peer sent (`stats`). `leg` 0 is the from-tag's side.
fn monologue(tag: &str, other: Option<&str>, leg: usize, streams: &[(usize, SessionSpec, StreamStats)]) -> Value {
    let medias = streams
        .iter()
        .map(|(i, spec, stats)| {
            let l = &spec.legs[leg];
            let s = &stats.legs[leg];
            let mut stream = vec![
                ("local port", Value::Int(i64::from(l.local.port))),
                (
                    "stats",
                    Value::dict([
                        ("packets", Value::Int(s.packets as i64)),
                        ("bytes", Value::Int(s.bytes as i64)),
                        ("errors", Value::Int(s.dropped as i64)),
                        ("sent", Value::Int(s.sent as i64)),
                        (
                            "dropped",
                            Value::dict([
                                ("no peer", Value::Int(s.drop_no_peer as i64)),
                                ("strict source", Value::Int(s.drop_strict_source as i64)),
                                ("malformed", Value::Int(s.drop_malformed as i64)),
                                ("loop", Value::Int(s.drop_loop as i64)),
                            ]),
                        ),
                    ]),
                ),
            ];
            if let Some(a) = l.remote.addr() {
                let family = if a.is_ipv4() { "IPv4" } else { "IPv6" };
                stream.push((
                    "endpoint",
                    Value::dict([
                        ("family", Value::str(family)),
                        ("address", Value::str(&a.ip().to_string())),
                        ("port", Value::Int(i64::from(a.port()))),
                    ]),
                ));
            }
            let kind = if l.media == media_kind::VIDEO { "video" } else { "audio" };
            Value::dict([
                ("index", Value::Int(*i as i64 + 1)),
                ("type", Value::str(kind)),
                ("streams", Value::List(vec![Value::dict(stream)])),
            ])
        })
        .collect();
    let mut fields = vec![("tag", Value::str(tag))];
    if let Some(o) = other {
        fields.push(("in dialogue with", Value::str(o)));
    }
    fields.push(("medias", Value::List(medias)));
    Value::dict(fields)
}

/// `created` and `totals` as `query` and `delete` return them.
fn totals(s: &StreamStats, created: SystemTime) -> Vec<(&'static str, Value)> {
    let packets: u64 = s.legs.iter().map(|l| l.packets).sum();
    let bytes: u64 = s.legs.iter().map(|l| l.bytes).sum();
    let errors: u64 = s.legs.iter().map(|l| l.dropped).sum();
    let created = created.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
    let rtp = Value::dict([
        ("packets", Value::Int(packets as i64)),
        ("bytes", Value::Int(bytes as i64)),
        ("errors", Value::Int(errors as i64)),
    ]);
    vec![("created", Value::Int(created)), ("totals", Value::dict([("RTP", rtp)]))]
}
