//! The typed handler layer: register request and event handlers by subject, run until shutdown.

use std::any::Any;
use std::fmt::{self, Display};
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;

use futures_util::FutureExt;
use serde::{de::DeserializeOwned, Serialize};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;

use crate::bus::Bus;
use crate::error::Result;
use crate::incoming::Incoming;
use crate::message::Message;
use crate::subscription::Subscription;
use crate::wire;

/// Requests one route handles at once unless [`Service::concurrency`] says otherwise.
pub const DEFAULT_CONCURRENCY: usize = 256;

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// Turns a request into its reply: a success, or an error reply in wire form.
type RequestFn = Arc<dyn Fn(Message) -> BoxFuture<Message> + Send + Sync>;

/// Handles an event; `Err` carries the reason and whether redelivery can help.
type EventFn = Arc<dyn Fn(Message) -> BoxFuture<Result<(), EventFailure>> + Send + Sync>;

enum EventFailure {
    /// The payload cannot be decoded; redelivering it cannot help.
    Undecodable(String),
    /// The handler failed; a redelivery may succeed.
    Handler(String),
}

enum Handler {
    Request(RequestFn),
    Event(EventFn),
}

struct Route {
    subject: String,
    handler: Handler,
}

/// A service: named handlers for requests and events on one [`Bus`].
///
/// Every route subscribes in the queue group named after the service, so
/// running several instances of a service shares the work: each request and
/// each event is handled by one instance.
///
/// Payloads are JSON. A request whose payload does not decode is answered with
/// a codec error (the handler is not called); a handler's `Err` becomes an
/// error reply that the caller receives as [`Error::Remote`](crate::Error::Remote);
/// a panicking handler is answered with an error too, and the service keeps running.
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
    bus: Bus,
    routes: Vec<Route>,
    concurrency: usize,
}

impl Service {
    /// A service called `name` (also its queue group) on `bus`.
    pub fn new(name: impl Into<String>, bus: Bus) -> Self {
        Service {
            name: name.into(),
            bus,
            routes: Vec::new(),
            concurrency: DEFAULT_CONCURRENCY,
        }
    }

    /// How many requests each route handles at once (default [`DEFAULT_CONCURRENCY`]).
    /// Events on a route are handled one at a time, in order.
    pub fn concurrency(mut self, limit: usize) -> Self {
        self.concurrency = limit.max(1);
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
        let handler = Arc::new(handler);
        let request_fn: RequestFn = Arc::new(move |message: Message| {
            let handler = handler.clone();
            Box::pin(async move {
                let request: Req = match message.decode_json() {
                    Ok(request) => request,
                    Err(err) => {
                        return wire::error_reply(wire::STATUS_CODEC_ERROR, err.to_string())
                    }
                };
                match handler(request).await {
                    Ok(response) => Message::json(&response).unwrap_or_else(|err| {
                        wire::error_reply(wire::STATUS_HANDLER_ERROR, err.to_string())
                    }),
                    Err(err) => wire::error_reply(wire::STATUS_HANDLER_ERROR, err.to_string()),
                }
            })
        });
        self.routes.push(Route {
            subject: subject.into(),
            handler: Handler::Request(request_fn),
        });
        self
    }

    /// Handles events on `subject` (a subject or wildcard pattern) with `handler`.
    ///
    /// After the handler returns `Ok` the event is acknowledged; after `Err` (or
    /// a panic) it is nacked, so backends with acknowledgements deliver it again,
    /// after a pause that grows from 100 ms to 5 s while failures continue, so a
    /// failing event does not spin. An event that does not decode is logged and
    /// acknowledged, since redelivery cannot fix it.
    pub fn on_event<Ev, E, F, Fut>(mut self, subject: impl Into<String>, handler: F) -> Self
    where
        Ev: DeserializeOwned + Send + 'static,
        E: Display + 'static,
        F: Fn(Ev) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = std::result::Result<(), E>> + Send + 'static,
    {
        let handler = Arc::new(handler);
        let event_fn: EventFn = Arc::new(move |message: Message| {
            let handler = handler.clone();
            Box::pin(async move {
                let event: Ev = message
                    .decode_json()
                    .map_err(|err| EventFailure::Undecodable(err.to_string()))?;
                handler(event)
                    .await
                    .map_err(|err| EventFailure::Handler(err.to_string()))
            })
        });
        self.routes.push(Route {
            subject: subject.into(),
            handler: Handler::Event(event_fn),
        });
        self
    }

