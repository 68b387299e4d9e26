//! Subscriptions: a librdkafka consumer per subscription, fed into a bounded queue,
//! with offsets committed only up to what the handler acknowledged.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures_util::StreamExt;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::{ClientContext, Message as _, Offset, TopicPartitionList};
use tokio::sync::{mpsc, watch};

use super::acks::{AckBook, Revocations, TopicPartition};
use super::convert::{self, BACKEND};
use super::responder::KafkaResponder;
use super::settings::{KafkaSettings, OffsetReset};
use switchboard_core::drain::stop_requested;
use switchboard_core::error::{Error, Result};
use switchboard_core::incoming::{Acker, Incoming};
use switchboard_core::subscription::Subscription;
use switchboard_core::wire;

/// Watches rebalances: counts assignments and revocations.
///
/// The ack bookkeeping deliberately survives a revocation: records already
/// handed out from a revoked partition may still be acknowledged, and if the
/// partition comes back, forgetting them would let the commit jump past
/// records still waiting in the subscription's queue.
pub(super) struct RebalanceWatch {
    assignments: watch::Sender<u64>,
    revocations: Arc<Revocations>,
    /// Set when the consumer commits: what was acknowledged is handed to
    /// librdkafka before a revocation, which commits it.
    book: Option<Arc<Mutex<AckBook>>>,
}

impl ClientContext for RebalanceWatch {}

impl ConsumerContext for RebalanceWatch {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(partitions) = rebalance {
            self.revocations.revoke(partitions);
            if let Some(book) = &self.book {
                store_acknowledged(consumer, book);
            }
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(partitions) => {
                tracing::debug!(count = partitions.count(), "kafka: partitions assigned");
                self.assignments.send_modify(|n| *n += 1);
            }
            Rebalance::Revoke(partitions) => {
                tracing::debug!(count = partitions.count(), "kafka: partitions revoked");
            }
            Rebalance::Error(err) => tracing::warn!(error = %err, "kafka: rebalance failed"),
        }
    }
}

/// A consumer and its bookkeeping, shared by its pump task and its ackers.
pub(super) struct Consumed {
    pub consumer: StreamConsumer<RebalanceWatch>,
    /// The topic, or for a pattern subscription the pattern.
    topic: String,
    /// A pattern subscription: records of switchboard's own reply topics and
    /// Kafka's internal ones are passed over.
    pattern: bool,
    book: Arc<Mutex<AckBook>>,
    revocations: Arc<Revocations>,
    commits: bool,
    /// Cleared when the pump stops: the consumer no longer fetches, so a
    /// nack only keeps the record uncommitted (the next consumer reads it).
    pumping: AtomicBool,
}

/// Builds a consumer; `group` decides whether offsets are committed. For a
/// pattern (`topic` holding `*` or `>`), the consumer looks for new matching
/// topics every `pattern_refresh`, and a plain one starts new topics at their
/// beginning (the existing ones are placed at their end by [`commit_at_end`]).
pub(super) fn new_consumer(
    settings: &KafkaSettings,
    group_id: &str,
    commits: bool,
    topic: &str,
) -> Result<(Arc<Consumed>, watch::Receiver<u64>)> {
    let pattern = switchboard_core::subject::is_pattern(topic);
    let mut config = settings.client_config();
    config
        .set("group.id", group_id)
        .set("enable.auto.commit", if commits { "true" } else { "false" })
        // Offsets are stored by hand, only for acknowledged messages.
        .set("enable.auto.offset.store", "false")
        .set("auto.commit.interval.ms", "1000")
        .set(
            "auto.offset.reset",
            match settings.offset_reset {
                OffsetReset::Earliest => "earliest",
                OffsetReset::Latest => "latest",
            },
        )
        .set(
            "fetch.wait.max.ms",
            settings.fetch_wait.as_millis().max(1).to_string(),
        )
        .set("session.timeout.ms", "6000")
        .set("heartbeat.interval.ms", "1000")
        .set("enable.partition.eof", "false");
    if pattern {
        config.set(
            "topic.metadata.refresh.interval.ms",
            settings.pattern_refresh.as_millis().max(1).to_string(),
        );
        // A topic that starts to match adds its partitions without taking the
        // others away (an eager rebalance would start them over from their
        // committed offsets, which a plain subscription never moves).
        config.set("partition.assignment.strategy", "cooperative-sticky");
        if !commits {
            config.set("auto.offset.reset", "earliest");
        }
    }
    let (assignments, assigned) = watch::channel(0);
    let book = Arc::new(Mutex::new(AckBook::default()));
    let revocations = Arc::new(Revocations::default());
    let context = RebalanceWatch {
        assignments,
        revocations: revocations.clone(),
        book: commits.then(|| book.clone()),
    };
    let consumer: StreamConsumer<RebalanceWatch> = config
        .create_with_context(context)
        .map_err(|e| Error::backend(BACKEND, e))?;
    let consumed = Consumed {
        consumer,
        topic: topic.to_owned(),
        pattern,
        book,
        revocations,
        commits,
        pumping: AtomicBool::new(true),
    };
    Ok((Arc::new(consumed), assigned))
}

