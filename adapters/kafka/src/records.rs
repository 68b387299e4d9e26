//! A subscription's records: taken from its consumer in the route's task
//! when the route asks for the next one, with no task or queue between
//! them; while the route does not ask (busy, or not started), a keeper task
//! takes them instead and holds them, so the group's rebalances are served.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures_util::StreamExt;
use rdkafka::consumer::{Consumer as _, MessageStream};
use rdkafka::error::KafkaResult;
use rdkafka::{Message as _, Offset};
use tokio::sync::watch;

use super::acks::TopicPartition;
use super::consumer::{self, Consumed, RebalanceWatch};
use super::convert::{self, BACKEND};
use super::responder::KafkaResponder;
use switchboard_core::drain::stop_requested;
use switchboard_core::error::{Error, Result};
use switchboard_core::incoming::{Acker, Incoming};
use switchboard_core::subscription::Subscription;
use switchboard_core::wire;

/// What a subscription's records need besides their consumer.
pub(super) struct RecordContext {
    pub subject: Arc<str>,
    pub producer: super::brokers::Producer,
    pub delivery_timeout: Duration,
    /// At most this many records are held while the route does not ask.
    pub buffer: usize,
}

/// How often the keeper looks whether the route asked for records, and
/// hands acknowledged offsets to librdkafka, which commits what it holds
/// every second (`auto.commit.interval.ms`), at a revocation and when the
/// consumer leaves.
const KEEP_EVERY: Duration = Duration::from_millis(100);
/// While its looks find nothing to do, the keeper doubles its pause up to
/// this: an idle subscription costs a wake-up a second, not ten. A route
/// that waits for records is woken by librdkafka's queue itself.
const KEEP_IDLE: Duration = Duration::from_secs(1);

/// The consumer's one stream of records, which borrows the consumer.
type ConsumerStream<'a> = MessageStream<'a, RebalanceWatch>;

self_cell::self_cell!(
    /// A consumer with the one stream of its records: registering a stream
    /// takes a waker slot (two locks), so it is made once per subscription.
    struct Records {
        owner: Arc<Consumed>,
        #[covariant]
        dependent: ConsumerStream,
    }
);

/// A record as the route gets it, with where it came from.
struct Read {
    incoming: Incoming,
    partition: TopicPartition,
    offset: i64,
}

/// The reading side, shared by the route's stream and its keeper.
struct Reader {
    records: Records,
    context: RecordContext,
    /// The topic of the last record, shared with the next one of the same
    /// topic (a plain subscription reads one), so it is not copied per record.
    last_topic: Option<Arc<str>>,
    /// Records the keeper took, oldest first, each with the revocation
    /// generation when taken.
    held: VecDeque<(Read, u64)>,
    /// The route asked since the keeper last looked.
    asked: bool,
    /// The waker of the route's last wait: the keeper takes records with
    /// it, so librdkafka's queue keeps waking the route, and wakes it when
    /// it took some.
    route: Option<Waker>,
}

impl Reader {
    /// Takes the next record from librdkafka's queue.
    fn poll_record(&mut self, cx: &mut Context<'_>) -> Poll<Option<KafkaResult<Option<Read>>>> {
        let (context, last_topic) = (&self.context, &mut self.last_topic);
        self.records
            .with_dependent_mut(|consumed, records| match records.poll_next_unpin(cx) {
                Poll::Pending => Poll::Pending,
                Poll::Ready(Some(Ok(record))) => {
                    Poll::Ready(Some(Ok(read(&record, consumed, context, last_topic))))
                }
                Poll::Ready(Some(Err(err))) => Poll::Ready(Some(Err(err))),
                // librdkafka's streams do not end; this one ends the subscription if it did.
                Poll::Ready(None) => Poll::Ready(None),
            })
    }

