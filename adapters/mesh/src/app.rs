//! What serves a server's requests: the one type the listener and each
//! wire's routes agree on.

use std::sync::Arc;

use axum::response::Response;
use axum::Router;
use futures_util::future::BoxFuture;

/// What serves a server's requests, as the listener hands them over.
#[derive(Clone)]
pub enum App {
    /// Routed by axum (gRPC's two services).
    Routes(Router),
    /// One service that routes by itself (HTTP's gate), with no router in
    /// front of it: a router's fallback would match the path and clone a
    /// boxed service on every request first.
    Direct(Arc<dyn Fn(axum::extract::Request) -> BoxFuture<'static, Response> + Send + Sync>),
}
