//! This service's own web server: requests and events from peers (or curl), and snapshot exchanges.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, DefaultBodyLimit, Path, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures_util::future::Either;
use futures_util::FutureExt;
use tower_layer::Layer;
use tower_service::Service as _;

use super::gate::Gate;
use super::responses::{error_response, reply_response};
use super::wire::{self as http_wire, EVENTS, HEALTH, REQUESTS, SUBSCRIPTIONS};
use switchboard_core::message::Message;
use switchboard_core::web::body_limit::{self, BodyRefused};
use switchboard_core::wire;
use switchboard_mesh::Snapshot;
use switchboard_mesh::DELIVER;
use switchboard_mesh::{App, Shared};
use switchboard_mesh::{EventRefused, SnapshotRefused};

/// The routes of a service, with its body limit, timeouts and token check.
/// Every error, including the framework's own (unknown path, wrong method,
/// body too large, timeout), answers with the documented JSON body and `sb-status`.
pub(super) fn router(shared: Arc<Shared>) -> App {
    let settings = &shared.settings;
    let routes = Router::new()
        // The gate (`gate.rs`) serves these directly; the routes give
        // another method its 405.
        .route(
            "/requests/{subject}",
            post(|State(shared), request| handle_request(shared, request)),
        )
        .route(
            "/events/{subject}",
            post(|State(shared), request| handle_event(shared, request)),
        )
        .route(SUBSCRIPTIONS, get(read_snapshot).post(exchange_snapshot))
        .route(HEALTH, get(|| async { "ok" }))
        .route("/_switchboard/asyncapi", get(list_documents))
        .route("/_switchboard/asyncapi/{service}", get(read_document))
        .fallback(unknown_path)
        .with_state(shared.clone());
    // One service around the routes (`gate.rs`); the body limit is read by
    // the extractors. Wrapping once, not with `Router::layer`, under which
    // each route would hold its layers as boxed services, cloned on every request.
    let limited = DefaultBodyLimit::max(settings.max_body).layer(routes);
    let gate = Gate::new(limited, serve_directly, shared);
    App::Direct(Arc::new(move |request| {
        // The routes behind the gate are always ready (an axum `Router`).
        let answer = gate.clone().call(request);
        Box::pin(answer.map(|answered| match answered {
            Ok(response) => response,
            Err(never) => match never {},
        }))
    }))
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

async fn unknown_path() -> Response {
    error_response(
        StatusCode::NOT_FOUND,
        http_wire::STATUS_NOT_FOUND,
        "no such path: requests go to POST /requests/{subject}, events to POST /events/{subject}",
    )
}

/// A request or an event, as the gate hands it over (see `gate.rs`).
pub(super) fn serve_directly(
    shared: Arc<Shared>,
    request: Request,
) -> impl Future<Output = Response> + Send {
    let path = request.uri().path();
    match path.starts_with(REQUESTS) {
        true => Either::Left(handle_request(shared, request)),
        false => Either::Right(handle_event(shared, request)),
    }
}

/// `POST /requests/{subject}`.
async fn handle_request(shared: Arc<Shared>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let Some(subject) = http_wire::subject_in(parts.uri.path(), REQUESTS) else {
        return not_utf8();
    };
    let headers = http_wire::message_headers(&parts.headers);
    let timeout = http_wire::sent_timeout(&parts.headers);
    let payload = match read_body(&shared, body).await {
        Ok(payload) => payload,
        Err(refused) => return refused,
    };
    let message = Message { payload, headers };
    reply_response(shared.serve_request(&subject, message, timeout).await)
}

/// `POST /events/{subject}`.
async fn handle_event(shared: Arc<Shared>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let Some(subject) = http_wire::subject_in(parts.uri.path(), EVENTS) else {
        return not_utf8();
    };
    let deliver = parts.headers.get(DELIVER).and_then(|v| v.to_str().ok());
    let headers = http_wire::message_headers(&parts.headers);
    let payload = match read_body(&shared, body).await {
        Ok(payload) => payload,
        Err(refused) => return refused,
    };
    let message = Message { payload, headers };
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

/// The body, whole, within `max_body`; a refusal is the status alone (413
/// over the limit, 400 unreadable), which the gate gives its documented shape.
async fn read_body(shared: &Shared, body: Body) -> Result<Bytes, Response> {
    body_limit::read_bounded(body, shared.settings.max_body)
        .await
        .map_err(|refused| match refused {
            BodyRefused::TooLarge => StatusCode::PAYLOAD_TOO_LARGE.into_response(),
            BodyRefused::Unreadable(_) => StatusCode::BAD_REQUEST.into_response(),
        })
}

/// A subject that is not UTF-8 once percent-decoded.
fn not_utf8() -> Response {
    error_response(
        StatusCode::BAD_REQUEST,
        wire::STATUS_CODEC_ERROR,
        "the subject in the path is not UTF-8 once percent-decoded",
    )
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
