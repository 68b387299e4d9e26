//! A live subscription: a stream of incoming messages that unsubscribes when dropped.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_core::Stream;

use crate::incoming::Incoming;
use crate::inline::InlineSlot;

/// A stream of [`Incoming`] messages for one subject (or pattern).
///
/// Returned only once the subscription is live, so a message published after
/// `subscribe` returns is delivered. Dropping it unsubscribes. The stream ends
/// when the transport is closed (after the messages already buffered).
pub struct Subscription {
    subject: String,
    group: Option<String>,
    stream: Pin<Box<dyn Stream<Item = Incoming> + Send>>,
    /// Set by in-process delivery (memory, HTTP): a `Service` route installs
    /// its handler here to answer requests in the caller's task.
    inline: Option<Arc<InlineSlot>>,
    /// Stops new messages while those already buffered can still be read.
    stop: Option<Box<dyn FnOnce() + Send>>,
    /// Waits for acknowledgements an adapter's task writes, and counts those not written.
    settle: Option<Settle>,
}

/// Waits until every acknowledgement a subscription's handlers handed to
/// the adapter's own task was written or failed, and returns how many were
/// not written (see [`Subscription::with_settle`]).
pub type Settle = Box<dyn FnOnce() -> Pin<Box<dyn Future<Output = usize> + Send>> + Send>;

impl Subscription {
    /// Wraps a backend's stream; the stream must unsubscribe when dropped.
    pub fn new(
        subject: impl Into<String>,
        group: Option<String>,
        stream: impl Stream<Item = Incoming> + Send + 'static,
    ) -> Self {
        Subscription {
            subject: subject.into(),
            group,
            stream: Box::pin(stream),
            inline: None,
            stop: None,
            settle: None,
        }
    }

    /// Sets how this subscription stops taking new messages while the ones
    /// the backend already handed it stay readable: after `stop` runs, the
    /// stream yields what is buffered and then ends (for adapters). A
    /// `Service` uses it at shutdown to handle, return or
    /// count every message it was given instead of dropping its buffer.
    pub fn with_stop(mut self, stop: impl FnOnce() + Send + 'static) -> Self {
        self.stop = Some(Box::new(stop));
        self
    }

    /// Sets how this subscription's acknowledgements settle, for adapters
    /// that write them from a task of their own after the handling has
    /// finished ([`Acker::ack_now`](crate::incoming::Acker::ack_now)), so a
    /// failure there never reaches the handling. `settle` waits (within a
    /// bound the adapter chooses) until each acknowledgement handed over was
    /// written or failed, and returns how many failed or were still
    /// unwritten, over the subscription's life. A `Service` adds them to its
    /// shutdown report's `unacknowledged`: the backend may deliver those
    /// events again.
    pub fn with_settle<F>(mut self, settle: impl FnOnce() -> F + Send + 'static) -> Self
    where
        F: Future<Output = usize> + Send + 'static,
    {
        self.settle = Some(Box::new(move || Box::pin(settle())));
        self
    }

    /// The settle hook (see [`with_settle`](Self::with_settle)), for the
    /// caller that waits on it, or a wrapper that re-wraps this
    /// subscription's stream.
    pub fn take_settle(&mut self) -> Option<Settle> {
        self.settle.take()
    }

    /// The stop hook, for a wrapper that re-wraps this subscription's stream.
    pub fn take_stop(&mut self) -> Option<Box<dyn FnOnce() + Send>> {
        self.stop.take()
    }

    /// Stops taking new messages (see [`with_stop`](Self::with_stop)); the
    /// buffered ones remain to be read. `false` if the backend gave no way
    /// to, and nothing changed.
    pub fn stop_taking(&mut self) -> bool {
        match self.stop.take() {
            Some(stop) => {
                stop();
                true
            }
            None => false,
        }
    }

    /// Lets a `Service` route answer this subscription's requests inline.
    #[doc(hidden)] // Between the in-process hub and `switchboard`'s services.
    pub fn with_inline_slot(mut self, slot: Arc<InlineSlot>) -> Self {
        self.inline = Some(slot);
        self
    }

    /// Where a `Service` route may install an inline answerer, if the backend delivers in process.
    #[doc(hidden)] // Between the in-process hub and `switchboard`'s services.
    pub fn inline_slot(&self) -> Option<&Arc<InlineSlot>> {
        self.inline.as_ref()
    }

    /// The subject or pattern subscribed to.
    pub fn subject(&self) -> &str {
        &self.subject
    }

    /// The queue group, if any.
    pub fn group(&self) -> Option<&str> {
        self.group.as_deref()
    }

    /// The next message, or `None` once the subscription has ended.
    pub async fn next(&mut self) -> Option<Incoming> {
        std::future::poll_fn(|cx| self.stream.as_mut().poll_next(cx)).await
    }
}

impl Stream for Subscription {
    type Item = Incoming;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Incoming>> {
        self.stream.as_mut().poll_next(cx)
    }
}

impl fmt::Debug for Subscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscription")
            .field("subject", &self.subject)
            .field("group", &self.group)
            .finish_non_exhaustive()
    }
}
