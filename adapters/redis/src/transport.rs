//! `RedisTransport`: events on streams, requests over pub/sub, on one
//! reconnecting connection (plus two per subscription).

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use redis::aio::ConnectionManager;
use tokio::sync::watch;

use super::acks::AckQueue;
use super::connection::{client, connect_error, manager, Shared};
use super::convert::{self, BACKEND};
use super::replies::Replies;
use super::settings::RedisSettings;
use super::subscription;
use switchboard_core::capabilities::Capabilities;
use switchboard_core::drain::DrainGate;
use switchboard_core::error::{Error, Result};
use switchboard_core::message::Message;
use switchboard_core::subscription::Subscription;
use switchboard_core::transport::{Reach, Transport};
use switchboard_core::wire;

/// A connection to a Redis server.
pub struct RedisTransport {
    shared: Arc<Shared>,
    replies: Arc<Replies>,
    /// Subjects this transport added to the subject set already.
    registered: Mutex<HashSet<String>>,
    closing: watch::Sender<bool>,
    gate: DrainGate,
    capabilities: Capabilities,
}

impl RedisTransport {
    /// Connects with `settings` and subscribes this transport's reply
    /// channel; fails with [`Error::Connect`] if the server does not answer
    /// within the connect timeout, refuses the credentials or fails the TLS
    /// handshake.
    pub async fn connect(settings: RedisSettings) -> Result<Self> {
        let client = client(&settings)?;
        // A first connection without reconnecting: a server that is down,
        // refuses the credentials or fails the TLS handshake is an error at
        // once.
        let probe = async {
            let mut probe = client.get_multiplexed_async_connection().await?;
            redis::cmd("PING").query_async::<()>(&mut probe).await
        };
        tokio::time::timeout(settings.connect_timeout, probe)
            .await
            .map_err(|_| connect_error(&settings, "timed out".into()))?
            .map_err(|e| connect_error(&settings, e.into()))?;
        let replies = Replies::new(&settings.reply_prefix());
        let delivering = replies.clone();
        let push =
            move |push: redis::PushInfo| -> std::result::Result<(), std::convert::Infallible> {
                delivering.deliver(push);
                Ok(())
            };
        let mut commands = manager(
            &client,
            &settings,
            Some(push),
            Some(settings.command_timeout),
        )
        .await?;
        commands
            .subscribe(&replies.channel)
            .await
            .map_err(convert::error)?;
        let (closing, closed) = watch::channel(false);
        let capabilities = Capabilities::full(BACKEND, settings.max_payload);
        Ok(RedisTransport {
            shared: Arc::new(Shared {
                client,
                settings,
                acks: AckQueue::start(commands.clone()),
                commands,
                closed,
                reachability: Default::default(),
            }),
            replies,
            registered: Mutex::new(HashSet::new()),
            closing,
            gate: DrainGate::new(),
            capabilities,
        })
    }

    /// A connection to the server, for what switchboard does not cover
    /// (it reconnects by itself; cloning it is cheap).
    pub fn connection(&self) -> ConnectionManager {
        self.shared.commands.clone()
    }

    /// [`add`](Self::add) within the command timeout, reconnecting
    /// included: while the server is down, the connection retries for
    /// longer than that, and a publish waits for it otherwise.
    async fn add_within(&self, subject: &str, message: &Message) -> Result<()> {
        let timeout = self.shared.settings.command_timeout;
        match tokio::time::timeout(timeout, self.add(subject, message)).await {
            Ok(added) => added,
            Err(_) => {
                self.shared.reachability.silent(timeout);
                Err(Error::Timeout {
                    subject: subject.to_owned(),
                    timeout,
                })
            }
        }
    }

