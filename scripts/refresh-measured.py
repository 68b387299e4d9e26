#!/usr/bin/env python3
"""Refreshes the Findings and the tables of docs/guide/measured.md from a
scenario run's report.md: each table of the page is replaced by the report's
table with the same header row, and the Findings list by the report's.
The prose between them is left as it is, to be read against the new figures.

Usage: refresh-measured.py [REPORT_MD] [PAGE_MD]
(defaults: docs/scenarios/report.md docs/guide/measured.md)"""

import re
import sys
from pathlib import Path


def header_key(line):
    return tuple(cell.strip() for cell in line.strip().strip("|").split("|"))


def tables(lines):
    """(start, end) of every Markdown table: a header, a rule, its rows."""
    found, i = [], 0
    while i < len(lines) - 1:
        if lines[i].startswith("|") and re.match(r"^\|[-| :]+\|$", lines[i + 1].strip()):
            j = i + 2
            while j < len(lines) and lines[j].startswith("|"):
                j += 1
            found.append((i, j))
            i = j
        else:
            i += 1
    return found


def matching(report_tables, header):
    """The report's table with this header, or the one whose header starts
    with these columns, cut to them (the page shows fewer columns)."""
    for table in report_tables:
        if header_key(table[0]) == header:
            return table
    for table in report_tables:
        if header_key(table[0])[: len(header)] == header:
            cut = []
            for line in table:
                cells = line.strip().strip("|").split("|")
                cut.append("|" + "|".join(cells[: len(header)]) + "|")
            return cut
    return None


def findings(lines):
    """(start, end) of the bullet list that follows a line naming the Findings."""
    for i, line in enumerate(lines):
        if "Findings" in line:
            j = i + 1
            while j < len(lines) and not lines[j].startswith("- "):
                j += 1
            k = j
            while k < len(lines) and lines[k].startswith("- "):
                k += 1
            if k > j:
                return j, k
    return None


def main():
    report_path = Path(sys.argv[1] if len(sys.argv) > 1 else "docs/scenarios/report.md")
    page_path = Path(sys.argv[2] if len(sys.argv) > 2 else "docs/guide/measured.md")
    report = report_path.read_text().split("\n")
    page = page_path.read_text().split("\n")
    report_tables = [report[a:b] for a, b in tables(report)]
    replaced, missing = 0, []
    for a, b in reversed(tables(page)):
        new = matching(report_tables, header_key(page[a]))
        if new is None:
            missing.append(page[a].strip())
            continue
        page[a:b] = new
        replaced += 1
    span, source = findings(page), findings(report)
    if span and source:
        page[span[0]:span[1]] = report[source[0]:source[1]]
    page_path.write_text("\n".join(page))
    print(f"{page_path}: {replaced} tables and the Findings refreshed from {report_path}")
    if missing:
        sys.exit("no table in the report with the header of: " + "; ".join(missing))


if __name__ == "__main__":
    main()
