"""report_timeline.jsonl: the report's timeline, kept by the run as it goes, so a report reads
O(buckets) instead of re-parsing every sample (a day of 8 GPUs at 10 Hz is ~900 000 lines).

One JSON line per time bucket that had readings, appended (complete lines, a write every few
seconds, like samples.jsonl: a SIGKILL loses at most the buckets not yet written, and a report scans
samples.jsonl for that tail):

    {"report_timeline": 1, "base_s": 1.0, "per_level": 4000, "from_s": 0.0}      first line
    {"a": 12.0, "w": 1.0, "d": {"gpu0": [dl, lo, dh, hi, mean, n, dj, j], ...}}  a bucket
    {"intensity": {...}}                                  a live intensity period, as logged
    {"end": 86400.1}                                      the run stopped: all of it is above

Per device and bucket [a, a + w): the lowest and highest power reading (W) and when they
happened (dl, dh: seconds after a), the mean and number of readings (lo/hi/mean null and n 0
for a device with only an energy counter), and the last cumulative energy reading j (J) at
a + dj. Node and job totals are sums of these, made by the report.

Bucket widths: `base_s` for the first 2 x per_level buckets, then doubled each time the run
time doubles (per_level buckets a level), so a run of any length keeps between per_level and
2 x per_level of its latest buckets, and a month is ~40 000 lines. Every bucket lies inside
one aligned interval [k w, (k + 1) w) of its level's width w, so a report grid whose width is
a multiple of the largest w holds each bucket whole: per report bucket, min and max are exact.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from .names import REPORT_TIMELINE
from .untrusted import (
    MAX_READING_ABS,
    LineReader,
    loads_bounded,
    number,
    open_regular,
    run_seconds,
    shallow,
)

log = logging.getLogger("tracker")

VERSION = 1
BASE_S = 1.0            # the first buckets' width (seconds of run time)
PER_LEVEL = 4000        # buckets at one width before it doubles
MAX_PENDING = 20000     # lines held while the directory cannot be written (then dropped)


def level_width(t: float, base_s: float = BASE_S, per_level: int = PER_LEVEL) -> float:
    """The width of a bucket that starts at run time `t`: base_s below 2 x per_level x base_s,
    then base_s x 2^L for t in [2^L, 2^(L+1)) x per_level x base_s (integers: no rounding
    decides a level)."""
    q = int(max(t, 0.0) / base_s) // per_level
    return base_s * (1 << max(0, q.bit_length() - 1))


class ReportTimelineWriter:
    """Kept by the run's owner on the sampler thread (checkpoint.Checkpoints): `add` the tick
    records of a round, `flush` the buckets completed, `close` at stop. Never raises: a
    failure is logged once and the file is left as it is (a report then scans the rest)."""

    def __init__(self, run_dir: Path, *, base_s: Optional[float] = None,
                 per_level: Optional[int] = None):
        self.path = Path(run_dir) / REPORT_TIMELINE
        # the module's values when the run starts (read here, so a test can set them)
        self.base_s = float(BASE_S if base_s is None else base_s)
        self.per_level = int(PER_LEVEL if per_level is None else per_level)
        self.broken = False
        self.closed = False
        self._a = self._end = -math.inf        # the bucket being filled: [a, end)
        self._acc: dict[str, list[Any]] = {}
        self._lines: list[str] = []
        self._t_last: Optional[float] = None
        self._periods: list[dict[str, Any]] = []   # intensity periods written, as written

    # -- the sampler thread ---------------------------------------------------------------------
    def add(self, records: Sequence[dict[str, Any]]) -> None:
        """Fold tick records {"t": t, "d": {device: {"w", "j", ...}}} into their buckets."""
        if self.broken or self.closed:
            return
        try:
            self._add(records)
        except Exception as e:   # never into training
            self._fail(e)

    def _add(self, records: Sequence[dict[str, Any]]) -> None:
        for rec in records:
            d = rec.get("d")
            if not d:
                continue
            t = rec["t"]
            if t >= self._end:
                self._roll(t)
            self._t_last = t
            acc = self._acc
            for name, r in d.items():
                a = acc.get(name)
                if a is None:
                    a = acc[name] = [0.0, math.inf, 0.0, -math.inf, 0.0, 0, None, None]
                w = r.get("w")
                if w is not None and number(w, MAX_READING_ABS):
                    if w < a[1]:
                        a[0], a[1] = t, w
                    if w > a[3]:
                        a[2], a[3] = t, w
                    a[4] += w
                    a[5] += 1
                j = r.get("j")
                if j is not None and number(j, MAX_READING_ABS):
                    a[6], a[7] = t, j

    def _roll(self, t: float) -> None:
        """Close the bucket being filled, open the one holding `t`."""
        self._emit()
        w = level_width(t, self.base_s, self.per_level)
        a = math.floor(t / w) * w
        # a level change that floating point put one tick early: start where the last ended
        # (still inside the aligned interval of width w, so a report bucket holds it whole)
        self._a = max(a, self._end)
        self._end = a + w

    def _emit(self) -> None:
        if not self._acc:
            return
        a = self._a
        d: dict[str, list[Any]] = {}
        for name, (tl, lo, th, hi, s, n, tj, j) in self._acc.items():
            if n:
                d[name] = [round(tl - a, 3), round(lo, 3), round(th - a, 3), round(hi, 3),
                           round(s / n, 3), n, None if tj is None else round(tj - a, 3),
                           None if j is None else round(j, 3)]
            elif j is not None:
                d[name] = [None, None, None, None, None, 0, round(tj - a, 3), round(j, 3)]
        if d:
            self._lines.append(_line({"a": a, "w": self._end - a, "d": d}))
        self._acc = {}

    def note_periods(self, periods: Sequence[Any]) -> None:
        """Live intensity periods (objects with to_dict()): the new or changed ones are
        written with the next flush. Only the last written one can still change (its end)."""
        if self.broken or self.closed:
            return
        try:
            have = self._periods
            start = max(0, len(have) - 1)
            for i, p in enumerate(periods[start:], start):
                got = p.to_dict()
                if i < len(have) and have[i] == got:
                    continue
                if i < len(have):
                    have[i] = got
                else:
                    have.append(got)
                self._lines.append(_line({"intensity": got}))
        except Exception as e:
            self._fail(e)

    def flush(self) -> None:
        """Append the lines completed since the last flush (one write of whole lines)."""
        if self.broken or not self._lines:
            return
        lines, self._lines = self._lines, []
        try:
            self._write(lines)
        except FileNotFoundError:   # the run directory is gone: the run recreates it
            self._lines = lines + self._lines if len(lines) < MAX_PENDING else []
        except Exception as e:
            self._fail(e)

    def _write(self, lines: list[str]) -> None:
        from ..safefs import open_nofollow
        fd = open_nofollow(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            head = ""
            if os.fstat(fd).st_size == 0:   # a new file (or the directory was recreated)
                first = next((json.loads(x)["a"] for x in lines if x.startswith('{"a"')), None)
                head = _line({"report_timeline": VERSION, "base_s": self.base_s,
                              "per_level": self.per_level,
                              "from_s": first if first is not None else self._a})
            data = (head + "".join(lines)).encode()
            while data:
                n = os.write(fd, data)
                data = data[n:]
        finally:
            os.close(fd)

    def close(self, periods: Sequence[Any] = ()) -> None:
        """At stop: the last bucket, the periods, the end mark, written."""
        if self.closed:
            return
        if not self.broken:
            try:
                self._emit()
                self.note_periods(periods)
                if self._t_last is not None:
                    self._lines.append(_line({"end": self._t_last}))
            except Exception as e:
                self._fail(e)
        self.flush()
        self.closed = True

    def _fail(self, e: Exception) -> None:
        self.broken = True
        self._lines = []
        log.warning("energy-tracker: %s not kept from here (a report scans samples instead): "
                    "%s: %s", REPORT_TIMELINE, type(e).__name__, e)


def _line(obj: dict[str, Any]) -> str:
    return json.dumps(obj, separators=(",", ":"), allow_nan=False) + "\n"


# -- reading (a report) ---------------------------------------------------------------------------
TAIL_BYTES = 1 << 20     # the end of the file read to learn how far it goes


@dataclass
class ReportTimeline:
    """A report_timeline.jsonl that starts with this format's header (it is untrusted input,
    like every file of a run directory). `until`: the end of its last bucket; `ended`: the
    run's stop was written (nothing is missing before it); `max_width`: its widest bucket
    (the last level's). `buckets()` streams the buckets, checked; during it, `intensity`
    gathers the periods and `bad` counts the lines skipped."""

    path: Path
    base_s: float
    per_level: int
    from_s: float
    until: float = 0.0
    ended: Optional[float] = None
    max_width: float = 0.0
    intensity: list[dict[str, Any]] = field(default_factory=list)
    bad: int = 0
    accept: Optional[Callable[[Any], bool]] = None

    def buckets(self) -> Iterator[tuple[float, float, dict[str, list[Any]]]]:
        """(a, w, {device: [dl, lo, dh, hi, mean, n, dj, j]}) as written (times after a)."""
        self.intensity, self.bad = [], 0
        try:
            f = open_regular(self.path)
        except OSError:
            return
        with f:
            reader = LineReader(f)
            lines = iter(reader)
            next(lines, None)   # the header
            for raw in lines:
                rec = _parse(raw)
                try:
                    if not isinstance(rec, dict):
                        raise ValueError
                    if "a" in rec:
                        yield _bucket(rec)
                    elif "intensity" in rec:
                        if self.accept is not None and not self.accept(rec["intensity"]):
                            raise ValueError
                        self.intensity.append(rec["intensity"])
                    elif not ("end" in rec and run_seconds(rec["end"])):
                        raise ValueError
                except (ValueError, TypeError, KeyError):
                    self.bad += 1
            self.bad += reader.damaged + (reader.tail > 0)


def read(run_dir: Path, accept: Optional[Callable[[Any], bool]] = None
         ) -> Optional[ReportTimeline]:
    """The run's report_timeline.jsonl (its header and how far it goes, from its last
    TAIL_BYTES), or None when there is none, its first line is not this format's header, or
    no bucket is found at its end. `accept(period)`: whether an intensity record is usable."""
    try:
        f = open_regular(Path(run_dir) / REPORT_TIMELINE)
    except OSError:
        return None
    with f:
        head = _parse(next(iter(LineReader(f, max_bytes=1 << 16)), b""))
        if not (isinstance(head, dict) and head.get("report_timeline") == VERSION
                and number(head.get("base_s")) and head["base_s"] > 0
                and isinstance(head.get("per_level"), int) and 0 < head["per_level"] < 1 << 30
                and run_seconds(head.get("from_s"))):
            return None
        out = ReportTimeline(Path(run_dir) / REPORT_TIMELINE, float(head["base_s"]),
                             int(head["per_level"]), float(head["from_s"]), accept=accept)
        f.seek(0, os.SEEK_END)
        size = f.tell()
        f.seek(max(0, size - TAIL_BYTES))
        tail = f.read().split(b"\n")
    if size > TAIL_BYTES:
        tail = tail[1:]   # cut by the seek
    for raw in reversed(tail[:-1]):   # the last piece is cut (or empty)
        rec = _parse(raw)
        if not isinstance(rec, dict):
            continue
        if out.ended is None and "end" in rec and run_seconds(rec["end"]):
            out.ended = float(rec["end"])
        elif "a" in rec:
            try:
                a, w, _ = _bucket(rec)
            except (ValueError, TypeError, KeyError):
                continue
            out.until = a + w
            out.max_width = max(w, level_width(a, out.base_s, out.per_level))
            return out
    return None


def _parse(raw: bytes) -> Any:
    try:
        return loads_bounded(raw) if shallow(raw) else None
    except Exception:
        return None


_NUMBER_TYPES = frozenset((int, float))


def _bucket(rec: dict[str, Any]) -> tuple[float, float, dict[str, list[Any]]]:
    """A bucket line (a, w, d), each device's entry checked; ValueError when it is not one.
    (A bucket line holds tens of numbers: checked with C-level min/max, not one by one.)"""
    a, w, d = rec["a"], rec["w"], rec["d"]
    if not (run_seconds(a) and run_seconds(w) and w > 0 and d.__class__ is dict):
        raise ValueError
    lim = MAX_READING_ABS
    types = _NUMBER_TYPES
    for v in d.values():
        if v.__class__ is not list or len(v) != 8:
            raise ValueError
        n, j = v[5], v[7]
        if n.__class__ is not int or n < 0:
            raise ValueError
        # the numbers this entry uses: [dl, lo, dh, hi, mean, n] with power, [n, dj, j] with
        # an energy reading (n is a count: a number in range too)
        used = (v if j is not None else v[:6]) if n else v[5:] if j is not None else None
        if used is None or not (types.issuperset(map(type, used)) and -lim <= min(used)
                                and max(used) <= lim):
            raise ValueError
    return a, w, d


__all__ = ["BASE_S", "PER_LEVEL", "ReportTimeline", "ReportTimelineWriter", "level_width",
           "read"]
