//! The NG listener: one UDP socket, each request answered through the media supervisor.
//! Offers create a media session per active m-line and return the SDP rewritten to the
//! media plane's address and ports; answers complete it; `delete`, `query`, `list`,
//! `ping` as rtpengine has them. A retransmitted request (same cookie within
//! [`COOKIE_TTL`]) gets the first answer again without being redone.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use ferroswitch_shared::msg::{media_kind, Endpoint, LegSpec, SessionSpec, StreamStats};
use tokio::net::UdpSocket;
use tokio::sync::watch;
use tracing::{debug, info, warn};

use super::bencode::Value;
use super::command::{self, OfferAnswer, Request};
use crate::media::rewrite::{finish, leg_from, rewrite};
use crate::media::MediaHandle;
use crate::sdp::{Connection, Sdp};

/// How long an answer is kept for a retransmitted request.
pub const COOKIE_TTL: Duration = Duration::from_secs(30);
/// How long a request waits for the media plane.
const MEDIA_WAIT: Duration = Duration::from_secs(3);

/// One call (Call-ID) the NG side knows.
struct Call {
    from_tag: String,
    to_tag: Option<String>,
    /// Per m-line: its media session and the spec the media plane confirmed (None:
    /// rejected).
    sessions: Vec<Option<(u64, SessionSpec)>>,
    created: std::time::SystemTime,
}

struct Ng {
    media: MediaHandle,
    /// The address the media plane listens on and advertises.
    media_ip: IpAddr,
    calls: HashMap<String, Call>,
    cookies: HashMap<Vec<u8>, (Instant, Vec<u8>)>,
}

/// Serves NG requests on `socket` until `shutdown` turns true.
pub async fn serve(socket: UdpSocket, media: MediaHandle, media_ip: IpAddr, mut shutdown: watch::Receiver<bool>) {
    let mut ng = Ng { media, media_ip, calls: HashMap::new(), cookies: HashMap::new() };
    let mut buf = vec![0u8; 65536];
    loop {
        let (n, from) = tokio::select! {
            r = socket.recv_from(&mut buf) => match r {
                Ok(x) => x,
                Err(e) => {
                    warn!(error = %e, "NG receive error");
                    continue;
                }
            },
            _ = shutdown.changed() => return,
        };
        let reply = ng.handle(&buf[..n]).await;
        if let Err(e) = socket.send_to(&reply, from).await {
            debug!(%from, error = %e, "NG answer not sent");
        }
    }
}

impl Ng {
    async fn handle(&mut self, datagram: &[u8]) -> Vec<u8> {
        let (cookie, dict) = match command::split(datagram) {
            Ok(x) => x,
            Err(why) => {
                let cookie = datagram.split(|&c| c == b' ').next().unwrap_or_default();
                warn!(%why, "NG request refused");
                return command::error(cookie, &why);
            }
        };
        let now = Instant::now();
        self.cookies.retain(|_, (t, _)| now.duration_since(*t) < COOKIE_TTL);
        if let Some((_, answer)) = self.cookies.get(cookie) {
            return answer.clone();
        }
        let answer = match command::parse(&dict) {
            Ok(req) => match self.run(cookie, req).await {
                Ok(a) => a,
                Err(why) => {
                    warn!(%why, "NG request failed");
                    command::error(cookie, &why)
                }
            },
            Err(why) => command::error(cookie, &why),
        };
        self.cookies.insert(cookie.to_vec(), (now, answer.clone()));
        answer
    }

