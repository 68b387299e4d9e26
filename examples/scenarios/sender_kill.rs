//! Scenario: the *sending* service is killed with SIGKILL mid-stream and
//! started again. What it had accepted (`send` returned `Accepted`) must
//! still arrive: with the outbox, the restarted process forwards what its
//! file held; on a broker that stores events, they were stored.
//!
//! The sender runs as a child process (this binary, with [`ROLE`] set), so
//! only backends that cross processes take part: HTTP, gRPC, NATS and Kafka.

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use switchboard::settings::{OutboxSettings, RouteSettings, TransportSettings};
use switchboard::{Bus, Sent, Settings, Style};

use crate::backends::Backend;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Set in the child: it sends instead of running the scenarios.
pub const ROLE: &str = "SB_SCENARIO_SENDER";
const URL: &str = "SB_SCENARIO_SENDER_URL";
const SUBJECT: &str = "SB_SCENARIO_SENDER_SUBJECT";
const OUTBOX: &str = "SB_SCENARIO_SENDER_OUTBOX";
const FIRST: &str = "SB_SCENARIO_SENDER_FIRST";
const COUNT: &str = "SB_SCENARIO_SENDER_COUNT";

/// Sends accepted by the first sender before it is killed.
const BEFORE_KILL: u64 = 200;
/// Sends accepted by the restarted sender.
const AFTER_RESTART: u64 = 50;
/// One send every this long (the scenario's offered rate: 500/s).
const INTERVAL: Duration = Duration::from_millis(2);

/// What one backend did when its sender was killed.
#[derive(Debug, Clone, Serialize)]
pub struct SenderKillRow {
    pub backend: String,
    /// `outbox` or `at-most-once` (no outbox), or `broker` (Kafka, JetStream).
    pub mode: String,
    /// Sends the two sender processes reported accepted (the killed one may
    /// have had a few more accepted that it could not report).
    pub accepted: u64,
    /// Distinct events the receiver got.
    pub received: u64,
    /// Reported accepted and never received.
    pub lost: u64,
    /// Events received more than once.
    pub duplicates: u64,
    /// Events held in the killed sender's outbox file that the restarted
    /// sender found there (0 without an outbox).
    pub held_at_restart: u64,
}

/// The backends that cross processes, and the mode each runs in: every
/// backend as configured, and the outbox variants.
pub fn backends(backends: &[Backend], with_outbox: &[Backend]) -> Vec<Backend> {
    let crosses = |b: &&Backend| b.name != "memory" && !b.name.starts_with("memory+");
    backends
        .iter()
        .chain(with_outbox)
        .filter(crosses)
        .cloned()
        .collect()
}

