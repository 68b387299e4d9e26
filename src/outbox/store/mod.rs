//! Where the outbox keeps its events, queue groups and handled message ids:
//! an embedded SQLite file ([`sqlite`]), or a PostgreSQL database several
//! processes share ([`postgres`], feature `outbox-postgres`).

#[cfg(feature = "outbox-postgres")]
pub(crate) mod postgres;
pub(crate) mod sqlite;

use std::sync::Arc;

use tokio::sync::mpsc;

use crate::error::{Error, Result};
use crate::message::Message;
use crate::transport::GroupAddress;

/// The most rows one statement writes or removes (SQLite allows 32,766
/// bound values; an insert binds 6 per row).
pub(crate) const MAX_ROWS: usize = 512;

/// One event waiting for a recipient.
pub(crate) struct Pending {
    pub seq: i64,
    pub subject: String,
    pub message: Message,
    /// When it was sent, in milliseconds since the Unix epoch.
    pub created_ms: i64,
    /// `None` until its first delivery; then the queue group it is still held for.
    pub group: Option<GroupAddress>,
}

/// An event on its way into the store.
pub(crate) struct Entry {
    pub subject: String,
    pub message: Message,
    pub created_ms: i64,
    /// The queue group it is held for, after a first delivery that missed it.
    pub group: Option<GroupAddress>,
}

/// What a store does for the writer, the relay and dedup.
#[async_trait::async_trait]
pub(crate) trait Backend: Send + Sync {
    /// Appends `entries` (at most [`MAX_ROWS`]) in order, all or none.
    async fn append(&self, entries: &[Entry]) -> Result<()>;
    /// Replaces the event `seq` by `entries` (its copies held for the queue
    /// groups its first delivery missed), all or nothing.
    async fn split(&self, seq: i64, entries: &[Entry]) -> Result<()>;
    /// The queue groups remembered, with when each was last seen.
    async fn groups(&self) -> Result<Vec<(GroupAddress, i64)>>;
    /// Remembers `group` as seen at `seen_ms`.
    async fn remember_group(&self, group: &GroupAddress, seen_ms: i64) -> Result<()>;
    /// Forgets `group`.
    async fn forget_group(&self, group: &GroupAddress) -> Result<()>;
    /// How many events are held per (subject, queue group).
    async fn backlog(&self) -> Result<Vec<((String, GroupAddress), u64)>>;
    /// Up to `limit` pending events after `after`, oldest first. In a
    /// shared store, the calls of one relay pass (from `after == 0` until
    /// [`pass_done`](Self::pass_done)) read one snapshot, so an event
    /// committed late with an earlier number is never skipped past.
    async fn after(&self, after: i64, limit: u32) -> Result<Vec<Pending>>;
    /// The relay finished a pass over [`after`](Self::after)'s pages.
    async fn pass_done(&self) {}
    /// Removes delivered (or dead-lettered) events.
    async fn remove(&self, seqs: &[i64]) -> Result<()>;
    /// Whether `id` was handled on `route` and is remembered past `now_ms`.
    async fn handled(&self, route: &str, id: &str, now_ms: i64) -> Result<bool>;
    /// Remembers that each id was handled on `route`, until its expiry (at
    /// most [`MAX_ROWS`] of them, all or none).
    async fn remember_many(&self, route: &str, ids: &[(String, i64)]) -> Result<()>;
    /// The ids handled on `route` and remembered past `now_ms`, with their expiries.
    async fn handled_ids(&self, route: &str, now_ms: i64) -> Result<Vec<(String, i64)>>;
    /// Forgets every id remembered no later than `now_ms`; how many.
    async fn forget_expired(&self, now_ms: i64) -> Result<u64>;
    /// How many events are pending.
    async fn count(&self) -> Result<u64>;
    /// Whether this process may relay now: always for a file one process
    /// holds; for a shared database, while this process holds its lock.
    async fn lead(&self) -> bool;
    /// Whether only this process writes (so a new event always comes after
    /// every event already seen, and the pending count is this process's own).
    fn exclusive(&self) -> bool;
    /// For a shared database, a signal per commit any process made.
    async fn listen(&self) -> Result<Option<mpsc::Receiver<()>>>;
    /// Lets go of the store (what is committed stays).
    async fn close(&self);
}

/// The open store, shared by the writer, the relay and every dedup.
#[derive(Clone)]
pub(crate) struct Store(Arc<dyn Backend>);

impl Store {
    /// A store over `backend`.
    pub(crate) fn new(backend: Arc<dyn Backend>) -> Store {
        Store(backend)
    }
}

impl std::ops::Deref for Store {
    type Target = dyn Backend;

    fn deref(&self) -> &Self::Target {
        self.0.as_ref()
    }
}

pub(crate) fn store_error(err: sqlx::Error) -> Error {
    Error::backend("outbox", err)
}
