//! What the outbox's writer, its relay and the bus share, and the clock
//! their records use.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::{Mutex, Notify};

use super::store::Store;
use crate::settings::outbox::OutboxSettings;

/// What the writer, the relay and the bus share.
pub(super) struct Shared {
    pub(super) store: Store,
    pub(super) settings: OutboxSettings,
    /// Events in the file (sends committed, minus events removed).
    pub(super) pending: AtomicU64,
    /// Events dead-lettered because no recipient took them within `max_age`.
    pub(super) expired: AtomicU64,
    /// Wakes the relay when a send was committed.
    pub(super) committed: Notify,
    /// Held while the writer commits a batch and counts it in, and while
    /// the relay reads the file's count and stores it: otherwise a count
    /// read between a commit and its `fetch_add` counts that batch twice.
    pub(super) counting: Mutex<()>,
}

impl Shared {
    /// Counts `removed` events out of the pending ones (never below zero: a
    /// caller's transaction counted in may have rolled back).
    pub(super) fn settle(&self, removed: u64) {
        let _ = self
            .pending
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |pending| {
                Some(pending.saturating_sub(removed))
            });
    }
}

/// Milliseconds since the Unix epoch, as the file stores times.
pub(super) fn now_ms() -> i64 {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO);
    i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
}
