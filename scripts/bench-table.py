#!/usr/bin/env python3
"""Prints BENCHMARKS.md tables from criterion's saved estimates.

Usage: python3 scripts/bench-table.py [CRITERION_DIR]
(default: $CARGO_TARGET_DIR/criterion, else target/criterion). Each group
gets one row per payload: switchboard and raw-client throughput and their ratio.
"""
import json
import os
import sys
from pathlib import Path


def mean_ns(path: Path) -> float:
    return json.loads(path.read_text())["mean"]["point_estimate"]


def rate(ns: float) -> str:
    per_second = 1e9 / ns
    if per_second >= 1e6:
        return f"{per_second / 1e6:.2f} M/s"
    if per_second >= 1e3:
        return f"{per_second / 1e3:.1f} k/s"
    return f"{per_second:.0f} /s"


def latency(ns: float) -> str:
    return f"{ns / 1e6:.2f} ms" if ns >= 1e6 else f"{ns / 1e3:.1f} µs"


def main() -> None:
    default = Path(os.environ.get("CARGO_TARGET_DIR", "target")) / "criterion"
    root = Path(sys.argv[1]) if len(sys.argv) > 1 else default
    groups = {}
    for estimates in sorted(root.glob("*/*/*/new/estimates.json")):
        group, function, payload = estimates.parts[-5:-2]
        groups.setdefault(group, {}).setdefault(int(payload), {})[function] = mean_ns(estimates)
    for group, rows in sorted(groups.items()):
        name = group.replace("_", "/", 1)
        raw_names = sorted({f for r in rows.values() for f in r if f != "switchboard"})
        raw = raw_names[0] if raw_names else None
        print(f"\n### {name}\n")
        if raw:
            print(f"| payload | switchboard | {raw} | ratio | switchboard per op | raw per op |")
            print("|---|---|---|---|---|---|")
        else:
            print("| payload | switchboard | per op |")
            print("|---|---|---|")
        for payload, functions in sorted(rows.items()):
            ours = functions.get("switchboard")
            if ours is None:
                continue
            if raw and raw in functions:
                theirs = functions[raw]
                print(
                    f"| {payload} B | {rate(ours)} | {rate(theirs)} | {theirs / ours:.2f} "
                    f"| {latency(ours)} | {latency(theirs)} |"
                )
            else:
                print(f"| {payload} B | {rate(ours)} | {latency(ours)} |")


if __name__ == "__main__":
    main()
