//! `KafkaTransport`: publish as produce, subscriptions as consumers, request/reply over reply topics.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use rdkafka::producer::{FutureRecord, Producer as _};
use tokio::sync::{watch, OnceCell};

use super::brokers::{self, BrokerWatch, Producer};
use super::consumer;
use super::convert::{self, BACKEND};
use super::records::{KafkaStream, RecordContext};
use super::replies::ReplyListener;
use super::settings::KafkaSettings;
use super::topics::{topic_for, Topics};
use switchboard_core::capabilities::{Capabilities, Support};
use switchboard_core::drain::DrainGate;
use switchboard_core::error::{Error, Result};
use switchboard_core::message::Message;
use switchboard_core::subscription::Subscription;
use switchboard_core::transport::{Reach, Transport};
use switchboard_core::wire;

/// A connection to a Kafka cluster (or a Kafka-protocol broker such as tansu).
pub struct KafkaTransport {
    settings: KafkaSettings,
    producer: Producer,
    /// Whether every broker is down, as the producer's client sees it.
    brokers: BrokerWatch,
    topics: Topics,
    replies: OnceCell<ReplyListener>,
    /// Unique per connection: names the reply topic and keys unkeyed events,
    /// so one publisher's events stay in one partition, in order.
    connection_id: String,
    next_plain: AtomicU64,
    gate: DrainGate,
    stop: watch::Sender<bool>,
    capabilities: Capabilities,
}

impl KafkaTransport {
    /// Connects; fails with [`Error::Connect`] if no broker answers within the connect timeout.
    pub async fn connect(settings: KafkaSettings) -> Result<Self> {
        let started = Instant::now();
        let mut config = settings.client_config();
        config
            .set("acks", "all")
            .set("linger.ms", settings.linger.as_millis().to_string())
            .set(
                "message.timeout.ms",
                settings.delivery_timeout.as_millis().max(1).to_string(),
            );
        let brokers = BrokerWatch::default();
        let producer: Producer = config
            .create_with_context(brokers.clone())
            .map_err(|e| Error::backend(BACKEND, e))?;
        // librdkafka connects lazily; ask for metadata so an unreachable,
        // untrusted or refusing broker fails here, with librdkafka's reason.
        super::probe::reach_brokers(&settings).await?;
        let mut capabilities = Capabilities::full(BACKEND, settings.max_payload);
        capabilities.no_responders = Support::No(
            "Kafka cannot tell whether anyone consumes a topic (a plain subscriber reads without a consumer group, and asking the group coordinators would cost broker round trips on every request): a request nobody serves ends in Error::Timeout",
        );
        let stop = watch::Sender::new(false);
        tokio::spawn(brokers::follow(
            brokers.clone(),
            producer.clone(),
            stop.subscribe(),
        ));
        let transport = KafkaTransport {
            topics: Topics::new(&settings)?,
            connection_id: connection_id(&settings.client_id),
            settings,
            producer,
            brokers,
            replies: OnceCell::new(),
            next_plain: AtomicU64::new(0),
            gate: DrainGate::new(),
            stop,
            capabilities,
        };
        tracing::debug!(elapsed = ?started.elapsed(), "kafka: connected");
        Ok(transport)
    }

