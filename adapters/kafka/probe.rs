//! The connect-time check: one metadata request through a short-lived client
//! that keeps librdkafka's own error reports, so a wrong CA, a refused
//! password or an unreachable broker fails `connect` with the actual cause.

use std::sync::Mutex;

use rdkafka::client::ClientContext;
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseProducer, Producer as _, ProducerContext};
use rdkafka::ClientConfig;

use super::convert::BACKEND;
use super::settings::KafkaSettings;
use crate::error::{Error, Result};

/// Remembers the last error librdkafka reported (TLS handshake, SASL, connection refused).
#[derive(Default)]
struct LastError(Mutex<Option<String>>);

impl ClientContext for LastError {
    fn error(&self, error: KafkaError, reason: &str) {
        tracing::debug!(%error, reason, "kafka: connect probe");
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(reason.to_owned());
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
        (probe, answered)
    })
    .await
    .map_err(|e| Error::backend(BACKEND, e))?;
    let Err(err) = answered else {
        return Ok(());
    };
    let cause = probe
        .context()
        .0
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take();
    let source = match cause {
        Some(cause) => format!("{err}: {cause}"),
        None => err.to_string(),
    };
    Err(Error::Connect {
        url: format!("kafka://{}", settings.brokers.join(",")),
        source: source.into(),
    })
}
