//! W3C trace context (`traceparent`/`tracestate`) carried in message headers on every backend.
//!
//! A handler run by `Service` executes inside the trace
//! context of the message it handles; every request or publish made from it
//! carries a child of that context, so one trace id follows a call chain
//! across services and across backends. Outside a handler, code can start or
//! continue a trace with [`TraceContext::scope`].

use std::cell::Cell;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use crate::error::{Error, Result};
use crate::headers::Headers;

/// The W3C `traceparent` header.
pub const TRACEPARENT: &str = "traceparent";
/// The W3C `tracestate` header, passed along unchanged.
pub const TRACESTATE: &str = "tracestate";

thread_local! {
    /// The context of the scope being polled on this thread, or null: set
    /// for each poll and put back after it, as a task-local is, but as a
    /// pointer to the scope's own context rather than the context moved in
    /// and out (a handled message's handler runs inside one).
    static CURRENT: Cell<*const TraceContext> = const { Cell::new(std::ptr::null()) };
}

/// One position in a distributed trace: the trace id, the id of the span that
/// made the call, the sampling flags, and the vendor `tracestate`.
#[derive(Clone, PartialEq, Eq)]
pub struct TraceContext {
    trace_id: [u8; 16],
    span_id: [u8; 8],
    flags: u8,
    state: Option<Arc<str>>,
}

impl TraceContext {
    /// Starts a new, sampled trace with random ids.
    pub fn new_root() -> Self {
        let trace_id = nonzero(fastrand::u128).to_be_bytes();
        TraceContext {
            trace_id,
            span_id: random_span_id(),
            flags: 0x01,
            state: None,
        }
    }

    /// The same trace, with a new span id for the next hop.
    pub fn child(&self) -> Self {
        TraceContext {
            span_id: random_span_id(),
            ..self.clone()
        }
    }

    /// Parses a `traceparent` value (`00-<32 hex>-<16 hex>-<2 hex>`).
    ///
    /// Follows the W3C rules: lower-case hex, ids not all zero, version `ff`
    /// invalid, and a later version's extra fields ignored.
    pub fn parse(traceparent: &str) -> Result<Self> {
        let invalid = |why: &str| Error::InvalidHeader {
            name: TRACEPARENT.to_owned(),
            reason: why.to_owned(),
        };
        let text = traceparent.trim();
        if !text.is_ascii() {
            return Err(invalid("not ASCII"));
        }
        let bytes = text.as_bytes();
        if bytes.len() < 55 {
            return Err(invalid("shorter than 55 characters"));
        }
        let version = hex_bytes::<1>(&text[0..2]).ok_or_else(|| invalid("version is not hex"))?[0];
        if version == 0xff {
            return Err(invalid("version ff is invalid"));
        }
        if (version == 0 && bytes.len() != 55)
            || (version != 0 && bytes.len() > 55 && bytes[55] != b'-')
        {
            return Err(invalid("unexpected characters after the flags"));
        }
        if bytes[2] != b'-' || bytes[35] != b'-' || bytes[52] != b'-' {
            return Err(invalid("fields must be separated by `-`"));
        }
        let trace_id = hex_bytes::<16>(&text[3..35])
            .ok_or_else(|| invalid("trace id is not 32 lower-case hex digits"))?;
        let span_id = hex_bytes::<8>(&text[36..52])
            .ok_or_else(|| invalid("parent id is not 16 lower-case hex digits"))?;
        let flags = hex_bytes::<1>(&text[53..55])
            .ok_or_else(|| invalid("flags are not 2 lower-case hex digits"))?[0];
        if trace_id == [0; 16] {
            return Err(invalid("trace id is all zeros"));
        }
        if span_id == [0; 8] {
            return Err(invalid("parent id is all zeros"));
        }
        Ok(TraceContext {
            trace_id,
            span_id,
            flags,
            state: None,
        })
    }

