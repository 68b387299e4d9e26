//! The wire contract shared by every backend: reserved headers and error statuses.
//!
//! A service written in another language speaks switchboard by sending the
//! payload bytes as the backend's message body and these headers as the
//! backend's headers (NATS headers, HTTP headers, Kafka record headers).
//!
//! | header | set by | meaning |
//! |---|---|---|
//! | `content-type` | sender | media type of the payload; absent means JSON (the default codec, which the JSON helpers use without setting it) |
//! | `sb-correlation-id` | requester | matches a reply to its request where the backend has no native reply channel (Kafka) |
//! | `sb-reply-to` | requester | where the reply goes, where the backend has no native reply channel (Kafka) |
//! | `sb-timeout-ms` | requester | the caller's remaining timeout in milliseconds, so a responder can stop early (HTTP) |
//! | `sb-status` | responder | present only on error replies: one of the `STATUS_*` values below |
//! | `sb-error` | responder | the human-readable error message of an error reply |
//! | `sb-error-code` | responder | on a `handler-error` reply: the handler's machine-readable code, when it gave one |
//! | `sb-error-service`, `sb-error-subject` | responder | on a `handler-error` reply: the service and subject whose handler refused first — across hops, the one further down that the replying handler passed the refusal on from |
//! | `sb-payload-size`, `sb-payload-limit` | responder | on a `payload-too-large` reply: the refused payload's size and the responder's limit, in bytes (each only where the refusing side knew it) |
//! | `sb-key` | publisher | partition key where the backend has one (Kafka record key); ignored elsewhere |
//! | `sb-message-id` | publisher | idempotency key: NATS JetStream stores one message per id within the stream's duplicate window (a random id is used when absent); carried as is elsewhere |
//! | `sb-deferred-id` | requester, service | on a sync command published instead of sent (`fallback = "async"`), and on its outcome published to `deferred.SUBJECT`: the command's id |
//! | `sb-deferred-error`, `sb-deferred-code`, `sb-deferred-service` | service | on the outcome of a deferred command its handler refused: the error, the rejection's code, the service |
//! | `sb-dead-letter-subject` | service | on a dead-lettered event: the subject it was published to |
//! | `sb-dead-letter-error` | service | on a dead-lettered event: the handler's last error |
//! | `sb-dead-letter-attempts` | service | on a dead-lettered event: how many times the handler ran |
//! | `sb-dead-letter-service` | service | on a dead-lettered event: the service that gave up on it |
//! | `sb-dead-letter-code`, `sb-dead-letter-cause` | service | on a dead-lettered event: the rejection's code; `final`, `retries` or `shutdown` |
//! | `sb-dead-letter-replayed` | dead-letter store | on a replayed event: the id the dead letter had in the store |
//! | `traceparent`, `tracestate` | everyone | W3C trace context, see [`TraceContext`](crate::trace::TraceContext) |
//!
//! Names starting with `sb-` are reserved: callers may set only `sb-key` and `sb-message-id`.
//! A request or event received from outside (HTTP, gRPC) keeps only those and
//! the dead-letter headers; any other `sb-` header a foreign client sent
//! (`sb-status`, `sb-error`, `sb-reply-to`, …) is dropped before a handler
//! sees it (see [`drop_foreign_reserved`]).
//! A reply without `sb-status` is a success. A reply with `sb-status` is turned
//! into the matching [`Error`] on the requester's side (see [`error_from_reply`]).

pub mod names;

pub use names::*;

use crate::error::{Error, Origin};
use crate::headers::Headers;
use crate::message::Message;

/// Builds an error reply carrying `status` and `message`.
pub fn error_reply(status: &str, message: impl Into<String>) -> Message {
    let mut headers = Headers::new();
    headers.insert(STATUS, status);
    // Header values are printable ASCII; keep the message readable rather than fail the reply.
    headers.insert(ERROR, sanitize_header_value(&message.into()));
    Message {
        payload: Default::default(),
        headers,
    }
}

