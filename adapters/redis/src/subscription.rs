//! A subscription: requests from pub/sub (`SUBSCRIBE`/`PSUBSCRIBE` on a
//! connection of its own) and events read from the subject's streams by a
//! reader task (blocking reads need their own connection too).
//!
//! Without a group, events are read with `XREAD` from the moment of
//! subscribing, at most once. With a group, the streams get a consumer
//! group of that name (created at its first subscription, reading from the
//! stream's first entry unless `group_start=latest`; kept while the group
//! is away); events are read with `XREADGROUP`, acknowledged with
//! `XACK`, handed again at once when nacked (`XCLAIM`), and claimed from a
//! member that took them and went quiet for `claim_idle` (`XAUTOCLAIM`).
//! A request reaches one member of a group: the members race to `SET NX`
//! a claim key for it.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures_core::Stream;
use futures_util::StreamExt;
use redis::aio::ConnectionManager;
use redis::{PushInfo, PushKind};
use tokio::sync::{mpsc, watch};

use super::acks::{Acked, GroupAcks};
use super::connection::{manager, Shared};
use super::convert::{self, Entry};
use super::settings::GroupStart;
use switchboard_core::error::{Error, Result};
use switchboard_core::incoming::{Acker, Incoming, Responder};
use switchboard_core::message::Message;
use switchboard_core::subject;
use switchboard_core::subscription::Subscription;
use switchboard_core::wire;

/// How long one blocking read waits: also how soon a stopped reader
/// notices, and how soon a wildcard reader starts on a new subject.
const BLOCK: Duration = Duration::from_millis(200);
/// Requests a subscription holds before its handler takes them; more are
/// dropped with a warning (their callers time out), as a slow consumer's.
const REQUEST_BUFFER: usize = 65_536;
/// How often a wildcard reader reads the subject set again (a subject
/// announced while its connection was down is found this way).
const RESCAN: Duration = Duration::from_secs(5);

/// What the pub/sub side and the reader hand the subscription.
enum Delivery {
    Ready(Incoming),
    /// A request a group member must win (`SET NX` of the key) to handle.
    Claim(Incoming, String),
}

