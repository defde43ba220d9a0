"""The log scanner: a run or job directory (samples.jsonl, condensed timelines, summary)
read into the report's Data (model.py).

A run keeps the report's timeline as it goes (report_timeline.jsonl, rundir/
report_timeline.py): per bucket and device the min/max power and the energy. Where that file
is fine enough for the page, it is read instead of the samples (O(buckets): a day of 8 GPUs
is ~21 000 lines instead of ~950 000), and only what it does not cover yet (a killed run's
last seconds) is scanned. An old run without it, a short run (its buckets too coarse for a
sample-resolution page) and a file that starts late are scanned as below.

samples.jsonl is streamed, never loaded. Each device's power is reduced on the fly to at most
MAX_BUCKETS time buckets holding the bucket's minimum and maximum reading (and when they
happened), so memory does not grow with the run. A day of 8 GPUs at 10 Hz is 864 000 lines of
JSON; json.loads of a line is most of the cost, so a large file is split into byte ranges
scanned in parallel by a ProcessPoolExecutor of spawned interpreters. A damaged line is
counted and skipped; the report says how many.
"""

from __future__ import annotations

import json
import json.scanner
import math
import os
import sys
import time
import types
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from itertools import repeat
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

from ..errors import ConfigError

if TYPE_CHECKING:   # the pool's modules (~15 ms) are imported when a scan is parallel
    from concurrent.futures import Future, ProcessPoolExecutor
from ..rundir.names import MANIFEST, SAMPLES, SUMMARY
from ..rundir.runlog import parse_record, read_json
from ..rundir.snapshot import BUCKET_S
from ..rundir.untrusted import (
    LineReader,
    loads_bounded,
    open_regular,
    run_seconds,
    shallow,
    skip_partial_line,
    wall_seconds,
)
from .model import MAX_BUCKETS, Data, Grid, Scan, Series, Source, num

PARALLEL_MIN_BYTES = 32 << 20    # below this, starting interpreters costs more than it saves
MAX_WORKERS = 8
_MAX_HELD = 4096                 # lines held before a bucket is reduced (it can be reduced twice)


def scan_range(path: Path, grid: Grid, start: int = 0, end: Optional[int] = None,
               offset_s: float = 0.0) -> Scan:
    """Stream the lines of samples.jsonl whose first byte lies in [start, end) into a Scan.

    `offset_s` is added to every t (a job member's start relative to the job's). Readings are
    gathered one bucket at a time (at most a bucket's lines are held) and reduced when the
    bucket changes. A line that is not valid JSON of the expected shape is counted in `bad`.
    """
    out = Scan()
    # The C scanner behind json.loads, called directly: the Python wrappers around it are a
    # quarter of the time per line here.
    scan = json.scanner.make_scanner(json.JSONDecoder())  # type: ignore[arg-type]
    t0, inv, last_b = grid.t0, 1.0 / grid.width, grid.n - 1
    cur = -1
    ts: list[float] = []             # the bucket being gathered: times and device dicts
    ds: list[dict[str, Any]] = []
    lines = bad = 0
    try:
        f = open_regular(path)
    except OSError:
        return out
    try:
        first = skip_partial_line(f, start, end) if start > 0 else 0
        if first is None:   # no line starts in this range (inside one long line)
            return out
        # chunked, at most MAX_LINE_BYTES a line: an over-long line is skipped and counted
        reader = LineReader(f, stop_at=None if end is None else end - first)
        for line in reader:
            lines += 1
            if not line.startswith(b'{"t":'):   # every record the tracker writes does
                bad += 1
                continue
            if b'"d"' not in line:   # window marks, steps, empty ticks: the summary has them
                if b'"intensity"' in line and not _intensity(line, out):
                    bad += 1
                continue
            try:
                if not shallow(line):   # the C scanner recurses: check the depth first
                    raise ValueError
                text = line.decode()
                rec, stop = scan(text, 0)
                d = rec["d"]
                t = rec["t"]
                if d.__class__ is not dict or not run_seconds(t) or (
                        stop != len(text) and text[stop:].strip()):
                    raise ValueError
                t += offset_s
                b = int((t - t0) * inv)
            except Exception:   # not JSON, or not a reading record: skipped and counted
                bad += 1
                continue
            if not d:
                continue
            b = 0 if b < 0 else last_b if b > last_b else b
            if b != cur or len(ds) >= _MAX_HELD:   # (a month-long run has big buckets)
                if ds:
                    _reduce(out, cur, ts, ds)
                cur, ts, ds = b, [], []
            ts.append(t)
            ds.append(d)
        if ds:
            _reduce(out, cur, ts, ds)
        lines += reader.damaged + (reader.tail > 0)   # the last line, cut by a crash
        bad += reader.damaged + (reader.tail > 0)
    finally:
        f.close()
    out.lines, out.bad = lines, bad
    return out


