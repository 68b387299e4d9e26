//! The outbox (feature `outbox`): async sends written to an embedded SQLite
//! file before they count as accepted, then forwarded by a relay that
//! removes each only once a recipient took it.
//!
//! Configured by [`OutboxSettings`] (`[outbox]`
//! with a `path`). What "accepted" means then: the event is in the file, so
//! it survives the sending process being killed, a recipient that is away
//! (no subscriber: held and retried), and a transport that is down (held and
//! retried). It is delivered at least once — a relay killed between a
//! delivery and its removal delivers that event again after the restart —
//! in send order per subject; or, held longer than `max_age`, published to
//! the `dead_letter` subject with the reason, and counted. A send while
//! `max_events` are held fails with [`Error::OutboxFull`].
//!
//! Only transports that do not keep events for an absent consumer use it
//! (memory, HTTP, gRPC, core NATS); Kafka and JetStream subjects go straight
//! to their broker, which keeps them.
//!
//! The same file keeps the message ids that services on this bus handled on
//! routes with `dedup = "10m"` (see `RouteRule::dedup`), so a second
//! delivery of an event — this relay forwarding it again after a crash, a
//! Kafka or JetStream redelivery — does not run its handler again. Every
//! send the outbox holds gets an `sb-message-id` if it has none.

mod dedup;
mod relay;
mod shared;
mod store;
mod transaction;

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch, Notify};
use tokio::task::JoinHandle;

use crate::error::{Error, Result};
use crate::message::Message;
use crate::settings::outbox::OutboxSettings;
use crate::wire;
pub(crate) use dedup::{Begun, Claim, Dedup};
pub(crate) use relay::Routes;
use shared::{now_ms, Shared};
/// The sqlx this crate is built with, for the transactions of
/// [`Bus::send_in`](crate::Bus::send_in) (their types must be its own).
pub use sqlx;
use store::sqlite::SqliteStore;
use store::{Entry, Store};
pub use transaction::OutboxConnection;

/// Sends waiting for the writer at once; the writer commits them together.
const WRITE_QUEUE: usize = 4096;

/// The most sends committed in one statement.
const MAX_BATCH: usize = store::MAX_ROWS;

/// What a bus's outbox holds, from [`Bus::outbox_stats`](crate::Bus::outbox_stats).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct OutboxStats {
    /// Sends held now: in the file, not yet taken by a recipient.
    pub pending: u64,
    /// Sends dead-lettered so far because no recipient took them within `max_age`.
    pub expired: u64,
}

/// A queue group an outbox file remembers, from [`remembered_groups`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RememberedGroup {
    /// The subject or pattern the group subscribed to.
    pub pattern: String,
    /// The group's name (a [`Service`](crate::Service)'s name).
    pub name: String,
    /// When it was last seen subscribed, in milliseconds since the Unix epoch.
    pub seen_ms: i64,
    /// Events the file holds for it.
    pub held: u64,
}

/// The queue groups the outbox file at `path` remembers, with what it holds
/// for each. The file must not be in use (a running bus holds it).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> switchboard::Result<()> {
/// use switchboard::settings::OutboxSettings;
///
/// let path = std::env::temp_dir().join(format!("sb-groups-doc-{}.db", std::process::id()));
/// let settings = OutboxSettings { path: Some(path.clone()), ..OutboxSettings::default() };
/// let bus = switchboard::connect("memory://groups-doc").await?.with_outbox(&settings).await?;
/// let _billing = bus.queue_subscribe("orders.placed", "billing").await?;
/// bus.publish("orders.placed", switchboard::Message::new("1")).await?;
/// # tokio::time::sleep(std::time::Duration::from_millis(200)).await;
/// bus.close().await?;
/// let groups = switchboard::outbox::remembered_groups(&path).await?;
/// assert_eq!(groups[0].name, "billing");
/// # for suffix in ["", "-wal", "-shm"] { let _ = std::fs::remove_file(format!("{}{suffix}", path.display())); }
/// # Ok(()) }
/// ```
pub async fn remembered_groups(path: &Path) -> Result<Vec<RememberedGroup>> {
    let store = open_existing(path).await?;
    let outcome = async {
        let held: std::collections::HashMap<_, u64> = store.backlog().await?.into_iter().fold(
            std::collections::HashMap::new(),
            |mut held, ((_, group), count)| {
                *held.entry(group).or_default() += count;
                held
            },
        );
        let mut groups: Vec<RememberedGroup> = store
            .groups()
            .await?
            .into_iter()
            .map(|(group, seen_ms)| RememberedGroup {
                held: held.get(&group).copied().unwrap_or(0),
                pattern: group.0,
                name: group.1,
                seen_ms,
            })
            .collect();
        groups.sort_by(|a, b| (&a.name, &a.pattern).cmp(&(&b.name, &b.pattern)));
        Ok(groups)
    }
    .await;
    store.close().await;
    outcome
}

