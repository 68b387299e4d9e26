//! Scenario 2: a chain of three with the middle service stopped for a while,
//! then restarted: what the caller saw, and whether any accepted work was lost.
//! The node-loss scenario runs the same measurement with a cluster node
//! killed instead (see [`Disruption`]).

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
    /// Jobs the caller tried to send (one every 10 ms; every 100 ms on a cluster).
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
    /// Time from the failure until a call started after it succeeded, in
    /// milliseconds (the caller is served again).
    pub served_again_after_ms: u64,
    /// Jobs the last service finished more than once (redeliveries).
    pub duplicates: u64,
    /// The kinds of the caller's errors with their counts (`Timeout×20`), and
    /// the first error's message (from the first run, when runs differ).
    pub errors_seen: String,
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

/// What fails mid-run and comes back.
pub enum Disruption<'a> {
    /// The chain's middle service stops, and starts again with the same name.
    MiddleService,
    /// A server of the cluster the chain runs on: called with `false` to kill
    /// it, with `true` to start it again (blocking until it listens).
    Node(&'a mut (dyn FnMut(bool) + Send)),
}

impl Disruption<'_> {
    /// How long the caller keeps sending after the restart: a cluster needs
    /// seconds to move leaders (Kafka notices a dead broker after its 9 s
    /// session timeout), and recovery is what this scenario measures.
    fn sending_after(&self) -> Duration {
        match self {
            Disruption::MiddleService => Duration::from_millis(700),
            Disruption::Node(_) => Duration::from_secs(12),
        }
    }

    /// How often the caller sends a job. On the three-broker Kafka cluster
    /// (`acks=all`, three replicas, two cores) a sync chain of three
    /// finishes a job in ~200 ms and only tens per second: sending every 10 ms
    /// would measure overload, not the lost node.
    fn interval(&self) -> Duration {
        match self {
            Disruption::MiddleService => Duration::from_millis(10),
            Disruption::Node(_) => Duration::from_millis(100),
        }
    }

    /// How long a sync caller waits for an answer. A replicated Kafka chain of
    /// three sync hops takes longer than a single broker's.
    fn caller_timeout(&self) -> &'static str {
        match self {
            Disruption::MiddleService => "300ms",
            Disruption::Node(_) => "2s",
        }
    }

    /// How long without progress means the rest of the backlog is lost, and
    /// the longest wait for it after the restart. Waiting longer on a cluster
    /// keeps a slow failover from being counted as loss.
    fn patience(&self) -> (Duration, Duration) {
        match self {
            Disruption::MiddleService => (Duration::from_millis(1500), Duration::from_secs(15)),
            Disruption::Node(_) => (Duration::from_secs(10), Duration::from_secs(60)),
        }
    }
}

