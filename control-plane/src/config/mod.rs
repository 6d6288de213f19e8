//! Configuration: TOML, validated before anything starts.
//!
//! `config/ferroswitch.toml` documents every key and is compiled in as the embedded
//! default. Every error names the key, the file and the line, and says what was
//! expected, so an operator can fix it without reading code.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use std::collections::BTreeMap;

use serde::Deserialize;

pub use crate::auth::{Algorithm, Secret};
use toml::Spanned;

/// The documented default configuration, compiled in.
pub const EMBEDDED_DEFAULT: &str = include_str!("../../../config/ferroswitch.toml");
/// How the embedded default is named in messages.
pub const EMBEDDED_NAME: &str = "<embedded default config/ferroswitch.toml>";
/// FreeSWITCH's vanilla default password, refused on non-loopback addresses.
pub const VANILLA_PASSWORD: &str = "1234";
/// mod_event_socket's default password, refused on a non-loopback `esl.listen`.
pub const ESL_DEFAULT_PASSWORD: &str = "ClueCon";

/// A configuration error: where it is and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}: {key}: {message}")]
pub struct ConfigError {
    /// The file (or the embedded default's name).
    pub file: String,
    /// 1-based line of the offending key or value (0 when the file could not be read).
    pub line: usize,
    /// The dotted key, e.g. `sip.udp`.
    pub key: String,
    /// What is wrong and what is expected.
    pub message: String,
}

/// Validated configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Where the configuration came from.
    pub source: String,
    pub sip: SipConfig,
    pub ng: NgConfig,
    pub media: MediaConfig,
    pub storage: StorageConfig,
    pub log: LogConfig,
    pub directory: Directory,
    pub registrar: RegistrarConfig,
    pub auth: AuthConfig,
    pub management: ManagementConfig,
    pub dialplan: DialplanConfig,
    pub esl: EslConfig,
}

/// `[esl]`: FreeSWITCH's event socket, inbound mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EslConfig {
    /// Where it listens; `None` when turned off.
    pub listen: Option<SocketAddr>,
    pub password: String,
    /// The client addresses it takes (empty: any).
    pub acl: Vec<Cidr>,
    /// How often HEARTBEAT events go out (FreeSWITCH's event-heartbeat-interval).
    pub heartbeat: std::time::Duration,
}

/// `[dialplan]`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DialplanConfig {
    /// A FreeSWITCH XML dialplan file; `None` runs the embedded default.
    pub file: Option<PathBuf>,
}

/// `[management]`
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ManagementConfig {
    /// Where the read-only HTTP JSON endpoint listens; `None` when turned off.
    pub http_listen: Option<SocketAddr>,
}

/// `[registrar]`
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RegistrarConfig {
    pub min_expires: u32,
    pub max_expires: u32,
    pub default_expires: u32,
    /// How a phone behind a NAT is told (its requests then go to the REGISTER's source).
    pub nat_detection: crate::registrar::NatDetection,
}

/// `[auth]`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthConfig {
    /// Sources whose INVITEs are not challenged.
    pub trusted: Vec<Cidr>,
    pub nonce_lifetime_secs: u64,
    /// Digest algorithms offered, in order of preference.
    pub algorithms: Vec<Algorithm>,
    /// Password-guessing limits: back-off, ban, user lock.
    pub guard: crate::auth::guard::GuardConfig,
}

/// An IPv4 or IPv6 network, `addr/prefix`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    pub addr: std::net::IpAddr,
    pub prefix: u8,
}

impl Cidr {
    /// Parses `a.b.c.d/n`, `x::y/n`, or a bare address (a single host).
    pub fn parse(s: &str) -> Option<Cidr> {
        let (a, p) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: std::net::IpAddr = a.trim().parse().ok()?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match p {
            Some(p) => p.trim().parse::<u8>().ok().filter(|&n| n <= max)?,
            None => max,
        };
        Some(Cidr { addr, prefix })
    }

    pub fn contains(&self, ip: std::net::IpAddr) -> bool {
        let to_bits = |ip: std::net::IpAddr| -> (u128, u8) {
            match ip {
                std::net::IpAddr::V4(v) => (u128::from(u32::from(v)), 32),
                std::net::IpAddr::V6(v) => (u128::from(v), 128),
            }
        };
        // An IPv4-mapped IPv6 source matches IPv4 networks.
        let ip = match ip {
            std::net::IpAddr::V6(v) => v.to_ipv4_mapped().map_or(ip, std::net::IpAddr::V4),
            v4 => v4,
        };
        let ((net, width), (host, host_width)) = (to_bits(self.addr), to_bits(ip));
        if width != host_width {
            return false;
        }
        let shift = u32::from(width - self.prefix);
        self.prefix == 0 || (net >> shift) == (host >> shift)
    }
}

/// `[sip]`
#[derive(Debug, Clone, PartialEq)]
pub struct SipConfig {
    pub udp: Vec<SocketAddr>,
    pub tcp: Vec<SocketAddr>,
    pub realm: String,
    pub max_message_size: usize,
    pub symmetric_response: bool,
    pub tcp_idle_timeout: Duration,
    pub tcp_max_connections: usize,
    pub tcp_max_connections_per_source: usize,
    pub tcp_max_pending_bytes: usize,
    /// TCP: a message (header and body) must be complete this long after its first byte.
    pub tcp_message_timeout: Duration,
    pub t1: Duration,
    pub t2: Duration,
    pub t4: Duration,
    /// Live transactions before new requests get 503 (in-dialog ones: twice as many).
    pub max_transactions: usize,
    /// Live calls before a new INVITE gets 503.
    pub max_calls: usize,
    /// Requests a second one source may send (0: no limit), and its bursts.
    pub requests_per_source_per_sec: u32,
    pub request_burst_per_source: u32,
    /// m= lines an SDP may have.
    pub max_sdp_media: usize,
}

/// `[ng]`
#[derive(Debug, Clone, PartialEq)]
pub struct NgConfig {
    /// Where rtpengine's NG protocol is served (UDP); `None` when turned off ("").
    pub listen: Option<SocketAddr>,
    /// Seconds without RTP before an NG call is deleted (rtpengine's `timeout`).
    pub timeout_secs: u32,
    /// The same while a stream is on hold (rtpengine's `silent-timeout`).
    pub silent_timeout_secs: u32,
    /// Seconds after its offer an NG call is deleted whatever it does (0: never).
    pub final_timeout_secs: u32,
    /// NG calls one client address may hold.
    pub max_calls_per_source: usize,
}

