//! NATS backend (`nats://`): core request/reply and pub/sub on `async-nats`,
//! with JetStream durable subscriptions when `?jetstream=STREAM` is given.
//!
//! See `adapters/nats/docs.md` for every option, the capabilities and the
//! delivery guarantees of each mode.

mod convert;
mod draining;
mod jetstream;
mod settings;
mod slow_consumer;
mod transport;

use std::sync::Arc;

pub use settings::{
    JetStreamSettings, NatsSettings, TlsFiles, DEFAULT_ACK_WAIT, DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_PUBLISH_TIMEOUT, DEFAULT_RECONNECT_DELAY_MAX, DEFAULT_SUBSCRIPTION_CAPACITY, OPTIONS,
};
pub use transport::NatsTransport;

use crate::endpoint::Endpoint;
use crate::transport::ConnectFuture;

/// The scheme table's entry point for `nats://`.
pub(crate) fn connect_boxed(endpoint: Endpoint) -> ConnectFuture {
    Box::pin(async move {
        let settings = NatsSettings::from_endpoint(endpoint)?;
        let transport: Arc<dyn crate::transport::Transport> =
            Arc::new(NatsTransport::connect(settings).await?);
        Ok(transport)
    })
}
