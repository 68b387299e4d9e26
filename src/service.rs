//! The typed handler layer: register request, event and command handlers by subject, run until shutdown.

use std::any::Any;
use std::fmt::{self, Display};
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use serde::{de::DeserializeOwned, Serialize};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;

use crate::bus::Bus;
use crate::error::{Error, ErrorKind, Result};
use crate::event_policy::EventPolicy;
use crate::incoming::Incoming;
use crate::message::Message;
use crate::observe::{self, observe_with, Operation};
use crate::routing::Router;
use crate::subject;
use crate::subscription::Subscription;
use crate::trace_context::TraceContext;
use crate::wire;

/// Messages one route handles at once unless [`Service::concurrency`] says otherwise.
pub const DEFAULT_CONCURRENCY: usize = 256;

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// Turns a request into its reply: a success, or an error reply in wire form.
type RequestFn = Arc<dyn Fn(Message) -> BoxFuture<Message> + Send + Sync>;

/// Handles an event: `Err(Error::Codec)` if it cannot be decoded (retrying
/// cannot help), `Err(Error::Remote)` if the handler failed.
type EventFn = Arc<dyn Fn(Message) -> BoxFuture<Result<()>> + Send + Sync>;

enum Handler {
    /// Answers requests; handled concurrently.
    Request(RequestFn),
    /// Handles events one at a time, in order.
    Event(EventFn),
    /// Answers whatever arrives: a request gets a reply, an event is handled
    /// like one; handled concurrently. The same code serves both styles.
    Command(RequestFn, EventFn),
}

struct Route {
    subject: String,
    handler: Handler,
}

/// A service: named handlers for requests, events and commands on a [`Router`] (or a [`Bus`]).
///
/// Every route subscribes in the queue group named after the service, so
/// running several instances of a service shares the work: each request and
/// each event is handled by one instance.
///
/// Payloads are JSON. A request whose payload does not decode is answered with
/// a codec error (the handler is not called); a handler's `Err` becomes an
/// error reply that the caller receives as [`Error::Remote`]; a panicking
/// handler is answered with an error too, and the service keeps running.
///
/// An event whose handler fails (or panics) is retried in place with a
/// growing pause, up to [`EventPolicy::max_attempts`]; then it goes to the
/// dead-letter subject (`dead-letter.<service>` unless configured) with the
/// error and attempt count in `sb-dead-letter-*` headers, and is acknowledged,
/// so one bad event never blocks the stream and is never silently dropped.
///
/// ```
/// use serde::{Deserialize, Serialize};
/// use switchboard::Service;
///
/// #[derive(Serialize, Deserialize)]
/// struct Add { a: i64, b: i64 }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> switchboard::Result<()> {
/// let bus = switchboard::connect("memory://doc-service").await?;
/// let running = Service::new("calculator", bus.clone())
///     .on_request("calc.add", |req: Add| async move { Ok::<_, String>(req.a + req.b) })
///     .start()
///     .await?;
/// let sum: i64 = bus.request_json("calc.add", &Add { a: 2, b: 3 }).await?;
/// assert_eq!(sum, 5);
/// running.shutdown().await;
/// # Ok(()) }
/// ```
pub struct Service {
    name: String,
    router: Router,
    routes: Vec<Route>,
    concurrency: usize,
    events: EventPolicy,
}

impl Service {
    /// A service called `name` (also its queue group) on a bus or a router.
    /// Failed events follow the router's [`EventPolicy`] (from [`Settings`](crate::Settings))
    /// unless [`event_policy`](Self::event_policy) overrides it.
    pub fn new(name: impl Into<String>, router: impl Into<Router>) -> Self {
        let router = router.into();
        Service {
            name: name.into(),
            events: router.event_policy().clone(),
            concurrency: router.handler_concurrency().unwrap_or(DEFAULT_CONCURRENCY),
            router,
            routes: Vec::new(),
        }
    }

