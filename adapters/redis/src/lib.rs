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
//! let transport = switchboard_redis::connect(Endpoint::parse("redis://127.0.0.1:6379")?).await?;
//! assert_eq!(transport.capabilities().backend, "redis");
//! transport.close().await
//! # }
//! ```
#![warn(missing_docs)]

mod acks;
mod connection;
mod convert;
mod reachability;
mod replies;
mod settings;
mod subscription;
mod transport;

use std::sync::Arc;

/// The client this backend is built on (the redis crate), for raw access
/// next to the bus and for benches against it.
pub use redis;

pub use settings::{
    GroupStart, RedisSettings, DEFAULT_CLAIM_IDLE, DEFAULT_COMMAND_TIMEOUT,
    DEFAULT_CONNECT_TIMEOUT, DEFAULT_MAX_PAYLOAD, DEFAULT_PREFETCH, DEFAULT_PREFIX, OPTIONS,
};
pub use transport::RedisTransport;

use switchboard_core::endpoint::Endpoint;
use switchboard_core::transport::ConnectFuture;

/// Feeds fuzz input to every decoder of bytes from the server (see
/// `switchboard::fuzzing`): the pub/sub frame, and the input as a RESP
/// reply read as stream entries, a read reply and an `XAUTOCLAIM` reply.
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub fn fuzz_decoders(data: &[u8]) {
    let _ = convert::unframe(data);
    if let Ok(value) = redis::parse_redis_value(data) {
        let _ = convert::entries(&value);
        let _ = convert::read_reply(&value);
        let _ = convert::autoclaim_reply(&value);
    }
}

/// The entry point for `redis://` and `rediss://` URLs: reads the
/// endpoint's options and connects (`switchboard` calls it by scheme).
pub fn connect(endpoint: Endpoint) -> ConnectFuture {
    Box::pin(async move {
        let settings = RedisSettings::from_endpoint(endpoint)?;
        let transport: Arc<dyn switchboard_core::transport::Transport> =
            Arc::new(RedisTransport::connect(settings).await?);
        Ok(transport)
    })
}
