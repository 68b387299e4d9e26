//! Bearer tokens: reading `Authorization` and comparing secrets, for the
//! HTTP and gRPC backends and the GraphQL gateway.

use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::Response;

/// Whether `authorization` (an `Authorization` value) is `Bearer TOKEN` with
/// this token, compared in constant time.
pub fn bearer_matches(authorization: Option<&str>, token: &str) -> bool {
    let presented = authorization.and_then(bearer_token).unwrap_or("");
    constant_time_eq(presented.as_bytes(), token.as_bytes())
}

/// The request's `Authorization` value, if it is text.
pub fn authorization(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
}

/// Marks a 401 with the scheme a client should answer with (RFC 6750).
pub fn challenge(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    response
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
