//! Scenario 3: telling M services about something, as one event to M
//! subscribers versus M requests one after another.

use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::Serialize;
use switchboard::{Bus, Service, Style};
use tokio::sync::mpsc;

use crate::backends::Backend;
use crate::chain::Job;

/// One backend's fan-out figures.
#[derive(Debug, Clone, Serialize)]
pub struct FanoutRow {
    pub backend: String,
    pub consumers: usize,
    pub messages: u64,
    /// One publish until every consumer has handled it.
    pub event_p50_us: u64,
    pub event_p99_us: u64,
    /// M requests in sequence until the last reply.
    pub requests_p50_us: u64,
    pub requests_p99_us: u64,
}

/// Measures fan-out to `consumers` services on one backend.
pub async fn measure(
    backend: &Backend,
    seed: &Bus,
    prefix: &str,
    consumers: usize,
    messages: u64,
) -> Result<FanoutRow, Box<dyn std::error::Error + Send + Sync>> {
    let (seen_tx, mut seen) = mpsc::unbounded_channel();
    let mut running = Vec::new();
    let mut routers = Vec::new();
    for index in 0..consumers {
        let router = backend
            .service(seed, &format!("c{index}"), Style::Sync, vec![])
            .await?;
        let seen_tx = seen_tx.clone();
        // Each consumer is its own service (own queue group), so each gets every event.
        let service = Service::new(
            format!("{}-c{index}", prefix.replace('.', "-")),
            router.clone(),
        )
        .on_ordered(format!("{prefix}.fan"), move |job: Job| {
            let seen_tx = seen_tx.clone();
            async move { seen_tx.send(job.id).map_err(|err| err.to_string()) }
        })
        .on(format!("{prefix}.ask.c{index}"), |job: Job| async move {
            Ok::<_, String>(job.id)
        })
        .start()
        .await?;
        running.push(service);
        routers.push(router);
    }
    let bus = seed;
    let fan = format!("{prefix}.fan");
    let mut event_us = Histogram::<u64>::new(3)?;
    let mut requests_us = Histogram::<u64>::new(3)?;
    for id in 0..messages + 5 {
        let started = Instant::now();
        bus.publish_json(&fan, &Job { id }).await?;
        let mut got = 0;
        while got < consumers {
            let seen_id = tokio::time::timeout(Duration::from_secs(10), seen.recv())
                .await
                .map_err(|_| format!("event {id} reached only {got} of {consumers}"))?
                .ok_or("consumers stopped")?;
            if seen_id == id {
                got += 1;
            }
        }
        let event = started.elapsed();
        let started = Instant::now();
        for index in 0..consumers {
            let _: u64 = bus
                .request_json(&format!("{prefix}.ask.c{index}"), &Job { id })
                .await?;
        }
        let requests = started.elapsed();
        if id >= 5 {
            // The first five warm up connections, topics and groups.
            event_us.record(event.as_micros() as u64)?;
            requests_us.record(requests.as_micros() as u64)?;
        }
    }
    for service in running {
        service.shutdown().await;
    }
    for router in routers {
        let _ = router.close().await;
    }
    Ok(FanoutRow {
        backend: backend.name.into(),
        consumers,
        messages,
        event_p50_us: event_us.value_at_quantile(0.5),
        event_p99_us: event_us.value_at_quantile(0.99),
        requests_p50_us: requests_us.value_at_quantile(0.5),
        requests_p99_us: requests_us.value_at_quantile(0.99),
    })
}
