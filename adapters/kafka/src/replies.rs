//! Request/reply over topics: each connection owns a reply topic, requests carry
//! `sb-reply-to` and `sb-correlation-id`, and replies are matched to waiting callers.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::Message as _;
use tokio::sync::{oneshot, watch};

use super::consumer::{assign_at_end, new_consumer, Consumed};
use super::convert;
use super::settings::KafkaSettings;
use super::topics::Topics;
use switchboard_core::drain::stop_requested;
use switchboard_core::error::{Error, Result};
use switchboard_core::message::Message;
use switchboard_core::wire;

type Waiting = Arc<Mutex<HashMap<String, oneshot::Sender<Message>>>>;

/// This connection's reply topic and the callers waiting on it.
pub(super) struct ReplyListener {
    topic: String,
    waiting: Waiting,
    prefix: String,
    next_id: AtomicU64,
}

impl ReplyListener {
    /// Creates the reply topic (one partition), reads it from its end, and
    /// dispatches replies until `stopped`.
    pub async fn start(
        settings: &KafkaSettings,
        topics: &Topics,
        connection_id: &str,
        stopped: watch::Receiver<bool>,
    ) -> Result<Self> {
        let topic = format!("sb-replies-{connection_id}");
        topics.create(&topic, 1).await?;
        let group_id = format!("{}{topic}", settings.group_prefix);
        let (consumed, _) = new_consumer(settings, &group_id, false, &topic)?;
        assign_at_end(&consumed, settings.assignment_timeout).await?;
        let waiting: Waiting = Arc::default();
        tokio::spawn(dispatch(consumed, waiting.clone(), stopped));
        Ok(ReplyListener {
            topic,
            waiting,
            prefix: connection_id.to_owned(),
            next_id: AtomicU64::new(0),
        })
    }

    /// The topic replies to this connection go to.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Registers a caller; the returned guard forgets it when dropped (after a
    /// timeout too), so late replies find nobody and nothing leaks.
    pub fn expect_reply(&self) -> PendingReply {
        let id = format!(
            "{}-{}",
            self.prefix,
            self.next_id.fetch_add(1, Ordering::Relaxed)
        );
        let (sender, receiver) = oneshot::channel();
        self.waiting
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id.clone(), sender);
        PendingReply {
            id,
            receiver: Some(receiver),
            waiting: self.waiting.clone(),
        }
    }

    /// How many callers are waiting (for tests of the no-leak promise).
    #[cfg(test)]
    pub fn waiting(&self) -> usize {
        self.waiting.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

/// One caller waiting for its reply.
pub(super) struct PendingReply {
    pub id: String,
    receiver: Option<oneshot::Receiver<Message>>,
    waiting: Waiting,
}

impl PendingReply {
    /// The reply, once it arrives.
    pub async fn reply(&mut self) -> Result<Message> {
        let receiver = self.receiver.take().ok_or(Error::Closed)?;
        receiver.await.map_err(|_| Error::Closed)
    }
}

impl Drop for PendingReply {
    fn drop(&mut self) {
        self.waiting
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.id);
    }
}

async fn dispatch(consumed: Arc<Consumed>, waiting: Waiting, mut stopped: watch::Receiver<bool>) {
    loop {
        let received = tokio::select! {
            _ = stop_requested(&mut stopped) => break,
            received = consumed.consumer.recv() => received,
        };
        let record = match received {
            Ok(record) => record,
            Err(err) => {
                tracing::warn!(error = %err, "kafka: reply topic consume error");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let reply = convert::message_from(&record);
        let offset = record.offset();
        drop(record);
        let Some(id) = reply.headers.get(wire::CORRELATION_ID) else {
            tracing::debug!(offset, "kafka: reply without correlation id dropped");
            continue;
        };
        let caller = waiting.lock().unwrap_or_else(|e| e.into_inner()).remove(id);
        match caller {
            Some(caller) => {
                let _ = caller.send(reply);
            }
            None => tracing::debug!(%id, "kafka: late or unknown reply dropped"),
        }
    }
    tokio::task::spawn_blocking(move || drop(consumed));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pending_replies_are_forgotten_when_dropped() {
        let waiting: Waiting = Arc::default();
        let listener = ReplyListener {
            topic: "t".into(),
            waiting: waiting.clone(),
            prefix: "c".into(),
            next_id: AtomicU64::new(0),
        };
        let first = listener.expect_reply();
        let second = listener.expect_reply();
        assert_ne!(first.id, second.id);
        assert_eq!(listener.waiting(), 2);
        drop(first);
        drop(second);
        assert_eq!(listener.waiting(), 0);
    }
}
