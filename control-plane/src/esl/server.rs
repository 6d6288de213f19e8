//! The event socket's listener and connections (tokio). Each connection runs a
//! [`Session`]; API commands go to the SIP driver, which runs them on the switch and
//! answers ([`ApiCall`]); events reach every connection through the [`Hub`], a bounded
//! broadcast: a connection that falls behind by more than [`EVENT_QUEUE`] events is
//! dropped with a log line, never the switch slowed.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{broadcast, mpsc, oneshot, watch, Semaphore};

use super::door::Door;
use tracing::{info, warn};

use super::event::{Core, Event};
use super::frame::Decoder;
use super::session::{api_response, Output, Session, AUTH_REQUEST, DISCONNECT_NOTICE};
use crate::config::{Cidr, EslConfig};
use crate::switch::SwitchEvent;

/// Events a connection may fall behind by before it is dropped.
pub const EVENT_QUEUE: usize = 16_384;
/// Events written to a connection at once, at most.
const BATCH: usize = 64;

/// What a client that fell too far behind gets before it is closed.
const LOST_EVENTS_NOTICE: &[u8] =
    b"Content-Type: text/disconnect-notice\nContent-Length: 39\n\nkilled listener because of lost events\n";

/// Connections served at once; more are closed at accept.
pub const MAX_CONNECTIONS: usize = 64;
/// How long a client has to authenticate. Clients answer `auth/request` at once;
/// FreeSWITCH waits far longer, which lets idle strangers hold their places.
pub const AUTH_TIMEOUT: Duration = Duration::from_secs(10);

/// What a connection asks of the switch.
#[derive(Debug)]
pub enum Ask {
    /// Run API command `command` with `args`.
    Api { command: String, args: String },
    /// Deliver a `sendmsg` to channel `uuid`.
    SendMsg { uuid: String, headers: Vec<(String, String)> },
}

/// A request for the SIP driver to run on the switch; its answer (the API output, or
/// the sendmsg's reply text) comes back on `reply`.
#[derive(Debug)]
pub struct ApiCall {
    pub ask: Ask,
    pub reply: oneshot::Sender<String>,
}

/// One published event: numbered and stamped when it happened, turned into its headers
/// by the first connection that needs them (on the event socket's thread, not the SIP
/// driver's), then shared by all.
#[derive(Debug)]
pub struct Item {
    core: Arc<Core>,
    source: Source,
    built: std::sync::OnceLock<Event>,
}

#[derive(Debug)]
enum Source {
    Ready(Event),
    Switch { event: SwitchEvent, seq: u64, unix_us: u64 },
}

impl Item {
    /// The event's headers.
    pub fn event(&self) -> &Event {
        self.built.get_or_init(|| match &self.source {
            Source::Ready(e) => e.clone(),
            Source::Switch { event, seq, unix_us } => match event {
                SwitchEvent::Channel(ce) => Event::from_channel(ce, &self.core, *seq),
                SwitchEvent::Custom { subclass, headers } => {
                    let mut ev = Event::new("CUSTOM", Some(subclass), &self.core, *unix_us, *seq);
                    for (n, v) in headers {
                        ev.add(n, v);
                    }
                    ev
                }
                SwitchEvent::Heartbeat { headers } => {
                    let mut ev = Event::new("HEARTBEAT", None, &self.core, *unix_us, *seq);
                    for (n, v) in headers {
                        ev.add(n, v);
                    }
                    ev
                }
            },
        })
    }
}

/// Where events are numbered and fanned out to every connection.
#[derive(Debug)]
pub struct Hub {
    core: Arc<Core>,
    seq: AtomicU64,
    tx: broadcast::Sender<Arc<Item>>,
}

impl Hub {
    pub fn new(core: Core) -> Arc<Hub> {
        let (tx, _) = broadcast::channel(EVENT_QUEUE);
        Arc::new(Hub { core: Arc::new(core), seq: AtomicU64::new(1), tx })
    }

    pub fn core(&self) -> &Core {
        &self.core
    }

    /// The next Event-Sequence.
    pub fn next_seq(&self) -> u64 {
        self.seq.fetch_add(1, Ordering::Relaxed)
    }

