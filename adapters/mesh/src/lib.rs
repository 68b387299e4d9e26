//! The mesh under switchboard's HTTP and gRPC backends: every service runs
//! its own server, learns its peers and their subscriptions from snapshots
//! it exchanges with them, and sends each request to one responder (failing
//! over to the next) and each event to every subscriber and one member of
//! every queue group.
//!
//! A backend brings its wire: a [`PeerCalls`] client for outgoing calls and
//! the routes of its server, which hand what arrives to [`Shared`]'s
//! `serve_request`, `serve_event` and `take_snapshot`. `switchboard-http`
//! speaks HTTP/1.1 (axum, reqwest); `switchboard-grpc` speaks gRPC (tonic).
//! The URL options both read are [`HttpSettings`]; the guarantees are in
//! `adapters/http/docs.md`.
//!
//! An event a publisher sends to a peer names the local subscribers it is
//! for, from the publisher's directory ([`DELIVER`]):
//!
//! ```
//! use switchboard_mesh::{format_deliver, parse_deliver};
//!
//! let groups = vec![("orders.*".to_owned(), "billing".to_owned())];
//! let header = format_deliver(true, &groups);
//! assert_eq!(header, "plain billing@orders.*");
//! assert_eq!(parse_deliver(&header), (true, groups));
//! ```

#![warn(missing_docs)]

mod app;
mod deliver;
mod directory;
mod listener;
mod peer_calls;
mod serving;
mod settings;
mod shared;
mod tls;
mod transport;

pub use app::App;
pub use deliver::{format_deliver, parse_deliver, DELIVER};
pub use directory::{Advertised, Snapshot};
pub use listener::Protocol;
pub use peer_calls::PeerCalls;
pub use serving::{EventRefused, SnapshotRefused};
pub use settings::{
    HttpSettings, Join, DEFAULT_BUFFER, DEFAULT_HEADER_TIMEOUT, DEFAULT_MAX_BODY,
    DEFAULT_MAX_CONNECTIONS, DEFAULT_MAX_PEERS, DEFAULT_PEER_TIMEOUT, DEFAULT_RETRIES,
    DEFAULT_SERVER_TIMEOUT, DEFAULT_SYNC_INTERVAL, OPTIONS,
};
pub use shared::{Shared, Wire};
pub use tls::{ClientPems, ClientTrust, HttpTls};
pub use transport::MeshTransport;

/// A peer's snapshot, however it arrived, merged into a directory and routed
/// with (for the fuzz targets; not a public API).
#[doc(hidden)]
pub fn fuzz_snapshot(snapshot: Snapshot) {
    let known = directory::Directory::new("http://127.0.0.1:1".into(), &[], 8);
    let _ = known.merge(snapshot, directory::Trust::Full);
    let _ = known.responders("orders.placed");
    let _ = known.plan_event("orders.placed", &[]);
}
