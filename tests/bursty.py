"""Synthetic bursty GPU traces with NVML's reporting behaviour, for accuracy tests and benches.

A trace is generated in two layers, both seeded:

1. the true power p(t) at 1 ms resolution: training steps of 2-50 ms (busy kernels near the
   board's high power, a gap of host work at lower power each step, per-step jitter), host
   pauses every N steps (data loading, logging), an evaluation phase and an idle gap between
   epochs, with first-order ramps (a GPU does not change power in zero time);
2. what NVML reports, modelled on a real H100 (driver 580; see README): an internal update
   every ~100 ms (with jitter and a random phase against the sampler); at each update the
   energy counter takes the exact integral so far (in whole mJ), the averaged power
   (`nvmlDeviceGetPowerUsage` on Hopper) the mean of p over the last 1 s, and the instant
   field p at that moment. Between updates every reading stays at the last update's value.
   As on the recorded H100 trace, a reading sometimes misses an update: the counter and the
   average 1 % of them (gaps of 200 ms), the instant field 20 %.

The output has the format of a recorded trace (`h100_gpt_train.json`: columns t_s, power_mw,
instant_mw, energy_mj, util_pct at 5 ms rows, and events), so `tracker.replay.replay` runs it
through the real sensor, sampler and curve. The true energy of any interval is available
exactly from the 1 ms power (`Synthetic.true_energy_j`), independent of NVML's 100 ms steps.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

DT = 0.001                  # s, resolution of the true power
ROW_S = 0.005               # s, rows of the written trace (a poller at 200 Hz)


@dataclass(frozen=True)
class Pattern:
    """One kind of training load."""

    name: str
    step_s: float                 # mean step time
    busy_share: float             # share of a step at high power (the rest: host work)
    busy_w: float
    gap_w: float                  # power during the host part of a step
    pause_every: int              # a host pause every N steps (0: none)
    pause_s: float
    pause_w: float
    epochs: int = 4
    epoch_s: float = 6.0
    eval_s: float = 1.5
    eval_w: float = 420.0
    idle_gap_s: float = 1.0
    idle_w: float = 110.0
    ramp_s: float = 0.004         # time constant of power changes
    noise: float = 0.04           # relative noise on busy power per step


PATTERNS = (
    Pattern("tiny-steps", step_s=0.002, busy_share=0.85, busy_w=640, gap_w=300,
            pause_every=200, pause_s=0.3, pause_w=180),
    Pattern("conv-6ms", step_s=0.006, busy_share=0.8, busy_w=620, gap_w=280,
            pause_every=25, pause_s=0.3, pause_w=170),
    Pattern("llm-50ms", step_s=0.050, busy_share=0.92, busy_w=690, gap_w=240,
            pause_every=40, pause_s=0.5, pause_w=160, epoch_s=8.0),
    Pattern("data-bound-20ms", step_s=0.020, busy_share=0.45, busy_w=600, gap_w=150,
            pause_every=10, pause_s=0.15, pause_w=140),
    Pattern("mixed-12ms", step_s=0.012, busy_share=0.7, busy_w=560, gap_w=260,
            pause_every=60, pause_s=0.8, pause_w=200, idle_gap_s=2.0),
)


@dataclass
class Synthetic:
    """A generated trace: true power, NVML's view of it, and the training events."""

    pattern: Pattern
    seed: int
    t: np.ndarray                  # 1 ms grid
    p: np.ndarray                  # true power (W) on the grid
    updates: np.ndarray            # NVML's internal update instants
    events: list[tuple[float, str]]
    # per reading (counter, average, instant): which updates it took (some are missed)
    took: tuple[np.ndarray, np.ndarray, np.ndarray] = (np.zeros(0, bool),) * 3

    def true_energy_j(self, t0: float, t1: float) -> float:
        """Exact energy of the generated power between two times."""
        cum = self._cum()
        return float(np.interp(t1, self.t, cum) - np.interp(t0, self.t, cum))

    def _cum(self) -> np.ndarray:
        if not hasattr(self, "_cum_cache"):
            self._cum_cache = np.concatenate([[0.0], np.cumsum(self.p[:-1] * DT)])
        return self._cum_cache

    def epochs(self) -> list[tuple[float, float]]:
        starts = {n.split(":")[1]: t for t, n in self.events if n.startswith("epoch_start:")}
        ends = {n.split(":")[1]: t for t, n in self.events if n.startswith("epoch_end:")}
        return [(starts[k], ends[k]) for k in sorted(starts, key=int) if k in ends]

    def to_trace(self) -> dict[str, Any]:
        """The NVML view in the recorded-trace format (5 ms rows)."""
        cum = self._cum()
        u = self.updates
        e_mj = np.floor(np.interp(u, self.t, cum) * 1000.0)
        took_c, took_a, took_i = self.took
        # mean power over the last second at each update (the start of the trace is preceded
        # by idle power: the GPU was on before the recording)
        before = np.interp(u - 1.0, self.t, cum, left=0.0)
        lead = np.clip(1.0 - u, 0.0, 1.0) * self.pattern.idle_w
        avg_w = (np.interp(u, self.t, cum) - before + lead) / 1.0
        inst_w = np.interp(u, self.t, self.p)
        rows = []
        row_t = np.arange(self.t[0], self.t[-1], ROW_S)
        k = np.searchsorted(u, row_t, side="right") - 1      # the last update at each row
        busy = self.p > 0.5 * (self.pattern.busy_w + self.pattern.idle_w)
        util = np.interp(row_t, self.t, busy.astype(float)) * 100.0
        # each reading holds the value of the last update it took
        last_c, last_a, last_i = (np.maximum.accumulate(np.where(tk, np.arange(len(u)), 0))
                                  for tk in (took_c, took_a, took_i))
        for i, tt in enumerate(row_t):
            j = max(int(k[i]), 0)
            rows.append([round(float(tt), 5), int(avg_w[last_a[j]] * 1000),
                         int(inst_w[last_i[j]] * 1000), int(e_mj[last_c[j]]),
                         round(float(util[i]))])
        return {"meta": {"gpu": "synthetic (tests/bursty.py)", "pattern": self.pattern.name,
                         "seed": self.seed},
                "columns": ["t_s", "power_mw", "instant_mw", "energy_mj", "util_pct"],
                "rows": rows, "events": [[round(t, 5), n] for t, n in self.events]}

    def write(self, path: Path) -> Path:
        Path(path).write_text(json.dumps(self.to_trace(), separators=(",", ":")))
        return Path(path)


