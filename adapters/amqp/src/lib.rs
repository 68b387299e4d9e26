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
//! let transport = switchboard_amqp::connect(Endpoint::parse("amqp://127.0.0.1:5672")?).await?;
//! assert_eq!(transport.capabilities().backend, "amqp");
//! transport.close().await
//! # }
//! ```
#![warn(missing_docs)]

mod acks;
mod channels;
mod convert;
mod replies;
mod settings;
mod subscription;
mod transport;

use std::sync::Arc;

/// The client this backend is built on (lapin), for raw access next to the
/// bus (the transport hands out its connection) and for benches against it.
pub use lapin;

pub use settings::{
    AmqpSettings, DEFAULT_CONNECT_TIMEOUT, DEFAULT_EXCHANGE, DEFAULT_MAX_PAYLOAD, DEFAULT_PREFETCH,
    DEFAULT_PUBLISH_TIMEOUT, OPTIONS,
};
pub use transport::AmqpTransport;

use switchboard_core::endpoint::Endpoint;
use switchboard_core::transport::ConnectFuture;

/// Feeds fuzz input to every decoder of bytes from the broker (see
/// `switchboard::fuzzing`): the input parsed as AMQP basic properties
/// (lapin's parser), then read as a message with the rest as its payload.
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub fn fuzz_decoders(data: &[u8]) {
    if let Ok((payload, properties)) = lapin::protocol::basic::parse_properties(data) {
        let _ = convert::message(payload.to_vec(), &properties);
    }
}

/// The entry point for `amqp://` and `amqps://` URLs: reads the endpoint's
/// options and connects (`switchboard` calls it by scheme).
pub fn connect(endpoint: Endpoint) -> ConnectFuture {
    Box::pin(async move {
        let settings = AmqpSettings::from_endpoint(endpoint)?;
        let transport: Arc<dyn switchboard_core::transport::Transport> =
            Arc::new(AmqpTransport::connect(settings).await?);
        Ok(transport)
    })
}
