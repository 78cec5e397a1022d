#!/usr/bin/env python3
"""Fails when two or more files of one crate import each other, directly or round a circle.

An edge A -> B means that file A names an item of file B through `crate::…` or `super::…`
(in a `use` or in a path in code). A crate root's or a directory's `pub use` re-exports are its
facade, not an import, and a name reached through them counts as a name of the file that
defines it. `mod` declarations are not imports. Test modules (`#[cfg(test)]` to the end of a
file) are left out: a test may reach across the crate.

Usage: .ci/import_circles.py CRATE_SRC_DIR...   (exit 1 and the circles printed when any)
"""
import os
import re
import sys

USE = re.compile(r"\b(?:pub(?:\([^)]*\))?\s+)?use\s+((?:crate|super)\b[^;]*);", re.S)
PATH = re.compile(r"\b((?:crate|super)(?:::[A-Za-z_][A-Za-z0-9_]*)+)")
REEXPORT = re.compile(r"^\s*pub use\s+([^;]+);", re.M)


def modules(src):
    """Module path (tuple) -> file, for every .rs file under src."""
    found = {}
    for root, _, files in os.walk(src):
        for name in files:
            if not name.endswith(".rs"):
                continue
            rel = os.path.relpath(os.path.join(root, name), src)[:-3].split(os.sep)
            if rel[-1] in ("lib", "main", "mod"):
                rel = rel[:-1]
            found[tuple(rel)] = os.path.join(root, name)
    return found


def code_of(path):
    text = open(path, encoding="utf-8").read()
    cut = text.find("#[cfg(test)]")
    text = text if cut < 0 else text[:cut]
    return re.sub(r"//[^\n]*", "", text)


def expand(tree):
    """`crate::{a, b::{c, d}}` -> ['crate::a', 'crate::b::c', 'crate::b::d']."""
    tree = re.sub(r"\s+", "", tree)
    if "{" not in tree:
        return [tree.split(" as ")[0]]
    head, _, rest = tree.partition("{")
    inner = rest[: rest.rfind("}")]
    parts, depth, start = [], 0, 0
    for i, c in enumerate(inner):
        depth += c == "{"
        depth -= c == "}"
        if c == "," and depth == 0:
            parts.append(inner[start:i])
            start = i + 1
    parts.append(inner[start:])
    out = []
    for part in filter(None, parts):
        out += expand(head + part)
    return out


def main(srcs):
    circles = []
    for src in srcs:
        mods = modules(src)
        facade = {}  # (module, name) -> module that defines it, through `pub use`
        for mod, path in mods.items():
            if os.path.basename(path) not in ("lib.rs", "mod.rs"):
                continue
            for tree in REEXPORT.findall(code_of(path)):
                for item in expand(tree):
                    segs = [s for s in item.split("::") if s not in ("self", "crate")]
                    if segs and not item.startswith("super"):
                        target = mod + tuple(segs[:-1]) if not item.startswith("crate") else tuple(segs[:-1])
                        facade[(mod, segs[-1])] = target

        def resolve(mod, ref, is_dir):
            segs = ref.split("::")
            if segs[0] == "crate":
                base, segs = (), segs[1:]
            else:
                base = mod if is_dir else mod[:-1]
                while segs and segs[0] == "super":
                    base, segs = base[:-1], segs[1:]
            full = base + tuple(s for s in segs if s != "self")
            for n in range(len(full), -1, -1):
                if full[:n] in mods:
                    owner = full[:n]
                    rest = full[n:]
                    if rest and (owner, rest[0]) in facade:
                        return facade[(owner, rest[0])]
                    return owner
            return None

        edges = {m: set() for m in mods}
        for mod, path in mods.items():
            text = code_of(path)
            is_dir = os.path.basename(path) in ("lib.rs", "mod.rs")
            if is_dir:
                text = REEXPORT.sub("", text)
            refs = [r for tree in USE.findall(text) for r in expand(tree)]
            refs += PATH.findall(USE.sub("", text))
            for ref in refs:
                target = resolve(mod, ref, is_dir)
                while target is not None and target not in mods:
                    target = target[:-1]
                if target is not None and target != mod:
                    edges[mod].add(target)
        circles += find_circles(edges, mods)
    for circle in circles:
        print("import circle: " + " -> ".join(circle))
    return 1 if circles else 0


def find_circles(edges, mods):
    """Strongly connected components of more than one file (Tarjan), shown as file lists."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges[v]:
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
            if len(comp) > 1:
                out.append(sorted(mods[m] for m in comp))

    sys.setrecursionlimit(10000)
    for v in list(edges):
        if v not in index:
            visit(v)
    return out


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:] or ["src", "jobs/src", "cluster/src", "pipeline/src", "deploy/src"]))
