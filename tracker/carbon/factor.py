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


def factor_for_region(region_query: str, *, is_default: bool = False, note: str = "") -> GridFactor:
    """The annual factor of one bundled region (code, alias or name)."""
    from tracker.carbon.regions import lookup

    region = lookup(region_query)
    notes = [note] if note else []
    if region.mapped_to:
        notes.append(f"{region.code} uses {region.mapped_to}: {region.mapping_source}")
    if region.note:
        notes.append(region.note)
    return GridFactor(
        gco2_per_kwh=region.gco2_per_kwh,
        region_code=region.code,
        region_name=region.name,
        source=region.source,
        year=region.year,
        licence=region.licence,
        definition=region.definition,
        is_default=is_default,
        kind="annual",
        note="; ".join(notes),
    )


def world_factor(note: str = "") -> GridFactor:
    from tracker.carbon.regions import DEFAULT_REGION

    return factor_for_region(DEFAULT_REGION, is_default=True, note=note)


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
) -> GridFactor:
    """The factor for a run: override wins, then mix, then region, else the world average.

    region="auto" asks the cloud instance metadata service where this machine runs.
    """
    if gco2_per_kwh is not None:
        value = validate_gco2_per_kwh(gco2_per_kwh)
        ignored = [name for name, given in (("region", region), ("mix", mix)) if given]
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
    grid = _region_factor(region) if region is not None else None
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


def _region_factor(region: str) -> GridFactor:
    if not isinstance(region, str) or not region.strip():
        raise ConfigError(
            f"region must be a code such as 'DE', 'US-CA' or 'aws:us-east-1', got {region!r}."
        )
    if region.strip().lower() == "auto":
        from tracker.carbon.autodetect import detect_region

        code, how = detect_region()
        return factor_for_region(code, note=f"region detected: {code} ({how})")
    return factor_for_region(region)
