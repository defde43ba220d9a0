"""Bundled grid regions: codes, names, aliases and their annual carbon intensity (gCO2e/kWh).

Tables are read once, on first use, from tracker/carbon/data/ (built by
scripts/build_grid_tables.py); importing this module reads nothing. One region (what a
tracker's construction needs) is found through a prebuilt index instead of parsing every table:
data/region_index.csv maps each lookup key to the byte offset of its row in
data/regions_resolved.csv (both written by scripts/build_region_index.py from the tables, and
used only while the tables' SHA-256 matches the one the index was built from).
"""

from __future__ import annotations

import csv
import difflib
import functools
import hashlib
import io
import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Optional

from ..errors import UnknownRegionError

DATA_DIR = Path(__file__).resolve().parent / "data"

# Load order matters: a name shared by two regions (Georgia the country, Georgia the US state)
# finds the one loaded first.
REGION_TABLES = (
    "owid_countries.csv",
    "egrid_us.csv",
    "electricitymaps_zones.csv",
    "google_cloud_regions.csv",
)
CCF_TABLE = "ccf_cloud_regions.csv"
# Every year of the countries and aggregates (Ember via Our World in Data), for grid_year=.
HISTORY_TABLE = "owid_countries_history.csv"

DEFAULT_REGION = "WORLD"

# The prebuilt index (see the module docstring): every table a Region is made from, hashed.
SOURCE_TABLES = (*REGION_TABLES, CCF_TABLE)
INDEX_TABLE = "region_index.csv"
RESOLVED_TABLE = "regions_resolved.csv"
_RESOLVED_COLUMNS = ("code", "name", "kind", "gco2_per_kwh", "year", "source", "licence",
                     "definition", "aliases", "mapped_to", "mapping_source", "note")


@dataclass(frozen=True)
class Region:
    """One grid region and its annual average carbon intensity.

    gco2_per_kwh: grams CO2-equivalent per kWh drawn from this grid (see `definition`).
    year: data year of the value, or None with the reason in `note`.
    mapped_to: for cloud regions, the code of the grid whose value is used.
    """

    code: str
    name: str
    kind: str
    gco2_per_kwh: float
    year: Optional[int]
    source: str
    licence: str
    definition: str
    aliases: tuple[str, ...] = ()
    mapped_to: Optional[str] = None
    mapping_source: Optional[str] = None
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["aliases"] = list(self.aliases)
        return d


class _Index:
    def __init__(self, regions: list[Region]):
        self.regions = regions
        self.by_key: dict[str, Region] = {}
        # codes first, then aliases, then names: a code can never be shadowed by a name
        for attr in ("code", "aliases", "name"):
            for region in regions:
                values = region.aliases if attr == "aliases" else (getattr(region, attr),)
                for value in values:
                    self.by_key.setdefault(_key(value), region)


_lock = threading.Lock()
_index: Optional[_Index] = None
_history: Optional[dict[str, dict[int, float]]] = None


def _key(text: str) -> str:
    return " ".join(text.split()).casefold()


def _read_csv(name: str, data_dir: Optional[Path] = None) -> list[dict[str, str]]:
    with ((data_dir or DATA_DIR) / name).open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _region_from_row(row: dict[str, str]) -> Region:
    return Region(
        code=row["code"],
        name=row["name"],
        kind=row["kind"],
        gco2_per_kwh=float(row["gco2_per_kwh"]),
        year=int(row["year"]) if row["year"] else None,
        source=row["source"],
        licence=row["licence"],
        definition=row["definition"],
        aliases=tuple(a for a in row.get("aliases", "").split(";") if a),
        note=row.get("note", ""),
    )


def _cloud_region(row: dict[str, str], ccf: Region, grids: dict[str, Region]) -> Region:
    """An AWS/Azure region valued with the grid it sits in (CCF's own factor if none)."""
    provider, region_name = row["cloud_code"].split(":", 1)
    label = {"aws": "AWS", "azure": "Azure", "gcp": "GCP"}[provider]
    where = f", {row['location']}" if row["location"] else ""
    name = f"{label} {region_name}{where}"
    grid = grids.get(row["mapped_to"]) if row["mapped_to"] else None
    if grid is None:
        how = row["mapping_source"] or "no Google factor for this region"
        return Region(
            code=row["cloud_code"], name=name, kind="cloud_region",
            gco2_per_kwh=ccf.gco2_per_kwh, year=ccf.year, source=ccf.source,
            licence=ccf.licence, definition=ccf.definition, aliases=(),
            mapped_to=ccf.code, mapping_source=f"{how}; CCF's own factor used",
            note=ccf.note,
        )
    return Region(
        code=row["cloud_code"], name=name, kind="cloud_region",
        gco2_per_kwh=grid.gco2_per_kwh, year=grid.year, source=grid.source,
        licence=grid.licence, definition=grid.definition, aliases=(),
        mapped_to=grid.code,
        mapping_source=f"{row['mapping_source']} (map in scripts/build_grid_tables.py)",
        note=grid.note,
    )