    /// The next record for the route from librdkafka's queue, passing over
    /// reserved topics' records and logging consume errors (librdkafka goes
    /// on after them).
    fn poll_read(&mut self, cx: &mut Context<'_>) -> Poll<Option<Read>> {
        loop {
            match self.poll_record(cx) {
                Poll::Ready(Some(Ok(Some(read)))) => return Poll::Ready(Some(read)),
                Poll::Ready(Some(Ok(None))) => {}
                Poll::Ready(Some(Err(err))) => {
                    tracing::warn!(subject = %self.context.subject, error = %err, "kafka: consume error");
                }
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Pending => return Poll::Pending,
            }
        }
    }

    /// The oldest held record whose partition is still this consumer's.
    fn next_held(&mut self) -> Option<Incoming> {
        if self.held.is_empty() {
            return None;
        }
        let consumed = self.records.borrow_owner().clone();
        while let Some((read, taken_at)) = self.held.pop_front() {
            if !consumed
                .revocations
                .revoked_since(&read.partition, taken_at)
            {
                return Some(read.incoming);
            }
            // Its partition moved to another member while it was held: that
            // member reads it from the committed offset, so handing it out
            // too would deliver it twice.
            consumed
                .book
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .rewound(&read.partition, read.offset);
            tracing::debug!(topic = %read.partition.0, partition = read.partition.1, offset = read.offset, "kafka: held record of a revoked partition left to its new owner");
        }
        None
    }

    /// Takes what librdkafka has, up to `buffer` held, for a route that does
    /// not ask; serving the queue serves the group's rebalances too.
    /// Whether a record was taken.
    fn keep(&mut self) -> bool {
        if !self.records.borrow_owner().taking.load(Ordering::Acquire) {
            return false;
        }
        let route = self.route.clone();
        let mut cx = Context::from_waker(route.as_ref().unwrap_or(Waker::noop()));
        let mut took = false;
        while self.held.len() < self.context.buffer {
            // An event served, or nothing waiting: the next look goes on.
            let Poll::Ready(Some(read)) = self.poll_read(&mut cx) else {
                break;
            };
            let taken_at = self.records.borrow_owner().revocations.now();
            self.held.push_back((read, taken_at));
            took = true;
        }
        took
    }
}

/// Every [`KEEP_EVERY`] (up to [`KEEP_IDLE`] while idle) until the
/// subscription is gone: takes records for the route if it did not ask for
/// any since the last look, and hands what was acknowledged to librdkafka
/// for its next commit.
async fn keep(reader: Weak<Mutex<Reader>>) {
    let mut pause = KEEP_EVERY;
    loop {
        tokio::time::sleep(pause).await;
        let Some(shared) = reader.upgrade() else {
            return;
        };
        {
            let mut reader = lock(&shared);
            let mut busy = std::mem::take(&mut reader.asked);
            if !busy && reader.keep() {
                busy = true;
                if let Some(route) = reader.route.take() {
                    route.wake();
                }
            }
            let consumed = reader.records.borrow_owner();
            if consumed.commits {
                busy |= consumer::store_acknowledged(&consumed.consumer, &consumed.book);
            }
            pause = match busy {
                true => KEEP_EVERY,
                false => (pause * 2).min(KEEP_IDLE),
            };
        }
        // The last hold: the consumer may close with it, which blocks.
        let_go_off_async(shared);
    }
}

fn lock(reader: &Mutex<Reader>) -> MutexGuard<'_, Reader> {
    reader.lock().unwrap_or_else(|e| e.into_inner())
}

/// A subscription's records. The stream ends, after the records the keeper
/// held, when the subscription stops taking records
/// ([`Subscription::stop_taking`]) or the transport closes;
/// dropped, it commits what was acknowledged and leaves the group
/// ([`LeaveGroup`]).
pub(super) struct KafkaStream {
    /// Declared first, so dropped before `_leave` closes the consumer.
    reader: Arc<Mutex<Reader>>,
    consumed: Arc<Consumed>,
    /// A record read while `subscribe` waited for the group's assignment.
    early: Option<Incoming>,
    /// The transport's stop, looked at before each record (one atomic load).
    stopped: watch::Receiver<bool>,
    /// The same stop as a future, polled only while no record is waiting.
    closing: Pin<Box<dyn Future<Output = ()> + Send>>,
    /// `closing` completed (it is not polled again).
    closed: bool,
    ended: bool,
    _leave: LeaveGroup,
}

