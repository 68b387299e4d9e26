//! The runner's outputs: tables on stdout, JSON and CSV files, and an SVG chart.

use std::path::Path;

use comfy_table::{presets::ASCII_MARKDOWN, Table};
use plotters::prelude::*;
use serde::Serialize;

use serde_json::Value;

use crate::chain::ChainRow;
use crate::fanout::FanoutRow;
use crate::findings::{self, Finding};
use crate::load::{CapacityRow, LoadRow};
use crate::outage::OutageRow;
use crate::sender_kill::SenderKillRow;
use crate::spread::{self, Spread};

/// Everything one run measured.
#[derive(Debug, Default, Serialize)]
pub struct Results {
    pub chain: Vec<ChainRow>,
    pub outage: Vec<OutageRow>,
    pub fanout: Vec<FanoutRow>,
    pub load: Vec<LoadRow>,
    pub capacity: Vec<CapacityRow>,
    pub node_loss: Vec<OutageRow>,
    pub sender_kill: Vec<SenderKillRow>,
}

/// Every run, summarized point by point (see [`spread`](crate::spread)).
#[derive(Debug, Default, Serialize)]
pub struct Summary {
    pub machine: String,
    pub settings: String,
    pub runs: usize,
    pub chain: Vec<Value>,
    pub outage: Vec<Value>,
    pub fanout: Vec<Value>,
    pub load: Vec<Value>,
    pub capacity: Vec<Value>,
    pub node_loss: Vec<Value>,
    pub sender_kill: Vec<Value>,
    /// Clusters the node-loss scenario could not start (outside CI), and why.
    pub node_loss_skipped: Vec<String>,
    /// Compared pairs whose ranges overlap over the runs.
    pub overlaps: Vec<String>,
    /// Per claim and backend: whether the measurements support it.
    pub findings: Vec<Finding>,
    /// The figures of each run, as measured.
    pub each_run: Vec<Results>,
}

impl Summary {
    /// Summarizes `runs` (at least one).
    pub fn new(
        machine: String,
        settings: String,
        runs: Vec<Results>,
        node_loss_skipped: Vec<String>,
    ) -> Result<Self, String> {
        let chain = spread::summarize(&runs.iter().map(|r| &r.chain[..]).collect::<Vec<_>>())?;
        let outage = spread::summarize(&runs.iter().map(|r| &r.outage[..]).collect::<Vec<_>>())?;
        let fanout = spread::summarize(&runs.iter().map(|r| &r.fanout[..]).collect::<Vec<_>>())?;
        let load = spread::summarize(&runs.iter().map(|r| &r.load[..]).collect::<Vec<_>>())?;
        let capacity =
            spread::summarize(&runs.iter().map(|r| &r.capacity[..]).collect::<Vec<_>>())?;
        let node_loss =
            spread::summarize(&runs.iter().map(|r| &r.node_loss[..]).collect::<Vec<_>>())?;
        let sender_kill =
            spread::summarize(&runs.iter().map(|r| &r.sender_kill[..]).collect::<Vec<_>>())?;
        let overlaps = match runs.len() {
            1 => Vec::new(),
            _ => spread::overlaps(&chain, &fanout),
        };
        let findings = findings::findings(&chain, &outage, &capacity);
        Ok(Summary {
            machine,
            settings,
            runs: runs.len(),
            chain,
            outage,
            fanout,
            load,
            capacity,
            node_loss,
            sender_kill,
            node_loss_skipped,
            overlaps,
            findings,
            each_run: runs,
        })
    }
}

/// How a column shows its field.
#[derive(Clone, Copy)]
pub enum Unit {
    Text,
    /// Microseconds shown as milliseconds; `u64::MAX` means never.
    Ms,
    /// Whole milliseconds; `u64::MAX` means never.
    Millis,
    /// A share from 0 to 1, shown in percent.
    Percent,
    Count,
}

/// A column: its header, the row field it shows, and how.
pub type Column = (&'static str, &'static str, Unit);

fn number(value: f64, unit: Unit) -> String {
    match unit {
        // `u64::MAX` is "never"; a median of it and a real time is still far beyond any run.
        Unit::Ms | Unit::Millis if value >= 1e15 => "never".into(),
        Unit::Ms => format!("{:.2}", value / 1000.0),
        Unit::Percent => format!("{:.0} %", value * 100.0),
        _ => format!("{value:.0}"),
    }
}