def _load(data_dir: Optional[Path] = None) -> _Index:
    regions = [_region_from_row(row) for name in REGION_TABLES
               for row in _read_csv(name, data_dir)]
    grids = {r.code: r for r in regions}
    ccf_regions = []
    for row in _read_csv(CCF_TABLE, data_dir):
        ccf = _region_from_row(row)
        ccf_regions.append(ccf)
        # Google's own 2024 table wins for gcp:; CCF's gcp value only fills gaps.
        if row["cloud_code"] not in grids:
            cloud = _cloud_region(row, ccf, grids)
            grids[cloud.code] = cloud
            regions.append(cloud)
    regions.extend(ccf_regions)
    codes = [_key(r.code) for r in regions]
    if len(codes) != len(set(codes)):
        raise RuntimeError("bundled grid tables repeat a region code; rebuild them")
    return _Index(regions)


def _get_index() -> _Index:
    global _index
    if _index is None:
        with _lock:
            if _index is None:
                _index = _load()
    return _index


def all_regions() -> list[Region]:
    """Every bundled region, in table order (countries, US, zones, cloud, CCF)."""
    return list(_get_index().regions)


def lookup(query: str) -> Region:
    """The region for a code, alias or name (case-insensitive): `DE`, `deu`, `Germany`, `SE3`.

    Raises UnknownRegionError with up to 5 close matches.
    """
    if not isinstance(query, str) or not query.strip():
        raise UnknownRegionError(str(query), [])
    key = _key(query)
    keys = _prebuilt() if _index is None else None
    offset = keys.get(key) if keys is not None else None
    if offset is not None:   # only the one row is read
        return _resolved_row(offset)
    index = _get_index()   # a name not in the index (or no index): the tables, in full
    region = index.by_key.get(key)
    if region is not None:
        return region
    matches = difflib.get_close_matches(key, index.by_key.keys(), n=15, cutoff=0.6)
    suggestions: list[str] = []
    for match in matches:
        code = index.by_key[match].code
        if code not in suggestions:
            suggestions.append(code)
    raise UnknownRegionError(query, suggestions[:5])


# -- the prebuilt index --------------------------------------------------------------------------
_prebuilt_keys: Optional[dict[str, int]] = None
_prebuilt_checked = False
_rows: dict[int, Region] = {}


def tables_digest(data_dir: Optional[Path] = None) -> str:
    """SHA-256 over the names and bytes of the tables Regions are made from."""
    data_dir = data_dir or DATA_DIR
    h = hashlib.sha256()
    for name in SOURCE_TABLES:
        h.update(name.encode() + b"\0" + (data_dir / name).read_bytes() + b"\0")
    return h.hexdigest()


def _prebuilt() -> Optional[dict[str, int]]:
    """Lookup key -> offset of its row in RESOLVED_TABLE, or None when the index is missing,
    unreadable or built from other tables (then the tables themselves are parsed)."""
    global _prebuilt_keys, _prebuilt_checked
    if not _prebuilt_checked:
        with _lock:
            if not _prebuilt_checked:
                try:
                    _prebuilt_keys = _read_prebuilt()
                except (OSError, ValueError, csv.Error):
                    _prebuilt_keys = None
                _prebuilt_checked = True
    return _prebuilt_keys


def _read_prebuilt() -> Optional[dict[str, int]]:
    with (DATA_DIR / INDEX_TABLE).open(newline="", encoding="utf-8") as f:
        rows = csv.reader(f)
        head = next(rows, None)
        if not head or head[0] != "tables_sha256" or head[1] != tables_digest():
            return None
        next(rows, None)   # the column names
        return {key: int(offset) for key, offset in rows}


def _resolved_row(offset: int) -> Region:
    region = _rows.get(offset)
    if region is None:
        with (DATA_DIR / RESOLVED_TABLE).open("rb") as f:
            f.seek(offset)
            line = f.readline().decode("utf-8")
        cells = dict(zip(_RESOLVED_COLUMNS, next(csv.reader([line]))))
        region = _rows[offset] = Region(
            code=cells["code"], name=cells["name"], kind=cells["kind"],
            gco2_per_kwh=float(cells["gco2_per_kwh"]),
            year=int(cells["year"]) if cells["year"] else None,
            source=cells["source"], licence=cells["licence"], definition=cells["definition"],
            aliases=tuple(a for a in cells["aliases"].split(";") if a),
            mapped_to=cells["mapped_to"] or None, mapping_source=cells["mapping_source"] or None,
            note=cells["note"])
    return region


