"""The countries a run is compared with, picked by one rule: the what-if's cleanest and
dirtiest country (`energy-tracker report --compare-regions`, the HTML report) and the advice's
cleaner grid (accounting/advice.py) both read `candidate_countries()`, so they name the same
places.

A candidate is
  1. a country of the bundled Ember table (via Our World in Data): one definition (lifecycle,
     generation-based), so candidates compare with each other;
  2. with a plausible value: at least the lowest lifecycle median of any generation technology
     in the bundled IPCC AR5 table (wind, 11 gCO2e/kWh). Every kWh carries its plant's
     construction and fuel chain, so a lifecycle average below the cleanest technology's
     median is an artefact; the table's one such entry is the Central African Republic at 0.0
     (2023, 0.14 TWh generated in all, a gap in Ember's fuel data rather than a grid);
  3. where a training job can be moved: it hosts a public cloud region in the bundled tables
     (AWS and Azure regions by the grid CCF's location names put them in, Google Cloud regions
     by their country). This leaves out the territories whose value is an estimate and not a
     measurement of a grid (Falkland Islands, Montserrat, Saint Helena at a flat 1000, Kiribati
     at 500, all under 0.05 TWh a year) and grids no job can be sent to.

The rule reads only the bundled tables; a rebuilt table changes the candidates with it.
"""

from __future__ import annotations

import functools
from typing import Optional

from .regions import CCF_TABLE, Region, _read_csv, all_regions, lookup

__all__ = ["candidate_countries", "cleanest_and_dirtiest", "cloud_countries",
           "lifecycle_floor", "why_not_candidate"]

GOOGLE_TABLE = "google_cloud_regions.csv"


@functools.lru_cache(maxsize=1)
def lifecycle_floor() -> float:
    """The lowest lifecycle median of the bundled IPCC table (gCO2e/kWh)."""
    from .mix import technologies
    return min(t.gco2_per_kwh for t in technologies().values())


@functools.lru_cache(maxsize=1)
def cloud_countries() -> frozenset[str]:
    """Codes of the bundled countries that host an AWS, Azure or Google Cloud region."""
    codes: set[str] = set()
    for row in _read_csv(CCF_TABLE):
        # mapped_to: the grid the region sits in (US-VA, SE-SE3, DE); its country comes first
        grid = row.get("mapped_to") or row.get("country") or ""
        if grid:
            codes.add(grid.split("-", 1)[0])
    for row in _read_csv(GOOGLE_TABLE):
        if row.get("country"):
            codes.add(row["country"])
    countries = set()
    for code in codes:
        try:
            region = lookup(code)
        except Exception:   # a grid code without a country row: not a candidate
            continue
        if region.kind == "country":
            countries.add(region.code)
    return frozenset(countries)


def why_not_candidate(region: Region) -> Optional[str]:
    """Why `region` is not a candidate (None: it is one)."""
    if region.kind != "country":
        return f"{region.code} is a {region.kind}, not a country"
    if region.gco2_per_kwh < lifecycle_floor():
        return (f"{region.code}'s {region.gco2_per_kwh:g} gCO2e/kWh is below the lowest "
                f"lifecycle median of any technology ({lifecycle_floor():g}): not a grid value")
    if region.code not in cloud_countries():
        return f"{region.code} hosts no public cloud region in the bundled tables"
    return None


def candidate_countries() -> tuple[Region, ...]:
    """Every candidate (module docstring), lowest intensity first."""
    return tuple(sorted((r for r in all_regions() if why_not_candidate(r) is None),
                        key=lambda r: (r.gco2_per_kwh, r.code)))


def cleanest_and_dirtiest() -> tuple[Region, Region]:
    """(lowest, highest) intensity candidate country."""
    found = candidate_countries()
    if not found:   # only a damaged or foreign table set gets here
        from ..errors import ConfigError
        raise ConfigError("no candidate countries in the bundled grid tables")
    return found[0], found[-1]
