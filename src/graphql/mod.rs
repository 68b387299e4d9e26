//! A GraphQL gateway over the bus (feature `graphql`): an axum router that
//! lets clients speaking GraphQL — browsers, mobile apps, other languages —
//! call the services and follow their events.
//!
//! The route table decides what is exposed, and nothing is by default: a
//! `[[routes]]` entry with `graphql = "query"`, `"mutation"` or
//! `"subscription"` adds one field, named after the subject (`orders.place` →
//! `orders_place`). Queries and mutations take `input: JSON` and return JSON,
//! or typed inputs and results where [`Types`] gives the handler's Rust types
//! (deriving async-graphql's `InputObject`, `SimpleObject`, `Enum`) and the
//! gateway is built with [`Gateway::with_types`].
//! A query is always a request (it needs its answer); a mutation is sent as
//! the route's style decides — on an async route it publishes and returns
//! `{"accepted": true}`.
//! Subscriptions stream `Event { subject, payload, headers }` over WebSocket
//! (`graphql-transport-ws` and the older `graphql-ws` protocol). Errors carry
//! the switchboard error kind in `extensions.kind`.
//!
//! ```no_run
//! # async fn run() -> switchboard::Result<()> {
//! use switchboard::{graphql::Gateway, Settings};
//!
//! let settings = Settings::from_toml(r#"
//!     [[routes]]
//!     subjects = "catalog.price"
//!     graphql = "query"
//!
//!     [[routes]]
//!     subjects = "orders.>"
//!     graphql = "subscription"
//! "#)?;
//! let bus = settings.connect().await?;
//! let app = Gateway::new(bus, &settings)?.router(); // POST and GET (WebSocket) /graphql
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await.unwrap();
//! axum::serve(listener, app).await.unwrap();
//! # Ok(()) }
//! ```
//!
//! `[graphql]` in the settings sets the bearer token (required on every HTTP
//! request, and in the WebSocket's `connection_init` payload as
//! `{"authorization": "Bearer …"}` unless the upgrade request carried it), the
//! body limit and the query depth and complexity limits. A WebSocket that
//! sends no `connection_init` within [`CONNECTION_INIT_WITHIN`] is closed.

mod schema;
mod typed;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_graphql::http::ALL_WEBSOCKET_PROTOCOLS;
use async_graphql::ErrorExtensions as _;
use async_graphql::ParseRequestError;
use async_graphql_axum::{GraphQLProtocol, GraphQLRequest, GraphQLResponse, GraphQLWebSocket};
use axum::body::Body;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

pub use schema::{graphql_error, ExposedField};
pub use typed::Types;

use crate::bus::Bus;
use crate::error::Result;
use crate::settings::Settings;
use switchboard_core::web::{auth, body_limit};

/// The path the router serves: `POST` for queries and mutations, `GET` with a
/// WebSocket upgrade for subscriptions.
pub const PATH: &str = "/graphql";

/// How long a new WebSocket may take to send `connection_init` before it is closed.
pub const CONNECTION_INIT_WITHIN: Duration = Duration::from_secs(10);

/// The GraphQL gateway: a schema built from the route table, and the limits
/// and token of `[graphql]`.
#[derive(Clone)]
pub struct Gateway {
    shared: Arc<Shared>,
}

struct Shared {
    schema: async_graphql::dynamic::Schema,
    fields: Vec<ExposedField>,
    token: Option<String>,
    max_body: usize,
}

impl Gateway {
    /// Builds the schema from `settings.routes` (`graphql = …`) and
    /// `settings.graphql`, calling through `bus`. Fails with
    /// [`Error::InvalidConfig`](crate::Error::InvalidConfig) for a pattern as
    /// a query or mutation, or two subjects that would share a field name.
    pub fn new(bus: Bus, settings: &Settings) -> Result<Gateway> {
        Self::with_types(bus, settings, &Types::new())
    }

    /// Like [`new`](Self::new), with typed fields for the subjects `types`
    /// names (the others stay `JSON`). Fails with
    /// [`Error::InvalidConfig`](crate::Error::InvalidConfig) also for a typed
    /// subject no route exposes that way, or a type using an interface or union.
    pub fn with_types(bus: Bus, settings: &Settings, types: &Types) -> Result<Gateway> {
        let fields = schema::exposed_fields(settings)?;
        let limits = &settings.graphql;
        let schema = schema::build(bus, &fields, limits, types)?;
        Ok(Gateway {
            shared: Arc::new(Shared {
                schema,
                fields,
                token: limits.token.clone().filter(|token| !token.is_empty()),
                max_body: limits.max_body,
            }),
        })
    }

    /// What the gateway exposes, in route order.
    pub fn fields(&self) -> &[ExposedField] {
        &self.shared.fields
    }

    /// The schema in GraphQL's schema language (for clients' code generators).
    pub fn sdl(&self) -> String {
        self.shared.schema.sdl()
    }

