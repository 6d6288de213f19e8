//! A media core's session table, sans-IO: commands in, events out.
//!
//! The table owns the core's slice of the RTP port range and its sessions. It applies
//! [`Command`]s idempotently by generation (a replay after a restart, or twice, ends in
//! the same table) and answers every command with the state it holds. The worker thread
//! only moves commands from the ring into [`SessionTable::apply`] and events back out;
//! the relay (issue 5) will hang its per-stream state off [`Session`].
//!
//! Freed ports cool down before they are handed out again ([`PORT_REUSE_DELAY`]), then
//! come back first, oldest first, so the worker can give the next session the sockets a
//! closed one left bound (`crate::pool`). Time is an input: [`SessionTable::set_clock`].

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::time::Duration;

use ferroswitch_shared::msg::{
    error_code, Command, CommandKind, Count, Created, Endpoint, ErrorInfo, Event, EventKind, SessionSpec, StreamStats,
    MAX_CODECS,
};

/// One session on this core.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// The control plane's generation of `spec`.
    pub generation: u64,
    /// The spec with the local ports this core uses filled in.
    pub spec: SessionSpec,
    /// Counters (filled by the relay).
    pub stats: StreamStats,
}

/// How long a freed port waits before the table hands it out again, so RTP still coming
/// from the previous call's peers has stopped before the next call gets the port. A port
/// comes back sooner only when every other port of the range is taken or cooling (the
/// range is too small for the rate: the oldest freed port is then the one handed out, as
/// a cycle through the range did before).
pub const PORT_REUSE_DELAY: Duration = Duration::from_secs(2);

/// The order never-used ports are handed out in: a keyed pseudo-random permutation of
/// the range's slots, so a port seen tells nothing of the next (an attacker cannot aim
/// at the port the next call gets), or the slots in order (tests that name ports).
#[derive(Debug, Clone, Copy)]
pub enum PortOrder {
    /// A permutation keyed by this secret.
    Random(u64),
    /// Lowest first.
    Sequential,
}

impl PortOrder {
    /// A random order keyed from the operating system's random source.
    pub fn random() -> PortOrder {
        let mut key = [0u8; 8];
        // SAFETY: key is valid for 8 bytes; getrandom fills at most that many.
        let n = unsafe { libc::getrandom(key.as_mut_ptr().cast(), key.len(), 0) };
        if n != 8 {
            // No getrandom: the clock and the address of a local are a weak but varying key.
            let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
            key = (t.as_nanos() as u64 ^ (&key as *const _ as u64)).to_le_bytes();
        }
        PortOrder::Random(u64::from_le_bytes(key))
    }

    /// The slot at position `i` (< `n`) of the order over `n` slots.
    fn slot(self, i: u32, n: u32) -> u32 {
        match self {
            PortOrder::Sequential => i,
            PortOrder::Random(key) => permute(i, n, key),
        }
    }
}

/// A keyed permutation of `0..n` (a 4-round Feistel network over the smallest even power
/// of two that holds `n`, walking cycles until the value falls inside).
fn permute(i: u32, n: u32, key: u64) -> u32 {
    let bits = (32 - n.saturating_sub(1).leading_zeros()).max(2).div_ceil(2);
    let mask = (1u32 << bits) - 1;
    let mut x = i;
    loop {
        let (mut l, mut r) = (x >> bits, x & mask);
        for round in 0..4u64 {
            let f = (splitmix(key ^ (round << 32) ^ u64::from(r)) as u32) & mask;
            (l, r) = (r, l ^ f);
        }
        x = (l << bits) | r;
        if x < n {
            return x;
        }
    }
}

fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A contiguous range of even RTP ports (RTCP on the odd port above each).
#[derive(Debug, Clone)]
struct Ports {
    min: u16,
    max: u16,
    /// Ports in use (RTP ports, even).
    used: BTreeSet<u16>,
    /// Where the walk through `order` for a never-freed port starts (a position, not a
    /// port).
    next: u32,
    order: PortOrder,
    /// Freed ports, oldest first: (port, when freed, sequence number). An entry counts
    /// while `cooling_seq` holds its sequence number for the port (a claim or a block
    /// takes a port out of the middle by removing it there).
    cooling: VecDeque<(u16, u64, u64)>,
    cooling_seq: HashMap<u16, u64>,
    seq: u64,
    delay_ns: u64,
}

impl Ports {
    fn new(min: u16, max: u16, delay: Duration, order: PortOrder) -> Ports {
        let min = min + (min & 1); // first even port
        Ports {
            min,
            max,
            used: BTreeSet::new(),
            next: 0,
            order,
            cooling: VecDeque::new(),
            cooling_seq: HashMap::new(),
            seq: 0,
            delay_ns: delay.as_nanos().min(u128::from(u64::MAX)) as u64,
        }
    }

    fn is_cooling(&self, port: u16) -> bool {
        self.cooling_seq.contains_key(&port)
    }

    /// The cooling entries still valid, oldest first.
    fn cooling_valid(&self) -> impl Iterator<Item = (u16, u64)> + '_ {
        self.cooling.iter().filter(|(p, _, q)| self.cooling_seq.get(p) == Some(q)).map(|&(p, t, _)| (p, t))
    }

    /// Drops the stale entries at the front of the cooling queue.
    fn trim(&mut self) {
        while let Some(&(p, _, q)) = self.cooling.front() {
            if self.cooling_seq.get(&p) == Some(&q) {
                break;
            }
            self.cooling.pop_front();
        }
        // Entries taken out of the middle (claims, blocks) are dropped when the queue holds
        // twice as many as count.
        if self.cooling.len() > 2 * self.cooling_seq.len() + 64 {
            let seqs = &self.cooling_seq;
            self.cooling.retain(|(p, _, q)| seqs.get(p) == Some(q));
        }
    }

    /// Takes `port` out of the cooling set (it is used again, or blocked).
    fn uncool(&mut self, port: u16) {
        if self.cooling_seq.remove(&port).is_some() {
            self.trim();
        }
    }

    /// Even ports in the range whose RTCP port (+1) is in the range too.
    fn slots(&self) -> u32 {
        if self.max <= self.min {
            0
        } else {
            (u32::from(self.max) - u32::from(self.min)).div_ceil(2)
        }
    }

    /// The next port ([`Ports::upcoming`]'s first), taken.
    fn allocate(&mut self, now: u64) -> Option<u16> {
        let port = self.upcoming(1, now).next()?;
        self.used.insert(port);
        if self.cooling_seq.remove(&port).is_some() {
            self.trim();
        } else {
            // Past the position the fresh port had in the order.
            let slots = self.slots();
            let slot = u32::from(port - self.min) / 2;
            let at = (0..slots).find(|&i| self.order.slot((self.next + i) % slots, slots) == slot).unwrap_or(0);
            self.next = (self.next + at + 1) % slots.max(1);
        }
        Some(port)
    }

    /// Takes a specific port (a replayed session keeps the ports its SDP announced), cooling
    /// or not.
    fn claim(&mut self, port: u16) -> bool {
        let ok = port >= self.min && port < self.max && port % 2 == self.min % 2 && self.used.insert(port);
        if ok {
            self.uncool(port);
        }
        ok
    }

    /// Frees `port` at `now`: it cools down before it is handed out again.
    fn release(&mut self, port: u16, now: u64) {
        if self.used.remove(&port) {
            self.seq += 1;
            self.cooling.push_back((port, now, self.seq));
            self.cooling_seq.insert(port, self.seq);
        }
    }

    /// The ports [`Ports::allocate`] hands out next at `now`, in that order, at most `n`:
    /// the freed ports whose delay has passed (oldest first), then ports never freed (from
    /// the cursor on), then, when the range has nothing else, the ports still cooling
    /// (oldest first).
    fn upcoming(&self, n: usize, now: u64) -> impl Iterator<Item = u16> + '_ {
        let delay = self.delay_ns;
        let cooled = self.cooling_valid().take_while(move |&(_, t)| now.saturating_sub(t) >= delay).map(|(p, _)| p);
        let (slots, start, order) = (self.slots(), self.next, self.order);
        // Every slot is used or cooling: no need to walk the range.
        let fresh_left = (self.used.len() + self.cooling_seq.len()) < slots as usize;
        let fresh = (0..if fresh_left { slots } else { 0 })
            .map(move |i| self.min + (order.slot((start + i) % slots, slots) * 2) as u16)
            .filter(|p| !self.used.contains(p) && !self.is_cooling(*p));
        let cooling = self.cooling_valid().filter(move |&(_, t)| now.saturating_sub(t) < delay).map(|(p, _)| p);
        cooled.chain(fresh).chain(cooling).take(n)
    }
}