/// Subscribes: the request channel (and, for a pattern, the channel new
/// subjects are announced on), the consumer group on every matching stream,
/// then starts the reader. Returns once all of that is live.
pub(crate) async fn subscribe(
    shared: Arc<Shared>,
    pattern: &str,
    group: Option<&str>,
) -> Result<Subscription> {
    let settings = &shared.settings;
    let wildcard = subject::is_pattern(pattern);
    let (inbox, events) = mpsc::channel::<Delivery>(settings.prefetch);
    // The pub/sub side hands requests over until the subscription stops, in
    // a buffer of their own: a backlog of events never crowds them out.
    let (requests_tx, requests) = mpsc::channel::<Delivery>(REQUEST_BUFFER);
    let requests_inbox = Arc::new(Mutex::new(Some(requests_tx)));
    let (announced, new_subjects) = mpsc::unbounded_channel::<String>();
    let pushed = Pushed {
        pattern: pattern.into(),
        group: group.map(Into::into),
        request_prefix: settings.request_channel(""),
        reply_prefix: settings.reply_prefix(),
        new_subject_channel: settings.new_subject_channel(),
        claim_prefix: format!("{}:claim:", settings.prefix),
        commands: shared.commands.clone(),
        inbox: requests_inbox.clone(),
        announced,
    };
    let push = move |push: PushInfo| -> std::result::Result<(), std::convert::Infallible> {
        pushed.take(push);
        Ok(())
    };
    let mut pubsub = manager(
        &shared.client,
        settings,
        Some(push),
        Some(settings.command_timeout),
    )
    .await?;
    let channel = settings.request_channel(pattern);
    if wildcard {
        pubsub
            .psubscribe(convert::glob(&channel))
            .await
            .map_err(convert::error)?;
        pubsub
            .subscribe(settings.new_subject_channel())
            .await
            .map_err(convert::error)?;
    } else {
        pubsub.subscribe(&channel).await.map_err(convert::error)?;
    }
    // Events added from now on: the server's clock, as stream ids are.
    let (seconds, micros): (u64, u64) = redis::cmd("TIME")
        .query_async(&mut pubsub)
        .await
        .map_err(convert::error)?;
    let now_ms = seconds * 1000 + micros / 1000;
    let start = format!("{}-{}", now_ms.saturating_sub(1), u64::MAX);
    let group_name: Option<Arc<str>> = group.map(Into::into);
    let acks = group_name
        .clone()
        .map(|name| Arc::new(GroupAcks::new(name)));
    let mut reader = Reader {
        shared: shared.clone(),
        pattern: pattern.into(),
        group: group_name,
        acks: acks.clone(),
        consumer: format!("{:016x}", fastrand::u64(..)),
        start,
        streams: Vec::new(),
        connection: manager(
            &shared.client,
            settings,
            None::<fn(PushInfo) -> std::result::Result<(), std::convert::Infallible>>,
            Some(BLOCK + settings.command_timeout),
        )
        .await?,
        inbox,
        requests_inbox: requests_inbox.clone(),
        new_subjects,
        redeliver: mpsc::unbounded_channel(),
    };
    let subjects: Vec<String> = if wildcard {
        redis::cmd("SMEMBERS")
            .arg(settings.subjects_key())
            .query_async(&mut pubsub)
            .await
            .map_err(convert::error)?
    } else {
        vec![pattern.to_owned()]
    };
    for subject in subjects {
        reader.follow(&subject).await?;
    }
    let (stop, stopped) = watch::channel(false);
    let requests_stop = requests_inbox.clone();
    tokio::spawn(reader.run(stopped));
    let commands = shared.commands.clone();
    let deliveries = futures_util::stream::select(tokio_stream(requests), tokio_stream(events));
    let deliveries = deliveries.filter_map(move |delivery| {
        let mut commands = commands.clone();
        async move {
            match delivery {
                Delivery::Ready(incoming) => Some(incoming),
                Delivery::Claim(incoming, key) => {
                    // The first member to set the key answers; it expires
                    // after the request's own timeout.
                    let won: Option<String> = claim_script()
                        .key(&key)
                        .arg(claim_ttl(&incoming))
                        .invoke_async(&mut commands)
                        .await
                        .unwrap_or_else(|err| {
                            tracing::warn!(error = %err, "redis: could not claim a request for the group");
                            None
                        });
                    won.map(|_| incoming)
                }
            }
        }
    });
    let stream = Owned {
        _pubsub: pubsub,
        _stop: stop.clone(),
        inner: Box::pin(deliveries),
    };
    let mut subscription =
        Subscription::new(pattern, group.map(str::to_owned), stream).with_stop(move || {
            // New requests are no longer taken and the reader stops after
            // the read in hand; what was handed over stays readable.
            requests_stop
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take();
            stop.send_replace(true);
        });
    if let Some(acks) = acks {
        let patience = settings.command_timeout;
        subscription =
            subscription.with_settle(move || async move { acks.not_sent(patience).await });
    }
    Ok(subscription)
}

/// `SET KEY 1 NX PX TTL`, kept out of the append-only file and replicas
/// (`redis.set_repl`): a claim lives only as long as its request, so a
/// server that syncs every write to disk does not sync one per request.
fn claim_script() -> &'static redis::Script {
    static SCRIPT: std::sync::OnceLock<redis::Script> = std::sync::OnceLock::new();
    SCRIPT.get_or_init(|| {
        redis::Script::new(
            "redis.set_repl(redis.REPL_NONE)\n\
             return redis.call('SET', KEYS[1], '1', 'NX', 'PX', ARGV[1])",
        )
    })
}

/// How long a request's claim key lives: the caller's timeout (at least a
/// second), or a minute.
fn claim_ttl(incoming: &Incoming) -> u64 {
    incoming
        .deadline()
        .map(|deadline| {
            deadline
                .saturating_duration_since(Instant::now())
                .as_millis() as u64
        })
        .unwrap_or(60_000)
        .max(1_000)
}