/// Forgets the queue group `name` (on every pattern) in the outbox file at
/// `path`, for a service that is gone for good: the next bus to open the
/// file dead-letters what was held for it, with the reason. Returns how many
/// (pattern, group) entries were forgotten. The file must not be in use.
pub async fn forget_group(path: &Path, name: &str) -> Result<usize> {
    let store = open_existing(path).await?;
    let outcome = async {
        let mut forgotten = 0;
        for (group, _) in store.groups().await? {
            if group.1 == name {
                store.forget_group(&group).await?;
                forgotten += 1;
            }
        }
        Ok(forgotten)
    }
    .await;
    store.close().await;
    outcome
}

/// Opens an outbox file that must exist already (a typo is not a new file).
async fn open_existing(path: &Path) -> Result<Store> {
    if !path.is_file() {
        return Err(Error::config(format!(
            "no outbox file at {}",
            path.display()
        )));
    }
    Ok(Store::new(Arc::new(SqliteStore::open(path).await?)))
}

/// The database an outbox keeps its events in, for a caller's transaction
/// that sends with [`Bus::send_in`](crate::Bus::send_in).
#[derive(Clone)]
pub(crate) enum Database {
    Sqlite(Arc<SqliteStore>),
    #[cfg(feature = "outbox-postgres")]
    Postgres(Arc<store::postgres::PgStore>),
}

/// Opens the store `settings` name: the SQLite file at `path`, or the
/// PostgreSQL database at `url`.
async fn open_store(settings: &OutboxSettings) -> Result<(Store, Database)> {
    match (&settings.path, &settings.url) {
        (Some(path), None) => {
            let sqlite = Arc::new(SqliteStore::open(path).await?);
            Ok((Store::new(sqlite.clone()), Database::Sqlite(sqlite)))
        }
        #[cfg(feature = "outbox-postgres")]
        (None, Some(url)) => {
            let postgres = Arc::new(store::postgres::PgStore::open(url).await?);
            Ok((Store::new(postgres.clone()), Database::Postgres(postgres)))
        }
        #[cfg(not(feature = "outbox-postgres"))]
        (None, Some(_)) => Err(Error::config(
            "`[outbox] url` (PostgreSQL) needs the `outbox-postgres` feature of switchboard, which this build does not enable",
        )),
        (Some(_), Some(_)) => Err(Error::config(
            "`[outbox]` has both a `path` and a `url`; give one: the SQLite file or the PostgreSQL database",
        )),
        (None, None) => Err(Error::config(
            "the outbox needs a `path` for its SQLite file or a `url` for its PostgreSQL database",
        )),
    }
}

/// A bus's outbox: the writer that commits sends and the relay that forwards them.
pub(crate) struct Outbox {
    shared: Arc<Shared>,
    database: Database,
    writes: mpsc::Sender<Write>,
    stop: watch::Sender<bool>,
    /// The writer and the relay, awaited by [`close`](Self::close).
    tasks: std::sync::Mutex<Vec<JoinHandle<()>>>,
    /// Each route's dedup, by `service/route` and window, while in use.
    dedups: std::sync::Mutex<HashMap<(String, Duration), std::sync::Weak<Dedup>>>,
}

/// One send and who waits for its commit.
struct Write {
    entry: Entry,
    done: oneshot::Sender<Result<()>>,
}