    /// A pattern subscription: a librdkafka regex subscription in a consumer
    /// group (the caller's, or one of its own placed at the end of every
    /// matching topic), which finds topics created later within `pattern_refresh`.
    async fn subscribe_pattern(&self, pattern: &str, group: Option<&str>) -> Result<Subscription> {
        let prefix = &self.settings.group_prefix;
        let group_id = match group {
            Some(group) => format!("{prefix}{group}.{pattern}"),
            None => {
                let n = self.next_plain.fetch_add(1, Ordering::Relaxed);
                format!("{prefix}sb-plain-{}-{n}", self.connection_id)
            }
        };
        let (consumed, mut assigned) =
            consumer::new_consumer(&self.settings, &group_id, group.is_some(), pattern)?;
        let timeout = self.settings.assignment_timeout;
        let existing = consumer::matching_topics(&consumed, timeout).await?;
        let matches_now = !existing.is_empty();
        if group.is_none() {
            consumer::commit_at_end(&consumed, existing, timeout).await?;
        }
        {
            use rdkafka::consumer::Consumer as _;
            consumed
                .consumer
                .subscribe(&[&super::topics::pattern_regex(pattern)])
                .map_err(|e| Error::backend(BACKEND, e))?;
        }
        let mut stream = KafkaStream::new(
            consumed,
            self.record_context(pattern),
            self.stop.subscribe(),
        );
        // Committed ends (or a new group's `offset_reset`) fix where reading
        // starts. A member of a group that already has matching topics waits
        // for its share, as a topic subscription does, so members subscribed
        // one after another do not pass partitions between them mid-read.
        if group.is_some() && matches_now && !stream.join(&mut assigned, timeout).await {
            return Err(Error::backend(
                BACKEND,
                format!(
                    "consumer group `{group_id}` got no partition assignment within {timeout:?}"
                ),
            ));
        }
        tracing::debug!(%group_id, %pattern, "kafka: pattern subscription");
        Ok(stream.into_subscription(group))
    }

    /// What the records of a subscription to `subject` need to answer requests.
    fn record_context(&self, subject: &str) -> RecordContext {
        RecordContext {
            subject: subject.into(),
            producer: self.producer.clone(),
            delivery_timeout: self.settings.delivery_timeout,
            buffer: self.settings.buffer,
        }
    }

    async fn produce(&self, topic: &str, message: &Message, key: &str) -> Result<()> {
        let size = message.payload.len();
        let mut record = FutureRecord::to(topic)
            .key(key)
            .payload(&message.payload[..]);
        // An empty header list still costs librdkafka an allocation per record.
        if !message.headers.is_empty() {
            record = record.headers(convert::record_headers(&message.headers));
        }
        self.producer
            .send(record, self.settings.delivery_timeout)
            .await
            .map(|_| self.brokers.answered())
            .map_err(|(err, _)| {
                convert::produce_error(
                    err,
                    topic,
                    size,
                    self.settings.max_payload,
                    self.settings.delivery_timeout,
                )
            })
    }

    async fn replies(&self) -> Result<&ReplyListener> {
        self.replies
            .get_or_try_init(|| {
                ReplyListener::start(
                    &self.settings,
                    &self.topics,
                    &self.connection_id,
                    self.stop.subscribe(),
                )
            })
            .await
    }

    /// Publishes one record within `delivery_timeout`. A plain async fn, so
    /// `publish` and `publish_reaching` each box one future (theirs, for the
    /// trait object), not two.
    async fn publish_now(&self, subject: &str, message: Message) -> Result<()> {
        let _in_flight = self.gate.enter()?;
        // One bound for the whole publish: creating the topic, waiting for room
        // in librdkafka's queue and the broker's acknowledgement together never
        // take longer than `delivery_timeout` (they could add up to twice it).
        let publish = async {
            let topic = topic_for(subject);
            self.topics.ensure(topic).await?;
            let key = message
                .headers
                .get(wire::KEY)
                .unwrap_or(&self.connection_id)
                .to_owned();
            self.produce(topic, &message, &key).await
        };
        switchboard_core::error::within(subject, self.settings.delivery_timeout, publish).await
    }
}

