"""One self-contained HTML report of a run or a job: opens offline, from a file, in any browser.

    write_html(run_or_job_dir)            # -> <dir>/report.html
    energy-tracker report RUN --html      # the same from the command line

The page holds plotly.js once, inlined (the `report` extra; no CDN, no server, no request), the
figures as JSON, and plain HTML tables: the power timeline per device (per node for a job) with
windows shaded, the cumulative energy, step energy and live grid intensity on the same zoomable
time axis; the breakdown, idle GPU energy, advice, cost, what-if regions, the job's nodes and
attempts, and the provenance of every number.

Big runs: samples.jsonl is streamed, never loaded. Each device's power is reduced on the fly to
at most MAX_BUCKETS time buckets holding the bucket's minimum and maximum reading (and when they
happened), so a one-sample peak survives at any zoom and memory does not grow with the run. A
day of 8 GPUs at 10 Hz is 864 000 lines of JSON; json.loads of a line is most of the cost, so a
large file is split into byte ranges scanned by child interpreters in parallel (fresh `python`
processes: no fork of a process that may hold CUDA or threads, no re-run of the user's script).
A damaged line is counted and skipped; the report says how many.
"""

from __future__ import annotations

import html
import json
import json.scanner
import math
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from itertools import repeat
from pathlib import Path
from typing import Any, ClassVar, Optional

from ..errors import ConfigError
from ..rundir.names import MANIFEST, SAMPLES, SUMMARY
from ..rundir.names import REPORT_HTML as REPORT_FILE
from ..rundir.runlog import parse_record, read_json, write_text_atomic
from ..rundir.snapshot import BUCKET_S
from ..rundir.untrusted import (
    MAX_JSON_ABS,
    LineReader,
    loads_bounded,
    open_regular,
    run_seconds,
    shallow,
    skip_partial_line,
    wall_seconds,
)
from ..units import J_PER_KWH, J_PER_WH

INSTALL_HINT = "pip install 'energy-tracker[report]'"

MAX_BUCKETS = 2000               # per series: ~2 points each (min, max); plenty for a screen
PARALLEL_MIN_BYTES = 32 << 20    # below this, starting interpreters costs more than it saves
MAX_WORKERS = 8
_MAX_HELD = 4096                 # lines held before a bucket is reduced (it can be reduced twice)
HOLD_S = 5.0                     # a device not read for longer is drawn with a gap, not a line
MAX_SHADED = 400                 # window rectangles drawn (the longest); more slows the browser
MAX_TABLE_ROWS = 200
WHAT_IF = ["FR", "DE", "US", "PL", "SE", "IN"]
_KIND_COLOURS = {"epoch": "#4C78A8", "eval": "#F58518", "checkpoint": "#B279A2",
                 "phase": "#54A24B"}
_OTHER_COLOUR = "#72B7B2"


# -- downsampled series ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Grid:
    """Fixed time buckets [t0 + i*width, t0 + (i+1)*width), i < n, in run (or job) seconds."""

    t0: float
    width: float
    n: int

    @classmethod
    def over(cls, t_end: float, rate_hz: float, max_buckets: int = MAX_BUCKETS) -> Grid:
        """About one bucket per expected sample, at most `max_buckets`, over [0, t_end]."""
        t_end = max(float(t_end), 1e-3)
        n = max(1, min(int(max_buckets), math.ceil(t_end * max(rate_hz, 0.01))))
        return cls(0.0, t_end / n, n)

    def bucket(self, t: float) -> int:
        b = int((t - self.t0) / self.width)
        return 0 if b < 0 else self.n - 1 if b >= self.n else b

    def mid(self, b: int) -> float:
        return self.t0 + (b + 0.5) * self.width

    def end(self, b: int) -> float:
        return self.t0 + (b + 1) * self.width

    @property
    def hold(self) -> int:
        """Buckets a reading stands for when a sum needs a value (sample and hold)."""
        return max(1, math.ceil(HOLD_S / self.width))

    def to_json(self) -> list[float]:
        return [self.t0, self.width, self.n]


@dataclass
class Series:
    """One device's (or a sum's) power and cumulative energy on a Grid.

    power[b] = [t_min, w_min, t_max, w_max] of the readings in bucket b; energy[b] = [t, j], the
    last cumulative-energy reading in it. first/last: the first and last (t, j) seen, to join
    the derivative of j across the edge of two scanned byte ranges.
    """

    power: dict[int, list[float]] = field(default_factory=dict)
    energy: dict[int, list[float]] = field(default_factory=dict)
    first: Optional[list[float]] = None
    last: Optional[list[float]] = None
    derived: bool = False   # power is the derivative of j (a device with only a counter)

    def add_power(self, b: int, t_lo: float, lo: float, t_hi: float, hi: float) -> None:
        cur = self.power.get(b)
        if cur is None:
            self.power[b] = [t_lo, lo, t_hi, hi]
            return
        if lo < cur[1]:
            cur[0], cur[1] = t_lo, lo
        if hi > cur[3]:
            cur[2], cur[3] = t_hi, hi

    def add_energy(self, b: int, t: float, j: float) -> None:
        cur = self.energy.get(b)
        if cur is None or t >= cur[0]:
            self.energy[b] = [t, j]

    def merge_after(self, other: Series, grid: Grid) -> None:
        """Fold in the series of the byte range that follows this one in the same file."""
        if (self.derived or other.derived) and self.last and other.first \
                and other.first[0] > self.last[0]:
            t, j = other.first
            w = (j - self.last[1]) / (t - self.last[0])
            self.add_power(grid.bucket(t), t, w, t, w)
        for b, (t_lo, lo, t_hi, hi) in other.power.items():
            self.add_power(b, t_lo, lo, t_hi, hi)
        for b, (t, j) in other.energy.items():
            self.add_energy(b, t, j)
        self.first = self.first or other.first
        self.last = other.last or self.last
        self.derived = self.derived or other.derived

    def to_json(self) -> dict[str, Any]:
        return {"p": [[b, *v] for b, v in self.power.items()],
                "e": [[b, *v] for b, v in self.energy.items()],
                "first": self.first, "last": self.last, "derived": self.derived}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Series:
        return cls(power={int(r[0]): list(r[1:]) for r in d["p"]},
                   energy={int(r[0]): list(r[1:]) for r in d["e"]},
                   first=d.get("first"), last=d.get("last"), derived=bool(d.get("derived")))


