//! `GrpcTransport`: a service of the mesh that talks gRPC.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use super::client::GrpcPeers;
use switchboard_core::capabilities::Capabilities;
use switchboard_core::error::Result;
use switchboard_core::message::Message;
use switchboard_core::subscription::Subscription;
use switchboard_core::transport::{GroupAddress, Reach, Recipients, Transport};
use switchboard_mesh::{HttpSettings, MeshTransport, Protocol, Wire};

/// A gRPC service: its own tonic server (HTTP/2) for peers and clients in any
/// language, and gRPC calls to its peers. Peers, subscriptions, fan-out and
/// fail-over work as on `http://`. See `adapters/grpc/docs.md`.
pub struct GrpcTransport {
    mesh: MeshTransport,
}

impl GrpcTransport {
    /// Binds the server, starts it, and exchanges snapshots with the configured peers.
    pub(crate) async fn start(settings: HttpSettings) -> Result<Self> {
        let wire = Wire {
            backend: super::convert::BACKEND,
            // gRPC's own form of the address (tonic's `Endpoint`); shown as grpc(s)://.
            scheme: if settings.tls.is_some() {
                "https"
            } else {
                "http"
            },
            client: Arc::new(GrpcPeers::new(
                settings.token.as_deref(),
                settings.peer_timeout,
                settings.max_body,
                settings.tls.as_ref(),
            )?),
            router: super::server::router,
            needs_caller_address: super::server::is_mesh_call,
            protocol: Protocol::Http2,
        };
        Ok(GrpcTransport {
            mesh: MeshTransport::start(settings, wire).await?,
        })
    }

    /// The address peers reach this service at, as `grpc://HOST:PORT` (`grpcs://` with TLS).
    pub fn url(&self) -> String {
        let url = self.mesh.url();
        match url.strip_prefix("https://") {
            Some(address) => format!("grpcs://{address}"),
            None => url.replacen("http://", "grpc://", 1),
        }
    }
}

#[async_trait]
impl Transport for GrpcTransport {
    async fn request(&self, subject: &str, message: Message, timeout: Duration) -> Result<Message> {
        self.mesh.request(subject, message, timeout).await
    }

    async fn publish(&self, subject: &str, message: Message) -> Result<()> {
        self.mesh.publish(subject, message).await
    }

    async fn publish_reaching(&self, subject: &str, message: Message) -> Result<Reach> {
        self.mesh.publish_reaching(subject, message).await
    }

    fn live_groups(&self, subject: &str) -> Option<Vec<GroupAddress>> {
        self.mesh.live_groups(subject)
    }

    async fn publish_to(
        &self,
        subject: &str,
        message: Message,
        plain: bool,
        groups: &[GroupAddress],
    ) -> Result<Recipients> {
        self.mesh.publish_to(subject, message, plain, groups).await
    }

    async fn subscribe(&self, subject: &str, group: Option<&str>) -> Result<Subscription> {
        self.mesh.subscribe(subject, group).await
    }

    async fn close(&self) -> Result<()> {
        self.mesh.close().await
    }

    fn capabilities(&self) -> &Capabilities {
        self.mesh.capabilities()
    }

    fn health(&self) -> switchboard_core::health::Health {
        self.mesh.health()
    }

    fn local_address(&self) -> Option<SocketAddr> {
        self.mesh.local_address()
    }

    fn describe_service(&self, service: &str, document: Option<bytes::Bytes>) {
        self.mesh.describe_service(service, document);
    }
}