/// The codecs bridged calls prefer when `media.codec_prefs` is not set: FreeSWITCH's
/// `global_codec_prefs` default, audio part.
pub const DEFAULT_CODEC_PREFS: &str = "OPUS,G722,PCMU,PCMA";

/// `[media]`
#[derive(Debug, Clone, PartialEq)]
pub struct MediaConfig {
    pub rtp_port_min: u16,
    pub rtp_port_max: u16,
    pub cores: Cores,
    /// Whether the control plane starts the media plane, attaches to one, or runs without.
    pub mode: MediaMode,
    /// The media plane's Unix socket (default: `<storage.dir>/media.sock`).
    pub socket: PathBuf,
    /// Slots in each ring.
    pub ring_capacity: usize,
    /// How often the media plane bumps its heartbeat.
    pub heartbeat: std::time::Duration,
    /// A heartbeat that does not move for this long restarts the media plane.
    pub heartbeat_timeout: std::time::Duration,
    /// A media plane with no control plane and no session exits after this long.
    pub orphan_exit: std::time::Duration,
    /// The core the control plane's thread is pinned to (None: not pinned).
    pub control_core: Option<usize>,
    /// `media.backend`: "io_uring", "epoll", or None for "auto".
    pub backend: Option<ferroswitch_media_plane::worker::Backend>,
    /// How often the media plane reports each session's counters.
    pub stats_interval: std::time::Duration,
    /// io_uring SQPOLL idle time (None: off).
    pub sqpoll_idle: Option<std::time::Duration>,
    /// How long a media worker keeps polling after work.
    pub busy_poll: std::time::Duration,
    /// The address bridged calls' media uses on the switch (None: the SIP listener's).
    pub rtp_ip: Option<std::net::IpAddr>,
    /// The switch's codec preferences for bridged calls, as a FreeSWITCH codec string.
    pub codec_prefs: Vec<crate::media::negotiate::CodecPref>,
    /// Seconds without RTP before a bridged call hangs up with MEDIA_TIMEOUT (0: never);
    /// a call's `rtp_timeout_sec` variable overrides it.
    pub rtp_timeout_secs: u32,
    /// After a leg first latches, how long a new SSRC from another address may still
    /// move the latch of a leg whose signalling named no address.
    pub learning_window: std::time::Duration,
    /// The Opus encoder's settings for transcoded calls (`media.opus_*`).
    pub opus: ferroswitch_media_plane::codec::opus::Params,
    /// `media.backend = "af_xdp"`: the interface and modes (`media.xdp_*`).
    pub xdp: Option<ferroswitch_media_plane::XdpOptions>,
}

impl MediaConfig {
    /// Media workers: one per listed core, or one per available core for "auto".
    pub fn worker_count(&self) -> usize {
        self.worker_cpus().len()
    }

    /// Per media worker, the CPU it is pinned to.
    pub fn worker_cpus(&self) -> Vec<usize> {
        match &self.cores {
            Cores::Auto => (0..std::thread::available_parallelism().map_or(1, |n| n.get())).collect(),
            Cores::List(ids) => ids.clone(),
        }
    }
}

/// `media.mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaMode {
    /// Start the media plane as a child process and supervise it (attaching to one that
    /// already answers on the socket, e.g. after this control plane restarted).
    Spawn,
    /// Attach to a media plane started separately (its own service unit).
    Attach,
    /// No media plane (signalling only).
    Off,
}

/// Which cores run media workers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cores {
    Auto,
    List(Vec<usize>),
}

/// `[storage]`
#[derive(Debug, Clone, PartialEq)]
pub struct StorageConfig {
    pub dir: PathBuf,
    /// How long the writer gathers writes into one commit (`storage.commit_interval_ms`).
    pub commit_interval: std::time::Duration,
}

/// `[log]`
#[derive(Debug, Clone, PartialEq)]
pub struct LogConfig {
    pub level: String,
    /// One JSON object per line instead of text.
    pub json: bool,
}

/// `[directory]`: the users who may register and call.
#[derive(Debug, Clone, PartialEq)]
pub struct Directory {
    pub users: Vec<User>,
    /// The users file the directory was read from, if one is configured.
    pub users_file: Option<PathBuf>,
}

/// One user of the directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: String,
    /// The password, or precomputed HA1 values.
    pub secret: Secret,
    /// FreeSWITCH's effective_caller_id_name (default "Extension <id>").
    pub caller_id_name: String,
    /// FreeSWITCH's effective_caller_id_number (default the id).
    pub caller_id_number: String,
    /// Channel variables set on this user's calls (FreeSWITCH's user variables).
    pub variables: BTreeMap<String, String>,
}

impl User {
    fn new(id: String, secret: Secret) -> User {
        User {
            caller_id_name: format!("Extension {id}"),
            caller_id_number: id.clone(),
            id,
            secret,
            variables: BTreeMap::new(),
        }
    }

    /// True if the user still has FreeSWITCH's vanilla password.
    pub fn has_vanilla_password(&self) -> bool {
        self.secret == Secret::Password(VANILLA_PASSWORD.to_string())
    }
}

impl Directory {
    pub fn user(&self, id: &str) -> Option<&User> {
        self.users.iter().find(|u| u.id == id)
    }
}

