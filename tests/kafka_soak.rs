//! Sustained load on Apache Kafka: 32 requests in flight plus 200 events/s for
//! `SWITCHBOARD_SOAK_SECONDS` (`.ci/run` gives 120). Every 10-second window
//! must keep answering (no stall), memory must stay flat, every accepted event
//! must be handled, no publish may outlast `delivery_timeout`, and `close()`
//! must not wait for a timeout. Without the variable the test is ignored.

mod support;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use switchboard::{ErrorKind, Service};

const IN_FLIGHT: usize = 32;
const EVENTS_PER_SECOND: u64 = 200;
const WINDOW: Duration = Duration::from_secs(10);
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(10);

/// Resident memory of this process, in KiB.
fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|line| line.starts_with("VmRSS:"))
                .and_then(|line| line.split_whitespace().nth(1))
                .and_then(|kib| kib.parse().ok())
        })
        .unwrap_or(0)
}

#[derive(Default)]
struct Window {
    answered: u64,
    errors: u64,
    worst_ms: u64,
}

async fn requests_and_events_keep_flowing_under_sustained_load() {
    let Some(seconds) = std::env::var("SWITCHBOARD_SOAK_SECONDS")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
    else {
        support::skip("set SWITCHBOARD_SOAK_SECONDS (`.ci/run` sets 120) to run the soak".into());
    };
    let url = format!("{}?delivery_timeout=10s", support::kafka_url());
    let Some(responder) = support::connect_or_skip(&url).await else {
        return;
    };
    let caller = switchboard::connect(&url).await.unwrap();
    let prefix = support::unique("soak");
    let (requests, events) = (format!("{prefix}.req"), format!("{prefix}.evt"));
    let handled = Arc::new(AtomicU64::new(0));
    let running =
        Service::new(format!("{prefix}-svc"), responder.clone())
            .state(handled.clone())
            .on(&requests, |n: u64| async move { Ok::<_, String>(n) })
            .on(
                &events,
                |_: u64,
                 switchboard::handler::State(handled): switchboard::handler::State<
                    Arc<AtomicU64>,
                >| async move {
                    handled.fetch_add(1, Ordering::Relaxed);
                },
            )
            .start()
            .await
            .unwrap();
    // Warm up: reply topic, group joins.
    let _: u64 = caller
        .request_json_with_timeout(&requests, &0, Duration::from_secs(30))
        .await
        .unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let windows: Arc<Mutex<Vec<Window>>> = Arc::default();
    let started = Instant::now();
    let window_of = move || (started.elapsed().as_secs() / WINDOW.as_secs()) as usize;
    let mut load = tokio::task::JoinSet::new();
    for worker in 0..IN_FLIGHT as u64 {
        let (caller, requests, stop, windows) = (
            caller.clone(),
            requests.clone(),
            stop.clone(),
            windows.clone(),
        );
        load.spawn(async move {
            let mut n = worker;
            while !stop.load(Ordering::Relaxed) {
                let sent = Instant::now();
                let outcome = caller
                    .request_json_with_timeout::<_, u64>(&requests, &n, Duration::from_secs(5))
                    .await;
                let ms = sent.elapsed().as_millis() as u64;
                let index = window_of();
                let mut windows = windows.lock().unwrap();
                while windows.len() <= index {
                    windows.push(Window::default());
                }
                let window = &mut windows[index];
                match outcome {
                    Ok(reply) => {
                        assert_eq!(reply, n);
                        window.answered += 1;
                    }
                    Err(err) => {
                        assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
                        window.errors += 1;
                    }
                }
                window.worst_ms = window.worst_ms.max(ms);
                n += IN_FLIGHT as u64;
            }
        });
    }
    let published = Arc::new(AtomicU64::new(0));
    let slowest_publish = Arc::new(Mutex::new(Duration::ZERO));
    {
        let (caller, events, stop, published, slowest) = (
            caller.clone(),
            events.clone(),
            stop.clone(),
            published.clone(),
            slowest_publish.clone(),
        );
        load.spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(1000 / EVENTS_PER_SECOND));
            let mut seq = 0u64;
            while !stop.load(Ordering::Relaxed) {
                tick.tick().await;
                let sent = Instant::now();
                if caller.publish_json(&events, &seq).await.is_ok() {
                    published.fetch_add(1, Ordering::Relaxed);
                }
                let took = sent.elapsed();
                let mut slowest = slowest.lock().unwrap();
                *slowest = (*slowest).max(took);
                seq += 1;
            }
        });
    }
    let mut memory = Vec::new();
    let deadline = started + Duration::from_secs(seconds);
    while Instant::now() < deadline {
        tokio::time::sleep(WINDOW).await;
        memory.push(rss_kib());
    }
    stop.store(true, Ordering::Relaxed);
    while load.join_next().await.is_some() {}

    let published = published.load(Ordering::Relaxed);
    let drained = Instant::now() + Duration::from_secs(60);
    while handled.load(Ordering::Relaxed) < published && Instant::now() < drained {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let handled = handled.load(Ordering::Relaxed);
    let report = running.shutdown().await;
    let closing = Instant::now();
    caller.close().await.unwrap();
    responder.close().await.unwrap();
    let close_took = closing.elapsed();

    let windows = windows.lock().unwrap();
    for (index, window) in windows.iter().enumerate() {
        println!(
            "soak window {:>3}-{:>3} s: {:>6} answered, {:>3} timed out, slowest {:>5} ms, rss {} KiB",
            index as u64 * WINDOW.as_secs(),
            (index as u64 + 1) * WINDOW.as_secs(),
            window.answered,
            window.errors,
            window.worst_ms,
            memory.get(index).copied().unwrap_or_default()
        );
    }
    let slowest_publish = *slowest_publish.lock().unwrap();
    println!(
        "soak: {published} events accepted, {handled} handled; slowest publish {slowest_publish:?}; \
         close took {close_took:?}; {report}"
    );
    // No stall: every full window answered requests.
    let full = &windows[..windows.len().saturating_sub(1)];
    for (index, window) in full.iter().enumerate() {
        assert!(
            window.answered > 0,
            "request/reply stalled in window {index}"
        );
    }
    assert_eq!(handled, published, "accepted events were not all handled");
    assert!(
        slowest_publish <= DELIVERY_TIMEOUT + Duration::from_secs(1),
        "a publish took {slowest_publish:?}, past delivery_timeout"
    );
    assert!(
        close_took < Duration::from_secs(2),
        "close took {close_took:?}"
    );
    // Flat memory: after the first window (allocator and client warm-up), RSS grows by less than 64 MiB.
    if let (Some(first), Some(last)) = (memory.first(), memory.last()) {
        assert!(
            last.saturating_sub(*first) < 64 * 1024,
            "memory grew from {first} KiB to {last} KiB"
        );
    }
}

crate::tests!(requests_and_events_keep_flowing_under_sustained_load);
