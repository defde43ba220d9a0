"""Grid carbon intensity: bundled annual factors, energy mixes, live providers, accounting.

Modules: `regions` (bundled tables) <- `gridfactor` (GridFactor, a region's annual factor) <-
`mix` (energy mixes) <- `factor` (the run's factor: override, mix, region or world);
`providers` (the live-provider registry, one module per provider) <- `live` (LiveIntensity)
<- `accounting`. Nothing is read from disk or the network at import time.
"""

from __future__ import annotations

from .accounting import Emissions, account_emissions, compare_regions, extremes
from .autodetect import detect_region
from .factor import GridFactor, resolve_factor
from .live import (
    PROVIDERS,
    IntensityPeriod,
    LiveIntensity,
    make_live_intensity,
)
from .mix import known_sources, mix_factor
from .regions import Region, all_regions, default_region, lookup, search

__all__ = [
    "PROVIDERS",
    "Emissions",
    "GridFactor",
    "IntensityPeriod",
    "LiveIntensity",
    "Region",
    "account_emissions",
    "all_regions",
    "compare_regions",
    "default_region",
    "detect_region",
    "extremes",
    "known_sources",
    "lookup",
    "make_live_intensity",
    "mix_factor",
    "resolve_factor",
    "search",
]