def write_index(data_dir: Optional[Path] = None) -> tuple[Path, Path]:
    """Write INDEX_TABLE and RESOLVED_TABLE from the tables in `data_dir` (default the bundled
    ones, parsed in full); scripts/build_region_index.py runs this after the tables change.
    Returns both paths."""
    data_dir = data_dir or DATA_DIR
    index = _load(data_dir)
    rows = io.StringIO(newline="")
    out = csv.writer(rows, lineterminator="\n")
    out.writerow(_RESOLVED_COLUMNS)
    offsets: dict[int, int] = {}
    for region in index.regions:
        offsets[id(region)] = len(rows.getvalue().encode("utf-8"))
        out.writerow([region.code, region.name, region.kind, repr(region.gco2_per_kwh),
                      "" if region.year is None else region.year, region.source,
                      region.licence, region.definition, ";".join(region.aliases),
                      region.mapped_to or "", region.mapping_source or "", region.note])
    keys = io.StringIO(newline="")
    kout = csv.writer(keys, lineterminator="\n")
    kout.writerow(["tables_sha256", tables_digest(data_dir)])
    kout.writerow(["key", "offset"])
    for key, region in index.by_key.items():
        kout.writerow([key, offsets[id(region)]])
    resolved, keyed = data_dir / RESOLVED_TABLE, data_dir / INDEX_TABLE
    resolved.write_bytes(rows.getvalue().encode("utf-8"))
    keyed.write_bytes(keys.getvalue().encode("utf-8"))
    return keyed, resolved


def search(query: Optional[str] = None) -> list[Region]:
    """Regions whose code, alias, name or kind contains `query` (case-insensitive); None: all.

    Regions whose code starts with the query come first.
    """
    regions = all_regions()
    if query is None or not query.strip():
        return regions
    q = _key(query)
    hits = [
        r for r in regions
        if any(q in _key(text) for text in (r.code, r.name, r.kind, *r.aliases))
    ]
    return sorted(hits, key=lambda r: (_key(r.code) != q, not _key(r.code).startswith(q)))


def default_region() -> Region:
    """The world average (Ember via Our World in Data), used when no region is given."""
    return lookup(DEFAULT_REGION)


# Region kinds whose codes start with their country's alpha-2 code (US-CA, SE-SE3, AU-NSW, ...).
_SUBNATIONAL = {"us_state", "egrid_subregion", "egrid_national", "nordic_bidding_zone",
                "au_state", "ca_province", "in_regional_grid"}


def country_of(query: str) -> Optional[Region]:
    """The country a region is in: itself, the country of the grid a cloud region sits in, a
    GCP region's country (Google's location), or a zone's; None where no single country
    (aggregates, mixes, the four Azure geographies CCF gives no location for)."""
    region = lookup(query)
    for _ in range(3):   # cloud -> grid -> country; ccf:... -> its cloud code
        if region.kind == "country":
            return region
        if region.kind in _SUBNATIONAL:
            code = region.code.split(":", 1)[-1]    # emaps:FI is Finland
            return country_of(code.split("-", 1)[0])
        if region.kind == "ccf_cloud_region":
            region = lookup(region.code.split(":", 1)[1])   # ccf:aws:x -> aws:x
            continue
        if region.mapped_to and not region.mapped_to.startswith("ccf:"):
            region = lookup(region.mapped_to)
            continue
        cc = _cloud_countries().get(region.code.casefold().removeprefix("ccf:"))
        return lookup(cc) if cc else None
    return None


@functools.lru_cache(maxsize=1)
def _cloud_countries() -> dict[str, str]:
    """GCP region code -> country code (the `country` column of the Google and CCF tables)."""
    out = {}
    for name in ("google_cloud_regions.csv", CCF_TABLE):
        for row in _read_csv(name):
            if row.get("country"):
                out[row.get("cloud_code") or row["code"]] = row["country"]
    return out


def history(code: str) -> dict[int, float]:
    """Year -> gCO2e/kWh of a region with a bundled yearly history (countries and Ember's
    aggregates such as WORLD and EU, 1990-2025 where published); {} for any other region.
    Read on first use, like the other tables."""
    global _history
    if _history is None:
        with _lock:
            if _history is None:
                table: dict[str, dict[int, float]] = {}
                for row in _read_csv(HISTORY_TABLE):
                    table.setdefault(row["code"], {})[int(row["year"])] = \
                        float(row["gco2_per_kwh"])
                _history = table
    return dict(_history.get(code, {}))