    async fn run(&mut self, cookie: &[u8], req: Request) -> Result<Vec<u8>, String> {
        match req {
            Request::Ping => Ok(command::pong(cookie)),
            Request::Offer(o) => self.offer(cookie, o).await,
            Request::Answer(a) => self.answer(cookie, a).await,
            Request::Delete { call_id } => {
                let call = self.calls.remove(&call_id).ok_or_else(|| format!("unknown call-id {call_id:?}"))?;
                let mut total = StreamStats::default();
                for (id, _) in call.sessions.iter().flatten() {
                    if let Some(s) = self.media.destroy_confirmed(*id).await {
                        add(&mut total, &s);
                    }
                }
                info!(%call_id, "NG delete");
                Ok(command::ok(cookie, totals(&total, call.created)))
            }
            Request::Query { call_id } => {
                let call = self.calls.get(&call_id).ok_or_else(|| format!("unknown call-id {call_id:?}"))?;
                let mut total = StreamStats::default();
                let mut streams = Vec::with_capacity(call.sessions.len());
                for (i, s) in call.sessions.iter().enumerate() {
                    let Some((id, spec)) = s else { continue };
                    let stats = self.media.stats(*id).await.unwrap_or_default();
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
                Ok(command::ok(cookie, fields))
            }
            Request::List { limit } => {
                let mut ids: Vec<&String> = self.calls.keys().collect();
                ids.sort();
                let calls = ids.into_iter().take(limit).map(|c| Value::str(c)).collect();
                Ok(command::ok(cookie, vec![("calls", Value::List(calls))]))
            }
        }
    }

    async fn offer(&mut self, cookie: &[u8], o: OfferAnswer) -> Result<Vec<u8>, String> {
        let mut sdp = Sdp::parse(&o.sdp).map_err(|e| e.to_string())?;
        let existing = self.calls.get(&o.call_id).map(|c| c.sessions.clone());
        let mut sessions = Vec::with_capacity(sdp.media.len());
        for i in 0..sdp.media.len() {
            let m = &sdp.media[i];
            if m.is_rejected() {
                sessions.push(None);
                continue;
            }
            let ip = command::peer_ip(sdp.connection_for(i).and_then(Connection::ip), &o);
            let a = leg_from(m, command::usable(ip, m.port), self.media_ip, &o.flags, true);
            let b = LegSpec { remote: Endpoint::default(), ..leg_from(m, None, self.media_ip, &o.flags, false) };
            let spec = SessionSpec { legs: [a, b], rtp_timeout_secs: 60, flags: 0 };
            let prior = existing.as_ref().and_then(|s| s.get(i).copied().flatten()).map(|(id, _)| id);
            let confirmed = match prior {
                Some(id) => tokio::time::timeout(MEDIA_WAIT, self.media.update_confirmed(id, spec)).await,
                None => tokio::time::timeout(MEDIA_WAIT, self.media.create_confirmed(spec)).await,
            };
            let (id, held) = confirmed.map_err(|_| "the media plane did not answer in time".to_string())??;
            rewrite(&mut sdp, i, &held.legs[1].local, &o.flags);
            sessions.push(Some((id, held)));
        }
        finish(&mut sdp, self.media_ip, &o.flags);
        info!(call_id = %o.call_id, streams = sessions.len(), "NG offer");
        self.calls.insert(
            o.call_id.clone(),
            Call { from_tag: o.from_tag.clone(), to_tag: None, sessions, created: std::time::SystemTime::now() },
        );
        Ok(command::ok(cookie, vec![("sdp", Value::Bytes(sdp.write().into_bytes()))]))
    }

    async fn answer(&mut self, cookie: &[u8], a: OfferAnswer) -> Result<Vec<u8>, String> {
        let mut sdp = Sdp::parse(&a.sdp).map_err(|e| e.to_string())?;
        let call = self.calls.get_mut(&a.call_id).ok_or_else(|| format!("unknown call-id {:?}", a.call_id))?;
        call.to_tag = a.to_tag.clone();
        let mut sessions = call.sessions.clone();
        for i in 0..sdp.media.len() {
            let Some(Some((id, mut spec))) = sessions.get(i).copied() else { continue };
            let m = &sdp.media[i];
            let ip = command::peer_ip(sdp.connection_for(i).and_then(Connection::ip), &a);
            let b = leg_from(m, command::usable(ip, m.port), self.media_ip, &a.flags, true);
            spec.legs[1] = LegSpec { local: spec.legs[1].local, ..b };
            let (_, held) = tokio::time::timeout(MEDIA_WAIT, self.media.update_confirmed(id, spec))
                .await
                .map_err(|_| "the media plane did not answer in time".to_string())??;
            rewrite(&mut sdp, i, &held.legs[0].local, &a.flags);
            sessions[i] = Some((id, held));
        }
        if let Some(call) = self.calls.get_mut(&a.call_id) {
            call.sessions = sessions;
        }
        finish(&mut sdp, self.media_ip, &a.flags);
        info!(call_id = %a.call_id, "NG answer");
        Ok(command::ok(cookie, vec![("sdp", Value::Bytes(sdp.write().into_bytes()))]))
    }
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
fn totals(s: &StreamStats, created: std::time::SystemTime) -> Vec<(&'static str, Value)> {
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