@dataclass
class Scan:
    """What one pass over (part of) a samples.jsonl found."""

    series: dict[str, Series] = field(default_factory=dict)
    intensity: list[dict[str, Any]] = field(default_factory=list)
    lines: int = 0
    bad: int = 0

    def merge_after(self, other: Scan, grid: Grid) -> None:
        for name, s in other.series.items():
            if name in self.series:
                self.series[name].merge_after(s, grid)
            else:
                self.series[name] = s
        self.intensity += other.intensity
        self.lines += other.lines
        self.bad += other.bad

    def to_json(self) -> dict[str, Any]:
        return {"series": {k: v.to_json() for k, v in self.series.items()},
                "intensity": self.intensity, "lines": self.lines, "bad": self.bad}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Scan:
        return cls(series={k: Series.from_json(v) for k, v in d["series"].items()},
                   intensity=list(d["intensity"]), lines=int(d["lines"]), bad=int(d["bad"]))


def _num(x: Any) -> bool:
    """A finite JSON number of plausible size (bool is not a number here; a huge int is not
    converted to a float, which would raise)."""
    return (x.__class__ is float or x.__class__ is int) and -MAX_JSON_ABS <= x <= MAX_JSON_ABS


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
        p.get("end_wall") is None or wall_seconds(p.get("end_wall"))) and _num(
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
                clean = _num(lo) and _num(hi)
            except TypeError:
                clean = False
            if not clean:   # a string or NaN from a damaged line: keep the real numbers only
                ws = [w if _num(w) else None for w in ws]
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
            if g.__class__ is dict and _num(j := g.get("j")):
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
        if g.__class__ is dict and _num(g.get("j")):
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
                    if not (_num(lo) and _num(hi)):
                        raise ValueError
                    s.add_power(b, t, lo, t + half, hi)
                if j is None:
                    continue
                if not (_num(dt) and _num(j)):
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


def run_tasks(tasks: Sequence[Task], grid: Grid, workers: int) -> list[Scan]:
    """Each task's Scan, in task order. With workers > 1 the tasks are dealt into that many
    shares: this process scans the last while child interpreters scan the others. A child
    that fails, or runs far past any plausible time, has its share redone here (slower, same
    result)."""
    if workers <= 1 or len(tasks) <= 1:
        return [t.run(grid) for t in tasks]
    share: list[list[int]] = [[] for _ in range(min(workers, len(tasks)))]
    for i in range(len(tasks)):
        share[i % len(share)].append(i)
    root = str(Path(__file__).resolve().parent.parent.parent)
    env = dict(os.environ)
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    results: list[Optional[Scan]] = [None] * len(tasks)
    with tempfile.TemporaryDirectory(prefix="energy-report-") as tmp:
        procs = []
        for k, idx in enumerate(share[:-1]):
            req = Path(tmp) / f"share{k}.json"
            req.write_text(json.dumps({"grid": grid.to_json(),
                                       "tasks": [tasks[i].__dict__ for i in idx]}))
            try:
                p: Optional[subprocess.Popen[bytes]] = subprocess.Popen(
                    [sys.executable or "python3", "-c", _WORKER, str(req)],
                    stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                    stderr=subprocess.DEVNULL, env=env)
            except (OSError, ValueError):
                p = None
            procs.append((idx, p))
        for i in share[-1]:
            results[i] = tasks[i].run(grid)
        for idx, p in procs:
            got = None
            if p is not None:
                size = sum((tasks[i].end or _size(tasks[i].path)) - tasks[i].start for i in idx)
                try:
                    raw, _ = p.communicate(timeout=120 + size / 1e5)   # >= 10 s a MB
                    if p.returncode == 0:
                        got = [Scan.from_json(s) for s in json.loads(raw)]
                except Exception:   # a child that died, hung or wrote garbage
                    p.kill()
                    p.wait()
                    got = None
                if got is not None and len(got) != len(idx):
                    got = None
            for k, i in enumerate(idx):
                results[i] = got[k] if got is not None else tasks[i].run(grid)
    return [r for r in results if r is not None]


def _size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


_WORKER = "from tracker.report.html import _worker_main; _worker_main()"


def _worker_main() -> None:
    """Child interpreter: read {"grid", "tasks"} from the file named in argv, write the Scans
    to stdout."""
    with open(sys.argv[1]) as f:
        req = json.load(f)
    grid = Grid(*req["grid"])
    out = [Task(**t).run(grid).to_json() for t in req["tasks"]]
    sys.stdout.write(json.dumps(out, separators=(",", ":")))


# -- the report's data ----------------------------------------------------------------------------
@dataclass
class Source:
    """One samples.jsonl: a run, or one member run of a job."""

    path: Path
    manifest: dict[str, Any]
    node: Optional[str]
    offset_s: float            # its t=0 in report time (the job's start for a job)


@dataclass
class Data:
    """Everything the page shows, gathered before any plotting."""

    kind: str                              # "run" | "job"
    dir: Path
    summary: dict[str, Any]
    manifest: dict[str, Any]               # run.json (a job: its first member's)
    grid: Grid
    devices: dict[str, Series]             # run: device name -> series
    components: dict[str, str]             # run: device name -> gpu/cpu/ram
    nodes: dict[str, Series]               # job: node -> sum of its members' devices
    intensity: list[dict[str, Any]]
    start_wall: float
    lines: int
    bad: int
    seconds: float = 0.0                   # how long gathering took
    workers: int = 1
    job_members: int = 0
    rebuilt: bool = False


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
            min_parallel_bytes: int = PARALLEL_MIN_BYTES) -> Data:
    """Read a run or job directory into Data (no plotly needed)."""
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
    rate = float(rate_hz) if _num(rate_hz) and 0.001 <= rate_hz <= 1e4 else 10.0
    grid = Grid.over(t_end, rate, max_buckets)
    tasks, n = plan([(f, s.offset_s, i, timeline) for i, s in enumerate(sources)
                     for f, timeline in member_files(s.path.parent)], workers=workers,
                    min_parallel_bytes=min_parallel_bytes, reduce_members=is_job)
    parts = [_parts(s.manifest) for s in sources]
    tasks = [replace(t, parts=tuple(parts[t.member])) if parts[t.member] else t for t in tasks]
    scans = run_tasks(tasks, grid, n)
    per_source: dict[int, Scan] = {}
    for task, scan in zip(tasks, scans):
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
                job_members=len(sources) if is_job else 0, rebuilt=rebuilt)


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


