//! Running a route's handler once: the trace it continues, the context it
//! gets, and its span and metrics.

use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;

use super::context::{RouteContext, RouteHandler};
use super::recover::run_once;
use crate::error::ErrorKind;
use crate::handler::{Received, Rejection};
use crate::headers::Headers;
use crate::message::Message;
use crate::observe::{observe_with, Operation};
use crate::settings::Style;
use crate::trace::TraceContext;

/// The trace a received message continues: (the caller's context, if the
/// message carries one, this handler's), or a new trace if it carries none.
pub(super) fn incoming_trace(message: &Message) -> (Option<TraceContext>, TraceContext) {
    match TraceContext::from_headers(&message.headers) {
        Some(parent) => {
            let child = parent.child();
            (Some(parent), child)
        }
        None => (None, TraceContext::new_root()),
    }
}

/// Runs the handler once on `payload` inside the handler's trace and span,
/// recording the outcome's error kind: (caller's context, if any, handler's
/// context) in `traces`; the span continues the caller's, or the handler's
/// new trace. Not an `async fn`, which would hold the handler's
/// future twice (see [`crate::observe::Observed`]).
#[allow(clippy::too_many_arguments)]
#[inline]
pub(super) fn run_observed<'a, H: RouteHandler>(
    context: &'a RouteContext,
    operation: Operation,
    subject: &'a Arc<str>,
    handler: &'a H,
    payload: &'a Bytes,
    headers: &'a Headers,
    (parent, trace): (Option<&TraceContext>, &'a TraceContext),
    style: Style,
) -> impl Future<Output = Result<Message, Rejection>> + 'a {
    let received = Received {
        subject,
        headers,
        trace,
        style,
        state: &context.state,
    };
    let run = run_once(handler, payload, received);
    observe_with(
        operation,
        subject,
        context.backend,
        Some(parent.unwrap_or(trace)),
        trace.clone().scope(run),
        |outcome: &Result<Message, Rejection>| match outcome {
            Ok(_) => None,
            Err(rejection) if rejection.is_undecodable() => Some(ErrorKind::Codec),
            Err(_) => Some(ErrorKind::Remote),
        },
    )
}
