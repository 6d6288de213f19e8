//! Outbound mode: the `socket` dialplan application connects the call to an ESL
//! application server (`<action application="socket" data="127.0.0.1:8084 async full"/>`).
//! The server sends `connect` and gets the channel's data; then `myevents`, `sendmsg`
//! (to its channel without a uuid), `getvar`, `linger`, `api`, `exit`. When the channel
//! hangs up the connection gets the disconnect notice (after `linger`'s time, if asked);
//! when the connection ends, the call goes on with the dialplan's next application.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{broadcast, mpsc};
use tracing::{info, warn};

use super::event::Event;
use super::frame::Decoder;
use super::server::{run_commands, ApiCall, Hub};
use super::session::Session;

/// How long connecting to the application server may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The notice an outbound connection gets when its channel is gone.
fn disconnect_notice(uuid: &str, disposition: &str) -> Vec<u8> {
    let body = "Disconnected, goodbye.\nSee you at ClueCon! http://www.cluecon.com/\n";
    format!(
        "Content-Type: text/disconnect-notice\nControlled-Session-UUID: {uuid}\nContent-Disposition: {disposition}\nContent-Length: {}\n\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Connects channel `uuid` (its data `channel`) to the application server at `target`
/// and serves the connection until either side ends it.
pub async fn run(target: String, uuid: String, channel: Event, hub: Arc<Hub>, api: mpsc::Sender<ApiCall>) {
    let stream = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(target.as_str())).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            warn!(%uuid, %target, error = %e, "socket: cannot connect to the application server");
            return;
        }
        Err(_) => {
            warn!(%uuid, %target, "socket: the application server did not answer in time");
            return;
        }
    };
    let peer = stream.peer_addr().unwrap_or_else(|_| ([0, 0, 0, 0], 0).into());
    info!(%uuid, %target, "socket: connected to the application server");
    let (mut rd, mut wr) = stream.into_split();
    let mut session = Session::outbound(&uuid);
    let mut events = hub.subscribe();
    let mut decoder = Decoder::new();
    let mut buf = vec![0u8; 16 * 1024];
    // Once the channel hangs up: when the connection is to be told (linger's deadline).
    let mut ending: Option<tokio::time::Instant> = None;
    loop {
        let until = ending.unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(86_400));
        tokio::select! {
            _ = tokio::time::sleep_until(until), if ending.is_some() => {
                let _ = wr.write_all(&disconnect_notice(&uuid, "disconnect")).await;
                break;
            }
            ev = events.recv() => match ev {
                Ok(item) => {
                    let e = item.event();
                    if let Some(frame) = session.event_frame(e) {
                        if wr.write_all(&frame).await.is_err() {
                            break;
                        }
                    }
                    let gone = e.name() == "CHANNEL_HANGUP_COMPLETE" && e.header("Unique-ID") == Some(uuid.as_str());
                    if gone && ending.is_none() {
                        let now = tokio::time::Instant::now();
                        ending = Some(match session.linger() {
                            None => now,
                            Some(Some(secs)) => now + Duration::from_secs(secs),
                            Some(None) => now + Duration::from_secs(600),
                        });
                        if session.linger().is_some() {
                            let _ = wr.write_all(&disconnect_notice(&uuid, "linger")).await;
                        }
                    }
                }
                Err(broadcast::error::RecvError::Lagged(lost)) => {
                    warn!(%uuid, lost, "socket: the application server is too slow for its events; dropped");
                    break;
                }
                Err(broadcast::error::RecvError::Closed) => break,
            },
            read = rd.read(&mut buf) => {
                let n = match read {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                decoder.push(&buf[..n]);
                if !run_commands(&mut decoder, &mut session, &hub, &api, &mut wr, peer, Some((&uuid, &channel))).await {
                    break;
                }
            }
        }
    }
    info!(%uuid, %target, "socket: the application server's connection ended");
}