impl KafkaStream {
    /// Reads `consumed`'s records until `stopped` turns true.
    pub(super) fn new(
        consumed: Arc<Consumed>,
        context: RecordContext,
        stopped: watch::Receiver<bool>,
    ) -> Self {
        let reader = Arc::new(Mutex::new(Reader {
            records: Records::new(consumed.clone(), |consumed| consumed.consumer.stream()),
            context,
            last_topic: None,
            held: VecDeque::new(),
            asked: false,
            route: None,
        }));
        tokio::spawn(keep(Arc::downgrade(&reader)));
        let mut closing_signal = stopped.clone();
        KafkaStream {
            reader,
            consumed: consumed.clone(),
            early: None,
            stopped,
            closing: Box::pin(async move { stop_requested(&mut closing_signal).await }),
            closed: false,
            ended: false,
            _leave: LeaveGroup(Some(consumed)),
        }
    }

    /// Reads until the group's first assignment, within `within`: taking
    /// records is what serves the assignment. A record read meanwhile is
    /// kept for the first read.
    pub(super) async fn join(
        &mut self,
        assigned: &mut watch::Receiver<u64>,
        within: Duration,
    ) -> bool {
        let joining = async {
            tokio::select! {
                biased;
                joined = assigned.wait_for(|n| *n > 0) => joined.is_ok(),
                next = self.next() => match next {
                    Some(incoming) => {
                        self.early = Some(incoming);
                        true
                    }
                    None => false,
                },
            }
        };
        tokio::time::timeout(within, joining).await.unwrap_or(false)
    }

    /// The subscription handed to the caller; stopping it ends the stream.
    pub(super) fn into_subscription(self, group: Option<&str>) -> Subscription {
        let consumed = Arc::downgrade(&self.consumed);
        let committing = self
            .consumed
            .commits
            .then(|| LastHoldOffAsync(Some(self.consumed.clone())));
        let (subject, patience) = {
            let reader = lock(&self.reader);
            (
                reader.context.subject.to_string(),
                reader.context.delivery_timeout,
            )
        };
        let subscription =
            Subscription::new(subject, group.map(str::to_owned), self).with_stop(move || {
                if let Some(consumed) = consumed.upgrade() {
                    consumed.taking.store(false, Ordering::Release);
                }
            });
        match committing {
            Some(consumed) => subscription.with_settle(move || settle(consumed, patience)),
            None => subscription,
        }
    }

    /// Whether the transport has closed since the stream began.
    fn transport_stopped(&self) -> bool {
        self.closed || matches!(self.stopped.has_changed(), Ok(true)) && *self.stopped.borrow()
    }

    fn end(&mut self) -> Poll<Option<Incoming>> {
        self.ended = true;
        self.consumed.taking.store(false, Ordering::Release);
        Poll::Ready(None)
    }
}

