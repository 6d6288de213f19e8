//! The control plane's side of the ring protocol, sans-IO.
//!
//! [`MediaLink`] holds the desired state of every media session (its core, generation and
//! spec) and turns calls to [`MediaLink::create`], [`MediaLink::update`] and
//! [`MediaLink::destroy`] into [`Command`]s, one outbox per core. The driver moves
//! commands from [`MediaLink::next_command`] into the rings (and back with
//! [`MediaLink::unsend`] when a ring is full) and feeds every [`Event`] to
//! [`MediaLink::handle_event`]; what the switch should hear comes out of
//! [`MediaLink::poll_event`].
//!
//! Attachment: whenever a media plane attaches (the first start, a restart, or this
//! control plane's own restart), the driver calls [`MediaLink::attached`]. The link first
//! asks every core what it holds, then reconciles:
//! - a session it wants and the media plane lacks is replayed (with the ports it had);
//! - one the media plane holds at an older generation is updated;
//! - one the media plane holds and the link never heard of is adopted (this control plane
//!   restarted), unless the link destroyed it while detached, in which case it is
//!   destroyed now.
//!
//! The media plane applies creates and updates by generation, so replaying twice is
//! harmless.

use std::collections::{HashMap, HashSet, VecDeque};

use ferroswitch_shared::msg::{
    Command, CommandKind, Created, Dtmf, ErrorInfo, Event, EventKind, Latched, SessionSpec, StreamStats, WorkerCounters,
};

use crate::management::histogram::{Histogram, JITTER_SECONDS, LOSS_RATIO};

/// A session as a media core reports it: (id, core, generation, spec).
pub type HeldSession = (u64, u16, u64, SessionSpec);

/// What the switch hears from the media plane.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum LinkEvent {
    /// A session exists on the media plane with these local ports (also after a replay).
    Ready {
        /// The session.
        id: u64,
        /// The spec with the media plane's local addresses filled in.
        spec: SessionSpec,
    },
    /// A media core's own counters (once a second).
    Worker { core: u16, counters: WorkerCounters },
    /// A destroyed session's final counters.
    Destroyed {
        /// The session.
        id: u64,
        /// Its counters.
        stats: StreamStats,
    },
    /// A command for this session failed.
    Failed {
        /// The session (0: core-wide).
        id: u64,
        /// Why.
        reason: String,
    },
    /// A leg's peer was latched.
    Latched {
        /// The session.
        id: u64,
        /// Where from.
        latched: Latched,
    },
    /// A DTMF digit.
    Dtmf {
        /// The session.
        id: u64,
        /// The event.
        dtmf: Dtmf,
    },
    /// A session's periodic counters.
    Stats {
        /// The session.
        id: u64,
        /// Its counters.
        stats: StreamStats,
    },
    /// No RTP for the session's timeout.
    RtpTimeout {
        /// The session.
        id: u64,
        /// Its counters.
        stats: StreamStats,
    },
    /// The answer to [`MediaLink::query`]: what the media plane holds, by id.
    QueryResult {
        /// The query's number.
        seq: u32,
        /// (id, core, generation, spec) of every session held.
        sessions: Vec<HeldSession>,
    },
    /// Reconciliation after an attachment finished.
    Reconciled {
        /// Sessions replayed to the media plane (it had lost them).
        replayed: usize,
        /// Sessions adopted from the media plane (this control plane had not known them).
        adopted: usize,
        /// Sessions the media plane already held.
        kept: usize,
    },
}

/// One session the link wants to exist.
#[derive(Debug, Clone, PartialEq)]
pub struct Desired {
    /// The core it lives on.
    pub core: u16,
    /// The generation of `spec`.
    pub generation: u64,
    /// The spec; local ports are filled in once the media plane reports them.
    pub spec: SessionSpec,
    /// Whether the media plane confirmed this generation.
    pub confirmed: bool,
}

