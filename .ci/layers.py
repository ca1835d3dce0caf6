#!/usr/bin/env python3
"""Import cycles between the top-level modules of node/ (issue "The core on seams").

A top-level module is node/X.rs with everything under node/X/ (tests included). Every
`crate::X` path in its files is an edge to module X; so is a name the crate root re-exports
(`crate::NodeHandle` counts as `node`), and each name of a `crate::{a, b::c}` group.
Prints the edges of every cycle (strongly connected component of more than one module) and
exits 1 if there is any; `--edges` prints every edge. `--allow a,b,c` tolerates a cycle made of
those modules only (or fewer of them), the ones still being untangled: a cycle that takes in any
other module fails, so no new one creeps in while the last is undone. `.ci/run` runs it so.
"""
import os
import re
import sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "node")


def modules():
    mods = {}
    for name in os.listdir(ROOT):
        path = os.path.join(ROOT, name)
        if name.endswith(".rs") and name not in ("lib.rs", "main.rs"):
            mods.setdefault(name[:-3], []).append(path)
        elif os.path.isdir(path):
            for dirpath, _, files in os.walk(path):
                for f in files:
                    if f.endswith(".rs"):
                        mods.setdefault(name, []).append(os.path.join(dirpath, f))
    return mods


def root_reexports():
    """Names `pub use X::{…}` / `pub use X::Name` at the crate root, mapped to module X."""
    text = open(os.path.join(ROOT, "lib.rs")).read()
    out = {}
    for m in re.finditer(r"pub use (\w+)::(\{[^}]*\}|\w+)\s*;", text):
        module, names = m.group(1), m.group(2).strip("{}")
        for n in names.split(","):
            n = n.strip().split(" as ")[-1].strip()
            if n:
                out[n] = module
    return out


def strip_comments(text):
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    return "\n".join(line.split("//")[0] for line in text.splitlines())


def group_heads(body):
    """The first path segment of each item of a `{…}` use group (nested groups flattened)."""
    heads, depth, item = [], 0, ""
    for ch in body:
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
        if ch == "," and depth == 0:
            heads.append(item)
            item = ""
        else:
            item += ch
    heads.append(item)
    return [h.strip().split("::")[0].strip("{} \n") for h in heads if h.strip()]


def edges(mods, reexports):
    found = {}
    for mod, files in mods.items():
        for path in files:
            text = strip_comments(open(path).read())
            targets = re.findall(r"crate::(\w+)", text)
            for m in re.finditer(r"crate::\{", text):
                depth, i = 1, m.end()
                while depth and i < len(text):
                    depth += {"{": 1, "}": -1}.get(text[i], 0)
                    i += 1
                targets += group_heads(text[m.end() : i - 1])
            for t in targets:
                target = t if t in mods else reexports.get(t)
                if target and target != mod:
                    found.setdefault((mod, target), set()).add(os.path.relpath(path, ROOT))
    return found


def cycles(nodes, found):
    graph = {n: sorted({b for (a, b) in found if a == n}) for n in nodes}
    index, low, stack, on, comps, counter = {}, {}, [], set(), [], [0]

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
            if len(comp) > 1:
                comps.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for n in sorted(nodes):
        if n not in index:
            visit(n)
    return comps


def main():
    mods = modules()
    found = edges(mods, root_reexports())
    if "--edges" in sys.argv:
        for (a, b), files in sorted(found.items()):
            print(f"{a} -> {b}  ({', '.join(sorted(files))})")
    comps = cycles(mods, found)
    allowed = []
    for i, arg in enumerate(sys.argv):
        if arg == "--allow" and i + 1 < len(sys.argv):
            allowed.append(set(sys.argv[i + 1].split(",")))
    tolerated = [c for c in comps if any(set(c) <= a for a in allowed)]
    comps = [c for c in comps if c not in tolerated]
    for comp in tolerated:
        print("tolerated cycle (being untangled): " + ", ".join(comp))
    for comp in comps:
        print("cycle: " + ", ".join(comp))
        for (a, b), files in sorted(found.items()):
            if a in comp and b in comp:
                print(f"  {a} -> {b}  ({', '.join(sorted(files))})")
    if comps:
        print(f"{len(comps)} import cycle(s) between the top-level modules of node/")
        return 1
    other = " other" if tolerated else ""
    print(f"no{other} import cycle between the {len(mods)} top-level modules of node/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
