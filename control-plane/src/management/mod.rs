//! The read-only management endpoint: a small, strict HTTP/1.1 server answering JSON
//! arrays of the switch's tables to operators and tests.
//!
//! A connection carries one request. [`serve`] accepts it, reads the head (at most
//! [`http::MAX_HEAD`] bytes, within [`HEAD_TIMEOUT`]), hands it to the sans-IO
//! [`http::parse_request_head`] and [`http::route`], runs the query through a
//! [`Reader`] on the blocking pool, and writes the [`http::Response`] before closing.
//! It never touches the SIP path: the database is read through its own connection.

pub mod histogram;
pub mod http;
pub mod metrics;

#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tracing::{debug, warn};

use crate::media::MediaHandle;
use crate::storage::{Reader, StorageError};
use http::{route, Resource, Response, MAX_HEAD};

pub use http::{parse_request_head, HttpError, RequestHead};

/// How long a client has to send the whole request head.
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(5);

/// How long writing a response may take.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);

/// How many connections are served at once; more are closed at accept.
pub const MAX_CONNECTIONS: usize = 32;

/// Serves `GET /registrations`, `/dialogs`, `/channels`, `/calls` and `/cdr?limit=N` from
/// the database at `db_path` until `shutdown` turns true (or its sender is dropped).
/// Connections already accepted finish on their own, bounded by the timeouts.
pub async fn serve(
    listener: TcpListener,
    db_path: PathBuf,
    media: Option<MediaHandle>,
    stats: watch::Receiver<crate::switch::Stats>,
    mut shutdown: watch::Receiver<bool>,
) {
    let db_path: Arc<Path> = db_path.into();
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    while !*shutdown.borrow_and_update() {
        tokio::select! {
            changed = shutdown.changed() => {
                if changed.is_err() {
                    break;
                }
            }
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let Ok(permit) = permits.clone().try_acquire_owned() else {
                        debug!(%peer, "management: too many connections, closing this one");
                        continue;
                    };
                    let db_path = db_path.clone();
                    let media = media.clone();
                    let stats = stats.clone();
                    tokio::spawn(async move {
                        handle(stream, &db_path, media.as_ref(), &stats).await;
                        drop(permit);
                    });
                }
                Err(e) => {
                    // Out of descriptors, typically: give the open ones time to close.
                    warn!(error = %e, "management: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
        }
    }
}

/// Answers the one request of a connection, then closes it.
async fn handle(
    mut stream: TcpStream,
    db_path: &Path,
    media: Option<&MediaHandle>,
    stats: &watch::Receiver<crate::switch::Stats>,
) {
    let response = match tokio::time::timeout(HEAD_TIMEOUT, read_head(&mut stream)).await {
        Err(_) => Response::error(408, "the request head did not arrive in time"),
        // The peer went away before a whole head: there is no one to answer.
        Ok(None) => return,
        Ok(Some(Err(e))) => Response::error(e.status(), &e.to_string()),
        Ok(Some(Ok(head))) => match route(&head) {
            Ok(Resource::MediaSessions) => media_sessions(media).await,
            Ok(Resource::Metrics) => {
                let state = media.map(MediaHandle::state);
                let media_process =
                    state.as_ref().and_then(|s| s.media_pid).and_then(|p| metrics::Process::read(Some(p)));
                let s = *stats.borrow();
                Response::metrics(metrics::render(
                    &s,
                    state.as_ref(),
                    metrics::Process::read(None),
                    media_process,
                    std::time::Instant::now(),
                ))
            }
            Ok(Resource::MediaStatus) => match media {
                Some(m) => Response::ok(serde_json::to_vec(&m.state()).expect("plain fields encode as JSON")),
                None => Response::error(503, "no media plane (media.mode = \"off\")"),
            },
            Ok(resource) => answer(resource, db_path).await,
            Err(refusal) => refusal,
        },
    };
    let bytes = response.to_bytes();
    let written = tokio::time::timeout(WRITE_TIMEOUT, async {
        stream.write_all(&bytes).await?;
        stream.shutdown().await
    })
    .await;
    if let Ok(Err(e)) = written {
        debug!(error = %e, "management: response not delivered");
    }
}

/// Reads until the buffer holds a complete head or a refusal; `None` when the peer
/// closed or failed first.
async fn read_head(stream: &mut TcpStream) -> Option<Result<RequestHead, HttpError>> {
    let mut buf = vec![0u8; MAX_HEAD];
    let mut n = 0;
    loop {
        match stream.read(&mut buf[n..]).await {
            Ok(0) | Err(_) => return None,
            Ok(k) => n += k,
        }
        // At n == MAX_HEAD the parser answers TooLarge rather than Incomplete.
        match parse_request_head(&buf[..n]) {
            Err(HttpError::Incomplete) => continue,
            parsed => return Some(parsed),
        }
    }
}

/// Runs the query for `resource` on the blocking pool and encodes the rows.
async fn answer(resource: Resource, db_path: &Path) -> Response {
    let db_path = db_path.to_path_buf();
    let now_secs =
        SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    let read = tokio::task::spawn_blocking(move || -> Result<Vec<u8>, StorageError> {
        let r = Reader::open(&db_path)?;
        Ok(match resource {
            Resource::Registrations => json(&r.list_registrations(now_secs)?),
            Resource::Dialogs => json(&r.list_dialogs()?),
            Resource::Channels => json(&r.list_channels()?),
            Resource::Calls => json(&r.list_calls()?),
            Resource::Cdr { limit } => json(&r.list_cdr(limit)?),
            Resource::MediaSessions | Resource::MediaStatus | Resource::Metrics => Vec::new(),
        })
    })
    .await;
    match read {
        Ok(Ok(body)) => Response::ok(body),
        Ok(Err(e)) => {
            warn!(error = %e, "management: query failed");
            Response::error(500, &e.to_string())
        }
        Err(e) => {
            warn!(error = %e, "management: query task failed");
            Response::error(500, "the query task failed")
        }
    }
}

/// How long `/media/sessions` waits for the media plane's answer.
const MEDIA_QUERY_TIMEOUT: Duration = Duration::from_secs(3);

/// One session of `/media/sessions`.
#[derive(Serialize)]
struct MediaSessionRow {
    id: u64,
    core: u16,
    generation: u64,
    /// Per leg: the media plane's address and the peer's (null: not known yet).
    legs: Vec<MediaLegRow>,
    /// The legs speak different codecs and the media plane transcodes between them.
    transcode: bool,
}

#[derive(Serialize)]
struct MediaLegRow {
    local: Option<String>,
    remote: Option<String>,
    /// The leg's counters as the media plane last reported them (every
    /// `media.stats_interval_secs`; null before the first report).
    counters: Option<MediaCounters>,
    /// The codec the leg speaks (its first one: what a transcoding media plane sends it).
    codec: Option<&'static str>,
}

/// A payload map's codec as SDP names it.
fn codec_name(m: &ferroswitch_shared::msg::PayloadMap) -> Option<&'static str> {
    use ferroswitch_shared::msg::codec;
    Some(match m.codec {
        codec::PCMU => "PCMU",
        codec::PCMA => "PCMA",
        codec::G722 => "G722",
        codec::OPUS => "opus",
        codec::G729 => "G729",
        codec::L16 => "L16",
        codec::TELEPHONE_EVENT => "telephone-event",
        _ => return None,
    })
}

