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
    use static_keys::Metric;
    let calls = static_keys::key(Metric::Calls, op, backend, outcome);
    let timing = static_keys::key(Metric::Seconds, op, backend, "");
    metrics::with_recorder(|recorder| {
        recorder
            .register_counter(calls, &static_keys::METADATA)
            .increment(1);
        recorder
            .register_histogram(timing, &static_keys::METADATA)
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
        let key = static_keys::key(static_keys::Metric::InFlight, op, backend, "");
        let gauge =
            metrics::with_recorder(|recorder| recorder.register_gauge(key, &static_keys::METADATA));
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

/// The keys of the per-call metrics, whose label values are all `'static`
/// (operation, backend, outcome): each distinct key is made once and kept,
/// so recording a call neither allocates nor hashes label strings, whatever
/// recorder is installed (global or local); the recorder looks the key up
/// by the hash the key carries.
#[cfg(feature = "metrics")]
mod static_keys {
    use std::collections::HashMap;
    use std::sync::RwLock;

    use metrics::{Key, Label};

    use super::Operation;

    /// The metadata the `metrics` macros would give these metrics.
    pub(super) static METADATA: metrics::Metadata<'static> =
        metrics::Metadata::new(module_path!(), metrics::Level::INFO, Some(module_path!()));

    /// Which per-call metric a key names.
    #[derive(Clone, Copy, PartialEq, Eq, Hash)]
    pub(super) enum Metric {
        /// `switchboard_calls_total{op, backend, outcome}`
        Calls,
        /// `switchboard_call_seconds{op, backend}`
        Seconds,
        /// `switchboard_in_flight{op, backend}`
        InFlight,
    }

    /// A `'static` string by where it is: the same text at two addresses
    /// only makes two entries for one key, and the set stays bounded.
    type At = (usize, usize);

    fn at(text: &'static str) -> At {
        (text.as_ptr() as usize, text.len())
    }

    type Known = HashMap<(Metric, At, At, At), &'static Key, foldhash::fast::RandomState>;

    /// At most metrics × operations × backends × outcomes entries: bounded.
    static KNOWN: RwLock<Option<Known>> = RwLock::new(None);

    /// The key of `metric` for this call (`outcome` is only read for `Calls`).
    pub(super) fn key(
        metric: Metric,
        op: Operation,
        backend: &'static str,
        outcome: &'static str,
    ) -> &'static Key {
        let op = op.as_str();
        let id = (metric, at(op), at(backend), at(outcome));
        if let Some(key) = KNOWN
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .and_then(|known| known.get(&id))
        {
            return key;
        }
        let mut known = KNOWN.write().unwrap_or_else(|e| e.into_inner());
        let known = known.get_or_insert_with(Known::default);
        known.entry(id).or_insert_with(|| {
            let (name, labels): (&'static str, Vec<Label>) = match metric {
                Metric::Calls => (
                    "switchboard_calls_total",
                    vec![
                        Label::from_static_parts("op", op),
                        Label::from_static_parts("backend", backend),
                        Label::from_static_parts("outcome", outcome),
                    ],
                ),
                Metric::Seconds | Metric::InFlight => (
                    match metric {
                        Metric::Seconds => "switchboard_call_seconds",
                        _ => "switchboard_in_flight",
                    },
                    vec![
                        Label::from_static_parts("op", op),
                        Label::from_static_parts("backend", backend),
                    ],
                ),
            };
            let labels: &'static [Label] = Box::leak(labels.into_boxed_slice());
            Box::leak(Box::new(Key::from_static_parts(name, labels)))
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
