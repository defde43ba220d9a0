"""Cumulative energy curve E(t) of one device, so any window's energy is E(t1) - E(t0).

Built from two kinds of readings:
- power samples (W), integrated with the trapezoid rule: fine time resolution, small bias;
- energy-counter reads (J): exact totals, but expensive and only ~10 Hz fresh.

When both exist, counter reads are anchors: the curve passes exactly through every counter
value, and between two anchors the counter's increment is spread in proportion to the
power-integrated shape. Totals are then as exact as the counter; windows between anchors keep
the timeline's resolution. With counter reads only, the curve is linear between them.

The same class rebuilds a killed run from its samples.jsonl, so live and rebuilt numbers agree.
"""

from __future__ import annotations

import bisect
import math
import threading
from array import array
from collections.abc import Sequence
from typing import Any, Optional

# "Power now" (the CLI's status line, Prometheus, Tracker.recent_power_w): the mean over the
# last 2 s, long enough to hold a few NVML updates (every ~100 ms) and the 1 s average window.
RECENT_POWER_S = 2.0

class CounterWentBackwards(Exception):
    """The device counter decreased (GPU reset, driver reload): the curve re-bases on it."""


class EnergyCurve:
    """E(t) in J (from 0 at the first reading) over t in seconds on the run's monotonic clock."""

    def __init__(self) -> None:
        self._t = array("d")
        self._e = array("d")
        self._lock = threading.Lock()
        self._last_w: Optional[float] = None
        self._anchor_i = -1            # index of the last counter anchor in _t/_e
        self._anchor_c = 0.0           # raw counter value (J) at that anchor
        self.power_samples = 0
        self.counter_reads = 0
        self.peak_w: Optional[float] = None
        self.compacted_until = -math.inf   # before this, only a skeleton and pins are kept

    # -- building ------------------------------------------------------------------------------
    def add_power(self, t: float, power_w: float) -> None:
        """Add a power sample (W) read at time t (s)."""
        with self._lock:
            self.power_samples += 1
            if self.peak_w is None or power_w > self.peak_w:
                self.peak_w = power_w
            if not self._t:
                self._append(t, 0.0)
            elif t > self._t[-1]:
                prev = self._last_w if self._last_w is not None else power_w
                self._append(t, self._e[-1] + 0.5 * (prev + power_w) * (t - self._t[-1]))
            self._last_w = power_w

    def add_counter(self, t: float, counter_j: float, *, final: bool = False,
                    edge: bool = False) -> None:
        """Add a counter read (J, arbitrary origin) at time t (s); it becomes an exact anchor.

        A scheduled read equal to the previous one is skipped: the counter only moves every
        ~100 ms, so an unchanged value says little about the energy since the last anchor, and
        the next increment is better spread along the power shape. A read at a window `edge`
        (or the `final` one) is always an anchor, so a window's energy is the counter's own
        delta between its edges, as a reader of NVML at the edges would get it.
        Raises CounterWentBackwards (after re-basing) if the counter decreased.
        """
        with self._lock:
            self.counter_reads += 1
            if self._anchor_i < 0:
                self._extend_to(t)
                self._anchor_i, self._anchor_c = len(self._t) - 1, counter_j
                return
            delta = counter_j - self._anchor_c
            if delta < 0:
                # Keep the energy measured so far; continue from the new counter origin.
                previous = self._anchor_c
                self._extend_to(t)
                self._anchor_i, self._anchor_c = len(self._t) - 1, counter_j
                raise CounterWentBackwards(f"counter went from {previous} J to {counter_j} J")
            if delta == 0 and not (final or edge):
                return
            self._extend_to(t)
            i0, n = self._anchor_i, len(self._t) - 1
            e0 = self._e[i0]
            target = e0 + delta
            if n > i0:
                shaped = self._e[n] - e0
                if shaped > 0:
                    scale = delta / shaped
                    for j in range(i0 + 1, n + 1):
                        self._e[j] = e0 + (self._e[j] - e0) * scale
                else:  # no power shape to follow: spread linearly in time
                    t0, span = self._t[i0], self._t[n] - self._t[i0]
                    for j in range(i0 + 1, n + 1):
                        self._e[j] = e0 + delta * (self._t[j] - t0) / span
            self._e[n] = target
            self._anchor_i, self._anchor_c = n, counter_j
            if self.power_samples == 0:
                span = self._t[n] - self._t[i0]
                if span > 0:
                    w = delta / span
                    if self.peak_w is None or w > self.peak_w:
                        self.peak_w = w

    def _extend_to(self, t: float) -> None:
        """Make the last point sit at t, extending flat at the last known power."""
        if not self._t:
            self._append(t, 0.0)
        elif t > self._t[-1]:
            w = self._last_w or 0.0
            self._append(t, self._e[-1] + w * (t - self._t[-1]))

    def _append(self, t: float, e: float) -> None:
        self._t.append(t)
        self._e.append(e)

    # -- keeping it small ----------------------------------------------------------------------
    def compact(self, until: float, pins: Sequence[float], step_s: float) -> int:
        """Coarsen the curve before `until` (which must be final: at or before the last
        anchor): keep E at every multiple of `step_s`, at every time in `pins` (window edges,
        intensity-period boundaries: their energies stay exact) and at `until`, and drop the
        other points there. Totals and pinned windows are unchanged; E(t) at other old times
        becomes linear between kept points. Returns the number of points dropped."""
        with self._lock:
            n = len(self._t)
            if n < 3 or until <= self.compacted_until:
                return 0
            lo = max(bisect.bisect_right(self._t, self.compacted_until), 1)   # keep the first
            hi = bisect.bisect_left(self._t, until)        # points [lo, hi) are before `until`
            if self._anchor_i >= 0:
                hi = min(hi, self._anchor_i)               # never touch the last anchor
            if hi - lo < 2:
                return 0
            t_lo, t_hi = self._t[lo - 1], self._t[hi]
            keep = {t for t in pins if t_lo < t < t_hi}
            k = math.floor(t_lo / step_s) + 1
            while k * step_s < t_hi:
                keep.add(k * step_s)
                k += 1
            times = sorted(keep)
            values = self._at_sorted_locked(times)
            new_t, new_e = array("d", times), array("d", values)
            dropped = (hi - lo) - len(times)
            self._t[lo:hi] = new_t
            self._e[lo:hi] = new_e
            if self._anchor_i >= 0:
                self._anchor_i -= dropped
            self.compacted_until = max(self.compacted_until, t_hi)
            return dropped

    def _at_sorted_locked(self, ts: Sequence[float]) -> list[float]:
        T, E = self._t, self._e
        out = []
        i = 0
        for t in ts:
            i = max(bisect.bisect_right(T, t, lo=i) - 1, 0)
            if i + 1 >= len(T):
                out.append(E[-1])
            else:
                out.append(E[i] + (E[i + 1] - E[i]) * (t - T[i]) / (T[i + 1] - T[i]))
        return out

    def __len__(self) -> int:
        return len(self._t)

    # -- saving and restoring (snapshots of long runs, see snapshot.py) -----------------------
    STATE = ("_last_w", "_anchor_i", "_anchor_c", "power_samples", "counter_reads", "peak_w",
             "compacted_until")

    def state(self) -> dict[str, Any]:
        """Everything needed to continue this curve exactly where it is."""
        with self._lock:
            out: dict[str, Any] = {k: getattr(self, k) for k in self.STATE}
            out["t"], out["e"] = self._t.tolist(), self._e.tolist()
        if out["compacted_until"] == -math.inf:
            out["compacted_until"] = None
        return out

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> EnergyCurve:
        c = cls()
        if len(state["t"]) != len(state["e"]):
            raise ValueError("curve points of unequal length")
        c._t, c._e = array("d", state["t"]), array("d", state["e"])
        for k in cls.STATE:
            setattr(c, k, state.get(k))
        if c.compacted_until is None:
            c.compacted_until = -math.inf
        c._anchor_i = int(c._anchor_i)
        if c._anchor_i >= len(c._t):
            raise ValueError("anchor outside the curve")
        return c

    # -- reading -------------------------------------------------------------------------------
    def energy_at(self, t: float) -> float:
        """E(t) in J, linearly interpolated; clamped to the first/last point outside the data."""
        with self._lock:
            if not self._t:
                return 0.0
            if t <= self._t[0]:
                return self._e[0]
            if t >= self._t[-1]:
                return self._e[-1]
            i = bisect.bisect_right(self._t, t)
            t0, t1 = self._t[i - 1], self._t[i]
            e0, e1 = self._e[i - 1], self._e[i]
            return e0 + (e1 - e0) * (t - t0) / (t1 - t0)

    def energy_at_sorted(self, ts: Sequence[float]) -> list[float]:
        """E(t) at many times in ascending order, in one walk over the points (a breakdown
        over a million step edges must not bisect a million times per device)."""
        with self._lock:
            T, E = self._t, self._e
            n = len(T)
            if n == 0:
                return [0.0] * len(ts)
            out = []
            # start the walk where the first time lies (a walk from the curve's first point
            # would cost the whole curve per call: a month is millions of points)
            i = max(bisect.bisect_right(T, ts[0]) - 1, 0) if len(ts) else 0
            i = min(i, max(n - 2, 0))
            prev = -math.inf
            for t in ts:
                if t < prev:   # not ascending after all: find the place again
                    i = max(bisect.bisect_right(T, t) - 1, 0)
                prev = t
                if t <= T[0]:
                    out.append(E[0])
                    continue
                if t >= T[n - 1]:
                    out.append(E[n - 1])
                    continue
                while T[i + 1] <= t:
                    i += 1
                t0, t1 = T[i], T[i + 1]
                out.append(E[i] + (E[i + 1] - E[i]) * (t - t0) / (t1 - t0))
            return out

    def energy_at_np(self, ts: Any) -> Any:
        """E(t) at a numpy array of times (any order): np.interp on a copy of the points it
        needs, so the arrays are never exported while the sampler appends to them."""
        import numpy as np
        with self._lock:
            n = len(self._t)
            if n == 0:
                return np.zeros(len(ts))
            if len(ts) == 0:
                return np.zeros(0)
            lo = max(bisect.bisect_right(self._t, float(ts.min())) - 1, 0)
            hi = min(bisect.bisect_left(self._t, float(ts.max())) + 1, n)
            t = np.array(self._t[lo:hi])
            e = np.array(self._e[lo:hi])
        return np.interp(ts, t, e)

    def recent_power_w(self, until: float, span_s: float = RECENT_POWER_S) -> Optional[float]:
        """"Power now": the mean power over the `span_s` seconds before `until` (the energy
        over that span / its length, so a counter-mode device's figure is the counter's).
        None before any time has passed."""
        span = min(span_s, until)
        if span <= 0:
            return None
        return self.energy_between(until - span, until) / span

    def energy_between(self, t0: float, t1: float) -> float:
        """Energy in J of the window [t0, t1]."""
        return self.energy_at(t1) - self.energy_at(t0)

    def final_until(self, stale_anchor_s: float = math.inf) -> float:
        """Run time up to which E(t) will not change any more: the last counter anchor (a
        later counter read rescales everything since it), or the last point without a
        counter. `stale_anchor_s`: an anchor older than this behind the last point (counter
        reads failing) no longer holds the curve back."""
        with self._lock:
            if not self._t:
                return math.inf
            last = self._t[-1]
            if self._anchor_i < 0:
                return last
            anchor = self._t[self._anchor_i]
            return last if last - anchor > stale_anchor_s else anchor

    @property
    def last_power_w(self) -> Optional[float]:
        return self._last_w

    @property
    def empty(self) -> bool:
        return len(self._t) == 0

    @property
    def start(self) -> Optional[float]:
        return self._t[0] if self._t else None

    @property
    def end(self) -> Optional[float]:
        return self._t[-1] if self._t else None

    @property
    def total_j(self) -> float:
        return self._e[-1] if self._e else 0.0

    def points(self) -> tuple[list[float], list[float]]:
        """A copy of (t, E) for plotting and tests."""
        with self._lock:
            return list(self._t), list(self._e)