/// How often acknowledged offsets are handed to librdkafka, which commits
/// what it holds every second (`auto.commit.interval.ms`), at a revocation
/// and when the consumer leaves.
const STORE_EVERY: Duration = Duration::from_millis(100);

/// Hands what `book` acknowledged since the last call to librdkafka for its
/// next commit. A partition revoked meanwhile refuses its offset: its new
/// owner reads those records again.
fn store_acknowledged<C: ConsumerContext>(consumer: &impl Consumer<C>, book: &Mutex<AckBook>) {
    let Some(offsets) = book
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take_acknowledged()
    else {
        return;
    };
    if let Err(err) = consumer.store_offsets(&offsets) {
        tracing::debug!(error = %err, "kafka: offsets not stored");
    }
}

/// Hands acknowledged offsets over every [`STORE_EVERY`] until the consumer is gone.
async fn store_periodically(consumed: Weak<Consumed>) {
    let mut ticks = tokio::time::interval(STORE_EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let Some(consumed) = consumed.upgrade() else {
            return;
        };
        store_acknowledged(&consumed.consumer, &consumed.book);
        if Arc::strong_count(&consumed) == 1 {
            // The last hold: closing the consumer blocks.
            drop(tokio::task::spawn_blocking(move || drop(consumed)));
        }
    }
}

/// Waits, until `deadline`, for a pause of 50 ms before the next try, or
/// fails with `what` once the deadline has passed.
fn retry_until(deadline: Instant, what: impl FnOnce() -> String) -> Result<()> {
    if Instant::now() > deadline {
        return Err(Error::backend(BACKEND, what()));
    }
    std::thread::sleep(Duration::from_millis(50));
    Ok(())
}

/// The number of partitions of `consumed`'s topic, once the consumer's
/// metadata has the topic with every partition led; blocks until then or
/// `deadline`. A topic created a moment ago may not be there yet: the broker
/// answering may not have it, or Apache Kafka may not have elected its
/// leaders. A group that joined then would get none of its partitions until
/// librdkafka's next periodic metadata refresh, five minutes later.
fn led_partitions(consumed: &Consumed, deadline: Instant) -> Result<i32> {
    let topic = consumed.topic.as_str();
    loop {
        let metadata = match consumed
            .consumer
            .fetch_metadata(Some(topic), Duration::from_secs(2))
        {
            Ok(metadata) => metadata,
            Err(err) => {
                retry_until(deadline, || format!("metadata of topic `{topic}`: {err}"))?;
                continue;
            }
        };
        let count = metadata
            .topics()
            .iter()
            .find(|t| t.name() == topic && t.error().is_none())
            .filter(|t| {
                t.partitions()
                    .iter()
                    .all(|p| p.error().is_none() && p.leader() >= 0)
            })
            .map_or(0, |t| t.partitions().len());
        if count > 0 {
            return Ok(count as i32);
        }
        retry_until(deadline, || {
            format!("topic `{topic}` does not exist or has partitions without a leader")
        })?;
    }
}

/// Waits, within `timeout`, until the consumer's metadata has its topic with
/// every partition led, so a group subscription joins with the topic's
/// partitions (see [`led_partitions`]).
pub(super) async fn await_topic(consumed: &Arc<Consumed>, timeout: Duration) -> Result<()> {
    let consumed = consumed.clone();
    tokio::task::spawn_blocking(move || led_partitions(&consumed, Instant::now() + timeout))
        .await
        .map_err(|e| Error::backend(BACKEND, e))?
        .map(drop)
}

