"""A summary's `steps` part, from a run's steps or from the members of a job: one grouping.

A run's steps are reported in fixed-size groups (`step_groups`: each group spans at least
STEP_GROUP_MIN_S, at most MAX_STEP_GROUPS groups), with J/sample and J/token (`per_unit`)
defined once: energy in steps / samples (or tokens) in those steps. A job's steps are the same
part over its members (`job_steps`): steps counted once (every rank runs the same steps),
energy summed over the members' devices, samples and tokens over every rank, group i of the
job = group i of every member when all grouped alike.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Optional

from .parts import DictPart

__all__ = ["MAX_STEP_GROUPS", "STEP_GROUP_MIN_S", "GroupArrays", "MemberSteps", "Steps",
           "job_steps", "per_unit", "step_groups", "step_summary"]

# Steps shorter than this are reported in groups: the GPU counter moves every ~100 ms and is
# read every ~1 s, so a 5 ms step's own energy is an interpolation, not a measurement.
STEP_GROUP_MIN_S = 1.0
# ... and in at most this many groups, so a summary stays small however long the run (a day
# of 1 s steps would otherwise be 86 400 groups in every summary.json).
MAX_STEP_GROUPS = 1000


def per_unit(row: dict[str, Any], energy_j: float, samples: int, tokens: int
             ) -> dict[str, Any]:
    """Add the sample and token counts and J/sample, J/token to `row` (when counted)."""
    if samples:
        row["samples"] = samples
        row["j_per_sample"] = energy_j / samples
    if tokens:
        row["tokens"] = tokens
        row["j_per_token"] = energy_j / tokens
    return row


def step_groups(rows: Sequence[dict[str, Any]], min_group_s: float = STEP_GROUP_MIN_S
                ) -> list[dict[str, Any]]:
    """Consecutive steps in fixed-size groups, each group spanning >= `min_group_s` (median),
    at most MAX_STEP_GROUPS groups.

    The group size is fixed for the whole run (from the median step duration), so groups are
    comparable; the last group may be smaller. Energies include the gaps between the group's
    steps, so the groups plus the time outside any step add up to the run's total.
    """
    steps = [r for r in rows if r.get("kind", "step") == "step" and r.get("end_s") is not None]
    if not steps:
        return []
    durations = sorted(r["duration_s"] for r in steps)
    median = durations[len(durations) // 2]
    size = max(1, math.ceil(min_group_s / median)) if median > 0 else len(steps)
    size = max(size, math.ceil(len(steps) / MAX_STEP_GROUPS))
    groups = []
    for i in range(0, len(steps), size):
        g = steps[i:i + size]
        energy = sum(r["energy_j"] or 0.0 for r in g)
        n_samples = sum(r["attrs"].get("samples", 0) for r in g)
        n_tokens = sum(r["attrs"].get("tokens", 0) for r in g)
        row = {"first_step": g[0]["attrs"].get("index", i), "last_step":
               g[-1]["attrs"].get("index", i + len(g) - 1), "steps": len(g),
               "start_s": g[0]["start_s"], "end_s": g[-1]["end_s"],
               "energy_j": energy, "j_per_step": energy / len(g)}
        groups.append(per_unit(row, energy, n_samples, n_tokens))
    return groups


def step_summary(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The steps part of a run's summary from its step windows (as WindowEnergy dicts)."""
    if not rows:
        return {}
    groups = step_groups(rows)
    energy = sum(r["energy_j"] or 0.0 for r in rows)
    samples = sum(r["attrs"].get("samples", 0) for r in rows)
    tokens = sum(r["attrs"].get("tokens", 0) for r in rows)
    out: dict[str, Any] = {
        "count": len(rows), "energy_j_in_steps": energy,
        "group_size": groups[0]["steps"] if groups else None, "groups": groups,
        "resolution_note": "per-step energies are interpolated on E(t); groups span >= "
                           f"{STEP_GROUP_MIN_S:g} s; all steps are listed in windows.json"}
    return per_unit(out, energy, samples, tokens)


