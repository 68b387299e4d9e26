//! Scenario 4: open-loop load. Jobs enter a chain of two services on a fixed
//! schedule (`rate` per second), rising in steps until the chain saturates.
//! A slow answer does not lower the offered load, and every latency is
//! counted from the moment the job was *due*, not from when it was finally
//! sent, so a stalled caller cannot hide its own delay (no coordinated omission).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::Serialize;
use switchboard::{Bus, Style};

use crate::backends::Backend;
use crate::chain::{self, Job};

/// Services in the chain under load.
pub const DEPTH: usize = 2;
/// Calls the generator keeps open at most; a due job beyond that is shed and
/// counted (the chain is saturated), so memory stays bounded.
const MAX_IN_FLIGHT: u64 = 4096;

/// The load schedule: where the steps start and end, and how long each lasts.
#[derive(Debug, Clone, Copy)]
pub struct Schedule {
    pub first_rate: u64,
    pub max_rate: u64,
    pub step: Duration,
    /// How long after its last due job a step waits for stragglers.
    pub drain: Duration,
}

impl Schedule {
    /// The offered rates, doubling from `first_rate` up to `max_rate`.
    pub fn rates(&self) -> Vec<u64> {
        std::iter::successors(Some(self.first_rate.max(1)), |rate| rate.checked_mul(2))
            .take_while(|rate| *rate <= self.max_rate)
            .collect()
    }
}

/// One step: a backend, a style and an offered rate.
#[derive(Debug, Clone, Serialize)]
pub struct LoadRow {
    pub backend: String,
    pub style: String,
    /// Jobs per second the schedule offered.
    pub offered_per_s: u64,
    /// Jobs due in the step (offered rate × step length).
    pub due: u64,
    /// Due jobs not sent because `MAX_IN_FLIGHT` calls were open.
    pub shed: u64,
    /// Calls that failed at the caller.
    pub caller_errors: u64,
    /// Jobs the last service finished.
    pub completed: u64,
    /// Jobs sent but not finished by the end of the drain (failed calls included).
    pub not_completed: u64,
    /// Jobs finished per second, from the step's start to its last completion.
    pub completed_per_s: f64,
    /// From the moment each job was due until the last service finished it.
    pub p50_us: u64,
    pub p99_us: u64,
    pub max_us: u64,
}

impl LoadRow {
    /// Whether the chain kept up: at least 90 % of what was offered finished
    /// at the offered pace, at most 1 % failed or was shed, p99 under 1 s.
    pub fn kept_up(&self) -> bool {
        let failed = self.shed + self.caller_errors;
        self.completed_per_s >= 0.9 * self.offered_per_s as f64
            && failed * 100 <= self.due
            && self.p99_us < 1_000_000
    }
}

/// The highest rate one backend and style sustained in one run.
#[derive(Debug, Clone, Serialize)]
pub struct CapacityRow {
    pub backend: String,
    pub style: String,
    /// The highest offered rate it kept up with (0: not even the first step).
    pub sustained_per_s: u64,
    /// The first offered rate it did not keep up with (0: it kept up with every step).
    pub saturated_at_per_s: u64,
}

impl CapacityRow {
    /// Reads the capacity off one run's steps of one backend and style.
    pub fn of(steps: &[LoadRow]) -> Option<CapacityRow> {
        let first = steps.first()?;
        let sustained = steps
            .iter()
            .take_while(|row| row.kept_up())
            .last()
            .map_or(0, |row| row.offered_per_s);
        Some(CapacityRow {
            backend: first.backend.clone(),
            style: first.style.clone(),
            sustained_per_s: sustained,
            saturated_at_per_s: steps
                .iter()
                .find(|row| !row.kept_up())
                .map_or(0, |row| row.offered_per_s),
        })
    }
}

/// Runs the steps of `rates` on one backend and style. With `until_saturated`
/// it stops after the first step the chain did not keep up with (the first
/// run finds the steps; later runs repeat exactly those, so the runs compare).
pub async fn measure(
    backend: &Backend,
    seed: &Bus,
    prefix: &str,
    style: Style,
    schedule: Schedule,
    rates: &[u64],
    until_saturated: bool,
) -> Result<Vec<LoadRow>, Box<dyn std::error::Error + Send + Sync>> {
    let mut chain = chain::start(backend, seed, prefix, DEPTH, style).await?;
    let caller = seed.clone();
    chain::warm_up(&caller, &mut chain).await?;
    let mut rows = Vec::with_capacity(rates.len());
    // Job ids of step k start at (k + 1) million: a straggler of an earlier step is told apart.
    for (index, &rate) in rates.iter().enumerate() {
        let first_id = (index as u64 + 1) * 1_000_000;
        let row = step(&caller, &mut chain, rate, schedule, first_id).await?;
        let row = LoadRow {
            backend: backend.name.into(),
            style: style.to_string(),
            ..row
        };
        let saturated = !row.kept_up();
        rows.push(row);
        if until_saturated && saturated {
            break;
        }
    }
    chain.stop().await;
    Ok(rows)
}

