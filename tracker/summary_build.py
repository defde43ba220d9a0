"""Building a Summary: one build for a run (live, at stop, rebuilt) and for a job.

A run: device curves -> per-device energy -> IT energy -> facility energy (x PUE) ->
emissions (energy in each intensity period x that period's gCO2e/kWh); windows, steps
(accounting/steps.py), breakdown and cost beside them (`build_summary`). A job: its members'
parts gathered by job/merge.py (devices counted once, node energies, each node's emissions).
Both end in `assemble(SummaryParts)`, the only place a Summary is made from parts: the
components, the emission rate, the uncertainty bound, the times and the findings are derived
there once. And the emissions.csv row of a summary.
"""

from __future__ import annotations

import platform
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Optional

from .accounting.advice import findings
from .accounting.breakdown import (
    IdleAccount,
    Share,
    breakdown,
    idle_accounts,
    idle_energy,
    shares,
)
from .accounting.parts import as_part
from .accounting.price import Cost, Price
from .accounting.steps import (
    MAX_STEP_GROUPS,
    STEP_GROUP_MIN_S,
    Steps,
    per_unit,
    step_groups,
    step_summary,
)
from .carbon.gridfactor import Grid
from .it_energy import it_energy_at
from .job.part import JobPart
from .sampler import DeviceState
from .sensors.base import NODE, counted
from .summary import (
    CarbonDetail,
    DeviceEnergy,
    Sampling,
    Summary,
    Window,
    WindowEnergy,
    combine,
    device_energy,
    ordered,
    utc_iso,
    window_energy,
)
from .units import J_PER_KWH

# Components every machine has: a summary without one says it is not in the totals.
EXPECTED = ("gpu", "cpu", "ram")

# Step grouping and J/sample, J/token live in accounting/steps.py (one grouping for runs and
# jobs); their names stay importable from here.
__all__ = ["EXPECTED", "MAX_STEP_GROUPS", "STEP_GROUP_MIN_S", "Price", "SummaryParts",
           "assemble", "build_summary", "emissions_row", "marked_spans", "per_unit",
           "step_groups", "step_summary"]


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
    parts: Mapping[str, Any] = {}
    idle: Mapping[str, Any] = {}
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
    carbon = {} if emissions is None else emissions.to_dict()
    if live_status:
        carbon["live"] = live_status
    return assemble(SummaryParts(
        run_id=run_id, name=name, status=status, start_wall=start_wall, duration_s=duration,
        devices=devs, energy_j=it_j, pue=pue, pue_source=pue_source, facility_energy_j=facility,
        emissions_kg=None if emissions is None else emissions.emissions_g / 1000.0,
        gco2_per_kwh=None if emissions is None else emissions.gco2_per_kwh_effective,
        grid=as_part(Grid, factor.to_dict()), carbon=as_part(CarbonDetail, carbon),
        windows=tuple(wins),
        steps=as_part(Steps, steps),
        notes=tuple(notes), degraded=tuple(degraded), run_dir=run_dir,
        sampling=as_part(Sampling, sampling or {}), breakdown=shares(parts),
        idle=idle_accounts(idle),
        cost=price.cost(facility) if price is not None and facility is not None else None,
        # the breakdown and findings cost O(steps): at stop only
        advise=status != "running", periods=periods))


@dataclass(frozen=True)
class SummaryParts:
    """What a Summary is built from, every part already measured: a run's from its device
    curves, windows, steps ledger and grid factor (build_summary: the live stop, a snapshot
    while running, the rebuild of a killed run), a job's from its members (job/merge.py:
    devices counted once, energies by node, each node's emissions). `assemble` turns either
    into the Summary: the derived numbers (components, rate, bound, times, findings) are
    computed in that one place, so a job and a run of one process say the same."""

    run_id: str
    name: str
    status: str
    start_wall: float                  # wall time of run time 0 (a job: its first member's)
    duration_s: float
    devices: tuple[DeviceEnergy, ...]
    energy_j: Optional[float]          # IT energy: the counted devices' (None: none measured)
    pue: float
    pue_source: str
    facility_energy_j: Optional[float]
    emissions_kg: Optional[float]
    gco2_per_kwh: Optional[float]      # energy-weighted intensity applied
    grid: Grid
    carbon: CarbonDetail
    windows: tuple[WindowEnergy, ...]
    steps: Steps
    notes: tuple[str, ...]
    degraded: tuple[str, ...]
    run_dir: Optional[str]
    sampling: Sampling
    breakdown: dict[str, Share]
    idle: dict[str, IdleAccount]
    cost: Optional[Cost]
    job: Optional[JobPart] = None
    advise: bool = True                # compute the findings (accounting/advice.py)
    periods: Optional[Sequence[Any]] = field(default=None, repr=False)   # live intensity


