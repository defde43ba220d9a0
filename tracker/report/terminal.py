"""The report on a terminal: a power sparkline over the run and the breakdown as bars; and
the one-line-per-run table of `energy-tracker report ROOT` (`runs_table`).

`energy-tracker report RUN` appends this when stdout is a terminal. It must stay instant on a
day-long run, so the sparkline does not read the whole samples.jsonl: it reads a small chunk
at `width` evenly spaced byte offsets (the log is written at a steady rate, so bytes track
time), takes each device's cumulative energy `j` there, and shows the mean power between
consecutive points, ΔE/Δt. That is exact for the energy between the points, whatever happened
in between; peaks inside a slot are averaged out (the HTML report keeps them).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Optional

from ..rundir import names
from ..rundir.runlog import parse_record
from ..rundir.untrusted import number, open_regular, run_seconds, wall_seconds
from ..units import J_PER_KWH, energy_text

BLOCKS = "▁▂▃▄▅▆▇█"
CHUNK = 64 * 1024          # per sampled offset; holds >100 ticks, so every 1 Hz device too
SMALL_FILE = 4 << 20       # below this, read the whole file (as fast as seeking)
MAX_MEMBERS = 32           # a larger job: no sparkline (the HTML report has the timeline)
NAME_COLUMN_MAX = 48       # a longer name is printed whole, the row's figures on a line below


def render(summary: dict[str, Any], run_or_job_dir: Path, width: int = 60) -> str:
    """A few lines for the terminal: power sparkline and breakdown bars (when present)."""
    width = max(10, int(width))
    lines: list[str] = []
    spark = _sparkline(summary, Path(run_or_job_dir), width)
    if spark:
        lines += spark
    bars = _bars(summary.get("breakdown"), width)
    if bars:
        lines += bars
    return "\n".join(lines)


# -- sparkline ------------------------------------------------------------------------------------
def _sparkline(summary: dict[str, Any], path: Path, width: int) -> list[str]:
    duration = summary.get("duration_s") or 0.0
    if not run_seconds(duration) or duration <= 0:
        return []
    job = summary.get("job")
    if isinstance(job, dict):
        from ..job.layout import members
        mems = list(members(path))
        if not mems:
            return []
        if len(mems) > MAX_MEMBERS:
            return [f"power  ({len(mems)} processes: see `energy-tracker report --html` for the "
                    "timeline)"]
        walls = [_wall(m.manifest.get("start_wall"), 0.0) for m in mems]
        t0 = _wall(job.get("started_wall"), min(walls))
        curves = [(_run_points(m.path, width), (w or t0) - t0) for m, w in zip(mems, walls)]
    else:
        curves = [(_run_points(path, width), 0.0)]
    curves = [(pts, off) for pts, off in curves if len(pts) >= 2]
    if not curves:
        return []
    edges = [duration * i / width for i in range(width + 1)]
    energy = [sum(_interp(pts, t - off) for pts, off in curves) for t in edges]
    power: list[Optional[float]] = []
    for i in range(width):
        dt = edges[i + 1] - edges[i]
        power.append((energy[i + 1] - energy[i]) / dt if dt > 0 else None)
    known = [p for p in power if p is not None]
    if not known:
        return []
    lo, hi = min(known), max(known)
    chars = "".join(" " if p is None else _block(p, lo, hi) for p in power)
    slot = duration / width
    return [f"power  {chars}",
            f"       {lo:,.1f}-{hi:,.1f} W, mean per {_dur(slot)} slot over {_dur(duration)}"]


def _block(p: float, lo: float, hi: float) -> str:
    # A flat run (within 2 %) is drawn flat: scaling noise to full height would mislead.
    if hi - lo <= 0.02 * max(abs(hi), 1e-9):
        return BLOCKS[len(BLOCKS) // 2]
    k = int((p - lo) / (hi - lo) * (len(BLOCKS) - 1) + 0.5)
    return BLOCKS[max(0, min(len(BLOCKS) - 1, k))]


def _run_points(run_dir: Path, n: int) -> list[tuple[float, float]]:
    """(t, run energy so far) over a whole run: a long run's samples.jsonl holds only what
    came after its last checkpoint, and its snapshot.json holds every device's (compacted)
    energy curve before that, so the two together cover the run."""
    parts = _parts(run_dir)   # inside a whole-node meter: its energy has them already
    before = _snapshot_points(run_dir, n, parts)
    after = _energy_points(run_dir / names.SAMPLES, n, start_at_zero=not before, parts=parts)
    t_snap = before[-1][0] if before else -math.inf
    return before + [(t, e) for t, e in after if t > t_snap]


def _parts(run_dir: Path) -> frozenset[str]:
    """Devices of a run included in a whole-node meter (run.json says which)."""
    from ..rundir.names import MANIFEST
    from ..rundir.runlog import read_json
    from ..sensors.base import counted
    devices = (read_json(run_dir / MANIFEST) or {}).get("devices") or ()
    return frozenset(str(d.get("name")) for d in devices
                     if isinstance(d, dict) and not counted(d.get("details")))


def _snapshot_points(run_dir: Path, n: int, parts: frozenset[str] = frozenset()
                     ) -> list[tuple[float, float]]:
    from ..rundir.snapshot import read

    try:
        snap = read(run_dir)
        if snap is None:
            return []
        t_snap = float(snap["t"])
        curves = []
        for name, dev in snap["devices"].items():
            if name in parts:
                continue
            ts, es = dev["curve"]["t"], dev["curve"]["e"]
            curves.append([(float(a), float(b)) for a, b in zip(ts, es) if a <= t_snap])
    except Exception:   # a damaged snapshot: the sparkline shows what samples.jsonl has
        return []
    if t_snap <= 0 or not curves:
        return []
    return [(t, sum(_interp(c, t) for c in curves if c))
            for t in (t_snap * k / n for k in range(n + 1))]


def _energy_points(path: Path, n: int, start_at_zero: bool = True,
                   parts: frozenset[str] = frozenset()) -> list[tuple[float, float]]:
    """(t, run energy so far) at about n+1 places in one samples.jsonl, from the devices' `j`."""
    try:
        f = open_regular(path)   # a FIFO or device planted in the run directory: no points
        size = os.fstat(f.fileno()).st_size
    except OSError:
        return []
    latest: dict[str, float] = {}
    pts: list[tuple[float, float]] = []
    try:
        if size <= SMALL_FILE:
            for t in _readings(f.read().split(b"\n")[:-1], latest):
                pts.append((t, sum(v for k, v in latest.items() if k not in parts)))
        else:
            for k in range(1, n + 1):
                off = size * k // n
                f.seek(max(0, off - CHUNK))
                chunk = f.read(min(CHUNK, off)).split(b"\n")
                # the first piece may be a partial line; the last is cut (or empty)
                t_last = None
                for t in _readings(chunk[1:-1] if off > CHUNK else chunk[:-1], latest):
                    t_last = t
                if t_last is not None:
                    pts.append((t_last, sum(v for k, v in latest.items() if k not in parts)))
    finally:
        f.close()
    if start_at_zero and pts and pts[0][0] > 0:
        pts.insert(0, (0.0, 0.0))   # every device's j starts at 0 with the run
    out: list[tuple[float, float]] = []
    for t, e in pts:   # time must increase for interpolation
        if not out or t > out[-1][0]:
            out.append((t, e))
    return out


