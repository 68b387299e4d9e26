//! `Bus`: the handle a service holds. It carries the route table, so one call
//! (`send`) becomes a request or a publish as configuration says, over the
//! transport configuration picks; it validates input once for every backend.

mod describe;
mod from_settings;
#[cfg(feature = "outbox")]
mod send_in;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use serde::{de::DeserializeOwned, Serialize};

use crate::payload::{FromPayload, Payload};

use crate::capabilities::Capabilities;
use crate::codec::Encoding;
use crate::error::{Error, Result};
use crate::health::Health;
use crate::message::Message;
use crate::observe::{error_kind, observe, ErrorOf, Observation, Observed, Operation};
use crate::settings::events::EventPolicy;
use crate::settings::{NoSubscriber, RouteDecision, RouteTable, Style, DEFAULT_TRANSPORT};
use crate::subject;
use crate::subscription::Subscription;
use crate::trace;
use crate::transport::{Publishing, Reach, Transport};
use crate::unrouted::Unrouted;
use crate::wire;

pub use crate::settings::DEFAULT_REQUEST_TIMEOUT;

/// A publish the bus began: finished, or the rest of it, observed until it
/// finishes.
enum Begun<'a> {
    Done(Result<Reach>),
    Waiting(Observed<BoxFuture<'a, Result<Reach>>, ErrorOf<Reach>>),
}

/// Where one call goes: the transport, the style and the request timeout.
struct Resolved<'a> {
    carrier: &'a Carrier,
    style: Style,
    timeout: Duration,
    on_no_subscriber: NoSubscriber,
    /// `fallback = "async"`: a sync send no responder could take is published instead.
    fallback_async: bool,
    /// How `send` encodes payloads.
    codec: Encoding,
    /// Events carry CloudEvents attributes.
    cloudevents: bool,
    /// The pattern of the rule that decided, for logs.
    rule: Option<&'a str>,
}

/// One configured transport and its default request timeout.
#[derive(Clone)]
struct Carrier {
    transport: Arc<dyn Transport>,
    timeout: Duration,
    /// The URL it was connected with, password removed (for documents).
    url: Option<Arc<str>>,
    /// Events published here carry CloudEvents attributes (`cloudevents = true`).
    cloudevents: bool,
}

#[derive(Clone)]
struct Inner {
    table: RouteTable,
    /// Every transport by name; `default` is always present.
    carriers: BTreeMap<String, Carrier>,
    default: Carrier,
    events: EventPolicy,
    handler_concurrency: Option<usize>,
    /// Events that reached no subscriber, shared by every clone.
    unrouted: Arc<Unrouted>,
    /// Sync sends published instead (`fallback = "async"`), shared by every clone.
    deferred: Arc<std::sync::atomic::AtomicU64>,
    /// Where async sends are held until a recipient took them (`[outbox]`).
    #[cfg(feature = "outbox")]
    outbox: Option<Arc<crate::outbox::Outbox>>,
    /// `ce-source` of the CloudEvents published here.
    cloudevents_source: Arc<str>,
}

/// The handle a service holds: returned by [`connect`](crate::connect) and
/// [`Settings::connect`](crate::Settings::connect), cheap to clone.
///
/// [`send`](Self::send) is the style-agnostic call: the route table decides,
/// per subject, whether it waits for a reply (sync) or returns once the event
/// is accepted (async), which transport carries it, and its timeout. The
/// explicit [`request`](Self::request) and [`publish`](Self::publish) are for
/// code that wants one style on purpose; they still follow the table's choice
/// of transport.
///
/// Every call checks its input at this boundary (subject syntax, headers,
/// payload size against the backend's limit), so every backend rejects the
/// same bad input with the same [`Error`]. Replies that carry an error status
/// come back as `Err`, never as a success.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> switchboard::Result<()> {
/// let bus = switchboard::connect("memory://bus-doc").await?;
/// let mut sub = bus.subscribe("greetings").await?;
/// bus.publish("greetings", "hello".into()).await?;
/// let incoming = sub.next().await.expect("delivered");
/// assert_eq!(incoming.payload(), b"hello");
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Bus {
    inner: Arc<Inner>,
}

impl Bus {
    /// A bus over one transport: every subject goes to it, in the sync style.
    pub fn new(transport: Arc<dyn Transport>) -> Self {
        let default = Carrier {
            transport,
            timeout: DEFAULT_REQUEST_TIMEOUT,
            url: None,
            cloudevents: false,
        };
        Bus {
            inner: Arc::new(Inner {
                table: RouteTable::default(),
                carriers: BTreeMap::from([(DEFAULT_TRANSPORT.to_owned(), default.clone())]),
                default,
                events: EventPolicy::default(),
                handler_concurrency: None,
                unrouted: Arc::default(),
                deferred: Arc::default(),
                #[cfg(feature = "outbox")]
                outbox: None,
                cloudevents_source: crate::cloudevents::DEFAULT_SOURCE.into(),
            }),
        }
    }

