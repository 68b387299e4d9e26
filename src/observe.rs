//! Instrumentation shared by every call: a `tracing` span with the outcome and
//! duration, and (with the `metrics` feature) counters and histograms.
//!
//! Metric names (all labelled with `op` and `backend`):
//! - `switchboard_calls_total` (counter, plus `outcome`: `ok` or an [`ErrorKind`](crate::ErrorKind) name)
//! - `switchboard_call_seconds` (histogram)
//! - `switchboard_in_flight` (gauge)
//!
//! and, for handled events (labelled with `service` and `route`):
//! - `switchboard_redeliveries_total`, `switchboard_dead_letters_total` (counters)
//!
//! and `switchboard_deferred_total{subject}`: sync sends published instead
//! (`fallback = "async"`).

use std::future::Future;
use std::time::Instant;

use tracing::Instrument;

use crate::error::{Error, ErrorKind, Result};
use crate::trace::TraceContext;

/// What kind of call is being observed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Operation {
    /// An outgoing request.
    Request,
    /// An outgoing publish.
    Publish,
    /// A request handled by a service.
    HandleRequest,
    /// An event handled by a service.
    HandleEvent,
}

impl Operation {
    fn as_str(self) -> &'static str {
        match self {
            Operation::Request => "request",
            Operation::Publish => "publish",
            Operation::HandleRequest => "handle_request",
            Operation::HandleEvent => "handle_event",
        }
    }
}

/// Runs `call` inside a span named `switchboard` and records its outcome.
pub(crate) async fn observe<T>(
    op: Operation,
    subject: &str,
    backend: &'static str,
    trace: Option<&TraceContext>,
    call: impl Future<Output = Result<T>>,
) -> Result<T> {
    observe_with(op, subject, backend, trace, call, |result| {
        result.as_ref().err().map(Error::kind)
    })
    .await
}

/// [`observe`] for calls whose output is not a `Result`: `failure` tells
/// which error kind (if any) the output stands for.
pub(crate) async fn observe_with<T>(
    op: Operation,
    subject: &str,
    backend: &'static str,
    trace: Option<&TraceContext>,
    call: impl Future<Output = T>,
    failure: impl FnOnce(&T) -> Option<ErrorKind>,
) -> T {
    let span = tracing::info_span!(
        "switchboard",
        op = op.as_str(),
        subject,
        backend,
        trace_id = tracing::field::Empty,
        outcome = tracing::field::Empty,
        micros = tracing::field::Empty,
    );
    if let (false, Some(trace)) = (span.is_disabled(), trace) {
        span.record("trace_id", trace.trace_id());
        // A handled message's span continues the caller's trace in OpenTelemetry too.
        #[cfg(feature = "otel")]
        if matches!(op, Operation::HandleRequest | Operation::HandleEvent) {
            let parent = (trace.trace_id_bytes(), trace.span_id_bytes(), trace.flags());
            crate::otel::set_remote_parent(&span, parent);
        }
    }
    // Reading the clock is a measurable share of an in-memory call: only when
    // someone will see the duration (an enabled span or the metrics feature).
    let started = (!span.is_disabled() || cfg!(feature = "metrics")).then(Instant::now);
    let _in_flight = in_flight(op, backend);
    let result = call.instrument(span.clone()).await;
    if let Some(started) = started {
        let elapsed = started.elapsed();
        let outcome = failure(&result).map_or("ok", ErrorKind::as_str);
        if !span.is_disabled() {
            span.record("outcome", outcome);
            span.record("micros", elapsed.as_micros() as u64);
        }
        record(op, backend, outcome, elapsed);
    }
    result
}

#[cfg(feature = "metrics")]
fn record(
    op: Operation,
    backend: &'static str,
    outcome: &'static str,
    elapsed: std::time::Duration,
) {
    let calls = static_labels::of(&[
        ("op", op.as_str()),
        ("backend", backend),
        ("outcome", outcome),
    ]);
    let timing = static_labels::of(&[("op", op.as_str()), ("backend", backend)]);
    metrics::with_recorder(|recorder| {
        recorder
            .register_counter(
                &metrics::Key::from_static_parts("switchboard_calls_total", calls),
                &static_labels::METADATA,
            )
            .increment(1);
        recorder
            .register_histogram(
                &metrics::Key::from_static_parts("switchboard_call_seconds", timing),
                &static_labels::METADATA,
            )
            .record(elapsed.as_secs_f64());
    });
}

#[cfg(not(feature = "metrics"))]
fn record(_: Operation, _: &'static str, _: &'static str, _: std::time::Duration) {}

