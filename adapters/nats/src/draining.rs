//! A core NATS subscription that can stop taking messages and still hand
//! over the ones already on their way (what a `Service` does at shutdown).

use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use futures_core::Stream;
use futures_util::{FutureExt, StreamExt};

use super::convert;
use switchboard_core::incoming::Incoming;

/// A core subscription's messages; once `stopped` fires it unsubscribes at
/// the server and yields what was already on its way, then ends.
pub(super) struct DrainingStream {
    /// `None` only while `unsubscribing` holds it.
    subscriber: Option<async_nats::Subscriber>,
    /// `None` once it fired (or its sender was dropped with the subscription).
    stopped: Option<tokio::sync::oneshot::Receiver<()>>,
    /// Telling the server to stop sending; gives the subscriber back when told.
    unsubscribing: Option<futures_util::future::BoxFuture<'static, async_nats::Subscriber>>,
    client: async_nats::Client,
    /// The subject of the last message, shared with the next one on the
    /// same subject (most subscriptions see one), so it is not copied per message.
    last_subject: Option<Arc<str>>,
}

impl DrainingStream {
    pub(super) fn new(
        subscriber: async_nats::Subscriber,
        stopped: tokio::sync::oneshot::Receiver<()>,
        client: async_nats::Client,
    ) -> Self {
        DrainingStream {
            subscriber: Some(subscriber),
            stopped: Some(stopped),
            unsubscribing: None,
            client,
            last_subject: None,
        }
    }
}

impl Stream for DrainingStream {
    type Item = Incoming;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if let Some(told) = &mut this.unsubscribing {
            this.subscriber = Some(ready!(told.poll_unpin(cx)));
            this.unsubscribing = None;
        }
        if let Some(stopped) = &mut this.stopped {
            match stopped.poll_unpin(cx) {
                Poll::Pending => {}
                Poll::Ready(asked) => {
                    this.stopped = None;
                    if let (Ok(()), Some(mut subscriber)) = (asked, this.subscriber.take()) {
                        this.unsubscribing = Some(Box::pin(async move {
                            if let Err(err) = subscriber.drain().await {
                                tracing::debug!(error = %err, "nats: could not drain a subscription");
                            }
                            subscriber
                        }));
                        return Pin::new(this).poll_next(cx);
                    }
                }
            }
        }
        let Some(subscriber) = &mut this.subscriber else {
            return Poll::Ready(None);
        };
        let message = ready!(subscriber.poll_next_unpin(cx));
        Poll::Ready(message.map(|message| {
            let subject = match &this.last_subject {
                Some(last) if **last == *message.subject.as_str() => last.clone(),
                _ => {
                    let subject: Arc<str> = Arc::from(message.subject.as_str());
                    this.last_subject = Some(subject.clone());
                    subject
                }
            };
            convert::incoming(subject, message, &this.client)
        }))
    }
}
