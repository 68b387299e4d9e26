//! Running a route's handler once: the trace it continues, the context it
//! gets, and its span and metrics.

use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;

use super::context::{RouteContext, RouteHandler};
use super::recover::run_once;
use crate::error::ErrorKind;
use crate::handler::{Context, Rejection};
use crate::headers::Headers;
use crate::message::Message;
use crate::observe::{observe_with, Operation};
use crate::settings::Style;
use crate::trace::TraceContext;

/// The trace a received message continues: (the caller's context, this
/// handler's), or a new trace if the message carries none.
pub(super) fn incoming_trace(message: &Message) -> (TraceContext, TraceContext) {
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

/// The handler's context, holding the message's headers (the handler
/// decodes only its payload).
fn handler_context(
    context: &RouteContext,
    subject: &Arc<str>,
    headers: Headers,
    trace: &TraceContext,
    style: Style,
) -> Context {
    Context {
        subject: subject.clone(),
        headers,
        trace: trace.clone(),
        style,
        state: context.state.clone(),
    }
}

/// Runs the handler once on `payload` inside the handler's trace and span,
/// recording the outcome's error kind: (caller's context, handler's
/// context) in `traces`. Not an `async fn`, which would hold the handler's
/// future twice (see [`crate::observe::Observed`]).
#[allow(clippy::too_many_arguments)]
#[inline]
pub(super) fn run_observed<'a, H: RouteHandler>(
    context: &'a RouteContext,
    operation: Operation,
    subject: &'a Arc<str>,
    handler: &'a H,
    payload: &'a Bytes,
    headers: Headers,
    (parent, trace): (&TraceContext, &TraceContext),
    style: Style,
) -> impl Future<Output = Result<Message, Rejection>> + 'a {
    let handler_context = handler_context(context, subject, headers, trace, style);
    let run = run_once(handler, payload, handler_context);
    observe_with(
        operation,
        subject,
        context.backend,
        Some(parent),
        trace.clone().scope(run),
        |outcome: &Result<Message, Rejection>| match outcome {
            Ok(_) => None,
            Err(rejection) if rejection.is_undecodable() => Some(ErrorKind::Codec),
            Err(_) => Some(ErrorKind::Remote),
        },
    )
}