fn tokio_stream<T: Send + 'static>(
    mut receiver: mpsc::Receiver<T>,
) -> impl Stream<Item = T> + Send + 'static {
    futures_util::stream::poll_fn(move |cx| receiver.poll_recv(cx))
}

/// What the subscription's pub/sub connection pushes, taken apart.
struct Pushed {
    pattern: Arc<str>,
    group: Option<Arc<str>>,
    request_prefix: String,
    reply_prefix: String,
    new_subject_channel: String,
    claim_prefix: String,
    commands: ConnectionManager,
    inbox: Arc<Mutex<Option<mpsc::Sender<Delivery>>>>,
    announced: mpsc::UnboundedSender<String>,
}

impl Pushed {
    fn take(&self, push: PushInfo) {
        let (channel, payload) = match (push.kind, push.data.as_slice()) {
            (PushKind::Message, [channel, payload]) => (channel, payload),
            (PushKind::PMessage, [_pattern, channel, payload]) => (channel, payload),
            _ => return,
        };
        let (Some(channel), Some(payload)) =
            (convert::value_bytes(channel), convert::value_bytes(payload))
        else {
            return;
        };
        let Ok(channel) = std::str::from_utf8(channel) else {
            return;
        };
        if channel == self.new_subject_channel {
            if let Ok(subject) = std::str::from_utf8(payload) {
                let _ = self.announced.send(subject.to_owned());
            }
            return;
        }
        let Some(subject) = channel.strip_prefix(&self.request_prefix) else {
            return;
        };
        // `*` in a channel glob also crosses dots.
        if !subject::matches(&self.pattern, subject) {
            return;
        }
        let mut message = match convert::unframe(payload) {
            Ok(message) => message,
            Err(reason) => {
                tracing::warn!(%subject, %reason, "redis: a request that is not a switchboard frame was dropped");
                return;
            }
        };
        let (Some(reply_to), Some(correlation)) = (
            message.headers.remove(wire::REPLY_TO),
            message.headers.remove(wire::CORRELATION_ID),
        ) else {
            tracing::warn!(%subject, "redis: a request without a reply address was dropped");
            return;
        };
        let timeout = message
            .headers
            .remove(wire::TIMEOUT_MS)
            .and_then(|ms| ms.parse::<u64>().ok());
        let claim = self
            .group
            .as_ref()
            .map(|group| format!("{}{group}:{reply_to}:{correlation}", self.claim_prefix));
        let mut incoming = Incoming::new(subject.into(), message).with_responder(Box::new(Reply {
            commands: self.commands.clone(),
            reply_to,
            reply_prefix: self.reply_prefix.clone(),
            correlation,
        }));
        if let Some(ms) = timeout {
            incoming = incoming.with_deadline(Instant::now() + Duration::from_millis(ms));
        }
        let delivery = match claim {
            Some(key) => Delivery::Claim(incoming, key),
            None => Delivery::Ready(incoming),
        };
        let inbox = self.inbox.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(inbox) = inbox.as_ref() {
            if inbox.try_send(delivery).is_err() {
                tracing::warn!(%subject, "redis: a request was dropped: the subscription's buffer is full");
            }
        }
    }
}

/// Answers one request on the requester's reply channel.
struct Reply {
    commands: ConnectionManager,
    reply_to: String,
    reply_prefix: String,
    correlation: String,
}

#[async_trait]
impl Responder for Reply {
    async fn respond(self: Box<Self>, mut reply: Message) -> Result<()> {
        // The address comes from whoever sent the request: only reply
        // channels are published to.
        if !self.reply_to.starts_with(&self.reply_prefix) {
            return Err(Error::InvalidHeader {
                name: wire::REPLY_TO.to_owned(),
                reason: format!(
                    "`{}` is not a reply channel (they start with `{}`)",
                    self.reply_to, self.reply_prefix
                ),
            });
        }
        reply
            .headers
            .insert(wire::CORRELATION_ID, self.correlation.as_str());
        let mut commands = self.commands;
        redis::cmd("PUBLISH")
            .arg(&self.reply_to)
            .arg(convert::frame(&reply).as_ref())
            .query_async::<()>(&mut commands)
            .await
            .map_err(convert::error)
    }
}

