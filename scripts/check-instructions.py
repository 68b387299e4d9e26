#!/usr/bin/env python3
"""Counts the instructions per message of the paths users call, under
callgrind, and fails when one costs more than its baseline allows.

Each row of `examples/instructions/` runs N and 3N times; the difference
of the two totals, divided by 2N, is the cost of one message with start-up
and set-up cancelled out. The rows run a build with the backends' features
alone (what a user of one backend compiles: no `metrics`, no `otel`); a row
named `ROW@all-features` runs ROW on a build with every feature, so the
cost of the `metrics` and `otel` features shows beside it. The baseline (`benches/instructions.baseline`,
`ROW INSTRUCTIONS` per line) holds the counts this machine kind measured;
a row more than 5 % above its baseline fails (10 % for the `kafka-*` and
`amqp-*` rows, whose counts include the threads of librdkafka and lapin
and move up to 4 % from run to run). Rows named `*-raw-*` are the raw client doing the same work: printed
with the ratio, never failed.

Usage: check-instructions.py [--update] [--report] [--rows ROW,ROW] [BINARY [ALL_FEATURES_BINARY]]
  BINARY    the release build of the example with the backends' features
            (default: $CARGO_TARGET_DIR or target, then release/examples/instructions)
  ALL_FEATURES_BINARY
            the release build with --all-features, for the `@all-features` rows
            (default: release/examples/instructions-all-features beside it)
  --update  writes the measured counts as the new baseline
  --report  prints rows over the baseline without failing
  --rows    only these rows (default: every row in the baseline)"""

import os
import re
import subprocess
import sys
from pathlib import Path

BASELINE = Path(__file__).resolve().parent.parent / "benches" / "instructions.baseline"
TOLERANCE = 0.05
# librdkafka's and lapin's threads poll on timers, so their share of a run varies with its wall time.
TOLERANCE_THREADED = 0.10
N = 1000


def collected(binary, row, count):
    """Instructions callgrind counted for one run of `row` with `count` messages."""
    run = subprocess.run(
        ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", binary, row, str(count)],
        capture_output=True,
        text=True,
    )
    if run.returncode != 0:
        sys.exit(f"{row}: the run failed (exit {run.returncode}):\n{run.stderr[-2000:]}")
    found = re.search(r"Collected\s*:\s*(\d+)", run.stderr)
    if not found:
        sys.exit(f"{row}: callgrind printed no count:\n{run.stderr[-2000:]}")
    return int(found.group(1))


def per_message(binary, row):
    return (collected(binary, row, 3 * N) - collected(binary, row, N)) / (2 * N)


def read_baseline():
    rows = {}
    if BASELINE.exists():
        for line in BASELINE.read_text().splitlines():
            line = line.split("#", 1)[0].strip()
            if line:
                row, count = line.split()
                rows[row] = float(count)
    return rows


def main():
    args = sys.argv[1:]
    update = "--update" in args
    report = "--report" in args
    args = [a for a in args if a not in ("--update", "--report")]
    rows = None
    if "--rows" in args:
        at = args.index("--rows")
        rows = args[at + 1].split(",")
        del args[at : at + 2]
    target = os.environ.get("CARGO_TARGET_DIR", "target")
    examples = Path(target) / "release" / "examples"
    binary = args[0] if args else str(examples / "instructions")
    all_features = args[1] if len(args) > 1 else str(examples / "instructions-all-features")
    baseline = read_baseline()
    rows = rows or list(baseline)
    measured, failures = {}, []
    print(f"| row | instructions per message | baseline | change |\n|---|---|---|---|")
    for row in rows:
        name, _, build = row.partition("@")
        count = per_message(all_features if build == "all-features" else binary, name)
        measured[row] = count
        base = baseline.get(row)
        if base:
            change = count / base - 1
            print(f"| {row} | {count:,.0f} | {base:,.0f} | {change:+.1%} |")
            threaded = row.startswith(("kafka-", "amqp-"))
            tolerance = TOLERANCE_THREADED if threaded else TOLERANCE
            if change > tolerance and "-raw-" not in row:
                failures.append(f"{row}: {count:,.0f} instructions per message, {change:+.1%} over the baseline {base:,.0f}")
        else:
            print(f"| {row} | {count:,.0f} | — | — |")
    for row, raw in (
        ("nats-typed-event", "nats-raw-event"),
        ("nats-typed-request", "nats-raw-request"),
        ("nats-publish-json", "nats-raw-publish"),
        ("kafka-typed-event", "kafka-raw-event"),
        ("amqp-typed-event", "amqp-raw-event"),
        ("redis-typed-event", "redis-raw-event"),
        ("http-typed-request", "http-raw-request"),
    ):
        if row in measured and raw in measured:
            print(f"{row}: raw ÷ switchboard = {measured[raw] / measured[row]:.2f}")
    if update:
        lines = ["# Instructions per message under callgrind, from scripts/check-instructions.py --update", "# (release build, examples/instructions.rs, N and 3N messages)."]
        lines += [f"{row} {count:.0f}" for row, count in measured.items()]
        BASELINE.write_text("\n".join(lines) + "\n")
        print(f"baseline written: {BASELINE}")
        return
    if failures and report:
        print("over the baseline (reported, not failed):\n" + "\n".join(failures))
    elif failures:
        sys.exit("\n".join(failures))


if __name__ == "__main__":
    main()
