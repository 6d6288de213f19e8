//! Setting sessions up on the relay under test, and tearing them down: ferroswitch's
//! media plane through the control plane's supervisor (ring API), rtpengine through NG,
//! or the bare forwarder's fixed port pairs.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use control_plane::media::supervisor::{self, MediaHandle, SupervisorOptions};
use ferroswitch_shared::msg::{codec, leg_flags, media_kind, Endpoint, PayloadMap, SessionSpec};

use crate::load::{SessionPorts, ToolSockets};
use crate::ng::NgClient;

/// The relay under test.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A ferroswitch media plane answering on this Unix socket (`ferroswitch media`).
    Ferroswitch(PathBuf),
    /// An NG listener (rtpengine).
    Ng(SocketAddr),
    /// The bare forwarder's pairs: session `i` uses `base + 2i` (A) and `base + 2i + 1`.
    Forwarder(SocketAddr),
}

impl Target {
    /// A short name for reports.
    pub fn kind(&self) -> &'static str {
        match self {
            Target::Ferroswitch(_) => "ferroswitch",
            Target::Ng(_) => "ng",
            Target::Forwarder(_) => "forwarder",
        }
    }
}

/// Sessions set up on a target.
pub struct Setup {
    /// Where each session's packets go.
    pub sessions: Vec<SessionPorts>,
    teardown: Teardown,
}

enum Teardown {
    Nothing,
    Ferroswitch { rt: tokio::runtime::Runtime, media: MediaHandle, ids: Vec<u64> },
    Ng { client: Box<NgClient>, calls: usize, tag: String },
}

impl Setup {
    /// Sessions on fixed addresses that need no setup.
    pub fn fixed(sessions: Vec<SessionPorts>) -> Setup {
        Setup { sessions, teardown: Teardown::Nothing }
    }

    /// The relay's local ports (for its drop counters).
    pub fn relay_ports(&self) -> Vec<u16> {
        self.sessions.iter().flat_map(|s| [s.a.port(), s.b.port()]).collect()
    }

    /// Removes the sessions from the relay.
    pub fn teardown(self) -> Result<(), String> {
        match self.teardown {
            Teardown::Nothing => Ok(()),
            Teardown::Ferroswitch { rt, media, ids } => rt.block_on(ferroswitch_teardown(&media, &ids)),
            Teardown::Ng { mut client, calls, tag } => {
                let mut first_err = None;
                for i in 0..calls {
                    if let Err(e) = client.delete(&call_id(&tag, i), "caller") {
                        first_err.get_or_insert(e);
                    }
                }
                first_err.map_or(Ok(()), Err)
            }
        }
    }
}

/// Sets up `n` sessions between the tool's sockets on `target` (ferroswitch's on
/// `media_ip`, else the tool's own address).
pub fn setup(
    target: &Target,
    n: usize,
    socks: &ToolSockets,
    media_ip: Option<std::net::IpAddr>,
) -> Result<Setup, String> {
    match target {
        Target::Forwarder(base) => {
            let sessions = (0..n)
                .map(|i| {
                    let port = |k: usize| {
                        u16::try_from(usize::from(base.port()) + 2 * i + k)
                            .map(|p| SocketAddr::new(base.ip(), p))
                            .map_err(|_| format!("forwarder pair {i} is past port 65535"))
                    };
                    Ok(SessionPorts { a: port(0)?, b: port(1)? })
                })
                .collect::<Result<_, String>>()?;
            Ok(Setup::fixed(sessions))
        }
        Target::Ng(addr) => ng_setup(*addr, n, socks),
        Target::Ferroswitch(path) => ferroswitch_setup(path.clone(), n, socks, |a, b| {
            let on = |peer: SocketAddr| {
                let mut l = leg_toward(peer);
                if let Some(ip) = media_ip {
                    l.local = Endpoint::from_addr(SocketAddr::new(ip, 0));
                }
                l
            };
            SessionSpec { legs: [on(a), on(b)], ..SessionSpec::default() }
        }),
    }
}

/// The call-id of session `i` of a run tagged `tag`.
pub fn call_id(tag: &str, i: usize) -> String {
    format!("rtpload-{tag}-{i}")
}

