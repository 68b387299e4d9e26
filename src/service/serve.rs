//! Serving one route: every message, request or event, goes through the same handler.

use std::any::Any;
use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use futures_util::FutureExt;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;

use super::dedup::{self, Begun, Dedup};
use super::shutdown::{HeldOutcome, Signal};
use super::{ErasedHandler, EventPolicy};
use crate::bus::Bus;
use crate::error::{ErrorKind, Origin};
use crate::handler::{Context, Rejection, StateMap};
use crate::incoming::Incoming;
use crate::local::InlineAnswer;
use crate::message::Message;
use crate::observe::{self, observe_with, Operation};
use crate::settings::Style;
use crate::subscription::Subscription;
use crate::trace_context::TraceContext;
use crate::wire;

/// What every message on one route needs to know about where it runs.
pub(super) struct RouteContext {
    pub(super) service: String,
    pub(super) route: String,
    pub(super) backend: &'static str,
    pub(super) policy: EventPolicy,
    /// The dead-letter subject, published through `bus`.
    pub(super) dead_letter: Option<String>,
    pub(super) bus: Bus,
    pub(super) state: Arc<StateMap>,
    pub(super) shutdown: Signal,
    /// Whether a nacked event comes back (Kafka, JetStream).
    pub(super) redelivers: bool,
    /// The route's memory of handled message ids (`dedup` in the route table).
    pub(super) dedup: Option<Arc<Dedup>>,
}

pub(super) async fn serve(
    context: Arc<RouteContext>,
    mut subscription: Subscription,
    handler: ErasedHandler,
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
    };
    let mut stopping = context.shutdown.watch();
    let stop = async move {
        let _ = stopping.wait_for(Option::is_some).await;
    };
    let ended = route.take(&mut subscription, stop).await;
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
    // Only now, with every acknowledgement made, does a backend that commits
    // on unsubscribe (Kafka) let go.
    drop(held_open);
}

/// One route's loop state: the messages in flight, the keys busy, and the
/// permit for the next message.
struct RouteLoop<'a> {
    context: &'a Arc<RouteContext>,
    handler: &'a ErasedHandler,
    permits: &'a Arc<Semaphore>,
    concurrency: usize,
    in_flight: JoinSet<Option<String>>,
    /// Events with a key (`sb-key`) run one at a time per key, in arrival
    /// order; each busy key's later events wait here with their permits.
    keys: KeyedQueue,
    permit: Option<OwnedSemaphorePermit>,
}

