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
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Instant;

use crate::error::{Error, ErrorKind, Result};
use crate::trace::TraceContext;

/// What kind of call is being observed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
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
    /// How many operations there are, and each one's place among them.
    #[cfg(feature = "metrics")]
    const COUNT: usize = 4;

    #[cfg(feature = "metrics")]
    fn index(self) -> usize {
        match self {
            Operation::Request => 0,
            Operation::Publish => 1,
            Operation::HandleRequest => 2,
            Operation::HandleEvent => 3,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Operation::Request => "request",
            Operation::Publish => "publish",
            Operation::HandleRequest => "handle_request",
            Operation::HandleEvent => "handle_event",
        }
    }
}

/// How [`observe`] tells a failed call: by its error's kind.
pub(crate) type ErrorOf<T> = fn(&Result<T>) -> Option<ErrorKind>;

/// The kind of a failed call's error; `None` for one that succeeded.
pub(crate) fn error_kind<T>(result: &Result<T>) -> Option<ErrorKind> {
    result.as_ref().err().map(Error::kind)
}

/// Runs `call` inside a span named `switchboard` and records its outcome.
#[inline]
pub(crate) fn observe<F, T>(
    op: Operation,
    subject: &str,
    backend: &'static str,
    trace: Option<&TraceContext>,
    call: F,
) -> Observed<F, ErrorOf<T>>
where
    F: Future<Output = Result<T>>,
{
    observe_with(op, subject, backend, trace, call, error_kind)
}

/// [`observe`] for calls whose output is not a `Result`: `failure` tells
/// which error kind (if any) the output stands for.
#[inline]
pub(crate) fn observe_with<F, C>(
    op: Operation,
    subject: &str,
    backend: &'static str,
    trace: Option<&TraceContext>,
    call: F,
    failure: C,
) -> Observed<F, C>
where
    F: Future,
    C: FnOnce(&F::Output) -> Option<ErrorKind>,
{
    Observation::start(op, subject, backend, trace).around(call, failure)
}

/// One call's span, clock and in-flight count, started before the call:
/// finished at once for a call that completed without waiting, or
/// [`around`](Self::around) the rest of it.
pub(crate) struct Observation {
    span: Option<tracing::Span>,
    started: Option<Instant>,
    in_flight: InFlight,
}

impl Observation {
    /// Starts observing a call of `op` on `subject`.
    #[inline]
    pub(crate) fn start(
        op: Operation,
        subject: &str,
        backend: &'static str,
        trace: Option<&TraceContext>,
    ) -> Self {
        // The level first: with tracing's `log` feature on (sqlx turns it on),
        // a span no subscriber wants still has its fields recorded for `log`
        // and checks `log`'s level when created and dropped.
        let span = tracing::level_enabled!(tracing::Level::INFO)
            .then(|| {
                tracing::info_span!(
                    "switchboard",
                    op = op.as_str(),
                    subject,
                    backend,
                    trace_id = tracing::field::Empty,
                    outcome = tracing::field::Empty,
                    micros = tracing::field::Empty,
                )
            })
            .filter(|span| !span.is_disabled());
        if let (Some(span), Some(trace)) = (&span, trace) {
            span.record("trace_id", trace.trace_id());
            // A handled message's span continues the caller's trace in OpenTelemetry too.
            #[cfg(feature = "otel")]
            if matches!(op, Operation::HandleRequest | Operation::HandleEvent) {
                let parent = (trace.trace_id_bytes(), trace.span_id_bytes(), trace.flags());
                crate::otel::set_remote_parent(span, parent);
            }
        }
        // Reading the clock is a measurable share of an in-memory call: only when
        // someone will see the duration (an enabled span or the metrics feature).
        let started = (span.is_some() || cfg!(feature = "metrics")).then(Instant::now);
        Observation {
            span,
            started,
            in_flight: in_flight(op, backend),
        }
    }

    /// Runs `call` inside the span (none when no subscriber wants it).
    #[inline]
    pub(crate) fn in_span<T>(&self, call: impl FnOnce() -> T) -> T {
        match &self.span {
            Some(span) => span.in_scope(call),
            None => call(),
        }
    }

