"""Where the energy went: the run's IT energy split into parts that add up exactly.

Every instant of the run [0, t_end] belongs to exactly one part, by precedence:

    steps > eval > checkpoint > between_steps > before_first_step > after_last_step > other

`steps` is inside a step window; `between_steps` the gaps between the first step's start and
the last step's end (data loading, host work, logging) not in eval or checkpoint;
`before_first_step` start-up (imports, model load, compile); `after_last_step` shutdown and the
final save; `other` only exists in runs without steps (everything not eval or checkpoint).
A part's energy is the sum of E(b) - E(a) over its intervals on the same E(t) curve as every
other number, so the parts sum to the summary's energy_j (telescoping), whatever the curve.

Idle GPU energy: NVML's utilisation is the share of its last sample period in which a kernel
ran, read at <= 1 Hz; each interval between two reads counts its energy times the idle share
(1 - utilisation). That spreads energy evenly in time inside an interval, and a GPU draws less
when idle, so it is an upper bound of the energy spent idle.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Callable, Optional

from .parts import DictPart, part_map

Interval = tuple[float, float]
PARTS = ("steps", "between_steps", "eval", "checkpoint", "other", "before_first_step",
         "after_last_step")
INTERPOLATED = "interpolated on E(t): step edges are not counter reads"
IDLE_METHOD = ("estimate (upper bound): NVML utilisation read at <= 1 Hz, each interval's "
               "energy times its idle share")


@dataclass(frozen=True, eq=False)
class Share(DictPart):
    """One part of a summary's `breakdown`: its energy, its share of the IT energy (None when
    there is none), the seconds it covers and how its edges were measured."""

    energy_j: float = 0.0
    share: Optional[float] = None
    seconds: Optional[float] = None
    method: Optional[str] = None


@dataclass(frozen=True, eq=False)
class IdleAccount(DictPart):
    """One GPU's entry in a summary's `idle` part: energy and seconds spent idle (an upper
    bound, module docstring), the seconds its utilisation covers, and the shares."""

    energy_j: Optional[float] = None
    seconds: Optional[float] = None
    covered_s: Optional[float] = None
    share_of_device: Optional[float] = None
    time_share: Optional[float] = None
    method: str = IDLE_METHOD


def shares(parts: Mapping[str, Any]) -> dict[str, Share]:
    """A breakdown ({part: Share}) from the objects it is given as."""
    return part_map(Share, parts)


def idle_accounts(accounts: Mapping[str, Any]) -> dict[str, IdleAccount]:
    """An idle part ({device: IdleAccount}) from the objects it is given as."""
    return part_map(IdleAccount, accounts)


def union(intervals: Iterable[Interval]) -> list[Interval]:
    """Sorted, disjoint union of (a, b) intervals (empty ones dropped)."""
    out: list[Interval] = []
    for a, b in sorted(i for i in intervals if i[1] > i[0]):
        if out and a <= out[-1][1]:
            if b > out[-1][1]:
                out[-1] = (out[-1][0], b)
        else:
            out.append((a, b))
    return out


def subtract(a: list[Interval], b: list[Interval]) -> list[Interval]:
    """a minus b, both sorted and disjoint; O(len(a) + len(b))."""
    out: list[Interval] = []
    j = 0
    for lo, hi in a:
        while j < len(b) and b[j][1] <= lo:
            j += 1
        k, cur = j, lo
        while k < len(b) and b[k][0] < hi:
            if b[k][0] > cur:
                out.append((cur, b[k][0]))
            cur = max(cur, b[k][1])
            k += 1
        if cur < hi:
            out.append((cur, hi))
    return out


def _clip(intervals: list[Interval], lo: float, hi: float) -> list[Interval]:
    return [(max(a, lo), min(b, hi)) for a, b in intervals if b > lo and a < hi]


def partition(windows: Sequence[Any], t_end: float) -> dict[str, list[Interval]]:
    """The part intervals of [0, t_end] from windows (objects with kind, t_start, t_end)."""
    def spans(kind: str) -> list[Interval]:
        return _clip(union((w.t_start, w.t_end if w.t_end is not None else t_end)
                           for w in windows if w.kind == kind), 0.0, t_end)

    steps = spans("step")
    evals = subtract(spans("eval"), steps)
    ckpt = subtract(subtract(spans("checkpoint"), steps), evals)
    taken = union(steps + evals + ckpt)
    parts: dict[str, list[Interval]] = {p: [] for p in PARTS}
    parts.update(steps=steps, eval=evals, checkpoint=ckpt)
    if steps:
        first, last = steps[0][0], steps[-1][1]
        parts["between_steps"] = subtract([(first, last)], taken)
        parts["before_first_step"] = subtract([(0.0, first)], taken) if first > 0 else []
        parts["after_last_step"] = subtract([(last, t_end)], taken) if last < t_end else []
    else:
        parts["other"] = subtract([(0.0, t_end)], taken)
    return parts


def energy_of(intervals: list[Interval], energy_at_sorted: Callable[[list[float]], list[float]]
              ) -> float:
    """Sum of E(b) - E(a) over sorted intervals, reading E at all edges in one pass."""
    if not intervals:
        return 0.0
    edges = [x for ab in intervals for x in ab]
    e = energy_at_sorted(edges)
    return sum(e[2 * i + 1] - e[2 * i] for i in range(len(intervals)))


def breakdown(windows: Sequence[Any], devices: Sequence[Any], t_end: float
              ) -> dict[str, Share]:
    """{part: {"energy_j", "share", "seconds", "method"}} of the IT energy over [0, t_end].
    `devices`: sampler DeviceStates (their curves and sensors' methods). Devices included in
    a whole-node meter are parts of its energy, not added again."""
    from ..sensors.base import counted
    measured = [d for d in devices if not d.curve.empty and counted(d.sensor.info.details)]
    if not measured:
        return {}
    parts = partition(windows, t_end)

    def at_sorted(ts: list[float]) -> list[float]:
        total = [0.0] * len(ts)
        for d in measured:
            for i, e in enumerate(d.curve.energy_at_sorted(ts)):
                total[i] += e
        return total

    total = sum(d.curve.energy_between(0.0, t_end) for d in measured)
    methods = sorted({d.sensor.method for d in measured})
    edge_method = methods[0] if len(methods) == 1 else "mixed: " + "+".join(methods)
    out: dict[str, dict[str, Any]] = {}
    for name in PARTS:
        iv = parts[name]
        if not iv:
            continue
        e = energy_of(iv, at_sorted)
        # A counter makes window edges exact, but steps do not trigger counter reads.
        step_bounded = name in ("steps", "between_steps", "before_first_step", "after_last_step")
        out[name] = {"energy_j": e, "share": e / total if total > 0 else None,
                     "seconds": sum(b - a for a, b in iv),
                     "method": INTERPOLATED if step_bounded and "counter" in methods
                     else edge_method}
    return shares(out)


def idle_energy(devices: Sequence[Any], t_end: float) -> dict[str, IdleAccount]:
    """Per GPU with utilisation readings: energy and seconds spent idle (see module doc)."""
    out: dict[str, dict[str, Any]] = {}
    for d in devices:
        ts, us = getattr(d, "util_t", None), getattr(d, "util_pct", None)
        if d.curve.empty or not ts or us is None or len(ts) < 2:
            continue
        e = d.curve.energy_at_sorted([min(t, t_end) for t in ts])
        idle_j = idle_s = covered = 0.0
        for i in range(1, len(ts)):
            frac = max(0.0, min(1.0, 1.0 - us[i] / 100.0))
            dt = min(ts[i], t_end) - min(ts[i - 1], t_end)
            idle_j += (e[i] - e[i - 1]) * frac
            idle_s += dt * frac
            covered += dt
        device_j = d.curve.energy_between(0.0, t_end)
        out[d.sensor.name] = {
            "energy_j": idle_j, "seconds": idle_s, "covered_s": covered,
            "share_of_device": idle_j / device_j if device_j > 0 else None,
            "time_share": idle_s / covered if covered > 0 else None,
            "method": IDLE_METHOD}
    return idle_accounts(out)


def merge_parts(parts: Iterable[Optional[Mapping[str, Mapping[str, Any]]]],
                total_j: Optional[float]) -> dict[str, Share]:
    """A job's breakdown: the members' parts summed (each member over its own devices)."""
    out: dict[str, dict[str, Any]] = {}
    for bd in parts:
        for name, p in (bd or {}).items():
            o = out.setdefault(name, {"energy_j": 0.0, "seconds": 0.0, "method": p["method"]})
            o["energy_j"] += p["energy_j"]
            o["seconds"] = max(o["seconds"], p["seconds"])   # wall time, not process-seconds
            if o["method"] != p["method"]:
                o["method"] = "mixed"
    for o in out.values():
        o["share"] = o["energy_j"] / total_j if total_j else None
    return shares({k: out[k] for k in PARTS if k in out})


__all__ = ["INTERPOLATED", "PARTS", "IdleAccount", "Share", "breakdown", "energy_of",
           "idle_accounts", "idle_energy", "merge_parts", "partition", "shares", "subtract",
           "union"]
