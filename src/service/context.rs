//! What every message on one route needs to know: the route's handler,
//! where it runs, its policy, and how an acknowledgement the backend refused
//! is reported.

use std::sync::Arc;

use super::dedup::Dedup;
use super::shutdown::Signal;
use crate::bus::Bus;
use crate::handler::{Context, HandlerFuture, StateMap};
use crate::message::Message;
use crate::settings::events::EventPolicy;

/// A handler with its types erased, as a route stores it.
pub(super) type ErasedHandler = Arc<dyn Fn(Message, Context) -> HandlerFuture + Send + Sync>;

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
            self.shutdown.count_unacknowledged();
        }
    }
}
