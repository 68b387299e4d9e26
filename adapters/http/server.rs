//! This service's own web server: requests and events from peers (or curl), and snapshot exchanges.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};

use super::directory::Snapshot;
use super::transport::Shared;
use super::wire::{self as http_wire, DELIVER, HEALTH, SUBSCRIPTIONS};
use crate::local::Targets;
use crate::message::Message;
use crate::{subject, wire};

/// The routes of a service, with its body limit, timeouts and optional token check.
pub(super) fn router(shared: Arc<Shared>) -> Router {
    let settings = &shared.settings;
    let mut routes = Router::new()
        .route("/requests/{subject}", post(handle_request))
        .route("/events/{subject}", post(handle_event))
        .route(SUBSCRIPTIONS, get(read_snapshot).post(exchange_snapshot))
        .route(HEALTH, get(|| async { "ok" }));
    // Without a token there is nothing to check: no per-request middleware hop.
    if settings.token.is_some() {
        routes = routes.layer(middleware::from_fn_with_state(
            shared.clone(),
            require_token,
        ));
    }
    routes
        .layer(DefaultBodyLimit::max(settings.max_body))
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            settings.server_timeout,
        ))
        .with_state(shared)
}

async fn require_token(
    State(shared): State<Arc<Shared>>,
    request: Request,
    next: Next,
) -> Response {
    if let Some(token) = &shared.settings.token {
        let presented = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(bearer_token)
            .unwrap_or("");
        if !constant_time_eq(presented.as_bytes(), token.as_bytes()) {
            let mut response = error_response(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "missing or wrong bearer token",
            );
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            return response;
        }
    }
    next.run(request).await
}

/// The token of an `Authorization: Bearer TOKEN` value; the scheme name is
/// case-insensitive (RFC 7235), so `bearer` and `BEARER` count too.
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim_start())
}

/// Compares secrets without an early exit that would leak how much matched.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn handle_request(
    State(shared): State<Arc<Shared>>,
    Path(subject): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(err) = subject::validate(&subject) {
        return reply_response(wire::error_reply(wire::STATUS_CODEC_ERROR, err.to_string()));
    }
    let mut message = Message {
        payload: body,
        headers: http_wire::message_headers(&headers),
    };
    let caller_timeout = message
        .headers
        .remove(wire::TIMEOUT_MS)
        .and_then(|ms| ms.parse::<u64>().ok())
        .map(Duration::from_millis);
    let timeout = caller_timeout
        .unwrap_or(shared.settings.server_timeout)
        .min(shared.settings.server_timeout);
    let reply = match shared
        .local
        .request(&subject, message, timeout, Targets::All)
        .await
    {
        Ok(reply) => reply,
        Err(err) => wire::error_reply(wire::status_for(&err), err.to_string()),
    };
    reply_response(reply)
}

async fn handle_event(
    State(shared): State<Arc<Shared>>,
    Path(subject): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(err) = subject::validate(&subject) {
        return error_response(
            StatusCode::BAD_REQUEST,
            wire::STATUS_CODEC_ERROR,
            &err.to_string(),
        );
    }
    let chosen = headers
        .get(DELIVER)
        .and_then(|v| v.to_str().ok())
        .map(http_wire::parse_deliver);
    let targets = match &chosen {
        Some((plain, groups)) => Targets::Only {
            plain: *plain,
            groups,
        },
        None => Targets::All,
    };
    let message = Message {
        payload: body,
        headers: http_wire::message_headers(&headers),
    };
    let queued = tokio::time::timeout(
        shared.settings.server_timeout,
        shared.local.publish(&subject, message, targets),
    );
    match queued.await {
        Ok(_) => StatusCode::ACCEPTED.into_response(),
        Err(_) => error_response(
            StatusCode::SERVICE_UNAVAILABLE,
            wire::STATUS_TIMEOUT,
            "subscribers did not take the event in time (their queues are full)",
        ),
    }
}

async fn read_snapshot(State(shared): State<Arc<Shared>>) -> Json<Snapshot> {
    Json(shared.snapshot())
}

async fn exchange_snapshot(
    State(shared): State<Arc<Shared>>,
    Json(theirs): Json<Snapshot>,
) -> Json<Snapshot> {
    shared.directory.merge(theirs);
    Json(shared.snapshot())
}

/// A reply as an HTTP response: 200 with the payload, or the error status with a JSON body.
fn reply_response(reply: Message) -> Response {
    let status = http_wire::status_for_reply(&reply);
    let mut headers = http_wire::http_headers(&reply.headers);
    if status == StatusCode::OK {
        return (status, headers, reply.payload).into_response();
    }
    let body = http_wire::error_body(
        reply.headers.get(wire::STATUS).unwrap_or_default(),
        reply.headers.get(wire::ERROR).unwrap_or_default(),
    );
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bearer_scheme_is_case_insensitive() {
        for value in [
            "Bearer s3cret",
            "bearer s3cret",
            "BEARER  s3cret",
            " Bearer s3cret",
        ] {
            assert_eq!(bearer_token(value), Some("s3cret"), "{value:?}");
        }
        for value in ["Basic s3cret", "Bearers3cret", "", "s3cret"] {
            assert_eq!(bearer_token(value), None, "{value:?}");
        }
    }
}