/// The sessions of one media core.
#[derive(Debug)]
pub struct SessionTable {
    core: u16,
    ports: Ports,
    sessions: HashMap<u64, Session>,
    /// The time commands apply at (nanoseconds on the worker's clock).
    now: u64,
}

impl SessionTable {
    /// An empty table for `core`, handing out RTP ports from `port_min..=port_max` in a
    /// random order ([`PortOrder::random`]), freed ports again after [`PORT_REUSE_DELAY`].
    pub fn new(core: u16, port_min: u16, port_max: u16) -> SessionTable {
        SessionTable::with_order(core, port_min, port_max, PORT_REUSE_DELAY, PortOrder::random())
    }

    /// The same with freed ports handed out again after `delay`.
    pub fn with_reuse_delay(core: u16, port_min: u16, port_max: u16, delay: Duration) -> SessionTable {
        SessionTable::with_order(core, port_min, port_max, delay, PortOrder::random())
    }

    /// The same with never-used ports handed out in `order`.
    pub fn with_order(core: u16, port_min: u16, port_max: u16, delay: Duration, order: PortOrder) -> SessionTable {
        SessionTable { core, ports: Ports::new(port_min, port_max, delay, order), sessions: HashMap::new(), now: 0 }
    }

    /// Sets the clock the next commands apply at (nanoseconds from any fixed start; it
    /// must not go back): ports freed then start cooling then.
    pub fn set_clock(&mut self, now_ns: u64) {
        self.now = self.now.max(now_ns);
    }

    /// The RTP port range this table hands out from (inclusive).
    pub fn port_range(&self) -> (u16, u16) {
        (self.ports.min, self.ports.max)
    }

    /// The core this table belongs to.
    pub fn core(&self) -> u16 {
        self.core
    }

    /// Sessions held.
    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    /// Whether no session is held.
    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    /// A session by id.
    pub fn get(&self, id: u64) -> Option<&Session> {
        self.sessions.get(&id)
    }

    /// Removes a session without an event (the worker could not open its sockets), and
    /// frees its ports.
    pub fn remove(&mut self, id: u64) -> Option<Session> {
        let s = self.sessions.remove(&id)?;
        for leg in &s.spec.legs {
            self.ports.release(leg.local.port, self.now);
        }
        Some(s)
    }

    /// Marks `port` (and its RTCP port) as unusable: another process holds it. Later
    /// allocations skip it.
    pub fn block(&mut self, port: u16) {
        self.ports.used.insert(port & !1);
        self.ports.uncool(port & !1);
    }

