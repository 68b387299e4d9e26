//! Deduplication by message id (`dedup = "10m"` on a route): the ids of
//! events a service handled are kept in the outbox's file for the window, so
//! a second delivery of one — an outbox forwarding again after a crash, a
//! Kafka or JetStream redelivery — is acknowledged without running the
//! handler again.
//!
//! An id is remembered only once its handler succeeded (or the event was
//! dead-lettered), before the event is acknowledged; a copy that arrives
//! while the first is still being handled waits for its outcome. A process
//! killed between a handler's success and the id being written runs that
//! event again after a restart: the window between them is one statement.

use std::collections::HashSet;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;

use super::shared::now_ms;
use super::store::Store;

/// How often remembered ids past their window are removed from the file.
const FORGET_EVERY_MS: i64 = 60_000;

/// One route's memory of handled message ids.
pub(crate) struct Dedup {
    store: Store,
    /// `service/route`: each service deduplicates on its own.
    route: String,
    window: Duration,
    /// Ids being handled now; a copy arriving meanwhile waits here.
    in_flight: Mutex<HashSet<String>>,
    released: Notify,
    /// When expired ids were last removed, in milliseconds since the epoch.
    forgot_at_ms: AtomicI64,
}

/// What [`Dedup::begin`] found for an id.
pub(crate) enum Begun<'a> {
    /// Handled within the window: skip it.
    Handled,
    /// Not handled yet: handle it, then [`Claim::handled`].
    Fresh(Claim<'a>),
}

/// The right to handle one id; dropping it without
/// [`handled`](Self::handled) lets a waiting copy run.
pub(crate) struct Claim<'a> {
    dedup: &'a Dedup,
    id: String,
}

impl Dedup {
    pub(super) fn new(store: Store, route: String, window: Duration) -> Dedup {
        Dedup {
            store,
            route,
            window,
            in_flight: Mutex::new(HashSet::new()),
            released: Notify::new(),
            forgot_at_ms: AtomicI64::new(0),
        }
    }

    /// Whether `id` was handled within the window; if not, the claim to
    /// handle it. A store that cannot be read counts as "not handled" (the
    /// event runs: at least once, never lost) and is logged.
    pub(crate) async fn begin(&self, id: &str) -> Begun<'_> {
        loop {
            let released = self.released.notified();
            tokio::pin!(released);
            {
                let mut in_flight = self.in_flight.lock().unwrap_or_else(|e| e.into_inner());
                if in_flight.insert(id.to_owned()) {
                    break;
                }
                // Registered before the lock is released, so no release is missed.
                released.as_mut().enable();
            }
            released.await;
        }
        let claim = Claim {
            dedup: self,
            id: id.to_owned(),
        };
        match self.store.handled(&self.route, id, now_ms()).await {
            Ok(true) => Begun::Handled,
            Ok(false) => Begun::Fresh(claim),
            Err(err) => {
                tracing::warn!(route = %self.route, error = %err, "dedup: could not look up a message id; handling the event");
                Begun::Fresh(claim)
            }
        }
    }
}

impl Claim<'_> {
    /// Remembers the id for the window (the event was handled or
    /// dead-lettered). A write that fails is logged: the event may run again
    /// if it comes back.
    pub(crate) async fn handled(self) {
        let dedup = self.dedup;
        let now = now_ms();
        let window = i64::try_from(dedup.window.as_millis()).unwrap_or(i64::MAX);
        let expires = now.saturating_add(window);
        if let Err(err) = dedup.store.remember(&dedup.route, &self.id, expires).await {
            tracing::warn!(route = %dedup.route, error = %err, "dedup: could not remember a handled message id; a redelivery would run it again");
        }
        let last = dedup.forgot_at_ms.load(Ordering::Relaxed);
        if now - last >= FORGET_EVERY_MS
            && dedup
                .forgot_at_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            if let Err(err) = dedup.store.forget_expired(now).await {
                tracing::warn!(error = %err, "dedup: could not remove expired message ids");
            }
        }
    }
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        self.dedup
            .in_flight
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.id);
        self.dedup.released.notify_waiters();
    }
}

/// A dedup for `route` of a service, kept in the outbox's file.
pub(crate) fn for_route(store: &Store, service: &str, route: &str, window: Duration) -> Arc<Dedup> {
    Arc::new(Dedup::new(
        store.clone(),
        format!("{service}/{route}"),
        window,
    ))
}
