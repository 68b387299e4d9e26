//! OpenTelemetry integration (feature `otel`), through `tracing-opentelemetry`.
//!
//! With a `tracing_opentelemetry` layer installed, every `switchboard` span is
//! an OpenTelemetry span. This module makes them one trace across services:
//! a handler's span takes the caller's `traceparent` as its remote parent, and
//! a call made inside an OpenTelemetry span that switchboard did not start
//! continues that span's trace.

use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// A span's ids and flags as W3C trace context carries them: the trace id,
/// the span id and the flags byte. Plain bytes keep this module below
/// `trace`, which turns them into a `TraceContext`.
pub type SpanParts = ([u8; 16], [u8; 8], u8);

/// Makes `span` a child of the remote caller whose span is `parent`.
pub fn set_remote_parent(span: &tracing::Span, parent: SpanParts) {
    let (trace_id, span_id, flags) = parent;
    let remote = SpanContext::new(
        TraceId::from_bytes(trace_id),
        SpanId::from_bytes(span_id),
        TraceFlags::new(flags),
        true,
        TraceState::default(),
    );
    let context = opentelemetry::Context::new().with_remote_span_context(remote);
    // Fails only if the span was already started with a parent; then it keeps that one.
    let _ = span.set_parent(context);
}

/// The ids of the current OpenTelemetry span, if it has valid ones.
pub fn current() -> Option<SpanParts> {
    // No subscriber enables any level: no span is current, so no
    // OpenTelemetry one either (a static read; the lookup below costs about
    // 120 instructions).
    if tracing::level_filters::LevelFilter::current() == tracing::level_filters::LevelFilter::OFF {
        return None;
    }
    let context = tracing::Span::current().context();
    let span = context.span();
    let span_context = span.span_context();
    if !span_context.is_valid() {
        return None;
    }
    Some((
        span_context.trace_id().to_bytes(),
        span_context.span_id().to_bytes(),
        span_context.trace_flags().to_u8(),
    ))
}