/// Runs the outage scenario on one backend and style.
pub async fn measure(
    backend: &Backend,
    seed: &Bus,
    prefix: &str,
    style: Style,
    outage: Duration,
    mut disruption: Disruption<'_>,
) -> Result<OutageRow, Box<dyn std::error::Error + Send + Sync>> {
    let depth = 3;
    // A caller in the sync style should not wait the default 5 s on a missing service.
    let short_timeout = vec![RouteSettings {
        subjects: format!("{prefix}.>"),
        style: None,
        transport: None,
        timeout: Some(disruption.caller_timeout().into()),
        graphql: None,
        on_no_subscriber: None,
        dedup: None,
        query: None,
        fallback: None,
        codec: None,
        cloudevents: None,
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
    // Microseconds since `base`: when the failure began, and when the first
    // call started after it succeeded.
    let base = Instant::now();
    let failed_at = Arc::new(AtomicU64::new(u64::MAX));
    let served_again = Arc::new(AtomicU64::new(u64::MAX));
    // What the failed calls said: how many of each error kind, and the first message.
    let kinds = Arc::new(Mutex::new(std::collections::BTreeMap::new()));
    let first_error = Arc::new(Mutex::new(String::new()));
    let before = Duration::from_millis(300);
    let (quiet, longest) = disruption.patience();
    let tick = disruption.interval();
    // The caller sends until `sending_after` past the restart (µs since `base`),
    // however long the restart itself took.
    let sending_until = Arc::new(AtomicU64::new(u64::MAX));
    let sent = Arc::new(AtomicU64::new(0));

    let sender = {
        let (caller, entry) = (caller.clone(), chain.entry.clone());
        let (accepted, errors, latencies) = (accepted.clone(), errors.clone(), latencies.clone());
        let (in_outage, during) = (in_outage.clone(), during.clone());
        let (failed_at, served_again) = (failed_at.clone(), served_again.clone());
        let (kinds, first_error) = (kinds.clone(), first_error.clone());
        let (sending_until, sent) = (sending_until.clone(), sent.clone());
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(tick);
            let mut calls = tokio::task::JoinSet::new();
            for id in 100.. {
                ticker.tick().await;
                if base.elapsed().as_micros() as u64 >= sending_until.load(Ordering::SeqCst) {
                    break;
                }
                sent.fetch_add(1, Ordering::SeqCst);
                let (caller, entry) = (caller.clone(), entry.clone());
                let (accepted, errors, latencies) =
                    (accepted.clone(), errors.clone(), latencies.clone());
                let during = during.clone();
                let (failed_at, served_again) = (failed_at.clone(), served_again.clone());
                let (kinds, first_error) = (kinds.clone(), first_error.clone());
                let started_in_outage = in_outage.load(Ordering::SeqCst);
                if started_in_outage {
                    during.0.fetch_add(1, Ordering::SeqCst);
                }
                calls.spawn(async move {
                    let started = Instant::now();
                    let started_us = base.elapsed().as_micros() as u64;
                    match caller.send::<_, ()>(&entry, &Job { id }).await {
                        Ok(_) => {
                            accepted.fetch_add(1, Ordering::SeqCst);
                            if started_us >= failed_at.load(Ordering::SeqCst) {
                                let now = base.elapsed().as_micros() as u64;
                                served_again.fetch_min(now, Ordering::SeqCst);
                            }
                            if started_in_outage {
                                during.1.fetch_add(1, Ordering::SeqCst);
                            }
                            let micros = started.elapsed().as_micros() as u64;
                            let _ = latencies.lock().await.record(micros);
                        }
                        Err(err) => {
                            errors.fetch_add(1, Ordering::SeqCst);
                            let mut kinds = kinds.lock().await;
                            *kinds.entry(format!("{:?}", err.kind())).or_insert(0u64) += 1;
                            let mut first = first_error.lock().await;
                            if first.is_empty() {
                                *first = err.to_string();
                            }
                        }
                    }
                });
            }
            while calls.join_next().await.is_some() {}
        })
    };

    let mut done = HashSet::new();
    let mut finished = 0u64;
    let mut max_backlog = 0u64;
    let mut sample = |done: &HashSet<u64>| {
        let backlog = accepted
            .load(Ordering::SeqCst)
            .saturating_sub(done.len() as u64);
        max_backlog = max_backlog.max(backlog);
    };
    let mut collect_until =
        |deadline: Instant,
         done: &mut HashSet<u64>,
         completed: &mut tokio::sync::mpsc::UnboundedReceiver<u64>| {
            while let Ok(id) = completed.try_recv() {
                finished += u64::from(id >= 100);
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
    // The middle service (or a node) goes away.
    failed_at.store(base.elapsed().as_micros() as u64, Ordering::SeqCst);
    match &mut disruption {
        Disruption::MiddleService => {
            if let Some(running) = chain.services[1].2.take() {
                running.shutdown().await;
            }
        }
        Disruption::Node(node) => tokio::task::block_in_place(|| node(false)),
    }
    in_outage.store(true, Ordering::SeqCst);
    let until = Instant::now() + outage;
    while collect_until(until, &mut done, &mut chain.completed) {
        sample(&done);
        tokio::time::sleep(tick).await;
    }
    // And comes back, with the same name (queue group) and connection.
    in_outage.store(false, Ordering::SeqCst);
    match &mut disruption {
        Disruption::MiddleService => {
            let router = chain.services[1].1.clone();
            let restarted = chain::start_stage(prefix, 2, depth, router).await?;
            chain.services[1].2 = Some(restarted);
        }
        Disruption::Node(node) => tokio::task::block_in_place(|| node(true)),
    }
    let stop_sending = base.elapsed() + disruption.sending_after();
    sending_until.store(stop_sending.as_micros() as u64, Ordering::SeqCst);
    let restarted_at = Instant::now();
    // Watch the backlog drain: until the sender is done and nothing is left, or
    // nothing has completed for a while (the rest is lost; see `patience`).
    let deadline = restarted_at + longest;
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
        if sender.is_finished() && (backlog == 0 || last_progress.1.elapsed() > quiet) {
            break;
        }
        tokio::time::sleep(tick).await;
    }
    sender.await?;
    let sent = sent.load(Ordering::SeqCst);
    let accepted = accepted.load(Ordering::SeqCst);
    let completed = done.iter().filter(|id| **id >= 100).count() as u64;
    let latencies = latencies.lock().await;
    let row = OutageRow {
        backend: backend.name.into(),
        style: backend.style_label(style),
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
        served_again_after_ms: match served_again.load(Ordering::SeqCst) {
            u64::MAX => u64::MAX,
            at => at.saturating_sub(failed_at.load(Ordering::SeqCst)) / 1000,
        },
        duplicates: finished.saturating_sub(completed),
        errors_seen: describe(&*kinds.lock().await, &first_error.lock().await),
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

/// `Timeout×20, Remote×3 (first: …)`, or `none`.
fn describe(kinds: &std::collections::BTreeMap<String, u64>, first: &str) -> String {
    if kinds.is_empty() {
        return "none".into();
    }
    let counts: Vec<String> = kinds
        .iter()
        .map(|(kind, count)| format!("{kind}×{count}"))
        .collect();
    format!("{} (first: {first})", counts.join(", "))
}

/// `part ÷ whole`, 0 for an empty whole.
fn share(part: u64, whole: u64) -> f64 {
    match whole {
        0 => 0.0,
        whole => part as f64 / whole as f64,
    }
}
