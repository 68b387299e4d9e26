//! One path users call, run N times, for counting its instructions under
//! callgrind: the runs of N and 3N messages differ by 2N messages' cost, so
//! start-up and set-up cancel out. `scripts/check-instructions.py` runs it
//! and holds the counts to `benches/instructions.baseline` (CI fails at +5 %).
//!
//! ```text
//! cargo build --release --all-features --example instructions
//! valgrind --tool=callgrind --callgrind-out-file=/dev/null \
//!     target/release/examples/instructions memory-typed-request 1000
//! ```
//!
//! Rows: `memory-typed-request` (`request_json` to a typed `Service`
//! handler and its reply), `memory-typed-event` (`publish_json` until a typed
//! handler ran), `memory-publish-json` (`publish_json`, nobody subscribed),
//! `nats-typed-event`, `nats-typed-request` and `nats-publish-json` (the
//! same on core NATS at 127.0.0.1:4222, requester and responder on one
//! connection), and beside them the raw async-nats client doing the same
//! work: `nats-raw-event` (encode the order, publish it, receive it on a
//! subscription, decode it), `nats-raw-request` (encode, request, decode and
//! encode at a responder, reply, decode) and `nats-raw-publish` (publish the
//! JSON);
//! `http-typed-request` and `grpc-typed-request` are `request_json` from one
//! bus to a typed `Service` on another, over loopback, and `http-raw-request`
//! the same round trip with raw reqwest → axum; `kafka-typed-event`
//! and `kafka-raw-event` feed the same raw rdkafka producer's records to a
//! typed `Service` handler or to a raw consumer (Kafka at 127.0.0.1:9092).
//! One thread (a current-thread runtime), so the count does not depend on
//! how two workers happened to share the work; the Kafka rows also count
//! librdkafka's own threads.

use std::sync::atomic::Ordering;

use switchboard::Bus;

#[path = "../../tests/support/typed_paths.rs"]
mod typed_paths;

#[cfg(feature = "kafka")]
#[path = "../../tests/support/raw_kafka.rs"]
mod raw_kafka;

#[cfg(feature = "amqp")]
#[path = "../../tests/support/raw_amqp.rs"]
mod raw_amqp;
#[cfg(feature = "http")]
#[path = "../../tests/support/raw_http.rs"]
mod raw_http;
#[cfg(feature = "redis")]
#[path = "../../tests/support/raw_redis.rs"]
mod raw_redis;

#[cfg(feature = "amqp")]
mod amqp;
#[cfg(any(feature = "kafka", feature = "amqp", feature = "redis"))]
mod handled;
#[cfg(feature = "kafka")]
mod kafka;
#[cfg(feature = "nats")]
mod raw_nats;
#[cfg(feature = "redis")]
mod redis;

use typed_paths::{order, typed_service, Order};

