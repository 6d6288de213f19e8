//! The control↔media rings: one-way throughput and round-trip latency between two threads,
//! spinning, and the round trip when the receiving side sleeps on its eventfd doorbell.
//!
//! `cargo bench -p ferroswitch-benches --bench rings -- --warm-up-time 1 --measurement-time 3`
//! Figures and the machine they came from: docs/performance.md.
//!
//! The bench thread is pinned to CPU 0 and the other thread to CPU 1 (when the machine
//! has two), so every message crosses cores. Commands and events travel on a real
//! segment (memfd, `Segment::create`) with rings of [`CAPACITY`] slots; the comparisons
//! (256-byte commands on a heap ring, a 64-byte message) use in-process rings
//! (`ring::pair`) of the same capacity. `rings_same_thread` is the floor: the same
//! pushes and drains on one thread, so no cache line crosses cores.
//!
//! The one-way benches also print how many messages a non-empty drain took on average:
//! the fewer, the more often the index lines cross between the cores.

use std::hint::{black_box, spin_loop};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ferroswitch_shared::doorbell::Doorbell;
use ferroswitch_shared::msg::{Command, CommandKind, Event, EventKind};
use ferroswitch_shared::ring::{self, Consumer, Producer};
use ferroswitch_shared::segment::{ControlEnds, MediaEnds, Segment};
use ferroswitch_shared::Pod;

/// Slots per ring.
const CAPACITY: usize = 1024;

/// The most messages a consumer takes per drain.
const BATCH: usize = 256;

/// A 64-byte message, for comparison with the 256-byte commands.
type Small = [u64; 8];

/// Pins the calling thread to `cpu`, if the process may run there.
fn pin(cpu: usize) {
    // The CPUs this process may use, read once: `get_core_ids` reads the calling thread's
    // affinity, which after a first pin is that one CPU (and a spawned thread inherits it).
    static CPUS: OnceLock<Vec<core_affinity::CoreId>> = OnceLock::new();
    let cpus = CPUS.get_or_init(|| core_affinity::get_core_ids().unwrap_or_default());
    if let Some(id) = cpus.iter().find(|c| c.id == cpu) {
        assert!(core_affinity::set_for_current(*id), "pinning to CPU {cpu}");
    }
}

/// Both ends of core 0's two rings, from a fresh segment.
fn segment() -> (ControlEnds, MediaEnds) {
    let seg = Segment::create(1, CAPACITY).expect("segment");
    let control = seg.control_ends().expect("control ends").swap_remove(0);
    let media = seg.media_ends().expect("media ends").swap_remove(0);
    (control, media)
}

fn ping(seq: u64) -> Command {
    let mut c = Command::new(CommandKind::Ping as u16, 0, seq, 1);
    c.header.seq = seq as u32;
    c
}

fn pong(c: &Command) -> Event {
    let mut e = Event::new(EventKind::Pong as u16, c.header.core, c.header.session, c.header.generation);
    e.header.seq = c.header.seq;
    e
}

/// How the one-way consumer polls.
#[derive(Clone, Copy, PartialEq)]
enum Poll {
    /// Drains again at once (one pause instruction when the ring was empty).
    Eager,
    /// After a drain that took fewer than [`BATCH_BELOW`] messages, pauses [`PAUSES`] times
    /// before the next, so the producer gets ahead and the next drain takes more.
    Batching,
}

const BATCH_BELOW: usize = 32;
const PAUSES: usize = 8;

/// `iters` messages from this thread (CPU 0) to a consumer thread (CPU 1), both spinning;
/// the consumer copies each message out. Timed from the first push to the last drain.
fn one_way<T: Pod + Send>(
    (mut p, mut c): (Producer<T>, Consumer<T>),
    poll: Poll,
    iters: u64,
    stamp: impl Fn(&mut T, u64),
) -> Duration {
    pin(0);
    let ready = AtomicBool::new(false);
    let mut msg = T::zeroed();
    std::thread::scope(|s| {
        let consumer = s.spawn(|| {
            pin(1);
            ready.store(true, Ordering::Release);
            let (mut n, mut drains) = (0, 0);
            while n < iters {
                let got = c.drain(BATCH, |m| {
                    black_box(*m);
                });
                if got == 0 && poll == Poll::Eager {
                    spin_loop();
                } else if got < BATCH_BELOW && poll == Poll::Batching {
                    (0..PAUSES).for_each(|_| spin_loop());
                }
                drains += u64::from(got > 0);
                n += got as u64;
            }
            DRAINS.fetch_add(drains, Ordering::Relaxed);
            MESSAGES.fetch_add(n, Ordering::Relaxed);
        });
        while !ready.load(Ordering::Acquire) {
            spin_loop();
        }
        let start = Instant::now();
        for i in 0..iters {
            stamp(&mut msg, i);
            while p.try_push(&msg).is_err() {
                spin_loop();
            }
        }
        consumer.join().expect("consumer");
        start.elapsed()
    })
}

/// Non-empty drains and the messages they took, over the one-way runs of one message size.
static DRAINS: AtomicU64 = AtomicU64::new(0);
static MESSAGES: AtomicU64 = AtomicU64::new(0);

/// Prints (to stderr) how many messages a non-empty drain took on average since the last
/// call: near 1 means the consumer keeps catching up with the producer.
fn report_batches(name: &str) {
    let (drains, messages) = (DRAINS.swap(0, Ordering::Relaxed), MESSAGES.swap(0, Ordering::Relaxed));
    if drains > 0 {
        eprintln!(
            "{name}: {messages} messages in {drains} non-empty drains ({:.1} per drain)",
            messages as f64 / drains as f64
        );
    }
}