# -- the page -------------------------------------------------------------------------------------
def write_html(path: Path, out: Optional[Path] = None) -> Path:
    """Write the offline HTML report of a run or job directory; returns the file written
    (default `<dir>/report.html`). Needs plotly (`pip install 'energy-tracker[report]'`)."""
    try:
        import plotly  # noqa: F401 - only to fail early, before reading a large log
    except ImportError:
        raise ConfigError("The HTML report needs plotly, which is not installed. Install it "
                          f"with: {INSTALL_HINT}") from None
    data = collect(Path(path))
    page = render_page(data)
    target = Path(out) if out is not None else Path(path) / REPORT_FILE
    target.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(target, page)
    return target


def render_page(data: Data) -> str:
    """The whole HTML document (plotly imported here)."""
    figs = _Figures()
    s = data.summary
    sections = [
        _overview(data),
        _timeline(data, figs),
        _breakdown(s, figs),
        _devices(data, figs),
        _idle(s),
        _advice(s),
        _carbon(data, figs),
        _job(s),
        _windows_table(s),
        _provenance(data),
    ]
    title = (f"energy-tracker: {'job' if data.kind == 'job' else 'run'} "
             f"{s.get('name') or ''}")
    body = "\n".join(x for x in sections if x)
    shown = {x[len('<section id="'):].split('"', 1)[0] for x in sections if x}
    nav = "".join(f'<a href="#{k}">{v}</a>' for k, v in _NAV if k in shown)
    return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>{_e(title)}</title><style>{_CSS}</style></head>\n<body>\n"
            f"<header><h1>{_e(title)}</h1><nav>{nav}</nav></header>\n<main>\n{body}\n</main>\n"
            f"<footer>Generated {_e(_utc(time.time()))} by energy-tracker "
            f"{_e(_version())} from {_e(str(data.dir))}. Self-contained: no network needed."
            "</footer>\n</body></html>\n")


