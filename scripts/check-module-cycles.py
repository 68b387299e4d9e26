#!/usr/bin/env python3
"""Fails when the modules of a Rust crate import each other in a circle.

Reads the module tree from a crate root (`mod` lines, `#[path]` included,
inline `mod NAME { … }` blocks too), then every path a file names in code —
in `use` lines and written inline, from `crate::`, `super::`, `self::` or a
child module — and resolves each to the file of the module that defines
the name, following re-exports (`pub use`, globs included). Test modules (`#[cfg(test)] mod tests { … }`),
comments and string literals are left out. A file naming its own ancestor
(`super::…` up to `mod.rs`) is an edge like any other.

Usage: check-module-cycles.py CRATE_ROOT [CRATE_ROOT ...]
Prints each circle with the names that tie it, and exits 1 if there is one.
"""

import re
import sys
from pathlib import Path

IDENT = r"[A-Za-z_][A-Za-z0-9_]*"


def strip_code(text):
    """The text with comments and string/char literals blanked (lines kept)."""
    out, i, n = [], 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            i = n if j < 0 else j
        elif text.startswith("/*", i):
            depth, j = 1, i + 2
            while j < n and depth:
                if text.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif text.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            out.append("\n" * text.count("\n", i, j))
            i = j
        elif c == "r" and re.match(r'r#*"', text[i:i + 10]) and (i == 0 or not text[i - 1].isalnum()):
            hashes = re.match(r'r(#*)"', text[i:]).group(1)
            end = text.find('"' + hashes, i + 2 + len(hashes))
            end = n if end < 0 else end + 1 + len(hashes)
            out.append('""' + "\n" * text.count("\n", i, end))
            i = end
        elif c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            out.append('""' + "\n" * text.count("\n", i, j))
            i = j + 1
        elif c == "'" and re.match(r"'(\\.|[^\\'])'", text[i:i + 4]):
            m = re.match(r"'(\\.|[^\\'])'", text[i:i + 4])
            out.append("' '")
            i += len(m.group(0))
        else:
            out.append(c)
            i += 1
    return "".join(out)


def without_test_modules(code):
    """Drops `#[cfg(test)]` items (a module with its braces, or one line)."""
    result, i = [], 0
    for m in re.finditer(r"#\[cfg\(test\)\]", code):
        if m.start() < i:
            continue
        result.append(code[i:m.start()])
        j = m.end()
        brace, semi = code.find("{", j), code.find(";", j)
        if semi >= 0 and (brace < 0 or semi < brace):
            i = semi + 1
            continue
        depth, k = 0, brace
        while k < len(code):
            if code[k] == "{":
                depth += 1
            elif code[k] == "}":
                depth -= 1
                if depth == 0:
                    break
            k += 1
        i = k + 1
    result.append(code[i:])
    return "".join(result)