    /// How many messages each concurrent route (requests, commands) handles at
    /// once (default [`DEFAULT_CONCURRENCY`]); the route stops taking messages
    /// while that many are in flight, so a flood cannot exhaust memory.
    /// Events on an [`on_event`](Self::on_event) route are handled one at a time, in order.
    pub fn concurrency(mut self, limit: usize) -> Self {
        self.concurrency = limit.max(1);
        self
    }

    /// What happens to events whose handler keeps failing (retries, dead-letter subject).
    pub fn event_policy(mut self, policy: EventPolicy) -> Self {
        self.events = policy;
        self
    }

    /// Answers requests on `subject` with `handler`.
    pub fn on_request<Req, Resp, E, F, Fut>(
        mut self,
        subject: impl Into<String>,
        handler: F,
    ) -> Self
    where
        Req: DeserializeOwned + Send + 'static,
        Resp: Serialize + 'static,
        E: Display + 'static,
        F: Fn(Req) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = std::result::Result<Resp, E>> + Send + 'static,
    {
        self.routes.push(Route {
            subject: subject.into(),
            handler: Handler::Request(request_fn(Arc::new(handler))),
        });
        self
    }

    /// Handles events on `subject` (a subject or wildcard pattern) with `handler`,
    /// one at a time and in order.
    ///
    /// After the handler returns `Ok` the event is acknowledged. After `Err`
    /// (or a panic) it is retried as the [`EventPolicy`] says, then
    /// dead-lettered. An event that does not decode goes straight to the
    /// dead-letter subject, since retrying cannot fix it.
    pub fn on_event<Ev, E, F, Fut>(mut self, subject: impl Into<String>, handler: F) -> Self
    where
        Ev: DeserializeOwned + Send + 'static,
        E: Display + 'static,
        F: Fn(Ev) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = std::result::Result<(), E>> + Send + 'static,
    {
        let handler = Arc::new(handler);
        let event_fn = event_fn(Arc::new(move |event: Ev| handler(event)));
        self.routes.push(Route {
            subject: subject.into(),
            handler: Handler::Event(event_fn),
        });
        self
    }

    /// Handles `subject` in whichever style the caller's configuration picked
    /// (see [`Router::dispatch`]): a request is answered with the handler's
    /// result, an event runs the handler and is acknowledged (or retried and
    /// dead-lettered, as for [`on_event`](Self::on_event)). Commands are
    /// handled concurrently, like requests.
    pub fn on_command<Req, Resp, E, F, Fut>(
        mut self,
        subject: impl Into<String>,
        handler: F,
    ) -> Self
    where
        Req: DeserializeOwned + Send + 'static,
        Resp: Serialize + 'static,
        E: Display + 'static,
        F: Fn(Req) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = std::result::Result<Resp, E>> + Send + 'static,
    {
        let handler = Arc::new(handler);
        let for_events = handler.clone();
        let as_event = event_fn(Arc::new(move |command: Req| {
            let run = for_events(command);
            async move { run.await.map(|_reply: Resp| ()) }
        }));
        self.routes.push(Route {
            subject: subject.into(),
            handler: Handler::Command(request_fn(handler), as_event),
        });
        self
    }

    /// Subscribes every route and starts handling; returns once all routes are live.
    pub async fn start(self) -> Result<RunningService> {
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
        let mut live = Vec::with_capacity(self.routes.len());
        for route in self.routes {
            let bus = self.router.bus_for(&route.subject).clone();
            let subscription = if bus.capabilities().queue_groups.is_supported() {
                bus.queue_subscribe(&route.subject, &self.name).await?
            } else {
                bus.subscribe(&route.subject).await?
            };
            let dead_letter_bus = dead_letter
                .as_deref()
                .map(|subject| self.router.bus_for(subject).clone());
            let context = Arc::new(RouteContext {
                service: self.name.clone(),
                route: route.subject,
                backend: bus.backend(),
                policy: self.events.clone(),
                dead_letter: dead_letter.clone().zip(dead_letter_bus),
            });
            live.push((subscription, route.handler, context));
        }
        let (stop, stopped) = watch::channel(false);
        let mut routes = JoinSet::new();
        for (subscription, handler, context) in live {
            routes.spawn(serve(
                context,
                subscription,
                handler,
                stopped.clone(),
                self.concurrency,
            ));
        }
        tracing::debug!(service = %self.name, "service started");
        Ok(RunningService {
            name: self.name,
            stop,
            routes,
        })
    }

