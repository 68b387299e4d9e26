//! The runner's outputs: tables on stdout, JSON and CSV files, and an SVG chart.

use std::path::Path;

use comfy_table::{presets::ASCII_MARKDOWN, Table};
use plotters::prelude::*;
use serde::Serialize;

use serde_json::Value;

use crate::chain::ChainRow;
use crate::fanout::FanoutRow;
use crate::findings::{self, Finding};
use crate::outage::OutageRow;
use crate::spread::{self, Spread};

/// Everything one run measured.
#[derive(Debug, Default, Serialize)]
pub struct Results {
    pub chain: Vec<ChainRow>,
    pub outage: Vec<OutageRow>,
    pub fanout: Vec<FanoutRow>,
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
    /// Compared pairs whose ranges overlap over the runs.
    pub overlaps: Vec<String>,
    /// Per claim and backend: whether the measurements support it.
    pub findings: Vec<Finding>,
    /// The figures of each run, as measured.
    pub each_run: Vec<Results>,
}

impl Summary {
    /// Summarizes `runs` (at least one).
    pub fn new(machine: String, settings: String, runs: Vec<Results>) -> Result<Self, String> {
        let chain = spread::summarize(&runs.iter().map(|r| &r.chain[..]).collect::<Vec<_>>())?;
        let outage = spread::summarize(&runs.iter().map(|r| &r.outage[..]).collect::<Vec<_>>())?;
        let fanout = spread::summarize(&runs.iter().map(|r| &r.fanout[..]).collect::<Vec<_>>())?;
        let overlaps = match runs.len() {
            1 => Vec::new(),
            _ => spread::overlaps(&chain, &fanout),
        };
        let findings = findings::findings(&chain, &outage);
        Ok(Summary {
            machine,
            settings,
            runs: runs.len(),
            chain,
            outage,
            fanout,
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
        Unit::Ms | Unit::Millis if value >= u64::MAX as f64 => "never".into(),
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
pub fn sections(summary: &Summary) -> [Section<'_>; 4] {
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

/// Writes `results.json`, `chain.csv`, `outage.csv` and `fanout.csv` into `dir`.
pub fn write_files(
    dir: &Path,
    summary: &Summary,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(
        dir.join("results.json"),
        serde_json::to_string_pretty(summary)?,
    )?;
    write_csv(&dir.join("chain.csv"), &summary.chain)?;
    write_csv(&dir.join("outage.csv"), &summary.outage)?;
    write_csv(&dir.join("fanout.csv"), &summary.fanout)?;
    Ok(())
}

/// One CSV line per point; a spread becomes `FIELD_median`, `FIELD_min`, `FIELD_max`.
fn write_csv(path: &Path, rows: &[Value]) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
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
pub fn chart(
    path: &Path,
    summary: &Summary,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let points: Vec<(String, u32, Spread)> = summary
        .chain
        .iter()
        .filter_map(|row| {
            let name = format!("{} {}", row["backend"].as_str()?, row["style"].as_str()?);
            let depth = row["depth"].as_u64()? as u32;
            let ms = spread::spread(row, "end_to_end_p50_us")?;
            let ms = Spread {
                median: ms.median / 1000.0,
                min: ms.min / 1000.0,
                max: ms.max / 1000.0,
            };
            Some((name, depth, ms))
        })
        .collect();
    let max_depth = points.iter().map(|p| p.1).max().unwrap_or(1);
    let max_ms = points.iter().map(|p| p.2.max).fold(0.01f64, f64::max);
    let min_ms = points
        .iter()
        .map(|p| p.2.min)
        .fold(max_ms, f64::min)
        .max(0.001);
    let root = SVGBackend::new(path, (900, 560)).into_drawing_area();
    root.fill(&WHITE)?;
    let caption = match summary.runs {
        1 => "End-to-end p50 latency by chain depth (log scale, one run)".to_owned(),
        n => format!(
            "End-to-end p50 latency by chain depth (log scale; median, bars: min–max of {n} runs)"
        ),
    };
    let mut chart = ChartBuilder::on(&root)
        .caption(caption, ("sans-serif", 18))
        .margin(16)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(1u32..max_depth, (min_ms / 2.0..max_ms * 2.0).log_scale())?;
    chart
        .configure_mesh()
        .x_desc("services in the chain")
        .y_desc("ms")
        .x_labels(max_depth as usize)
        .draw()?;
    let mut series: Vec<(String, Vec<(u32, Spread)>)> = Vec::new();
    for (name, depth, ms) in points {
        match series.iter_mut().find(|(n, _)| *n == name) {
            Some((_, line)) => line.push((depth, ms)),
            None => series.push((name, vec![(depth, ms)])),
        }
    }
    for (index, (name, line)) in series.into_iter().enumerate() {
        let color = Palette99::pick(index).to_rgba();
        let dashed = name.ends_with("async");
        let style = ShapeStyle::from(&color).stroke_width(if dashed { 1 } else { 2 });
        chart
            .draw_series(LineSeries::new(
                line.iter().map(|(depth, ms)| (*depth, ms.median)),
                style,
            ))?
            .label(name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
        chart.draw_series(line.iter().map(|(depth, ms)| {
            ErrorBar::new_vertical(*depth, ms.min, ms.median, ms.max, color.filled(), 6)
        }))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::MiddleRight)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}
