#!/usr/bin/env python3
"""Fails on a broken pointer in the repository's Markdown: a relative link
`[text](path)` or `![alt](path)` whose file is missing, and a code span that
names a repository path (`examples/…`, `src/…`, `tests/…`, `docs/…`,
`adapters/…`, `benches/…`, `scripts/…`, `proto/…`) that does not exist.
A path may name an example or a test by its name (`examples/latency` for
`examples/latency.rs`) or a test in a file (`tests/delivery_outbox.rs::a_case`).
Anchors (`#…`) and URLs with a scheme are left alone; CHANGELOG.md is
history and names files as they were.

Usage: check-doc-links.py [FILE_OR_DIR ...]   (default: every tracked *.md)"""

import re
import subprocess
import sys
from pathlib import Path

ROOTS = ("examples/", "src/", "tests/", "docs/", "adapters/", "benches/", "scripts/", "proto/")
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
SPAN = re.compile(r"`([^`\s]+)`")


def markdown_files(args):
    if not args:
        listed = subprocess.run(["git", "ls-files", "*.md"], capture_output=True, text=True, check=True)
        return [Path(p) for p in listed.stdout.split() if p != "CHANGELOG.md" and Path(p).exists()]
    files = []
    for arg in map(Path, args):
        files.extend(sorted(arg.rglob("*.md")) if arg.is_dir() else [arg])
    return files


def exists(path):
    return Path(path).exists() or Path(path + ".rs").exists()


def broken(file):
    text = file.read_text()
    # Fenced code blocks hold commands and output, not pointers.
    text = re.sub(r"```.*?```", "", text, flags=re.S)
    for target in LINK.findall(text):
        path = target.split("#", 1)[0]
        if not path or re.match(r"^[a-z][a-z0-9+.-]*:", path):
            continue
        if not (file.parent / path).exists():
            yield f"link `{target}`"
    for span in SPAN.findall(text):
        path = span.rstrip(".,:;)").split("::", 1)[0]
        if path.startswith(ROOTS) and not any(c in path for c in "*<>{}$|=?") and not exists(path):
            yield f"path `{path}`"


def main():
    failures = 0
    files = markdown_files(sys.argv[1:])
    for file in files:
        for what in broken(file):
            print(f"{file}: broken {what}")
            failures += 1
    print(f"{len(files)} Markdown files, {failures} broken pointers")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