def _readings(lines: Sequence[bytes], latest: dict[str, float]) -> Iterator[float]:
    """For each reading record, update `latest` (device -> j) and yield its time (so the
    caller sees the energy as of that record). Damaged lines are skipped."""
    for line in lines:
        if b'"d"' not in line:
            continue
        try:
            rec = parse_record(line)
            if rec is None or not isinstance(rec.get("d"), dict):
                continue
            t, d = rec["t"], rec["d"]
            for name, g in d.items():
                if isinstance(g, dict) and _finite(g.get("j")):
                    latest[name] = float(g["j"])
        except Exception:
            continue
        yield float(t)


def _interp(pts: list[tuple[float, float]], t: float) -> float:
    """E at t on a piecewise-linear curve: 0 before it starts, its last value after it ends."""
    if t <= pts[0][0]:
        return 0.0 if t < pts[0][0] else pts[0][1]
    if t >= pts[-1][0]:
        return pts[-1][1]
    lo, hi = 0, len(pts) - 1
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if pts[mid][0] <= t:
            lo = mid
        else:
            hi = mid
    (ta, ea), (tb, eb) = pts[lo], pts[hi]
    return ea + (eb - ea) * (t - ta) / (tb - ta)


# -- breakdown bars -------------------------------------------------------------------------------
def _bars(breakdown: Any, width: int) -> list[str]:
    if not isinstance(breakdown, dict) or not breakdown:
        return []
    rows = [(str(k), v) for k, v in breakdown.items()
            if isinstance(v, dict) and _finite(v.get("energy_j"))]
    if not rows:
        return []
    if {k for k, v in rows if v["energy_j"] > 0} <= {"other"}:
        return []   # nothing but "other": the summary says how to get a breakdown
    rows.sort(key=lambda kv: -kv[1]["energy_j"])
    total = sum(v["energy_j"] for _, v in rows) or 1.0
    label = max(len(k) for k, _ in rows)
    bar = max(10, width - label - 4)
    out = ["where the energy went"]
    for k, v in rows:
        share: float = v["share"] if _finite(v.get("share")) else v["energy_j"] / total
        n = max(0, min(bar, round(share * bar)))
        out.append(f"  {k:<{label}}  {'█' * n}{'░' * (bar - n)} {share * 100:5.1f} % "
                   f"{_energy(v['energy_j'])}")
    return out


