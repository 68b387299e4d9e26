//! Conformance cases for the typed layer: `Service` handlers and the JSON helpers.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::fixture::Fixture;
use super::support::{ensure, expect_kind, unique_subject, CaseResult, Failure, RECEIVE_WITHIN};
use crate::error::{Error, ErrorKind};
use crate::message::Message;
use crate::service::Service;

#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct GetOrder {
    id: u64,
}

#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct Order {
    id: u64,
    item: String,
}

fn order_service(bus: crate::Bus, subject: &str, calls: Arc<AtomicUsize>) -> Service {
    Service::new("orders", bus).on(subject, move |request: GetOrder| {
        let calls = calls.clone();
        async move {
            calls.fetch_add(1, Ordering::SeqCst);
            match request.id {
                0 => Err(format!("no such order {}", request.id)),
                13 => panic!("order 13 is cursed"),
                id => Ok(Order {
                    id,
                    item: format!("item-{id}"),
                }),
            }
        }
    })
}

pub(super) async fn round_trip(fixture: &dyn Fixture) -> CaseResult {
    let (server, client) = (fixture.connect().await?, fixture.connect().await?);
    let subject = unique_subject("typed");
    let calls = Arc::new(AtomicUsize::new(0));
    let running = order_service(server, &subject, calls.clone())
        .start()
        .await?;
    let order: Order = client.request_json(&subject, &GetOrder { id: 7 }).await?;
    ensure!(
        order
            == Order {
                id: 7,
                item: "item-7".into()
            },
        "got {order:?}"
    );
    running.shutdown().await;
    Ok(())
}

pub(super) async fn codec_error(fixture: &dyn Fixture) -> CaseResult {
    let (server, client) = (fixture.connect().await?, fixture.connect().await?);
    let subject = unique_subject("typed-codec");
    let calls = Arc::new(AtomicUsize::new(0));
    let running = order_service(server, &subject, calls.clone())
        .start()
        .await?;
    for garbage in [&b"{not json"[..], b"", b"\xff\xfe", br#"{"id":"seven"}"#] {
        expect_kind(
            client
                .request(&subject, Message::new(garbage.to_vec()))
                .await,
            ErrorKind::Codec,
            &format!("undecodable request {:?}", String::from_utf8_lossy(garbage)),
        )?;
    }
    ensure!(
        calls.load(Ordering::SeqCst) == 0,
        "the handler was called for an undecodable request"
    );
    // A reply that does not fit the caller's type is a codec error on the caller's side.
    let mismatch: Result<Vec<String>, Error> =
        client.request_json(&subject, &GetOrder { id: 1 }).await;
    let err = expect_kind(mismatch, ErrorKind::Codec, "reply of the wrong shape")?;
    ensure!(
        err.to_string()
            .contains(&format!("the reply to `{subject}`")),
        "a reply that does not decode says so: {err}"
    );
    running.shutdown().await;
    Ok(())
}

pub(super) async fn handler_error(fixture: &dyn Fixture) -> CaseResult {
    let (server, client) = (fixture.connect().await?, fixture.connect().await?);
    let subject = unique_subject("typed-error");
    let running = order_service(server, &subject, Default::default())
        .start()
        .await?;
    let result: Result<Order, Error> = client
        .request_json_with_timeout(&subject, &GetOrder { id: 0 }, Duration::from_secs(10))
        .await;
    match expect_kind(result, ErrorKind::Remote, "handler returning Err")? {
        Error::Remote { message, .. } => {
            ensure!(
                message == "no such order 0",
                "handler message was {message:?}"
            )
        }
        other => return Err(Failure(format!("unexpected {other:?}"))),
    }
    running.shutdown().await;
    Ok(())
}

