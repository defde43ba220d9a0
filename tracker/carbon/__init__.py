"""Grid carbon intensity: bundled annual factors, energy mixes, live providers, accounting.

Nothing is read from disk or the network at import time.
"""

from __future__ import annotations

from tracker.carbon.accounting import Emissions, account_emissions, compare_regions, extremes
from tracker.carbon.autodetect import detect_region
from tracker.carbon.factor import GridFactor, resolve_factor
from tracker.carbon.live import (
    PROVIDERS,
    IntensityPeriod,
    LiveIntensity,
    make_live_intensity,
)
from tracker.carbon.mix import known_sources, mix_factor
from tracker.carbon.regions import Region, all_regions, default_region, lookup, search

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