/// A nacked event: its stream key and id.
type Nacked = (Arc<str>, String);

/// One stream the reader reads, and where it is in it.
struct Followed {
    key: Arc<str>,
    subject: Arc<str>,
    /// The last id read (`XREAD`), or `>` (`XREADGROUP`).
    position: String,
    claimed_at: Instant,
}

/// Reads the subscription's streams and hands the events over.
struct Reader {
    shared: Arc<Shared>,
    pattern: Arc<str>,
    group: Option<Arc<str>>,
    /// The group's acknowledgements, counted for the subscription's settle.
    acks: Option<Arc<GroupAcks>>,
    consumer: String,
    /// The moment of subscribing as a stream position: where a
    /// subscription without a group starts (and a new group, with
    /// `group_start=latest`).
    start: String,
    streams: Vec<Followed>,
    connection: ConnectionManager,
    inbox: mpsc::Sender<Delivery>,
    /// The pub/sub side's way in, closed when the reader ends so the
    /// subscription ends after what it holds.
    requests_inbox: Arc<Mutex<Option<mpsc::Sender<Delivery>>>>,
    new_subjects: mpsc::UnboundedReceiver<String>,
    /// Events nacked, to hand over again: (stream key, id).
    redeliver: (
        mpsc::UnboundedSender<Nacked>,
        mpsc::UnboundedReceiver<Nacked>,
    ),
}

impl Reader {
    /// Starts reading `subject`'s stream (creating the group on it).
    async fn follow(&mut self, subject: &str) -> Result<()> {
        if !subject::matches(&self.pattern, subject) || subject::validate(subject).is_err() {
            return Ok(());
        }
        let key = self.shared.settings.stream(subject);
        if self.streams.iter().any(|followed| *followed.key == *key) {
            return Ok(());
        }
        let position = match &self.group {
            Some(group) => {
                // A new group reads the stream from its first entry (or,
                // with `group_start=latest`, from the moment of subscribing).
                let from = match self.shared.settings.group_start {
                    GroupStart::Earliest => "0",
                    GroupStart::Latest => self.start.as_str(),
                };
                create_group(&mut self.connection, &key, group, from).await?;
                ">".to_owned()
            }
            None => self.start.clone(),
        };
        self.streams.push(Followed {
            key: key.into(),
            subject: subject.into(),
            position,
            claimed_at: Instant::now(),
        });
        Ok(())
    }

    async fn run(mut self, stopped: watch::Receiver<bool>) {
        let requests_inbox = self.requests_inbox.clone();
        self.read_until(stopped).await;
        requests_inbox
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
    }

    async fn read_until(&mut self, mut stopped: watch::Receiver<bool>) {
        let closed = self.shared.closed.clone();
        let mut scanned = Instant::now();
        let mut failures = 0u32;
        loop {
            if *stopped.borrow() || *closed.borrow() {
                return;
            }
            while let Ok(subject) = self.new_subjects.try_recv() {
                if let Err(err) = self.follow(&subject).await {
                    tracing::warn!(%subject, error = %err, "redis: could not follow a new subject");
                }
            }
            if subject::is_pattern(&self.pattern) && scanned.elapsed() >= RESCAN {
                scanned = Instant::now();
                self.rescan().await;
            }
            let outcome = async {
                self.redeliver_nacked().await?;
                self.claim_idle().await?;
                self.read().await
            };
            let delivered = tokio::select! {
                outcome = outcome => outcome,
                _ = stopped.changed() => return,
                () = closing(closed.clone()) => return,
            };
            self.shared.reachability.record(&delivered);
            match delivered {
                Ok(()) => failures = 0,
                Err(err) => {
                    failures += 1;
                    if err.code() == Some("NOGROUP") {
                        // The server lost the group (a restart without its
                        // data): make it again from the stream's start.
                        self.recreate_groups().await;
                    } else if failures == 1 || failures.is_multiple_of(50) {
                        tracing::warn!(pattern = %self.pattern, error = %err, "redis: reading events failed; retrying");
                    }
                    let pause = Duration::from_millis(50 * u64::from(failures.min(20)));
                    tokio::select! {
                        () = tokio::time::sleep(pause) => {}
                        _ = stopped.changed() => return,
                        () = closing(closed.clone()) => return,
                    }
                }
            }
        }
    }

