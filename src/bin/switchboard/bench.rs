//! `switchboard bench`: request/reply and publish→subscribe rates against one URL,
//! with the responder or subscriber in the same process (started before timing).

use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};
use switchboard::{Bus, Message};
use tokio::sync::Semaphore;

/// Options of `switchboard bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// What to measure.
    #[arg(long, value_enum, default_value_t = Mode::Request)]
    mode: Mode,
    /// Subject to use (a unique one by default).
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
}

/// The operation measured.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum Mode {
    /// Request/reply round trips.
    Request,
    /// Publish, counted at the subscriber.
    Publish,
}

pub async fn run(bus: &Bus, args: BenchArgs) -> Result<(), Box<dyn std::error::Error>> {
    let subject = args
        .subject
        .unwrap_or_else(|| format!("switchboard-bench.{}", std::process::id()));
    let payload = Message::new(vec![b'x'; args.size]);
    let elapsed = match args.mode {
        Mode::Request => request(bus, &subject, payload, args.count, args.in_flight).await?,
        Mode::Publish => publish(bus, &subject, payload, args.count).await?,
    };
    let rate = args.count as f64 / elapsed.as_secs_f64();
    println!(
        "{:?} on {}: {} messages of {} B in {:.3} s = {:.0} msg/s",
        args.mode,
        bus.backend(),
        args.count,
        args.size,
        elapsed.as_secs_f64(),
        rate
    );
    Ok(())
}

async fn request(
    bus: &Bus,
    subject: &str,
    payload: Message,
    count: u64,
    in_flight: usize,
) -> Result<Duration, Box<dyn std::error::Error>> {
    let mut requests = bus.subscribe(subject).await?;
    let responder = tokio::spawn(async move {
        while let Some(mut incoming) = requests.next().await {
            let echo = Message::new(incoming.message().payload.clone());
            let _ = incoming.reply(echo).await;
        }
    });
    let slots = Arc::new(Semaphore::new(in_flight.max(1)));
    let started = Instant::now();
    let mut calls = tokio::task::JoinSet::new();
    for _ in 0..count {
        let permit = slots.clone().acquire_owned().await?;
        let (bus, subject, payload) = (bus.clone(), subject.to_owned(), payload.clone());
        calls.spawn(async move {
            let reply = bus.request(&subject, payload).await;
            drop(permit);
            reply.map(|_| ())
        });
        while let Some(done) = calls.try_join_next() {
            done??;
        }
    }
    while let Some(done) = calls.join_next().await {
        done??;
    }
    let elapsed = started.elapsed();
    responder.abort();
    Ok(elapsed)
}

async fn publish(
    bus: &Bus,
    subject: &str,
    payload: Message,
    count: u64,
) -> Result<Duration, Box<dyn std::error::Error>> {
    let mut events = bus.subscribe(subject).await?;
    let started = Instant::now();
    let counter = tokio::spawn(async move {
        let mut seen = 0;
        while seen < count {
            match tokio::time::timeout(Duration::from_secs(10), events.next()).await {
                Ok(Some(_)) => seen += 1,
                _ => break,
            }
        }
        seen
    });
    for _ in 0..count {
        bus.publish(subject, payload.clone()).await?;
    }
    let seen = counter.await?;
    if seen < count {
        return Err(format!("only {seen} of {count} events arrived").into());
    }
    Ok(started.elapsed())
}