impl futures_core::Stream for KafkaStream {
    type Item = Incoming;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Incoming>> {
        let this = self.get_mut();
        if let Some(incoming) = this.early.take() {
            return Poll::Ready(Some(incoming));
        }
        if this.ended {
            return this.end();
        }
        let mut reader = lock(&this.reader);
        if !this.consumed.taking.load(Ordering::Acquire) || this.transport_stopped() {
            // Stopped: what the keeper already holds is still handed out.
            let held = reader.next_held();
            drop(reader);
            return match held {
                Some(incoming) => Poll::Ready(Some(incoming)),
                None => this.end(),
            };
        }
        reader.asked = true;
        if let Some(incoming) = reader.next_held() {
            return Poll::Ready(Some(incoming));
        }
        match reader.poll_read(cx) {
            Poll::Ready(Some(read)) => Poll::Ready(Some(read.incoming)),
            Poll::Ready(None) => {
                drop(reader);
                this.end()
            }
            Poll::Pending => {
                if !reader
                    .route
                    .as_ref()
                    .is_some_and(|w| w.will_wake(cx.waker()))
                {
                    reader.route = Some(cx.waker().clone());
                }
                drop(reader);
                match this.closing.as_mut().poll(cx) {
                    // The transport closed: what the keeper holds goes out, then the end.
                    Poll::Ready(()) => {
                        this.closed = true;
                        Pin::new(this).poll_next(cx)
                    }
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }
}

/// Once a `Service` route has every acknowledgement: commits them, within
/// `patience` (a commit blocks while the group's coordinator is away); the
/// number of acknowledged records the group is not known to have committed.
async fn settle(consumed: LastHoldOffAsync, patience: Duration) -> usize {
    let Some(consumed) = consumed.0.clone() else {
        return 0;
    };
    let committing = consumed.clone();
    let committed = tokio::task::spawn_blocking(move || consumer::commit_acknowledged(&committing));
    match tokio::time::timeout(patience, committed).await {
        Ok(Ok(uncommitted)) => uncommitted,
        _ => {
            tracing::warn!(topic = %consumed.topic, ?patience, "kafka: the final commit did not finish in time; the group may deliver acknowledged records again");
            lock_book(&consumed).uncommitted()
        }
    }
}

fn lock_book(consumed: &Consumed) -> MutexGuard<'_, super::acks::AckBook> {
    consumed.book.lock().unwrap_or_else(|e| e.into_inner())
}

/// A hold on a consumer for the settle hook, let go of off the async
/// threads if it is the last one (when its subscription is dropped without
/// a `Service` calling the hook).
struct LastHoldOffAsync(Option<Arc<Consumed>>);

impl Drop for LastHoldOffAsync {
    fn drop(&mut self) {
        if let Some(consumed) = self.0.take() {
            let_go_off_async(consumed);
        }
    }
}

/// Drops `hold`, on a blocking thread if it is the last one and a runtime
/// runs here: what it holds may close a consumer, which blocks.
fn let_go_off_async<T: Send + Sync + 'static>(hold: Arc<T>) {
    if Arc::strong_count(&hold) == 1 {
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            drop(runtime.spawn_blocking(move || drop(hold)));
        }
    }
}

/// Commits what was acknowledged and lets the consumer leave its group once
/// its subscription is gone.
struct LeaveGroup(Option<Arc<Consumed>>);

impl Drop for LeaveGroup {
    fn drop(&mut self) {
        let Some(consumed) = self.0.take() else {
            return;
        };
        let leave = move || {
            if consumed.commits {
                consumer::commit_acknowledged(&consumed);
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

/// The record as an [`Incoming`] whose acker books its offset, or `None` for
/// a record of a reserved topic that a pattern subscription passes over.
fn read(
    record: &rdkafka::message::BorrowedMessage<'_>,
    consumed: &Arc<Consumed>,
    context: &RecordContext,
    last_topic: &mut Option<Arc<str>>,
) -> Option<Read> {
    if consumed.pattern && super::topics::is_reserved(record.topic()) {
        return None;
    }
    let topic = match last_topic {
        // A plain subscription reads its one topic: no need to read (and
        // check as UTF-8) the record's.
        Some(last) if !consumed.pattern || **last == *record.topic() => last.clone(),
        _ => last_topic.insert(Arc::from(record.topic())).clone(),
    };
    let (partition, offset) = ((topic, record.partition()), record.offset());
    consumed
        .book
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .delivered(partition.clone(), offset);
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
        partition: partition.clone(),
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
    Some(Read {
        incoming,
        partition,
        offset,
    })
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
    /// ([`consumer::store_acknowledged`]).
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
        if !consumed.taking.load(Ordering::Acquire) {
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
