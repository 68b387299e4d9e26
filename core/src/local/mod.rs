//! In-process delivery: subscriptions with bounded queues, fan-out, queue groups
//! and request/reply inside one process. The memory backend is this; the HTTP
//! backend uses it to hand what arrives over HTTP to its local subscribers.

mod hub;

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use futures_core::Stream;
use tokio::sync::mpsc::error::{SendError, TrySendError};
use tokio::sync::{mpsc, oneshot, watch};

use crate::error::{Error, Result};
use crate::incoming::{Incoming, Responder};
use crate::inline::{InlineAnswer, InlineSlot, RunsToCompletion};
use crate::message::Message;
use crate::subscription::Subscription;
use crate::transport::{GroupAddress, Recipients};
pub use hub::Interest;
use hub::{Group, Hub, Member, Routes};

/// Which local subscribers a delivery goes to.
#[derive(Debug, Clone, Copy)]
pub enum Targets<'a> {
    /// Every plain subscriber and one member of every queue group.
    All,
    /// Plain subscribers only if `plain`, and one member of each listed
    /// (pattern, group) pair.
    Only {
        /// Whether plain (group-less) subscribers get it.
        plain: bool,
        /// The (pattern, group) pairs that get it, one member each.
        groups: &'a [(String, String)],
    },
}

impl Targets<'_> {
    fn plain(&self) -> bool {
        match self {
            Targets::All => true,
            Targets::Only { plain, .. } => *plain,
        }
    }

    fn includes(&self, pattern: &str, group: &str) -> bool {
        match self {
            Targets::All => true,
            Targets::Only { groups, .. } => groups.iter().any(|(p, g)| p == pattern && g == group),
        }
    }
}

/// A handle on an in-process hub.
#[derive(Clone)]
pub struct LocalRouter {
    hub: Arc<Hub>,
}

impl LocalRouter {
    /// The process-wide hub called `name` (shared by every router with that name).
    pub fn named(name: &str) -> Self {
        LocalRouter {
            hub: Hub::named(name),
        }
    }

    /// A hub of its own, shared with nobody.
    pub fn private() -> Self {
        LocalRouter {
            hub: Arc::new(Hub::default()),
        }
    }

    /// A fresh id, used to tag the subscriptions of one connection.
    pub fn next_id(&self) -> u64 {
        self.hub.next_id()
    }

    /// Whether anyone here is subscribed to `subject`.
    pub fn has_subscribers(&self, subject: &str) -> bool {
        self.hub.routes().matching(subject).next().is_some()
    }

    /// Subscribes with a queue of `buffer` messages; live when this returns.
    pub fn subscribe(
        &self,
        owner: u64,
        pattern: &str,
        group: Option<&str>,
        buffer: usize,
    ) -> Subscription {
        let (queue, receiver) = mpsc::channel(buffer);
        let inline = Arc::new(InlineSlot::default());
        let member = Member {
            queue,
            inline: inline.clone(),
        };
        let id = self.hub.add(owner, pattern, group, member);
        let stream = LocalStream {
            receiver,
            hub: self.hub.clone(),
            id,
        };
        // Leaving the hub drops its end of the queue: what is queued stays readable, then the stream ends.
        let hub = self.hub.clone();
        Subscription::new(pattern, group.map(str::to_owned), stream)
            .with_inline_slot(inline)
            .with_stop(move || hub.remove(id))
    }

    /// Ends every subscription of `owner` once its queued messages are read.
    pub fn remove_owner(&self, owner: u64) {
        self.hub.remove_owner(owner);
    }

    /// The distinct (pattern, group) pairs subscribed, and the generation they belong to.
    pub fn subscriptions(&self) -> (u64, Vec<Interest>) {
        self.hub.subscriptions()
    }

