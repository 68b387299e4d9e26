//! The contract every backend implements ([`Transport`]), what it hands out
//! ([`Subscription`], [`Incoming`]), and how a backend is found by URL scheme
//! ([`register`] for backends written in other crates). The contract itself
//! lives in `switchboard-core`, the crate the first-party backends build on.

pub use crate::registry::{backends, enabled_backends, register, BackendInfo};
pub use switchboard_core::transport::*;
