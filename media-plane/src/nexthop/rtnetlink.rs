//! The few rtnetlink messages next hops need (linux/rtnetlink.h, linux/neighbour.h,
//! linux/if_link.h), parsed from the bytes a NETLINK_ROUTE socket reads, and the dump
//! requests that ask for them. Sans-IO; any bytes give messages or nothing, never a
//! panic. Netlink is in host byte order; addresses are in network order.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Message types (linux/rtnetlink.h).
pub const RTM_NEWLINK: u16 = 16;
/// A link went away.
pub const RTM_DELLINK: u16 = 17;
/// Asks for links.
pub const RTM_GETLINK: u16 = 18;
/// A route appeared or changed.
pub const RTM_NEWROUTE: u16 = 24;
/// A route went away.
pub const RTM_DELROUTE: u16 = 25;
/// Asks for routes.
pub const RTM_GETROUTE: u16 = 26;
/// A neighbour entry appeared or changed state.
pub const RTM_NEWNEIGH: u16 = 28;
/// A neighbour entry went away.
pub const RTM_DELNEIGH: u16 = 29;
/// Asks for neighbour entries.
pub const RTM_GETNEIGH: u16 = 30;

const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLMSG_OVERRUN: u16 = 4;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_DUMP: u16 = 0x300;

/// Neighbour states (linux/neighbour.h).
pub const NUD_REACHABLE: u16 = 0x02;
/// Not confirmed lately; the kernel checks again when it next sends.
pub const NUD_STALE: u16 = 0x04;
/// Waiting to check.
pub const NUD_DELAY: u16 = 0x08;
/// Checking.
pub const NUD_PROBE: u16 = 0x10;
/// No resolution needed (point-to-point).
pub const NUD_NOARP: u16 = 0x40;
/// Set by hand.
pub const NUD_PERMANENT: u16 = 0x80;
/// States whose MAC may be used.
pub const NUD_USABLE: u16 = NUD_REACHABLE | NUD_STALE | NUD_DELAY | NUD_PROBE | NUD_NOARP | NUD_PERMANENT;

/// Multicast groups a listener joins (linux/rtnetlink.h, RTMGRP_*).
pub const GROUPS: u32 = 0x1 /* LINK */ | 0x4 /* NEIGH */ | 0x40 /* IPV4_ROUTE */ | 0x400 /* IPV6_ROUTE */;

/// The parts of a message next hops use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Message {
    /// A link, with the link it sits on and its VLAN id when it is a VLAN.
    Link { index: u32, parent: Option<u32>, vlan: Option<u16>, deleted: bool },
    /// A route.
    Route {
        dst: IpAddr,
        len: u8,
        priority: u32,
        oif: Option<u32>,
        gateway: Option<IpAddr>,
        table: u32,
        unicast: bool,
        deleted: bool,
    },
    /// A neighbour entry (ARP or NDP).
    Neighbour { ifindex: u32, dst: IpAddr, mac: Option<[u8; 6]>, state: u16, deleted: bool },
}

/// One netlink message of a datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// A message next hops use.
    Message(Message),
    /// The end of a dump.
    Done,
    /// An error answer (a negative errno; 0 is an acknowledgement).
    Error(i32),
    /// Notifications were lost: dump again.
    Overrun,
    /// Anything else (other types, malformed bodies).
    Other,
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// Netlink's 4-byte alignment.
fn align(n: usize) -> usize {
    (n + 3) & !3
}

/// The attributes (type without its flag bits, payload) in `b`.
fn attributes(mut b: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        let len = usize::from(u16_at(b, 0)?);
        let kind = u16_at(b, 2)? & 0x3fff;
        if len < 4 || len > b.len() {
            return None;
        }
        let payload = &b[4..len];
        b = b.get(align(len)..).unwrap_or(&[]);
        Some((kind, payload))
    })
}

fn address(family: u8, b: &[u8]) -> Option<IpAddr> {
    match (family, b.len()) {
        (2, 4) => Some(IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3]))),
        (10, 16) => Some(IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(b).ok()?))),
        _ => None,
    }
}