    /// A bus that follows `table` over named transports (each given as a
    /// one-transport bus, e.g. from [`connect`](crate::connect)); fails if the
    /// table names a transport that is not given. [`Settings::connect`](crate::Settings::connect)
    /// builds the same from configuration.
    pub fn from_routes(table: RouteTable, transports: BTreeMap<String, Bus>) -> Result<Self> {
        Self::routed(table, transports, EventPolicy::default(), None)
    }

    pub(crate) fn routed(
        table: RouteTable,
        buses: BTreeMap<String, Bus>,
        events: EventPolicy,
        handler_concurrency: Option<usize>,
    ) -> Result<Self> {
        let carriers: BTreeMap<String, Carrier> = buses
            .into_iter()
            .map(|(name, bus)| (name, bus.inner.default.clone()))
            .collect();
        for name in table.transports().chain([DEFAULT_TRANSPORT]) {
            if !carriers.contains_key(name) {
                let known: Vec<&str> = carriers.keys().map(String::as_str).collect();
                return Err(Error::config(format!(
                    "routes name a transport `{name}` that is not configured (configured: {})",
                    known.join(", ")
                )));
            }
        }
        let default = carriers[DEFAULT_TRANSPORT].clone();
        Ok(Bus {
            inner: Arc::new(Inner {
                table,
                carriers,
                default,
                events,
                handler_concurrency,
                unrouted: Arc::default(),
                deferred: Arc::default(),
                #[cfg(feature = "outbox")]
                outbox: None,
                cloudevents_source: crate::cloudevents::DEFAULT_SOURCE.into(),
            }),
        })
    }

    /// The same bus with its default transport's events carrying
    /// CloudEvents attributes (a transport's `cloudevents = true`).
    pub(crate) fn with_cloudevents(self) -> Self {
        let mut inner = Arc::unwrap_or_clone(self.inner);
        inner.default.cloudevents = true;
        if let Some(carrier) = inner.carriers.get_mut(DEFAULT_TRANSPORT) {
            carrier.cloudevents = true;
        }
        Bus {
            inner: Arc::new(inner),
        }
    }

    /// The same bus with `source` as the `ce-source` of its CloudEvents.
    pub(crate) fn with_cloudevents_source(self, source: &str) -> Self {
        let mut inner = Arc::unwrap_or_clone(self.inner);
        inner.cloudevents_source = source.into();
        Bus {
            inner: Arc::new(inner),
        }
    }

    /// The same bus, remembering the URL its transport was connected with
    /// (password removed), which generated documents name.
    pub(crate) fn with_url(self, url: &str) -> Self {
        let mut inner = Arc::unwrap_or_clone(self.inner);
        let url: Arc<str> = crate::endpoint::redact(url).into();
        inner.default.url = Some(url.clone());
        if let Some(carrier) = inner.carriers.get_mut(DEFAULT_TRANSPORT) {
            carrier.url = Some(url);
        }
        Bus {
            inner: Arc::new(inner),
        }
    }

    /// The same bus with `timeout` as the default transport's request timeout.
    pub fn with_default_timeout(self, timeout: Duration) -> Self {
        let mut inner = Arc::unwrap_or_clone(self.inner);
        inner.default.timeout = timeout;
        if let Some(carrier) = inner.carriers.get_mut(DEFAULT_TRANSPORT) {
            carrier.timeout = timeout;
        }
        Bus {
            inner: Arc::new(inner),
        }
    }

    /// The default transport's request timeout, used when neither the call nor its route gives one.
    pub fn default_timeout(&self) -> Duration {
        self.inner.default.timeout
    }

    /// The default transport, for wrapping in [`layers`](crate::layers).
    pub fn transport(&self) -> &Arc<dyn Transport> {
        &self.inner.default.transport
    }

    /// The transport `subject` (or a subscription pattern) is routed to.
    pub fn transport_for(&self, subject_or_pattern: &str) -> &Arc<dyn Transport> {
        &self.carrier(subject_or_pattern).transport
    }

    /// What the default transport's backend can do.
    pub fn capabilities(&self) -> &Capabilities {
        self.inner.default.transport.capabilities()
    }

    /// The address this service's own server listens on (HTTP backend); `None` elsewhere.
    pub fn local_address(&self) -> Option<std::net::SocketAddr> {
        self.inner.default.transport.local_address()
    }

