//! Request/reply latency percentiles per backend (criterion reports means, not tails).
//!
//! ```text
//! cargo run --release --all-features --example latency            # every reachable backend
//! cargo run --release --all-features --example latency -- 5000     # more requests each
//! LATENCY_KAFKA_URL='kafka://127.0.0.1:9092?fetch_wait=1ms' cargo run --release --all-features --example latency
//! LATENCY_ROWS=grpc/switchboard,grpc/raw cargo run --release --all-features --example latency   # some rows only
//! ```
//!
//! `LATENCY_ROWS` (`BACKEND/switchboard` or `BACKEND/raw`, comma-separated)
//! runs only those rows: under callgrind, the instructions of N and 3N
//! requests of one row differ by 2N requests' cost, start-up cancelled out.
//!
//! For each compiled backend it runs serial 128-byte echo requests through
//! switchboard and, where the backend has one, through its raw client in the
//! same run, and prints p50/p90/p99/max in microseconds. Servers are expected
//! on loopback (NATS 4222, Kafka 9092); an unreachable one is reported and skipped.

use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use switchboard::{Bus, Message};

const PAYLOAD: usize = 128;
const TIMEOUT: Duration = Duration::from_secs(10);

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let requests: u64 = std::env::args()
        .nth(1)
        .map(|n| n.parse().expect("the argument is the number of requests"))
        .unwrap_or(2000);
    println!("{requests} serial request/reply round trips of {PAYLOAD} bytes per row\n");
    println!("| backend | client | p50 µs | p90 µs | p99 µs | max µs |\n|---|---|---|---|---|---|");
    if wanted("memory/switchboard") {
        row(
            "memory",
            "switchboard",
            switchboard_echo("memory://latency", requests).await,
        );
    }
    #[cfg(feature = "http")]
    {
        if wanted("http/switchboard") {
            row("http", "switchboard", http::switchboard(requests).await);
        }
        if wanted("http/raw") {
            row("http", "raw reqwest→axum", http::raw(requests).await);
        }
    }
    #[cfg(feature = "grpc")]
    {
        if wanted("grpc/switchboard") {
            row("grpc", "switchboard", grpc::switchboard(requests).await);
        }
        if wanted("grpc/raw") {
            row("grpc", "raw tonic", grpc::raw(requests).await);
        }
    }
    #[cfg(feature = "nats")]
    {
        if wanted("nats/switchboard") {
            row(
                "nats",
                "switchboard",
                switchboard_echo("nats://127.0.0.1:4222", requests).await,
            );
        }
        if wanted("nats/raw") {
            row("nats", "raw async-nats", nats::raw(requests).await);
        }
    }
    #[cfg(feature = "kafka")]
    if wanted("kafka/switchboard") {
        row(
            "kafka",
            "switchboard",
            switchboard_echo(
                &std::env::var("LATENCY_KAFKA_URL")
                    .unwrap_or_else(|_| "kafka://127.0.0.1:9092".into()),
                requests.min(500),
            )
            .await,
        );
    }
}

/// Whether `LATENCY_ROWS` (if set) names this row.
fn wanted(row: &str) -> bool {
    std::env::var("LATENCY_ROWS").map_or(true, |rows| rows.split(',').any(|r| r.trim() == row))
}

fn row(backend: &str, client: &str, histogram: Result<Histogram<u64>, String>) {
    match histogram {
        Ok(h) => println!(
            "| {backend} | {client} | {} | {} | {} | {} |",
            h.value_at_quantile(0.5),
            h.value_at_quantile(0.9),
            h.value_at_quantile(0.99),
            h.max()
        ),
        Err(why) => println!("| {backend} | {client} | skipped: {why} | | | |"),
    }
}

/// Times `requests` calls of `call`, after 50 untimed warm-up calls.
async fn measure<F, Fut>(requests: u64, mut call: F) -> Histogram<u64>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    for _ in 0..50 {
        call().await;
    }
    let mut histogram = Histogram::<u64>::new(3).unwrap();
    for _ in 0..requests {
        let start = Instant::now();
        call().await;
        histogram
            .record(start.elapsed().as_micros() as u64)
            .unwrap();
    }
    histogram
}

/// An echo responder and a requester on two connections to `url`.
async fn switchboard_echo(url: &str, requests: u64) -> Result<Histogram<u64>, String> {
    let responder = switchboard::connect(url).await.map_err(|e| e.to_string())?;
    let requester = switchboard::connect(url).await.map_err(|e| e.to_string())?;
    let subject = format!("latency.echo.p{}", std::process::id());
    let group = format!("latency-{}", std::process::id());
    let subscription = responder
        .queue_subscribe(&subject, &group)
        .await
        .map_err(|e| e.to_string())?;
    echo(subscription);
    Ok(time_requests(&requester, &subject, requests).await)
}

fn echo(mut subscription: switchboard::transport::Subscription) {
    tokio::spawn(async move {
        while let Some(mut incoming) = subscription.next().await {
            let reply = incoming.take_message();
            let _ = incoming.reply(reply).await;
            let _ = incoming.ack().await;
        }
    });
}

async fn time_requests(requester: &Bus, subject: &str, requests: u64) -> Histogram<u64> {
    let message = Message::new(vec![b'x'; PAYLOAD]);
    measure(requests, || {
        let message = message.clone();
        async move {
            requester
                .request_with_timeout(subject, message, TIMEOUT)
                .await
                .expect("request");
        }
    })
    .await
}