/// `iters` messages pushed and drained by this thread alone, [`BATCH`] at a time: the
/// instructions and copies of a message without any cache line crossing cores.
fn same_thread<T: Pod>(
    (mut p, mut c): (Producer<T>, Consumer<T>),
    iters: u64,
    stamp: impl Fn(&mut T, u64),
) -> Duration {
    let mut msg = T::zeroed();
    let start = Instant::now();
    let mut i = 0;
    while i < iters {
        let n = (iters - i).min(BATCH as u64);
        for k in i..i + n {
            stamp(&mut msg, k);
            p.try_push(&msg).expect("a batch fits");
        }
        c.drain(BATCH, |m| {
            black_box(*m);
        });
        i += n;
    }
    start.elapsed()
}

fn throughput(c: &mut Criterion) {
    let mut g = c.benchmark_group("rings_same_thread");
    g.throughput(Throughput::Elements(1));
    g.bench_function("command_256B", |b| {
        b.iter_custom(|iters| {
            let (control, media) = segment();
            same_thread((control.commands, media.commands), iters, |m: &mut Command, i| m.header.seq = i as u32)
        })
    });
    g.bench_function("pod_64B", |b| {
        b.iter_custom(|iters| same_thread(ring::pair::<Small>(CAPACITY).expect("ring"), iters, |m, i| m[0] = i))
    });
    g.finish();

    let mut g = c.benchmark_group("rings_one_way");
    g.throughput(Throughput::Elements(1));
    for (poll, suffix) in [(Poll::Eager, ""), (Poll::Batching, "_batching_consumer")] {
        let name = format!("command_256B{suffix}");
        g.bench_function(&name, |b| {
            b.iter_custom(|iters| {
                let (control, media) = segment();
                one_way((control.commands, media.commands), poll, iters, |m: &mut Command, i| m.header.seq = i as u32)
            })
        });
        report_batches(&name);
        let name = format!("heap_command_256B{suffix}");
        g.bench_function(&name, |b| {
            b.iter_custom(|iters| {
                let ring = ring::pair::<Command>(CAPACITY).expect("ring");
                one_way(ring, poll, iters, |m: &mut Command, i| m.header.seq = i as u32)
            })
        });
        report_batches(&name);
        let name = format!("pod_64B{suffix}");
        g.bench_function(&name, |b| {
            b.iter_custom(|iters| one_way(ring::pair::<Small>(CAPACITY).expect("ring"), poll, iters, |m, i| m[0] = i))
        });
        report_batches(&name);
    }
    g.finish();
}

/// How the pong side waits for the next ping.
#[derive(Clone, Copy, PartialEq)]
enum Pong {
    /// Polls its command ring without pause.
    Spins,
    /// Sleeps on the doorbell whenever its command ring is empty (prepare_sleep, wait,
    /// woke); the ping side rings when `consumer_sleeping` says so.
    SleepsOnDoorbell,
}

/// Doorbell rings and round trips over the sleeping runs.
static RINGS: AtomicU64 = AtomicU64::new(0);
static TRIPS: AtomicU64 = AtomicU64::new(0);

/// `iters` round trips: this thread (CPU 0) pushes a ping command and spins until the
/// pong event comes back from the other thread (CPU 1).
fn round_trips(iters: u64, mode: Pong) -> Duration {
    pin(0);
    let (mut control, mut media) = segment();
    let bell = Doorbell::new().expect("eventfd");
    let ready = AtomicBool::new(false);
    std::thread::scope(|s| {
        let ponger = s.spawn(|| {
            pin(1);
            ready.store(true, Ordering::Release);
            let mut n = 0;
            while n < iters {
                if let Some(c) = media.commands.pop() {
                    while media.events.try_push(&pong(&c)).is_err() {
                        spin_loop();
                    }
                    n += 1;
                } else if mode == Pong::Spins {
                    spin_loop();
                } else if media.commands.prepare_sleep() {
                    bell.wait(Some(Duration::from_secs(1)));
                    media.commands.woke();
                }
            }
        });
        while !ready.load(Ordering::Acquire) {
            spin_loop();
        }
        let mut rings = 0;
        let start = Instant::now();
        for i in 0..iters {
            control.commands.try_push(&ping(i)).expect("one ping in flight at a time");
            if mode == Pong::SleepsOnDoorbell && control.commands.consumer_sleeping() {
                bell.ring();
                rings += 1;
            }
            loop {
                if let Some(e) = control.events.pop() {
                    assert_eq!(e.header.seq, i as u32, "pongs come back in order");
                    break;
                }
                spin_loop();
            }
        }
        let elapsed = start.elapsed();
        ponger.join().expect("ponger");
        if mode == Pong::SleepsOnDoorbell {
            RINGS.fetch_add(rings, Ordering::Relaxed);
            TRIPS.fetch_add(iters, Ordering::Relaxed);
        }
        elapsed
    })
}

fn latency(c: &mut Criterion) {
    let mut g = c.benchmark_group("rings_round_trip");
    g.throughput(Throughput::Elements(1));
    g.bench_function("both_spin", |b| b.iter_custom(|iters| round_trips(iters, Pong::Spins)));
    g.bench_function("pong_sleeps_on_doorbell", |b| b.iter_custom(|iters| round_trips(iters, Pong::SleepsOnDoorbell)));
    g.finish();
    let (rings, trips) = (RINGS.load(Ordering::Relaxed), TRIPS.load(Ordering::Relaxed));
    if trips > 0 {
        eprintln!(
            "pong_sleeps_on_doorbell: {rings} doorbell rings in {trips} round trips ({:.3} per trip)",
            rings as f64 / trips as f64
        );
    }
}

criterion_group!(benches, throughput, latency);
criterion_main!(benches);