    async fn rescan(&mut self) {
        let subjects: redis::RedisResult<Vec<String>> = redis::cmd("SMEMBERS")
            .arg(self.shared.settings.subjects_key())
            .query_async(&mut self.connection)
            .await;
        if let Ok(subjects) = subjects {
            for subject in subjects {
                let _ = self.follow(&subject).await;
            }
        }
    }

    async fn recreate_groups(&mut self) {
        let Some(group) = self.group.clone() else {
            return;
        };
        for index in 0..self.streams.len() {
            let key = self.streams[index].key.clone();
            let _ = create_group(&mut self.connection, &key, &group, "0").await;
        }
    }

    /// Hands nacked events over again (`XCLAIM` to this consumer, which
    /// counts the delivery).
    async fn redeliver_nacked(&mut self) -> redis::RedisResult<()> {
        let Some(group) = self.group.clone() else {
            return Ok(());
        };
        let mut nacked: HashMap<Arc<str>, Vec<String>> = HashMap::new();
        while let Ok((key, id)) = self.redeliver.1.try_recv() {
            nacked.entry(key).or_default().push(id);
        }
        for (key, ids) in nacked {
            let claimed: redis::Value = redis::cmd("XCLAIM")
                .arg(&*key)
                .arg(&*group)
                .arg(&self.consumer)
                .arg(0)
                .arg(&ids)
                .query_async(&mut self.connection)
                .await?;
            let Some((key, subject)) = self.followed(&key) else {
                continue;
            };
            for entry in convert::entries(&claimed) {
                self.hand_over(&key, &subject, entry).await;
            }
        }
        Ok(())
    }

    /// Claims what other members of the group took and left pending for
    /// `claim_idle` (a member that crashed), every half of that time.
    async fn claim_idle(&mut self) -> redis::RedisResult<()> {
        let Some(group) = self.group.clone() else {
            return Ok(());
        };
        let idle = self.shared.settings.claim_idle;
        for index in 0..self.streams.len() {
            if self.streams[index].claimed_at.elapsed() < idle / 2 {
                continue;
            }
            self.streams[index].claimed_at = Instant::now();
            let key = self.streams[index].key.clone();
            let subject = self.streams[index].subject.clone();
            let mut cursor = "0-0".to_owned();
            loop {
                let reply: redis::Value = redis::cmd("XAUTOCLAIM")
                    .arg(&*key)
                    .arg(&*group)
                    .arg(&self.consumer)
                    .arg(idle.as_millis() as u64)
                    .arg(&cursor)
                    .arg("COUNT")
                    .arg(self.shared.settings.prefetch)
                    .query_async(&mut self.connection)
                    .await?;
                let (next, claimed) = convert::autoclaim_reply(&reply);
                for entry in claimed {
                    self.hand_over(&key, &subject, entry).await;
                }
                if next == "0-0" {
                    break;
                }
                cursor = next;
            }
        }
        Ok(())
    }

    /// One blocking read over every stream followed.
    async fn read(&mut self) -> redis::RedisResult<()> {
        if self.streams.is_empty() {
            tokio::time::sleep(BLOCK).await;
            return Ok(());
        }
        let settings = &self.shared.settings;
        let mut read = match &self.group {
            Some(group) => {
                let mut read = redis::cmd("XREADGROUP");
                read.arg("GROUP").arg(&**group).arg(&self.consumer);
                read
            }
            None => redis::cmd("XREAD"),
        };
        read.arg("COUNT")
            .arg(settings.prefetch)
            .arg("BLOCK")
            .arg(BLOCK.as_millis() as u64)
            .arg("STREAMS");
        for followed in &self.streams {
            read.arg(&*followed.key);
        }
        for followed in &self.streams {
            read.arg(&followed.position);
        }
        let reply: redis::Value = read.query_async(&mut self.connection).await?;
        for (key, entries) in convert::read_reply(&reply) {
            let Some((key, subject)) = self.followed(&key) else {
                continue;
            };
            for entry in entries {
                if self.group.is_none() {
                    if let Some(followed) = self.streams.iter_mut().find(|f| *f.key == *key) {
                        followed.position.clone_from(&entry.id);
                    }
                }
                self.hand_over(&key, &subject, entry).await;
            }
        }
        Ok(())
    }

