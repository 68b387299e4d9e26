//! What a Kafka consumer has handed out and had acknowledged, per partition,
//! and when partitions were taken from it: the bookkeeping that commits only
//! acknowledged offsets and keeps a rebalance from delivering a record twice.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use rdkafka::{Offset, TopicPartitionList};

/// What each partition has delivered and what the handler acknowledged.
#[derive(Default)]
struct PartitionAcks {
    /// Delivered offsets not yet behind `stored`, in ascending order (a
    /// partition delivers in order, and a rewind forgets everything from the
    /// offset it rewinds to), each with whether it was acknowledged.
    open: VecDeque<(i64, bool)>,
    /// Highest offset delivered.
    highest: i64,
    /// Highest offset acknowledged with everything before it.
    stored: i64,
    /// Highest offset handed to librdkafka for its next commit.
    handed: i64,
    /// Highest offset the group is known to have committed.
    committed: i64,
}

impl PartitionAcks {
    fn delivered(&mut self, offset: i64) {
        match self.open.back() {
            Some(&(last, _)) if last >= offset => {
                // Out of order (not seen from librdkafka): kept sorted all the same.
                let at = self.open.partition_point(|&(o, _)| o < offset);
                match self.open.get_mut(at) {
                    Some(entry) if entry.0 == offset => entry.1 = false,
                    _ => self.open.insert(at, (offset, false)),
                }
            }
            _ => self.open.push_back((offset, false)),
        }
        self.highest = self.highest.max(offset);
    }

    fn acknowledged(&mut self, offset: i64) -> bool {
        // Acks mostly come in the order of delivery: the oldest open one first.
        let at = match self.open.front() {
            Some(&(oldest, _)) if oldest == offset => 0,
            _ => match self.open.binary_search_by_key(&offset, |&(o, _)| o) {
                Ok(at) => at,
                Err(_) => return false,
            },
        };
        if std::mem::replace(&mut self.open[at].1, true) {
            return false;
        }
        while self.open.front().is_some_and(|&(_, acked)| acked) {
            self.open.pop_front();
        }
        let done_through = match self.open.front() {
            Some(&(lowest, _)) => lowest - 1,
            None => self.highest,
        };
        if done_through > self.stored {
            self.stored = done_through;
            true
        } else {
            false
        }
    }
}

/// One partition of one topic (a pattern subscription reads several topics).
pub(super) type TopicPartition = (Arc<str>, i32);

/// Acknowledgement bookkeeping of one consumer, per partition.
///
/// Acknowledged offsets reach librdkafka in batches ([`take_acknowledged`](Self::take_acknowledged)):
/// its automatic commit sends them once a second anyway, and storing one
/// offset costs a topic lookup inside librdkafka.
#[derive(Default)]
pub(super) struct AckBook {
    partitions: HashMap<TopicPartition, PartitionAcks, foldhash::fast::RandomState>,
    /// Some partition's `stored` moved past its `handed`.
    moved: bool,
}

impl AckBook {
    pub(super) fn delivered(&mut self, partition: TopicPartition, offset: i64) {
        self.partitions
            .entry(partition)
            .or_insert_with(|| PartitionAcks {
                highest: offset - 1,
                stored: offset - 1,
                handed: offset - 1,
                committed: offset - 1,
                ..Default::default()
            })
            .delivered(offset);
    }

    /// Records an ack; returns the offset up to which everything is now acknowledged, if it moved.
    pub(super) fn acknowledged(&mut self, partition: &TopicPartition, offset: i64) -> Option<i64> {
        let acks = self.partitions.get_mut(partition)?;
        let moved = acks.acknowledged(offset);
        self.moved |= moved;
        moved.then_some(acks.stored)
    }

    /// Forgets deliveries from `offset` on: they will be delivered again.
    pub(super) fn rewound(&mut self, partition: &TopicPartition, offset: i64) {
        if let Some(acks) = self.partitions.get_mut(partition) {
            let keep = acks.open.partition_point(|&(o, _)| o < offset);
            acks.open.truncate(keep);
            acks.highest = acks.highest.min(offset - 1);
        }
    }

