//! Heap allocations per message on the paths users call, counted by a
//! counting global allocator: deterministic where wall time on two shared
//! cores is not, so a change that adds allocations to a hot path fails here.
//!
//! Each row runs a path many times after a warm-up and divides the
//! allocations the whole process made by the number of messages. What the
//! payload type allocates when it is decoded (a `String` field) and, on NATS,
//! what the raw client allocates for the same traffic are measured apart and
//! printed beside the crate's own share; the budgets below hold the crate's
//! own share, measured on 2026-12-05 (see BENCHMARKS.md), with room for the
//! averaging of amortised growth.
//!
//! `cargo test --all-features --test observe_allocations -- --nocapture`
//! prints the table.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use switchboard::Bus;

#[path = "support/mod.rs"]
mod support;
#[path = "support/typed_paths.rs"]
mod typed_paths;

use typed_paths::{order, typed_service, Order};

/// Counts every allocation and reallocation of the process.
struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: every call is passed on to the system allocator unchanged; the
// counter is the only addition.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Messages per measured run, after as many again to warm up.
const MESSAGES: usize = 2_000;

/// Budgets: the crate's own allocations per message (payload decoding and
/// the raw client's share taken out), each the count measured on 2026-12-05
/// plus half an allocation, so one more allocation per message fails.
const MEMORY_REQUEST_ROUND_TRIP: f64 = 5.5;
const MEMORY_EVENT_HANDLED: f64 = 5.5;
const MEMORY_PUBLISH_JSON: f64 = 4.5;
#[cfg(feature = "nats")]
const NATS_EVENT_HANDLED: f64 = 7.5;
#[cfg(feature = "nats")]
const NATS_PUBLISH_JSON: f64 = 4.5;

/// Allocations per message of `run(messages)`.
async fn per_message<F, Fut>(mut run: F) -> f64
where
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    run(MESSAGES).await;
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    run(MESSAGES).await;
    let after = ALLOCATIONS.load(Ordering::Relaxed);
    (after - before) as f64 / MESSAGES as f64
}

/// What decoding one `Order` allocates (its `String`): the payload's share.
fn decoding_an_order() -> f64 {
    let bytes = serde_json::to_vec(&order()).unwrap();
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    for _ in 0..MESSAGES {
        std::hint::black_box(serde_json::from_slice::<Order>(&bytes).unwrap());
    }
    (ALLOCATIONS.load(Ordering::Relaxed) - before) as f64 / MESSAGES as f64
}

/// Prints a row and holds the crate's share to its budget.
fn report(row: &str, total: f64, payload: f64, client: f64, budget: f64) {
    let own = total - payload - client;
    eprintln!(
        "{row:<40} total {total:>6.2}  payload {payload:>5.2}  client {client:>5.2}  switchboard {own:>6.2}  (budget {budget:.2})"
    );
    assert!(
        own <= budget,
        "{row}: {own:.2} allocations per message by the crate, over the budget of {budget:.2} (total {total:.2}, payload {payload:.2}, client {client:.2})"
    );
}

