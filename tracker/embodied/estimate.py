"""Amortising manufacturing footprints over a run: footprint x duration / (lifetime x
utilisation), per device, summed. Unknown hardware is listed as "no published figure"."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, Optional

from .figures import EmbodiedFigure, find_figure

SECONDS_PER_YEAR = 365.25 * 86400.0
# The assumptions of the BLOOM life-cycle study (Luccioni et al., JMLR 2023), the one published
# LLM study that amortises per-GPU and per-server figures: a 6-year replacement cycle at 85 %
# utilisation. Overridable with hardware_lifetime_years= and hardware_utilisation=.
DEFAULT_LIFETIME_YEARS = 6.0
DEFAULT_UTILISATION = 0.85
LIFETIME_SOURCE = ("Luccioni, Viguier, Ligozat, JMLR 24(253), 2023 (BLOOM): 6-year lifetime, "
                   "85 % utilisation")
NO_FIGURE = "no published figure"


@dataclass(frozen=True)
class EmbodiedPart:
    """One kind of hardware in the run and its share of embodied emissions."""

    component: str
    model: str
    count: float                     # devices, servers (may be a fraction), sockets or GB
    kg: Optional[float]              # None: no published figure
    low_kg: Optional[float]
    high_kg: Optional[float]
    status: str                      # "estimate" | "no published figure"
    figure: Optional[EmbodiedFigure]
    basis: str                       # the arithmetic, in words

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["figure"] = self.figure.to_dict() if self.figure else None
        return d


@dataclass(frozen=True)
class EmbodiedEstimate:
    parts: tuple[EmbodiedPart, ...]
    duration_s: float
    lifetime_years: float
    utilisation: float
    lifetime_source: str
    method: str = "estimate"

    @property
    def kg(self) -> Optional[float]:
        known = [p.kg for p in self.parts if p.kg is not None]
        return sum(known) if known else None

    @property
    def low_kg(self) -> Optional[float]:
        known = [p.low_kg for p in self.parts if p.low_kg is not None]
        return sum(known) if known else None

    @property
    def high_kg(self) -> Optional[float]:
        known = [p.high_kg for p in self.parts if p.high_kg is not None]
        return sum(known) if known else None

    @property
    def unknown(self) -> tuple[str, ...]:
        return tuple(p.model for p in self.parts if p.kg is None)

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "kg": self.kg, "low_kg": self.low_kg,
                "high_kg": self.high_kg, "duration_s": self.duration_s,
                "lifetime_years": self.lifetime_years, "utilisation": self.utilisation,
                "lifetime_source": self.lifetime_source, "unknown": list(self.unknown),
                "parts": [p.to_dict() for p in self.parts]}


def estimate_embodied(gpus: Mapping[str, int], *, duration_s: float, nodes: int = 1,
                      ram_gb: Optional[float] = None, cpu_sockets: Optional[int] = None,
                      lifetime_years: float = DEFAULT_LIFETIME_YEARS,
                      utilisation: float = DEFAULT_UTILISATION,
                      lifetime_source: Optional[str] = None,
                      user_figures: Optional[Mapping[str, float]] = None) -> EmbodiedEstimate:
    """Embodied kg CO2e of `gpus` (model -> count) and their servers' share over `duration_s`.

    A GPU run: each GPU's figure plus its share of a server without GPUs (the server figure
    holds CPUs and RAM, so they are not counted again). A run without GPUs: `cpu_sockets`
    (default one per node) and `ram_gb` (the nodes' RAM, when known). `user_figures`
    (embodied={model: kg}) replace the published figure of the GPU models they name."""
    if not duration_s >= 0:
        raise ValueError(f"duration_s must be >= 0, got {duration_s!r}")
    used_s = lifetime_years * SECONDS_PER_YEAR * utilisation
    source = lifetime_source or (LIFETIME_SOURCE if (lifetime_years, utilisation) == (
        DEFAULT_LIFETIME_YEARS, DEFAULT_UTILISATION) else "user")

    def amortise(fig: EmbodiedFigure, count: float, model: str) -> EmbodiedPart:
        if fig.amortised:   # kg per device-second, the publisher's lifetime already in it
            kg, low, high = (v * duration_s * count for v in
                             (fig.value_kg, fig.low_kg, fig.high_kg))
            basis = (f"{count:g} x {fig.value_kg * 3600 * 1000:.3g} g per hour of use "
                     f"({fig.derivation}) x {duration_s / 3600:.4g} h")
        else:
            share = duration_s / used_s
            kg, low, high = (v * count * share for v in (fig.value_kg, fig.low_kg, fig.high_kg))
            basis = (f"{count:g} x {fig.value_kg:g} kg / ({lifetime_years:g} y x "
                     f"{utilisation:g} utilisation) x {duration_s / 3600:.4g} h")
        return EmbodiedPart(fig.component, model, count, kg, low, high, "estimate", fig, basis)

    parts: list[EmbodiedPart] = []
    total_gpus = sum(gpus.values())
    for model, count in sorted(gpus.items()):
        fig = _user_figure(user_figures or {}, model) or find_figure("gpu", model)
        if fig is None:
            parts.append(EmbodiedPart("gpu", model, count, None, None, None, NO_FIGURE, None,
                                      f"{NO_FIGURE} for {model}"))
        else:
            parts.append(amortise(fig, count, model))
    if total_gpus:
        server = find_figure("server")
        if server is not None:
            per = server.units_per_server or 8.0
            # the GPUs' share of their servers: a run on 1 GPU of an 8-GPU node holds 1/8
            servers = total_gpus / per
            parts.append(amortise(server, servers, f"GPU server host ({per:g} GPUs per "
                                                   "server, without GPUs)"))
    else:
        cpu = find_figure("cpu")
        if cpu is not None:
            parts.append(amortise(cpu, float(cpu_sockets or max(nodes, 1)), "CPU socket"))
        ram = find_figure("ram")
        if ram is not None and ram_gb:
            parts.append(amortise(ram, float(ram_gb), "RAM (GB)"))
    return EmbodiedEstimate(tuple(parts), float(duration_s), float(lifetime_years),
                            float(utilisation), source)


def _user_figure(figures: Mapping[str, float], model: str) -> Optional[EmbodiedFigure]:
    for name, kg in figures.items():
        if name.lower() in model.lower():
            return EmbodiedFigure(
                key="user", component="gpu", match=name, exclude=(), per="device",
                value_kg=float(kg), low_kg=float(kg), high_kg=float(kg), amortised=False,
                units_per_server=None, source="user (embodied=)", locator="", year=0,
                licence="", scope=f"user figure for {name}", derivation="given by the user")
    return None
