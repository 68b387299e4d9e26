//! A subscription's acknowledgements, written by a task of its own: a
//! handling hands its delivery's acker over and finishes at once, instead of
//! waiting until lapin has written the frame, and the channel closes only
//! after every acknowledgement handed over was written (lapin writes them
//! concurrently, so each is waited for, not just the last).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use lapin::options::BasicAckOptions;
use switchboard_core::drain::Pending;
use tokio::sync::mpsc;

/// Acknowledgements written together at most (more wait for the next round).
const ROUND: usize = 256;

/// The way into a subscription's acknowledgement task.
#[derive(Clone)]
pub(crate) struct AckQueue {
    sender: mpsc::UnboundedSender<lapin::Acker>,
    unwritten: Arc<Pending>,
    /// Acknowledgements lapin could not write, over the subscription's life.
    failed: Arc<AtomicUsize>,
}

impl AckQueue {
    /// Starts the task; it ends once every clone of the queue is gone.
    pub(crate) fn start() -> Self {
        let (sender, receiver) = mpsc::unbounded_channel();
        let unwritten = Arc::new(Pending::default());
        let failed = Arc::new(AtomicUsize::new(0));
        tokio::spawn(write_acks(receiver, unwritten.clone(), failed.clone()));
        AckQueue {
            sender,
            unwritten,
            failed,
        }
    }

    /// Hands an acknowledgement over; gives the acker back if the task is gone.
    pub(crate) fn push(&self, acker: lapin::Acker) -> Result<(), lapin::Acker> {
        self.unwritten.add(1);
        self.sender.send(acker).map_err(|refused| {
            self.unwritten.done(1);
            refused.0
        })
    }

    /// Waits until everything handed over so far was written (or failed), at most `patience`.
    pub(crate) async fn written(&self, patience: Duration) {
        self.unwritten.settled(patience).await;
    }

    /// Waits as [`written`](Self::written) does, then says how many
    /// acknowledgements handed over were not written: failed over the
    /// subscription's life, or still waiting after `patience`.
    pub(crate) async fn not_written(&self, patience: Duration) -> usize {
        self.written(patience).await;
        self.failed.load(Ordering::Acquire) + self.unwritten.count()
    }
}

/// Writes what is handed over, a round at a time. An acknowledgement that
/// fails (the channel closed or broke) leaves its delivery to the broker,
/// which requeues it: delivered again, never lost. It is logged here and
/// counted for the subscription's settle (a `Service`'s shutdown report),
/// since the handling that acknowledged it has already finished.
async fn write_acks(
    mut receiver: mpsc::UnboundedReceiver<lapin::Acker>,
    unwritten: Arc<Pending>,
    failed_total: Arc<AtomicUsize>,
) {
    let mut round = Vec::with_capacity(64);
    while receiver.recv_many(&mut round, ROUND).await > 0 {
        let count = round.len();
        let written = futures_util::future::join_all(round.drain(..).map(|acker| async move {
            // `Ok(false)`: the channel broke first (lapin poisons its ackers).
            matches!(acker.ack(BasicAckOptions::default()).await, Ok(true))
        }))
        .await;
        let failed = written.iter().filter(|written| !**written).count();
        if failed > 0 {
            failed_total.fetch_add(failed, Ordering::AcqRel);
            tracing::warn!(
                failed,
                "amqp: acknowledgements not written; the broker requeues those deliveries and they are delivered again"
            );
        }
        unwritten.done(count);
    }
}
