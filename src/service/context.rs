//! What every message on one route needs to know: the route's handler,
//! where it runs, its policy, and how an acknowledgement the backend refused
//! is reported.

use std::future::Future;
use std::marker::PhantomData;
use std::sync::Arc;

use bytes::Bytes;

use super::dedup::Dedup;
use super::shutdown::Signal;
use crate::bus::Bus;
use crate::handler::{Handler, Received, Rejection, StateMap};
use crate::message::Message;
use crate::settings::events::EventPolicy;

/// A route's handler as its serving loop calls it. The loop is generic over
/// it, so the handler's future sits inside the loop's own futures instead
/// of a box per message.
pub(super) trait RouteHandler: Send + Sync + 'static {
    /// Decodes `payload`, extracts the context and runs the handler.
    fn call(
        &self,
        payload: &Bytes,
        received: Received<'_>,
    ) -> impl Future<Output = Result<Message, Rejection>> + Send + 'static;
}

/// A [`Handler`] with its argument list fixed, as a route holds it.
pub(super) struct Typed<H, Args>(H, PhantomData<fn() -> Args>);

impl<H, Args> Typed<H, Args> {
    pub(super) fn new(handler: H) -> Self {
        Typed(handler, PhantomData)
    }
}

impl<H: Handler<Args>, Args: 'static> RouteHandler for Typed<H, Args> {
    fn call(
        &self,
        payload: &Bytes,
        received: Received<'_>,
    ) -> impl Future<Output = Result<Message, Rejection>> + Send + 'static {
        self.0.call_inline(payload, received)
    }
}

/// The largest handler future a route carries inline. A larger one (a
/// handler that itself calls the bus) is boxed per message instead, as
/// [`Boxed`] does: carried inline, every frame that moves it would hold a
/// copy, and a chain of services answering in one task would run out of
/// stack in a debug build.
pub(super) const INLINE_FUTURE_LIMIT: usize = 1024;

/// Whether `H`'s future is small enough to carry inline.
pub(super) fn fits_inline<H: Handler<Args>, Args: 'static>() -> bool {
    fn returned_size<'a, H: 'a, F, R>(_: &F) -> usize
    where
        F: Fn(&'a H, &'a Bytes, Received<'a>) -> R,
    {
        std::mem::size_of::<R>()
    }
    returned_size::<H, _, _>(&<H as Handler<Args>>::call_inline) <= INLINE_FUTURE_LIMIT
}

/// A [`Handler`] whose future is boxed per message (see [`fits_inline`]).
pub(super) struct Boxed<H, Args>(H, PhantomData<fn() -> Args>);

impl<H, Args> Boxed<H, Args> {
    pub(super) fn new(handler: H) -> Self {
        Boxed(handler, PhantomData)
    }
}

impl<H: Handler<Args>, Args: 'static> RouteHandler for Boxed<H, Args> {
    fn call(
        &self,
        payload: &Bytes,
        received: Received<'_>,
    ) -> impl Future<Output = Result<Message, Rejection>> + Send + 'static {
        Box::pin(self.0.call_inline(payload, received))
    }
}

/// What every message on one route needs to know about where it runs.
pub(super) struct RouteContext {
    pub(super) service: String,
    pub(super) route: String,
    pub(super) backend: &'static str,
    pub(super) policy: EventPolicy,
    /// The dead-letter subject, published through `bus`.
    pub(super) dead_letter: Option<String>,
    pub(super) bus: Bus,
    pub(super) state: Arc<StateMap>,
    pub(super) shutdown: Signal,
    /// Whether a nacked event comes back (Kafka, JetStream).
    pub(super) redelivers: bool,
    /// The route's memory of handled message ids (`dedup` in the route table).
    pub(super) dedup: Option<Arc<Dedup>>,
    /// `cloudevents = true` on the route: an event with malformed `ce-*`
    /// attributes is dead-lettered before the handler runs.
    pub(super) cloudevents: bool,
}

impl RouteContext {
    /// Reports an acknowledgement the backend refused: the event may come back
    /// though it was handled, so it is counted and makes the shutdown report unclean.
    pub(super) fn settle(&self, subject: &str, result: crate::error::Result<()>) {
        if let Err(err) = result {
            tracing::warn!(%subject, service = %self.service, error = %err, "could not acknowledge event");
            self.shutdown.count_unacknowledged(1);
        }
    }
}
