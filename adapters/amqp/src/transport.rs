//! `AmqpTransport`: request/reply and pub/sub on one RabbitMQ connection.

use std::time::Duration;

use async_trait::async_trait;
use lapin::options::{BasicPublishOptions, ExchangeDeclareOptions};

use lapin::types::{FieldTable, ShortString};
use lapin::{Confirmation, Connection, ConnectionProperties, ExchangeKind};

use super::channels::{self, Publisher, Requests};
use super::convert::{self, BACKEND};
use super::replies::DIRECT_REPLY_TO;
use super::settings::AmqpSettings;
use super::subscription;
use switchboard_core::capabilities::Capabilities;
use switchboard_core::drain::DrainGate;
use switchboard_core::error::{Error, Result};
use switchboard_core::message::Message;
use switchboard_core::subscription::Subscription;
use switchboard_core::transport::{Reach, Transport};

/// A connection to a RabbitMQ broker.
pub struct AmqpTransport {
    /// Shared with the task that closes it when the transport is dropped unclosed.
    connection: std::sync::Arc<Connection>,
    /// Events and replies go out here, with publisher confirms.
    publisher: std::sync::Arc<Publisher>,
    /// Requests go out and their replies come back here.
    requests: std::sync::Arc<Requests>,
    settings: AmqpSettings,
    gate: DrainGate,
    capabilities: Capabilities,
}

impl AmqpTransport {
    /// Connects with `settings` and declares the topic exchange; fails with
    /// [`Error::Connect`] if the broker does not answer within the connect
    /// timeout, refuses the credentials or fails the TLS handshake.
    pub async fn connect(settings: AmqpSettings) -> Result<Self> {
        // A first connection without recovery: a broker that is down, refuses
        // the credentials or fails the TLS handshake is an error at once,
        // with no reconnect attempts left running in the background.
        let probe = open(&settings, ConnectionProperties::default()).await?;
        let _ = probe.close(200, "probe".into()).await;
        // After a lost connection lapin reconnects (every 100 ms to 5 s, for
        // as long as it takes) and declares the queues, bindings and
        // consumers again; calls in between fail and are retried by the
        // caller (or the bus's retry layer).
        let recovering = ConnectionProperties::default()
            .with_connection_name("switchboard".into())
            .configure_backoff(|backoff| {
                backoff
                    .with_min_delay(Duration::from_millis(100))
                    .with_max_delay(Duration::from_secs(5))
                    .with_max_times(usize::MAX)
            })
            .enable_auto_recover();
        let connection = open(&settings, recovering).await?;
        let connection = std::sync::Arc::new(connection);
        let publisher = std::sync::Arc::new(Publisher::open(&connection).await?);
        let declaring = publisher.channel().await?;
        for exchange in [settings.exchange.clone(), settings.requests_exchange()] {
            declaring
                .exchange_declare(
                    exchange.as_str().into(),
                    ExchangeKind::Topic,
                    ExchangeDeclareOptions {
                        durable: settings.durable,
                        ..ExchangeDeclareOptions::default()
                    },
                    FieldTable::default(),
                )
                .await
                .map_err(|e| {
                    Error::config(format!(
                        "exchange `{exchange}` could not be declared as a topic exchange (durable: {}): {e}",
                        settings.durable
                    ))
                })?;
        }
        let requests = std::sync::Arc::new(Requests::open(&connection).await?);
        channels::watch_reconnects(&connection, std::sync::Arc::downgrade(&requests));
        let capabilities = Capabilities::full(BACKEND, settings.max_payload);
        Ok(AmqpTransport {
            connection,
            publisher,
            requests,
            settings,
            gate: DrainGate::new(),
            capabilities,
        })
    }

    /// The underlying lapin connection, for what switchboard does not cover.
    ///
    /// The transport reads its [`Connection::events_listener`] to learn of
    /// reconnections. lapin hands each event to one listener, so another
    /// listener on this connection takes events the transport then misses.
    pub fn connection(&self) -> &Connection {
        &self.connection
    }

