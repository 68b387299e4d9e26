//! `NatsTransport`: core NATS request/reply and pub/sub, JetStream where configured.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::FutureExt;

use super::convert::{self, BACKEND};
use super::draining::DrainingStream;
use super::jetstream::JetStream;
use super::settings::NatsSettings;
use super::slow_consumer::SlowConsumers;
use super::subjects::Subjects;
use switchboard_core::capabilities::{Capabilities, Support};
use switchboard_core::drain::DrainGate;
use switchboard_core::error::{Error, Result};
use switchboard_core::message::Message;
use switchboard_core::subscription::Subscription;
use switchboard_core::transport::{Publishing, Reach, Transport};

/// A connection to a NATS server or cluster.
pub struct NatsTransport {
    client: async_nats::Client,
    gate: DrainGate,
    slow_consumers: std::sync::Arc<SlowConsumers>,
    publish_timeout: Duration,
    jetstream: Option<JetStream>,
    capabilities: Capabilities,
    subjects: Subjects,
    /// Bytes each core subscription may buffer (`pending_bytes`).
    pending_bytes: usize,
}

impl NatsTransport {
    /// Connects with `settings`; fails with [`Error::Connect`] if no server answers
    /// within the connect timeout.
    pub async fn connect(settings: NatsSettings) -> Result<Self> {
        let shown_url = format!("nats://{}", settings.servers.join(","));
        let connect_error = |source: switchboard_core::error::BoxError| Error::Connect {
            url: shown_url.clone(),
            source,
        };
        let servers = settings
            .servers
            .iter()
            .map(|host| format!("nats://{host}").parse::<async_nats::ServerAddr>())
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| Error::config(format!("nats server address: {e}")))?;
        let delay_max = settings.reconnect_delay_max;
        let slow_consumers =
            std::sync::Arc::new(SlowConsumers::new(settings.subscription_capacity));
        let mut options = async_nats::ConnectOptions::new()
            .connection_timeout(settings.connect_timeout)
            .max_reconnects(settings.max_reconnects)
            .reconnect_delay_callback(move |attempts| reconnect_delay(attempts, delay_max))
            .subscription_capacity(settings.subscription_capacity)
            .event_callback({
                let slow_consumers = slow_consumers.clone();
                move |event| {
                    let slow_consumers = slow_consumers.clone();
                    async move { on_event(event, &slow_consumers) }
                }
            });
        if let Some(name) = &settings.name {
            options = options.name(name);
        }
        if let Some(token) = &settings.token {
            options = options.token(token.clone());
        }
        if let Some((user, password)) = &settings.user_password {
            options = options.user_and_password(user.clone(), password.clone());
        }
        if let Some(path) = &settings.creds {
            options = options.credentials_file(path).await.map_err(|e| {
                Error::config(format!(
                    "option `creds`: cannot read {}: {e}",
                    path.display()
                ))
            })?;
        }
        if let Some(tls) = &settings.tls {
            options = options.require_tls(true);
            if let Some(ca) = &tls.ca {
                readable("tls_ca", ca)?;
                options = options.add_root_certificates(ca.clone());
            }
            if let Some((cert, key)) = &tls.client {
                readable("tls_cert", cert)?;
                readable("tls_key", key)?;
                options = options.add_client_certificate(cert.clone(), key.clone());
            }
        }
        let client = tokio::time::timeout(settings.connect_timeout, options.connect(servers))
            .await
            .map_err(|_| connect_error("timed out".into()))?
            .map_err(|e| connect_error(e.into()))?;
        let jetstream = match &settings.jetstream {
            Some(js) => Some(JetStream::open(&client, js).await?),
            None => None,
        };
        let mut capabilities = Capabilities::full(BACKEND, client.server_info().max_payload);
        capabilities.absent_groups = Support::No(
            "core NATS drops an event nobody listens to without telling the publisher, so neither it nor an outbox can hold it for a group that is away; use JetStream (?jetstream=STREAM) for such subjects",
        );
        if jetstream.is_none() {
            capabilities.acknowledgements = Support::No(
                "core NATS is at-most-once; connect with ?jetstream=STREAM for acknowledged, redelivered subscriptions",
            );
        }
        Ok(NatsTransport {
            client,
            gate: DrainGate::new(),
            slow_consumers,
            publish_timeout: settings.publish_timeout,
            jetstream,
            capabilities,
            subjects: Subjects::default(),
            pending_bytes: settings.pending_bytes,
        })
    }

    /// The underlying `async-nats` client, for what switchboard does not cover.
    pub fn client(&self) -> &async_nats::Client {
        &self.client
    }

    /// Waits until the server has processed everything this client sent before,
    /// by a request nobody can answer: NATS replies "no responders" in order.
    async fn sync_with_server(&self) -> Result<()> {
        let probe = async_nats::Request::new()
            .payload(Bytes::new())
            .timeout(Some(self.publish_timeout));
        match self
            .client
            .send_request(self.client.new_inbox(), probe)
            .await
        {
            Ok(_) => Ok(()),
            Err(err) if err.kind() == async_nats::RequestErrorKind::NoResponders => Ok(()),
            Err(err) => Err(Error::backend(BACKEND, err)),
        }
    }

    /// A publish to the end: a JetStream one until the stream acknowledged
    /// it, a core one until the client queued it. Behind `publish` and
    /// `publish_reaching`, whose futures hold it rather than box it again.
    async fn publish_to_end(&self, subject: &str, message: Message) -> Result<Reach> {
        match &self.jetstream {
            Some(jetstream) if jetstream.captures(subject) => {
                let _in_flight = self.gate.enter()?;
                // Boxed: the stream's acknowledgement is a wait anyway, and
                // the future of a core publish stays small.
                let stored = Box::pin(jetstream.publish(subject, message));
                tokio::time::timeout(self.publish_timeout, stored)
                    .await
                    .map_err(|_| self.bounded_publish_error(subject))??;
                Ok(Reach::Taken)
            }
            _ => match self.publish_core(subject, message) {
                Publishing::Done(result) => result,
                Publishing::Waiting(rest) => rest.await,
            },
        }
    }

    /// A core publish, tried first on the stack: the client's queue almost
    /// always has room, and the publish is then done without a box. One that
    /// would wait for room goes on in a box, bounded by `publish_timeout`.
    // Always inlined into `publish_eager`, the path of every `publish_json`:
    // called, it cost about 30 instructions more per publish.
    #[inline(always)]
    fn publish_core<'a>(&'a self, subject: &'a str, message: Message) -> Publishing<'a> {
        let in_flight = match self.gate.enter() {
            Ok(in_flight) => in_flight,
            Err(err) => return Publishing::Done(Err(err)),
        };
        let nats_subject = self.subjects.get(subject);
        {
            // async-nats hands the message to a channel `send`, its only
            // wait, which sends nothing when dropped before it completes; so
            // an attempt that would wait is dropped unsent, and the publish
            // is made again in the box below.
            let attempt = std::pin::pin!(convert::publish_core(
                &self.client,
                nats_subject.clone(),
                &message.headers,
                message.payload.clone(),
            ));
            if let Some(result) = attempt.now_or_never() {
                return Publishing::Done(result.map(|()| Reach::Unknown));
            }
        }
        let Message { headers, payload } = message;
        let publish = convert::publish_core(&self.client, nats_subject, &headers, payload);
        Publishing::Waiting(Box::pin(async move {
            let _in_flight = in_flight;
            tokio::time::timeout(self.publish_timeout, publish)
                .await
                .map_err(|_| self.bounded_publish_error(subject))?
                .map(|()| Reach::Unknown)
        }))
    }

    fn bounded_publish_error(&self, subject: &str) -> Error {
        Error::Timeout {
            subject: subject.to_owned(),
            timeout: self.publish_timeout,
        }
    }
}

