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