def _intensity(line: bytes, out: Scan) -> bool:
    try:
        p = loads_bounded(line)["intensity"]
        if _period_ok(p):
            out.intensity.append(p)
            return True
    except Exception:
        pass
    return False


def _period_ok(p: Any) -> bool:
    """A live-intensity period the page can draw: plausible wall clocks, a finite value."""
    return isinstance(p, dict) and wall_seconds(p.get("start_wall")) and (
        p.get("end_wall") is None or wall_seconds(p.get("end_wall"))) and num(
        p.get("gco2_per_kwh"))


_EMPTY: dict[str, Any] = {}


def _reduce(out: Scan, b: int, ts: list[float], ds: list[dict[str, Any]]) -> None:
    """One bucket's readings -> per device min/max power and the energy at its edges."""
    n = len(ds)
    for name in set().union(*ds):
        s = out.series.get(name)
        if s is None:
            s = out.series[name] = Series()
        ws: list[Any]
        try:   # C-level maps: after parsing, this is where the time goes
            ws = list(map(dict.get, map(dict.get, ds, repeat(name), repeat(_EMPTY)),
                          repeat("w")))
        except TypeError:   # a reading that is not an object (a damaged line): dropped
            ws = [g.get("w") if (g := d.get(name)).__class__ is dict else None for d in ds]
        vals = ws if None not in ws else [w for w in ws if w is not None]
        if vals:
            try:
                lo, hi = min(vals), max(vals)
                clean = num(lo) and num(hi)
            except TypeError:
                clean = False
            if not clean:   # a string or NaN from a damaged line: keep the real numbers only
                ws = [w if num(w) else None for w in ws]
                vals = [w for w in ws if w is not None]
                lo, hi = (min(vals), max(vals)) if vals else (0.0, 0.0)
            if vals:
                s.add_power(b, ts[ws.index(lo)], lo, ts[ws.index(hi)], hi)
                # Power was read: only the energy at the bucket's edges is needed.
                k = _last_j(ds, name, range(n - 1, -1, -1))
                if k is not None:
                    j = ds[k][name]["j"]
                    s.add_energy(b, ts[k], j)
                    s.last = [ts[k], j]
                    if s.first is None:
                        i = _last_j(ds, name, range(n))
                        if i is not None:
                            s.first = [ts[i], ds[i][name]["j"]]
                continue
        # No power reading (a device with only an energy counter): power is dE/dt.
        pts = []
        for t, d in zip(ts, ds):
            g = d.get(name)
            if g.__class__ is dict and num(j := g.get("j")):
                pts.append((t, j))
        if not pts:
            continue
        prev = s.last
        rates = []
        for t, j in pts:
            if prev is not None and t > prev[0]:
                rates.append((t, (j - prev[1]) / (t - prev[0])))
            prev = [t, j]
        if rates:
            t_lo, lo = min(rates, key=lambda r: r[1])
            t_hi, hi = max(rates, key=lambda r: r[1])
            s.add_power(b, t_lo, lo, t_hi, hi)
        s.derived = True
        s.add_energy(b, *pts[-1])
        s.last = list(pts[-1])
        if s.first is None:
            s.first = list(pts[0])


