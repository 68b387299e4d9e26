//! `switchboard bench`: request/reply and publish→subscribe rates and latency
//! percentiles against one URL. By default the responder (or subscriber) runs
//! in this process, started before timing; with `--responder none` another
//! process answers (`switchboard reply SUBJECT`), which is how services really
//! run. `--json` prints the figures as one JSON object for scripts.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};
use switchboard::{Bus, Message};
use tokio::sync::Semaphore;

/// Options of `switchboard bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// What to measure.
    #[arg(long, value_enum, default_value_t = Mode::Request)]
    mode: Mode,
    /// Subject to use (a unique one by default; give one with `--responder none`).
    #[arg(long)]
    subject: Option<String>,
    /// Payload size in bytes.
    #[arg(long, default_value_t = 128)]
    size: usize,
    /// Messages to send.
    #[arg(long, default_value_t = 10_000)]
    count: u64,
    /// Requests in flight at once (request mode).
    #[arg(long, default_value_t = 64)]
    in_flight: usize,
    /// Where the responder runs (request mode): `local` starts one in this
    /// process; `none` starts none, so another process answers
    /// (`switchboard reply SUBJECT`), as services really run.
    #[arg(long, value_enum, default_value_t = Responder::Local)]
    responder: Responder,
    /// Same as `--responder none`.
    #[arg(long, hide = true)]
    external: bool,
    /// Print the figures as one JSON object on stdout instead of text.
    #[arg(long)]
    json: bool,
}

/// Where the responder of a request bench runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Responder {
    /// In this process, started before timing.
    Local,
    /// Not started here: another process answers.
    None,
}

impl BenchArgs {
    /// Whether another process answers.
    fn external(&self) -> bool {
        self.external || self.responder == Responder::None
    }
}

/// The operation measured.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum Mode {
    /// Request/reply round trips.
    Request,
    /// Publish, counted at the subscriber.
    Publish,
}

/// What one run measured.
struct Outcome {
    elapsed: Duration,
    completed: u64,
    /// Microseconds per completed message (round trip, or publish to delivery).
    latency: Histogram<u64>,
    errors: u64,
    /// Of the errors, how many were timeouts (the reply did not come in time).
    timeouts: u64,
    first_error: Option<String>,
}

pub async fn run(bus: &Bus, args: BenchArgs) -> Result<(), Box<dyn std::error::Error>> {
    if args.external() && args.subject.is_none() {
        return Err("--responder none needs --subject: the one `switchboard reply` answers".into());
    }
    if matches!(args.mode, Mode::Publish) && args.external() {
        return Err(
            "--responder applies to request mode; publish mode counts in this process".into(),
        );
    }
    let subject = args
        .subject
        .clone()
        .unwrap_or_else(|| format!("switchboard-bench.{}", std::process::id()));
    let progress = progress_bar(args.count);
    let outcome = match args.mode {
        Mode::Request => request(bus, &subject, &args, &progress).await?,
        Mode::Publish => publish(bus, &subject, &args, &progress).await?,
    };
    progress.finish_and_clear();
    report(bus, &args, &outcome);
    match outcome.errors {
        0 => Ok(()),
        n => Err(format!(
            "{n} of {} failed; the first: {}",
            args.count,
            outcome.first_error.unwrap_or_default()
        )
        .into()),
    }
}

/// A progress bar on stderr; invisible when stderr is not a terminal.
fn progress_bar(count: u64) -> ProgressBar {
    let bar = ProgressBar::new(count);
    if let Ok(style) =
        ProgressStyle::with_template("{bar:40} {pos}/{len} {per_sec} eta {eta} {msg}")
    {
        bar.set_style(style);
    }
    bar
}

fn report(bus: &Bus, args: &BenchArgs, outcome: &Outcome) {
    if args.json {
        println!("{}", json_report(bus, args, outcome));
        return;
    }
    let where_ = match (args.mode, args.external()) {
        (Mode::Request, true) => "responder in another process",
        (Mode::Request, false) => "responder in this process",
        (Mode::Publish, _) => "subscriber in this process",
    };
    let rate = outcome.completed as f64 / outcome.elapsed.as_secs_f64();
    println!(
        "{:?} on {} ({where_}): {} of {} messages of {} B in {:.3} s = {:.0} msg/s, {} error(s), {} timeout(s)",
        args.mode,
        bus.backend(),
        outcome.completed,
        args.count,
        args.size,
        outcome.elapsed.as_secs_f64(),
        rate,
        outcome.errors,
        outcome.timeouts
    );
    if outcome.latency.is_empty() {
        return;
    }
    let at = |q: f64| Duration::from_micros(outcome.latency.value_at_quantile(q));
    println!(
        "latency: p50 {:?}  p90 {:?}  p99 {:?}  p99.9 {:?}  max {:?}",
        at(0.50),
        at(0.90),
        at(0.99),
        at(0.999),
        Duration::from_micros(outcome.latency.max())
    );
}