/// Counters for operators.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct LinkStats {
    /// Commands handed to the driver.
    pub commands: u64,
    /// Times a ring was full and a command waited in the outbox.
    pub ring_full: u64,
    /// Events handled.
    pub events: u64,
    /// Error events received.
    pub errors: u64,
    /// Media plane attachments seen.
    pub attachments: u64,
    /// Each destroyed session's legs: their packet loss over the session's life, and
    /// their jitter at the end in seconds.
    #[serde(skip)]
    pub leg_loss: Histogram<{ LOSS_RATIO.len() }>,
    #[serde(skip)]
    pub leg_jitter_seconds: Histogram<{ JITTER_SECONDS.len() }>,
}

impl LinkStats {
    /// A destroyed session's final counters, its legs' clock rates (Hz) by leg.
    fn observe(&mut self, stats: &StreamStats, clocks: [u32; 2]) {
        for (leg, clock) in stats.legs.iter().zip(clocks) {
            let expected = leg.packets + leg.lost;
            if expected == 0 {
                continue; // a leg that never sent has no loss or jitter to tell
            }
            self.leg_loss.observe(&LOSS_RATIO, leg.lost as f64 / expected as f64);
            if clock > 0 {
                self.leg_jitter_seconds.observe(&JITTER_SECONDS, f64::from(leg.jitter) / f64::from(clock));
            }
        }
    }
}

/// Reconciliation in progress: the cores that have not finished answering the query.
#[derive(Debug)]
struct Reconcile {
    seq: u32,
    waiting: HashSet<u16>,
    /// What the media plane holds: id -> (core, generation, spec).
    held: HashMap<u64, (u16, u64, SessionSpec)>,
}

/// The control plane's view of the media plane. See the [module documentation](self).
#[derive(Debug)]
pub struct MediaLink {
    cores: u16,
    sessions: HashMap<u64, Desired>,
    per_core: Vec<usize>,
    /// Destroyed while no media plane was attached (or before it confirmed).
    tombstones: HashSet<u64>,
    /// Sessions destroyed and not yet reported, with their legs' clock rates (for the
    /// jitter histogram; forgotten when the media plane goes away).
    clocks: HashMap<u64, [u32; 2]>,
    outbox: Vec<VecDeque<Command>>,
    events: VecDeque<LinkEvent>,
    next_id: u64,
    seq: u32,
    attached: bool,
    reconcile: Option<Reconcile>,
    /// Queries asked through [`MediaLink::query`]: cores still to answer, answers so far.
    queries: HashMap<u32, (HashSet<u16>, Vec<HeldSession>)>,
    stats: LinkStats,
}

impl MediaLink {
    /// A link to a media plane with `cores` cores; session ids start at `first_id`
    /// (callers pass something that grows across restarts, e.g. the start time in µs, so
    /// ids never repeat an adopted session's).
    pub fn new(cores: u16, first_id: u64) -> MediaLink {
        let cores = cores.max(1);
        MediaLink {
            cores,
            sessions: HashMap::new(),
            per_core: vec![0; usize::from(cores)],
            tombstones: HashSet::new(),
            clocks: HashMap::new(),
            outbox: vec![VecDeque::new(); usize::from(cores)],
            events: VecDeque::new(),
            next_id: first_id.max(1),
            seq: 0,
            attached: false,
            reconcile: None,
            queries: HashMap::new(),
            stats: LinkStats::default(),
        }
    }

    /// Cores the link spreads sessions over.
    pub fn cores(&self) -> u16 {
        self.cores
    }

    /// The media plane has `cores` cores (it may differ from what the link was built with
    /// when an operator changed the media plane's configuration): sessions on cores that no
    /// longer exist move to others and are replayed there at the next reconciliation.
    pub fn set_cores(&mut self, cores: u16) {
        let cores = cores.max(1);
        if cores == self.cores {
            return;
        }
        self.cores = cores;
        self.outbox = vec![VecDeque::new(); usize::from(cores)];
        self.per_core = vec![0; usize::from(cores)];
        for (id, d) in &mut self.sessions {
            if d.core >= cores {
                d.core = (*id % u64::from(cores)) as u16;
                for leg in &mut d.spec.legs {
                    leg.local.port = 0;
                }
            }
            self.per_core[usize::from(d.core)] += 1;
        }
    }

