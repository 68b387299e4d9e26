//! What a service asks of its peers, whatever the wire: HTTP (reqwest) or gRPC (tonic).

use std::time::Duration;

use async_trait::async_trait;

use super::directory::Snapshot;
use switchboard_core::error::Result;
use switchboard_core::message::Message;

/// Outgoing calls to one peer, by its base URL. The mesh (directory,
/// subscription learning, fan-out, fail-over, retries) is the same for every wire.
#[async_trait]
pub trait PeerCalls: Send + Sync + 'static {
    /// Sends a request; error replies come back as messages with `sb-status`.
    /// An unreachable peer is `Error::Connect`, so the caller fails over.
    async fn request(
        &self,
        peer: &str,
        subject: &str,
        message: Message,
        timeout: Duration,
    ) -> Result<Message>;

    /// Delivers an event once (the mesh retries `Error::Connect` and
    /// `Error::Timeout`) to the subscribers `deliver` names (`sb-deliver` form).
    async fn deliver(
        &self,
        peer: &str,
        subject: &str,
        message: &Message,
        deliver: &str,
    ) -> Result<()>;

    /// Sends this service's snapshot to a peer and returns the peer's.
    async fn exchange(&self, peer: &str, snapshot: &Snapshot) -> Result<Snapshot>;
}
