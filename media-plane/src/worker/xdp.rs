//! A worker's AF_XDP path (the af_xdp backend): frames from its socket relayed with the
//! same relay code as the kernel sockets' packets, each sent back out in place toward the
//! next hop the kernel's tables name ([`crate::nexthop`]); frames for another worker's
//! ports handed to it ([`crate::handover`]), and frames handed here relayed and sent as
//! copies. A destination without a usable next hop goes through the kernel socket.

use std::collections::HashMap;
use std::net::IpAddr;

use ferroswitch_shared::msg::Event;
use tracing::warn;

use super::{send_to, Core, Out};
use crate::handover::{Mesh, Owners};
use crate::nexthop::Table;
use crate::xsk::{Headers, Xsk};

/// How often a frame toward a next hop the kernel has not confirmed lately goes through
/// the kernel socket instead, so that the kernel checks the neighbour again.
const STALE_REFRESH_NS: u64 = 1_000_000_000;
/// Frames taken from one other worker's ring per turn.
const HANDOVER_BATCH: usize = 64;

/// What the media plane gives a worker for the af_xdp backend.
pub struct XdpSetup {
    /// Its AF_XDP socket; None when the interface has no queue for it (it then only
    /// relays frames other workers hand it, sending through its kernel sockets).
    pub xsk: Option<Box<Xsk>>,
    /// Its rings to and from the other workers (None with one worker).
    pub mesh: Option<Mesh>,
    /// Which worker owns each port.
    pub owners: Owners,
}

/// A worker's AF_XDP path.
pub(super) struct XdpPath {
    xsk: Option<Box<Xsk>>,
    mesh: Option<Mesh>,
    owners: Owners,
    /// When a frame toward each stale next hop's destination last went through the kernel.
    refreshed: HashMap<IpAddr, u64>,
    /// Frames lost for a full hand-over ring or a full TX ring, and the count at which
    /// that is next logged.
    dropped: u64,
    next_log: u64,
}

impl XdpPath {
    pub(super) fn new(s: XdpSetup) -> XdpPath {
        XdpPath { xsk: s.xsk, mesh: s.mesh, owners: s.owners, refreshed: HashMap::new(), dropped: 0, next_log: 1 }
    }

    /// The AF_XDP socket's fd, to watch.
    pub(super) fn fd(&self) -> Option<std::os::fd::RawFd> {
        self.xsk.as_ref().map(|x| x.fd())
    }

    /// The doorbell other workers ring for frames handed here (this worker's wake-up),
    /// and whether it must not sleep because some wait already. Call before sleeping;
    /// [`XdpPath::woke`] after.
    pub(super) fn prepare_sleep(&self) -> bool {
        match &self.mesh {
            Some(m) => {
                m.wake.prepare_sleep();
                if m.waiting() {
                    m.wake.woke();
                    return false;
                }
                true
            }
            None => true,
        }
    }

    pub(super) fn woke(&self) {
        if let Some(m) = &self.mesh {
            m.wake.woke();
        }
    }
}

/// Picks where a relayed frame goes: Some(length) to send it from the frame itself
/// (rewritten for the next hop), None once it went through the kernel socket instead.
/// In place needs a next hop on the frame's own VLAN, the session's address to be the
/// one the frame came to, and the same family.
#[allow(clippy::too_many_arguments)]
fn out_frame(
    frame: &mut [u8],
    len: usize,
    h: &Headers,
    o: &Out,
    hops: &Table,
    refreshed: &mut HashMap<IpAddr, u64>,
    now: u64,
    may_send: bool,
) -> Option<usize> {
    let to = o.to.ip();
    // A frame an AF_XDP socket sends on the loopback is not delivered to local sockets.
    let hop = if may_send && !to.is_loopback() && h.tags <= 1 { hops.lookup(to) } else { None };
    let hop = hop.filter(|hop| hop.vlan == h.vlan).filter(|hop| !hop.stale || !refresh_due(refreshed, to, now));
    match (hop, o.from) {
        (Some(hop), Some(from)) if from.ip() == h.dst_ip && from.is_ipv4() == o.to.is_ipv4() => {
            crate::xsk::readdress(&mut frame[..len], h, hop.mac, from.port(), o.to).then_some(len)
        }
        _ => {
            send_to(o.fd, &frame[h.payload..len], o.to);
            None
        }
    }
}

