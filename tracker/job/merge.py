"""Run directories of a job -> one job summary. A pure function of what is on disk, so the same
code serves a live job, a killed job, and parts copied together from node-local disks.

This module gathers the members' parts (`job_parts`); the Summary is built from them by
summary_build.assemble, the same build as every run's (live stop, rebuild), and the steps
part by accounting/steps.job_steps, next to a run's step grouping. What is gathered:

- Devices: each member run lists the devices it measured (claims make that exactly once); a
  device found in two members at overlapping times is counted once, and said so.
- Energy: node energy = the sum of its devices; job energy = the sum of the node energies.
- Emissions: each member's own (its node's grid factor and PUE); the factors are listed.
- Windows: matched across ranks, energies summed over members (job/windows.py).
- Steps: counted once (the reference rank's), samples and tokens summed over ranks, energy
  summed over members; groups merged when every member used the same group size
  (accounting/steps.py).
- Missing: ranks that left no files, members killed without a final reading (from when).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Optional

from ..accounting.breakdown import idle_accounts, merge_parts
from ..accounting.parts import as_part
from ..accounting.price import Cost
from ..accounting.steps import GroupArrays, MemberSteps, Steps, job_steps
from ..carbon.gridfactor import Grid
from ..errors import ConfigError
from ..rundir.runlog import read_json
from ..rundir.untrusted import wall_seconds
from ..sensors.base import counted
from ..summary import CarbonDetail, DeviceEnergy, Summary, utc_iso
from ..summary_build import SummaryParts, assemble
from ..units import J_PER_KWH
from .layout import JOB_MANIFEST, Member, members
from .part import JobPart
from .windows import count_of, job_windows

log = logging.getLogger("tracker")

_STATUS_ORDER = ("running", "failed", "killed", "terminated", "interrupted", "finished")


@dataclass
class Loaded:
    """One member run of the job, with its summary (saved, or rebuilt when it has none). Its
    step groups are kept as arrays (a thousand dicts per member x a thousand members is
    hundreds of MB)."""

    member: Member
    summary: Summary
    rebuilt: bool = False
    _curves: Optional[dict[str, Any]] = field(default=None, repr=False)
    groups: Optional[GroupArrays] = field(default=None, repr=False)

    def __post_init__(self) -> None:
        steps = self.summary.steps
        if steps.groups:
            self.groups = GroupArrays.of(steps.groups)
            self.summary = replace(self.summary, steps=Steps.from_dict(
                {k: v for k, v in steps.to_dict().items() if k != "groups"}))

    @property
    def start_wall(self) -> float:
        wall = self.member.manifest.get("start_wall")
        return float(wall) if wall_seconds(wall) else 0.0

    @property
    def end_wall(self) -> float:
        return self.start_wall + float(self.summary.duration_s or 0.0)

    @property
    def status(self) -> str:
        return str(self.summary.status or "running")

    @property
    def node(self) -> str:
        return self.member.node

    @property
    def ranks(self) -> list[int]:
        """Ranks this member stands for: its own, or the joined processes' (CLI)."""
        job = self.member.job
        if job.get("ranks") and isinstance(job["ranks"], list):
            return sorted(r for r in job["ranks"] if _rank(r))
        r: Any = self.member.identity.get("rank")
        return [r] if _rank(r) else []

    @property
    def order(self) -> tuple[int, str]:
        ranks = self.ranks
        return (ranks[0] if ranks else 1 << 30, str(self.member.path))

    @property
    def attempt(self) -> tuple[str, int]:
        return self.member.attempt_key

    def energy_at(self, device: str, t_member: float) -> Optional[float]:
        """E(t) of one of this member's devices (its curve, rebuilt from samples.jsonl)."""
        if self._curves is None:
            from ..rebuild import load_run
            try:
                devices = load_run(self.member.path)[1]
                self._curves = {d.sensor.name: d.curve for d in devices if not d.curve.empty}
            except Exception as e:   # a damaged log: this member's share is left out, noted
                log.info("energy-tracker: cannot read %s: %s", self.member.path, e)
                self._curves = {}
        curve = self._curves.get(device)
        return None if curve is None else curve.energy_at(t_member)


def _rank(r: Any) -> bool:
    return r.__class__ is int and 0 <= r < 1 << 30