/// Builds a handler's error reply with an optional machine-readable `code`
/// and the service and subject that refused first (`origin`).
pub fn handler_error_reply(
    code: Option<&str>,
    message: impl Into<String>,
    origin: Option<&Origin>,
) -> Message {
    let mut reply = error_reply(STATUS_HANDLER_ERROR, message);
    if let Some(code) = code {
        reply
            .headers
            .insert(ERROR_CODE, sanitize_header_value(code));
    }
    if let Some(origin) = origin {
        let headers = &mut reply.headers;
        headers.insert(ERROR_SERVICE, sanitize_header_value(&origin.service));
        headers.insert(ERROR_SUBJECT, sanitize_header_value(&origin.subject));
    }
    reply
}

/// Whether a header travels on when an event is carried over to a new
/// message (a dead letter, a replay): the caller's own headers and the
/// reserved ones a caller may set (`sb-key`, `sb-message-id`); never the
/// transport's (`sb-reply-to`, `sb-status`, …), which could make a replayed
/// event look like a request or a reply.
pub fn carries_over(name: &str) -> bool {
    !is_reserved(name) || is_settable(name)
}

/// Drops the reserved headers a caller may not set from a request or event
/// received from outside, keeping `sb-key`, `sb-message-id`, and the
/// dead-letter and deferred-outcome headers (`sb-dead-letter-*`,
/// `sb-deferred-*`), which services set on events they publish.
/// A foreign client's `sb-status` or `sb-reply-to` would otherwise reach
/// the handler as if the transport had set it.
pub fn drop_foreign_reserved(headers: &mut Headers) {
    if headers.iter().any(|(name, _)| is_foreign_reserved(name)) {
        headers.retain(|name, _| !is_foreign_reserved(name));
    }
}

fn is_foreign_reserved(name: &str) -> bool {
    is_reserved(name)
        && !is_settable(name)
        && !name.starts_with("sb-dead-letter-")
        && !name.starts_with("sb-deferred-")
}

/// The error reply that carries `err` back to a requester: its `sb-status`,
/// its text, and for [`Error::PayloadTooLarge`] the sizes as numbers.
pub fn error_reply_for(err: &Error) -> Message {
    let mut reply = error_reply(status_for(err), err.to_string());
    if let Error::PayloadTooLarge { size, limit } = err {
        with_sizes(&mut reply.headers, Some(*size), Some(*limit));
    }
    reply
}

/// Sets `sb-payload-size` and `sb-payload-limit` where known (non-zero) and
/// not already set: the refusing side's own figures win.
pub fn with_sizes(headers: &mut Headers, size: Option<usize>, limit: Option<usize>) {
    for (name, value) in [(PAYLOAD_SIZE, size), (PAYLOAD_LIMIT, limit)] {
        if let Some(value) = value.filter(|v| *v > 0) {
            if !headers.contains(name) {
                headers.insert(name, value.to_string());
            }
        }
    }
}

/// The `sb-status` value that carries `err` back to a requester.
pub fn status_for(err: &Error) -> &'static str {
    match err {
        Error::Codec { .. } => STATUS_CODEC_ERROR,
        Error::NoResponders { .. } => STATUS_NO_RESPONDERS,
        Error::PayloadTooLarge { .. } => STATUS_PAYLOAD_TOO_LARGE,
        Error::Timeout { .. } => STATUS_TIMEOUT,
        _ => STATUS_HANDLER_ERROR,
    }
}

/// Turns an error reply into the requester's [`Error`]; `None` for a success reply.
pub fn error_from_reply(subject: &str, reply: &Message) -> Option<Error> {
    let status = reply.headers.get(STATUS)?;
    let message = reply.headers.get(ERROR).unwrap_or("").to_owned();
    let subject = subject.to_owned();
    Some(match status {
        STATUS_CODEC_ERROR => {
            // A responder's text may already start with the prefix this error prints.
            let message = message.strip_prefix("codec error: ").unwrap_or(&message);
            Error::codec(format!("responder rejected the request: {message}"))
        }
        STATUS_NO_RESPONDERS => Error::NoResponders { subject },
        STATUS_PAYLOAD_TOO_LARGE => {
            let number = |name| reply.headers.get(name).and_then(|v| v.parse().ok());
            Error::PayloadTooLarge {
                size: number(PAYLOAD_SIZE).unwrap_or(0),
                limit: number(PAYLOAD_LIMIT).unwrap_or(0),
            }
        }
        STATUS_TIMEOUT => Error::Timeout {
            subject,
            timeout: Default::default(),
        },
        _ => Error::Remote {
            subject,
            code: reply.headers.get(ERROR_CODE).map(str::to_owned),
            message,
            origin: match (
                reply.headers.get(ERROR_SERVICE),
                reply.headers.get(ERROR_SUBJECT),
            ) {
                (Some(service), Some(subject)) => Some(Box::new(Origin {
                    service: service.to_owned(),
                    subject: subject.to_owned(),
                })),
                _ => None,
            },
        },
    })
}