/// Assigns every partition of `topic` at its current end, so the consumer sees
/// exactly what is published from now on (no group, no rebalance).
pub(super) async fn assign_at_end(consumed: &Arc<Consumed>, timeout: Duration) -> Result<()> {
    let consumed = consumed.clone();
    tokio::task::spawn_blocking(move || {
        let deadline = Instant::now() + timeout;
        let partitions = led_partitions(&consumed, deadline)?;
        let topic = consumed.topic.as_str();
        let consumer = &consumed.consumer;
        let mut assignment = TopicPartitionList::new();
        for partition in 0..partitions {
            let high = loop {
                match consumer.fetch_watermarks(topic, partition, Duration::from_secs(5)) {
                    Ok((_, high)) => break high,
                    Err(err) => retry_until(deadline, || {
                        format!("offsets of `{topic}` partition {partition}: {err}")
                    })?,
                }
            };
            assignment
                .add_partition_offset(topic, partition, Offset::Offset(high))
                .map_err(|e| Error::backend(BACKEND, e))?;
        }
        consumer
            .assign(&assignment)
            .map_err(|e| Error::backend(BACKEND, e))
    })
    .await
    .map_err(|e| Error::backend(BACKEND, e))?
}

/// The existing topics `consumed`'s pattern matches, with their partitions.
pub(super) async fn matching_topics(
    consumed: &Arc<Consumed>,
    timeout: Duration,
) -> Result<Vec<(String, Vec<i32>)>> {
    let consumed = consumed.clone();
    tokio::task::spawn_blocking(move || {
        let pattern = consumed.topic.as_str();
        let metadata = consumed
            .consumer
            .fetch_metadata(None, timeout)
            .map_err(|e| Error::backend(BACKEND, format!("metadata for `{pattern}`: {e}")))?;
        Ok(metadata
            .topics()
            .iter()
            .filter(|topic| {
                switchboard_core::subject::matches(pattern, topic.name())
                    && !super::topics::is_reserved(topic.name())
            })
            .map(|topic| {
                let partitions = topic.partitions().iter().map(|p| p.id()).collect();
                (topic.name().to_owned(), partitions)
            })
            .collect())
    })
    .await
    .map_err(|e| Error::backend(BACKEND, e))?
}

/// Commits the current end of every partition of `topics` for `consumed`'s
/// group of one: its pattern subscription then sees what is published from
/// now on to those topics, and everything on a topic created later (which
/// starts at its beginning).
pub(super) async fn commit_at_end(
    consumed: &Arc<Consumed>,
    topics: Vec<(String, Vec<i32>)>,
    timeout: Duration,
) -> Result<()> {
    let consumed = consumed.clone();
    tokio::task::spawn_blocking(move || {
        let consumer = &consumed.consumer;
        let pattern = consumed.topic.as_str();
        let mut ends = TopicPartitionList::new();
        for (name, partitions) in &topics {
            for &partition in partitions {
                let (_, high) = consumer
                    .fetch_watermarks(name, partition, timeout)
                    .map_err(|e| {
                        Error::backend(
                            BACKEND,
                            format!("offsets of `{name}` partition {partition}: {e}"),
                        )
                    })?;
                ends.add_partition_offset(name, partition, Offset::Offset(high))
                    .map_err(|e| Error::backend(BACKEND, e))?;
            }
        }
        if ends.count() > 0 {
            consumer.commit(&ends, CommitMode::Sync).map_err(|e| {
                Error::backend(
                    BACKEND,
                    format!("placing `{pattern}` at the end of its topics: {e}"),
                )
            })?;
        }
        Ok(())
    })
    .await
    .map_err(|e| Error::backend(BACKEND, e))?
}

/// Everything a subscription's pump needs besides its consumer.
pub(super) struct PumpContext {
    pub subject: Arc<str>,
    pub producer: rdkafka::producer::FutureProducer,
    pub delivery_timeout: Duration,
    pub buffer: usize,
}

/// Starts pumping records into a subscription. The pump ends when the
/// subscription stops taking records ([`Subscription::stop_taking`]), is
/// dropped, or `stopped` turns true; the records it queued stay readable.
/// The consumer commits what was acknowledged and leaves its group when the
/// subscription is dropped, so acknowledgements of records still being
/// handled at shutdown are committed, not lost.
pub(super) fn subscription(
    consumed: Arc<Consumed>,
    context: PumpContext,
    group: Option<&str>,
    stopped: watch::Receiver<bool>,
) -> Subscription {
    let (sender, receiver) = mpsc::channel(context.buffer);
    let (stop_taking, taking_stopped) = tokio::sync::oneshot::channel();
    let subject = context.subject.to_string();
    if consumed.commits {
        tokio::spawn(store_periodically(Arc::downgrade(&consumed)));
    }
    tokio::spawn(pump(
        consumed.clone(),
        context,
        sender,
        stopped,
        taking_stopped,
    ));
    let stream = KafkaStream {
        receiver,
        consumed: consumed.clone(),
        _leave: LeaveGroup(Some(consumed)),
    };
    Subscription::new(subject, group.map(str::to_owned), stream).with_stop(move || {
        let _ = stop_taking.send(());
    })
}

