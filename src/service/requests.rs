//! Serving requests: the handler's reply, or an error reply that names who
//! refused; a request whose caller already gave up is skipped.

use std::future::Future;
use std::ops::Deref;
use std::sync::Arc;

use super::context::{RouteContext, RouteHandler};
use super::invoke::{incoming_trace, run_observed};
use crate::error::Origin;
use crate::handler::Rejection;
use crate::incoming::Incoming;
use crate::message::Message;
use crate::observe::{self, Operation};
use crate::settings::Style;
use crate::wire;

/// Answers one request and acknowledges it.
// Not an `async fn`, which would hold `incoming` twice: as its argument and
// as the local it is moved into.
#[allow(clippy::manual_async_fn)]
pub(super) fn answer<C, R, H>(
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
        if incoming.is_expired() {
            skip_expired(context, &subject);
            context.settle(&subject, incoming.ack().await);
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
}

/// A request whose caller already gave up is not handled: the caller got a
/// timeout (and may have retried), so running the handler now would do work
/// nobody waits for, possibly twice.
pub(super) fn skip_expired(context: &RouteContext, subject: &str) {
    tracing::warn!(%subject, service = %context.service, "request expired before it was handled; skipped");
    observe::expired(&context.service, &context.route);
    context.shutdown.count_expired();
}

/// The reply to one request: the handler's result, or the error reply for
/// its rejection or panic.
pub(super) async fn reply_for<H: RouteHandler>(
    context: &RouteContext,
    subject: &Arc<str>,
    message: Message,
    handler: &H,
) -> Message {
    let (parent, trace) = incoming_trace(&message);
    let Message { payload, headers } = message;
    let outcome = run_observed(
        context,
        Operation::HandleRequest,
        subject,
        handler,
        &payload,
        &headers,
        (parent.as_ref(), &trace),
        Style::Sync,
    )
    .await;
    match outcome {
        Ok(reply) => reply,
        Err(rejection) => {
            if rejection.is_panic() {
                tracing::error!(%subject, service = %context.service, "{}", rejection.message());
            }
            rejection_reply(context, subject, &rejection)
        }
    }
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