    /// Adds the event to its stream; the first publish of a subject by this
    /// transport also adds the subject to the subject set and announces it,
    /// so wildcard subscribers start reading its stream.
    async fn add(&self, subject: &str, message: &Message) -> Result<()> {
        let settings = &self.shared.settings;
        let mut add = redis::cmd("XADD");
        add.arg(settings.stream(subject));
        if let Some(maxlen) = settings.maxlen {
            add.arg("MAXLEN").arg("~").arg(maxlen);
        }
        add.arg("*");
        convert::entry_fields(&mut add, message);
        let mut connection = self.shared.commands.clone();
        let known = self
            .registered
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(subject);
        let reachability = &self.shared.reachability;
        if known {
            let added = add.query_async::<()>(&mut connection).await;
            reachability.record(&added);
            added.map_err(|e| publish_error(subject, settings.command_timeout, e))?;
            return Ok(());
        }
        let added: redis::RedisResult<((), i64)> = redis::pipe()
            .add_command(add)
            .cmd("SADD")
            .arg(settings.subjects_key())
            .arg(subject)
            .query_async(&mut connection)
            .await;
        reachability.record(&added);
        let (_, added) = added.map_err(|e| publish_error(subject, settings.command_timeout, e))?;
        if added > 0 {
            // The event is in its stream already: a failed announcement is
            // not the publish's failure (a retry would add it twice), and
            // wildcard subscribers find the subject in the set within 5 s.
            let announced = redis::cmd("PUBLISH")
                .arg(settings.new_subject_channel())
                .arg(subject)
                .query_async::<()>(&mut connection)
                .await;
            if let Err(err) = announced {
                tracing::warn!(%subject, error = %err, "redis: a new subject could not be announced; wildcard subscribers find it on their next read of the subject set");
            }
        }
        self.registered
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(subject.to_owned());
        Ok(())
    }
}

/// A failed publish: a timeout (after `timeout`) as [`Error::Timeout`], the
/// rest as backend errors.
fn publish_error(subject: &str, timeout: Duration, err: redis::RedisError) -> Error {
    if err.is_timeout() {
        return Error::Timeout {
            subject: subject.to_owned(),
            timeout,
        };
    }
    convert::error(err)
}

#[async_trait]
impl Transport for RedisTransport {
    async fn request(&self, subject: &str, message: Message, timeout: Duration) -> Result<Message> {
        let _in_flight = self.gate.enter()?;
        let call = async {
            let mut waiting = self.replies.wait();
            let mut message = message;
            message
                .headers
                .insert(wire::REPLY_TO, self.replies.channel.as_str());
            message
                .headers
                .insert(wire::CORRELATION_ID, waiting.id.to_string());
            message
                .headers
                .insert(wire::TIMEOUT_MS, timeout.as_millis().max(1).to_string());
            let mut connection = self.shared.commands.clone();
            let published = redis::cmd("PUBLISH")
                .arg(self.shared.settings.request_channel(subject))
                .arg(convert::frame(&message).as_ref())
                .query_async::<i64>(&mut connection)
                .await;
            self.shared.reachability.record(&published);
            let receivers = published.map_err(convert::error)?;
            if receivers == 0 {
                return Err(Error::NoResponders {
                    subject: subject.to_owned(),
                });
            }
            (&mut waiting.reply).await.map_err(|_| Error::Closed)
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
        self.add_within(subject, &message).await
    }

    /// `Taken` once the server added the event to its stream, as Kafka: the
    /// stream keeps it for every consumer group, present or not.
    async fn publish_reaching(&self, subject: &str, message: Message) -> Result<Reach> {
        let _in_flight = self.gate.enter()?;
        self.add_within(subject, &message)
            .await
            .map(|()| Reach::Taken)
    }

    async fn subscribe(&self, subject: &str, group: Option<&str>) -> Result<Subscription> {
        let _in_flight = self.gate.enter()?;
        subscription::subscribe(self.shared.clone(), subject, group).await
    }

    async fn close(&self) -> Result<()> {
        if self.gate.close().await {
            self.closing.send_replace(true);
            // What handlings acknowledged reaches the server before close returns.
            let patience = self.shared.settings.command_timeout;
            self.shared.acks.flushed(patience).await;
        }
        Ok(())
    }

    fn capabilities(&self) -> &Capabilities {
        &self.capabilities
    }

    /// `Closed` once closed; `Degraded` while the last command (a
    /// subscription's blocking read, a publish, a request) could not reach
    /// the server; else `Connected`.
    fn health(&self) -> switchboard_core::health::Health {
        if self.gate.is_closed() {
            return switchboard_core::health::Health::Closed;
        }
        self.shared.reachability.health()
    }
}