    /// The axum router serving [`PATH`]; merge it into a service's own router
    /// or serve it alone.
    pub fn router(&self) -> Router {
        Router::new()
            .route(PATH, get(subscribe).post(execute))
            .layer(middleware::from_fn_with_state(self.shared.clone(), guard))
            .layer(DefaultBodyLimit::max(self.shared.max_body))
            .with_state(self.shared.clone())
    }
}

/// Refuses, before any body is read: a declared body over the limit (413) and
/// a `POST` without the token (401). A WebSocket may instead present the
/// token in `connection_init`. A `POST` body is then read up to `max_body`
/// and no further, so one sent without `Content-Length` (chunked) is bounded too.
async fn guard(State(shared): State<Arc<Shared>>, request: Request, next: Next) -> Response {
    if body_limit::declared_length(request.headers())
        .is_some_and(|size| size > shared.max_body as u64)
    {
        return body_limit::close_after(too_large(shared.max_body));
    }
    if request.method() != Method::POST {
        return next.run(request).await;
    }
    if !shared.accepts(auth::authorization(request.headers())) {
        return auth::challenge(refusal(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing or wrong bearer token",
        ));
    }
    let (parts, body) = request.into_parts();
    match body_limit::read_bounded(body, shared.max_body).await {
        Ok(bytes) => {
            next.run(Request::from_parts(parts, Body::from(bytes)))
                .await
        }
        Err(body_limit::BodyRefused::TooLarge) => {
            body_limit::close_after(too_large(shared.max_body))
        }
        Err(body_limit::BodyRefused::Unreadable(reason)) => body_limit::close_after(refusal(
            StatusCode::BAD_REQUEST,
            "bad_request",
            &format!("the body could not be read: {reason}"),
        )),
    }
}

fn too_large(max_body: usize) -> Response {
    refusal(
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        &format!("the body is larger than this gateway accepts ({max_body} bytes, `max_body`)"),
    )
}

impl Shared {
    /// Whether `authorization` (`Bearer TOKEN`) passes; anything does without a token.
    fn accepts(&self, authorization: Option<&str>) -> bool {
        match &self.token {
            Some(token) => auth::bearer_matches(authorization, token),
            None => true,
        }
    }
}

/// A GraphQL-shaped error response (`{"errors": [{message, extensions}]}`).
fn refusal(status: StatusCode, kind: &str, message: &str) -> Response {
    let body = serde_json::json!({
        "errors": [{ "message": message, "extensions": { "kind": kind } }]
    });
    (status, axum::Json(body)).into_response()
}

async fn execute(
    State(shared): State<Arc<Shared>>,
    request: GraphQLRequest<Malformed>,
) -> GraphQLResponse {
    shared.schema.execute(request.into_inner()).await.into()
}

/// A body that is not a GraphQL request: 400 with the same JSON error shape
/// as every other refusal (async-graphql-axum's own answers with debug text).
struct Malformed(ParseRequestError);

impl From<ParseRequestError> for Malformed {
    fn from(err: ParseRequestError) -> Self {
        Malformed(err)
    }
}

impl IntoResponse for Malformed {
    fn into_response(self) -> Response {
        match self.0 {
            ParseRequestError::PayloadTooLarge => refusal(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                "the request is larger than this gateway accepts",
            ),
            err => refusal(
                StatusCode::BAD_REQUEST,
                "bad_request",
                &format!("not a GraphQL request: {err}"),
            ),
        }
    }
}

async fn subscribe(
    State(shared): State<Arc<Shared>>,
    protocol: GraphQLProtocol,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Response {
    let authorized_by_header = shared.accepts(auth::authorization(&headers));
    let max_message = shared.max_body;
    upgrade
        .protocols(ALL_WEBSOCKET_PROTOCOLS)
        .max_message_size(max_message)
        .max_frame_size(max_message)
        .on_upgrade(move |stream| async move {
            let schema = shared.schema.clone();
            let initialized = Arc::new(AtomicBool::new(false));
            let init_seen = initialized.clone();
            let serve = GraphQLWebSocket::new(stream, schema, protocol)
                .on_connection_init(move |payload: serde_json::Value| async move {
                    init_seen.store(true, Ordering::Relaxed);
                    let presented = payload
                        .get("authorization")
                        .or_else(|| payload.get("Authorization"))
                        .and_then(serde_json::Value::as_str);
                    match authorized_by_header || shared.accepts(presented) {
                        true => Ok(async_graphql::Data::default()),
                        false => Err(async_graphql::Error::new("missing or wrong bearer token")
                            .extend_with(|_, e| e.set("kind", "unauthorized"))),
                    }
                })
                .serve();
            tokio::pin!(serve);
            // A socket that never says `connection_init` is a stranger holding a
            // connection: dropping the server future closes it.
            tokio::select! {
                () = &mut serve => {}
                () = tokio::time::sleep(CONNECTION_INIT_WITHIN) => {
                    if initialized.load(Ordering::Relaxed) {
                        serve.await;
                    }
                }
            }
        })
}
