//! `DrainGate`: admits calls until closed, then waits for the admitted ones
//! to finish; `Pending`: counts work handed to a background task (queued
//! acknowledgements) so a close can wait for it.
//!
//! Every adapter needs the same `close()` behaviour (drain in-flight work, then
//! refuse new calls), so it lives here once.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::Notify;

use crate::error::{Error, Result};

/// Tracks in-flight calls and refuses new ones once closed.
#[derive(Debug, Default)]
pub struct DrainGate {
    closed: AtomicBool,
    in_flight: AtomicUsize,
    idle: Notify,
}

/// Proof that a call was admitted; the call counts as in flight until it is dropped.
#[derive(Debug)]
pub struct DrainGuard<'a> {
    gate: &'a DrainGate,
}

impl DrainGate {
    /// An open gate.
    pub fn new() -> Self {
        DrainGate::default()
    }

    /// Admits a call, or fails with [`Error::Closed`] once [`close`](Self::close) has begun.
    #[inline]
    pub fn enter(&self) -> Result<DrainGuard<'_>> {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        let guard = DrainGuard { gate: self };
        if self.closed.load(Ordering::SeqCst) {
            return Err(Error::Closed);
        }
        Ok(guard)
    }

    /// Whether close has begun.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    /// Refuses new calls and waits until every admitted call has finished.
    /// Returns `false` if the gate was already closed by an earlier call.
    pub async fn close(&self) -> bool {
        let first = !self.closed.swap(true, Ordering::SeqCst);
        loop {
            let idle = self.idle.notified();
            tokio::pin!(idle);
            idle.as_mut().enable();
            if self.in_flight.load(Ordering::SeqCst) == 0 {
                return first;
            }
            idle.await;
        }
    }
}

impl Drop for DrainGuard<'_> {
    #[inline]
    fn drop(&mut self) {
        // Only a close waits to be told: an open gate skips the waiters'
        // lock. A close that began after `closed` was read here still sees
        // the count this call left (both are sequentially consistent).
        if self.gate.in_flight.fetch_sub(1, Ordering::SeqCst) == 1
            && self.gate.closed.load(Ordering::SeqCst)
        {
            self.gate.idle.notify_waiters();
        }
    }
}

/// Work handed to a background task and not done yet, such as
/// acknowledgements queued for a task that sends them in batches: counted
/// up when handed over and down when done, so a close can wait for it.
///
/// ```
/// use std::time::Duration;
/// use switchboard_core::drain::Pending;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let pending = Pending::default();
/// pending.add(2);
/// pending.done(2);
/// assert!(pending.settled(Duration::from_millis(10)).await);
/// # }
/// ```
#[derive(Debug, Default)]
pub struct Pending {
    count: AtomicUsize,
    none: Notify,
}

impl Pending {
    /// Counts `n` more handed over.
    pub fn add(&self, n: usize) {
        self.count.fetch_add(n, Ordering::AcqRel);
    }

    /// Counts `n` done.
    pub fn done(&self, n: usize) {
        if self.count.fetch_sub(n, Ordering::AcqRel) == n {
            self.none.notify_waiters();
        }
    }

    /// How many are pending now.
    pub fn count(&self) -> usize {
        self.count.load(Ordering::Acquire)
    }

    /// Waits until nothing is pending, at most `patience`; whether nothing is.
    pub async fn settled(&self, patience: Duration) -> bool {
        let wait = async {
            loop {
                // Registered before the count is read: a `done` in between still wakes it.
                let none = self.none.notified();
                if self.count.load(Ordering::Acquire) == 0 {
                    return;
                }
                none.await;
            }
        };
        tokio::time::timeout(patience, wait).await.is_ok()
    }
}

/// Resolves once `signal` turns true; never, if its sender is gone without
/// saying so (so dropping a transport does not end the subscriptions it made).
#[allow(dead_code)] // Used by the http and kafka backends.
pub async fn stop_requested(signal: &mut tokio::sync::watch::Receiver<bool>) {
    // The guard `wait_for` returns is not Send: drop it before anything else awaits.
    let stopped = signal.wait_for(|stop| *stop).await.is_ok();
    if !stopped {
        std::future::pending::<()>().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    #[tokio::test]
    async fn close_waits_for_admitted_calls_then_refuses() {
        let gate = Arc::new(DrainGate::new());
        let finished = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (admitted_tx, admitted_rx) = tokio::sync::oneshot::channel();
        let call = tokio::spawn({
            let (gate, finished) = (gate.clone(), finished.clone());
            async move {
                let _guard = gate.enter().unwrap();
                admitted_tx.send(()).unwrap();
                tokio::time::sleep(Duration::from_millis(50)).await;
                finished.store(true, Ordering::SeqCst);
            }
        });
        admitted_rx.await.unwrap();
        assert!(gate.close().await);
        assert!(
            finished.load(Ordering::SeqCst),
            "close returned before the call finished"
        );
        call.await.unwrap();
        assert!(matches!(gate.enter(), Err(Error::Closed)));
        assert!(!gate.close().await);
    }
}
