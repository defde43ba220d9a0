"""A run or job summary (+ manifest) turned into the facts a reader of a carbon statement
would want to check: what hardware, how long, how much energy by which method and with what
bound, PUE and grid factor with their sources, operational emissions with their range, and,
separately and labelled `estimate`, embodied emissions and water."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional

from ..embodied import DEFAULT_LIFETIME_YEARS, DEFAULT_UTILISATION, EmbodiedEstimate
from ..errors import ConfigError
from ..units import J_PER_KWH

TOOL = "trainjoule"   # the distribution, named with its version in cards and statements
TRAINING_TYPES = ("pre-training", "fine-tuning", "training", "inference", "evaluation")
# Off-site water (of electricity generation) needs a per-region water-intensity dataset with a
# licence that allows bundling; none was found (see docs/reporting.md), so only on-site water
# (facility energy x a user-given WUE) is reported.
OFFSITE_WATER_NOTE = ("off-site water (electricity generation) not estimated: no per-region "
                      "water-intensity dataset with a usable licence is bundled")


@dataclass(frozen=True)
class Water:
    """On-site (data-centre cooling) water: facility energy x WUE. Method `estimate`."""

    litres: float
    wue_l_per_kwh: float
    wue_source: str
    method: str = "estimate"
    scope: str = "on-site (data-centre cooling), from the facility energy"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class PublishFacts:
    kind: str                                  # "run" | "job"
    name: str
    run_id: str
    status: str
    started_utc: str
    ended_utc: Optional[str]
    duration_s: float
    hardware: str                              # "16 × NVIDIA H100 80GB HBM3 on 2 nodes"
    gpu_models: dict[str, int]
    nodes: int
    cpu_model: Optional[str]
    energy_kwh: Optional[float]                # IT energy, measured
    facility_energy_kwh: Optional[float]       # x PUE
    energy_uncertainty_kwh: Optional[float]    # ± bound on the IT energy
    energy_methods: dict[str, str]             # component -> counter | sampled | modeled ...
    pue: float
    pue_source: str
    gco2_per_kwh: Optional[float]
    grid: dict[str, Any]                       # region, source, year, licence, definition
    emissions_g: Optional[float]               # operational, from the facility energy
    emissions_low_g: Optional[float]
    emissions_high_g: Optional[float]
    training_type: str
    tool: str
    tool_version: str
    not_measured: tuple[str, ...]
    embodied: Optional[EmbodiedEstimate] = None
    water: Optional[Water] = None
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def duration_h(self) -> float:
        return self.duration_s / 3600.0

    @property
    def location(self) -> str:
        code = self.grid.get("region_code")
        name = self.grid.get("region_name")
        if name and code and name != code:
            return f"{name} ({code})"
        return str(name or code or "unknown (world-average grid factor)")

    @property
    def method_text(self) -> str:
        return ", ".join(f"{c}: {m}" for c, m in self.energy_methods.items()) or "none"

    @property
    def source_text(self) -> str:
        return f"{self.tool} {self.tool_version} (measured: {self.method_text})"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["embodied"] = self.embodied.to_dict() if self.embodied else None
        d["water"] = self.water.to_dict() if self.water else None
        d["not_measured"] = list(self.not_measured)
        d["notes"] = list(self.notes)
        d["duration_h"] = self.duration_h
        d["location"] = self.location
        return d


def facts_from_summary(summary: dict[str, Any], manifest: Optional[dict[str, Any]] = None, *,
                       training_type: str = "training", embodied: bool = True,
                       wue_l_per_kwh: Optional[float] = None,
                       lifetime_years: Optional[float] = None,
                       utilisation: Optional[float] = None) -> PublishFacts:
    """The publishable facts of one summary.json (a run's or a job's). Options not given are
    taken from the manifest's configuration (what the run was started with), then defaults."""
    manifest = manifest or {}
    config: dict[str, Any] = manifest["config"] if isinstance(manifest.get("config"),
                                                              dict) else {}
    if training_type not in TRAINING_TYPES:
        raise ConfigError(f"training type {training_type!r} is not one of "
                          f"{', '.join(TRAINING_TYPES)}")
    job = summary.get("job") if isinstance(summary.get("job"), dict) else None
    devices = [d for d in summary.get("devices") or () if isinstance(d, dict)]
    gpus = Counter(_model(d) for d in devices if d.get("component") == "gpu")
    nodes = len(job.get("nodes") or ()) if job else 1
    host: dict[str, Any] = manifest["host"] if isinstance(manifest.get("host"), dict) else {}
    cpu_model = host.get("cpu_model") if isinstance(host.get("cpu_model"), str) else None
    pue = float(summary.get("pue") or 1.0)
    it_kwh = _kwh(summary.get("energy_j"))
    fac_kwh = _kwh(summary.get("facility_energy_j"))
    unc_kwh = _kwh(summary.get("energy_uncertainty_j"))
    g = summary.get("emissions_kg")
    emissions_g = None if g is None else float(g) * 1000.0
    factor = summary.get("gco2_per_kwh")
    low = high = emissions_g
    if emissions_g is not None and unc_kwh is not None and fac_kwh:
        # the energy bound carried through PUE and the factor applied (same ratio: E is linear)
        rel = unc_kwh * pue / fac_kwh
        low, high = max(emissions_g * (1 - rel), 0.0), emissions_g * (1 + rel)
    methods = {str(k): str(v.get("method")) for k, v in (summary.get("components") or {}).items()
               if isinstance(v, dict) and v.get("energy_j") is not None}
    notes: list[str] = []
    if embodied is not False and config.get("embodied") is not False:
        from ..embodied import estimate_embodied
        years = lifetime_years or config.get("hardware_lifetime_years") or DEFAULT_LIFETIME_YEARS
        util = utilisation or config.get("hardware_utilisation") or DEFAULT_UTILISATION
        ram_gb = host.get("ram_total_gb") if isinstance(host.get("ram_total_gb"), (int, float)) \
            else None
        emb: Optional[EmbodiedEstimate] = estimate_embodied(
            dict(gpus), duration_s=float(summary.get("duration_s") or 0.0), nodes=nodes,
            ram_gb=ram_gb * nodes if ram_gb else None, lifetime_years=float(years),
            utilisation=float(util),
            user_figures=config.get("embodied") if isinstance(config.get("embodied"), dict)
            else None)
    else:
        emb = None
    wue = wue_l_per_kwh if wue_l_per_kwh is not None else config.get("wue")
    water = None
    if wue is not None and fac_kwh is not None:
        water = Water(litres=fac_kwh * float(wue), wue_l_per_kwh=float(wue),
                      wue_source="user (wue=)")
    if fac_kwh is not None:
        notes.append(OFFSITE_WATER_NOTE)
    return PublishFacts(
        kind="job" if job else "run", name=str(summary.get("name") or ""),
        run_id=str((job or {}).get("job_id") or summary.get("run_id") or ""),
        status=str(summary.get("status") or ""),
        started_utc=str(summary.get("started_utc") or ""), ended_utc=summary.get("ended_utc"),
        duration_s=float(summary.get("duration_s") or 0.0),
        hardware=_hardware(gpus, nodes, cpu_model), gpu_models=dict(gpus), nodes=nodes,
        cpu_model=cpu_model, energy_kwh=it_kwh, facility_energy_kwh=fac_kwh,
        energy_uncertainty_kwh=unc_kwh, energy_methods=methods, pue=pue,
        pue_source=str(summary.get("pue_source") or ""),
        gco2_per_kwh=None if factor is None else float(factor),
        grid={k: (summary.get("grid") or {}).get(k) for k in (
            "region_code", "region_name", "gco2_per_kwh", "source", "year", "licence",
            "definition", "kind", "is_default")},
        emissions_g=emissions_g, emissions_low_g=low, emissions_high_g=high,
        training_type=training_type, tool=TOOL,
        tool_version=_tool_version(manifest.get("versions") or {}),
        not_measured=_not_measured(summary, emb, water), embodied=emb, water=water,
        notes=tuple(notes))


