//! `ferroswitch [--config FILE] [--check-config]`: runs the switch (the control plane,
//! which starts the media plane). `ferroswitch media [--config FILE]` runs the media plane
//! on its own; `ferroswitch media-ctl ...` drives a media plane by hand.

use std::path::PathBuf;
use std::process::ExitCode;

use control_plane::config::Config;
use control_plane::server::Server;

/// The SIP path allocates small, short-lived buffers per message; mimalloc serves them
/// from per-thread free lists where glibc malloc kept consolidating its fast bins.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Turns transparent huge pages off for this process (and the media plane it starts).
/// mimalloc asks for them on its arenas, and the kernel then zeroes a whole 2 MiB page on
/// the first touch of each: at 4,000 calls/s that was a fifth of the switch's CPU
/// (`clear_page_erms` under `do_huge_pmd_anonymous_page` in perf), for memory the SIP
/// path touches sparsely. A failure only costs that CPU, so it is logged at most.
fn no_transparent_huge_pages() {
    // SAFETY: PR_SET_THP_DISABLE takes plain integer arguments and touches no memory of ours.
    let rc = unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
    if rc != 0 {
        eprintln!("ferroswitch: could not turn transparent huge pages off: {}", std::io::Error::last_os_error());
    }
}

/// Raises the soft limit on open files to the hard one (for this process and the media
/// plane it starts): a media worker keeps a socket per port of its range (live sessions,
/// ports bound ahead, and closed sessions' sockets waiting to be reused), which a soft
/// limit of 1,024 would starve. A failure only costs that, so it is logged at most.
fn raise_open_file_limit() {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit and setrlimit read and write only the struct passed to them.
    let rc = unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 || lim.rlim_cur >= lim.rlim_max {
            0
        } else {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim)
        }
    };
    if rc != 0 {
        eprintln!("ferroswitch: could not raise the open-file limit: {}", std::io::Error::last_os_error());
    }
}

const USAGE: &str = "usage: ferroswitch [media | media-ctl COMMAND | cli ARGS] [--config FILE] [--check-config]

  --config FILE    read FILE (TOML; see config/ferroswitch.toml for every key).
                   Without it the embedded default runs: SIP on 127.0.0.1:5060
                   (UDP and TCP), users 1000-1019, loopback only.
  --check-config   validate the configuration and exit (0 if valid).
  --version        print the version.
  media            run the media plane (its [media] section) instead of the switch;
                   the switch starts one itself unless media.mode is \"attach\" or \"off\".
  media-ctl [--socket PATH] list | create N [--hold] | destroy-all
                   drive a media plane directly, attaching as its control plane.
  cli [-H HOST] [-P PORT] [-p PASSWORD] [-x COMMAND]
                   fs_cli's habits over the event socket (ferroswitch cli --help).";