/// Replaces characters that are not allowed in header values.
pub fn sanitize_header_value(text: &str) -> String {
    text.chars()
        .take(crate::headers::MAX_VALUE_LEN)
        .map(|c| {
            if c == '\t' || (' '..='~').contains(&c) {
                c
            } else {
                '?'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    #[test]
    fn error_replies_round_trip() {
        let cases = [
            (Error::remote("s", None, "boom"), ErrorKind::Remote),
            (Error::codec("bad json"), ErrorKind::Codec),
            (
                Error::NoResponders {
                    subject: "s".into(),
                },
                ErrorKind::NoResponders,
            ),
            (
                Error::PayloadTooLarge { size: 10, limit: 5 },
                ErrorKind::PayloadTooLarge,
            ),
        ];
        for (err, kind) in cases {
            let reply = error_reply_for(&err);
            let back = error_from_reply("s", &reply).expect("error reply");
            assert_eq!(back.kind(), kind);
        }
        let too_large = error_reply_for(&Error::PayloadTooLarge { size: 10, limit: 5 });
        assert!(matches!(
            error_from_reply("s", &too_large),
            Some(Error::PayloadTooLarge { size: 10, limit: 5 })
        ));
        // Sizes travel as numbers, never read back from text (which may hold an address).
        let from_text = error_reply(
            STATUS_PAYLOAD_TOO_LARGE,
            "HTTP 413 from http://127.0.0.1:7001: payload of 10 bytes exceeds the limit of 5 bytes",
        );
        assert!(matches!(
            error_from_reply("s", &from_text),
            Some(Error::PayloadTooLarge { size: 0, limit: 0 })
        ));
        assert!(error_from_reply("s", &Message::new("ok")).is_none());
    }

    #[test]
    fn foreign_reserved_headers_are_dropped() {
        let mut headers = Headers::new();
        for name in [
            STATUS,
            ERROR,
            REPLY_TO,
            CORRELATION_ID,
            KEY,
            MESSAGE_ID,
            DEAD_LETTER_ERROR,
            "tenant",
        ] {
            headers.insert(name, "x");
        }
        drop_foreign_reserved(&mut headers);
        let kept: Vec<&str> = headers.iter().map(|(name, _)| name).collect();
        assert_eq!(kept, [KEY, MESSAGE_ID, DEAD_LETTER_ERROR, "tenant"]);
    }

    #[test]
    fn remote_message_is_kept_and_sanitized() {
        let reply = error_reply(STATUS_HANDLER_ERROR, "no stock for ✓ item\n");
        match error_from_reply("orders.get", &reply) {
            Some(Error::Remote {
                subject, message, ..
            }) => {
                assert_eq!(subject, "orders.get");
                assert_eq!(message, "no stock for ? item?");
            }
            other => panic!("unexpected {other:?}"),
        }
        let origin = Origin {
            service: "inventory".into(),
            subject: "inventory.reserve".into(),
        };
        let coded = handler_error_reply(Some("out_of_stock"), "no tea", Some(&origin));
        let err = error_from_reply("orders.place", &coded).unwrap();
        assert_eq!(err.code(), Some("out_of_stock"));
        assert_eq!(err.origin(), Some(&origin));
        let undecodable = error_reply(STATUS_CODEC_ERROR, "codec error: expected a number");
        assert_eq!(
            error_from_reply("orders.place", &undecodable)
                .unwrap()
                .to_string(),
            "codec error: responder rejected the request: expected a number"
        );
    }
}