def load(member: Member) -> Loaded:
    from ..rebuild import rebuild_summary

    s = member.summary()
    if s is not None and s.get("status") not in (None, "running"):
        return Loaded(member, Summary.from_dict(s))
    state = member.state()
    status = "running" if state == "running" else "killed"
    return Loaded(member, rebuild_summary(member.path, status=status), rebuilt=True)


def read_members(job_dirs: Sequence[Path]) -> tuple[dict[str, Any], list[Loaded]]:
    """job.json and every member of one job, from one or several parts of its directory."""
    manifest: Optional[dict[str, Any]] = None
    found: dict[str, Loaded] = {}
    for d in job_dirs:
        m = read_json(Path(d) / JOB_MANIFEST)
        if m is None:
            raise ConfigError(f"{d} is not a job directory (no readable {JOB_MANIFEST})")
        if manifest is None:
            manifest = m
        elif m.get("job_uid") != manifest.get("job_uid"):
            raise ConfigError(f"{d} belongs to job {m.get('job_id')!r}, not "
                              f"{manifest.get('job_id')!r}: give parts of one job")
        for mem in members(Path(d)):
            run_id = str(mem.manifest.get("run_id"))
            if run_id not in found:    # the same part copied twice counts once
                found[run_id] = load(mem)
    assert manifest is not None
    return manifest, sorted(found.values(), key=lambda x: x.order)


def merge(job_dirs: Sequence[Path]) -> Summary:
    """The job summary of one or several directory parts of one job."""
    manifest, loaded = read_members([Path(d) for d in job_dirs])
    return merge_loaded(manifest, loaded, job_dir=str(Path(job_dirs[0]).absolute()))


def merge_loaded(manifest: dict[str, Any], loaded: list[Loaded], *,
                 job_dir: Optional[str] = None) -> Summary:
    """The job summary of its loaded members: their parts gathered (job_parts), built by the
    same summary_build.assemble as every run's summary."""
    return assemble(job_parts(manifest, loaded, job_dir=job_dir))


def job_parts(manifest: dict[str, Any], loaded: list[Loaded], *,
              job_dir: Optional[str] = None) -> SummaryParts:
    """What the job's summary is built from, gathered from its members (module docstring)."""
    if not loaded:
        raise ConfigError(f"job {manifest.get('job_id')!r} has no run directories yet")
    t0 = min(x.start_wall for x in loaded)
    t_end = max(x.end_wall for x in loaded)
    duration = max(t_end - t0, 0.0)
    notes: list[str] = []

    devices, node_energy, dropped = _devices(loaded, notes)
    energy = _sum_nodes(node_energy)
    facility = emissions_kg = 0.0
    any_emissions = False
    for x in loaded:
        keep = 1.0 - dropped.get(id(x), 0.0)   # a duplicate device's share is counted once
        s = x.summary
        if s.facility_energy_j is not None:
            facility += s.facility_energy_j * keep
        if s.emissions_kg is not None:
            emissions_kg += s.emissions_kg * keep
            any_emissions = True
    grids = _grids(loaded)
    grid = grids[0]["grid"] if len(grids) == 1 else {
        "region_code": "mixed",
        "region_name": "; ".join(f"{e['grid'].get('region_code')} on {', '.join(e['nodes'])}"
                                 for e in grids),
        "source": "each node's own factor (carbon.grids)", "year": None, "gco2_per_kwh": None}
    it = energy or 0.0
    pues = {float(x.summary.pue or 1.0) for x in loaded}
    windows = job_windows(loaded, t0, _attempts(loaded))
    steps = as_part(Steps, job_steps([MemberSteps(x.summary.steps, x.groups, x.attempt)
                                      for x in loaded], notes))
    job = _job_section(manifest, loaded, devices, node_energy, grids, t0, t_end)
    for x in loaded:
        where = f"{x.node}/{x.member.path.name}"
        for n in x.summary.notes:
            notes.append(f"[{where}] {n}")
    return SummaryParts(
        run_id=str(manifest.get("job_uid")), name=str(manifest.get("name") or "job"),
        status=_job_status(loaded), start_wall=t0, duration_s=duration,
        devices=tuple(devices), energy_j=energy,
        pue=(facility / it) if it > 0 and facility else (pues.pop() if len(pues) == 1 else 1.0),
        pue_source=_pue_source(loaded), facility_energy_j=facility if energy is not None else None,
        emissions_kg=emissions_kg if any_emissions else None,
        gco2_per_kwh=(emissions_kg * 1000.0 / (facility / J_PER_KWH)
                      if any_emissions and facility > 0 else None),
        grid=as_part(Grid, grid), carbon=CarbonDetail(grids=grids, keys_=("grids",)),
        windows=tuple(windows),
        steps=steps,
        notes=tuple(_dedupe_notes(notes)),
        degraded=tuple(f"[{x.node}/{x.member.path.name}] {d}" for x in loaded
                       for d in x.summary.degraded),
        run_dir=job_dir, sampling=loaded[0].summary.sampling,
        job=as_part(JobPart, job),
        breakdown=merge_parts((x.summary.breakdown for x in loaded), energy),
        idle=idle_accounts({f"{x.node}/{name}": v for x in loaded
                            for name, v in x.summary.idle.items()}),
        cost=_cost(loaded))