/// A record the pump queued, with the revocation generation then.
struct Queued {
    incoming: Incoming,
    partition: TopicPartition,
    offset: i64,
    queued_at: u64,
}

/// The records a pump queued for one subscription.
struct KafkaStream {
    receiver: mpsc::Receiver<Queued>,
    consumed: Arc<Consumed>,
    _leave: LeaveGroup,
}

impl futures_core::Stream for KafkaStream {
    type Item = Incoming;

    fn poll_next(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Incoming>> {
        let this = self.get_mut();
        loop {
            let Some(queued) = std::task::ready!(this.receiver.poll_recv(cx)) else {
                return std::task::Poll::Ready(None);
            };
            if !this
                .consumed
                .revocations
                .revoked_since(&queued.partition, queued.queued_at)
            {
                return std::task::Poll::Ready(Some(queued.incoming));
            }
            // Its partition moved to another member while it waited here: that
            // member reads it from the committed offset, so handing it out too
            // would deliver it twice.
            this.consumed
                .book
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .rewound(&queued.partition, queued.offset);
            tracing::debug!(topic = %queued.partition.0, partition = queued.partition.1, offset = queued.offset, "kafka: queued record of a revoked partition left to its new owner");
        }
    }
}

/// Commits what was acknowledged and lets the consumer leave its group once
/// its subscription is gone (and the pump, which holds it too, has ended).
struct LeaveGroup(Option<Arc<Consumed>>);

impl Drop for LeaveGroup {
    fn drop(&mut self) {
        let Some(consumed) = self.0.take() else {
            return;
        };
        let leave = move || {
            if consumed.commits {
                store_acknowledged(&consumed.consumer, &consumed.book);
                if let Err(err) = consumed.consumer.commit_consumer_state(CommitMode::Sync) {
                    // Nothing stored since the last commit is reported as an error too.
                    tracing::debug!(topic = %consumed.topic, error = %err, "kafka: final commit");
                }
            }
            drop(consumed);
        };
        // Committing and closing block: off the async threads where there are some.
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => drop(runtime.spawn_blocking(leave)),
            Err(_) => leave(),
        }
    }
}

