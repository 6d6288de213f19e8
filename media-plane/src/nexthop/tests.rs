use super::rtnetlink::*;
use super::*;

const XDP: u32 = 4;
const VLAN100: u32 = 9;
const OTHER: u32 = 2;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// Netlink bytes as the kernel lays them out: one message of `kind` with `fixed` as its
/// family header and `attrs` after it.
fn nlmsg(kind: u16, fixed: &[u8], attrs: &[(u16, Vec<u8>)]) -> Vec<u8> {
    let mut body = fixed.to_vec();
    for (t, p) in attrs {
        body.extend_from_slice(&((4 + p.len()) as u16).to_ne_bytes());
        body.extend_from_slice(&t.to_ne_bytes());
        body.extend_from_slice(p);
        while body.len() % 4 != 0 {
            body.push(0);
        }
    }
    let mut m = ((16 + body.len()) as u32).to_ne_bytes().to_vec();
    m.extend_from_slice(&kind.to_ne_bytes());
    m.extend_from_slice(&[0; 10]);
    m.extend(body);
    m
}

fn attr(t: u16, p: &[u8]) -> Vec<u8> {
    nlmsg(0, &[], &[(t, p.to_vec())])[16..].to_vec()
}

fn parse_one(b: &[u8]) -> Part {
    let mut parts = Vec::new();
    parse(b, |p| parts.push(p));
    assert_eq!(parts.len(), 1, "{parts:?}");
    parts[0]
}

fn route(dst: &str, len: u8, priority: u32, oif: u32, gateway: Option<&str>) -> Message {
    Message::Route {
        dst: ip(dst),
        len,
        priority,
        oif: Some(oif),
        gateway: gateway.map(ip),
        table: 254,
        unicast: true,
        deleted: false,
    }
}

fn neigh(ifindex: u32, dst: &str, mac: u8, state: u16) -> Message {
    Message::Neighbour { ifindex, dst: ip(dst), mac: Some([2, 0, 0, 0, 0, mac]), state, deleted: false }
}

/// A host on 10.1.0.0/24 through the XDP interface, a default route through a gateway
/// there, 10.2.0.0/16 through another interface, VLAN 100 on the XDP interface with
/// 10.100.0.0/24, and the same for IPv6.
fn table() -> Table {
    let mut t = Table::new(XDP);
    for m in [
        Message::Link { index: VLAN100, parent: Some(XDP), vlan: Some(100), deleted: false },
        route("10.1.0.0", 24, 0, XDP, None),
        route("0.0.0.0", 0, 100, XDP, Some("10.1.0.254")),
        route("10.2.0.0", 16, 0, OTHER, None),
        route("10.100.0.0", 24, 0, VLAN100, None),
        route("fd00::", 64, 256, XDP, None),
        neigh(XDP, "10.1.0.7", 7, NUD_REACHABLE),
        neigh(XDP, "10.1.0.8", 8, NUD_STALE),
        neigh(XDP, "10.1.0.9", 9, 0x20 /* FAILED */),
        neigh(XDP, "10.1.0.254", 0xfe, NUD_REACHABLE),
        neigh(OTHER, "10.2.0.5", 5, NUD_REACHABLE),
        neigh(VLAN100, "10.100.0.3", 3, NUD_PERMANENT),
        neigh(XDP, "fd00::3", 0x33, NUD_DELAY),
    ] {
        assert!(t.apply(&m), "{m:?} changes the table");
    }
    t
}

fn mac(last: u8) -> [u8; 6] {
    [2, 0, 0, 0, 0, last]
}

#[test]
fn a_destination_on_the_link_goes_to_its_own_resolved_mac() {
    let t = table();
    assert_eq!(t.lookup(ip("10.1.0.7")), Some(Hop { mac: mac(7), vlan: None, stale: false }));
    assert_eq!(t.lookup(ip("10.1.0.8")), Some(Hop { mac: mac(8), vlan: None, stale: true }));
    assert_eq!(t.lookup(ip("fd00::3")), Some(Hop { mac: mac(0x33), vlan: None, stale: true }));
}

#[test]
fn unresolved_or_failed_neighbours_and_other_interfaces_take_the_kernel_path() {
    let t = table();
    assert_eq!(t.lookup(ip("10.1.0.9")), None, "FAILED");
    assert_eq!(t.lookup(ip("10.1.0.10")), None, "not resolved yet");
    assert_eq!(t.lookup(ip("10.2.0.5")), None, "routed through another interface");
    assert_eq!(t.lookup(ip("fd01::1")), None, "no IPv6 route");
}

