//! Requests over RabbitMQ's direct reply-to: one channel publishes every
//! request with `reply_to: amq.rabbitmq.reply-to` and a correlation id, and
//! consumes the replies, which go to the waiting caller by that id.
//!
//! A reply address names the channel the request went out on. When that
//! channel ends, its consumer fails, or lapin reconnects (the old
//! connection's addresses are gone), the callers still waiting get an error
//! instead of a timeout, and the next request opens a fresh channel.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use futures_util::StreamExt;
use lapin::options::{BasicConsumeOptions, ConfirmSelectOptions};
use lapin::types::FieldTable;
use lapin::{Channel, Connection};
use tokio::sync::oneshot;

use super::convert;
use switchboard_core::error::Result;
use switchboard_core::message::Message;

/// The pseudo-queue of direct reply-to.
pub(crate) const DIRECT_REPLY_TO: &str = "amq.rabbitmq.reply-to";

/// The channel requests go out on and replies come back on, with the callers
/// waiting for them.
pub(crate) struct Replies {
    pub(crate) channel: Channel,
    waiting: Arc<Callers>,
    /// Set when the reply consumer failed: replies to this channel's
    /// address may no longer arrive.
    broken: Arc<AtomicBool>,
    /// Correlation ids: a per-connection random prefix and a counter, so a
    /// reply meant for an earlier connection is never taken for a new call.
    prefix: String,
    next: AtomicU64,
}

/// A registered call: dropping it forgets the caller (a reply after that is dropped).
pub(crate) struct Waiting {
    replies: Arc<Replies>,
    pub(crate) id: String,
    pub(crate) reply: oneshot::Receiver<Message>,
}

impl Drop for Waiting {
    fn drop(&mut self) {
        self.replies
            .waiting
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.id);
    }
}

/// The callers waiting, by correlation id.
type Callers = Mutex<HashMap<String, oneshot::Sender<Message>>>;

/// Marks the channel broken and drops the callers' senders, which ends
/// their wait with an error.
fn abandon(broken: &AtomicBool, waiting: &Callers) {
    broken.store(true, Ordering::Release);
    waiting.lock().unwrap_or_else(|e| e.into_inner()).clear();
}

impl Replies {
    /// Opens the channel (publisher confirms on, so an unroutable request
    /// comes back at once) and starts taking replies.
    pub(crate) async fn open(connection: &Connection) -> Result<Self> {
        let channel = connection.create_channel().await.map_err(convert::error)?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(convert::error)?;
        let mut consumer = channel
            .basic_consume(
                DIRECT_REPLY_TO.into(),
                "".into(),
                BasicConsumeOptions {
                    no_ack: true,
                    ..BasicConsumeOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .map_err(convert::error)?;
        let waiting: Arc<Callers> = Arc::default();
        let broken = Arc::new(AtomicBool::new(false));
        let routed = waiting.clone();
        let failed = broken.clone();
        tokio::spawn(async move {
            // Runs until the consumer ends (its channel closed or replaced).
            while let Some(delivery) = consumer.next().await {
                let delivery = match delivery {
                    Ok(delivery) => delivery,
                    Err(err) => {
                        tracing::debug!(error = %err, "amqp: the reply consumer failed; the callers waiting are told");
                        abandon(&failed, &routed);
                        continue;
                    }
                };
                let Some(id) = delivery.properties.correlation_id().clone() else {
                    continue;
                };
                let caller = routed
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(id.as_str());
                if let Some(caller) = caller {
                    let _ = caller.send(convert::message(delivery.data, &delivery.properties));
                }
            }
            // No reply comes after the consumer ended.
            abandon(&failed, &routed);
        });
        Ok(Replies {
            channel,
            waiting,
            broken,
            prefix: format!("{:016x}", fastrand::u64(..)),
            next: AtomicU64::new(0),
        })
    }

    /// Whether the reply consumer failed or the connection was lost:
    /// requests go out on a fresh channel.
    pub(crate) fn broken(&self) -> bool {
        self.broken.load(Ordering::Acquire)
    }

    /// Fails the callers waiting (their replies will not come) and marks
    /// the channel broken.
    pub(crate) fn abandon(&self) {
        abandon(&self.broken, &self.waiting);
    }

    /// Registers a call and returns its correlation id and where its reply arrives.
    pub(crate) fn wait(self: &Arc<Self>) -> Waiting {
        let id = format!(
            "{}-{}",
            self.prefix,
            self.next.fetch_add(1, Ordering::Relaxed)
        );
        let (sender, reply) = oneshot::channel();
        self.waiting
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id.clone(), sender);
        Waiting {
            replies: self.clone(),
            id,
            reply,
        }
    }
}
