//! OpenTelemetry integration (feature `otel`), through `tracing-opentelemetry`.
//!
//! With a `tracing_opentelemetry` layer installed, every `switchboard` span is
//! an OpenTelemetry span. This module makes them one trace across services:
//! a handler's span takes the caller's `traceparent` as its remote parent, and
//! a call made inside an OpenTelemetry span that switchboard did not start
//! continues that span's trace.

use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::trace_context::TraceContext;

/// Makes `span` a child of the remote caller described by `parent`.
pub(crate) fn set_remote_parent(span: &tracing::Span, parent: &TraceContext) {
    let remote = SpanContext::new(
        TraceId::from_bytes(parent.trace_id_bytes()),
        SpanId::from_bytes(parent.span_id_bytes()),
        TraceFlags::new(parent.flags()),
        true,
        TraceState::default(),
    );
    let context = opentelemetry::Context::new().with_remote_span_context(remote);
    // Fails only if the span was already started with a parent; then it keeps that one.
    let _ = span.set_parent(context);
}

/// The trace context of the current OpenTelemetry span, if it has a valid one.
pub(crate) fn current() -> Option<TraceContext> {
    let context = tracing::Span::current().context();
    let span = context.span();
    let span_context = span.span_context();
    if !span_context.is_valid() {
        return None;
    }
    Some(TraceContext::from_parts(
        span_context.trace_id().to_bytes(),
        span_context.span_id().to_bytes(),
        span_context.trace_flags().to_u8(),
    ))
}
