//! A librdkafka consumer per subscription: made, placed (its topic awaited,
//! assigned at the end or joined to its group), with offsets committed only
//! up to what the handler acknowledged.

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::error::{KafkaResult, RDKafkaErrorCode};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use tokio::sync::watch;

use super::acks::{AckBook, Revocations};
use super::convert::BACKEND;
use super::settings::{KafkaSettings, OffsetReset};
use switchboard_core::error::{Error, Result};

/// Watches rebalances: counts assignments and revocations, and hands what
/// was acknowledged to librdkafka before a revocation.
///
/// The ack bookkeeping deliberately survives a revocation: records already
/// handed out from a revoked partition may still be acknowledged, and if the
/// partition comes back, forgetting them would let the commit jump past
/// records still being handled.
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
    fn commit_callback(&self, result: KafkaResult<()>, offsets: &TopicPartitionList) {
        if let (Ok(()), Some(book)) = (result, &self.book) {
            book.lock()
                .unwrap_or_else(|e| e.into_inner())
                .committed(offsets);
        }
    }
}

/// A consumer and its bookkeeping, shared by its subscription's stream and
/// its ackers.
pub(super) struct Consumed {
    pub consumer: StreamConsumer<RebalanceWatch>,
    /// The topic, or for a pattern subscription the pattern.
    pub topic: String,
    /// A pattern subscription: records of switchboard's own reply topics and
    /// Kafka's internal ones are passed over.
    pub pattern: bool,
    pub book: Arc<Mutex<AckBook>>,
    pub revocations: Arc<Revocations>,
    pub commits: bool,
    /// Cleared when the subscription stops taking records: none is handed
    /// out any more, so a nack only keeps the record uncommitted (the
    /// group's next reader gets it).
    pub taking: AtomicBool,
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
        taking: AtomicBool::new(true),
    };
    Ok((Arc::new(consumed), assigned))
}

/// Hands what `book` acknowledged since the last call to librdkafka for its
/// next commit; whether there was any. A partition revoked meanwhile
/// refuses its offset: its new owner reads those records again.
pub(super) fn store_acknowledged<C: ConsumerContext>(
    consumer: &impl Consumer<C>,
    book: &Mutex<AckBook>,
) -> bool {
    let Some(offsets) = book
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take_acknowledged()
    else {
        return false;
    };
    if let Err(err) = consumer.store_offsets(&offsets) {
        tracing::debug!(error = %err, "kafka: offsets not stored");
    }
    true
}

/// Commits what was acknowledged, synchronously (it blocks): the number of
/// acknowledged records the group is not known to have committed after it,
/// which its next reader may get again.
pub(super) fn commit_acknowledged(consumed: &Consumed) -> usize {
    store_acknowledged(&consumed.consumer, &consumed.book);
    let committed = consumed.consumer.commit_consumer_state(CommitMode::Sync);
    let mut book = consumed.book.lock().unwrap_or_else(|e| e.into_inner());
    match committed {
        // librdkafka holds nothing uncommitted.
        Err(err) if err.rdkafka_error_code() == Some(RDKafkaErrorCode::NoOffset) => {
            book.all_committed()
        }
        Ok(()) => book.all_committed(),
        Err(err) => {
            tracing::warn!(topic = %consumed.topic, error = %err, "kafka: acknowledged offsets not committed; the group may deliver those records again");
        }
    }
    book.uncommitted()
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
