//! The runner's outputs: tables on stdout, JSON and CSV files, and an SVG chart.

use std::path::Path;

use comfy_table::{presets::ASCII_MARKDOWN, Table};
use plotters::prelude::*;
use serde::Serialize;

use crate::chain::ChainRow;
use crate::fanout::FanoutRow;
use crate::outage::OutageRow;

/// Everything one run measured.
#[derive(Debug, Default, Serialize)]
pub struct Results {
    pub machine: String,
    pub settings: String,
    pub chain: Vec<ChainRow>,
    pub outage: Vec<OutageRow>,
    pub fanout: Vec<FanoutRow>,
}

fn ms(micros: u64) -> String {
    if micros == u64::MAX {
        return "never".into();
    }
    format!("{:.2}", micros as f64 / 1000.0)
}

/// The three tables, in Markdown so they paste into the README.
pub fn tables(results: &Results) -> String {
    let mut chain = Table::new();
    chain.load_preset(ASCII_MARKDOWN).set_header([
        "backend",
        "style",
        "depth",
        "caller p50 ms",
        "caller p99 ms",
        "end-to-end p50 ms",
        "end-to-end p99 ms",
        "jobs/s (32 in flight)",
    ]);
    for row in &results.chain {
        chain.add_row([
            row.backend.clone(),
            row.style.clone(),
            row.depth.to_string(),
            ms(row.caller_p50_us),
            ms(row.caller_p99_us),
            ms(row.end_to_end_p50_us),
            ms(row.end_to_end_p99_us),
            format!("{:.0}", row.throughput_per_s),
        ]);
    }
    let mut outage = Table::new();
    outage.load_preset(ASCII_MARKDOWN).set_header([
        "backend",
        "style",
        "outage ms",
        "sent",
        "caller errors",
        "accepted",
        "caller p99 ms",
        "caller max ms",
        "completed",
        "lost",
        "max backlog",
        "drained after ms",
    ]);
    for row in &results.outage {
        outage.add_row([
            row.backend.clone(),
            row.style.clone(),
            row.outage_ms.to_string(),
            row.sent.to_string(),
            row.caller_errors.to_string(),
            row.accepted.to_string(),
            ms(row.caller_p99_us),
            ms(row.caller_max_us),
            row.completed.to_string(),
            row.lost.to_string(),
            row.max_backlog.to_string(),
            if row.drained_after_ms == u64::MAX {
                "never".into()
            } else {
                row.drained_after_ms.to_string()
            },
        ]);
    }
    let mut fanout = Table::new();
    fanout.load_preset(ASCII_MARKDOWN).set_header([
        "backend",
        "consumers",
        "1 event p50 ms",
        "1 event p99 ms",
        "M requests p50 ms",
        "M requests p99 ms",
    ]);
    for row in &results.fanout {
        fanout.add_row([
            row.backend.clone(),
            row.consumers.to_string(),
            ms(row.event_p50_us),
            ms(row.event_p99_us),
            ms(row.requests_p50_us),
            ms(row.requests_p99_us),
        ]);
    }
    format!(
        "Chain of N services\n\n{chain}\n\nDownstream outage (chain of 3, middle service stopped)\n\n{outage}\n\nFan-out to M consumers\n\n{fanout}\n"
    )
}

/// Writes `results.json`, `chain.csv`, `outage.csv` and `fanout.csv` into `dir`.
pub fn write_files(
    dir: &Path,
    results: &Results,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(
        dir.join("results.json"),
        serde_json::to_string_pretty(results)?,
    )?;
    write_csv(&dir.join("chain.csv"), &results.chain)?;
    write_csv(&dir.join("outage.csv"), &results.outage)?;
    write_csv(&dir.join("fanout.csv"), &results.fanout)?;
    Ok(())
}

fn write_csv<T: Serialize>(
    path: &Path,
    rows: &[T],
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let mut writer = csv::Writer::from_path(path)?;
    for row in rows {
        writer.serialize(row)?;
    }
    writer.flush()?;
    Ok(())
}

/// Draws end-to-end p50 latency against chain depth, one line per backend and style.
pub fn chart(
    path: &Path,
    results: &Results,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let rows = &results.chain;
    let max_depth = rows.iter().map(|r| r.depth).max().unwrap_or(1) as u32;
    let max_ms = rows
        .iter()
        .map(|r| r.end_to_end_p50_us as f64 / 1000.0)
        .fold(0.01f64, f64::max);
    let min_ms = rows
        .iter()
        .map(|r| r.end_to_end_p50_us as f64 / 1000.0)
        .fold(max_ms, f64::min)
        .max(0.001);
    let root = SVGBackend::new(path, (900, 560)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "End-to-end p50 latency by chain depth (log scale)",
            ("sans-serif", 22),
        )
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
    let mut series: Vec<(String, Vec<(u32, f64)>)> = Vec::new();
    for row in rows {
        let name = format!("{} {}", row.backend, row.style);
        let point = (row.depth as u32, row.end_to_end_p50_us as f64 / 1000.0);
        match series.iter_mut().find(|(n, _)| *n == name) {
            Some((_, points)) => points.push(point),
            None => series.push((name, vec![point])),
        }
    }
    for (index, (name, points)) in series.into_iter().enumerate() {
        let color = Palette99::pick(index).to_rgba();
        let dashed = name.ends_with("async");
        let style = ShapeStyle::from(&color).stroke_width(if dashed { 1 } else { 2 });
        chart
            .draw_series(LineSeries::new(points.clone(), style))?
            .label(name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
        chart.draw_series(
            points
                .into_iter()
                .map(|p| Circle::new(p, 3, color.filled())),
        )?;
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
