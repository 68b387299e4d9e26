//! Answering a request that came over Kafka: the reply goes to the
//! requester's reply topic, with its correlation id.

use std::time::Duration;

use async_trait::async_trait;
use rdkafka::producer::FutureRecord;

use super::brokers::Producer;

use super::convert;
use switchboard_core::error::{Error, Result};
use switchboard_core::incoming::Responder;
use switchboard_core::message::Message;
use switchboard_core::wire;

/// Sends the reply to a request to the requester's reply topic.
pub(super) struct KafkaResponder {
    producer: Producer,
    reply_to: String,
    correlation_id: String,
    timeout: Duration,
}

impl KafkaResponder {
    pub fn new(
        producer: Producer,
        reply_to: String,
        correlation_id: String,
        timeout: Duration,
    ) -> Self {
        KafkaResponder {
            producer,
            reply_to,
            correlation_id,
            timeout,
        }
    }
}

#[async_trait]
impl Responder for KafkaResponder {
    async fn respond(self: Box<Self>, mut reply: Message) -> Result<()> {
        // The reply address comes from whoever sent the request: refuse a name
        // Kafka cannot have at once, instead of letting librdkafka wait out
        // delivery_timeout on it.
        if let Some(reason) = invalid_topic(&self.reply_to) {
            return Err(Error::InvalidHeader {
                name: wire::REPLY_TO.to_owned(),
                reason: format!("`{}` is not a Kafka topic name: {reason}", self.reply_to),
            });
        }
        reply
            .headers
            .insert(wire::CORRELATION_ID, self.correlation_id.as_str());
        let size = reply.payload.len();
        let record = FutureRecord::to(&self.reply_to)
            .partition(0)
            .key(self.correlation_id.as_str())
            .payload(&reply.payload[..])
            .headers(convert::record_headers(&reply.headers));
        self.producer
            .send(record, self.timeout)
            .await
            .map(|_| ())
            .map_err(|(err, _)| convert::produce_error(err, &self.reply_to, size, 0, self.timeout))
    }
}

/// Why `topic` cannot be a Kafka topic name, if it cannot: 1 to 249 of
/// `[A-Za-z0-9._-]`, and not `.` or `..`.
fn invalid_topic(topic: &str) -> Option<&'static str> {
    if topic.is_empty() || topic.len() > 249 {
        return Some("it must be 1 to 249 characters long");
    }
    if topic == "." || topic == ".." {
        return Some("`.` and `..` are reserved");
    }
    if !topic
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        return Some("only letters, digits, `.`, `_` and `-` are allowed");
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forged_reply_topics_are_refused() {
        for bad in ["", ".", "..", "bad topic/..", &"x".repeat(250), "ü"] {
            assert!(invalid_topic(bad).is_some(), "{bad:?}");
        }
        for good in ["sb-replies-a-1", "no-such-topic-7", "a.b_c"] {
            assert_eq!(invalid_topic(good), None, "{good}");
        }
    }
}