impl RouteLoop<'_> {
    /// Takes and handles messages until `stop` completes (`false`) or the
    /// subscription ends (`true`).
    async fn take(
        &mut self,
        subscription: &mut Subscription,
        stop: impl Future<Output = ()>,
    ) -> bool {
        tokio::pin!(stop);
        loop {
            let next = tokio::select! {
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
            self.dispatch(Held { incoming, permit }).await;
        }
    }

    /// Handles one message: in turn on an ordered route, else concurrently,
    /// behind the running event of its key if it has one.
    async fn dispatch(&mut self, held: Held) {
        if self.concurrency == 1 {
            // Ordered route: the next message waits for this one.
            handle(self.context, held.incoming, self.handler).await;
            return;
        }
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

    fn running(&mut self) -> Running<'_> {
        Running {
            in_flight: &mut self.in_flight,
            context: self.context,
            handler: self.handler,
        }
    }

    /// Once an event of `key` finished: starts the ones waiting behind it.
    fn next_of_key(&mut self, key: String) {
        let mut running = Running {
            in_flight: &mut self.in_flight,
            context: self.context,
            handler: self.handler,
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
    }
}

/// An event the route was given but did not start before the grace period
/// ended: nacked, so a redelivering backend sends it again; elsewhere lost,
/// and counted as such.
async fn release(context: &RouteContext, mut incoming: Incoming) {
    let subject = incoming.shared_subject();
    settle(context, &subject, incoming.nack().await);
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
struct Running<'a> {
    in_flight: &'a mut JoinSet<Option<String>>,
    context: &'a Arc<RouteContext>,
    handler: &'a ErasedHandler,
}

impl Running<'_> {
    /// Handles one message: right here if its handler finishes without
    /// waiting (most do: no task, no wake-up, and replies leave in order, so
    /// the client batches their writes), else on its own task, whose result
    /// is the message's key. `Some(key)` if it finished here.
    fn start(&mut self, held: Held, key: Option<String>) -> Option<Option<String>> {
        let Held { incoming, permit } = held;
        let (context, handler) = (self.context.clone(), self.handler.clone());
        let mut handling = Box::pin(async move { handle(&context, incoming, &handler).await });
        // Polled once without a waker: a future left pending is polled again
        // by its task at once, which registers the task's waker.
        if handling.as_mut().now_or_never().is_some() {
            drop(permit);
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
    fn next_of_key(&mut self, keys: &mut KeyedQueue, key: String) {
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
struct InlineRoute {
    context: Arc<RouteContext>,
    handler: ErasedHandler,
    permits: Arc<Semaphore>,
}

impl InlineAnswer for InlineRoute {
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
            Some(reply_for(&self.context, &subject, message, &self.handler).await)
        })
    }
}

/// Per-key order for concurrent routes: which keys have an event running,
/// and the events waiting behind each.
#[derive(Default)]
struct KeyedQueue {
    busy: HashMap<String, VecDeque<Held>>,
    waiting: usize,
}

impl KeyedQueue {
    /// `Some(held)` to run it now (its key was free); `None` when it waits.
    fn start_or_wait(&mut self, key: &str, held: Held) -> Option<Held> {
        match self.busy.get_mut(key) {
            Some(queue) => {
                queue.push_back(held);
                self.waiting += 1;
                None
            }
            None => {
                self.busy.insert(key.to_owned(), VecDeque::new());
                Some(held)
            }
        }
    }

    /// The next event of `key` once its running one finished; frees the key when none waits.
    fn next_for(&mut self, key: &str) -> Option<Held> {
        let queue = self.busy.get_mut(key)?;
        match queue.pop_front() {
            Some(held) => {
                self.waiting -= 1;
                Some(held)
            }
            None => {
                self.busy.remove(key);
                None
            }
        }
    }
}

/// How the message arrived decides what happens, never how the handler was registered.
async fn handle(context: &RouteContext, incoming: Incoming, handler: &ErasedHandler) {
    if incoming.expects_reply() {
        answer(context, incoming, handler).await;
    } else {
        handle_event(context, incoming, handler).await;
    }
}

/// The trace a received message continues: (the caller's context, this
/// handler's), or a new trace if the message carries none.
fn incoming_trace(message: &Message) -> (TraceContext, TraceContext) {
    match TraceContext::from_headers(&message.headers) {
        Some(parent) => {
            let child = parent.child();
            (parent, child)
        }
        None => {
            let root = TraceContext::new_root();
            (root.clone(), root)
        }
    }
}

/// The handler's context; the headers move out of `message` (the handler
/// decodes only its payload), so nothing is copied per call.
fn handler_context(
    context: &RouteContext,
    subject: &Arc<str>,
    message: &mut Message,
    trace: &TraceContext,
    style: Style,
) -> Context {
    Context {
        subject: subject.clone(),
        headers: std::mem::take(&mut message.headers),
        trace: trace.clone(),
        style,
        state: context.state.clone(),
    }
}

/// Runs the handler once, turning a panic into a rejection.
async fn run_once(
    handler: &ErasedHandler,
    message: Message,
    handler_context: Context,
) -> Result<Message, Rejection> {
    match AssertUnwindSafe(handler(message, handler_context))
        .catch_unwind()
        .await
    {
        Ok(outcome) => outcome,
        Err(panic) => Err(Rejection::new(format!(
            "handler panicked: {}",
            panic_message(&panic)
        ))),
    }
}

/// Runs the handler once inside the handler's trace and span, recording the
/// outcome's error kind: (caller's context, handler's context) in `traces`.
async fn run_observed(
    context: &RouteContext,
    operation: Operation,
    subject: &Arc<str>,
    handler: &ErasedHandler,
    message: Message,
    (parent, trace): (&TraceContext, &TraceContext),
    style: Style,
) -> Result<Message, Rejection> {
    let mut message = message;
    let handler_context = handler_context(context, subject, &mut message, trace, style);
    let run = run_once(handler, message, handler_context);
    observe_with(
        operation,
        subject,
        context.backend,
        Some(parent),
        trace.clone().scope(run),
        |outcome| match outcome {
            Ok(_) => None,
            Err(rejection) if rejection.is_undecodable() => Some(ErrorKind::Codec),
            Err(_) => Some(ErrorKind::Remote),
        },
    )
    .await
}

/// The error reply for a handler's rejection, naming who refused first: the
/// service further down that the rejection came from, or this one.
fn rejection_reply(context: &RouteContext, subject: &str, rejection: &Rejection) -> Message {
    if rejection.is_undecodable() {
        return wire::error_reply(wire::STATUS_CODEC_ERROR, rejection.message());
    }
    let here;
    let origin = match rejection.origin() {
        Some(origin) => origin,
        None => {
            here = Origin {
                service: context.service.clone(),
                subject: subject.to_owned(),
            };
            &here
        }
    };
    wire::handler_error_reply(rejection.code(), rejection.message(), Some(origin))
}

async fn answer(context: &RouteContext, mut incoming: Incoming, handler: &ErasedHandler) {
    let subject = incoming.shared_subject();
    if incoming.is_expired() {
        skip_expired(context, &subject);
        settle(context, &subject, incoming.ack().await);
        return;
    }
    let reply = reply_for(context, &subject, incoming.take_message(), handler).await;
    if let Err(err) = incoming.send_reply(reply).await {
        // The caller's reply address was bad or is gone: count it, keep serving.
        tracing::warn!(%subject, service = %context.service, error = %err, "could not send reply");
        observe::undeliverable_reply(&context.service, &context.route);
        context.shutdown.count_undeliverable();
    }
    // Answered: on backends that redeliver (Kafka), the request must not come back.
    if let Err(err) = incoming.ack().await {
        tracing::debug!(%subject, error = %err, "could not acknowledge request");
    }
}

/// A request whose caller already gave up is not handled: the caller got a
/// timeout (and may have retried), so running the handler now would do work
/// nobody waits for, possibly twice.
fn skip_expired(context: &RouteContext, subject: &str) {
    tracing::warn!(%subject, service = %context.service, "request expired before it was handled; skipped");
    observe::expired(&context.service, &context.route);
    context.shutdown.count_expired();
}

/// The reply to one request: the handler's result, or the error reply for
/// its rejection or panic.
async fn reply_for(
    context: &RouteContext,
    subject: &Arc<str>,
    message: Message,
    handler: &ErasedHandler,
) -> Message {
    let (parent, trace) = incoming_trace(&message);
    let outcome = run_observed(
        context,
        Operation::HandleRequest,
        subject,
        handler,
        message,
        (&parent, &trace),
        Style::Sync,
    )
    .await;
    match outcome {
        Ok(reply) => reply,
        Err(rejection) => {
            if rejection.message().starts_with("handler panicked") {
                tracing::error!(%subject, service = %context.service, "{}", rejection.message());
            }
            rejection_reply(context, subject, &rejection)
        }
    }
}

/// The pause before retrying an event whose handler failed `failures` times
/// in a row: 100 ms, doubling up to 5 s.
pub(super) fn retry_pause(failures: u32) -> Duration {
    let millis = 50u64.saturating_mul(1 << failures.min(7));
    Duration::from_millis(millis.min(5_000))
}

/// Why an event's handling ended without success.
struct GaveUp {
    reason: String,
    /// The last rejection's code, if it had one.
    code: Option<String>,
    attempts: u32,
    /// Retrying cannot help: the payload did not decode, or the handler
    /// refused for good (a permanent rejection or a final code).
    is_final: bool,
    /// Shutdown's grace ran out before the retries did.
    at_shutdown: bool,
}

async fn handle_event(context: &RouteContext, mut incoming: Incoming, handler: &ErasedHandler) {
    let subject = incoming.shared_subject();
    // The id is looked up only on a route with dedup: no work per event elsewhere.
    let dedup_id = context
        .dedup
        .as_ref()
        .and_then(|dedup| Some((dedup, dedup::delivery_id(&incoming)?)));
    let claim = match dedup_id {
        Some((dedup, id)) => match dedup.begin(&id).await {
            Begun::Handled => {
                tracing::debug!(%subject, service = %context.service, id, "event already handled (dedup); skipped");
                observe::duplicate(&context.service, &context.route);
                context.shutdown.count_duplicate();
                settle(context, &subject, incoming.ack().await);
                return;
            }
            Begun::Fresh(claim) => Some(claim),
        },
        None => None,
    };
    let message = incoming.take_message();
    let (parent, trace) = incoming_trace(&message);
    // A sync command published instead of sent: its outcome is published back.
    let deferred = message.headers.get(wire::DEFERRED_ID).map(str::to_owned);
    let mut reply = None;
    let mut stopping = context.shutdown.watch();
    // Set once this event has waited to retry while the service was stopping.
    let mut held_at_shutdown = false;
    let mut attempts = 0u32;
    let gave_up = loop {
        attempts += 1;
        let outcome = run_observed(
            context,
            Operation::HandleEvent,
            &subject,
            handler,
            message.clone(),
            (&parent, &trace),
            Style::Async,
        )
        .await;
        let rejection = match outcome {
            Ok(answer) => {
                reply = Some(answer);
                break None;
            }
            Err(rejection) => rejection,
        };
        let reason = rejection.message().to_owned();
        let is_final = context.policy.is_final(&rejection);
        if is_final || attempts >= context.policy.max_attempts {
            break Some(GaveUp {
                reason,
                code: rejection.code().map(str::to_owned),
                attempts,
                is_final,
                at_shutdown: false,
            });
        }
        let rejection_code = rejection.code().map(str::to_owned);
        tracing::warn!(%subject, service = %context.service, attempts, %reason, "event handler failed; retrying");
        observe::redelivery(&context.service, &context.route);
        // Wait before the next attempt; a shutdown whose grace ends first stops the retries.
        let wake = tokio::time::Instant::now() + retry_pause(attempts);
        let out_of_grace = loop {
            if let Some(deadline) = context.shutdown.deadline() {
                held_at_shutdown = true;
                if deadline < wake {
                    break true;
                }
            }
            tokio::select! {
                _ = tokio::time::sleep_until(wake) => break false,
                changed = stopping.changed() => if changed.is_err() { break false },
            }
        };
        if out_of_grace {
            break Some(GaveUp {
                reason: format!("service shut down while retrying: {reason}"),
                code: rejection_code,
                attempts,
                is_final: false,
                at_shutdown: true,
            });
        }
    };
    let Some(gave_up) = gave_up else {
        if held_at_shutdown {
            context.shutdown.record(HeldOutcome::Completed);
        }
        // Remembered before the acknowledgement: a redelivery after it is skipped.
        if let Some(claim) = claim {
            claim.handled().await;
        }
        if let (Some(id), Some(reply)) = (deferred, reply) {
            publish_outcome(context, &subject, id, reply).await;
        }
        settle(context, &subject, incoming.ack().await);
        return;
    };
    let outcome = give_up(context, &subject, incoming, message, &gave_up, claim).await;
    if let (Some(id), HeldOutcome::DeadLettered | HeldOutcome::Lost) = (deferred, &outcome) {
        let mut refusal = Message::new(bytes::Bytes::new());
        let headers = &mut refusal.headers;
        headers.insert(
            wire::DEFERRED_ERROR,
            wire::sanitize_header_value(&gave_up.reason),
        );
        headers.insert(wire::DEFERRED_SERVICE, context.service.as_str());
        if let Some(code) = &gave_up.code {
            headers.insert(wire::DEFERRED_CODE, wire::sanitize_header_value(code));
        }
        publish_outcome(context, &subject, id, refusal).await;
    }
    if gave_up.at_shutdown || held_at_shutdown || matches!(outcome, HeldOutcome::Lost) {
        context.shutdown.record(outcome);
    }
}

/// Publishes a deferred command's outcome (its reply, or its refusal as an
/// error reply) to `deferred.SUBJECT`, marked with the command's id.
async fn publish_outcome(context: &RouteContext, subject: &str, id: String, mut outcome: Message) {
    outcome.headers.insert(wire::DEFERRED_ID, id);
    let outcomes = crate::bus::deferred_outcomes(subject);
    if let Err(err) = context.bus.publish_reserved(&outcomes, outcome).await {
        tracing::warn!(%subject, service = %context.service, error = %err, "could not publish a deferred command's outcome");
    }
}

/// Dead-letters an event whose handling ended, or nacks it; says which.
async fn give_up(
    context: &RouteContext,
    subject: &str,
    mut incoming: Incoming,
    message: Message,
    gave_up: &GaveUp,
    claim: Option<dedup::Claim<'_>>,
) -> HeldOutcome {
    let GaveUp {
        reason, attempts, ..
    } = gave_up;
    let attempts = *attempts;
    if let Some(dead_letter_subject) = &context.dead_letter {
        let letter = dead_letter(&context.service, subject, message, gave_up);
        match context
            .bus
            .publish_reserved(dead_letter_subject, letter)
            .await
        {
            Ok(()) => {
                tracing::error!(%subject, service = %context.service, attempts, %reason, dead_letter = %dead_letter_subject, "event dead-lettered");
                observe::dead_letter(&context.service, &context.route);
                // Dead-lettered is final: a redelivery is not dead-lettered twice.
                if let Some(claim) = claim {
                    claim.handled().await;
                }
                settle(context, subject, incoming.ack().await);
                return HeldOutcome::DeadLettered;
            }
            Err(err) => {
                tracing::error!(%subject, service = %context.service, error = %err, "could not dead-letter event");
            }
        }
    } else if gave_up.is_final {
        // Redelivery cannot change a payload or a final refusal; without a
        // dead-letter subject it is logged and counted as lost.
        tracing::error!(%subject, service = %context.service, %reason, code = gave_up.code.as_deref().unwrap_or(""), "event refused for good (final) and there is no dead-letter subject; dropped");
        settle(context, subject, incoming.ack().await);
        return HeldOutcome::Lost;
    }
    settle(context, subject, incoming.nack().await);
    if context.redelivers {
        tracing::error!(%subject, service = %context.service, attempts, %reason, "event handler gave up; nacked for redelivery");
        HeldOutcome::Returned
    } else {
        tracing::error!(%subject, service = %context.service, attempts, %reason, backend = context.backend, "event handler gave up and the backend does not redeliver; event lost");
        HeldOutcome::Lost
    }
}

/// The event as it goes to the dead-letter subject: the original payload and
/// headers, plus why and where it failed.
fn dead_letter(service: &str, subject: &str, message: Message, gave_up: &GaveUp) -> Message {
    let mut letter = dead_letter_of(service, subject, message, &gave_up.reason, gave_up.attempts);
    if let Some(code) = &gave_up.code {
        letter
            .headers
            .insert(wire::DEAD_LETTER_CODE, wire::sanitize_header_value(code));
    }
    let cause = match (gave_up.is_final, gave_up.at_shutdown) {
        (true, _) => "final",
        (false, true) => "shutdown",
        (false, false) => "retries",
    };
    letter.headers.insert(wire::DEAD_LETTER_CAUSE, cause);
    letter
}

/// The dead letter's payload, user headers, and where and why it failed.
pub(super) fn dead_letter_of(
    service: &str,
    subject: &str,
    message: Message,
    reason: &str,
    attempts: u32,
) -> Message {
    let mut letter = Message::new(message.payload);
    for (name, value) in message.headers.iter() {
        if wire::carries_over(name) {
            letter.headers.insert(name, value);
        }
    }
    letter.headers.insert(wire::DEAD_LETTER_SUBJECT, subject);
    letter
        .headers
        .insert(wire::DEAD_LETTER_ERROR, wire::sanitize_header_value(reason));
    letter
        .headers
        .insert(wire::DEAD_LETTER_ATTEMPTS, attempts.to_string());
    letter.headers.insert(wire::DEAD_LETTER_SERVICE, service);
    letter
}

/// Reports an acknowledgement the backend refused: the event may come back
/// though it was handled, so it is counted and makes the shutdown report unclean.
fn settle(context: &RouteContext, subject: &str, result: crate::error::Result<()>) {
    if let Err(err) = result {
        tracing::warn!(%subject, service = %context.service, error = %err, "could not acknowledge event");
        context.shutdown.count_unacknowledged();
    }
}

fn panic_message(panic: &Box<dyn Any + Send>) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("non-string panic payload")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_pause_grows_and_caps() {
        assert_eq!(retry_pause(1).as_millis(), 100);
        assert_eq!(retry_pause(2).as_millis(), 200);
        assert_eq!(retry_pause(7).as_millis(), 5_000);
        assert_eq!(retry_pause(u32::MAX).as_millis(), 5_000);
    }

    #[test]
    fn dead_letter_keeps_payload_and_user_headers() {
        let message = Message::new("x")
            .with_header("tenant", "a")
            .with_header(wire::CORRELATION_ID, "c1");
        let letter = dead_letter_of("orders", "orders.placed", message, "bad\nthing", 5);
        assert_eq!(&letter.payload[..], b"x");
        assert_eq!(letter.headers.get("tenant"), Some("a"));
        assert_eq!(letter.headers.get(wire::CORRELATION_ID), None);
        assert_eq!(
            letter.headers.get(wire::DEAD_LETTER_ERROR),
            Some("bad?thing")
        );
        assert_eq!(letter.headers.get(wire::DEAD_LETTER_ATTEMPTS), Some("5"));
        assert_eq!(
            letter.headers.get(wire::DEAD_LETTER_SUBJECT),
            Some("orders.placed")
        );
    }
}
