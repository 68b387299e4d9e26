//! What a Kafka consumer has handed out and had acknowledged, per partition,
//! and when partitions were taken from it: the bookkeeping that commits only
//! acknowledged offsets and keeps a rebalance from delivering a record twice.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use rdkafka::TopicPartitionList;

/// What each partition has delivered and what the handler acknowledged.
#[derive(Default)]
struct PartitionAcks {
    /// Delivered and not yet acknowledged.
    outstanding: BTreeSet<i64>,
    /// Highest offset delivered.
    highest: i64,
    /// Highest offset stored for commit (everything up to it is acknowledged).
    stored: i64,
}

/// One partition of one topic (a pattern subscription reads several topics).
pub(super) type TopicPartition = (Arc<str>, i32);

/// Acknowledgement bookkeeping of one consumer, per partition.
#[derive(Default)]
pub(super) struct AckBook(HashMap<TopicPartition, PartitionAcks>);

impl AckBook {
    pub(super) fn delivered(&mut self, partition: TopicPartition, offset: i64) {
        let acks = self.0.entry(partition).or_insert_with(|| PartitionAcks {
            highest: offset - 1,
            stored: offset - 1,
            ..Default::default()
        });
        acks.outstanding.insert(offset);
        acks.highest = acks.highest.max(offset);
    }

    /// Records an ack; returns the offset up to which everything is now acknowledged, if it moved.
    pub(super) fn acknowledged(&mut self, partition: &TopicPartition, offset: i64) -> Option<i64> {
        let acks = self.0.get_mut(partition)?;
        if !acks.outstanding.remove(&offset) {
            return None;
        }
        let done_through = match acks.outstanding.first() {
            Some(lowest) => lowest - 1,
            None => acks.highest,
        };
        (done_through > acks.stored).then(|| {
            acks.stored = done_through;
            done_through
        })
    }

    /// Forgets deliveries from `offset` on: they will be delivered again.
    pub(super) fn rewound(&mut self, partition: &TopicPartition, offset: i64) {
        if let Some(acks) = self.0.get_mut(partition) {
            acks.outstanding.retain(|o| *o < offset);
            acks.highest = acks.highest.min(offset - 1);
        }
    }
}

/// When partitions were taken from this consumer: a record queued before its
/// partition was revoked is not handed out (its new owner reads it from the
/// committed offset), so a rebalance does not deliver it twice.
#[derive(Default)]
pub(super) struct Revocations {
    /// Counts revocations; a record remembers the count when it was queued,
    /// so one atomic load tells that nothing was revoked since.
    generation: AtomicU64,
    /// The generation at which each partition was last revoked.
    last: Mutex<HashMap<TopicPartition, u64>>,
}

impl Revocations {
    pub(super) fn revoke(&self, partitions: &TopicPartitionList) {
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        let generation = self.generation.fetch_add(1, Ordering::AcqRel) + 1;
        for element in partitions.elements() {
            last.insert(
                (Arc::from(element.topic()), element.partition()),
                generation,
            );
        }
    }

    pub(super) fn now(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Whether `partition` was revoked after generation `queued_at`.
    pub(super) fn revoked_since(&self, partition: &TopicPartition, queued_at: u64) -> bool {
        self.now() != queued_at
            && self
                .last
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(partition)
                .is_some_and(|&revoked| revoked > queued_at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(partition: i32) -> TopicPartition {
        (Arc::from("orders"), partition)
    }

    #[test]
    fn commits_only_what_is_acknowledged_without_gaps() {
        let mut book = AckBook::default();
        for offset in 10..15 {
            book.delivered(p(0), offset);
        }
        assert_eq!(book.acknowledged(&p(0), 11), None, "10 is still open");
        assert_eq!(book.acknowledged(&p(0), 10), Some(11));
        assert_eq!(
            book.acknowledged(&p(0), 10),
            None,
            "a second ack changes nothing"
        );
        assert_eq!(book.acknowledged(&p(0), 14), None);
        assert_eq!(book.acknowledged(&p(0), 12), Some(12));
        assert_eq!(book.acknowledged(&p(0), 13), Some(14));
        assert_eq!(book.acknowledged(&p(7), 1), None, "unknown partition");
    }

    #[test]
    fn a_record_queued_before_its_partition_was_revoked_is_not_handed_out() {
        let revocations = Revocations::default();
        let queued_at = revocations.now();
        let mut revoked = TopicPartitionList::new();
        revoked.add_partition("orders", 0);
        revocations.revoke(&revoked);
        assert!(revocations.revoked_since(&p(0), queued_at));
        assert!(
            !revocations.revoked_since(&p(1), queued_at),
            "another partition stays"
        );
        assert!(
            !revocations.revoked_since(&p(0), revocations.now()),
            "queued after the revocation"
        );
    }

    #[test]
    fn a_rewind_forgets_later_deliveries() {
        let mut book = AckBook::default();
        for offset in 0..5 {
            book.delivered(p(3), offset);
        }
        assert_eq!(book.acknowledged(&p(3), 0), Some(0));
        book.rewound(&p(3), 2);
        assert_eq!(
            book.acknowledged(&p(3), 3),
            None,
            "3 will be delivered again"
        );
        book.delivered(p(3), 2);
        assert_eq!(book.acknowledged(&p(3), 1), Some(1));
        assert_eq!(book.acknowledged(&p(3), 2), Some(2));
    }
}