def _last_j(ds: list[dict[str, Any]], name: str, order: Iterable[int]) -> Optional[int]:
    """Index of the first reading of `name` with a numeric j, in the given order."""
    for k in order:
        g = ds[k].get(name)
        if g.__class__ is dict and num(g.get("j")):
            return k
    return None


def sum_series(series: Sequence[Series], grid: Grid) -> Series:
    """The sum of several devices' (or members') series: each holds its last bucket's min and
    max for up to HOLD_S (a 1 Hz model between readings), and its last energy for ever after."""
    out = Series()
    keys = sorted(set().union(*(s.power for s in series)))
    acc = {b: [0.0, 0.0] for b in keys}
    hold = grid.hold
    for s in series:
        own = sorted(s.power)
        i, last = 0, None
        for b in keys:
            while i < len(own) and own[i] <= b:
                last = own[i]
                i += 1
            if last is None or b - last > hold:
                continue
            v = s.power[last]
            acc[b][0] += v[1]
            acc[b][1] += v[3]
    out.power = {b: [grid.mid(b), lo, grid.mid(b), hi] for b, (lo, hi) in acc.items()}
    ekeys = sorted(set().union(*(s.energy for s in series)))
    etot = dict.fromkeys(ekeys, 0.0)
    for s in series:
        own = sorted(s.energy)
        i, last_j = 0, None
        for b in ekeys:
            while i < len(own) and own[i] <= b:
                last_j = s.energy[own[i]][1]
                i += 1
            if last_j is not None:
                etot[b] += last_j
    out.energy = {b: [grid.end(b), j] for b, j in etot.items()}
    return out


# -- scanning files, in parallel where it pays ----------------------------------------------------
@dataclass(frozen=True)
class Task:
    """Scan bytes [start, end) of one file; `member` says whose it is; `total`: reduce the
    member's devices to one sum before returning (a job with many members)."""

    path: str
    start: int
    end: Optional[int]
    offset_s: float
    member: int
    total: bool = False
    timeline: bool = False      # a condensed timeline.<k>.jsonl.gz (snapshot.py), read whole
    parts: tuple[str, ...] = ()  # devices inside a whole-node meter: not added to the total

    def run(self, grid: Grid) -> Scan:
        scan = (scan_timeline(Path(self.path), grid, self.offset_s) if self.timeline
                else scan_range(Path(self.path), grid, self.start, self.end, self.offset_s))
        if self.total:
            scan.series = {"total": sum_series([v for k, v in scan.series.items()
                                                if k not in self.parts], grid)}
        return scan


