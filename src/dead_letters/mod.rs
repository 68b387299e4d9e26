//! Dead letters kept in an embedded SQLite file, listed, inspected, replayed
//! and purged (feature `dead-letters`; `switchboard dead-letters` on the
//! command line).
//!
//! A service publishes each event it gives up on to its dead-letter subject
//! (`dead-letter.{service}` by default) with the reason in `sb-dead-letter-*`
//! headers. A [`Keeper`] subscribes to those subjects (`dead-letter.>`, in
//! the queue group `switchboard-dead-letters`, so several keepers share the
//! work) and writes each into a [`DeadLetterStore`] before acknowledging it,
//! on every backend. On Kafka and JetStream the broker keeps dead letters
//! while no keeper runs; on memory, HTTP, gRPC and core NATS a dead letter
//! published while no keeper runs is not kept (memory, HTTP and gRPC count
//! it in [`Bus::unrouted_total`](crate::Bus::unrouted_total)), so run the
//! keeper alongside the services there. [`DeadLetterStore::replay`] publishes a dead letter's event to
//! its original subject again, as a new event (its handler's attempts start
//! over) marked `sb-dead-letter-replayed: ID`, and removes it from the store
//! only once the backend accepted it.
//!
//! ```no_run
//! # async fn demo() -> switchboard::Result<()> {
//! use switchboard::dead_letters::{DeadLetterStore, DEFAULT_PATTERN};
//!
//! let bus = switchboard::connect("nats://127.0.0.1:4222").await?;
//! let store = DeadLetterStore::open("dead-letters.db").await?;
//! let keeper = store.keep(&bus, DEFAULT_PATTERN).await?;
//! // … later, from any process that opens the same file:
//! for letter in store.list().await? {
//!     println!("{} {} after {} attempts: {}", letter.id, letter.subject, letter.attempts, letter.error);
//! }
//! if let Some(first) = store.list().await?.first() {
//!     store.replay(&bus, first.id).await?;
//! }
//! let report = keeper.stop().await;
//! println!("kept {} dead letters", report.kept);
//! # Ok(()) }
//! ```

mod letter;
mod store;

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::bus::Bus;
use crate::error::{Error, Result};
use crate::subscription::Subscription;
use crate::transport::Reach;
use crate::wire;
pub use letter::DeadLetter;
use store::Store;

/// The subjects a keeper takes by default: every service's default dead-letter subject.
pub const DEFAULT_PATTERN: &str = "dead-letter.>";

/// The queue group keepers share, so each dead letter is kept once.
pub const KEEPER_GROUP: &str = "switchboard-dead-letters";

/// On a replayed event: the id the dead letter had in the store.
pub const REPLAYED: &str = "sb-dead-letter-replayed";

/// Dead letters kept in an SQLite file (created if missing). Several
/// processes may open one file: a keeper writing, the command line reading.
#[derive(Clone)]
pub struct DeadLetterStore {
    store: Store,
}

impl DeadLetterStore {
    /// Opens the store at `path`; a file that is not a database, or a
    /// directory that cannot be written, is an [`Error::InvalidConfig`] naming it.
    pub async fn open(path: impl AsRef<Path>) -> Result<DeadLetterStore> {
        Ok(DeadLetterStore {
            store: Store::open(path.as_ref()).await?,
        })
    }

    /// Starts keeping the dead letters published to `pattern` on `bus` (in
    /// the queue group [`KEEPER_GROUP`]) until [`Keeper::stop`]. Each is in
    /// the file before it is acknowledged (see [`DeadLetter::from_message`]
    /// for messages that are not quite dead letters).
    pub async fn keep(&self, bus: &Bus, pattern: &str) -> Result<Keeper> {
        let subscription = if bus.capabilities().queue_groups.is_supported() {
            bus.queue_subscribe(pattern, KEEPER_GROUP).await?
        } else {
            bus.subscribe(pattern).await?
        };
        let counts = Arc::new(KeeperCounts::default());
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(keep(
            self.store.clone(),
            subscription,
            counts.clone(),
            stopped,
        ));
        Ok(Keeper {
            task,
            stop: Some(stop),
            counts,
        })
    }

    /// Every dead letter kept, oldest first.
    pub async fn list(&self) -> Result<Vec<DeadLetter>> {
        self.store.list().await
    }

    /// The dead letter with this id, if it is kept.
    pub async fn get(&self, id: i64) -> Result<Option<DeadLetter>> {
        self.store.get(id).await
    }

