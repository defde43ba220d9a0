"""Pick the grid factor for a run: user override, then energy mix, then region, else world."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Optional

from tracker.errors import ConfigError

MAX_GCO2_PER_KWH = 2000.0

# Short publisher names for one-line labels such as "GB (Ember 2024)".
_PUBLISHERS = (
    ("Ember", "Ember"),
    ("Our World in Data", "Ember"),   # Ember's data as OWID publishes it
    ("EPA eGRID", "EPA eGRID"),
    ("Google", "Google"),
    ("Electricity Maps", "Electricity Maps"),
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

    def to_dict(self) -> dict:
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


def factor_for_region(region_query: str, *, is_default: bool = False, note: str = "",
                      year: Optional[int] = None) -> GridFactor:
    """The annual factor of one bundled region (code, alias or name); `year`: that year's
    value instead of the newest (ConfigError where the bundled tables have none)."""
    from tracker.carbon.regions import lookup

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
    from tracker.carbon.regions import DEFAULT_REGION

    return factor_for_region(DEFAULT_REGION, is_default=True, note=note, year=year)


def validate_grid_year(value: object) -> Optional[int]:
    """None, or a year as an int (ConfigError otherwise)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1900 <= value <= 2100:
        raise ConfigError(f"grid_year must be a year such as 2023 (an int), or None for the "
                          f"newest bundled value; got {value!r}.")
    return value


def _pinned_year(region: object, year: int) -> tuple[float, int, str]:
    """(gCO2e/kWh, year, note) of `region` in `year`. Yearly values are bundled for countries
    and Ember's aggregates (via OWID); a cloud region mapped to a country uses that country's."""
    from tracker.carbon.regions import Region, history, lookup

    assert isinstance(region, Region)
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
        f"grid_year={year}: {region.code} is valued from {region.source.split(';')[0]} for "
        f"{region.year or 'an unnamed year'} only. Yearly values (1990-2025) are bundled for "
        "countries and aggregates (Ember via Our World in Data): use the country's code "
        "(e.g. 'US', 'DE'), or drop grid_year.")


def _year_ranges(years: list[int]) -> str:
    """[1990, 1991, 1992, 2000] -> "1990-1992, 2000"."""
    ranges: list[list[int]] = []
    for y in years:
        if ranges and y == ranges[-1][1] + 1:
            ranges[-1][1] = y
        else:
            ranges.append([y, y])
    return ", ".join(f"{a}-{b}" if a != b else str(a) for a, b in ranges)


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
        from tracker.carbon.mix import mix_factor

        return mix_factor(mix, grid)
    if grid is not None:
        return grid
    return world_factor(note=f"no region given: world average ({_world_label()})")


def _world_label() -> str:
    from tracker.carbon.regions import default_region

    world = default_region()
    return f"Ember {world.year}"


def _region_factor(region: str, year: Optional[int] = None) -> GridFactor:
    if not isinstance(region, str) or not region.strip():
        raise ConfigError(
            f"region must be a code such as 'DE', 'US-CA' or 'aws:us-east-1', got {region!r}."
        )
    if region.strip().lower() == "auto":
        from tracker.carbon.autodetect import detect_region

        code, how = detect_region()
        return factor_for_region(code, note=f"region detected: {code} ({how})", year=year)
    return factor_for_region(region, year=year)