    /// Asks every core what it holds; the answer comes as [`LinkEvent::QueryResult`] with
    /// the returned number (nothing comes while no media plane is attached).
    pub fn query(&mut self) -> u32 {
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        self.queries.insert(seq, ((0..self.cores).collect(), Vec::new()));
        for core in 0..self.cores {
            let mut q = Command::new(CommandKind::Query as u16, core, 0, 0);
            q.header.seq = seq;
            self.outbox[usize::from(core)].push_back(q);
        }
        seq
    }

    /// Creates a session on the least loaded core; returns its id. The media plane's
    /// answer arrives as [`LinkEvent::Ready`].
    pub fn create(&mut self, spec: SessionSpec) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        let core = (0..self.cores).min_by_key(|&c| self.per_core[usize::from(c)]).unwrap_or(0);
        self.per_core[usize::from(core)] += 1;
        self.sessions.insert(id, Desired { core, generation: 1, spec, confirmed: false });
        self.send(Command::new(CommandKind::Create as u16, core, id, 1).with_body(&spec));
        id
    }

    /// Replaces a session's spec (its local ports stay). False if there is no such session.
    pub fn update(&mut self, id: u64, spec: SessionSpec) -> bool {
        let Some(d) = self.sessions.get_mut(&id) else { return false };
        let mut next = spec;
        for (leg, held) in next.legs.iter_mut().zip(&d.spec.legs) {
            if held.local.port != 0 {
                leg.local = held.local;
            }
        }
        d.generation += 1;
        d.spec = next;
        d.confirmed = false;
        let cmd = Command::new(CommandKind::Update as u16, d.core, id, d.generation).with_body(&next);
        self.send(cmd);
        true
    }

    /// Destroys a session. False if there is no such session.
    pub fn destroy(&mut self, id: u64) -> bool {
        let Some(d) = self.sessions.remove(&id) else { return false };
        self.per_core[usize::from(d.core)] -= 1;
        // What its jitter is counted in: each leg's clock (its first codec's).
        let clock = |l: &ferroswitch_shared::msg::LegSpec| if l.codec_count > 0 { l.codecs[0].clock_rate } else { 0 };
        self.clocks.insert(id, [clock(&d.spec.legs[0]), clock(&d.spec.legs[1])]);
        // Whatever was still queued for it is moot.
        self.outbox[usize::from(d.core)].retain(|c| c.header.session != id);
        if !self.attached || self.reconcile.is_some() {
            self.tombstones.insert(id);
        }
        self.send(Command::new(CommandKind::Destroy as u16, d.core, id, d.generation));
        true
    }

    /// The sessions the link wants, by id.
    pub fn sessions(&self) -> &HashMap<u64, Desired> {
        &self.sessions
    }

    /// Counters.
    pub fn stats(&self) -> LinkStats {
        self.stats
    }

    /// Whether a media plane is attached and reconciled.
    pub fn ready(&self) -> bool {
        self.attached && self.reconcile.is_none()
    }

    /// Commands waiting for room in a ring, all cores.
    pub fn queued(&self) -> usize {
        self.outbox.iter().map(VecDeque::len).sum()
    }

    /// A media plane attached with `cores` cores (it must match the link's count; a
    /// mismatch is the caller's configuration error). Starts reconciliation.
    pub fn attached(&mut self) {
        self.stats.attachments += 1;
        self.attached = true;
        for q in &mut self.outbox {
            q.clear();
        }
        self.queries.clear();
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        self.reconcile = Some(Reconcile { seq, waiting: (0..self.cores).collect(), held: HashMap::new() });
        for core in 0..self.cores {
            let mut q = Command::new(CommandKind::Query as u16, core, 0, 0);
            q.header.seq = seq;
            self.outbox[usize::from(core)].push_back(q);
        }
    }

    /// The media plane went away; commands queue until the next attachment.
    pub fn detached(&mut self) {
        self.attached = false;
        self.reconcile = None;
        self.clocks.clear();
        self.queries.clear();
        for d in self.sessions.values_mut() {
            d.confirmed = false;
        }
    }

    /// The next command for `core`, if any (and if a media plane is attached).
    pub fn next_command(&mut self, core: u16) -> Option<Command> {
        if !self.attached {
            return None;
        }
        let c = self.outbox.get_mut(usize::from(core))?.pop_front()?;
        self.stats.commands += 1;
        Some(c)
    }

    /// The ring had no room for `cmd` (from [`MediaLink::next_command`]): it goes back to
    /// the front of its outbox and is counted.
    pub fn unsend(&mut self, cmd: Command) {
        self.stats.commands -= 1;
        self.stats.ring_full += 1;
        if let Some(q) = self.outbox.get_mut(usize::from(cmd.header.core)) {
            q.push_front(cmd);
        }
    }

    /// What the switch should hear next.
    pub fn poll_event(&mut self) -> Option<LinkEvent> {
        self.events.pop_front()
    }

    /// An event from a media core.
    pub fn handle_event(&mut self, ev: &Event) {
        self.stats.events += 1;
        let h = ev.header;
        let id = h.session;
        match ev.kind() {
            Some(EventKind::Created | EventKind::Updated) => {
                let created = ev.body::<Created>();
                if let Some(d) = self.sessions.get_mut(&id) {
                    for (leg, local) in d.spec.legs.iter_mut().zip(created.local) {
                        leg.local = local;
                    }
                    if h.generation >= d.generation {
                        d.confirmed = true;
                    }
                    self.events.push_back(LinkEvent::Ready { id, spec: d.spec });
                }
            }
            Some(EventKind::Destroyed) => {
                self.tombstones.remove(&id);
                if let Some(clocks) = self.clocks.remove(&id) {
                    self.stats.observe(ev.body::<StreamStats>(), clocks);
                }
                self.events.push_back(LinkEvent::Destroyed { id, stats: *ev.body::<StreamStats>() });
            }
            Some(EventKind::SessionInfo) => {
                if let Some(r) = self.reconcile.as_mut().filter(|r| r.seq == h.seq) {
                    r.held.insert(id, (h.core, h.generation, *ev.body::<SessionSpec>()));
                } else if let Some((_, got)) = self.queries.get_mut(&h.seq) {
                    got.push((id, h.core, h.generation, *ev.body::<SessionSpec>()));
                }
            }
            Some(EventKind::QueryDone) => {
                let done = match self.reconcile.as_mut().filter(|r| r.seq == h.seq) {
                    Some(r) => {
                        r.waiting.remove(&h.core);
                        r.waiting.is_empty()
                    }
                    None => false,
                };
                if done {
                    self.finish_reconcile();
                }
                let answered = self.queries.get_mut(&h.seq).is_some_and(|(waiting, _)| {
                    waiting.remove(&h.core);
                    waiting.is_empty()
                });
                if answered {
                    if let Some((_, mut sessions)) = self.queries.remove(&h.seq) {
                        sessions.sort_by_key(|s| s.0);
                        self.events.push_back(LinkEvent::QueryResult { seq: h.seq, sessions });
                    }
                }
            }
            Some(EventKind::Latched) => {
                self.events.push_back(LinkEvent::Latched { id, latched: *ev.body::<Latched>() });
            }
            Some(EventKind::Dtmf) => self.events.push_back(LinkEvent::Dtmf { id, dtmf: *ev.body::<Dtmf>() }),
            Some(EventKind::Stats) => {
                self.events.push_back(LinkEvent::Stats { id, stats: *ev.body::<StreamStats>() });
            }
            Some(EventKind::WorkerStats) => {
                self.events.push_back(LinkEvent::Worker { core: h.core, counters: *ev.body::<WorkerCounters>() });
            }
            Some(EventKind::RtpTimeout) => {
                self.events.push_back(LinkEvent::RtpTimeout { id, stats: *ev.body::<StreamStats>() });
            }
            Some(EventKind::Error) => {
                self.stats.errors += 1;
                let reason = ev.body::<ErrorInfo>().text().to_string();
                self.tombstones.remove(&id);
                self.events.push_back(LinkEvent::Failed { id, reason });
            }
            // Pongs and kinds from a newer media plane carry nothing to act on here.
            _ => {}
        }
    }

    fn finish_reconcile(&mut self) {
        let Some(r) = self.reconcile.take() else { return };
        let (mut replayed, mut adopted, mut kept) = (0, 0, 0);
        for (&id, &(core, generation, spec)) in &r.held {
            if self.tombstones.remove(&id) {
                self.send(Command::new(CommandKind::Destroy as u16, core, id, generation));
                continue;
            }
            match self.sessions.get_mut(&id) {
                Some(d) if d.generation > generation => {
                    // The media plane lags (an update it never saw): send ours.
                    let cmd = Command::new(CommandKind::Update as u16, d.core, id, d.generation).with_body(&d.spec);
                    self.send(cmd);
                    kept += 1;
                }
                Some(d) => {
                    d.spec = spec;
                    d.generation = generation;
                    d.core = core;
                    d.confirmed = true;
                    kept += 1;
                }
                None if usize::from(core) < self.per_core.len() => {
                    self.sessions.insert(id, Desired { core, generation, spec, confirmed: true });
                    self.per_core[usize::from(core)] += 1;
                    self.next_id = self.next_id.max(id + 1);
                    adopted += 1;
                }
                None => {}
            }
        }
        // Destroys queued while detached for sessions the media plane no longer holds.
        self.tombstones.clear();
        let mut missing: Vec<u64> = self.sessions.keys().filter(|id| !r.held.contains_key(id)).copied().collect();
        // Sessions that keep their ports claim them before any that needs a fresh one.
        missing.sort_unstable_by_key(|id| (self.sessions[id].spec.legs.iter().any(|l| l.local.port == 0), *id));
        for id in missing {
            let d = &self.sessions[&id];
            let cmd = Command::new(CommandKind::Create as u16, d.core, id, d.generation).with_body(&d.spec);
            self.send(cmd);
            replayed += 1;
        }
        self.events.push_back(LinkEvent::Reconciled { replayed, adopted, kept });
    }

    fn send(&mut self, cmd: Command) {
        // While reconciling, only the queries go out; the reconciliation replays the rest.
        if self.reconcile.is_some() && cmd.kind() != Some(CommandKind::Query) {
            return;
        }
        if let Some(q) = self.outbox.get_mut(usize::from(cmd.header.core)) {
            q.push_back(cmd);
        }
    }
}