    /// Publishes an event and waits for the broker's confirm; `Nobody` when
    /// no queue is bound for its subject (it came back, `mandatory`).
    async fn publish_confirmed(&self, subject: &str, message: Message) -> Result<Reach> {
        let mut properties = convert::properties(&message.headers);
        if self.settings.durable {
            properties = properties.with_delivery_mode(2);
        }
        // The channel of the last try: one whose confirm never came is not
        // used again (a channel recovered after a broker restart can stall).
        let mut used = None;
        let publish = async {
            let mut tries = 0;
            loop {
                tries += 1;
                let channel = self.publisher.channel().await?;
                used = Some(channel.clone());
                let sent = async {
                    channel
                        .basic_publish(
                            self.settings.exchange.clone().into(),
                            ShortString::from(subject),
                            BasicPublishOptions {
                                mandatory: true,
                                ..BasicPublishOptions::default()
                            },
                            &message.payload,
                            properties.clone(),
                        )
                        .await?
                        .await
                };
                match sent.await {
                    Ok(confirm) => return confirmed(confirm, subject),
                    Err(err) => {
                        channels::recovered(&channel, &err).await;
                        if tries < 2 && channels::unusable(&err) {
                            continue;
                        }
                        self.publisher.failed(&channel).await;
                        return Err(convert::error(err));
                    }
                }
            }
        };
        let outcome = tokio::time::timeout(self.settings.publish_timeout, publish).await;
        match outcome {
            Ok(result) => result,
            Err(_) => {
                if let Some(channel) = &used {
                    self.publisher.failed(channel).await;
                }
                Err(Error::Timeout {
                    subject: subject.to_owned(),
                    timeout: self.settings.publish_timeout,
                })
            }
        }
    }
}

/// Opens a connection with `properties`, within the connect timeout.
async fn open(settings: &AmqpSettings, properties: ConnectionProperties) -> Result<Connection> {
    let connect_error = |source: switchboard_core::error::BoxError| Error::Connect {
        url: settings.shown_url.clone(),
        source,
    };
    let connecting = async {
        match &settings.tls_ca {
            Some(ca) => {
                let chain = std::fs::read_to_string(ca).map_err(|e| {
                    Error::config(format!(
                        "option `tls_ca`: cannot read {}: {e}",
                        ca.display()
                    ))
                })?;
                let tls = lapin::tcp::OwnedTLSConfig {
                    cert_chain: Some(chain),
                    ..Default::default()
                };
                let runtime =
                    lapin::runtime::default_runtime().map_err(|e| connect_error(e.into()))?;
                Connection::connect_with_config(&settings.uri, properties, tls, runtime)
                    .await
                    .map_err(|e| connect_error(e.into()))
            }
            None => Connection::connect(&settings.uri, properties)
                .await
                .map_err(|e| connect_error(e.into())),
        }
    };
    tokio::time::timeout(settings.connect_timeout, connecting)
        .await
        .map_err(|_| connect_error("timed out".into()))?
}

/// What the broker's confirm says: taken by a queue, returned (no queue
/// bound), or refused.
fn confirmed(confirm: Confirmation, subject: &str) -> Result<Reach> {
    match confirm {
        Confirmation::Ack(None) | Confirmation::NotRequested => Ok(Reach::Taken),
        Confirmation::Ack(Some(_)) => Ok(Reach::Nobody),
        Confirmation::Nack(_) => Err(Error::backend(
            BACKEND,
            format!("the broker refused the message for `{subject}` (nack)"),
        )),
    }
}

#[async_trait]
impl Transport for AmqpTransport {
    async fn request(&self, subject: &str, message: Message, timeout: Duration) -> Result<Message> {
        let _in_flight = self.gate.enter()?;
        let call = async {
            let mut tries = 0;
            let (mut waiting, confirm) = loop {
                tries += 1;
                let replies = self.requests.replies().await?;
                let waiting = replies.wait();
                // The broker drops a request nobody took in time, so a
                // responder back later does not answer a caller long gone.
                let properties = convert::properties(&message.headers)
                    .with_reply_to(DIRECT_REPLY_TO.into())
                    .with_correlation_id(waiting.id.clone().into())
                    .with_expiration(timeout.as_millis().max(1).to_string().into());
                let sent = async {
                    replies
                        .channel
                        .basic_publish(
                            self.settings.requests_exchange().into(),
                            ShortString::from(subject),
                            BasicPublishOptions {
                                mandatory: true,
                                ..BasicPublishOptions::default()
                            },
                            &message.payload,
                            properties,
                        )
                        .await?
                        .await
                };
                match sent.await {
                    Ok(confirm) => break (waiting, confirm),
                    Err(err) => {
                        drop(waiting);
                        // The next request goes out on a fresh channel with
                        // its own reply consumer, once the connection is up.
                        self.requests.failed(&replies).await;
                        channels::settled(&self.connection).await;
                        if tries < 2 && channels::unusable(&err) {
                            continue;
                        }
                        return Err(convert::error(err));
                    }
                }
            };
            if confirmed(confirm, subject)? == Reach::Nobody {
                return Err(Error::NoResponders {
                    subject: subject.to_owned(),
                });
            }
            (&mut waiting.reply).await.map_err(|_| {
                Error::backend(
                    BACKEND,
                    format!(
                        "the reply channel for `{subject}` was lost before the reply came (the connection dropped); the request may have been handled"
                    ),
                )
            })
        };
        tokio::time::timeout(timeout, call)
            .await
            .map_err(|_| Error::Timeout {
                subject: subject.to_owned(),
                timeout,
            })?
    }

