//! Makes the claims about sync and async styles measurable, per backend:
//!
//! 1. a chain of N services (N = 1..5): end-to-end latency p50/p99 and throughput;
//! 2. the same chain with a downstream service stopped and restarted: what the
//!    caller saw (errors, latency, backlog) and whether accepted work was lost;
//! 3. fan-out of one event to M consumers versus M sequential requests;
//! 4. open-loop load on a chain of 2: jobs offered on a fixed schedule at
//!    rising rates until it saturates, p50/p99 latency counted from when each
//!    job was due, completed rate per step, and the highest rate kept up with;
//! 5. node loss: the outage's chain of three on three-node NATS and Kafka
//!    clusters (started here) with one node killed mid-run and restarted;
//! 6. the outage again in the async style with every service's sends in an
//!    outbox (`memory+outbox`, …), on the backends that keep nothing for an
//!    absent consumer, and in the sync style with `fallback = "async"` on
//!    every route (`sync+fallback`: a send whose responder is away is
//!    deferred through the outbox);
//! 7. the sender killed: a process of its own sending async events is
//!    SIGKILLed after 200 accepted and restarted: what it accepted and lost,
//!    with and without an outbox.
//!
//! ```text
//! cargo run --release --example scenarios --all-features              # every backend, 5 runs
//! cargo run --release --example scenarios -- --backends memory --messages 2000
//! cargo run --example scenarios --all-features -- --quick              # a short check (CI)
//! ```
//!
//! Every scenario runs `--runs` times (default 5); each figure is reported as
//! the median with its min–max over the runs, and compared pairs whose ranges
//! overlap are listed, so no conclusion is drawn from noise. Prints Markdown
//! tables and writes `results.json`, `chain.csv`, `outage.csv`, `fanout.csv`,
//! `load.csv`, `capacity.csv`, `node_loss.csv`, `sender_kill.csv`, `chain-latency.svg` and `load-latency.svg`
//! (with min–max error bars) into `--out` (default
//! `target/scenarios`), with the whole report as one self-contained
//! `report.html` (Findings, chart, tables, machine, command) and `report.md`;
//! `--report DIR` writes them all into DIR.

