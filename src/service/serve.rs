//! Serving one route: its loop takes messages under the route's concurrency
//! limit, in order per key, answers requests inline where the backend
//! delivers in process, and at shutdown handles, returns or counts what it
//! was given. How each message is handled depends on how it arrived.

use std::future::Future;
use std::ops::Deref;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll, Waker};
use std::time::{Duration, Instant};

use futures_util::future::{BoxFuture, Either};
use futures_util::{FutureExt, Stream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;

use super::context::{RouteContext, RouteHandler};
use super::events::handle_event;
use super::keyed::KeyedQueue;
use super::requests::{answer, reply_for, skip_expired};
use super::shutdown::HeldOutcome;
use crate::incoming::Incoming;
use crate::inline::InlineAnswer;
use crate::message::Message;
use crate::subscription::Subscription;
use crate::wire;

/// Messages a concurrent route takes in a row, when they are already
/// waiting, before it looks at its stop signal and finished tasks again.
const WAITING_BATCH: usize = 32;

/// Serves `subscription` with `handler` until the service shuts down.
pub(super) async fn serve<H: RouteHandler>(
    context: Arc<RouteContext>,
    mut subscription: Subscription,
    handler: Arc<H>,
    concurrency: usize,
) {
    // `acquire_many` below counts in u32, and a semaphore has a ceiling.
    let concurrency = concurrency.min(1 << 28);
    // Every message being handled, or waiting behind a busy key, holds one
    // permit, whether it came through the queue or inline: the route never
    // has more than `concurrency` messages, so a flood cannot fill memory.
    let permits = Arc::new(Semaphore::new(concurrency));
    // In-process backends (memory, HTTP) hand requests straight to the
    // handler in the caller's task; ordered routes keep the one queue.
    let inline = match subscription.inline_slot() {
        Some(slot) if concurrency > 1 => {
            slot.install(Arc::new(InlineRoute {
                context: context.clone(),
                handler: handler.clone(),
                permits: permits.clone(),
            }));
            Some(slot.clone())
        }
        _ => None,
    };
    let mut route = RouteLoop {
        context: &context,
        handler: &handler,
        permits: &permits,
        concurrency,
        in_flight: JoinSet::new(),
        keys: KeyedQueue::default(),
        permit: None,
        make: handling::<H>,
        spare: None,
    };
    let ended = route
        .take(&mut subscription, context.shutdown.stopping())
        .await;
    let settle = subscription.take_settle();
    // New requests go to the (closing) queue from here, and fail there.
    if let Some(slot) = inline {
        slot.remove();
    }
    // Where the backend can stop sending while keeping what it already
    // handed over, that is handled within the grace period, and what is
    // left after it is returned or counted: never dropped unreported.
    let held_open = match !ended && subscription.stop_taking() {
        true => {
            let grace = context.shutdown.deadline();
            let deadline = grace.unwrap_or_else(tokio::time::Instant::now);
            if !route
                .take(&mut subscription, tokio::time::sleep_until(deadline))
                .await
            {
                route.release_queued(&mut subscription).await;
            }
            Some(subscription)
        }
        false => {
            drop(subscription);
            None
        }
    };
    route.finish().await;
    // Requests answered inline finish too: all permits back means none runs.
    // Closing then fails any still waiting for room, so none starts after the route stopped.
    let _all = permits.acquire_many(concurrency as u32).await;
    permits.close();
    // Acknowledgements an adapter writes from a task of its own: each
    // one not written counts, since the backend may deliver it again.
    if let Some(settle) = settle {
        let unwritten = settle().await;
        if unwritten > 0 {
            tracing::warn!(route = %context.route, service = %context.service, unwritten, "acknowledgements not written; the backend may deliver those events again");
            context.shutdown.count_unacknowledged(unwritten);
        }
    }
    // Only now, with every acknowledgement made, does a backend that commits
    // on unsubscribe (Kafka) let go.
    drop(held_open);
}

/// One route's loop state: the messages in flight, the keys busy, and the
/// permit for the next message.
struct RouteLoop<'a, H, W> {
    context: &'a Arc<RouteContext>,
    handler: &'a Arc<H>,
    permits: &'a Arc<Semaphore>,
    concurrency: usize,
    in_flight: JoinSet<Option<String>>,
    /// Events with a key (`sb-key`) run one at a time per key, in arrival
    /// order; each busy key's later events wait here with their permits.
    keys: KeyedQueue<Held>,
    permit: Option<OwnedSemaphorePermit>,
    /// Makes a message's handling ([`handling`]; a parameter so that its
    /// future's type can be named here).
    make: fn(Arc<RouteContext>, Incoming, Arc<H>) -> W,
    /// The box of the last message's handling that finished at once, for
    /// the next message's: the same type, so a message that finishes
    /// without waiting allocates nothing here.
    spare: Option<Pin<Box<W>>>,
}

