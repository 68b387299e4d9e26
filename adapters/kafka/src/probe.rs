//! The connect-time check: one metadata request through a short-lived client
//! that keeps librdkafka's own error reports, so a wrong CA, a refused
//! password or an unreachable broker fails `connect` with the actual cause.

use std::sync::Mutex;

use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseProducer, Producer as _, ProducerContext};
use rdkafka::ClientConfig;

use super::convert::BACKEND;
use super::settings::KafkaSettings;
use switchboard_core::error::{Error, Result};

/// The distinct errors librdkafka reported (TLS handshake, SASL, connection
/// refused), oldest first: the first is usually the cause, later ones
/// ("1/1 brokers are down") its consequence.
#[derive(Default)]
struct LastError(Mutex<Vec<String>>);

impl LastError {
    fn note(&self, reason: &str) {
        let reason = plain_reason(reason);
        let mut reasons = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if reasons.len() < 3 && !reasons.contains(&reason) {
            reasons.push(reason);
        }
    }
}

impl ClientContext for LastError {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        tracing::debug!(?level, facility, message, "kafka: connect probe");
        if (level as i32) <= (RDKafkaLogLevel::Error as i32) {
            self.note(message);
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        tracing::debug!(%error, reason, "kafka: connect probe");
        self.note(reason);
    }
}

impl ProducerContext for LastError {
    type DeliveryOpaque = ();

    fn delivery(&self, _: &rdkafka::message::DeliveryResult<'_>, _: ()) {}
}

/// Fails with [`Error::Connect`] unless a broker answers a metadata request
/// within the connect timeout.
pub(super) async fn reach_brokers(settings: &KafkaSettings) -> Result<()> {
    let config: ClientConfig = settings.client_config();
    let probe: BaseProducer<LastError> = config
        .create_with_context(LastError::default())
        .map_err(|e| Error::backend(BACKEND, e))?;
    let timeout = settings.connect_timeout;
    let (probe, answered) = tokio::task::spawn_blocking(move || {
        let answered = probe.client().fetch_metadata(None, timeout).map(|_| ());
        if answered.is_err() {
            // librdkafka hands its error reports over only when polled.
            probe.poll(std::time::Duration::from_millis(100));
        }
        (probe, answered)
    })
    .await
    .map_err(|e| Error::backend(BACKEND, e))?;
    let Err(err) = answered else {
        return Ok(());
    };
    let causes = std::mem::take(&mut *probe.context().0.lock().unwrap_or_else(|e| e.into_inner()));
    let source = if causes.is_empty() {
        err.to_string()
    } else {
        format!("{err}: {}", causes.join("; "))
    };
    Err(Error::Connect {
        url: format!("kafka://{}", settings.brokers.join(",")),
        source: source.into(),
    })
}

/// librdkafka's report without its thread tag, broker prefix and timing:
/// `[thrd:…]: sasl_ssl://h:p/bootstrap: SASL authentication error: … (after 301ms …)`
/// becomes `SASL authentication error: …`.
fn plain_reason(reason: &str) -> String {
    let mut text = reason.trim();
    if text.starts_with("[thrd:") {
        text = text.split_once("]: ").map_or(text, |(_, rest)| rest);
    }
    if let Some((prefix, rest)) = text.split_once(": ") {
        if prefix.contains("://") {
            text = rest;
        }
    }
    if let Some(index) = text.rfind(" (after ") {
        text = &text[..index];
    }
    text.to_owned()
}

#[cfg(test)]
mod tests {
    #[test]
    fn reports_are_reduced_to_their_cause() {
        assert_eq!(
            super::plain_reason(
                "[thrd:sasl_ssl://127.0.0.1:1/bootstrap]: sasl_ssl://127.0.0.1:1/bootstrap: \
                 SASL authentication error: Authentication failed (after 301ms in state AUTH_REQ)"
            ),
            "SASL authentication error: Authentication failed"
        );
        assert_eq!(
            super::plain_reason("1/1 brokers are down"),
            "1/1 brokers are down"
        );
    }
}
