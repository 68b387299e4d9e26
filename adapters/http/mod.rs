//! HTTP backend (`http://`): every service runs its own web server (axum) and
//! calls its peers with reqwest. Request/reply is a plain HTTP POST; publish is
//! a webhook fan-out that returns once every subscriber accepted the event.
//! Subscriptions are learned from peers, not listed by hand.
//!
//! See `adapters/http/docs.md` for the URL options, the wire format (for
//! clients in other languages, or curl) and the guarantees.

mod client;
mod directory;
mod server;
mod settings;
mod transport;
mod wire;

use std::sync::Arc;

pub use settings::{
    HttpSettings, DEFAULT_BUFFER, DEFAULT_MAX_BODY, DEFAULT_PEER_TIMEOUT, DEFAULT_RETRIES,
    DEFAULT_SERVER_TIMEOUT, DEFAULT_SYNC_INTERVAL, OPTIONS,
};
pub use transport::HttpTransport;

use crate::connect::{ConnectFuture, Endpoint};

/// The scheme table's entry point for `http://`.
pub(crate) fn connect_boxed(endpoint: Endpoint) -> ConnectFuture {
    Box::pin(async move {
        let settings = HttpSettings::from_endpoint(endpoint)?;
        let transport: Arc<dyn crate::Transport> = Arc::new(HttpTransport::start(settings).await?);
        Ok(transport)
    })
}
