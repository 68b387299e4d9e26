//! One dead letter, read from the message a service published.

use std::time::{SystemTime, UNIX_EPOCH};

use crate::message::Message;
use crate::wire;

/// One dead letter: the event a service gave up on, and why.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct DeadLetter {
    /// Its id in the store (0 before it is kept).
    pub id: i64,
    /// The subject the event was published to, where a replay sends it.
    pub subject: String,
    /// The dead-letter subject it arrived on.
    pub arrived_on: String,
    /// The service that gave up on it.
    pub service: String,
    /// The handler's last error.
    pub error: String,
    /// The code of the handler's last rejection, if it gave one.
    pub code: Option<String>,
    /// Why it was given up: `final`, `retries`, `shutdown` or `expired` (outbox), when said.
    pub cause: Option<String>,
    /// How many times the handler ran.
    pub attempts: u32,
    /// How many times this event (same subject and `sb-message-id`) was dead-lettered.
    pub times: u64,
    /// When it was first kept, in milliseconds since the Unix epoch.
    pub first_ms: i64,
    /// When it was last kept, in milliseconds since the Unix epoch.
    pub last_ms: i64,
    /// The original event: its payload and its own headers.
    pub message: Message,
}

impl DeadLetter {
    /// Reads a dead letter as it arrived on `arrived_on`. Nothing is refused:
    /// a message without `sb-dead-letter-subject` (not sent by a service) is
    /// kept with an empty subject and that said as its error, and one whose
    /// subject is not valid is kept as it is; replaying either fails with a
    /// clear error and leaves it kept.
    pub fn from_message(arrived_on: &str, message: &Message) -> DeadLetter {
        let headers = &message.headers;
        let subject = headers.get(wire::DEAD_LETTER_SUBJECT).unwrap_or("");
        let error = match headers.get(wire::DEAD_LETTER_ERROR) {
            Some(error) => error.to_owned(),
            None if subject.is_empty() => format!(
                "not a dead letter: no `{}` header",
                wire::DEAD_LETTER_SUBJECT
            ),
            None => String::new(),
        };
        // Only what a caller could have set: a forged `sb-reply-to` must not
        // turn the replayed event into a request answered to a stranger.
        let mut original = Message::new(message.payload.clone());
        for (name, value) in headers.iter() {
            if wire::carries_over(name) {
                original.headers.insert(name, value);
            }
        }
        let now = now_ms();
        DeadLetter {
            id: 0,
            subject: subject.to_owned(),
            arrived_on: arrived_on.to_owned(),
            service: headers
                .get(wire::DEAD_LETTER_SERVICE)
                .unwrap_or("")
                .to_owned(),
            error,
            code: headers.get(wire::DEAD_LETTER_CODE).map(str::to_owned),
            cause: headers.get(wire::DEAD_LETTER_CAUSE).map(str::to_owned),
            attempts: headers
                .get(wire::DEAD_LETTER_ATTEMPTS)
                .and_then(|n| n.parse().ok())
                .unwrap_or(0),
            times: 1,
            first_ms: now,
            last_ms: now,
            message: original,
        }
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| {
            i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dead_letter_keeps_only_headers_a_caller_could_set() {
        let mut letter = Message::new("{}");
        for (name, value) in [
            ("tenant", "acme"),
            (wire::MESSAGE_ID, "m-1"),
            (wire::KEY, "k"),
            (wire::REPLY_TO, "stranger.inbox"),
            (wire::CORRELATION_ID, "c-1"),
            (wire::STATUS, "handler-error"),
            (wire::DEAD_LETTER_SUBJECT, "orders.place"),
            (wire::DEAD_LETTER_ERROR, "too many"),
            (wire::DEAD_LETTER_ATTEMPTS, "3"),
        ] {
            letter.headers.insert(name, value);
        }
        let kept = DeadLetter::from_message("dead-letter.orders", &letter);
        let names: Vec<&str> = kept.message.headers.iter().map(|(name, _)| name).collect();
        assert_eq!(names, ["tenant", wire::MESSAGE_ID, wire::KEY]);
        assert_eq!((kept.subject.as_str(), kept.attempts), ("orders.place", 3));
        assert_eq!(kept.error, "too many");

        let stray = DeadLetter::from_message("dead-letter.orders", &Message::new("x"));
        assert_eq!(stray.subject, "");
        assert!(
            stray.error.starts_with("not a dead letter"),
            "{}",
            stray.error
        );
    }
}
