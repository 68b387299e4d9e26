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
//! let transport = switchboard_kafka::connect(Endpoint::parse("kafka://127.0.0.1:9092")?).await?;
//! assert_eq!(transport.capabilities().backend, "kafka");
//! transport.close().await
//! # }
//! ```
#![warn(missing_docs)]

mod acks;
mod brokers;
mod consumer;
mod convert;
mod probe;
mod records;
mod replies;
mod responder;
mod settings;
mod topics;
mod transport;

use std::sync::Arc;

/// The client this backend is built on (rdkafka), for raw access next to the
/// bus (the transport hands out its client) and for benches against it.
pub use rdkafka;

pub use settings::{
    KafkaSettings, KafkaTls, OffsetReset, Sasl, DEFAULT_ASSIGNMENT_TIMEOUT, DEFAULT_BUFFER,
    DEFAULT_CONNECT_TIMEOUT, DEFAULT_DELIVERY_TIMEOUT, DEFAULT_FETCH_WAIT, DEFAULT_MAX_PAYLOAD,
    DEFAULT_PARTITIONS, OPTIONS,
};
pub use transport::KafkaTransport;

use switchboard_core::endpoint::Endpoint;
use switchboard_core::transport::ConnectFuture;

/// The entry point for `kafka://` URLs: reads the endpoint's options and
/// connects (`switchboard` calls it by scheme).
pub fn connect(endpoint: Endpoint) -> ConnectFuture {
    Box::pin(async move {
        let settings = KafkaSettings::from_endpoint(endpoint)?;
        let transport: Arc<dyn switchboard_core::transport::Transport> =
            Arc::new(KafkaTransport::connect(settings).await?);
        Ok(transport)
    })
}
