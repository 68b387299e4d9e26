//! Kafka backend (`kafka://`) on rdkafka (librdkafka built from its bundled
//! source): publish is produce with the broker's acknowledgement, subscriptions
//! are consumers with offsets committed after acknowledgement (at-least-once),
//! and request/reply runs over per-connection reply topics.
//!
//! See `adapters/kafka/docs.md` for options, the topic and group naming rules,
//! and the guarantees.

mod consumer;
mod convert;
mod probe;
mod replies;
mod responder;
mod settings;
mod topics;
mod transport;

use std::sync::Arc;

pub use settings::{
    KafkaSettings, KafkaTls, OffsetReset, Sasl, DEFAULT_ASSIGNMENT_TIMEOUT, DEFAULT_BUFFER,
    DEFAULT_CONNECT_TIMEOUT, DEFAULT_DELIVERY_TIMEOUT, DEFAULT_FETCH_WAIT, DEFAULT_MAX_PAYLOAD,
    DEFAULT_PARTITIONS, OPTIONS,
};
pub use transport::KafkaTransport;

use crate::endpoint::Endpoint;
use crate::transport::ConnectFuture;

/// The scheme table's entry point for `kafka://`.
pub(crate) fn connect_boxed(endpoint: Endpoint) -> ConnectFuture {
    Box::pin(async move {
        let settings = KafkaSettings::from_endpoint(endpoint)?;
        let transport: Arc<dyn crate::transport::Transport> =
            Arc::new(KafkaTransport::connect(settings).await?);
        Ok(transport)
    })
}
