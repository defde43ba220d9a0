"""Assembling a Summary from device curves, windows and the grid factor (live and rebuilt runs).

Path: device curves -> per-device energy -> per-component sums -> facility energy (x PUE) ->
emissions (energy in each intensity period x that period's gCO2e/kWh).
"""

from __future__ import annotations

import math
import platform
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, Optional

from .accounting.advice import findings
from .accounting.breakdown import breakdown, idle_energy
from .it_energy import it_energy_at
from .sampler import DeviceState
from .sensors.base import NODE, counted
from .summary import (
    Summary,
    Window,
    combine,
    device_energy,
    ordered,
    utc_iso,
    window_energy,
)
from .units import J_PER_KWH

# Components every machine has: a summary without one says it is not in the totals.
EXPECTED = ("gpu", "cpu", "ram")

# Steps shorter than this are reported in groups: the GPU counter moves every ~100 ms and is
# read every ~1 s, so a 5 ms step's own energy is an interpolation, not a measurement.
STEP_GROUP_MIN_S = 1.0
# ... and in at most this many groups, so a summary stays small however long the run (a day
# of 1 s steps would otherwise be 86 400 groups in every summary.json).
MAX_STEP_GROUPS = 1000


def build_summary(*, run_id: str, name: str, status: str, start_wall: float, t_end: float,
                  devices: Sequence[DeviceState], windows: Sequence[Window], factor: Any,
                  periods: Optional[Sequence[Any]], live_status: Optional[dict[str, Any]],
                  pue: float, pue_source: str, notes: Sequence[str], run_dir: Optional[str],
                  closed_steps: int = 0, sampling: Optional[dict[str, Any]] = None,
                  elsewhere: Sequence[str] = (), price: Optional[Price] = None,
                  ledger: Any = None) -> Summary:
    """`closed_steps`: steps already closed but not in `windows` (only counted, while running).
    `elsewhere`: components another process of the job measures (not "missing" here).
    `price`: electricity price of the facility energy (no price: no cost is shown).
    `ledger`: the run's settled step and utilisation accounts (ledger.py), after finish();
    without one (a rebuilt or joined run's window list), steps come from `windows`."""
    from .carbon import account_emissions

    t0 = 0.0
    duration = max(t_end - t0, 0.0)
    rate = float((sampling or {}).get("rate_hz") or 10.0)
    interval = 1.0 / rate if rate > 0 else 0.1
    devs = tuple(device_energy(d, t0, t_end, interval) for d in devices)
    components = {c: combine(c, [d for d in devs if d.component == c], duration)
                  for c in ordered(d.component for d in devs)}
    it_j, notes = _it_total(devs, list(notes), elsewhere)

    def e_it(t: float) -> float:
        return it_energy_at(devices, t)

    def facility_j_at_wall(wall: float) -> float:
        return pue * e_it(wall - start_wall)

    emissions = None
    if it_j is not None:
        emissions = account_emissions(facility_j_at_wall, start_wall, start_wall + t_end,
                                      factor, periods or None)

    def window_g(a: float, b: float) -> float:
        if emissions is None or not emissions.energy_j:
            return 0.0
        # Windows use the run's energy-weighted intensity unless live periods split them.
        if periods:
            return account_emissions(facility_j_at_wall, start_wall + a, start_wall + b,
                                     factor, periods).emissions_g
        return pue * (e_it(b) - e_it(a)) / J_PER_KWH * emissions.gco2_per_kwh_effective

    wins = [window_energy(w, devices, t_end, window_g, interval) for w in windows
            if w.kind != "step"]
    if price is not None:
        wins = [replace(w, cost=price.of_j(pue * w.energy_j)) if w.energy_j is not None else w
                for w in wins]
    step_windows = [w for w in windows if w.kind == "step"]
    from_ledger = ledger is not None and (ledger.count or not step_windows)
    parts: dict[str, Any] = {}
    idle: dict[str, Any] = {}
    if status == "running":
        # Live summaries are rewritten every few seconds: keep them O(windows), not O(steps).
        n_steps = closed_steps + len(step_windows)
        steps = {"count": n_steps, "note": "step groups are computed at stop"} if n_steps else {}
    elif from_ledger:
        steps = ledger.step_summary(interval)
        measured_devices = [d for d in devices if not d.curve.empty]
        if measured_devices:
            parts = ledger.breakdown(t_end, marked_spans(windows), e_it,
                                     sorted({d.sensor.method for d in measured_devices}))
        idle = ledger.idle_summary(devices, t_end)
    else:
        steps = step_summary([window_energy(w, devices, t_end, None).to_dict()
                              for w in step_windows])
        parts = breakdown(windows, devices, t_end)
        idle = idle_energy(devices, t_end)
    degraded = [e if e.startswith(d.name) else f"{d.name}: {e}" for d in devs for e in d.errors]
    facility = None if it_j is None else it_j * pue
    emissions_kg = None if emissions is None else emissions.emissions_g / 1000.0
    carbon = {} if emissions is None else emissions.to_dict()
    if live_status:
        carbon["live"] = live_status
    final = status != "running"    # the breakdown and findings cost O(steps): at stop only
    summary = Summary(
        run_id=run_id, name=name, status=status, started_utc=utc_iso(start_wall),
        ended_utc=None if status == "running" else utc_iso(start_wall + t_end),
        duration_s=duration, devices=devs, components=components, energy_j=it_j, pue=pue,
        pue_source=pue_source, facility_energy_j=facility, emissions_kg=emissions_kg,
        emissions_rate_kg_per_s=(emissions_kg / duration if emissions_kg is not None
                                 and duration > 0 else None),
        gco2_per_kwh=None if emissions is None else emissions.gco2_per_kwh_effective,
        grid=factor.to_dict(), carbon=carbon, windows=tuple(wins), steps=steps,
        notes=tuple(notes), degraded=tuple(degraded), run_dir=run_dir,
        sampling=dict(sampling or {}),
        breakdown=parts, idle=idle,
        energy_uncertainty_j=_total_bound(devs),
        cost=price.cost(facility) if price is not None and facility is not None else None)
    if final:
        summary = replace(summary, advice=tuple(findings(summary.to_dict(), periods)))
    return summary


