//! The `metrics` feature: counters, histograms and gauges a service's calls produce.
#![cfg(feature = "metrics")]

mod support;

use std::time::Duration;

use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use metrics_util::{CompositeKey, MetricKind};
use switchboard::service::EventPolicy;
use switchboard::{connect, Service};

/// One snapshot of the recorder.
struct Metrics(
    Vec<(
        CompositeKey,
        Option<metrics::Unit>,
        Option<metrics::SharedString>,
        DebugValue,
    )>,
);

impl Metrics {
    fn value(&self, kind: MetricKind, name: &str, labels: &[(&str, &str)]) -> Option<&DebugValue> {
        self.0
            .iter()
            .find(|(key, _, _, _)| matches(key, kind, name, labels))
            .map(|(_, _, _, value)| value)
    }

    fn counter(&self, name: &str, labels: &[(&str, &str)]) -> u64 {
        match self.value(MetricKind::Counter, name, labels) {
            Some(DebugValue::Counter(n)) => *n,
            _ => 0,
        }
    }
}

fn matches(key: &CompositeKey, kind: MetricKind, name: &str, labels: &[(&str, &str)]) -> bool {
    key.kind() == kind
        && key.key().name() == name
        && labels.iter().all(|(label, wanted)| {
            key.key()
                .labels()
                .any(|l| l.key() == *label && l.value() == *wanted)
        })
}

#[tokio::test(flavor = "current_thread")]
async fn calls_errors_latency_in_flight_retries_and_dead_letters_are_counted() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    metrics::set_global_recorder(recorder).expect("the only recorder in this test binary");

    let bus = connect(&format!("memory://{}", support::unique("metrics")))
        .await
        .unwrap();
    let service = Service::new("metered", bus.clone())
        .event_policy(EventPolicy::default().max_attempts(2))
        .on("metered.op", |n: u32| async move {
            if n == 0 {
                Err("zero".to_owned())
            } else {
                Ok(n)
            }
        })
        .on_ordered("metered.event", |_: u32| async { Err::<(), _>("always") })
        .start()
        .await
        .unwrap();
    for n in [1u32, 2, 0] {
        let _ = bus.request_json::<_, u32>("metered.op", &n).await;
    }
    let mut letters = bus.subscribe("dead-letter.metered").await.unwrap();
    bus.publish_json("metered.event", &7u32).await.unwrap();
    support::next_within(&mut letters, Duration::from_secs(5))
        .await
        .expect("dead letter");
    // The service counts the dead letter right after publishing it; give it that moment.
    tokio::time::sleep(Duration::from_millis(200)).await;
    // One snapshot: taking one drains what the recorder holds.
    let snapshot = Metrics(snapshotter.snapshot().into_vec());
    let request = [("op", "request"), ("backend", "memory")];
    assert_eq!(
        snapshot.counter(
            "switchboard_calls_total",
            &[request[0], request[1], ("outcome", "ok")]
        ),
        2
    );
    assert_eq!(
        snapshot.counter(
            "switchboard_calls_total",
            &[request[0], ("outcome", "remote")]
        ),
        1
    );
    assert_eq!(
        snapshot.counter(
            "switchboard_calls_total",
            &[("op", "handle_request"), ("outcome", "ok")]
        ),
        2
    );
    assert_eq!(
        snapshot.counter(
            "switchboard_calls_total",
            &[("op", "handle_request"), ("outcome", "remote")]
        ),
        1
    );
    assert_eq!(
        snapshot.counter(
            "switchboard_calls_total",
            &[("op", "handle_event"), ("outcome", "remote")]
        ),
        2
    );
    assert_eq!(
        snapshot.counter(
            "switchboard_redeliveries_total",
            &[("service", "metered"), ("route", "metered.event")]
        ),
        1
    );
    assert_eq!(
        snapshot.counter("switchboard_dead_letters_total", &[("service", "metered")]),
        1
    );
    match snapshot.value(MetricKind::Histogram, "switchboard_call_seconds", &request) {
        Some(DebugValue::Histogram(samples)) => {
            assert_eq!(samples.len(), 3);
            assert!(samples
                .iter()
                .all(|s| s.into_inner() > 0.0 && s.into_inner() < 5.0));
        }
        other => panic!("no request latency histogram: {other:?}"),
    }
    match snapshot.value(MetricKind::Gauge, "switchboard_in_flight", &request) {
        Some(DebugValue::Gauge(now)) => assert_eq!(now.into_inner(), 0.0),
        other => panic!("no in-flight gauge: {other:?}"),
    }
    service.shutdown().await;
}
