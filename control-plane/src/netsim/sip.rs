//! Drives SIP transaction layers over a [`Network`] on a virtual clock.
//!
//! Each [`Endpoint`] is a [`TransactionLayer`] at one address plus a scripted transaction
//! user ([`Tu`], usually a closure). [`SipSim::run`] loops: deliver the datagrams due now
//! (parsed, then `handle_message`), fire due timers (`handle_timeout`), drain every
//! layer's outputs (transmissions go into the network, events to the endpoint's log and
//! its TU, which may respond or start requests), then jump the clock to the earliest of
//! the next delivery and every layer's `poll_timeout`. Nothing sleeps: a 64*T1 timeout
//! takes microseconds.

use std::net::SocketAddr;
use std::time::Instant;

use super::Network;
use crate::sip::message::{Framing, Message};
use crate::sip::transaction::{Event, Output, TimerConfig, TransactionLayer};
use crate::sip::transport::{Peer, TransportKind};

/// What a TU callback can use: the clock, its own address, and its layer.
pub struct TuContext<'a> {
    /// The virtual time of the event.
    pub now: Instant,
    /// The endpoint's address.
    pub local: SocketAddr,
    /// The endpoint's transaction layer, to respond, request or send statelessly.
    pub layer: &'a mut TransactionLayer,
}

/// A scripted transaction user.
pub trait Tu {
    /// Called for every event the endpoint's layer emits, in order.
    fn on_event(&mut self, ctx: &mut TuContext<'_>, event: &Event);
}

impl<F: FnMut(&mut TuContext<'_>, &Event)> Tu for F {
    fn on_event(&mut self, ctx: &mut TuContext<'_>, event: &Event) {
        self(ctx, event)
    }
}

/// One simulated SIP element.
pub struct Endpoint {
    /// Where it receives datagrams.
    pub addr: SocketAddr,
    /// Its transaction layer.
    pub layer: TransactionLayer,
    /// Every event its layer emitted, with the virtual time.
    pub log: Vec<(Instant, Event)>,
    tu: Box<dyn Tu>,
}

/// How [`SipSim::run`] ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunEnd {
    /// Nothing left in flight and no timer armed, at this instant.
    Idle(Instant),
    /// The next thing to happen lies beyond the bound; the clock stopped at the bound.
    Bound(Instant),
}

/// A virtual clock, a network and the endpoints on it.
pub struct SipSim {
    /// The network; set loss, delay and duplication on it before running.
    pub net: Network,
    now: Instant,
    endpoints: Vec<Endpoint>,
    transport: TransportKind,
}

impl SipSim {
    /// A simulation starting at `start`, over `net`, with every peer seen as UDP.
    pub fn new(net: Network, start: Instant) -> Self {
        SipSim { net, now: start, endpoints: Vec::new(), transport: TransportKind::Udp }
    }

    /// Adds an endpoint at `addr` and returns its index.
    pub fn add_endpoint(&mut self, addr: SocketAddr, config: TimerConfig, tu: impl Tu + 'static) -> usize {
        self.endpoints.push(Endpoint { addr, layer: TransactionLayer::new(config), log: Vec::new(), tu: Box::new(tu) });
        self.endpoints.len() - 1
    }

    /// The virtual time.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// Endpoint `i`. Panics if `i` was not returned by [`SipSim::add_endpoint`].
    pub fn endpoint(&self, i: usize) -> &Endpoint {
        &self.endpoints[i]
    }

    /// The peer endpoint `from` sees when talking to endpoint `to`. Panics on an index
    /// not returned by [`SipSim::add_endpoint`].
    pub fn peer(&self, from: usize, to: usize) -> Peer {
        Peer { transport: self.transport, remote: self.endpoints[to].addr, local: self.endpoints[from].addr }
    }

    /// Runs `f` as endpoint `i`'s TU at the current time (to start a request), then
    /// sends what it produced. Panics on an index not returned by [`SipSim::add_endpoint`].
    pub fn with_endpoint<R>(&mut self, i: usize, f: impl FnOnce(&mut TuContext<'_>) -> R) -> R {
        let now = self.now;
        let ep = &mut self.endpoints[i];
        let r = f(&mut TuContext { now, local: ep.addr, layer: &mut ep.layer });
        drain(now, ep, &mut self.net);
        r
    }

    /// Runs until nothing is left to do, or until the next thing lies beyond `bound`.
    pub fn run(&mut self, bound: Instant) -> RunEnd {
        loop {
            let now = self.now;
            while let Some(p) = self.net.deliver_due(now) {
                let Some(ep) = self.endpoints.iter_mut().find(|e| e.addr == p.to) else {
                    continue;
                };
                // Unparseable datagrams are dropped, as the UDP transport does.
                let Ok(msg) = Message::parse(p.bytes, Framing::Datagram) else {
                    continue;
                };
                let peer = Peer { transport: self.transport, remote: p.from, local: p.to };
                ep.layer.handle_message(now, msg, peer);
                drain(now, ep, &mut self.net);
            }
            for ep in &mut self.endpoints {
                ep.layer.handle_timeout(now);
                drain(now, ep, &mut self.net);
            }
            let next =
                self.endpoints.iter().filter_map(|e| e.layer.poll_timeout()).chain(self.net.next_delivery()).min();
            match next {
                None => return RunEnd::Idle(now),
                Some(t) if t > bound => {
                    self.now = bound.max(now);
                    return RunEnd::Bound(self.now);
                }
                Some(t) => self.now = t.max(now),
            }
        }
    }
}

/// Carries out everything endpoint `ep`'s layer has queued, TU reactions included.
fn drain(now: Instant, ep: &mut Endpoint, net: &mut Network) {
    while let Some(out) = ep.layer.poll_output() {
        match out {
            Output::Transmit { peer, bytes } => net.send(now, peer.local, peer.remote, bytes),
            Output::Event(event) => {
                ep.tu.on_event(&mut TuContext { now, local: ep.addr, layer: &mut ep.layer }, &event);
                ep.log.push((now, event));
            }
        }
    }
}
