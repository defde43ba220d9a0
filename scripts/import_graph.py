"""The import graph of the `tracker` package (every import, top-level or inside a function) and
its cycles. The package is what the wheel installs: tracker/, and the folders that
pyproject.toml's [tool.setuptools.package-dir] maps into it (integrations/ is
tracker.integrations), each module under its installed name.

    python scripts/import_graph.py          # prints each cycle (strongly connected component)

Used by tests/test_layering.py: no cycle among tracker's modules."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PKG = ROOT / "tracker"


def package_dirs(root: Path = ROOT) -> dict[str, Path]:
    """Installed package name -> its folder: `tracker` and the subpackages that pyproject.toml
    maps from elsewhere (the same table the build uses, so the graph cannot drift from it)."""
    try:
        import tomllib
    except ModuleNotFoundError:   # Python < 3.11
        import tomli as tomllib
    with open(root / "pyproject.toml", "rb") as f:
        mapped = tomllib.load(f).get("tool", {}).get("setuptools", {}).get("package-dir", {})
    out = {"tracker": root / "tracker"}
    out.update({name: root / folder for name, folder in mapped.items()
                if name.startswith("tracker.")})
    return out


def module_name(path: Path, package: str = "tracker", folder: Path = PKG) -> str:
    """The installed name of `path`, a module in `folder`, which installs as `package`."""
    parts = [*package.split("."), *path.relative_to(folder).with_suffix("").parts]
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def modules(root: Path = ROOT) -> dict[str, Path]:
    out: dict[str, Path] = {}
    for package, folder in package_dirs(root).items():
        out.update({module_name(p, package, folder): p for p in sorted(folder.rglob("*.py"))})
    return out


def _resolve(mod: str, is_pkg: bool, level: int, name: str | None) -> str:
    base = mod.split(".") if is_pkg else mod.split(".")[:-1]
    if level > 1:
        base = base[: len(base) - (level - 1)]
    return ".".join(base + ([name] if name else []))


def graph() -> dict[str, set[str]]:
    mods = modules()
    edges: dict[str, set[str]] = {m: set() for m in mods}
    for mod, path in mods.items():
        is_pkg = path.name == "__init__.py"
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = _resolve(mod, is_pkg, node.level, node.module)
                else:
                    base = node.module or ""
                # `from pkg import sub` depends on the submodule; `from pkg import name` on pkg
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base
                           for a in node.names]
            if not targets or _type_checking_only(tree, node):
                continue
            for t in targets:
                # the deepest tracker module the name is (a submodule, else its package)
                while t and t not in mods:
                    t = t.rpartition(".")[0]
                if t and t != mod and t.startswith("tracker"):
                    edges[mod].add(t)
    return edges


def _type_checking_only(tree: ast.AST, node: ast.AST) -> bool:
    for parent in ast.walk(tree):
        if (isinstance(parent, ast.If) and "TYPE_CHECKING" in ast.unparse(parent.test)
                and any(n is node for b in parent.body for n in ast.walk(b))):
            return True
    return False


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = 0
    for root in edges:
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on.add(root)
        while work:
            v, it = work[-1]
            w = next(it, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = counter
                    counter += 1
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(sorted(edges[w]))))
                elif w in on:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    out.append(sorted(comp))
    return out


def main() -> int:
    found = cycles(graph())
    for comp in found:
        print(f"cycle of {len(comp)}: " + " ".join(comp))
    print(f"{len(found)} cycle(s)")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
