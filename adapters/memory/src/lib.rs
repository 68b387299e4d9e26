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
//! let transport = switchboard_memory::connect(Endpoint::parse("memory://docs")?).await?;
//! assert_eq!(transport.capabilities().backend, "memory");
//! transport.close().await
//! # }
//! ```
#![warn(missing_docs)]

mod transport;

use std::sync::Arc;

pub use transport::{MemoryOptions, MemoryTransport, DEFAULT_BUFFER, DEFAULT_MAX_PAYLOAD};

use switchboard_core::endpoint::Endpoint;
use switchboard_core::error::{Error, Result};
use switchboard_core::transport::ConnectFuture;

/// The options `memory://` URLs accept.
pub const OPTIONS: &[&str] = &["buffer", "max_payload"];

/// Parses a `memory://[NAME][?buffer=N&max_payload=BYTES]` URL.
pub fn parse_url(endpoint: Endpoint) -> Result<(String, MemoryOptions)> {
    let Endpoint {
        url,
        hosts,
        mut options,
    } = endpoint;
    if hosts.len() > 1
        || url.port().is_some()
        || !url.username().is_empty()
        || url.password().is_some()
    {
        return Err(Error::config(
            "memory URL takes only a hub name: memory://[NAME] (no port, host list or credentials)",
        ));
    }
    if !matches!(url.path(), "" | "/") {
        return Err(Error::config(format!(
            "memory URL takes no path (got `{}`): memory://[NAME]",
            url.path()
        )));
    }
    let name = url.host_str().unwrap_or_default().to_owned();
    let mut settings = MemoryOptions::default();
    if let Some(buffer) = options.take_parsed::<usize>("buffer")? {
        if buffer == 0 {
            return Err(Error::config("option `buffer` must be at least 1"));
        }
        settings.buffer = buffer;
    }
    if let Some(max_payload) = options.take_parsed::<usize>("max_payload")? {
        settings.max_payload = max_payload;
    }
    options.finish("memory://", OPTIONS)?;
    Ok((name, settings))
}

/// The entry point for `memory://` URLs: reads the endpoint's options and
/// connects (`switchboard` calls it by scheme).
pub fn connect(endpoint: Endpoint) -> ConnectFuture {
    Box::pin(async move {
        let (name, settings) = parse_url(endpoint)?;
        let transport: Arc<dyn switchboard_core::transport::Transport> =
            Arc::new(MemoryTransport::with_options(&name, settings));
        Ok(transport)
    })
}
