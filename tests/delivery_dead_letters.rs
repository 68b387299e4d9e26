//! Dead letters on every backend CI runs: a keeper in another connection
//! writes each into the store before acknowledging it; they are listed with
//! subject, error, code, cause and attempts; a replay reaches the handler
//! again (marked as replayed) and leaves the store only once accepted; a
//! replay that cannot be accepted leaves the dead letter kept.
#![cfg(feature = "dead-letters")]

mod support;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use switchboard::dead_letters::{DeadLetterStore, REPLAYED};
use switchboard::handler::{Rejection, State};
use switchboard::{connect, Bus, ErrorKind, Message, Service};

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Order {
    id: u32,
    quantity: u32,
}

/// Handled orders by id, with the replay marker each arrived with.
type Handled = Arc<Mutex<BTreeMap<u32, Option<String>>>>;

/// Refuses, for good, orders over 10 until `fixed` (the bug is fixed).
async fn place(
    order: Order,
    headers: switchboard::headers::Headers,
    State((fixed, handled)): State<(Arc<AtomicBool>, Handled)>,
) -> Result<(), Rejection> {
    if order.quantity > 10 && !fixed.load(Ordering::SeqCst) {
        return Err(Rejection::new(format!("{} is over 10", order.quantity))
            .with_code("quantity_over_limit")
            .permanent());
    }
    let replayed = headers.get(REPLAYED).map(str::to_owned);
    handled.lock().unwrap().insert(order.id, replayed);
    Ok(())
}

