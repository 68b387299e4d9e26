//! gRPC backend against raw tonic (the same generated client and server code,
//! a hand-written echo service) in the same run.
//!
//! `cargo bench --all-features --bench grpc`. Everything listens on 127.0.0.1
//! ephemeral ports. Rows: publish counted at the subscriber, and request/reply
//! serial and with 64 in flight, as `switchboard` (a `Subscription` echoing raw
//! messages), `service_typed_json` (a typed `Service` handler called with
//! `request_json` / `publish_json`) and `raw_tonic`; and `two_process_*`
//! groups with the responder in a second process (a copy of this binary),
//! `service_typed_json` against `raw_tonic`.

mod common;

use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use common::raw_path::RawPath;
use common::service_path::{self, TypedService};
use common::two_process::{self, Responder};
use common::{bench_in_flight, config, payload, runtime, PAYLOADS};
use criterion::{criterion_group, BenchmarkId, Criterion, Throughput};
use switchboard::grpc::proto::switchboard_client::SwitchboardClient;
use switchboard::grpc::proto::switchboard_server::{Switchboard, SwitchboardServer};
use switchboard::grpc::proto::{
    Accepted, DescribeRequest, Description, Envelope, SubscribeRequest,
};
use switchboard::Message;
use tokio::sync::mpsc;
use tonic::transport::Channel;

/// The raw baseline: tonic's own server with an echo `Request` and a `Publish`
/// that hands the event to a channel.
struct RawEcho(mpsc::UnboundedSender<Bytes>);

#[tonic::async_trait]
impl Switchboard for RawEcho {
    async fn request(
        &self,
        request: tonic::Request<Envelope>,
    ) -> Result<tonic::Response<Envelope>, tonic::Status> {
        Ok(tonic::Response::new(request.into_inner()))
    }

    async fn publish(
        &self,
        request: tonic::Request<Envelope>,
    ) -> Result<tonic::Response<Accepted>, tonic::Status> {
        let _ = self.0.send(request.into_inner().payload);
        Ok(tonic::Response::new(Accepted {}))
    }

    type SubscribeStream =
        Pin<Box<dyn futures_core::Stream<Item = Result<Envelope, tonic::Status>> + Send>>;

    async fn subscribe(
        &self,
        _: tonic::Request<SubscribeRequest>,
    ) -> Result<tonic::Response<Self::SubscribeStream>, tonic::Status> {
        Err(tonic::Status::unimplemented("not benched"))
    }

    async fn describe(
        &self,
        _: tonic::Request<DescribeRequest>,
    ) -> Result<tonic::Response<Description>, tonic::Status> {
        Err(tonic::Status::unimplemented(
            "an echo server has no documents",
        ))
    }
}

async fn raw_server() -> (String, mpsc::UnboundedReceiver<Bytes>) {
    let (events_tx, events_rx) = mpsc::unbounded_channel();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(SwitchboardServer::new(RawEcho(events_tx)))
            .serve_with_incoming(incoming),
    );
    (url, events_rx)
}

/// The raw baseline's client: one channel, as the switchboard side keeps one per peer.
async fn raw_client(url: &str) -> SwitchboardClient<Channel> {
    let channel = tonic::transport::Endpoint::from_shared(url.to_owned())
        .unwrap()
        .tcp_nodelay(true)
        .connect()
        .await
        .unwrap();
    SwitchboardClient::new(channel)
}

fn envelope(subject: &str, payload: Bytes) -> Envelope {
    Envelope {
        subject: subject.to_owned(),
        headers: Default::default(),
        payload,
    }
}

async fn grpc_pair() -> (switchboard::Bus, switchboard::Bus) {
    let responder = switchboard::connect("grpc://127.0.0.1:0").await.unwrap();
    let peer = format!("grpc://{}", responder.local_address().unwrap());
    let requester = switchboard::connect(&format!("grpc://127.0.0.1:0?peers={peer}"))
        .await
        .unwrap();
    (responder, requester)
}