    /// Publishes dead letter `id`'s event to its original subject, marked
    /// [`REPLAYED`], and removes it from the store once the backend accepted
    /// it. It stays kept if the publish fails (an invalid subject, a
    /// transport that is down) or, on backends that can tell, reached no
    /// subscriber; an id not kept is an [`Error::Usage`].
    pub async fn replay(&self, bus: &Bus, id: i64) -> Result<()> {
        let letter = self
            .store
            .get(id)
            .await?
            .ok_or_else(|| Error::usage(format!("no dead letter {id} in the store")))?;
        // A forged letter may name anything: check it as any publish would.
        crate::subject::validate(&letter.subject)?;
        let mut event = letter.message.clone();
        event.headers.insert(REPLAYED, id.to_string());
        match bus.publish_reserved_reach(&letter.subject, event).await? {
            Reach::Nobody => Err(Error::NoResponders {
                subject: letter.subject,
            }),
            _ => {
                self.store.remove(id).await?;
                Ok(())
            }
        }
    }

    /// Removes dead letter `id` without replaying it; whether it was kept.
    pub async fn purge(&self, id: i64) -> Result<bool> {
        self.store.remove(id).await
    }

    /// Removes every dead letter; how many there were.
    pub async fn purge_all(&self) -> Result<u64> {
        self.store.remove_all().await
    }

    /// Closes the file (after a keeper using it stopped).
    pub async fn close(&self) {
        self.store.close().await;
    }
}

#[derive(Default)]
struct KeeperCounts {
    kept: AtomicU64,
    failed: AtomicU64,
}

/// A running keeper, from [`DeadLetterStore::keep`].
pub struct Keeper {
    task: JoinHandle<()>,
    stop: Option<oneshot::Sender<()>>,
    counts: Arc<KeeperCounts>,
}

/// What a keeper did, from [`Keeper::stop`] or [`Keeper::report`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct KeeperReport {
    /// Dead letters written to the store.
    pub kept: u64,
    /// Dead letters the store could not take (each was nacked: where the
    /// backend redelivers, it comes back; elsewhere it is lost and logged).
    pub failed: u64,
}

impl Keeper {
    /// What it did so far.
    pub fn report(&self) -> KeeperReport {
        KeeperReport {
            kept: self.counts.kept.load(Ordering::Relaxed),
            failed: self.counts.failed.load(Ordering::Relaxed),
        }
    }

    /// Stops taking dead letters, keeps the ones already received, and reports.
    pub async fn stop(mut self) -> KeeperReport {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.task).await;
        self.report()
    }
}

impl Drop for Keeper {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// How long a keeper that cannot stop its subscription's intake waits for
/// quiet before it lets go.
const QUIET: Duration = Duration::from_millis(200);

/// The longest a stopping keeper spends keeping what it already received.
const DRAIN: Duration = Duration::from_secs(10);

async fn keep(
    store: Store,
    mut subscription: Subscription,
    counts: Arc<KeeperCounts>,
    mut stopped: oneshot::Receiver<()>,
) {
    loop {
        tokio::select! {
            _ = &mut stopped => break,
            next = subscription.next() => match next {
                Some(incoming) => keep_one(&store, incoming, &counts).await,
                None => return,
            },
        }
    }
    // What was received stays kept: stop the intake, then read to the end,
    // within `DRAIN` even if dead letters keep coming (the intake could not
    // be stopped); what arrives after that is the next keeper's, or lost on
    // backends that do not keep events.
    let stopped_intake = subscription.stop_taking();
    let deadline = tokio::time::Instant::now() + DRAIN;
    loop {
        let quiet = if stopped_intake { DRAIN } else { QUIET };
        let within = quiet.min(deadline.saturating_duration_since(tokio::time::Instant::now()));
        match tokio::time::timeout(within, subscription.next()).await {
            Ok(Some(incoming)) => keep_one(&store, incoming, &counts).await,
            Ok(None) | Err(_) => return,
        }
    }
}

async fn keep_one(store: &Store, mut incoming: crate::incoming::Incoming, counts: &KeeperCounts) {
    let letter = DeadLetter::from_message(incoming.subject(), incoming.message());
    let message_id = incoming.headers().get(wire::MESSAGE_ID).map(str::to_owned);
    match store.record(&letter, message_id.as_deref()).await {
        Ok(_) => {
            counts.kept.fetch_add(1, Ordering::Relaxed);
            if let Err(err) = incoming.ack().await {
                tracing::warn!(subject = %incoming.subject(), error = %err, "dead letters: kept, but not acknowledged; it may be kept again");
            }
        }
        Err(err) => {
            // Not in the file: where the backend redelivers, it comes back.
            tracing::error!(subject = %incoming.subject(), error = %err, "dead letters: could not keep a dead letter");
            counts.failed.fetch_add(1, Ordering::Relaxed);
            let _ = incoming.nack().await;
        }
    }
}
