#![doc = include_str!("../docs.md")]
//!
//! # Example
//!
//! The backend on its own, as `switchboard` drives it when a URL names its
//! scheme (services write `switchboard::Settings` and the URL instead):
//!
//! ```rust,no_run
//! use switchboard_core::endpoint::Endpoint;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> switchboard_core::Result<()> {
//! let transport = switchboard_nats::connect(Endpoint::parse("nats://127.0.0.1:4222")?).await?;
//! assert_eq!(transport.capabilities().backend, "nats");
//! transport.close().await
//! # }
//! ```
#![warn(missing_docs)]

mod convert;
mod draining;
mod jetstream;
mod settings;
mod slow_consumer;
mod subjects;
mod transport;

use std::sync::Arc;

/// The client this backend is built on (async-nats), for raw access next to the
/// bus (the transport hands out its client) and for benches against it.
pub use async_nats;

pub use settings::{
    JetStreamSettings, NatsSettings, TlsFiles, DEFAULT_ACK_WAIT, DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_PUBLISH_TIMEOUT, DEFAULT_RECONNECT_DELAY_MAX, DEFAULT_SUBSCRIPTION_CAPACITY, OPTIONS,
};
pub use transport::NatsTransport;

use switchboard_core::endpoint::Endpoint;
use switchboard_core::transport::ConnectFuture;

/// The entry point for `nats://` URLs: reads the endpoint's options and
/// connects (`switchboard` calls it by scheme).
pub fn connect(endpoint: Endpoint) -> ConnectFuture {
    Box::pin(async move {
        let settings = NatsSettings::from_endpoint(endpoint)?;
        let transport: Arc<dyn switchboard_core::transport::Transport> =
            Arc::new(NatsTransport::connect(settings).await?);
        Ok(transport)
    })
}
