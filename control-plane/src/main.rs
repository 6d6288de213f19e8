//! `ferroswitch [--config FILE] [--check-config]`: runs the switch.

use std::path::PathBuf;
use std::process::ExitCode;

use control_plane::config::Config;
use control_plane::server::Server;

/// The SIP path allocates small, short-lived buffers per message; mimalloc serves them
/// from per-thread free lists where glibc malloc kept consolidating its fast bins.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const USAGE: &str = "usage: ferroswitch [--config FILE] [--check-config]

  --config FILE    read FILE (TOML; see config/ferroswitch.toml for every key).
                   Without it the embedded default runs: SIP on 127.0.0.1:5060
                   (UDP and TCP), users 1000-1019, loopback only.
  --check-config   validate the configuration and exit (0 if valid).
  --version        print the version.";

fn main() -> ExitCode {
    let mut config_path: Option<PathBuf> = None;
    let mut check_only = false;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
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
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(std::io::stderr)
        .init();
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
        if let Some(a) = server.http {
            println!("ferroswitch: listening http {a}");
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