def facts_from_dir(path: Path, **options: Any) -> PublishFacts:
    """The facts of a finished run directory or job directory (its saved summary.json)."""
    from ..job.layout import is_job_dir
    from ..rundir.names import MANIFEST, SUMMARY
    from ..rundir.runlog import read_json
    from ..summary import read_summary

    path = Path(path)
    if not path.is_dir():
        raise ConfigError(f"{path} is not a directory (give a run directory or a job directory)")
    summary = read_summary(path / SUMMARY, complete=True)
    if summary is None:
        raise ConfigError(f"{path} has no readable summary.json; `energy-tracker report {path}` "
                          "rebuilds it first")
    manifest: Optional[dict[str, Any]] = None
    if is_job_dir(path):   # a member's manifest: host, versions, the options it ran with
        for member in sorted(p for p in path.iterdir() if p.is_dir()):
            manifest = read_json(member / MANIFEST)
            if manifest:
                break
    else:
        manifest = read_json(path / MANIFEST)
    return facts_from_summary(summary, manifest or {}, **options)


def _kwh(j: Any) -> Optional[float]:
    return None if j is None else float(j) / J_PER_KWH


def _model(device: dict[str, Any]) -> str:
    details: dict[str, Any] = device["details"] if isinstance(device.get("details"),
                                                              dict) else {}
    model = details.get("model")
    if isinstance(model, str) and model:
        return model
    # the description without its "(how it was measured)" part
    return re.sub(r"\s*\(.*\)\s*$", "", str(device.get("description") or device.get("name")))


def _hardware(gpus: Counter[str], nodes: int, cpu_model: Optional[str]) -> str:
    where = f" on {nodes} nodes" if nodes > 1 else ""
    if gpus:
        return " + ".join(f"{n} × {m}" for m, n in sorted(gpus.items())) + where
    return f"CPU only ({cpu_model or 'model unknown'}){where}"


def _not_measured(summary: dict[str, Any], emb: Optional[EmbodiedEstimate],
                  water: Optional[Water]) -> tuple[str, ...]:
    out = []
    comps = summary.get("components") or {}
    for c in ("gpu", "cpu", "ram"):
        entry = comps.get(c)
        if not isinstance(entry, dict) or entry.get("energy_j") is None:
            if c == "gpu" and not any(d.get("component") == "gpu"
                                      for d in summary.get("devices") or ()):
                continue
            out.append(f"{c} energy")
    if str(summary.get("pue_source", "")).startswith("default"):
        out.append("facility overhead (PUE not given: IT energy only)")
    out.append("network, storage and other devices outside the measured components")
    if emb is None:
        out.append("embodied emissions (turned off)")
    elif emb.unknown:
        out.append("embodied emissions of " + ", ".join(emb.unknown) + " (no published figure)")
    if water is None:
        out.append("water (no WUE given)")
    return tuple(out)


def _version() -> str:
    from .. import __version__
    return __version__


def _tool_version(versions: dict[str, Any]) -> str:
    """The version that measured the run (its manifest; runs made before the distribution was
    renamed trainjoule recorded it as "energy_tracker"), else this installation's."""
    return str(versions.get("trainjoule") or versions.get("energy_tracker") or _version())