def _it_total(devs: Sequence[Any], notes: list[str], elsewhere: Sequence[str]
              ) -> tuple[Optional[float], list[str]]:
    """IT energy: the devices' energies, except those included in a whole-node meter (parts
    of its energy). None when nothing was measured. And the notes on what is not in it."""
    measured = [d for d in devs if d.energy_j is not None]
    in_total = [d.energy_j for d in measured if counted(d.details)]
    it_j = sum(in_total) if in_total else (0.0 if measured else None)
    present = {d.component for d in devs}
    covered = present | {c for d in devs for c in (d.details.get("covers") or ())}
    if NODE in present or NODE in elsewhere:
        parts = [d.name for d in devs if not counted(d.details)]
        if parts and NODE not in present:
            notes.append(f"{', '.join(parts)} {'is' if len(parts) == 1 else 'are'} included in "
                         "the whole-node meter that another process of this job measures: not "
                         "added to this process's total")
        return it_j, notes   # the node meter covers the whole machine
    for c in EXPECTED:
        if c not in covered and c not in elsewhere:
            notes.append(f"{c}: not measured (no sensor), so it is not in the totals")
    return it_j, notes


def marked_spans(windows: Sequence[Window]) -> dict[str, list[tuple[float, Optional[float]]]]:
    """(start, end) of the eval and checkpoint windows, for the breakdown."""
    out: dict[str, list[tuple[float, Optional[float]]]] = {"eval": [], "checkpoint": []}
    for w in windows:
        if w.kind in out:
            out[w.kind].append((w.t_start, w.t_end))
    return out


@dataclass(frozen=True)
class Price:
    """Electricity price per kWh of facility energy, in a named currency."""

    per_kwh: float
    currency: str

    def of_j(self, facility_j: float) -> float:
        return facility_j / J_PER_KWH * self.per_kwh

    def cost(self, facility_j: float) -> dict[str, Any]:
        return {"amount": self.of_j(facility_j), "currency": self.currency,
                "price_per_kwh": self.per_kwh, "basis": "facility energy (IT x PUE)"}


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