async fn pump(
    consumed: Arc<Consumed>,
    context: PumpContext,
    sender: mpsc::Sender<Queued>,
    mut stopped: watch::Receiver<bool>,
    mut taking_stopped: tokio::sync::oneshot::Receiver<()>,
) {
    // The topic of the last record, shared with the next one of the same
    // topic (a plain subscription reads one), so it is not copied per record.
    let mut last_topic: Option<Arc<str>> = None;
    {
        // Looked at before each record without a waker; the futures below
        // wake the pump while it waits for records.
        let mut stop_seen = stopped.clone();
        let stop = stop_requested(&mut stopped);
        let closed = sender.closed();
        tokio::pin!(stop, closed);
        // One stream for the pump's life: `recv` registers and unregisters
        // a waker slot (two locks) per record.
        let mut records = consumed.consumer.stream();
        loop {
            if stop_seen.has_changed().unwrap_or(false) && *stop_seen.borrow_and_update()
                || !matches!(
                    taking_stopped.try_recv(),
                    Err(tokio::sync::oneshot::error::TryRecvError::Empty)
                )
                || sender.is_closed()
            {
                break;
            }
            let received = tokio::select! {
                // Biased: no random draw per record; a stop is seen above.
                biased;
                received = records.next() => match received {
                    Some(received) => received,
                    // librdkafka's streams do not end; this one ends the pump if it did.
                    None => break,
                },
                _ = &mut stop => break,
                _ = &mut taking_stopped => break,
                () = &mut closed => break,
            };
            let queued = match received {
                Ok(record) => {
                    if consumed.pattern && super::topics::is_reserved(record.topic()) {
                        continue;
                    }
                    let topic = match &last_topic {
                        // A plain subscription reads its one topic: no need to
                        // read (and check as UTF-8) the record's.
                        Some(last) if !consumed.pattern || **last == *record.topic() => {
                            last.clone()
                        }
                        _ => last_topic.insert(Arc::from(record.topic())).clone(),
                    };
                    let (partition, offset) = ((topic, record.partition()), record.offset());
                    consumed
                        .book
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .delivered(partition.clone(), offset);
                    Queued {
                        queued_at: consumed.revocations.now(),
                        incoming: incoming_from(
                            &record,
                            &consumed,
                            &context,
                            partition.clone(),
                            offset,
                        ),
                        partition,
                        offset,
                    }
                }
                Err(err) => {
                    tracing::warn!(subject = %context.subject, error = %err, "kafka: consume error");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            // A queue with room takes the record at once, without the select.
            let queued = match sender.try_send(queued) {
                Ok(()) => continue,
                Err(mpsc::error::TrySendError::Closed(_)) => break,
                Err(mpsc::error::TrySendError::Full(queued)) => queued,
            };
            // A record taken but not queued stays unacknowledged: it is delivered again.
            tokio::select! {
                biased;
                _ = &mut stop => break,
                _ = &mut taking_stopped => break,
                sent = sender.send(queued) => if sent.is_err() { break },
            }
        }
    }
    // The queue ends after what it holds; the subscription's `LeaveGroup` commits and closes.
    consumed.pumping.store(false, Ordering::Release);
    drop(sender);
    // If the subscription is already gone, this is the last hold: closing blocks.
    drop(tokio::task::spawn_blocking(move || drop(consumed)));
}

fn incoming_from(
    record: &rdkafka::message::BorrowedMessage<'_>,
    consumed: &Arc<Consumed>,
    context: &PumpContext,
    partition: TopicPartition,
    offset: i64,
) -> Incoming {
    let mut message = convert::message_from(record);
    // The request/reply headers are the transport's: the handler sees only the caller's.
    let reply_to = message.headers.remove(wire::REPLY_TO);
    let correlation = message.headers.remove(wire::CORRELATION_ID);
    let deadline = message
        .headers
        .remove(wire::TIMEOUT_MS)
        .and_then(|timeout| request_deadline(record, &timeout));
    let subject = partition.0.clone();
    let mut incoming = Incoming::new(subject, message).with_acker(Box::new(KafkaAcker {
        consumed: Arc::downgrade(consumed),
        partition,
        offset,
    }));
    if let (Some(reply_to), Some(correlation)) = (reply_to, correlation) {
        incoming = incoming.with_responder(Box::new(KafkaResponder::new(
            context.producer.clone(),
            reply_to,
            correlation,
            context.delivery_timeout,
        )));
        if let Some(deadline) = deadline {
            incoming = incoming.with_deadline(deadline);
        }
    }
    incoming
}

/// When the requester stops waiting: the record's create time (the
/// requester's clock) plus its timeout, on this process's monotonic clock.
fn request_deadline(record: &impl rdkafka::Message, timeout_ms: &str) -> Option<Instant> {
    let timeout = Duration::from_millis(timeout_ms.parse().ok()?);
    let created = record.timestamp().to_millis()?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?
        .as_millis() as i64;
    let age = Duration::from_millis(u64::try_from(now.saturating_sub(created)).unwrap_or(0));
    match timeout.checked_sub(age) {
        // A forged, absurdly long timeout is no deadline at all, never a panic.
        Some(left) => Instant::now().checked_add(left),
        None => Some(Instant::now()),
    }
}

/// Acknowledges one record: stores the offset for commit once everything
/// before it is acknowledged too; a nack rewinds the partition to it.
struct KafkaAcker {
    consumed: Weak<Consumed>,
    partition: TopicPartition,
    offset: i64,
}

impl KafkaAcker {
    fn consumed(&self) -> Result<Arc<Consumed>> {
        // The subscription ended; its unacknowledged records go to the next consumer.
        self.consumed.upgrade().ok_or(Error::Closed)
    }

    /// Books the ack; the offset reaches librdkafka with the next batch
    /// ([`store_acknowledged`]).
    fn acknowledge(&self) -> Result<()> {
        self.consumed()?
            .book
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .acknowledged(&self.partition, self.offset);
        Ok(())
    }
}

#[async_trait]
impl Acker for KafkaAcker {
    async fn ack(self: Box<Self>) -> Result<()> {
        self.acknowledge()
    }

    fn ack_now(&mut self) -> Option<Result<()>> {
        Some(self.acknowledge())
    }

    async fn nack(self: Box<Self>) -> Result<()> {
        let consumed = self.consumed()?;
        consumed
            .book
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .rewound(&self.partition, self.offset);
        if !consumed.pumping.load(Ordering::Acquire) {
            // Uncommitted, and never committed past: it goes to the group's next reader.
            return Ok(());
        }
        consumed
            .consumer
            .seek(
                &self.partition.0,
                self.partition.1,
                Offset::Offset(self.offset),
                Duration::ZERO,
            )
            .map_err(|e| Error::backend(BACKEND, e))
    }

    /// Topic, partition and offset: a redelivered record has the same.
    fn position(&self) -> Option<String> {
        let (topic, partition) = &self.partition;
        Some(format!("kafka:{topic}:{partition}:{}", self.offset))
    }
}