class Crate:
    def __init__(self, root):
        self.root = Path(root)
        self.files = {}  # module path (tuple) -> file
        self.modules_of = {}  # file -> module path
        self.code = {}
        self.walk((), self.root, self.root.parent)

    def walk(self, module, file, child_dir):
        self.files[module] = file
        self.modules_of[file] = module
        code = without_test_modules(strip_code(file.read_text()))
        self.code[file] = code
        for m in re.finditer(r'((?:#\[[^\]]*\]\s*)*)(?:pub(?:\([^)]*\))?\s+)?mod\s+(' + IDENT + r')\s*;', code):
            attrs, name = m.group(1), m.group(2)
            explicit = re.search(r'#\[path', attrs)
            if explicit:
                # The literal was blanked; read it from the original text.
                original = file.read_text()
                found = re.findall(r'#\[path\s*=\s*"([^"]+)"\]\s*(?:#\[[^\]]*\]\s*)*(?:pub(?:\([^)]*\))?\s+)?mod\s+' + name + r'\s*;', original)
                target = (file.parent / found[0]).resolve() if found else None
            else:
                candidates = [child_dir / f"{name}.rs", child_dir / name / "mod.rs"]
                target = next((c for c in candidates if c.exists()), None)
            if target is None or not target.exists():
                continue
            sub_dir = target.parent if target.name == "mod.rs" else target.parent / target.stem
            self.walk(module + (name,), target, sub_dir)

    def inline_modules(self, code):
        """`(start, end, name)` of every `mod NAME { … }` block in `code`."""
        blocks = []
        for m in re.finditer(r"\bmod\s+(" + IDENT + r")\s*\{", code):
            depth, k = 0, m.end() - 1
            while k < len(code):
                if code[k] == "{":
                    depth += 1
                elif code[k] == "}":
                    depth -= 1
                    if depth == 0:
                        break
                k += 1
            blocks.append((m.start(), k, m.group(1)))
        return blocks

    def module_at(self, file, position):
        """The module a position of `file` is in, inline `mod` blocks included."""
        module = self.modules_of[file]
        for start, end, name in self.blocks[file]:
            if start < position < end:
                module = module + (name,)
        return module

    def uses(self, file):
        """`(position, path segments, public, bound name)` of every name a
        `use` brings in; the bound name is the alias of `x as y`."""
        code = self.code[file]
        for m in re.finditer(r"(\bpub(?:\([^)]*\))?\s+)?\buse\s+([^;]+);", code):
            for module, name, bound in expand_use(m.group(2)):
                yield m.start(), module + [name], bool(m.group(1)), bound

    def absolute(self, module, parts):
        """`parts` as a path from the crate root, or None for another crate's."""
        first = parts[0]
        if first == "crate":
            return list(parts[1:])
        if first in ("super", "self"):
            base, rest = list(module), list(parts)
            while rest and rest[0] in ("super", "self"):
                if rest[0] == "super":
                    base = base[:-1]
                rest = rest[1:]
            return base + rest
        if tuple(module) + (first,) in self.files or self.is_inline(module, first):
            return list(module) + list(parts)
        return None

    def is_inline(self, module, name):
        file = self.files.get(tuple(module))
        return file is not None and any(n == name for _, _, n in self.blocks[file])

    def defines(self, file, name):
        return re.search(
            r"\b(?:struct|enum|trait|fn|type|const|static|union|mod)\s+" + re.escape(name) + r"\b|macro_rules!\s*" + re.escape(name),
            self.code[file],
        ) is not None

    def origin(self, module, name, seen=None):
        """The module that defines `name` as seen from `module`, following
        re-exports; None when it comes from another crate."""
        seen = seen or set()
        if (module, name) in seen or module not in self.files:
            return module
        seen.add((module, name))
        file = self.files[module]
        if self.defines(file, name):
            return module
        globs = []
        for position, parts, public, bound in self.uses(file):
            if self.module_at(file, position) != module:
                continue
            path = self.absolute(module, parts)
            if parts[-1] == "*":
                if path is not None:
                    globs.append(path[:-1])
                continue
            if bound != name:
                continue
            if path is None:
                return None  # another crate's name, brought in here
            source, cut = self.deepest(path[:-1])
            if cut == len(path) - 1:
                return self.origin(source, path[-1], seen)
            return source
        for glob in globs:
            source, cut = self.deepest(glob)
            if cut == len(glob) and self.defines(self.files[source], name):
                return source
        return module

    def deepest(self, path):
        for cut in range(len(path), -1, -1):
            if tuple(path[:cut]) in self.files:
                return tuple(path[:cut]), cut
        return (), 0

    def resolve(self, file, position, parts):
        """The file a path names, and the name: the defining module's file."""
        path = self.absolute(self.module_at(file, position), parts)
        if not path:
            return None
        module, cut = self.deepest(path)
        if cut < len(path):
            name = path[cut]
            if name not in ("*", "self"):
                module = self.origin(module, name)
                if module is None:
                    return None
        else:
            name = path[-1]
        return self.files[module], name

    def edges(self):
        self.blocks = {file: self.inline_modules(code) for file, code in self.code.items()}
        found = {}
        for file, code in self.code.items():
            for position, parts, _, _ in self.uses(file):
                self.add(found, file, position, parts)
            for m in re.finditer(r"(?<![A-Za-z0-9_:])(" + IDENT + r"(?:::" + IDENT + r")+)", code):
                if re.search(r"\buse\s+[^;]*$", code[max(0, m.start() - 200):m.start()]):
                    continue  # inside a `use`, counted above
                self.add(found, file, m.start(), m.group(1).split("::"))
        return found

    def add(self, found, file, position, parts):
        hit = self.resolve(file, position, parts)
        if hit and hit[0] != file:
            found.setdefault((file, hit[0]), set()).add(hit[1])


def expand_use(tree):
    """`a::{b, c::d as e}` as [(['a'], 'b', 'b'), (['a', 'c'], 'd', 'e')]."""
    tree = re.sub(r"\s+as\s+(" + IDENT + ")", r"@\1", tree)
    tree = re.sub(r"\s+", "", tree)
    results = []

    def go(prefix, text):
        depth, parts, current = 0, [], ""
        for ch in text:
            if ch == "{":
                depth += 1
            elif ch == "}":
                depth -= 1
            if ch == "," and depth == 0:
                parts.append(current)
                current = ""
            else:
                current += ch
        parts.append(current)
        for part in filter(None, parts):
            if "{" in part:
                head, inner = part.split("{", 1)
                go(prefix + [p for p in head.split("::") if p], inner[:-1])
            else:
                part, _, alias = part.partition("@")
                segments = [p for p in part.split("::") if p]
                if not segments:
                    continue
                name = segments[-1]
                if name == "self" and (prefix + segments[:-1]):
                    bound = alias or (prefix + segments[:-1])[-1]
                else:
                    bound = alias or name
                results.append((prefix + segments[:-1], name, bound))

    go([], tree)
    return results


def circles(edges):
    """Strongly connected components with more than one file (Tarjan)."""
    graph = {}
    for a, b in edges:
        graph.setdefault(a, set()).add(b)
        graph.setdefault(b, set())
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    sys.setrecursionlimit(10000)
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    failed = False
    for root in sys.argv[1:]:
        crate = Crate(root)
        edges = crate.edges()
        found = circles(edges)
        base = Path.cwd()
        rel = lambda p: str(p.resolve().relative_to(base)) if p.resolve().is_relative_to(base) else str(p)
        for component in found:
            failed = True
            print(f"{root}: import circle of {len(component)} files:")
            members = set(component)
            for (a, b), names in sorted(edges.items()):
                if a in members and b in members:
                    print(f"  {rel(a)} -> {rel(b)}: {', '.join(sorted(names))}")
        print(f"{root}: {len(crate.files)} modules, {len(edges)} imports between files, {len(found)} circles")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
