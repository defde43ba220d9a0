"""Grid carbon intensity: bundled annual factors, energy mixes, live providers, accounting.

Modules: `regions` (bundled tables) <- `gridfactor` (GridFactor, a region's annual factor) <-
`mix` (energy mixes) <- `factor` (the run's factor: override, mix, region or world);
`providers` (the live-provider registry, one module per provider) <- `live` (LiveIntensity)
<- `accounting`; `candidates` (the countries a run is compared with); `citation` (a factor's
source, year and licence on one line). Nothing is read from disk or the network at import time.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any, Optional

if TYPE_CHECKING:
    from .accounting import Emissions, account_emissions, compare_regions, extremes
    from .autodetect import detect_region
    from .candidates import candidate_countries, cleanest_and_dirtiest
    from .factor import GridFactor, resolve_factor
    from .live import PROVIDERS, IntensityPeriod, LiveIntensity
    from .mix import known_sources, mix_factor
    from .regions import Region, all_regions, default_region, lookup, search

# Each name is imported from its module on first use (PEP 562): a tracker's construction needs
# the factor and the regions, not the live providers' HTTP stack (requests: ~70 ms to import).
_HOME = {
    "Emissions": "accounting", "account_emissions": "accounting",
    "compare_regions": "accounting", "extremes": "accounting", "detect_region": "autodetect",
    "candidate_countries": "candidates", "cleanest_and_dirtiest": "candidates",
    "GridFactor": "factor", "resolve_factor": "factor", "PROVIDERS": "live",
    "IntensityPeriod": "live", "LiveIntensity": "live", "known_sources": "mix",
    "mix_factor": "mix", "Region": "regions", "all_regions": "regions",
    "default_region": "regions", "lookup": "regions", "search": "regions",
}


def __getattr__(name: str) -> Any:
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{home}", __name__), name)
    globals()[name] = value
    return value


def make_live_intensity(spec: Optional[str], fallback: GridFactor,
                        **kwargs: Any) -> Optional[LiveIntensity]:
    """`live.make_live_intensity`; None for None without importing the HTTP stack."""
    if spec is None:
        return None
    from .live import make_live_intensity as make
    return make(spec, fallback, **kwargs)


__all__ = [
    "PROVIDERS",
    "Emissions",
    "GridFactor",
    "IntensityPeriod",
    "LiveIntensity",
    "Region",
    "account_emissions",
    "all_regions",
    "candidate_countries",
    "cleanest_and_dirtiest",
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