fn ng_setup(addr: SocketAddr, n: usize, socks: &ToolSockets) -> Result<Setup, String> {
    let mut client = NgClient::new(addr, Duration::from_secs(2)).map_err(|e| format!("ng socket: {e}"))?;
    let tag = format!("{}-{}", std::process::id(), crate::net::mono_ns() % 1_000_000_007);
    let mut sessions = Vec::with_capacity(n);
    for i in 0..n {
        let id = call_id(&tag, i);
        let b = client.offer(&id, "caller", socks.addr(i, 0))?;
        let a = client.answer(&id, "caller", "callee", socks.addr(i, 1))?;
        sessions.push(SessionPorts { a, b });
    }
    Ok(Setup { sessions, teardown: Teardown::Ng { client: Box::new(client), calls: n, tag } })
}

impl Setup {
    /// Sessions set up over NG by the caller of this (calls `0..calls` under `tag`,
    /// deleted at teardown).
    pub fn ng(sessions: Vec<SessionPorts>, client: NgClient, tag: String) -> Setup {
        let calls = sessions.len();
        Setup { sessions, teardown: Teardown::Ng { client: Box::new(client), calls, tag } }
    }
}

/// A leg toward `peer` on a port the media plane picks, PCMU only, no latching.
pub fn leg_toward(peer: SocketAddr) -> ferroswitch_shared::msg::LegSpec {
    let mut l = ferroswitch_shared::msg::LegSpec {
        local: Endpoint::from_addr(SocketAddr::new(peer.ip(), 0)),
        remote: Endpoint::from_addr(peer),
        flags: leg_flags::SEND | leg_flags::RECV,
        codec_count: 1,
        ptime_ms: 20,
        media: media_kind::AUDIO,
        ..Default::default()
    };
    l.codecs[0] = PayloadMap { clock_rate: 8000, pt: 0, codec: codec::PCMU, channels: 1, _pad: 0 };
    l
}

/// Attaches to the media plane at `socket` as its control plane and creates the
/// sessions (`spec` of the caller's and the callee's tool addresses); the local ports
/// come from the media plane's own answer to a query.
pub fn ferroswitch_setup(
    socket: PathBuf,
    n: usize,
    socks: &ToolSockets,
    spec: impl Fn(SocketAddr, SocketAddr) -> SessionSpec,
) -> Result<Setup, String> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(|e| format!("tokio runtime: {e}"))?;
    let (media, ids) = rt.block_on(async {
        let media = supervisor::start(SupervisorOptions {
            socket,
            spawn: None,
            cores: 1,
            heartbeat_timeout: Duration::from_secs(5),
            first_id: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_micros() as u64),
            start_timeout: Duration::from_secs(5),
        });
        if tokio::time::timeout(Duration::from_secs(10), media.wait_for(|s| s.ready)).await.is_err() {
            return Err("no ferroswitch media plane answered (or reconciled) within 10 s".to_string());
        }
        let mut ids = Vec::with_capacity(n);
        for i in 0..n {
            ids.push(media.create(spec(socks.addr(i, 0), socks.addr(i, 1))).await.ok_or("the supervisor stopped")?);
        }
        Ok((media, ids))
    })?;
    let held = rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(30), async {
            loop {
                if let Some(held) = media.query_media().await {
                    let mine: std::collections::HashMap<u64, SessionSpec> =
                        held.into_iter().map(|(id, _, _, spec)| (id, spec)).collect();
                    if ids.iter().all(|id| mine.contains_key(id)) {
                        return mine;
                    }
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .map_err(|_| format!("the media plane did not confirm {n} sessions within 30 s"))
    })?;
    let mut sessions = Vec::with_capacity(n);
    for id in &ids {
        let legs = &held[id].legs;
        let (Some(a), Some(b)) = (legs[0].local.addr(), legs[1].local.addr()) else {
            return Err(format!("session {id}: the media plane reports no local address"));
        };
        sessions.push(SessionPorts { a, b });
    }
    Ok(Setup { sessions, teardown: Teardown::Ferroswitch { rt, media, ids } })
}

async fn ferroswitch_teardown(media: &MediaHandle, ids: &[u64]) -> Result<(), String> {
    for id in ids {
        media.destroy(*id).await;
    }
    let gone = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let Some(held) = media.query_media().await {
                if !held.iter().any(|(id, ..)| ids.contains(id)) {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    media.stop().await;
    gone.map_err(|_| "sessions remain on the media plane 10 s after destroying them".to_string())
}