def _cost(loaded: list[Loaded]) -> Optional[Cost]:
    """The members' costs summed (one currency; prices may differ by node)."""
    given = [c for c in (x.summary.cost for x in loaded) if c]
    if not given:
        return None
    currencies = {c.currency for c in given}
    if len(currencies) > 1 or len(given) < len([x for x in loaded if x.summary.energy_j]):
        return Cost(amount=None, currency="mixed", price_per_kwh=None,
                    basis="members were given different currencies, or some no price")
    prices = {c.price_per_kwh for c in given}
    return Cost(amount=sum(c["amount"] for c in given), currency=currencies.pop(),
                price_per_kwh=prices.pop() if len(prices) == 1 else None,
                basis=given[0]["basis"] + ("" if len(prices) == 1 else ", prices per node"))


# -- devices and nodes ----------------------------------------------------------------------------
def _device_key(x: Loaded, d: DeviceEnergy) -> tuple[str, str]:
    uuid = (d.details or {}).get("uuid")
    return (x.node, f"uuid:{uuid}") if uuid else (x.node, d.name)


def _devices(loaded: list[Loaded], notes: list[str]
             ) -> tuple[list[DeviceEnergy], dict[str, Optional[float]], dict[int, float]]:
    """Job devices (one per physical device, attempts summed), node energies, and for each
    member the share of its energy dropped as counted elsewhere (a duplicate)."""
    per_key: dict[tuple[str, str], list[tuple[Loaded, DeviceEnergy]]] = {}
    node_energy: dict[str, Optional[float]] = {}
    dropped: dict[int, float] = {}
    spans: dict[tuple[str, str], list[tuple[float, float, Loaded]]] = {}
    for x in loaded:
        node_energy.setdefault(x.node, None)
        for d in x.summary.devices:
            key = _device_key(x, d)
            # when this member read the device (a late claim starts after the run did)
            a0 = x.start_wall + float(d.start_s or 0.0)
            b0 = x.start_wall + float(d.end_s) if d.end_s is not None else x.end_wall
            clash = next((o for a, b, o in spans.get(key, ()) if a < b0 and a0 < b), None)
            if clash is not None:   # claims failed (e.g. no shared lock dir): count once
                e = d.energy_j or 0.0
                total = x.summary.energy_j or 0.0
                if total > 0:
                    dropped[id(x)] = dropped.get(id(x), 0.0) + e / total
                notes.append(f"{x.node}/{d.name} was measured by both "
                             f"{clash.member.path.name} and {x.member.path.name} at the same "
                             "time; counted once")
                continue
            spans.setdefault(key, []).append((a0, b0, x))
            per_key.setdefault(key, []).append((x, d))
    out = []
    for (node, _), rows in per_key.items():
        measured = [d for _, d in rows if d.energy_j is not None]
        energy = sum(d.energy_j for d in measured if d.energy_j is not None) if measured \
            else None
        seconds = sum(x.end_wall - x.start_wall for x, d in rows if d.energy_j is not None)
        peaks = [d.peak_power_w for d in measured if d.peak_power_w is not None]
        first = rows[0][1]
        statuses = {d.status for _, d in rows}
        details = dict(first.details or {})
        details["measured_by"] = sorted({x.member.path.name for x, _ in rows})
        bounds = [d.uncertainty_j for d in measured]
        out.append(DeviceEnergy(
            name=str(first.name), component=str(first.component),
            method=str(first.method), description=str(first.description),
            energy_j=energy, mean_power_w=energy / seconds if energy is not None and seconds > 0
            else None, peak_power_w=max(peaks) if peaks else None,
            status="unavailable" if energy is None else (
                "degraded" if statuses - {"ok"} else "ok"),
            errors=tuple(e for _, d in rows for e in d.errors or ()),
            details=details, node=node,
            uncertainty_j=sum(b for b in bounds if b is not None)
            if measured and all(isinstance(b, (int, float)) for b in bounds) else None))
        if energy is not None and counted(details):   # a node meter's parts: once
            node_energy[node] = (node_energy[node] or 0.0) + energy
    order = {"gpu": 0, "cpu": 1, "ram": 2}
    out.sort(key=lambda d: (d.node or "", order.get(d.component, 3), d.component, d.name))
    return out, node_energy, dropped