/// Counts a call in flight for as long as the guard lives.
struct InFlight {
    #[cfg(feature = "metrics")]
    gauge: metrics::Gauge,
}

fn in_flight(op: Operation, backend: &'static str) -> InFlight {
    #[cfg(feature = "metrics")]
    {
        let labels = static_labels::of(&[("op", op.as_str()), ("backend", backend)]);
        let key = metrics::Key::from_static_parts("switchboard_in_flight", labels);
        let gauge = metrics::with_recorder(|recorder| {
            recorder.register_gauge(&key, &static_labels::METADATA)
        });
        gauge.increment(1.0);
        InFlight { gauge }
    }
    #[cfg(not(feature = "metrics"))]
    {
        let _ = (op, backend);
        InFlight {}
    }
}

#[cfg(feature = "metrics")]
impl Drop for InFlight {
    fn drop(&mut self) {
        self.gauge.decrement(1.0);
    }
}

/// The label sets of the per-call metrics, whose values are all `'static`
/// (operation, backend, outcome): each distinct set is made a static slice
/// once, so a key built from it borrows instead of allocating, and recording
/// a call allocates nothing, whatever recorder is installed (global or local).
#[cfg(feature = "metrics")]
mod static_labels {
    use std::collections::HashMap;
    use std::sync::RwLock;

    use metrics::Label;

    /// The metadata the `metrics` macros would give these metrics.
    pub(super) static METADATA: metrics::Metadata<'static> =
        metrics::Metadata::new(module_path!(), metrics::Level::INFO, Some(module_path!()));

    /// Each label set seen, as (key, value) pairs, with its static slice.
    type LabelSets = HashMap<Vec<(&'static str, &'static str)>, &'static [Label]>;

    /// At most operations × backends × outcomes entries: bounded.
    static KNOWN: RwLock<Option<LabelSets>> = RwLock::new(None);

    /// The static label slice for `pairs`.
    pub(super) fn of<const N: usize>(
        pairs: &[(&'static str, &'static str); N],
    ) -> &'static [Label] {
        if let Some(labels) = KNOWN
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .and_then(|known| known.get(pairs.as_slice()))
        {
            return labels;
        }
        let mut known = KNOWN.write().unwrap_or_else(|e| e.into_inner());
        let known = known.get_or_insert_with(HashMap::new);
        known.entry(pairs.to_vec()).or_insert_with(|| {
            let labels: Vec<Label> = pairs
                .iter()
                .map(|&(key, value)| Label::from_static_parts(key, value))
                .collect();
            Box::leak(labels.into_boxed_slice())
        })
    }
}

/// Counts a handler retry of an event.
pub(crate) fn redelivery(service: &str, route: &str) {
    #[cfg(feature = "metrics")]
    metrics::counter!("switchboard_redeliveries_total", "service" => service.to_owned(), "route" => route.to_owned())
        .increment(1);
    let _ = (service, route);
}

/// Counts a sync send published instead (`fallback = "async"`), by subject.
pub(crate) fn deferred(subject: &str) {
    #[cfg(feature = "metrics")]
    metrics::counter!("switchboard_deferred_total", "subject" => subject.to_owned()).increment(1);
    let _ = subject;
}

/// Counts an event sent to the dead-letter subject.
pub(crate) fn dead_letter(service: &str, route: &str) {
    #[cfg(feature = "metrics")]
    metrics::counter!("switchboard_dead_letters_total", "service" => service.to_owned(), "route" => route.to_owned())
        .increment(1);
    let _ = (service, route);
}

/// Counts a reply that could not be sent (bad, missing or closed reply address).
pub(crate) fn undeliverable_reply(service: &str, route: &str) {
    #[cfg(feature = "metrics")]
    metrics::counter!("switchboard_undeliverable_replies_total", "service" => service.to_owned(), "route" => route.to_owned())
        .increment(1);
    let _ = (service, route);
}

/// Counts an event skipped because its message id was handled within the route's dedup window.
pub(crate) fn duplicate(service: &str, route: &str) {
    #[cfg(feature = "metrics")]
    metrics::counter!("switchboard_duplicates_skipped_total", "service" => service.to_owned(), "route" => route.to_owned())
        .increment(1);
    let _ = (service, route);
}

/// Counts a request skipped because its caller had already timed out.
pub(crate) fn expired(service: &str, route: &str) {
    #[cfg(feature = "metrics")]
    metrics::counter!("switchboard_expired_requests_total", "service" => service.to_owned(), "route" => route.to_owned())
        .increment(1);
    let _ = (service, route);
}
