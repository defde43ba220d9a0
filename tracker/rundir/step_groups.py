"""Steps older than the per-step horizon, kept on disk as their groups: step_groups.jsonl.

The summary's step groups (ledger.StepGroups: fixed-size groups aligned on step 0, the size
doubling as the run grows) are what a long run's steps are read at anyway; the per-step
records (step_segments.py) are kept only for the newest `step_detail_steps` steps. So that a
rebuild (a killed run) needs no per-step record older than that, the live ledger appends a
record here whenever a group completes (or every RECORD_EVERY of the horizon's steps):

    {"v": 1, "to": R, "size": S, "pieces": [[a, b, first, last, start_s, end_s, energy_j,
     samples, tokens], ...], "ledger": {count, energy_j, seconds, samples, tokens,
     first_start, last_end, e_first, e_last, overlap_j, overlap_s}}

`pieces`: the steps of ordinals [a, b) settled since the previous record (first/last: their
step indices; start/end: run seconds; the energy as the live run settled it), cut at the
group edges of the size S they were added at, so a piece never straddles a group of any later
(doubled) size; `ledger`: the ledger's step accounts after ordinal R (the union of steps, the
eval/checkpoint time inside them, first start and last end with E there). A rebuild takes the
accounts of the last whole record, the groups merged from every piece before it, and replays
only the per-step records from R on: the same numbers as a run that kept every step, whatever
was deleted. Appended, one line a record, flushed with steps.bin (every 0.5 s); a torn last
line (SIGKILL mid-write) is skipped, and per-step records are deleted only after the records
covering them were flushed, so a torn record is always newer than any deleted step.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from .names import STEP_GROUPS

log = logging.getLogger("tracker")

VERSION = 1
# The ledger accounts a record carries (ledger.Ledger attributes of these names).
SCALARS = ("count", "energy_j", "seconds", "samples", "tokens", "first_start", "last_end",
           "e_first", "e_last")
KINDS = ("eval", "checkpoint")
PIECE_FIELDS = ("a", "b", "first", "last", "start_s", "end_s", "energy_j", "samples", "tokens")
MAX_LINE_BYTES = 1 << 20       # a record is ~1 kB; a longer line is not one
MAX_PIECES = 1 << 19           # a month of 10 ms steps writes ~1e4: far more is forged


class PieceBook:
    """Steps settled since the last record, summed per group of the size they were added at.
    The ledger adds every settled batch in its order (ordinals count on); before the group
    size is known (the first SIZE_FROM_STEPS steps) they wait here, as StepGroups' do."""

    def __init__(self) -> None:
        self.pieces: list[list[Any]] = []   # as PIECE_FIELDS, plus the size last
        self.end = 0                         # the ordinal of the next step
        self._early: list[tuple[Any, ...]] = []

    def add(self, size: Optional[int], t0: Sequence[float], t1: Sequence[float],
            e: Sequence[float], index: Sequence[int], samples: Sequence[int],
            tokens: Sequence[int]) -> None:
        if size is None:
            self._early += zip(*(_floats(c) for c in (t0, t1, e)),
                               *(_ints(c) for c in (index, samples, tokens)))
            return
        if self._early:
            early, self._early = self._early, []
            cols = list(zip(*early))
            self._add(size, *cols)
        self._add(size, t0, t1, e, index, samples, tokens)

    def _add(self, size: int, t0: Sequence[float], t1: Sequence[float], e: Sequence[float],
             index: Sequence[int], samples: Sequence[int], tokens: Sequence[int]) -> None:
        n, i, k = len(t0), 0, self.end
        while i < n:   # one slice per group, sums in C (numpy) as StepGroups does
            gid = (k + i) // size
            j = min(n, (gid + 1) * size - k)
            es, ss, ks = e[i:j], samples[i:j], tokens[i:j]
            row = [k + i, k + j, int(index[i]), int(index[j - 1]), float(t0[i]),
                   float(t1[j - 1]), _sum_f(es), _sum_i(ss), _sum_i(ks), size]
            last = self.pieces[-1] if self.pieces else None
            if last is not None and last[1] == row[0] and last[9] == size and \
                    (last[0] // size) == gid:
                last[1], last[3], last[5] = row[1], row[3], row[5]
                last[6] += row[6]
                last[7] += row[7]
                last[8] += row[8]
            else:
                self.pieces.append(row)
            i = j
        self.end = k + n

    def take(self) -> list[list[Any]]:
        """The pieces so far, as written (without their size), and start afresh."""
        out = [p[:9] for p in self.pieces]
        self.pieces = []
        return out


def _floats(c: Any) -> list[float]:
    return [float(x) for x in c]


def _ints(c: Any) -> list[int]:
    return [int(x) for x in c]


def _sum_f(xs: Any) -> float:
    return float(xs.sum()) if hasattr(xs, "sum") else math.fsum(xs)


def _sum_i(xs: Any) -> int:
    return int(xs.sum()) if hasattr(xs, "sum") else int(sum(xs))


def encode(to: int, size: int, pieces: list[list[Any]], accounts: dict[str, Any]) -> bytes:
    """One record as its line (floats as repr: exact when read back)."""
    return (json.dumps({"v": VERSION, "to": to, "size": size, "pieces": pieces,
                        "ledger": accounts}, separators=(",", ":"), allow_nan=False,
                       default=_plain) + "\n").encode()


def _plain(x: Any) -> Any:
    """A numpy scalar as the Python number it holds (json writes no numpy types)."""
    if hasattr(x, "item"):
        return x.item()
    raise TypeError(f"{type(x).__name__} is not a number")


class GroupFile:
    """step_groups.jsonl, appended: records buffered, written by flush() (with steps.bin),
    opened at the first record (a run of a few steps never has one). A file that cannot be
    written (a link planted at its name, a full disk) costs the training nothing: the records
    wait, and once some are dropped (`broken`) no per-step record is deleted any more."""

    MAX_BUFFER = 4 << 20

    def __init__(self, path: Path):
        self.path = Path(path)
        self._f: Any = None
        self._buf = bytearray()
        self.broken = False

    def append(self, line: bytes) -> None:
        if len(self._buf) + len(line) > self.MAX_BUFFER:
            self._buf.clear()       # never written: later records would not be contiguous
            self.broken = True
        if not self.broken:
            self._buf += line

    def flush(self) -> bool:
        """Write what is buffered; True when every record so far is in the file."""
        if not self._buf:
            return not self.broken
        try:
            if self._f is None:
                from ..safefs import open_nofollow
                fd = open_nofollow(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
                self._f = os.fdopen(fd, "ab", buffering=0)
            if self._f.closed:
                return False
            self._f.write(self._buf)
        except OSError as e:
            log.debug("energy-tracker: %s not written (%s)", self.path.name, e)
            return False
        self._buf.clear()
        return not self.broken

    def reopen(self) -> None:
        """The directory was recreated: the next records go to a new file at the path."""
        if self._f is not None and not self._f.closed:
            self._f.close()
        self._f = None

    def close(self) -> None:
        self.flush()
        if self._f is not None and not self._f.closed:
            try:
                os.fsync(self._f.fileno())
            except OSError:
                pass
            self._f.close()


@dataclass
class GroupsOnDisk:
    """What step_groups.jsonl holds, checked: the pieces of ordinals [0, to), the ledger
    accounts after `to`, the group size then, and why reading stopped early (None: it did not)."""

    to: int = 0
    size: int = 1
    accounts: dict[str, Any] = field(default_factory=dict)
    pieces: list[list[Any]] = field(default_factory=list)
    note: Optional[str] = None

    def covering(self, upto: int) -> int:
        """The end ordinal of the pieces needed to hold every step before `upto`."""
        for p in self.pieces:
            if p[1] >= upto:
                return int(p[1])
        return self.to

    def groups(self, upto: Optional[int] = None) -> list[list[Any]]:
        """The pieces that start before ordinal `upto` (default all) merged into groups of
        `size`, as StepGroups rows: first, last, steps, start, end, energy_j, samples,
        tokens."""
        out: list[list[Any]] = []
        gid_last = -1
        for a, b, first, last, start, end, e, s, k in self.pieces:
            if upto is not None and a >= upto:
                break
            gid = a // self.size
            if out and gid == gid_last:
                g = out[-1]
                g[1], g[2], g[4] = last, g[2] + b - a, end
                g[5] += e
                g[6] += s
                g[7] += k
            else:
                out.append([first, last, b - a, start, end, e, s, k])
                gid_last = gid
        return out


def read_groups(run_dir: Path) -> Optional[GroupsOnDisk]:
    """step_groups.jsonl of `run_dir`, checked as untrusted input: the records read up to the
    first that is not whole, plausible and contiguous with the ones before (a torn tail,
    or damage: said in `note`); None when there is no file or no usable record."""
    from .untrusted import LineReader, loads_bounded, open_regular

    path = Path(run_dir) / STEP_GROUPS
    if not path.exists():
        return None
    out = GroupsOnDisk()
    pieces: list[list[Any]] = []
    n_lines = 0
    try:
        lines = LineReader(open_regular(path), max_line=MAX_LINE_BYTES, close=True)
        for raw in lines:
            n_lines += 1
            try:
                to, size, got, accounts = _checked(loads_bounded(raw), out.to)
            except (ValueError, TypeError, KeyError, AttributeError) as e:
                out.note = _stopped(n_lines, str(e)[:80])
                break
            if len(pieces) + len(got) > MAX_PIECES:
                out.note = _stopped(n_lines, f"more than {MAX_PIECES:,} pieces")
                break
            pieces += got
            out.to, out.size, out.accounts = to, size, accounts
        else:
            if lines.too_long or lines.blank:
                out.note = _stopped(n_lines, "a line too long or empty")
    except OSError as e:
        out.note = f"{STEP_GROUPS} unreadable ({e})"
    out.pieces = pieces
    return out if out.to > 0 else (GroupsOnDisk(note=out.note) if out.note else None)


def _stopped(line: int, why: str) -> str:
    return f"{STEP_GROUPS} read up to line {line:,} ({why}); the steps after it come from " \
           "their per-step records where those are kept"


def _checked(rec: Any, prev_to: int) -> tuple[int, int, list[list[Any]], dict[str, Any]]:
    """A record's (to, size, pieces, ledger accounts), or ValueError saying what is wrong."""
    from .untrusted import number, run_seconds

    def whole(x: Any, lo: int = 0) -> bool:
        return x.__class__ is int and lo <= x < 1 << 62

    if not isinstance(rec, dict) or rec.get("v") != VERSION:
        raise ValueError("not a version-1 record")
    to, size, pieces, acc = rec.get("to"), rec.get("size"), rec.get("pieces"), rec.get("ledger")
    if not (whole(to, prev_to + 1) and whole(size, 1) and isinstance(pieces, list) and pieces
            and isinstance(acc, dict)):
        raise ValueError("no usable to/size/pieces/ledger")
    at = prev_to
    for p in pieces:
        if not (isinstance(p, list) and len(p) == len(PIECE_FIELDS)):
            raise ValueError("a piece is not 9 values")
        a, b, first, last, start, end, e, s, k = p
        if not (whole(a) and whole(b) and a == at and b > a and (b - 1) // size == a // size
                and all(x.__class__ is int for x in (first, last, s, k))
                and run_seconds(start) and run_seconds(end) and end >= start and number(e)):
            raise ValueError(f"a piece at ordinal {at:,} is not one (or not contiguous)")
        at = b
    if at != to:
        raise ValueError("the pieces do not end at the record's ordinal")
    for name in SCALARS:
        v = acc.get(name)
        ok = (v is None or run_seconds(v)) if name in ("first_start", "last_end") else \
            v.__class__ is int if name in ("count", "samples", "tokens") else number(v)
        if not ok:
            raise ValueError(f"the ledger's {name} is not usable")
    if acc["count"] != to or acc["first_start"] is None or acc["last_end"] is None:
        raise ValueError("the ledger accounts are not those after the record")
    for name in ("overlap_j", "overlap_s"):
        v = acc.get(name)
        if not (isinstance(v, dict) and set(v) == set(KINDS) and all(number(x) for x in
                                                                       v.values())):
            raise ValueError(f"the ledger's {name} is not {{eval, checkpoint}} numbers")
    return to, size, [list(p) for p in pieces], acc  # type: ignore[return-value]


__all__ = ["GroupFile", "GroupsOnDisk", "PieceBook", "encode", "read_groups"]
