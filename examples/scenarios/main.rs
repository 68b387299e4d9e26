//! Makes the claims about sync and async styles measurable, per backend:
//!
//! 1. a chain of N services (N = 1..5): end-to-end latency p50/p99 and throughput;
//! 2. the same chain with a downstream service stopped and restarted: what the
//!    caller saw (errors, latency, backlog) and whether accepted work was lost;
//! 3. fan-out of one event to M consumers versus M sequential requests.
//!
//! ```text
//! cargo run --release --example scenarios --all-features              # every backend, ~1 minute
//! cargo run --release --example scenarios -- --backends memory --messages 2000
//! ```
//!
//! Prints Markdown tables and writes `results.json`, `chain.csv`, `outage.csv`,
//! `fanout.csv` and `chain-latency.svg` into `--out` (default `target/scenarios`).

mod backends;
mod chain;
mod fanout;
mod outage;
mod report;

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use indicatif::{ProgressBar, ProgressStyle};
use switchboard::Style;

use backends::Backend;

/// Scenario runner options.
#[derive(Debug, Parser)]
#[command(about = "Measure what the sync and async styles cost on each backend")]
struct Args {
    /// Backends to run (default: every one compiled in whose server answers).
    #[arg(long, value_delimiter = ',')]
    backends: Vec<String>,
    /// Longest chain measured.
    #[arg(long, default_value_t = 5)]
    max_depth: usize,
    /// Messages per measured point.
    #[arg(long, default_value_t = 50)]
    messages: u64,
    /// How long the downstream service is stopped (`500ms`, `2s`).
    #[arg(long, default_value = "500ms", value_parser = humantime::parse_duration)]
    outage: Duration,
    /// Consumers in the fan-out scenario.
    #[arg(long, default_value_t = 4)]
    consumers: usize,
    /// Where the JSON, CSV and SVG files go.
    #[arg(long, default_value = "target/scenarios")]
    out: PathBuf,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "error".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match run(Args::parse()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn machine() -> String {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|line| line.starts_with("model name"))
                .and_then(|line| line.split_once(':'))
                .map(|(_, name)| name.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    format!("{cores} cores, {cpu}, {}", std::env::consts::OS)
}

async fn run(args: Args) -> Result<(), BoxError> {
    let run_id = format!("scn{}", std::process::id());
    let mut backends = Vec::new();
    for backend in Backend::compiled(&run_id) {
        let wanted = args.backends.is_empty() || args.backends.iter().any(|b| b == backend.name);
        if !wanted {
            continue;
        }
        match backend.seed(Style::Sync).await {
            Ok(seed) => {
                seed.close().await?;
                backends.push(backend);
            }
            Err(err) if args.backends.is_empty() => {
                eprintln!("skipping {}: {err}", backend.name);
            }
            Err(err) => return Err(format!("{}: {err}", backend.name).into()),
        }
    }
    for name in &args.backends {
        if !backends.iter().any(|b| b.name == name) {
            return Err(format!("backend `{name}` is not compiled in (enable its feature)").into());
        }
    }
    let steps: usize = backends
        .iter()
        .map(|b| b.styles.len() * (args.max_depth + 1) + 1)
        .sum();
    let progress = ProgressBar::new(steps as u64).with_style(ProgressStyle::with_template(
        "{bar:40} {pos}/{len} {elapsed} {msg}",
    )?);
    let mut results = report::Results {
        machine: machine(),
        settings: format!(
            "messages={} max_depth={} outage={:?} consumers={}",
            args.messages, args.max_depth, args.outage, args.consumers
        ),
        ..Default::default()
    };
    let mut point = 0;
    for backend in &backends {
        for &style in backend.styles {
            let seed = backend.seed(style).await?;
            for depth in 1..=args.max_depth {
                point += 1;
                progress.set_message(format!("{} {style} chain of {depth}", backend.name));
                let prefix = format!("{}.p{point}", backend.prefix);
                let row = chain::measure(backend, &seed, &prefix, depth, style, args.messages)
                    .await
                    .map_err(|err| format!("{} {style} chain of {depth}: {err}", backend.name))?;
                results.chain.push(row);
                progress.inc(1);
            }
            point += 1;
            progress.set_message(format!("{} {style} outage", backend.name));
            let prefix = format!("{}.p{point}", backend.prefix);
            let row = outage::measure(backend, &seed, &prefix, style, args.outage)
                .await
                .map_err(|err| format!("{} {style} outage: {err}", backend.name))?;
            results.outage.push(row);
            progress.inc(1);
            seed.close().await?;
        }
        point += 1;
        progress.set_message(format!("{} fan-out", backend.name));
        let seed = backend.seed(Style::Sync).await?;
        let prefix = format!("{}.p{point}", backend.prefix);
        let row = fanout::measure(backend, &seed, &prefix, args.consumers, args.messages)
            .await
            .map_err(|err| format!("{} fan-out: {err}", backend.name))?;
        results.fanout.push(row);
        seed.close().await?;
        progress.inc(1);
    }
    progress.finish_and_clear();

    println!(
        "Machine: {}\nSettings: {}\n",
        results.machine, results.settings
    );
    println!("{}", report::tables(&results));
    report::write_files(&args.out, &results)?;
    report::chart(&args.out.join("chain-latency.svg"), &results)?;
    println!(
        "wrote {}/results.json, chain.csv, outage.csv, fanout.csv, chain-latency.svg",
        args.out.display()
    );
    Ok(())
}
