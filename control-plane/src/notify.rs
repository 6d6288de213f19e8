//! systemd's service notifications (sd_notify): `READY=1` once the listeners are up, and
//! `WATCHDOG=1` from the SIP driver's own loop, so a driver that stops turning is
//! restarted (`WatchdogSec=` in the unit). Without `NOTIFY_SOCKET` nothing is sent.

use std::os::unix::net::UnixDatagram;
use std::time::Duration;

/// Where notifications go, and how often the watchdog wants one.
#[derive(Debug)]
pub struct Notifier {
    socket: UnixDatagram,
    path: String,
    watchdog: Option<Duration>,
}

impl Notifier {
    /// From `NOTIFY_SOCKET` (a path, or `@name` for an abstract socket) and
    /// `WATCHDOG_USEC`; None when the service manager asked for nothing.
    pub fn from_env() -> Option<Notifier> {
        let path = std::env::var("NOTIFY_SOCKET").ok().filter(|p| !p.is_empty())?;
        let socket = UnixDatagram::unbound().ok()?;
        let _ = socket.set_nonblocking(true);
        let watchdog = std::env::var("WATCHDOG_USEC")
            .ok()
            .and_then(|u| u.parse::<u64>().ok())
            .filter(|u| *u > 0)
            .map(Duration::from_micros);
        Some(Notifier { socket, path, watchdog })
    }

    /// How often to send `WATCHDOG=1`: half the manager's timeout, as sd_notify advises.
    pub fn watchdog_every(&self) -> Option<Duration> {
        self.watchdog.map(|w| w / 2)
    }

    /// Sends `state` (`READY=1`, `WATCHDOG=1`, `STATUS=...`); a failure is only logged.
    pub fn send(&self, state: &str) {
        let sent = match self.path.strip_prefix('@') {
            Some(name) => {
                use std::os::linux::net::SocketAddrExt;
                std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())
                    .and_then(|a| self.socket.send_to_addr(state.as_bytes(), &a))
            }
            None => self.socket.send_to(state.as_bytes(), &self.path),
        };
        if let Err(e) = sent {
            tracing::debug!(error = %e, socket = %self.path, "sd_notify not delivered");
        }
    }
}
