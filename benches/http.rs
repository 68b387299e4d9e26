//! HTTP backend against raw `reqwest` → `axum` with the same client settings, same run.
//!
//! `cargo bench --all-features --bench http`. Everything listens on 127.0.0.1
//! ephemeral ports. Rows: publish counted at the subscriber, and request/reply
//! serial and with 64 in flight, as `switchboard` (a `Subscription` echoing raw
//! messages), `service_typed_json` (a typed `Service` handler called with
//! `request_json` / `publish_json`) and `raw_reqwest_axum`; and
//! `two_process_*` groups with the responder in a second process (a copy of
//! this binary), `service_typed_json` against `raw_reqwest_axum`.

mod common;

use std::time::Instant;

use axum::body::Bytes;
use axum::routing::post;
use common::raw_path::RawPath;
use common::service_path::{self, TypedService};
use common::two_process::{self, Responder};
use common::{bench_in_flight, config, payload, runtime, PAYLOADS};
use criterion::{criterion_group, BenchmarkId, Criterion, Throughput};
use switchboard::Message;
use tokio::sync::mpsc;

/// The raw baseline's client: the settings switchboard's peer client uses.
fn raw_client() -> reqwest::Client {
    reqwest::Client::builder()
        .tcp_nodelay(true)
        .pool_max_idle_per_host(64)
        .build()
        .unwrap()
}