    /// The worst health of the configured transports: connected, degraded
    /// (reconnecting, circuits open) or closed, for a service's health
    /// endpoint. Degraded too for 10 s after an event reached no subscriber.
    pub fn health(&self) -> Health {
        let transports = self
            .inner
            .carriers
            .values()
            .map(|carrier| carrier.transport.health())
            .max_by_key(|health| match health {
                Health::Connected => 0,
                Health::Degraded(_) => 1,
                Health::Closed => 2,
            })
            .unwrap_or(Health::Connected);
        match (transports, self.inner.unrouted.degraded()) {
            (Health::Connected, Some(why)) => Health::Degraded(why),
            (health, _) => health,
        }
    }

    /// The default transport's backend name (`memory`, `http`, `nats`, `kafka`).
    pub fn backend(&self) -> &'static str {
        self.capabilities().backend
    }

    /// The route table this bus follows.
    pub fn routes(&self) -> &RouteTable {
        &self.inner.table
    }

    /// What the route table decides for `subject`: its style, transport and timeout.
    pub fn route(&self, subject: &str) -> RouteDecision<'_> {
        self.inner.table.decide(subject)
    }

    /// The route table's decision with its transport looked up, made once per
    /// call (no table lookup at all when there are no rules).
    fn resolve(&self, subject_or_pattern: &str) -> Resolved<'_> {
        if self.inner.table.rules().is_empty() {
            return Resolved {
                carrier: &self.inner.default,
                style: self.inner.table.default_style(),
                timeout: self.inner.default.timeout,
                on_no_subscriber: NoSubscriber::Count,
                fallback_async: false,
                codec: Encoding::Json,
                cloudevents: self.inner.default.cloudevents,
                rule: None,
            };
        }
        let decision = self.inner.table.decide(subject_or_pattern);
        // `routed` checked that every transport the table names exists.
        let carrier = &self.inner.carriers[decision.transport];
        Resolved {
            carrier,
            style: decision.style,
            timeout: decision.timeout.unwrap_or(carrier.timeout),
            on_no_subscriber: decision.on_no_subscriber,
            fallback_async: decision.fallback_async,
            codec: decision.codec,
            cloudevents: decision.cloudevents.unwrap_or(carrier.cloudevents),
            rule: decision.rule,
        }
    }

    fn carrier(&self, subject_or_pattern: &str) -> &Carrier {
        self.resolve(subject_or_pattern).carrier
    }

    /// Sends `payload` in the style configured for `subject`, encoded as its
    /// route's `codec` says (JSON by default; the reply is decoded by its
    /// `content-type`).
    ///
    /// A sync route waits for the reply (up to the route's timeout, else the
    /// transport's) and returns [`Sent::Replied`], or the handler's error. An
    /// async route publishes and returns [`Sent::Accepted`] once the backend
    /// has accepted the event. Flipping the route changes no code. Use it for
    /// commands; a caller that needs the answer uses
    /// [`request_json`](Self::request_json), or sends to a route marked
    /// `query = true`, which stays request/reply whatever the configured style.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> switchboard::Result<()> {
    /// use switchboard::{Sent, Settings};
    ///
    /// let bus = Settings::from_toml(r#"
    ///     [transports.default]
    ///     url = "memory://send-doc"
    ///
    ///     [[routes]]
    ///     subjects = "audit.*"
    ///     style = "async"
    /// "#)?.connect().await?;
    /// let mut audit = bus.subscribe("audit.login").await?;
    /// let sent: Sent<()> = bus.send("audit.login", &"ada").await?;
    /// assert!(sent.is_accepted());
    /// assert_eq!(audit.next().await.unwrap().payload(), br#""ada""#);
    /// # Ok(()) }
    /// ```
    pub async fn send<Req, Resp>(&self, subject: &str, payload: &Req) -> Result<Sent<Resp>>
    where
        Req: Payload + ?Sized,
        Resp: FromPayload,
    {
        let message = encode_payload(self.resolve(subject).codec, payload)?;
        match self.send_message(subject, message).await? {
            Sent::Replied(reply) => Ok(Sent::Replied(decode_reply(subject, &reply)?)),
            Sent::Accepted => Ok(Sent::Accepted),
            Sent::Deferred(deferred) => Ok(Sent::Deferred(deferred)),
        }
    }

    /// [`send`](Self::send) for a ready-made message, with no JSON step.
    pub async fn send_message(&self, subject: &str, message: Message) -> Result<Sent<Message>> {
        let route = self.resolve(subject);
        match route.style {
            Style::Sync if route.fallback_async => {
                // Kept for the fallback; a clone shares the payload's bytes.
                let command = message.clone();
                match self
                    .request_on(route.carrier, subject, message, route.timeout)
                    .await
                {
                    Ok(reply) => Ok(Sent::Replied(reply)),
                    Err(err) if deferrable(&err) => self.defer(&route, subject, command, err).await,
                    Err(err) => Err(err),
                }
            }
            Style::Sync => {
                let reply = self
                    .request_on(route.carrier, subject, message, route.timeout)
                    .await?;
                Ok(Sent::Replied(reply))
            }
            Style::Async => {
                let begun = self.begin_publish_on(&route, subject, message);
                self.published(&route, subject, begun).await?;
                Ok(Sent::Accepted)
            }
        }
    }

    /// Publishes a sync command no responder could take, for a responder to
    /// handle when it is back: through the outbox, or to a broker that keeps
    /// events. With neither, the command would be lost, so the caller gets
    /// `unreached` back (and a warning says what to configure).
    async fn defer(
        &self,
        route: &Resolved<'_>,
        subject: &str,
        mut command: Message,
        unreached: Error,
    ) -> Result<Sent<Message>> {
        if !self.holds_for_absent(route, subject) {
            tracing::warn!(%subject, error = %unreached, "`fallback = \"async\"` has nowhere a deferred command could wait (no [outbox], or a backend that cannot tell nobody took an event); the error is returned instead");
            return Err(unreached);
        }
        let id = match command.headers.get(wire::MESSAGE_ID) {
            Some(id) => id.to_owned(),
            None => {
                let id = format!("{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..));
                command.headers.insert(wire::MESSAGE_ID, id.clone());
                id
            }
        };
        command.headers.insert(wire::DEFERRED_ID, id.clone());
        let begun = self.begin_publish(route, subject, command);
        self.published(route, subject, begun).await?;
        self.inner
            .deferred
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        crate::observe::deferred(subject);
        tracing::debug!(%subject, %id, error = %unreached, "sync send deferred: published for the responder to handle when back");
        Ok(Sent::Deferred(Deferred {
            id,
            outcomes: deferred_outcomes(subject),
        }))
    }

    /// Whether an event published on this route waits for a recipient that is
    /// away: the transport keeps it (Kafka, JetStream), or the outbox does on
    /// a transport that tells it nobody took the event (memory, HTTP, gRPC;
    /// not core NATS).
    fn holds_for_absent(&self, route: &Resolved<'_>, subject: &str) -> bool {
        let transport = &route.carrier.transport;
        if transport.redelivers(subject) {
            return true;
        }
        #[cfg(feature = "outbox")]
        if self.inner.outbox.is_some() {
            return transport.capabilities().absent_groups.is_supported();
        }
        false
    }

    /// Fails for a route with `fallback = "async"` whose transport does not
    /// keep events for an absent responder when there is no outbox: its
    /// deferred commands would have nowhere to wait.
    pub(crate) fn check_fallbacks(&self) -> Result<()> {
        for (index, rule) in self.inner.table.rules().iter().enumerate() {
            if rule.fallback != Some(Style::Async) {
                continue;
            }
            let route = self.resolve(&rule.pattern);
            if !self.holds_for_absent(&route, &rule.pattern) {
                let capabilities = route.carrier.transport.capabilities();
                let why = match capabilities.absent_groups.reason() {
                    Some(reason) => format!("{} cannot hold it: {reason}", capabilities.backend),
                    None => format!(
                        "add an [outbox]: {} does not keep events for an absent responder",
                        capabilities.backend
                    ),
                };
                return Err(Error::config(format!(
                    "routes[{index}] (`{}`): `fallback = \"async\"` needs somewhere a deferred command waits; {why}",
                    rule.pattern
                )));
            }
        }
        Ok(())
    }

    /// How many sync sends were published instead (`fallback = "async"`)
    /// through this bus and its clones.
    pub fn deferred_total(&self) -> u64 {
        self.inner
            .deferred
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Sends a request and waits for its reply, up to the route's timeout (else the transport's).
    pub async fn request(&self, subject: &str, message: Message) -> Result<Message> {
        let route = self.resolve(subject);
        self.request_on(route.carrier, subject, message, route.timeout)
            .await
    }

    /// Sends a request and waits up to `timeout` for its reply.
    ///
    /// Fails with [`Error::Timeout`], [`Error::NoResponders`] (where the backend
    /// can tell), or [`Error::Remote`] carrying the handler's message and code.
    pub async fn request_with_timeout(
        &self,
        subject: &str,
        message: Message,
        timeout: Duration,
    ) -> Result<Message> {
        self.request_on(self.carrier(subject), subject, message, timeout)
            .await
    }

    async fn request_on(
        &self,
        carrier: &Carrier,
        subject: &str,
        message: Message,
        timeout: Duration,
    ) -> Result<Message> {
        subject::validate(subject)?;
        check_outgoing(carrier.transport.capabilities(), &message)?;
        if timeout.is_zero() {
            return Err(Error::config("request timeout must be greater than zero"));
        }
        let mut message = message;
        let trace = trace::propagate(&mut message.headers);
        let call = async {
            let reply = carrier.transport.request(subject, message, timeout).await?;
            match wire::error_from_reply(subject, &reply) {
                Some(err) => Err(err),
                None => Ok(reply),
            }
        };
        observe(
            Operation::Request,
            subject,
            carrier.transport.capabilities().backend,
            trace.as_ref(),
            call,
        )
        .await
    }

    /// Publishes an event to every subscriber of `subject`.
    ///
    /// An event that reaches no subscriber (on backends that can tell:
    /// memory, HTTP, gRPC) is counted, logged and shown in
    /// [`health`](Self::health); with `on_no_subscriber = "error"` on its
    /// route it fails with [`Error::NoResponders`].
    pub async fn publish(&self, subject: &str, message: Message) -> Result<()> {
        let route = self.resolve(subject);
        let begun = self.begin_publish_on(&route, subject, message);
        self.published(&route, subject, begun).await
    }

    /// [`begin_publish`](Self::begin_publish) after checking the subject and
    /// the message.
    fn begin_publish_on<'a>(
        &'a self,
        route: &Resolved<'a>,
        subject: &'a str,
        message: Message,
    ) -> Begun<'a> {
        if let Err(err) = subject::validate(subject)
            .and_then(|()| check_outgoing(route.carrier.transport.capabilities(), &message))
        {
            return Begun::Done(Err(err));
        }
        self.begin_publish(route, subject, message)
    }

    /// Starts publishing a checked message, observed: most publishes finish
    /// here (queued in a client's buffer), so no future is built around
    /// them; the rest of one that waits is returned to await.
    fn begin_publish<'a>(
        &'a self,
        route: &Resolved<'a>,
        subject: &'a str,
        message: Message,
    ) -> Begun<'a> {
        let transport = &route.carrier.transport;
        let mut message = message;
        if route.cloudevents {
            crate::cloudevents::stamp(
                &mut message.headers,
                subject,
                &self.inner.cloudevents_source,
            );
        }
        let trace = trace::propagate(&mut message.headers);
        let backend = transport.capabilities().backend;
        #[cfg(feature = "outbox")]
        if let Some(outbox) = &self.inner.outbox {
            // A broker that keeps events for absent consumers needs no outbox.
            if !transport.redelivers(subject) {
                let observation =
                    Observation::start(Operation::Publish, subject, backend, trace.as_ref());
                // Held for a recipient: not one that reached nobody.
                let call = outbox.append(subject, message);
                let call: BoxFuture<'_, Result<Reach>> =
                    Box::pin(async move { call.await.map(|()| Reach::Taken) });
                return Begun::Waiting(observation.around(call, error_kind));
            }
        }
        let observation = Observation::start(Operation::Publish, subject, backend, trace.as_ref());
        match observation.in_span(|| transport.publish_eager(subject, message)) {
            Publishing::Done(result) => {
                observation.finish(error_kind(&result));
                Begun::Done(result)
            }
            Publishing::Waiting(call) => Begun::Waiting(observation.around(call, error_kind)),
        }
    }

    /// A begun publish on `route`, finished: one that reached nobody is
    /// counted, and fails where the route says `on_no_subscriber = "error"`.
    async fn published(&self, route: &Resolved<'_>, subject: &str, begun: Begun<'_>) -> Result<()> {
        let reach = match begun {
            Begun::Done(reached) => reached?,
            Begun::Waiting(rest) => rest.await?,
        };
        if reach == Reach::Nobody {
            let backend = route.carrier.transport.capabilities().backend;
            self.inner
                .unrouted
                .record(subject, route.rule.unwrap_or("(default)"), backend);
            if route.on_no_subscriber == NoSubscriber::Error {
                return Err(Error::NoResponders {
                    subject: subject.to_owned(),
                });
            }
        }
        Ok(())
    }

    /// Publishes a message that may carry reserved headers the service sets
    /// itself (dead letters); the subject was validated when the service
    /// started. One that reaches nobody is counted like any other.
    pub(crate) async fn publish_reserved(&self, subject: &str, message: Message) -> Result<()> {
        self.publish_reserved_reach(subject, message)
            .await
            .map(|_| ())
    }

    /// [`publish_reserved`](Self::publish_reserved), saying whom it reached.
    pub(crate) async fn publish_reserved_reach(
        &self,
        subject: &str,
        message: Message,
    ) -> Result<Reach> {
        let route = self.resolve(subject);
        let transport = &route.carrier.transport;
        let reach = transport.publish_reaching(subject, message).await?;
        if reach == Reach::Nobody {
            let backend = transport.capabilities().backend;
            self.inner
                .unrouted
                .record(subject, route.rule.unwrap_or("(default)"), backend);
        }
        Ok(reach)
    }

    /// How many events published through this bus (and its clones) reached
    /// no subscriber, on backends that can tell (memory, HTTP, gRPC).
    pub fn unrouted_total(&self) -> u64 {
        self.inner.unrouted.total()
    }

    /// With an `[outbox]`: how many sends it holds (not yet taken by a
    /// recipient) and how many it dead-lettered after `max_age`; `None` without one.
    #[cfg(feature = "outbox")]
    #[cfg_attr(docsrs, doc(cfg(feature = "outbox")))]
    pub fn outbox_stats(&self) -> Option<crate::outbox::OutboxStats> {
        self.inner
            .outbox
            .as_ref()
            .map(|outbox| crate::outbox::OutboxStats {
                pending: outbox.pending(),
                expired: outbox.expired(),
            })
    }

    /// This bus with an outbox: async sends on transports that do not keep
    /// events for an absent consumer are held in the SQLite file at
    /// `settings.path` (or the PostgreSQL database at `settings.url`) until
    /// a recipient took them (see [`crate::outbox`]).
    /// [`Settings::connect`](crate::Settings::connect) does this for
    /// `[outbox]`. Fails for neither or both of `path` and `url`, and for a
    /// store that cannot be used.
    #[cfg(feature = "outbox")]
    #[cfg_attr(docsrs, doc(cfg(feature = "outbox")))]
    pub async fn with_outbox(self, settings: &crate::settings::OutboxSettings) -> Result<Bus> {
        let outbox = crate::outbox::Outbox::open(settings, self.outbox_routes()).await?;
        Ok(self.attach_outbox(outbox))
    }

    #[cfg(feature = "outbox")]
    fn attach_outbox(self, outbox: crate::outbox::Outbox) -> Self {
        let mut inner = Arc::unwrap_or_clone(self.inner);
        inner.outbox = Some(Arc::new(outbox));
        Bus {
            inner: Arc::new(inner),
        }
    }

    /// The route table and transports, for the outbox's relay.
    #[cfg(feature = "outbox")]
    fn outbox_routes(&self) -> crate::outbox::Routes {
        let table = self.inner.table.clone();
        let transports: BTreeMap<String, Arc<dyn Transport>> = self
            .inner
            .carriers
            .iter()
            .map(|(name, carrier)| (name.clone(), carrier.transport.clone()))
            .collect();
        crate::outbox::Routes(Box::new(move |subject| {
            transports.get(table.decide(subject).transport).cloned()
        }))
    }

    /// Subscribes to a subject or wildcard pattern; every subscriber gets every message.
    pub async fn subscribe(&self, subject: &str) -> Result<Subscription> {
        let transport = &self.carrier(subject).transport;
        check_pattern(transport.capabilities(), subject)?;
        transport.subscribe(subject, None).await
    }

    /// Subscribes as a member of queue group `group`: each message goes to one member.
    pub async fn queue_subscribe(&self, subject: &str, group: &str) -> Result<Subscription> {
        let transport = &self.carrier(subject).transport;
        let capabilities = transport.capabilities();
        check_pattern(capabilities, subject)?;
        subject::validate_group(group)?;
        if let Some(reason) = capabilities.queue_groups.reason() {
            return Err(Error::Unsupported {
                backend: capabilities.backend,
                what: format!("queue groups ({reason})"),
            });
        }
        transport.subscribe(subject, Some(group)).await
    }

    /// A service route's subscription: in the service's queue group where the backend has them.
    pub(crate) async fn serve_subscription(
        &self,
        pattern: &str,
        group: &str,
    ) -> Result<Subscription> {
        match self.transport_for(pattern).capabilities().queue_groups {
            support if support.is_supported() => self.queue_subscribe(pattern, group).await,
            _ => self.subscribe(pattern).await,
        }
    }

    /// The backend name of the transport a subject or pattern is routed to.
    pub(crate) fn backend_for(&self, subject_or_pattern: &str) -> &'static str {
        self.transport_for(subject_or_pattern)
            .capabilities()
            .backend
    }

    /// Whether events on `subject` carry CloudEvents attributes.
    pub(crate) fn cloudevents_for(&self, subject_or_pattern: &str) -> bool {
        self.resolve(subject_or_pattern).cloudevents
    }

    /// Whether a nacked event on this route's transport comes back.
    pub(crate) fn redelivers(&self, subject_or_pattern: &str) -> bool {
        self.transport_for(subject_or_pattern)
            .redelivers(subject_or_pattern)
    }

    /// The memory of handled message ids for a service's route whose table
    /// rule sets `dedup`; `None` without one. The ids live in the outbox's
    /// file, so a route with `dedup` on a bus without an outbox is an error.
    pub(crate) fn dedup_for(
        &self,
        service: &str,
        route: &str,
    ) -> Result<Option<Arc<crate::handled_ids::Dedup>>> {
        let Some(window) = self.inner.table.decide(route).dedup else {
            return Ok(None);
        };
        #[cfg(feature = "outbox")]
        if let Some(outbox) = &self.inner.outbox {
            return Ok(Some(outbox.dedup(service, route, window)));
        }
        let _ = window;
        Err(Error::config(format!(
            "service `{service}`, route `{route}`: `dedup` keeps the ids of handled events in the outbox's file; configure `[outbox]` with a `path` (feature `outbox`)"
        )))
    }

    /// The event policy services on this bus use (from [`Settings`](crate::Settings)).
    pub fn event_policy(&self) -> &EventPolicy {
        &self.inner.events
    }

    /// The handler concurrency configured for services on this bus, if any.
    pub fn handler_concurrency(&self) -> Option<usize> {
        self.inner.handler_concurrency
    }

    /// Sends `request` as JSON and decodes the JSON reply, with the route's (or default) timeout.
    pub async fn request_json<Req, Resp>(&self, subject: &str, request: &Req) -> Result<Resp>
    where
        Req: Serialize + ?Sized,
        Resp: DeserializeOwned,
    {
        let reply = self.request(subject, Message::json(request)?).await?;
        decode_reply(subject, &reply)
    }

    /// Sends `request` as JSON and decodes the JSON reply, waiting up to `timeout`.
    pub async fn request_json_with_timeout<Req, Resp>(
        &self,
        subject: &str,
        request: &Req,
        timeout: Duration,
    ) -> Result<Resp>
    where
        Req: Serialize + ?Sized,
        Resp: DeserializeOwned,
    {
        let reply = self
            .request_with_timeout(subject, Message::json(request)?, timeout)
            .await?;
        decode_reply(subject, &reply)
    }

    /// Publishes `event` as JSON.
    pub async fn publish_json<T: Serialize + ?Sized>(
        &self,
        subject: &str,
        event: &T,
    ) -> Result<()> {
        let message = Message::json(event)?;
        let route = self.resolve(subject);
        let begun = self.begin_publish_on(&route, subject, message);
        self.published(&route, subject, begun).await
    }

    /// Drains in-flight work and closes every transport; later calls fail
    /// with [`Error::Closed`]. Returns the first error after trying them all.
    pub async fn close(&self) -> Result<()> {
        // The relay stops first: what it still holds stays in the file for the next start.
        #[cfg(feature = "outbox")]
        if let Some(outbox) = &self.inner.outbox {
            outbox.close().await;
        }
        let mut first_error = None;
        for carrier in self.inner.carriers.values() {
            if let Err(err) = carrier.transport.close().await {
                first_error.get_or_insert(err);
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

/// Decodes a JSON reply; an error says it was the reply to `subject` that
/// did not decode (the request was handled, with whatever effects it had).
/// `payload` as a message in the encoding `route` names (or its own, for
/// a `Proto`), with its `content-type` unless it is JSON.
pub(crate) fn encode_payload<T: Payload + ?Sized>(route: Encoding, payload: &T) -> Result<Message> {
    let (bytes, encoding) = payload.to_payload(route)?;
    let message = Message::new(bytes);
    Ok(match encoding {
        Encoding::Json => message,
        other => message.with_header(wire::CONTENT_TYPE, other.content_type()),
    })
}

fn decode_reply<T: FromPayload>(subject: &str, reply: &Message) -> Result<T> {
    T::from_payload(reply.encoding(), &reply.payload).map_err(|err| match err {
        Error::Codec { message, source } => Error::Codec {
            message: format!("the reply to `{subject}` (the request was handled): {message}"),
            source,
        },
        other => other,
    })
}

fn check_outgoing(capabilities: &Capabilities, message: &Message) -> Result<()> {
    message.headers.validate_outgoing()?;
    let limit = capabilities.max_payload;
    if message.payload.len() > limit {
        return Err(Error::PayloadTooLarge {
            size: message.payload.len(),
            limit,
        });
    }
    Ok(())
}

fn check_pattern(capabilities: &Capabilities, pattern: &str) -> Result<()> {
    subject::validate_pattern(pattern)?;
    if subject::is_pattern(pattern) {
        if let Some(reason) = capabilities.wildcards.reason() {
            return Err(Error::Unsupported {
                backend: capabilities.backend,
                what: format!("wildcard subscriptions ({reason})"),
            });
        }
    }
    Ok(())
}

impl fmt::Debug for Bus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Bus")
            .field("backend", &self.backend())
            .field("default_timeout", &self.default_timeout())
            .field(
                "transports",
                &self.inner.carriers.keys().collect::<Vec<_>>(),
            )
            .field("routes", &self.inner.table)
            .finish()
    }
}

/// What a [`Bus::send`] call did, as its route's style decided.
///
/// ```
/// use switchboard::Sent;
///
/// let replied: Sent<u32> = Sent::Replied(7);
/// assert_eq!(replied.reply(), Some(7));
/// assert!(Sent::<u32>::Accepted.is_accepted());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sent<T> {
    /// Sync route: the handler ran and this is its answer.
    Replied(T),
    /// Async route: the backend accepted the event; the handler runs later.
    Accepted,
    /// Sync route with `fallback = "async"` whose responder could not be
    /// reached: the command was published instead, and its outcome will be
    /// published to [`Deferred::outcomes`] once a responder handled it.
    Deferred(Deferred),
}

