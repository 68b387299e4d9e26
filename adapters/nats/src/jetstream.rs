//! Durable mode (`?jetstream=STREAM`): acknowledged publishes and durable, acked subscriptions.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, consumer, stream};
use async_trait::async_trait;
use futures_util::StreamExt;

use super::convert::{self, BACKEND};
use super::settings::JetStreamSettings;
use switchboard_core::error::{Error, Result};
use switchboard_core::incoming::{Acker, Incoming};
use switchboard_core::message::Message;
use switchboard_core::subject;
use switchboard_core::subscription::Subscription;
use switchboard_core::wire;

/// How long the server keeps a consumer of a subscription without a queue group
/// after it was dropped (such consumers are not durable).
const EPHEMERAL_INACTIVE: Duration = Duration::from_secs(30);

/// How long a subscription's own requests to JetStream wait for an answer:
/// the consumer's state asked for after a reconnect (before the next pull
/// request) and each acknowledgement. Under the client's 10 s default, one
/// such request sent while the dead server's consumer was electing a new
/// leader kept the subscription silent for 15 s; each is retried or
/// redelivered, so a shorter wait loses nothing.
const CONSUMER_REQUEST_TIMEOUT: Duration = Duration::from_secs(3);

/// How long one pull request lasts before the subscription asks again. A
/// pull request lives only on the consumer's leader: when that server dies
/// and the recovery above gives up, the next one is sent when this one
/// would have ended (async-nats waits 5 s more), not after its 30 s default.
const PULL_EXPIRES: Duration = Duration::from_secs(10);

/// One JetStream stream and the subjects it captures.
pub(super) struct JetStream {
    context: jetstream::Context,
    /// `context` with [`CONSUMER_REQUEST_TIMEOUT`], for what consumers ask.
    consuming: jetstream::Context,
    stream: stream::Stream,
    subjects: Vec<String>,
    ack_wait: Duration,
}

impl JetStream {
    /// Opens the stream, creating it when `jetstream_subjects` is given and it does not exist.
    pub async fn open(client: &async_nats::Client, settings: &JetStreamSettings) -> Result<Self> {
        let context = jetstream::new(client.clone());
        let stream = if settings.subjects.is_empty() {
            context.get_stream(&settings.stream).await.map_err(|e| {
                Error::config(format!(
                    "JetStream stream `{}` is not available ({e}); give jetstream_subjects=… to create it",
                    settings.stream
                ))
            })?
        } else {
            context
                .get_or_create_stream(stream::Config {
                    name: settings.stream.clone(),
                    subjects: settings.subjects.clone(),
                    storage: stream::StorageType::File,
                    num_replicas: settings.replicas,
                    ..Default::default()
                })
                .await
                .map_err(|e| Error::backend(BACKEND, e))?
        };
        let subjects = stream.cached_info().config.subjects.clone();
        if !settings.subjects.is_empty() && subjects != settings.subjects {
            return Err(Error::config(format!(
                "JetStream stream `{}` exists with subjects {subjects:?}, not {:?} as configured",
                settings.stream, settings.subjects
            )));
        }
        let mut consuming = context.clone();
        consuming.set_timeout(CONSUMER_REQUEST_TIMEOUT);
        Ok(JetStream {
            context,
            consuming,
            stream,
            subjects,
            ack_wait: settings.ack_wait,
        })
    }

    /// Whether publishes to `subject` go through the stream.
    pub fn captures(&self, subject: &str) -> bool {
        self.subjects.iter().any(|s| subject::matches(s, subject))
    }

    /// Whether a subscription to `pattern` reads only subjects the stream captures.
    pub fn covers(&self, pattern: &str) -> bool {
        self.subjects.iter().any(|s| subject::covers(s, pattern))
    }

    /// Requests cannot use subjects the stream captures: JetStream would answer
    /// them with its own publish acknowledgement.
    pub fn reject_request(&self, subject: &str) -> Result<()> {
        if self.captures(subject) {
            return Err(Error::Unsupported {
                backend: BACKEND,
                what: format!(
                    "requests on `{subject}`, which JetStream stream `{}` captures; \
                     use a request subject outside jetstream_subjects",
                    self.stream.cached_info().config.name
                ),
            });
        }
        Ok(())
    }

