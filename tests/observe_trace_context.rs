//! One trace id follows a call across an HTTP hop, a NATS hop and a Kafka hop,
//! and across both styles (a request, then an event).

mod support;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use switchboard::settings::{RouteRule, RouteTable};
use switchboard::trace::TraceContext;
use switchboard::{connect, Bus, Sent, Service, Style};

type Seen = Arc<Mutex<Vec<(&'static str, TraceContext)>>>;

fn record(seen: &Seen, hop: &'static str) {
    let context = TraceContext::current().expect("handlers run inside a trace context");
    seen.lock().unwrap().push((hop, context));
}

/// A bus whose `default` transport is `default` and which sends `pattern` over `other`.
fn router(default: Bus, pattern: &str, other: Bus, style: Style) -> Bus {
    let mut table = RouteTable::new(Style::Sync);
    table
        .push(RouteRule {
            style: Some(style),
            transport: Some("broker".into()),
            ..RouteRule::new(pattern)
        })
        .unwrap();
    let buses = BTreeMap::from([
        ("default".to_owned(), default),
        ("broker".to_owned(), other),
    ]);
    Bus::from_routes(table, buses).unwrap()
}

async fn one_trace_id_across_http_nats_and_kafka() {
    let Some(nats) = support::connect_or_skip(&support::nats_url()).await else {
        return;
    };
    let Some(kafka) = support::connect_or_skip(&support::kafka_url()).await else {
        return;
    };
    let prefix = support::unique("trace");
    let (a_subject, b_subject, c_subject) = (
        format!("{prefix}.a"),
        format!("{prefix}.b"),
        format!("{prefix}.c"),
    );
    let seen: Seen = Arc::default();

    // C: handles an event that arrives over Kafka.
    let (done_tx, mut done) = tokio::sync::mpsc::unbounded_channel();
    let c_seen = seen.clone();
    let c = Service::new(format!("{prefix}-c"), kafka.clone())
        .on_ordered(c_subject.clone(), move |_: String| {
            record(&c_seen, "kafka event");
            let done_tx = done_tx.clone();
            async move { done_tx.send(()).map_err(|e| e.to_string()) }
        })
        .start()
        .await
        .unwrap();

    // B: answers a request over NATS, then publishes to C over Kafka (async route).
    let b_router = router(nats.clone(), &c_subject, kafka.clone(), Style::Async);
    let (b_seen, b_forward, b_next) = (seen.clone(), b_router.clone(), c_subject.clone());
    let b = Service::new(format!("{prefix}-b"), b_router)
        .on(b_subject.clone(), move |text: String| {
            record(&b_seen, "nats request");
            let (router, next) = (b_forward.clone(), b_next.clone());
            async move {
                let sent: Sent<()> = router.send(&next, &text).await.map_err(|e| e.to_string())?;
                assert!(sent.is_accepted());
                Ok::<_, String>(text)
            }
        })
        .start()
        .await
        .unwrap();

    // A: an HTTP service that calls B over NATS (sync route).
    let a_http = connect("http://127.0.0.1:0").await.unwrap();
    let a_router = router(a_http.clone(), &b_subject, nats.clone(), Style::Sync);
    let (a_seen, a_forward, a_next) = (seen.clone(), a_router.clone(), b_subject.clone());
    let a = Service::new(format!("{prefix}-a"), a_router)
        .on(a_subject.clone(), move |text: String| {
            record(&a_seen, "http request");
            let (router, next) = (a_forward.clone(), a_next.clone());
            async move {
                let reply: Sent<String> =
                    router.send(&next, &text).await.map_err(|e| e.to_string())?;
                Ok::<_, String>(reply.reply().unwrap_or_default())
            }
        })
        .start()
        .await
        .unwrap();

    // The client calls A over HTTP inside a trace it starts.
    let client = connect(&format!(
        "http://127.0.0.1:0?peers=http://{}",
        a_http.local_address().unwrap()
    ))
    .await
    .unwrap();
    let root = TraceContext::new_root();
    let mut reply = Err(switchboard::Error::Closed);
    for _ in 0..50 {
        // The client learns A's subscriptions from its seed; retry until it has.
        reply = root
            .clone()
            .scope(client.request_json::<_, String>(&a_subject, "hello"))
            .await;
        if reply.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(reply.unwrap(), "hello");
    tokio::time::timeout(Duration::from_secs(20), done.recv())
        .await
        .expect("the Kafka hop ran")
        .unwrap();

    let seen = seen.lock().unwrap().clone();
    let hops: Vec<&str> = seen.iter().map(|(hop, _)| *hop).collect();
    assert_eq!(hops, ["http request", "nats request", "kafka event"]);
    for (hop, context) in &seen {
        assert_eq!(
            context.trace_id(),
            root.trace_id(),
            "{hop} is in another trace"
        );
        assert_ne!(
            context.span_id(),
            root.span_id(),
            "{hop} reused the caller's span"
        );
    }
    eprintln!("trace {} crossed: {}", root.trace_id(), hops.join(" -> "));

    for service in [a, b, c] {
        service.shutdown().await;
    }
    for bus in [client, a_http, nats, kafka] {
        bus.close().await.unwrap();
    }
}

crate::tests!(one_trace_id_across_http_nats_and_kafka,);
