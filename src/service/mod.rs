//! Services: handlers registered by subject, each serving requests and events alike, run until shutdown.

mod context;
mod dead_letter;
mod dedup;
mod events;
mod invoke;
mod keyed;
mod recover;
mod requests;
mod retry;
mod serve;
mod shutdown;
mod signal;
mod stopping;

use std::fmt;
use std::future::Future;
use std::sync::Arc;

use futures_util::future::BoxFuture;
use tokio::task::JoinSet;

use crate::bus::Bus;
use crate::error::{Error, Result};
use crate::handler::{Handler, StateMap};
use crate::subject;

pub use crate::limits::DEFAULT_CONCURRENCY;
pub use crate::settings::events::{EventPolicy, DEFAULT_DEAD_LETTER, DEFAULT_SHUTDOWN_GRACE};
use context::{Boxed, RouteContext, Typed};
pub use shutdown::{RunningService, ShutdownReport};
pub use signal::run_until_signal;

/// Serves one route: its subscription with its handler, whose type the
/// serving loop is compiled for.
type ServeRoute = Box<
    dyn FnOnce(
            Arc<RouteContext>,
            crate::subscription::Subscription,
            usize,
        ) -> BoxFuture<'static, ()>
        + Send,
>;

struct Route {
    subject: String,
    serve: ServeRoute,
    /// The Rust types of the payload and the reply, for generated documents.
    types: (&'static str, Option<&'static str>),
    /// One message at a time, in arrival order.
    ordered: bool,
    check: fn(&StateMap) -> std::result::Result<(), String>,
}