/// An echo responder and a requester that knows it as its peer (HTTP, gRPC).
#[cfg(feature = "http")]
async fn mesh_echo(scheme: &str, requests: u64) -> Result<Histogram<u64>, String> {
    let responder = switchboard::connect(&format!("{scheme}://127.0.0.1:0"))
        .await
        .map_err(|e| e.to_string())?;
    let peer = format!("{scheme}://{}", responder.local_address().unwrap());
    let requester = switchboard::connect(&format!("{scheme}://127.0.0.1:0?peers={peer}"))
        .await
        .map_err(|e| e.to_string())?;
    echo(
        responder
            .subscribe("latency.echo")
            .await
            .map_err(|e| e.to_string())?,
    );
    Ok(time_requests(&requester, "latency.echo", requests).await)
}

#[cfg(feature = "http")]
mod http {
    use super::*;

    pub async fn switchboard(requests: u64) -> Result<Histogram<u64>, String> {
        mesh_echo("http", requests).await
    }

    pub async fn raw(requests: u64) -> Result<Histogram<u64>, String> {
        use axum::body::Bytes;
        let app = axum::Router::new().route(
            "/echo",
            axum::routing::post(|body: Bytes| async move { body }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| e.to_string())?;
        let url = format!("http://{}/echo", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        let client = reqwest::Client::builder()
            .tcp_nodelay(true)
            .pool_max_idle_per_host(64)
            .build()
            .map_err(|e| e.to_string())?;
        let body = Bytes::from(vec![b'x'; PAYLOAD]);
        Ok(measure(requests, || {
            let (client, url, body) = (client.clone(), url.clone(), body.clone());
            async move {
                client
                    .post(url)
                    .body(body)
                    .send()
                    .await
                    .unwrap()
                    .bytes()
                    .await
                    .unwrap();
            }
        })
        .await)
    }
}

#[cfg(feature = "grpc")]
mod grpc {
    use super::*;
    use switchboard::grpc::proto::switchboard_client::SwitchboardClient;
    use switchboard::grpc::proto::switchboard_server::{Switchboard, SwitchboardServer};
    use switchboard::grpc::proto::{
        Accepted, DescribeRequest, Description, Envelope, SubscribeRequest,
    };

    pub async fn switchboard(requests: u64) -> Result<Histogram<u64>, String> {
        mesh_echo("grpc", requests).await
    }

    /// tonic's own server answering `Request` with the envelope it got.
    struct Echo;

    #[tonic::async_trait]
    impl Switchboard for Echo {
        async fn request(
            &self,
            request: tonic::Request<Envelope>,
        ) -> Result<tonic::Response<Envelope>, tonic::Status> {
            Ok(tonic::Response::new(request.into_inner()))
        }

        async fn publish(
            &self,
            _: tonic::Request<Envelope>,
        ) -> Result<tonic::Response<Accepted>, tonic::Status> {
            Ok(tonic::Response::new(Accepted {}))
        }

        type SubscribeStream = futures_util::stream::Empty<Result<Envelope, tonic::Status>>;

        async fn subscribe(
            &self,
            _: tonic::Request<SubscribeRequest>,
        ) -> Result<tonic::Response<Self::SubscribeStream>, tonic::Status> {
            Ok(tonic::Response::new(futures_util::stream::empty()))
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

    pub async fn raw(requests: u64) -> Result<Histogram<u64>, String> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| e.to_string())?;
        let url = format!("http://{}", listener.local_addr().unwrap());
        let incoming =
            tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(SwitchboardServer::new(Echo))
                .serve_with_incoming(incoming),
        );
        let channel = tonic::transport::Endpoint::from_shared(url)
            .map_err(|e| e.to_string())?
            .tcp_nodelay(true)
            .connect()
            .await
            .map_err(|e| e.to_string())?;
        let client = SwitchboardClient::new(channel);
        let body = bytes::Bytes::from(vec![b'x'; PAYLOAD]);
        Ok(measure(requests, || {
            let (mut client, body) = (client.clone(), body.clone());
            async move {
                client
                    .request(Envelope {
                        subject: "latency.echo".into(),
                        headers: Default::default(),
                        payload: body,
                    })
                    .await
                    .unwrap();
            }
        })
        .await)
    }
}

#[cfg(feature = "nats")]
mod nats {
    use super::*;
    use futures_util::StreamExt;

    pub async fn raw(requests: u64) -> Result<Histogram<u64>, String> {
        let url = "127.0.0.1:4222";
        let responder = switchboard::nats::async_nats::connect(url)
            .await
            .map_err(|e| e.to_string())?;
        let requester = switchboard::nats::async_nats::connect(url)
            .await
            .map_err(|e| e.to_string())?;
        let subject = format!("latency.raw.p{}", std::process::id());
        let mut subscription = responder
            .subscribe(subject.clone())
            .await
            .map_err(|e| e.to_string())?;
        responder.flush().await.map_err(|e| e.to_string())?;
        tokio::spawn(async move {
            while let Some(request) = subscription.next().await {
                if let Some(reply) = request.reply {
                    let _ = responder.publish(reply, request.payload).await;
                }
            }
        });
        let body = bytes::Bytes::from(vec![b'x'; PAYLOAD]);
        Ok(measure(requests, || {
            let (requester, subject, body) = (requester.clone(), subject.clone(), body.clone());
            async move {
                requester.request(subject, body).await.unwrap();
            }
        })
        .await)
    }
}
