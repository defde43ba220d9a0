"""The package's layers, checked on its source: no import cycle; the accounting and the run
directory below the report, the API, the CLI (and, for accounting, the exporters); the run
directory's file names spelled in one module; no test or module reading the shared data
checkout; a CI entry point that cannot swallow a failure.

Each rule is a helper run on the real tree, and once more on a planted violation, so a helper
that found nothing because it looked at nothing fails here too."""

from __future__ import annotations

import ast
import functools
import importlib.util
import re
import sys
from collections.abc import Iterable
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent
TRACKER = ROOT / "tracker"
NAMES_MODULE = TRACKER / "rundir" / "names.py"

# The run directory's files whose names only tracker/rundir/names.py may spell.
RUN_FILES = ("samples.jsonl", "summary.json", "run.json", "steps.bin", "windows.json",
             "snapshot.json")

# layer -> the packages it must not import (a dependency pointing up the stack)
FORBIDDEN = {
    "tracker.accounting": ("tracker.report", "tracker.api", "tracker.cli", "tracker.exporters"),
    "tracker.rundir": ("tracker.report", "tracker.api", "tracker.cli"),
    # the options are checked below what is built from them (a Price: accounting/price.py;
    # the exporters' options: exporters/options.py)
    "tracker.config": ("tracker.summary_build", "tracker.summary", "tracker.api", "tracker.cli",
                       "tracker.report", "tracker.job", "tracker.rebuild", "tracker.assembly",
                       "tracker.rundir"),
}

# Spelled in two pieces so this file does not match its own search.
SHARED = "sh" + "ared"   # split, so that no scan (here or in test_test_data.py) finds this file
SHARED_PATHS = (".." + "/" + SHARED, SHARED + "/data")
SWALLOW = "|| " + "true"


def _import_graph() -> ModuleType:
    """scripts/import_graph.py, loaded from its path (scripts/ is not a package)."""
    path = ROOT / "scripts" / "import_graph.py"
    spec = importlib.util.spec_from_file_location("_import_graph", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(spec.name, module)
    spec.loader.exec_module(module)
    return module


ig = _import_graph()


@functools.cache
def _edges() -> dict[str, set[str]]:
    """The real graph, built once: building it parses every module (slow on a loaded box)."""
    return ig.graph()


def _copy(edges: dict[str, set[str]]) -> dict[str, set[str]]:
    return {m: set(d) for m, d in edges.items()}


# -- helpers ------------------------------------------------------------------------------------
def _within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def upward_imports(edges: dict[str, set[str]], layer: str,
                   forbidden: Iterable[str]) -> list[tuple[str, str]]:
    """(importer, imported) for each module of `layer` importing one of `forbidden`."""
    banned = tuple(forbidden)
    return sorted((mod, dep) for mod, deps in edges.items() if _within(mod, layer)
                  for dep in deps if any(_within(dep, b) for b in banned))


def _docstring_nodes(tree: ast.AST) -> set[int]:
    """ids of the docstring constants (a module's, class's or function's first statement)."""
    out: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            first = node.body[0] if node.body else None
            if (isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant)
                    and isinstance(first.value.value, str)):
                out.add(id(first.value))
    return out


def file_name_literals(source: str, names: Iterable[str] = RUN_FILES) -> set[str]:
    """The names spelled in `source` as a file name: a str constant equal to one, or one of
    whose path components is one (`"summary.json"`, `f"{d}/summary.json"`; the literal parts
    of an f-string are constants too). Docstrings and comments do not count, nor a name in a
    sentence of a message ("summary.json is damaged"): that tells a person which file, it does
    not open one."""
    tree = ast.parse(source)
    skip = _docstring_nodes(tree)
    wanted = set(names)
    found: set[str] = set()
    for node in ast.walk(tree):
        if (isinstance(node, ast.Constant) and isinstance(node.value, str)
                and id(node) not in skip):
            found |= wanted.intersection(re.split(r"[/\\]", node.value))
    return found


def spellings(root: Path, names: Iterable[str] = RUN_FILES) -> dict[str, list[str]]:
    """name -> the modules under `root` that spell it (see file_name_literals)."""
    wanted = tuple(names)
    out: dict[str, list[str]] = {n: [] for n in wanted}
    for path in sorted(root.rglob("*.py")):
        for name in file_name_literals(path.read_text(encoding="utf-8"), wanted):
            out[name].append(path.relative_to(root.parent).as_posix())
    return out


def shared_readers(*roots: Path, base: Path = ROOT) -> list[str]:
    """Code files (.py, .sh) under `roots` whose text names the shared data checkout. Prose
    (a SOURCES.md saying where a table was built from) reads nothing and is not searched."""
    hits = []
    for root in roots:
        for path in sorted(root.rglob("*")):
            if path.suffix in (".py", ".sh") and path.is_file():
                text = path.read_text(encoding="utf-8", errors="replace")
                if any(s in text for s in SHARED_PATHS):
                    hits.append(path.relative_to(base).as_posix())
    return hits


