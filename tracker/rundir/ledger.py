"""The run's running accounts: what is known for good once E(t) is final, kept small.

A step's energy E(t1) - E(t0) is final once the energy curve no longer changes at t1: for a
GPU with an energy counter, once a counter read after t1 has anchored the curve (it rescales
everything since the previous read); for sampled and modeled devices, once a reading after t1
exists. The sampler calls `advance(frontier)` after every tick with the time up to which every
device's curve is final; the ledger then settles every closed step and utilisation reading
before it, and forgets them:

- settled steps are appended to `steps.bin` with their energies, in column blocks
  (step_segments.py), flushed with the samples log (every 0.5 s); a SIGKILL loses the steps
  of its last ~1-2 s (not yet settled), as it loses the last half second of samples;
- steps fold into at most MAX_STEP_GROUPS fixed-size groups (the size doubles when needed);
  each completed group, with the accounts after it, is appended to step_groups.jsonl
  (step_groups.py), so only the newest `step_detail_steps` steps need a per-step record;
- the breakdown's step parts accumulate (first step start, last step end, energy in steps,
  and the part of eval/checkpoint windows that overlaps steps);
- utilisation readings accumulate idle energy per GPU.

Settling is vectorised with numpy when it is installed (it is wherever torch, transformers or
Lightning are), so even an empty loop of a million steps a second is settled as fast as it is
made; without numpy the same arithmetic runs in Python. Memory does not grow with the number of
steps, stop() does not revisit them, and a killed run's log replayed through a fresh ledger
gives the same numbers as the live one.
"""

from __future__ import annotations

import bisect
import math
from array import array
from collections import deque
from collections.abc import Sequence
from typing import Any, Callable, Optional

from .names import STEPS as STEPS_FILE
from .step_segments import (
    COLUMNS,
    MAX_BLOCK_STEPS,
    StepFile,
    StepFileDamage,
    read_step_columns,
    read_steps,
)

STEP_GROUP_MIN_S = 1.0       # a group spans at least this (the counter moves every ~100 ms)
MAX_STEP_GROUPS = 1000       # ... and a run has at most this many groups
SIZE_FROM_STEPS = 64         # the group size is chosen from the first steps' median duration
SETTLE_CHUNK = 1 << 16       # steps settled at once (numpy temporaries ~0.5 MB a column)
# A group record at least every this much of the per-step horizon, even inside one group: the
# per-step records the records cover can go once they are past the horizon.
RECORD_FRACTION = 1 / 8
_I64 = 1 << 63

Row = tuple[int, int, float, float, int, int, int]   # id, parent, t0, t1, index, samples, tokens


_UNSET: Any = object()


def _numpy() -> Any:
    try:
        import numpy
        return numpy
    except ImportError:
        return None


class Batch:
    """Closed steps in columns (as they closed), and where their energy column is on disk."""

    __slots__ = ("index", "parent", "samples", "t0", "t1", "tokens")

    def __init__(self, rows: Sequence[Row]):
        _, parent, t0, t1, index, samples, tokens = zip(*rows)
        self.t0, self.t1 = array("d", t0), array("d", t1)
        self.index = array("q", index)
        self.samples, self.tokens = array("q", samples), array("q", tokens)
        self.parent = array("q", parent)

    def __len__(self) -> int:
        return len(self.t0)

    def rows(self) -> list[Row]:
        """As (id, parent, t0, t1, index, samples, tokens) tuples (id: the row number)."""
        return list(zip(range(len(self)), self.parent, self.t0, self.t1, self.index,
                        self.samples, self.tokens))

    def split(self, k: int) -> tuple[Batch, Batch]:
        """(first k steps, the rest), sharing nothing."""
        return self.slice(0, k), self.slice(k, len(self))

    def slice(self, i: int, j: int) -> Batch:
        """Steps i..j-1 (copies of those only), with where their energies go on disk."""
        out = Batch.__new__(Batch)
        for name in ("t0", "t1", "index", "samples", "tokens", "parent"):
            setattr(out, name, getattr(self, name)[i:j])
        return out


