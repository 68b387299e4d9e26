#![doc = include_str!("../docs.md")]
//!
//! # Example
//!
//! The backend on its own, as `switchboard` drives it when a URL names its
//! scheme (services write `switchboard::Settings` and the URL instead):
//!
//! ```rust
//! use switchboard_core::endpoint::Endpoint;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> switchboard_core::Result<()> {
//! let transport = switchboard_http::connect(Endpoint::parse("http://127.0.0.1:0")?).await?;
//! assert_eq!(transport.capabilities().backend, "http");
//! transport.close().await
//! # }
//! ```
#![warn(missing_docs)]

mod client;
mod gate;
mod peer_urls;
mod responses;
mod server;
mod wire;

use std::sync::Arc;

use switchboard_core::endpoint::Endpoint;
use switchboard_core::error::Result;
use switchboard_core::transport::{ConnectFuture, Transport};
pub use switchboard_mesh::{
    HttpSettings, HttpTls, Join, DEFAULT_BUFFER, DEFAULT_HEADER_TIMEOUT, DEFAULT_MAX_BODY,
    DEFAULT_MAX_CONNECTIONS, DEFAULT_MAX_PEERS, DEFAULT_PEER_TIMEOUT, DEFAULT_RETRIES,
    DEFAULT_SERVER_TIMEOUT, DEFAULT_SYNC_INTERVAL, OPTIONS,
};
use switchboard_mesh::{Protocol, Wire};

/// An HTTP service: its own server for incoming requests and events, and a
/// client for its peers (a service of the mesh on the HTTP wire).
///
/// The server runs until `close()`, or until the transport and every
/// subscription made through it are dropped.
pub type HttpTransport = switchboard_mesh::MeshTransport;

/// Binds the server, starts it, and exchanges snapshots with the configured peers.
pub async fn start(settings: HttpSettings) -> Result<HttpTransport> {
    let wire = Wire {
        backend: "http",
        scheme: if settings.tls.is_some() {
            "https"
        } else {
            "http"
        },
        client: Arc::new(client::PeerClient::new(
            settings.token.clone(),
            settings.peer_timeout,
            settings.max_body,
            settings.tls.as_ref(),
        )?),
        router: server::router,
        needs_caller_address: |path| path == wire::SUBSCRIPTIONS,
        protocol: Protocol::Http1,
    };
    HttpTransport::start(settings, wire).await
}

/// The entry point for `http://` and `https://` URLs: reads the endpoint's
/// options and starts the service (`switchboard` calls it by scheme).
pub fn connect(endpoint: Endpoint) -> ConnectFuture {
    Box::pin(async move {
        let settings = HttpSettings::from_endpoint(endpoint)?;
        let transport: Arc<dyn Transport> = Arc::new(start(settings).await?);
        Ok(transport)
    })
}

/// Feeds fuzz input to every decoder of bytes from the network (see `switchboard::fuzzing`).
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub fn fuzz_decoders(data: &[u8], header_pairs: &[(&[u8], &[u8])]) {
    use axum::http::{HeaderMap, HeaderName, HeaderValue};

    let mut map = HeaderMap::new();
    for (name, value) in header_pairs {
        if let (Ok(name), Ok(value)) =
            (HeaderName::from_bytes(name), HeaderValue::from_bytes(value))
        {
            map.append(name, value);
        }
    }
    let headers = wire::message_headers(&map);
    if let Some(deliver) = headers
        .get(switchboard_mesh::DELIVER)
        .or_else(|| std::str::from_utf8(data).ok())
    {
        let _ = switchboard_mesh::parse_deliver(deliver);
    }
    if let Ok(snapshot) = serde_json::from_slice::<switchboard_mesh::Snapshot>(data) {
        switchboard_mesh::fuzz_snapshot(snapshot);
    }
}
