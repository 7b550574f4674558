#!/usr/bin/env python3
"""Import circles between the files of src/.

A file depends on another when it names an item of it: `use crate::a::b`,
`super::x`, or a path such as `crate::a::b::f(..)` or `child::f(..)` in
code. A module file's
`pub use child::Item` is a facade, not a dependency: naming
`crate::a::Item` counts as a dependency on the child that defines `Item`.
`mod child;` is not a dependency either.

Prints every circle of more than MAX files (strongly connected components
of the file graph) and exits 1 if there is one; `--all` prints every
circle, two-file ones too.

    python3 scripts/import-circles.py [--all]
"""

import os
import re
import sys

MAX = 2
ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src")


def module_files():
    """Module path (tuple) -> file, for every .rs file under src/."""
    mods = {}
    for dirpath, _, files in os.walk(ROOT):
        for f in files:
            if not f.endswith(".rs"):
                continue
            rel = os.path.relpath(os.path.join(dirpath, f), ROOT)
            parts = rel[:-3].split(os.sep)
            if parts[-1] == "mod":
                parts = parts[:-1]
            if parts in (["lib"], ["main"]):
                parts = []
                if f == "main.rs":
                    continue
            mods[tuple(parts)] = rel
    return mods


def strip(text):
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    text = re.sub(r"//[^\n]*", "", text)
    text = re.sub(r'"(\\.|[^"\\])*"', '""', text)
    # Unit tests beside the code may use anything of their parent.
    text = re.sub(r"#\[cfg\(test\)\]\s*mod\s+\w+\s*\{.*", "", text, flags=re.S)
    return text


def expand(path):
    """`a::{b, c::{d}}` -> [a::b, a::c::d]."""
    m = re.search(r"\{", path)
    if not m:
        return [path]
    head = path[: m.start()]
    depth, start, items = 0, m.start() + 1, []
    for i in range(m.start(), len(path)):
        ch = path[i]
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                items.append(path[start:i])
                break
        elif ch == "," and depth == 1:
            items.append(path[start:i])
            start = i + 1
    out = []
    for it in items:
        it = it.strip()
        if it:
            out.extend(expand(head + it))
    return out


def paths_in(text):
    """Every crate::/super::/self:: path of a file."""
    found = []
    # Re-exports are the facade, resolved where an item is named.
    text = re.sub(r"\bpub(?:\([^)]*\))?\s+use\s+[^;]+;", "", text)
    for m in re.finditer(r"\buse\s+([^;]+);", text):
        for p in expand(re.sub(r"\s+", "", re.sub(r"\s+as\s+\w+", "", m.group(1)))):
            found.append(re.sub(r"\bas\w+$", "", p))
    # Paths written in code (`crate::x::f(...)`); a `use` line's own
    # prefix (`super::m` of `super::m::{A, B}`) is not one.
    text = re.sub(r"\buse\s+[^;]+;", "", text)
    # Relative ones too (`session::ClientSession::new`, a child module's
    # item): a path whose first name is no module here resolves to none.
    for m in re.finditer(r"(?<![:\w])([A-Za-z_]\w*(?:::\w+)+)", text):
        found.append(m.group(1))
    return found


def main():
    mods = module_files()
    reexports = {}  # (module, name) -> module that defines it
    for mod, rel in mods.items():
        text = strip(open(os.path.join(ROOT, rel)).read())
        for m in re.finditer(r"\bpub(?:\([^)]*\))?\s+use\s+([^;]+);", text):
            for p in expand(re.sub(r"\s+", "", re.sub(r"\s+as\s+\w+", "", m.group(1)))):
                parts = p.split("::")
                if parts[0] in ("crate",):
                    target = tuple(parts[1:-1])
                elif parts[0] == "super":
                    target = mod[:-1] + tuple(parts[1:-1])
                else:
                    target = mod + tuple(parts[:-1])
                reexports[(mod, parts[-1])] = target

    def resolve(parts):
        """The file a module path names, following facade re-exports."""
        parts = tuple(parts)
        for n in range(len(parts), 0, -1):
            if parts[:n] in mods:
                mod = parts[:n]
                rest = parts[n:]
                target = reexports.get((mod, rest[0])) if rest else None
                if target is not None and target != mod:
                    # The item, named again in the module that defines it
                    # (which may re-export it in turn).
                    return resolve(target + rest)
                return mod
        return None

    graph = {m: set() for m in mods}
    for mod, rel in mods.items():
        here = mod
        text = strip(open(os.path.join(ROOT, rel)).read())
        for p in paths_in(text):
            parts = p.split("::")
            if parts[0] == "crate":
                full = parts[1:]
            elif parts[0] == "super":
                base = list(here)
                while parts and parts[0] == "super":
                    base = base[:-1]
                    parts = parts[1:]
                full = base + parts
            elif parts[0] == "self":
                full = list(here) + parts[1:]
            else:
                full = list(here) + parts
            target = resolve(full)
            if target is not None and target != mod and target != ():
                graph[mod].add(target)

    if "--edges" in sys.argv:
        for m in sorted(graph, key=lambda m: mods[m]):
            print(mods[m], "->", ", ".join(sorted(mods[t] for t in graph[m])))
        return 0
    # Tarjan's strongly connected components.
    index, low, on, stack, sccs = {}, {}, set(), [], []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            sccs.append(comp)

    sys.setrecursionlimit(10000)
    for v in graph:
        if v not in index:
            visit(v)
    show_all = "--all" in sys.argv
    bad = False
    for comp in sccs:
        if len(comp) < 2:
            continue
        if len(comp) > MAX:
            bad = True
        elif not show_all:
            continue
        names = sorted(mods[m] for m in comp)
        print(f"circle of {len(comp)} files: " + ", ".join(names))
    if bad:
        print(f"error: import circles of more than {MAX} files in src/", file=sys.stderr)
        return 1
    print(f"no import circle of more than {MAX} files in src/ ({len(mods)} files)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