    /// Notified whenever the set of subscriptions changes.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.hub.changes()
    }

    /// Publishes to the chosen local subscribers; returns how many received it.
    /// Waits while a subscriber's queue is full (backpressure).
    pub async fn publish(&self, subject: &str, message: Message, targets: Targets<'_>) -> usize {
        let routes = self.hub.routes();
        self.deliver(&routes, subject, message, None, targets, None)
            .await
    }

    /// [`publish`](Self::publish), saying who took it.
    pub async fn publish_to(
        &self,
        subject: &str,
        message: Message,
        targets: Targets<'_>,
    ) -> Recipients {
        let routes = self.hub.routes();
        let mut taken = Recipients::default();
        self.deliver(&routes, subject, message, None, targets, Some(&mut taken))
            .await;
        taken
    }

    /// The queue groups subscribed here whose pattern matches `subject`.
    pub fn live_groups(&self, subject: &str) -> Vec<GroupAddress> {
        let routes = self.hub.routes();
        let mut groups = Vec::new();
        for target in routes.matching(subject) {
            for group in &target.groups {
                groups.push((target.pattern.to_string(), group.name.to_string()));
            }
        }
        groups
    }

    /// Sends a request to the chosen local subscribers and waits up to `timeout`
    /// for the first reply.
    pub async fn request(
        &self,
        subject: &str,
        message: Message,
        timeout: Duration,
        targets: Targets<'_>,
    ) -> Result<Message> {
        // A deadline already spent (a caller passing on what little it had
        // left) is the caller's timeout, not a responder's failure.
        if timeout.is_zero() {
            return Err(Error::Timeout {
                subject: subject.to_owned(),
                timeout,
            });
        }
        // `None` for a timeout too long to represent: no deadline, not a panic.
        let deadline = std::time::Instant::now().checked_add(timeout);
        // A responder skips a request whose deadline passed before it ran:
        // the caller hears `Timeout`, as it would have a moment later.
        let unanswered = |what: &str| match deadline {
            Some(deadline) if std::time::Instant::now() >= deadline => Error::Timeout {
                subject: subject.to_owned(),
                timeout,
            },
            _ => Error::remote(subject, None, what),
        };
        let routes = self.hub.routes();
        if let Some((subject_shared, answerer)) = sole_inline_recipient(&routes, subject, targets) {
            let answer = RunsToCompletion::new(answerer.answer(subject_shared, message, deadline));
            let exchange = async {
                answer
                    .await
                    .ok_or_else(|| unanswered("the responder stopped before answering"))
            };
            return crate::error::within(subject, timeout, exchange).await;
        }
        let (sender, receiver) = oneshot::channel();
        let exchange = async {
            let slot = Arc::new(ReplySlot(Mutex::new(Some(sender)), deadline));
            let delivered = self
                .deliver(&routes, subject, message, Some(&slot), targets, None)
                .await;
            // From here only the responders hold the slot: if they all drop it, the receiver wakes.
            drop(slot);
            if delivered == 0 {
                return Err(Error::NoResponders {
                    subject: subject.to_owned(),
                });
            }
            receiver
                .await
                .map_err(|_| unanswered("the responder dropped the request without replying"))
        };
        crate::error::within(subject, timeout, exchange).await
    }

    async fn deliver(
        &self,
        routes: &Routes,
        subject: &str,
        message: Message,
        reply: Option<&Arc<ReplySlot>>,
        targets: Targets<'_>,
        mut taken: Option<&mut Recipients>,
    ) -> usize {
        let incoming = |subject: Arc<str>, message: Message| {
            let incoming = Incoming::new(subject, message);
            match reply {
                Some(slot) => {
                    let incoming = incoming.with_responder(Box::new(LocalResponder(slot.clone())));
                    match slot.1 {
                        Some(deadline) => incoming.with_deadline(deadline),
                        None => incoming,
                    }
                }
                None => incoming,
            }
        };
        let mut delivered = 0;
        let mut wildcard_subject: Option<Arc<str>> = None;
        // Each recipient is sent to once the next one is known, so the last
        // one gets the message itself and only the others a clone: a single
        // recipient costs no clone (whose first one allocates for the payload).
        let mut previous: Option<(Recipient<'_>, Arc<str>)> = None;
        for target in routes.matching(subject) {
            let subject = match &target.subject {
                Some(shared) => shared.clone(),
                None => wildcard_subject
                    .get_or_insert_with(|| subject.into())
                    .clone(),
            };
            let plain = targets
                .plain()
                .then_some(&target.plain)
                .into_iter()
                .flatten()
                .map(Recipient::Plain);
            let groups = target
                .groups
                .iter()
                .filter(|g| targets.includes(&target.pattern, &g.name))
                .map(|group| Recipient::Group(&target.pattern, group));
            for recipient in plain.chain(groups) {
                if let Some((before, its_subject)) = previous.replace((recipient, subject.clone()))
                {
                    let copy = incoming(its_subject, message.clone());
                    delivered += usize::from(before.send(copy, taken.as_deref_mut()).await);
                }
            }
        }
        if let Some((last, its_subject)) = previous {
            let original = incoming(its_subject, message);
            delivered += usize::from(last.send(original, taken).await);
        }
        delivered
    }
}

/// One recipient of a delivery: a plain subscriber, or a queue group (one
/// of whose members takes it).
enum Recipient<'a> {
    Plain(&'a Member),
    Group(&'a Arc<str>, &'a Group),
}