impl<H: RouteHandler, W: Future<Output = ()> + Send + 'static> RouteLoop<'_, H, W> {
    /// Takes and handles messages until `stop` completes (`false`) or the
    /// subscription ends (`true`).
    async fn take(
        &mut self,
        subscription: &mut Subscription,
        stop: impl Future<Output = ()>,
    ) -> bool {
        tokio::pin!(stop);
        loop {
            // Biased: no random draw per message, and a stop is seen first.
            let next = tokio::select! {
                biased;
                () = &mut stop => return false,
                Some(finished) = self.in_flight.join_next(), if !self.in_flight.is_empty() => {
                    if let Ok(Some(key)) = finished {
                        self.next_of_key(key);
                    }
                    continue;
                }
                acquired = self.permits.clone().acquire_owned(), if self.permit.is_none() => {
                    self.permit = acquired.ok();
                    continue;
                }
                next = subscription.next(), if self.permit.is_some() => next,
            };
            let Some(incoming) = next else { return true };
            let Some(permit) = self.permit.take() else {
                return true;
            };
            let held = Held { incoming, permit };
            match self.concurrency {
                1 => self.handle_in_turn(held).await,
                _ => self.dispatch(held),
            }
            if !self.take_waiting(subscription) {
                return true;
            }
        }
    }

    /// On a concurrent route, takes messages already waiting without going
    /// round the select, while each finishes at once and leaves its permit:
    /// at most [`WAITING_BATCH`], so a stop and finished tasks are seen
    /// soon. Starting a message never waits on such a route (a handler that
    /// waits gets a task), so the batch is short. `false` once the
    /// subscription ended.
    fn take_waiting(&mut self, subscription: &mut Subscription) -> bool {
        if self.concurrency == 1 {
            return true;
        }
        // Polled without a waker: the select registers the task's when the
        // batch ends.
        let mut without_waker = TaskContext::from_waker(Waker::noop());
        for _ in 0..WAITING_BATCH {
            let Some(permit) = self.permit.take() else {
                break;
            };
            match Pin::new(&mut *subscription).poll_next(&mut without_waker) {
                Poll::Ready(Some(incoming)) => self.dispatch(Held { incoming, permit }),
                Poll::Ready(None) => return false,
                Poll::Pending => {
                    self.permit = Some(permit);
                    break;
                }
            }
        }
        true
    }

    /// Handles one message on an ordered route: the next message waits for
    /// this one, and takes its permit.
    async fn handle_in_turn(&mut self, held: Held) {
        let Held { incoming, permit } = held;
        handle(&**self.context, incoming, &**self.handler).await;
        self.permit = Some(permit);
    }

    /// Starts one message on a concurrent route, behind the running event
    /// of its key if it has one. Never waits: a handling that waits gets a
    /// task of its own.
    fn dispatch(&mut self, held: Held) {
        let key = match held.incoming.expects_reply() {
            true => None,
            false => held.incoming.headers().get(wire::KEY).map(str::to_owned),
        };
        let held = match &key {
            Some(key) => match self.keys.start_or_wait(key, held) {
                Some(held) => held,
                None => return,
            },
            None => held,
        };
        if let Some(Some(key)) = self.running().start(held, key) {
            self.next_of_key(key);
        }
    }

    fn running(&mut self) -> Running<'_, H, W> {
        Running {
            in_flight: &mut self.in_flight,
            context: self.context,
            handler: self.handler,
            make: self.make,
            spare: &mut self.spare,
            permit: &mut self.permit,
        }
    }

    /// Once an event of `key` finished: starts the ones waiting behind it.
    fn next_of_key(&mut self, key: String) {
        let mut running = Running {
            in_flight: &mut self.in_flight,
            context: self.context,
            handler: self.handler,
            make: self.make,
            spare: &mut self.spare,
            permit: &mut self.permit,
        };
        running.next_of_key(&mut self.keys, key);
    }

    /// Once the grace period is over: what the backend already handed over
    /// and nobody took goes back to a redelivering backend, or is counted as
    /// lost. A request left there fails at its caller. The stream ends after
    /// its buffer once stopped; a short wait covers a stop still on its way,
    /// and a bound keeps a backend that goes on sending from holding it here.
    async fn release_queued(&mut self, subscription: &mut Subscription) {
        const SETTLING: Duration = Duration::from_millis(100);
        const AT_MOST: Duration = Duration::from_secs(2);
        let until = tokio::time::Instant::now() + AT_MOST;
        while tokio::time::Instant::now() < until {
            let Ok(Some(incoming)) = tokio::time::timeout(SETTLING, subscription.next()).await
            else {
                break;
            };
            if !incoming.expects_reply() {
                release(self.context, incoming).await;
            }
        }
    }

    /// Waits for every message in flight, including those of busy keys.
    async fn finish(&mut self) {
        self.permit = None;
        while let Some(finished) = self.in_flight.join_next().await {
            if let Ok(Some(key)) = finished {
                self.next_of_key(key);
            }
        }
        // A message started above may have left its permit for a next one.
        self.permit = None;
    }
}