/// A refusal two hops down reaches the caller naming the service and subject
/// that refused, with its code, not the service in the middle that passed it on.
pub(super) async fn refusal_names_its_origin_across_hops(fixture: &dyn Fixture) -> CaseResult {
    let (front_bus, back_bus, client) = (
        fixture.connect().await?,
        fixture.connect().await?,
        fixture.connect().await?,
    );
    let (front, back) = (unique_subject("hop-front"), unique_subject("hop-back"));
    let back_running = Service::new("billing", back_bus)
        .on(&back, |quantity: u32| async move {
            match quantity {
                q if q > 10 => Err(crate::handler::Rejection::new(format!("{q} is over 10"))
                    .with_code("quantity_over_limit")),
                q => Ok(q),
            }
        })
        .start()
        .await?;
    let calls = front_bus.clone();
    let back_subject = back.clone();
    let front_running = Service::new("orders", front_bus)
        .on(&front, move |quantity: u32| {
            let (bus, back) = (calls.clone(), back_subject.clone());
            async move {
                let charged: u32 = bus.request_json(&back, &quantity).await?;
                Ok::<_, crate::handler::Rejection>(charged)
            }
        })
        .start()
        .await?;
    let within = Duration::from_secs(10);
    let passed_on: Result<u32, Error> = client
        .request_json_with_timeout(&front, &11u32, within)
        .await;
    let err = expect_kind(passed_on, ErrorKind::Remote, "a refusal two hops down")?;
    let origin = err
        .origin()
        .map(|o| (o.service.as_str(), o.subject.as_str()));
    ensure!(
        origin == Some(("billing", back.as_str())) && err.code() == Some("quantity_over_limit"),
        "the refusal names `billing` on `{back}` and its code: {err:?}"
    );
    let text = err.to_string();
    ensure!(
        text == format!("handler for `{back}` at `billing` failed: 11 is over 10 (code `quantity_over_limit`); passed on through `{front}`"),
        "error text: {text}"
    );
    let direct: Result<u32, Error> = client
        .request_json_with_timeout(&back, &12u32, within)
        .await;
    let err = expect_kind(direct, ErrorKind::Remote, "a refusal one hop down")?;
    ensure!(
        err.to_string().starts_with(&format!(
            "handler for `{back}` at `billing` failed: 12 is over 10"
        )),
        "error text: {err}"
    );
    let fine: u32 = client
        .request_json_with_timeout(&front, &3u32, within)
        .await?;
    ensure!(fine == 3, "a request within the limit came back as {fine}");
    front_running.shutdown().await;
    back_running.shutdown().await;
    Ok(())
}

pub(super) async fn handler_panic(fixture: &dyn Fixture) -> CaseResult {
    let (server, client) = (fixture.connect().await?, fixture.connect().await?);
    let subject = unique_subject("typed-panic");
    let running = order_service(server, &subject, Default::default())
        .start()
        .await?;
    let result: Result<Order, Error> = client
        .request_json_with_timeout(&subject, &GetOrder { id: 13 }, Duration::from_secs(10))
        .await;
    let err = expect_kind(result, ErrorKind::Remote, "panicking handler")?;
    ensure!(err.to_string().contains("panicked"), "error was {err}");
    let order: Order = client.request_json(&subject, &GetOrder { id: 8 }).await?;
    ensure!(order.id == 8, "service stopped answering after a panic");
    running.shutdown().await;
    Ok(())
}

pub(super) async fn events(fixture: &dyn Fixture) -> CaseResult {
    let (server, client) = (fixture.connect().await?, fixture.connect().await?);
    let subject = unique_subject("typed-events");
    let (seen_tx, mut seen_rx) = tokio::sync::mpsc::unbounded_channel();
    let running = Service::new("audit", server)
        .on_ordered(&subject, move |order: Order| {
            let seen_tx = seen_tx.clone();
            async move { seen_tx.send(order).map_err(|e| e.to_string()) }
        })
        .start()
        .await?;
    // An undecodable event is dropped without stopping the route.
    client.publish(&subject, Message::new("garbage")).await?;
    client
        .publish_json(
            &subject,
            &Order {
                id: 3,
                item: "tea".into(),
            },
        )
        .await?;
    let order = tokio::time::timeout(RECEIVE_WITHIN, seen_rx.recv())
        .await
        .map_err(|_| Failure("typed event not handled".into()))?
        .ok_or_else(|| Failure("event handler gone".into()))?;
    ensure!(
        order
            == Order {
                id: 3,
                item: "tea".into()
            },
        "got {order:?}"
    );
    running.shutdown().await;
    Ok(())
}

