#!/usr/bin/env python3
"""Checks that a scenario run wrote every output and that each parses:
report.html and report.md (with Findings and both charts), results.json
(with a spread for every measured figure), the five CSV files (a header and
one line per point), and the two SVG charts (XML documents); with a second
argument, that every backend it lists ran; and that the durable settings'
async outage rows lost nothing in any run (memory, HTTP and gRPC with the
outbox, Kafka), with a `+outbox` row for each of memory, HTTP,
gRPC and core NATS that ran (core NATS with an outbox is shown, not held to
it: the server drops what nobody listens to); and that the `sync+fallback`
rows (memory, HTTP, gRPC) saw no caller error and lost nothing. Usage: check-scenario-outputs.py DIR [BACKEND,...]"""

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
tables = [("chain", "end_to_end_p50_us"), ("outage", "lost"), ("fanout", "event_p50_us"),
          ("load", "p99_us"), ("capacity", "sustained_per_s")]
for table, figure in tables:
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
    charts = text.count("<svg") if page.endswith(".html") else text.count(".svg)")
    if "Findings" not in text or charts != 2:
        fail(f"{page} lacks the Findings or has {charts} charts instead of 2")
for chart in ["chain-latency.svg", "load-latency.svg"]:
    svg = ET.parse(out / chart).getroot()
    if not svg.tag.endswith("svg"):
        fail(f"{chart} is not an SVG document")
# Node loss runs on a NATS and a Kafka cluster wherever those backends ran,
# unless the runner said why not (outside CI only: under CI it fails instead).
lost_nodes = {row["backend"] for row in results["node_loss"]}
skipped = " ".join(results.get("node_loss_skipped", []))
for backend, cluster in [("nats", "nats-cluster"), ("kafka", "kafka-cluster")]:
    ran = any(row["backend"] == backend for row in results["chain"])
    if ran and cluster not in lost_nodes and backend.upper() not in skipped.upper():
        fail(f"no node-loss rows for {cluster} and no reason given")
for row in results["node_loss"]:
    if row["sent"]["min"] < 1 or not row.get("errors_seen"):
        fail(f"node-loss row {row['backend']} {row['style']} sent nothing or lacks errors_seen")
pairs = {(row["backend"], row["style"]) for row in results["chain"]}
loaded = {(row["backend"], row["style"]) for row in results["load"]}
if pairs != loaded:
    fail(f"open-loop load ran on {sorted(loaded)}, the chains on {sorted(pairs)}")
backends = sorted({row["backend"] for row in results["chain"]})
expected = set(sys.argv[2].split(",")) if len(sys.argv) > 2 else set()
if expected - set(backends):
    fail(f"no results for {', '.join(sorted(expected - set(backends)))} (ran: {', '.join(backends)})")
# The outbox rows run wherever the backend keeps nothing for an absent consumer.
outbox_rows = {row["backend"]: row for row in results["outage"]
               if row["backend"].endswith("+outbox") and row["style"] == "async"}
cfg_outbox = bool(outbox_rows)
for backend in ["memory", "http", "grpc", "nats"]:
    if backend in backends and f"{backend}+outbox" not in outbox_rows:
        fail(f"no {backend}+outbox outage row")
# Sync with `fallback = "async"` on every route: a send whose responder is
# away is deferred through the outbox, so the caller sees no error and
# nothing is lost (memory, HTTP and gRPC; see Backend::with_fallback).
fallback_rows = {row["backend"]: row for row in results["outage"] if row["style"] == "sync+fallback"}
for backend in ["memory", "http", "grpc"]:
    if backend in backends and cfg_outbox and f"{backend}+outbox" not in fallback_rows:
        fail(f"no sync+fallback outage row for {backend}")
for name, row in fallback_rows.items():
    if row["caller_errors"]["max"] != 0 or row["lost"]["max"] != 0 or row["accepted"]["min"] < 1:
        fail(f"{name} sync+fallback outage: caller errors {row['caller_errors']}, lost {row['lost']} "
             f"of accepted {row['accepted']}; a deferred send neither fails the caller nor is lost")
# JetStream is left out: a message a stopping consumer had already fetched is
# redelivered only after `ack_wait` (30 s), past the outage's patience, so its
# loss column can count such a late event (see adapters/nats/docs.md).
durable = {"memory+outbox", "http+outbox", "grpc+outbox", "kafka"}
for row in results["outage"]:
    if row["backend"] in durable and row["style"] == "async":
        if row["lost"]["max"] != 0 or row["accepted"]["min"] < 1:
            fail(f"{row['backend']} async outage: lost {row['lost']} of accepted {row['accepted']}; "
                 "a durable setting loses nothing it accepted")
# The sender-kill scenario runs on every backend that crosses processes; an
# outbox or a broker that stores events loses nothing its sender accepted.
killed = {row["backend"]: row for row in results.get("sender_kill", [])}
for backend in ["http", "grpc", "nats", "nats-js", "kafka", "http+outbox", "grpc+outbox", "nats+outbox"]:
    base = backend.split("+")[0]
    if base in backends and backend not in killed:
        fail(f"no sender-kill row for {backend}")
for name, row in killed.items():
    if row["accepted"]["min"] < 1:
        fail(f"sender-kill row {name} accepted nothing")
    if row["mode"] in ("outbox", "broker") and row["lost"]["max"] != 0:
        fail(f"sender-kill row {name} ({row['mode']}) lost {row['lost']} accepted sends")
with open(out / "sender_kill.csv", newline="") as file:
    if len(list(csv.DictReader(file))) != len(killed):
        fail("sender_kill.csv does not have one line per sender-kill row")
print(f"scenario outputs ok: {runs} runs, backends {', '.join(backends)}, "
      f"{len(results['chain'])} chain points, {len(results['load'])} load steps, "
      f"{len(results['node_loss'])} node-loss rows, {len(outbox_rows)} outbox rows, "
      f"{len(fallback_rows)} sync+fallback rows, {len(killed)} sender-kill rows, "
      f"{len(results['overlaps'])} overlapping pairs")
