//! Serving one route: every message, request or event, goes through the same handler.

use std::any::Any;
use std::collections::{HashMap, VecDeque};
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use tokio::task::JoinSet;

use super::shutdown::{HeldOutcome, Signal};
use super::{ErasedHandler, EventPolicy};
use crate::bus::Bus;
use crate::error::ErrorKind;
use crate::handler::{Context, Rejection, StateMap};
use crate::incoming::Incoming;
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
}

pub(super) async fn serve(
    context: Arc<RouteContext>,
    mut subscription: Subscription,
    handler: ErasedHandler,
    concurrency: usize,
) {
    let mut stopping = context.shutdown.watch();
    let mut in_flight: JoinSet<Option<String>> = JoinSet::new();
    // Events with a key (`sb-key`) run one at a time per key, in arrival
    // order; each busy key's later events wait here. Running plus waiting
    // messages stay within `concurrency`, so a hot key cannot fill memory.
    let mut keys = KeyedQueue::default();
    loop {
        if stopping.borrow().is_some() {
            break;
        }
        let room = in_flight.len() + keys.waiting < concurrency;
        let next = tokio::select! {
            _ = stopping.changed() => break,
            Some(finished) = in_flight.join_next(), if !in_flight.is_empty() => {
                if let Ok(Some(key)) = finished {
                    if let Some(incoming) = keys.next_for(&key) {
                        spawn(&mut in_flight, &context, &handler, incoming, Some(key));
                    }
                }
                continue;
            }
            next = subscription.next(), if room => next,
        };
        let Some(incoming) = next else { break };
        if concurrency == 1 {
            // Ordered route: the next message waits for this one.
            handle(&context, incoming, &handler).await;
            continue;
        }
        let key = match incoming.expects_reply() {
            true => None,
            false => incoming.headers().get(wire::KEY).map(str::to_owned),
        };
        let incoming = match &key {
            Some(key) => match keys.start_or_wait(key, incoming) {
                Some(incoming) => incoming,
                None => continue,
            },
            None => incoming,
        };
        spawn(&mut in_flight, &context, &handler, incoming, key);
    }
    drop(subscription);
    // Messages of busy keys were taken from the subscription: they run too.
    while let Some(finished) = in_flight.join_next().await {
        if let Ok(Some(key)) = finished {
            if let Some(incoming) = keys.next_for(&key) {
                spawn(&mut in_flight, &context, &handler, incoming, Some(key));
            }
        }
    }
}

/// Handles one message on its own task; the task's result is the message's key.
fn spawn(
    in_flight: &mut JoinSet<Option<String>>,
    context: &Arc<RouteContext>,
    handler: &ErasedHandler,
    incoming: Incoming,
    key: Option<String>,
) {
    let (context, handler) = (context.clone(), handler.clone());
    in_flight.spawn(async move {
        handle(&context, incoming, &handler).await;
        key
    });
}

/// Per-key order for concurrent routes: which keys have an event running,
/// and the events waiting behind each.
#[derive(Default)]
struct KeyedQueue {
    busy: HashMap<String, VecDeque<Incoming>>,
    waiting: usize,
}

impl KeyedQueue {
    /// `Some(incoming)` to run it now (its key was free); `None` when it waits.
    fn start_or_wait(&mut self, key: &str, incoming: Incoming) -> Option<Incoming> {
        match self.busy.get_mut(key) {
            Some(queue) => {
                queue.push_back(incoming);
                self.waiting += 1;
                None
            }
            None => {
                self.busy.insert(key.to_owned(), VecDeque::new());
                Some(incoming)
            }
        }
    }

