//! The contract switchboard's backends are built on.
//!
//! A backend implements [`Transport`](transport::Transport): request/reply,
//! publish and subscribe for [`Message`]s, with [`Error`]s every caller reads
//! the same way. This crate holds that contract and the pieces every backend
//! shares — headers and their reserved names, subjects, URL options, the
//! drain gate for `close()`, in-process delivery to local subscribers, and
//! (feature `web`) bearer tokens and bounded bodies for web servers.
//!
//! The first-party backends (`switchboard-memory`, `-http`, `-grpc`, `-nats`,
//! `-kafka`, and `switchboard-mesh` under HTTP and gRPC) use only what is
//! public here, the same surface a backend written elsewhere uses. Users
//! depend on `switchboard`, which re-exports these modules and selects a
//! backend by URL scheme; a backend in another crate makes itself selectable
//! with `switchboard::transport::register` (see `examples/custom_backend`).
//!
//! ```
//! use switchboard_core::{wire, Message};
//!
//! let reply = wire::error_reply(wire::STATUS_TIMEOUT, "no answer in 5 s");
//! assert_eq!(reply.headers.get(wire::STATUS), Some(wire::STATUS_TIMEOUT));
//! assert!(Message::new("ok").headers.get(wire::STATUS).is_none());
//! ```

#![warn(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod capabilities;
mod chunked;
pub mod codec;
pub mod drain;
pub mod endpoint;
pub mod error;
pub mod error_detail;
pub mod headers;
pub mod health;
pub mod incoming;
#[doc(hidden)] // The facade's services answer requests inline through it.
pub mod inline;
pub mod local;
pub mod message;
pub mod options;
#[cfg(feature = "otel")]
#[doc(hidden)] // Span plumbing for the facade's handlers and for `trace`.
pub mod otel;
pub mod subject;
pub mod subscription;
pub mod trace;
pub mod transport;
pub mod wire;

#[cfg(feature = "web")]
#[cfg_attr(docsrs, doc(cfg(feature = "web")))]
pub mod web;

pub use error::{Error, ErrorKind, Result};
pub use message::Message;
