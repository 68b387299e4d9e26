//! A core NATS subscription that keeps up with a burst and can stop taking
//! messages while still handing over the ones already on their way (what a
//! `Service` does at shutdown).

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use futures_core::Stream;
use futures_util::{FutureExt, StreamExt};

use super::convert;
use switchboard_core::incoming::Incoming;

/// Every this many messages handed on, the stream moves what waits in the
/// client's queue into its buffer: often enough that the queue
/// (`subscription_capacity`) does not fill meanwhile, rarely enough that the look, which
/// usually finds the queue empty, costs little per message.
const MOVE_EVERY: u32 = 16;
/// The most messages one move takes from the client's queue, so a move
/// never holds its worker long (a few hundred microseconds); with a move
/// every [`MOVE_EVERY`] messages handed on, the buffer still takes 256
/// times as many as the route hands on.
const MOVE_AT_MOST: usize = 4096;
/// An emptied buffer that grew past this many messages gives its memory back.
const KEEP_CAPACITY: usize = 1024;

/// A core subscription's messages; once `stopped` fires it unsubscribes at
/// the server and yields what was already on its way, then ends.
pub(super) struct DrainingStream {
    /// `None` only while `unsubscribing` holds it.
    subscriber: Option<async_nats::Subscriber>,
    /// `None` once it fired (or its sender was dropped with the subscription).
    stopped: Option<tokio::sync::oneshot::Receiver<()>>,
    /// Set before `stopped` fires: a message ready to hand on looks at this
    /// flag, not the channel, which is polled when the stream would wait.
    stop_asked: Arc<AtomicBool>,
    /// Telling the server to stop sending; gives the subscriber back when told.
    unsubscribing: Option<futures_util::future::BoxFuture<'static, async_nats::Subscriber>>,
    /// Turns the client's messages into `Incoming`s.
    convert: Converter,
    /// Messages taken from the client's queue ahead of the route, oldest
    /// first, each with its size as received. Kept converted: an `Incoming`
    /// is smaller than the client's message, and each is moved twice here.
    buffer: VecDeque<(Incoming, usize)>,
    /// Their size as received (subject, reply, headers, payload).
    buffered_bytes: usize,
    /// The most `buffered_bytes` may reach (`pending_bytes`); 0 turns the buffer off.
    pending_bytes: usize,
    /// Messages handed on since the buffer was last topped up.
    since_moved: u32,
}

impl DrainingStream {
    pub(super) fn new(
        subscriber: async_nats::Subscriber,
        (stopped, stop_asked): (tokio::sync::oneshot::Receiver<()>, Arc<AtomicBool>),
        client: Arc<async_nats::Client>,
        pending_bytes: usize,
    ) -> Self {
        DrainingStream {
            subscriber: Some(subscriber),
            stopped: Some(stopped),
            stop_asked,
            unsubscribing: None,
            convert: Converter {
                client,
                last_subject: None,
            },
            buffer: VecDeque::new(),
            buffered_bytes: 0,
            pending_bytes,
            since_moved: 0,
        }
    }

    /// Every [`MOVE_EVERY`] messages handed on, moves what waits in the
    /// client's queue into the buffer, up to `pending_bytes` and at most
    /// [`MOVE_AT_MOST`] at a time, so a burst waits here instead of filling
    /// that queue (whose overflow the client drops).
    ///
    /// The move does not count against tokio's per-task budget, which the
    /// messages handed on share: counted, a move took at most the budget's
    /// remainder (about a hundred messages) per 16 handed on, so a handler
    /// slower than a sixth of its publisher let the queue fill however
    /// large the buffer.
    fn move_waiting(&mut self, cx: &mut Context<'_>) {
        self.since_moved += 1;
        if self.since_moved < MOVE_EVERY {
            return;
        }
        self.since_moved = 0;
        let Some(subscriber) = &mut self.subscriber else {
            return;
        };
        let (buffer, buffered_bytes) = (&mut self.buffer, &mut self.buffered_bytes);
        let convert = &mut self.convert;
        let pending_bytes = self.pending_bytes;
        let moving = std::future::poll_fn(|cx| {
            for _ in 0..MOVE_AT_MOST {
                if *buffered_bytes >= pending_bytes {
                    break;
                }
                // An ended subscription ends again at the next direct poll.
                let Poll::Ready(Some(message)) = subscriber.poll_next_unpin(cx) else {
                    break;
                };
                let size = message.length;
                *buffered_bytes += size;
                buffer.push_back((convert.incoming(message), size));
            }
            Poll::Ready(())
        });
        let _ = std::pin::pin!(tokio::task::coop::unconstrained(moving)).poll(cx);
    }

