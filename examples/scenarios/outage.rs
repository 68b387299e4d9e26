//! Scenario 2: a chain of three with the middle service stopped for a while,
//! then restarted: what the caller saw, and whether any accepted work was lost.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::Serialize;
use switchboard::settings::RouteSettings;
use switchboard::{Bus, Style};
use tokio::sync::Mutex;

use crate::backends::Backend;
use crate::chain::{self, Job};

/// What one backend and style did through the outage.
#[derive(Debug, Clone, Serialize)]
pub struct OutageRow {
    pub backend: String,
    pub style: String,
    pub outage_ms: u64,
    /// Jobs the caller tried to send (one every 10 ms).
    pub sent: u64,
    /// Calls that failed at the caller (it saw the outage).
    pub caller_errors: u64,
    /// Calls the caller's dispatch reported as done (sync) or accepted (async).
    pub accepted: u64,
    /// Slowest successful caller call, in microseconds.
    pub caller_p99_us: u64,
    pub caller_max_us: u64,
    /// Jobs the last service finished, including any whose caller saw an error
    /// (a timed-out request can still be processed later: more than `accepted`).
    pub completed: u64,
    /// Accepted but never finished, after waiting for the backlog to drain.
    pub lost: u64,
    /// The largest number of accepted, unfinished jobs at any moment.
    pub max_backlog: u64,
    /// Time from the restart until the backlog was empty, in milliseconds.
    pub drained_after_ms: u64,
    /// Calls started while the middle service was stopped, and how many of
    /// them the caller saw succeed: the front service's own work.
    pub sent_during_outage: u64,
    pub accepted_during_outage: u64,
    /// Autonomy: the share of its own work the front service completed while
    /// its dependency was stopped (accepted ÷ sent during the outage).
    pub own_work_share: f64,
    /// The share of all jobs sent that finished end to end, after the
    /// dependency returned and the backlog drained (or was given up on).
    pub end_to_end_share: f64,
}

