//! The stop a route's loop looks at before every message: a flag and a
//! waker, so the look costs a load where a watch channel's future took a
//! lock and its notification list on every poll.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use futures_util::task::AtomicWaker;

/// Set once when shutdown begins; wakes every route's loop waiting on it.
#[derive(Default)]
pub(crate) struct StopNotice {
    begun: AtomicBool,
    /// One per route loop that waits on the notice (a few per service).
    loops: Mutex<Vec<Arc<AtomicWaker>>>,
}

impl StopNotice {
    /// Marks the stop and wakes every loop. The flag is set before the
    /// wakers are read, and a loop reads it again after registering, so
    /// no loop misses it.
    pub(crate) fn begin(&self) {
        self.begun.store(true, Ordering::SeqCst);
        let loops = self
            .loops
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        for waker in loops.iter() {
            waker.wake();
        }
    }

    /// A future for one loop that completes once the stop has begun.
    pub(crate) fn stopping(self: &Arc<Self>) -> Stopping {
        let waker = Arc::new(AtomicWaker::new());
        self.loops
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(waker.clone());
        Stopping {
            notice: self.clone(),
            waker,
        }
    }
}

/// Completes once shutdown has begun; polled before every message.
pub(crate) struct Stopping {
    notice: Arc<StopNotice>,
    waker: Arc<AtomicWaker>,
}

impl Future for Stopping {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.notice.begun.load(Ordering::Acquire) {
            return Poll::Ready(());
        }
        self.waker.register(cx.waker());
        match self.notice.begun.load(Ordering::SeqCst) {
            true => Poll::Ready(()),
            false => Poll::Pending,
        }
    }
}

impl Drop for Stopping {
    /// Leaves the list, so a finished loop's task is not kept alive by its waker.
    fn drop(&mut self) {
        self.notice
            .loops
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .retain(|waker| !Arc::ptr_eq(waker, &self.waker));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::FutureExt;

    #[tokio::test]
    async fn a_waiting_loop_is_woken_by_the_stop() {
        let notice = Arc::new(StopNotice::default());
        let mut stopping = notice.stopping();
        assert!((&mut stopping).now_or_never().is_none());
        let waiting = tokio::spawn(stopping);
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        notice.begin();
        tokio::time::timeout(std::time::Duration::from_secs(5), waiting)
            .await
            .expect("the stop woke the loop")
            .unwrap();
    }

    #[test]
    fn a_loop_made_after_the_stop_is_stopped_at_once() {
        let notice = Arc::new(StopNotice::default());
        notice.begin();
        assert!(notice.stopping().now_or_never().is_some());
    }

    #[test]
    fn a_finished_loop_leaves_the_list() {
        let notice = Arc::new(StopNotice::default());
        let kept = notice.stopping();
        drop(notice.stopping());
        assert_eq!(notice.loops.lock().unwrap().len(), 1);
        drop(kept);
        assert!(notice.loops.lock().unwrap().is_empty());
    }
}
