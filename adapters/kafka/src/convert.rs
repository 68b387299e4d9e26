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

/// CloudEvents attribute headers are `ce-NAME` in a message and `ce_NAME` in
/// a Kafka record, as the CloudEvents Kafka protocol binding names them.
const CLOUDEVENTS_MESSAGE: &str = "ce-";
const CLOUDEVENTS_RECORD: &str = "ce_";

/// `name` with its CloudEvents prefix swapped from `from` to `to`, if it has one.
fn swap_prefix(name: &str, from: &str, to: &str) -> Option<String> {
    let rest = name.get(from.len()..)?;
    (name[..from.len()].eq_ignore_ascii_case(from) && !rest.is_empty())
        .then(|| format!("{to}{rest}"))
}

/// Headers as Kafka record headers (every header, reserved ones included).
pub(super) fn record_headers(headers: &Headers) -> OwnedHeaders {
    let mut record = OwnedHeaders::new_with_capacity(headers.len());
    for (name, value) in headers.iter() {
        let renamed = swap_prefix(name, CLOUDEVENTS_MESSAGE, CLOUDEVENTS_RECORD);
        record = record.insert(Header {
            key: renamed.as_deref().unwrap_or(name),
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
            let renamed = swap_prefix(header.key, CLOUDEVENTS_RECORD, CLOUDEVENTS_MESSAGE);
            let key = renamed.as_deref().unwrap_or(header.key);
            match value {
                Some(value) => headers.insert_received(key, value),
                None if header.value.is_none() => headers.insert_received(key, ""),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cloudevents_headers_take_the_kafka_binding_names() {
        assert_eq!(swap_prefix("ce-id", "ce-", "ce_").as_deref(), Some("ce_id"));
        assert_eq!(
            swap_prefix("CE_type", "ce_", "ce-").as_deref(),
            Some("ce-type")
        );
        assert_eq!(swap_prefix("ce-", "ce-", "ce_"), None);
        assert_eq!(swap_prefix("content-type", "ce-", "ce_"), None);
        assert_eq!(swap_prefix("c", "ce-", "ce_"), None);
    }
}
