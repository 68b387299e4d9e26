//! Error replies as gRPC statuses and back (the table in `docs.md`).

use tonic::metadata::{MetadataMap, MetadataValue};
use tonic::{Code, Status};

use switchboard_core::error::Error;
use switchboard_core::headers::Headers;
use switchboard_core::message::Message;
use switchboard_core::wire;

/// The gRPC code an `sb-status` is answered with.
pub(super) fn code_for(status: &str) -> Code {
    match status {
        wire::STATUS_CODEC_ERROR => Code::InvalidArgument,
        wire::STATUS_NO_RESPONDERS => Code::NotFound,
        wire::STATUS_PAYLOAD_TOO_LARGE => Code::ResourceExhausted,
        wire::STATUS_TIMEOUT => Code::DeadlineExceeded,
        _ => Code::Unknown,
    }
}

/// The `sb-status` a status without one stands for (a proxy's, or tonic's
/// own), for codes that are not the caller's own trouble.
fn status_for_code(code: Code) -> &'static str {
    match code {
        Code::InvalidArgument | Code::FailedPrecondition => wire::STATUS_CODEC_ERROR,
        Code::NotFound | Code::Unimplemented => wire::STATUS_NO_RESPONDERS,
        // tonic's message size limits answer OutOfRange; a server's ResourceExhausted.
        Code::ResourceExhausted | Code::OutOfRange => wire::STATUS_PAYLOAD_TOO_LARGE,
        Code::DeadlineExceeded | Code::Cancelled => wire::STATUS_TIMEOUT,
        _ => wire::STATUS_HANDLER_ERROR,
    }
}

/// An error reply (with `sb-status`) as a status: the code by the table,
/// `sb-error` as its message, and every reply header as metadata.
pub(super) fn from_error_reply(reply: &Message) -> Status {
    let status = reply.headers.get(wire::STATUS).unwrap_or_default();
    let text = reply.headers.get(wire::ERROR).unwrap_or_default();
    Status::with_metadata(code_for(status), text, metadata(&reply.headers))
}

/// A status made here for `sb-status` (a refusal before any handler ran).
pub(super) fn refusal(status: &'static str, text: impl Into<String>) -> Status {
    let text = text.into();
    let mut headers = Headers::new();
    headers.insert(wire::STATUS, status);
    Status::with_metadata(code_for(status), text, metadata(&headers))
}

/// Message headers as metadata; names and values were validated where they
/// were set, so nothing is dropped in practice.
pub(super) fn metadata(headers: &Headers) -> MetadataMap {
    let mut metadata = MetadataMap::with_capacity(headers.len());
    for (name, value) in headers.iter() {
        if let (Ok(key), Ok(value)) = (
            name.parse::<tonic::metadata::MetadataKey<tonic::metadata::Ascii>>(),
            MetadataValue::try_from(value),
        ) {
            metadata.insert(key, value);
        }
    }
    metadata
}

/// What a request's status means to the caller: an error reply (a message
/// with `sb-status`, turned into the error by the bus), or an error of the
/// call itself — unreachable peer (so the caller fails over), timeout, or a
/// refused token.
pub(super) fn reply_for(status: Status, peer: &str, subject: &str) -> Result<Message, Error> {
    let metadata = status.metadata();
    if let Some(sb_status) = metadata.get(wire::STATUS).and_then(|v| v.to_str().ok()) {
        let mut reply = wire::error_reply(sb_status, status.message());
        for (name, value) in metadata.clone().into_headers().iter() {
            if let Ok(value) = value.to_str() {
                let name = name.as_str();
                // Only the reply's own headers: not HTTP/2's or gRPC's (`content-type`, `grpc-*`).
                if name.starts_with(wire::RESERVED_PREFIX)
                    && name != wire::STATUS
                    && name != wire::ERROR
                {
                    reply.headers.insert_received(name, value);
                }
            }
        }
        return Ok(reply);
    }
    match status.code() {
        Code::Unauthenticated => Err(unauthorized(peer)),
        Code::Unavailable => Err(Error::Connect {
            url: peer.to_owned(),
            source: status.message().to_owned().into(),
        }),
        code => Ok(wire::error_reply(
            status_for_code(code),
            format!(
                "gRPC {code:?} from {peer} on `{subject}`: {}",
                status.message()
            ),
        )),
    }
}

/// The error for a peer that refused this service's bearer token.
pub(super) fn unauthorized(peer: &str) -> Error {
    Error::backend(
        super::convert::BACKEND,
        format!("{peer} rejected this service's bearer token (gRPC Unauthenticated); check the `token` option"),
    )
}

/// The caller's timeout from `grpc-timeout` (`TimeoutValue TimeoutUnit`: up
/// to 8 digits and one of H M S m u n), if it sent one.
pub(super) fn grpc_timeout(metadata: &MetadataMap) -> Option<std::time::Duration> {
    use std::time::Duration;
    let value = metadata.get("grpc-timeout")?.to_str().ok()?;
    if value.len() < 2 || value.len() > 9 {
        return None;
    }
    let (digits, unit) = value.split_at(value.len() - 1);
    let amount: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(amount.saturating_mul(3600)),
        "M" => Duration::from_secs(amount.saturating_mul(60)),
        "S" => Duration::from_secs(amount),
        "m" => Duration::from_millis(amount),
        "u" => Duration::from_micros(amount),
        "n" => Duration::from_nanos(amount),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_replies_map_both_ways() {
        for status in [
            wire::STATUS_CODEC_ERROR,
            wire::STATUS_NO_RESPONDERS,
            wire::STATUS_PAYLOAD_TOO_LARGE,
            wire::STATUS_TIMEOUT,
            wire::STATUS_HANDLER_ERROR,
        ] {
            let mut reply = wire::error_reply(status, "it failed");
            reply.headers.insert(wire::ERROR_CODE, "E42");
            let grpc = from_error_reply(&reply);
            assert_eq!(status_for_code(grpc.code()), status, "{status}");
            let back = reply_for(grpc, "http://peer", "s").unwrap();
            assert_eq!(back.headers.get(wire::STATUS), Some(status));
            assert_eq!(back.headers.get(wire::ERROR), Some("it failed"));
            assert_eq!(back.headers.get(wire::ERROR_CODE), Some("E42"));
        }
    }

    #[test]
    fn call_failures_are_errors_not_replies() {
        let refused = reply_for(Status::unavailable("tcp connect error"), "http://p", "s");
        assert!(matches!(refused, Err(Error::Connect { .. })));
        let token = reply_for(Status::unauthenticated("no"), "http://p", "s");
        assert!(token.unwrap_err().to_string().contains("bearer token"));
        let foreign = reply_for(Status::out_of_range("too big"), "http://p", "s").unwrap();
        assert_eq!(
            foreign.headers.get(wire::STATUS),
            Some(wire::STATUS_PAYLOAD_TOO_LARGE)
        );
    }

    #[test]
    fn reads_grpc_timeout() {
        let mut metadata = MetadataMap::new();
        for (value, expected) in [("250m", 250), ("2S", 2000), ("1M", 60_000), ("5000u", 5)] {
            metadata.insert("grpc-timeout", value.parse().unwrap());
            let timeout = grpc_timeout(&metadata).unwrap();
            assert_eq!(timeout.as_millis(), expected, "{value}");
        }
        for bad in ["", "m", "12x", "123456789m", "-1S"] {
            metadata.insert("grpc-timeout", bad.parse().unwrap());
            assert_eq!(grpc_timeout(&metadata), None, "{bad:?}");
        }
    }
}
