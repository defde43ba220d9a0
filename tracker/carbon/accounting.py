"""Emissions from an energy curve and intensity periods; what-if comparisons across regions."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Callable, NamedTuple, Optional

from ..errors import ConfigError
from ..units import J_PER_KWH
from .gridfactor import GridFactor
from .regions import Region, all_regions, lookup

if TYPE_CHECKING:   # annotations only: live.py imports the HTTP stack
    from .live import IntensityPeriod

__all__ = ["Emissions", "account_emissions", "compare_regions", "extremes"]


@dataclass(frozen=True)
class Emissions:
    """CO2e of one time window.

    emissions_g: grams CO2e. energy_j: facility energy in joules.
    gco2_per_kwh_effective: emissions_g per kWh (energy-weighted intensity).
    gco2_per_kwh_time_weighted: intensity averaged over wall time.
    parts: one dict per intensity span (start_wall, end_wall, energy_j, gco2_per_kwh,
    emissions_g, provider, zone, fallback).
    """

    emissions_g: float
    energy_j: float
    gco2_per_kwh_effective: float
    gco2_per_kwh_time_weighted: float
    parts: list[dict[str, Any]] = field(default_factory=list)
    fallback_used: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def emissions_kg(self) -> float:
        return self.emissions_g / 1000.0

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["emissions_kg"] = self.emissions_kg
        return d


class _Part(NamedTuple):
    """One span of `Emissions.parts`, typed (its dict form has these keys, in this order)."""

    start_wall: float
    end_wall: float
    energy_j: float
    gco2_per_kwh: float
    emissions_g: float
    provider: str
    zone: str
    fallback: bool


def _spans(
    start_wall: float, end_wall: float, periods: Sequence[IntensityPeriod]
) -> list[tuple[float, float, Optional[IntensityPeriod]]]:
    """Cover [start, end] with the periods; None marks a gap no period covers.

    An open period (end_wall None) lasts until the next period starts: the run log records
    each period when it starts, so a rebuilt run holds only open ones, and each must end where
    the next value took over (not run to the window's end)."""
    spans: list[tuple[float, float, Optional[IntensityPeriod]]] = []
    cursor = start_wall
    ordered = sorted(periods, key=lambda p: p.start_wall)
    for i, p in enumerate(ordered):
        if p.end_wall is not None:
            p_end = min(p.end_wall, end_wall)
        elif i + 1 < len(ordered):
            p_end = min(ordered[i + 1].start_wall, end_wall)
        else:
            p_end = end_wall
        p_start = max(p.start_wall, cursor)
        if p_end <= p_start:
            continue
        if p_start > cursor:
            spans.append((cursor, p_start, None))
        spans.append((p_start, p_end, p))
        cursor = p_end
        if cursor >= end_wall:
            break
    if cursor < end_wall:
        spans.append((cursor, end_wall, None))
    return spans


def account_emissions(
    energy_j_at: Callable[[float], float],
    start_wall: float,
    end_wall: float,
    factor: GridFactor,
    periods: Optional[Sequence[IntensityPeriod]] = None,
) -> Emissions:
    """Each period's energy (from the cumulative curve `energy_j_at(wall)`) times its intensity.

    Without periods, `factor` applies to the whole window; time no period covers uses `factor`
    too and is marked as fallback. Times are the run's start wall time plus run seconds, as
    LiveIntensity writes its periods' start_wall/end_wall (monotonic run time, so a wall-clock
    step during the run changes nothing); logs older than that hold wall-clock times, which
    are used as they are.
    """
    if not end_wall >= start_wall:
        raise ConfigError(f"end_wall ({end_wall}) is before start_wall ({start_wall}).")
    notes: list[str] = []
    if not periods:
        spans: list[tuple[float, float, Optional[IntensityPeriod]]] = [
            (start_wall, end_wall, None)
        ]
    else:
        spans = _spans(start_wall, end_wall, periods)
    rows: list[_Part] = []
    gap_s = 0.0
    for a, b, period in spans:
        energy = energy_j_at(b) - energy_j_at(a)
        if period is None:
            g_per_kwh, provider, zone = factor.gco2_per_kwh, "annual", factor.region_code
            fallback = bool(periods)
            gap_s += (b - a) if periods else 0.0
        else:
            g_per_kwh, provider, zone = period.gco2_per_kwh, period.provider, period.zone
            fallback = period.fallback
            if period.fallback and period.note and period.note not in notes:
                notes.append(period.note)
        rows.append(_Part(a, b, energy, g_per_kwh, energy / J_PER_KWH * g_per_kwh, provider,
                          zone, fallback))
    if gap_s > 0:
        notes.append(f"{gap_s:.0f} s not covered by live intensity: annual {factor.label} used")
    energy_j = sum(r.energy_j for r in rows)
    emissions_g = sum(r.emissions_g for r in rows)
    duration = end_wall - start_wall
    if duration > 0:
        time_weighted = sum((r.end_wall - r.start_wall) * r.gco2_per_kwh for r in rows) / duration
    else:
        time_weighted = rows[0].gco2_per_kwh if rows else factor.gco2_per_kwh
    effective = emissions_g / (energy_j / J_PER_KWH) if energy_j > 0 else time_weighted
    return Emissions(
        emissions_g=emissions_g,
        energy_j=energy_j,
        gco2_per_kwh_effective=effective,
        gco2_per_kwh_time_weighted=time_weighted,
        parts=[r._asdict() for r in rows],
        fallback_used=any(r.fallback for r in rows),
        notes=notes,
    )


def compare_regions(energy_kwh: float, codes: Sequence[str]) -> list[dict[str, Any]]:
    """What the same energy would emit under other regions' annual factors, lowest first."""
    if isinstance(codes, str):
        codes = [codes]
    rows = []
    for code in codes:
        region = lookup(code)
        grams = energy_kwh * region.gco2_per_kwh
        rows.append({
            "code": region.code,
            "name": region.name,
            "gco2_per_kwh": region.gco2_per_kwh,
            "emissions_g": grams,
            "emissions_kg": grams / 1000.0,
            "year": region.year,
            "source": region.source,
            "definition": region.definition,
        })
    return sorted(rows, key=lambda r: r["gco2_per_kwh"])


def extremes(kind: str = "country") -> tuple[Region, Region]:
    """(lowest, highest) intensity region among bundled regions of one kind."""
    regions = [r for r in all_regions() if r.kind == kind]
    if not regions:
        kinds = sorted({r.kind for r in all_regions()})
        raise ConfigError(f"No regions of kind {kind!r}. Kinds: {', '.join(kinds)}.")
    return (
        min(regions, key=lambda r: r.gco2_per_kwh),
        max(regions, key=lambda r: r.gco2_per_kwh),
    )
