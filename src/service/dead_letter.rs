//! Giving up on an event: dead-lettered with why and where it failed, or
//! nacked for a redelivering backend, or counted as lost.

use super::context::RouteContext;
use super::dedup::Claim;
use super::shutdown::HeldOutcome;
use crate::incoming::Incoming;
use crate::message::Message;
use crate::observe;
use crate::wire;

/// Why an event's handling ended without success.
pub(super) struct GaveUp {
    pub(super) reason: String,
    /// The last rejection's code, if it had one.
    pub(super) code: Option<String>,
    pub(super) attempts: u32,
    /// Retrying cannot help: the payload did not decode, or the handler
    /// refused for good (a permanent rejection or a final code).
    pub(super) is_final: bool,
    /// Shutdown's grace ran out before the retries did.
    pub(super) at_shutdown: bool,
}

/// Dead-letters an event whose handling ended, or nacks it; says which.
pub(super) async fn give_up(
    context: &RouteContext,
    subject: &str,
    mut incoming: Incoming,
    message: Message,
    gave_up: &GaveUp,
    claim: Option<Claim<'_>>,
) -> HeldOutcome {
    let GaveUp {
        reason, attempts, ..
    } = gave_up;
    let attempts = *attempts;
    if let Some(dead_letter_subject) = &context.dead_letter {
        let letter = dead_letter(&context.service, subject, message, gave_up);
        match context
            .bus
            .publish_reserved(dead_letter_subject, letter)
            .await
        {
            Ok(()) => {
                tracing::error!(%subject, service = %context.service, attempts, %reason, dead_letter = %dead_letter_subject, "event dead-lettered");
                observe::dead_letter(&context.service, &context.route);
                // Dead-lettered is final: a redelivery is not dead-lettered twice.
                if let Some(claim) = claim {
                    claim.handled().await;
                }
                context.settle(subject, incoming.ack().await);
                return HeldOutcome::DeadLettered;
            }
            Err(err) => {
                tracing::error!(%subject, service = %context.service, error = %err, "could not dead-letter event");
            }
        }
    } else if gave_up.is_final {
        // Redelivery cannot change a payload or a final refusal; without a
        // dead-letter subject it is logged and counted as lost.
        tracing::error!(%subject, service = %context.service, %reason, code = gave_up.code.as_deref().unwrap_or(""), "event refused for good (final) and there is no dead-letter subject; dropped");
        context.settle(subject, incoming.ack().await);
        return HeldOutcome::Lost;
    }
    context.settle(subject, incoming.nack().await);
    if context.redelivers {
        tracing::error!(%subject, service = %context.service, attempts, %reason, "event handler gave up; nacked for redelivery");
        HeldOutcome::Returned
    } else {
        tracing::error!(%subject, service = %context.service, attempts, %reason, backend = context.backend, "event handler gave up and the backend does not redeliver; event lost");
        HeldOutcome::Lost
    }
}

/// The event as it goes to the dead-letter subject: the original payload and
/// headers, plus why and where it failed.
fn dead_letter(service: &str, subject: &str, message: Message, gave_up: &GaveUp) -> Message {
    let mut letter = dead_letter_of(service, subject, message, &gave_up.reason, gave_up.attempts);
    if let Some(code) = &gave_up.code {
        letter
            .headers
            .insert(wire::DEAD_LETTER_CODE, wire::sanitize_header_value(code));
    }
    let cause = match (gave_up.is_final, gave_up.at_shutdown) {
        (true, _) => "final",
        (false, true) => "shutdown",
        (false, false) => "retries",
    };
    letter.headers.insert(wire::DEAD_LETTER_CAUSE, cause);
    letter
}

/// The dead letter's payload, user headers, and where and why it failed.
pub(super) fn dead_letter_of(
    service: &str,
    subject: &str,
    message: Message,
    reason: &str,
    attempts: u32,
) -> Message {
    let mut letter = Message::new(message.payload);
    for (name, value) in message.headers.iter() {
        if wire::carries_over(name) {
            letter.headers.insert(name, value);
        }
    }
    letter.headers.insert(wire::DEAD_LETTER_SUBJECT, subject);
    letter
        .headers
        .insert(wire::DEAD_LETTER_ERROR, wire::sanitize_header_value(reason));
    letter
        .headers
        .insert(wire::DEAD_LETTER_ATTEMPTS, attempts.to_string());
    letter.headers.insert(wire::DEAD_LETTER_SERVICE, service);
    letter
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dead_letter_keeps_payload_and_user_headers() {
        let message = Message::new("x")
            .with_header("tenant", "a")
            .with_header(wire::CORRELATION_ID, "c1");
        let letter = dead_letter_of("orders", "orders.placed", message, "bad\nthing", 5);
        assert_eq!(&letter.payload[..], b"x");
        assert_eq!(letter.headers.get("tenant"), Some("a"));
        assert_eq!(letter.headers.get(wire::CORRELATION_ID), None);
        assert_eq!(
            letter.headers.get(wire::DEAD_LETTER_ERROR),
            Some("bad?thing")
        );
        assert_eq!(letter.headers.get(wire::DEAD_LETTER_ATTEMPTS), Some("5"));
        assert_eq!(
            letter.headers.get(wire::DEAD_LETTER_SUBJECT),
            Some("orders.placed")
        );
    }
}