/// A cell: the value, or `median (min–max)` for a figure that moved between runs.
pub fn cell(row: &Value, field: &str, unit: Unit) -> String {
    let value = &row[field];
    if let Unit::Text = unit {
        return match value {
            Value::String(text) => text.clone(),
            other => other.to_string(),
        };
    }
    match Spread::from_value(value) {
        Some(s) if s.min == s.max => number(s.median, unit),
        Some(s) => format!(
            "{} ({}–{})",
            number(s.median, unit),
            number(s.min, unit),
            number(s.max, unit)
        ),
        None => value
            .as_f64()
            .map_or_else(|| "?".into(), |v| number(v, unit)),
    }
}

/// One table of the report: its title, rows and columns.
pub struct Section<'a> {
    pub title: &'static str,
    pub rows: &'a [Value],
    pub columns: &'static [Column],
}

/// The report's tables, in order.
pub fn sections(summary: &Summary) -> [Section<'_>; 8] {
    use Unit::{Count, Millis, Ms, Percent, Text};
    [
        Section {
            title: "Chain of N services",
            rows: &summary.chain,
            columns: &[
                ("backend", "backend", Text),
                ("style", "style", Text),
                ("depth", "depth", Text),
                ("caller p50 ms", "caller_p50_us", Ms),
                ("caller p99 ms", "caller_p99_us", Ms),
                ("end-to-end p50 ms", "end_to_end_p50_us", Ms),
                ("end-to-end p99 ms", "end_to_end_p99_us", Ms),
                ("jobs/s (32 in flight)", "throughput_per_s", Count),
            ],
        },
        Section {
            title: "Downstream outage (chain of 3, middle service stopped)",
            rows: &summary.outage,
            columns: &[
                ("backend", "backend", Text),
                ("style", "style", Text),
                ("outage ms", "outage_ms", Text),
                ("sent", "sent", Count),
                ("caller errors", "caller_errors", Count),
                ("accepted", "accepted", Count),
                ("caller p99 ms", "caller_p99_us", Ms),
                ("caller max ms", "caller_max_us", Ms),
                ("completed", "completed", Count),
                ("lost", "lost", Count),
                ("max backlog", "max_backlog", Count),
                ("served again after ms", "served_again_after_ms", Millis),
                ("drained after ms", "drained_after_ms", Millis),
            ],
        },
        Section {
            title: "Autonomy (the same outage: the front service's own work, and the whole job)",
            rows: &summary.outage,
            columns: &[
                ("backend", "backend", Text),
                ("style", "style", Text),
                ("outage ms", "outage_ms", Text),
                ("own work done during the outage", "own_work_share", Percent),
                ("finished end to end", "end_to_end_share", Percent),
                ("lost", "lost", Count),
                ("consistent again after ms", "drained_after_ms", Millis),
            ],
        },
        Section {
            title: "Fan-out to M consumers",
            rows: &summary.fanout,
            columns: &[
                ("backend", "backend", Text),
                ("consumers", "consumers", Text),
                ("1 event p50 ms", "event_p50_us", Ms),
                ("1 event p99 ms", "event_p99_us", Ms),
                ("M requests p50 ms", "requests_p50_us", Ms),
                ("M requests p99 ms", "requests_p99_us", Ms),
            ],
        },
        Section {
            title: "Open-loop load (chain of 2; jobs offered on a schedule, latency from when each was due)",
            rows: &summary.load,
            columns: &[
                ("backend", "backend", Text),
                ("style", "style", Text),
                ("offered jobs/s", "offered_per_s", Text),
                ("completed jobs/s", "completed_per_s", Count),
                ("p50 ms", "p50_us", Ms),
                ("p99 ms", "p99_us", Ms),
                ("max ms", "max_us", Ms),
                ("caller errors", "caller_errors", Count),
                ("shed", "shed", Count),
                ("not completed", "not_completed", Count),
            ],
        },
        Section {
            title: "Capacity (the highest offered rate kept up with: ≥ 90 % completed at pace, ≤ 1 % failed, p99 < 1 s)",
            rows: &summary.capacity,
            columns: &[
                ("backend", "backend", Text),
                ("style", "style", Text),
                ("sustained jobs/s", "sustained_per_s", Count),
                ("first saturated jobs/s (0: none up to the last step)", "saturated_at_per_s", Count),
            ],
        },
        Section {
            title: "Node loss (chain of 3 on a three-node cluster; one node killed mid-run, restarted after `node_down`)",
            rows: &summary.node_loss,
            columns: &[
                ("backend", "backend", Text),
                ("style", "style", Text),
                ("node down ms", "outage_ms", Text),
                ("sent", "sent", Count),
                ("caller errors", "caller_errors", Count),
                ("accepted", "accepted", Count),
                ("completed", "completed", Count),
                ("lost", "lost", Count),
                ("duplicates", "duplicates", Count),
                ("caller max ms", "caller_max_us", Ms),
                ("served again after ms", "served_again_after_ms", Millis),
                ("consistent again after ms", "drained_after_ms", Millis),
                ("caller errors (first run)", "errors_seen", Text),
            ],
        },
        Section {
            title: "Sender killed (SIGKILL after 200 accepted async sends, restarted for 50 more)",
            rows: &summary.sender_kill,
            columns: &[
                ("backend", "backend", Text),
                ("accepted means", "mode", Text),
                ("accepted", "accepted", Count),
                ("received", "received", Count),
                ("lost", "lost", Count),
                ("duplicates", "duplicates", Count),
                ("held in the file at restart", "held_at_restart", Count),
            ],
        },
    ]
}

