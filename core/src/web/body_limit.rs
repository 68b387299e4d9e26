//! Request bodies bounded by a size limit, for the HTTP backend and the
//! GraphQL gateway: a declared size is refused before a byte is read, and an
//! undeclared (chunked) one is read no further than the limit.

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::Response;

/// The body length a request declares in `Content-Length`, if any: checked
/// against a limit before a byte of the body is read.
pub fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
}

/// Marks a refusal sent before the body was read: the connection closes,
/// because the unread body would otherwise be read as the next request.
pub fn close_after(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

/// Why a body was not read to its end.
#[derive(Debug)]
pub enum BodyRefused {
    /// It grew past the limit; reading stopped there.
    TooLarge,
    /// The connection failed or the framing was broken.
    Unreadable(String),
}

/// Reads `body` whole, stopping with [`BodyRefused::TooLarge`] as soon as it
/// grows past `limit` bytes, whether or not it declared its length.
pub async fn read_bounded(body: Body, limit: usize) -> Result<Bytes, BodyRefused> {
    axum::body::to_bytes(body, limit).await.map_err(|err| {
        // `to_bytes` reports the limit as `http_body_util::LengthLimitError` under axum's error.
        let over_limit = std::error::Error::source(&err)
            .is_some_and(|cause| cause.is::<http_body_util::LengthLimitError>());
        if over_limit {
            BodyRefused::TooLarge
        } else {
            BodyRefused::Unreadable(err.to_string())
        }
    })
}
