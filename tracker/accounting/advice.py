"""Findings measured on the run, each with the numbers it was computed from.

A finding is made only when the run's own data supports it (a threshold on a measured share,
a cleaner grid that exists in the bundled tables, a recorded intensity series long enough to
have a cleaner part of the day); a clean run gets none. Thresholds are in THRESHOLDS so the
report can say what "large" meant.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Optional

from ..units import energy_text
from .parts import DictPart, parts_of

THRESHOLDS = {
    "gpu_idle_share": 0.10,        # of GPU energy
    "between_steps_share": 0.10,   # of IT energy
    "startup_share": 0.05,
    "startup_s": 300.0,
    "eval_share": 0.10,
    "checkpoint_share": 0.05,
    "after_last_step_share": 0.05,
    "cleaner_grid": 0.20,          # emissions reduction worth naming ...
    "cleaner_grid_gco2": 50.0,     # ... and a difference in gCO2e/kWh that is not noise
    "cleaner_hours": 0.05,
    "straggler": 0.80,             # a GPU below this fraction of its node's median
}
CLEAN_WINDOW_S = 6 * 3600.0


@dataclass(frozen=True, eq=False)
class Finding(DictPart):
    """One entry of a summary's `advice`: what was found (`kind`, e.g. "gpu_idle"), the
    sentence the summary prints, and the numbers it was computed from."""

    kind: Optional[str] = None
    finding: str = ""
    numbers: Optional[dict[str, Any]] = None


def _kwh(j: float) -> str:
    """Energy in the unit that fits ("519 J", "3.2 kWh"): named for what it once printed."""
    return energy_text(j)


def _dur(s: float) -> str:
    return f"{s / 60:.1f} min" if s >= 120 else f"{s:.1f} s"


def findings(summary: dict[str, Any], periods: Optional[Sequence[Any]] = None
             ) -> list[Finding]:
    """Findings for a summary dict (run or job). `periods`: live intensity periods, if any."""
    return parts_of(Finding, _found(summary, periods))


def _found(summary: dict[str, Any], periods: Optional[Sequence[Any]]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    parts = summary.get("breakdown") or {}
    total = summary.get("energy_j") or 0.0
    if total <= 0:
        return out
    T = THRESHOLDS

    def part(name: str) -> tuple[float, float, float]:
        p = parts.get(name) or {}
        return p.get("energy_j") or 0.0, p.get("share") or 0.0, p.get("seconds") or 0.0

    idle = summary.get("idle") or {}
    gpu_j = sum(d.get("energy_j") or 0.0 for d in summary.get("devices") or ()
                if d.get("component") == "gpu")
    idle_j = sum(v.get("energy_j") or 0.0 for v in idle.values())
    idle_s = sum(v.get("seconds") or 0.0 for v in idle.values())
    covered = sum(v.get("covered_s") or 0.0 for v in idle.values())
    if gpu_j > 0 and idle and idle_j / gpu_j >= T["gpu_idle_share"]:
        gap_j, gap_share, _ = part("between_steps")
        why = (" while steps wait: the data loader or host-side work stalls between steps"
               if gap_share >= T["between_steps_share"] / 2 else "")
        out.append({"kind": "gpu_idle", "finding":
                    f"GPUs were idle {idle_s / covered:.0%} of the time ({_kwh(idle_j)}, "
                    f"{idle_j / gpu_j:.0%} of GPU energy){why}",
                    "numbers": {"idle_energy_j": idle_j, "gpu_energy_j": gpu_j,
                                "idle_time_share": idle_s / covered if covered else None,
                                "between_steps_energy_j": gap_j}})
    gap_j, gap_share, gap_s = part("between_steps")
    if gap_share >= T["between_steps_share"]:
        out.append({"kind": "between_steps", "finding":
                    f"Gaps between steps took {gap_share:.0%} of the energy ({_kwh(gap_j)} over "
                    f"{_dur(gap_s)}): data loading, host-side work or logging between steps",
                    "numbers": {"energy_j": gap_j, "share": gap_share, "seconds": gap_s}})
    st_j, st_share, st_s = part("before_first_step")
    if st_share >= T["startup_share"] or st_s >= T["startup_s"]:
        out.append({"kind": "startup", "finding":
                    f"Start-up before the first step took {_dur(st_s)} and {_kwh(st_j)} "
                    f"({st_share:.0%}): imports, model load, compilation",
                    "numbers": {"energy_j": st_j, "share": st_share, "seconds": st_s}})
    for name, key, what in (("eval", "eval_share", "Evaluation"),
                            ("checkpoint", "checkpoint_share", "Checkpointing"),
                            ("after_last_step", "after_last_step_share",
                             "Work after the last step (final save, shutdown)")):
        e, share, s = part(name)
        if share >= T[key]:
            out.append({"kind": name, "finding":
                        f"{what} is {share:.0%} of the energy ({_kwh(e)} over {_dur(s)})",
                        "numbers": {"energy_j": e, "share": share, "seconds": s}})
    cleaner = _cleaner_grid(summary)
    if cleaner:
        out.append(cleaner)
    hours = _cleaner_hours(summary, periods)
    if hours:
        out.append(hours)
    out += _stragglers(summary)
    return out


def _cleaner_grid(summary: dict[str, Any]) -> Optional[dict[str, Any]]:
    """The cleanest candidate country (carbon/candidates.py: the what-if's cleanest country
    is the same one), when moving there would cut emissions by a share worth naming."""
    from ..carbon import candidate_countries, compare_regions
    from ..errors import TrackerError

    kwh = summary.get("facility_energy_kwh")
    grid = summary.get("grid") or {}
    own = summary.get("gco2_per_kwh")
    if not kwh or not own or grid.get("region_code") in (None, "mixed"):
        return None
    try:
        codes = [r.code for r in candidate_countries() if r.code != grid.get("region_code")]
        rows = compare_regions(kwh, codes[:1])
    except (TrackerError, OSError, ValueError):   # tables unreadable: no finding, no error
        return None
    if not rows:
        return None
    best = rows[0]
    cut = 1.0 - best["gco2_per_kwh"] / own
    if cut < THRESHOLDS["cleaner_grid"] or own - best["gco2_per_kwh"] < \
            THRESHOLDS["cleaner_grid_gco2"]:
        return None
    return {"kind": "cleaner_grid", "finding":
            f"This run in {best['code']} ({best.get('name')}, {best['gco2_per_kwh']:.0f} "
            f"gCO2e/kWh, {best.get('year') or 'year n/a'}; the cleanest country with a cloud "
            f"region) instead of "
            f"{grid.get('region_code')} ({own:.0f} gCO2e/kWh): -{cut:.0%} CO2e",
            "numbers": {"region": best["code"], "gco2_per_kwh": best["gco2_per_kwh"],
                        "own_gco2_per_kwh": own, "reduction": cut,
                        "emissions_g": best.get("emissions_g")}}


def _cleaner_hours(summary: dict[str, Any], periods: Optional[Sequence[Any]]
                   ) -> Optional[dict[str, Any]]:
    """With a recorded intensity series of >= 12 h: the cleanest 6 h against what applied."""
    if not periods:
        return None
    series = sorted((p.start_wall, p.end_wall, p.gco2_per_kwh) for p in periods
                    if getattr(p, "end_wall", None) and p.end_wall > p.start_wall)
    if not series or series[-1][1] - series[0][0] < 2 * CLEAN_WINDOW_S:
        return None
    best = None
    for start, _, _ in series:
        end = start + CLEAN_WINDOW_S
        if end > series[-1][1]:
            break
        g = sum((min(b, end) - max(a, start)) * v for a, b, v in series
                if b > start and a < end) / CLEAN_WINDOW_S
        best = g if best is None or g < best else best
    applied = summary.get("gco2_per_kwh")
    if best is None or not applied:
        return None
    cut = 1.0 - best / applied
    if cut < THRESHOLDS["cleaner_hours"]:
        return None
    return {"kind": "cleaner_hours", "finding":
            f"The same energy in the cleanest 6 h of the recorded intensity ({best:.0f} "
            f"gCO2e/kWh, against {applied:.0f} applied) would emit {cut:.0%} less",
            "numbers": {"cleanest_6h_gco2_per_kwh": best, "applied_gco2_per_kwh": applied,
                        "reduction": cut}}


def _stragglers(summary: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    devices = summary.get("devices") or ()
    for node, s in ((summary.get("job") or {}).get("gpu_energy_spread") or {}).items():
        if s.get("gpus", 0) < 2 or not s.get("median_j"):
            continue
        low = [d for d in devices if d.get("node") == node and d.get("component") == "gpu"
               and d.get("energy_j") is not None
               and d["energy_j"] < THRESHOLDS["straggler"] * s["median_j"]]
        for d in low:
            out.append({"kind": "straggler", "finding":
                        f"{node}/{d['name']} drew {1 - d['energy_j'] / s['median_j']:.0%} less "
                        "than its node's median GPU: a straggler, an imbalanced shard, or a GPU "
                        "left out of the work",
                        "numbers": {"node": node, "device": d["name"],
                                    "energy_j": d["energy_j"], "median_j": s["median_j"]}})
    return out


__all__ = ["THRESHOLDS", "Finding", "findings"]
