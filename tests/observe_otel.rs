//! The `otel` feature: a handler's OpenTelemetry span belongs to the caller's
//! trace, and a call made inside an OpenTelemetry span carries that trace on.
#![cfg(feature = "otel")]

mod support;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};
use switchboard::{connect, trace::TraceContext, Service};
use tracing::Instrument;
use tracing_subscriber::layer::SubscriberExt;

#[tokio::test(flavor = "current_thread")]
async fn handler_spans_join_the_callers_trace() {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
    let _guard = tracing::subscriber::set_default(subscriber);

    let bus = connect(&format!("memory://{}", support::unique("otel")))
        .await
        .unwrap();
    let service = Service::new("otel", bus.clone())
        .on("otel.echo", |text: String| async move {
            let seen = TraceContext::current().expect("handler has a trace");
            Ok::<_, String>(format!("{text} {}", seen.trace_id()))
        })
        .start()
        .await
        .unwrap();

    // The caller works inside an OpenTelemetry span that switchboard did not start.
    let caller = tracing::info_span!("checkout");
    let reply: String = bus
        .request_json("otel.echo", "hi")
        .instrument(caller.clone())
        .await
        .unwrap();
    service.shutdown().await;
    drop(caller);
    provider.force_flush().unwrap();

    let spans = exporter.get_finished_spans().unwrap();
    let checkout = spans
        .iter()
        .find(|s| s.name == "checkout")
        .expect("caller span exported");
    let trace_id = checkout.span_context.trace_id().to_string();
    assert!(
        reply.ends_with(&trace_id),
        "handler saw another trace: {reply} vs {trace_id}"
    );
    let switchboard_spans: Vec<_> = spans.iter().filter(|s| s.name == "switchboard").collect();
    assert!(
        switchboard_spans.len() >= 2,
        "request and handler spans: {switchboard_spans:?}"
    );
    for span in switchboard_spans {
        assert_eq!(
            span.span_context.trace_id().to_string(),
            trace_id,
            "{span:?}"
        );
    }
}