class StepQueue:
    """Closed steps on their way from the training thread to the sampler thread, in column
    arrays: a step costs six appends and no object. The training thread appends one value to
    every column, `parent` last; the sampler takes the rows complete in every column (the
    length of `parent`) and deletes that prefix, so a row half-appended when it looks is left
    for the next time. Both run under the GIL, each list operation is atomic."""

    def __init__(self) -> None:
        self.t0, self.t1 = array("d"), array("d")
        self.index, self.samples, self.tokens = array("q"), array("q"), array("q")
        self.parent = array("q")

    def push(self, parent: int, t0: float, t1: float, index: int, samples: int, tokens: int
             ) -> None:
        self.t0.append(t0)
        self.t1.append(t1)
        self.index.append(index)
        self.samples.append(samples)
        self.tokens.append(tokens)
        self.parent.append(parent)   # last: it makes the row complete

    def __len__(self) -> int:
        return len(self.parent)

    def take(self) -> Optional[Batch]:
        n = len(self.parent)
        if not n:
            return None
        b = Batch.__new__(Batch)
        for name in ("t0", "t1", "index", "samples", "tokens", "parent"):
            col = getattr(self, name)
            setattr(b, name, col[:n])
            del col[:n]
        return b


class StepGroups:
    """Consecutive steps in fixed-size groups aligned on step 0, at most MAX_STEP_GROUPS. The
    size comes from the median of the first SIZE_FROM_STEPS steps (a group spans >=
    STEP_GROUP_MIN_S) and doubles (adjacent pairs merge) when there would be too many, so the
    same steps give the same groups however they were batched."""

    def __init__(self) -> None:
        self.size: Optional[int] = None
        self.count = 0
        self._early: list[tuple[float, float, float, int, int, int]] = []
        self.groups: list[list[float]] = []   # first, last, steps, start, end, e, samples, tok

    def add(self, t0: Sequence[float], t1: Sequence[float], e: Sequence[float],
            index: Sequence[int], samples: Sequence[int], tokens: Sequence[int]) -> None:
        """Steps in order (columns)."""
        i = 0
        n = len(t0)
        if self.size is None:
            take = min(n, SIZE_FROM_STEPS - len(self._early))
            self._early += ((float(a), float(b), float(c), int(d), int(f), int(g))
                            for a, b, c, d, f, g in zip(t0[:take], t1[:take], e[:take],
                                                        index[:take], samples[:take],
                                                        tokens[:take]))
            i = take
            if len(self._early) < SIZE_FROM_STEPS:
                return
            self._settle_size()
        if i < n:
            self._add(t0[i:], t1[i:], e[i:], index[i:], samples[i:], tokens[i:])

    def _settle_size(self) -> None:
        durations = sorted(b - a for a, b, *_ in self._early)
        median = durations[len(durations) // 2] if durations else 0.0
        self.size = max(1, math.ceil(STEP_GROUP_MIN_S / median)) if median > 0 else \
            max(1, len(self._early))
        early, self._early = self._early, []
        if early:
            cols = list(zip(*early))
            self._add(*cols)

    def _add(self, t0: Sequence[float], t1: Sequence[float], e: Sequence[float],
             index: Sequence[int], samples: Sequence[int], tokens: Sequence[int]) -> None:
        assert self.size is not None
        n = len(t0)
        while (self.count + n - 1) // self.size >= MAX_STEP_GROUPS:
            self._halve()
        size = self.size
        k = self.count
        i = 0
        while i < n:   # one slice per group: O(groups) Python steps, sums in C
            gid = (k + i) // size
            j = min(n, (gid + 1) * size - k)
            if gid >= len(self.groups):
                self.groups.append([int(index[i]), int(index[i]), 0, float(t0[i]),
                                    float(t1[i]), 0.0, 0, 0])
            g = self.groups[gid]
            g[1] = int(index[j - 1])
            g[2] += j - i
            g[4] = float(t1[j - 1])
            es, ss, ks = e[i:j], samples[i:j], tokens[i:j]   # numpy slices sum themselves
            g[5] += float(math.fsum(es) if not hasattr(es, "sum") else es.sum())
            g[6] += int(ss.sum() if hasattr(ss, "sum") else sum(ss))
            g[7] += int(ks.sum() if hasattr(ks, "sum") else sum(ks))
            i = j
        self.count += n

    def _halve(self) -> None:
        assert self.size is not None
        merged = []
        for i in range(0, len(self.groups), 2):
            a = self.groups[i]
            if i + 1 < len(self.groups):
                b = self.groups[i + 1]
                a = [a[0], b[1], a[2] + b[2], a[3], b[4], a[5] + b[5], a[6] + b[6], a[7] + b[7]]
            merged.append(a)
        self.groups = merged
        self.size *= 2

    def rows(self) -> list[dict[str, Any]]:
        if self.size is None:
            self._settle_size()
        from ..accounting.steps import per_unit
        out = []
        for first, last, n, start, end, e, samples, tokens in self.groups:
            row = {"first_step": int(first), "last_step": int(last), "steps": int(n),
                   "start_s": float(start), "end_s": float(end), "energy_j": float(e),
                   "j_per_step": float(e) / n}
            out.append(per_unit(row, float(e), int(samples), int(tokens)))
        return out


class Ledger:
    """Settles closed steps and utilisation readings once the energy curves are final.

    `energy_at(ts)`: E_IT at run times ts (a list, or a numpy array when numpy is there);
    `devices`: the sampler's DeviceStates (for utilisation readings);
    `marked()`: the (t_start, t_end or None) of the eval/checkpoint windows so far.
    """

    def __init__(self, energy_at: Callable[[Any], Any], devices: Sequence[Any], *,
                 steps_file: Optional[StepFile] = None,
                 marked: Optional[Callable[[], dict[str, list[tuple[float, Optional[float]]]]]]
                 = None):
        self._e = energy_at
        self.devices = devices
        self.file = steps_file
        self._marked = marked
        # numpy is imported when the first steps settle, not at start (~0.1 s of a CPU-only
        # run's start-up; a run with no steps never needs it). Tests set it to None.
        self._np_module: Any = _UNSET
        self._pending: deque[Batch] = deque()
        self._n_pending = 0
        self.frontier = -math.inf
        self.count = 0
        self.energy_j = 0.0          # in steps (overlapping steps counted once)
        self.seconds = 0.0
        self.samples = 0
        self.tokens = 0
        self.first_start: Optional[float] = None
        self.last_end: Optional[float] = None
        self.e_first = 0.0
        self.e_last = 0.0
        self.overlap_j = {"eval": 0.0, "checkpoint": 0.0}   # eval/checkpoint time in steps
        self.overlap_s = {"eval": 0.0, "checkpoint": 0.0}
        self.groups = StepGroups()
        self.idle: dict[str, list[float]] = {}   # device -> [idle_j, idle_s, covered_s]
        # step_groups.jsonl: the steps settled since its last record, and that record's end
        from .step_groups import PieceBook
        self._pieces = PieceBook()
        self._recorded = 0

    # -- feeding -----------------------------------------------------------------------------------
    def add_steps(self, rows: Any) -> None:
        """Closed steps in the order they closed (sampler thread, or a replayed log): a Batch,
        or (id, parent, t0, t1, index, samples, tokens) rows."""
        if not len(rows):
            return
        b = rows if isinstance(rows, Batch) else Batch(rows)
        self._pending.append(b)
        self._n_pending += len(b)

    @property
    def pending(self) -> int:
        return self._n_pending

    def settled_before(self) -> float:
        """Run time before which nothing is left to settle (the curves may be coarsened
        there): the frontier, or the start of the oldest step still pending."""
        t = self.frontier
        for b in self._pending:
            t = min(t, min(b.t0))
        for d in self.devices:   # the last settled utilisation reading starts the next interval
            ts = getattr(d, "util_t", None)
            if ts:
                t = min(t, ts[0])
        return t

    def advance(self, frontier: float) -> None:
        """Settle every step that ended at or before `frontier` (run seconds)."""
        if frontier <= self.frontier:
            return
        self.frontier = frontier
        while self._pending:
            b = self._pending[0]
            if b.t1[-1] <= frontier:
                self._pending.popleft()
                self._settle(b)
                continue
            k = bisect.bisect_right(b.t1, frontier)   # steps close in order: a prefix
            if k:
                done, self._pending[0] = b.split(k)
                self._settle(done)
            break
        self._settle_utilisation(frontier)

    def settle_pending(self) -> None:
        """Settle every pending step now, with the curves as they are (a rebuild that replayed
        every reading and holds more steps than it should keep waiting)."""
        while self._pending:
            self._settle(self._pending.popleft())

    def finish(self) -> None:
        """The run ended: its final readings made every curve final."""
        while self._pending:
            self._settle(self._pending.popleft())
        self._settle_utilisation(math.inf)
        self.frontier = math.inf
        if self.file is not None:
            self.file.close()

    # -- steps -------------------------------------------------------------------------------------
    @property
    def _np(self) -> Any:
        if self._np_module is _UNSET:
            self._np_module = _numpy()
        return self._np_module

    @_np.setter
    def _np(self, module: Any) -> None:
        self._np_module = module

    def _settle(self, b: Batch) -> None:
        if len(b) <= SETTLE_CHUNK:
            self._settle_one(b)
            return
        for i in range(0, len(b), SETTLE_CHUNK):   # bounded temporaries, whatever the rate
            self._settle_one(b.slice(i, i + SETTLE_CHUNK))

    def _settle_one(self, b: Batch) -> None:
        n = len(b)
        self._n_pending -= n
        np = self._np
        if np is not None:
            t0 = np.frombuffer(b.t0, dtype=np.float64)
            t1 = np.frombuffer(b.t1, dtype=np.float64)
            e0, e1 = self._e(t0), self._e(t1)
            e = e1 - e0
            if self.file is not None:
                self.file.write(b, e)
            self.samples += int(np.frombuffer(b.samples, dtype=np.int64).sum())
            self.tokens += int(np.frombuffer(b.tokens, dtype=np.int64).sum())
            index = np.frombuffer(b.index, dtype=np.int64)
            samples = np.frombuffer(b.samples, dtype=np.int64)
            tokens = np.frombuffer(b.tokens, dtype=np.int64)
            if n > 1 and not bool((t0[1:] >= t0[:-1]).all()):
                # another thread's step closed out of order: groups and unions go by start
                o = np.argsort(t0, kind="stable")
                t0, t1, e, e0, e1 = t0[o], t1[o], e[o], e0[o], e1[o]
                index, samples, tokens = index[o], samples[o], tokens[o]
        else:
            e0, e1 = self._e(b.t0), self._e(b.t1)
            e = array("d", (y - x for x, y in zip(e0, e1)))
            if self.file is not None:
                self.file.write(b, e)
            self.samples += sum(b.samples)
            self.tokens += sum(b.tokens)
            t0, t1, index, samples, tokens = b.t0, b.t1, b.index, b.samples, b.tokens
            order = sorted(range(n), key=t0.__getitem__)
            if order != list(range(n)):
                t0, t1, e, e0, e1, index, samples, tokens = (
                    [c[i] for i in order] for c in (t0, t1, e, e0, e1, index, samples, tokens))
        self.count += n
        self.groups.add(t0, t1, e, index, samples, tokens)
        self._union(t0, t1, e0, e1)
        if self.file is not None:
            self._pieces.add(self.groups.size, t0, t1, e, index, samples, tokens)
            self._record_groups()

    # -- step_groups.jsonl -------------------------------------------------------------------------
    def _record_groups(self) -> None:
        """Append a record when a group completed since the last one (or a horizon's
        RECORD_FRACTION of steps went by), then delete the per-step segments it covers."""
        size = self.groups.size
        if size is None or self.file is None or self.count == self._recorded:
            return
        horizon = getattr(self.file, "horizon", None)
        due = self.count // size > self._recorded // size or (
            horizon is not None and self.count - self._recorded >= horizon * RECORD_FRACTION)
        if not due:
            return
        from .step_groups import encode
        try:
            line = encode(self.count, size, self._pieces.take(), self.step_accounts())
        except (TypeError, ValueError):   # a NaN energy: no record, so nothing is deleted
            self.file.groups.broken = True
            return
        self.file.add_group_record(line)
        self._recorded = self.count
        self.file.prune(self._recorded)

    def step_accounts(self) -> dict[str, Any]:
        """The step accounts (what step_groups.jsonl records after each group)."""
        from .step_groups import SCALARS
        return {**{k: getattr(self, k) for k in SCALARS},
                "overlap_j": dict(self.overlap_j), "overlap_s": dict(self.overlap_s)}

    def restore_steps(self, disk: Any) -> None:
        """Continue from step_groups.jsonl (a step_groups.GroupsOnDisk, checked): the step
        accounts and groups after its last record, as the live ledger had them; the steps
        pending here are before it (dropped). Utilisation and the frontier are left as
        they are."""
        from .step_groups import SCALARS
        for k in SCALARS:
            setattr(self, k, disk.accounts[k])
        self.overlap_j = dict(disk.accounts["overlap_j"])
        self.overlap_s = dict(disk.accounts["overlap_s"])
        g = self.groups
        g.size, g.count, g._early, g.groups = disk.size, disk.to, [], disk.groups()
        self._pending.clear()
        self._n_pending = 0

    def _union(self, t0: Any, t1: Any, e0: Any, e1: Any) -> None:
        """Accumulate the union of steps (sorted by start): energy and time inside steps once,
        first start, last end, and the part of eval/checkpoint windows inside steps."""
        np = self._np
        if self.first_start is None:
            self.first_start = float(t0[0])
            self.e_first = float(self._e([self.first_start])[0])
            self.last_end, self.e_last = self.first_start, self.e_first
        assert self.last_end is not None
        if np is not None:
            prev = np.maximum.accumulate(np.concatenate(([self.last_end], t1)))[:-1]
            a = np.maximum(t0, prev)
            grow = t1 > prev
            if grow.all() and e0 is not None and bool((a == t0).all()):
                # the usual case, steps one after another: E at the edges is already known
                a, b, ea, eb = t0, t1, np.asarray(e0), np.asarray(e1)
                self.energy_j += float((eb - ea).sum())
                self.seconds += float((b - a).sum())
                self._overlaps(a, b)
                self.last_end, self.e_last = float(b[-1]), float(eb[-1])
                return
            if grow.any():
                a, b = a[grow], t1[grow]
                ea, eb = self._e(a), self._e(b)
                self.energy_j += float((eb - ea).sum())
                self.seconds += float((b - a).sum())
                self._overlaps(a, b)
                j = int(np.argmax(t1))
                if t1[j] > self.last_end:
                    self.last_end = float(t1[j])
                    self.e_last = float(self._e([self.last_end])[0])
            return
        segs = []
        last = self.last_end
        for x, y in zip(t0, t1):
            if y > last:
                segs.append((max(x, last), y))
                last = y
        if segs:
            edges = [v for seg in segs for v in seg]
            ev = self._e(edges)
            self.energy_j += math.fsum(ev[2 * i + 1] - ev[2 * i] for i in range(len(segs)))
            self.seconds += math.fsum(y - x for x, y in segs)
            self._overlaps([x for x, _ in segs], [y for _, y in segs])
            self.last_end, self.e_last = last, ev[-1]

    def _overlaps(self, a: Sequence[float], b: Sequence[float]) -> None:
        """Eval/checkpoint time inside the step segments [a_i, b_i] (eval over checkpoint)."""
        if self._marked is None:
            return
        from ..accounting.breakdown import subtract, union
        marked = self._marked()
        ev = union((x, y if y is not None else math.inf) for x, y in marked.get("eval", []))
        ck = subtract(union((x, y if y is not None else math.inf)
                            for x, y in marked.get("checkpoint", [])), ev)
        for kind, ivs in (("eval", ev), ("checkpoint", ck)):
            if not ivs:
                continue
            starts = [s for s, _ in ivs]
            ends = [t for _, t in ivs]
            for x, y in zip(a, b):   # only segments that touch a window cost more than this
                i = bisect.bisect_right(ends, x)
                if i < len(ivs) and starts[i] < y:
                    e_in, s_in = self._overlap(float(x), float(y), ivs, i)
                    self.overlap_j[kind] += e_in
                    self.overlap_s[kind] += s_in

    def _overlap(self, a: float, b: float, ivs: list[tuple[float, float]], i: int
                 ) -> tuple[float, float]:
        parts = []
        while i < len(ivs) and ivs[i][0] < b:
            lo, hi = max(ivs[i][0], a), min(ivs[i][1], b)
            if hi > lo:
                parts.append((lo, hi))
            i += 1
        if not parts:
            return 0.0, 0.0
        e = self._e([x for iv in parts for x in iv])
        return (float(sum(e[2 * k + 1] - e[2 * k] for k in range(len(parts)))),
                sum(y - x for x, y in parts))

    # -- saving and restoring (snapshots, see snapshot.py) -------------------------------------
    _SCALARS = ("count", "energy_j", "seconds", "samples", "tokens", "first_start",
                "last_end", "e_first", "e_last")

    def state(self) -> dict[str, Any]:
        """Everything needed to continue exactly where this ledger is (sampler thread)."""
        g = self.groups
        return {
            **{k: getattr(self, k) for k in self._SCALARS},
            "frontier": None if not math.isfinite(self.frontier) else self.frontier,
            "overlap_j": dict(self.overlap_j), "overlap_s": dict(self.overlap_s),
            "idle": {k: list(v) for k, v in self.idle.items()},
            "groups": {"size": g.size, "count": g.count, "early": [list(r) for r in g._early],
                       "groups": [list(r) for r in g.groups]},
            "pending": [{name: getattr(b, name).tolist() for name in Batch.__slots__}
                        for b in self._pending]}

    def restore(self, state: dict[str, Any]) -> None:
        """Continue from a snapshot's state(); ValueError (and nothing changed) when it is not
        one: a snapshot.json is read back from disk, so its types are checked here."""
        _check_state(state)
        for k in self._SCALARS:
            setattr(self, k, state[k])
        f = state.get("frontier")
        self.frontier = -math.inf if f is None else float(f)
        self.overlap_j, self.overlap_s = dict(state["overlap_j"]), dict(state["overlap_s"])
        self.idle = {k: list(v) for k, v in state["idle"].items()}
        g = state["groups"]
        self.groups.size, self.groups.count = g["size"], g["count"]
        self.groups._early = [tuple(r) for r in g["early"]]
        self.groups.groups = [list(r) for r in g["groups"]]
        self._pending.clear()
        self._n_pending = 0
        for cols in state["pending"]:
            b = Batch.__new__(Batch)
            for name in Batch.__slots__:
                setattr(b, name, array("d" if name in ("t0", "t1") else "q", cols[name]))
            self._pending.append(b)
            self._n_pending += len(b)

    def step_summary(self, interval_s: float = 0.1) -> dict[str, Any]:
        """The summary's "steps" (same shape as summary_build.step_summary); each group with
        its ± bound (uncertainty.py: its edges are step edges, between readings)."""
        if not self.count:
            return {}
        from ..accounting.steps import per_unit
        from ..uncertainty import window_j
        groups = self.groups.rows()
        for g in groups:
            bound = window_j(self.devices, g["start_s"], g["end_s"], anchored=False,
                             interval_s=interval_s)
            if bound is not None:
                g["uncertainty_j"] = bound
        out: dict[str, Any] = {
            "count": self.count, "energy_j_in_steps": self.energy_j,
            "group_size": self.groups.size, "groups": groups,
            "resolution_note": "per-step energies are interpolated on E(t); groups span >= "
                               f"{STEP_GROUP_MIN_S:g} s, at most {MAX_STEP_GROUPS} groups; "
                               f"steps in {STEPS_FILE} and its segments, those older "
                               "than the step_detail_steps horizon as their groups in "
                               "step_groups.jsonl"}
        return per_unit(out, self.energy_j, self.samples, self.tokens)

    # -- utilisation -------------------------------------------------------------------------------
    def _settle_utilisation(self, frontier: float) -> None:
        for d in self.devices:
            ts, us = getattr(d, "util_t", None), getattr(d, "util_pct", None)
            if ts is None or us is None or len(ts) < 2 or d.curve.empty:
                continue
            k = bisect.bisect_right(ts, frontier)   # readings [0, k) are final
            if k < 2:
                continue
            e = d.curve.energy_at_sorted(list(ts[:k]))
            acc = self.idle.setdefault(d.sensor.name, [0.0, 0.0, 0.0])
            for i in range(1, k):
                frac = max(0.0, min(1.0, 1.0 - us[i] / 100.0))
                acc[0] += (e[i] - e[i - 1]) * frac
                acc[1] += (ts[i] - ts[i - 1]) * frac
                acc[2] += ts[i] - ts[i - 1]
            del ts[:k - 1]     # keep the last settled reading: it starts the next interval
            del us[:k - 1]

    def idle_summary(self, devices: Sequence[Any], t_end: float) -> dict[str, dict[str, Any]]:
        from ..accounting.breakdown import IDLE_METHOD
        out = {}
        for d in devices:
            acc = self.idle.get(d.sensor.name)
            if acc is None:
                continue
            device_j = d.curve.energy_between(0.0, t_end)
            out[d.sensor.name] = {
                "energy_j": acc[0], "seconds": acc[1], "covered_s": acc[2],
                "share_of_device": acc[0] / device_j if device_j > 0 else None,
                "time_share": acc[1] / acc[2] if acc[2] > 0 else None, "method": IDLE_METHOD}
        return out

    # -- breakdown ---------------------------------------------------------------------------------
    def breakdown(self, t_end: float, marked: dict[str, list[tuple[float, Optional[float]]]],
                  e_at: Callable[[float], float], methods: Sequence[str]
                  ) -> dict[str, dict[str, Any]]:
        """The parts of accounting/breakdown.py from the accumulated step union and the eval and
        checkpoint windows: steps > eval > checkpoint > between_steps > before_first_step >
        after_last_step > other. Parts come from one E(t), so they sum to E(t_end) - E(0)."""
        from ..accounting.breakdown import INTERPOLATED, subtract, union

        total = e_at(t_end) - e_at(0.0)
        ev = _clip_union(marked.get("eval", []), 0.0, t_end, t_end)
        ck = subtract(_clip_union(marked.get("checkpoint", []), 0.0, t_end, t_end), ev)
        x = union(ev + ck)

        def e_of(ivs: list[tuple[float, float]]) -> float:
            return sum(e_at(b) - e_at(a) for a, b in ivs)

        def secs(ivs: list[tuple[float, float]]) -> float:
            return sum(b - a for a, b in ivs)

        parts: dict[str, tuple[float, float]] = {}
        if self.first_start is None:
            e_ev, e_ck = e_of(ev), e_of(ck)
            parts = {"eval": (e_ev, secs(ev)), "checkpoint": (e_ck, secs(ck)),
                     "other": (total - e_ev - e_ck, t_end - secs(x))}
        else:
            first, last = self.first_start, self.last_end
            assert last is not None
            ov_ev, ov_ck = self.overlap_j["eval"], self.overlap_j["checkpoint"]
            in_span = _clip_union(x, first, last)
            before = _clip_union(x, 0.0, first)
            after = _clip_union(x, last, t_end)
            gaps = (self.e_last - self.e_first) - self.energy_j
            ov_ev_s, ov_ck_s = self.overlap_s["eval"], self.overlap_s["checkpoint"]
            parts = {
                "steps": (self.energy_j, self.seconds),
                "eval": (e_of(ev) - ov_ev, secs(ev) - ov_ev_s),
                "checkpoint": (e_of(ck) - ov_ck, secs(ck) - ov_ck_s),
                "between_steps": (gaps - (e_of(in_span) - ov_ev - ov_ck),
                                  (last - first) - self.seconds
                                  - (secs(in_span) - ov_ev_s - ov_ck_s)),
                "before_first_step": ((self.e_first - e_at(0.0)) - e_of(before),
                                      first - secs(before)),
                "after_last_step": ((e_at(t_end) - self.e_last) - e_of(after),
                                    (t_end - last) - secs(after)),
            }
        counter = "counter" in methods
        edge = methods[0] if len(methods) == 1 else "mixed: " + "+".join(sorted(methods))
        out: dict[str, dict[str, Any]] = {}
        for name in ("steps", "between_steps", "eval", "checkpoint", "other",
                     "before_first_step", "after_last_step"):
            if name not in parts:
                continue
            e, s = parts[name]
            if s <= 1e-9 and abs(e) <= 1e-9:   # a part with no time in it (one step: no gaps)
                continue
            step_bounded = name in ("steps", "between_steps", "before_first_step",
                                    "after_last_step")
            out[name] = {"energy_j": e, "share": e / total if total > 0 else None,
                         "seconds": s,
                         "method": INTERPOLATED if step_bounded and counter else edge}
        return out