fn grpc(c: &mut Criterion) {
    let rt = runtime();
    let (responder, requester) = rt.block_on(grpc_pair());
    let (raw_url, raw_events) = rt.block_on(raw_server());
    let raw_events = Arc::new(tokio::sync::Mutex::new(raw_events));
    let raw = rt.block_on(raw_client(&raw_url));
    let typed = Arc::new(rt.block_on(TypedService::start(&responder, "bench.typed")));

    let raw_path = RawPath::start(&rt, &responder);
    let mut group = c.benchmark_group("grpc/publish_to_delivery");
    group.throughput(Throughput::Elements(1));
    for size in PAYLOADS {
        let message = Message::new(payload(size));
        raw_path.bench_publish(&mut group, &rt, &requester, size);
        group.bench_function(BenchmarkId::new("raw_tonic", size), |b| {
            b.to_async(&rt).iter_custom(|iters| {
                let (mut raw, body, received) =
                    (raw.clone(), message.payload.clone(), raw_events.clone());
                async move {
                    let start = Instant::now();
                    for _ in 0..iters {
                        raw.publish(envelope("bench.events", body.clone()))
                            .await
                            .unwrap();
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

    let mut serial = c.benchmark_group("grpc/request_reply_serial");
    serial.throughput(Throughput::Elements(1));
    for size in PAYLOADS {
        let message = Message::new(payload(size));
        RawPath::bench_serial(&mut serial, &rt, &requester, size);
        serial.bench_function(BenchmarkId::new("raw_tonic", size), |b| {
            b.to_async(&rt).iter(|| {
                let (mut raw, body) = (raw.clone(), message.payload.clone());
                async move { raw.request(envelope("bench.echo", body)).await.unwrap() }
            })
        });
        service_path::bench_serial(&mut serial, &rt, &requester, &typed.echo, size);
    }
    serial.finish();

    let mut concurrent = c.benchmark_group("grpc/request_reply_64_in_flight");
    concurrent.throughput(Throughput::Elements(1));
    for size in PAYLOADS {
        let message = Message::new(payload(size));
        RawPath::bench_in_flight(&mut concurrent, &rt, &requester, size);
        bench_in_flight(&mut concurrent, "raw_tonic", size, &rt, {
            let (raw, body) = (raw.clone(), message.payload.clone());
            move || {
                let (mut raw, body) = (raw.clone(), body.clone());
                async move {
                    raw.request(envelope("bench.echo", body)).await.unwrap();
                }
            }
        });
        service_path::bench_in_flight(&mut concurrent, &rt, &requester, &typed.echo, size);
    }
    concurrent.finish();
}

/// The responder copy of the two-process rows: a switchboard gRPC service
/// with the typed service, and a raw tonic echo; prints both addresses.
fn grpc_responder(prefix: String) {
    runtime().block_on(async {
        let bus = switchboard::connect("grpc://127.0.0.1:0").await.unwrap();
        let _typed = TypedService::start(&bus, &prefix).await;
        let (raw_url, _events) = raw_server().await;
        two_process::ready(&format!(
            "grpc://{} {raw_url}",
            bus.local_address().unwrap()
        ));
        two_process::serve_until_killed().await;
    });
}

/// Requester here, responder in another process: raw tonic against the typed
/// `Service` path, 128 B.
fn grpc_two_process(c: &mut Criterion) {
    let rt = runtime();
    let prefix = "bench.remote";
    let responder = Responder::start(prefix);
    let (service_url, raw_url) = responder
        .detail
        .split_once(' ')
        .map(|(a, b)| (a.to_owned(), b.to_owned()))
        .expect("two addresses");
    let requester = rt
        .block_on(switchboard::connect(&format!(
            "grpc://127.0.0.1:0?peers={service_url}"
        )))
        .unwrap();
    let raw = rt.block_on(raw_client(&raw_url));
    let echo = service_path::echo_subject(prefix);
    let body = payload(126);

    let mut serial = c.benchmark_group("grpc/two_process_request_reply_serial");
    serial.throughput(Throughput::Elements(1));
    service_path::bench_serial(&mut serial, &rt, &requester, &echo, 128);
    serial.bench_function(BenchmarkId::new("raw_tonic", 128), |b| {
        b.to_async(&rt).iter(|| {
            let (mut raw, body) = (raw.clone(), body.clone());
            async move { raw.request(envelope("bench.echo", body)).await.unwrap() }
        })
    });
    serial.finish();

    let mut concurrent = c.benchmark_group("grpc/two_process_request_reply_64_in_flight");
    concurrent.throughput(Throughput::Elements(1));
    service_path::bench_in_flight(&mut concurrent, &rt, &requester, &echo, 128);
    bench_in_flight(&mut concurrent, "raw_tonic", 128, &rt, {
        let (raw, body) = (raw.clone(), body.clone());
        move || {
            let (mut raw, body) = (raw.clone(), body.clone());
            async move {
                raw.request(envelope("bench.echo", body)).await.unwrap();
            }
        }
    });
    concurrent.finish();
}

criterion_group! {
    name = benches;
    config = config();
    targets = grpc, grpc_two_process
}

fn main() {
    if let Some(prefix) = two_process::responder_prefix() {
        return grpc_responder(prefix);
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