def _sum_nodes(node_energy: dict[str, Optional[float]]) -> Optional[float]:
    values = [v for v in node_energy.values() if v is not None]
    return sum(values) if values else None


def _grids(loaded: list[Loaded]) -> list[dict[str, Any]]:
    """The grid factors in use, each with the nodes it applies to."""
    out: list[dict[str, Any]] = []
    for x in loaded:
        g = x.summary.grid.to_dict()
        ident = (g.get("region_code"), g.get("gco2_per_kwh"), g.get("source"))
        for entry in out:
            if entry["_id"] == ident:
                if x.node not in entry["nodes"]:
                    entry["nodes"].append(x.node)
                break
        else:
            out.append({"_id": ident, "grid": g, "nodes": [x.node]})
    return [{k: v for k, v in e.items() if k != "_id"} for e in out]


def _pue_source(loaded: list[Loaded]) -> str:
    sources = {(x.summary.pue, x.summary.pue_source) for x in loaded}
    if len(sources) != 1:
        return "per node (energy-weighted)"
    return next(iter(sources))[1]


def _job_status(loaded: list[Loaded]) -> str:
    last = max(x.attempt for x in loaded) if loaded else ("", 0)
    latest = [x for x in loaded if x.attempt == last]
    # attempts of one launch are ordered by restart count; launches by start time
    launches = sorted({x.attempt[0] for x in loaded},
                      key=lambda t: min(x.start_wall for x in loaded if x.attempt[0] == t))
    final_launch = launches[-1]
    final_restart = max(x.attempt[1] for x in loaded if x.attempt[0] == final_launch)
    latest = [x for x in loaded if x.attempt == (final_launch, final_restart)] or latest
    statuses = {x.status for x in latest}
    for s in _STATUS_ORDER:
        if s in statuses:
            return s
    return sorted(statuses)[0]


def _attempts(loaded: list[Loaded]) -> list[tuple[str, int]]:
    """Attempt keys (launch token, restart count) in the order they started."""
    first: dict[tuple[str, int], float] = {}
    for x in loaded:
        first[x.attempt] = min(first.get(x.attempt, x.start_wall), x.start_wall)
    return sorted(first, key=first.__getitem__)


def _job_section(manifest: dict[str, Any], loaded: list[Loaded], devices: list[DeviceEnergy],
                 node_energy: dict[str, Optional[float]], grids: list[dict[str, Any]],
                 t0: float, t_end: float) -> dict[str, Any]:
    attempts = []
    for i, key in enumerate(_attempts(loaded)):
        xs = [x for x in loaded if x.attempt == key]
        statuses = {x.status for x in xs}
        attempts.append({
            "attempt": i, "launch": key[0], "restart": key[1],
            "ranks": sorted({r for x in xs for r in x.ranks}),
            "started_utc": utc_iso(min(x.start_wall for x in xs)),
            "ended_utc": utc_iso(max(x.end_wall for x in xs)),
            "status": next((s for s in _STATUS_ORDER if s in statuses), "finished"),
            "energy_j": sum(x.summary.energy_j or 0.0 for x in xs)})
    world = max([count_of(x.member.identity.get("world_size")) for x in loaded]
                + [count_of(manifest.get("world_size"))])
    nnodes = max([count_of(x.member.identity.get("nnodes")) for x in loaded] + [0]) or None
    nodes = []
    grid_of = {n: e["grid"] for e in grids for n in e["nodes"]}
    for node in sorted(node_energy):
        xs = [x for x in loaded if x.node == node]
        nodes.append({
            "node": node, "ranks": sorted({r for x in xs for r in x.ranks}),
            "devices": [{"name": d.name, "component": d.component, "method": d.method,
                         "energy_j": d.energy_j, "measured_by": d.details.get("measured_by")}
                        for d in devices if d.node == node],
            "energy_j": node_energy[node],
            "emissions_kg": sum(x.summary.emissions_kg or 0.0 for x in xs),
            "grid_region": (grid_of.get(node) or {}).get("region_code"),
            "gco2_per_kwh": (grid_of.get(node) or {}).get("gco2_per_kwh"),
            "members": [{"run": x.member.path.name, "ranks": x.ranks, "status": x.status,
                         "rebuilt": x.rebuilt} for x in xs]})
    gpu_spread = _gpu_spread(devices)
    return {"job_id": manifest.get("job_id"), "job_uid": manifest.get("job_uid"),
            "source": manifest.get("source"), "launcher": manifest.get("launcher"),
            "world_size": world, "nnodes": nnodes, "attempts": attempts, "nodes": nodes,
            "gpu_energy_spread": gpu_spread,
            "missing": _missing(loaded, world, nnodes, t0, len(node_energy)),
            "started_wall": t0, "ended_wall": t_end}