    /// Starts the service and runs it until `shutdown` completes, then shuts it down.
    pub async fn run_until(self, shutdown: impl Future<Output = ()>) -> Result<()> {
        let mut running = self.start().await?;
        tokio::select! {
            _ = shutdown => {}
            _ = running.wait_for_routes() => {}
        }
        running.shutdown().await;
        Ok(())
    }
}

fn request_fn<Req, Resp, E, F, Fut>(handler: Arc<F>) -> RequestFn
where
    Req: DeserializeOwned + Send + 'static,
    Resp: Serialize + 'static,
    E: Display + 'static,
    F: Fn(Req) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = std::result::Result<Resp, E>> + Send + 'static,
{
    Arc::new(move |message: Message| {
        let decoded: Result<Req> = message.decode_json();
        let handler = handler.clone();
        Box::pin(async move {
            let request = match decoded {
                Ok(request) => request,
                Err(err) => return wire::error_reply(wire::STATUS_CODEC_ERROR, err.to_string()),
            };
            match handler(request).await {
                Ok(response) => Message::json(&response).unwrap_or_else(|err| {
                    wire::error_reply(wire::STATUS_HANDLER_ERROR, err.to_string())
                }),
                Err(err) => wire::error_reply(wire::STATUS_HANDLER_ERROR, err.to_string()),
            }
        })
    })
}

type EventHandler<Ev, Fut> = Arc<dyn Fn(Ev) -> Fut + Send + Sync>;

fn event_fn<Ev, E, Fut>(handler: EventHandler<Ev, Fut>) -> EventFn
where
    Ev: DeserializeOwned + Send + 'static,
    E: Display + 'static,
    Fut: Future<Output = std::result::Result<(), E>> + Send + 'static,
{
    Arc::new(move |message: Message| {
        let decoded: Result<Ev> = message.decode_json();
        let handler = handler.clone();
        Box::pin(async move {
            let event = decoded?;
            handler(event).await.map_err(|err| Error::Remote {
                subject: String::new(),
                message: err.to_string(),
            })
        })
    })
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

/// A started [`Service`]. Dropping it stops the routes abruptly; prefer [`shutdown`](Self::shutdown).
pub struct RunningService {
    name: String,
    stop: watch::Sender<bool>,
    routes: JoinSet<()>,
}

impl RunningService {
    /// Stops taking new messages (unsubscribing) and waits for handlers in flight to finish.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        self.wait_for_routes().await;
        tracing::debug!(service = %self.name, "service stopped");
    }

    /// Waits until every route has ended (for example because the transport was closed).
    async fn wait_for_routes(&mut self) {
        while self.routes.join_next().await.is_some() {}
    }
}

