//! One media core: a thread (pinned when configured) that owns a [`SessionTable`] and,
//! while a control plane is attached, the core's two rings.
//!
//! The loop drains commands in batches, applies them and pushes the events; when the
//! command ring is empty it announces it is going to sleep and waits on the ring's
//! doorbell (or its own wake-up eventfd, which the main thread rings to hand it new rings
//! or stop it). The relay (issue 5) joins this loop.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, TryRecvError};
use std::time::{Duration, Instant};

use ferroswitch_shared::doorbell::Doorbell;
use ferroswitch_shared::msg::Event;
use ferroswitch_shared::ring::Producer;
use ferroswitch_shared::segment::MediaEnds;
use tracing::{info, warn};

use crate::sessions::SessionTable;

/// What the main thread tells a worker.
pub enum WorkerMsg {
    /// A control plane attached: these are the core's rings and doorbells.
    Attach {
        /// The rings.
        ends: MediaEnds,
        /// Rung by the control plane when it queues commands for a sleeping core.
        commands_bell: Doorbell,
        /// Rung by this core when it queues events for a sleeping control plane.
        events_bell: Doorbell,
    },
    /// The control plane went away: drop the rings, keep the sessions.
    Detach,
    /// Exit the thread.
    Stop,
}

/// How many commands one loop turn takes before it looks at anything else.
const BATCH: usize = 64;
/// How long a full event ring is retried before the event is dropped (and counted).
const EVENT_RING_PATIENCE: Duration = Duration::from_secs(1);

struct Attached {
    ends: MediaEnds,
    commands_bell: Doorbell,
    events_bell: Doorbell,
}

/// Runs core `core` until [`WorkerMsg::Stop`] (or the sender is gone).
pub fn run(mut table: SessionTable, pin: Option<usize>, rx: Receiver<WorkerMsg>, wake: Doorbell, held: &AtomicUsize) {
    let core = table.core();
    if let Some(id) = pin {
        if core_affinity::set_for_current(core_affinity::CoreId { id }) {
            info!(core, cpu = id, "media worker pinned");
        } else {
            warn!(core, cpu = id, "media worker could not be pinned");
        }
    }
    let mut attached: Option<Attached> = None;
    let mut dropped_events: u64 = 0;
    loop {
        loop {
            match rx.try_recv() {
                Ok(WorkerMsg::Attach { ends, commands_bell, events_bell }) => {
                    attached = Some(Attached { ends, commands_bell, events_bell });
                }
                Ok(WorkerMsg::Detach) => attached = None,
                Ok(WorkerMsg::Stop) | Err(TryRecvError::Disconnected) => return,
                Err(TryRecvError::Empty) => break,
            }
        }
        let Some(a) = attached.as_mut() else {
            wake.wait(None);
            continue;
        };
        let mut events = Vec::new();
        let n = a.ends.commands.drain(BATCH, |cmd| table.apply(cmd, |e| events.push(e)));
        if !events.is_empty() {
            for e in &events {
                if !push_event(&mut a.ends.events, e) {
                    dropped_events += 1;
                    if dropped_events.is_power_of_two() {
                        warn!(core, dropped_events, "event ring full for a second: event dropped");
                    }
                }
            }
            if a.ends.events.consumer_sleeping() {
                a.events_bell.ring();
            }
        }
        if n > 0 {
            held.store(table.len(), Ordering::Relaxed);
        }
        if n == 0 && a.ends.commands.prepare_sleep() {
            wait_either(&a.commands_bell, &wake);
            a.ends.commands.woke();
        }
    }
}

/// Pushes `e`, retrying while the ring is full (the control plane is busy), for at most
/// [`EVENT_RING_PATIENCE`]. False if it gave up.
fn push_event(ring: &mut Producer<Event>, e: &Event) -> bool {
    if ring.try_push(e).is_ok() {
        return true;
    }
    let deadline = Instant::now() + EVENT_RING_PATIENCE;
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_micros(50));
        if ring.try_push(e).is_ok() {
            return true;
        }
    }
    false
}

/// Sleeps until either doorbell rings (or 100 ms pass: a safety net), then clears both.
fn wait_either(a: &Doorbell, b: &Doorbell) {
    use std::os::fd::AsRawFd;
    let mut fds = [
        libc::pollfd { fd: a.as_raw_fd(), events: libc::POLLIN, revents: 0 },
        libc::pollfd { fd: b.as_raw_fd(), events: libc::POLLIN, revents: 0 },
    ];
    // SAFETY: fds is a valid array of two pollfd for the duration of the call.
    unsafe { libc::poll(fds.as_mut_ptr(), 2, 100) };
    a.clear();
    b.clear();
}