@dataclass(frozen=True, eq=False)
class Steps(DictPart):
    """A summary's `steps` part (see the module docstring). Empty (no key) for a run without
    steps; while a run is running, only `count` and a `note` (groups are computed at stop)."""

    count: Optional[int] = None
    energy_j_in_steps: Optional[float] = None    # energy inside steps (not the run's total)
    group_size: Optional[int] = None             # steps per group (None: no groups)
    groups: Optional[list[dict[str, Any]]] = None
    resolution_note: Optional[str] = None
    note: Optional[str] = None
    samples: Optional[int] = None
    j_per_sample: Optional[float] = None         # energy_j_in_steps / samples
    tokens: Optional[int] = None
    j_per_token: Optional[float] = None          # energy_j_in_steps / tokens

    @classmethod
    def empty(cls) -> Steps:
        return cls(keys_=())


class GroupArrays:
    """Step groups of one member: the reference fields and the summed quantities, as arrays
    (a thousand dicts per member x a thousand members is hundreds of MB)."""

    FIELDS = ("first_step", "last_step", "steps", "start_s", "end_s", "energy_j", "samples",
              "tokens")

    def __init__(self) -> None:
        self.cols = {f: array("d") for f in self.FIELDS}

    @classmethod
    def of(cls, groups: list[dict[str, Any]]) -> GroupArrays:
        g = cls()
        for f in cls.FIELDS:   # one comprehension per column: ~50 ns a value
            g.cols[f] = array("d", [r.get(f) or 0.0 for r in groups])
        return g

    def __len__(self) -> int:
        return len(self.cols["steps"])


@dataclass(frozen=True)
class MemberSteps:
    """One member's steps part (its summary's `steps`, groups held apart as arrays) and the
    attempt it belongs to (a restarted job counts each attempt's steps)."""

    steps: Mapping[str, Any]
    groups: Optional[GroupArrays]
    attempt: Hashable


def job_steps(members: Sequence[MemberSteps], notes: list[str]) -> dict[str, Any]:
    """The steps part of a job's summary from its members' (see the module docstring); what
    cannot be combined is said in `notes`."""
    rows = [m for m in members if m.steps.get("count")]
    if not rows:
        return {}
    energy = sum((m.steps.get("energy_j_in_steps") or 0.0) for m in rows)
    if any(m.steps.get("energy_j_in_steps") is None for m in rows):
        notes.append("some members were still running: step energies are computed at stop")
    samples = sum(int(m.steps.get("samples") or 0) for m in rows)
    tokens = sum(int(m.steps.get("tokens") or 0) for m in rows)
    attempts = list(dict.fromkeys(m.attempt for m in rows))
    count = sum(max(int(m.steps["count"]) for m in rows if m.attempt == a) for a in attempts)
    out: dict[str, Any] = {"count": count, "energy_j_in_steps": energy,
                           "note": "steps counted once (every rank runs the same steps); "
                                   "energy summed over the devices of every node, samples and "
                                   "tokens over every rank"}
    per_unit(out, energy, samples, tokens)
    sizes = {m.steps.get("group_size") for m in rows}
    if len(sizes) == 1 and None not in sizes and len(attempts) == 1:
        out["group_size"] = sizes.pop()
        out["groups"] = _merge_groups([m.groups for m in rows if m.groups is not None])
    else:
        notes.append("members grouped their steps differently: the job reports step totals "
                     "only (each member's groups are in its own summary.json)")
    return out


def _merge_groups(per_member: list[GroupArrays]) -> list[dict[str, Any]]:
    """Group i of the job = group i of every member (same group size, same step indices)."""
    if not per_member:
        return []
    ref = max(per_member, key=len)
    n = len(ref)
    sums = {f: [0.0] * n for f in ("energy_j", "samples", "tokens")}
    for g in per_member:
        for f, acc in sums.items():
            col = g.cols[f]
            for i in range(min(n, len(col))):
                acc[i] += col[i]
    out = []
    for i in range(n):
        steps = int(ref.cols["steps"][i]) or 1
        energy = sums["energy_j"][i]
        row: dict[str, Any] = {"first_step": int(ref.cols["first_step"][i]),
                               "last_step": int(ref.cols["last_step"][i]), "steps": steps,
                               "start_s": ref.cols["start_s"][i], "end_s": ref.cols["end_s"][i],
                               "energy_j": energy, "j_per_step": energy / steps}
        out.append(per_unit(row, energy, int(sums["samples"][i]), int(sums["tokens"][i])))
    return out