    /// Subscribes every route and starts handling; returns once all routes are live.
    pub async fn start(self) -> Result<RunningService> {
        let use_group = self.bus.capabilities().queue_groups.is_supported();
        let mut live = Vec::with_capacity(self.routes.len());
        for route in self.routes {
            let subscription = if use_group {
                self.bus.queue_subscribe(&route.subject, &self.name).await?
            } else {
                self.bus.subscribe(&route.subject).await?
            };
            live.push((subscription, route.handler));
        }
        let (stop, stopped) = watch::channel(false);
        let mut routes = JoinSet::new();
        for (subscription, handler) in live {
            let stopped = stopped.clone();
            match handler {
                Handler::Request(handler) => routes.spawn(serve_requests(
                    subscription,
                    handler,
                    stopped,
                    self.concurrency,
                )),
                Handler::Event(handler) => {
                    routes.spawn(serve_events(subscription, handler, stopped))
                }
            };
        }
        tracing::debug!(service = %self.name, backend = self.bus.backend(), "service started");
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

impl fmt::Debug for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Service")
            .field("name", &self.name)
            .field(
                "routes",
                &self.routes.iter().map(|r| &r.subject).collect::<Vec<_>>(),
            )
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

async fn serve_requests(
    mut subscription: Subscription,
    handler: RequestFn,
    mut stopped: watch::Receiver<bool>,
    concurrency: usize,
) {
    let limit = Arc::new(Semaphore::new(concurrency));
    let mut in_flight = JoinSet::new();
    loop {
        tokio::select! {
            _ = stopped.changed() => break,
            Some(_) = in_flight.join_next(), if !in_flight.is_empty() => {}
            next = subscription.next() => {
                let Some(incoming) = next else { break };
                let permit = limit.clone().acquire_owned().await.expect("semaphore is never closed");
                let handler = handler.clone();
                in_flight.spawn(async move {
                    answer(incoming, handler).await;
                    drop(permit);
                });
            }
        }
    }
    drop(subscription);
    while in_flight.join_next().await.is_some() {}
}

async fn answer(mut incoming: Incoming, handler: RequestFn) {
    let subject = incoming.subject().to_owned();
    if !incoming.expects_reply() {
        tracing::warn!(%subject, "a request route received a message that expects no reply; dropped");
        return;
    }
    let reply = match AssertUnwindSafe(handler(incoming.take_message()))
        .catch_unwind()
        .await
    {
        Ok(reply) => reply,
        Err(panic) => {
            let message = format!("handler panicked: {}", panic_message(&panic));
            tracing::error!(%subject, "{message}");
            wire::error_reply(wire::STATUS_HANDLER_ERROR, message)
        }
    };
    if let Some(status) = reply.headers.get(wire::STATUS) {
        tracing::debug!(%subject, status, "request answered with an error");
    }
    if let Err(err) = incoming.send_reply(reply).await {
        tracing::warn!(%subject, error = %err, "could not send reply");
    }
    // Answered: on backends that redeliver (Kafka), the request must not come back.
    if let Err(err) = incoming.ack().await {
        tracing::debug!(%subject, error = %err, "could not acknowledge request");
    }
}

/// The pause before nacking an event whose handler failed `failures` times in
/// a row: backends that redeliver at once (Kafka, JetStream) would otherwise
/// spin on an event that keeps failing.
fn redelivery_pause(failures: u32) -> std::time::Duration {
    let millis = 50u64.saturating_mul(1 << failures.min(7));
    std::time::Duration::from_millis(millis.min(5_000))
}

async fn serve_events(
    mut subscription: Subscription,
    handler: EventFn,
    mut stopped: watch::Receiver<bool>,
) {
    let mut failures_in_a_row = 0u32;
    loop {
        let next = tokio::select! {
            _ = stopped.changed() => break,
            next = subscription.next() => next,
        };
        let Some(mut incoming) = next else { break };
        let subject = incoming.subject().to_owned();
        let outcome = AssertUnwindSafe(handler(incoming.take_message()))
            .catch_unwind()
            .await;
        let failed = matches!(outcome, Ok(Err(EventFailure::Handler(_))) | Err(_));
        if failed {
            failures_in_a_row += 1;
            tokio::select! {
                _ = stopped.changed() => {}
                _ = tokio::time::sleep(redelivery_pause(failures_in_a_row)) => {}
            }
        } else {
            failures_in_a_row = 0;
        }
        let settled = match outcome {
            Ok(Ok(())) => incoming.ack().await,
            Ok(Err(EventFailure::Undecodable(reason))) => {
                tracing::error!(%subject, %reason, "event payload cannot be decoded; acknowledged and dropped");
                incoming.ack().await
            }
            Ok(Err(EventFailure::Handler(reason))) => {
                tracing::warn!(%subject, %reason, "event handler failed; nacked for redelivery");
                incoming.nack().await
            }
            Err(panic) => {
                tracing::error!(%subject, panic = panic_message(&panic), "event handler panicked; nacked for redelivery");
                incoming.nack().await
            }
        };
        if let Err(err) = settled {
            tracing::warn!(%subject, error = %err, "could not acknowledge event");
        }
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
    fn redelivery_pause_grows_and_caps() {
        assert_eq!(redelivery_pause(1).as_millis(), 100);
        assert_eq!(redelivery_pause(2).as_millis(), 200);
        assert_eq!(redelivery_pause(7).as_millis(), 5_000);
        assert_eq!(redelivery_pause(u32::MAX).as_millis(), 5_000);
    }
}