    /// The context carried by `headers`, if any; a malformed `traceparent` is
    /// ignored (as W3C asks) and logged at debug level.
    #[inline]
    pub fn from_headers(headers: &Headers) -> Option<Self> {
        let value = headers.get(TRACEPARENT)?;
        match TraceContext::parse(value) {
            Ok(mut context) => {
                context.state = headers.get(TRACESTATE).map(Arc::from);
                Some(context)
            }
            Err(err) => {
                tracing::debug!(error = %err, "ignoring malformed traceparent");
                None
            }
        }
    }

    /// Writes `traceparent` (and `tracestate`, when present) into `headers`.
    pub fn inject(&self, headers: &mut Headers) {
        headers.insert(TRACEPARENT, self.to_string());
        if let Some(state) = &self.state {
            headers.insert(TRACESTATE, state.to_string());
        }
    }

    /// The trace id as 32 lower-case hex digits.
    pub fn trace_id(&self) -> String {
        hex(&self.trace_id)
    }

    /// The span id as 16 lower-case hex digits.
    pub fn span_id(&self) -> String {
        hex(&self.span_id)
    }

    /// Whether the trace is sampled (flag bit 0).
    pub fn is_sampled(&self) -> bool {
        self.flags & 0x01 == 1
    }

    /// The context of the handler or scope this task is running in, if any;
    /// with the `otel` feature, else the current OpenTelemetry span's.
    #[inline]
    pub fn current() -> Option<Self> {
        let scoped = CURRENT.try_with(Cell::get).ok().and_then(|current| {
            // SAFETY: a non-null pointer is set only by `Scoped::poll`, to the
            // context it owns, and put back by its guard before that poll
            // returns (or unwinds): while it is here, the context is alive
            // and nothing writes to it.
            unsafe { current.as_ref() }.cloned()
        });
        #[cfg(feature = "otel")]
        let scoped = scoped.or_else(|| {
            let (trace_id, span_id, flags) = crate::otel::current()?;
            Some(Self::from_parts(trace_id, span_id, flags))
        });
        scoped
    }

    /// A context from raw ids and flags (all-zero ids are not checked here).
    #[cfg_attr(not(feature = "otel"), allow(dead_code))]
    pub fn from_parts(trace_id: [u8; 16], span_id: [u8; 8], flags: u8) -> Self {
        TraceContext {
            trace_id,
            span_id,
            flags,
            state: None,
        }
    }

    /// The trace id, as the 16 bytes W3C trace context carries.
    pub fn trace_id_bytes(&self) -> [u8; 16] {
        self.trace_id
    }

    /// The parent span id, as 8 bytes.
    pub fn span_id_bytes(&self) -> [u8; 8] {
        self.span_id
    }

    /// The trace flags byte (bit 0: sampled).
    pub fn flags(&self) -> u8 {
        self.flags
    }

    /// Runs `future` with this as the current context, so calls it makes carry it.
    pub fn scope<F: Future>(self, future: F) -> impl Future<Output = F::Output> {
        Scoped {
            future,
            context: self,
        }
    }
}

pin_project_lite::pin_project! {
    /// A future polled with `context` as the current context.
    struct Scoped<F> {
        #[pin]
        future: F,
        context: TraceContext,
    }
}

impl<F: Future> Future for Scoped<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let own: *const TraceContext = this.context;
        let Ok(outer) = CURRENT.try_with(|current| current.replace(own)) else {
            // The thread's locals are gone (it is exiting): polled without.
            return this.future.poll(cx);
        };
        let _back = Restore(outer);
        this.future.poll(cx)
    }
}

/// Puts the enclosing scope's context (or none) back after a poll, also
/// when the poll panics.
struct Restore(*const TraceContext);

impl Drop for Restore {
    fn drop(&mut self) {
        let _ = CURRENT.try_with(|current| current.set(self.0));
    }
}

/// Adds a child of the current context to `headers` unless they carry one
/// already; returns the context the message now carries.
#[inline]
pub fn propagate(headers: &mut Headers) -> Option<TraceContext> {
    if headers.contains(TRACEPARENT) {
        return TraceContext::from_headers(headers);
    }
    let child = TraceContext::current()?.child();
    child.inject(headers);
    Some(child)
}