def _clip_union(spans: Sequence[tuple[float, Optional[float]]], lo: float, hi: float,
                open_end: Optional[float] = None) -> list[tuple[float, float]]:
    from ..accounting.breakdown import union
    end = hi if open_end is None else open_end
    return [(max(a, lo), min(b, hi)) for a, b in union(
        (s, e if e is not None else end) for s, e in spans) if b > lo and a < hi]


__all__ = ["COLUMNS", "MAX_BLOCK_STEPS", "MAX_STEP_GROUPS", "STEPS_FILE", "Batch", "Ledger",
           "StepFile", "StepFileDamage", "StepGroups", "StepQueue", "read_step_columns",
           "read_steps"]


def _check_state(state: Any) -> None:
    """Ledger.state() as read back from snapshot.json, or ValueError saying what is wrong."""
    from .untrusted import number, run_seconds

    def nums(xs: Any, n: Optional[int] = None) -> bool:
        return isinstance(xs, list) and (n is None or len(xs) == n) and all(
            number(x) for x in xs)

    if not isinstance(state, dict):
        raise ValueError("the ledger state is not an object")
    for k in Ledger._SCALARS:
        v = state.get(k)
        if k in ("first_start", "last_end"):
            ok = v is None or run_seconds(v)
        elif k in ("count", "samples", "tokens"):
            ok = v.__class__ is int and v >= 0
        else:
            ok = number(v)
        if not ok:
            raise ValueError(f"the ledger's {k} is {v!r:.40}, not a usable number")
    if not (state.get("frontier") is None or run_seconds(state.get("frontier"))):
        raise ValueError("the ledger's frontier is not a run time")
    for k in ("overlap_j", "overlap_s"):
        v = state.get(k)
        if not (isinstance(v, dict) and set(v) == {"eval", "checkpoint"}
                and all(number(x) for x in v.values())):
            raise ValueError(f"the ledger's {k} is not {{eval, checkpoint}} numbers")
    idle = state.get("idle")
    if not (isinstance(idle, dict) and all(nums(v, 3) for v in idle.values())):
        raise ValueError("the ledger's idle is not device -> 3 numbers")
    g = state.get("groups")
    if not (isinstance(g, dict) and (g.get("size") is None or (
            g["size"].__class__ is int and g["size"] > 0))
            and g.get("count").__class__ is int and isinstance(g.get("early"), list)
            and isinstance(g.get("groups"), list)
            and len(g["early"]) <= SIZE_FROM_STEPS and len(g["groups"]) <= 2 * MAX_STEP_GROUPS
            and all(nums(r, 6) for r in g["early"]) and all(nums(r, 8) for r in g["groups"])):
        raise ValueError("the ledger's step groups are not groups")
    pending = state.get("pending")
    if not isinstance(pending, list):
        raise ValueError("the ledger's pending steps are not a list")
    for cols in pending:
        if not (isinstance(cols, dict) and all(nums(cols.get(c)) for c in Batch.__slots__)
                and len({len(cols[c]) for c in Batch.__slots__}) == 1):
            raise ValueError("the ledger's pending steps are not columns of one length")
        if not all(run_seconds(x) for c in ("t0", "t1") for x in cols[c]) or not all(
                x.__class__ is int and -_I64 <= x < _I64 for c in Batch.__slots__
                if c not in ("t0", "t1") for x in cols[c]):
            raise ValueError("the ledger's pending steps are not steps")
