//! A media core's session table, sans-IO: commands in, events out.
//!
//! The table owns the core's slice of the RTP port range and its sessions. It applies
//! [`Command`]s idempotently by generation (a replay after a restart, or twice, ends in
//! the same table) and answers every command with the state it holds. The worker thread
//! only moves commands from the ring into [`SessionTable::apply`] and events back out;
//! the relay (issue 5) will hang its per-stream state off [`Session`].

use std::collections::{BTreeSet, HashMap};

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

/// A contiguous range of even RTP ports (RTCP on the odd port above each).
#[derive(Debug, Clone)]
struct Ports {
    min: u16,
    max: u16,
    /// Ports in use (RTP ports, even).
    used: BTreeSet<u16>,
    /// Where the next search starts, so freed ports are not reused at once.
    next: u16,
}

impl Ports {
    fn new(min: u16, max: u16) -> Ports {
        let min = min + (min & 1); // first even port
        Ports { min, max, used: BTreeSet::new(), next: min }
    }

    /// Even ports in the range whose RTCP port (+1) is in the range too.
    fn slots(&self) -> u32 {
        if self.max <= self.min {
            0
        } else {
            (u32::from(self.max) - u32::from(self.min)).div_ceil(2)
        }
    }

    fn allocate(&mut self) -> Option<u16> {
        let n = self.slots();
        for i in 0..n {
            let offset = (u32::from(self.next - self.min) / 2 + i) % n;
            let port = self.min + (offset * 2) as u16;
            if self.used.insert(port) {
                self.next = if u32::from(port) + 2 > u32::from(self.max) { self.min } else { port + 2 };
                return Some(port);
            }
        }
        None
    }

    /// Takes a specific port (a replayed session keeps the ports its SDP announced).
    fn claim(&mut self, port: u16) -> bool {
        port >= self.min && port < self.max && port % 2 == self.min % 2 && self.used.insert(port)
    }

    fn release(&mut self, port: u16) {
        self.used.remove(&port);
    }

    /// The ports [`Ports::allocate`] hands out next, in that order, at most `n`.
    fn upcoming(&self, n: usize) -> impl Iterator<Item = u16> + '_ {
        let (slots, start) = (self.slots(), u32::from(self.next - self.min) / 2);
        (0..slots)
            .map(move |i| self.min + (((start + i) % slots) * 2) as u16)
            .filter(|p| !self.used.contains(p))
            .take(n)
    }
}

/// The sessions of one media core.
#[derive(Debug)]
pub struct SessionTable {
    core: u16,
    ports: Ports,
    sessions: HashMap<u64, Session>,
}

impl SessionTable {
    /// An empty table for `core`, handing out RTP ports from `port_min..=port_max`.
    pub fn new(core: u16, port_min: u16, port_max: u16) -> SessionTable {
        SessionTable { core, ports: Ports::new(port_min, port_max), sessions: HashMap::new() }
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
            self.ports.release(leg.local.port);
        }
        Some(s)
    }

    /// Marks `port` (and its RTCP port) as unusable: another process holds it. Later
    /// allocations skip it.
    pub fn block(&mut self, port: u16) {
        self.ports.used.insert(port & !1);
    }

    /// The RTP ports the next creates will get (at most `n`, in order) unless a replay
    /// claims some first: the worker binds them ahead. Their RTCP ports are one above.
    pub fn upcoming_ports(&self, n: usize) -> impl Iterator<Item = u16> + '_ {
        self.ports.upcoming(n)
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
                        self.ports.release(leg.local.port);
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
                self.ports.allocate()
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
                        self.ports.release(p);
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

    #[test]
    fn create_allocates_an_even_port_per_leg_and_reports_it() {
        let mut t = SessionTable::new(0, 20000, 20009);
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
        let mut t = SessionTable::new(0, 20000, 20009);
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
        assert_eq!(SessionTable::new(0, 20000, 20000).upcoming_ports(4).count(), 0, "no room for RTP and RTCP");
    }

    #[test]
    fn replaying_a_create_is_idempotent_and_older_generations_change_nothing() {
        let mut t = SessionTable::new(0, 20000, 20099);
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
        let mut t = SessionTable::new(0, 20000, 20099);
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
        let mut t = SessionTable::new(0, 20000, 20003);
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
        let mut t = SessionTable::new(0, 20000, 20099);
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
        let mut t = SessionTable::new(1, 20000, 20099);
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