// ---- raw, as written ----

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Raw {
    #[serde(default)]
    sip: RawSip,
    #[serde(default)]
    ng: RawNg,
    #[serde(default)]
    media: RawMedia,
    #[serde(default)]
    storage: RawStorage,
    #[serde(default)]
    log: RawLog,
    #[serde(default)]
    directory: RawDirectory,
    #[serde(default)]
    registrar: RawRegistrar,
    #[serde(default)]
    auth: RawAuth,
    #[serde(default)]
    management: RawManagement,
    #[serde(default)]
    dialplan: RawDialplan,
    #[serde(default)]
    esl: RawEsl,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawEsl {
    listen: Option<Spanned<String>>,
    password: Option<Spanned<String>>,
    acl: Option<Vec<Spanned<String>>>,
    heartbeat_secs: Option<Spanned<u64>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawDialplan {
    file: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawManagement {
    http_listen: Option<Spanned<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawRegistrar {
    min_expires: Option<Spanned<u64>>,
    max_expires: Option<Spanned<u64>>,
    default_expires: Option<Spanned<u64>>,
    nat_detection: Option<Spanned<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawAuth {
    trusted: Option<Vec<Spanned<String>>>,
    nonce_lifetime_secs: Option<Spanned<u64>>,
    algorithms: Option<Spanned<Vec<String>>>,
    failures_before_backoff: Option<Spanned<u64>>,
    failures_before_ban: Option<Spanned<u64>>,
    failure_window_secs: Option<Spanned<u64>>,
    ban_secs: Option<Spanned<u64>>,
    user_failures_before_lock: Option<Spanned<u64>>,
    user_lock_secs: Option<Spanned<u64>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawSip {
    udp: Option<Spanned<Vec<Spanned<String>>>>,
    tcp: Option<Spanned<Vec<Spanned<String>>>>,
    realm: Option<String>,
    max_message_size: Option<Spanned<u64>>,
    symmetric_response: Option<bool>,
    tcp_idle_timeout_secs: Option<Spanned<u64>>,
    tcp_max_connections: Option<Spanned<u64>>,
    tcp_max_connections_per_source: Option<Spanned<u64>>,
    tcp_max_pending_bytes: Option<Spanned<u64>>,
    tcp_message_timeout_ms: Option<Spanned<u64>>,
    t1_ms: Option<Spanned<u64>>,
    t2_ms: Option<Spanned<u64>>,
    t4_ms: Option<Spanned<u64>>,
    max_transactions: Option<Spanned<u64>>,
    max_calls: Option<Spanned<u64>>,
    requests_per_source_per_sec: Option<Spanned<u64>>,
    request_burst_per_source: Option<Spanned<u64>>,
    max_sdp_media: Option<Spanned<u64>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawNg {
    listen: Option<Spanned<String>>,
    timeout_secs: Option<Spanned<u64>>,
    silent_timeout_secs: Option<Spanned<u64>>,
    final_timeout_secs: Option<Spanned<u64>>,
    max_calls_per_source: Option<Spanned<u64>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawMedia {
    rtp_port_min: Option<Spanned<u16>>,
    rtp_port_max: Option<Spanned<u16>>,
    cores: Option<Spanned<RawCores>>,
    mode: Option<Spanned<String>>,
    socket: Option<String>,
    ring_capacity: Option<Spanned<u64>>,
    heartbeat_ms: Option<Spanned<u64>>,
    heartbeat_timeout_ms: Option<Spanned<u64>>,
    orphan_exit_secs: Option<Spanned<u64>>,
    control_core: Option<Spanned<u64>>,
    backend: Option<Spanned<String>>,
    stats_interval_secs: Option<Spanned<u64>>,
    sqpoll_idle_ms: Option<Spanned<u64>>,
    busy_poll_us: Option<Spanned<u64>>,
    rtp_ip: Option<Spanned<String>>,
    codec_prefs: Option<Spanned<String>>,
    rtp_timeout_secs: Option<Spanned<u64>>,
    learning_window_ms: Option<Spanned<u64>>,
    opus_complexity: Option<Spanned<u64>>,
    opus_bitrate: Option<Spanned<u64>>,
    opus_fec: Option<bool>,
    opus_dtx: Option<bool>,
    opus_cbr: Option<bool>,
    xdp_interface: Option<Spanned<String>>,
    xdp_mode: Option<Spanned<String>>,
    xdp_bind: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawCores {
    Word(String),
    List(Vec<usize>),
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawStorage {
    dir: Option<String>,
    commit_interval_ms: Option<Spanned<u64>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawLog {
    level: Option<Spanned<String>>,
    format: Option<Spanned<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawDirectory {
    default_password: Option<Spanned<String>>,
    users: Option<Vec<Spanned<String>>>,
    users_file: Option<Spanned<String>>,
    #[serde(default)]
    user: Vec<RawUser>,
}

/// A users file: `[[user]]` tables with the keys of `[[directory.user]]`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUsersFile {
    #[serde(default)]
    user: Vec<RawUser>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUser {
    id: Spanned<String>,
    password: Option<Spanned<String>>,
    ha1: Option<Spanned<String>>,
    ha1_sha256: Option<Spanned<String>>,
    caller_id_name: Option<String>,
    caller_id_number: Option<String>,
    #[serde(default)]
    variables: BTreeMap<String, String>,
}

struct Ctx<'a> {
    file: &'a str,
    text: &'a str,
}

impl Ctx<'_> {
    fn line_of(&self, offset: usize) -> usize {
        self.text.as_bytes()[..offset.min(self.text.len())].iter().filter(|&&c| c == b'\n').count() + 1
    }
    fn err(&self, key: &str, offset: usize, message: impl Into<String>) -> ConfigError {
        ConfigError {
            file: self.file.to_string(),
            line: self.line_of(offset),
            key: key.to_string(),
            message: message.into(),
        }
    }
    /// The dotted key at `offset`: the nearest `[table]` header above, plus the
    /// `name =` on that line (used for errors the TOML reader reports by position).
    fn key_at(&self, offset: usize) -> String {
        let upto = &self.text[..offset.min(self.text.len())];
        let line_start = upto.rfind('\n').map_or(0, |p| p + 1);
        let line_end = self.text[line_start..].find('\n').map_or(self.text.len(), |p| line_start + p);
        let line = &self.text[line_start..line_end];
        if line.trim_start().starts_with('[') {
            return line.trim().trim_matches(|c| c == '[' || c == ']').trim().to_string();
        }
        let table = upto[..line_start]
            .lines()
            .rev()
            .map(str::trim)
            .find(|l| l.starts_with('['))
            .map(|l| l.trim_matches(|c| c == '[' || c == ']').trim().to_string());
        let name = line.split_once('=').map(|(k, _)| k.trim().to_string()).filter(|k| !k.starts_with('['));
        match (table, name) {
            (Some(t), Some(n)) => format!("{t}.{n}"),
            (None, Some(n)) => n,
            (Some(t), None) => t,
            (None, None) => "(top level)".to_string(),
        }
    }
}

impl Config {
    /// The embedded default.
    pub fn embedded() -> Result<Config, ConfigError> {
        Config::parse(EMBEDDED_DEFAULT, EMBEDDED_NAME)
    }

    /// Reads and validates a file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: path.display().to_string(),
            line: 0,
            key: "(file)".into(),
            message: format!("cannot read: {e}"),
        })?;
        Config::parse(&text, &path.display().to_string())
    }

    /// Parses and validates configuration text; `file` names it in errors.
    pub fn parse(text: &str, file: &str) -> Result<Config, ConfigError> {
        let cx = Ctx { file, text };
        let raw: Raw = toml::from_str(text).map_err(|e| {
            let offset = e.span().map_or(0, |s| s.start);
            let message = e.message().trim().to_string();
            let key = match message.strip_prefix("unknown field `").and_then(|m| m.split('`').next()) {
                Some(field) => {
                    let k = cx.key_at(offset);
                    // For an unknown key, key_at names the key itself; for an unknown table, the table.
                    if k.ends_with(field) {
                        k
                    } else {
                        format!("{k}.{field}")
                    }
                }
                None => cx.key_at(offset),
            };
            cx.err(&key, offset, message)
        })?;
        validate(&cx, raw)
    }

    /// True if every SIP and NG listener is on a loopback address.
    pub fn loopback_only(&self) -> bool {
        self.sip.udp.iter().chain(&self.sip.tcp).chain(self.ng.listen.iter()).all(|a| a.ip().is_loopback())
    }
}

fn addr(cx: &Ctx, key: &str, s: &Spanned<String>) -> Result<SocketAddr, ConfigError> {
    s.get_ref().parse::<SocketAddr>().map_err(|_| {
        cx.err(
            key,
            s.span().start,
            format!(
                "\"{}\" is not an address: expected \"ip:port\", e.g. \"127.0.0.1:5060\" or \"[::1]:5060\"",
                s.get_ref()
            ),
        )
    })
}

fn addrs(cx: &Ctx, key: &str, list: &Spanned<Vec<Spanned<String>>>) -> Result<Vec<SocketAddr>, ConfigError> {
    let mut out: Vec<SocketAddr> = Vec::new();
    for s in list.get_ref() {
        let a = addr(cx, key, s)?;
        if out.iter().any(|b| overlaps(*b, a)) {
            return Err(cx.err(key, s.span().start, format!("{a} is listed twice (port clash)")));
        }
        out.push(a);
    }
    Ok(out)
}

/// Two bindings clash if the ports are equal (and not 0, "any free port") and the
/// addresses are equal or either is a wildcard.
fn overlaps(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() != 0 && a.port() == b.port() && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
}

/// `media.backend = "af_xdp"` and `media.xdp_*`: the interface (required), the attach
/// mode, the socket binding; the program's address is `media.rtp_ip` (required too).
fn xdp_options(
    cx: &Ctx,
    m: &RawMedia,
    rtp_ip: Option<std::net::IpAddr>,
) -> Result<Option<ferroswitch_media_plane::XdpOptions>, ConfigError> {
    use ferroswitch_media_plane::xdp::Mode;
    use ferroswitch_media_plane::xsk::XskMode;
    let Some(backend) = m.backend.as_ref().filter(|b| b.get_ref() == "af_xdp") else { return Ok(None) };
    let at = backend.span().start;
    let interface = match &m.xdp_interface {
        Some(i) if !i.get_ref().is_empty() => i.get_ref().clone(),
        _ => {
            return Err(cx.err(
                "media.xdp_interface",
                at,
                "media.backend = \"af_xdp\" needs the interface to attach to",
            ))
        }
    };
    let Some(ip) = rtp_ip else {
        return Err(cx.err(
            "media.rtp_ip",
            at,
            "media.backend = \"af_xdp\" needs the media address (the XDP program's)",
        ));
    };
    let mode = match m.xdp_mode.as_ref().map(|v| (v.get_ref().as_str(), v.span().start)) {
        None | Some(("auto", _)) => None,
        Some(("native", _)) => Some(Mode::Native),
        Some(("generic", _)) => Some(Mode::Generic),
        Some((other, at)) => {
            return Err(cx.err(
                "media.xdp_mode",
                at,
                format!("\"{other}\": expected \"auto\", \"native\" or \"generic\""),
            ))
        }
    };
    let bind = match m.xdp_bind.as_ref().map(|v| (v.get_ref().as_str(), v.span().start)) {
        None | Some(("auto", _)) => None,
        Some(("copy", _)) => Some(XskMode::Copy),
        Some(("zero_copy", _)) => Some(XskMode::ZeroCopy),
        Some((other, at)) => {
            return Err(cx.err(
                "media.xdp_bind",
                at,
                format!("\"{other}\": expected \"auto\", \"copy\" or \"zero_copy\""),
            ))
        }
    };
    let (ipv4, ipv6) = match ip {
        std::net::IpAddr::V4(a) => (Some(a), None),
        std::net::IpAddr::V6(a) => (None, Some(a)),
    };
    Ok(Some(ferroswitch_media_plane::XdpOptions { interface, mode, bind, ipv4, ipv6, frames: 4096 }))
}

/// `media.opus_*`: the Opus encoder's settings for transcoded calls.
fn opus_params(cx: &Ctx, m: &RawMedia) -> Result<ferroswitch_media_plane::codec::opus::Params, ConfigError> {
    let d = ferroswitch_media_plane::codec::opus::Params::default();
    let bitrate = ranged(cx, "media.opus_bitrate", &m.opus_bitrate, 0, 0, 510_000)?;
    if let Some(b) = m.opus_bitrate.as_ref().filter(|_| (1..6000).contains(&bitrate)) {
        return Err(cx.err(
            "media.opus_bitrate",
            b.span().start,
            format!("{bitrate} is out of range: expected 0 (libopus chooses) or 6000 to 510000 bit/s"),
        ));
    }
    Ok(ferroswitch_media_plane::codec::opus::Params {
        bitrate: bitrate as u32,
        complexity: ranged(cx, "media.opus_complexity", &m.opus_complexity, u64::from(d.complexity), 0, 10)? as u8,
        fec: m.opus_fec.unwrap_or(d.fec),
        dtx: m.opus_dtx.unwrap_or(d.dtx),
        cbr: m.opus_cbr.unwrap_or(d.cbr),
        ..d
    })
}

fn ranged(cx: &Ctx, key: &str, v: &Option<Spanned<u64>>, default: u64, min: u64, max: u64) -> Result<u64, ConfigError> {
    match v {
        None => Ok(default),
        Some(s) if (min..=max).contains(s.get_ref()) => Ok(*s.get_ref()),
        Some(s) => {
            Err(cx.err(key, s.span().start, format!("{} is out of range: expected {min} to {max}", s.get_ref())))
        }
    }
}

/// Applies `[[directory.user]]` (or a users file's `[[user]]`) entries over `users`.
fn merge_users(cx: &Ctx, users: &mut Vec<User>, entries: &[RawUser]) -> Result<(), ConfigError> {
    for u in entries {
        let secret = user_secret(cx, u)?;
        let user = match users.iter_mut().position(|x| x.id == *u.id.get_ref()) {
            Some(i) => {
                users[i].secret = secret;
                &mut users[i]
            }
            None => {
                users.push(User::new(u.id.get_ref().clone(), secret));
                users.last_mut().expect("just pushed")
            }
        };
        if let Some(n) = &u.caller_id_name {
            user.caller_id_name = n.clone();
        }
        if let Some(n) = &u.caller_id_number {
            user.caller_id_number = n.clone();
        }
        user.variables = u.variables.clone();
    }
    Ok(())
}

/// A `[[directory.user]]`'s secret: exactly one of a password or HA1 values.
fn user_secret(cx: &Ctx, u: &RawUser) -> Result<Secret, ConfigError> {
    let id_off = u.id.span().start;
    let hex_of = |v: &Option<Spanned<String>>, key: &str, len: usize| -> Result<Option<String>, ConfigError> {
        match v {
            None => Ok(None),
            Some(h) if h.get_ref().len() == len && h.get_ref().bytes().all(|c| c.is_ascii_hexdigit()) => {
                Ok(Some(h.get_ref().to_ascii_lowercase()))
            }
            Some(h) => Err(cx.err(key, h.span().start, format!("expected {len} hex digits: H(user:realm:password)"))),
        }
    };
    let md5 = hex_of(&u.ha1, "directory.user.ha1", 32)?;
    let sha256 = hex_of(&u.ha1_sha256, "directory.user.ha1_sha256", 64)?;
    match (&u.password, md5.is_some() || sha256.is_some()) {
        (Some(p), false) if !p.get_ref().is_empty() => Ok(Secret::Password(p.get_ref().clone())),
        (Some(p), false) => Err(cx.err("directory.user.password", p.span().start, "empty password")),
        (None, true) => Ok(Secret::Ha1 { md5, sha256 }),
        (Some(p), true) => {
            Err(cx.err("directory.user.password", p.span().start, "give either password or ha1/ha1_sha256, not both"))
        }
        (None, false) => {
            Err(cx.err("directory.user", id_off, format!("user {}: needs password, ha1 or ha1_sha256", u.id.get_ref())))
        }
    }
}

fn validate(cx: &Ctx, raw: Raw) -> Result<Config, ConfigError> {
    let d = |s: &str| -> SocketAddr { s.parse().expect("built-in default addresses are valid") };
    let s = &raw.sip;
    let udp = match &s.udp {
        Some(l) => addrs(cx, "sip.udp", l)?,
        None => vec![d("127.0.0.1:5060")],
    };
    let tcp = match &s.tcp {
        Some(l) => addrs(cx, "sip.tcp", l)?,
        None => vec![d("127.0.0.1:5060")],
    };
    if udp.is_empty() && tcp.is_empty() {
        let off = s.udp.as_ref().map_or(0, |l| l.span().start);
        return Err(cx.err("sip.udp", off, "no SIP listener: list at least one address in sip.udp or sip.tcp"));
    }
    let t1 = ranged(cx, "sip.t1_ms", &s.t1_ms, 500, 1, 60_000)?;
    let t2 = ranged(cx, "sip.t2_ms", &s.t2_ms, 4000, 1, 600_000)?;
    let t4 = ranged(cx, "sip.t4_ms", &s.t4_ms, 5000, 1, 600_000)?;
    if t2 < t1 {
        let off = s.t2_ms.as_ref().map_or(0, |v| v.span().start);
        return Err(cx.err("sip.t2_ms", off, format!("T2 ({t2} ms) must not be smaller than T1 ({t1} ms)")));
    }
    let sip = SipConfig {
        udp,
        tcp,
        realm: s.realm.clone().unwrap_or_default(),
        max_message_size: ranged(cx, "sip.max_message_size", &s.max_message_size, 65535, 1024, 16 * 1024 * 1024)?
            as usize,
        symmetric_response: s.symmetric_response.unwrap_or(true),
        tcp_idle_timeout: Duration::from_secs(ranged(
            cx,
            "sip.tcp_idle_timeout_secs",
            &s.tcp_idle_timeout_secs,
            120,
            1,
            86_400,
        )?),
        tcp_max_connections: ranged(cx, "sip.tcp_max_connections", &s.tcp_max_connections, 4096, 1, 1_000_000)?
            as usize,
        tcp_max_connections_per_source: ranged(
            cx,
            "sip.tcp_max_connections_per_source",
            &s.tcp_max_connections_per_source,
            64,
            1,
            1_000_000,
        )? as usize,
        tcp_max_pending_bytes: ranged(
            cx,
            "sip.tcp_max_pending_bytes",
            &s.tcp_max_pending_bytes,
            1 << 20,
            4096,
            1 << 30,
        )? as usize,
        tcp_message_timeout: Duration::from_millis(ranged(
            cx,
            "sip.tcp_message_timeout_ms",
            &s.tcp_message_timeout_ms,
            5000,
            100,
            600_000,
        )?),
        t1: Duration::from_millis(t1),
        t2: Duration::from_millis(t2),
        t4: Duration::from_millis(t4),
        max_transactions: ranged(cx, "sip.max_transactions", &s.max_transactions, 100_000, 16, 10_000_000)? as usize,
        max_calls: ranged(cx, "sip.max_calls", &s.max_calls, 20_000, 1, 1_000_000)? as usize,
        requests_per_source_per_sec: ranged(
            cx,
            "sip.requests_per_source_per_sec",
            &s.requests_per_source_per_sec,
            0,
            0,
            1_000_000,
        )? as u32,
        request_burst_per_source: ranged(
            cx,
            "sip.request_burst_per_source",
            &s.request_burst_per_source,
            100,
            1,
            1_000_000,
        )? as u32,
        max_sdp_media: ranged(cx, "sip.max_sdp_media", &s.max_sdp_media, 16, 1, 64)? as usize,
    };

    let ng_listen = match &raw.ng.listen {
        Some(l) if l.get_ref().is_empty() => None,
        Some(l) => {
            let a = addr(cx, "ng.listen", l)?;
            if let Some(c) = sip.udp.iter().find(|u| overlaps(**u, a)) {
                return Err(cx.err("ng.listen", l.span().start, format!("{a} clashes with the SIP UDP listener {c}")));
            }
            Some(a)
        }
        None => Some(d("127.0.0.1:2223")),
    };
    let n = &raw.ng;
    let ng = NgConfig {
        listen: ng_listen,
        timeout_secs: ranged(cx, "ng.timeout_secs", &n.timeout_secs, 60, 0, 86_400)? as u32,
        silent_timeout_secs: ranged(cx, "ng.silent_timeout_secs", &n.silent_timeout_secs, 3600, 0, 86_400)? as u32,
        final_timeout_secs: ranged(cx, "ng.final_timeout_secs", &n.final_timeout_secs, 0, 0, 7 * 86_400)? as u32,
        max_calls_per_source: ranged(cx, "ng.max_calls_per_source", &n.max_calls_per_source, 2000, 1, 1_000_000)?
            as usize,
    };

    let m = &raw.media;
    let min = m.rtp_port_min.as_ref().map_or(16384, |v| *v.get_ref());
    let max = m.rtp_port_max.as_ref().map_or(32767, |v| *v.get_ref());
    let min_off = m.rtp_port_min.as_ref().map_or(0, |v| v.span().start);
    let max_off = m.rtp_port_max.as_ref().map_or(0, |v| v.span().start);
    if min < 1024 {
        return Err(cx.err(
            "media.rtp_port_min",
            min_off,
            format!("{min} is a privileged port: expected 1024 to 65534"),
        ));
    }
    if max <= min {
        return Err(cx.err(
            "media.rtp_port_max",
            max_off,
            format!("{max} must be greater than media.rtp_port_min ({min})"),
        ));
    }
    for (key, a) in sip.udp.iter().map(|a| ("sip.udp", a)).chain(ng.listen.iter().map(|a| ("ng.listen", a))) {
        if (min..=max).contains(&a.port()) {
            return Err(cx.err(
                "media.rtp_port_min",
                min_off,
                format!("the RTP port range {min}-{max} includes {key} port {} (port clash)", a.port()),
            ));
        }
    }
    let cores = match &m.cores {
        None => Cores::Auto,
        Some(c) => match c.get_ref() {
            RawCores::Word(w) if w == "auto" => Cores::Auto,
            RawCores::Word(w) => {
                return Err(cx.err(
                    "media.cores",
                    c.span().start,
                    format!("\"{w}\": expected \"auto\" or a list of core ids like [1, 2]"),
                ))
            }
            RawCores::List(ids) => {
                let n = std::thread::available_parallelism().map_or(1, |n| n.get());
                if ids.is_empty() {
                    return Err(cx.err(
                        "media.cores",
                        c.span().start,
                        "empty list: name at least one core, or \"auto\"",
                    ));
                }
                if let Some(bad) = ids.iter().find(|&&i| i >= n) {
                    return Err(cx.err(
                        "media.cores",
                        c.span().start,
                        format!("core {bad} is not present: this machine has cores 0 to {}", n - 1),
                    ));
                }
                Cores::List(ids.clone())
            }
        },
    };
    let mode = match &m.mode {
        None => MediaMode::Spawn,
        Some(v) => match v.get_ref().as_str() {
            "spawn" => MediaMode::Spawn,
            "attach" => MediaMode::Attach,
            "off" => MediaMode::Off,
            other => {
                return Err(cx.err(
                    "media.mode",
                    v.span().start,
                    format!("\"{other}\": expected \"spawn\", \"attach\" or \"off\""),
                ))
            }
        },
    };
    let ring_capacity = ranged(cx, "media.ring_capacity", &m.ring_capacity, 4096, 2, 1 << 20)?;
    if !ring_capacity.is_power_of_two() {
        let off = m.ring_capacity.as_ref().map_or(0, |v| v.span().start);
        return Err(cx.err("media.ring_capacity", off, format!("{ring_capacity} is not a power of two")));
    }
    let heartbeat_ms = ranged(cx, "media.heartbeat_ms", &m.heartbeat_ms, 20, 1, 10_000)?;
    let timeout_ms = ranged(cx, "media.heartbeat_timeout_ms", &m.heartbeat_timeout_ms, 300, 10, 600_000)?;
    if timeout_ms < 3 * heartbeat_ms {
        let off = m.heartbeat_timeout_ms.as_ref().map_or(0, |v| v.span().start);
        return Err(cx.err(
            "media.heartbeat_timeout_ms",
            off,
            format!(
                "{timeout_ms} is under 3 heartbeats ({} ms): a busy media plane would be restarted",
                3 * heartbeat_ms
            ),
        ));
    }
    let orphan_secs = ranged(cx, "media.orphan_exit_secs", &m.orphan_exit_secs, 30, 1, 86_400)?;
    let control_core = match &m.control_core {
        None => None,
        Some(v) => {
            let n = std::thread::available_parallelism().map_or(1, |n| n.get());
            let c = *v.get_ref() as usize;
            if c >= n {
                return Err(cx.err(
                    "media.control_core",
                    v.span().start,
                    format!("core {c} is not present: this machine has cores 0 to {}", n - 1),
                ));
            }
            Some(c)
        }
    };
    let backend = match &m.backend {
        None => None,
        Some(v) => match v.get_ref().as_str() {
            "auto" => None,
            "io_uring" => Some(ferroswitch_media_plane::worker::Backend::IoUring),
            "epoll" | "af_xdp" => Some(ferroswitch_media_plane::worker::Backend::Epoll),
            other => {
                return Err(cx.err(
                    "media.backend",
                    v.span().start,
                    format!("\"{other}\": expected \"auto\", \"io_uring\", \"epoll\" or \"af_xdp\""),
                ))
            }
        },
    };
    let storage_dir = PathBuf::from(raw.storage.dir.clone().unwrap_or_else(|| "./var".into()));
    let socket = match m.socket.as_deref() {
        None | Some("") => storage_dir.join("media.sock"),
        Some(p) => PathBuf::from(p),
    };
    let rtp_ip = match &m.rtp_ip {
        None => None,
        Some(v) if v.get_ref().is_empty() => None,
        Some(v) => Some(v.get_ref().parse::<std::net::IpAddr>().map_err(|_| {
            cx.err("media.rtp_ip", v.span().start, format!("\"{}\" is not an IP address", v.get_ref()))
        })?),
    };
    if rtp_ip.is_some_and(|ip| ip.is_unspecified() || ip.is_multicast()) {
        let off = m.rtp_ip.as_ref().map_or(0, |v| v.span().start);
        return Err(cx.err("media.rtp_ip", off, "must be a unicast address the peers can reach"));
    }
    let codec_prefs = match &m.codec_prefs {
        None => crate::media::negotiate::parse_codec_string(DEFAULT_CODEC_PREFS).expect("the default parses"),
        Some(v) => crate::media::negotiate::parse_codec_string(v.get_ref())
            .map_err(|e| cx.err("media.codec_prefs", v.span().start, e.to_string()))?,
    };
    let media = MediaConfig {
        rtp_ip,
        codec_prefs,
        rtp_timeout_secs: ranged(cx, "media.rtp_timeout_secs", &m.rtp_timeout_secs, 300, 0, 86_400)? as u32,
        rtp_port_min: min,
        rtp_port_max: max,
        cores,
        mode,
        socket,
        ring_capacity: ring_capacity as usize,
        heartbeat: std::time::Duration::from_millis(heartbeat_ms),
        heartbeat_timeout: std::time::Duration::from_millis(timeout_ms),
        orphan_exit: std::time::Duration::from_secs(orphan_secs),
        control_core,
        backend,
        stats_interval: std::time::Duration::from_secs(ranged(
            cx,
            "media.stats_interval_secs",
            &m.stats_interval_secs,
            10,
            0,
            3600,
        )?),
        sqpoll_idle: match ranged(cx, "media.sqpoll_idle_ms", &m.sqpoll_idle_ms, 0, 0, 60_000)? {
            0 => None,
            ms => Some(std::time::Duration::from_millis(ms)),
        },
        busy_poll: std::time::Duration::from_micros(ranged(
            cx,
            "media.busy_poll_us",
            &m.busy_poll_us,
            0,
            0,
            1_000_000,
        )?),
        learning_window: std::time::Duration::from_millis(ranged(
            cx,
            "media.learning_window_ms",
            &m.learning_window_ms,
            3000,
            0,
            60_000,
        )?),
        opus: opus_params(cx, m)?,
        xdp: xdp_options(cx, m, rtp_ip)?,
    };

    let commit_ms = ranged(cx, "storage.commit_interval_ms", &raw.storage.commit_interval_ms, 20, 0, 1000)?;
    let storage = StorageConfig {
        dir: PathBuf::from(raw.storage.dir.clone().unwrap_or_else(|| "./var".into())),
        commit_interval: std::time::Duration::from_millis(commit_ms),
    };

    let json = match &raw.log.format {
        None => false,
        Some(f) => match f.get_ref().as_str() {
            "text" => false,
            "json" => true,
            other => {
                return Err(cx.err(
                    "log.format",
                    f.span().start,
                    format!("\"{other}\" is not a log format: expected \"text\" or \"json\""),
                ))
            }
        },
    };
    let level = match &raw.log.level {
        Some(l) => {
            if tracing_subscriber::EnvFilter::builder().parse(l.get_ref()).is_err() {
                return Err(cx.err(
                    "log.level",
                    l.span().start,
                    format!("\"{}\" is not a log filter: expected error, warn, info, debug or trace", l.get_ref()),
                ));
            }
            l.get_ref().clone()
        }
        None => "info".into(),
    };

    let r = &raw.registrar;
    let min_expires = ranged(cx, "registrar.min_expires", &r.min_expires, 60, 1, 86_400)? as u32;
    let max_expires = ranged(cx, "registrar.max_expires", &r.max_expires, 7200, 1, 7 * 86_400)? as u32;
    let default_expires = ranged(cx, "registrar.default_expires", &r.default_expires, 3600, 1, 7 * 86_400)? as u32;
    if !(min_expires <= default_expires && default_expires <= max_expires) {
        let off = r
            .default_expires
            .as_ref()
            .or(r.min_expires.as_ref())
            .or(r.max_expires.as_ref())
            .map_or(0, |v| v.span().start);
        return Err(cx.err(
            "registrar.default_expires",
            off,
            format!("need min_expires ({min_expires}) <= default_expires ({default_expires}) <= max_expires ({max_expires})"),
        ));
    }
    let nat_detection = match &r.nat_detection {
        None => crate::registrar::NatDetection::default(),
        Some(v) => crate::registrar::NatDetection::parse(v.get_ref()).ok_or_else(|| {
            cx.err(
                "registrar.nat_detection",
                v.span().start,
                format!("\"{}\": expected \"private\", \"aggressive\", \"always\" or \"never\"", v.get_ref()),
            )
        })?,
    };
    let registrar = RegistrarConfig { min_expires, max_expires, default_expires, nat_detection };
    let mut trusted = Vec::new();
    for t in raw.auth.trusted.iter().flatten() {
        trusted.push(Cidr::parse(t.get_ref()).ok_or_else(|| {
            cx.err(
                "auth.trusted",
                t.span().start,
                format!(
                    "\"{}\" is not a network: expected \"192.0.2.0/24\", \"2001:db8::/32\" or an address",
                    t.get_ref()
                ),
            )
        })?);
    }
    let algorithms = match &raw.auth.algorithms {
        None => vec![Algorithm::Md5],
        Some(list) => {
            let mut v = Vec::new();
            for name in list.get_ref() {
                let alg = match name.as_str() {
                    "MD5" => Algorithm::Md5,
                    "SHA-256" => Algorithm::Sha256,
                    other => {
                        return Err(cx.err(
                            "auth.algorithms",
                            list.span().start,
                            format!("\"{other}\": expected \"MD5\" or \"SHA-256\""),
                        ))
                    }
                };
                if v.contains(&alg) {
                    return Err(cx.err("auth.algorithms", list.span().start, format!("\"{name}\" is listed twice")));
                }
                v.push(alg);
            }
            if v.is_empty() {
                return Err(cx.err("auth.algorithms", list.span().start, "name at least one algorithm"));
            }
            v
        }
    };
    let a = &raw.auth;
    let secs = |n: u64| std::time::Duration::from_secs(n);
    let guard = crate::auth::guard::GuardConfig {
        backoff_after: ranged(cx, "auth.failures_before_backoff", &a.failures_before_backoff, 3, 0, 1000)? as u32,
        ban_after: ranged(cx, "auth.failures_before_ban", &a.failures_before_ban, 10, 0, 100_000)? as u32,
        window: secs(ranged(cx, "auth.failure_window_secs", &a.failure_window_secs, 600, 1, 86_400)?),
        ban: secs(ranged(cx, "auth.ban_secs", &a.ban_secs, 900, 1, 7 * 86_400)?),
        user_lock_after: ranged(cx, "auth.user_failures_before_lock", &a.user_failures_before_lock, 30, 0, 100_000)?
            as u32,
        user_lock: secs(ranged(cx, "auth.user_lock_secs", &a.user_lock_secs, 300, 1, 86_400)?),
    };
    let auth = AuthConfig {
        algorithms,
        trusted,
        nonce_lifetime_secs: ranged(cx, "auth.nonce_lifetime_secs", &raw.auth.nonce_lifetime_secs, 60, 5, 86_400)?,
        guard,
    };

    let management = ManagementConfig {
        http_listen: match &raw.management.http_listen {
            None => Some(d("127.0.0.1:8080")),
            Some(s) if s.get_ref().is_empty() => None,
            Some(s) => {
                let a = addr(cx, "management.http_listen", s)?;
                if let Some(c) = sip.tcp.iter().find(|t| overlaps(**t, a)) {
                    return Err(cx.err(
                        "management.http_listen",
                        s.span().start,
                        format!("{a} clashes with the SIP TCP listener {c}"),
                    ));
                }
                Some(a)
            }
        },
    };

    let esl = esl_config(cx, &raw.esl, &sip, management.http_listen)?;

    let dir = &raw.directory;
    let default_password =
        dir.default_password.as_ref().map_or_else(|| VANILLA_PASSWORD.to_string(), |p| p.get_ref().clone());
    let mut users: Vec<User> = Vec::new();
    let ids: Vec<Spanned<String>> = match &dir.users {
        Some(u) => u.clone(),
        None => vec![Spanned::new(0..0, "1000-1019".to_string())],
    };
    for id in &ids {
        let text = id.get_ref().trim();
        let expanded: Vec<String> = match text.split_once('-') {
            Some((a, b)) => match (a.trim().parse::<u64>(), b.trim().parse::<u64>()) {
                (Ok(a), Ok(b)) if a <= b && b - a < 100_000 => (a..=b).map(|n| n.to_string()).collect(),
                _ => {
                    return Err(cx.err(
                        "directory.users",
                        id.span().start,
                        format!("\"{text}\": expected an id or a numeric range \"first-last\" of at most 100000 ids"),
                    ))
                }
            },
            None if !text.is_empty() && text.bytes().all(|c| c.is_ascii_alphanumeric() || b"._-+".contains(&c)) => {
                vec![text.to_string()]
            }
            None => {
                return Err(cx.err("directory.users", id.span().start, format!("\"{text}\" is not a valid user id")))
            }
        };
        for e in expanded {
            if users.iter().any(|u| u.id == e) {
                return Err(cx.err("directory.users", id.span().start, format!("user {e} is listed twice")));
            }
            users.push(User::new(e, Secret::Password(default_password.clone())));
        }
    }
    merge_users(cx, &mut users, &dir.user)?;
    let users_file = match &dir.users_file {
        Some(f) if !f.get_ref().is_empty() => {
            // Relative to the configuration file's directory.
            let base = Path::new(cx.file).parent().filter(|p| !p.as_os_str().is_empty() && !cx.file.starts_with('<'));
            let path = base.map_or_else(|| PathBuf::from(f.get_ref()), |b| b.join(f.get_ref()));
            let text = std::fs::read_to_string(&path).map_err(|e| {
                cx.err("directory.users_file", f.span().start, format!("cannot read {}: {e}", path.display()))
            })?;
            if path.extension().is_some_and(|x| x.eq_ignore_ascii_case("xml")) {
                // A FreeSWITCH directory: its users replace or join the configured ones.
                let domain = if sip.realm.is_empty() { "127.0.0.1" } else { sip.realm.as_str() };
                for u in directory_xml::read(&path, &default_password, domain)? {
                    match users.iter_mut().find(|x| x.id == u.id) {
                        Some(x) => *x = u,
                        None => users.push(u),
                    }
                }
            } else {
                let name = path.display().to_string();
                let fcx = Ctx { file: &name, text: &text };
                let raw: RawUsersFile = toml::from_str(&text).map_err(|e| {
                    let offset = e.span().map_or(0, |s| s.start);
                    fcx.err(&fcx.key_at(offset), offset, e.message().trim())
                })?;
                merge_users(&fcx, &mut users, &raw.user)?;
            }
            Some(path)
        }
        _ => None,
    };
    let config = Config {
        source: cx.file.to_string(),
        sip,
        ng,
        media,
        storage,
        log: LogConfig { level, json },
        directory: Directory { users, users_file },
        registrar,
        auth,
        management,
        dialplan: DialplanConfig { file: raw.dialplan.file.as_deref().filter(|f| !f.is_empty()).map(PathBuf::from) },
        esl,
    };

    if !config.loopback_only() {
        if let Some(u) = config.directory.users.iter().find(|u| u.has_vanilla_password()) {
            let off = dir.default_password.as_ref().map_or(0, |p| p.span().start);
            let public = config
                .sip
                .udp
                .iter()
                .chain(&config.sip.tcp)
                .chain(config.ng.listen.iter())
                .find(|a| !a.ip().is_loopback());
            return Err(cx.err(
                "directory.default_password",
                off,
                format!(
                    "refusing to start: {} is not a loopback address and user {} still has the default password \"{VANILLA_PASSWORD}\"; set directory.default_password (or each user's password) to a strong secret",
                    public.map(|a| a.to_string()).unwrap_or_default(),
                    u.id
                ),
            ));
        }
    }
    Ok(config)
}

/// `[esl]`, validated: a listener that clashes with another, an ACL entry that is not a
/// CIDR, or mod_event_socket's default password on a non-loopback address is refused.
fn esl_config(cx: &Ctx<'_>, raw: &RawEsl, sip: &SipConfig, http: Option<SocketAddr>) -> Result<EslConfig, ConfigError> {
    let password = raw.password.as_ref().map_or_else(|| ESL_DEFAULT_PASSWORD.to_string(), |p| p.get_ref().clone());
    let listen = match &raw.listen {
        None => Some("127.0.0.1:8021".parse().expect("a literal address")),
        Some(s) if s.get_ref().is_empty() => None,
        Some(s) => {
            let a = addr(cx, "esl.listen", s)?;
            if let Some(c) = sip.tcp.iter().chain(http.iter()).find(|t| overlaps(**t, a)) {
                return Err(cx.err("esl.listen", s.span().start, format!("{a} clashes with the listener {c}")));
            }
            if !a.ip().is_loopback() && password == ESL_DEFAULT_PASSWORD {
                let off = raw.password.as_ref().map_or(s.span().start, |p| p.span().start);
                return Err(cx.err(
                    "esl.password",
                    off,
                    format!("refusing to start: esl.listen {a} is not a loopback address and esl.password is still the default \"{ESL_DEFAULT_PASSWORD}\"; set a strong secret"),
                ));
            }
            Some(a)
        }
    };
    if password.is_empty() {
        let off = raw.password.as_ref().map_or(0, |p| p.span().start);
        return Err(cx.err("esl.password", off, "must not be empty".to_string()));
    }
    let mut acl = Vec::new();
    for entry in raw.acl.iter().flatten() {
        acl.push(Cidr::parse(entry.get_ref()).ok_or_else(|| {
            cx.err("esl.acl", entry.span().start, format!("{:?} is not an address or a CIDR block", entry.get_ref()))
        })?);
    }
    let heartbeat = std::time::Duration::from_secs(ranged(cx, "esl.heartbeat_secs", &raw.heartbeat_secs, 20, 1, 3600)?);
    Ok(EslConfig { listen, password, acl, heartbeat })
}

mod directory_xml;

#[cfg(test)]
mod tests;