def generate(pattern: Pattern, seed: int) -> Synthetic:
    """The true power of `pattern.epochs` epochs (training, eval, idle gap) after 1 s idle."""
    rnd = np.random.default_rng(seed)
    segs: list[tuple[float, float]] = [(1.0, pattern.idle_w)]        # (duration, watts)
    events: list[tuple[float, str]] = []
    now = 1.0
    step = 0
    events.append((now, "start"))
    for ep in range(pattern.epochs):
        events.append((now, f"epoch_start:{ep}"))
        end = now + pattern.epoch_s * rnd.uniform(0.85, 1.15)
        while now < end:
            st = pattern.step_s * rnd.uniform(0.8, 1.2)
            busy = st * pattern.busy_share
            w = pattern.busy_w * (1.0 + pattern.noise * rnd.standard_normal())
            segs += [(busy, w), (st - busy, pattern.gap_w)]
            now += st
            step += 1
            if pattern.pause_every and step % pattern.pause_every == 0:
                d = pattern.pause_s * rnd.uniform(0.7, 1.3)
                segs.append((d, pattern.pause_w))
                now += d
        events.append((now, f"eval_start:{ep}"))
        d = pattern.eval_s * rnd.uniform(0.8, 1.2)
        segs.append((d, pattern.eval_w))
        now += d
        events.append((now, f"eval_end:{ep}"))
        events.append((now, f"epoch_end:{ep}"))
        d = pattern.idle_gap_s * rnd.uniform(0.8, 1.2)
        segs.append((d, pattern.idle_w))
        now += d
    events.append((now, "end"))
    segs.append((0.5, pattern.idle_w))
    total = sum(d for d, _ in segs)
    t = np.arange(0.0, total, DT)
    # piecewise-constant target power on the grid, then a first-order ramp toward it
    edges = np.cumsum([0.0] + [d for d, _ in segs])
    idx = np.clip(np.searchsorted(edges, t, side="right") - 1, 0, len(segs) - 1)
    target = np.array([w for _, w in segs])[idx]
    alpha = 1.0 - np.exp(-DT / pattern.ramp_s)
    p = np.empty_like(target)
    acc = target[0]
    for i in range(len(target)):   # a loop: ~40 k points, fast enough and clear
        acc += alpha * (target[i] - acc)
        p[i] = acc
    # NVML's updates: every ~100 ms with 2 % jitter and a random phase
    phase = rnd.uniform(0.0, 0.1)
    gaps = 0.1 * (1.0 + 0.02 * rnd.standard_normal(int(total / 0.1) + 20))
    updates = phase + np.concatenate([[0.0], np.cumsum(gaps)])
    updates = updates[updates < t[-1]]
    took = tuple(rnd.random(len(updates)) >= miss for miss in (0.01, 0.01, 0.2))
    for tk in took:
        tk[0] = True
    return Synthetic(pattern=pattern, seed=seed, t=t, p=p, updates=updates, events=events,
                     took=took)  # type: ignore[arg-type]


__all__ = ["PATTERNS", "Pattern", "Synthetic", "generate"]
