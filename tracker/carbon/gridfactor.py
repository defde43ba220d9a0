"""The grid factor of a run (`GridFactor`) and the annual factor of one bundled region.

Imported by both `factor` (which picks a run's factor) and `mix` (which blends one from an energy
mix), so neither imports the other.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Optional

from ..accounting.parts import DictPart
from ..errors import ConfigError
from .regions import DEFAULT_REGION, Region, history, lookup

__all__ = ["MAX_GCO2_PER_KWH", "Grid", "GridFactor", "factor_for_region", "world_factor"]

# The highest grid intensity accepted anywhere (gCO2e/kWh); real grids span about 0-1300.
MAX_GCO2_PER_KWH = 2000.0

# Short publisher names for one-line labels such as "GB (Ember 2024)", matched at the start of
# a bundled source ("<publisher> <dataset>, <licence>", scripts/build_grid_tables.py).
_PUBLISHERS = (
    ("Ember", "Ember"),               # "Ember via Our World in Data (energy dataset), ..."
    ("Our World in Data", "Ember"),   # summaries written before the sources were shortened
    ("EPA eGRID", "EPA eGRID"),
    ("Google", "Google"),
    ("Electricity Maps", "Electricity Maps"),
    ("Cloud Carbon Footprint", "CCF"),
    ("CCF", "CCF"),
    ("IPCC", "IPCC"),
)


@dataclass(frozen=True)
class GridFactor:
    """The carbon intensity used for a run, with where it came from.

    gco2_per_kwh: grams CO2-equivalent per kWh of facility energy.
    kind: "annual" (a bundled region), "override" (given by the user) or "mix".
    is_default: True when no region was given and the world average was used.
    """

    gco2_per_kwh: float
    region_code: str
    region_name: str
    source: str
    year: Optional[int]
    licence: str
    definition: str
    is_default: bool
    kind: str = "annual"
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def label(self) -> str:
        """Short description for notes and summaries, e.g. "GB (Ember 2024)"."""
        publisher = next((short for p, short in _PUBLISHERS if self.source.startswith(p)), "")
        if self.kind == "override":
            publisher = "user override"
        elif self.kind == "mix":
            publisher = "mix"
        when = f" {self.year}" if self.year is not None else ""
        inner = f"{publisher}{when}".strip() or self.source[:40]
        return f"{self.region_code} ({inner})"


@dataclass(frozen=True, eq=False)
class Grid(DictPart):
    """A summary's `grid` part: the GridFactor it was computed with (`GridFactor.to_dict`), or
    for a job on several grids the "mixed" entry (each node's factor is in its carbon part).
    Any key may be missing in a file an older version wrote."""

    gco2_per_kwh: Optional[float] = None
    region_code: Optional[str] = None
    region_name: Optional[str] = None
    source: Optional[str] = None
    year: Optional[int] = None
    licence: Optional[str] = None
    definition: Optional[str] = None
    is_default: Optional[bool] = None
    kind: Optional[str] = None
    note: Optional[str] = None


def factor_for_region(region_query: str, *, is_default: bool = False, note: str = "",
                      year: Optional[int] = None) -> GridFactor:
    """The annual factor of one bundled region (code, alias or name); `year`: that year's
    value instead of the newest (ConfigError where the bundled tables have none)."""
    region = lookup(region_query)
    notes = [note] if note else []
    if region.mapped_to:
        notes.append(f"{region.code} uses {region.mapped_to}: {region.mapping_source}")
    if region.note:
        notes.append(region.note)
    value, data_year = region.gco2_per_kwh, region.year
    if year is not None:
        value, data_year, how = _pinned_year(region, year)
        notes.append(how)
    return GridFactor(
        gco2_per_kwh=value,
        region_code=region.code,
        region_name=region.name,
        source=region.source,
        year=data_year,
        licence=region.licence,
        definition=region.definition,
        is_default=is_default,
        kind="annual",
        note="; ".join(notes),
    )


def world_factor(note: str = "", year: Optional[int] = None) -> GridFactor:
    """The world average (the default when no region is given)."""
    return factor_for_region(DEFAULT_REGION, is_default=True, note=note, year=year)


def _pinned_year(region: Region, year: int) -> tuple[float, int, str]:
    """(gCO2e/kWh, year, note) of `region` in `year`. Yearly values are bundled for countries
    and Ember's aggregates (via OWID); a cloud region mapped to a country uses that country's."""
    grid = lookup(region.mapped_to) if region.mapped_to else region
    years = history(grid.code)
    where = grid.code if grid is region else f"{grid.code} (the grid {region.code} sits in)"
    if year in years:
        return (years[year], year, f"grid_year={year}: {where}'s {year} value "
                                   f"(the newest bundled is {grid.year})")
    if years:
        raise ConfigError(
            f"grid_year={year}: the bundled table has no {year} value for {where}; it has "
            f"{_year_ranges(sorted(years))}. Pick one of those, or drop grid_year for the "
            f"newest ({grid.year}).")
    if year == region.year:
        return region.gco2_per_kwh, year, f"grid_year={year}: the table's own year"
    raise ConfigError(
        f"grid_year={year}: {region.code} is valued from {_publisher(region.source)} for "
        f"{region.year or 'an unnamed year'} only. Yearly values (1990-2025) are bundled for "
        "countries and aggregates (Ember via Our World in Data): use the country's code "
        "(e.g. 'US', 'DE'), or drop grid_year.")


def _publisher(source: str) -> str:
    """A bundled source without its licence: "<publisher> <dataset>, <licence>" -> the first
    part (older, longer sources: up to the first ';')."""
    return source.split(";")[0].rsplit(", ", 1)[0] if ", " in source else source


def _year_ranges(years: list[int]) -> str:
    """[1990, 1991, 1992, 2000] -> "1990-1992, 2000"."""
    ranges: list[list[int]] = []
    for y in years:
        if ranges and y == ranges[-1][1] + 1:
            ranges[-1][1] = y
        else:
            ranges.append([y, y])
    return ", ".join(f"{a}-{b}" if a != b else str(a) for a, b in ranges)