#[cfg(test)]
mod tests {
    //! The link against real media-core session tables, over bounded in-memory rings:
    //! a deterministic two-peer harness for the ring protocol, restarts included.
    use std::collections::VecDeque;
    use std::net::SocketAddr;

    /// A media core's table handing out ports lowest first, so tests can name them.
    fn sequential(core: u16, min: u16, max: u16) -> SessionTable {
        use ferroswitch_media_plane::sessions::{PortOrder, PORT_REUSE_DELAY};
        SessionTable::with_order(core, min, max, PORT_REUSE_DELAY, PortOrder::Sequential)
    }

    use ferroswitch_media_plane::sessions::{any_port, SessionTable};
    use ferroswitch_shared::msg::{codec, Endpoint, PayloadMap};

    use super::*;

    const CORES: u16 = 2;

    struct Harness {
        link: MediaLink,
        tables: Vec<SessionTable>,
        ring_capacity: usize,
        heard: Vec<LinkEvent>,
    }

    fn tables() -> Vec<SessionTable> {
        // Core 0 gets 20000-20999, core 1 21000-21999, as the media plane splits its range.
        (0..CORES).map(|c| sequential(c, 20000 + 1000 * c, 20999 + 1000 * c)).collect()
    }

    impl Harness {
        fn new(ring_capacity: usize) -> Harness {
            let mut link = MediaLink::new(CORES, 1_000);
            link.attached();
            let mut h = Harness { link, tables: tables(), ring_capacity, heard: Vec::new() };
            h.drive();
            h
        }

