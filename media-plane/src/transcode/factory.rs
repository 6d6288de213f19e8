//! Codec state made and destroyed off the media workers. Creating a session's Opus encoder
//! and decoder costs about 25 µs (libopus's allocations and set-up: `create+destroy` in
//! `benches/benches/transcode.rs`), and a worker spending it would hold up every other
//! session's packets on its core. So a worker orders a session's [`Transcoder`] from the
//! factory (one thread for the media plane), goes on relaying, and installs it when it
//! comes back (the factory rings the worker's doorbell); the session's audio until then,
//! a packet or two at the start of a call, is dropped and counted. Transcoders a worker
//! no longer needs go back to the factory to be destroyed.

use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Arc;

use ferroswitch_shared::doorbell::Doorbell;
use ferroswitch_shared::msg::LegSpec;

use super::{TranscodeError, Transcoder};
use crate::codec::opus;

/// What a worker orders: a transcoder between `legs`.
#[derive(Debug, Clone, Copy)]
pub struct Order {
    /// The worker's number for the order, echoed in [`Made`].
    pub ticket: u64,
    /// The session's legs.
    pub legs: [LegSpec; 2],
    /// The Opus encoder's configured settings.
    pub params: opus::Params,
    /// Seeds the outgoing streams.
    pub seed: u64,
}

/// An order filled.
pub struct Made {
    /// The order's ticket.
    pub ticket: u64,
    /// The transcoder, or why it could not be made.
    pub result: Result<Box<Transcoder>, TranscodeError>,
}

enum Job {
    Make { order: Box<Order>, reply: Sender<Made>, wake: Arc<Doorbell> },
    Destroy(Box<Transcoder>),
}

/// The factory's thread (it ends once the factory and every client are gone).
pub struct Factory {
    jobs: Sender<Job>,
}

impl Factory {
    /// Starts the thread.
    pub fn start() -> std::io::Result<Factory> {
        let (jobs, rx) = mpsc::channel::<Job>();
        std::thread::Builder::new().name("media-codecs".into()).spawn(move || {
            while let Ok(job) = rx.recv() {
                match job {
                    Job::Make { order, reply, wake } => {
                        let result = Transcoder::new(&order.legs, &order.params, order.seed).map(Box::new);
                        if reply.send(Made { ticket: order.ticket, result }).is_ok() {
                            wake.ring();
                        }
                    }
                    Job::Destroy(t) => drop(t),
                }
            }
        })?;
        Ok(Factory { jobs })
    }

    /// A worker's counter at the factory; `wake` is rung when an order is filled.
    pub fn client(&self, wake: Doorbell) -> FactoryClient {
        let (reply, made) = mpsc::channel();
        FactoryClient { jobs: self.jobs.clone(), reply, made, wake: Arc::new(wake) }
    }
}

/// One worker's end: orders go in, filled ones come back.
pub struct FactoryClient {
    jobs: Sender<Job>,
    reply: Sender<Made>,
    made: Receiver<Made>,
    wake: Arc<Doorbell>,
}

impl FactoryClient {
    /// Orders a transcoder; false if the factory is gone.
    pub fn order(&self, order: Order) -> bool {
        self.jobs.send(Job::Make { order: Box::new(order), reply: self.reply.clone(), wake: self.wake.clone() }).is_ok()
    }

    /// Hands a transcoder over to be destroyed (dropped here if the factory is gone).
    pub fn destroy(&self, t: Box<Transcoder>) {
        let _ = self.jobs.send(Job::Destroy(t));
    }

    /// An order filled since last asked, if any (never blocks).
    pub fn take(&self) -> Option<Made> {
        self.made.try_recv().ok()
    }
}

#[cfg(test)]
mod tests {
    use ferroswitch_shared::msg::{codec, PayloadMap};

    use super::*;

    fn leg(c: u8, pt: u8, rate: u32) -> LegSpec {
        let mut l = LegSpec { codec_count: 1, ptime_ms: 20, ..LegSpec::default() };
        l.codecs[0] = PayloadMap { clock_rate: rate, pt, codec: c, channels: 1, _pad: 0 };
        l
    }

    #[test]
    fn orders_are_filled_on_the_factorys_thread_and_the_worker_is_rung() {
        let f = Factory::start().unwrap();
        let bell = Doorbell::new().unwrap();
        let c = f.client(Doorbell::from_fd(bell.fd().try_clone().unwrap()));
        let legs = [leg(codec::PCMU, 0, 8000), leg(codec::OPUS, 111, 48000)];
        assert!(c.order(Order { ticket: 7, legs, params: opus::Params::default(), seed: 1 }));
        assert!(bell.wait(Some(std::time::Duration::from_secs(5))), "rung when filled");
        let made = c.take().expect("filled");
        assert_eq!(made.ticket, 7);
        let t = made.result.expect("a transcoder");
        assert!(t.serves(&legs));
        c.destroy(t);
        // An order that cannot be filled says why.
        let bad = [leg(codec::PCMU, 0, 8000), leg(codec::OTHER, 34, 90000)];
        assert!(c.order(Order { ticket: 8, legs: bad, params: opus::Params::default(), seed: 1 }));
        assert!(bell.wait(Some(std::time::Duration::from_secs(5))));
        let made = c.take().expect("filled");
        assert_eq!((made.ticket, made.result.err()), (8, Some(TranscodeError::NoCodec(1))));
        assert!(c.take().is_none());
    }
}