#[test]
fn a_routed_destination_goes_to_its_gateway_and_a_vlan_keeps_its_tag() {
    let t = table();
    assert_eq!(t.lookup(ip("192.0.2.1")), Some(Hop { mac: mac(0xfe), vlan: None, stale: false }));
    assert_eq!(t.lookup(ip("10.100.0.3")), Some(Hop { mac: mac(3), vlan: Some(100), stale: false }));
}

#[test]
fn the_longest_prefix_wins_then_the_lowest_metric_and_a_blackhole_shadows() {
    let mut t = table();
    // A more specific route for 192.0.2.0/24 through the other interface.
    t.apply(&route("192.0.2.0", 24, 0, OTHER, None));
    assert_eq!(t.lookup(ip("192.0.2.1")), None);
    assert_eq!(t.lookup(ip("192.0.3.1")).map(|h| h.mac), Some(mac(0xfe)));
    // A second default with a better metric through another gateway, then gone again.
    t.apply(&neigh(XDP, "10.1.0.253", 0xfd, NUD_REACHABLE));
    t.apply(&route("0.0.0.0", 0, 50, XDP, Some("10.1.0.253")));
    assert_eq!(t.lookup(ip("198.51.100.1")).map(|h| h.mac), Some(mac(0xfd)));
    let Message::Route { dst, len, priority, oif, gateway, table, unicast, .. } =
        route("0.0.0.0", 0, 50, XDP, Some("10.1.0.253"))
    else {
        unreachable!()
    };
    assert!(t.apply(&Message::Route { dst, len, priority, oif, gateway, table, unicast, deleted: true }));
    assert_eq!(t.lookup(ip("198.51.100.1")).map(|h| h.mac), Some(mac(0xfe)));
    // A blackhole for 198.51.100.0/24 (no interface).
    t.apply(&Message::Route {
        dst: ip("198.51.100.0"),
        len: 24,
        priority: 0,
        oif: None,
        gateway: None,
        table: 254,
        unicast: false,
        deleted: false,
    });
    assert_eq!(t.lookup(ip("198.51.100.1")), None);
}

#[test]
fn changes_are_followed_and_repeats_change_nothing() {
    let mut t = table();
    assert!(!t.apply(&neigh(XDP, "10.1.0.7", 7, NUD_REACHABLE)), "the same entry again");
    // The peer moved to another MAC (a failover): the next frames follow.
    assert!(t.apply(&neigh(XDP, "10.1.0.7", 0x77, NUD_REACHABLE)));
    assert_eq!(t.lookup(ip("10.1.0.7")).map(|h| h.mac), Some(mac(0x77)));
    assert!(t.apply(&Message::Neighbour { ifindex: XDP, dst: ip("10.1.0.7"), mac: None, state: 0, deleted: true }));
    assert_eq!(t.lookup(ip("10.1.0.7")), None);
    // Routes of other tables are not the main table's.
    assert!(!t.apply(&Message::Route {
        dst: ip("10.9.0.0"),
        len: 16,
        priority: 0,
        oif: Some(XDP),
        gateway: None,
        table: 255,
        unicast: true,
        deleted: false
    }));
    // The VLAN deleted: its routes no longer leave through the XDP interface.
    assert!(t.apply(&Message::Link { index: VLAN100, parent: Some(XDP), vlan: Some(100), deleted: true }));
    assert_eq!(t.lookup(ip("10.100.0.3")), None);
}