impl fmt::Debug for RunningService {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RunningService")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// What every message on one route needs to know about where it runs.
struct RouteContext {
    service: String,
    route: String,
    backend: &'static str,
    policy: EventPolicy,
    /// The dead-letter subject and the bus it is routed to.
    dead_letter: Option<(String, Bus)>,
}

async fn serve(
    context: Arc<RouteContext>,
    mut subscription: Subscription,
    handler: Handler,
    mut stopped: watch::Receiver<bool>,
    concurrency: usize,
) {
    let limit = Arc::new(Semaphore::new(concurrency));
    let mut in_flight = JoinSet::new();
    loop {
        let next = tokio::select! {
            _ = stopped.changed() => break,
            Some(_) = in_flight.join_next(), if !in_flight.is_empty() => continue,
            next = subscription.next() => next,
        };
        let Some(incoming) = next else { break };
        match &handler {
            Handler::Event(handle) => {
                handle_event(&context, incoming, handle, stopped.clone()).await;
            }
            Handler::Request(answer_fn) => {
                let permit = limit.clone().acquire_owned().await.expect("never closed");
                let (context, answer_fn) = (context.clone(), answer_fn.clone());
                in_flight.spawn(async move {
                    answer(&context, incoming, &answer_fn).await;
                    drop(permit);
                });
            }
            Handler::Command(answer_fn, handle) => {
                let permit = limit.clone().acquire_owned().await.expect("never closed");
                let (context, answer_fn, handle) =
                    (context.clone(), answer_fn.clone(), handle.clone());
                let stopped = stopped.clone();
                in_flight.spawn(async move {
                    if incoming.expects_reply() {
                        answer(&context, incoming, &answer_fn).await;
                    } else {
                        handle_event(&context, incoming, &handle, stopped).await;
                    }
                    drop(permit);
                });
            }
        }
    }
    drop(subscription);
    while in_flight.join_next().await.is_some() {}
}

/// The trace a received message continues: (the caller's context, this
/// handler's), or a new trace if the message carries none.
fn incoming_trace(message: &Message) -> (TraceContext, TraceContext) {
    match TraceContext::from_headers(&message.headers) {
        Some(parent) => {
            let child = parent.child();
            (parent, child)
        }
        None => {
            let root = TraceContext::new_root();
            (root.clone(), root)
        }
    }
}

async fn answer(context: &RouteContext, mut incoming: Incoming, handler: &RequestFn) {
    let subject = incoming.subject().to_owned();
    if !incoming.expects_reply() {
        tracing::warn!(%subject, "a request route received a message that expects no reply; dropped");
        return;
    }
    let message = incoming.take_message();
    let (parent, trace) = incoming_trace(&message);
    let run = AssertUnwindSafe(handler(message)).catch_unwind();
    let reply = observe_with(
        Operation::HandleRequest,
        &subject,
        context.backend,
        Some(&parent),
        trace.clone().scope(run),
        |outcome| match outcome {
            Ok(reply) => wire::error_from_reply(&subject, reply).map(|err| err.kind()),
            Err(_) => Some(ErrorKind::Remote),
        },
    )
    .await
    .unwrap_or_else(|panic| {
        let message = format!("handler panicked: {}", panic_message(&panic));
        tracing::error!(%subject, service = %context.service, "{message}");
        wire::error_reply(wire::STATUS_HANDLER_ERROR, message)
    });
    if let Err(err) = incoming.send_reply(reply).await {
        tracing::warn!(%subject, error = %err, "could not send reply");
    }
    // Answered: on backends that redeliver (Kafka), the request must not come back.
    if let Err(err) = incoming.ack().await {
        tracing::debug!(%subject, error = %err, "could not acknowledge request");
    }
}

/// The pause before retrying an event whose handler failed `failures` times
/// in a row: 100 ms, doubling up to 5 s.
fn retry_pause(failures: u32) -> Duration {
    let millis = 50u64.saturating_mul(1 << failures.min(7));
    Duration::from_millis(millis.min(5_000))
}

async fn handle_event(
    context: &RouteContext,
    mut incoming: Incoming,
    handler: &EventFn,
    mut stopped: watch::Receiver<bool>,
) {
    let subject = incoming.subject().to_owned();
    let message = incoming.take_message();
    let (parent, trace) = incoming_trace(&message);
    let mut attempts = 0u32;
    let failure = loop {
        attempts += 1;
        let attempt = AssertUnwindSafe(handler(message.clone())).catch_unwind();
        let run = async {
            match attempt.await {
                Ok(outcome) => outcome,
                Err(panic) => Err(Error::Remote {
                    subject: String::new(),
                    message: format!("handler panicked: {}", panic_message(&panic)),
                }),
            }
        };
        let outcome = observe_with(
            Operation::HandleEvent,
            &subject,
            context.backend,
            Some(&parent),
            trace.clone().scope(run),
            |outcome| outcome.as_ref().err().map(Error::kind),
        )
        .await;
        let err = match outcome {
            Ok(()) => break None,
            Err(err) => err,
        };
        let reason = match &err {
            Error::Remote { message, .. } => message.clone(),
            other => other.to_string(),
        };
        if err.kind() == ErrorKind::Codec || attempts >= context.policy.max_attempts {
            break Some((reason, err.kind() == ErrorKind::Codec));
        }
        tracing::warn!(%subject, service = %context.service, attempts, %reason, "event handler failed; retrying");
        observe::redelivery(&context.service, &context.route);
        let stop_now = tokio::select! {
            _ = stopped.changed() => true,
            _ = tokio::time::sleep(retry_pause(attempts)) => false,
        };
        if stop_now {
            // Shutting down: leave the event to the backend's redelivery, where it has one.
            settle(&subject, incoming.nack().await);
            return;
        }
    };
    let Some((reason, undecodable)) = failure else {
        settle(&subject, incoming.ack().await);
        return;
    };
    match &context.dead_letter {
        Some((dead_letter_subject, bus)) => {
            let letter = dead_letter(&context.service, &subject, message, &reason, attempts);
            match bus.transport().publish(dead_letter_subject, letter).await {
                Ok(()) => {
                    tracing::error!(%subject, service = %context.service, attempts, %reason, dead_letter = %dead_letter_subject, "event dead-lettered");
                    observe::dead_letter(&context.service, &context.route);
                    settle(&subject, incoming.ack().await);
                }
                Err(err) => {
                    tracing::error!(%subject, service = %context.service, error = %err, "could not dead-letter event; nacked for redelivery");
                    settle(&subject, incoming.nack().await);
                }
            }
        }
        None if undecodable => {
            // Redelivery cannot fix a payload; without a dead-letter subject it is logged and dropped.
            tracing::error!(%subject, service = %context.service, %reason, "event payload cannot be decoded; acknowledged and dropped");
            settle(&subject, incoming.ack().await);
        }
        None => {
            tracing::error!(%subject, service = %context.service, attempts, %reason, "event handler gave up; nacked (no dead-letter subject)");
            settle(&subject, incoming.nack().await);
        }
    }
}

/// The event as it goes to the dead-letter subject: the original payload and
/// headers, plus why and where it failed.
fn dead_letter(
    service: &str,
    subject: &str,
    message: Message,
    reason: &str,
    attempts: u32,
) -> Message {
    let mut letter = Message::new(message.payload);
    for (name, value) in message.headers.iter() {
        if !wire::is_reserved(name) || wire::is_settable(name) {
            letter.headers.insert(name, value);
        }
    }
    letter.headers.insert(wire::DEAD_LETTER_SUBJECT, subject);
    letter
        .headers
        .insert(wire::DEAD_LETTER_ERROR, wire::sanitize_header_value(reason));
    letter
        .headers
        .insert(wire::DEAD_LETTER_ATTEMPTS, attempts.to_string());
    letter.headers.insert(wire::DEAD_LETTER_SERVICE, service);
    letter
}

fn settle(subject: &str, result: Result<()>) {
    if let Err(err) = result {
        tracing::warn!(%subject, error = %err, "could not acknowledge event");
    }
}

fn panic_message(panic: &Box<dyn Any + Send>) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("non-string panic payload")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_pause_grows_and_caps() {
        assert_eq!(retry_pause(1).as_millis(), 100);
        assert_eq!(retry_pause(2).as_millis(), 200);
        assert_eq!(retry_pause(7).as_millis(), 5_000);
        assert_eq!(retry_pause(u32::MAX).as_millis(), 5_000);
    }

    #[test]
    fn dead_letter_keeps_payload_and_user_headers() {
        let message = Message::new("x")
            .with_header("tenant", "a")
            .with_header(wire::CORRELATION_ID, "c1");
        let letter = dead_letter("orders", "orders.placed", message, "bad\nthing", 5);
        assert_eq!(&letter.payload[..], b"x");
        assert_eq!(letter.headers.get("tenant"), Some("a"));
        assert_eq!(letter.headers.get(wire::CORRELATION_ID), None);
        assert_eq!(
            letter.headers.get(wire::DEAD_LETTER_ERROR),
            Some("bad?thing")
        );
        assert_eq!(letter.headers.get(wire::DEAD_LETTER_ATTEMPTS), Some("5"));
        assert_eq!(
            letter.headers.get(wire::DEAD_LETTER_SUBJECT),
            Some("orders.placed")
        );
    }
}