    /// The next event of `key` once its running one finished; frees the key when none waits.
    fn next_for(&mut self, key: &str) -> Option<Incoming> {
        let queue = self.busy.get_mut(key)?;
        match queue.pop_front() {
            Some(incoming) => {
                self.waiting -= 1;
                Some(incoming)
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
    subject: &str,
    message: &mut Message,
    trace: &TraceContext,
    style: Style,
) -> Context {
    Context {
        subject: subject.to_owned(),
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
    subject: &str,
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

fn rejection_reply(rejection: &Rejection) -> Message {
    match rejection.is_undecodable() {
        true => wire::error_reply(wire::STATUS_CODEC_ERROR, rejection.message()),
        false => wire::handler_error_reply(rejection.code(), rejection.message()),
    }
}

async fn answer(context: &RouteContext, mut incoming: Incoming, handler: &ErasedHandler) {
    let subject = incoming.subject().to_owned();
    if incoming.is_expired() {
        // The caller already got a timeout (and may have retried): running the
        // handler now would do work nobody waits for, possibly twice.
        tracing::warn!(%subject, service = %context.service, "request expired before it was handled; skipped");
        observe::expired(&context.service, &context.route);
        context.shutdown.count_expired();
        settle(&subject, incoming.ack().await);
        return;
    }
    let message = incoming.take_message();
    let (parent, trace) = incoming_trace(&message);
    let outcome = run_observed(
        context,
        Operation::HandleRequest,
        &subject,
        handler,
        message,
        (&parent, &trace),
        Style::Sync,
    )
    .await;
    let reply = match outcome {
        Ok(reply) => reply,
        Err(rejection) => {
            if rejection.message().starts_with("handler panicked") {
                tracing::error!(%subject, service = %context.service, "{}", rejection.message());
            }
            rejection_reply(&rejection)
        }
    };
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

/// The pause before retrying an event whose handler failed `failures` times
/// in a row: 100 ms, doubling up to 5 s.
pub(super) fn retry_pause(failures: u32) -> Duration {
    let millis = 50u64.saturating_mul(1 << failures.min(7));
    Duration::from_millis(millis.min(5_000))
}

/// Why an event's handling ended without success.
struct GaveUp {
    reason: String,
    attempts: u32,
    undecodable: bool,
    /// Shutdown's grace ran out before the retries did.
    at_shutdown: bool,
}

async fn handle_event(context: &RouteContext, mut incoming: Incoming, handler: &ErasedHandler) {
    let subject = incoming.subject().to_owned();
    let message = incoming.take_message();
    let (parent, trace) = incoming_trace(&message);
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
            Ok(_) => break None,
            Err(rejection) => rejection,
        };
        let reason = rejection.message().to_owned();
        if rejection.is_undecodable() || attempts >= context.policy.max_attempts {
            break Some(GaveUp {
                reason,
                attempts,
                undecodable: rejection.is_undecodable(),
                at_shutdown: false,
            });
        }
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
                attempts,
                undecodable: false,
                at_shutdown: true,
            });
        }
    };
    let Some(gave_up) = gave_up else {
        if held_at_shutdown {
            context.shutdown.record(HeldOutcome::Completed);
        }
        settle(&subject, incoming.ack().await);
        return;
    };
    let outcome = give_up(context, &subject, incoming, message, &gave_up).await;
    if gave_up.at_shutdown || held_at_shutdown || matches!(outcome, HeldOutcome::Lost) {
        context.shutdown.record(outcome);
    }
}

/// Dead-letters an event whose handling ended, or nacks it; says which.
async fn give_up(
    context: &RouteContext,
    subject: &str,
    mut incoming: Incoming,
    message: Message,
    gave_up: &GaveUp,
) -> HeldOutcome {
    let GaveUp {
        reason, attempts, ..
    } = gave_up;
    let attempts = *attempts;
    if let Some(dead_letter_subject) = &context.dead_letter {
        let letter = dead_letter(&context.service, subject, message, reason, attempts);
        match context
            .bus
            .publish_reserved(dead_letter_subject, letter)
            .await
        {
            Ok(()) => {
                tracing::error!(%subject, service = %context.service, attempts, %reason, dead_letter = %dead_letter_subject, "event dead-lettered");
                observe::dead_letter(&context.service, &context.route);
                settle(subject, incoming.ack().await);
                return HeldOutcome::DeadLettered;
            }
            Err(err) => {
                tracing::error!(%subject, service = %context.service, error = %err, "could not dead-letter event");
            }
        }
    } else if gave_up.undecodable {
        // Redelivery cannot fix a payload; without a dead-letter subject it is logged and dropped.
        tracing::error!(%subject, service = %context.service, %reason, "event payload cannot be decoded and there is no dead-letter subject; dropped");
        settle(subject, incoming.ack().await);
        return HeldOutcome::Lost;
    }
    settle(subject, incoming.nack().await);
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
pub(super) fn dead_letter(
    service: &str,
    subject: &str,
    message: Message,
    reason: &str,
    attempts: u32,
) -> Message {
    let mut letter = Message::new(message.payload);
    for (name, value) in message.headers.iter() {
        if !wire::is_reserved(name) || wire::is_settable(name) {
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

fn settle(subject: &str, result: crate::error::Result<()>) {
    if let Err(err) = result {
        tracing::warn!(%subject, error = %err, "could not acknowledge event");
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
        let letter = dead_letter("orders", "orders.placed", message, "bad\nthing", 5);
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