/// A concurrent route keeps per-key order: events with the same `sb-key` are
/// handled one at a time in the order sent, while different keys overlap.
pub(super) async fn keyed_events_keep_order(fixture: &dyn Fixture) -> CaseResult {
    const KEYS: usize = 3;
    const PER_KEY: usize = 20;
    let (server, client) = (fixture.connect().await?, fixture.connect().await?);
    let subject = unique_subject("keyed-events");
    let (seen_tx, mut seen_rx) = tokio::sync::mpsc::unbounded_channel();
    let running_now = Arc::new(AtomicUsize::new(0));
    let most_at_once = Arc::new(AtomicUsize::new(0));
    let running = Service::new("keyed", server)
        .concurrency(16)
        .on(&subject, {
            let (running_now, most_at_once) = (running_now.clone(), most_at_once.clone());
            move |event: (usize, usize)| {
                let (seen_tx, running_now, most_at_once) =
                    (seen_tx.clone(), running_now.clone(), most_at_once.clone());
                async move {
                    let now = running_now.fetch_add(1, Ordering::SeqCst) + 1;
                    most_at_once.fetch_max(now, Ordering::SeqCst);
                    // Later events of a key finish sooner: only the key's order holds them back.
                    let pause = (PER_KEY - event.1) as u64 / 4;
                    tokio::time::sleep(Duration::from_millis(pause)).await;
                    running_now.fetch_sub(1, Ordering::SeqCst);
                    seen_tx.send(event).map_err(|e| e.to_string())
                }
            }
        })
        .start()
        .await?;
    for n in 0..PER_KEY {
        for key in 0..KEYS {
            let message = Message::json(&(key, n))?.with_key(format!("k{key}"));
            client.publish(&subject, message).await?;
        }
    }
    let mut next = [0usize; KEYS];
    for _ in 0..KEYS * PER_KEY {
        let (key, n) = tokio::time::timeout(RECEIVE_WITHIN, seen_rx.recv())
            .await
            .map_err(|_| Failure(format!("keyed events not all handled: {next:?} per key")))?
            .ok_or_else(|| Failure("event handler gone".into()))?;
        ensure!(
            n == next[key],
            "key k{key}: event {n} handled when {} was next",
            next[key]
        );
        next[key] += 1;
    }
    ensure!(
        most_at_once.load(Ordering::SeqCst) > 1,
        "different keys were never handled at once"
    );
    running.shutdown().await;
    Ok(())
}

/// A concurrent route never runs more requests at once than its
/// `concurrency`, however they reach it (queue or in the caller's task), and
/// answers every one.
pub(super) async fn request_concurrency_is_bounded(fixture: &dyn Fixture) -> CaseResult {
    const LIMIT: usize = 3;
    const CALLS: u64 = 12;
    let (server, client) = (fixture.connect().await?, fixture.connect().await?);
    let subject = unique_subject("bounded");
    let running_now = Arc::new(AtomicUsize::new(0));
    let most_at_once = Arc::new(AtomicUsize::new(0));
    let running = Service::new("bounded", server)
        .concurrency(LIMIT)
        .on(&subject, {
            let (running_now, most_at_once) = (running_now.clone(), most_at_once.clone());
            move |request: GetOrder| {
                let (running_now, most_at_once) = (running_now.clone(), most_at_once.clone());
                async move {
                    let now = running_now.fetch_add(1, Ordering::SeqCst) + 1;
                    most_at_once.fetch_max(now, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    running_now.fetch_sub(1, Ordering::SeqCst);
                    Ok::<_, String>(request.id)
                }
            }
        })
        .start()
        .await?;
    let calls = (1..=CALLS).map(|id| {
        let (client, subject) = (client.clone(), subject.clone());
        async move {
            client
                .request_json::<_, u64>(&subject, &GetOrder { id })
                .await
        }
    });
    let answers = futures_util::future::join_all(calls).await;
    for (answer, id) in answers.into_iter().zip(1..) {
        ensure!(answer? == id, "request {id} got another request's answer");
    }
    let most = most_at_once.load(Ordering::SeqCst);
    ensure!(
        most <= LIMIT,
        "{most} requests ran at once under concurrency {LIMIT}"
    );
    ensure!(most > 1, "requests never ran concurrently");
    running.shutdown().await;
    Ok(())
}

/// A handler is never cancelled halfway because its caller stopped waiting:
/// once started, it runs to its end. (A backend may skip a request that
/// expired before its handler started; then there is nothing to finish.)
pub(super) async fn handler_finishes_after_its_caller_gives_up(
    fixture: &dyn Fixture,
) -> CaseResult {
    let (server, client) = (fixture.connect().await?, fixture.connect().await?);
    let subject = unique_subject("gave-up");
    let (started_tx, mut started) = tokio::sync::mpsc::unbounded_channel();
    let (finished_tx, mut finished) = tokio::sync::mpsc::unbounded_channel();
    let running = Service::new("patient", server)
        .on(&subject, move |request: GetOrder| {
            let (started_tx, finished_tx) = (started_tx.clone(), finished_tx.clone());
            async move {
                let _ = started_tx.send(request.id);
                tokio::time::sleep(Duration::from_millis(400)).await;
                let _ = finished_tx.send(request.id);
                Ok::<_, String>(request.id)
            }
        })
        .start()
        .await?;
    let gave_up = client
        .request_json_with_timeout::<_, u64>(
            &subject,
            &GetOrder { id: 7 },
            Duration::from_millis(150),
        )
        .await;
    expect_kind(gave_up, ErrorKind::Timeout, "a request past its timeout")?;
    if tokio::time::timeout(Duration::from_secs(2), started.recv())
        .await
        .is_ok()
    {
        let done = tokio::time::timeout(RECEIVE_WITHIN, finished.recv()).await;
        ensure!(
            matches!(done, Ok(Some(7))),
            "the handler started but never finished after its caller timed out"
        );
    }
    running.shutdown().await;
    Ok(())
}