    /// The RTP ports the next creates will get (at most `n`, in order) unless a replay
    /// claims some first: the worker binds them ahead. Their RTCP ports are one above.
    pub fn upcoming_ports(&self, n: usize) -> impl Iterator<Item = u16> + '_ {
        self.ports.upcoming(n, self.now)
    }

    /// Every session, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (u64, &Session)> {
        self.sessions.iter().map(|(id, s)| (*id, s))
    }

    /// Applies one command and calls `emit` with each event it produces, in order.
    pub fn apply(&mut self, cmd: &Command, mut emit: impl FnMut(Event)) {
        let h = cmd.header;
        let core = self.core;
        let reply = |kind: EventKind| {
            let mut e = Event::new(kind as u16, core, h.session, h.generation);
            e.header.seq = h.seq;
            e
        };
        if h.core != self.core {
            let text = format!("command for core {} reached core {}", h.core, self.core);
            emit(reply(EventKind::Error).with_body(&ErrorInfo::new(error_code::WRONG_CORE, &text)));
            return;
        }
        match cmd.kind() {
            Some(CommandKind::Create | CommandKind::Update) => {
                let ev = match self.upsert(h.session, h.generation, cmd.body::<SessionSpec>()) {
                    Ok((spec, created)) => {
                        let kind = if created { EventKind::Created } else { EventKind::Updated };
                        let generation = self.sessions[&h.session].generation;
                        let mut e = reply(kind).with_body(&Created { local: [spec.legs[0].local, spec.legs[1].local] });
                        e.header.generation = generation;
                        e
                    }
                    Err((code, text)) => reply(EventKind::Error).with_body(&ErrorInfo::new(code, &text)),
                };
                emit(ev);
            }
            Some(CommandKind::Destroy) => match self.sessions.remove(&h.session) {
                Some(s) => {
                    for leg in &s.spec.legs {
                        self.ports.release(leg.local.port, self.now);
                    }
                    let mut e = reply(EventKind::Destroyed).with_body(&s.stats);
                    e.header.generation = s.generation;
                    emit(e);
                }
                None => {
                    let text = format!("no session {}", h.session);
                    emit(reply(EventKind::Error).with_body(&ErrorInfo::new(error_code::NO_SUCH_SESSION, &text)));
                }
            },
            Some(CommandKind::Query) => {
                let mut ids: Vec<u64> = self.sessions.keys().copied().collect();
                ids.sort_unstable();
                for id in &ids {
                    let s = &self.sessions[id];
                    let mut e =
                        Event::new(EventKind::SessionInfo as u16, self.core, *id, s.generation).with_body(&s.spec);
                    e.header.seq = h.seq;
                    emit(e);
                }
                emit(reply(EventKind::QueryDone).with_body(&Count { count: ids.len() as u64 }));
            }
            Some(CommandKind::Ping) => emit(reply(EventKind::Pong)),
            // Unknown to this build (a newer control plane): say so, hold nothing.
            _ => {
                let text = format!("unknown command kind {}", h.kind);
                emit(reply(EventKind::Error).with_body(&ErrorInfo::new(error_code::UNKNOWN_COMMAND, &text)));
            }
        }
    }

    /// Creates or updates `id` to `spec` at `generation`; an older or equal generation
    /// changes nothing. Returns the spec held (with local ports) and whether it was new.
    fn upsert(&mut self, id: u64, generation: u64, spec: &SessionSpec) -> Result<(SessionSpec, bool), (u32, String)> {
        validate(spec)?;
        if let Some(s) = self.sessions.get_mut(&id) {
            if generation > s.generation {
                // The local ports stay: the peers were told them.
                let mut next = *spec;
                for (leg, held) in next.legs.iter_mut().zip(&s.spec.legs) {
                    leg.local = held.local;
                }
                s.spec = next;
                s.generation = generation;
            }
            return Ok((s.spec, false));
        }
        let mut held = *spec;
        let mut taken = Vec::with_capacity(2);
        for (i, leg) in held.legs.iter_mut().enumerate() {
            let port = if leg.local.port == 0 {
                self.ports.allocate(self.now)
            } else if self.ports.claim(leg.local.port) {
                Some(leg.local.port)
            } else {
                None
            };
            match port {
                Some(p) => {
                    taken.push(p);
                    leg.local.port = p;
                }
                None => {
                    for p in taken {
                        // Never given to a session: back to where it was, not cooling.
                        self.ports.used.remove(&p);
                    }
                    let text = if leg.local.port == 0 {
                        format!("no free port on core {} for leg {i}", self.core)
                    } else {
                        format!("port {} is taken or outside core {}'s range", leg.local.port, self.core)
                    };
                    return Err((error_code::NO_PORT, text));
                }
            }
        }
        self.sessions.insert(id, Session { generation, spec: held, stats: StreamStats::default() });
        Ok((held, true))
    }
}