async fn until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(Instant::now() < deadline, "{what} within 30 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The whole round on one backend: `service_bus` runs the service,
/// `keeper_bus` the keeper and the replays.
async fn keep_list_replay_purge(backend: &str, service_bus: Bus, keeper_bus: Bus) {
    let service_name = support::unique("dl");
    let subject = format!("{service_name}.place");
    let dead_letter_subject = format!("dead-letter.{service_name}");
    let dir = tempfile::tempdir().unwrap();
    let store = DeadLetterStore::open(dir.path().join("dead-letters.db"))
        .await
        .unwrap();
    let keeper = store.keep(&keeper_bus, &dead_letter_subject).await.unwrap();

    let fixed = Arc::new(AtomicBool::new(false));
    let handled = Handled::default();
    let service = Service::new(&service_name, service_bus.clone())
        .state((fixed.clone(), handled.clone()))
        .on(&subject, place)
        .start()
        .await
        .unwrap();
    // The service's subscription must be known to the publisher's side (mesh backends).
    tokio::time::sleep(Duration::from_millis(200)).await;
    for (id, quantity) in [(1, 12), (2, 3), (3, 40)] {
        keeper_bus
            .publish_json(&subject, &Order { id, quantity })
            .await
            .unwrap();
    }
    until(&format!("{backend}: two dead letters kept"), || {
        keeper.report().kept == 2
    })
    .await;
    until(&format!("{backend}: the good order handled"), || {
        handled.lock().unwrap().contains_key(&2)
    })
    .await;

    let letters = store.list().await.unwrap();
    assert_eq!(letters.len(), 2, "{backend}: {letters:?}");
    for letter in &letters {
        assert_eq!(letter.subject, subject, "{backend}");
        assert_eq!(letter.arrived_on, dead_letter_subject, "{backend}");
        assert_eq!(letter.service, service_name, "{backend}");
        assert_eq!(
            letter.code.as_deref(),
            Some("quantity_over_limit"),
            "{backend}"
        );
        assert_eq!(letter.cause.as_deref(), Some("final"), "{backend}");
        assert_eq!(letter.attempts, 1, "{backend}: a final refusal runs once");
        assert!(
            letter.error.ends_with("is over 10"),
            "{backend}: {}",
            letter.error
        );
        assert!(letter.first_ms > 0 && letter.last_ms >= letter.first_ms);
        assert!(
            letter
                .message
                .headers
                .iter()
                .all(|(name, _)| !name.starts_with("sb-dead-letter-")),
            "{backend}: the kept event carries its own headers only"
        );
    }
    let shown = store.get(letters[0].id).await.unwrap().unwrap();
    assert_eq!(shown, letters[0]);

    // A replay of an id not kept is a usage error; nothing changes.
    let missing = store.replay(&keeper_bus, 999_999).await.unwrap_err();
    assert_eq!(missing.kind(), ErrorKind::Usage, "{backend}: {missing}");

    // The bug is fixed: every replay reaches the handler once, marked, and leaves the store.
    fixed.store(true, Ordering::SeqCst);
    for letter in &letters {
        store.replay(&keeper_bus, letter.id).await.unwrap();
    }
    until(&format!("{backend}: both replays handled"), || {
        handled.lock().unwrap().len() == 3
    })
    .await;
    let seen = handled.lock().unwrap().clone();
    for letter in &letters {
        let order: Order = serde_json::from_slice(&letter.message.payload).unwrap();
        assert_eq!(
            seen.get(&order.id),
            Some(&Some(letter.id.to_string())),
            "{backend}: order {} replayed once, marked with its dead letter's id",
            order.id
        );
    }
    assert_eq!(
        seen.get(&2),
        Some(&None),
        "{backend}: the good order was not replayed"
    );
    assert!(
        store.list().await.unwrap().is_empty(),
        "{backend}: replayed ones leave the store"
    );

    // A dead letter whose subject is not valid (a forged one) is kept; its
    // replay fails with the subject's error and leaves it kept; purge removes it.
    let forged = Message::new("{}").with_header("tenant", "x");
    keeper_bus
        .publish(&dead_letter_subject, forged)
        .await
        .unwrap();
    until(&format!("{backend}: the forged letter kept"), || {
        keeper.report().kept == 3
    })
    .await;
    let forged = store.list().await.unwrap().pop().unwrap();
    assert_eq!(forged.subject, "", "{backend}");
    let refused = store.replay(&keeper_bus, forged.id).await.unwrap_err();
    assert_eq!(
        refused.kind(),
        ErrorKind::InvalidSubject,
        "{backend}: {refused}"
    );
    assert_eq!(
        store.list().await.unwrap().len(),
        1,
        "{backend}: still kept"
    );
    assert!(store.purge(forged.id).await.unwrap());
    assert!(
        !store.purge(forged.id).await.unwrap(),
        "{backend}: purged once"
    );
    assert_eq!(store.purge_all().await.unwrap(), 0);

    let report = keeper.stop().await;
    assert_eq!((report.kept, report.failed), (3, 0), "{backend}");
    let shutdown = service.shutdown().await;
    assert!(shutdown.is_clean(), "{backend}: {shutdown}");
    service_bus.close().await.unwrap();
    keeper_bus.close().await.unwrap();
    store.close().await;
}

async fn on_memory() {
    let url = format!("memory://{}", support::unique("dl"));
    let (a, b) = (connect(&url).await.unwrap(), connect(&url).await.unwrap());
    keep_list_replay_purge("memory", a, b).await;

    // On memory (as on HTTP and gRPC) the publisher knows when an event
    // reaches nobody: a replay while the service is away is not accepted,
    // and the dead letter stays kept until a replay is.
    let (a, b) = (connect(&url).await.unwrap(), connect(&url).await.unwrap());
    let dir = tempfile::tempdir().unwrap();
    let store = DeadLetterStore::open(dir.path().join("dl.db"))
        .await
        .unwrap();
    let service_name = support::unique("away");
    let keeper = store
        .keep(&b, &format!("dead-letter.{service_name}"))
        .await
        .unwrap();
    let subject = format!("{service_name}.place");
    let fixed = Arc::new(AtomicBool::new(false));
    let handled = Handled::default();
    let start = || {
        Service::new(&service_name, a.clone())
            .state((fixed.clone(), handled.clone()))
            .on(&subject, place)
            .start()
    };
    let service = start().await.unwrap();
    b.publish_json(
        &subject,
        &Order {
            id: 7,
            quantity: 70,
        },
    )
    .await
    .unwrap();
    until("memory: kept", || keeper.report().kept == 1).await;
    assert!(service.shutdown().await.is_clean());
    let id = store.list().await.unwrap()[0].id;
    let away = store.replay(&b, id).await.unwrap_err();
    assert_eq!(away.kind(), ErrorKind::NoResponders, "memory: {away}");
    assert_eq!(store.list().await.unwrap().len(), 1, "memory: still kept");
    fixed.store(true, Ordering::SeqCst);
    let service = start().await.unwrap();
    store.replay(&b, id).await.unwrap();
    until("memory: handled once back", || {
        handled.lock().unwrap().contains_key(&7)
    })
    .await;
    assert!(store.list().await.unwrap().is_empty());
    assert_eq!(keeper.stop().await.kept, 1);
    assert!(service.shutdown().await.is_clean());
    store.close().await;
}

#[cfg(feature = "http")]
async fn on_mesh(scheme: &str) {
    let service = connect(&format!("{scheme}://127.0.0.1:0")).await.unwrap();
    let address = service.local_address().unwrap();
    let keeper = connect(&format!(
        "{scheme}://127.0.0.1:0?peers={scheme}://{address}"
    ))
    .await
    .unwrap();
    keep_list_replay_purge(scheme, service, keeper).await;
}

#[cfg(feature = "http")]
async fn on_http() {
    on_mesh("http").await;
}

#[cfg(feature = "grpc")]
async fn on_grpc() {
    on_mesh("grpc").await;
}

#[cfg(feature = "nats")]
async fn on_nats() {
    let url = support::nats_url();
    if let Some(a) = support::connect_or_skip(&url).await {
        keep_list_replay_purge("nats", a, connect(&url).await.unwrap()).await;
    }
}

#[cfg(feature = "kafka")]
async fn on_kafka() {
    let url = support::kafka_url();
    if let Some(a) = support::connect_or_skip(&url).await {
        keep_list_replay_purge("kafka", a, connect(&url).await.unwrap()).await;
    }
}

crate::tests!(
    on_memory,
    #[cfg(feature = "http")]
    on_http,
    #[cfg(feature = "grpc")]
    on_grpc,
    #[cfg(feature = "nats")]
    on_nats,
    #[cfg(feature = "kafka")]
    on_kafka,
);