#[test]
fn kernel_layouts_parse_into_messages() {
    // RTM_NEWNEIGH: ndmsg {AF_INET, ifindex 4, NUD_REACHABLE}, NDA_DST, NDA_LLADDR.
    let mut nd = vec![2, 0, 0, 0];
    nd.extend_from_slice(&4u32.to_ne_bytes());
    nd.extend_from_slice(&NUD_REACHABLE.to_ne_bytes());
    nd.extend_from_slice(&[0, 1]);
    let m = nlmsg(RTM_NEWNEIGH, &nd, &[(1, vec![10, 1, 0, 7]), (2, mac(7).to_vec())]);
    assert_eq!(parse_one(&m), Part::Message(neigh(XDP, "10.1.0.7", 7, NUD_REACHABLE)));
    // RTM_NEWROUTE: rtmsg {AF_INET6, /64, table main, unicast}, RTA_DST, RTA_PRIORITY,
    // RTA_OIF, RTA_TABLE.
    let mut rt = vec![10, 64, 0, 0, 254, 3, 0, 1];
    rt.extend_from_slice(&0u32.to_ne_bytes());
    let dst = ip("fd00::").to_string().parse::<std::net::Ipv6Addr>().unwrap().octets().to_vec();
    let m = nlmsg(
        RTM_NEWROUTE,
        &rt,
        &[
            (1, dst),
            (6, 256u32.to_ne_bytes().to_vec()),
            (4, XDP.to_ne_bytes().to_vec()),
            (15, 254u32.to_ne_bytes().to_vec()),
        ],
    );
    assert_eq!(parse_one(&m), Part::Message(route("fd00::", 64, 256, XDP, None)));
    // A default route has no RTA_DST; RTA_GATEWAY names its gateway.
    let mut rt = vec![2, 0, 0, 0, 254, 3, 0, 1];
    rt.extend_from_slice(&0u32.to_ne_bytes());
    let m = nlmsg(RTM_NEWROUTE, &rt, &[(5, vec![10, 1, 0, 254]), (4, XDP.to_ne_bytes().to_vec())]);
    assert_eq!(parse_one(&m), Part::Message(route("0.0.0.0", 0, 0, XDP, Some("10.1.0.254"))));
    // RTM_NEWLINK of a VLAN: IFLA_LINK, IFLA_LINKINFO {IFLA_INFO_KIND "vlan", IFLA_INFO_DATA {IFLA_VLAN_ID}}.
    let mut ifi = vec![0, 0, 1, 0];
    ifi.extend_from_slice(&VLAN100.to_ne_bytes());
    ifi.extend_from_slice(&[0; 8]);
    let data = attr(1, &100u16.to_ne_bytes());
    let info = [attr(1, b"vlan\0"), attr(0x8000 | 2, &data)].concat();
    let m =
        nlmsg(RTM_NEWLINK, &ifi, &[(3, b"eth0.100\0".to_vec()), (5, XDP.to_ne_bytes().to_vec()), (0x8000 | 18, info)]);
    assert_eq!(
        parse_one(&m),
        Part::Message(Message::Link { index: VLAN100, parent: Some(XDP), vlan: Some(100), deleted: false })
    );
    // A veth's link info names its peer, not a VLAN.
    let info = attr(1, b"veth\0");
    let m = nlmsg(RTM_NEWLINK, &ifi, &[(18, info)]);
    assert_eq!(
        parse_one(&m),
        Part::Message(Message::Link { index: VLAN100, parent: None, vlan: None, deleted: false })
    );
    // NLMSG_DONE, NLMSG_ERROR, two messages in one datagram.
    let done = nlmsg(3, &0u32.to_ne_bytes(), &[]);
    let err = nlmsg(2, &(-1i32).to_ne_bytes(), &[]);
    let mut parts = Vec::new();
    parse(&[err, done].concat(), |p| parts.push(p));
    assert_eq!(parts, [Part::Error(-1), Part::Done]);
}

#[test]
fn dump_requests_ask_for_everything() {
    let r = dump_request(RTM_GETNEIGH, 7);
    assert_eq!(r.len(), 28);
    assert_eq!(u32::from_ne_bytes(r[0..4].try_into().unwrap()), 28);
    assert_eq!(u16::from_ne_bytes(r[4..6].try_into().unwrap()), RTM_GETNEIGH);
    assert_eq!(u16::from_ne_bytes(r[6..8].try_into().unwrap()), 0x301, "NLM_F_REQUEST | NLM_F_DUMP");
    assert_eq!(u32::from_ne_bytes(r[8..12].try_into().unwrap()), 7);
    assert_eq!(dump_request(RTM_GETLINK, 1).len(), 32, "an ifinfomsg");
}

proptest::proptest! {
    #[test]
    fn any_bytes_parse_or_are_refused_without_a_panic(b in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300)) {
        let mut t = Table::new(XDP);
        parse(&b, |p| if let Part::Message(m) = p { t.apply(&m); });
        let _ = t.lookup(ip("10.1.0.7"));
    }

    #[test]
    fn truncated_real_messages_never_panic(cut in 0usize..80) {
        let mut nd = vec![2, 0, 0, 0];
        nd.extend_from_slice(&4u32.to_ne_bytes());
        nd.extend_from_slice(&NUD_REACHABLE.to_ne_bytes());
        nd.extend_from_slice(&[0, 1]);
        let mut m = nlmsg(RTM_NEWNEIGH, &nd, &[(1, vec![10, 1, 0, 7]), (2, mac(7).to_vec())]);
        let len = m.len();
        m.truncate(cut.min(len));
        parse(&m, |_| {});
    }
}