def _gpu_spread(devices: list[DeviceEnergy]) -> dict[str, Any]:
    """Per node, min/median/max GPU energy: a GPU far below its peers is a straggler."""
    out = {}
    for node in sorted({d.node for d in devices if d.node is not None}):
        es = sorted(d.energy_j for d in devices
                    if d.node == node and d.component == "gpu" and d.energy_j is not None)
        if es:
            out[node] = {"gpus": len(es), "min_j": es[0], "median_j": es[len(es) // 2],
                         "max_j": es[-1]}
    return out


def _missing(loaded: list[Loaded], world: int, nnodes: Optional[int], t0: float,
             n_nodes: int) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for key in _attempts(loaded):
        xs = [x for x in loaded if x.attempt == key]
        present = {r for x in xs for r in x.ranks}
        absent = [r for r in range(world) if r not in present]
        if absent:
            out.append({"what": _ranks_text(absent), "ranks": absent, "attempt_restart": key[1],
                        "reason": "left no files in this job directory (never started tracking, "
                                  "died before it, or wrote to another node's disk)"})
        for x in xs:
            if x.status == "killed":
                end = x.end_wall
                out.append({"what": f"{_ranks_text(x.ranks)} on {x.node} "
                                    f"({x.member.path.name})",
                            "ranks": x.ranks, "node": x.node, "attempt_restart": key[1],
                            "reason": f"killed without a final reading: its devices' energy "
                                      f"after t={end - t0:.2f} s ({utc_iso(end)}) is missing",
                            "missing_from_s": end - t0, "missing_from_utc": utc_iso(end),
                            "devices": [d.name for d in x.summary.devices]})
    if nnodes and n_nodes < nnodes:
        out.append({"what": f"{nnodes - n_nodes} of {nnodes} nodes",
                    "reason": "no node folder in this job directory: on node-local disks, copy "
                              "the parts together and run `energy-tracker merge`"})
    return out


def _ranks_text(ranks: list[int]) -> str:
    if not ranks:
        return "a process"
    if len(ranks) == 1:
        return f"rank {ranks[0]}"
    if ranks == list(range(ranks[0], ranks[-1] + 1)):
        return f"ranks {ranks[0]}-{ranks[-1]}"
    return "ranks " + ",".join(map(str, ranks))


def _dedupe_notes(notes: list[str]) -> list[str]:
    """Members often say the same thing ("ram modeled ..."): say it once, with who said it."""
    by_text: dict[str, list[str]] = {}
    order = []
    for n in notes:
        if n.startswith("[") and "] " in n:
            who, text = n[1:].split("] ", 1)
        else:
            who, text = "", n
        if text not in by_text:
            by_text[text] = []
            order.append(text)
        if who:
            by_text[text].append(who)
    out = []
    for text in order:
        said_by = by_text[text]
        if not said_by:
            out.append(text)
        elif len(said_by) <= 2:
            out.append(f"[{', '.join(said_by)}] {text}")
        else:
            out.append(f"[{len(said_by)} processes] {text}")
    return out


__all__ = ["Loaded", "job_parts", "load", "merge", "merge_loaded", "read_members"]

