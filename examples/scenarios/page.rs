//! The report as one self-contained HTML page (the chart inline, no outside
//! files or scripts) and as Markdown for the README.

use std::path::Path;

use crate::report::{cell, sections, spread_note, tables, Summary};

/// A chart of the report: its heading and the SVG file in the report's directory.
pub struct Chart {
    pub title: &'static str,
    pub file: &'static str,
}

/// Writes `report.html` and `report.md` into `dir`, where `charts` were
/// drawn for this summary; `command` is the exact command that produced it.
pub fn write(
    dir: &Path,
    summary: &Summary,
    charts: &[Chart],
    command: &str,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let mut drawn = Vec::with_capacity(charts.len());
    for chart in charts {
        drawn.push((chart, std::fs::read_to_string(dir.join(chart.file))?));
    }
    std::fs::write(dir.join("report.html"), html(summary, &drawn, command))?;
    std::fs::write(dir.join("report.md"), markdown(summary, charts, command))?;
    Ok(())
}

fn markdown(summary: &Summary, charts: &[Chart], command: &str) -> String {
    let images: String = charts
        .iter()
        .map(|chart| format!("![{}]({})\n\n", chart.title, chart.file))
        .collect();
    format!(
        "# Sync or async, measured\n\nCommand: `{command}`\n\nMachine: {}; switchboard {}; {}\n\n{images}{}",
        summary.machine,
        env!("CARGO_PKG_VERSION"),
        summary.settings,
        tables(summary)
    )
}

fn html(summary: &Summary, charts: &[(&Chart, String)], command: &str) -> String {
    let mut page = String::new();
    page.push_str(concat!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n",
        "<title>switchboard: sync or async, measured</title>\n<style>\n",
        "body{font-family:sans-serif;max-width:72rem;margin:2rem auto;padding:0 1rem;color:#222}\n",
        "table{border-collapse:collapse;margin:1rem 0;font-size:.9rem}\n",
        "th,td{border:1px solid #ccc;padding:.25rem .5rem;text-align:right}\n",
        "th{background:#f3f3f3}td:first-child,td:nth-child(2){text-align:left}\n",
        ".supported{color:#116611}.not-shown{color:#886600}.not-supported{color:#aa1111}\n",
        "code{background:#f3f3f3;padding:0 .2rem}\n</style>\n</head>\n<body>\n",
        "<h1>Sync or async, measured</h1>\n"
    ));
    page.push_str(&format!(
        "<p>Command: <code>{}</code></p>\n<p>Machine: {}; switchboard {}; {}</p>\n<p>{}</p>\n",
        escape(command),
        escape(&summary.machine),
        env!("CARGO_PKG_VERSION"),
        escape(&summary.settings),
        escape(&spread_note(summary))
    ));
    page.push_str("<h2 id=\"findings\">Findings</h2>\n<p>A claim is supported only where the ranges over the runs do not overlap.</p>\n<ul>\n");
    for finding in &summary.findings {
        let class = match finding.verdict {
            "supported" => "supported",
            "not supported" => "not-supported",
            _ => "not-shown",
        };
        page.push_str(&format!(
            "<li class=\"finding\"><b>{}</b> — {}: <span class=\"{class}\">{}</span>. {}</li>\n",
            escape(&finding.backend),
            escape(finding.claim),
            escape(finding.verdict),
            escape(&finding.evidence)
        ));
    }
    page.push_str("</ul>\n");
    if !summary.overlaps.is_empty() {
        page.push_str("<h3>Overlapping ranges (noise, not a difference)</h3>\n<ul>\n");
        for line in &summary.overlaps {
            page.push_str(&format!("<li>{}</li>\n", escape(line)));
        }
        page.push_str("</ul>\n");
    }
    for (chart, svg) in charts {
        page.push_str(&format!(
            "<h2>{}</h2>\n<figure class=\"chart\">\n",
            escape(chart.title)
        ));
        // The SVG document minus its XML prolog, inline so the page stands alone.
        page.push_str(svg.find("<svg").map_or(svg, |start| &svg[start..]));
        page.push_str("\n</figure>\n");
    }
    for section in sections(summary) {
        page.push_str(&format!(
            "<h2>{}</h2>\n<table>\n<tr>",
            escape(section.title)
        ));
        for (header, _, _) in section.columns {
            page.push_str(&format!("<th>{}</th>", escape(header)));
        }
        page.push_str("</tr>\n");
        for row in section.rows {
            page.push_str("<tr>");
            for (_, field, unit) in section.columns {
                page.push_str(&format!("<td>{}</td>", escape(&cell(row, field, *unit))));
            }
            page.push_str("</tr>\n");
        }
        page.push_str("</table>\n");
    }
    // Lets a headless browser confirm the chart was laid out and drawn:
    // the body records how many charts there are and how many have size and shapes.
    page.push_str(concat!(
        "<script>\naddEventListener('load', () => {\n",
        "  const charts = [...document.querySelectorAll('figure.chart svg')];\n",
        "  const drawn = charts.filter(svg => { const box = svg.getBBox();\n",
        "    return box.width > 0 && box.height > 0 && svg.querySelectorAll('path, polyline, line, circle, rect').length > 0; });\n",
        "  document.body.dataset.charts = charts.length;\n",
        "  document.body.dataset.chartsDrawn = drawn.length;\n",
        "});\n</script>\n</body>\n</html>\n"
    ));
    page
}

/// Text as HTML text-node content.
fn escape(text: &str) -> std::borrow::Cow<'_, str> {
    html_escape::encode_text(text)
}