/// The pause before connection attempt number `attempts`: async-nats counts
/// the first connect (and the first try after a disconnect) as attempt 1, so
/// that one goes at once; then 50 ms, doubling, capped at `max`.
fn reconnect_delay(attempts: usize, max: Duration) -> Duration {
    if attempts <= 1 {
        return Duration::ZERO;
    }
    let exponent = (attempts - 2).min(16) as u32;
    Duration::from_millis(50u64.saturating_mul(1 << exponent)).min(max)
}

fn on_event(event: async_nats::Event, slow_consumers: &SlowConsumers) {
    match event {
        async_nats::Event::Disconnected => tracing::warn!("nats: disconnected, reconnecting"),
        async_nats::Event::Connected => tracing::info!("nats: connected"),
        async_nats::Event::SlowConsumer(sid) => slow_consumers.dropped(sid),
        async_nats::Event::ServerError(_) | async_nats::Event::ClientError(_) => {
            tracing::warn!(%event, "nats: connection error")
        }
        other => tracing::debug!(event = %other, "nats: connection event"),
    }
}

#[async_trait]
impl Transport for NatsTransport {
    async fn request(&self, subject: &str, message: Message, timeout: Duration) -> Result<Message> {
        let _in_flight = self.gate.enter()?;
        if let Some(jetstream) = &self.jetstream {
            jetstream.reject_request(subject)?;
        }
        let sizes = (message.payload.len(), self.capabilities.max_payload);
        // One timer per request: the outer bound below covers queueing and
        // the wait for the reply, so the client sets none of its own.
        let mut request = async_nats::Request::new()
            .payload(message.payload)
            .timeout(None);
        if let Some(headers) = convert::to_header_map(&message.headers) {
            request = request.headers(headers);
        }
        // The subject shared from the table publishes use, not copied twice
        // (to a `String`, then into the `Subject` async-nats takes).
        let sent = tokio::time::timeout(
            timeout,
            self.client
                .send_request(self.subjects.get(subject), request),
        );
        match sent.await {
            Ok(Ok(reply)) => Ok(Message {
                payload: reply.payload,
                headers: convert::from_header_map(reply.headers),
            }),
            Ok(Err(err)) => Err(convert::request_error(err, subject, timeout, sizes)),
            Err(_) => Err(Error::Timeout {
                subject: subject.to_owned(),
                timeout,
            }),
        }
    }