_NAV = [("overview", "Overview"), ("timeline", "Timeline"), ("breakdown", "Breakdown"),
        ("devices", "Devices"), ("idle", "Idle GPUs"), ("advice", "Advice"),
        ("carbon", "Carbon"), ("job", "Job"), ("windows", "Windows"),
        ("provenance", "Provenance")]

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1d2733;
background:#f6f7f9}
header{background:#1f3b57;color:#fff;padding:14px 24px}header h1{margin:0 0 6px;font-size:20px}
nav a{color:#cfe3f7;margin-right:14px;font-size:13px;text-decoration:none}
main{padding:8px 24px 24px;max-width:1500px}
section{background:#fff;border:1px solid #dde2e8;border-radius:6px;margin:14px 0;padding:12px 16px}
h2{font-size:17px;margin:4px 0 10px}h3{font-size:14px;margin:12px 0 6px}
.cards{display:flex;flex-wrap:wrap;gap:10px}
.card{border:1px solid #dde2e8;border-radius:6px;padding:8px 12px;min-width:150px}
.card b{display:block;font-size:18px}.card span{font-size:12px;color:#5b6b7b}
table{border-collapse:collapse;font-size:13px;margin:6px 0}
td,th{border-bottom:1px solid #e6e9ed;padding:3px 10px 3px 0;text-align:left;vertical-align:top}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}
.muted{color:#5b6b7b;font-size:12px}.bad{color:#a4262c}
pre{background:#f3f5f7;padding:8px;font-size:12px;overflow:auto;max-height:320px}
footer{color:#5b6b7b;font-size:12px;padding:0 24px 24px}
"""


class _Figures:
    """Turns plotly figures into divs; plotly.js is inlined with the first one only."""

    CONFIG: ClassVar[dict[str, Any]] = {
        "displaylogo": False, "responsive": True, "scrollZoom": False,
        "toImageButtonOptions": {"format": "png", "scale": 2}}

    def __init__(self) -> None:
        self.count = 0

    def div(self, fig: Any, name: str, height: int) -> str:
        import plotly.io as pio

        fig.update_layout(height=height, template="plotly_white",
                          margin={"l": 70, "r": 30, "t": 40, "b": 40})
        out: str = pio.to_html(fig, include_plotlyjs=self.count == 0, full_html=False,
                               div_id=f"fig-{name}", config=self.CONFIG,
                               default_width="100%", default_height=f"{height}px",
                               validate=True)
        self.count += 1
        return out


# -- sections -------------------------------------------------------------------------------------
def _overview(data: Data) -> str:
    s = data.summary
    cards = [("IT energy", _kwh(s.get("energy_j")), _j(s.get("energy_j"))),
             ("facility energy", _kwh(s.get("facility_energy_j")),
              f"PUE {_g(s.get('pue'))} ({s.get('pue_source') or 'n/a'})"),
             ("emissions", _grams(s.get("emissions_kg")),
              f"at {_g(s.get('gco2_per_kwh'), '.1f')} gCO2e/kWh"),
             ("duration", _dur(s.get("duration_s")), f"status {s.get('status')}")]
    comps = s.get("components") or {}
    inside = _parts_components(s)   # parts of a whole-node meter: in its mean already
    mean = sum((c.get("mean_power_w") or 0.0) for k, c in comps.items() if k not in inside)
    if comps:
        cards.append(("mean power", f"{mean:,.1f} W",
                      ", ".join(f"{k} {c.get('method')}" for k, c in comps.items())))
    cost = s.get("cost")
    if isinstance(cost, dict):
        amount = cost.get("cost", cost.get("amount"))
        cards.append(("cost", f"{_g(amount, '.4g')} {cost.get('currency') or ''}",
                      f"at {_g(cost.get('price_per_kwh'))} {cost.get('currency') or ''}/kWh"
                      + (f" ({cost['basis']})" if cost.get("basis") else "")))
    st = s.get("steps") or {}
    if st.get("count"):
        per = [f"{st[k]:.4g} J/{k[6:]}" for k in ("j_per_sample", "j_per_token")
               if _num(st.get(k))]
        cards.append(("steps", f"{st['count']:,}", ", ".join(per) or "energy in groups"))
    html_cards = "".join(f'<div class="card"><span>{_e(a)}</span><b>{_e(b)}</b>'
                         f'<span>{_e(c)}</span></div>' for a, b, c in cards)
    what = (f"job {(s.get('job') or {}).get('job_id')!s}" if data.kind == "job"
            else f"run {s.get('run_id')}")
    warn = ""
    if data.rebuilt:
        warn = ('<p class="bad">summary.json was missing or still said "running": this page '
                "uses a summary rebuilt from the logs (not written back).</p>")
    return (f'<section id="overview"><h2>Overview</h2><p class="muted">{_e(what)}, started '
            f"{_e(s.get('started_utc'))}, ended {_e(s.get('ended_utc') or 'n/a')}</p>{warn}"
            f'<div class="cards">{html_cards}</div></section>')


def _axis(duration: float) -> tuple[float, str]:
    """Time axis unit: seconds for runs up to 2 h, else hours."""
    return (1.0, "s") if duration <= 7200 else (1 / 3600.0, "h")


def _eunit(total_j: float) -> tuple[float, str]:
    if total_j < J_PER_WH:
        return 1.0, "J"
    if total_j < J_PER_KWH:
        return 1 / J_PER_WH, "Wh"
    return 1 / J_PER_KWH, "kWh"


def _m4(series: Series, grid: Grid, k: float
        ) -> tuple[list[Optional[float]], list[Optional[float]]]:
    """Per bucket the min and the max in the order they happened: the line looks like the
    full-rate signal at any zoom, and no peak is lost. A gap longer than HOLD_S breaks it."""
    xs: list[Optional[float]] = []
    ys: list[Optional[float]] = []
    prev: Optional[int] = None
    for b in sorted(series.power):
        t_lo, lo, t_hi, hi = series.power[b]
        if prev is not None and b - prev > grid.hold:
            xs.append(None)
            ys.append(None)
        pts = [(t_lo, lo), (t_hi, hi)] if t_lo <= t_hi else [(t_hi, hi), (t_lo, lo)]
        if t_lo == t_hi:
            pts = pts[:1]
        for t, v in pts:
            xs.append(round(t * k, 6))
            ys.append(round(v, 2))
        prev = b
    return xs, ys


def _timeline(data: Data, figs: _Figures) -> str:
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    s = data.summary
    duration = max(float(s.get("duration_s") or 0.0), data.grid.t0 + data.grid.width * data.grid.n)
    k, unit = _axis(duration)
    groups = [g for g in ((s.get("steps") or {}).get("groups") or [])
              if _num(g.get("start_s")) and _num(g.get("end_s"))]
    periods = data.intensity
    rows = ["power", "energy"] + (["steps"] if groups else []) + (["intensity"] if periods else [])
    titles = {"power": ("Power per node (W): sum of its processes' devices; band = bucket min "
                        "to max" if data.kind == "job" else "Power per device (W)"),
              "energy": "Cumulative energy", "steps": "Step energy (J/step, per step group)",
              "intensity": "Grid carbon intensity (gCO2e/kWh, live)"}
    weights = {"power": 0.46, "energy": 0.24, "steps": 0.15, "intensity": 0.15}
    total_w = sum(weights[r] for r in rows)
    fig = make_subplots(rows=len(rows), cols=1, shared_xaxes=True, vertical_spacing=0.07,
                        subplot_titles=[titles[r] for r in rows],
                        row_heights=[weights[r] / total_w for r in rows])
    row = {r: i + 1 for i, r in enumerate(rows)}
    peak = 0.0
    if data.kind == "job":
        palette = _palette(len(data.nodes))
        for (node, ser), colour in zip(data.nodes.items(), palette):
            xs, lo, hi = _band(ser, data.grid, k)
            peak = max([peak] + [v for v in hi if v is not None])
            fig.add_trace(go.Scatter(x=xs, y=hi, name=_pe(node), legendgroup=_pe(node),
                                     mode="lines", line={"color": colour, "width": 1},
                                     hovertemplate=f"{_pt(node)} max %{{y:.1f}} W<extra></extra>"),
                          row=row["power"], col=1)
            fig.add_trace(go.Scatter(x=xs, y=lo, name=_pe(f"{node} min"), legendgroup=_pe(node),
                                     showlegend=False, mode="lines", fill="tonexty",
                                     line={"color": colour, "width": 1},
                                     hovertemplate=f"{_pt(node)} min %{{y:.1f}} W<extra></extra>"),
                          row=row["power"], col=1)
    else:
        palette = _palette(len(data.devices))
        for (name, ser), colour in zip(data.devices.items(), palette):
            xs, ys = _m4(ser, data.grid, k)
            peak = max([peak] + [v for v in ys if v is not None])
            how = " (dE/dt of its counter)" if ser.derived else ""
            fig.add_trace(go.Scattergl(x=xs, y=ys, name=_pe(name + how), mode="lines",
                                       line={"color": colour, "width": 1.2},
                                       hovertemplate=f"{_pt(name)} %{{y:.1f}} W<extra></extra>"),
                          row=row["power"], col=1)
    # cumulative energy: total and per component (run) or per node (job)
    parts = data.nodes if data.kind == "job" else _by_component(data)
    inside = set() if data.kind == "job" else _parts_components(data.summary)
    counted_parts = [v for k, v in parts.items() if k not in inside]
    total = sum_series(counted_parts, data.grid) if counted_parts else Series()
    e_total = max([v[1] for v in total.energy.values()] + [float(s.get("energy_j") or 0.0)])
    ek, eunit = _eunit(e_total)
    curves = [("total", total)] + (list(parts.items()) if len(parts) > 1 and len(parts) <= 16
                                   else [])
    for (name, ser), colour in zip(curves, ["#1d2733", *_palette(len(curves) - 1)]):
        pts = sorted(ser.energy.items())
        fig.add_trace(go.Scatter(
            x=[round(min(v[0], duration) * k, 6) for _, v in pts],
            y=[round(v[1] * ek, 6) for _, v in pts], name=_pe(f"energy: {name}"), mode="lines",
            line={"color": colour, "width": 2 if name == "total" else 1,
                  "dash": "solid" if name == "total" else "dot"},
            hovertemplate=f"{_pt(name)} %{{y:.4g}} {eunit}<extra></extra>"),
            row=row["energy"], col=1)
    fig.update_yaxes(title_text=eunit, row=row["energy"], col=1)
    fig.update_yaxes(title_text="W", row=row["power"], col=1, rangemode="tozero")
    if groups:
        xs, ys, text = [], [], []
        for g in groups:
            per = ", ".join(f"{g[key]:.4g} J/{key[6:]}" for key in ("j_per_sample", "j_per_token")
                            if _num(g.get(key)))
            label = (f"steps {g.get('first_step')}-{g.get('last_step')}: "
                     f"{g.get('j_per_step', 0):.4g} J/step" + (f", {per}" if per else ""))
            xs += [round(g["start_s"] * k, 6), round(g["end_s"] * k, 6), None]
            ys += [g.get("j_per_step"), g.get("j_per_step"), None]
            text += [_pe(label), _pe(label), None]
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", name="J/step",
                                 line={"color": "#E45756", "width": 2}, text=text,
                                 hovertemplate="%{text}<extra></extra>"),
                      row=row["steps"], col=1)
        fig.update_yaxes(title_text="J/step", row=row["steps"], col=1, rangemode="tozero")
    if periods:
        xs, ys, text = [], [], []
        for i, p in enumerate(periods):
            a = float(p["start_wall"]) - data.start_wall
            nxt = periods[i + 1]["start_wall"] if i + 1 < len(periods) else None
            b = p.get("end_wall") or nxt
            b = (float(b) - data.start_wall) if b is not None else duration
            label = (f"{p.get('provider')} {p.get('zone')}: {p['gco2_per_kwh']:.1f} gCO2e/kWh"
                     + (f" (fallback: {p.get('note')})" if p.get("fallback") else ""))
            xs += [round(max(a, 0.0) * k, 6), round(min(max(b, a), duration) * k, 6), None]
            ys += [p["gco2_per_kwh"], p["gco2_per_kwh"], None]
            text += [_pe(label), _pe(label), None]
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", name="grid intensity",
                                 line={"color": "#4C9F38", "width": 2}, text=text,
                                 hovertemplate="%{text}<extra></extra>"),
                      row=row["intensity"], col=1)
        fig.update_yaxes(title_text="gCO2e/kWh", row=row["intensity"], col=1)
    shaded, note = _window_shapes(s, k, fig, peak, row["power"])
    fig.update_xaxes(title_text=f"time since start ({unit})", row=len(rows), col=1)
    fig.update_xaxes(range=[0, duration * k])   # the run, not plotly's padding around it
    fig.update_layout(hovermode="x unified", legend={"orientation": "h", "y": -0.08},
                      shapes=shaded)
    height = 430 + 170 * (len(rows) - 1)
    n_series = len(data.devices) or len(data.nodes)
    caption = (f"{n_series} series, {data.grid.n} buckets of {data.grid.width:.3g} s: each bucket "
               "keeps the lowest and highest reading (so peaks survive any zoom; drag to zoom, "
               f"double-click to reset). {note}")
    return (f'<section id="timeline"><h2>Timeline</h2><p class="muted">{_e(caption)}</p>'
            f"{figs.div(fig, 'timeline', height)}</section>")


def _band(ser: Series, grid: Grid, k: float
          ) -> tuple[list[Optional[float]], list[Optional[float]], list[Optional[float]]]:
    xs: list[Optional[float]] = []
    lo: list[Optional[float]] = []
    hi: list[Optional[float]] = []
    prev: Optional[int] = None
    for b in sorted(ser.power):
        if prev is not None and b - prev > grid.hold:
            xs.append(None)
            lo.append(None)
            hi.append(None)
        _, a, _, c = ser.power[b]
        xs.append(round(grid.mid(b) * k, 6))
        lo.append(round(a, 2))
        hi.append(round(c, 2))
        prev = b
    return xs, lo, hi


def _parts_components(summary: dict[str, Any]) -> set[str]:
    """Components all of whose devices are included in a whole-node meter."""
    from ..sensors.base import counted
    devs = [d for d in summary.get("devices") or () if isinstance(d, dict)]
    comps = {str(d.get("component")) for d in devs}
    return {c for c in comps if all(not counted(d.get("details")) for d in devs
                                    if str(d.get("component")) == c)}


def _by_component(data: Data) -> dict[str, Series]:
    groups: dict[str, list[Series]] = {}
    for name, ser in data.devices.items():
        groups.setdefault(data.components.get(name, name), []).append(ser)
    return {c: (v[0] if len(v) == 1 else sum_series(v, data.grid)) for c, v in groups.items()}


def _window_shapes(s: dict[str, Any], k: float, fig: Any, peak: float, power_row: int
                   ) -> tuple[list[dict[str, Any]], str]:
    """Shaded rectangles for windows (the longest MAX_SHADED) and hover markers for them."""
    import plotly.graph_objects as go

    wins = [w for w in s.get("windows") or () if w.get("kind") != "step"
            and _num(w.get("start_s"))]
    if not wins:
        return [], ""
    end = float(s.get("duration_s") or 0.0)

    def stop(w: dict[str, Any]) -> float:
        return float(w["end_s"]) if _num(w.get("end_s")) else end

    shaded = sorted(wins, key=lambda w: stop(w) - w["start_s"], reverse=True)[:MAX_SHADED]
    shaded.sort(key=lambda w: w["start_s"])
    shapes, legend_done, epoch_i = [], set(), 0
    for w in shaded:
        kind = str(w.get("kind") or "phase")
        colour = _KIND_COLOURS.get(kind, _OTHER_COLOUR)
        opacity = 0.14
        if kind == "epoch":   # epochs tile the run: alternate so their edges show
            opacity = 0.07 if epoch_i % 2 else 0.15
            epoch_i += 1
        shapes.append({"type": "rect", "xref": "x", "yref": "paper", "x0": w["start_s"] * k,
                       "x1": stop(w) * k, "y0": 0, "y1": 1, "fillcolor": colour,
                       "opacity": opacity, "line": {"width": 0}, "layer": "below",
                       "name": _pe(kind), "legendgroup": _pe(f"window-{kind}"),
                       "showlegend": kind not in legend_done})
        legend_done.add(kind)
    xs, ys, text = [], [], []
    for w in wins[:MAX_BUCKETS]:
        a, b = float(w["start_s"]), stop(w)
        e = w.get("energy_j")
        xs.append(round((a + b) / 2 * k, 6))
        ys.append(round(peak * 1.04, 2) if peak > 0 else 0)
        text.append(_pe(f"{w.get('name')} [{w.get('kind')}]: "
                        + (f"{e:,.1f} J" if _num(e) else "n/a") + f" over {b - a:.3g} s"))
    fig.add_trace(go.Scatter(x=xs, y=ys, mode="markers", name="windows",
                             marker={"symbol": "triangle-down", "size": 7, "color": "#5b6b7b"},
                             text=text, hovertemplate="%{text}<extra></extra>"),
                  row=power_row, col=1)
    note = (f"{len(wins)} windows; the longest {MAX_SHADED} are shaded."
            if len(wins) > MAX_SHADED else f"{len(wins)} windows shaded.")
    return shapes, note


def _breakdown(s: dict[str, Any], figs: _Figures) -> str:
    bd = s.get("breakdown")
    if not isinstance(bd, dict) or not bd:
        return ""
    import plotly.graph_objects as go

    rows = sorted(((k, v) for k, v in bd.items() if isinstance(v, dict)),
                  key=lambda kv: -(kv[1].get("energy_j") or 0.0))
    fig = go.Figure(go.Bar(
        y=[_pe(k) for k, _ in rows][::-1], x=[v.get("energy_j") or 0.0 for _, v in rows][::-1],
        orientation="h", marker={"color": "#4C78A8"},
        text=[_pct(v.get("share")) for _, v in rows][::-1], textposition="auto",
        customdata=[[_dur(v.get("seconds")), _pe(v.get("method") or "")]
                    for _, v in rows][::-1],
        hovertemplate="%{y}: %{x:,.1f} J (%{text}) over %{customdata[0]}<br>"
                      "%{customdata[1]}<extra></extra>"))
    fig.update_xaxes(title_text="J")
    table = _table(["part", "energy (J)", "share", "time", "method"],
                   [[k, _f(v.get("energy_j"), ",.1f"), _pct(v.get("share")),
                     _dur(v.get("seconds")), v.get("method")] for k, v in rows], num=(1, 2, 3))
    return (f'<section id="breakdown"><h2>Where the energy went</h2>'
            f"{figs.div(fig, 'breakdown', 90 + 36 * len(rows))}{table}</section>")


def _devices(data: Data, figs: _Figures) -> str:
    import plotly.graph_objects as go

    devs = [d for d in data.summary.get("devices") or () if isinstance(d, dict)]
    if not devs:
        return ""
    label = [(f"{d['node']}/" if d.get("node") else "") + str(d.get("name")) for d in devs]
    body = ""
    if len(devs) <= 64:
        fig = go.Figure(go.Bar(
            y=[_pe(x) for x in label][::-1], x=[d.get("energy_j") or 0.0 for d in devs][::-1],
            orientation="h",
            marker={"color": [_KIND_COLOURS["epoch"] if d.get("component") == "gpu"
                              else "#9D755D" for d in devs][::-1]},
            customdata=[[_pe(d.get("method")), _pe(d.get("status"))] for d in devs][::-1],
            hovertemplate="%{y}: %{x:,.1f} J [%{customdata[0]}], %{customdata[1]}"
                          "<extra></extra>"))
        fig.update_xaxes(title_text="J")
        body = figs.div(fig, "devices", 90 + 26 * len(devs))
    table = _table(["device", "component", "energy (J)", "mean W", "peak W", "method",
                    "status", "description"],
                   [[lab, d.get("component"), _f(d.get("energy_j"), ",.1f"),
                     _f(d.get("mean_power_w"), ".1f"), _f(d.get("peak_power_w"), ".1f"),
                     d.get("method"), d.get("status"), d.get("description")]
                    for lab, d in zip(label, devs)][:MAX_TABLE_ROWS], num=(2, 3, 4))
    return f'<section id="devices"><h2>Energy per device</h2>{body}{table}</section>'


def _idle(s: dict[str, Any]) -> str:
    idle = s.get("idle")
    if not isinstance(idle, dict) or not idle:
        return ""
    keys: list[str] = []
    for v in idle.values():
        for key in v if isinstance(v, dict) else ():
            if key not in keys:
                keys.append(key)
    rows = [[name] + [_cell(key, (v or {}).get(key)) for key in keys] for name, v in idle.items()]
    num = tuple(i + 1 for i, key in enumerate(keys)
                if any(_num((v or {}).get(key)) for v in idle.values()))
    return ('<section id="idle"><h2>Idle GPU energy</h2><p class="muted">Energy drawn while the '
            "GPU ran no kernel (from its utilisation readings; an upper bound).</p>"
            f"{_table(['device', *keys], rows, num=num)}</section>")


def _advice(s: dict[str, Any]) -> str:
    advice = s.get("advice")
    if not advice:
        return ""
    items = []
    for a in advice:
        if isinstance(a, dict):
            nums = a.get("numbers") or {}
            extra = ", ".join(f"{k} = {_cell(k, v)}" for k, v in nums.items()) \
                if isinstance(nums, dict) else str(nums)
            items.append(f"<li>{_e(a.get('finding'))}"
                         + (f'<div class="muted">{_e(extra)}</div>' if extra else "") + "</li>")
        else:
            items.append(f"<li>{_e(a)}</li>")
    return f'<section id="advice"><h2>Advice</h2><ul>{"".join(items)}</ul></section>'


def _carbon(data: Data, figs: _Figures) -> str:
    import plotly.graph_objects as go

    s = data.summary
    kwh = s.get("facility_energy_kwh")
    if kwh is None and _num(s.get("facility_energy_j")):
        kwh = s["facility_energy_j"] / J_PER_KWH
    parts = ['<section id="carbon"><h2>Carbon</h2>']
    g = s.get("grid") or {}
    if s.get("emissions_kg") is not None:
        parts.append(f"<p>{_grams(s.get('emissions_kg'))} CO2e: facility energy "
                     f"{_kwh(s.get('facility_energy_j'))} × {_g(s.get('gco2_per_kwh'), '.1f')} "
                     f"gCO2e/kWh ({_e(g.get('region_code'))}: {_e(g.get('region_name'))}, "
                     f"{_e(g.get('year') or 'year n/a')}).</p>")
    if _num(kwh):
        from ..carbon import compare_regions, extremes
        kwh = float(kwh)  # type: ignore[arg-type]
        try:
            rows = compare_regions(kwh, WHAT_IF)
            best, worst = extremes("country")
            bounds = [(compare_regions(kwh, [r.code])[0], label)
                      for r, label in ((best, "cleanest country"), (worst, "dirtiest country"))]
        except Exception as e:   # bundled tables unreadable: say so, keep the page
            parts.append(f'<p class="bad">what-if regions unavailable: {_e(e)}</p>')
            rows, bounds = [], []
        allrows = [(r, "") for r in rows] + bounds
        if allrows:
            parts.append(f"<h3>What if this energy ({kwh:.6g} kWh) ran elsewhere "
                         "(annual factors)</h3>")
            fig = go.Figure(go.Bar(
                x=[_pe(f"{r['code']}{' (' + lab + ')' if lab else ''}") for r, lab in allrows],
                y=[r["emissions_g"] for r, _ in allrows], marker={"color": "#54A24B"},
                hovertemplate="%{x}: %{y:.4g} g CO2e<extra></extra>"))
            if s.get("emissions_kg") is not None:
                fig.add_hline(y=s["emissions_kg"] * 1000, line_dash="dot",
                              annotation_text="this run", line_color="#1d2733")
            fig.update_yaxes(title_text="g CO2e")
            parts.append(figs.div(fig, "whatif", 320))
            parts.append(_table(
                ["region", "name", "gCO2e/kWh", "g CO2e", "year", "source", "definition"],
                [[r["code"] + (f" ({lab})" if lab else ""), r.get("name"),
                  _f(r.get("gco2_per_kwh"), ".1f"), _f(r.get("emissions_g"), ".4g"),
                  r.get("year") or "n/a", r.get("source"), r.get("definition")]
                 for r, lab in allrows], num=(2, 3)))
    if data.intensity:
        parts.append("<h3>Live intensity periods</h3>")
        prows = [[_utc(p["start_wall"]), _utc(p.get("end_wall")), _f(p.get("gco2_per_kwh"), ".1f"),
                  p.get("provider"), p.get("zone"),
                  ("fallback: " if p.get("fallback") else "") + str(p.get("note") or "")]
                 for p in data.intensity]
        parts.append(_table(["from (UTC)", "to (UTC)", "gCO2e/kWh", "provider", "zone", "note"],
                            prows[:MAX_TABLE_ROWS], num=(2,)))
    parts.append("</section>")
    return "".join(parts)


def _job(s: dict[str, Any]) -> str:
    job = s.get("job")
    if not isinstance(job, dict):
        return ""
    out = [f'<section id="job"><h2>Job</h2><p>job id {_e(job.get("job_id"))} '
           f"({_e(job.get('source'))}, launcher {_e(job.get('launcher'))}): "
           f"{_e(job.get('world_size'))} processes on {len(job.get('nodes') or [])} node(s)</p>"]
    nodes = job.get("nodes") or []
    out.append("<h3>Nodes</h3>" + _table(
        ["node", "ranks", "devices", "energy (J)", "g CO2e", "grid", "members"],
        [[n.get("node"), _ranks(n.get("ranks")), len(n.get("devices") or []),
          _f(n.get("energy_j"), ",.1f"), _f((n.get("emissions_kg") or 0) * 1000, ".4g"),
          f"{n.get('grid_region')} ({_g(n.get('gco2_per_kwh'), '.1f')})",
          ", ".join(f"{m.get('run')} ({m.get('status')}{', rebuilt' if m.get('rebuilt') else ''})"
                    for m in n.get("members") or [])] for n in nodes][:MAX_TABLE_ROWS],
        num=(2, 3, 4)))
    attempts = job.get("attempts") or []
    if attempts:
        out.append("<h3>Attempts</h3>" + _table(
            ["attempt", "launch", "restart", "ranks", "started", "ended", "status", "energy (J)"],
            [[a.get("attempt"), a.get("launch"), a.get("restart"), _ranks(a.get("ranks")),
              a.get("started_utc"), a.get("ended_utc"), a.get("status"),
              _f(a.get("energy_j"), ",.1f")] for a in attempts], num=(7,)))
    spread = job.get("gpu_energy_spread") or {}
    if spread:
        out.append("<h3>GPU energy spread per node</h3><p class=\"muted\">A GPU far below its "
                   "peers is a straggler or idle.</p>" + _table(
                       ["node", "GPUs", "min (J)", "median (J)", "max (J)", "max-min"],
                       [[n, v.get("gpus"), _f(v.get("min_j"), ",.1f"),
                         _f(v.get("median_j"), ",.1f"), _f(v.get("max_j"), ",.1f"),
                         _pct((v["max_j"] - v["min_j"]) / v["max_j"]
                              if _num(v.get("max_j")) and v["max_j"] and _num(v.get("min_j"))
                              else None)]
                        for n, v in spread.items()][:MAX_TABLE_ROWS], num=(1, 2, 3, 4, 5)))
    missing = job.get("missing") or []
    out.append("<h3>Missing</h3>" + (
        _table(["what", "reason"], [[m.get("what"), m.get("reason")] for m in missing])
        if missing else "<p>nothing: every rank of every attempt left its files.</p>"))
    out.append("</section>")
    return "".join(out)


def _windows_table(s: dict[str, Any]) -> str:
    wins = [w for w in s.get("windows") or () if isinstance(w, dict)]
    if not wins:
        return ""
    rows = [[w.get("name"), w.get("kind"), _f(w.get("start_s"), ".3f"), _f(w.get("end_s"), ".3f"),
             _f(w.get("energy_j"), ",.1f"), _f(w.get("emissions_g"), ".4g"),
             ", ".join(f"{c}={m}" for c, m in (w.get("method_by_component") or {}).items())]
            for w in wins[:MAX_TABLE_ROWS]]
    more = (f'<p class="muted">{len(wins) - MAX_TABLE_ROWS} more in summary.json</p>'
            if len(wins) > MAX_TABLE_ROWS else "")
    return ('<section id="windows"><h2>Windows</h2>'
            + _table(["name", "kind", "start (s)", "end (s)", "energy (J)", "g CO2e", "methods"],
                     rows, num=(2, 3, 4, 5)) + more + "</section>")


def _provenance(data: Data) -> str:
    s, m = data.summary, data.manifest
    out = ['<section id="provenance"><h2>Provenance</h2>']
    out.append("<h3>How each device was measured</h3>" + _table(
        ["device", "component", "method", "description"],
        [[(f"{d['node']}/" if d.get("node") else "") + str(d.get("name")), d.get("component"),
          d.get("method"), d.get("description")] for d in s.get("devices") or ()][:MAX_TABLE_ROWS]))
    grids = [e.get("grid") or {} for e in (s.get("carbon") or {}).get("grids") or ()] \
        or [s.get("grid") or {}]
    out.append("<h3>Grid factor</h3>" + _table(
        ["region", "gCO2e/kWh", "source", "year", "licence", "definition"],
        [[f"{g.get('region_code')} ({g.get('region_name')})", _g(g.get("gco2_per_kwh"), ".2f"),
          g.get("source"), g.get("year") or "n/a", g.get("licence") or "n/a",
          g.get("definition") or "n/a"] for g in grids], num=(1,)))
    versions = m.get("versions") or {}
    out.append("<h3>Versions</h3>" + (_table(["package", "version"], list(versions.items()))
                                      if versions else "<p>not recorded</p>"))
    facts = [["summary", "rebuilt from the logs for this page" if data.rebuilt else
              str(data.dir / SUMMARY)],
             ["timeline", f"{data.lines:,} lines read from {max(1, data.job_members)} "
                          f"samples.jsonl in {data.seconds:.2f} s ({data.workers} process(es)); "
                          f"{data.grid.n} buckets of {data.grid.width:.4g} s, min and max kept"],
             ["damaged lines skipped", f"{data.bad:,}"],
             ["sampling", json.dumps(s.get("sampling") or {})]]
    out.append("<h3>This report</h3>" + _table(["", ""], facts))
    if data.bad:
        out.append(f'<p class="bad">{data.bad} damaged line(s) in samples.jsonl were skipped.</p>')
    for title, items in (("Notes", s.get("notes")), ("Degraded", s.get("degraded"))):
        if items:
            out.append(f"<h3>{title}</h3><ul>" + "".join(f"<li>{_e(n)}</li>" for n in items)
                       + "</ul>")
    if m.get("config"):
        out.append("<h3>Configuration (run.json)</h3><pre>"
                   + _e(json.dumps(m["config"], indent=2, default=str)) + "</pre>")
    host = m.get("host") or {}
    if host:
        out.append("<h3>Host</h3>" + _table(["", ""], [[k, v] for k, v in host.items()
                                                      if k not in ("argv",)]))
    out.append("</section>")
    return "".join(out)


# -- small formatting helpers ---------------------------------------------------------------------
def _e(x: Any) -> str:
    return html.escape("" if x is None else str(x))


def _pe(x: Any) -> str:
    """A user string for plotly, which renders a subset of HTML (<a href>, <b>, <br>, ...) in
    trace names, axis labels, annotations, hover and text: `&`, `<` and `>` escaped (plotly
    turns the entities back into the characters; it would show `&quot;` as it is)."""
    text = "" if x is None else str(x)
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _pt(x: Any) -> str:
    """A user string inside a hovertemplate: `_pe`, and `%` as an entity so that `%{...}` in
    a name is shown, not filled in by plotly."""
    return _pe(x).replace("%", "&#37;")


def _f(x: Any, spec: str) -> str:
    return format(x, spec) if _num(x) else "n/a"


def _g(x: Any, spec: str = "g") -> str:
    return _f(x, spec)


def _j(x: Any) -> str:
    return f"{x:,.1f} J" if _num(x) else "not measured"


def _kwh(x: Any) -> str:
    return f"{x / J_PER_KWH:.6g} kWh" if _num(x) else "n/a"


def _grams(kg: Any) -> str:
    return f"{kg * 1000:.4g} g" if _num(kg) else "n/a"


def _pct(x: Any) -> str:
    return f"{x * 100:.1f} %" if _num(x) else "n/a"


def _dur(x: Any) -> str:
    if not _num(x):
        return "n/a"
    if x < 120:
        return f"{x:.2f} s"
    h, rest = divmod(round(x), 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}"


def _cell(key: str, v: Any) -> str:
    if isinstance(v, bool) or not _num(v):
        return "n/a" if v is None else str(v)
    if "share" in key or key.endswith("_fraction"):
        return _pct(v)
    if key.endswith("_s") or key == "seconds":
        return _dur(v)
    return f"{v:,.4g}"


def _ranks(r: Any) -> str:
    if not r:
        return ""
    r = list(r)
    if len(r) > 3 and r == list(range(r[0], r[-1] + 1)):
        return f"{r[0]}-{r[-1]}"
    return ",".join(str(x) for x in r)


def _utc(wall: Any) -> str:
    if not _num(wall):
        return "n/a"
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(float(wall)))


def _table(head: Sequence[str], rows: Sequence[Sequence[Any]], num: tuple[int, ...] = ()) -> str:
    def cls(i: int) -> str:
        return ' class="n"' if i in num else ""
    th = "".join(f"<th{cls(i)}>{_e(h)}</th>" for i, h in enumerate(head))
    trs = "".join("<tr>" + "".join(f"<td{cls(i)}>{_e(c)}</td>" for i, c in enumerate(r)) + "</tr>"
                  for r in rows)
    return f"<table><thead><tr>{th}</tr></thead><tbody>{trs}</tbody></table>"


def _palette(n: int) -> list[str]:
    base = ["#4C78A8", "#F58518", "#E45756", "#72B7B2", "#54A24B", "#EECA3B", "#B279A2",
            "#FF9DA6", "#9D755D", "#BAB0AC"]
    return [base[i % len(base)] for i in range(n)]


def _version() -> str:
    from .. import __version__
    return __version__


__all__ = ["INSTALL_HINT", "MAX_BUCKETS", "Data", "Grid", "Scan", "Series", "collect",
           "render_page", "scan_range", "sum_series", "write_html"]