/// Runs the outage scenario on one backend and style.
pub async fn measure(
    backend: &Backend,
    seed: &Bus,
    prefix: &str,
    style: Style,
    outage: Duration,
) -> Result<OutageRow, Box<dyn std::error::Error + Send + Sync>> {
    let depth = 3;
    // A caller in the sync style should not wait the default 5 s on a missing service.
    let short_timeout = vec![RouteSettings {
        subjects: format!("{prefix}.>"),
        style: None,
        transport: None,
        timeout: Some("300ms".into()),
    }];
    let mut chain = chain::start(backend, seed, prefix, depth, style).await?;
    let caller = backend
        .service(seed, "caller", style, short_timeout)
        .await?;
    chain::warm_up(&caller, &mut chain).await?;

    let accepted = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    // Set while the middle service is stopped: (sent, accepted) of the calls started then.
    let in_outage = Arc::new(AtomicBool::new(false));
    let during = Arc::new((AtomicU64::new(0), AtomicU64::new(0)));
    let latencies = Arc::new(Mutex::new(Histogram::<u64>::new(3)?));
    let before = Duration::from_millis(300);
    let after = Duration::from_millis(700);
    let total = before + outage + after;
    let tick = Duration::from_millis(10);
    let sent = (total.as_millis() / tick.as_millis()) as u64;

    let sender = {
        let (caller, entry) = (caller.clone(), chain.entry.clone());
        let (accepted, errors, latencies) = (accepted.clone(), errors.clone(), latencies.clone());
        let (in_outage, during) = (in_outage.clone(), during.clone());
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(tick);
            let mut calls = tokio::task::JoinSet::new();
            for id in 100..100 + sent {
                ticker.tick().await;
                let (caller, entry) = (caller.clone(), entry.clone());
                let (accepted, errors, latencies) =
                    (accepted.clone(), errors.clone(), latencies.clone());
                let during = during.clone();
                let started_in_outage = in_outage.load(Ordering::SeqCst);
                if started_in_outage {
                    during.0.fetch_add(1, Ordering::SeqCst);
                }
                calls.spawn(async move {
                    let started = Instant::now();
                    match caller.send::<_, ()>(&entry, &Job { id }).await {
                        Ok(_) => {
                            accepted.fetch_add(1, Ordering::SeqCst);
                            if started_in_outage {
                                during.1.fetch_add(1, Ordering::SeqCst);
                            }
                            let micros = started.elapsed().as_micros() as u64;
                            let _ = latencies.lock().await.record(micros);
                        }
                        Err(_) => {
                            errors.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                });
            }
            while calls.join_next().await.is_some() {}
        })
    };

    let mut done = HashSet::new();
    let mut max_backlog = 0u64;
    let mut sample = |done: &HashSet<u64>| {
        let backlog = accepted
            .load(Ordering::SeqCst)
            .saturating_sub(done.len() as u64);
        max_backlog = max_backlog.max(backlog);
    };
    let collect_until =
        |deadline: Instant,
         done: &mut HashSet<u64>,
         completed: &mut tokio::sync::mpsc::UnboundedReceiver<u64>| {
            while let Ok(id) = completed.try_recv() {
                done.insert(id);
            }
            Instant::now() < deadline
        };

    // Before the outage.
    let until = Instant::now() + before;
    while collect_until(until, &mut done, &mut chain.completed) {
        sample(&done);
        tokio::time::sleep(tick).await;
    }
    // The middle service goes away.
    let (_, middle_router, middle) = &mut chain.services[1];
    if let Some(running) = middle.take() {
        running.shutdown().await;
    }
    in_outage.store(true, Ordering::SeqCst);
    let until = Instant::now() + outage;
    while collect_until(until, &mut done, &mut chain.completed) {
        sample(&done);
        tokio::time::sleep(tick).await;
    }
    // And comes back, with the same name (queue group) and connection.
    in_outage.store(false, Ordering::SeqCst);
    let restarted = chain::start_stage(prefix, 2, depth, middle_router.clone()).await?;
    chain.services[1].2 = Some(restarted);
    let restarted_at = Instant::now();
    // Watch the backlog drain: until the sender is done and nothing is left, or
    // nothing has completed for 1.5 s (the rest is lost), or 15 s have passed.
    let deadline = restarted_at + Duration::from_secs(15);
    let mut drained_after = None;
    let mut last_progress = (done.len(), Instant::now());
    while collect_until(deadline, &mut done, &mut chain.completed) {
        sample(&done);
        let backlog = accepted
            .load(Ordering::SeqCst)
            .saturating_sub(done.len() as u64);
        if backlog == 0 && drained_after.is_none() {
            drained_after = Some(restarted_at.elapsed());
        }
        if backlog > 0 {
            drained_after = None;
        }
        if done.len() != last_progress.0 {
            last_progress = (done.len(), Instant::now());
        }
        if sender.is_finished()
            && (backlog == 0 || last_progress.1.elapsed() > Duration::from_millis(1500))
        {
            break;
        }
        tokio::time::sleep(tick).await;
    }
    sender.await?;
    let accepted = accepted.load(Ordering::SeqCst);
    let completed = done.iter().filter(|id| **id >= 100).count() as u64;
    let latencies = latencies.lock().await;
    let row = OutageRow {
        backend: backend.name.into(),
        style: style.to_string(),
        outage_ms: outage.as_millis() as u64,
        sent,
        caller_errors: errors.load(Ordering::SeqCst),
        accepted,
        caller_p99_us: latencies.value_at_quantile(0.99),
        caller_max_us: latencies.max(),
        completed,
        lost: accepted.saturating_sub(completed),
        max_backlog,
        drained_after_ms: drained_after.map_or(u64::MAX, |d| d.as_millis() as u64),
        sent_during_outage: during.0.load(Ordering::SeqCst),
        accepted_during_outage: during.1.load(Ordering::SeqCst),
        own_work_share: share(
            during.1.load(Ordering::SeqCst),
            during.0.load(Ordering::SeqCst),
        ),
        end_to_end_share: share(completed, sent),
    };
    drop(latencies);
    caller.close().await?;
    chain.stop().await;
    Ok(row)
}

/// `part ÷ whole`, 0 for an empty whole.
fn share(part: u64, whole: u64) -> f64 {
    match whole {
        0 => 0.0,
        whole => part as f64 / whole as f64,
    }
}