# -- (a) no import cycle ------------------------------------------------------------------------
def test_no_import_cycle_among_tracker_modules():
    edges = _edges()
    assert "tracker.accounting.breakdown" in edges and len(edges) > 50   # the real tree
    assert ig.cycles(edges) == []


def test_a_planted_cycle_is_found():
    edges = _copy(_edges())
    edges["tracker.rundir.names"].add("tracker.rundir.liveness")   # liveness imports names
    found = ig.cycles(edges)
    assert ["tracker.rundir.liveness", "tracker.rundir.names"] in found


# -- (b) the lower layers import nothing above them ---------------------------------------------
@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_lower_layer_imports_nothing_above_it(layer):
    edges = _edges()
    assert any(_within(m, layer) and deps for m, deps in edges.items())   # it imports something
    assert upward_imports(edges, layer, FORBIDDEN[layer]) == []


def test_a_planted_upward_import_is_found():
    edges = _copy(_edges())
    edges["tracker.accounting.advice"].add("tracker.report.html")
    edges["tracker.rundir.ledger"].add("tracker.api")
    assert upward_imports(edges, "tracker.accounting", FORBIDDEN["tracker.accounting"]) == [
        ("tracker.accounting.advice", "tracker.report.html")]
    assert upward_imports(edges, "tracker.rundir", FORBIDDEN["tracker.rundir"]) == [
        ("tracker.rundir.ledger", "tracker.api")]
    edges["tracker.config"].add("tracker.summary_build")
    assert upward_imports(edges, "tracker.config", FORBIDDEN["tracker.config"]) == [
        ("tracker.config", "tracker.summary_build")]
    # a sibling whose name only starts like a forbidden one is not forbidden
    assert upward_imports({"tracker.rundir.x": {"tracker.reporting"}}, "tracker.rundir",
                          ("tracker.report",)) == []


# -- (c) the run directory's file names are spelled once -----------------------------------------
def test_run_file_names_are_spelled_only_in_rundir_names():
    where = spellings(TRACKER)
    assert where == {n: ["tracker/rundir/names.py"] for n in RUN_FILES}


def test_a_planted_file_name_literal_is_found():
    planted = '''"""Reads summary.json (a docstring: not counted)."""
import json
def load(d):
    """From run.json."""
    # steps.bin: a comment, not counted
    a = d / "summary.json"
    b = open(f"{d}/samples.jsonl")
    c = "snapshot.json is damaged"     # a message: not a file name
    return a, b, c, "x/windows.json"
'''
    assert file_name_literals(planted) == {"summary.json", "samples.jsonl", "windows.json"}
    assert file_name_literals(NAMES_MODULE.read_text(encoding="utf-8")) == set(RUN_FILES)


def test_a_planted_module_spelling_a_name_is_found(tmp_path):
    pkg = tmp_path / "tracker"
    (pkg / "rundir").mkdir(parents=True)
    (pkg / "rundir" / "names.py").write_text(NAMES_MODULE.read_text(encoding="utf-8"))
    (pkg / "stray.py").write_text('PATH = "steps.bin"\n')
    where = spellings(pkg)
    assert where["steps.bin"] == ["tracker/rundir/names.py", "tracker/stray.py"]
    assert where["run.json"] == ["tracker/rundir/names.py"]


# -- (d) nothing reads the shared data checkout -------------------------------------------------
def test_no_test_or_module_reads_the_shared_checkout():
    assert shared_readers(ROOT / "tests", TRACKER) == []


def test_a_planted_shared_reader_is_found(tmp_path):
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_x.py").write_text('DATA = "' + SHARED_PATHS[0] + '/x.csv"\n')
    (tmp_path / "tests" / "fetch.sh").write_text("cp " + SHARED_PATHS[1] + "/a .\n")
    (tmp_path / "tests" / "SOURCES.md").write_text("built from " + SHARED_PATHS[1] + "\n")
    (tmp_path / "tests" / "clean.py").write_text("DATA = 'data/x.csv'\n")
    found = shared_readers(tmp_path / "tests", base=tmp_path)
    assert found == ["tests/fetch.sh", "tests/test_x.py"]


# -- (e) CI cannot swallow a failure -----------------------------------------------------------
def swallows_failure(script: str) -> bool:
    return SWALLOW in script


def test_ci_entry_point_swallows_no_failure():
    script = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert "test.sh" in script   # the real entry point
    assert not swallows_failure(script)


def test_a_planted_swallowed_failure_is_found():
    assert swallows_failure("set -e\n./scripts/test.sh " + SWALLOW + "\n")
    assert not swallows_failure("set -e\n./scripts/test.sh\n")
