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
//! let transport = switchboard_grpc::connect(Endpoint::parse("grpc://127.0.0.1:0")?).await?;
//! assert_eq!(transport.capabilities().backend, "grpc");
//! transport.close().await
//! # }
//! ```
#![warn(missing_docs)]

mod client;
mod convert;
mod server;
mod status;
mod transport;

use std::sync::Arc;

pub use transport::GrpcTransport;

use switchboard_core::endpoint::Endpoint;
use switchboard_core::transport::ConnectFuture;

/// The generated protobuf types, clients and servers of `proto/switchboard/v1/`,
/// for Rust programs that call switchboard services over gRPC without the bus.
///
/// ```no_run
/// use switchboard_grpc::proto::{switchboard_client::SwitchboardClient, Envelope};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let mut client = SwitchboardClient::connect("http://127.0.0.1:7001").await?;
/// let reply = client
///     .request(Envelope {
///         subject: "orders.place".into(),
///         headers: Default::default(),
///         payload: br#"{"item":"book"}"#.to_vec().into(),
///     })
///     .await?;
/// println!("{:?}", reply.into_inner().payload);
/// # Ok(())
/// # }
/// ```
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod proto;

/// The entry point for `grpc://` and `grpcs://` URLs: reads the endpoint's options and
/// connects (`switchboard` calls it by scheme).
pub fn connect(endpoint: Endpoint) -> ConnectFuture {
    Box::pin(async move {
        let settings = switchboard_mesh::HttpSettings::from_grpc_endpoint(endpoint)?;
        let transport: Arc<dyn switchboard_core::transport::Transport> =
            Arc::new(GrpcTransport::start(settings).await?);
        Ok(transport)
    })
}

/// Feeds fuzz input to every decoder of bytes from the network (see `switchboard::fuzzing`).
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub fn fuzz_decoders(data: &[u8]) {
    use prost::Message as _;

    if let Ok(envelope) = proto::Envelope::decode(data) {
        let message = convert::message(envelope);
        let _ = message.headers.validate_outgoing();
    }
    if let Ok(snapshot) = proto::Snapshot::decode(data) {
        switchboard_mesh::fuzz_snapshot(convert::snapshot_in(snapshot));
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let mut metadata = tonic::metadata::MetadataMap::new();
        if let Ok(value) = text.parse() {
            metadata.insert("grpc-timeout", value);
            let _ = status::grpc_timeout(&metadata);
        }
    }
}
