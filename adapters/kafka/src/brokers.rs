//! Whether the brokers can be reached, for `health`. librdkafka reconnects
//! by itself and reports "all brokers are down" through the client's error
//! callback, but says nothing once one is back: while they are down, a
//! metadata request once a second finds out, and a record delivered says so
//! too.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::client::ClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::FutureProducer;
use tokio::sync::{watch, Notify};

use switchboard_core::health::Health;

/// The transport's producer, whose client context follows the brokers.
pub(crate) type Producer = FutureProducer<BrokerWatch>;

/// How often a metadata request asks whether the brokers are back.
const RECHECK: Duration = Duration::from_secs(1);

/// The producer's client context: notes when librdkafka finds every broker down.
#[derive(Clone, Default)]
pub(crate) struct BrokerWatch(Arc<Reach>);

/// What the context and the transport share.
#[derive(Default)]
struct Reach {
    down: AtomicBool,
    failure: Mutex<String>,
    /// Wakes [`follow`] when the brokers go down.
    fell: Notify,
}

impl ClientContext for BrokerWatch {
    fn error(&self, error: KafkaError, reason: &str) {
        if error.rdkafka_error_code() == Some(RDKafkaErrorCode::AllBrokersDown) {
            *self.0.failure.lock().unwrap_or_else(|e| e.into_inner()) = reason.to_owned();
            self.0.down.store(true, Ordering::Release);
            self.0.fell.notify_one();
            tracing::warn!(reason, "kafka: every broker is down; reconnecting");
            return;
        }
        tracing::error!(error = %error, reason, "kafka: librdkafka reported an error");
    }
}

impl BrokerWatch {
    /// `Degraded` with librdkafka's reason while every broker is down.
    pub(crate) fn health(&self) -> Health {
        if !self.0.down.load(Ordering::Acquire) {
            return Health::Connected;
        }
        let failure = self.0.failure.lock().unwrap_or_else(|e| e.into_inner());
        Health::Degraded(format!("every Kafka broker is down: {failure}"))
    }

    /// A broker answered (a delivered record, a metadata reply).
    pub(crate) fn answered(&self) {
        if self.0.down.load(Ordering::Acquire) {
            self.0.down.store(false, Ordering::Release);
        }
    }
}

/// While the brokers are down (as `watch`, `producer`'s context, saw),
/// asks for metadata every [`RECHECK`] until one answers; ends when `stop`
/// turns true or its sender is gone.
pub(crate) async fn follow(
    watch: BrokerWatch,
    producer: Producer,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            () = watch.0.fell.notified() => {}
            _ = stop.wait_for(|stopped| *stopped) => return,
        }
        while watch.0.down.load(Ordering::Acquire) {
            tokio::select! {
                () = tokio::time::sleep(RECHECK) => {}
                _ = stop.wait_for(|stopped| *stopped) => return,
            }
            let asking = producer.clone();
            // A blocking call, off the async threads.
            let answered = tokio::task::spawn_blocking(move || {
                use rdkafka::producer::Producer as _;
                asking.client().fetch_metadata(None, RECHECK).is_ok()
            })
            .await;
            if matches!(answered, Ok(true)) {
                watch.answered();
            }
        }
    }
}
