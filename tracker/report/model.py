"""The report's data model: fixed time buckets, downsampled series, what a scan found, and
everything one page shows (gathered by scan.py, drawn by render.py).

A series keeps, per time bucket, the lowest and highest power reading and when each happened,
so a one-sample peak survives any zoom while memory stays bounded by the number of buckets.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from ..rundir.untrusted import MAX_JSON_ABS

MAX_BUCKETS = 2000               # per series: ~2 points each (min, max); plenty for a screen
HOLD_S = 5.0                     # a device not read for longer is drawn with a gap, not a line


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


def num(x: Any) -> bool:
    """A finite JSON number of plausible size (bool is not a number here; a huge int is not
    converted to a float, which would raise)."""
    return (x.__class__ is float or x.__class__ is int) and -MAX_JSON_ABS <= x <= MAX_JSON_ABS




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
    prereduced: int = 0                    # sources read from their report_timeline.jsonl
    prereduced_buckets: int = 0            # buckets read from them
    tail_lines: int = 0                    # lines scanned after what those files covered


__all__ = ["HOLD_S", "MAX_BUCKETS", "Data", "Grid", "Scan", "Series", "Source", "num"]
