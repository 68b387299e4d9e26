//! Deduplication by message id on every backend: a route with `dedup` runs
//! its handler once per message id, however often the event arrives.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc::{unbounded_channel, UnboundedSender};

use super::fixture::Fixture;
use super::support::{ensure, unique_subject, CaseResult, Failure, TempStore, RECEIVE_WITHIN};
use crate::bus::Bus;
use crate::handler::State;
use crate::message::Message;
use crate::service::Service;
use crate::settings::{OutboxSettings, RouteRule, RouteTable, Style};

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Job {
    id: u64,
}

/// Distinct jobs, each published twice with the same message id.
const JOBS: u64 = 20;

async fn record_job(job: Job, State(seen): State<UnboundedSender<u64>>) {
    let _ = seen.send(job.id);
}

/// A service with `dedup = "1m"` on an ordered route gets every one of
/// `JOBS` events twice (same message id, as an outbox forwarding again or a
/// broker redelivering would send it), then a last one: the handler must run
/// once per id, in order, and the shutdown report count `JOBS` duplicates.
pub(super) async fn dedup_runs_the_handler_once_per_message_id(
    fixture: &dyn Fixture,
) -> CaseResult {
    let (server, client) = (fixture.connect().await?, fixture.connect().await?);
    let subject = unique_subject("dedup");
    let name = subject.rsplit('.').next().unwrap_or("dedup").to_owned();
    let store = TempStore::new(&name);
    let outcome = once_per_id(server, &client, &subject, &name, &store.0).await;
    let _ = client.close().await;
    outcome
}

async fn once_per_id(
    server: Bus,
    client: &Bus,
    subject: &str,
    name: &str,
    path: &std::path::Path,
) -> CaseResult {
    let mut table = RouteTable::new(Style::Async);
    table.push(RouteRule {
        style: Some(Style::Async),
        dedup: Some(Duration::from_secs(60)),
        ..RouteRule::new(subject)
    })?;
    let settings = OutboxSettings {
        path: Some(path.to_owned()),
        ..OutboxSettings::default()
    };
    let routed = Bus::from_routes(table, BTreeMap::from([("default".to_owned(), server)]))?
        .with_outbox(&settings)
        .await?;
    let (seen_tx, mut seen) = unbounded_channel::<u64>();
    let running = Service::new(name, routed.clone())
        .state(seen_tx)
        .on_ordered(subject, record_job)
        .start()
        .await?;
    for id in 0..=JOBS {
        let copies = if id == JOBS { 1 } else { 2 };
        for _ in 0..copies {
            let message = Message::json(&Job { id })?.with_id(format!("job-{id}"));
            client.publish(subject, message).await?;
        }
    }
    let mut handled = Vec::new();
    let deadline = tokio::time::Instant::now() + RECEIVE_WITHIN * 2;
    while handled.last() != Some(&JOBS) {
        match tokio::time::timeout_at(deadline, seen.recv()).await {
            Ok(Some(id)) => handled.push(id),
            _ => break,
        }
    }
    let report = running.shutdown().await;
    let _ = routed.close().await;
    while let Ok(id) = seen.try_recv() {
        handled.push(id);
    }
    ensure!(
        handled == (0..=JOBS).collect::<Vec<_>>(),
        "the handler ran for {} events, expected each of 0..={JOBS} once and in order: {handled:?}",
        handled.len()
    );
    ensure!(
        report.duplicates_skipped == JOBS as usize,
        "the report counts {} duplicates skipped, expected {JOBS}: {report}",
        report.duplicates_skipped
    );
    if !report.is_clean() {
        return Err(Failure(format!("the shutdown was not clean: {report}")));
    }
    Ok(())
}