fn validate(spec: &SessionSpec) -> Result<(), (u32, String)> {
    for (i, leg) in spec.legs.iter().enumerate() {
        if usize::from(leg.codec_count) > MAX_CODECS {
            return Err((error_code::BAD_SPEC, format!("leg {i}: {} codecs (at most {MAX_CODECS})", leg.codec_count)));
        }
        for (what, e) in [("local", &leg.local), ("remote", &leg.remote)] {
            if !matches!(e.family, 0 | 4 | 6) {
                return Err((error_code::BAD_SPEC, format!("leg {i}: {what} address family {}", e.family)));
            }
        }
        if leg.local.family == 0 {
            return Err((error_code::BAD_SPEC, format!("leg {i}: no local address")));
        }
    }
    Ok(())
}

/// The local endpoint a fresh leg asks for: `ip`, port 0 (allocate).
pub fn any_port(ip: std::net::IpAddr) -> Endpoint {
    Endpoint::from_addr(std::net::SocketAddr::new(ip, 0))
}

#[cfg(test)]
mod tests {
    use ferroswitch_shared::msg::{codec, LegSpec, PayloadMap};

    use super::*;

    fn spec(remote_port: u16) -> SessionSpec {
        let mut s = SessionSpec::default();
        for (i, leg) in s.legs.iter_mut().enumerate() {
            leg.local = any_port("127.0.0.1".parse().unwrap());
            leg.remote = Endpoint::from_addr(format!("192.0.2.{}:{remote_port}", 10 + i).parse().unwrap());
            leg.codec_count = 1;
            leg.codecs[0] = PayloadMap { clock_rate: 8000, pt: 0, codec: codec::PCMU, channels: 1, _pad: 0 };
        }
        s.rtp_timeout_secs = 30;
        s
    }

    fn cmd(kind: CommandKind, session: u64, generation: u64, spec: &SessionSpec) -> Command {
        Command::new(kind as u16, 0, session, generation).with_body(spec)
    }

    fn run(t: &mut SessionTable, c: &Command) -> Vec<Event> {
        let mut out = Vec::new();
        t.apply(c, |e| out.push(e));
        out
    }

    /// A table handing out never-used ports lowest first, so tests can name them.
    fn sequential(min: u16, max: u16, delay: Duration) -> SessionTable {
        SessionTable::with_order(0, min, max, delay, PortOrder::Sequential)
    }