/// A service: named handlers on a [`Bus`], each serving whatever arrives.
///
/// A handler registered with [`on`](Self::on) answers a request with its
/// result and handles an event like one; the caller's configuration picks the
/// style, never the registration (see [`handler`](crate::handler) for the
/// table of outcomes). Every route subscribes in the queue group named after
/// the service, so several instances share the work.
///
/// Payloads are JSON. A request whose payload does not decode is answered with
/// a codec error (the handler is not called); a handler's `Err` or panic
/// becomes an error reply the caller receives as [`Error::Remote`], and the
/// service keeps running. An event whose handler fails is retried in place
/// with a growing pause, up to [`EventPolicy::max_attempts`], then goes to the
/// dead-letter subject (`dead-letter.<service>` unless configured) with the
/// error and attempt count in `sb-dead-letter-*` headers: never silently dropped.
///
/// ```
/// use serde::{Deserialize, Serialize};
/// use switchboard::Service;
///
/// #[derive(Serialize, Deserialize)]
/// struct Add { a: i64, b: i64 }
///
/// async fn add(req: Add) -> Result<i64, String> {
///     Ok(req.a + req.b)
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> switchboard::Result<()> {
/// let bus = switchboard::connect("memory://doc-service").await?;
/// let running = Service::new("calculator", bus.clone())
///     .on("calc.add", add)
///     .start()
///     .await?;
/// let sum: i64 = bus.request_json("calc.add", &Add { a: 2, b: 3 }).await?;
/// assert_eq!(sum, 5);
/// let report = running.shutdown().await;
/// assert!(report.is_clean());
/// # Ok(()) }
/// ```
pub struct Service {
    name: String,
    bus: Bus,
    routes: Vec<Route>,
    concurrency: usize,
    events: EventPolicy,
    state: StateMap,
    /// Payload schemas for the service's AsyncAPI document.
    schemas: crate::asyncapi::Schemas,
}

impl Service {
    /// A service called `name` (also its queue group) on `bus`. Failed events
    /// follow the bus's [`EventPolicy`] (from [`Settings`](crate::Settings))
    /// unless [`event_policy`](Self::event_policy) overrides it.
    pub fn new(name: impl Into<String>, bus: Bus) -> Self {
        Service {
            name: name.into(),
            events: bus.event_policy().clone(),
            concurrency: bus.handler_concurrency().unwrap_or(DEFAULT_CONCURRENCY),
            bus,
            routes: Vec::new(),
            state: StateMap::default(),
            schemas: crate::asyncapi::Schemas::default(),
        }
    }

    /// Gives every handler of this service access to `value` through
    /// [`State<S>`](crate::handler::State); one value per type.
    pub fn state<S: Clone + Send + Sync + 'static>(mut self, value: S) -> Self {
        self.state.insert(value);
        self
    }

    /// How many messages each concurrent route handles at once (default
    /// [`DEFAULT_CONCURRENCY`]); the route stops taking messages while that
    /// many are in flight or waiting behind a busy key, so a flood cannot
    /// exhaust memory.
    pub fn concurrency(mut self, limit: usize) -> Self {
        self.concurrency = limit.max(1);
        self
    }

    /// What happens to events whose handler keeps failing (retries, dead-letter subject, shutdown grace).
    pub fn event_policy(mut self, policy: EventPolicy) -> Self {
        self.events = policy;
        self
    }

    /// Serves `subject` (a subject or wildcard pattern) with `handler`,
    /// concurrently: a request gets the handler's result as its reply, an
    /// event is handled and acknowledged (or retried and dead-lettered).
    ///
    /// Events with a key ([`Message::with_key`](crate::Message::with_key),
    /// header `sb-key`) keep their order per key: one event of a key runs at
    /// a time, in the order received, while other keys run alongside (on
    /// Kafka the commit still follows the log order). Events without a key,
    /// and requests, have no order among themselves.
    pub fn on<H, Args>(self, subject: impl Into<String>, handler: H) -> Self
    where
        H: Handler<Args>,
        Args: 'static,
    {
        self.route(subject.into(), handler, false)
    }

    /// Like [`on`](Self::on), but one message at a time in arrival order, for
    /// handlers whose events must not overtake each other, keyed or not.
    pub fn on_ordered<H, Args>(self, subject: impl Into<String>, handler: H) -> Self
    where
        H: Handler<Args>,
        Args: 'static,
    {
        self.route(subject.into(), handler, true)
    }

    fn route<H, Args>(mut self, subject: String, handler: H, ordered: bool) -> Self
    where
        H: Handler<Args>,
        Args: 'static,
    {
        self.routes.push(Route {
            subject,
            serve: match context::fits_inline::<H, Args>() {
                true => Box::new(move |context, subscription, concurrency| {
                    let handler = Arc::new(Typed::<H, Args>::new(handler));
                    Box::pin(serve::serve(context, subscription, handler, concurrency))
                }),
                false => Box::new(move |context, subscription, concurrency| {
                    let handler = Arc::new(Boxed::<H, Args>::new(handler));
                    Box::pin(serve::serve(context, subscription, handler, concurrency))
                }),
            },
            types: (H::payload_type(), H::reply_type()),
            ordered,
            check: H::check,
        });
        self
    }

    /// Registers the JSON Schema of `T` (through schemars), which the
    /// service's AsyncAPI document gives every message whose payload is a `T`.
    #[cfg(feature = "asyncapi")]
    #[cfg_attr(docsrs, doc(cfg(feature = "asyncapi")))]
    pub fn schema<T: schemars::JsonSchema>(mut self) -> Self {
        self.schemas.add::<T>();
        self
    }

    /// An AsyncAPI 3.0 document of what this service receives, as its bus's
    /// route table carries it: one channel per handler on its transport,
    /// with a `receive` operation and, for a sync route, a reply; payloads
    /// named by the handlers' Rust types, with their schemas where
    /// [`schema`](Self::schema) registered them. See [`crate::asyncapi`].
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> switchboard::Result<()> {
    /// #[derive(serde::Deserialize)]
    /// struct PlaceOrder { item: String }
    ///
    /// let bus = switchboard::connect("memory://service-asyncapi-doc").await?;
    /// let orders = switchboard::Service::new("orders", bus)
    ///     .on("orders.place", |order: PlaceOrder| async move { Ok::<_, String>(order.item.len()) });
    /// let document = orders.asyncapi();
    /// let operation = &document["operations"]["orders.place"];
    /// assert_eq!(operation["action"], "receive");
    /// assert!(operation.get("reply").is_some()); // sync by default: a request with a reply
    /// # Ok(()) }
    /// ```
    pub fn asyncapi(&self) -> serde_json::Value {
        let channels: Vec<crate::asyncapi::Channel<'_>> = self
            .routes
            .iter()
            .map(|route| {
                self.bus
                    .channel(&route.subject, Some(route.types.0), route.types.1)
            })
            .collect();
        let servers = crate::asyncapi::servers_of(&channels, |name| self.bus.transport_url(name));
        crate::asyncapi::document(
            &self.name,
            crate::asyncapi::Side::Receiver,
            &servers,
            &channels,
            &self.schemas,
        )
    }

    /// Subscribes every route and starts handling; returns once all routes are live.
    ///
    /// Fails before subscribing anything if a handler asks for a
    /// [`State`](crate::handler::State) the service was not given, or the
    /// dead-letter subject is invalid.
    pub async fn start(self) -> Result<RunningService> {
        for route in &self.routes {
            (route.check)(&self.state).map_err(|why| {
                Error::usage(format!(
                    "service `{}`, route `{}`: {why}",
                    self.name, route.subject
                ))
            })?;
        }
        let dead_letter = match &self.events.dead_letter {
            Some(subject) => Some(subject.replace("{service}", &self.name)),
            None => None,
        };
        if let Some(subject) = &dead_letter {
            subject::validate(subject).map_err(|err| {
                Error::config(format!(
                    "dead-letter subject for service `{}`: {err}",
                    self.name
                ))
            })?;
        }
        // The transports this service's routes use, each told its document
        // (the HTTP backend serves it at `GET /_switchboard/asyncapi/SERVICE`).
        let document = bytes::Bytes::from(serde_json::to_vec(&self.asyncapi()).unwrap_or_default());
        let mut described: Vec<Arc<dyn crate::transport::Transport>> = Vec::new();
        for route in &self.routes {
            let transport = self.bus.transport_for(&route.subject);
            if !described.iter().any(|known| Arc::ptr_eq(known, transport)) {
                described.push(transport.clone());
            }
        }
        let shutdown = shutdown::Signal::new();
        let state = Arc::new(self.state);
        let mut live = Vec::with_capacity(self.routes.len());
        for route in self.routes {
            let subscription = self
                .bus
                .serve_subscription(&route.subject, &self.name)
                .await?;
            let dedup = self.bus.dedup_for(&self.name, &route.subject)?;
            let context = Arc::new(RouteContext {
                dedup,
                service: self.name.clone(),
                backend: self.bus.backend_for(&route.subject),
                redelivers: self.bus.redelivers(&route.subject),
                cloudevents: self.bus.cloudevents_for(&route.subject),
                route: route.subject,
                policy: self.events.clone(),
                dead_letter: dead_letter.clone(),
                bus: self.bus.clone(),
                state: state.clone(),
                shutdown: shutdown.clone(),
            });
            live.push((subscription, route.serve, route.ordered, context));
        }
        let mut routes = JoinSet::new();
        for (subscription, serve, ordered, context) in live {
            let concurrency = if ordered { 1 } else { self.concurrency };
            routes.spawn(serve(context, subscription, concurrency));
        }
        for transport in &described {
            transport.describe_service(&self.name, Some(document.clone()));
        }
        tracing::debug!(service = %self.name, "service started");
        Ok(RunningService::new(
            self.name,
            shutdown,
            routes,
            self.events.shutdown_grace,
            described,
        ))
    }

    /// Starts the service, runs it until `shutdown` completes, then shuts it
    /// down and returns what the shutdown did.
    pub async fn run_until(self, shutdown: impl Future<Output = ()>) -> Result<ShutdownReport> {
        let mut running = self.start().await?;
        tokio::select! {
            _ = shutdown => {}
            _ = running.wait_for_routes() => {}
        }
        Ok(running.shutdown().await)
    }
}

impl fmt::Debug for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Service")
            .field("name", &self.name)
            .field(
                "routes",
                &self.routes.iter().map(|r| &r.subject).collect::<Vec<_>>(),
            )
            .field("events", &self.events)
            .finish()
    }
}
