//! The HTTP responses the server sends: a reply as a response, an error in
//! the documented shape (`sb-status` and a JSON body), and the framework's
//! own errors given that shape.

use axum::body::Body;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use super::wire as http_wire;
use switchboard_core::message::Message;
use switchboard_core::wire;
use switchboard_mesh::Shared;

/// Gives an error response made by the framework (no `sb-status`) the documented shape.
pub(super) fn documented_error(shared: &Shared, response: Response) -> Response {
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

/// A reply as an HTTP response: 200 with the payload, or the error status with a JSON body.
pub(super) fn reply_response(reply: Message) -> Response {
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

/// An error of the documented shape: `status`, `sb-status` and a JSON body with `message`.
pub(super) fn error_response(
    status: StatusCode,
    sb_status: &'static str,
    message: &str,
) -> Response {
    reply_response_with(status, wire::error_reply(sb_status, message))
}

/// A reply as an HTTP response with `status` in place of the one its headers map to.
pub(super) fn reply_response_with(status: StatusCode, reply: Message) -> Response {
    let mut response = reply_response(reply);
    *response.status_mut() = status;
    response
}
