//! A JetStream subscription that can stop taking messages: once told, it
//! hands over what its pull consumer already fetched — until nothing more
//! arrives for a moment — and ends, so a stopping `Service` handles those
//! messages (or nacks them for an immediate redelivery) instead of leaving
//! them to come back only after `ack_wait`.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_core::Stream;
use futures_util::{FutureExt, StreamExt};
use tokio::sync::oneshot;
use tokio::time::{Instant, Sleep};

/// How long without a message, once stopped, before the stream ends.
const SETTLE: Duration = Duration::from_millis(100);

pub(super) struct SettlingStream<S> {
    inner: S,
    /// `None` once it fired (or its sender was dropped with the subscription).
    stopped: Option<oneshot::Receiver<()>>,
    /// Set once stopped: the stream ends when it fires.
    quiet: Option<Pin<Box<Sleep>>>,
}

impl<S> SettlingStream<S> {
    pub(super) fn new(inner: S, stopped: oneshot::Receiver<()>) -> Self {
        SettlingStream {
            inner,
            stopped: Some(stopped),
            quiet: None,
        }
    }
}

impl<S: Stream + Unpin> Stream for SettlingStream<S> {
    type Item = S::Item;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<S::Item>> {
        let this = self.get_mut();
        if let Some(stopped) = &mut this.stopped {
            if let Poll::Ready(asked) = stopped.poll_unpin(cx) {
                this.stopped = None;
                if asked.is_ok() {
                    this.quiet = Some(Box::pin(tokio::time::sleep(SETTLE)));
                }
            }
        }
        match this.inner.poll_next_unpin(cx) {
            Poll::Ready(Some(item)) => {
                if let Some(quiet) = &mut this.quiet {
                    quiet.as_mut().reset(Instant::now() + SETTLE);
                }
                Poll::Ready(Some(item))
            }
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => match &mut this.quiet {
                Some(quiet) => quiet.as_mut().poll(cx).map(|()| None),
                None => Poll::Pending,
            },
        }
    }
}