    async fn publish(&self, subject: &str, message: Message) -> Result<()> {
        let _in_flight = self.gate.enter()?;
        self.publish_confirmed(subject, message).await.map(|_| ())
    }

    /// `Nobody` when no queue is bound for the subject (no subscriber and no
    /// group queue for it yet): RabbitMQ returns the event.
    async fn publish_reaching(&self, subject: &str, message: Message) -> Result<Reach> {
        let _in_flight = self.gate.enter()?;
        self.publish_confirmed(subject, message).await
    }

    async fn subscribe(&self, subject: &str, group: Option<&str>) -> Result<Subscription> {
        let _in_flight = self.gate.enter()?;
        subscription::subscribe(
            self.connection.clone(),
            self.publisher.clone(),
            &self.settings,
            subject,
            group,
        )
        .await
    }

    async fn close(&self) -> Result<()> {
        if self.gate.close().await {
            // A connection lapin is recovering is closed once it is back.
            channels::settled(&self.connection).await;
            if let Err(err) = self.connection.close(200, "closed".into()).await {
                match err.kind() {
                    lapin::ErrorKind::InvalidConnectionState(_) => {
                        tracing::warn!(error = %err, "amqp: the connection is down; it is closed as soon as lapin has it back");
                        tokio::spawn(close_once_back(self.connection.clone()));
                    }
                    _ => return Err(convert::error(err)),
                }
            }
        }
        Ok(())
    }

    fn capabilities(&self) -> &Capabilities {
        &self.capabilities
    }

    fn health(&self) -> switchboard_core::health::Health {
        if self.gate.is_closed() {
            return switchboard_core::health::Health::Closed;
        }
        let status = self.connection.status();
        let degraded = |why: &str| switchboard_core::health::Health::Degraded(why.into());
        if status.connected() && !status.blocked() {
            switchboard_core::health::Health::Connected
        } else if status.blocked() {
            degraded("the broker blocked publishing (a resource alarm)")
        } else if status.reconnecting() || status.connecting() {
            degraded("disconnected, reconnecting")
        } else {
            degraded("disconnected")
        }
    }
}

/// Closes `connection` once lapin's recovery has it back. lapin cannot be
/// told to stop recovering, and a recovered connection declares its
/// consumers again: left open, a closed transport's consumer would take a
/// share of its group's events and never acknowledge them. Polled, since
/// the connection's one event listener is the transport's
/// ([`channels::watch_reconnects`]).
async fn close_once_back(connection: std::sync::Arc<Connection>) {
    // Soon after lapin is back, while a long outage costs few wake-ups.
    let mut pause = Duration::from_millis(20);
    loop {
        let status = connection.status();
        if status.connected() {
            if let Err(err) = connection.close(200, "closed".into()).await {
                tracing::warn!(error = %err, "amqp: a connection recovered after close could not be closed");
            }
            return;
        }
        if status.closed() || status.errored() && !status.reconnecting() {
            return;
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(500));
    }
}

impl Drop for AmqpTransport {
    fn drop(&mut self) {
        // A transport dropped without `close` still closes its connection,
        // once no subscription uses it: otherwise lapin's reconnecting I/O
        // thread would outlive it.
        if self.gate.is_closed() || std::sync::Arc::strong_count(&self.connection) > 1 {
            return;
        }
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let connection = self.connection.clone();
            runtime.spawn(async move {
                let _ = connection.close(200, "dropped".into()).await;
            });
        }
    }
}