        /// Moves commands through rings of `ring_capacity` and events back until quiet.
        fn drive(&mut self) {
            loop {
                let mut moved = false;
                for core in 0..self.link.cores() {
                    let mut ring = VecDeque::new();
                    while let Some(c) = self.link.next_command(core) {
                        if ring.len() == self.ring_capacity {
                            self.link.unsend(c);
                            break;
                        }
                        ring.push_back(c);
                    }
                    for c in ring {
                        moved = true;
                        let mut out = Vec::new();
                        self.tables[usize::from(core)].apply(&c, |e| out.push(e));
                        for e in out {
                            self.link.handle_event(&e);
                        }
                    }
                }
                while let Some(e) = self.link.poll_event() {
                    self.heard.push(e);
                }
                if !moved {
                    return;
                }
            }
        }

        /// Every session the media cores hold: (id, generation, spec), by id.
        fn held(&self) -> Vec<(u64, u64, SessionSpec)> {
            let mut v: Vec<_> =
                self.tables.iter().flat_map(|t| t.iter().map(|(id, s)| (id, s.generation, s.spec))).collect();
            v.sort_by_key(|x| x.0);
            v
        }

        fn reconciled(&self) -> Option<&LinkEvent> {
            self.heard.iter().rev().find(|e| matches!(e, LinkEvent::Reconciled { .. }))
        }
    }