/// Publishes `messages` events and waits until the service handled them all.
async fn publish_and_wait(bus: &Bus, subject: &str, handled: &AtomicUsize, messages: usize) {
    let target = handled.load(Ordering::Relaxed) + messages;
    let order = order();
    for _ in 0..messages {
        bus.publish_json(subject, &order).await.unwrap();
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while handled.load(Ordering::Relaxed) < target {
        assert!(
            std::time::Instant::now() < deadline,
            "{subject}: {} of {target} events handled within 60 s",
            handled.load(Ordering::Relaxed)
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

async fn memory_typed_request_round_trip() {
    let bus = switchboard::connect("memory://allocations-request")
        .await
        .unwrap();
    let (running, _) = typed_service(&bus, "alloc").await.unwrap();
    let order = order();
    let total = per_message(|messages| {
        let (bus, order) = (&bus, &order);
        async move {
            for _ in 0..messages {
                let echoed: Order = bus.request_json("alloc.echo", order).await.unwrap();
                std::hint::black_box(echoed);
            }
        }
    })
    .await;
    // The request and the reply each decode an order once.
    report(
        "memory: typed request round trip",
        total,
        2.0 * decoding_an_order(),
        0.0,
        MEMORY_REQUEST_ROUND_TRIP,
    );
    let _ = running.shutdown().await;
    bus.close().await.unwrap();
}

async fn memory_typed_event_handled() {
    let bus = switchboard::connect("memory://allocations-event")
        .await
        .unwrap();
    let (running, handled) = typed_service(&bus, "alloc").await.unwrap();
    let total =
        per_message(|messages| publish_and_wait(&bus, "alloc.placed", &handled, messages)).await;
    report(
        "memory: typed event, publish_json → handled",
        total,
        decoding_an_order(),
        0.0,
        MEMORY_EVENT_HANDLED,
    );
    let _ = running.shutdown().await;
    bus.close().await.unwrap();
}

async fn memory_publish_json() {
    let bus = switchboard::connect("memory://allocations-publish")
        .await
        .unwrap();
    // Nobody subscribes: the publish path alone (encode, checks, routing).
    let order = order();
    let total = per_message(|messages| {
        let (bus, order) = (&bus, &order);
        async move {
            for _ in 0..messages {
                bus.publish_json("alloc.nobody", order).await.unwrap();
            }
        }
    })
    .await;
    report(
        "memory: publish_json (no subscriber)",
        total,
        0.0,
        0.0,
        MEMORY_PUBLISH_JSON,
    );
    bus.close().await.unwrap();
}

#[cfg(feature = "nats")]
/// What the raw NATS client allocates to publish `messages` 128-byte events
/// and receive them on a subscription of its own.
async fn raw_nats_per_event() -> f64 {
    use futures_util::StreamExt;
    use switchboard::nats::async_nats;

    let url = support::nats_url();
    let client = async_nats::connect(url.trim_start_matches("nats://"))
        .await
        .unwrap();
    let subject = support::unique("alloc-raw");
    let mut subscription = client.subscribe(subject.clone()).await.unwrap();
    client.flush().await.unwrap();
    let payload = bytes::Bytes::from(serde_json::to_vec(&order()).unwrap());
    let mut before = 0;
    for round in 0..2 {
        if round == 1 {
            before = ALLOCATIONS.load(Ordering::Relaxed);
        }
        for _ in 0..MESSAGES {
            client
                .publish(subject.clone(), payload.clone())
                .await
                .unwrap();
        }
        client.flush().await.unwrap();
        for _ in 0..MESSAGES {
            std::hint::black_box(subscription.next().await.unwrap());
        }
    }
    (ALLOCATIONS.load(Ordering::Relaxed) - before) as f64 / MESSAGES as f64
}

#[cfg(feature = "nats")]
/// What the raw NATS client allocates to publish one event.
async fn raw_nats_per_publish() -> f64 {
    use switchboard::nats::async_nats;

    let client = async_nats::connect(support::nats_url().trim_start_matches("nats://"))
        .await
        .unwrap();
    let subject = support::unique("alloc-raw-publish");
    let payload = bytes::Bytes::from(serde_json::to_vec(&order()).unwrap());
    per_message(|messages| {
        let (client, subject, payload) = (&client, &subject, &payload);
        async move {
            for _ in 0..messages {
                client
                    .publish(subject.clone(), payload.clone())
                    .await
                    .unwrap();
            }
            client.flush().await.unwrap();
        }
    })
    .await
}

#[cfg(feature = "nats")]
async fn nats_typed_event_handled() {
    let Some(bus) = support::connect_or_skip(&support::nats_url()).await else {
        return;
    };
    let prefix = support::unique("alloc");
    let (running, handled) = typed_service(&bus, &prefix).await.unwrap();
    let subject = format!("{prefix}.placed");
    let total = per_message(|messages| publish_and_wait(&bus, &subject, &handled, messages)).await;
    report(
        "nats: typed event, publish_json → handled",
        total,
        decoding_an_order(),
        raw_nats_per_event().await,
        NATS_EVENT_HANDLED,
    );
    let _ = running.shutdown().await;
    bus.close().await.unwrap();
}

#[cfg(feature = "nats")]
async fn nats_publish_json() {
    let Some(bus) = support::connect_or_skip(&support::nats_url()).await else {
        return;
    };
    let subject = support::unique("alloc-publish");
    let order = order();
    let total = per_message(|messages| {
        let (bus, subject, order) = (&bus, &subject, &order);
        async move {
            for _ in 0..messages {
                bus.publish_json(subject, order).await.unwrap();
            }
        }
    })
    .await;
    report(
        "nats: publish_json",
        total,
        0.0,
        raw_nats_per_publish().await,
        NATS_PUBLISH_JSON,
    );
    bus.close().await.unwrap();
}

/// Like `support::tests!`, but one trial at a time: the counter is the
/// whole process's, so trials running side by side would count each other.
fn main() -> std::process::ExitCode {
    let mut arguments = libtest_mimic::Arguments::from_args();
    arguments.test_threads = Some(1);
    let trial =
        |name: &str,
         test: fn() -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>| {
            libtest_mimic::Trial::ignorable_test(name, move || support::run_trial(test))
        };
    let mut trials = vec![
        trial("memory_typed_request_round_trip", || {
            Box::pin(memory_typed_request_round_trip())
        }),
        trial("memory_typed_event_handled", || {
            Box::pin(memory_typed_event_handled())
        }),
        trial("memory_publish_json", || Box::pin(memory_publish_json())),
    ];
    #[cfg(feature = "nats")]
    trials.extend([
        trial("nats_typed_event_handled", || {
            Box::pin(nats_typed_event_handled())
        }),
        trial("nats_publish_json", || Box::pin(nats_publish_json())),
    ]);
    libtest_mimic::run(&arguments, trials).exit_code()
}
