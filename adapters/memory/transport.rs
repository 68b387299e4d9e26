//! `MemoryTransport`: one connection to an in-process hub.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use futures_core::Stream;
use tokio::sync::mpsc::error::{SendError, TrySendError};
use tokio::sync::{mpsc, oneshot};

use super::hub::{Group, Hub, Member};
use crate::capabilities::{Capabilities, Support};
use crate::drain::DrainGate;
use crate::error::{Error, Result};
use crate::incoming::{Incoming, Responder};
use crate::message::Message;
use crate::subscription::Subscription;
use crate::transport::Transport;

/// Default number of messages buffered per subscription before publishers wait.
pub const DEFAULT_BUFFER: usize = 1024;

/// Default largest payload, in bytes.
pub const DEFAULT_MAX_PAYLOAD: usize = 8 * 1024 * 1024;

/// Settings of a memory connection (the `memory://` URL options).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct MemoryOptions {
    /// Messages buffered per subscription; when full, publishers wait (backpressure).
    pub buffer: usize,
    /// Largest payload accepted, in bytes.
    pub max_payload: usize,
}

impl Default for MemoryOptions {
    fn default() -> Self {
        MemoryOptions {
            buffer: DEFAULT_BUFFER,
            max_payload: DEFAULT_MAX_PAYLOAD,
        }
    }
}

/// A connection to the in-process hub of its name.
///
/// Connections to the same hub name (`memory://` is the unnamed default) see
/// each other's messages; different names are isolated from each other.
pub struct MemoryTransport {
    hub: Arc<Hub>,
    id: u64,
    gate: DrainGate,
    buffer: usize,
    capabilities: Capabilities,
}

impl MemoryTransport {
    /// Connects to the hub called `name` with default settings.
    pub fn new(name: &str) -> Self {
        Self::with_options(name, MemoryOptions::default())
    }

    /// Connects to the hub called `name`.
    pub fn with_options(name: &str, options: MemoryOptions) -> Self {
        let hub = Hub::named(name);
        let id = hub.next_id();
        let mut capabilities = Capabilities::full("memory", options.max_payload);
        capabilities.acknowledgements = Support::No(
            "in-process delivery is at-most-once: nothing is stored, so there is nothing to redeliver",
        );
        MemoryTransport {
            hub,
            id,
            gate: DrainGate::new(),
            buffer: options.buffer.max(1),
            capabilities,
        }
    }

    /// Delivers to every matching subscriber (one member per queue group) and
    /// returns how many received it. Waits while a subscriber's buffer is full.
    async fn deliver(
        &self,
        subject: &str,
        message: Message,
        reply: Option<&Arc<ReplySlot>>,
    ) -> usize {
        let routes = self.hub.routes();
        let mut delivered = 0;
        let mut wildcard_subject: Option<Arc<str>> = None;
        for target in routes.matching(subject) {
            let subject = match &target.subject {
                Some(shared) => shared.clone(),
                None => wildcard_subject
                    .get_or_insert_with(|| subject.into())
                    .clone(),
            };
            let incoming = || {
                let incoming = Incoming::new(subject.clone(), message.clone());
                match reply {
                    Some(slot) => incoming.with_responder(Box::new(MemoryResponder(slot.clone()))),
                    None => incoming,
                }
            };
            for member in &target.plain {
                if member.send(incoming()).await.is_ok() {
                    delivered += 1;
                }
            }
            for group in &target.groups {
                if send_to_group(group, incoming()).await {
                    delivered += 1;
                }
            }
        }
        delivered
    }
}

/// Sends to one member of a group: the next in rotation with room in its
/// buffer, or, when all are full, waits for the next in rotation.
async fn send_to_group(group: &Group, mut incoming: Incoming) -> bool {
    let count = group.members.len();
    let start = group
        .cursor
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let in_rotation = |step: usize| -> &Member { &group.members[(start + step) % count] };
    for step in 0..count {
        match in_rotation(step).try_send(incoming) {
            Ok(()) => return true,
            Err(TrySendError::Full(back) | TrySendError::Closed(back)) => incoming = back,
        }
    }
    for step in 0..count {
        match in_rotation(step).send(incoming).await {
            Ok(()) => return true,
            Err(SendError(back)) => incoming = back,
        }
    }
    false
}

/// The reply channel of one request, shared by every subscriber that received
/// it: the first reply wins, later ones are dropped.
struct ReplySlot(Mutex<Option<oneshot::Sender<Message>>>);

struct MemoryResponder(Arc<ReplySlot>);

#[async_trait]
impl Responder for MemoryResponder {
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
struct MemoryStream {
    receiver: mpsc::Receiver<Incoming>,
    hub: Arc<Hub>,
    id: u64,
}

impl Stream for MemoryStream {
    type Item = Incoming;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Incoming>> {
        self.get_mut().receiver.poll_recv(cx)
    }
}

impl Drop for MemoryStream {
    fn drop(&mut self) {
        self.hub.remove(self.id);
    }
}

#[async_trait]
impl Transport for MemoryTransport {
    async fn request(&self, subject: &str, message: Message, timeout: Duration) -> Result<Message> {
        let _in_flight = self.gate.enter()?;
        let (sender, receiver) = oneshot::channel();
        let exchange = async {
            let slot = Arc::new(ReplySlot(Mutex::new(Some(sender))));
            let delivered = self.deliver(subject, message, Some(&slot)).await;
            // From here only the responders hold the slot: if they all drop it, the receiver wakes.
            drop(slot);
            if delivered == 0 {
                return Err(Error::NoResponders {
                    subject: subject.to_owned(),
                });
            }
            receiver.await.map_err(|_| Error::Remote {
                subject: subject.to_owned(),
                message: "the responder dropped the request without replying".into(),
            })
        };
        tokio::time::timeout(timeout, exchange)
            .await
            .unwrap_or_else(|_| {
                Err(Error::Timeout {
                    subject: subject.to_owned(),
                    timeout,
                })
            })
    }

    async fn publish(&self, subject: &str, message: Message) -> Result<()> {
        let _in_flight = self.gate.enter()?;
        self.deliver(subject, message, None).await;
        Ok(())
    }

    async fn subscribe(&self, subject: &str, group: Option<&str>) -> Result<Subscription> {
        let _in_flight = self.gate.enter()?;
        let (sender, receiver) = mpsc::channel(self.buffer);
        let id = self.hub.add(self.id, subject, group, sender);
        let stream = MemoryStream {
            receiver,
            hub: self.hub.clone(),
            id,
        };
        Ok(Subscription::new(subject, group.map(str::to_owned), stream))
    }

    async fn close(&self) -> Result<()> {
        if self.gate.close().await {
            // Ends this connection's subscription streams once their buffers are read.
            self.hub.remove_owner(self.id);
        }
        Ok(())
    }

    fn capabilities(&self) -> &Capabilities {
        &self.capabilities
    }
}
