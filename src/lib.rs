//! Write a microservice's communication code once; run it as request/reply or
//! publish/subscribe over in-memory, HTTP, NATS or Kafka, chosen by a URL.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> switchboard::Result<()> {
//! use switchboard::{Message, Service};
//!
//! // The URL alone picks the backend: "nats://127.0.0.1:4222", "kafka://…", …
//! let bus = switchboard::connect("memory://").await?;
//!
//! // Synchronous style: request/reply.
//! let greeter = Service::new("greeter", bus.clone())
//!     .on_request("greet", |name: String| async move { Ok::<_, String>(format!("hello, {name}")) })
//!     .start()
//!     .await?;
//! let reply: String = bus.request_json("greet", "ada").await?;
//! assert_eq!(reply, "hello, ada");
//!
//! // Asynchronous style: publish/subscribe.
//! let mut events = bus.subscribe("user.created").await?;
//! bus.publish("user.created", Message::new("ada")).await?;
//! assert_eq!(events.next().await.unwrap().payload(), b"ada");
//!
//! greeter.shutdown().await;
//! bus.close().await?;
//! # Ok(()) }
//! ```
//!
//! # Pieces
//! - [`Transport`]: the contract every backend implements; [`Bus`] is the
//!   cloneable handle services use, returned by [`connect`].
//! - [`Message`] (payload bytes plus [`Headers`]) and [`Incoming`] (a received
//!   message that can be replied to, acked or nacked).
//! - [`Service`]: typed JSON handlers (`on_request`, `on_event`) run until shutdown.
//! - [`Error`]: one error type whose [`ErrorKind`]s mean the same on every backend.
//! - [`subject`] rules and the [`wire`] contract (reserved headers, error statuses).
//!
//! # Feature flags
//! - `memory` (default): the in-process backend, `memory://`.
//! - `http`: the HTTP backend, `http://`: each service runs its own web server.
//! - `nats`: the NATS backend, `nats://`, with JetStream durable subscriptions.
//! - `kafka`: the Kafka backend, `kafka://`, on rdkafka (librdkafka built from source).
//! - `full`: every backend.
//! - `metrics`: counters and histograms through the `metrics` facade.
//! - `otel`: handler spans join the caller's OpenTelemetry trace (with `tracing-opentelemetry`).
//! - `cli`: the `switchboard` command-line tool.
//! - `conformance`: the behaviour suite every backend must pass
//!   ([`conformance`]), for adapters written outside this crate.
//!
//! Asking [`connect`] for a scheme whose feature is off fails with
//! [`Error::FeatureDisabled`], naming the feature.

#![warn(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod bus;
mod capabilities;
pub mod codec;
mod config;
mod connect;
pub mod drain;
mod error;
mod event_policy;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
pub mod headers;
mod health;
mod incoming;
pub mod layers;
#[allow(dead_code)] // Used by the memory and http backends; unused when neither is enabled.
mod local;
mod message;
mod observe;
pub mod options;
#[cfg(feature = "otel")]
mod otel;
mod routing;
mod service;
pub mod subject;
mod subscription;
mod trace_context;
mod transport;
pub mod wire;

#[cfg(feature = "memory")]
#[cfg_attr(docsrs, doc(cfg(feature = "memory")))]
#[path = "../adapters/memory/mod.rs"]
pub mod memory;

#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
#[path = "../adapters/http/mod.rs"]
pub mod http;

#[cfg(feature = "kafka")]
#[cfg_attr(docsrs, doc(cfg(feature = "kafka")))]
#[path = "../adapters/kafka/mod.rs"]
pub mod kafka;

#[cfg(feature = "nats")]
#[cfg_attr(docsrs, doc(cfg(feature = "nats")))]
#[path = "../adapters/nats/mod.rs"]
pub mod nats;

#[cfg(feature = "conformance")]
#[cfg_attr(docsrs, doc(cfg(feature = "conformance")))]
pub mod conformance;

pub use bus::{Bus, DEFAULT_REQUEST_TIMEOUT};
pub use capabilities::{Capabilities, Support};
pub use config::{Config, DEFAULT_URL, URL_ENV};
pub use connect::{
    backends, connect, enabled_backends, BackendInfo, ConnectFn, ConnectFuture, Endpoint,
};
pub use error::{BoxError, DeliveryFailure, Error, ErrorKind, Result};
pub use event_policy::{EventPolicy, DEFAULT_DEAD_LETTER};
pub use headers::Headers;
pub use health::Health;
pub use incoming::{Acker, Incoming, Responder};
pub use message::Message;
pub use routing::{
    Dispatched, RouteDecision, RouteRule, RouteSettings, RouteTable, Router, Settings, Style,
    CONFIG_ENV, DEFAULT_TRANSPORT, STYLE_ENV,
};
pub use service::{RunningService, Service, DEFAULT_CONCURRENCY};
pub use subscription::Subscription;
pub use trace_context::{TraceContext, TRACEPARENT, TRACESTATE};
pub use transport::Transport;

/// Compiles the README's example as a doctest, so the README stays true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
