//! Mapping between switchboard messages and Kafka records, and Kafka errors.

use std::time::Duration;

use rdkafka::error::KafkaError;
use rdkafka::message::{Header, Headers as _, OwnedHeaders};
use rdkafka::types::RDKafkaErrorCode;

use switchboard_core::error::Error;
use switchboard_core::headers::Headers;
use switchboard_core::message::Message;

/// The backend name used in errors.
pub(super) const BACKEND: &str = "kafka";

/// Headers as Kafka record headers (every header, reserved ones included).
pub(super) fn record_headers(headers: &Headers) -> OwnedHeaders {
    let mut record = OwnedHeaders::new_with_capacity(headers.len());
    for (name, value) in headers.iter() {
        record = record.insert(Header {
            key: name,
            value: Some(value.as_bytes()),
        });
    }
    record
}

/// A received record as a message (header names lower-cased); a header that is
/// not a portable name with a printable-ASCII value is left out.
pub(super) fn message_from(record: &impl rdkafka::Message) -> Message {
    let mut headers = Headers::new();
    if let Some(record_headers) = record.headers() {
        for header in record_headers.iter() {
            let value = header.value.and_then(|v| std::str::from_utf8(v).ok());
            match value {
                Some(value) => headers.insert_received(header.key, value),
                None if header.value.is_none() => headers.insert_received(header.key, ""),
                None => false,
            };
        }
    }
    Message {
        payload: record
            .payload()
            .map(bytes::Bytes::copy_from_slice)
            .unwrap_or_default(),
        headers,
    }
}

/// A failed produce as a switchboard error.
pub(super) fn produce_error(
    err: KafkaError,
    subject: &str,
    size: usize,
    limit: usize,
    timeout: Duration,
) -> Error {
    match err.rdkafka_error_code() {
        Some(RDKafkaErrorCode::MessageSizeTooLarge) => Error::PayloadTooLarge { size, limit },
        Some(RDKafkaErrorCode::MessageTimedOut) => Error::Timeout {
            subject: subject.to_owned(),
            timeout,
        },
        _ => Error::backend(BACKEND, err),
    }
}