fn link(kind: u16, body: &[u8]) -> Option<Message> {
    // struct ifinfomsg: family, pad, type u16, index i32, flags u32, change u32.
    let index = u32_at(body, 4)?;
    let (mut parent, mut vlan) = (None, None);
    for (t, p) in attributes(body.get(16..)?) {
        match t {
            5 /* IFLA_LINK */ => parent = u32_at(p, 0),
            18 /* IFLA_LINKINFO */ => {
                let mut is_vlan = false;
                let mut id = None;
                for (t, p) in attributes(p) {
                    match t {
                        1 /* IFLA_INFO_KIND */ => is_vlan = p.strip_suffix(&[0]).unwrap_or(p) == b"vlan",
                        2 /* IFLA_INFO_DATA */ => {
                            id = attributes(p).find(|a| a.0 == 1 /* IFLA_VLAN_ID */).and_then(|a| u16_at(a.1, 0))
                        }
                        _ => {}
                    }
                }
                vlan = id.filter(|_| is_vlan);
            }
            _ => {}
        }
    }
    Some(Message::Link { index, parent, vlan, deleted: kind == RTM_DELLINK })
}

fn route(kind: u16, body: &[u8]) -> Option<Message> {
    // struct rtmsg: family, dst_len, src_len, tos, table, protocol, scope, type; flags u32.
    let h = body.get(..12)?;
    let (family, len) = (h[0], h[1]);
    let mut table = u32::from(h[4]);
    let unicast = h[7] == 1; // RTN_UNICAST
    let mut dst = None;
    let (mut oif, mut gateway, mut priority) = (None, None, 0);
    for (t, p) in attributes(&body[12..]) {
        match t {
            1 /* RTA_DST */ => dst = address(family, p),
            4 /* RTA_OIF */ => oif = u32_at(p, 0),
            5 /* RTA_GATEWAY */ => gateway = address(family, p),
            6 /* RTA_PRIORITY */ => priority = u32_at(p, 0).unwrap_or(0),
            15 /* RTA_TABLE */ => table = u32_at(p, 0).unwrap_or(table),
            _ => {}
        }
    }
    let dst = match (dst, family) {
        (Some(d), _) => d,
        // A default route has no RTA_DST.
        (None, 2) if len == 0 => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        (None, 10) if len == 0 => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        _ => return None,
    };
    Some(Message::Route { dst, len, priority, oif, gateway, table, unicast, deleted: kind == RTM_DELROUTE })
}

fn neighbour(kind: u16, body: &[u8]) -> Option<Message> {
    // struct ndmsg: family, pad1, pad2 u16, ifindex i32, state u16, flags u8, type u8.
    let family = *body.first()?;
    let ifindex = u32_at(body, 4)?;
    let state = u16_at(body, 8)?;
    let (mut dst, mut mac) = (None, None);
    for (t, p) in attributes(body.get(12..)?) {
        match t {
            1 /* NDA_DST */ => dst = address(family, p),
            2 /* NDA_LLADDR */ => mac = <[u8; 6]>::try_from(p).ok(),
            _ => {}
        }
    }
    Some(Message::Neighbour { ifindex, dst: dst?, mac, state, deleted: kind == RTM_DELNEIGH })
}

/// Each netlink message in `buf` (one datagram read from the socket), in order.
pub fn parse(mut buf: &[u8], mut f: impl FnMut(Part)) {
    while let (Some(len), Some(kind)) = (u32_at(buf, 0), u16_at(buf, 4)) {
        let len = len as usize;
        if len < 16 || len > buf.len() {
            return;
        }
        let body = &buf[16..len];
        let part = match kind {
            NLMSG_DONE => Part::Done,
            NLMSG_OVERRUN => Part::Overrun,
            NLMSG_ERROR => Part::Error(u32_at(body, 0).map_or(0, |e| e as i32)),
            RTM_NEWLINK | RTM_DELLINK => link(kind, body).map_or(Part::Other, Part::Message),
            RTM_NEWROUTE | RTM_DELROUTE => route(kind, body).map_or(Part::Other, Part::Message),
            RTM_NEWNEIGH | RTM_DELNEIGH => neighbour(kind, body).map_or(Part::Other, Part::Message),
            _ => Part::Other,
        };
        f(part);
        buf = buf.get(align(len)..).unwrap_or(&[]);
    }
}

/// A dump request for every entry of `kind` (RTM_GETLINK, RTM_GETROUTE, RTM_GETNEIGH),
/// all address families.
pub fn dump_request(kind: u16, seq: u32) -> Vec<u8> {
    // The header, then the request's family-only body (an rtgenmsg, padded).
    let mut m = Vec::with_capacity(32);
    let body_len = if kind == RTM_GETLINK { 16 } else { 12 };
    m.extend_from_slice(&((16 + body_len) as u32).to_ne_bytes());
    m.extend_from_slice(&kind.to_ne_bytes());
    m.extend_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
    m.extend_from_slice(&seq.to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes());
    m.resize(16 + body_len, 0);
    m
}
