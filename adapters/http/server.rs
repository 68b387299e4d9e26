//! This service's own web server: requests and events from peers (or curl), and snapshot exchanges.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, DefaultBodyLimit, Path, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};

use super::directory::{Refused, Snapshot, Trust};
use super::settings::Join;
use super::transport::Shared;
use super::wire::{self as http_wire, DELIVER, HEALTH, SUBSCRIPTIONS};
use crate::local::Targets;
use crate::message::Message;
use crate::{auth, subject, wire};

/// The routes of a service, with its body limit, timeouts and token check.
/// Every error, including the framework's own (unknown path, wrong method,
/// body too large, timeout), answers with the documented JSON body and `sb-status`.
pub(super) fn router(shared: Arc<Shared>) -> Router {
    let settings = &shared.settings;
    Router::new()
        .route("/requests/{subject}", post(handle_request))
        .route("/events/{subject}", post(handle_event))
        .route(SUBSCRIPTIONS, get(read_snapshot).post(exchange_snapshot))
        .route(HEALTH, get(|| async { "ok" }))
        .fallback(unknown_path)
        .layer(middleware::from_fn_with_state(shared.clone(), guard))
        .layer(DefaultBodyLimit::max(settings.max_body))
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            settings.server_timeout,
        ))
        .layer(middleware::map_response(documented_error))
        .with_state(shared)
}

/// Checks what can be checked before the body is read: a declared size over
/// `max_body` (answered at once, so an `Expect: 100-continue` client never
/// gets `100 Continue`), and the bearer token.
async fn guard(State(shared): State<Arc<Shared>>, request: Request, next: Next) -> Response {
    let settings = &shared.settings;
    let declared = auth::declared_length(request.headers());
    if declared.is_some_and(|size| size > settings.max_body as u64) {
        return auth::close_after(error_response(
            StatusCode::PAYLOAD_TOO_LARGE,
            wire::STATUS_PAYLOAD_TOO_LARGE,
            &format!(
                "the body declares {} bytes; this service accepts at most {} (`max_body`)",
                declared.unwrap_or_default(),
                settings.max_body
            ),
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
async fn documented_error(response: Response) -> Response {
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
    let mut documented = error_response(status, sb_status, message);
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

/// Takes in a caller's snapshot. An authenticated caller (token, or a client
/// certificate under mutual TLS) is believed in full. Anyone else may only
/// announce itself: the address in the snapshot must resolve to the address
/// the call came from, the peers it lists are not learned, and with
/// `join=configured` it must be a configured peer.
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
    let settings = &shared.settings;
    let authenticated =
        settings.token.is_some() || settings.tls.as_ref().is_some_and(|tls| tls.client_auth);
    let trust = if authenticated {
        Trust::Full
    } else {
        if let Err(reason) = admits(&shared, &theirs.service, caller.ip()).await {
            tracing::warn!(%caller, service = %theirs.service.escape_debug(), reason, "http: snapshot refused");
            return error_response(StatusCode::FORBIDDEN, http_wire::STATUS_FORBIDDEN, &reason);
        }
        Trust::OwnAddressOnly
    };
    match shared.directory.merge(theirs, trust) {
        Ok(()) => Json(shared.snapshot()).into_response(),
        Err(Refused::InvalidService(service)) => error_response(
            StatusCode::BAD_REQUEST,
            wire::STATUS_CODEC_ERROR,
            &format!("`{service}` is not a service address: http(s)://HOST:PORT"),
        ),
        Err(Refused::TooManyPeers) => error_response(
            StatusCode::FORBIDDEN,
            http_wire::STATUS_FORBIDDEN,
            "this service knows as many peers as it may (`max_peers`)",
        ),
    }
}

/// Whether an unauthenticated caller at `caller` may announce `service`.
async fn admits(shared: &Shared, service: &str, caller: IpAddr) -> Result<(), String> {
    let service = super::settings::parse_peer(service)
        .map_err(|_| "the snapshot's service is not http(s)://HOST:PORT".to_owned())?;
    if shared.settings.join == Join::Configured && !shared.directory.is_configured(&service) {
        return Err(format!(
            "`{service}` is not a configured peer, and this service takes only those without a token (`join=configured`)"
        ));
    }
    let url = url::Url::parse(&service).map_err(|e| e.to_string())?;
    let (host, port) = (
        url.host_str().unwrap_or_default().trim_matches(['[', ']']),
        url.port_or_known_default().unwrap_or(80),
    );
    let caller = caller.to_canonical();
    let matches = match host.parse::<IpAddr>() {
        Ok(ip) => ip.to_canonical() == caller,
        Err(_) => {
            // A name: resolved, bounded, so a stranger's made-up name cannot stall the server.
            let resolved = tokio::time::timeout(
                Duration::from_secs(2),
                tokio::net::lookup_host((host, port)),
            )
            .await;
            match resolved {
                Ok(Ok(mut addresses)) => addresses.any(|a| a.ip().to_canonical() == caller),
                _ => false,
            }
        }
    };
    if matches {
        Ok(())
    } else {
        Err(format!(
            "the snapshot announces `{service}` but came from {caller}: without a token a service may announce only its own address"
        ))
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
