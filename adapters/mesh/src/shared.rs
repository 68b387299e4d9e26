//! What an HTTP or gRPC service's transport, server and background sync
//! share: its settings, local subscribers, directory of peers and client.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use futures_util::future::join_all;

use super::app::App;
use super::directory::{Directory, Snapshot, Trust};
use super::listener::Protocol;
use super::peer_calls::PeerCalls;
use super::settings::HttpSettings;
use switchboard_core::error::{Error, Result};
use switchboard_core::local::LocalRouter;
use switchboard_core::message::Message;
use switchboard_core::subscription::Subscription;

/// How services of one backend talk to each other: the HTTP wire, or the gRPC one.
pub struct Wire {
    /// Backend name in errors and capabilities (`http`, `grpc`).
    pub backend: &'static str,
    /// The scheme of this service's advertised base URL.
    pub scheme: &'static str,
    /// Outgoing calls to peers.
    pub client: Arc<dyn PeerCalls>,
    /// The server's routes.
    pub router: fn(Arc<Shared>) -> App,
    /// Whether a request to this path is given the caller's address
    /// (`ConnectInfo`), which costs two allocations per request: only the
    /// peer snapshot exchange reads it.
    pub needs_caller_address: fn(&str) -> bool,
    /// HTTP/1.1 for `http://`, HTTP/2 for gRPC.
    pub protocol: Protocol,
}

/// State shared by the transport, its server and its background sync.
pub struct Shared {
    /// The service's URL options.
    pub settings: HttpSettings,
    /// Its local subscribers, which what arrives from peers is handed to.
    pub local: LocalRouter,
    pub(super) directory: Directory,
    /// The backend's name in errors and logs (`http`, `grpc`).
    pub backend: &'static str,
    pub(super) self_url: String,
    pub(super) incarnation: u64,
    pub(super) owner: u64,
    pub(super) client: Arc<dyn PeerCalls>,
    /// The newest local generation every reachable peer has been told about.
    pub(super) announced: AtomicU64,
    /// Set by `close`: snapshots from here on tell peers this service is leaving.
    pub(super) leaving: AtomicBool,
    /// The documents (AsyncAPI JSON) of the services running here, by name.
    pub(super) documents: std::sync::RwLock<std::collections::BTreeMap<String, bytes::Bytes>>,
}

impl Shared {
    /// The document of the service `name` running here, if it gave one.
    pub fn document(&self, name: &str) -> Option<bytes::Bytes> {
        self.documents
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .cloned()
    }

    /// The names of the services running here that gave a document.
    pub fn documented_services(&self) -> Vec<String> {
        self.documents
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .cloned()
            .collect()
    }

    /// This service's current snapshot.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot::of(
            &self.self_url,
            self.incarnation,
            self.local.subscriptions(),
            self.directory.peers(),
            self.leaving.load(Ordering::SeqCst),
        )
    }

    /// Sends this service's snapshot to `peers` at once and learns theirs back.
    pub(super) async fn exchange_with(&self, peers: Vec<String>) {
        let snapshot = self.snapshot();
        let generation = snapshot.generation;
        let exchanges = peers.into_iter().map(|peer| {
            let snapshot = &snapshot;
            async move {
                match self.client.exchange(&peer, snapshot).await {
                    // An answer from an address this service chose to call is believed in full.
                    Ok(theirs) => {
                        if let Err(refused) = self.directory.merge(theirs, Trust::Full) {
                            tracing::warn!(%peer, ?refused, "{}: peer's snapshot not taken in", self.backend);
                        }
                    }
                    Err(err) => {
                        // Said once per outage (a wrong CA or token shows here),
                        // then quietly retried every `sync_interval`.
                        if self.directory.mark_unreachable(&peer) {
                            tracing::warn!(%peer, error = %err, "{}: peer unreachable for a snapshot exchange; retrying", self.backend);
                        } else {
                            tracing::debug!(%peer, error = %err, "{}: peer still unreachable", self.backend);
                        }
                    }
                }
            }
        });
        join_all(exchanges).await;
        self.announced.fetch_max(generation, Ordering::SeqCst);
    }

    /// Subscribes on this service, and returns once every reachable peer knows
    /// (so a publish right after this reaches it).
    pub async fn subscribe(&self, subject: &str, group: Option<&str>) -> Subscription {
        let subscription = self
            .local
            .subscribe(self.owner, subject, group, self.settings.buffer);
        self.announce().await;
        subscription
    }

    /// Tells every known peer about this service's subscriptions.
    pub async fn announce(&self) {
        self.exchange_with(self.directory.peers()).await;
    }

    /// Delivers an event to a peer, retrying transient failures (refused
    /// connection, timeout, 5xx) with jittered exponential backoff.
    pub(super) async fn deliver_to_peer(
        &self,
        peer: &str,
        subject: &str,
        message: &Message,
        deliver: &str,
    ) -> Result<()> {
        (|| self.client.deliver(peer, subject, message, deliver))
            .retry(
                ExponentialBuilder::default()
                    .with_min_delay(Duration::from_millis(20))
                    .with_max_delay(Duration::from_millis(500))
                    .with_max_times(self.settings.retries)
                    .with_jitter(),
            )
            .when(|err: &Error| matches!(err, Error::Connect { .. } | Error::Timeout { .. }))
            .await
    }
}