    fn spec(n: u16) -> SessionSpec {
        let mut s = SessionSpec::default();
        for (i, leg) in s.legs.iter_mut().enumerate() {
            leg.local = any_port("127.0.0.1".parse().unwrap());
            let remote: SocketAddr = format!("192.0.2.{}:{}", 10 + i, 4000 + 2 * n).parse().unwrap();
            leg.remote = Endpoint::from_addr(remote);
            leg.codec_count = 1;
            leg.codecs[0] = PayloadMap { clock_rate: 8000, pt: 0, codec: codec::PCMU, channels: 1, _pad: 0 };
        }
        s
    }

    #[test]
    fn sessions_spread_over_cores_and_come_back_with_their_ports() {
        let mut h = Harness::new(64);
        let ids: Vec<u64> = (0..100).map(|n| h.link.create(spec(n))).collect();
        h.drive();
        assert_eq!(ids.first(), Some(&1_000));
        assert_eq!((h.tables[0].len(), h.tables[1].len()), (50, 50));
        let ready = h.heard.iter().filter(|e| matches!(e, LinkEvent::Ready { .. })).count();
        assert_eq!(ready, 100);
        // The link learnt each leg's port, and it is the one the core holds.
        for (id, d) in h.link.sessions() {
            let held = h.tables[usize::from(d.core)].get(*id).expect("held");
            assert_eq!(held.spec, d.spec);
            assert!(d.confirmed);
            assert_ne!(d.spec.legs[0].local.port, 0);
        }
    }

    #[test]
    fn a_restarted_media_plane_gets_every_session_replayed_with_the_same_ports() {
        let mut h = Harness::new(64);
        for n in 0..100 {
            h.link.create(spec(n));
        }
        h.drive();
        let before = h.held();
        // The media plane dies: a new one has empty tables.
        h.link.detached();
        h.tables = tables();
        h.link.attached();
        h.drive();
        assert_eq!(h.reconciled(), Some(&LinkEvent::Reconciled { replayed: 100, adopted: 0, kept: 0 }));
        assert_eq!(h.held(), before);
    }