/// Whether a frame toward `to`, whose next hop is stale, goes through the kernel socket
/// now (then it is noted): the first one always, then one a [`STALE_REFRESH_NS`].
fn refresh_due(refreshed: &mut HashMap<IpAddr, u64>, to: IpAddr, now: u64) -> bool {
    if refreshed.len() > 4096 {
        refreshed.clear();
    }
    let due = refreshed.get(&to).is_none_or(|last| now.saturating_sub(*last) >= STALE_REFRESH_NS);
    if due {
        refreshed.insert(to, now);
    }
    due
}

impl Core {
    /// Relays the frames waiting on the AF_XDP socket and those other workers handed
    /// here; the frames taken.
    pub(super) fn xdp_turn(&mut self, mut notify: impl FnMut(Event)) -> usize {
        let now = self.now_ns();
        let here = (self.core, self.own_ports);
        let me = usize::from(self.core);
        let Some(XdpPath { xsk, mesh, owners, refreshed, dropped, next_log }) = self.xdp.as_mut() else { return 0 };
        let (slots, gens, ports, outbox, hops) =
            (&mut self.slots, &self.gens, &self.ports, &mut self.outbox, &self.hops);
        let has_xsk = xsk.is_some();
        let mut relay = |frame: &mut [u8], len: usize, h: &Headers| -> Option<usize> {
            let tok = *ports.get(&h.dst_port)?;
            let o =
                Core::relay_one(slots, gens, here, tok, &mut frame[h.payload..len], h.src, now, outbox, &mut notify)?;
            out_frame(frame, len, h, &o, hops, refreshed, now, has_xsk)
        };
        let mut taken = 0;
        let mut nudge = 0u64;
        if let Some(x) = xsk.as_mut() {
            taken += x.poll(|frame, len| {
                let h = Headers::parse(&frame[..len])?;
                match (owners.owner(h.dst_port), mesh.as_mut()) {
                    (Some(j), Some(m)) if j != me => {
                        if let Some((tx, _)) = m.to.get_mut(j).and_then(Option::as_mut) {
                            if tx.push(&frame[..len]) {
                                nudge |= 1 << (j % 64);
                            } else {
                                *dropped += 1;
                            }
                        }
                        None
                    }
                    _ => relay(frame, len, &h),
                }
            });
        }
        if let Some(m) = mesh.as_mut() {
            for rx in &mut m.from {
                taken += rx.drain(HANDOVER_BATCH, |frame, len| {
                    let Some(h) = Headers::parse(&frame[..len]) else { return };
                    if let Some(out) = relay(frame, len, &h) {
                        if !xsk.as_mut().is_some_and(|x| x.send_copy(&frame[..out])) {
                            *dropped += 1;
                        }
                    }
                });
            }
            for (j, to) in m.to.iter().enumerate() {
                if nudge & (1 << (j % 64)) != 0 {
                    if let Some((_, wake)) = to {
                        wake.nudge();
                    }
                }
            }
        }
        if let Some(x) = xsk.as_mut() {
            x.flush();
        }
        if *dropped >= *next_log {
            warn!(core = me, dropped = *dropped, "AF_XDP: frames dropped for a full hand-over or TX ring");
            *next_log = dropped.saturating_mul(2);
        }
        taken
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The first frame toward a stale next hop goes through the kernel even in a worker's
    /// first second (its clock starts at 0: "never refreshed" must not read as "refreshed
    /// at 0"), then one a second.
    #[test]
    fn a_stale_hop_is_refreshed_through_the_kernel_at_once_then_once_a_second() {
        let mut refreshed = HashMap::new();
        let to: IpAddr = "fd79::2:2".parse().unwrap();
        assert!(refresh_due(&mut refreshed, to, 5_000));
        assert!(!refresh_due(&mut refreshed, to, 6_000));
        assert!(!refresh_due(&mut refreshed, to, 5_000 + STALE_REFRESH_NS - 1));
        assert!(refresh_due(&mut refreshed, to, 5_000 + STALE_REFRESH_NS));
    }
}