/// A name no other connection uses, made of topic-safe characters.
fn connection_id(client_id: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let client: String = client_id
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'))
        .take(40)
        .collect();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!(
        "{client}-{}-{:x}-{}",
        std::process::id(),
        nanos,
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

#[async_trait]
impl Transport for KafkaTransport {
    async fn request(
        &self,
        subject: &str,
        mut message: Message,
        timeout: Duration,
    ) -> Result<Message> {
        let _in_flight = self.gate.enter()?;
        let exchange = async {
            let topic = topic_for(subject);
            self.topics.ensure(topic).await?;
            let replies = self.replies().await?;
            let mut pending = replies.expect_reply();
            message.headers.insert(wire::REPLY_TO, replies.topic());
            message
                .headers
                .insert(wire::CORRELATION_ID, pending.id.as_str());
            message
                .headers
                .insert(wire::TIMEOUT_MS, timeout.as_millis().max(1).to_string());
            // Keyed by correlation id: requests spread over the partitions, so over a group's members.
            self.produce(topic, &message, &pending.id).await?;
            pending.reply().await
        };
        switchboard_core::error::within(subject, timeout, exchange).await
    }

    async fn publish(&self, subject: &str, message: Message) -> Result<()> {
        self.publish_now(subject, message).await
    }

    /// The topic keeps the event for its consumer groups, present or not.
    async fn publish_reaching(&self, subject: &str, message: Message) -> Result<Reach> {
        self.publish_now(subject, message)
            .await
            .map(|()| Reach::Taken)
    }

    async fn subscribe(&self, subject: &str, group: Option<&str>) -> Result<Subscription> {
        let _in_flight = self.gate.enter()?;
        if switchboard_core::subject::is_pattern(subject) {
            return self.subscribe_pattern(subject, group).await;
        }
        let topic = topic_for(subject);
        self.topics.ensure(topic).await?;
        let prefix = &self.settings.group_prefix;
        let (group_id, commits) = match group {
            Some(group) => (format!("{prefix}{group}.{topic}"), true),
            None => {
                let n = self.next_plain.fetch_add(1, Ordering::Relaxed);
                (
                    format!("{prefix}sb-plain-{}-{n}", self.connection_id),
                    false,
                )
            }
        };
        let (consumed, mut assigned) =
            consumer::new_consumer(&self.settings, &group_id, commits, topic)?;
        let context = self.record_context(subject);
        if group.is_none() {
            consumer::assign_at_end(&consumed, self.settings.assignment_timeout).await?;
            return Ok(
                KafkaStream::new(consumed, context, self.stop.subscribe()).into_subscription(None)
            );
        }
        let started = Instant::now();
        consumer::await_topic(&consumed, self.settings.assignment_timeout).await?;
        {
            use rdkafka::consumer::Consumer as _;
            consumed
                .consumer
                .subscribe(&[topic])
                .map_err(|e| Error::backend(BACKEND, e))?;
        }
        let mut stream = KafkaStream::new(consumed, context, self.stop.subscribe());
        let left = self
            .settings
            .assignment_timeout
            .saturating_sub(started.elapsed());
        match stream.join(&mut assigned, left).await {
            true => {
                tracing::debug!(%group_id, elapsed = ?started.elapsed(), "kafka: group joined");
                Ok(stream.into_subscription(group))
            }
            false => Err(Error::backend(
                BACKEND,
                format!(
                    "consumer group `{group_id}` got no partition assignment within {:?}",
                    self.settings.assignment_timeout
                ),
            )),
        }
    }

    async fn close(&self) -> Result<()> {
        if self.gate.close().await {
            let _ = self.stop.send(true);
            let producer = self.producer.clone();
            let timeout = self.settings.delivery_timeout;
            let flushed = tokio::task::spawn_blocking(move || producer.flush(timeout)).await;
            if let Ok(Err(err)) = flushed {
                tracing::warn!(error = %err, "kafka: flush on close failed");
            }
            // The reply topic belongs to this connection alone: remove it, so
            // reply topics do not pile up on the broker.
            if let Some(replies) = self.replies.get() {
                if let Err(err) = self.topics.delete(replies.topic()).await {
                    tracing::warn!(topic = replies.topic(), error = %err, "kafka: could not delete the reply topic");
                }
            }
        }
        Ok(())
    }

    fn capabilities(&self) -> &Capabilities {
        &self.capabilities
    }

    /// `Closed` once closed; `Degraded` while librdkafka finds every
    /// broker down (until a metadata request or a delivery succeeds); else
    /// `Connected`.
    fn health(&self) -> switchboard_core::health::Health {
        if self.gate.is_closed() {
            return switchboard_core::health::Health::Closed;
        }
        self.brokers.health()
    }
}
