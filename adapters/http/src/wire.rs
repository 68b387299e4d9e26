//! The HTTP wire format: paths, headers and status codes (documented in `docs.md`).

use std::borrow::Cow;
use std::time::Duration;

use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};

use switchboard_core::headers::Headers;
use switchboard_core::message::Message;
use switchboard_core::wire;
use switchboard_mesh::DELIVER;

/// Path prefix of requests: `POST /requests/{subject}`.
pub(super) const REQUESTS: &str = "/requests/";
/// Path prefix of events: `POST /events/{subject}`.
pub(super) const EVENTS: &str = "/events/";
/// Subscription snapshots: `GET` to read, `POST` to exchange.
pub(super) const SUBSCRIPTIONS: &str = "/_switchboard/subscriptions";
/// Liveness: `GET` answers 200.
pub(super) const HEALTH: &str = "/_switchboard/health";

/// `sb-status` of a 401: the bearer token was missing or wrong.
pub(super) const STATUS_UNAUTHORIZED: &str = "unauthorized";
/// `sb-status` of a 403: a snapshot from a caller this service does not take peers from.
pub(super) const STATUS_FORBIDDEN: &str = "forbidden";
/// `sb-status` of a 404 for a path (or method) that is not part of the wire format.
pub(super) const STATUS_NOT_FOUND: &str = "not-found";

/// Whether an HTTP header belongs to the HTTP connection, not to the message.
/// A `match`, which compiles to a switch on the length before comparing.
fn is_transport_header(name: &str) -> bool {
    matches!(
        name,
        "host"
            | "content-length"
            | "connection"
            | "keep-alive"
            | "transfer-encoding"
            | "te"
            | "trailer"
            | "upgrade"
            | "expect"
            | "authorization"
            | "proxy-authorization"
            | "proxy-authenticate"
            | "user-agent"
            | "accept"
            | "accept-encoding"
            | "date"
            | "server"
            | DELIVER
            // Read apart (`sent_timeout`): it bounds the call, it is not part of the message.
            | wire::TIMEOUT_MS
    )
}

/// The message headers carried by an HTTP request or response.
pub(super) fn message_headers(http: &HeaderMap) -> Headers {
    let mut headers = Headers::new();
    for (name, value) in http {
        if is_transport_header(name.as_str()) {
            continue;
        }
        if let Ok(value) = value.to_str() {
            headers.insert_received(name.as_str(), value);
        }
    }
    headers
}

/// The caller's timeout a request carries (`sb-timeout-ms`), if it is a number.
pub(super) fn sent_timeout(http: &HeaderMap) -> Option<Duration> {
    let millis = http
        .get(wire::TIMEOUT_MS)?
        .to_str()
        .ok()?
        .parse::<u64>()
        .ok()?;
    Some(Duration::from_millis(millis))
}

/// The subject of a request or event path (`/requests/{subject}`,
/// `/events/{subject}`), percent-decoded; `None` if it is not UTF-8 once decoded.
pub(super) fn subject_in<'a>(path: &'a str, prefix: &str) -> Option<Cow<'a, str>> {
    let encoded = path.strip_prefix(prefix)?;
    percent_encoding::percent_decode_str(encoded)
        .decode_utf8()
        .ok()
}

/// Message headers as HTTP headers; names and values were validated at the API
/// boundary, so nothing is dropped in practice.
pub(super) fn http_headers(headers: &Headers) -> HeaderMap {
    let mut http = HeaderMap::with_capacity(headers.len());
    for (name, value) in headers.iter() {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            http.insert(name, value);
        }
    }
    http
}

