//! A worker's AF_XDP path (the af_xdp backend): frames from its socket relayed with the
//! same relay code as the kernel sockets' packets, each sent back out in place.

use std::collections::HashMap;

use ferroswitch_shared::msg::Event;

use super::{send_to, Core};
use crate::xsk::Xsk;

/// A worker's AF_XDP socket, and the peers' MAC addresses learnt from their frames (the
/// next hop a relayed frame is sent to; a peer not heard from yet is sent to through the
/// kernel socket).
pub(super) struct XdpPath {
    pub(super) xsk: Box<Xsk>,
    pub(super) macs: HashMap<std::net::IpAddr, [u8; 6]>,
}

impl Core {
    /// Relays the frames waiting on the AF_XDP socket, each in place where the next hop's
    /// MAC is known (else through the kernel socket); the frames taken.
    pub(super) fn xdp_turn(&mut self, mut notify: impl FnMut(Event)) -> usize {
        let now = self.now_ns();
        let here = (self.core, self.own_ports);
        let Some(XdpPath { xsk, macs }) = self.xdp.as_mut() else { return 0 };
        let (slots, gens, ports, outbox) = (&mut self.slots, &self.gens, &self.ports, &mut self.outbox);
        xsk.poll(|frame, len| {
            let h = crate::xsk::Headers::parse(&frame[..len])?;
            macs.insert(h.src.ip(), h.src_mac);
            let tok = *ports.get(&h.dst_port)?;
            let payload = &mut frame[h.payload..len];
            let o = Core::relay_one(slots, gens, here, tok, payload, h.src, now, outbox, &mut notify)?;
            let mac = macs.get(&o.to.ip()).copied();
            // A frame an AF_XDP socket sends on the loopback is not delivered to local
            // sockets: to a loopback address it goes through the kernel socket.
            let in_place = !o.to.ip().is_loopback();
            match (mac, o.from) {
                (Some(mac), Some(from)) if in_place && from.ip() == h.dst_ip && from.is_ipv4() == o.to.is_ipv4() => {
                    crate::xsk::readdress(&mut frame[..len], &h, mac, from.port(), o.to).then_some(len)
                }
                _ => {
                    send_to(o.fd, payload, o.to);
                    None
                }
            }
        })
    }
}
