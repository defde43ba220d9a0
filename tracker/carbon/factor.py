"""Pick the grid factor for a run: user override, then energy mix, then region, else world.

`GridFactor` itself lives in `gridfactor` (with the annual factor of a region), and the energy
mix in `mix`; this module combines them and imports both, neither imports it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Optional

from ..errors import ConfigError
from .gridfactor import MAX_GCO2_PER_KWH, GridFactor, factor_for_region, world_factor
from .mix import mix_factor
from .regions import default_region

__all__ = [
    "MAX_GCO2_PER_KWH",
    "GridFactor",
    "factor_for_region",
    "resolve_factor",
    "validate_gco2_per_kwh",
    "validate_grid_year",
    "world_factor",
]


def validate_grid_year(value: object) -> Optional[int]:
    """None, or a year as an int (ConfigError otherwise)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1900 <= value <= 2100:
        raise ConfigError(f"grid_year must be a year such as 2023 (an int), or None for the "
                          f"newest bundled value; got {value!r}.")
    return value


def validate_gco2_per_kwh(value: object, what: str = "gco2_per_kwh") -> float:
    """A finite number in 0..2000 gCO2e/kWh, else ConfigError."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{what} must be a number in gCO2e/kWh, got {value!r}.")
    if not math.isfinite(value) or not 0 <= value <= MAX_GCO2_PER_KWH:
        raise ConfigError(
            f"{what}={value!r} is outside 0..{MAX_GCO2_PER_KWH:g} gCO2e/kWh; real grids span "
            "about 0-1300. Give the value in grams per kWh (not kg, not lb/MWh)."
        )
    return float(value)


def resolve_factor(
    region: Optional[str] = None,
    *,
    gco2_per_kwh: Optional[float] = None,
    mix: Optional[Mapping[str, float]] = None,
    grid_year: Optional[int] = None,
) -> GridFactor:
    """The factor for a run: override wins, then mix, then region, else the world average.

    region="auto" asks the cloud instance metadata service where this machine runs.
    grid_year: the region's value for that year (countries, aggregates and cloud regions
    mapped to a country have 1990-2025) instead of the newest; the factor's `year` says it.
    """
    grid_year = validate_grid_year(grid_year)
    if gco2_per_kwh is not None:
        value = validate_gco2_per_kwh(gco2_per_kwh)
        ignored = [name for name, given in (("region", region), ("mix", mix),
                                            ("grid_year", grid_year)) if given]
        note = f"{' and '.join(ignored)} ignored: gco2_per_kwh given" if ignored else ""
        return GridFactor(
            gco2_per_kwh=value,
            region_code=region or "custom",
            region_name="user-supplied factor",
            source="user override (gco2_per_kwh)",
            year=None,
            licence="n/a",
            definition="as given by the user",
            is_default=False,
            kind="override",
            note=note,
        )
    grid = _region_factor(region, grid_year) if region is not None else None
    if grid is None and grid_year is not None:
        grid = world_factor(note=f"no region given: world average in {grid_year}",
                            year=grid_year)
    if mix is not None:
        return mix_factor(mix, grid)
    if grid is not None:
        return grid
    return world_factor(note=f"no region given: world average ({_world_label()})")


def _world_label() -> str:
    world = default_region()
    return f"Ember {world.year}"


def _region_factor(region: str, year: Optional[int] = None) -> GridFactor:
    if not isinstance(region, str) or not region.strip():
        raise ConfigError(
            f"region must be a code such as 'DE', 'US-CA' or 'aws:us-east-1', got {region!r}."
        )
    if region.strip().lower() == "auto":
        from .autodetect import detect_region  # imports requests: only when asked

        code, how = detect_region()
        return factor_for_region(code, note=f"region detected: {code} ({how})", year=year)
    return factor_for_region(region, year=year)