    async fn publish(&self, subject: &str, message: Message) -> Result<()> {
        self.publish_to_end(subject, message).await.map(|_| ())
    }

    /// A JetStream stream keeps what it captures; core NATS cannot tell
    /// whether anyone listened.
    async fn publish_reaching(&self, subject: &str, message: Message) -> Result<Reach> {
        self.publish_to_end(subject, message).await
    }

    /// A core publish queued in the client's buffer at its first poll (the
    /// usual case) is done here, its future built on the stack and never
    /// boxed; one that waits for room, or for a JetStream acknowledgement,
    /// goes on in a box under the same bound as `publish_reaching`.
    fn publish_eager<'a>(&'a self, subject: &'a str, message: Message) -> Publishing<'a> {
        match &self.jetstream {
            Some(jetstream) if jetstream.captures(subject) => {
                Publishing::Waiting(Box::pin(self.publish_to_end(subject, message)))
            }
            _ => self.publish_core(subject, message),
        }
    }

    async fn subscribe(&self, subject: &str, group: Option<&str>) -> Result<Subscription> {
        let _in_flight = self.gate.enter()?;
        if let Some(jetstream) = &self.jetstream {
            if jetstream.covers(subject) {
                return jetstream.subscribe(subject, group).await;
            }
        }
        let subscriber = match group {
            Some(group) => {
                self.client
                    .queue_subscribe(subject.to_owned(), group.to_owned())
                    .await
            }
            None => self.client.subscribe(subject.to_owned()).await,
        }
        .map_err(|e| Error::backend(BACKEND, e))?;
        self.sync_with_server().await?;
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let stop_asked = Arc::new(AtomicBool::new(false));
        let stream = DrainingStream::new(
            subscriber,
            (stopped, stop_asked.clone()),
            Arc::new(self.client.clone()),
            self.pending_bytes,
        );
        Ok(
            Subscription::new(subject, group.map(str::to_owned), stream).with_stop(move || {
                stop_asked.store(true, Ordering::Release);
                let _ = stop.send(());
            }),
        )
    }

    async fn close(&self) -> Result<()> {
        if self.gate.close().await {
            // Everything published is on the wire before the connection drains and closes.
            if let Err(err) = self.client.flush().await {
                tracing::warn!(error = %err, "nats: flush before close failed");
            }
            self.client
                .drain()
                .await
                .map_err(|e| Error::backend(BACKEND, e))?;
        }
        Ok(())
    }

    /// Only subjects a JetStream stream captures are redelivered; core NATS is at-most-once.
    fn redelivers(&self, subject_or_pattern: &str) -> bool {
        self.jetstream
            .as_ref()
            .is_some_and(|jetstream| jetstream.covers(subject_or_pattern))
    }

    fn capabilities(&self) -> &Capabilities {
        &self.capabilities
    }

    fn health(&self) -> switchboard_core::health::Health {
        use async_nats::connection::State;
        if self.gate.is_closed() {
            return switchboard_core::health::Health::Closed;
        }
        match self.client().connection_state() {
            State::Connected => match self.slow_consumers.degraded() {
                Some(reason) => switchboard_core::health::Health::Degraded(reason),
                None => switchboard_core::health::Health::Connected,
            },
            State::Disconnected => {
                switchboard_core::health::Health::Degraded("disconnected, reconnecting".into())
            }
            State::Pending => switchboard_core::health::Health::Degraded("connecting".into()),
        }
    }
}

impl Drop for NatsTransport {
    fn drop(&mut self) {
        // Publishes return once queued in the client; without this, dropping the
        // transport instead of closing it would discard what is still queued.
        if self.gate.is_closed() {
            return;
        }
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let client = self.client.clone();
            runtime.spawn(async move {
                if let Err(err) = client.flush().await {
                    // A client that is still connected has sent what it held; a
                    // flush refused then (the connection winding down with the
                    // runtime) is not news. Disconnected, queued publishes may be lost.
                    match client.connection_state() {
                        async_nats::connection::State::Connected => {
                            tracing::debug!(error = %err, "nats: flush on drop failed")
                        }
                        _ => tracing::warn!(
                            error = %err,
                            "nats: transport dropped while disconnected; publishes still queued may be lost (close() waits for them)"
                        ),
                    }
                }
            });
        }
    }
}

/// A configured file must exist: a typo is a configuration error, not a TLS failure later.
fn readable(option: &str, path: &std::path::Path) -> Result<()> {
    std::fs::metadata(path).map(|_| ()).map_err(|e| {
        Error::config(format!(
            "option `{option}`: cannot read {}: {e}",
            path.display()
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconnect_delay_grows_then_caps() {
        let max = Duration::from_secs(2);
        // async-nats calls this with 1 before the very first connect.
        assert_eq!(reconnect_delay(1, max), Duration::ZERO);
        assert_eq!(reconnect_delay(0, max), Duration::ZERO);
        assert_eq!(reconnect_delay(2, max), Duration::from_millis(50));
        assert_eq!(reconnect_delay(5, max), Duration::from_millis(400));
        assert_eq!(reconnect_delay(10, max), max);
        assert_eq!(reconnect_delay(usize::MAX, max), max);
    }
}