    /// The stream `key` followed, as its shared key and its subject.
    fn followed(&self, key: &str) -> Option<(Arc<str>, Arc<str>)> {
        self.streams
            .iter()
            .find(|followed| *followed.key == *key)
            .map(|followed| (followed.key.clone(), followed.subject.clone()))
    }

    /// Hands one entry to the subscription (waiting while its buffer is full).
    async fn hand_over(&mut self, key: &Arc<str>, subject: &Arc<str>, entry: Entry) {
        let mut incoming = Incoming::new(subject.clone(), entry.message);
        if let Some(group) = &self.acks {
            incoming = incoming.with_acker(Box::new(Ack {
                shared: self.shared.clone(),
                key: key.clone(),
                group: group.clone(),
                id: entry.id,
                redeliver: self.redeliver.0.clone(),
            }));
        }
        let _ = self.inbox.send(Delivery::Ready(incoming)).await;
    }
}

/// Resolves when the transport closes; never when it is dropped unclosed
/// (its subscriptions go on).
async fn closing(mut closed: watch::Receiver<bool>) {
    if closed.wait_for(|closed| *closed).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// `XGROUP CREATE` at `start` (the stream is made if missing); a group
/// that exists already keeps its place.
async fn create_group(
    connection: &mut ConnectionManager,
    key: &str,
    group: &str,
    start: &str,
) -> Result<()> {
    let created: redis::RedisResult<()> = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(key)
        .arg(group)
        .arg(start)
        .arg("MKSTREAM")
        .query_async(connection)
        .await;
    match created {
        Ok(()) => Ok(()),
        Err(err) if err.code() == Some("BUSYGROUP") => Ok(()),
        Err(err) => Err(convert::error(err)),
    }
}

/// Acknowledges one event of a group (`XACK`, batched with the
/// transport's other acknowledgements), or hands it over again.
struct Ack {
    shared: Arc<Shared>,
    key: Arc<str>,
    group: Arc<GroupAcks>,
    id: String,
    redeliver: mpsc::UnboundedSender<Nacked>,
}

#[async_trait]
impl Acker for Ack {
    /// Its own `XACK`, awaited: taken only when the batching task is gone.
    async fn ack(self: Box<Self>) -> Result<()> {
        let mut commands = self.shared.commands.clone();
        redis::cmd("XACK")
            .arg(&*self.key)
            .arg(&*self.group.name)
            .arg(&self.id)
            .query_async::<()>(&mut commands)
            .await
            .map_err(convert::error)
    }

    /// Queued for the transport's next batch (see [`AckQueue`](super::acks::AckQueue)).
    fn ack_now(&mut self) -> Option<Result<()>> {
        let acked = Acked {
            key: self.key.clone(),
            group: self.group.clone(),
            id: std::mem::take(&mut self.id),
        };
        match self.shared.acks.push(acked) {
            Ok(()) => Some(Ok(())),
            Err(refused) => {
                self.id = refused.id;
                None
            }
        }
    }

    async fn nack(self: Box<Self>) -> Result<()> {
        // A stopped reader leaves it pending: another member claims it
        // after `claim_idle`.
        let _ = self.redeliver.send((self.key, self.id));
        Ok(())
    }
}

/// The subscription's stream; dropping it closes its pub/sub connection
/// and stops its reader.
struct Owned {
    _pubsub: ConnectionManager,
    _stop: watch::Sender<bool>,
    inner: Pin<Box<dyn Stream<Item = Incoming> + Send>>,
}

impl Stream for Owned {
    type Item = Incoming;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Incoming>> {
        self.inner.as_mut().poll_next(cx)
    }
}

impl Drop for Owned {
    fn drop(&mut self) {
        self._stop.send_replace(true);
    }
}