fn main() -> ExitCode {
    // `ferroswitch cli ...`: a client of the event socket, nothing of the switch.
    let mut all = std::env::args().skip(1).peekable();
    if all.peek().map(String::as_str) == Some("cli") {
        all.next();
        return control_plane::cli::main(all);
    }
    no_transparent_huge_pages();
    raise_open_file_limit();
    let mut config_path: Option<PathBuf> = None;
    let mut check_only = false;
    let mut sub: Option<String> = None;
    let mut socket: Option<PathBuf> = None;
    let mut words: Vec<String> = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "media" | "media-ctl" if sub.is_none() => sub = Some(a.clone()),
            "--socket" if sub.as_deref() == Some("media-ctl") => match args.next() {
                Some(p) => socket = Some(PathBuf::from(p)),
                None => {
                    eprintln!("ferroswitch: --socket needs a path\n{USAGE}");
                    return ExitCode::from(2);
                }
            },
            w if sub.as_deref() == Some("media-ctl") && !w.starts_with("--config") && !w.starts_with("-c") => {
                words.push(w.to_string())
            }
            "--config" | "-c" => match args.next() {
                Some(p) => config_path = Some(PathBuf::from(p)),
                None => {
                    eprintln!("ferroswitch: --config needs a file\n{USAGE}");
                    return ExitCode::from(2);
                }
            },
            "--check-config" => check_only = true,
            "--version" | "-V" => {
                println!("{}", control_plane::SERVER_NAME);
                return ExitCode::SUCCESS;
            }
            "--help" | "-h" => {
                println!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            other => {
                eprintln!("ferroswitch: unknown argument {other:?}\n{USAGE}");
                return ExitCode::from(2);
            }
        }
    }
    let config = match &config_path {
        Some(p) => Config::load(p),
        None => Config::embedded(),
    };
    let config = match config {
        Ok(c) => c,
        Err(e) => {
            eprintln!("ferroswitch: config error: {e}");
            return ExitCode::from(2);
        }
    };
    if check_only {
        println!("ferroswitch: {} is valid", config.source);
        return ExitCode::SUCCESS;
    }
    let filter = std::env::var("RUST_LOG").unwrap_or_else(|_| config.log.level.clone());
    // Colour only on a terminal: a log file stays plain text for grep and fail2ban.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let logs = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(std::io::stderr)
        .with_ansi(ansi && !config.log.json);
    // Every line also goes to the event socket's clients that asked for it (`log/data`).
    use tracing_subscriber::layer::SubscriberExt as _;
    let installed = if config.log.json {
        // One object per line; a call's span fields (its Call-ID) ride along.
        let json = logs.json().with_current_span(true).with_span_list(false).finish();
        tracing::subscriber::set_global_default(json.with(control_plane::esl::log::EslLog))
    } else {
        tracing::subscriber::set_global_default(logs.finish().with(control_plane::esl::log::EslLog))
    };
    if let Err(e) = installed {
        eprintln!("ferroswitch: logging: {e}");
    }
    match sub.as_deref() {
        Some("media") => return run_media(&config),
        Some("media-ctl") => return run_ctl(&config, socket, &words),
        _ => {}
    }
    if let Some(cpu) = config.media.control_core {
        if core_affinity::set_for_current(core_affinity::CoreId { id: cpu }) {
            tracing::info!(cpu, "control plane pinned");
        } else {
            tracing::warn!(cpu, "control plane could not be pinned");
        }
    }
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("ferroswitch: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        tracing::info!(config = %config.source, "ferroswitch starting");
        let server = match Server::start(config).await {
            Ok(s) => s,
            Err(e) => {
                eprintln!("ferroswitch: {e}");
                return ExitCode::FAILURE;
            }
        };
        // One machine-readable line per listener on stdout, for scripts and tests.
        for a in &server.udp {
            println!("ferroswitch: listening sip/udp {a}");
        }
        for a in &server.tcp {
            println!("ferroswitch: listening sip/tcp {a}");
        }
        if let Some(a) = server.ng {
            println!("ferroswitch: listening ng {a}");
        }
        if let Some(a) = server.esl {
            println!("ferroswitch: listening esl {a}");
        }
        if let Some(a) = server.http {
            println!("ferroswitch: listening http {a}");
        }
        // Under systemd (Type=notify): up now; the SIP driver feeds the watchdog.
        if let Some(n) = control_plane::notify::Notifier::from_env() {
            n.send("READY=1\nSTATUS=listening");
        }
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("ferroswitch: cannot watch SIGTERM: {e}");
                return ExitCode::FAILURE;
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        tracing::info!("ferroswitch stopping");
        server.stop().await;
        ExitCode::SUCCESS
    })
}

/// `ferroswitch media`: the media plane, until SIGTERM.
fn run_media(config: &Config) -> ExitCode {
    let m = &config.media;
    let opts = ferroswitch_media_plane::MediaOptions {
        socket: m.socket.clone(),
        workers: m.worker_cpus().into_iter().map(Some).collect(),
        port_min: m.rtp_port_min,
        port_max: m.rtp_port_max,
        ring_capacity: m.ring_capacity,
        heartbeat: m.heartbeat,
        orphan_exit: m.orphan_exit,
        backend: m.backend,
        stats_interval: m.stats_interval,
        sqpoll_idle: m.sqpoll_idle,
        busy_poll: m.busy_poll,
        learning_window: m.learning_window,
        opus: m.opus,
        xdp: m.xdp.clone(),
    };
    tracing::info!(socket = %opts.socket.display(), workers = ?opts.workers, "media plane starting");
    match ferroswitch_media_plane::run(opts) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ferroswitch media: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `ferroswitch media-ctl`.
fn run_ctl(config: &Config, socket: Option<PathBuf>, words: &[String]) -> ExitCode {
    use control_plane::media::ctl;
    let cmd = match ctl::parse(words) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("ferroswitch media-ctl: {e}\n{}", ctl::USAGE);
            return ExitCode::from(2);
        }
    };
    let socket = socket.unwrap_or_else(|| config.media.socket.clone());
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("ferroswitch media-ctl: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    ExitCode::from(runtime.block_on(ctl::run(socket, cmd)))
}
