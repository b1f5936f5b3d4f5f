#!/usr/bin/env python3
"""Import cycles between the library's modules (src/ and daemon/, one file = one module).

Edges are the paths a file names: `use crate::a::b`, `super::x`, `self::y` (groups expanded),
resolved to the longest module prefix, outside `#[cfg(test)] mod tests` and comments; a
parent's `mod child;` declaration is not an edge. Prints every strongly connected component of
more than one module and exits 1 if there is any (tests/structure.rs runs it). Usage:
scripts/module-cycles.py [repo root]."""
import os, re, sys
root = sys.argv[1] if len(sys.argv) > 1 else '.'
os.chdir(root)
files = sorted(
    os.path.join(d, f)[2:] if d.startswith('./') else os.path.join(d, f)
    for top in ('src', 'daemon')
    for d, _, names in os.walk(top)
    for f in names
    if f.endswith('.rs')
)
mods = {}
for f in files:
    if f.startswith('src/bin/'): continue
    if f == 'src/lib.rs': path = ()
    elif f.startswith('daemon/'):
        p = f[len('daemon/'):-3].split('/')
        if p[-1] == 'mod': p = p[:-1]
        path = ('daemon',) + tuple(p)
    else:
        p = f[len('src/'):-3].split('/')
        if p[-1] == 'mod': p = p[:-1]
        path = tuple(p)
    mods[path] = f
def resolve(path):
    # longest prefix that is a module
    for i in range(len(path), -1, -1):
        if tuple(path[:i]) in mods: return tuple(path[:i])
    return ()
edges = {m:set() for m in mods}
for m, f in mods.items():
    src = open(f).read()
    # drop #[cfg(test)] mod tests { ... } roughly: cut from 'mod tests {' to end
    idx = src.find('#[cfg(test)]\nmod tests')
    if idx >= 0: src = src[:idx]
    src = re.sub(r'//.*', '', src)
    isdir = f.endswith('mod.rs') or f == 'src/lib.rs'
    parent = m if isdir else m[:-1]
    # expand `use x::{a, b::c}` groups crudely: capture paths
    for mt in re.finditer(r'\b(crate|super|self)((?:::[A-Za-z_][A-Za-z0-9_]*)+)(::\{([^;]*?)\})?', src):
        head, rest, grp = mt.group(1), mt.group(2), mt.group(4)
        segs = rest.strip(':').split('::')
        if head == 'crate': base = []
        elif head == 'super': base = list(parent[:-1]) if isdir else list(parent)
        else: base = list(m)
        # super from a non-dir file refers to parent module
        if head == 'super' and not isdir: base = list(m[:-1])
        if head == 'super' and isdir: base = list(m[:-1])
        targets = [base + segs]
        if grp:
            for g in re.split(r',', grp):
                g = g.strip().split(' as ')[0].strip('{} ')
                if g and g != 'self': targets.append(base + segs + g.split('::'))
        for t in targets:
            r = resolve(t)
            if r != m and r is not None and not (len(r) < len(m) and m[:len(r)] == r and r in [()] ):
                edges[m].add(r)
    # declared children are not edges
    for c in re.findall(r'^\s*(?:pub(?:\([a-z]+\))? )?mod ([a-z_0-9]+);', src, re.M):
        edges[m].discard(m + (c,))
# Tarjan
index = {}; low = {}; st = []; on = set(); sccs = []; i = [0]
sys.setrecursionlimit(10000)
def sc(v):
    index[v] = low[v] = i[0]; i[0] += 1; st.append(v); on.add(v)
    for w in edges[v]:
        if w not in edges: continue
        if w not in index: sc(w); low[v] = min(low[v], low[w])
        elif w in on: low[v] = min(low[v], index[w])
    if low[v] == index[v]:
        comp = []
        while True:
            w = st.pop(); on.discard(w); comp.append(w)
            if w == v: break
        sccs.append(comp)
for v in edges:
    if v not in index: sc(v)
n = 0
for c in sccs:
    if len(c) > 1:
        n += 1
        names = sorted('::'.join(x) or 'lib' for x in c)
        print('cycle:', ', '.join(names))
        for x in c:
            print('   ', '::'.join(x) or 'lib', '->', ', '.join(sorted('::'.join(y) or 'lib' for y in edges[x] if y in c)))
print(f'{n} cycles')
sys.exit(1 if n else 0)
