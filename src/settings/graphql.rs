//! The GraphQL gateway's settings: which route exposes what, and the limits.

use serde::{Deserialize, Serialize};

/// How the GraphQL gateway exposes a route's subject (`graphql = "…"` on a
/// `[[routes]]` entry); a route without it is not exposed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GraphqlExposure {
    /// A `Query` field: a request to the subject, whatever its route's style
    /// (a query needs its answer; `Service` handlers answer requests in both styles).
    Query,
    /// A `Mutation` field: sent as the route's style decides — a request
    /// (the field is the reply) or an event (the field is `{"accepted": true}`).
    Mutation,
    /// A `Subscription` field streaming the events of the subject or pattern.
    Subscription,
}

/// The `[graphql]` section: credentials and limits of the GraphQL gateway.
///
/// ```toml
/// [graphql]
/// token = "s3cret"        # Authorization: Bearer s3cret (or in connection_init)
/// max_body = 65536        # bytes of one HTTP request
/// max_depth = 8
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GraphqlSettings {
    /// Bearer token every request (and every WebSocket's `connection_init`) must carry.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// Largest HTTP request body accepted, in bytes (default 1 MiB).
    pub max_body: usize,
    /// Deepest query nesting accepted (default 16).
    pub max_depth: usize,
    /// Highest query complexity accepted (default 1000 fields).
    pub max_complexity: usize,
    /// Whether the schema can be introspected (default true).
    pub introspection: bool,
}

impl Default for GraphqlSettings {
    fn default() -> Self {
        GraphqlSettings {
            token: None,
            max_body: 1024 * 1024,
            max_depth: 16,
            max_complexity: 1000,
            introspection: true,
        }
    }
}
