//! Shutdown with events queued: everything the transport handed a service is
//! handled, returned to a redelivering backend, or counted as lost.

use std::collections::BTreeSet;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};
use tokio::sync::watch;

use super::fixture::Fixture;
use super::support::{ensure, unique_subject, CaseResult, Failure, RECEIVE_WITHIN};
use crate::handler::State;
use crate::service::Service;

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Job {
    id: u64,
}

/// How many events the case publishes before shutting the service down.
const JOBS: u64 = 60;

/// Each job takes this long, so most are still queued when shutdown begins.
const JOB_TAKES: Duration = Duration::from_millis(50);

/// Jobs handled at once on the concurrent route: some are in flight when
/// shutdown begins, and their acknowledgements must still count.
const CONCURRENCY: usize = 4;

/// Events published while the service shuts down, where the backend keeps them.
const LATE: u64 = 40;

/// Shutdown's grace: long enough for a few queued jobs, not for all of them.
const GRACE: Duration = Duration::from_millis(300);

/// Where handled jobs are reported, and whether jobs may start: they wait
/// until every job was published, so how fast the backend takes
/// publishes (slow under load) does not decide how many are handled before
/// shutdown.
#[derive(Clone)]
struct Jobs {
    seen: UnboundedSender<u64>,
    open: watch::Receiver<bool>,
}

async fn slow_job(job: Job, State(jobs): State<Jobs>) {
    let mut open = jobs.open.clone();
    let _ = open.wait_for(|open| *open).await;
    tokio::time::sleep(JOB_TAKES).await;
    let _ = jobs.seen.send(job.id);
}

fn drain(seen: &mut UnboundedReceiver<u64>, into: &mut Vec<u64>) {
    while let Ok(id) = seen.try_recv() {
        into.push(id);
    }
}

/// `JOBS` events reach a service (an ordered route, then a concurrent one),
/// which shuts down with a short grace after the first is handled. Every
/// event must be accounted for:
/// handled + `lost` = `JOBS` where the backend does not redeliver (and the
/// report is unclean if any was lost); where it does, the report returns the
/// rest, is clean, and — with publishing going on through the shutdown — a
/// restarted service (same group) handles exactly the
/// events the first did not — none twice, none missing.
pub(super) async fn shutdown_accounts_for_queued_events(fixture: &dyn Fixture) -> CaseResult {
    for ordered in [true, false] {
        accounts_for_queued_events(fixture, ordered)
            .await
            .map_err(|Failure(why)| {
                let route = if ordered { "ordered" } else { "concurrent" };
                Failure(format!("{route} route: {why}"))
            })?;
    }
    Ok(())
}

async fn accounts_for_queued_events(fixture: &dyn Fixture, ordered: bool) -> CaseResult {
    let (server, client) = (fixture.connect().await?, fixture.connect().await?);
    let subject = unique_subject("drain-shutdown");
    let redelivers = server.redelivers(&subject);
    let name = subject.rsplit('.').next().unwrap_or("drain").to_owned();
    let (seen_tx, mut seen) = unbounded_channel::<u64>();
    let (opening, open) = watch::channel(false);
    let jobs = Jobs {
        seen: seen_tx,
        open,
    };
    let start = |bus| {
        let service = Service::new(name.clone(), bus)
            .state(jobs.clone())
            .concurrency(CONCURRENCY);
        match ordered {
            true => service.on_ordered(&subject, slow_job),
            false => service.on(&subject, slow_job),
        }
        .start()
    };
    let running = start(server.clone()).await?;
    for id in 0..JOBS {
        client.publish_json(&subject, &Job { id }).await?;
    }
    opening.send_replace(true);
    let first = tokio::time::timeout(RECEIVE_WITHIN, seen.recv())
        .await
        .map_err(|_| Failure("no event was handled".into()))?
        .ok_or_else(|| Failure("handler gone".into()))?;
    // Brokers that route asynchronously (core NATS) have every event at the
    // subscriber well within this; the handler is still busy with the queue.
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Where the backend keeps events, publishing goes on through the shutdown:
    // records keep arriving while the service stops, as in production.
    let total = if redelivers { JOBS + LATE } else { JOBS };
    let late = redelivers.then(|| {
        let (client, subject) = (client.clone(), subject.clone());
        tokio::spawn(async move {
            for id in JOBS..JOBS + LATE {
                client.publish_json(&subject, &Job { id }).await?;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            Ok::<_, crate::Error>(())
        })
    });
    let report = running.shutdown_within(GRACE).await;
    if let Some(late) = late {
        late.await
            .map_err(|e| Failure(format!("late publisher: {e}")))??;
    }
    let mut handled = vec![first];
    drain(&mut seen, &mut handled);
    let distinct: BTreeSet<u64> = handled.iter().copied().collect();
    ensure!(
        distinct.len() == handled.len(),
        "an event was handled twice before shutdown: {handled:?}"
    );
    ensure!(
        handled.len() < JOBS as usize,
        "all {JOBS} events were handled within {GRACE:?}: the case did not shut down with a queue"
    );
    if !redelivers {
        ensure!(
            handled.len() + report.lost == JOBS as usize && report.returned == 0,
            "{} handled + {} lost of {JOBS} events given to the service: {report}",
            handled.len(),
            report.lost
        );
        ensure!(report.is_clean() == (report.lost == 0), "{report}");
        let _ = server.close().await;
        let _ = client.close().await;
        return Ok(());
    }
    ensure!(report.is_clean() && report.lost == 0, "{report}");
    // The same group again: it gets what the first instance did not handle.
    let restarted = start(server.clone()).await?;
    let mut again = Vec::new();
    let waited = tokio::time::timeout(Duration::from_secs(60), async {
        while distinct.len() + again.len() < total as usize {
            match seen.recv().await {
                Some(id) => again.push(id),
                None => break,
            }
        }
    })
    .await;
    // Anything more that comes would be a duplicate: give it a moment to show.
    tokio::time::sleep(Duration::from_millis(500)).await;
    drain(&mut seen, &mut again);
    let second_report = restarted.shutdown().await;
    let twice: Vec<u64> = again
        .iter()
        .copied()
        .filter(|id| distinct.contains(id))
        .collect();
    let all: BTreeSet<u64> = distinct.iter().chain(&again).copied().collect();
    ensure!(
        twice.is_empty(),
        "{} event(s) handled again after a clean shutdown: {twice:?} ({report})",
        twice.len()
    );
    ensure!(
        waited.is_ok()
            && all.len() == total as usize
            && again.len() + distinct.len() == total as usize,
        "after the restart {} distinct of {total} events were handled ({} duplicates)",
        all.len(),
        again.len() + distinct.len() - all.len()
    );
    ensure!(second_report.is_clean(), "{second_report}");
    let _ = server.close().await;
    let _ = client.close().await;
    Ok(())
}
