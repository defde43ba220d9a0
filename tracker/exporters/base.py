"""What every exporter is (`Exporter`), the built-in ones' shared plumbing (`BaseExporter`),
and the summary as the energy/... metrics and params they log. The package's registry and
hub import this; the exporters import only this (never the package that dispatches to them)."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path
from typing import Any, Optional, Protocol, runtime_checkable

from ..errors import ConfigError


@runtime_checkable
class Exporter(Protocol):
    """What `log_to=` accepts besides the built-in names."""

    name: str

    def on_progress(self, metrics: dict[str, float], step: int) -> None: ...

    def on_stop(self, summary: Any, files: list[Path]) -> None: ...


class BaseExporter:
    """Shared plumbing of the built-in exporters.

    `name`: the tool ("mlflow"); `module`/`extra`: the library it needs and the pip extra that
    installs it. `progress`: False when the training framework already sends the same numbers
    to this tool (then only the summary is logged). `run_name`: the tracker's name, for a run
    the exporter has to create itself.
    """

    name = "exporter"
    module = ""
    extra = ""

    def __init__(self) -> None:
        self.progress = True
        self.run_name = "run"
        self.run_dir: Optional[Path] = None

    @classmethod
    def check_available(cls) -> None:
        """ConfigError naming the extra when the library is missing (nothing is imported)."""
        if cls.module and importlib.util.find_spec(cls.module) is None:
            raise ConfigError(
                f"log_to={cls.name!r} needs the {cls.module} library, which is not installed: "
                f"pip install 'trainjoule[{cls.extra}]' (or leave {cls.name!r} out of log_to)")

    def start(self, run: Any) -> None:
        """The tracker started (rank 0 only). Nothing is imported or opened before first use."""
        self.run_name = run.name
        self.run_dir = Path(run.run_dir) if run.run_dir else None

    def bind(self, **target: Any) -> None:
        """Point the exporter at a run a framework logger already opened (see integrations)."""

    def on_progress(self, metrics: dict[str, float], step: int) -> None:
        raise NotImplementedError

    def on_stop(self, summary: Any, files: list[Path]) -> None:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"


def summary_metrics(summary: Any) -> dict[str, float]:
    """The summary as energy/... numbers (kWh, kg, W, s, J per unit)."""
    out: dict[str, Optional[float]] = {
        "energy/kwh": summary.energy_kwh,
        "energy/facility_kwh": summary.facility_energy_kwh,
        "energy/emissions_kg": summary.emissions_kg,
        "energy/duration_s": summary.duration_s,
        "energy/gco2_per_kwh": summary.gco2_per_kwh,
    }
    for c, comp in summary.components.items():
        out[f"energy/{c}_kwh"] = comp.energy_kwh
        out[f"energy/{c}_power_w"] = comp.mean_power_w
    steps = summary.steps or {}
    out["energy/j_per_sample"] = steps.get("j_per_sample")
    out["energy/j_per_token"] = steps.get("j_per_token")
    if summary.cost is not None:
        out["energy/cost"] = summary.cost.get("amount")
    est = publish_estimates(summary)
    out["energy/embodied_estimate_g"] = est.get("embodied_emissions_g")
    out["energy/water_estimate_l"] = est.get("water_litres")
    return {k: float(v) for k, v in out.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)}


def publish_estimates(summary: Any) -> dict[str, Any]:
    """The embodied-emissions and water estimates exactly as the model card states them
    (tracker/publish: card_metadata's embodied_emissions_g, embodied_method, water_litres,
    water_method), with the options the run was started with (its run.json); {} when there
    are none or they cannot be made (never an error at the end of a run)."""
    try:
        from ..publish.card import KEY, card_metadata
        from ..publish.facts import facts_from_summary
        co2 = card_metadata(facts_from_summary(summary.to_dict(), _manifest(summary)))[KEY]
    except Exception:
        return {}
    return {k: co2[k] for k in ("embodied_emissions_g", "embodied_method", "water_litres",
                                "water_method") if k in co2}


def _manifest(summary: Any) -> dict[str, Any]:
    """run.json of the summary's run (a job: of its first member), or {}."""
    from ..rundir.names import MANIFEST
    from ..rundir.runlog import read_json

    where = getattr(summary, "run_dir", None)
    if not where:
        return {}
    path = Path(where)
    found = read_json(path / MANIFEST)
    if found is None and path.is_dir():
        for member in sorted(p for p in path.iterdir() if p.is_dir()):
            found = read_json(member / MANIFEST)
            if found:
                break
    return found or {}


def summary_params(summary: Any, scope: str = "run") -> dict[str, str]:
    """Strings that describe the run: grid factor and its source, methods, status, scope."""
    from .. import __version__

    g = summary.grid
    out = {
        "energy/run_id": summary.run_id, "energy/status": summary.status,
        "energy/scope": scope,
        "energy/region": g.region_code, "energy/grid_year": g.year,
        "energy/grid_source": g.source, "energy/grid_licence": g.licence,
        "energy/pue": summary.pue, "energy/run_dir": summary.run_dir,
        "energy/tracker_version": __version__,
    }
    for c, comp in summary.components.items():
        out[f"energy/{c}_method"] = comp.method
    if summary.job:
        out["energy/job_id"] = summary.job.job_id
        out["energy/world_size"] = summary.job.world_size
    est = publish_estimates(summary)   # method 'estimate', as on the card; not in emissions
    out["energy/embodied_method"] = est.get("embodied_method")
    out["energy/water_method"] = est.get("water_method")
    # MLflow caps a param value (6000 chars); every tool shows short strings better.
    return {k: str(v)[:500] for k, v in out.items() if v is not None and v != ""}