/// The figures as JSON: latencies in microseconds.
fn json_report(bus: &Bus, args: &BenchArgs, outcome: &Outcome) -> serde_json::Value {
    let latency = &outcome.latency;
    let at = |q: f64| (!latency.is_empty()).then(|| latency.value_at_quantile(q));
    serde_json::json!({
        "mode": format!("{:?}", args.mode).to_lowercase(),
        "backend": bus.backend(),
        "responder": match (args.mode, args.external()) {
            (Mode::Request, true) => "other-process",
            (Mode::Request, false) => "this-process",
            (Mode::Publish, _) => "subscriber-in-this-process",
        },
        "count": args.count,
        "size_bytes": args.size,
        "in_flight": args.in_flight,
        "completed": outcome.completed,
        "errors": outcome.errors,
        "timeouts": outcome.timeouts,
        "first_error": outcome.first_error,
        "elapsed_seconds": outcome.elapsed.as_secs_f64(),
        "per_second": outcome.completed as f64 / outcome.elapsed.as_secs_f64(),
        "latency_us": {
            "p50": at(0.50),
            "p90": at(0.90),
            "p99": at(0.99),
            "p99_9": at(0.999),
            "max": (!latency.is_empty()).then(|| latency.max()),
        },
    })
}

fn histogram() -> Histogram<u64> {
    Histogram::new(3).expect("3 significant figures is a valid histogram")
}

async fn request(
    bus: &Bus,
    subject: &str,
    args: &BenchArgs,
    progress: &ProgressBar,
) -> Result<Outcome, Box<dyn std::error::Error>> {
    let responder = if args.external() {
        None
    } else {
        let mut requests = bus.subscribe(subject).await?;
        Some(tokio::spawn(async move {
            while let Some(mut incoming) = requests.next().await {
                let echo = Message::new(incoming.message().payload.clone());
                let _ = incoming.reply(echo).await;
            }
        }))
    };
    let payload = Message::new(vec![b'x'; args.size]);
    let slots = Arc::new(Semaphore::new(args.in_flight.max(1)));
    let latency = Arc::new(Mutex::new(histogram()));
    let errors = Arc::new(Mutex::new((0u64, 0u64, None::<String>)));
    let started = Instant::now();
    let mut calls = tokio::task::JoinSet::new();
    for _ in 0..args.count {
        let permit = slots.clone().acquire_owned().await?;
        let (bus, subject, payload) = (bus.clone(), subject.to_owned(), payload.clone());
        let (latency, errors, progress) = (latency.clone(), errors.clone(), progress.clone());
        calls.spawn(async move {
            let sent = Instant::now();
            let reply = bus.request(&subject, payload).await;
            let took = sent.elapsed();
            drop(permit);
            match reply {
                Ok(_) => {
                    let _ = lock(&latency).record(took.as_micros() as u64);
                }
                Err(err) => {
                    let mut errors = lock(&errors);
                    errors.0 += 1;
                    if err.kind() == switchboard::ErrorKind::Timeout {
                        errors.1 += 1;
                    }
                    errors.2.get_or_insert_with(|| err.to_string());
                }
            }
            progress.inc(1);
        });
        while calls.try_join_next().is_some() {}
    }
    while calls.join_next().await.is_some() {}
    let elapsed = started.elapsed();
    if let Some(responder) = responder {
        responder.abort();
    }
    let latency = std::mem::replace(&mut *lock(&latency), histogram());
    let (errors, timeouts, first_error) = std::mem::take(&mut *lock(&errors));
    Ok(Outcome {
        elapsed,
        completed: latency.len(),
        latency,
        errors,
        timeouts,
        first_error,
    })
}

async fn publish(
    bus: &Bus,
    subject: &str,
    args: &BenchArgs,
    progress: &ProgressBar,
) -> Result<Outcome, Box<dyn std::error::Error>> {
    let mut events = bus.subscribe(subject).await?;
    let count = args.count;
    // Each payload starts with its send time (µs since `started`), so the
    // subscriber in this process can tell how long delivery took.
    let started = Instant::now();
    let counter = tokio::spawn(async move {
        let mut latency = histogram();
        let mut seen = 0;
        while seen < count {
            match tokio::time::timeout(Duration::from_secs(10), events.next()).await {
                Ok(Some(event)) => {
                    seen += 1;
                    if let Some(sent) = event.payload().get(..8) {
                        let sent = u64::from_be_bytes(sent.try_into().unwrap_or_default());
                        let now = started.elapsed().as_micros() as u64;
                        let _ = latency.record(now.saturating_sub(sent));
                    }
                }
                _ => break,
            }
        }
        latency
    });
    let (mut errors, mut timeouts) = (0, 0);
    let mut first_error = None;
    let mut body = vec![b'x'; args.size.max(8)];
    for _ in 0..count {
        body[..8].copy_from_slice(&(started.elapsed().as_micros() as u64).to_be_bytes());
        if let Err(err) = bus.publish(subject, Message::new(body.clone())).await {
            errors += 1;
            timeouts += u64::from(err.kind() == switchboard::ErrorKind::Timeout);
            first_error.get_or_insert_with(|| err.to_string());
        }
        progress.inc(1);
    }
    let latency = counter.await?;
    let elapsed = started.elapsed();
    let delivered = latency.len();
    let published = count - errors;
    if delivered < published {
        errors += published - delivered;
        first_error.get_or_insert_with(|| {
            format!("only {delivered} of {published} published events arrived within 10 s")
        });
    }
    Ok(Outcome {
        elapsed,
        completed: delivered,
        latency,
        errors,
        timeouts,
        first_error,
    })
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}
