#!/usr/bin/env python3
"""Checks that a scenario run wrote every output and that each parses:
report.html and report.md (with Findings and the chart), results.json (with a spread for every measured figure when runs > 1), the
three CSV files (a header and one line per point), and the SVG chart (XML
with one error bar group per point). Usage: check-scenario-outputs.py DIR"""

import csv
import json
import sys
import xml.etree.ElementTree as ET
from pathlib import Path


def fail(why):
    sys.exit(f"scenario outputs: {why}")


out = Path(sys.argv[1])
results = json.loads((out / "results.json").read_text())
runs = results.get("runs", 0)
if runs < 1 or len(results.get("each_run", [])) != runs:
    fail(f"results.json says runs={runs} but holds {len(results.get('each_run', []))}")
for table, figure in [("chain", "end_to_end_p50_us"), ("outage", "lost"), ("fanout", "event_p50_us")]:
    rows = results.get(table) or fail(f"results.json has no {table} rows")
    for row in rows:
        spread = row.get(figure)
        if not isinstance(spread, dict) or not spread["min"] <= spread["median"] <= spread["max"]:
            fail(f"{table} row {row.get('backend')}: {figure} is not a median within its min-max: {spread}")
    with open(out / f"{table}.csv", newline="") as file:
        lines = list(csv.DictReader(file))
    if len(lines) != len(rows) or f"{figure}_median" not in lines[0]:
        fail(f"{table}.csv has {len(lines)} lines for {len(rows)} points, or no {figure}_median column")
for page in ["report.html", "report.md"]:
    text = (out / page).read_text()
    if "Findings" not in text or "chain-latency" not in text and "<svg" not in text:
        fail(f"{page} lacks the Findings or the chart")
svg = ET.parse(out / "chain-latency.svg").getroot()
if not svg.tag.endswith("svg"):
    fail("chain-latency.svg is not an SVG document")
backends = sorted({row["backend"] for row in results["chain"]})
print(f"scenario outputs ok: {runs} runs, backends {', '.join(backends)}, "
      f"{len(results['chain'])} chain points, {len(results['overlaps'])} overlapping pairs")