#[tokio::main(flavor = "current_thread")]
async fn main() -> switchboard::Result<()> {
    let mut args = std::env::args().skip(1);
    let (Some(row), Some(count)) = (args.next(), args.next()) else {
        eprintln!("usage: instructions ROW COUNT");
        std::process::exit(2);
    };
    let count: usize = count.parse().expect("COUNT is a number");
    match row.as_str() {
        "memory-typed-request" => {
            typed_requests(&switchboard::connect("memory://i").await?, count).await
        }
        "memory-typed-event" => {
            typed_events(&switchboard::connect("memory://i").await?, count).await
        }
        "memory-publish-json" => {
            publish_json(&switchboard::connect("memory://i").await?, count).await
        }
        #[cfg(feature = "nats")]
        "nats-typed-event" => {
            typed_events(&switchboard::connect("nats://127.0.0.1:4222").await?, count).await
        }
        #[cfg(feature = "nats")]
        "nats-typed-request" => {
            typed_requests(&switchboard::connect("nats://127.0.0.1:4222").await?, count).await
        }
        #[cfg(feature = "nats")]
        "nats-publish-json" => {
            publish_json(&switchboard::connect("nats://127.0.0.1:4222").await?, count).await
        }
        #[cfg(feature = "http")]
        "http-typed-request" => across_loopback("http", count).await,
        #[cfg(feature = "http")]
        "http-raw-request" => raw_http_requests(count).await,
        #[cfg(feature = "grpc")]
        "grpc-typed-request" => across_loopback("grpc", count).await,
        #[cfg(feature = "nats")]
        "nats-raw-event" => raw_nats::events(count).await,
        #[cfg(feature = "nats")]
        "nats-raw-publish" => raw_nats::publish(count).await,
        #[cfg(feature = "nats")]
        "nats-raw-request" => raw_nats::requests(count).await,
        #[cfg(feature = "kafka")]
        "kafka-typed-event" => kafka::typed_events(count).await,
        #[cfg(feature = "kafka")]
        "kafka-raw-event" => kafka::raw_events(count).await,
        #[cfg(feature = "amqp")]
        "amqp-typed-event" => amqp::typed_events(count).await,
        #[cfg(feature = "amqp")]
        "amqp-raw-event" => amqp::raw_events(count).await,
        #[cfg(feature = "redis")]
        "redis-typed-event" => redis::typed_events(count).await,
        #[cfg(feature = "redis")]
        "redis-raw-event" => redis::raw_events(count).await,
        other => {
            eprintln!("unknown row `{other}`");
            std::process::exit(2);
        }
    }
}

async fn typed_requests(bus: &Bus, count: usize) -> switchboard::Result<()> {
    let (running, _) = typed_service(bus, "instructions").await?;
    let order = order();
    for _ in 0..count {
        let echoed: Order = bus.request_json("instructions.echo", &order).await?;
        std::hint::black_box(echoed);
    }
    let _ = running.shutdown().await;
    bus.close().await
}

/// `request_json` from one bus to a typed `Service` on another bus of
/// `scheme` (`http` or `grpc`), listening on 127.0.0.1.
#[cfg(any(feature = "http", feature = "grpc"))]
async fn across_loopback(scheme: &str, count: usize) -> switchboard::Result<()> {
    let responder = switchboard::connect(&format!("{scheme}://127.0.0.1:0")).await?;
    let (running, _) = typed_service(&responder, "instructions").await?;
    let address = responder
        .local_address()
        .expect("a listening backend has an address");
    let caller = switchboard::connect(&format!(
        "{scheme}://127.0.0.1:0?peers={scheme}://{address}"
    ))
    .await?;
    let order = order();
    for _ in 0..count {
        let echoed: Order = caller.request_json("instructions.echo", &order).await?;
        std::hint::black_box(echoed);
    }
    let _ = running.shutdown().await;
    caller.close().await?;
    responder.close().await
}

/// What `http-typed-request` does with raw reqwest → axum: the order
/// encoded, posted, decoded and encoded by the server, and decoded.
#[cfg(feature = "http")]
async fn raw_http_requests(count: usize) -> switchboard::Result<()> {
    let (url, server) = raw_http::echo_server().await;
    let client = raw_http::client();
    let order = order();
    for _ in 0..count {
        let echoed = raw_http::echo(&client, &url, &order)
            .await
            .map_err(|e| switchboard::Error::backend("http", e))?;
        std::hint::black_box(echoed);
    }
    server.abort();
    Ok(())
}

async fn typed_events(bus: &Bus, count: usize) -> switchboard::Result<()> {
    let (running, handled) = typed_service(bus, "instructions").await?;
    let order = order();
    for _ in 0..count {
        bus.publish_json("instructions.placed", &order).await?;
    }
    while handled.load(Ordering::Relaxed) < count {
        tokio::task::yield_now().await;
    }
    let _ = running.shutdown().await;
    bus.close().await
}

async fn publish_json(bus: &Bus, count: usize) -> switchboard::Result<()> {
    let order = order();
    for _ in 0..count {
        bus.publish_json("instructions.nobody", &order).await?;
    }
    bus.close().await
}
