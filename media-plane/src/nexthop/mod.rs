//! Next hops for frames the af_xdp backend sends itself (issue 13): which MAC address,
//! and which VLAN tag, a relayed frame toward a peer goes to. The answer is the kernel's,
//! taken from its routing and neighbour tables over rtnetlink and kept current by its
//! notifications ([`watch`]), never from frames' source addresses: a stranger's frame
//! with a peer's forged IP and its own MAC cannot draw that peer's media to itself.
//!
//! [`Table`] is sans-IO: it takes rtnetlink messages ([`rtnetlink::parse`]) and answers
//! lookups. A destination the table cannot answer for (no route through the XDP
//! interface, a neighbour not resolved yet, a failed one) goes through the kernel socket,
//! which also makes the kernel resolve it; the next frames then go out in place.

pub mod rtnetlink;
pub mod watch;

use std::collections::HashMap;
use std::net::IpAddr;

use rtnetlink::{Message, NUD_DELAY, NUD_PROBE, NUD_STALE, NUD_USABLE};

/// Where a frame toward a destination goes: its next hop's MAC, and the VLAN tag the
/// outgoing interface puts on it (None: untagged, the XDP interface itself).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hop {
    /// The next hop's MAC address.
    pub mac: [u8; 6],
    /// The 802.1Q VLAN id, when the route leaves through a VLAN on the XDP interface.
    pub vlan: Option<u16>,
    /// The kernel has not confirmed the neighbour lately (STALE, DELAY, PROBE): usable,
    /// but a frame now and then should go through the kernel so that it checks again.
    pub stale: bool,
}

/// A route of the main table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Route {
    dst: IpAddr,
    len: u8,
    priority: u32,
    oif: u32,
    gateway: Option<IpAddr>,
}

/// The routes, neighbours and VLANs that decide next hops on one XDP interface.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Table {
    ifindex: u32,
    /// The XDP interface's VLAN interfaces: ifindex → VLAN id.
    vlans: HashMap<u32, u16>,
    routes: Vec<Route>,
    /// (ifindex, address) → (MAC, NUD state).
    neighbours: HashMap<(u32, IpAddr), ([u8; 6], u16)>,
}

/// The kernel's main routing table.
const RT_TABLE_MAIN: u32 = 254;

impl Table {
    /// An empty table for the XDP interface `ifindex`.
    pub fn new(ifindex: u32) -> Table {
        Table { ifindex, ..Table::default() }
    }

    /// Applies one rtnetlink message; whether the table changed.
    pub fn apply(&mut self, m: &Message) -> bool {
        match *m {
            Message::Link { index, parent, vlan, deleted } => {
                let is_vlan = !deleted && parent == Some(self.ifindex) && vlan.is_some();
                let before = self.vlans.get(&index).copied();
                if is_vlan {
                    self.vlans.insert(index, vlan.unwrap_or_default());
                } else {
                    self.vlans.remove(&index);
                }
                before != self.vlans.get(&index).copied()
            }
            Message::Route { dst, len, priority, oif, gateway, table, unicast, deleted } => {
                if table != RT_TABLE_MAIN {
                    return false;
                }
                let same = |r: &Route| r.dst == dst && r.len == len && r.priority == priority;
                let old = self.routes.iter().position(same).map(|i| self.routes.swap_remove(i));
                if deleted {
                    return old.is_some();
                }
                // A route that is not a plain unicast one through one interface (blackhole,
                // unreachable, multipath) still shadows shorter prefixes: kept with no
                // interface, it sends its destinations through the kernel.
                let oif = if unicast { oif.unwrap_or(0) } else { 0 };
                let new = Route { dst, len, priority, oif, gateway };
                self.routes.push(new);
                old != Some(new)
            }
            Message::Neighbour { ifindex, dst, mac, state, deleted } => {
                let key = (ifindex, dst);
                match mac {
                    Some(mac) if !deleted => self.neighbours.insert(key, (mac, state)) != Some((mac, state)),
                    _ => self.neighbours.remove(&key).is_some(),
                }
            }
        }
    }

    /// Whether `oif` is the XDP interface or one of its VLANs, and which tag that means.
    fn ours(&self, oif: u32) -> Option<Option<u16>> {
        if oif == self.ifindex {
            Some(None)
        } else {
            self.vlans.get(&oif).map(|&v| Some(v))
        }
    }

    /// The next hop toward `dst`: the longest matching route of the main table (the lowest
    /// metric among equals), if it leaves through the XDP interface or a VLAN on it, and
    /// its gateway's (or `dst`'s own) neighbour entry, if the kernel has resolved it.
    pub fn lookup(&self, dst: IpAddr) -> Option<Hop> {
        let route = self
            .routes
            .iter()
            .filter(|r| matches(r.dst, r.len, dst))
            .max_by(|a, b| a.len.cmp(&b.len).then(b.priority.cmp(&a.priority)))?;
        let vlan = self.ours(route.oif)?;
        let via = route.gateway.unwrap_or(dst);
        let &(mac, state) = self.neighbours.get(&(route.oif, via))?;
        if state & NUD_USABLE == 0 {
            return None;
        }
        Some(Hop { mac, vlan, stale: state & (NUD_STALE | NUD_DELAY | NUD_PROBE) != 0 })
    }
}

/// Whether `addr` is in `net/len` (families must agree).
fn matches(net: IpAddr, len: u8, addr: IpAddr) -> bool {
    match (net, addr) {
        (IpAddr::V4(n), IpAddr::V4(a)) => {
            let len = u32::from(len.min(32));
            let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
            u32::from(n) & mask == u32::from(a) & mask
        }
        (IpAddr::V6(n), IpAddr::V6(a)) => {
            let len = u32::from(len.min(128));
            let mask = if len == 0 { 0 } else { u128::MAX << (128 - len) };
            u128::from(n) & mask == u128::from(a) & mask
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests;