impl fmt::Display for TraceContext {
    /// The `traceparent` header value.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "00-{}-{}-{:02x}",
            hex(&self.trace_id),
            hex(&self.span_id),
            self.flags
        )
    }
}

impl fmt::Debug for TraceContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TraceContext")
            .field("traceparent", &self.to_string())
            .field("tracestate", &self.state)
            .finish()
    }
}

fn random_span_id() -> [u8; 8] {
    nonzero(fastrand::u64).to_be_bytes()
}

/// A random id that is not all zeros (W3C reserves that as invalid): drawn
/// again on zero rather than from a range, which costs a 128-bit division.
fn nonzero<T: PartialEq + Default>(draw: impl Fn(std::ops::RangeFull) -> T) -> T {
    loop {
        let id = draw(..);
        if id != T::default() {
            return id;
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        out.push(DIGITS[(byte >> 4) as usize] as char);
        out.push(DIGITS[(byte & 0x0f) as usize] as char);
    }
    out
}

/// Decodes exactly `N` bytes of lower-case hex.
fn hex_bytes<const N: usize>(text: &str) -> Option<[u8; N]> {
    let digits = text.as_bytes();
    if digits.len() != N * 2 {
        return None;
    }
    let value = |digit: u8| match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        _ => None,
    };
    let mut out = [0u8; N];
    for (i, pair) in digits.chunks_exact(2).enumerate() {
        out[i] = value(pair[0])? << 4 | value(pair[1])?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn round_trips_the_w3c_example() {
        let context = TraceContext::parse(SAMPLE).unwrap();
        assert_eq!(context.trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(context.span_id(), "00f067aa0ba902b7");
        assert!(context.is_sampled());
        assert_eq!(context.to_string(), SAMPLE);
        let child = context.child();
        assert_eq!(child.trace_id(), context.trace_id());
        assert_ne!(child.span_id(), context.span_id());
    }

    #[test]
    fn rejects_malformed_values() {
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01",
            "00-4bf92f3577b34da6a3ce929d0e0e47é-00f067aa0ba902b7-01",
            // Found by the fuzzer: a multi-byte character where a field is sliced.
            "0é-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0",
        ] {
            assert!(TraceContext::parse(bad).is_err(), "{bad:?}");
        }
        // A later version may append fields.
        TraceContext::parse(&format!("01{}-more", &SAMPLE[2..])).unwrap();
    }

    #[tokio::test]
    async fn scope_sets_the_current_context_and_propagates_children() {
        assert!(TraceContext::current().is_none());
        let root = TraceContext::new_root();
        let mut headers = Headers::default();
        root.clone().scope(async { propagate(&mut headers) }).await;
        let sent = TraceContext::from_headers(&headers).unwrap();
        assert_eq!(sent.trace_id(), root.trace_id());
        assert_ne!(sent.span_id(), root.span_id());
        assert!(TraceContext::current().is_none());
    }

    #[tokio::test]
    async fn scopes_nest_and_each_poll_sees_its_own() {
        let outer = TraceContext::new_root();
        let inner = TraceContext::new_root();
        let (expected_outer, expected_inner) = (outer.clone(), inner.clone());
        outer
            .scope(async move {
                assert_eq!(TraceContext::current(), Some(expected_outer.clone()));
                inner
                    .scope(async {
                        tokio::task::yield_now().await;
                        assert_eq!(TraceContext::current(), Some(expected_inner));
                    })
                    .await;
                tokio::task::yield_now().await;
                assert_eq!(TraceContext::current(), Some(expected_outer));
            })
            .await;
        assert!(TraceContext::current().is_none());
    }

    #[test]
    fn a_panicking_poll_leaves_no_context_behind() {
        let root = TraceContext::new_root();
        let panicked = std::panic::catch_unwind(|| {
            futures_util::FutureExt::now_or_never(root.scope(async {
                assert!(TraceContext::current().is_some());
                panic!("handler panicked");
            }))
        });
        assert!(panicked.is_err());
        assert!(TraceContext::current().is_none());
    }
}