mod backends;
mod chain;
mod fanout;
mod findings;
mod load;
mod node_loss;
mod outage;
mod page;
mod report;
mod sender_kill;
mod spread;
// The cluster tests' helpers: the node-loss scenario starts the same clusters.
#[path = "../../tests/support/mod.rs"]
mod support;

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
    /// Writes everything, plus a self-contained `report.html` and
    /// `report.md`, into this directory (instead of `--out`).
    #[arg(long)]
    report: Option<PathBuf>,
    /// Open-loop load: the first offered rate (jobs/s); each step doubles it.
    #[arg(long, default_value_t = 250)]
    load_from: u64,
    /// Open-loop load: the highest offered rate tried.
    #[arg(long, default_value_t = 64_000)]
    load_to: u64,
    /// Open-loop load: how long each rate is offered (`1s`, `500ms`).
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    load_step: Duration,
    /// Node loss: how long the killed cluster node stays down (`3s`).
    #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
    node_down: Duration,
    /// Skips the node-loss scenario (it starts three-node NATS and Kafka clusters).
    #[arg(long)]
    no_node_loss: bool,
    /// How many times every scenario runs; figures are medians with min–max.
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// A short check of every output: 2 runs, 10 messages, chains up to 2,
    /// a 200 ms outage, load steps of 200 ms from 200 to 800 jobs/s, a node
    /// down for 1 s (overrides those options).
    #[arg(long)]
    quick: bool,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                // The node-loss scenario kills brokers on purpose: librdkafka's
                // connection errors are expected there, and its figures say what happened.
                .unwrap_or_else(|_| "error,librdkafka=off,rdkafka::client=off".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    if std::env::var_os(sender_kill::ROLE).is_some() {
        return match sender_kill::run_sender().await {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(err) => {
                eprintln!("sender: {err}");
                std::process::ExitCode::FAILURE
            }
        };
    }
    let mut args = Args::parse();
    if args.quick {
        (args.runs, args.messages, args.max_depth) = (2, 10, 2);
        args.outage = Duration::from_millis(200);
        (args.load_from, args.load_to) = (200, 800);
        args.load_step = Duration::from_millis(200);
        args.node_down = Duration::from_secs(1);
    }
    args.runs = args.runs.max(1);
    if let Some(dir) = &args.report {
        args.out = dir.clone();
    }
    match run(args).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Whether this is a CI run (`CI=true`), where skipping a backend hides a broken setup.
fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
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
            // Under CI every server is started: one that does not answer is a failure.
            Err(err) if args.backends.is_empty() && !in_ci() => {
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
    let ran = |name: &str| backends.iter().any(|b| b.name == name);
    let mut clusters = match args.no_node_loss {
        true => node_loss::Clusters::default(),
        false => {
            eprintln!("starting the three-node clusters for the node-loss scenario…");
            node_loss::Clusters::start(ran("nats"), ran("kafka"))?
        }
    };
    for reason in &clusters.skipped {
        eprintln!("skipping node loss on the {reason}");
    }
    let on_clusters = clusters.backends(&format!("{run_id}n"));
    // The same outage with every service's async sends in an outbox, on the
    // backends that keep nothing for an absent consumer: its `lost` column
    // is the outbox's promise, next to the at-most-once rows without it.
    let outbox_dir = tempfile::tempdir()?;
    let with_outbox: Vec<Backend> = match cfg!(feature = "outbox") {
        true => backends
            .iter()
            .filter_map(|b| b.with_outbox(outbox_dir.path()))
            .collect(),
        false => Vec::new(),
    };
    // The outage once more with every route sync and `fallback = "async"`:
    // the caller should see no errors and nothing should be lost.
    let with_fallback: Vec<Backend> = match cfg!(feature = "outbox") {
        true => backends
            .iter()
            .filter_map(|b| b.with_fallback(outbox_dir.path()))
            .collect(),
        false => Vec::new(),
    };
    let steps: usize = args.runs
        * (backends
            .iter()
            .map(|b| b.styles.len() * (args.max_depth + 2) + 1)
            .sum::<usize>()
            + on_clusters
                .iter()
                .map(|c| c.backend.styles.len())
                .sum::<usize>()
            + with_outbox.len()
            + with_fallback.len()
            + sender_kill::backends(&backends, &with_outbox).len());
    let progress = ProgressBar::new(steps as u64).with_style(ProgressStyle::with_template(
        "{bar:40} {pos}/{len} {elapsed} {msg}",
    )?);
    let schedule = load::Schedule {
        first_rate: args.load_from,
        max_rate: args.load_to,
        step: args.load_step,
        drain: Duration::from_secs(5),
    };
    // The load steps each backend and style reached in the first run; later runs repeat them.
    let mut load_steps: Vec<(&str, Style, Vec<u64>)> = Vec::new();
    let mut runs = Vec::with_capacity(args.runs);
    let mut point = 0;
    for run in 1..=args.runs {
        let mut results = report::Results::default();
        for backend in &backends {
            let at = |what: String| format!("run {run}/{}: {} {what}", args.runs, backend.name);
            for &style in backend.styles {
                let seed = backend.seed(style).await?;
                for depth in 1..=args.max_depth {
                    point += 1;
                    progress.set_message(at(format!("{style} chain of {depth}")));
                    let prefix = format!("{}.p{point}", backend.prefix);
                    let row = chain::measure(backend, &seed, &prefix, depth, style, args.messages)
                        .await
                        .map_err(|err| at(format!("{style} chain of {depth}: {err}")))?;
                    results.chain.push(row);
                    progress.inc(1);
                }
                point += 1;
                progress.set_message(at(format!("{style} outage")));
                let prefix = format!("{}.p{point}", backend.prefix);
                let disruption = outage::Disruption::MiddleService;
                let row = outage::measure(backend, &seed, &prefix, style, args.outage, disruption)
                    .await
                    .map_err(|err| at(format!("{style} outage: {err}")))?;
                results.outage.push(row);
                progress.inc(1);

                point += 1;
                progress.set_message(at(format!("{style} open-loop load")));
                let prefix = format!("{}.p{point}", backend.prefix);
                let known = load_steps
                    .iter()
                    .find(|(name, s, _)| *name == backend.name && *s == style);
                let (rates, first) = match known {
                    Some((_, _, rates)) => (rates.clone(), false),
                    None => (schedule.rates(), true),
                };
                let rows = load::measure(backend, &seed, &prefix, style, schedule, &rates, first)
                    .await
                    .map_err(|err| at(format!("{style} open-loop load: {err}")))?;
                if first {
                    let reached = rows.iter().map(|row| row.offered_per_s).collect();
                    load_steps.push((backend.name, style, reached));
                }
                results.capacity.extend(load::CapacityRow::of(&rows));
                results.load.extend(rows);
                progress.inc(1);
                seed.close().await?;
            }
            point += 1;
            progress.set_message(at("fan-out".into()));
            let seed = backend.seed(Style::Sync).await?;
            let prefix = format!("{}.p{point}", backend.prefix);
            let row = fanout::measure(backend, &seed, &prefix, args.consumers, args.messages)
                .await
                .map_err(|err| at(format!("fan-out: {err}")))?;
            results.fanout.push(row);
            seed.close().await?;
            progress.inc(1);
        }
        let outbox_rows = with_outbox.iter().map(|b| (b, Style::Async));
        let fallback_rows = with_fallback.iter().map(|b| (b, Style::Sync));
        for (backend, style) in outbox_rows.chain(fallback_rows) {
            point += 1;
            let label = format!("{} outage", backend.style_label(style));
            let at = |what: &str| format!("run {run}/{}: {} {what}", args.runs, backend.name);
            progress.set_message(at(&label));
            let seed = backend.seed(style).await?;
            let prefix = format!("{}.p{point}", backend.prefix);
            let disruption = outage::Disruption::MiddleService;
            let row = outage::measure(backend, &seed, &prefix, style, args.outage, disruption)
                .await
                .map_err(|err| at(&format!("{label}: {err}")))?;
            results.outage.push(row);
            seed.close().await?;
            progress.inc(1);
        }
        for backend in sender_kill::backends(&backends, &with_outbox) {
            point += 1;
            let at = |what: &str| format!("run {run}/{}: {} {what}", args.runs, backend.name);
            progress.set_message(at("sender killed"));
            let seed = backend.seed(Style::Async).await?;
            let prefix = format!("{}.p{point}", backend.prefix);
            let row = sender_kill::measure(&backend, &seed, &prefix)
                .await
                .map_err(|err| at(&format!("sender killed: {err}")))?;
            results.sender_kill.push(row);
            seed.close().await?;
            progress.inc(1);
        }
        for on in &on_clusters {
            let backend = &on.backend;
            let at = |what: String| format!("run {run}/{}: {} {what}", args.runs, backend.name);
            for &style in backend.styles {
                point += 1;
                progress.set_message(at(format!("{style} node loss")));
                let seed = node_loss::seed(backend, style).await?;
                let prefix = format!("{}.p{point}", backend.prefix);
                let row =
                    node_loss::measure(&mut clusters, on, &seed, &prefix, style, args.node_down)
                        .await
                        .map_err(|err| at(format!("{style} node loss: {err}")))?;
                results.node_loss.push(row);
                seed.close().await?;
                progress.inc(1);
            }
        }
        runs.push(results);
    }
    progress.finish_and_clear();

    let settings = format!(
        "runs={} messages={} max_depth={} outage={:?} consumers={} load={}..{}/s steps of {:?} node_down={:?}",
        args.runs,
        args.messages,
        args.max_depth,
        args.outage,
        args.consumers,
        args.load_from,
        args.load_to,
        args.load_step,
        args.node_down
    );
    let summary = report::Summary::new(machine(), settings, runs, clusters.skipped.clone())?;
    drop(clusters);
    println!(
        "Machine: {}\nSettings: {}\n",
        summary.machine, summary.settings
    );
    println!("{}", report::tables(&summary));
    report::write_files(&args.out, &summary)?;
    let charts = [
        page::Chart {
            title: "End-to-end latency by chain depth",
            file: "chain-latency.svg",
        },
        page::Chart {
            title: "Latency against offered load",
            file: "load-latency.svg",
        },
    ];
    report::chain_chart(&args.out.join(charts[0].file), &summary)?;
    report::load_chart(&args.out.join(charts[1].file), &summary)?;
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    page::write(&args.out, &summary, &charts, &command)?;
    println!(
        "wrote {}/report.html, report.md, results.json, chain.csv, outage.csv, fanout.csv, \
         load.csv, capacity.csv, node_loss.csv, sender_kill.csv, chain-latency.svg, load-latency.svg",
        args.out.display()
    );
    Ok(())
}
