"""A factor from an energy mix: IPCC AR5 lifecycle medians per source, plus "grid" for the rest."""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Optional

from ..errors import ConfigError
from .gridfactor import GridFactor, world_factor
from .regions import DATA_DIR

__all__ = ["GRID_KEY", "Technology", "known_sources", "mix_factor", "technologies"]

GRID_KEY = "grid"
SHARE_TOLERANCE = 1e-6


@dataclass(frozen=True)
class Technology:
    key: str
    name: str
    gco2_per_kwh: float
    aliases: tuple[str, ...]
    source: str


@lru_cache(maxsize=1)
def technologies() -> dict[str, Technology]:
    """Known generation sources by key and alias ("solar", "solar_pv_utility", ...)."""
    table: dict[str, Technology] = {}
    with (DATA_DIR / "ipcc_ar5_lifecycle.csv").open(newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            tech = Technology(
                key=row["key"],
                name=row["technology"],
                gco2_per_kwh=float(row["gco2e_per_kwh"]),
                aliases=tuple(a for a in row["aliases"].split(";") if a),
                source=row["source"],
            )
            for name in (tech.key, *tech.aliases):
                table[name] = tech
    return table


def known_sources() -> list[str]:
    return sorted({t.key for t in technologies().values()} | {GRID_KEY})


def mix_factor(mix: Mapping[str, float], grid: Optional[GridFactor] = None) -> GridFactor:
    """Share-weighted lifecycle factor; "grid" stands for `grid` (world average if None)."""
    if not isinstance(mix, Mapping) or not mix:
        raise ConfigError('mix must be a non-empty mapping such as {"wind": 0.7, "grid": 0.3}.')
    techs = technologies()
    shares: dict[str, float] = {}
    for raw_key, share in mix.items():
        key = str(raw_key).strip().lower().replace(" ", "_").replace("-", "_")
        if key != GRID_KEY and key not in techs:
            raise ConfigError(
                f"Unknown energy source {raw_key!r} in mix. Known: {', '.join(known_sources())}."
            )
        if isinstance(share, bool) or not isinstance(share, (int, float)):
            raise ConfigError(f"mix share for {raw_key!r} must be a number, got {share!r}.")
        if not math.isfinite(share) or share < 0:
            raise ConfigError(f"mix share for {raw_key!r} must be >= 0, got {share!r}.")
        name = GRID_KEY if key == GRID_KEY else techs[key].key
        shares[name] = shares.get(name, 0.0) + float(share)
    total = sum(shares.values())
    if abs(total - 1.0) > SHARE_TOLERANCE:
        raise ConfigError(f"mix shares must sum to 1, they sum to {total:.6g}: {dict(mix)}.")

    notes = []
    # the grid a "grid" share stands for (None: the mix has no "grid" share)
    grid_used: Optional[GridFactor] = None
    if GRID_KEY in shares:
        if grid is None:
            grid = world_factor()
            notes.append(f'"grid" share without a region: world average ({grid.label}) used')
        grid_used = grid
    value = 0.0
    parts = []
    for name, share in shares.items():
        if name == GRID_KEY and grid_used is not None:
            per_kwh = grid_used.gco2_per_kwh
        else:
            per_kwh = techs[name].gco2_per_kwh
        value += share * per_kwh
        parts.append(f"{name} {share * 100:g} %")

    ipcc = next(iter(techs.values())).source
    region_name = f"mix: {', '.join(parts)}"
    if grid_used is not None:
        # "IPCC AR5 medians + grid: Ember via ..., CC BY 4.0": one line in a summary
        # (end_block.MAX_SOURCE_CHARS); `licence` names both parts' licences
        source = f"{' '.join(ipcc.split()[:2])} medians + grid: {grid_used.source}"
        licence = f"IPCC figures cited; grid: {grid_used.licence}"
        definition = f"IPCC lifecycle medians blended with the grid ({grid_used.definition})"
        code, year = grid_used.region_code, grid_used.year
        region_name += f" (grid {grid_used.region_code})"
    else:
        source, licence = ipcc, "IPCC figures cited"
        definition = "IPCC lifecycle medians (gCO2e/kWh), share-weighted"
        code, year = "mix", 2014
    return GridFactor(
        gco2_per_kwh=value,
        region_code=code,
        region_name=region_name,
        source=source,
        year=year,
        licence=licence,
        definition=definition,
        is_default=False,
        kind="mix",
        note="; ".join(notes),
    )