/// An event the route was given but did not start before the grace period
/// ended: nacked, so a redelivering backend sends it again; elsewhere lost,
/// and counted as such.
async fn release(context: &RouteContext, mut incoming: Incoming) {
    let subject = incoming.shared_subject();
    context.settle(&subject, incoming.nack().await);
    let outcome = match context.redelivers {
        true => HeldOutcome::Returned,
        false => {
            tracing::error!(%subject, service = %context.service, backend = context.backend, "service stopped with the event still queued and the backend does not redeliver; event lost");
            HeldOutcome::Lost
        }
    };
    context.shutdown.record(outcome);
}

/// A message taken from the queue, with its place under the route's concurrency limit.
struct Held {
    incoming: Incoming,
    permit: OwnedSemaphorePermit,
}

/// What a concurrent route needs to start handling a message.
struct Running<'a, H, W> {
    in_flight: &'a mut JoinSet<Option<String>>,
    context: &'a Arc<RouteContext>,
    handler: &'a Arc<H>,
    make: fn(Arc<RouteContext>, Incoming, Arc<H>) -> W,
    spare: &'a mut Option<Pin<Box<W>>>,
    /// Where the permit of a message that finished at once goes, if empty:
    /// the next message takes it without going through the semaphore.
    permit: &'a mut Option<OwnedSemaphorePermit>,
}

impl<H: RouteHandler, W: Future<Output = ()> + Send + 'static> Running<'_, H, W> {
    /// Handles one message: right here if its handler finishes without
    /// waiting (most do: no task, no wake-up, and replies leave in order, so
    /// the client batches their writes), else on its own task, whose result
    /// is the message's key. `Some(key)` if it finished here.
    fn start(&mut self, held: Held, key: Option<String>) -> Option<Option<String>> {
        let Held { incoming, permit } = held;
        let work = (self.make)(self.context.clone(), incoming, self.handler.clone());
        let mut handling = match self.spare.take() {
            Some(mut spare) => {
                spare.set(work);
                spare
            }
            None => Box::pin(work),
        };
        // Polled once without a waker: a future left pending is polled again
        // by its task at once, which registers the task's waker.
        if handling.as_mut().now_or_never().is_some() {
            if self.permit.is_none() {
                *self.permit = Some(permit);
            }
            *self.spare = Some(handling);
            return Some(key);
        }
        self.in_flight.spawn(async move {
            handling.await;
            drop(permit);
            key
        });
        None
    }

    /// Once an event of `key` finished: starts the next waiting behind it,
    /// and the ones after while each finishes at once; frees the key when none waits.
    fn next_of_key(&mut self, keys: &mut KeyedQueue<Held>, key: String) {
        let mut key = key;
        while let Some(waiting) = keys.next_for(&key) {
            match self.start(waiting, Some(key)) {
                Some(Some(finished)) => key = finished,
                _ => return,
            }
        }
    }
}

/// A concurrent route answering requests in the caller's task (memory, HTTP).
struct InlineRoute<H> {
    context: Arc<RouteContext>,
    handler: Arc<H>,
    permits: Arc<Semaphore>,
}

impl<H: RouteHandler> InlineAnswer for InlineRoute<H> {
    fn answer(
        self: Arc<Self>,
        subject: Arc<str>,
        message: Message,
        deadline: Option<Instant>,
    ) -> BoxFuture<'static, Option<Message>> {
        Box::pin(async move {
            let _permit = self.permits.acquire().await.ok()?;
            if deadline.is_some_and(|deadline| Instant::now() >= deadline) {
                skip_expired(&self.context, &subject);
                return None;
            }
            Some(reply_for(&self.context, &subject, message, &*self.handler).await)
        })
    }
}

/// One message's handling, owning what it needs, as a route's loop runs it:
/// the handling itself, not a future around it, so it is moved into its box
/// once and holds the message once.
fn handling<H: RouteHandler>(
    context: Arc<RouteContext>,
    incoming: Incoming,
    handler: Arc<H>,
) -> impl Future<Output = ()> + Send + 'static {
    handle(context, incoming, handler)
}

/// How the message arrived decides what happens, never how the handler was
/// registered. Not an `async fn`, which would hold `incoming` beside the
/// future it is moved into.
fn handle<C, R, H>(context: C, incoming: Incoming, handler: R) -> impl Future<Output = ()> + Send
where
    C: Deref<Target = RouteContext> + Send,
    R: Deref<Target = H> + Send,
    H: RouteHandler,
{
    match incoming.expects_reply() {
        true => Either::Left(answer(context, incoming, handler)),
        false => Either::Right(handle_event(context, incoming, handler)),
    }
}
