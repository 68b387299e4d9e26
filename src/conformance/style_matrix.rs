//! The style matrix: every way to register a handler × every route style gives
//! the same documented outcome on every backend, and shutdown loses nothing.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};

use super::fixture::Fixture;
use super::support::{
    ensure, expect_kind, receive as next_within, unique_subject, CaseResult, Failure,
    RECEIVE_WITHIN, SILENCE_FOR,
};
use crate::bus::{Bus, Sent};
use crate::error::ErrorKind;
use crate::handler::{Rejection, State};
use crate::service::{EventPolicy, Service};
use crate::settings::{RouteTable, Style, DEFAULT_TRANSPORT};
use crate::wire;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Order {
    id: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Receipt {
    id: u64,
    by: String,
}

type Seen = UnboundedSender<u64>;

async fn value_handler(order: Order, State(seen): State<Seen>) -> Result<Receipt, Rejection> {
    let _ = seen.send(order.id);
    Ok(Receipt {
        id: order.id,
        by: "value".into(),
    })
}

async fn unit_handler(order: Order, State(seen): State<Seen>) {
    let _ = seen.send(order.id);
}

async fn failing_handler(order: Order, State(seen): State<Seen>) -> Result<Receipt, Rejection> {
    let _ = seen.send(order.id);
    Err(Rejection::new(format!("order {} refused", order.id)).with_code("refused"))
}

/// The two registrations a service offers.
#[derive(Debug, Clone, Copy)]
enum Registration {
    On,
    OnOrdered,
}

fn register<H, Args>(service: Service, how: Registration, subject: &str, handler: H) -> Service
where
    H: crate::handler::Handler<Args>,
    Args: 'static,
{
    match how {
        Registration::On => service.on(subject, handler),
        Registration::OnOrdered => service.on_ordered(subject, handler),
    }
}

/// A caller whose every route has `style`: what configuration makes of a bus.
fn caller(bus: Bus, style: Style) -> Result<Bus, Failure> {
    let transports = BTreeMap::from([(DEFAULT_TRANSPORT.to_owned(), bus)]);
    Ok(Bus::from_routes(RouteTable::new(style), transports)?)
}

/// A service name (queue group, dead-letter subject token) no other case uses.
fn unique_service(prefix: &str) -> String {
    let subject = unique_subject(prefix);
    subject.rsplit('.').next().unwrap_or(prefix).to_owned()
}

async fn handled(seen: &mut UnboundedReceiver<u64>, what: &str) -> Result<u64, Failure> {
    tokio::time::timeout(RECEIVE_WITHIN, seen.recv())
        .await
        .map_err(|_| Failure(format!("{what}: the handler never ran")))?
        .ok_or_else(|| Failure(format!("{what}: handler gone")))
}

/// Sync routes: a value is the reply, `()` an empty success, an error a coded `Remote`.
pub(super) async fn sync_routes(fixture: &dyn Fixture) -> CaseResult {
    for how in [Registration::On, Registration::OnOrdered] {
        let (server, client) = (fixture.connect().await?, fixture.connect().await?);
        let client = caller(client, Style::Sync)?;
        let base = unique_subject("matrix-sync");
        let (value, unit, failing) = (
            format!("{base}.value"),
            format!("{base}.unit"),
            format!("{base}.failing"),
        );
        let (seen_tx, mut seen) = unbounded_channel::<u64>();
        let service = Service::new(unique_service("matrix"), server.clone()).state(seen_tx);
        let service = register(service, how, &value, value_handler);
        let service = register(service, how, &unit, unit_handler);
        let running = register(service, how, &failing, failing_handler)
            .start()
            .await?;

        let sent: Sent<Receipt> = client.send(&value, &Order { id: 1 }).await?;
        ensure!(
            sent == Sent::Replied(Receipt {
                id: 1,
                by: "value".into()
            }),
            "{how:?} value handler on a sync route answered {sent:?}"
        );
        let sent: Sent<()> = client.send(&unit, &Order { id: 2 }).await?;
        ensure!(
            sent == Sent::Replied(()),
            "{how:?} unit handler on a sync route answered {sent:?}"
        );
        let refused = client.send::<_, Receipt>(&failing, &Order { id: 3 }).await;
        let err = expect_kind(
            refused,
            ErrorKind::Remote,
            "failing handler on a sync route",
        )?;
        ensure!(
            err.code() == Some("refused") && err.to_string().contains("order 3 refused"),
            "{how:?} failing handler gave {err} (code {:?})",
            err.code()
        );
        for expected in [1, 2, 3] {
            let id = handled(&mut seen, "sync route").await?;
            ensure!(
                id == expected,
                "{how:?}: handler saw order {id}, expected {expected}"
            );
        }
        let report = running.shutdown().await;
        ensure!(report.is_clean(), "{how:?}: {report}");
        let _ = server.close().await;
        let _ = client.close().await;
    }
    Ok(())
}

/// Async routes: every handler runs once per event (its value discarded);
/// a failing one is retried and then dead-lettered with its attempt count.
pub(super) async fn async_routes(fixture: &dyn Fixture) -> CaseResult {
    for how in [Registration::On, Registration::OnOrdered] {
        let (server, client) = (fixture.connect().await?, fixture.connect().await?);
        let client = caller(client, Style::Async)?;
        let base = unique_subject("matrix-async");
        let (value, unit, failing) = (
            format!("{base}.value"),
            format!("{base}.unit"),
            format!("{base}.failing"),
        );
        let name = unique_service("matrix");
        let mut dead_letters = server.subscribe(&format!("dead-letter.{name}")).await?;
        let (seen_tx, mut seen) = unbounded_channel::<u64>();
        let service = Service::new(name, server.clone())
            .state(seen_tx)
            .event_policy(EventPolicy::default().max_attempts(2));
        let service = register(service, how, &value, value_handler);
        let service = register(service, how, &unit, unit_handler);
        let running = register(service, how, &failing, failing_handler)
            .start()
            .await?;

        for (subject, id) in [(&value, 11), (&unit, 12)] {
            let sent: Sent<Receipt> = client.send(subject, &Order { id }).await?;
            ensure!(sent.is_accepted(), "{how:?}: async route answered {sent:?}");
            let got = handled(&mut seen, "async route").await?;
            ensure!(got == id, "{how:?}: handler saw order {got}, expected {id}");
        }
        let sent: Sent<Receipt> = client.send(&failing, &Order { id: 13 }).await?;
        ensure!(sent.is_accepted(), "{how:?}: async route answered {sent:?}");
        for attempt in 1..=2 {
            let got = handled(&mut seen, "failing event").await?;
            ensure!(got == 13, "{how:?}: attempt {attempt} saw order {got}");
        }
        let letter = next_within(&mut dead_letters, "the dead-lettered event").await?;
        let headers = letter.headers();
        ensure!(
            headers.get(wire::DEAD_LETTER_ATTEMPTS) == Some("2")
                && headers.get(wire::DEAD_LETTER_SUBJECT) == Some(failing.as_str()),
            "{how:?}: dead letter headers {headers:?}"
        );
        let report = running.shutdown().await;
        ensure!(report.is_clean(), "{how:?}: {report}");
        let _ = server.close().await;
        let _ = client.close().await;
    }
    Ok(())
}

/// Refuses for good: marked permanent.
async fn permanent_handler(order: Order, State(seen): State<Seen>) -> Result<(), Rejection> {
    let _ = seen.send(order.id);
    Err(Rejection::new("order cancelled")
        .with_code("cancelled")
        .permanent())
}

/// Refuses with a code the service's policy lists as final.
async fn final_code_handler(order: Order, State(seen): State<Seen>) -> Result<(), Rejection> {
    let _ = seen.send(order.id);
    Err(Rejection::new("too many items").with_code("quantity_over_limit"))
}

/// A final refusal — a rejection marked permanent, or one whose code the
/// policy lists in `final_codes` — is not retried: the handler runs once and
/// the event is dead-lettered at once with its code and `cause: final`.
pub(super) async fn final_refusal_is_dead_lettered_at_once(fixture: &dyn Fixture) -> CaseResult {
    let (server, client) = (fixture.connect().await?, fixture.connect().await?);
    let client = caller(client, Style::Async)?;
    let base = unique_subject("final-refusal");
    let (permanent, coded) = (format!("{base}.permanent"), format!("{base}.coded"));
    let name = unique_service("final");
    let mut dead_letters = server.subscribe(&format!("dead-letter.{name}")).await?;
    let (seen_tx, mut seen) = unbounded_channel::<u64>();
    let policy = EventPolicy::default()
        .max_attempts(5)
        .final_codes(["quantity_over_limit"]);
    let running = Service::new(name, server.clone())
        .state(seen_tx)
        .event_policy(policy)
        .on(&permanent, permanent_handler)
        .on(&coded, final_code_handler)
        .start()
        .await?;
    for (subject, id) in [(&permanent, 21), (&coded, 22)] {
        let sent: Sent<()> = client.send(subject, &Order { id }).await?;
        ensure!(sent.is_accepted(), "async route answered {sent:?}");
    }
    let mut letters = BTreeMap::new();
    for _ in 0..2 {
        let letter = next_within(&mut dead_letters, "a finally refused event").await?;
        let headers = letter.headers();
        let subject = headers
            .get(wire::DEAD_LETTER_SUBJECT)
            .unwrap_or_default()
            .to_owned();
        let fields = [
            wire::DEAD_LETTER_ATTEMPTS,
            wire::DEAD_LETTER_CODE,
            wire::DEAD_LETTER_CAUSE,
        ]
        .map(|name| headers.get(name).unwrap_or_default().to_owned());
        letters.insert(subject, fields);
    }
    for (subject, code) in [(&permanent, "cancelled"), (&coded, "quantity_over_limit")] {
        let fields = letters.get(subject.as_str());
        ensure!(
            fields.is_some_and(|f| f == &["1".to_owned(), code.to_owned(), "final".to_owned()]),
            "dead letter of {subject}: (attempts, code, cause) = {fields:?}, expected (1, {code}, final)"
        );
    }
    // Each handler ran once: a retry would have come within 100 ms.
    let mut runs = Vec::new();
    while let Ok(Some(id)) = tokio::time::timeout(SILENCE_FOR, seen.recv()).await {
        runs.push(id);
    }
    runs.sort_unstable();
    ensure!(
        runs == [21, 22],
        "the handlers ran for {runs:?}, expected once each for 21 and 22"
    );
    let report = running.shutdown().await;
    ensure!(report.is_clean(), "{report}");
    let _ = server.close().await;
    let _ = client.close().await;
    Ok(())
}

/// Fails on its first attempt, succeeds on every later one.
async fn flaky_handler(
    order: Order,
    State(seen): State<Seen>,
    State(tries): State<Tries>,
) -> Result<(), Rejection> {
    let _ = seen.send(order.id);
    match tries.0.fetch_add(1, Ordering::SeqCst) {
        0 => Err(Rejection::new("not yet")),
        _ => Ok(()),
    }
}

#[derive(Clone, Default)]
struct Tries(Arc<AtomicU32>);

/// Shutdown while an event waits between retries: with grace the retry runs
/// and succeeds; without, the event is dead-lettered with its attempt count;
/// the report says which, and nothing is lost.
pub(super) async fn shutdown_loses_nothing(fixture: &dyn Fixture) -> CaseResult {
    for grace in [Duration::from_secs(20), Duration::ZERO] {
        let (server, client) = (fixture.connect().await?, fixture.connect().await?);
        let subject = unique_subject("matrix-shutdown");
        let name = unique_service("shutdown");
        let mut dead_letters = server.subscribe(&format!("dead-letter.{name}")).await?;
        let (seen_tx, mut seen) = unbounded_channel::<u64>();
        let tries = Tries::default();
        let running = Service::new(name, server.clone())
            .state(seen_tx)
            .state(tries.clone())
            .on(&subject, flaky_handler)
            .start()
            .await?;
        client.publish_json(&subject, &Order { id: 21 }).await?;
        handled(&mut seen, "first attempt").await?;
        let report = running.shutdown_within(grace).await;
        ensure!(report.is_clean(), "{report}");
        if grace.is_zero() {
            ensure!(
                report.dead_lettered == 1 && report.completed == 0,
                "shutdown without grace: {report}"
            );
            let letter =
                next_within(&mut dead_letters, "the event dead-lettered at shutdown").await?;
            ensure!(
                letter.headers().get(wire::DEAD_LETTER_ATTEMPTS) == Some("1"),
                "dead letter headers {:?}",
                letter.headers()
            );
        } else {
            ensure!(
                report.completed == 1 && report.dead_lettered == 0,
                "shutdown with grace: {report}"
            );
            ensure!(
                tries.0.load(Ordering::SeqCst) == 2,
                "the retry ran {} times",
                tries.0.load(Ordering::SeqCst)
            );
        }
        let _ = server.close().await;
        let _ = client.close().await;
    }
    Ok(())
}
