//! This service's own web server: requests and events from peers (or curl), and snapshot exchanges.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, DefaultBodyLimit, Path, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use tower_layer::Layer;

use super::wire::{self as http_wire, HEALTH, SUBSCRIPTIONS};
use switchboard_core::error::Error;
use switchboard_core::message::Message;
use switchboard_core::web::{auth, body_limit};
use switchboard_core::wire;
use switchboard_mesh::Shared;
use switchboard_mesh::Snapshot;
use switchboard_mesh::DELIVER;
use switchboard_mesh::{EventRefused, SnapshotRefused};

/// The routes of a service, with its body limit, timeouts and token check.
/// Every error, including the framework's own (unknown path, wrong method,
/// body too large, timeout), answers with the documented JSON body and `sb-status`.
pub(super) fn router(shared: Arc<Shared>) -> Router {
    let settings = &shared.settings;
    let routes = Router::new()
        .route("/requests/{subject}", post(handle_request))
        .route("/events/{subject}", post(handle_event))
        .route(SUBSCRIPTIONS, get(read_snapshot).post(exchange_snapshot))
        .route(HEALTH, get(|| async { "ok" }))
        .route("/_switchboard/asyncapi", get(list_documents))
        .route("/_switchboard/asyncapi/{service}", get(read_document))
        .fallback(unknown_path)
        .with_state(shared.clone());
    // The layers wrap the routes once, outermost first. Added with
    // `Router::layer`, each route would hold them as boxed services, cloned
    // (allocated) layer by layer on every request.
    let guarded = middleware::from_fn_with_state(shared.clone(), guard).layer(routes);
    let limited = DefaultBodyLimit::max(settings.max_body).layer(guarded);
    let timed = tower_http::timeout::TimeoutLayer::with_status_code(
        StatusCode::REQUEST_TIMEOUT,
        settings.server_timeout,
    )
    .layer(limited);
    let documented = middleware::map_response_with_state(shared, documented_error).layer(timed);
    Router::new().fallback_service(documented)
}

/// The names of the services here that publish an AsyncAPI document, as a JSON array.
async fn list_documents(State(shared): State<Arc<Shared>>) -> Response {
    Json(shared.documented_services()).into_response()
}

/// The AsyncAPI document of a service running here; 404 for another name.
async fn read_document(State(shared): State<Arc<Shared>>, Path(service): Path<String>) -> Response {
    match shared.document(&service) {
        Some(document) => (
            [(header::CONTENT_TYPE, HeaderValue::from_static(wire::JSON))],
            document,
        )
            .into_response(),
        None => error_response(
            StatusCode::NOT_FOUND,
            http_wire::STATUS_NOT_FOUND,
            "no service of that name publishes a document here",
        ),
    }
}

/// Checks what can be checked before the body is read: a declared size over
/// `max_body` (answered at once, so an `Expect: 100-continue` client never
/// gets `100 Continue`), and the bearer token.
async fn guard(State(shared): State<Arc<Shared>>, request: Request, next: Next) -> Response {
    let settings = &shared.settings;
    let declared = body_limit::declared_length(request.headers());
    if let Some(size) = declared.filter(|size| *size > settings.max_body as u64) {
        let too_large = Error::PayloadTooLarge {
            size: usize::try_from(size).unwrap_or(usize::MAX),
            limit: settings.max_body,
        };
        return body_limit::close_after(reply_response_with(
            StatusCode::PAYLOAD_TOO_LARGE,
            wire::error_reply_for(&too_large),
        ));
    }
    if let Some(token) = &settings.token {
        if !auth::bearer_matches(auth::authorization(request.headers()), token) {
            return auth::challenge(error_response(
                StatusCode::UNAUTHORIZED,
                http_wire::STATUS_UNAUTHORIZED,
                "missing or wrong bearer token",
            ));
        }
    }
    next.run(request).await
}

