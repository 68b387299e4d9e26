//! Write a microservice's communication code once; run it as request/reply or
//! publish/subscribe over in-memory, HTTP, gRPC, NATS, Kafka, RabbitMQ or Redis
//! Streams — chosen by configuration alone.
//!
//! # Guide
//!
//! **Connect** from settings: `SWITCHBOARD_CONFIG` (a TOML file),
//! `SWITCHBOARD_URL[_<SERVICE>]` and `SWITCHBOARD_STYLE`, read by one loader,
//! [`Settings::load`]. With nothing set, everything runs in-process.
//!
//! **Serve** with a [`Service`]: one handler per subject, a plain async fn
//! taking the typed payload (and, if it wants, [extractors](handler) such as
//! shared [`State`](handler::State)). The same handler answers a request and
//! handles an event; how the message arrived decides.
//!
//! **Call** with [`Bus::send`]: the route table decides whether that waits for
//! the reply (sync) or returns once the event is accepted (async).
//!
//! **Flip a route** in configuration — `SWITCHBOARD_STYLE=async`, or a
//! `[[routes]]` entry — and no code changes.
//!
//! ```
//! use serde::{Deserialize, Serialize};
//! use switchboard::{Sent, Service, Settings};
//!
//! #[derive(Serialize, Deserialize)]
//! struct PlaceOrder { item: String, quantity: u32 }
//!
//! async fn place(order: PlaceOrder) -> Result<String, String> {
//!     if order.quantity == 0 { return Err("quantity must be at least 1".into()); }
//!     Ok(format!("placed {} x {}", order.quantity, order.item))
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> switchboard::Result<()> {
//! # let settings = Settings::from_toml("[transports.default]\nurl = \"memory://guide\"")?;
//! // let settings = Settings::load("orders")?;   // what a service writes
//! let bus = settings.connect().await?;
//! let orders = Service::new("orders", bus.clone()).on("orders.place", place).start().await?;
//!
//! let order = PlaceOrder { item: "tea".into(), quantity: 2 };
//! match bus.send::<_, String>("orders.place", &order).await? {
//!     Sent::Replied(receipt) => assert_eq!(receipt, "placed 2 x tea"), // route is sync
//!     Sent::Accepted => {}                                             // route is async
//!     Sent::Deferred(_) => {} // sync with `fallback = "async"`, responder away
//! }
//!
//! assert!(orders.shutdown().await.is_clean());
//! bus.close().await
//! # }
//! ```
//!
//! # Modules
//! - [`handler`]: extractors, [`IntoReply`](handler::IntoReply) and coded
//!   [`Rejection`](handler::Rejection)s.
//! - [`service`]: [`RunningService`](service::RunningService), shutdown
//!   reports, the [`EventPolicy`](service::EventPolicy) for failed events.
//! - [`settings`]: transports, routes, styles and their environment variables.
//! - [`transport`]: the `Transport` contract, received
//!   messages, and [`register`](transport::register) for backends in other crates.
//! - [`layers`]: timeouts, retry, circuit breaker, bulkheads.
//! - [`headers`], [`subject`], [`wire`], [`codec`], [`trace`], [`options`].
//!
//! # Crates
//! Each backend is its own crate under `adapters/` (`switchboard-memory`,
//! `-http`, `-grpc`, `-nats`, `-kafka`, `-amqp`, `-redis`; HTTP and gRPC share
//! `switchboard-mesh`), built only on `switchboard-core`: the [`transport`]
//! contract, [`Message`], [`headers`], [`wire`] and [`Error`], the surface a
//! backend written elsewhere uses too. This crate is the one to depend on: a
//! feature flag below compiles a backend in, and the URL scheme selects it.
//!
//! # Feature flags
//! - `memory` (default): the in-process backend, `memory://`.
//! - `http`: the HTTP backend, `http://`: each service runs its own web server.
//! - `grpc`: the gRPC backend, `grpc://`: each service runs its own gRPC server
//!   (tonic) serving the contract in `proto/switchboard/v1/` ([`grpc::proto`]).
//! - `nats`: the NATS backend, `nats://`, with JetStream durable subscriptions.
//! - `kafka`: the Kafka backend, `kafka://`, on rdkafka (librdkafka built from source).
//! - `amqp`: the RabbitMQ backend, `amqp://` and `amqps://`, on lapin.
//! - `redis`: the Redis Streams backend, `redis://` and `rediss://`, on the redis crate.
//! - `full`: every backend.
//! - `metrics`: counters and histograms through the `metrics` facade.
//! - `otel`: handler spans join the caller's OpenTelemetry trace (with `tracing-opentelemetry`).
//! - `graphql`: a GraphQL gateway in front of the bus ([`graphql::Gateway`]).
//! - `outbox`: async sends held in an embedded SQLite file until a recipient
//!   took them ([`outbox`], `[outbox]` in the settings).
//! - `asyncapi`: JSON Schemas of handler types in generated AsyncAPI
//!   documents ([`asyncapi`], `Service::schema`).
//! - `msgpack`, `cbor`: MessagePack and CBOR payloads (`codec` on a route;
//!   [`codec::Encoding`]).
//! - `outbox-postgres`: the outbox in a PostgreSQL database a service's
//!   instances share (`[outbox] url`), and [`Bus::send_in`] inside the
//!   caller's transaction on it.
//! - `dead-letters`: dead letters kept in an embedded SQLite file, listed and
//!   replayed ([`dead_letters`], `switchboard dead-letters`).
//! - `cli`: the `switchboard` command-line tool.
//! - `conformance`: the behaviour suite every backend must pass
//!   ([`conformance`]), for adapters written outside this crate.
//!
//! Asking [`connect`] for a scheme whose feature is off fails with
//! [`Error::FeatureDisabled`], naming the feature.

#![warn(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod asyncapi;
mod bus;
pub mod cloudevents;
mod connect;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
mod handled_ids;
pub mod handler;
pub mod layers;
mod limits;
mod observe;
pub mod payload;
mod registry;
pub mod service;
pub mod settings;
#[cfg(any(feature = "outbox", feature = "dead-letters"))]
mod store_file;
pub mod transport;
mod unrouted;

// The contract and the pieces every backend shares live in `switchboard-core`;
// these are its modules under the names this crate has always used.
#[cfg(feature = "otel")]
use switchboard_core::otel;
use switchboard_core::{
    capabilities, endpoint, error, health, incoming, inline, message, subscription,
};
pub use switchboard_core::{codec, error_detail, headers, options, subject, trace, wire};

/// The in-process backend (`memory://`), from `switchboard-memory`.
#[cfg(feature = "memory")]
#[cfg_attr(docsrs, doc(cfg(feature = "memory")))]
pub use switchboard_memory as memory;

/// The HTTP backend (`http://`, `https://`), from `switchboard-http`.
#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
pub use switchboard_http as http;

/// The gRPC backend (`grpc://`, `grpcs://`), from `switchboard-grpc`.
#[cfg(feature = "grpc")]
#[cfg_attr(docsrs, doc(cfg(feature = "grpc")))]
pub use switchboard_grpc as grpc;

/// The Kafka backend (`kafka://`), from `switchboard-kafka`.
#[cfg(feature = "kafka")]
#[cfg_attr(docsrs, doc(cfg(feature = "kafka")))]
pub use switchboard_kafka as kafka;

/// The RabbitMQ backend (`amqp://`, `amqps://`), from `switchboard-amqp`.
#[cfg(feature = "amqp")]
#[cfg_attr(docsrs, doc(cfg(feature = "amqp")))]
pub use switchboard_amqp as amqp;
/// The Redis Streams backend (`redis://`, `rediss://`), from `switchboard-redis`.
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub use switchboard_redis as redis;

/// The NATS backend (`nats://`), from `switchboard-nats`.
#[cfg(feature = "nats")]
#[cfg_attr(docsrs, doc(cfg(feature = "nats")))]
pub use switchboard_nats as nats;

#[cfg(feature = "conformance")]
#[cfg_attr(docsrs, doc(cfg(feature = "conformance")))]
pub mod conformance;

#[cfg(feature = "graphql")]
#[cfg_attr(docsrs, doc(cfg(feature = "graphql")))]
pub mod graphql;

#[cfg(feature = "outbox")]
#[cfg_attr(docsrs, doc(cfg(feature = "outbox")))]
pub mod outbox;

#[cfg(feature = "dead-letters")]
#[cfg_attr(docsrs, doc(cfg(feature = "dead-letters")))]
pub mod dead_letters;

pub use bus::{Bus, Deferred, Sent};
pub use connect::connect;
pub use error::{Error, ErrorKind, Result};
pub use message::Message;
#[cfg(feature = "protobuf")]
#[cfg_attr(docsrs, doc(cfg(feature = "protobuf")))]
pub use payload::Proto;
pub use payload::{FromPayload, Payload};
pub use service::Service;
pub use settings::{Settings, Style};

// The guide, one page per topic: the Markdown of `docs/guide/`, rendered by
// rustdoc as `switchboard::guide` (`cargo doc --open`) and checked by its build.
#[cfg(doc)]
#[doc = include_str!("../docs/guide/README.md")]
pub mod guide {
    #[doc = include_str!("../docs/guide/routes.md")]
    pub mod routes {}
    #[doc = include_str!("../docs/guide/cli.md")]
    pub mod cli {}
    #[doc = include_str!("../docs/guide/resilience.md")]
    pub mod resilience {}
    #[doc = include_str!("../docs/guide/measured.md")]
    pub mod measured {}
    #[doc = include_str!("../docs/guide/asyncapi.md")]
    pub mod asyncapi {}
    #[doc = include_str!("../docs/guide/graphql.md")]
    pub mod graphql {}
    #[doc = include_str!("../docs/guide/security.md")]
    pub mod security {}
    #[doc = include_str!("../docs/guide/scale.md")]
    pub mod scale {}
    #[doc = include_str!("../docs/guide/adapters.md")]
    pub mod adapters {}
    #[doc = include_str!("../docs/guide/tests.md")]
    pub mod tests {}
}

/// Compiles the README's example as a doctest, so the README stays true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
