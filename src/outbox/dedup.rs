//! Deduplication by message id (`dedup = "10m"` on a route): the ids of
//! events a service handled are kept in the outbox's store for the window,
//! so a second delivery of one — an outbox forwarding again after a crash, a
//! Kafka or JetStream redelivery — is acknowledged without running the
//! handler again.
//!
//! An id is remembered only once its handler succeeded (or the event was
//! dead-lettered), before the event is acknowledged; a copy that arrives
//! while the first is still being handled waits for its outcome. A process
//! killed between a handler's success and the id being written runs that
//! event again after a restart: the window between them is one statement.
//!
//! With the store in a file one process holds, the route also keeps the
//! window's ids in memory (read from the file on first use, up to
//! [`MAX_KNOWN`]), so looking an id up costs no statement. Ids handled at
//! once by concurrent handlers are written in one statement.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, Notify, OnceCell};

use super::shared::now_ms;
use super::store::Store;
use crate::error::Result;

/// How often remembered ids past their window are removed from the store.
const FORGET_EVERY_MS: i64 = 60_000;
/// The most ids a route keeps in memory (about 100 MB at most); past it,
/// lookups go to the store.
pub(crate) const MAX_KNOWN: usize = 1_000_000;
/// Ids written at once, at most.
const MAX_WRITE: usize = 256;

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
    /// Every id the store holds for the route, with when it expires; `None`
    /// when the store is shared with other processes or holds too many.
    known: OnceCell<Mutex<Option<HashMap<String, i64>>>>,
    /// Ids on their way into the store, written together.
    writes: mpsc::Sender<(String, i64, oneshot::Sender<Result<()>>)>,
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
    fn new(store: Store, route: String, window: Duration) -> Dedup {
        let (writes, queue) = mpsc::channel(MAX_WRITE * 4);
        tokio::spawn(write_ids(store.clone(), route.clone(), queue));
        Dedup {
            store,
            route,
            window,
            in_flight: Mutex::new(HashSet::new()),
            released: Notify::new(),
            forgot_at_ms: AtomicI64::new(0),
            known: OnceCell::new(),
            writes,
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
        let now = now_ms();
        let in_memory = self
            .known()
            .await
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(|known| matches!(known.get(id), Some(expires) if *expires > now));
        match in_memory {
            Some(true) => return Begun::Handled,
            Some(false) => return Begun::Fresh(claim),
            None => {}
        }
        match self.store.handled(&self.route, id, now).await {
            Ok(true) => Begun::Handled,
            Ok(false) => Begun::Fresh(claim),
            Err(err) => {
                tracing::warn!(route = %self.route, error = %err, "dedup: could not look up a message id; handling the event");
                Begun::Fresh(claim)
            }
        }
    }

    /// The ids in memory, read from the store on first use; `None` inside
    /// where lookups go to the store.
    async fn known(&self) -> &Mutex<Option<HashMap<String, i64>>> {
        self.known
            .get_or_init(|| async {
                if !self.store.exclusive() {
                    return Mutex::new(None);
                }
                Mutex::new(match self.store.handled_ids(&self.route, now_ms()).await {
                    Ok(ids) if ids.len() <= MAX_KNOWN => Some(ids.into_iter().collect()),
                    Ok(ids) => {
                        tracing::info!(route = %self.route, ids = ids.len(), "dedup: more ids in the window than are kept in memory; looking each up in the store");
                        None
                    }
                    Err(err) => {
                        tracing::warn!(route = %self.route, error = %err, "dedup: could not read the handled message ids; looking each up in the store");
                        None
                    }
                })
            })
            .await
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
        let (done, written) = oneshot::channel();
        let outcome = match dedup.writes.send((self.id.clone(), expires, done)).await {
            Ok(()) => written.await.unwrap_or_else(|_| Err(crate::Error::Closed)),
            Err(_) => Err(crate::Error::Closed),
        };
        match outcome {
            Ok(()) => {
                if let Some(known) = dedup.known.get() {
                    let mut known = known.lock().unwrap_or_else(|e| e.into_inner());
                    if let Some(ids) = known.as_mut() {
                        ids.insert(self.id.clone(), expires);
                        if ids.len() > MAX_KNOWN {
                            ids.retain(|_, expires| *expires > now);
                        }
                        if ids.len() > MAX_KNOWN {
                            tracing::info!(route = %dedup.route, "dedup: more ids in the window than are kept in memory; looking each up in the store from now on");
                            *known = None;
                        }
                    }
                }
            }
            Err(err) => {
                tracing::warn!(route = %dedup.route, error = %err, "dedup: could not remember a handled message id; a redelivery would run it again")
            }
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
            if let Some(known) = dedup.known.get() {
                if let Some(ids) = known.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
                    ids.retain(|_, expires| *expires > now);
                }
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

/// Writes the ids handlers finished, all waiting ones in one statement,
/// until the route's dedup is dropped.
async fn write_ids(
    store: Store,
    route: String,
    mut queue: mpsc::Receiver<(String, i64, oneshot::Sender<Result<()>>)>,
) {
    let mut batch = Vec::with_capacity(MAX_WRITE);
    while queue.recv_many(&mut batch, MAX_WRITE).await > 0 {
        let ids: Vec<(String, i64)> = batch
            .iter_mut()
            .map(|(id, expires, _)| (std::mem::take(id), *expires))
            .collect();
        let outcome = store.remember_many(&route, &ids).await;
        let failure = outcome.err().map(|err| err.to_string());
        for (_, _, done) in batch.drain(..) {
            let _ = done.send(match &failure {
                None => Ok(()),
                Some(reason) => Err(crate::Error::backend("dedup", reason.clone())),
            });
        }
    }
}

/// A dedup for `route` (`service/route`), kept in the outbox's store.
pub(crate) fn for_route(store: &Store, route: String, window: Duration) -> Arc<Dedup> {
    Arc::new(Dedup::new(store.clone(), route, window))
}