def _cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def plan(files: Sequence[tuple[Path, float, int, bool]], *, workers: Optional[int] = None,
         min_parallel_bytes: int = PARALLEL_MIN_BYTES, reduce_members: bool = False
         ) -> tuple[list[Task], int]:
    """Tasks for the files [(path, offset_s, member, is_timeline)], in each member's time
    order, and how many processes to use.

    Few large raw files are split into byte ranges (one per process); many files become one
    task each, reduced (with `reduce_members`: a job's members) to one series per file in the
    worker so what comes back stays small."""
    sizes = []
    for p, *_ in files:
        try:
            sizes.append(p.stat().st_size)
        except OSError:
            sizes.append(0)
    total = sum(sizes)
    n = workers if workers is not None else min(_cpus(), MAX_WORKERS)
    if total < min_parallel_bytes or n < 2:
        n = 1
    many = len(files) > 1 and len(files) >= n
    tasks: list[Task] = []
    for (p, off, member, timeline), size in zip(files, sizes):
        parts = 1 if many or n == 1 or timeline else max(1, round(n * size / max(total, 1)))
        cuts = [size * k // parts for k in range(parts)] + [size]
        for a, b in zip(cuts, cuts[1:]):
            tasks.append(Task(str(p), a, None if b >= size else b, off, member,
                              total=many and reduce_members, timeline=timeline))
    return tasks, n


def member_files(run_dir: Path) -> list[tuple[Path, bool]]:
    """A run's logged readings in time order, as (file, is_timeline): the condensed timelines
    of checkpointed segments (a raw segment not yet condensed instead), then samples.jsonl."""
    from ..rundir.snapshot import segments, timelines

    try:
        condensed = dict(timelines(run_dir))
        raw = dict(segments(run_dir))
    except OSError:
        condensed, raw = {}, {}
    out = [(condensed[k], True) if k in condensed else (raw[k], False)
           for k in sorted(set(condensed) | set(raw))]
    return [*out, (Path(run_dir) / SAMPLES, False)]


def scan_timeline(path: Path, grid: Grid, offset_s: float = 0.0) -> Scan:
    """A condensed timeline (snapshot.condense: per second and device [min, mean, max W, n,
    dt, j]) into a Scan: each second's min and max power and its energy reading go straight
    into their bucket (a month of 8 GPUs is 2.6 M such lines). A device with only an energy
    counter gets its power from dE/dt between seconds."""
    from ..rundir.snapshot import read_timeline

    out = Scan()
    t0, inv, last_b = grid.t0, 1.0 / grid.width, grid.n - 1
    half = 0.5 * BUCKET_S
    series = out.series
    from ..rundir.runlog import Skipped
    skipped = Skipped()
    for rec in read_timeline(path, skipped):
        out.lines += 1
        try:
            if "intensity" in rec:
                p = rec["intensity"]
                if not _period_ok(p):
                    raise ValueError
                out.intensity.append(p)
                continue
            d = rec.get("d")
            if d is None:
                continue          # marks and steps: the summary has them
            t = float(rec["t"]) + offset_s
            b = int((t - t0) * inv)
            b = 0 if b < 0 else last_b if b > last_b else b
            for name, (lo, _mean, hi, n, dt, j) in d.items():
                s = series.get(name)
                if s is None:
                    s = series[name] = Series()
                if n:
                    if not (num(lo) and num(hi)):
                        raise ValueError
                    s.add_power(b, t, lo, t + half, hi)
                if j is None:
                    continue
                if not (num(dt) and num(j)):
                    raise ValueError
                tj = t + dt
                if not n:   # counter only: power is the energy's slope
                    if s.last is not None and tj > s.last[0]:
                        w = (j - s.last[1]) / (tj - s.last[0])
                        s.add_power(b, tj, w, tj, w)
                    s.derived = True
                s.add_energy(b, tj, j)
                s.last = [tj, j]
                if s.first is None:
                    s.first = [tj, j]
        except Exception:
            out.bad += 1
    out.lines += skipped.lines
    out.bad += skipped.lines
    return out


def _scan_share(tasks: list[Task], grid: Grid) -> list[Scan]:
    """In a worker process: one share of the tasks. What comes back is bounded by the grid
    (min and max per bucket), not by the size of the byte ranges read."""
    return [t.run(grid) for t in tasks]


def _pool(workers: int) -> ProcessPoolExecutor:
    """Fresh interpreters (spawn): no fork of a process that may hold CUDA or threads."""
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    return ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn"))


@contextmanager
def _bare_main() -> Iterator[None]:
    """While workers start. A spawned child imports the parent's `__main__` (the user's
    training script, which may lack an `if __name__ == "__main__"` guard) unless that module
    has no file or spec to import it from. Workers start inside `submit`, so this covers them."""
    real = sys.modules.get("__main__")
    sys.modules["__main__"] = types.ModuleType("__main__")
    try:
        yield
    finally:
        if real is not None:
            sys.modules["__main__"] = real


def run_tasks(tasks: Sequence[Task], grid: Grid, workers: int) -> list[Scan]:
    """Each task's Scan, in task order. With workers > 1 the tasks are dealt into that many
    shares: this process scans the last while worker processes scan the others. A share whose
    worker fails, or runs far past any plausible time, is redone here (slower, same result)."""
    if workers <= 1 or len(tasks) <= 1:
        return [t.run(grid) for t in tasks]
    share: list[list[int]] = [[] for _ in range(min(workers, len(tasks)))]
    for i in range(len(tasks)):
        share[i % len(share)].append(i)
    results: list[Optional[Scan]] = [None] * len(tasks)
    pending: list[tuple[list[int], Optional[Future[list[Scan]]]]] = []
    pool: Optional[ProcessPoolExecutor] = None
    try:
        with _bare_main():
            pool = _pool(len(share) - 1)
            for idx in share[:-1]:
                pending.append((idx, pool.submit(_scan_share, [tasks[i] for i in idx], grid)))
    except Exception:   # no processes here (sandbox, limits): the rest in this process
        done = {i for idx, _ in pending for i in idx}
        pending += [(idx, None) for idx in share[:-1] if not done.intersection(idx)]
    try:
        for i in share[-1]:
            results[i] = tasks[i].run(grid)
        for idx, fut in pending:
            got: Optional[list[Scan]] = None
            if fut is not None:
                size = sum((tasks[i].end or _size(tasks[i].path)) - tasks[i].start for i in idx)
                try:
                    got = fut.result(timeout=120 + size / 1e5)   # >= 10 s a MB
                except Exception:   # a worker that died, hung or raised
                    got = None
                if got is not None and len(got) != len(idx):
                    got = None
            for k, i in enumerate(idx):
                results[i] = got[k] if got is not None else tasks[i].run(grid)
    finally:
        if pool is not None:   # wait for (reap) workers that finished; never for a hung one
            pool.shutdown(wait=all(f is None or f.done() for _, f in pending),
                          cancel_futures=True)
    return [r for r in results if r is not None]


def _size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


# -- a run or job directory into Data -------------------------------------------------------------
def load_summary(path: Path, is_job: bool) -> tuple[dict[str, Any], bool]:
    """The saved summary, or one built the way `energy-tracker report` does when it is missing
    or still says running (not written back: a report only reads)."""
    from ..summary import read_summary
    saved = read_summary(path / SUMMARY)   # a damaged one (wrong types, NaN) is rebuilt
    if saved is not None and saved.get("status") not in (None, "running"):
        return saved, False
    if is_job:
        from ..job.merge import merge
        return merge([path]).to_dict(), True
    from ..rebuild import rebuild_summary
    return rebuild_summary(path).to_dict(), True


def collect(path: Path, *, max_buckets: int = MAX_BUCKETS, workers: Optional[int] = None,
            min_parallel_bytes: int = PARALLEL_MIN_BYTES, prereduced: bool = True) -> Data:
    """Read a run or job directory into Data. `prereduced`: use the runs' report timelines
    (report_timeline.jsonl) where they cover the run (False: scan every sample)."""
    from ..job.layout import is_job_dir, members

    started = time.perf_counter()
    path = Path(path)
    is_job = is_job_dir(path)
    if not is_job and not (path / MANIFEST).is_file():
        raise ConfigError(f"{path} is neither a run directory ({MANIFEST}) nor a job directory "
                          "(job.json)")
    summary, rebuilt = load_summary(path, is_job)
    if is_job:
        mems = list(members(path))
        walls = [_wall(m.manifest.get("start_wall")) for m in mems]
        job = summary.get("job") or {}
        t0 = _wall(job.get("started_wall"), min(walls) if walls else 0.0)
        sources = [Source(m.path / SAMPLES, _safe_manifest(m.manifest), m.node, w - t0)
                   for m, w in zip(mems, walls)]
        manifest = sources[0].manifest if sources else {}
        start_wall = t0
    else:
        manifest = _safe_manifest(read_json(path / MANIFEST) or {})
        sources = [Source(path / SAMPLES, manifest, None, 0.0)]
        start_wall = _wall(manifest.get("start_wall"))
    t_end = float(summary.get("duration_s") or 0.0)
    if not run_seconds(t_end):
        t_end = 0.0
    for s in sources:   # a stale summary must not cut the timeline short
        t_end = max(t_end, s.offset_s + _last_t(s.path))
    rate_hz: Any = (summary.get("sampling") or {}).get("rate_hz")
    rate = float(rate_hz) if num(rate_hz) and 0.001 <= rate_hz <= 1e4 else 10.0
    grid = Grid.over(t_end, rate, max_buckets)
    # The run's own pre-reduced timeline where it is fine enough for this grid (a run: the
    # grid is aligned to its buckets, so each is held whole); the rest is scanned.
    kept: dict[int, tuple[Scan, list[tuple[Path, bool, int]]]] = {}
    if prereduced:
        grid, kept = _prereduced(sources, grid, t_end, is_job)
    tasks, n = plan([(f, s.offset_s, i, timeline) for i, s in enumerate(sources)
                     if i not in kept for f, timeline in member_files(s.path.parent)],
                    workers=workers, min_parallel_bytes=min_parallel_bytes,
                    reduce_members=is_job)
    for i, (_, tail) in kept.items():   # what the pre-reduced timeline does not cover yet
        tasks += [Task(str(f), start, None, sources[i].offset_s, i, timeline=timeline)
                  for f, timeline, start in tail]
    parts = [_parts(s.manifest) for s in sources]
    tasks = [replace(t, parts=tuple(parts[t.member])) if parts[t.member] else t for t in tasks]
    scans = run_tasks(tasks, grid, n)
    per_source: dict[int, Scan] = {i: scan for i, (scan, _) in kept.items()}
    tail_lines = 0
    for task, scan in zip(tasks, scans):
        if task.member in kept:
            tail_lines += scan.lines
        if task.member in per_source:
            per_source[task.member].merge_after(scan, grid)
        else:
            per_source[task.member] = scan
    lines = sum(s.lines for s in per_source.values())
    bad = sum(s.bad for s in per_source.values())
    intensity = _dedupe_periods(p for s in per_source.values() for p in s.intensity)
    devices: dict[str, Series] = {}
    nodes: dict[str, Series] = {}
    components = {str(d.get("name")): str(d.get("component"))
                  for d in manifest.get("devices") or ()}
    if is_job:
        summed = {t.member for t in tasks if t.total}   # reduced to one series in the worker
        by_node: dict[str, list[Series]] = {}
        for i, src in enumerate(sources):
            got = per_source.get(i)
            if got is None or not got.series:
                continue
            member = (got.series["total"] if i in summed
                      else sum_series([v for k, v in got.series.items() if k not in parts[i]],
                                      grid))
            by_node.setdefault(src.node or "node", []).append(member)
        nodes = {node: (v[0] if len(v) == 1 else sum_series(v, grid))
                 for node, v in sorted(by_node.items())}
    else:
        scan = per_source.get(0) or Scan()
        order = list(components) + sorted(set(scan.series) - set(components))
        devices = {n: scan.series[n] for n in order if n in scan.series}
    return Data(kind="job" if is_job else "run", dir=path, summary=summary, manifest=manifest,
                grid=grid, devices=devices, components=components, nodes=nodes,
                intensity=intensity, start_wall=start_wall, lines=lines, bad=bad,
                seconds=time.perf_counter() - started, workers=n,
                job_members=len(sources) if is_job else 0, rebuilt=rebuilt,
                prereduced=len(kept), prereduced_buckets=sum(
                    s.lines for i, s in per_source.items() if i in kept) - tail_lines,
                tail_lines=tail_lines)


# -- the run's pre-reduced timeline (rundir/report_timeline.py) ----------------------------------
TAIL_MARGIN_S = 2.0     # samples re-read before the end of the pre-reduced part (min/max and
                        # last energy are the same read twice; the join needs no exact cut)


def _prereduced(sources: Sequence[Source], grid: Grid, t_end: float, is_job: bool
                ) -> tuple[Grid, dict[int, tuple[Scan, list[tuple[Path, bool, int]]]]]:
    """The grid to draw on and, per source whose report_timeline.jsonl can stand in for its
    samples, that timeline's Scan and the files (path, is_timeline, start byte) of the tail it
    does not cover. A run's grid is widened to a multiple of the timeline's widest bucket
    (each bucket then lies in one grid bucket: exact min and max), if that keeps at least half
    the buckets wanted; a job's members (started at different times) are used when their
    widest bucket is at most half a grid bucket."""
    from ..rundir.report_timeline import read

    kept: dict[int, tuple[Scan, list[tuple[Path, bool, int]]]] = {}
    for i, src in enumerate(sources):
        rt = read(src.path.parent, accept=_period_ok)
        if rt is None:
            continue
        if rt.from_s > rt.base_s:   # it starts late: the directory was recreated mid-run?
            logs = member_files(src.path.parent)
            first = next((t for t in (_first_t(p, tl) for p, tl in logs) if t is not None),
                         None)
            if first is None or rt.from_s > first + rt.base_s:
                continue
        wmax = rt.max_width
        if not is_job:
            width = wmax * math.ceil(grid.width / wmax - 1e-9)
            n = max(1, math.ceil(t_end / width - 1e-9))
            if 2 * n < grid.n:
                continue   # too coarse for this run (a short run): its samples are few
            grid = Grid(0.0, width, n)
        elif 2 * wmax > grid.width:
            continue
        scan = scan_report_timeline(rt, grid, src.offset_s)
        covered = rt.ended if rt.ended is not None else rt.until
        last = _last_t(src.path)
        tail = [] if rt.ended is not None and covered >= last else _tail_files(
            src.path.parent, covered - TAIL_MARGIN_S)
        kept[i] = (scan, tail)
    return grid, kept


def scan_report_timeline(rt: Any, grid: Grid, offset_s: float = 0.0) -> Scan:
    """A read report timeline (report_timeline.ReportTimeline) into a Scan on `grid`: each
    bucket's lowest and highest reading into the grid bucket of its time, its last energy
    reading likewise; a device with only a counter gets its power from dE/dt."""
    out = Scan()
    series = out.series
    t0, inv, last_b = grid.t0, 1.0 / grid.width, grid.n - 1
    bucket = grid.bucket
    for a, _w, d in rt.buckets():
        out.lines += 1
        a += offset_s
        for name, (dl, lo, dh, hi, _mean, n, dj, j) in d.items():
            s = series.get(name)
            if s is None:
                s = series[name] = Series()
            if n:
                tl, th = a + dl, a + dh
                bl, bh = int((tl - t0) * inv), int((th - t0) * inv)
                bl = 0 if bl < 0 else last_b if bl > last_b else bl
                bh = 0 if bh < 0 else last_b if bh > last_b else bh
                if bl == bh:
                    s.add_power(bl, tl, lo, th, hi)
                else:
                    s.add_power(bl, tl, lo, tl, lo)
                    s.add_power(bh, th, hi, th, hi)
            if j is None:
                continue
            tj = a + dj
            if not n:   # counter only: power is the energy's slope
                if s.last is not None and tj > s.last[0]:
                    w = (j - s.last[1]) / (tj - s.last[0])
                    s.add_power(bucket(tj), tj, w, tj, w)
                s.derived = True
            s.add_energy(bucket(tj), tj, j)
            s.last = [tj, j]
            if s.first is None:
                s.first = [tj, j]
    out.intensity, out.bad = list(rt.intensity), rt.bad
    return out


def _tail_files(run_dir: Path, after: float) -> list[tuple[Path, bool, int]]:
    """The logged files holding readings after run time `after`, in time order, with the byte
    to start at: samples.jsonl from about `after` (found by bisection: its lines are in time
    order), and the rotated segments before it only when samples.jsonl starts after `after`
    (a run killed just after a checkpoint)."""
    files = member_files(run_dir)
    out: list[tuple[Path, bool, int]] = []
    for path, timeline in reversed(files):
        first = _first_t(path, timeline)
        if first is not None and first <= after:
            start = 0 if timeline else _offset_before(path, after)
            out.append((path, timeline, start))
            break
        out.append((path, timeline, 0))
    return out[::-1]


def _first_t(path: Path, timeline: bool) -> Optional[float]:
    """t of the first readable record of a log file (None: none, or unreadable)."""
    if timeline:
        from ..rundir.snapshot import read_timeline
        for rec in read_timeline(path):
            return float(rec["t"])
        return None
    try:
        with open_regular(path) as f:
            for line in LineReader(f, max_bytes=1 << 20):
                got = parse_record(line)
                if got is not None:
                    return float(got["t"])
    except OSError:
        pass
    return None


def _offset_before(path: Path, t: float, probes: int = 48) -> int:
    """A line start in samples.jsonl before which every line is earlier than `t` (bisection on
    the lines' times; a probe that finds no readable line moves left, which is safe)."""
    try:
        f = open_regular(path)
    except OSError:
        return 0
    with f:
        f.seek(0, os.SEEK_END)
        lo, hi = 0, f.tell()
        for _ in range(probes):
            if hi - lo <= 1 << 16:
                break
            mid = (lo + hi) // 2
            f.seek(mid)
            f.readline()   # the rest of a line cut by the seek
            rec = parse_record(f.readline()[:1 << 20])
            if rec is not None and float(rec["t"]) < t:
                lo = mid
            else:
                hi = mid
    return lo


def _wall(x: Any, default: float = 0.0) -> float:
    """A wall clock from run.json or a job summary, or `default` when it is not a plausible
    one."""
    return float(x) if wall_seconds(x) and x else float(default)


def _safe_manifest(m: Any) -> dict[str, Any]:
    """run.json as the page reads it: the fields it shows replaced by empty ones when they
    have the wrong type (devices: objects with an object of details)."""
    if not isinstance(m, dict):
        return {}
    out = dict(m)
    for key, kind in (("versions", dict), ("host", dict), ("devices", list)):
        if not isinstance(out.get(key) or kind(), kind):
            out[key] = kind()
    out["devices"] = [d for d in out.get("devices") or ()
                      if isinstance(d, dict) and isinstance(d.get("details") or {}, dict)]
    return out


def _parts(manifest: dict[str, Any]) -> set[str]:
    """Names of a run's devices included in a whole-node meter (parts of its energy)."""
    from ..sensors.base import counted
    return {str(d.get("name")) for d in manifest.get("devices") or ()
            if isinstance(d, dict) and not counted(d.get("details"))}


def _last_t(path: Path) -> float:
    """t of the last complete line of a samples.jsonl (read from its tail only)."""
    try:
        with open_regular(path) as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 65536))
            tail = f.read().split(b"\n")
    except OSError:
        return 0.0
    for line in reversed(tail[1:] if len(tail) > 1 else tail):
        rec = parse_record(line)
        if rec is not None:
            return float(rec["t"])
    return 0.0


def _dedupe_periods(periods: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    seen: dict[tuple[Any, ...], dict[str, Any]] = {}
    for p in periods:
        key = (p.get("start_wall"), p.get("provider"), p.get("zone"))
        if key not in seen or p.get("end_wall") is not None:
            seen[key] = p
    return sorted(seen.values(), key=lambda p: float(p["start_wall"]))


__all__ = ["PARALLEL_MIN_BYTES", "Task", "collect", "member_files", "plan", "run_tasks",
           "scan_range", "scan_report_timeline", "scan_timeline", "sum_series"]