/// A raw axum server: `/echo` answers with the body, `/events` hands it to a channel (202).
async fn raw_server() -> (String, mpsc::UnboundedReceiver<Bytes>) {
    // Unbounded like the switchboard side's counter: the bench drains after publishing.
    let (events_tx, events_rx) = mpsc::unbounded_channel();
    let app = axum::Router::new()
        .route("/echo", post(|body: Bytes| async move { body }))
        .route(
            "/events",
            post(move |body: Bytes| {
                let events_tx = events_tx.clone();
                async move {
                    let _ = events_tx.send(body);
                    axum::http::StatusCode::ACCEPTED
                }
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, events_rx)
}

fn http(c: &mut Criterion) {
    let rt = runtime();
    let (responder, requester) = rt.block_on(common::http_pair());
    let (raw_url, raw_events) = rt.block_on(raw_server());
    let raw_events = std::sync::Arc::new(tokio::sync::Mutex::new(raw_events));
    let raw = raw_client();
    let typed = std::sync::Arc::new(rt.block_on(TypedService::start(&responder, "bench.typed")));

    let raw_path = RawPath::start(&rt, &responder);
    let mut group = c.benchmark_group("http/publish_to_delivery");
    group.throughput(Throughput::Elements(1));
    for size in PAYLOADS {
        let message = Message::new(payload(size));
        raw_path.bench_publish(&mut group, &rt, &requester, size);
        group.bench_function(BenchmarkId::new("raw_reqwest_axum", size), |b| {
            b.to_async(&rt).iter_custom(|iters| {
                let (raw, url, body, received) = (
                    raw.clone(),
                    format!("{raw_url}/events"),
                    message.payload.clone(),
                    raw_events.clone(),
                );
                async move {
                    let start = Instant::now();
                    for _ in 0..iters {
                        raw.post(&url).body(body.clone()).send().await.unwrap();
                    }
                    let mut received = received.lock().await;
                    for _ in 0..iters {
                        received.recv().await.unwrap();
                    }
                    start.elapsed()
                }
            })
        });
        service_path::bench_events(&mut group, &rt, &requester, &typed, size);
    }
    group.finish();

    let mut serial = c.benchmark_group("http/request_reply_serial");
    serial.throughput(Throughput::Elements(1));
    for size in PAYLOADS {
        let message = Message::new(payload(size));
        RawPath::bench_serial(&mut serial, &rt, &requester, size);
        serial.bench_function(BenchmarkId::new("raw_reqwest_axum", size), |b| {
            b.to_async(&rt).iter(|| {
                let (raw, url, body) = (
                    raw.clone(),
                    format!("{raw_url}/echo"),
                    message.payload.clone(),
                );
                async move {
                    raw.post(url)
                        .body(body)
                        .send()
                        .await
                        .unwrap()
                        .bytes()
                        .await
                        .unwrap()
                }
            })
        });
        service_path::bench_serial(&mut serial, &rt, &requester, &typed.echo, size);
    }
    serial.finish();

    let mut concurrent = c.benchmark_group("http/request_reply_64_in_flight");
    concurrent.throughput(Throughput::Elements(1));
    for size in PAYLOADS {
        let message = Message::new(payload(size));
        RawPath::bench_in_flight(&mut concurrent, &rt, &requester, size);
        bench_in_flight(&mut concurrent, "raw_reqwest_axum", size, &rt, {
            let (raw, url, body) = (
                raw.clone(),
                format!("{raw_url}/echo"),
                message.payload.clone(),
            );
            move || {
                let (raw, url, body) = (raw.clone(), url.clone(), body.clone());
                async move {
                    raw.post(url)
                        .body(body)
                        .send()
                        .await
                        .unwrap()
                        .bytes()
                        .await
                        .unwrap();
                }
            }
        });
        service_path::bench_in_flight(&mut concurrent, &rt, &requester, &typed.echo, size);
    }
    concurrent.finish();
}

/// The responder copy of the two-process rows: a switchboard HTTP service
/// with the typed service, and a raw axum echo; prints both base URLs.
fn http_responder(prefix: String) {
    runtime().block_on(async {
        let bus = switchboard::connect("http://127.0.0.1:0").await.unwrap();
        let _typed = TypedService::start(&bus, &prefix).await;
        let (raw_url, _events) = raw_server().await;
        two_process::ready(&format!(
            "http://{} {raw_url}",
            bus.local_address().unwrap()
        ));
        two_process::serve_until_killed().await;
    });
}

/// A raw `reqwest` POST of `body` to `url`, read to the end.
async fn raw_post(raw: reqwest::Client, url: String, body: Bytes) {
    raw.post(url)
        .body(body)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
}

/// Requester here, responder in another process: raw reqwest → axum against
/// the typed `Service` path, 128 B.
fn http_two_process(c: &mut Criterion) {
    let rt = runtime();
    let prefix = "bench.remote";
    let responder = Responder::start(prefix);
    let (service_url, raw_url) = responder
        .detail
        .split_once(' ')
        .map(|(a, b)| (a.to_owned(), format!("{b}/echo")))
        .expect("two URLs");
    let requester = rt
        .block_on(switchboard::connect(&format!(
            "http://127.0.0.1:0?peers={service_url}"
        )))
        .unwrap();
    let raw = raw_client();
    let echo = service_path::echo_subject(prefix);
    let body = payload(126);

    let mut serial = c.benchmark_group("http/two_process_request_reply_serial");
    serial.throughput(Throughput::Elements(1));
    service_path::bench_serial(&mut serial, &rt, &requester, &echo, 128);
    serial.bench_function(BenchmarkId::new("raw_reqwest_axum", 128), |b| {
        b.to_async(&rt)
            .iter(|| raw_post(raw.clone(), raw_url.clone(), body.clone()))
    });
    serial.finish();

    let mut concurrent = c.benchmark_group("http/two_process_request_reply_64_in_flight");
    concurrent.throughput(Throughput::Elements(1));
    service_path::bench_in_flight(&mut concurrent, &rt, &requester, &echo, 128);
    bench_in_flight(&mut concurrent, "raw_reqwest_axum", 128, &rt, {
        let (raw, raw_url, body) = (raw.clone(), raw_url.clone(), body.clone());
        move || raw_post(raw.clone(), raw_url.clone(), body.clone())
    });
    concurrent.finish();
}

criterion_group! {
    name = benches;
    config = config();
    targets = http, http_two_process
}

fn main() {
    if let Some(prefix) = two_process::responder_prefix() {
        return http_responder(prefix);
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