/// How many runs the figures summarize, in one sentence.
pub fn spread_note(summary: &Summary) -> String {
    match summary.runs {
        1 => "One run: no spread; use --runs N before drawing conclusions.".to_owned(),
        n => format!("{n} runs: each figure is the median (min–max) over the runs."),
    }
}

/// The tables, Findings and overlapping pairs, in Markdown so they paste into the README.
pub fn tables(summary: &Summary) -> String {
    let mut text = format!("{}\n", spread_note(summary));
    for section in sections(summary) {
        let mut table = Table::new();
        table
            .load_preset(ASCII_MARKDOWN)
            .set_header(section.columns.iter().map(|(header, _, _)| *header));
        for row in section.rows {
            table.add_row(
                section
                    .columns
                    .iter()
                    .map(|(_, field, unit)| cell(row, field, *unit)),
            );
        }
        text.push_str(&format!("\n{}\n\n{table}\n", section.title));
    }
    for reason in &summary.node_loss_skipped {
        text.push_str(&format!("\nNode loss not run on the {reason}\n"));
    }
    if !summary.findings.is_empty() {
        text.push_str("\nFindings (a claim is supported only where the ranges over the runs do not overlap):\n\n");
        for finding in &summary.findings {
            text.push_str(&format!(
                "- **{}** — {}: {}. {}\n",
                finding.backend, finding.claim, finding.verdict, finding.evidence
            ));
        }
    }
    if !summary.overlaps.is_empty() {
        text.push_str("\nOverlapping ranges (noise, not a difference):\n\n");
        for line in &summary.overlaps {
            text.push_str(&format!("- {line}\n"));
        }
    }
    text
}

/// Writes `results.json` and the CSV files (`chain`, `outage`, `fanout`,
/// `load`, `capacity`, `node_loss`, `sender_kill`) into `dir`.
pub fn write_files(dir: &Path, summary: &Summary) -> Result<(), BoxError> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(
        dir.join("results.json"),
        serde_json::to_string_pretty(summary)?,
    )?;
    write_csv(&dir.join("chain.csv"), &summary.chain)?;
    write_csv(&dir.join("outage.csv"), &summary.outage)?;
    write_csv(&dir.join("fanout.csv"), &summary.fanout)?;
    write_csv(&dir.join("load.csv"), &summary.load)?;
    write_csv(&dir.join("capacity.csv"), &summary.capacity)?;
    write_csv(&dir.join("node_loss.csv"), &summary.node_loss)?;
    write_csv(&dir.join("sender_kill.csv"), &summary.sender_kill)?;
    Ok(())
}

/// One CSV line per point; a spread becomes `FIELD_median`, `FIELD_min`, `FIELD_max`.
fn write_csv(path: &Path, rows: &[Value]) -> Result<(), BoxError> {
    let mut writer = csv::Writer::from_path(path)?;
    let flat = |row: &Value| -> Vec<(String, String)> {
        let Value::Object(fields) = row else {
            return Vec::new();
        };
        let mut cells = Vec::new();
        for (name, value) in fields {
            match Spread::from_value(value) {
                Some(s) => {
                    cells.push((format!("{name}_median"), s.median.to_string()));
                    cells.push((format!("{name}_min"), s.min.to_string()));
                    cells.push((format!("{name}_max"), s.max.to_string()));
                }
                None => cells.push((
                    name.clone(),
                    value
                        .as_str()
                        .map_or_else(|| value.to_string(), str::to_owned),
                )),
            }
        }
        cells
    };
    if let Some(first) = rows.first() {
        writer.write_record(flat(first).into_iter().map(|(name, _)| name))?;
    }
    for row in rows {
        writer.write_record(flat(row).into_iter().map(|(_, value)| value))?;
    }
    writer.flush()?;
    Ok(())
}