    /// Records a call that finished, failed with `failure` if `Some`.
    #[inline]
    pub(crate) fn finish(self, failure: Option<ErrorKind>) {
        finish(
            self.span.as_ref(),
            self.started,
            Some(self.in_flight),
            failure,
        );
    }

    /// The rest of the call, `call`, observed until it finishes.
    #[inline]
    pub(crate) fn around<F, C>(self, call: F, failure: C) -> Observed<F, C>
    where
        F: Future,
        C: FnOnce(&F::Output) -> Option<ErrorKind>,
    {
        Observed {
            call,
            span: self.span,
            started: self.started,
            in_flight: Some(self.in_flight),
            failure: Some(failure),
        }
    }
}

/// Records a finished call: its outcome and duration on the span, and in
/// the metrics its in-flight guard names (then dropped).
#[inline]
fn finish(
    span: Option<&tracing::Span>,
    started: Option<Instant>,
    in_flight: Option<InFlight>,
    failure: Option<ErrorKind>,
) {
    let Some(started) = started else {
        return;
    };
    let elapsed = started.elapsed();
    let outcome = failure.map_or("ok", ErrorKind::as_str);
    if let Some(span) = span {
        span.record("outcome", outcome);
        span.record("micros", elapsed.as_micros() as u64);
    }
    record(in_flight, outcome, elapsed);
}

pin_project_lite::pin_project! {
    /// A call running inside its span, recorded when it finishes. A plain
    /// struct rather than an `async fn`, so it is the size of the call plus
    /// a few words: an `async fn` holds its argument future twice, and a
    /// route moves each message's handling future once or twice.
    pub(crate) struct Observed<F, C> {
        #[pin]
        call: F,
        // `None` when no subscriber wants it: nothing to enter per poll.
        span: Option<tracing::Span>,
        started: Option<Instant>,
        in_flight: Option<InFlight>,
        failure: Option<C>,
    }
}

impl<F, C> Future for Observed<F, C>
where
    F: Future,
    C: FnOnce(&F::Output) -> Option<ErrorKind>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let result = match this.span {
            Some(span) => {
                let _entered = span.enter();
                ready!(this.call.poll(cx))
            }
            None => ready!(this.call.poll(cx)),
        };
        let in_flight = this.in_flight.take();
        if let (Some(started), Some(failure)) = (this.started.take(), this.failure.take()) {
            finish(
                this.span.as_ref(),
                Some(started),
                in_flight,
                failure(&result),
            );
        }
        Poll::Ready(result)
    }
}

/// Records a finished call on the metrics its in-flight guard names.
#[cfg(feature = "metrics")]
fn record(in_flight: Option<InFlight>, outcome: &'static str, elapsed: std::time::Duration) {
    let Some(InFlight { keys, .. }) = &in_flight else {
        return;
    };
    let calls = match outcome {
        "ok" => &keys.calls_ok,
        failed => static_keys::calls(keys.op, keys.backend, failed),
    };
    metrics::with_recorder(|recorder| {
        recorder
            .register_counter(calls, &static_keys::METADATA)
            .increment(1);
        recorder
            .register_histogram(&keys.seconds, &static_keys::METADATA)
            .record(elapsed.as_secs_f64());
    });
}