    /// An event of the switch, to every connection (formatted there, not here).
    pub fn publish_switch(&self, event: SwitchEvent) {
        if self.tx.receiver_count() == 0 {
            return;
        }
        let source = Source::Switch { event, seq: self.next_seq(), unix_us: unix_us() };
        let _ = self.tx.send(Arc::new(Item { core: self.core.clone(), source, built: std::sync::OnceLock::new() }));
    }

    /// The API event FreeSWITCH fires for each API command run.
    pub fn publish_api(&self, command: &str, args: &str) {
        if self.tx.receiver_count() == 0 {
            return;
        }
        let mut e = Event::new("API", None, &self.core, unix_us(), self.next_seq());
        e.add("API-Command", command);
        e.add("API-Command-Argument", args);
        self.publish(e);
    }

    pub fn publish(&self, e: Event) {
        let _ = self.tx.send(Arc::new(Item {
            core: self.core.clone(),
            source: Source::Ready(e),
            built: std::sync::OnceLock::new(),
        }));
    }

    pub(super) fn subscribe(&self) -> broadcast::Receiver<Arc<Item>> {
        self.tx.subscribe()
    }
}

/// Serves the event socket on `listener` until `shutdown` turns true.
pub async fn serve(
    listener: TcpListener,
    cfg: EslConfig,
    hub: Arc<Hub>,
    api: mpsc::Sender<ApiCall>,
    mut shutdown: watch::Receiver<bool>,
) {
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let door = Arc::new(std::sync::Mutex::new(Door::default()));
    let cfg = Arc::new(cfg);
    while !*shutdown.borrow_and_update() {
        tokio::select! {
            changed = shutdown.changed() => if changed.is_err() { break },
            accepted = listener.accept() => {
                let Ok((stream, peer)) = accepted else { continue };
                if !allowed(&cfg.acl, peer) {
                    warn!(%peer, "event socket: connection refused by esl.acl");
                    tokio::spawn(refuse(stream));
                    continue;
                }
                let Ok(permit) = permits.clone().try_acquire_owned() else {
                    warn!(%peer, max = MAX_CONNECTIONS, "event socket: too many connections; closed");
                    continue;
                };
                let admitted = door.lock().map_or(Ok(()), |mut d| d.admit(peer.ip(), std::time::Instant::now()));
                if let Err(why) = admitted {
                    warn!(%peer, %why, "event socket: connection refused");
                    tokio::spawn(refuse(stream));
                    continue;
                }
                let (cfg, hub, api, shutdown, door) =
                    (cfg.clone(), hub.clone(), api.clone(), shutdown.clone(), door.clone());
                tokio::spawn(async move {
                    connection(stream, peer, &cfg, &hub, &api, &door, shutdown).await;
                    drop(permit);
                });
            }
        }
    }
}

fn allowed(acl: &[Cidr], peer: SocketAddr) -> bool {
    acl.is_empty() || acl.iter().any(|c| c.contains(peer.ip()))
}

/// A client the ACL refuses gets FreeSWITCH's words for it and is closed.
async fn refuse(mut stream: TcpStream) {
    let _ =
        stream.write_all(b"Content-Type: text/rude-rejection\nContent-Length: 24\n\nAccess Denied, go away.\n").await;
    let _ = stream.write_all(DISCONNECT_NOTICE).await;
}