impl<T> Sent<T> {
    /// The reply, if the route was sync and answered.
    pub fn reply(self) -> Option<T> {
        match self {
            Sent::Replied(reply) => Some(reply),
            Sent::Accepted | Sent::Deferred(_) => None,
        }
    }

    /// Whether the call was published rather than answered (async, or deferred).
    pub fn is_accepted(&self) -> bool {
        !matches!(self, Sent::Replied(_))
    }

    /// The deferral, if a sync send was published instead.
    pub fn deferred(&self) -> Option<&Deferred> {
        match self {
            Sent::Deferred(deferred) => Some(deferred),
            _ => None,
        }
    }
}

/// A sync command published instead of answered ([`Sent::Deferred`]).
///
/// When a responder handles it, the service publishes the outcome to
/// `outcomes` (`deferred.SUBJECT`): the handler's reply, or, when it refused
/// for good (the command was dead-lettered), an empty message with
/// `sb-deferred-error`, `sb-deferred-code` and `sb-deferred-service`; both
/// with `sb-deferred-id` set to `id`. Read one with [`Deferred::outcome`]:
///
/// ```no_run
/// # async fn demo(bus: switchboard::Bus) -> switchboard::Result<()> {
/// use switchboard::{Deferred, Sent};
///
/// let mut outcomes = bus.subscribe("deferred.orders.place").await?;
/// if let Sent::Deferred(deferred) = bus.send::<_, u32>("orders.place", &7).await? {
///     while let Some(incoming) = outcomes.next().await {
///         if let Some((id, outcome)) = Deferred::outcome(&incoming) {
///             if id == deferred.id {
///                 println!("handled later: {:?}", outcome.map(|m| m.payload));
///                 break;
///             }
///         }
///     }
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deferred {
    /// The command's `sb-message-id`, repeated as `sb-deferred-id` on its outcome.
    pub id: String,
    /// The subject its outcome is published to: `deferred.` and the command's subject.
    pub outcomes: String,
}

