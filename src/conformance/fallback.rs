//! `fallback = "async"`: a sync send whose responder is away is published
//! instead, handled once the responder is back, and its outcome published.

use std::collections::BTreeMap;
use std::time::Duration;

use super::fixture::Fixture;
use super::support::{
    ensure, expect_silence, receive, unique_subject, CaseResult, Failure, TempStore, RECEIVE_WITHIN,
};
use crate::bus::{Bus, Deferred, Sent};
use crate::error::ErrorKind;
use crate::handler::Rejection;
use crate::service::{RunningService, Service};
use crate::settings::{OutboxSettings, RouteRule, RouteTable, Style, DEFAULT_TRANSPORT};

/// Commands sent while the responder is away: 0 is refused for good, the
/// others are doubled.
const AWAY: [u32; 6] = [2, 3, 4, 5, 6, 0];

async fn start(bus: &Bus, name: &str, subject: &str) -> crate::Result<RunningService> {
    Service::new(name, bus.clone())
        .on(subject, |n: u32| async move {
            match n {
                0 => Err(Rejection::new("zero is not an order")
                    .with_code("zero")
                    .permanent()),
                n => Ok(n * 2),
            }
        })
        .start()
        .await
}

/// While the responder runs, a sync send is answered; while it is away,
/// each send returns `Sent::Deferred` (no error) and is counted; back, the
/// responder handles each once and its outcome — the reply, or the refusal
/// naming who refused — is published to `deferred.SUBJECT` with the
/// command's id. Nothing is lost or doubled.
pub(super) async fn sync_send_defers_while_the_responder_is_away(
    fixture: &dyn Fixture,
) -> CaseResult {
    let (server, client, watcher) = (
        fixture.connect().await?,
        fixture.connect().await?,
        fixture.connect().await?,
    );
    let subject = unique_subject("fallback");
    let name = subject.rsplit('.').next().unwrap_or("fallback").to_owned();
    let store = TempStore::new(&name);
    let outcome = defer_and_come_back(&server, client, &watcher, &subject, &name, &store.0).await;
    let _ = server.close().await;
    let _ = watcher.close().await;
    outcome
}

async fn defer_and_come_back(
    server: &Bus,
    client: Bus,
    watcher: &Bus,
    subject: &str,
    name: &str,
    path: &std::path::Path,
) -> CaseResult {
    let mut table = RouteTable::new(Style::Sync);
    table.push(RouteRule {
        fallback: Some(Style::Async),
        timeout: Some(Duration::from_secs(10)),
        ..RouteRule::new(subject)
    })?;
    let client = Bus::from_routes(
        table,
        BTreeMap::from([(DEFAULT_TRANSPORT.to_owned(), client)]),
    )?
    .with_outbox(&OutboxSettings {
        path: Some(path.to_owned()),
        ..OutboxSettings::default()
    })
    .await?;
    let mut outcomes = watcher.subscribe(&format!("deferred.{subject}")).await?;

    let service = start(server, name, subject).await?;
    // A mesh client learns of the responder in a moment: until then it would defer.
    let deadline = tokio::time::Instant::now() + RECEIVE_WITHIN;
    loop {
        match client.request_json::<_, u32>(subject, &1u32).await {
            Ok(2) => break,
            Ok(other) => return Err(Failure(format!("1 doubled came back as {other}"))),
            Err(_) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            Err(err) => return Err(Failure(format!("the responder never answered: {err}"))),
        }
    }
    match client.send::<_, u32>(subject, &1u32).await? {
        Sent::Replied(2) => {}
        other => {
            return Err(Failure(format!(
                "with the responder there, send gave {other:?}"
            )))
        }
    }
    ensure!(
        client.deferred_total() == 0,
        "nothing deferred while the responder is there"
    );

    let report = service.shutdown().await;
    ensure!(
        report.is_clean(),
        "the responder stopped uncleanly: {report}"
    );
    // A mesh's peers learn that the responder left.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut ids = BTreeMap::new();
    for n in AWAY {
        match client.send::<_, u32>(subject, &n).await {
            Ok(Sent::Deferred(Deferred { id, outcomes })) => {
                ensure!(
                    outcomes == format!("deferred.{subject}"),
                    "outcomes go to {outcomes}"
                );
                ensure!(ids.insert(id.clone(), n).is_none(), "id {id} given twice");
            }
            other => {
                return Err(Failure(format!(
                    "with the responder away, send of {n} gave {other:?}, not Sent::Deferred"
                )))
            }
        }
    }
    ensure!(
        client.deferred_total() == AWAY.len() as u64,
        "{} deferred counted, {} sent",
        client.deferred_total(),
        AWAY.len()
    );

    let service = start(server, name, subject).await?;
    let mut seen: BTreeMap<String, Result<u32, crate::Error>> = BTreeMap::new();
    let mut duplicates = 0;
    for _ in AWAY {
        let incoming = receive(&mut outcomes, "a deferred command's outcome").await?;
        let Some((id, outcome)) = Deferred::outcome(&incoming) else {
            return Err(Failure("an outcome without `sb-deferred-id`".into()));
        };
        let outcome = outcome.and_then(|reply| Ok(serde_json::from_slice(&reply.payload)?));
        if seen.insert(id, outcome).is_some() {
            duplicates += 1;
        }
    }
    expect_silence(&mut outcomes, "each deferred command's outcome once").await?;
    ensure!(duplicates == 0, "{duplicates} outcomes came twice");
    for (id, n) in &ids {
        match (seen.get(id), n) {
            (Some(Err(err)), 0) => {
                ensure!(
                    err.kind() == ErrorKind::Remote
                        && err.code() == Some("zero")
                        && err.origin().map(|o| o.service.as_str()) == Some(name),
                    "the refusal of 0 as its outcome names `{name}` and its code: {err:?}"
                );
            }
            (Some(Ok(doubled)), n) => {
                ensure!(*doubled == n * 2, "{n} doubled came back as {doubled}")
            }
            (other, n) => return Err(Failure(format!("command {n} (id {id}): outcome {other:?}"))),
        }
    }
    let report = service.shutdown().await;
    ensure!(
        report.is_clean(),
        "the responder back stopped uncleanly: {report}"
    );
    let _ = client.close().await;
    Ok(())
}
