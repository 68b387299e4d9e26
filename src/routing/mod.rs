//! Per-route style and transport: one `dispatch` call that configuration turns
//! into a request or a publish, over whichever transport the subject is routed to.

mod settings;
mod style;
mod table;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use serde::{de::DeserializeOwned, Serialize};

use crate::bus::Bus;
use crate::error::{Error, Result};
use crate::event_policy::EventPolicy;
use crate::message::Message;

pub use settings::{RouteSettings, Settings, CONFIG_ENV, STYLE_ENV};
pub use style::Style;
pub use table::{RouteDecision, RouteRule, RouteTable, DEFAULT_TRANSPORT};

/// What a [`Router::dispatch`] call did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dispatched<T> {
    /// Synchronous style: the handler ran and this is its answer.
    Replied(T),
    /// Asynchronous style: the backend accepted the event; the handler runs later.
    Accepted,
}

impl<T> Dispatched<T> {
    /// The reply, if the call was synchronous.
    pub fn reply(self) -> Option<T> {
        match self {
            Dispatched::Replied(reply) => Some(reply),
            Dispatched::Accepted => None,
        }
    }

    /// Whether the call was published rather than answered.
    pub fn is_accepted(&self) -> bool {
        matches!(self, Dispatched::Accepted)
    }
}

/// Named transports plus a [`RouteTable`] deciding, per subject, the style and the transport.
///
/// A service calls [`dispatch`](Self::dispatch) and never names a style or a
/// backend; flipping a route from `sync` to `async`, or moving `orders.*` from
/// HTTP to NATS, is a configuration change. A plain [`Bus`] converts into a
/// router that sends everything synchronously over that bus.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> switchboard::Result<()> {
/// use switchboard::{Dispatched, Settings};
///
/// let settings = Settings::from_toml(r#"
///     [transports.default]
///     url = "memory://router-doc"
///
///     [[routes]]
///     subjects = "audit.*"
///     style = "async"
/// "#)?;
/// let router = settings.connect("doc").await?;
/// let mut audit = router.bus_for("audit.login").subscribe("audit.login").await?;
/// let outcome: Dispatched<()> = router.dispatch("audit.login", &"ada").await?;
/// assert!(outcome.is_accepted());
/// assert_eq!(audit.next().await.unwrap().payload(), br#""ada""#);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Router {
    table: Arc<RouteTable>,
    buses: Arc<BTreeMap<String, Bus>>,
    events: Arc<EventPolicy>,
    handler_concurrency: Option<usize>,
}

impl Router {
    /// A router over named buses; fails if the table names a transport that is not given.
    pub fn new(table: RouteTable, buses: BTreeMap<String, Bus>) -> Result<Self> {
        for name in table.transports() {
            if !buses.contains_key(name) {
                let known: Vec<&str> = buses.keys().map(String::as_str).collect();
                return Err(Error::config(format!(
                    "routes name a transport `{name}` that is not configured (configured: {})",
                    known.join(", ")
                )));
            }
        }
        Ok(Router {
            table: Arc::new(table),
            buses: Arc::new(buses),
            events: Arc::default(),
            handler_concurrency: None,
        })
    }

    /// Sets how many messages each route of a service started on this router handles at once.
    pub fn with_handler_concurrency(mut self, limit: usize) -> Self {
        self.handler_concurrency = Some(limit.max(1));
        self
    }

    /// The handler concurrency configured for services on this router, if any.
    pub fn handler_concurrency(&self) -> Option<usize> {
        self.handler_concurrency
    }

    /// Sets the event policy that services started on this router use.
    pub fn with_event_policy(mut self, policy: EventPolicy) -> Self {
        self.events = Arc::new(policy);
        self
    }

    /// The event policy services started on this router use (see [`Settings::events`]).
    pub fn event_policy(&self) -> &EventPolicy {
        &self.events
    }

    /// The route table.
    pub fn table(&self) -> &RouteTable {
        &self.table
    }

    /// Every configured transport by name.
    pub fn buses(&self) -> &BTreeMap<String, Bus> {
        &self.buses
    }

    /// The decision (style, transport, timeout) for a subject or subscription pattern.
    pub fn decide(&self, subject_or_pattern: &str) -> RouteDecision<'_> {
        self.table.decide(subject_or_pattern)
    }

    /// The bus a subject (or subscription pattern) is routed to.
    pub fn bus_for(&self, subject_or_pattern: &str) -> &Bus {
        let decision = self.table.decide(subject_or_pattern);
        // `new` checked that every transport the table names exists.
        &self.buses[decision.transport]
    }

    /// Sends `payload` as JSON in the style configured for `subject`.
    ///
    /// Synchronous routes wait for the reply (up to the route's timeout, else
    /// the bus's) and return [`Dispatched::Replied`], or the handler's error.
    /// Asynchronous routes publish and return [`Dispatched::Accepted`].
    pub async fn dispatch<Req, Resp>(
        &self,
        subject: &str,
        payload: &Req,
    ) -> Result<Dispatched<Resp>>
    where
        Req: Serialize + ?Sized,
        Resp: DeserializeOwned,
    {
        match self
            .dispatch_message(subject, Message::json(payload)?)
            .await?
        {
            Dispatched::Replied(reply) => Ok(Dispatched::Replied(reply.decode_json()?)),
            Dispatched::Accepted => Ok(Dispatched::Accepted),
        }
    }

    /// [`dispatch`](Self::dispatch) for a ready-made message, with no JSON step.
    pub async fn dispatch_message(
        &self,
        subject: &str,
        message: Message,
    ) -> Result<Dispatched<Message>> {
        let decision = self.table.decide(subject);
        let bus = &self.buses[decision.transport];
        match decision.style {
            style::Style::Sync => {
                let timeout = decision.timeout.unwrap_or(bus.default_timeout());
                let reply = bus.request_with_timeout(subject, message, timeout).await?;
                Ok(Dispatched::Replied(reply))
            }
            style::Style::Async => {
                bus.publish(subject, message).await?;
                Ok(Dispatched::Accepted)
            }
        }
    }

    /// Closes every transport; returns the first error after trying them all.
    pub async fn close(&self) -> Result<()> {
        let mut first_error = None;
        for bus in self.buses.values() {
            if let Err(err) = bus.close().await {
                first_error.get_or_insert(err);
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

impl From<Bus> for Router {
    fn from(bus: Bus) -> Self {
        Router {
            table: Arc::new(RouteTable::default()),
            buses: Arc::new(BTreeMap::from([(DEFAULT_TRANSPORT.to_owned(), bus)])),
            events: Arc::default(),
            handler_concurrency: None,
        }
    }
}

impl fmt::Debug for Router {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Router")
            .field("table", &self.table)
            .field("buses", &self.buses)
            .field("events", &self.events)
            .finish()
    }
}