    /// The oldest buffered message, if any, within tokio's per-task budget
    /// (a buffer that never waits would otherwise hold its worker thread).
    fn poll_buffered(&mut self, cx: &mut Context<'_>) -> Poll<Option<Incoming>> {
        if self.buffer.is_empty() {
            return Poll::Ready(None);
        }
        let budget = ready!(tokio::task::coop::poll_proceed(cx));
        budget.made_progress();
        let Some((incoming, size)) = self.buffer.pop_front() else {
            return Poll::Ready(None);
        };
        self.buffered_bytes -= size;
        if self.buffer.is_empty() && self.buffer.capacity() > KEEP_CAPACITY {
            self.buffer = VecDeque::new();
        }
        Poll::Ready(Some(incoming))
    }

    /// Whether a stop was asked for, and telling the server began: the
    /// stream then hands on what is buffered and ends. Registers the task to
    /// be woken by a stop still to come.
    fn stop_began(&mut self, cx: &mut Context<'_>) -> bool {
        let Some(stopped) = &mut self.stopped else {
            return false;
        };
        let Poll::Ready(asked) = stopped.poll_unpin(cx) else {
            return false;
        };
        self.stopped = None;
        let (Ok(()), Some(mut subscriber)) = (asked, self.subscriber.take()) else {
            return false;
        };
        self.unsubscribing = Some(Box::pin(async move {
            if let Err(err) = subscriber.drain().await {
                tracing::debug!(error = %err, "nats: could not drain a subscription");
            }
            subscriber
        }));
        true
    }
}

/// What turning the client's messages into `Incoming`s shares between them.
struct Converter {
    /// Shared with each request's responder: cloning an async-nats
    /// `Client` costs an allocation and several reference counts.
    client: Arc<async_nats::Client>,
    /// The subject of the last message, shared with the next one on the
    /// same subject (most subscriptions see one), so it is not copied per message.
    last_subject: Option<Arc<str>>,
}

impl Converter {
    fn incoming(&mut self, message: async_nats::Message) -> Incoming {
        let subject = match &self.last_subject {
            Some(last) if **last == *message.subject.as_str() => last.clone(),
            _ => {
                let subject: Arc<str> = Arc::from(message.subject.as_str());
                self.last_subject = Some(subject.clone());
                subject
            }
        };
        convert::incoming(subject, message, &self.client)
    }
}

impl Stream for DrainingStream {
    type Item = Incoming;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if let Some(told) = &mut this.unsubscribing {
            match told.poll_unpin(cx) {
                Poll::Ready(subscriber) => {
                    this.subscriber = Some(subscriber);
                    this.unsubscribing = None;
                }
                // What is buffered goes on while the server is being told.
                Poll::Pending if this.buffer.is_empty() => return Poll::Pending,
                Poll::Pending => {}
            }
        }
        if this.stop_asked.load(Ordering::Acquire) && this.stop_began(cx) {
            return Pin::new(this).poll_next(cx);
        }
        // Buffered messages came first, so they go first.
        if let Some(incoming) = ready!(this.poll_buffered(cx)) {
            this.move_waiting(cx);
            return Poll::Ready(Some(incoming));
        }
        let Some(subscriber) = &mut this.subscriber else {
            return Poll::Ready(None);
        };
        let message = match subscriber.poll_next_unpin(cx) {
            Poll::Ready(Some(message)) => message,
            Poll::Ready(None) => return Poll::Ready(None),
            // Waiting: a stop asked for now, or later, wakes the task.
            Poll::Pending if this.stop_began(cx) => return Pin::new(this).poll_next(cx),
            Poll::Pending => return Poll::Pending,
        };
        this.move_waiting(cx);
        Poll::Ready(Some(this.convert.incoming(message)))
    }
}