#[cfg(not(feature = "metrics"))]
fn record(_: Option<InFlight>, _: &'static str, _: std::time::Duration) {}

/// Counts a call in flight for as long as the guard lives.
struct InFlight {
    #[cfg(feature = "metrics")]
    gauge: metrics::Gauge,
    /// The call's metric keys, found once per call.
    #[cfg(feature = "metrics")]
    keys: &'static static_keys::CallKeys,
}

fn in_flight(op: Operation, backend: &'static str) -> InFlight {
    #[cfg(feature = "metrics")]
    {
        let keys = static_keys::keys(op, backend);
        let gauge = metrics::with_recorder(|recorder| {
            recorder.register_gauge(&keys.in_flight, &static_keys::METADATA)
        });
        gauge.increment(1.0);
        InFlight { gauge, keys }
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
/// by the hash the key carries. A call finds its operation's and backend's
/// keys in one lookup; a failed call looks up its outcome's counter too.
#[cfg(feature = "metrics")]
mod static_keys {
    use std::cell::Cell;
    use std::collections::HashMap;
    use std::sync::RwLock;

    use metrics::{Key, Label};

    use super::Operation;

    /// The metadata the `metrics` macros would give these metrics.
    pub(super) static METADATA: metrics::Metadata<'static> =
        metrics::Metadata::new(module_path!(), metrics::Level::INFO, Some(module_path!()));

    /// The keys every call of one operation on one backend records.
    pub(super) struct CallKeys {
        pub(super) op: Operation,
        pub(super) backend: &'static str,
        /// `switchboard_in_flight{op, backend}`
        pub(super) in_flight: Key,
        /// `switchboard_call_seconds{op, backend}`
        pub(super) seconds: Key,
        /// `switchboard_calls_total{op, backend, outcome="ok"}`
        pub(super) calls_ok: Key,
    }

    /// A `'static` string by where it is: the same text at two addresses
    /// only makes two entries for one key, and the set stays bounded.
    type At = (usize, usize);

    fn at(text: &'static str) -> At {
        (text.as_ptr() as usize, text.len())
    }

    type Known<K, V> = RwLock<Option<HashMap<K, &'static V, foldhash::fast::RandomState>>>;

    /// At most operations × backends entries: bounded.
    static CALLS: Known<(Operation, At), CallKeys> = RwLock::new(None);
    /// At most operations × backends × error kinds entries: bounded.
    static FAILED: Known<(Operation, At, At), Key> = RwLock::new(None);

    /// The entry for `id`, made by `make` (and kept for good) the first time.
    fn find<K: std::hash::Hash + Eq, V>(
        known: &'static Known<K, V>,
        id: K,
        make: impl FnOnce() -> V,
    ) -> &'static V {
        if let Some(found) = known
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .and_then(|known| known.get(&id))
        {
            return found;
        }
        let mut known = known.write().unwrap_or_else(|e| e.into_inner());
        let known = known.get_or_insert_with(HashMap::default);
        known
            .entry(id)
            .or_insert_with(|| Box::leak(Box::new(make())))
    }

    fn make_key(name: &'static str, labels: Vec<Label>) -> Key {
        Key::from_static_parts(name, Box::leak(labels.into_boxed_slice()))
    }

    thread_local! {
        /// The keys each operation last found on this thread: a thread
        /// mostly calls one backend, so most lookups compare an address.
        static LAST: [Cell<Option<&'static CallKeys>>; Operation::COUNT] =
            const { [const { Cell::new(None) }; Operation::COUNT] };
    }

    /// The keys of `op` on `backend`.
    pub(super) fn keys(op: Operation, backend: &'static str) -> &'static CallKeys {
        let slot = op.index();
        let last = LAST.try_with(|last| last[slot].get()).ok().flatten();
        if let Some(found) = last.filter(|found| at(found.backend) == at(backend)) {
            return found;
        }
        let found = find_keys(op, backend);
        let _ = LAST.try_with(|last| last[slot].set(Some(found)));
        found
    }

    /// The keys of `op` on `backend` from the table all threads share.
    fn find_keys(op: Operation, backend: &'static str) -> &'static CallKeys {
        find(&CALLS, (op, at(backend)), || {
            let labels = || {
                vec![
                    Label::from_static_parts("op", op.as_str()),
                    Label::from_static_parts("backend", backend),
                ]
            };
            CallKeys {
                op,
                backend,
                in_flight: make_key("switchboard_in_flight", labels()),
                seconds: make_key("switchboard_call_seconds", labels()),
                calls_ok: calls_key(op, backend, "ok"),
            }
        })
    }

    /// `switchboard_calls_total` of `op` on `backend` ended with `outcome`.
    pub(super) fn calls(
        op: Operation,
        backend: &'static str,
        outcome: &'static str,
    ) -> &'static Key {
        find(&FAILED, (op, at(backend), at(outcome)), || {
            calls_key(op, backend, outcome)
        })
    }

    fn calls_key(op: Operation, backend: &'static str, outcome: &'static str) -> Key {
        make_key(
            "switchboard_calls_total",
            vec![
                Label::from_static_parts("op", op.as_str()),
                Label::from_static_parts("backend", backend),
                Label::from_static_parts("outcome", outcome),
            ],
        )
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