/// Gives an error response made by the framework (no `sb-status`) the documented shape.
async fn documented_error(State(shared): State<Arc<Shared>>, response: Response) -> Response {
    let status = response.status();
    if status.is_success() || response.headers().contains_key(wire::STATUS) {
        return response;
    }
    let (sb_status, message) = match status {
        StatusCode::REQUEST_TIMEOUT => (
            wire::STATUS_TIMEOUT,
            "the request was not received and handled within `server_timeout`",
        ),
        StatusCode::PAYLOAD_TOO_LARGE => (
            wire::STATUS_PAYLOAD_TOO_LARGE,
            "the body is larger than this service accepts (`max_body`)",
        ),
        StatusCode::METHOD_NOT_ALLOWED => (
            http_wire::STATUS_NOT_FOUND,
            "this path does not take this method (see the wire format in the HTTP docs)",
        ),
        StatusCode::BAD_REQUEST | StatusCode::UNPROCESSABLE_ENTITY => {
            (wire::STATUS_CODEC_ERROR, "the request could not be read")
        }
        _ => (
            http_wire::status_for_code(status).unwrap_or(wire::STATUS_HANDLER_ERROR),
            "the request failed",
        ),
    };
    let mut reply = wire::error_reply(sb_status, message);
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        // A body without a declared length stopped at the limit: its size is unknown.
        wire::with_sizes(&mut reply.headers, None, Some(shared.settings.max_body));
    }
    let mut documented = reply_response_with(status, reply);
    for (name, value) in response.headers() {
        if name == header::ALLOW || name == header::CONNECTION {
            documented.headers_mut().insert(name, value.clone());
        }
    }
    documented
}

async fn unknown_path() -> Response {
    error_response(
        StatusCode::NOT_FOUND,
        http_wire::STATUS_NOT_FOUND,
        "no such path: requests go to POST /requests/{subject}, events to POST /events/{subject}",
    )
}

async fn handle_request(
    State(shared): State<Arc<Shared>>,
    Path(subject): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let message = Message {
        payload: body,
        headers: http_wire::message_headers(&headers),
    };
    reply_response(shared.serve_request(&subject, message, None).await)
}

async fn handle_event(
    State(shared): State<Arc<Shared>>,
    Path(subject): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let deliver = headers.get(DELIVER).and_then(|v| v.to_str().ok());
    let message = Message {
        payload: body,
        headers: http_wire::message_headers(&headers),
    };
    match shared.serve_event(&subject, message, deliver).await {
        Ok(()) => StatusCode::ACCEPTED.into_response(),
        Err(EventRefused::InvalidSubject(reason)) => {
            error_response(StatusCode::BAD_REQUEST, wire::STATUS_CODEC_ERROR, &reason)
        }
        Err(EventRefused::QueuesFull) => error_response(
            StatusCode::SERVICE_UNAVAILABLE,
            wire::STATUS_TIMEOUT,
            "subscribers did not take the event in time (their queues are full)",
        ),
        Err(EventRefused::NoSubscriber) => error_response(
            StatusCode::NOT_FOUND,
            wire::STATUS_NO_RESPONDERS,
            "no subscriber here takes events on this subject",
        ),
    }
}

async fn read_snapshot(State(shared): State<Arc<Shared>>) -> Json<Snapshot> {
    Json(shared.snapshot())
}

/// Takes in a caller's snapshot (see `Shared::take_snapshot` for who is believed how far).
async fn exchange_snapshot(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(caller): ConnectInfo<SocketAddr>,
    body: Bytes,
) -> Response {
    let theirs: Snapshot = match serde_json::from_slice(&body) {
        Ok(snapshot) => snapshot,
        Err(err) => {
            return error_response(
                StatusCode::BAD_REQUEST,
                wire::STATUS_CODEC_ERROR,
                &format!("not a snapshot: {err}"),
            )
        }
    };
    match shared.take_snapshot(theirs, caller).await {
        Ok(ours) => Json(ours).into_response(),
        Err(SnapshotRefused::Invalid(reason)) => {
            error_response(StatusCode::BAD_REQUEST, wire::STATUS_CODEC_ERROR, &reason)
        }
        Err(SnapshotRefused::Forbidden(reason)) => {
            error_response(StatusCode::FORBIDDEN, http_wire::STATUS_FORBIDDEN, &reason)
        }
    }
}

/// A reply as an HTTP response: 200 with the payload, or the error status with a JSON body.
fn reply_response(reply: Message) -> Response {
    let status = http_wire::status_for_reply(&reply);
    let mut headers = http_wire::http_headers(&reply.headers);
    if status == StatusCode::OK {
        // Only the responder's own content-type, if it set one: no made-up `application/octet-stream`.
        let mut response = Response::new(Body::from(reply.payload));
        *response.headers_mut() = headers;
        return response;
    }
    let body = http_wire::error_body(&reply);
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(wire::JSON));
    (status, headers, body).into_response()
}

fn error_response(status: StatusCode, sb_status: &'static str, message: &str) -> Response {
    reply_response_with(status, wire::error_reply(sb_status, message))
}

fn reply_response_with(status: StatusCode, reply: Message) -> Response {
    let mut response = reply_response(reply);
    *response.status_mut() = status;
    response
}
