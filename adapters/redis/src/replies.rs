//! The replies of this transport's requests: one channel per transport
//! (`PREFIX:reply:RANDOM`), subscribed on its connection, and the callers
//! waiting on it by correlation id.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use redis::{PushInfo, PushKind};
use tokio::sync::oneshot;

use super::convert;
use switchboard_core::message::Message;
use switchboard_core::wire;

/// The callers waiting for a reply, by correlation id.
pub(crate) struct Replies {
    /// The channel replies to this transport are published to.
    pub(crate) channel: String,
    next: AtomicU64,
    waiting: Mutex<HashMap<u64, oneshot::Sender<Message>>>,
}

/// One caller's wait; dropping it forgets the caller (a late reply is dropped).
pub(crate) struct Waiting {
    pub(crate) id: u64,
    pub(crate) reply: oneshot::Receiver<Message>,
    replies: Arc<Replies>,
}

impl Drop for Waiting {
    fn drop(&mut self) {
        self.replies.lock().remove(&self.id);
    }
}

impl Replies {
    /// Replies on `PREFIX:reply:RANDOM`.
    pub(crate) fn new(reply_prefix: &str) -> Arc<Self> {
        Arc::new(Replies {
            channel: format!("{reply_prefix}{:016x}", fastrand::u64(..)),
            next: AtomicU64::new(1),
            waiting: Mutex::new(HashMap::new()),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, oneshot::Sender<Message>>> {
        self.waiting.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A new correlation id and the wait for its reply.
    pub(crate) fn wait(self: &Arc<Self>) -> Waiting {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let (sender, reply) = oneshot::channel();
        self.lock().insert(id, sender);
        Waiting {
            id,
            reply,
            replies: self.clone(),
        }
    }

    /// Hands a message pushed on the connection to its caller: a reply on
    /// this transport's channel whose correlation id someone waits for.
    /// Anything else (a frame that does not decode, an unknown or late id)
    /// is dropped with a debug line.
    pub(crate) fn deliver(&self, push: PushInfo) {
        if push.kind != PushKind::Message {
            return;
        }
        let [channel, payload] = push.data.as_slice() else {
            return;
        };
        if convert::value_bytes(channel) != Some(self.channel.as_bytes()) {
            return;
        }
        let Some(bytes) = convert::value_bytes(payload) else {
            return;
        };
        let mut reply = match convert::unframe(bytes) {
            Ok(reply) => reply,
            Err(reason) => {
                tracing::debug!(%reason, "redis: a reply that is not a switchboard frame was dropped");
                return;
            }
        };
        let Some(id) = reply
            .headers
            .remove(wire::CORRELATION_ID)
            .and_then(|id| id.parse::<u64>().ok())
        else {
            tracing::debug!("redis: a reply without a correlation id was dropped");
            return;
        };
        if let Some(caller) = self.lock().remove(&id) {
            let _ = caller.send(reply);
        }
    }
}
