//! Bearer tokens and bounded request bodies, for the backends' web servers
//! (HTTP, gRPC) and the GraphQL gateway.

pub mod auth;
pub mod body_limit;