/// Draws end-to-end p50 latency against chain depth, one line per backend
/// and style, with the min–max over the runs as error bars.
pub fn chain_chart(path: &Path, summary: &Summary) -> Result<(), BoxError> {
    let caption = match summary.runs {
        1 => "End-to-end p50 latency by chain depth (log scale, one run)".to_owned(),
        n => format!(
            "End-to-end p50 latency by chain depth (log scale; median, bars: min–max of {n} runs)"
        ),
    };
    LineChart {
        caption,
        x_desc: "services in the chain",
        x_label: Box::new(|depth| format!("{depth:.0}")),
        series: series(&summary.chain, "depth", "end_to_end_p50_us"),
    }
    .draw(path)
}

/// Draws p99 latency against offered load, one line per backend and style;
/// the rates double from step to step, so each step is one notch on the axis.
pub fn load_chart(path: &Path, summary: &Summary) -> Result<(), BoxError> {
    let caption = match summary.runs {
        1 => "Open-loop load: p99 latency by offered jobs/s (log scales, one run)".to_owned(),
        n => format!(
            "Open-loop load: p99 latency by offered jobs/s (log scales; bars: min–max of {n} runs)"
        ),
    };
    let mut series = series(&summary.load, "offered_per_s", "p99_us");
    let first = series
        .iter()
        .flat_map(|(_, line)| line.iter().map(|(rate, _)| *rate))
        .fold(f64::MAX, f64::min);
    for (_, line) in &mut series {
        for (rate, _) in line {
            *rate = (*rate / first).log2();
        }
    }
    LineChart {
        caption,
        x_desc: "offered jobs/s (chain of 2)",
        x_label: Box::new(move |step| format!("{:.0}", first * step.exp2())),
        series,
    }
    .draw(path)
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// One line per backend and style: (x, latency in ms).
type Series = Vec<(String, Vec<(f64, Spread)>)>;

/// The rows' `y_us` field in milliseconds against their `x` field, grouped
/// into one line per backend and style, in the order they appear.
fn series(rows: &[Value], x: &str, y_us: &str) -> Series {
    let mut lines: Series = Vec::new();
    for row in rows {
        let (Some(backend), Some(style), Some(x), Some(us)) = (
            row["backend"].as_str(),
            row["style"].as_str(),
            row[x].as_f64(),
            spread::spread(row, y_us),
        ) else {
            continue;
        };
        let name = format!("{backend} {style}");
        let ms = Spread {
            median: us.median / 1000.0,
            min: us.min / 1000.0,
            max: us.max / 1000.0,
        };
        match lines.iter_mut().find(|(n, _)| *n == name) {
            Some((_, line)) => line.push((x, ms)),
            None => lines.push((name, vec![(x, ms)])),
        }
    }
    lines
}

/// A latency chart (ms on a log scale) with min–max error bars, one notch
/// per whole number on the x axis.
struct LineChart {
    caption: String,
    x_desc: &'static str,
    x_label: Box<dyn Fn(f64) -> String>,
    series: Series,
}

impl LineChart {
    fn draw(&self, path: &Path) -> Result<(), BoxError> {
        let points = || self.series.iter().flat_map(|(_, line)| line.iter());
        let (min_x, max_x) = points().fold((f64::MAX, 1.0f64), |(lo, hi), (x, _)| {
            (lo.min(*x), hi.max(*x))
        });
        let min_x = min_x.min(max_x);
        let max_ms = points().map(|p| p.1.max).fold(0.01f64, f64::max);
        let min_ms = points().map(|p| p.1.min).fold(max_ms, f64::min).max(0.001);
        // Room above the highest line for the legend in the upper left.
        let y = (min_ms / 2.0..max_ms * 30.0).log_scale();
        let root = SVGBackend::new(path, (900, 560)).into_drawing_area();
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(&self.caption, ("sans-serif", 18))
            .margin(16)
            .x_label_area_size(40)
            .y_label_area_size(70)
            .build_cartesian_2d(min_x..max_x.max(min_x + 1.0), y)?;
        chart
            .configure_mesh()
            .x_desc(self.x_desc)
            .y_desc("ms")
            .x_labels((max_x - min_x) as usize + 1)
            .x_label_formatter(&|x| (self.x_label)(*x))
            .draw()?;
        for (index, (name, line)) in self.series.iter().enumerate() {
            let color = Palette99::pick(index).to_rgba();
            let thin = name.ends_with("async");
            let style = ShapeStyle::from(&color).stroke_width(if thin { 1 } else { 2 });
            chart
                .draw_series(LineSeries::new(
                    line.iter().map(|(x, ms)| (*x, ms.median)),
                    style,
                ))?
                .label(name)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
            chart.draw_series(line.iter().map(|(x, ms)| {
                ErrorBar::new_vertical(*x, ms.min, ms.median, ms.max, color.filled(), 6)
            }))?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()?;
        root.present()?;
        Ok(())
    }
}