    #[test]
    fn ports_are_handed_out_in_a_keyed_random_order_each_once_within_the_range() {
        let take_all = |order: PortOrder| -> Vec<u16> {
            let mut t = SessionTable::with_order(0, 40000, 49999, PORT_REUSE_DELAY, order);
            (1..=2500u64)
                .flat_map(|id| {
                    let ev = run(&mut t, &cmd(CommandKind::Create, id, 1, &spec(4000)));
                    ev[0].body::<Created>().local.iter().map(|e| e.port).collect::<Vec<_>>()
                })
                .collect()
        };
        let a = take_all(PortOrder::Random(1));
        // Every even port of the range, once each.
        let mut sorted = a.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (40000..49999).step_by(2).collect::<Vec<u16>>());
        // Not in sequence: consecutive sessions' ports are rarely neighbours.
        let steps_of_2 = a.windows(2).filter(|w| w[1] == w[0] + 2).count();
        assert!(steps_of_2 < 50, "{steps_of_2} of 4999 steps are +2: {:?}", &a[..10]);
        // Another key, another order; the same key, the same one.
        assert_ne!(a[..20], take_all(PortOrder::Random(2))[..20]);
        assert_eq!(a[..20], take_all(PortOrder::Random(1))[..20]);
        // The permutation holds for any range size, even or odd in slots.
        for n in [1u32, 2, 3, 5, 63, 64, 65, 1000] {
            let mut seen: Vec<u32> = (0..n).map(|i| permute(i, n, 99)).collect();
            seen.sort_unstable();
            assert_eq!(seen, (0..n).collect::<Vec<_>>(), "n = {n}");
        }
    }

    #[test]
    fn create_allocates_an_even_port_per_leg_and_reports_it() {
        // In sequence here, to name the ports; the switch's tables use a random order.
        let mut t = sequential(20000, 20009, PORT_REUSE_DELAY);
        let ev = run(&mut t, &cmd(CommandKind::Create, 1, 1, &spec(4000)));
        assert_eq!(ev.len(), 1);
        assert_eq!(ev[0].kind(), Some(EventKind::Created));
        let ports: Vec<u16> = ev[0].body::<Created>().local.iter().map(|e| e.port).collect();
        assert_eq!(ports, vec![20000, 20002]);
        assert_eq!(t.get(1).unwrap().spec.legs[1].local.port, 20002);
    }

    #[test]
    fn upcoming_ports_are_the_ones_the_next_creates_get_within_the_range() {
        // Five RTP ports: 20000..=20008 (RTCP up to 20009, the range's end).
        let mut t = sequential(20000, 20009, PORT_REUSE_DELAY);
        run(&mut t, &cmd(CommandKind::Create, 1, 1, &spec(4000)));
        t.block(20006);
        // From the cursor on, skipping used and blocked ports, wrapping at the range's end.
        assert_eq!(t.upcoming_ports(8).collect::<Vec<_>>(), vec![20004, 20008]);
        run(&mut t, &cmd(CommandKind::Destroy, 1, 1, &spec(4000)));
        assert_eq!(t.upcoming_ports(8).collect::<Vec<_>>(), vec![20004, 20008, 20000, 20002]);
        assert_eq!(t.upcoming_ports(3).collect::<Vec<_>>(), vec![20004, 20008, 20000]);
        let ev = run(&mut t, &cmd(CommandKind::Create, 2, 1, &spec(4000)));
        let ports: Vec<u16> = ev[0].body::<Created>().local.iter().map(|e| e.port).collect();
        assert_eq!(ports, vec![20004, 20008], "the first two upcoming");
        assert_eq!(sequential(20000, 20000, PORT_REUSE_DELAY).upcoming_ports(4).count(), 0, "no room for RTP and RTCP");
    }

    #[test]
    fn a_destroyed_sessions_ports_come_back_only_after_the_reuse_delay_oldest_first() {
        let ms = |n: u64| n * 1_000_000;
        let mut t = sequential(20000, 20099, Duration::from_millis(2000));
        let ports = |ev: &[Event]| -> Vec<u16> { ev[0].body::<Created>().local.iter().map(|e| e.port).collect() };
        t.set_clock(ms(1000));
        assert_eq!(ports(&run(&mut t, &cmd(CommandKind::Create, 1, 1, &spec(4000)))), vec![20000, 20002]);
        assert_eq!(ports(&run(&mut t, &cmd(CommandKind::Create, 2, 1, &spec(4000)))), vec![20004, 20006]);
        run(&mut t, &Command::new(CommandKind::Destroy as u16, 0, 2, 0));
        t.set_clock(ms(1500));
        run(&mut t, &Command::new(CommandKind::Destroy as u16, 0, 1, 0));
        // Cooling: the next creates get ports never used.
        t.set_clock(ms(2999));
        assert_eq!(t.upcoming_ports(2).collect::<Vec<_>>(), vec![20008, 20010]);
        assert_eq!(ports(&run(&mut t, &cmd(CommandKind::Create, 3, 1, &spec(4000)))), vec![20008, 20010]);
        // 2 s after session 2 was destroyed its ports come back first; session 1's not yet.
        t.set_clock(ms(3000));
        assert_eq!(t.upcoming_ports(3).collect::<Vec<_>>(), vec![20004, 20006, 20012]);
        assert_eq!(ports(&run(&mut t, &cmd(CommandKind::Create, 4, 1, &spec(4000)))), vec![20004, 20006]);
        assert_eq!(ports(&run(&mut t, &cmd(CommandKind::Create, 5, 1, &spec(4000)))), vec![20012, 20014]);
        t.set_clock(ms(3500));
        assert_eq!(ports(&run(&mut t, &cmd(CommandKind::Create, 6, 1, &spec(4000)))), vec![20000, 20002]);
    }

    #[test]
    fn a_full_range_hands_out_the_oldest_cooling_port_and_a_replay_claims_a_cooling_one() {
        // Three RTP ports: 20000, 20002, 20004.
        let mut t = sequential(20000, 20005, Duration::from_secs(2));
        run(&mut t, &cmd(CommandKind::Create, 1, 1, &spec(4000)));
        t.set_clock(1);
        run(&mut t, &Command::new(CommandKind::Destroy as u16, 0, 1, 0));
        // 20000 and 20002 cool; 20004 is fresh, then the oldest cooling port.
        assert_eq!(t.upcoming_ports(4).collect::<Vec<_>>(), vec![20004, 20000, 20002]);
        let mut s = spec(4000);
        s.legs[0].local.port = 20002;
        s.legs[1].local.port = 20004;
        let ev = run(&mut t, &cmd(CommandKind::Create, 9, 1, &s));
        assert_eq!(ev[0].kind(), Some(EventKind::Created), "a replay gets its exact ports, cooling or not");
        assert_eq!(t.upcoming_ports(4).collect::<Vec<_>>(), vec![20000]);
        let ev = run(&mut t, &cmd(CommandKind::Create, 10, 1, &spec(4000)));
        assert_eq!(ev[0].body::<ErrorInfo>().code, error_code::NO_PORT);
        assert_eq!(t.upcoming_ports(4).collect::<Vec<_>>(), vec![20000], "a failed create leaks nothing");
    }

    #[test]
    fn replaying_a_create_is_idempotent_and_older_generations_change_nothing() {
        let mut t = sequential(20000, 20099, PORT_REUSE_DELAY);
        run(&mut t, &cmd(CommandKind::Create, 7, 3, &spec(4000)));
        let before = t.get(7).unwrap().clone();
        // The same create again (a replay) and an older update: nothing moves.
        for c in [cmd(CommandKind::Create, 7, 3, &spec(4000)), cmd(CommandKind::Update, 7, 2, &spec(5000))] {
            let ev = run(&mut t, &c);
            assert_eq!(ev[0].kind(), Some(EventKind::Updated));
            assert_eq!(ev[0].header.generation, 3);
        }
        assert_eq!(t.get(7), Some(&before));
        assert_eq!(t.len(), 1);
        // A newer one applies and keeps the local ports.
        let ev = run(&mut t, &cmd(CommandKind::Update, 7, 4, &spec(5000)));
        assert_eq!(ev[0].header.generation, 4);
        let s = t.get(7).unwrap();
        assert_eq!(s.spec.legs[0].remote.port, 5000);
        assert_eq!(s.spec.legs[0].local, before.spec.legs[0].local);
    }

    #[test]
    fn a_replayed_session_claims_the_ports_it_had() {
        let mut t = sequential(20000, 20099, PORT_REUSE_DELAY);
        let mut s = spec(4000);
        s.legs[0].local.port = 20050;
        s.legs[1].local.port = 20052;
        run(&mut t, &cmd(CommandKind::Create, 9, 1, &s));
        assert_eq!(t.get(9).unwrap().spec.legs[1].local.port, 20052);
        // Another session asking for a taken port is refused, and leaks nothing.
        let ev = run(&mut t, &cmd(CommandKind::Create, 10, 1, &s));
        assert_eq!(ev[0].kind(), Some(EventKind::Error));
        assert_eq!(ev[0].body::<ErrorInfo>().code, error_code::NO_PORT);
        assert_eq!(t.ports.used.len(), 2);
    }

    #[test]
    fn destroy_frees_ports_and_returns_the_counters() {
        let mut t = sequential(20000, 20003, PORT_REUSE_DELAY);
        run(&mut t, &cmd(CommandKind::Create, 1, 1, &spec(4000)));
        // The range holds one session (2 legs x RTP/RTCP pairs): a second has no port.
        let ev = run(&mut t, &cmd(CommandKind::Create, 2, 1, &spec(4000)));
        assert_eq!(ev[0].body::<ErrorInfo>().code, error_code::NO_PORT);
        let ev = run(&mut t, &Command::new(CommandKind::Destroy as u16, 0, 1, 0));
        assert_eq!(ev[0].kind(), Some(EventKind::Destroyed));
        assert_eq!(*ev[0].body::<StreamStats>(), StreamStats::default());
        assert!(t.is_empty());
        let ev = run(&mut t, &cmd(CommandKind::Create, 2, 1, &spec(4000)));
        assert_eq!(ev[0].kind(), Some(EventKind::Created));
        let ev = run(&mut t, &Command::new(CommandKind::Destroy as u16, 0, 99, 0));
        assert_eq!(ev[0].body::<ErrorInfo>().code, error_code::NO_SUCH_SESSION);
        assert_eq!(ev[0].body::<ErrorInfo>().text(), "no session 99");
    }

    #[test]
    fn query_lists_every_session_then_done_with_the_count() {
        let mut t = sequential(20000, 20099, PORT_REUSE_DELAY);
        for id in [5, 3, 8] {
            run(&mut t, &cmd(CommandKind::Create, id, 1, &spec(4000)));
        }
        let mut q = Command::new(CommandKind::Query as u16, 0, 0, 0);
        q.header.seq = 77;
        let ev = run(&mut t, &q);
        let got: Vec<(Option<EventKind>, u64, u32)> =
            ev.iter().map(|e| (e.kind(), e.header.session, e.header.seq)).collect();
        assert_eq!(
            got,
            vec![
                (Some(EventKind::SessionInfo), 3, 77),
                (Some(EventKind::SessionInfo), 5, 77),
                (Some(EventKind::SessionInfo), 8, 77),
                (Some(EventKind::QueryDone), 0, 77)
            ]
        );
        assert_eq!(ev[3].body::<Count>().count, 3);
        assert_eq!(*ev[0].body::<SessionSpec>(), t.get(3).unwrap().spec);
    }

    #[test]
    fn bad_input_gets_an_error_event_never_a_panic() {
        let mut t = SessionTable::with_order(1, 20000, 20099, PORT_REUSE_DELAY, PortOrder::Sequential);
        let wrong_core = Command::new(CommandKind::Ping as u16, 0, 0, 0);
        assert_eq!(run(&mut t, &wrong_core)[0].body::<ErrorInfo>().code, error_code::WRONG_CORE);
        let unknown = Command::new(999, 1, 0, 0);
        assert_eq!(run(&mut t, &unknown)[0].body::<ErrorInfo>().code, error_code::UNKNOWN_COMMAND);
        let mut s = spec(4000);
        s.legs[1].codec_count = 200;
        let c = Command::new(CommandKind::Create as u16, 1, 1, 1).with_body(&s);
        assert_eq!(run(&mut t, &c)[0].body::<ErrorInfo>().code, error_code::BAD_SPEC);
        let mut s = spec(4000);
        s.legs[0] = LegSpec { local: Endpoint { family: 9, ..Endpoint::default() }, ..LegSpec::default() };
        let c = Command::new(CommandKind::Create as u16, 1, 1, 1).with_body(&s);
        assert_eq!(run(&mut t, &c)[0].body::<ErrorInfo>().code, error_code::BAD_SPEC);
        assert!(t.is_empty());
        let ping = Command::new(CommandKind::Ping as u16, 1, 0, 0);
        assert_eq!(run(&mut t, &ping)[0].kind(), Some(EventKind::Pong));
    }
}
