//! Scenario 1: a chain of N services; end-to-end latency and throughput per style.

use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use switchboard::service::RunningService;
use switchboard::{Bus, Service, Style};
use tokio::sync::{mpsc, Semaphore};

use crate::backends::Backend;

/// The job passed along the chain.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Job {
    pub id: u64,
}

/// One measured point: a backend, a style, a chain depth.
#[derive(Debug, Clone, Serialize)]
pub struct ChainRow {
    pub backend: String,
    pub style: String,
    pub depth: usize,
    pub messages: u64,
    /// How long the caller's `dispatch` took.
    pub caller_p50_us: u64,
    pub caller_p99_us: u64,
    /// How long until the last service had done its part.
    pub end_to_end_p50_us: u64,
    pub end_to_end_p99_us: u64,
    /// Jobs completed per second with 32 dispatched at once.
    pub throughput_per_s: f64,
}

/// A running chain: N services forwarding to the next, then a collector.
pub struct Chain {
    pub services: Vec<(String, Bus, Option<RunningService>)>,
    pub collector: (Bus, RunningService),
    pub completed: mpsc::UnboundedReceiver<u64>,
    pub entry: String,
    pub prefix: String,
}

/// The subject service `index` (1-based) handles.
pub fn stage(prefix: &str, index: usize) -> String {
    format!("{prefix}.s{index}")
}

/// Starts stage `index` of a chain of `depth` on `router`.
pub async fn start_stage(
    prefix: &str,
    index: usize,
    depth: usize,
    router: Bus,
) -> switchboard::Result<RunningService> {
    let next = if index == depth {
        format!("{prefix}.done")
    } else {
        stage(prefix, index + 1)
    };
    let forward = router.clone();
    Service::new(format!("{}-s{index}", prefix.replace('.', "-")), router)
        .on(stage(prefix, index), move |job: Job| {
            let (router, next) = (forward.clone(), next.clone());
            async move {
                router
                    .send::<_, ()>(&next, &job)
                    .await
                    .map(|_| ())
                    .map_err(|err| err.to_string())
            }
        })
        .start()
        .await
}

/// Starts a chain of `depth` services plus the collector, all on `backend` in `style`.
pub async fn start(
    backend: &Backend,
    seed: &Bus,
    prefix: &str,
    depth: usize,
    style: Style,
) -> switchboard::Result<Chain> {
    let (done, completed) = mpsc::unbounded_channel();
    let collector_router = backend.service(seed, "collector", style, vec![]).await?;
    let collector = Service::new(
        format!("{}-collector", prefix.replace('.', "-")),
        collector_router.clone(),
    )
    .on(format!("{prefix}.done"), move |job: Job| {
        let done = done.clone();
        async move { done.send(job.id).map_err(|err| err.to_string()) }
    })
    .start()
    .await?;
    let mut services = Vec::with_capacity(depth);
    for index in (1..=depth).rev() {
        let name = format!("s{index}");
        let router = backend.service(seed, &name, style, vec![]).await?;
        let running = start_stage(prefix, index, depth, router.clone()).await?;
        services.push((name, router, Some(running)));
    }
    services.reverse();
    Ok(Chain {
        services,
        collector: (collector_router, collector),
        completed,
        entry: stage(prefix, 1),
        prefix: prefix.to_owned(),
    })
}

impl Chain {
    /// Stops every service and closes their connections.
    pub async fn stop(self) {
        for (_, router, running) in self.services {
            if let Some(running) = running {
                running.shutdown().await;
            }
            let _ = router.close().await;
        }
        let (router, collector) = self.collector;
        collector.shutdown().await;
        let _ = router.close().await;
    }
}

async fn wait_for(
    completed: &mut mpsc::UnboundedReceiver<u64>,
    id: u64,
    within: Duration,
) -> Result<(), String> {
    loop {
        match tokio::time::timeout(within, completed.recv()).await {
            Ok(Some(seen)) if seen == id => return Ok(()),
            Ok(Some(_)) => continue,
            _ => return Err(format!("job {id} never completed")),
        }
    }
}

/// Sends five jobs through the chain outside any measurement, so connections,
/// topics and groups exist; retries while the caller has not yet learned of the
/// first service (HTTP peers learn subscriptions by gossip).
pub async fn warm_up(
    caller: &Bus,
    chain: &mut Chain,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    for id in 0..5 {
        let mut attempts = 0;
        loop {
            attempts += 1;
            let sent = caller.send::<_, ()>(&chain.entry, &Job { id }).await;
            if sent.is_ok()
                && wait_for(&mut chain.completed, id, Duration::from_millis(500))
                    .await
                    .is_ok()
            {
                break;
            }
            if attempts == 40 {
                return Err(format!("the chain does not answer: {sent:?}").into());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    Ok(())
}

/// Measures one chain: serial latency, then throughput with 32 in flight.
pub async fn measure(
    backend: &Backend,
    seed: &Bus,
    prefix: &str,
    depth: usize,
    style: Style,
    messages: u64,
) -> Result<ChainRow, Box<dyn std::error::Error + Send + Sync>> {
    let mut chain = start(backend, seed, prefix, depth, style).await?;
    let caller = seed.clone();
    warm_up(&caller, &mut chain).await?;
    let mut caller_us = Histogram::<u64>::new(3)?;
    let mut end_to_end_us = Histogram::<u64>::new(3)?;
    for id in 100..100 + messages {
        let started = Instant::now();
        caller.send::<_, ()>(&chain.entry, &Job { id }).await?;
        caller_us.record(started.elapsed().as_micros() as u64)?;
        wait_for(&mut chain.completed, id, Duration::from_secs(10)).await?;
        end_to_end_us.record(started.elapsed().as_micros() as u64)?;
    }

    let slots = Arc::new(Semaphore::new(32));
    let started = Instant::now();
    let mut calls = tokio::task::JoinSet::new();
    for id in 1_000_000..1_000_000 + messages {
        let permit = slots.clone().acquire_owned().await?;
        let (caller, entry) = (caller.clone(), chain.entry.clone());
        calls.spawn(async move {
            let outcome = caller.send::<_, ()>(&entry, &Job { id }).await;
            drop(permit);
            outcome.map(|_| ())
        });
    }
    while let Some(outcome) = calls.join_next().await {
        outcome??;
    }
    let mut seen = 0;
    while seen < messages {
        tokio::time::timeout(Duration::from_secs(20), chain.completed.recv())
            .await
            .map_err(|_| format!("only {seen} of {messages} jobs completed"))?
            .ok_or("collector stopped")?;
        seen += 1;
    }
    let throughput = messages as f64 / started.elapsed().as_secs_f64();
    let _ = &chain.prefix;
    chain.stop().await;
    Ok(ChainRow {
        backend: backend.name.into(),
        style: style.to_string(),
        depth,
        messages,
        caller_p50_us: caller_us.value_at_quantile(0.5),
        caller_p99_us: caller_us.value_at_quantile(0.99),
        end_to_end_p50_us: end_to_end_us.value_at_quantile(0.5),
        end_to_end_p99_us: end_to_end_us.value_at_quantile(0.99),
        throughput_per_s: throughput,
    })
}
