//! The contract every backend implements ([`Transport`]), what it hands out
//! ([`Subscription`], [`Incoming`]), and how a backend is found by URL scheme
//! ([`register`] for backends written in other crates).

mod contract;

pub use crate::capabilities::{Capabilities, Support};
pub use crate::endpoint::Endpoint;
pub use crate::health::Health;
pub use crate::incoming::{Acker, Incoming, Responder};
pub use crate::registry::{backends, enabled_backends, register, BackendInfo};
pub use crate::subscription::Subscription;
pub use contract::*;