/// The status code for a reply: 200 for success, otherwise by `sb-status`.
pub(super) fn status_for_reply(reply: &Message) -> StatusCode {
    match reply.headers.get(wire::STATUS) {
        None => StatusCode::OK,
        Some(wire::STATUS_CODEC_ERROR) => StatusCode::BAD_REQUEST,
        Some(wire::STATUS_NO_RESPONDERS) => StatusCode::NOT_FOUND,
        Some(wire::STATUS_PAYLOAD_TOO_LARGE) => StatusCode::PAYLOAD_TOO_LARGE,
        Some(wire::STATUS_TIMEOUT) => StatusCode::GATEWAY_TIMEOUT,
        Some(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// The `sb-status` a response without one stands for (a proxy's or the
/// framework's own error page), or `None` for success.
pub(super) fn status_for_code(code: StatusCode) -> Option<&'static str> {
    match code.as_u16() {
        200..=299 => None,
        400 | 422 => Some(wire::STATUS_CODEC_ERROR),
        404 | 405 | 503 => Some(wire::STATUS_NO_RESPONDERS),
        408 | 504 => Some(wire::STATUS_TIMEOUT),
        413 => Some(wire::STATUS_PAYLOAD_TOO_LARGE),
        _ => Some(wire::STATUS_HANDLER_ERROR),
    }
}

/// The JSON body of an error response, for clients that read bodies rather
/// than headers: `status` and `error`, and for a handler's refusal its
/// `code` and who refused (`service`, `subject`) where the reply says.
pub(super) fn error_body(reply: &switchboard_core::message::Message) -> String {
    let headers = &reply.headers;
    let mut body = serde_json::json!({
        "status": headers.get(wire::STATUS).unwrap_or_default(),
        "error": headers.get(wire::ERROR).unwrap_or_default(),
    });
    for (field, header) in [
        ("code", wire::ERROR_CODE),
        ("service", wire::ERROR_SERVICE),
        ("subject", wire::ERROR_SUBJECT),
    ] {
        if let Some(value) = headers.get(header) {
            body[field] = value.into();
        }
    }
    body.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transport_headers_are_not_message_headers() {
        let mut http = HeaderMap::new();
        http.insert("host", HeaderValue::from_static("x"));
        http.insert("content-length", HeaderValue::from_static("3"));
        http.insert("tenant", HeaderValue::from_static("acme"));
        http.insert("content-type", HeaderValue::from_static("application/json"));
        let headers = message_headers(&http);
        assert_eq!(headers.len(), 2);
        assert_eq!(headers.get("tenant"), Some("acme"));
    }

    #[test]
    fn the_timeout_is_read_apart_from_the_message() {
        let mut http = HeaderMap::new();
        http.insert(wire::TIMEOUT_MS, HeaderValue::from_static("1500"));
        http.insert("tenant", HeaderValue::from_static("acme"));
        assert_eq!(sent_timeout(&http), Some(Duration::from_millis(1500)));
        assert_eq!(message_headers(&http).get(wire::TIMEOUT_MS), None);
        http.insert(wire::TIMEOUT_MS, HeaderValue::from_static("soon"));
        assert_eq!(sent_timeout(&http), None);
    }

    #[test]
    fn subjects_are_read_from_the_path_percent_decoded() {
        assert_eq!(
            subject_in("/requests/orders.place", REQUESTS).as_deref(),
            Some("orders.place")
        );
        assert_eq!(subject_in("/events/a%2Eb", EVENTS).as_deref(), Some("a.b"));
        assert_eq!(subject_in("/events/%FF", EVENTS), None);
        assert_eq!(subject_in("/other/x", EVENTS), None);
    }

    #[test]
    fn status_codes_map_both_ways() {
        for status in [
            wire::STATUS_CODEC_ERROR,
            wire::STATUS_NO_RESPONDERS,
            wire::STATUS_PAYLOAD_TOO_LARGE,
            wire::STATUS_TIMEOUT,
            wire::STATUS_HANDLER_ERROR,
        ] {
            let code = status_for_reply(&wire::error_reply(status, "x"));
            assert_eq!(status_for_code(code), Some(status), "{status}");
        }
        assert_eq!(status_for_reply(&Message::new("ok")), StatusCode::OK);
    }
}