impl Recipient<'_> {
    /// Sends `incoming`; whether it was taken, noted in `taken` if asked.
    /// A queue with room takes it at once; only a full one is waited for,
    /// in a boxed future, so a delivery's own future stays small.
    async fn send(self, incoming: Incoming, taken: Option<&mut Recipients>) -> bool {
        let sent = match self.try_send(incoming) {
            Ok(sent) => sent,
            Err(incoming) => Box::pin(self.send_waiting(incoming)).await,
        };
        if let (true, Some(taken)) = (sent, taken) {
            match self {
                Recipient::Plain(_) => taken.plain = true,
                Recipient::Group(pattern, group) => taken
                    .groups
                    .push((pattern.to_string(), group.name.to_string())),
            }
        }
        sent
    }

    /// Sends without waiting: whether it was taken, or the message back
    /// when every queue it may go to is full.
    fn try_send(&self, incoming: Incoming) -> std::result::Result<bool, Incoming> {
        match self {
            Recipient::Plain(member) => match member.queue.try_send(incoming) {
                Ok(()) => Ok(true),
                Err(TrySendError::Closed(_)) => Ok(false),
                Err(TrySendError::Full(back)) => Err(back),
            },
            Recipient::Group(_, group) => try_send_to_group(group, incoming),
        }
    }

    /// Sends, waiting for room: whether it was taken.
    async fn send_waiting(&self, incoming: Incoming) -> bool {
        match self {
            Recipient::Plain(member) => member.queue.send(incoming).await.is_ok(),
            Recipient::Group(_, group) => send_to_group_waiting(group, incoming).await,
        }
    }
}

/// The route that answers a request inline: only when the request has exactly
/// one recipient (one plain subscriber or one queue group) and that
/// subscription is a `Service` route that installed an answerer. With the
/// subject as deliveries share it.
fn sole_inline_recipient(
    routes: &Routes,
    subject: &str,
    targets: Targets<'_>,
) -> Option<(Arc<str>, Arc<dyn InlineAnswer>)> {
    let mut sole: Option<(&hub::Target, &Group)> = None;
    for target in routes.matching(subject) {
        if targets.plain() && !target.plain.is_empty() {
            return None;
        }
        for group in target
            .groups
            .iter()
            .filter(|g| targets.includes(&target.pattern, &g.name))
        {
            if sole.replace((target, group)).is_some() {
                return None;
            }
        }
    }
    let (target, group) = sole?;
    // The rotation moves on only if this member answers inline; otherwise
    // the queue delivery below takes its turn from the same place.
    let next = group.cursor.load(std::sync::atomic::Ordering::Relaxed);
    let member = &group.members[next % group.members.len()];
    let answerer = member.inline.get()?;
    group
        .cursor
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let subject = target.subject.clone().unwrap_or_else(|| subject.into());
    Some((subject, answerer))
}

/// Sends to one member of a group without waiting: the next in rotation
/// with room in its queue; the message back when none has room.
fn try_send_to_group(group: &Group, mut incoming: Incoming) -> std::result::Result<bool, Incoming> {
    let count = group.members.len();
    let start = group
        .cursor
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    for step in 0..count {
        match group.members[(start + step) % count]
            .queue
            .try_send(incoming)
        {
            Ok(()) => return Ok(true),
            Err(TrySendError::Full(back) | TrySendError::Closed(back)) => incoming = back,
        }
    }
    // No member took it (all full, or all gone): wait for one, in rotation.
    match count {
        0 => Ok(false),
        _ => Err(incoming),
    }
}

/// The group's members in rotation, each waited for until one takes `incoming`.
async fn send_to_group_waiting(group: &Group, mut incoming: Incoming) -> bool {
    let count = group.members.len();
    let start = group
        .cursor
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    for step in 0..count {
        match group.members[(start + step) % count]
            .queue
            .send(incoming)
            .await
        {
            Ok(()) => return true,
            Err(SendError(back)) => incoming = back,
        }
    }
    false
}

/// The reply channel of one request, shared by every subscriber that received
/// it: the first reply wins, later ones are dropped. It also holds when the
/// requester stops waiting, so a handler busy past it is not started.
struct ReplySlot(
    Mutex<Option<oneshot::Sender<Message>>>,
    Option<std::time::Instant>,
);

struct LocalResponder(Arc<ReplySlot>);

#[async_trait]
impl Responder for LocalResponder {
    async fn respond(self: Box<Self>, reply: Message) -> Result<()> {
        let sender = self.0 .0.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(sender) = sender {
            // The requester may have timed out already; a late reply is dropped, as on NATS.
            let _ = sender.send(reply);
        }
        Ok(())
    }
}

/// A subscription's queue; dropping it unsubscribes.
struct LocalStream {
    receiver: mpsc::Receiver<Incoming>,
    hub: Arc<Hub>,
    id: u64,
}

impl Stream for LocalStream {
    type Item = Incoming;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Incoming>> {
        self.get_mut().receiver.poll_recv(cx)
    }
}

impl Drop for LocalStream {
    fn drop(&mut self) {
        self.hub.remove(self.id);
    }
}