/// One connection, until the client leaves, is dropped, or the switch stops.
async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    cfg: &EslConfig,
    hub: &Arc<Hub>,
    api: &mpsc::Sender<ApiCall>,
    door: &std::sync::Mutex<Door>,
    mut shutdown: watch::Receiver<bool>,
) {
    // Counted at the door as unauthenticated until it authenticates or leaves.
    let mut pending = true;
    let mut at_door = |session: &Session| {
        let Ok(mut d) = door.lock() else { return };
        if pending && session.is_authed() {
            d.authenticated(peer.ip());
            pending = false;
        } else if session.auth_failed() {
            if let Some(lockout) = d.failed(peer.ip(), std::time::Instant::now()) {
                warn!(%peer, secs = lockout.as_secs(), "event socket: wrong passwords from this address; locked out");
            }
        }
    };
    let (mut rd, mut wr) = stream.into_split();
    let mut session = Session::new(&cfg.password);
    let mut events = hub.subscribe();
    let mut decoder = Decoder::new();
    let mut buf = vec![0u8; 16 * 1024];
    if wr.write_all(AUTH_REQUEST).await.is_err() {
        return;
    }
    let auth_deadline = tokio::time::Instant::now() + AUTH_TIMEOUT;
    info!(%peer, "event socket: connected");
    // The switch's log lines, while the client asked for them (`log <level>`).
    let mut logs: Option<broadcast::Receiver<Arc<super::log::LogLine>>> = None;
    loop {
        tokio::select! {
            line = async {
                match logs.as_mut() {
                    Some(rx) => rx.recv().await,
                    None => std::future::pending().await,
                }
            } => match line {
                Ok(line) => {
                    if session.wants_log().is_some_and(|max| line.level <= max) && wr.write_all(&line.frame()).await.is_err() {
                        break;
                    }
                }
                // Lines it was too slow for are lost to it, as FreeSWITCH's are.
                Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => logs = None,
            },
            _ = shutdown.changed() => {
                let _ = wr.write_all(DISCONNECT_NOTICE).await;
                break;
            }
            _ = tokio::time::sleep_until(auth_deadline), if !session.is_authed() => {
                info!(%peer, "event socket: no authentication in time");
                let _ = wr.write_all(DISCONNECT_NOTICE).await;
                break;
            }
            ev = events.recv() => match ev {
                Ok(e) => {
                    // The events already waiting go out with it, in one write.
                    let mut out = session.event_frame(e.event()).unwrap_or_default();
                    let mut lagged = None;
                    // At most a batch, so a backlog does not hold this thread for long.
                    for _ in 0..BATCH {
                        match events.try_recv() {
                            Ok(more) => {
                                if let Some(frame) = session.event_frame(more.event()) {
                                    out.extend_from_slice(&frame);
                                }
                            }
                            Err(broadcast::error::TryRecvError::Lagged(lost)) => {
                                lagged = Some(lost);
                                break;
                            }
                            Err(_) => break,
                        }
                    }
                    if !out.is_empty() && wr.write_all(&out).await.is_err() {
                        break;
                    }
                    if let Some(lost) = lagged {
                        warn!(%peer, lost, "event socket: client too slow for its events; dropped");
                        let _ = wr.write_all(LOST_EVENTS_NOTICE).await;
                        break;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(lost)) => {
                    warn!(%peer, lost, "event socket: client too slow for its events; dropped");
                    let _ = wr.write_all(LOST_EVENTS_NOTICE).await;
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
                let open = run_commands(&mut decoder, &mut session, hub, api, &mut wr, peer, None).await;
                at_door(&session);
                match (session.wants_log(), logs.is_some()) {
                    (Some(_), false) => logs = Some(super::log::subscribe()),
                    (None, true) => logs = None,
                    _ => {}
                }
                if !open {
                    break;
                }
            }
        }
    }
    if pending {
        if let Ok(mut d) = door.lock() {
            d.closed(peer.ip());
        }
    }
    info!(%peer, "event socket: closed");
}

/// Runs every whole command received; false once the connection is to close.
/// `channel`: an outbound connection's channel data, for its `connect`.
pub(super) async fn run_commands(
    decoder: &mut Decoder,
    session: &mut Session,
    hub: &Arc<Hub>,
    api: &mpsc::Sender<ApiCall>,
    wr: &mut tokio::net::tcp::OwnedWriteHalf,
    peer: SocketAddr,
    channel: Option<(&str, &Event)>,
) -> bool {
    loop {
        let cmd = match decoder.next_command() {
            Ok(Some(c)) => c,
            Ok(None) => return true,
            Err(e) => {
                warn!(%peer, error = %e, "event socket: unreadable command; closed");
                let _ = wr.write_all(DISCONNECT_NOTICE).await;
                return false;
            }
        };
        for o in session.on_command(&cmd, new_uuid) {
            match o {
                Output::Send(bytes) => {
                    if wr.write_all(&bytes).await.is_err() {
                        return false;
                    }
                }
                Output::Close => return false,
                Output::Connect => {
                    // The channel's data as the reply's headers (URL-encoded, as events).
                    let data = channel.map(|(_, e)| e.plain()).unwrap_or_else(|| "\n".into());
                    let reply = format!("Content-Type: command/reply\nReply-Text: +OK\n{data}");
                    if wr.write_all(reply.as_bytes()).await.is_err() {
                        return false;
                    }
                }
                Output::GetVar(name) => {
                    let uuid = channel.map(|(u, _)| u).unwrap_or_default();
                    let value = run_api(api, "uuid_getvar", &format!("{uuid} {name}")).await;
                    let value = if value == "_undef_" { String::new() } else { value };
                    if wr.write_all(&super::session::reply(value.trim_end(), &[])).await.is_err() {
                        return false;
                    }
                }
                Output::Publish(mut e) => {
                    // A client's event gets the standard headers it lacks.
                    let mut full =
                        Event::new(e.name(), e.header("Event-Subclass"), hub.core(), unix_us(), hub.next_seq());
                    e.headers.retain(|(n, _)| {
                        !n.eq_ignore_ascii_case("Event-Name") && !n.eq_ignore_ascii_case("Event-Subclass")
                    });
                    full.headers.extend(e.headers);
                    full.body = e.body;
                    hub.publish(full);
                }
                Output::SendMsg { uuid, headers } => {
                    let text = ask(api, Ask::SendMsg { uuid, headers }).await;
                    if wr.write_all(&super::session::reply(text.trim_end(), &[])).await.is_err() {
                        return false;
                    }
                }
                Output::Api { command, args, job: None } => {
                    let body = run_api(api, &command, &args).await;
                    if wr.write_all(&api_response(&body)).await.is_err() {
                        return false;
                    }
                }
                Output::Api { command, args, job: Some(job) } => {
                    // The reply went out already; the output comes as a BACKGROUND_JOB event.
                    let (api, hub) = (api.clone(), hub.clone());
                    tokio::spawn(async move {
                        let body = run_api(&api, &command, &args).await;
                        let mut e = Event::new("BACKGROUND_JOB", None, hub.core(), unix_us(), hub.next_seq());
                        e.add("Job-UUID", &job);
                        e.add("Job-Command", &command);
                        e.add("Job-Command-Arg", &args);
                        e.body = Some(body);
                        hub.publish(e);
                    });
                }
            }
        }
    }
}

/// Runs an API command on the switch through the driver.
async fn run_api(api: &mpsc::Sender<ApiCall>, command: &str, args: &str) -> String {
    ask(api, Ask::Api { command: command.to_string(), args: args.to_string() }).await
}

/// Asks the switch, through the driver, and waits for its answer.
async fn ask(api: &mpsc::Sender<ApiCall>, ask: Ask) -> String {
    let (reply, answer) = oneshot::channel();
    // An originate answers when its leg does (or gives up, at most 110 s later).
    let wait = match &ask {
        Ask::Api { command, .. } if command.eq_ignore_ascii_case("originate") => Duration::from_secs(120),
        _ => Duration::from_secs(30),
    };
    if api.send(ApiCall { ask, reply }).await.is_err() {
        return "-ERR the switch is stopping\n".into();
    }
    match tokio::time::timeout(wait, answer).await {
        Ok(Ok(out)) if out.is_empty() => "-ERR no reply\n".into(),
        Ok(Ok(out)) => out,
        _ => "-ERR no reply\n".into(),
    }
}

/// A random UUID (v4 form) for jobs and client events.
pub fn new_uuid() -> String {
    let mut b = [0u8; 16];
    if getrandom_fill(&mut b).is_err() {
        let t = unix_us().to_le_bytes();
        b[..8].copy_from_slice(&t);
    }
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!("{}-{}-{}-{}-{}", &h[..8], &h[8..12], &h[12..16], &h[16..20], &h[20..])
}

fn getrandom_fill(b: &mut [u8]) -> std::io::Result<()> {
    use std::io::Read;
    std::fs::File::open("/dev/urandom")?.read_exact(b)
}

/// Now, in µs since the Unix epoch.
pub fn unix_us() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_micros() as u64)
}