def assemble(p: SummaryParts) -> Summary:
    """The Summary of `p`: the one build every summary goes through (a run's and a job's)."""
    duration = p.duration_s
    components = {c: combine(c, [d for d in p.devices if d.component == c], duration)
                  for c in ordered(d.component for d in p.devices)}
    kg = p.emissions_kg
    summary = Summary(
        run_id=p.run_id, name=p.name, status=p.status, started_utc=utc_iso(p.start_wall),
        ended_utc=None if p.status == "running" else utc_iso(p.start_wall + duration),
        duration_s=duration, devices=p.devices, components=components, energy_j=p.energy_j,
        pue=p.pue, pue_source=p.pue_source, facility_energy_j=p.facility_energy_j,
        emissions_kg=kg,
        emissions_rate_kg_per_s=kg / duration if kg is not None and duration > 0 else None,
        gco2_per_kwh=p.gco2_per_kwh, grid=p.grid, carbon=p.carbon, windows=p.windows,
        steps=p.steps, notes=p.notes, degraded=p.degraded, run_dir=p.run_dir,
        sampling=p.sampling, job=p.job, breakdown=p.breakdown, idle=p.idle, cost=p.cost,
        energy_uncertainty_j=_total_bound(p.devices))
    if p.advise:
        summary = replace(summary, advice=tuple(findings(summary.to_dict(), p.periods)))
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


def emissions_row(summary: Summary, manifest: dict[str, Any]) -> dict[str, Any]:
    """One emissions.csv row, CodeCarbon's columns first (kWh, W, kg, s)."""
    comp = summary.components
    host = manifest.get("host", {})
    grid, job = summary.grid, summary.job

    def kwh(c: str) -> Optional[float]:
        return comp[c].energy_kwh if c in comp else None

    def watts(c: str) -> Optional[float]:
        return comp[c].mean_power_w if c in comp else None

    gpus = [d for d in summary.devices if d.component == "gpu"]
    gpu_models = [str(d.details.get("model", d.description)) for d in gpus]
    code = str(grid.region_code or "")
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
    # the run's means where they were read (CPU model: psutil; GPUs: NVML; RAM: process scope)
    read = {k: v for k, v in _run_means(summary).items() if v is not None}
    defaults.update(read)
    not_measured = [k for k, v in measured.items() if v is None] + [
        k for k in defaults if k not in read and not (water and k in ("water_consumed", "wue"))]
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
        "grid_region": code, "grid_source": grid.source, "grid_year": grid.year,
        "tracker_version": manifest.get("versions", {}).get("energy_tracker"),
        "run_dir": summary.run_dir,
        "job_id": job.job_id if job is not None else None,
        "world_size": job.world_size if job is not None else None,
        "nodes": len(job.nodes or ()) or None if job is not None else None,
        "cost": summary.cost.amount if summary.cost is not None else None,
        "currency": summary.cost.currency if summary.cost is not None else None,
        "price_per_kwh": summary.cost.price_per_kwh if summary.cost is not None else None,
    }


def _run_means(summary: Summary) -> dict[str, Optional[float]]:
    """The run's mean CPU utilisation (the CPU model's reads, time-weighted), GPU utilisation
    (NVML's, from the idle accounts: 1 - idle time / covered time) and, with
    cpu_scope="process", the run's memory (GiB); None where nothing was read."""
    cpu = [d.details["utilization_pct_mean"] for d in summary.devices if d.component == "cpu"
           and isinstance(d.details.get("utilization_pct_mean"), (int, float))]
    ram = [d.details["run_gib_mean"] for d in summary.devices if d.component == "ram"
           and isinstance(d.details.get("run_gib_mean"), (int, float))]
    gpus = {d.name for d in summary.devices if d.component == "gpu"}
    idle = [v for k, v in summary.idle.items() if k in gpus]
    covered = sum(float(v.covered_s or 0.0) for v in idle)
    idle_s = sum(float(v.seconds or 0.0) for v in idle)
    return {"cpu_utilization_percent": sum(cpu) / len(cpu) if cpu else None,
            "gpu_utilization_percent": 100.0 * (1.0 - idle_s / covered) if covered > 0 else None,
            "ram_used_gb": sum(ram) if ram else None}


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