# -- the table of a root of runs -----------------------------------------------------------------
def runs_table(rows: Sequence[dict[str, Any]]) -> str:
    """`energy-tracker report ROOT`: one row per run and per job, names never cut. The name
    column is as wide as the longest name (up to NAME_COLUMN_MAX); a name longer than that is
    printed whole and its figures continue on the next line, under their columns."""
    names = [str(r.get("name")) for r in rows]
    col = max([4, *(len(n) for n in names if len(n) <= NAME_COLUMN_MAX)]) + 2
    lines = [f"{'started (UTC)':<26}{'name':<{col}}{'status':<12}{'s':>9}{'energy':>11}"
             f"{'g CO2e':>10}  methods"]
    for r, name in zip(rows, names):
        kwh: Any = r.get("energy_kwh")
        energy = "n/a" if not _finite(kwh) else energy_text(float(kwh) * J_PER_KWH)
        kg: Any = r.get("emissions_kg")
        g = "n/a" if not _finite(kg) else f"{float(kg) * 1000:.3f}"
        methods = ", ".join(f"{k}={v}" for k, v in (r.get("methods") or {}).items())
        job = (f"  [job: {r.get('world_size')} processes on {r.get('nodes')} node(s)]"
               if r.get("kind") == "job" else "")
        why = f"  ({r['error']})" if r.get("error") else ""
        duration = r.get("duration_s") if _finite(r.get("duration_s")) else 0.0
        figures = (f"{r.get('status')!s:<12}{duration:9.1f}{energy:>11}{g:>10}  "
                   f"{methods}{job}{why}")
        head = f"{r.get('started_utc')!s:<26}"
        if len(name) + 2 > col:   # the whole name, then the figures under their columns
            lines += [head + name, " " * (26 + col) + figures]
        else:
            lines.append(f"{head}{name:<{col}}{figures}")
    return "\n".join(lines)


def _finite(x: Any) -> bool:
    return number(x)


def _wall(x: Any, default: float) -> float:
    return float(x) if wall_seconds(x) and x else float(default)


def _energy(j: float) -> str:
    return energy_text(j)


def _dur(s: float) -> str:
    if s < 120:
        return f"{s:.3g} s"
    if s < 7200:
        return f"{s / 60:.3g} min"
    return f"{s / 3600:.3g} h"


__all__ = ["render", "runs_table"]