    #[test]
    fn a_restarted_control_plane_adopts_what_the_media_plane_holds_and_can_destroy_it() {
        let mut h = Harness::new(64);
        for n in 0..100 {
            h.link.create(spec(n));
        }
        h.drive();
        let old: HashMap<u64, Desired> = h.link.sessions().clone();
        // The control plane dies; a new one attaches to the same media plane.
        h.link = MediaLink::new(CORES, 500);
        h.link.attached();
        h.drive();
        assert_eq!(h.reconciled(), Some(&LinkEvent::Reconciled { replayed: 0, adopted: 100, kept: 0 }));
        assert_eq!(h.link.sessions(), &old);
        // New ids never collide with adopted ones.
        let fresh = h.link.create(spec(500));
        assert_eq!(fresh, old.keys().max().unwrap() + 1);
        for id in old.keys() {
            assert!(h.link.destroy(*id));
        }
        h.drive();
        assert_eq!((h.tables[0].len() + h.tables[1].len()), 1);
        let destroyed = h.heard.iter().filter(|e| matches!(e, LinkEvent::Destroyed { .. })).count();
        assert_eq!(destroyed, 100);
    }

    #[test]
    fn changes_made_while_detached_reach_the_media_plane_on_reattach() {
        let mut h = Harness::new(64);
        let a = h.link.create(spec(1));
        let b = h.link.create(spec(2));
        h.drive();
        // The control plane loses the media plane (which keeps running), and meanwhile
        // destroys a, updates b and creates c.
        h.link.detached();
        assert!(h.link.destroy(a));
        let mut s = spec(2);
        s.legs[1].remote.port = 9000;
        assert!(h.link.update(b, s));
        let c = h.link.create(spec(3));
        h.drive();
        assert!(h.tables.iter().any(|t| t.get(a).is_some()), "nothing moves while detached");
        h.link.attached();
        h.drive();
        assert_eq!(h.reconciled(), Some(&LinkEvent::Reconciled { replayed: 1, adopted: 0, kept: 1 }));
        assert!(h.tables.iter().all(|t| t.get(a).is_none()));
        let held_b = h.tables.iter().find_map(|t| t.get(b)).expect("b");
        assert_eq!((held_b.generation, held_b.spec.legs[1].remote.port), (2, 9000));
        assert!(h.tables.iter().any(|t| t.get(c).is_some()));
    }

    #[test]
    fn a_query_lists_what_every_core_holds() {
        let mut h = Harness::new(64);
        let ids: Vec<u64> = (0..5).map(|n| h.link.create(spec(n))).collect();
        h.drive();
        let seq = h.link.query();
        h.drive();
        let Some(LinkEvent::QueryResult { seq: got, sessions }) =
            h.heard.iter().rev().find(|e| matches!(e, LinkEvent::QueryResult { .. }))
        else {
            panic!("no query result in {:?}", h.heard)
        };
        assert_eq!(*got, seq);
        assert_eq!(sessions.iter().map(|s| s.0).collect::<Vec<_>>(), ids);
        assert_eq!(sessions.iter().map(|s| s.1).collect::<Vec<_>>(), vec![0, 1, 0, 1, 0]);
    }

    #[test]
    fn fewer_media_cores_move_sessions_and_replay_them() {
        let mut h = Harness::new(64);
        for n in 0..4 {
            h.link.create(spec(n));
        }
        h.drive();
        // A media plane with one core attaches.
        h.link.detached();
        h.tables = vec![sequential(0, 20000, 20999)];
        h.link.set_cores(1);
        h.link.attached();
        h.drive();
        assert_eq!(h.reconciled(), Some(&LinkEvent::Reconciled { replayed: 4, adopted: 0, kept: 0 }));
        assert_eq!(h.tables[0].len(), 4);
        assert!(h.link.sessions().values().all(|d| d.core == 0 && d.confirmed));
    }

    #[test]
    fn a_full_ring_holds_commands_back_and_counts_without_losing_any() {
        let mut h = Harness::new(4);
        for n in 0..50 {
            h.link.create(spec(n));
        }
        h.drive();
        assert_eq!(h.tables[0].len() + h.tables[1].len(), 50);
        // 25 creates per core through a 4-slot ring: 6 full rings per core (after 4, 8,
        // ..., 24 of them), then 1 left.
        assert_eq!(h.link.stats().ring_full, 12);
        assert_eq!(h.link.queued(), 0);
    }
}