    /// The offsets acknowledged since the last call, as librdkafka stores
    /// them (the next offset to read), or `None` if nothing moved.
    pub(super) fn take_acknowledged(&mut self) -> Option<TopicPartitionList> {
        if !std::mem::take(&mut self.moved) {
            return None;
        }
        let mut list = TopicPartitionList::new();
        for ((topic, partition), acks) in &mut self.partitions {
            if acks.stored > acks.handed {
                acks.handed = acks.stored;
                // A valid offset is always accepted: adding cannot fail here.
                let _ =
                    list.add_partition_offset(topic, *partition, Offset::Offset(acks.stored + 1));
            }
        }
        (list.count() > 0).then_some(list)
    }

    /// The group committed `offsets` (as librdkafka gives them: the next
    /// offset to read).
    pub(super) fn committed(&mut self, offsets: &TopicPartitionList) {
        for element in offsets.elements() {
            let Offset::Offset(next) = element.offset() else {
                continue;
            };
            let key = (Arc::from(element.topic()), element.partition());
            if let Some(acks) = self.partitions.get_mut(&key) {
                acks.committed = acks.committed.max(next - 1);
            }
        }
    }

    /// Everything handed to librdkafka is committed.
    pub(super) fn all_committed(&mut self) {
        for acks in self.partitions.values_mut() {
            acks.committed = acks.committed.max(acks.handed);
        }
    }

    /// Acknowledged records the group is not known to have committed: its
    /// next reader may get them again.
    pub(super) fn uncommitted(&self) -> usize {
        self.partitions
            .values()
            .map(|acks| usize::try_from(acks.stored - acks.committed).unwrap_or(0))
            .sum()
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
    fn counts_what_was_acknowledged_and_not_committed() {
        let mut book = AckBook::default();
        for offset in 10..15 {
            book.delivered(p(0), offset);
        }
        for offset in 20..22 {
            book.delivered(p(1), offset);
        }
        for offset in 10..13 {
            book.acknowledged(&p(0), offset);
        }
        book.acknowledged(&p(1), 20);
        assert_eq!(book.uncommitted(), 4, "10, 11, 12 and 20");
        let handed = book.take_acknowledged().unwrap();
        assert_eq!(book.uncommitted(), 4, "handed is not committed");
        // librdkafka's commit of 0 reports its next offsets (13; 21).
        let mut first = TopicPartitionList::new();
        first
            .add_partition_offset("orders", 0, Offset::Offset(13))
            .unwrap();
        book.committed(&first);
        assert_eq!(book.uncommitted(), 1, "20 is left");
        book.committed(&handed);
        assert_eq!(book.uncommitted(), 0);
        book.acknowledged(&p(0), 13);
        assert_eq!(book.uncommitted(), 1);
        book.take_acknowledged();
        book.all_committed();
        assert_eq!(book.uncommitted(), 0);
    }

    #[test]
    fn acknowledged_offsets_are_handed_over_once_each() {
        let mut book = AckBook::default();
        for offset in 0..4 {
            book.delivered(p(0), offset);
            book.delivered(p(1), offset + 100);
        }
        assert!(
            book.take_acknowledged().is_none(),
            "nothing acknowledged yet"
        );
        book.acknowledged(&p(0), 0);
        book.acknowledged(&p(0), 1);
        book.acknowledged(&p(1), 101);
        let list = book.take_acknowledged().expect("partition 0 moved");
        assert_eq!(list.count(), 1, "partition 1 waits for offset 100");
        assert_eq!(
            list.find_partition("orders", 0).map(|e| e.offset()),
            Some(Offset::Offset(2)),
            "the next offset to read"
        );
        assert!(book.take_acknowledged().is_none(), "handed over once");
        book.acknowledged(&p(1), 100);
        let list = book.take_acknowledged().expect("partition 1 moved");
        assert_eq!(
            list.find_partition("orders", 1).map(|e| e.offset()),
            Some(Offset::Offset(102))
        );
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