impl Outbox {
    /// Opens the store of `settings` and starts the writer and the relay,
    /// which forwards through `routes`. Fails at once for a file that cannot
    /// be opened, is not a database, or is held by another process, and for
    /// a database that cannot be reached.
    pub(crate) async fn open(settings: &OutboxSettings, routes: Routes) -> Result<Outbox> {
        let (store, database) = open_store(settings).await?;
        let opened = async {
            let pending = store.count().await?;
            let changes = store.listen().await?;
            Ok::<_, Error>((pending, changes))
        };
        let (pending, changes) = match opened.await {
            Ok(opened) => opened,
            Err(err) => {
                store.close().await;
                return Err(err);
            }
        };
        let shared = Arc::new(Shared {
            store,
            settings: settings.clone(),
            pending: AtomicU64::new(pending),
            expired: AtomicU64::new(0),
            committed: Notify::new(),
            counting: tokio::sync::Mutex::new(()),
        });
        if pending > 0 {
            tracing::info!(pending, "outbox: forwarding events held from before");
        }
        let (writes, queue) = mpsc::channel(WRITE_QUEUE);
        let (stop, stopped) = watch::channel(false);
        let mut tasks = vec![
            tokio::spawn(write(shared.clone(), queue, stopped.clone())),
            tokio::spawn(relay::run(shared.clone(), routes, stopped.clone())),
        ];
        if let Some(changes) = changes {
            tasks.push(tokio::spawn(wake_on_commits(
                shared.clone(),
                changes,
                stopped,
            )));
        }
        Ok(Outbox {
            shared,
            database,
            writes,
            stop,
            tasks: std::sync::Mutex::new(tasks),
            dedups: std::sync::Mutex::new(HashMap::new()),
        })
    }

    /// Writes one send; returns once it is in the file. A send without a
    /// message id gets one here, so a receiving route's dedup recognises it
    /// if the relay forwards it twice (after a crash between delivery and removal).
    pub(crate) async fn append(&self, subject: &str, message: Message) -> Result<()> {
        let limit = self.shared.settings.max_events;
        if self.shared.pending.load(Ordering::Relaxed) >= limit {
            return Err(Error::OutboxFull {
                subject: subject.to_owned(),
                limit,
            });
        }
        let mut message = message;
        with_message_id(&mut message);
        let (done, committed) = oneshot::channel();
        let entry = Entry {
            subject: subject.to_owned(),
            message,
            created_ms: now_ms(),
            group: None,
        };
        self.writes
            .send(Write { entry, done })
            .await
            .map_err(|_| Error::Closed)?;
        committed.await.map_err(|_| Error::Closed)?
    }

    /// Writes one send on `connection`, inside the caller's transaction; it
    /// counts as held at once, and the relay forwards it once committed.
    pub(crate) async fn append_in<C: OutboxConnection + ?Sized>(
        &self,
        connection: &mut C,
        subject: &str,
        message: Message,
    ) -> Result<()> {
        let limit = self.shared.settings.max_events;
        if self.shared.pending.load(Ordering::Relaxed) >= limit {
            return Err(Error::OutboxFull {
                subject: subject.to_owned(),
                limit,
            });
        }
        let sqlite_file = match &self.database {
            Database::Sqlite(sqlite) => Some(sqlite.path()),
            #[cfg(feature = "outbox-postgres")]
            Database::Postgres(_) => None,
        };
        connection
            .insert_event(sqlite_file, subject, message, now_ms())
            .await?;
        self.shared.pending.fetch_add(1, Ordering::Relaxed);
        // The relay looks once the transaction let go of the store (SQLite's
        // one connection), or when PostgreSQL tells of the commit.
        self.shared.committed.notify_one();
        Ok(())
    }

    /// The database the events are kept in.
    pub(crate) fn database(&self) -> &Database {
        &self.database
    }

    /// The memory of handled message ids for `route` of `service`, kept in
    /// this outbox's file for `window`.
    /// Services of one name on this bus share it (and its ids in memory).
    pub(crate) fn dedup(&self, service: &str, route: &str, window: Duration) -> Arc<Dedup> {
        let key = (format!("{service}/{route}"), window);
        let mut dedups = self.dedups.lock().unwrap_or_else(|e| e.into_inner());
        dedups.retain(|_, dedup| dedup.strong_count() > 0);
        if let Some(dedup) = dedups.get(&key).and_then(std::sync::Weak::upgrade) {
            return dedup;
        }
        let dedup = dedup::for_route(&self.shared.store, key.0.clone(), window);
        dedups.insert(key, Arc::downgrade(&dedup));
        dedup
    }