impl Deferred {
    /// Reads a message published to an outcomes subject: the deferred
    /// command's id, and the handler's reply or error (an
    /// [`Error::Remote`] naming who refused, for a refusal). `None` for a
    /// message without `sb-deferred-id`.
    pub fn outcome(incoming: &crate::incoming::Incoming) -> Option<(String, Result<Message>)> {
        let message = incoming.message();
        let headers = &message.headers;
        let id = headers.get(wire::DEFERRED_ID)?.to_owned();
        let subject = incoming
            .subject()
            .strip_prefix(DEFERRED_PREFIX)
            .unwrap_or(incoming.subject());
        let outcome = match headers.get(wire::DEFERRED_ERROR) {
            Some(error) => {
                let code = headers.get(wire::DEFERRED_CODE).map(str::to_owned);
                let err = Error::remote(subject, code, error);
                Err(match headers.get(wire::DEFERRED_SERVICE) {
                    Some(service) => err.with_origin(service, subject),
                    None => err,
                })
            }
            None => Ok(message.clone()),
        };
        Some((id, outcome))
    }
}

/// Outcomes of deferred commands go to this prefix and the command's subject.
const DEFERRED_PREFIX: &str = "deferred.";

/// Where the outcome of a deferred command on `subject` is published.
pub(crate) fn deferred_outcomes(subject: &str) -> String {
    format!("{DEFERRED_PREFIX}{subject}")
}

/// Failures that happen before any handler could have run: a sync send with
/// `fallback = "async"` publishes the command instead. A timeout or a
/// handler's error may come after the handler ran, so they are returned.
fn deferrable(err: &Error) -> bool {
    matches!(
        err.kind(),
        crate::ErrorKind::NoResponders | crate::ErrorKind::Connect | crate::ErrorKind::CircuitOpen
    )
}