/// Runs the scenario on one backend.
pub async fn measure(
    backend: &Backend,
    seed: &Bus,
    prefix: &str,
) -> Result<SenderKillRow, BoxError> {
    let subject = format!("{prefix}.orders");
    let receiver = backend
        .service(seed, "receiver", Style::Async, Vec::new())
        .await?;
    let mut events = receiver.queue_subscribe(&subject, "receiver").await?;
    let received = Arc::new(Mutex::new((HashSet::new(), 0u64)));
    let collector = {
        let received = received.clone();
        tokio::spawn(async move {
            while let Some(mut incoming) = events.next().await {
                let _ = incoming.ack().await;
                let Ok(id) = serde_json::from_slice::<u64>(incoming.payload()) else {
                    continue;
                };
                let mut received = received.lock().unwrap_or_else(|e| e.into_inner());
                if !received.0.insert(id) {
                    received.1 += 1;
                }
            }
        })
    };
    // Kafka's consumer joins its group before the first event counts.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let dir = tempfile::tempdir()?;
    let outbox = backend.has_outbox().then(|| dir.path().join("sender.db"));
    let url = backend.service_url(seed);
    let spawn =
        |first: u64, count: u64| spawn_sender(&url, &subject, outbox.as_deref(), first, count);

    let mut first = spawn(0, u64::MAX)?;
    let mut lines = BufReader::new(first.stdout.take().ok_or("the sender has no stdout")?).lines();
    held_line(&mut lines)?;
    let mut accepted = read_accepted(&mut lines, BEFORE_KILL)?;
    // SIGKILL: no destructor, no flush, no goodbye.
    first.kill()?;
    first.wait()?;
    let mut second = spawn(1_000_000, AFTER_RESTART)?;
    let mut lines = BufReader::new(second.stdout.take().ok_or("the sender has no stdout")?).lines();
    let held_at_restart = held_line(&mut lines)?;
    accepted.extend(read_accepted(&mut lines, AFTER_RESTART)?);
    let exited = tokio::task::spawn_blocking(move || second.wait()).await??;
    if !exited.success() {
        return Err(format!("the restarted sender failed: {exited}").into());
    }

    // Wait for what was accepted, stopping once nothing new arrived for 2 s.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut last = (0usize, Instant::now());
    loop {
        let (got, missing) = {
            let received = received.lock().unwrap_or_else(|e| e.into_inner());
            (
                received.0.len(),
                accepted
                    .iter()
                    .filter(|id| !received.0.contains(id))
                    .count(),
            )
        };
        if got != last.0 {
            last = (got, Instant::now());
        }
        if missing == 0 || Instant::now() > deadline || last.1.elapsed() > Duration::from_secs(2) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    receiver.close().await?;
    collector.abort();
    let (distinct, duplicates) = {
        let received = received.lock().unwrap_or_else(|e| e.into_inner());
        (received.0.clone(), received.1)
    };
    let lost = accepted.iter().filter(|id| !distinct.contains(id)).count() as u64;
    Ok(SenderKillRow {
        backend: backend.name.into(),
        mode: backend.delivery_mode().into(),
        accepted: accepted.len() as u64,
        received: distinct.len() as u64,
        lost,
        duplicates,
        held_at_restart,
    })
}

fn spawn_sender(
    url: &str,
    subject: &str,
    outbox: Option<&Path>,
    first: u64,
    count: u64,
) -> Result<Child, BoxError> {
    let mut command = Command::new(std::env::current_exe()?);
    command
        .env(ROLE, "1")
        .env(URL, url)
        .env(SUBJECT, subject)
        .env(FIRST, first.to_string())
        .env(COUNT, count.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    if let Some(path) = outbox {
        command.env(OUTBOX, path);
    }
    Ok(command.spawn()?)
}

type Lines = std::io::Lines<BufReader<std::process::ChildStdout>>;

/// The sender's first line, `held N`: what its outbox file held when it
/// opened it (0 without an outbox).
fn held_line(lines: &mut Lines) -> Result<u64, BoxError> {
    let line = lines
        .next()
        .ok_or("the sender stopped before connecting")??;
    let held = line
        .strip_prefix("held ")
        .ok_or_else(|| format!("the sender said {line:?}, not `held N`"))?;
    Ok(held.trim().parse()?)
}

/// Reads the ids a sender reports accepted until `count` came (or it stopped).
fn read_accepted(lines: &mut Lines, count: u64) -> Result<Vec<u64>, BoxError> {
    let mut ids = Vec::new();
    for line in lines {
        ids.push(line?.trim().parse()?);
        if ids.len() as u64 == count {
            break;
        }
    }
    Ok(ids)
}

/// The child's side: connect, send `COUNT` numbered events from `FIRST`
/// (one per [`INTERVAL`]), printing each id once `send` returned
/// `Accepted`; then wait until its outbox, if any, is empty.
pub async fn run_sender() -> Result<(), BoxError> {
    use std::io::Write;
    let var = |name: &str| std::env::var(name).map_err(|_| format!("{name} is not set"));
    let subject = var(SUBJECT)?;
    let first: u64 = var(FIRST)?.parse()?;
    let count: u64 = var(COUNT)?.parse()?;
    let outbox = std::env::var_os(OUTBOX).map(PathBuf::from);
    let settings = Settings {
        style: Style::Async,
        transports: [("default".to_owned(), TransportSettings::new(var(URL)?))].into(),
        routes: vec![RouteSettings {
            subjects: subject.clone(),
            style: Some(Style::Async),
            transport: None,
            timeout: None,
            graphql: None,
            on_no_subscriber: None,
            dedup: None,
            query: None,
            fallback: None,
            codec: None,
            cloudevents: None,
        }],
        outbox: OutboxSettings {
            path: outbox,
            ..OutboxSettings::default()
        },
        ..Settings::default()
    };
    let bus = settings.connect().await?;
    let mut out = std::io::stdout();
    writeln!(out, "held {}", held(&bus))?;
    out.flush()?;
    // A mesh sender learns the receiver from the seed before it sends: a
    // warm-up event straight to the transport (past any outbox) until one
    // reaches somebody, so both modes start from the same place.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let warm_up = switchboard::Message::json(&"warm-up")?;
        let reach = bus.transport().publish_reaching(&subject, warm_up).await?;
        if reach != switchboard::transport::Reach::Nobody || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut ticker = tokio::time::interval(INTERVAL);
    for id in first..first.saturating_add(count) {
        ticker.tick().await;
        let sent: Sent<()> = bus.send(&subject, &id).await?;
        if sent.is_accepted() {
            writeln!(out, "{id}")?;
            out.flush()?;
        }
    }
    let deadline = Instant::now() + Duration::from_secs(15);
    while held(&bus) > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    bus.close().await?;
    Ok(())
}

/// Events the bus's outbox holds (0 without one).
fn held(bus: &Bus) -> u64 {
    #[cfg(feature = "outbox")]
    return bus.outbox_stats().map_or(0, |stats| stats.pending);
    #[cfg(not(feature = "outbox"))]
    {
        let _ = bus;
        0
    }
}