    /// Publishes through the stream and waits for the server's acknowledgement.
    /// Publishes and waits for the stream's acknowledgement. Every publish
    /// carries a `Nats-Msg-Id` (the caller's `sb-message-id`, or a fresh
    /// random one), so when an acknowledgement is lost (a server restarting)
    /// the retry here cannot store the event twice: the server recognises the
    /// id within its duplicate window. Retries go on until the transport's
    /// `publish_timeout` ends the call.
    pub async fn publish(&self, subject: &str, message: Message) -> Result<()> {
        let mut headers = convert::to_header_map(&message.headers).unwrap_or_default();
        if message.headers.get(wire::MESSAGE_ID).is_none() {
            headers.insert(wire::MESSAGE_ID, new_message_id().as_str());
        }
        let id = headers
            .get(wire::MESSAGE_ID)
            .map(|value| value.as_str().to_owned())
            .unwrap_or_default();
        headers.insert("Nats-Msg-Id", id.as_str());
        let mut pause = Duration::from_millis(25);
        loop {
            let publish = jetstream::message::PublishMessage::build()
                .payload(message.payload.clone())
                .headers(headers.clone());
            let outcome = match self.context.send_publish(subject.to_owned(), publish).await {
                Ok(ack) => ack.await.map(|_| ()),
                Err(err) => Err(err),
            };
            match outcome {
                Ok(()) => return Ok(()),
                Err(err)
                    if matches!(
                        err.kind(),
                        jetstream::context::PublishErrorKind::TimedOut
                            | jetstream::context::PublishErrorKind::BrokenPipe
                    ) =>
                {
                    tracing::debug!(%subject, error = %err, "jetstream: no acknowledgement; publishing again with the same id");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_millis(500));
                }
                Err(err) => return Err(Error::backend(BACKEND, err)),
            }
        }
    }

    /// A consumer on the stream: durable (named after the group and subject) with
    /// a queue group, ephemeral without one. Both start with messages published
    /// after the consumer was first created and need explicit acks.
    pub async fn subscribe(&self, pattern: &str, group: Option<&str>) -> Result<Subscription> {
        let durable_name = group.map(|group| durable_name(group, pattern));
        let config = consumer::pull::Config {
            durable_name: durable_name.clone(),
            description: Some(format!(
                "switchboard subscription to {pattern} (group {})",
                group.unwrap_or("none")
            )),
            filter_subject: pattern.to_owned(),
            ack_policy: consumer::AckPolicy::Explicit,
            ack_wait: self.ack_wait,
            deliver_policy: consumer::DeliverPolicy::New,
            inactive_threshold: if durable_name.is_some() {
                Duration::ZERO
            } else {
                EPHEMERAL_INACTIVE
            },
            ..Default::default()
        };
        let created: consumer::PullConsumer = match &durable_name {
            Some(name) => {
                self.stream
                    .get_or_create_consumer(name, config.clone())
                    .await
            }
            None => self.stream.create_consumer(config.clone()).await,
        }
        .map_err(|e| Error::backend(BACKEND, e))?;
        // Created under the connection's timeout; consumed under the shorter one.
        let consumer = consumer::PullConsumer::new(
            config,
            created.cached_info().clone(),
            self.consuming.clone(),
        );
        let messages = consumer
            .stream()
            .expires(PULL_EXPIRES)
            .heartbeat(PULL_EXPIRES / 2)
            .messages()
            .await
            .map_err(|e| Error::backend(BACKEND, e))?;
        let stream = messages.filter_map(|delivery| async move {
            match delivery {
                Ok(message) => Some(incoming(message)),
                Err(err) => {
                    // Missed heartbeats and the like during reconnects; the stream recovers.
                    tracing::warn!(error = %err, "nats: JetStream delivery error");
                    None
                }
            }
        });
        Ok(Subscription::new(pattern, group.map(str::to_owned), stream))
    }
}

/// The durable consumer name for a group's subscription to a pattern: readable,
/// and unique per (group, pattern) through a stable hash.
pub(super) fn durable_name(group: &str, pattern: &str) -> String {
    let readable: String = pattern
        .chars()
        .take(64)
        .map(|c| match c {
            '.' => '_',
            '*' => 'S',
            '>' => 'T',
            other => other,
        })
        .collect();
    format!("sb-{group}-{readable}-{:016x}", fnv1a(pattern))
}

/// FNV-1a: stable across Rust versions (unlike `DefaultHasher`), so names survive upgrades.
fn fnv1a(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn incoming(message: jetstream::Message) -> Incoming {
    let (message, acker) = message.split();
    let subject: Arc<str> = Arc::from(message.subject.as_str());
    let received = Message {
        payload: message.payload,
        headers: convert::from_header_map(message.headers),
    };
    Incoming::new(subject, received).with_acker(Box::new(JetStreamAcker(acker)))
}

struct JetStreamAcker(jetstream::message::Acker);

#[async_trait]
impl Acker for JetStreamAcker {
    async fn ack(self: Box<Self>) -> Result<()> {
        // Double ack: returns only once the server recorded it, so an acked message is not redelivered.
        self.0
            .double_ack()
            .await
            .map_err(|e| Error::backend(BACKEND, e))
    }

    async fn nack(self: Box<Self>) -> Result<()> {
        self.0
            .ack_with(jetstream::AckKind::Nak(None))
            .await
            .map_err(|e| Error::backend(BACKEND, e))
    }
}

/// A random id for a publish: 128 bits from the thread-local generator, as hex.
fn new_message_id() -> String {
    format!("{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durable_names_are_valid_and_distinct() {
        let a = durable_name("billing", "orders.*.created");
        let b = durable_name("billing", "orders_S_created");
        assert_ne!(a, b);
        assert!(a.starts_with("sb-billing-orders_S_created-"), "{a}");
        for name in [&a, &b, &durable_name("g", "x.>")] {
            assert!(!name.contains(['.', '*', '>', ' ']), "{name}");
        }
        assert_eq!(durable_name("g", "x"), durable_name("g", "x"));
    }
}
