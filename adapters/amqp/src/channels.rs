//! The transport's long-lived channels, opened again when the broker closes
//! one. RabbitMQ closes a channel for a soft error (a message over its
//! `max_message_size`, say): the call that caused it gets the error, and
//! the next call gets a fresh channel instead of the closed one. While the
//! whole connection is down, lapin's recovery brings the channels back, so
//! nothing is replaced then.

use std::sync::Weak;

use lapin::options::ConfirmSelectOptions;
use lapin::{Channel, Connection};
use tokio::sync::Mutex;

use super::convert;
use super::replies::Replies;
use switchboard_core::error::Result;

/// Events and replies go out here, with publisher confirms.
pub(crate) struct Publisher {
    connection: Weak<Connection>,
    /// The channel, and whether a call on it failed (lapin may report the
    /// broker's close of a channel before the channel's state shows it).
    channel: Mutex<(Channel, bool)>,
}

impl Publisher {
    /// Opens the first channel.
    pub(crate) async fn open(connection: &std::sync::Arc<Connection>) -> Result<Self> {
        Ok(Publisher {
            channel: Mutex::new((confirm_channel(connection).await?, false)),
            connection: std::sync::Arc::downgrade(connection),
        })
    }

    /// The channel to publish on: the same one while it is open.
    pub(crate) async fn channel(&self) -> Result<Channel> {
        let mut current = self.channel.lock().await;
        let (channel, failed) = &mut *current;
        if *failed || !channel.status().connected() {
            if let Some(connection) = live(&self.connection) {
                tracing::debug!("amqp: the publishing channel was closed; opening another");
                *channel = confirm_channel(&connection).await?;
                *failed = false;
            }
        }
        Ok(channel.clone())
    }

    /// Says a call on `used` failed: the next call opens a fresh channel
    /// (if the connection is up) unless another call already did.
    pub(crate) async fn failed(&self, used: &Channel) {
        let mut current = self.channel.lock().await;
        if current.0.id() == used.id() {
            current.1 = true;
        }
    }
}

/// The request channel and its replies, opened again the same way.
pub(crate) struct Requests {
    connection: Weak<Connection>,
    /// The replies, and whether a call on their channel failed.
    replies: Mutex<(std::sync::Arc<Replies>, bool)>,
}

impl Requests {
    /// Opens the first request channel.
    pub(crate) async fn open(connection: &std::sync::Arc<Connection>) -> Result<Self> {
        Ok(Requests {
            replies: Mutex::new((std::sync::Arc::new(Replies::open(connection).await?), false)),
            connection: std::sync::Arc::downgrade(connection),
        })
    }

    /// The replies of the current request channel.
    pub(crate) async fn replies(&self) -> Result<std::sync::Arc<Replies>> {
        let mut current = self.replies.lock().await;
        let (replies, failed) = &mut *current;
        if *failed || replies.broken() || !replies.channel.status().connected() {
            if let Some(connection) = live(&self.connection) {
                tracing::debug!("amqp: the request channel was closed; opening another");
                let old = std::mem::replace(
                    replies,
                    std::sync::Arc::new(Replies::open(&connection).await?),
                );
                *failed = false;
                // lapin may have brought the old one back: it is not used again.
                let _ = old.channel.close(200, "replaced".into()).await;
            }
        }
        Ok(replies.clone())
    }

    /// After lapin reconnected: the reply addresses of requests still
    /// waiting went with the old connection, so those callers fail now and
    /// the next request opens a fresh channel.
    pub(crate) async fn reconnected(&self) {
        self.replies.lock().await.0.abandon();
    }

    /// Says a call on `used` failed: the next request opens a fresh channel.
    pub(crate) async fn failed(&self, used: &Replies) {
        let mut current = self.replies.lock().await;
        if current.0.channel.id() == used.channel.id() {
            current.1 = true;
        }
    }
}

/// Tells `requests` each time lapin has reconnected, until the transport
/// is gone. The connection's event stream is read here alone.
pub(crate) fn watch_reconnects(connection: &Connection, requests: Weak<Requests>) {
    let mut events = connection.events_listener();
    tokio::spawn(async move {
        use futures_util::StreamExt;
        // The stream ends with the connection.
        while let Some(event) = events.next().await {
            if matches!(event, lapin::Event::Connected) {
                let Some(requests) = requests.upgrade() else {
                    return;
                };
                tracing::debug!("amqp: reconnected; requests waiting on the old connection fail");
                requests.reconnected().await;
            }
        }
    });
}

/// The connection, while it is up (not closed, not recovering).
fn live(connection: &Weak<Connection>) -> Option<std::sync::Arc<Connection>> {
    connection
        .upgrade()
        .filter(|connection| connection.status().connected())
}

/// A channel with publisher confirms on.
pub(crate) async fn confirm_channel(connection: &Connection) -> Result<Channel> {
    let channel = connection.create_channel().await.map_err(convert::error)?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .map_err(convert::error)?;
    Ok(channel)
}

/// Whether `err` says the channel could not be used at all (closed by the
/// broker after an earlier call's error), so the message was not sent and
/// one more try on a fresh channel is safe.
pub(crate) fn unusable(err: &lapin::Error) -> bool {
    matches!(
        err.kind(),
        lapin::ErrorKind::InvalidChannel(_) | lapin::ErrorKind::InvalidChannelState(..)
    )
}

/// How long a call waits for lapin to recover a channel the broker closed.
const RECOVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// Waits (up to 5 s) until lapin has recovered `channel` after `err`, where
/// it does (the broker closed the channel for a soft error, or the
/// connection was lost), so the next call finds it open again.
pub(crate) async fn recovered(channel: &Channel, err: &lapin::Error) {
    let waiting = async {
        if channel.wait_for_recovery(err.clone()).await.is_err() {
            // Not recoverable through a notifier: the state shows when it is back.
            while !channel.status().connected() && !channel.status().closing() {
                if channel.status().reconnecting() || channel.status().initializing() {
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                } else {
                    return;
                }
            }
        }
    };
    let _ = tokio::time::timeout(RECOVERY, waiting).await;
}

/// Waits (up to 5 s) until the connection is up: after the broker closed a
/// channel, lapin's recovery may hold it for a moment.
pub(crate) async fn settled(connection: &Connection) {
    let waiting = async {
        while !connection.status().connected() {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    };
    let _ = tokio::time::timeout(RECOVERY, waiting).await;
}
