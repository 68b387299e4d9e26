//! Helpers shared by the backend test files (each test binary uses a subset).
#![allow(dead_code)]

use std::time::Duration;

use switchboard::{connect, Bus, Incoming, Subscription};

/// Whether this is a CI run, where an unreachable server fails instead of skipping.
pub fn ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// Connects to a test server, or returns `None` (the test skips, saying why)
/// when it is unreachable outside CI; under `CI=true` an unreachable server panics.
pub async fn connect_or_skip(url: &str) -> Option<Bus> {
    match connect(url).await {
        Ok(bus) => Some(bus),
        Err(err) if ci() => panic!("{url} is unreachable and CI=true: {err}"),
        Err(err) => {
            eprintln!("skipped: {url} is unreachable ({err})");
            None
        }
    }
}

/// A name no other test or run uses: one subject token (also a valid stream name).
pub fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{prefix}-{}-{}", std::process::id(), nanos % 1_000_000_000)
}

/// The next message, or `None` if none arrives within `within`.
pub async fn next_within(subscription: &mut Subscription, within: Duration) -> Option<Incoming> {
    tokio::time::timeout(within, subscription.next())
        .await
        .ok()
        .flatten()
}

/// The shared NATS server the tests use.
pub fn nats_url() -> String {
    "nats://127.0.0.1:4222".to_owned()
}

/// The shared Kafka-protocol broker the tests use.
pub fn kafka_url() -> String {
    "kafka://127.0.0.1:9092".to_owned()
}

/// A loopback TCP port that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("bind a loopback port")
}