/// What a leg's peer sent, what was sent to it, and what was not relayed, by reason.
#[derive(Serialize)]
struct MediaCounters {
    packets: u64,
    bytes: u64,
    rtcp_packets: u64,
    lost: u64,
    sent: u64,
    sent_bytes: u64,
    dropped: u64,
    dropped_no_peer: u64,
    dropped_strict_source: u64,
    dropped_malformed: u64,
    dropped_loop: u64,
}

impl From<&ferroswitch_shared::msg::LegStats> for MediaCounters {
    fn from(s: &ferroswitch_shared::msg::LegStats) -> MediaCounters {
        MediaCounters {
            packets: s.packets,
            bytes: s.bytes,
            rtcp_packets: s.rtcp_packets,
            lost: s.lost,
            sent: s.sent,
            sent_bytes: s.sent_bytes,
            dropped: s.dropped,
            dropped_no_peer: s.drop_no_peer,
            dropped_strict_source: s.drop_strict_source,
            dropped_malformed: s.drop_malformed,
            dropped_loop: s.drop_loop,
        }
    }
}

/// Asks the media plane what it holds.
async fn media_sessions(media: Option<&MediaHandle>) -> Response {
    let Some(media) = media else {
        return Response::error(503, "no media plane (media.mode = \"off\")");
    };
    match tokio::time::timeout(MEDIA_QUERY_TIMEOUT, media.query_media()).await {
        Ok(Some(sessions)) => {
            let mut rows = Vec::with_capacity(sessions.len());
            for (id, core, generation, spec) in sessions {
                let stats = media.stats(id).await;
                let legs = spec
                    .legs
                    .iter()
                    .enumerate()
                    .map(|(i, l)| MediaLegRow {
                        local: l.local.addr().map(|a| a.to_string()),
                        remote: l.remote.addr().map(|a| a.to_string()),
                        counters: stats.as_ref().map(|s| MediaCounters::from(&s.legs[i])),
                        codec: l.codecs().first().and_then(codec_name),
                    })
                    .collect();
                let transcode = spec.flags & ferroswitch_shared::msg::session_flags::TRANSCODE != 0;
                rows.push(MediaSessionRow { id, core, generation, legs, transcode });
            }
            Response::ok(json(&rows))
        }
        Ok(None) => Response::error(503, "the media supervisor stopped"),
        Err(_) => Response::error(503, "the media plane did not answer in time"),
    }
}

/// Rows are plain structs of strings and numbers, which JSON always encodes.
fn json<T: Serialize>(rows: &[T]) -> Vec<u8> {
    serde_json::to_vec(rows).expect("rows of strings and numbers encode as JSON")
}
