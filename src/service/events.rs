//! Serving events: the handler run with retries, a redelivery skipped by
//! dedup, the outcome of a deferred command published back, and an event
//! given up on dead-lettered.

use super::context::{RouteContext, RouteHandler};
use super::dead_letter::{give_up, GaveUp};
use super::dedup::{self, Begun, Claim};
use super::invoke::{incoming_trace, run_observed};
use super::retry::{refused_for_good, retry_pause};
use super::shutdown::HeldOutcome;
use crate::handler::Rejection;
use crate::incoming::Incoming;
use crate::message::Message;
use crate::observe::{self, Operation};
use crate::settings::Style;
use crate::trace::TraceContext;
use crate::wire;
use std::future::Future;
use std::ops::Deref;
use std::sync::Arc;

/// Handles one event: retried, dead-lettered or acknowledged.
// Not an `async fn`, which would hold `incoming` twice: as its argument and
// as the local it is moved into.
#[allow(clippy::manual_async_fn)]
pub(super) fn handle_event<C, R, H>(
    context: C,
    mut incoming: Incoming,
    handler: R,
) -> impl Future<Output = ()> + Send
where
    C: Deref<Target = RouteContext> + Send,
    R: Deref<Target = H> + Send,
    H: RouteHandler,
{
    async move {
        let (context, handler) = (&*context, &*handler);
        let subject = incoming.shared_subject();
        // The id is looked up only on a route with dedup: no work per event elsewhere.
        let dedup_id = context
            .dedup
            .as_ref()
            .and_then(|dedup| Some((dedup, dedup::delivery_id(&incoming)?)));
        let claim = match dedup_id {
            // Boxed here and below: a path most events never take adds a
            // pointer to the handling future, not the size of its own.
            Some((dedup, id)) => match Box::pin(dedup.begin(&id)).await {
                Begun::Handled => {
                    tracing::debug!(%subject, service = %context.service, id, "event already handled (dedup); skipped");
                    observe::duplicate(&context.service, &context.route);
                    context.shutdown.count_duplicate();
                    context.settle(&subject, incoming.ack().await);
                    return;
                }
                Begun::Fresh(claim) => Some(claim),
            },
            None => None,
        };
        let message = incoming.take_message();
        let traces = incoming_trace(&message);
        let malformed =
            match context.cloudevents && crate::cloudevents::carries_attributes(&message.headers) {
                true => crate::cloudevents::CloudEvent::from_headers(&message.headers).err(),
                false => None,
            };
        // The first attempt runs here; retries and giving up are boxed, so
        // the handling future most events need is the size of this path.
        let first = match malformed {
            Some(reason) => Attempt::Malformed(reason),
            None => run_attempt(context, handler, &subject, &message, &traces)
                .await
                .into(),
        };
        // Nothing to remember or publish back: acknowledged here.
        if matches!(first, Attempt::Handled(_)) && claim.is_none() && !is_deferred(&message) {
            context.settle(&subject, incoming.ack().await);
            return;
        }
        let event = Event {
            subject,
            incoming,
            message,
            traces,
            claim,
        };
        match first {
            Attempt::Handled(reply) => Box::pin(handled(context, event, reply, false)).await,
            first => Box::pin(retry_or_give_up(context, handler, event, first)).await,
        }
    }
}

/// Whether the event is a sync command published instead of sent, whose
/// outcome is published back.
fn is_deferred(message: &Message) -> bool {
    message.headers.contains(wire::DEFERRED_ID)
}

/// What one run of the handler came to.
enum Attempt {
    Handled(Message),
    Rejected(Rejection),
    /// The CloudEvents attributes are malformed: the handler did not run.
    Malformed(String),
}

impl From<Result<Message, Rejection>> for Attempt {
    fn from(outcome: Result<Message, Rejection>) -> Self {
        match outcome {
            Ok(reply) => Attempt::Handled(reply),
            Err(rejection) => Attempt::Rejected(rejection),
        }
    }
}

/// Runs the handler once on the event.
#[inline]
fn run_attempt<'a, H: RouteHandler>(
    context: &'a RouteContext,
    handler: &'a H,
    subject: &'a Arc<str>,
    message: &'a Message,
    (parent, trace): &'a (Option<TraceContext>, TraceContext),
) -> impl Future<Output = Result<Message, Rejection>> + 'a {
    run_observed(
        context,
        Operation::HandleEvent,
        subject,
        handler,
        // The payload is lent, not cloned: the message stays whole for
        // a dead letter, and a retry decodes it afresh.
        &message.payload,
        &message.headers,
        (parent.as_ref(), trace),
        Style::Async,
    )
}

