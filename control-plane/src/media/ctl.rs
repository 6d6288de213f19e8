//! `ferroswitch media-ctl`: a small controller for a media plane, for operators and
//! tests. It attaches to the media plane's socket *as the control plane* (superseding
//! any control plane attached), so use it when none runs: to look at what a media plane
//! kept after a control-plane crash, to clean up, or to drive one in a test.
//!
//! ```text
//! ferroswitch media-ctl [--config FILE | --socket PATH] list
//! ferroswitch media-ctl [--config FILE | --socket PATH] create N [--hold]
//! ferroswitch media-ctl [--config FILE | --socket PATH] destroy-all
//! ```
//! `list` prints one line per session: `id core generation a_local a_remote b_local
//! b_remote`. `create` makes N sessions between documentation addresses and prints their
//! ids; with `--hold` it then waits to be killed (a control plane that dies with live
//! sessions). `destroy-all` adopts every session and destroys it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use ferroswitch_shared::msg::{codec, media_kind, Endpoint, PayloadMap, SessionSpec};

use super::supervisor::{self, MediaHandle, SupervisorOptions};

/// Usage text.
pub const USAGE: &str =
    "usage: ferroswitch media-ctl [--config FILE | --socket PATH] list | create N [--hold] | destroy-all";

/// What to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CtlCommand {
    /// Print every session.
    List,
    /// Create N sessions; hold them until killed if `hold`.
    Create {
        /// How many.
        count: u32,
        /// Wait to be killed afterwards.
        hold: bool,
    },
    /// Destroy every session.
    DestroyAll,
}

/// Parses the words after the options.
pub fn parse(words: &[String]) -> Result<CtlCommand, String> {
    match words.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["list"] => Ok(CtlCommand::List),
        ["destroy-all"] => Ok(CtlCommand::DestroyAll),
        ["create", n, rest @ ..] => {
            let count = n.parse().map_err(|_| format!("create: {n:?} is not a count"))?;
            let hold = match rest {
                [] => false,
                ["--hold"] => true,
                _ => return Err(format!("create: unexpected {rest:?}")),
            };
            Ok(CtlCommand::Create { count, hold })
        }
        _ => Err(format!("unknown command {words:?}")),
    }
}

/// A session between two documentation addresses, ports allocated by the media plane.
pub fn test_spec(n: u32) -> SessionSpec {
    let mut s = SessionSpec::default();
    for (i, leg) in s.legs.iter_mut().enumerate() {
        leg.local = Endpoint::from_addr(SocketAddr::from(([127, 0, 0, 1], 0)));
        let port = 10_000 + (2 * n % 50_000) as u16;
        leg.remote = Endpoint::from_addr(SocketAddr::from(([192, 0, 2, 10 + i as u8], port)));
        leg.codec_count = 1;
        leg.codecs[0] = PayloadMap { clock_rate: 8000, pt: 0, codec: codec::PCMU, channels: 1, _pad: 0 };
        leg.media = media_kind::AUDIO;
    }
    s.rtp_timeout_secs = 60;
    s
}

/// Runs `cmd` against the media plane at `socket`; the process exit code.
pub async fn run(socket: PathBuf, cmd: CtlCommand) -> u8 {
    let media = supervisor::start(SupervisorOptions {
        socket,
        spawn: None,
        cores: 1,
        heartbeat_timeout: Duration::from_secs(2),
        first_id: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_micros() as u64),
        start_timeout: Duration::from_secs(5),
    });
    let ready = tokio::time::timeout(Duration::from_secs(10), media.wait_for(|s| s.ready)).await;
    if ready.is_err() {
        eprintln!("media-ctl: no media plane answered (or it did not reconcile) within 10 s");
        return 1;
    }
    let code = match cmd {
        CtlCommand::List => list(&media).await,
        CtlCommand::Create { count, hold } => create(&media, count, hold).await,
        CtlCommand::DestroyAll => destroy_all(&media).await,
    };
    code
}

async fn list(media: &MediaHandle) -> u8 {
    let Some(sessions) = media.query_media().await else {
        eprintln!("media-ctl: the query got no answer");
        return 1;
    };
    let show = |e: &Endpoint| e.addr().map_or_else(|| "-".to_string(), |a| a.to_string());
    for (id, core, generation, spec) in sessions {
        let [a, b] = &spec.legs;
        println!(
            "{id} {core} {generation} {} {} {} {}",
            show(&a.local),
            show(&a.remote),
            show(&b.local),
            show(&b.remote)
        );
    }
    0
}

async fn create(media: &MediaHandle, count: u32, hold: bool) -> u8 {
    let before = media.state().sessions;
    for n in 0..count {
        match media.create(test_spec(n)).await {
            Some(id) => println!("{id}"),
            None => return 1,
        }
    }
    // Every create confirmed: the media plane holds them all.
    let want = before + count as usize;
    let held = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let Some(s) = media.query_media().await {
                if s.len() >= want {
                    return s.len();
                }
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    match held {
        Ok(n) => println!("media-ctl: the media plane holds {n} sessions"),
        Err(_) => {
            eprintln!("media-ctl: the media plane did not confirm {count} sessions within 10 s");
            return 1;
        }
    }
    if hold {
        std::future::pending::<()>().await;
    }
    0
}

async fn destroy_all(media: &MediaHandle) -> u8 {
    let ids: Vec<u64> = media.sessions().await.into_iter().map(|(id, _)| id).collect();
    for id in &ids {
        media.destroy(*id).await;
    }
    let empty = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if media.query_media().await.is_some_and(|s| s.is_empty()) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    if empty.is_err() {
        eprintln!("media-ctl: sessions remain after destroying {}", ids.len());
        return 1;
    }
    println!("media-ctl: destroyed {}", ids.len());
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_parse_and_bad_ones_say_why() {
        let w = |s: &str| s.split_whitespace().map(String::from).collect::<Vec<_>>();
        assert_eq!(parse(&w("list")), Ok(CtlCommand::List));
        assert_eq!(parse(&w("create 100 --hold")), Ok(CtlCommand::Create { count: 100, hold: true }));
        assert_eq!(parse(&w("create 3")), Ok(CtlCommand::Create { count: 3, hold: false }));
        assert_eq!(parse(&w("destroy-all")), Ok(CtlCommand::DestroyAll));
        assert_eq!(parse(&w("create x")), Err("create: \"x\" is not a count".to_string()));
        assert!(parse(&w("explode")).is_err());
    }
}