def step_summary(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
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


def emissions_row(summary: Summary, manifest: dict[str, Any]) -> dict[str, Any]:
    """One emissions.csv row, CodeCarbon's columns first (kWh, W, kg, s)."""
    comp = summary.components
    host = manifest.get("host", {})
    grid = summary.grid

    def kwh(c: str) -> Optional[float]:
        return comp[c].energy_kwh if c in comp else None

    def watts(c: str) -> Optional[float]:
        return comp[c].mean_power_w if c in comp else None

    gpus = [d for d in summary.devices if d.component == "gpu"]
    gpu_models = [str(d.details.get("model", d.description)) for d in gpus]
    code = str(grid.get("region_code") or "")
    country = _country(code)
    cloud_provider, cloud_region = (code.split(":", 1) if ":" in code else ("", ""))
    if cloud_provider == "ccf":   # ccf:aws:us-east-1: the cloud region, CCF's factor
        cloud_provider, cloud_region = cloud_region.split(":", 1)
    ram_gb = host.get("ram_total_gb")   # run.json has 1e9 B; CodeCarbon writes GiB
    # CodeCarbon's columns where we have no number get what CodeCarbon writes when it has none
    # (0.0; its default experiment id), so its loaders read every row; `not_measured` says
    # which they are. Longitude and latitude stay empty, as CodeCarbon leaves them offline.
    measured = {
        "emissions": summary.emissions_kg, "emissions_rate": summary.emissions_rate_kg_per_s,
        "cpu_power": watts("cpu"), "gpu_power": watts("gpu"), "ram_power": watts("ram"),
        "cpu_energy": kwh("cpu"), "gpu_energy": kwh("gpu"), "ram_energy": kwh("ram"),
        "energy_consumed": summary.facility_energy_kwh,
    }
    defaults = {"experiment_id": CODECARBON_EXPERIMENT_ID, "water_consumed": 0.0,
                "cpu_utilization_percent": 0.0, "gpu_utilization_percent": 0.0,
                "ram_utilization_percent": 0.0, "ram_used_gb": 0.0, "wue": 0.0}
    raw_wue = (manifest.get("config") or {}).get("wue")
    wue = raw_wue if isinstance(raw_wue, (int, float)) and not isinstance(raw_wue, bool) else None
    facility_kwh = summary.facility_energy_kwh
    water = wue is not None and facility_kwh is not None
    if wue is not None and facility_kwh is not None:
        # on-site water, an estimate from the user's WUE (litres), as CodeCarbon 3.x computes it
        defaults.update(water_consumed=facility_kwh * float(wue), wue=float(wue))
    not_measured = [k for k, v in measured.items() if v is None] + [
        k for k in defaults if not (water and k in ("water_consumed", "wue"))]
    return {
        "timestamp": summary.ended_utc or summary.started_utc,
        "project_name": summary.name, "run_id": summary.run_id,
        "duration": summary.duration_s,
        **{k: 0.0 if v is None else v for k, v in measured.items()},
        **defaults,
        "country_name": country[0], "country_iso_code": country[1],
        "region": "" if cloud_provider else code,
        "cloud_provider": cloud_provider, "cloud_region": cloud_region,
        "os": host.get("os") or platform.platform(), "python_version": host.get("python"),
        "codecarbon_version": "", "cpu_count": host.get("cpu_count"),
        "cpu_model": host.get("cpu_model"), "gpu_count": len(gpus),
        "gpu_model": ", ".join(f"{gpu_models.count(m)} x {m}" for m in sorted(set(gpu_models))),
        "longitude": "", "latitude": "",
        "ram_total_size": round(ram_gb * 1e9 / 2**30, 3) if ram_gb is not None else 0.0,
        "tracking_mode": "machine", "on_cloud": "Y" if cloud_provider else "N",
        "pue": summary.pue, "status": summary.status,
        "cpu_method": comp["cpu"].method if "cpu" in comp else "not measured",
        "gpu_method": comp["gpu"].method if "gpu" in comp else "not measured",
        "ram_method": comp["ram"].method if "ram" in comp else "not measured",
        "not_measured": ";".join(not_measured),
        "it_energy": summary.energy_kwh, "gco2_per_kwh": summary.gco2_per_kwh,
        **_more_components(summary),
        "grid_region": code, "grid_source": grid.get("source"), "grid_year": grid.get("year"),
        "tracker_version": manifest.get("versions", {}).get("energy_tracker"),
        "run_dir": summary.run_dir,
        "job_id": (summary.job or {}).get("job_id"),
        "world_size": (summary.job or {}).get("world_size"),
        "nodes": len((summary.job or {}).get("nodes") or ()) or None,
        "cost": (summary.cost or {}).get("amount"),
        "currency": (summary.cost or {}).get("currency"),
        "price_per_kwh": (summary.cost or {}).get("price_per_kwh"),
    }


def _more_components(summary: Summary) -> dict[str, Any]:
    """Our columns for what CodeCarbon's have no room for: a whole-node meter (kWh, W,
    method), what the IT energy is the sum of, and any other component ("name=kWh;...")."""
    comp = summary.components
    node = comp.get(NODE)
    parts = [c for c in comp if c != NODE and all(
        not counted(d.details) for d in summary.devices if d.component == c)]
    basis = ((f"node meter (includes {', '.join(parts)})" if parts else "node meter")
             if node is not None else "+".join(c for c in comp if c not in parts) or "")
    others = [c for c in comp if c not in (*EXPECTED, NODE)]
    return {
        "node_energy": node.energy_kwh if node is not None else None,
        "node_power": node.mean_power_w if node is not None else None,
        "node_method": node.method if node is not None else "not measured",
        "it_energy_basis": basis,
        "other_energy": ";".join(f"{c}={comp[c].energy_kwh:.9g}" for c in others
                                 if comp[c].energy_kwh is not None),
        "other_method": ";".join(f"{c}={comp[c].method}" for c in others),
    }


# What CodeCarbon 3.x writes as experiment_id when none is given (its default).
CODECARBON_EXPERIMENT_ID = "5b0fa12a-3dd7-45bb-9766-cc326314d9f1"


def _country(code: str) -> tuple[str, str]:
    """(country name, ISO alpha-3) of the country a region code is in (a cloud region: the
    country of its grid, or Google's location); blanks if none (aggregates, a custom factor)."""
    from .carbon.regions import country_of
    from .errors import TrackerError

    try:
        r = country_of(code)
    except TrackerError:
        return "", ""
    if r is None:
        return "", ""
    return r.name, next((a for a in r.aliases if len(a) == 3 and a.isalpha()), "")


def _total_bound(devs: Sequence[Any]) -> Optional[float]:
    """± bound (J) on the run's measured energy: its measured devices' bounds added."""
    known = [d.uncertainty_j for d in devs if d.uncertainty_j is not None]
    return sum(known) if known else None
