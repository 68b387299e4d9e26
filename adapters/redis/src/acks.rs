//! Acknowledgements of group events, sent in batches: one `XACK` per stream
//! carries every id acknowledged while the previous one was on its way, so
//! a burst costs a round trip per batch instead of one per event, and a
//! handling does not wait on the server for its acknowledgement.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use redis::aio::ConnectionManager;
use switchboard_core::drain::Pending;
use tokio::sync::mpsc;

/// Ids acknowledged in one batch at most (a longer `XACK` waits for the next).
const BATCH: usize = 1024;

/// One acknowledged event: its stream key, its subscription's group and its id.
pub(crate) struct Acked {
    pub key: Arc<str>,
    pub group: Arc<GroupAcks>,
    pub id: String,
}

/// One group subscription's acknowledgements in the queue: its group, how
/// many are not sent yet and how many failed.
pub(crate) struct GroupAcks {
    pub name: Arc<str>,
    unsent: Pending,
    failed: AtomicUsize,
}

impl GroupAcks {
    /// The acknowledgements of a subscription of group `name`.
    pub(crate) fn new(name: Arc<str>) -> Self {
        GroupAcks {
            name,
            unsent: Pending::default(),
            failed: AtomicUsize::new(0),
        }
    }

    /// Waits until this subscription's queued acknowledgements were sent
    /// or failed, at most `patience`, then says how many were not sent:
    /// failed over the subscription's life, or still queued.
    pub(crate) async fn not_sent(&self, patience: Duration) -> usize {
        self.unsent.settled(patience).await;
        self.failed.load(Ordering::Acquire) + self.unsent.count()
    }
}

/// The way into a transport's acknowledgement task, and how many
/// acknowledgements it has not sent yet.
#[derive(Clone)]
pub(crate) struct AckQueue {
    sender: mpsc::UnboundedSender<Acked>,
    unsent: Arc<Pending>,
}

impl AckQueue {
    /// Starts the task that sends what is queued, on `commands`.
    pub(crate) fn start(commands: ConnectionManager) -> Self {
        let (sender, receiver) = mpsc::unbounded_channel();
        let unsent = Arc::new(Pending::default());
        tokio::spawn(send_batches(receiver, commands, unsent.clone()));
        AckQueue { sender, unsent }
    }

    /// Queues an acknowledgement; gives it back if the task is gone.
    pub(crate) fn push(&self, acked: Acked) -> Result<(), Acked> {
        self.unsent.add(1);
        acked.group.unsent.add(1);
        self.sender.send(acked).map_err(|refused| {
            self.unsent.done(1);
            refused.0.group.unsent.done(1);
            refused.0
        })
    }

    /// Waits until everything queued so far was sent (or failed), at most `patience`.
    pub(crate) async fn flushed(&self, patience: Duration) {
        self.unsent.settled(patience).await;
    }
}

/// Sends what is queued, an `XACK` per stream and group, until every
/// sender is gone. An `XACK` that fails is tried once more; what still
/// fails stays pending in the group, and a member claims it again after
/// `claim_idle` (delivered twice, never lost); it is logged and counted for
/// its subscription's settle (a `Service`'s shutdown report).
async fn send_batches(
    mut receiver: mpsc::UnboundedReceiver<Acked>,
    mut commands: ConnectionManager,
    unsent: Arc<Pending>,
) {
    let mut batch = Vec::with_capacity(64);
    while receiver.recv_many(&mut batch, BATCH).await > 0 {
        let mut rest = batch.as_slice();
        while let Some(first) = rest.first() {
            let same = rest
                .iter()
                .take_while(|acked| {
                    acked.key == first.key && Arc::ptr_eq(&acked.group, &first.group)
                })
                .count();
            let (run, after) = rest.split_at(same);
            let mut xack = redis::cmd("XACK");
            xack.arg(&*first.key).arg(&*first.group.name);
            for acked in run {
                xack.arg(&acked.id);
            }
            let mut sent = xack.query_async::<()>(&mut commands).await;
            if sent.is_err() {
                sent = xack.query_async::<()>(&mut commands).await;
            }
            if let Err(err) = sent {
                first.group.failed.fetch_add(run.len(), Ordering::AcqRel);
                tracing::warn!(stream = %first.key, count = run.len(), error = %err, "redis: acknowledgements not sent; the events will be claimed and delivered again");
            }
            first.group.unsent.done(run.len());
            rest = after;
        }
        unsent.done(batch.len());
        batch.clear();
    }
}
