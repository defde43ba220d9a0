"""Sweep comparison: several runs (or jobs) side by side, the best of each metric marked and the
others' difference to it in %.

    energy-tracker report RUN1 RUN2 RUN3 --compare           # a table on the terminal
    energy-tracker report RUN1 RUN2 RUN3 --compare --html    # ./compare.html

The page is the index page (index_page.py) holding only these runs, all picked, with its
comparison view open: energy, emissions, energy per step/sample/token, time, mean power, and
the power timelines overlaid on a common time-since-start axis. It is written to the current
directory by default, never into a run directory (a reader writes nothing there).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from ..accounting.inventory import discover
from ..errors import ConfigError
from ..rundir.names import JOB_MANIFEST, MANIFEST
from ..rundir.runlog import write_text_atomic
from .index_page import render_index, row_of

COMPARE_HTML = "compare.html"

# key, label, unit: lower is better for each
METRICS = [("kwh", "facility energy", "kWh"), ("g", "emissions", "g CO2e"),
           ("j_per_step", "energy per step", "J/step"),
           ("j_per_sample", "energy per sample", "J/sample"),
           ("j_per_token", "energy per token", "J/token"),
           ("duration_s", "time", "s"), ("mean_w", "mean IT power", "W")]


@dataclass
class Metric:
    key: str
    label: str
    unit: str
    values: list[Optional[float]]
    best: Optional[int]                  # index of the lowest value
    diff_pct: list[Optional[float]]      # (value - best) / best * 100


@dataclass
class Comparison:
    names: list[str]
    rows: list[dict[str, Any]]
    metrics: list[Metric]

    def metric(self, key: str) -> Metric:
        return next(m for m in self.metrics if m.key == key)

    def best_name(self, key: str) -> Optional[str]:
        b = self.metric(key).best
        return None if b is None else self.names[b]

    def headline(self) -> str:
        out = []
        for key, unit in (("j_per_sample", "sample"), ("j_per_token", "token")):
            m = self.metric(key)
            if m.best is None:
                continue
            out.append(f"most efficient per {unit}: {self.names[m.best]} "
                       f"({m.values[m.best]:.4g} J/{unit})")
        return "; ".join(out) or ("no run counted samples or tokens: compare per step or "
                                  "in total")

    def to_dict(self) -> dict[str, Any]:
        return {"runs": self.names, "headline": self.headline(),
                "paths": [r.get("path") for r in self.rows],
                "metrics": [{"key": m.key, "label": m.label, "unit": m.unit,
                             "values": m.values,
                             "best": None if m.best is None else self.names[m.best],
                             "diff_pct": m.diff_pct} for m in self.metrics]}

    def format(self) -> str:
        table = []
        for m in self.metrics:
            cells = []
            for i, v in enumerate(m.values):
                d = m.diff_pct[i]
                cells.append("n/a" if v is None else f"*{v:.4g}" if i == m.best
                             else f"{v:.4g}" + (f" (+{d:.1f}%)" if d is not None else ""))
            table.append((f"{m.label} ({m.unit})", cells))
        lw = max(len(label) for label, _ in table) + 2
        ws = [max(len(n), *(len(c[i]) for _, c in table)) + 2 for i, n in enumerate(self.names)]
        lines = ["comparison (lower is better; * the best, others: % above it)",
                 " " * lw + "".join(f"{n:>{w}}" for n, w in zip(self.names, ws))]
        lines += [f"{label:<{lw}}" + "".join(f"{c:>{w}}" for c, w in zip(cells, ws))
                  for label, cells in table]
        lines.append(self.headline())
        return "\n".join(lines)


def comparison(rows: Sequence[dict[str, Any]]) -> Comparison:
    """The comparison of index rows (index_page.row_of)."""
    metrics = []
    for key, label, unit in METRICS:
        values = [r.get(key) if isinstance(r.get(key), (int, float)) else None for r in rows]
        known = [(v, i) for i, v in enumerate(values) if v is not None]
        best = min(known)[1] if known else None
        ref = values[best] if best is not None else None
        diff = [None if v is None or not ref else (v - ref) / ref * 100.0 for v in values]
        metrics.append(Metric(key, label, unit, values, best, diff))
    return Comparison([str(r.get("name")) for r in rows], list(rows), metrics)


def compare_runs(paths: Sequence[Path], base: Path) -> Comparison:
    """Read the run or job directories (each given one must be one) into a Comparison; links
    in its rows are relative to `base` (the page's folder)."""
    entries = []
    for p in paths:
        p = Path(p)
        found, _ = discover([p])
        if not ((p / JOB_MANIFEST).is_file() or (p / MANIFEST).is_file()) or len(found) != 1:
            raise ConfigError(f"{p} is not a run or job directory (--compare takes run or job "
                              "directories, e.g. the runs of a sweep)")
        entries.append(found[0])
    if len(entries) < 2:
        raise ConfigError(f"--compare needs at least two runs, got {len(entries)}")
    return comparison([row_of(e, base) for e in entries])


def write_compare(paths: Sequence[Path], out: Optional[Path] = None) -> tuple[Path, Comparison]:
    """Write the comparison page (default ./compare.html); returns it and the comparison."""
    target = Path(out) if out is not None else Path.cwd() / COMPARE_HTML
    comp = compare_runs(paths, target.parent)
    page = render_index(comp.rows, title=f"energy-tracker: {len(comp.rows)} runs compared",
                        inv=None, compare_all=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(target, page)
    return target, comp


__all__ = ["COMPARE_HTML", "METRICS", "Comparison", "Metric", "compare_runs", "comparison",
           "write_compare"]
