//! HTTP backend (`http://`, and `https://` with TLS): every service runs its own web server (axum) and
//! calls its peers with reqwest. Request/reply is a plain HTTP POST; publish is
//! a webhook fan-out that returns once every subscriber accepted the event.
//! Subscriptions are learned from peers, not listed by hand.
//!
//! See `adapters/http/docs.md` for the URL options, the wire format (for
//! clients in other languages, or curl) and the guarantees.

mod client;
mod directory;
mod listener;
mod peer_calls;
mod server;
mod serving;
mod settings;
mod shared;
mod tls;
mod transport;
mod wire;

/// The mesh the gRPC backend shares with this one: directory, subscription
/// learning, fan-out and fail-over, with its own wire.
#[cfg(feature = "grpc")]
pub(crate) mod mesh {
    pub(crate) use super::directory::{Advertised, Snapshot};
    pub(crate) use super::listener::Protocol;
    pub(crate) use super::peer_calls::PeerCalls;
    pub(crate) use super::serving::{EventRefused, SnapshotRefused};
    pub(crate) use super::settings::HttpSettings;
    pub(crate) use super::shared::{Shared, Wire};
    pub(crate) use super::transport::HttpTransport;
    pub(crate) use super::wire::DELIVER;
}

use std::sync::Arc;

pub use settings::{
    HttpSettings, Join, DEFAULT_BUFFER, DEFAULT_HEADER_TIMEOUT, DEFAULT_MAX_BODY,
    DEFAULT_MAX_CONNECTIONS, DEFAULT_MAX_PEERS, DEFAULT_PEER_TIMEOUT, DEFAULT_RETRIES,
    DEFAULT_SERVER_TIMEOUT, DEFAULT_SYNC_INTERVAL, OPTIONS,
};
pub use tls::HttpTls;
pub use transport::HttpTransport;

use crate::endpoint::Endpoint;
use crate::transport::ConnectFuture;

/// The scheme table's entry point for `http://`.
pub(crate) fn connect_boxed(endpoint: Endpoint) -> ConnectFuture {
    Box::pin(async move {
        let settings = HttpSettings::from_endpoint(endpoint)?;
        let transport: Arc<dyn crate::transport::Transport> =
            Arc::new(HttpTransport::start(settings).await?);
        Ok(transport)
    })
}

/// Feeds fuzz input to every decoder of bytes from the network (see `crate::fuzzing`).
#[cfg(feature = "fuzzing")]
pub(crate) fn fuzz_decoders(data: &[u8], header_pairs: &[(&[u8], &[u8])]) {
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
        .get(wire::DELIVER)
        .or_else(|| std::str::from_utf8(data).ok())
    {
        let _ = wire::parse_deliver(deliver);
    }
    if let Ok(snapshot) = serde_json::from_slice::<directory::Snapshot>(data) {
        fuzz_snapshot(snapshot);
    }
}

/// A peer's snapshot, however it arrived, merged into a directory and routed with.
#[cfg(feature = "fuzzing")]
pub(crate) fn fuzz_snapshot(snapshot: directory::Snapshot) {
    let known = directory::Directory::new("http://127.0.0.1:1".into(), &[], 8);
    let _ = known.merge(snapshot, directory::Trust::Full);
    let _ = known.responders("orders.placed");
    let _ = known.plan_event("orders.placed", &[]);
}