/// An event after its first attempt, with what finishing it needs.
struct Event<'a> {
    subject: Arc<str>,
    incoming: Incoming,
    message: Message,
    traces: (Option<TraceContext>, TraceContext),
    claim: Option<Claim<'a>>,
}

/// An event whose handler has run: remembered as handled, its outcome
/// published back if it was a deferred command, and acknowledged.
async fn handled(context: &RouteContext, event: Event<'_>, reply: Message, held_at_shutdown: bool) {
    let Event {
        subject,
        mut incoming,
        message,
        claim,
        ..
    } = event;
    if held_at_shutdown {
        context.shutdown.record(HeldOutcome::Completed);
    }
    // Remembered before the acknowledgement: a redelivery after it is skipped.
    if let Some(claim) = claim {
        claim.handled().await;
    }
    if let Some(id) = message.headers.get(wire::DEFERRED_ID) {
        publish_outcome(context, &subject, id.to_owned(), reply).await;
    }
    context.settle(&subject, incoming.ack().await);
}

/// After a first attempt that did not handle the event: retried under the
/// route's policy, then handled, or dead-lettered with the reason.
async fn retry_or_give_up<H: RouteHandler>(
    context: &RouteContext,
    handler: &H,
    event: Event<'_>,
    first: Attempt,
) {
    // Set once this event has waited to retry while the service was stopping.
    let mut held_at_shutdown = false;
    let mut attempts = 1u32;
    let mut last = first;
    let gave_up = loop {
        let rejection = match last {
            Attempt::Handled(reply) => {
                return handled(context, event, reply, held_at_shutdown).await
            }
            // Retrying cannot mend the attributes: dead-lettered with the reason at once.
            Attempt::Malformed(reason) => {
                break GaveUp {
                    reason,
                    code: Some(crate::cloudevents::MALFORMED.to_owned()),
                    attempts: 0,
                    is_final: true,
                    at_shutdown: false,
                }
            }
            Attempt::Rejected(rejection) => rejection,
        };
        let subject = &event.subject;
        let reason = rejection.message().to_owned();
        let is_final = refused_for_good(&context.policy, &rejection);
        if is_final || attempts >= context.policy.max_attempts {
            break GaveUp {
                reason,
                code: rejection.code().map(str::to_owned),
                attempts,
                is_final,
                at_shutdown: false,
            };
        }
        let rejection_code = rejection.code().map(str::to_owned);
        tracing::warn!(%subject, service = %context.service, attempts, %reason, "event handler failed; retrying");
        observe::redelivery(&context.service, &context.route);
        let (out_of_grace, held) = wait_to_retry(context, attempts).await;
        held_at_shutdown |= held;
        if out_of_grace {
            break GaveUp {
                reason: format!("service shut down while retrying: {reason}"),
                code: rejection_code,
                attempts,
                is_final: false,
                at_shutdown: true,
            };
        }
        attempts += 1;
        last = run_attempt(context, handler, subject, &event.message, &event.traces)
            .await
            .into();
    };
    let Event {
        subject,
        incoming,
        message,
        claim,
        ..
    } = event;
    let deferred = message.headers.get(wire::DEFERRED_ID).map(str::to_owned);
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

/// Waits before retry `attempts + 1`: `(true, _)` if the shutdown's grace
/// ends first, `(_, true)` if the service began stopping meanwhile.
async fn wait_to_retry(context: &RouteContext, attempts: u32) -> (bool, bool) {
    let wake = tokio::time::Instant::now() + retry_pause(attempts);
    // Watched from here: a shutdown begun earlier is seen by `deadline` below.
    let mut stopping = context.shutdown.watch();
    let mut held_at_shutdown = false;
    loop {
        if let Some(deadline) = context.shutdown.deadline() {
            held_at_shutdown = true;
            if deadline < wake {
                return (true, true);
            }
        }
        tokio::select! {
            _ = tokio::time::sleep_until(wake) => return (false, held_at_shutdown),
            changed = stopping.changed() => if changed.is_err() { return (false, held_at_shutdown) },
        }
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