    /// Events held now.
    pub(crate) fn pending(&self) -> u64 {
        self.shared.pending.load(Ordering::Relaxed)
    }

    /// Events dead-lettered so far because nobody took them within `max_age`.
    pub(crate) fn expired(&self) -> u64 {
        self.shared.expired.load(Ordering::Relaxed)
    }

    /// Stops the relay after the event in hand and the writer after the
    /// batch in hand, then closes the file: what is held stays for the next
    /// start. Sends after this fail with [`Error::Closed`].
    pub(crate) async fn close(&self) {
        self.stop.send_replace(true);
        let tasks = std::mem::take(&mut *self.tasks.lock().unwrap_or_else(|e| e.into_inner()));
        for task in tasks {
            let _ = task.await;
        }
        self.shared.store.close().await;
    }
}

impl Drop for Outbox {
    fn drop(&mut self) {
        // The relay stops after the event in hand; what is held stays in the file.
        self.stop.send_replace(true);
    }
}

/// Wakes the relay for every commit another process (or a caller's
/// transaction) made, until the outbox stops.
async fn wake_on_commits(
    shared: Arc<Shared>,
    mut changes: mpsc::Receiver<()>,
    mut stopped: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            change = changes.recv() => match change {
                Some(()) => shared.committed.notify_one(),
                None => return,
            },
            _ = stopped.wait_for(|stop| *stop) => return,
        }
    }
}

/// Commits sends as they come, all waiting ones in one transaction: one
/// sender pays one commit per send, many senders share theirs.
async fn write(
    shared: Arc<Shared>,
    mut queue: mpsc::Receiver<Write>,
    mut stopped: watch::Receiver<bool>,
) {
    let mut batch: Vec<Write> = Vec::with_capacity(MAX_BATCH);
    loop {
        let received = tokio::select! {
            received = queue.recv_many(&mut batch, MAX_BATCH) => received,
            _ = stopped.wait_for(|stop| *stop) => 0,
        };
        if received == 0 {
            break;
        }
        let entries: Vec<Entry> = batch
            .iter_mut()
            .map(|write| Entry {
                subject: std::mem::take(&mut write.entry.subject),
                message: std::mem::take(&mut write.entry.message),
                created_ms: write.entry.created_ms,
                group: None,
            })
            .collect();
        let counting = shared.counting.lock().await;
        let outcome = shared.store.append(&entries).await;
        if outcome.is_ok() {
            shared
                .pending
                .fetch_add(entries.len() as u64, Ordering::Relaxed);
        }
        drop(counting);
        if outcome.is_ok() {
            shared.committed.notify_one();
        } else if let Err(err) = &outcome {
            tracing::error!(error = %err, sends = entries.len(), "outbox: could not write sends; they were refused");
        }
        // Every waiting sender gets the same failure (`Error` is not `Clone`);
        // its cause once, not the backend prefix twice.
        let failure = outcome.as_ref().err().map(|err| {
            std::error::Error::source(err).map_or_else(|| err.to_string(), ToString::to_string)
        });
        for write in batch.drain(..) {
            let _ = write.done.send(match &failure {
                None => Ok(()),
                Some(reason) => Err(Error::backend("outbox", reason.clone())),
            });
        }
    }
    // Sends still queued are refused (their callers get `Closed`), never half-written.
    queue.close();
}

/// Gives `message` an id if it has none, so a receiving route's dedup
/// recognises it if the relay forwards it twice (after a crash between
/// delivery and removal); returns the id.
pub(crate) fn with_message_id(message: &mut Message) -> String {
    match message.headers.get(wire::MESSAGE_ID) {
        Some(id) => id.to_owned(),
        None => {
            let id = new_message_id();
            message.headers.insert(wire::MESSAGE_ID, id.clone());
            id
        }
    }
}

/// A random id for a send: 128 bits from the thread-local generator, as hex.
fn new_message_id() -> String {
    format!("{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..))
}