/// Offers `rate` jobs per second for one step and waits for them to finish.
async fn step(
    caller: &Bus,
    chain: &mut chain::Chain,
    rate: u64,
    schedule: Schedule,
    first_id: u64,
) -> Result<LoadRow, Box<dyn std::error::Error + Send + Sync>> {
    let due = ((rate as f64 * schedule.step.as_secs_f64()).round() as u64).max(1);
    let interval = Duration::from_secs_f64(1.0 / rate as f64);
    let start = Instant::now() + Duration::from_millis(5);
    let due_at = move |id: u64| start + interval.mul_f64((id - first_id) as f64);
    let open = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let shed = Arc::new(AtomicU64::new(0));

    // The schedule runs on a thread of its own: the runtime's timer wakes at
    // best every millisecond, a thread's sleep within tens of microseconds.
    // Jobs that fell due meanwhile go out together, each timed from its own due moment.
    let generator = {
        let (caller, entry) = (caller.clone(), chain.entry.clone());
        let (open, errors, shed) = (open.clone(), errors.clone(), shed.clone());
        let runtime = tokio::runtime::Handle::current();
        tokio::task::spawn_blocking(move || {
            for id in first_id..first_id + due {
                std::thread::sleep(due_at(id).saturating_duration_since(Instant::now()));
                if open.load(Ordering::Relaxed) >= MAX_IN_FLIGHT {
                    shed.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                open.fetch_add(1, Ordering::Relaxed);
                let (caller, entry) = (caller.clone(), entry.clone());
                let (open, errors) = (open.clone(), errors.clone());
                runtime.spawn(async move {
                    if caller.send::<_, ()>(&entry, &Job { id }).await.is_err() {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                    open.fetch_sub(1, Ordering::Relaxed);
                });
            }
        })
    };
    let mut latencies = Histogram::<u64>::new(3)?;
    let mut completed = 0u64;
    let mut last_completion = start;
    let last_due = due_at(first_id + due - 1);
    let collect = async {
        let give_up = last_due + schedule.drain;
        loop {
            let next = tokio::time::timeout(Duration::from_millis(20), chain.completed.recv());
            match next.await {
                Ok(Some(id)) if (first_id..first_id + due).contains(&id) => {
                    let now = Instant::now();
                    let _ = latencies
                        .record(now.saturating_duration_since(due_at(id)).as_micros() as u64);
                    completed += 1;
                    last_completion = now;
                }
                Ok(Some(_)) => {} // a straggler of an earlier step
                Ok(None) => return Err("the collector stopped"),
                Err(_) => {}
            }
            let now = Instant::now();
            // Every call has returned and every job is finished, failed or shed.
            let settled = now >= last_due
                && open.load(Ordering::Relaxed) == 0
                && completed + errors.load(Ordering::Relaxed) + shed.load(Ordering::Relaxed) >= due;
            if settled || now >= give_up {
                return Ok(());
            }
        }
    };
    let (generated, collected) = tokio::join!(generator, collect);
    generated?;
    collected?;
    // Calls still open after the drain are left to time out on their own; the
    // caller counted them as neither done nor failed: they show as not completed.
    let shed = shed.load(Ordering::Relaxed);
    let elapsed = last_completion
        .saturating_duration_since(start)
        .max(schedule.step);
    Ok(LoadRow {
        backend: String::new(),
        style: String::new(),
        offered_per_s: rate,
        due,
        shed,
        caller_errors: errors.load(Ordering::Relaxed),
        completed,
        not_completed: due.saturating_sub(completed + shed),
        completed_per_s: completed as f64 / elapsed.as_secs_f64(),
        p50_us: latencies.value_at_quantile(0.5),
        p99_us: latencies.value_at_quantile(0.99),
        max_us: latencies.max(),
    })
}
