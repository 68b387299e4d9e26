//! gRPC backend (`grpc://`, and `grpcs://` with TLS): every service runs its
//! own gRPC server (tonic, HTTP/2) serving the contract in
//! `proto/switchboard/v1/`, and calls its peers over gRPC. Peers and their
//! subscriptions are learned as on `http://`.
//!
//! See `adapters/grpc/docs.md` for the URL options, the status and metadata
//! mapping (for clients in other languages) and the guarantees.

mod client;
mod convert;
mod server;
mod status;
mod transport;

use std::sync::Arc;

pub use transport::GrpcTransport;

use crate::endpoint::Endpoint;
use crate::transport::ConnectFuture;

/// The generated protobuf types, clients and servers of `proto/switchboard/v1/`,
/// for Rust programs that call switchboard services over gRPC without the bus.
///
/// ```no_run
/// use switchboard::grpc::proto::{switchboard_client::SwitchboardClient, Envelope};
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

/// The scheme table's entry point for `grpc://`.
pub(crate) fn connect_boxed(endpoint: Endpoint) -> ConnectFuture {
    Box::pin(async move {
        let settings = crate::http::mesh::HttpSettings::from_grpc_endpoint(endpoint)?;
        let transport: Arc<dyn crate::transport::Transport> =
            Arc::new(GrpcTransport::start(settings).await?);
        Ok(transport)
    })
}

/// Feeds fuzz input to every decoder of bytes from the network (see `crate::fuzzing`).
#[cfg(feature = "fuzzing")]
pub(crate) fn fuzz_decoders(data: &[u8]) {
    use prost::Message as _;

    if let Ok(envelope) = proto::Envelope::decode(data) {
        let message = convert::message(envelope);
        let _ = message.headers.validate_outgoing();
    }
    if let Ok(snapshot) = proto::Snapshot::decode(data) {
        crate::http::fuzz_snapshot(convert::snapshot_in(snapshot));
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let mut metadata = tonic::metadata::MetadataMap::new();
        if let Ok(value) = text.parse() {
            metadata.insert("grpc-timeout", value);
            let _ = status::grpc_timeout(&metadata);
        }
    }
}
