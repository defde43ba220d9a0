"""Build the bundled grid-factor tables in tracker/carbon/data/ from the source CSVs.

Usage: python scripts/build_grid_tables.py [SOURCE_DIR] [--out OUT_DIR]

SOURCE_DIR defaults to ../shared/data/grid relative to the repository root. Every grid factor
written here is read from a file in SOURCE_DIR; this script only renames codes, adds the
`definition` each source publishes under, and keeps each licence in a file of its own. The two
hand-written tables below are not factors: the cloud-region -> grid map (from CCF's location
names) and the IPCC AR5 lifecycle medians given by the product owner in the issue.
"""

from __future__ import annotations

import argparse
import csv
import io
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SOURCE_DIR = REPO_ROOT.parent / "shared" / "data" / "grid"
DEFAULT_OUT_DIR = REPO_ROOT / "tracker" / "carbon" / "data"

# Columns every region table shares; tables may add their own after these.
REGION_COLUMNS = [
    "code", "name", "kind", "gco2_per_kwh", "year", "source", "licence", "definition",
    "aliases", "note",
]

OWID_DEFINITION = (
    "lifecycle gCO2e/kWh, generation-based (Ember emissions intensity of generation, as "
    "published by Our World in Data: carbon_intensity_elec)"
)
EGRID_DEFINITION = (
    "direct (stack) gCO2e/kWh, generation-based output emission rate, no T&D losses "
    "(eGRID CO2e column, IPCC AR5 GWPs)"
)
GOOGLE_DEFINITION = (
    "operational (direct) gCO2e/kWh of the local grid, location-based; no credit for "
    "Google's clean-energy purchases"
)
EMAPS_DEFINITION = "lifecycle gCO2e/kWh, consumption-based (flow-traced imports and exports)"
IPCC_DEFINITION = "lifecycle gCO2e/kWh of one generation technology (median of the literature)"

# The `source` column is what every summary, report and export shows next to a factor: publisher
# and dataset, then ", " and the licence (the year is a column of its own). Exactly one ", " so
# readers can take the part before it as the publisher. Where the bytes were copied from (a
# repository and commit, a mirror, a file) is provenance: it goes to SOURCES.md only.
MAX_SOURCE_CHARS = 80


def _short_source(text: str) -> str:
    """`text`, checked against the rule above (the build stops on a source that breaks it)."""
    if len(text) > MAX_SOURCE_CHARS or text.count(", ") != 1 or ";" in text:
        raise SystemExit(f"source {text!r}: publisher and dataset, ', ', licence; at most "
                         f"{MAX_SOURCE_CHARS} characters")
    return text


# Hand-written aliases (names people type); never factors.
EXTRA_ALIASES = {"GB": ["UK"]}

# Countries and aggregates: Ember's yearly data as published by Our World in Data (CC BY 4.0,
# no share-alike). `countries.csv` holds the latest year of every ISO country plus WORLD;
# `owid_carbon_intensity_elec.csv` the whole 1990-2025 history it was built from, with Ember's
# own aggregates ("EU (Ember)", ...). Nothing from the older co2.js Ember table (CC BY-SA) is
# used: two Ember releases differ, and one summary must not mix them.
OWID_SOURCE = "Ember via Our World in Data (energy dataset), CC BY 4.0"
OWID_PROVENANCE = (
    "Our World in Data energy dataset (owid/energy-data), carbon_intensity_elec, based on Ember "
    "Yearly Electricity Data and Yearly Electricity Data Europe; OWID grapher "
    "export at sayanarman/CAP6938-Final-Project@2f9bd5a, checked against owid/energy-data@e7897ae"
)
OWID_LICENCE = "CC BY 4.0 (Our World in Data; data from Ember; attribution, no share-alike)"
# Kosovo has no ISO 3166-1 code (OWID: OWID_KOS); XK/XKX are the user-assigned codes in common
# use (EU, Ember), so the country stays reachable as it was.
OWID_EXTRA_COUNTRIES = {"OWID_KOS": ("XK", "XKX")}
# Ember's aggregates in the OWID extract are named "<name> (Ember)"; OWID's own aggregates
# (OWID_EUR, OWID_EU27, income groups) are OWID's computations, not Ember's, and are left out.
EMBER_AGGREGATE_SUFFIX = " (Ember)"
WORLD_ENTITY = "World"

# Electricity Maps zones -> this library's codes. FI stays Ember's country (so every country
# code means one definition); the Electricity Maps Finland zone stays reachable as emaps:FI.
EMAPS_KEEP_PREFIXED = {"FI"}
EMAPS_KIND = {
    "nordic_bidding_zone": "nordic_bidding_zone",
    "au_state_territory": "au_state",
    "ca_province_territory": "ca_province",
    "in_regional_grid": "in_regional_grid",
}

# Cloud region -> the grid it sits in, read off CCF's location names (AWS display names, Azure
# geography names); where the location names only a country, the country is used. Empty string:
# no single grid can be read from CCF's location, so CCF's own factor is kept.
CLOUD_GRID_MAP = {
    "aws:us-east-1": ("US-VA", "US East (N. Virginia) -> Virginia"),
    "aws:us-east-2": ("US-OH", "US East (Ohio) -> Ohio"),
    "aws:us-west-1": ("US-CA", "US West (N. California) -> California"),
    "aws:us-west-2": ("US-OR", "US West (Oregon) -> Oregon"),
    "aws:us-gov-east-1": ("US", "AWS GovCloud (US-East): no state named -> United States"),
    "aws:us-gov-west-1": ("US", "AWS GovCloud (US-West): no state named -> United States"),
    "aws:af-south-1": ("ZA", "Africa (Cape Town) -> South Africa"),
    "aws:ap-east-1": ("HK", "Asia Pacific (Hong Kong) -> Hong Kong"),
    "aws:ap-south-1": ("IN-WE", "Asia Pacific (Mumbai) -> Western India grid"),
    "aws:ap-northeast-3": ("JP", "Asia Pacific (Osaka) -> Japan"),
    "aws:ap-northeast-2": ("KR", "Asia Pacific (Seoul) -> South Korea"),
    "aws:ap-southeast-1": ("SG", "Asia Pacific (Singapore) -> Singapore"),
    "aws:ap-southeast-2": ("AU-NSW", "Asia Pacific (Sydney) -> New South Wales"),
    "aws:ap-southeast-3": ("ID", "Asia Pacific (Jakarta) -> Indonesia"),
    "aws:ap-northeast-1": ("JP", "Asia Pacific (Tokyo) -> Japan"),
    "aws:ca-central-1": ("CA", "Canada (Central): no province named -> Canada"),
    "aws:cn-north-1": ("CN", "China (Beijing) -> China"),
    "aws:cn-northwest-1": ("CN", "China (Ningxia) -> China"),
    "aws:eu-central-1": ("DE", "EU (Frankfurt) -> Germany"),
    "aws:eu-west-1": ("IE", "EU (Ireland) -> Ireland"),
    "aws:eu-west-2": ("GB", "EU (London) -> United Kingdom"),
    "aws:eu-south-1": ("IT", "EU (Milan) -> Italy"),
    "aws:eu-west-3": ("FR", "EU (Paris) -> France"),
    "aws:eu-north-1": ("SE-SE3", "EU (Stockholm) -> bidding zone SE3"),
    "aws:me-south-1": ("BH", "Middle East (Bahrain) -> Bahrain"),
    "aws:me-central-1": ("AE", "Middle East (UAE) -> United Arab Emirates"),
    "aws:sa-east-1": ("BR", "South America (Sao Paulo) -> Brazil"),
    "azure:southafrica": ("ZA", "South Africa -> South Africa"),
    "azure:southafricanorth": ("ZA", "Johannesburg -> South Africa"),
    "azure:southafricawest": ("ZA", "South Africa -> South Africa"),
    "azure:australia": ("AU", "Australia -> Australia"),
    "azure:australiacentral": ("AU-NSW", "Canberra -> New South Wales zone (contains the ACT)"),
    "azure:australiacentral2": ("AU-NSW", "Canberra -> New South Wales zone (contains the ACT)"),
    "azure:australiaeast": ("AU-NSW", "New South Wales -> New South Wales"),
    "azure:australiasoutheast": ("AU-VIC", "Victoria -> Victoria"),
    "azure:apeast": ("", "none given, region name is ambiguous"),
    "azure:apsoutheast": ("", "none given, region name is ambiguous"),
    "azure:japaneast": ("JP", "Tokyo, Saitama -> Japan"),
    "azure:japanwest": ("JP", "Osaka -> Japan"),
    "azure:japan": ("JP", "Japan -> Japan"),
    "azure:korea": ("KR", "Korea -> South Korea"),
    "azure:koreacentral": ("KR", "region name koreacentral (no CCF location) -> South Korea"),
    "azure:koreasouth": ("KR", "Korea -> South Korea"),
    "azure:asia": ("", "geography spans several countries"),
    "azure:asiapacific": ("", "geography spans several countries"),
    "azure:eastasia": ("HK", "Hong Kong -> Hong Kong"),
    "azure:eastasiastage": ("HK", "Hong Kong -> Hong Kong"),
    "azure:southeastasia": ("SG", "Singapore -> Singapore"),
    "azure:southeastasiastage": ("SG", "Singapore -> Singapore"),
    "azure:india": ("IN", "India -> India"),
    "azure:centralindia": ("IN-WE", "Pune -> Western India grid"),
    "azure:jioindiacentral": ("IN", "region name jioindiacentral (no CCF location) -> India"),
    "azure:jioindiawest": ("IN", "region name jioindiawest (no CCF location) -> India"),
    "azure:southindia": ("IN-SO", "Chennai -> Southern India grid"),
    "azure:westindia": ("IN-WE", "Mumbai -> Western India grid"),
    "azure:northeurope": ("IE", "Ireland -> Ireland"),
    "azure:westeurope": ("NL", "Netherlands -> Netherlands"),
    "azure:francecentral": ("FR", "Paris -> France"),
    "azure:francesouth": ("FR", "France -> France"),
    "azure:france": ("FR", "France -> France"),
    "azure:swedencentral": ("SE", "Gävle and Sandviken -> Sweden (bidding zone not certain)"),
    "azure:switzerland": ("CH", "Switzerland -> Switzerland"),
    "azure:switzerlandnorth": ("CH", "Zürich -> Switzerland"),
    "azure:switzerlandwest": ("CH", "Switzerland -> Switzerland"),
    "azure:uksouth": ("GB", "London -> United Kingdom"),
    "azure:ukwest": ("GB", "Cardiff -> United Kingdom"),
    "azure:uk": ("GB", "United Kingdom -> United Kingdom"),
    "azure:germany": ("DE", "Germany -> Germany"),
    "azure:germanynorth": ("DE", "Germany -> Germany"),
    "azure:germanywestcentral": ("DE", "Frankfurt -> Germany"),
    "azure:norway": ("NO", "Norway -> Norway"),
    "azure:norwayeast": ("NO-NO1", "Oslo -> bidding zone NO1"),
    "azure:norwaywest": ("NO", "Norway -> Norway"),
    "azure:uae": ("AE", "region name uae (no CCF location) -> United Arab Emirates"),
    "azure:uaecentral": ("AE", "region name uaecentral (no CCF location) -> United Arab Emirates"),
    "azure:uaenorth": ("AE", "region name uaenorth (no CCF location) -> United Arab Emirates"),
    "azure:canada": ("CA", "Canada -> Canada"),
    "azure:canadacentral": ("CA-ON", "Toronto -> Ontario"),
    "azure:canadaeast": ("CA-QC", "Quebec City -> Québec"),
    "azure:centralus": ("US-IA", "Iowa -> Iowa"),
    "azure:centraluseuap": ("US-IA", "Iowa -> Iowa"),
    "azure:centralusstage": ("US-IA", "Iowa -> Iowa"),
    "azure:unitedstates": ("US", "region name unitedstates -> United States"),
    "azure:unitedstateseuap": ("US", "region name unitedstateseuap -> United States"),
    "azure:eastus": ("US-VA", "Virginia -> Virginia"),
    "azure:eastusstage": ("US-VA", "Virginia -> Virginia"),
    "azure:eastus2": ("US-VA", "Virginia -> Virginia"),
    "azure:eastus2euap": ("US-VA", "Virginia -> Virginia"),
    "azure:eastus2stage": ("US-VA", "Virginia -> Virginia"),
    "azure:eastus3": ("US-GA", "Georgia -> Georgia (US state)"),
    "azure:usnorth": ("US", "region name usnorth (no CCF location) -> United States"),
    "azure:northcentralus": ("US-IL", "Illinois -> Illinois"),
    "azure:northcentralusstage": ("US-IL", "Illinois -> Illinois"),
    "azure:southcentralus": ("US-TX", "Texas -> Texas"),
    "azure:southcentralusstage": ("US-TX", "Texas -> Texas"),
    "azure:westcentralus": ("US-WY", "Wyoming -> Wyoming"),
    "azure:westus": ("US-CA", "California -> California"),
    "azure:westusstage": ("US-CA", "California -> California"),
    "azure:westus2": ("US-WA", "Washington -> Washington"),
    "azure:westus2stage": ("US-WA", "Washington -> Washington"),
    "azure:westus3": ("US-AZ", "Arizona -> Arizona"),
    "azure:brazil": ("BR", "Brazil -> Brazil"),
    "azure:brazilsouth": ("BR", "São Paulo State -> Brazil"),
    "azure:brazilsoutheast": ("BR", "Brazil -> Brazil"),
}

# Google Cloud region -> the country it is in (ISO alpha-2), read off Google's location names.
# Not a factor (GCP regions keep Google's own value): it names the country in emissions.csv
# (CodeCarbon's country_iso_code) for runs in a GCP region.
GCP_COUNTRY = {
    "africa-south1": ("ZA", "Johannesburg"), "asia-east1": ("TW", "Taiwan"),
    "asia-east2": ("HK", "Hong Kong"), "asia-northeast1": ("JP", "Tokyo"),
    "asia-northeast2": ("JP", "Osaka"), "asia-northeast3": ("KR", "Seoul"),
    "asia-south1": ("IN", "Mumbai"), "asia-south2": ("IN", "Delhi"),
    "asia-southeast1": ("SG", "Singapore"), "asia-southeast2": ("ID", "Jakarta"),
    "australia-southeast1": ("AU", "Sydney"), "australia-southeast2": ("AU", "Melbourne"),
    "europe-central2": ("PL", "Warsaw"), "europe-north1": ("FI", "Finland"),
    "europe-north2": ("SE", "Stockholm"), "europe-southwest1": ("ES", "Madrid"),
    "europe-west1": ("BE", "Belgium"), "europe-west2": ("GB", "London"),
    "europe-west3": ("DE", "Frankfurt"), "europe-west4": ("NL", "Eemshaven"),
    "europe-west6": ("CH", "Zürich"), "europe-west8": ("IT", "Milan"),
    "europe-west9": ("FR", "Paris"), "europe-west10": ("DE", "Berlin"),
    "europe-west12": ("IT", "Turin"), "me-central1": ("QA", "Doha"),
    "me-central2": ("SA", "Dammam"), "me-west1": ("IL", "Tel Aviv"),
    "northamerica-northeast1": ("CA", "Montréal"), "northamerica-northeast2": ("CA", "Toronto"),
    "northamerica-south1": ("MX", "Mexico"), "southamerica-east1": ("BR", "Sāo Paulo"),
    "southamerica-west1": ("CL", "Santiago"), "us-central1": ("US", "Iowa"),
    "us-central2": ("US", "Oklahoma"), "us-east1": ("US", "South Carolina"),
    "us-east2": ("US", "Georgia"), "us-east4": ("US", "Northern Virginia"),
    "us-east5": ("US", "Columbus"), "us-south1": ("US", "Dallas"),
    "us-west1": ("US", "Oregon"), "us-west2": ("US", "Los Angeles"),
    "us-west3": ("US", "Salt Lake City"), "us-west4": ("US", "Las Vegas"),
}


def _gcp_country(code: str, location: str) -> str:
    region = code.split(":", 1)[1]
    if region not in GCP_COUNTRY:
        raise SystemExit(f"{code}: add it to GCP_COUNTRY")
    country, where = GCP_COUNTRY[region]
    if where != location:
        raise SystemExit(f"{code}: GCP_COUNTRY says {where!r}, the source {location!r}")
    return country


# IPCC AR5 WG3 Annex III medians, as given by the product owner in the issue (gCO2e/kWh).
IPCC_SOURCE = "IPCC AR5 WG3 Annex III (2014) Table A.III.2 lifecycle medians, cited figures"
IPCC_PROVENANCE = (
    "IPCC 2014, AR5 WG3 Annex III (Schlömer et al.), Table A.III.2, median lifecycle "
    "emissions; values as given in the project issue"
)
IPCC_ROWS = [
    ("coal", "Coal (pulverised coal)", "", "820"),
    ("gas", "Gas (combined cycle)", "natural_gas", "490"),
    ("biomass", "Biomass (dedicated)", "", "230"),
    ("solar", "Solar PV (utility)", "solar_pv;solar_pv_utility", "48"),
    ("geothermal", "Geothermal", "", "38"),
    ("hydro", "Hydropower", "", "24"),
    ("nuclear", "Nuclear", "", "12"),
    ("wind", "Wind onshore", "wind_onshore", "11"),
]


def _read(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _csv_text(columns: list[str], rows: list[dict[str, str]]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({c: row.get(c, "") for c in columns})
    return buf.getvalue()


def _one_decimal(value: str) -> str:
    """The value string rounded to 1 decimal, half-up, exactly as shared/data/grid's
    build_countries.py rounds countries.csv (so a pinned year equals the latest value)."""
    from decimal import ROUND_HALF_UP, Decimal

    return str(Decimal(value).quantize(Decimal("0.1"), rounding=ROUND_HALF_UP))


def _aggregate_code(entity: str) -> str:
    """'Latin America and Caribbean (Ember)' -> LATIN_AMERICA_AND_CARIBBEAN, 'EU (Ember)' -> EU."""
    return entity[: -len(EMBER_AGGREGATE_SUFFIX)].upper().replace(" ", "_")


def _owid_series(src: Path) -> dict[str, list[dict[str, str]]]:
    """OWID extract rows with a value, by entity, oldest year first."""
    series: dict[str, list[dict[str, str]]] = {}
    for r in _read(src / "owid_carbon_intensity_elec.csv"):
        if r["carbon_intensity_elec"] != "":
            series.setdefault(r["country"], []).append(r)
    for rows in series.values():
        rows.sort(key=lambda r: int(r["year"]))
    return series


def owid_rows(src: Path) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    """(latest value per country and aggregate, every year of each): countries.csv's rows,
    Kosovo and Ember's aggregates from the same OWID extract."""
    series = _owid_series(src)
    latest, codes_by_entity = [], {}
    for r in _read(src / "countries.csv"):
        if r["code"] == "WORLD":
            continue   # added with the aggregates below
        aliases = [r["alpha3"], *EXTRA_ALIASES.get(r["code"], [])]
        latest.append({"code": r["code"], "name": r["name"], "kind": "country",
                       "gco2_per_kwh": r["gco2_per_kwh"], "year": r["year"],
                       "aliases": ";".join(aliases)})
        codes_by_entity[r["name"]] = r["code"]
    for entity, rows in series.items():
        extra = OWID_EXTRA_COUNTRIES.get(rows[-1]["iso_code"])
        if extra is not None:
            latest.append({"code": extra[0], "name": entity, "kind": "country",
                           "gco2_per_kwh": _one_decimal(rows[-1]["carbon_intensity_elec"]),
                           "year": rows[-1]["year"], "aliases": extra[1],
                           "note": f"no ISO 3166-1 code (OWID: {rows[-1]['iso_code']}); "
                                   f"{extra[0]} is the user-assigned code in common use"})
            codes_by_entity[entity] = extra[0]
    latest.sort(key=lambda r: r["code"])
    aggregates = sorted(e for e in series if e.endswith(EMBER_AGGREGATE_SUFFIX))
    for entity in [WORLD_ENTITY, *aggregates]:
        rows = series[entity]
        code = "WORLD" if entity == WORLD_ENTITY else _aggregate_code(entity)
        name = entity if entity == WORLD_ENTITY else entity[: -len(EMBER_AGGREGATE_SUFFIX)]
        latest.append({"code": code, "name": name, "kind": "aggregate",
                       "gco2_per_kwh": _one_decimal(rows[-1]["carbon_intensity_elec"]),
                       "year": rows[-1]["year"], "aliases": ""})
        codes_by_entity[entity] = code
    world = next(r for r in _read(src / "countries.csv") if r["code"] == "WORLD")
    ours = next(r for r in latest if r["code"] == "WORLD")
    if (world["gco2_per_kwh"], world["year"]) != (ours["gco2_per_kwh"], ours["year"]):
        raise SystemExit("countries.csv's WORLD differs from the OWID extract's latest World")
    for row in latest:
        row.update(source=_short_source(OWID_SOURCE), provenance=OWID_PROVENANCE,
                   licence=OWID_LICENCE, definition=OWID_DEFINITION)
        row.setdefault("note", "")
    history = []
    for entity, code in codes_by_entity.items():
        if entity not in series:
            raise SystemExit(f"{entity} ({code}) has no history in the OWID extract")
        for r in series[entity]:
            history.append({"code": code, "year": r["year"],
                            "gco2_per_kwh": _one_decimal(r["carbon_intensity_elec"])})
    history.sort(key=lambda r: (r["code"], int(r["year"])))
    by_code = {r["code"]: r for r in latest}
    for h in history:   # the latest year of each series is the bundled latest value
        now = by_code[h["code"]]
        if int(h["year"]) == int(now["year"]) and h["gco2_per_kwh"] != now["gco2_per_kwh"]:
            raise SystemExit(f"{h['code']}: countries.csv and the OWID extract differ")
    return latest, history


EGRID_SOURCE = {   # by eGRID table (state, subregion, U.S. total)
    "state": "EPA eGRID2023 rev2 (state CO2e output rates), public domain",
    "egrid_subregion": "EPA eGRID2023 rev2 (subregion CO2e output rates), public domain",
    "national": "EPA eGRID2023 rev2 (U.S. CO2e output rate), public domain",
}
EMAPS_SOURCE = "Electricity Maps yearly averages (via co2.js), ODbL-1.0"
GOOGLE_SOURCE = "Google Cloud region carbon data (region-carbon-info), Apache-2.0"


def egrid_rows(src: Path) -> list[dict[str, str]]:
    kinds = {
        "state": "us_state", "egrid_subregion": "egrid_subregion", "national": "egrid_national",
    }
    rows = []
    for r in _read(src / "us_egrid.csv"):
        # `US` is the country (Ember, like every other country); eGRID's U.S. total gets its
        # own code so both stay reachable.
        code = "US-eGRID-US" if r["kind"] == "national" else r["code"]
        rows.append({
            "code": code, "name": r["name"], "kind": kinds[r["kind"]],
            "gco2_per_kwh": r["gco2e_per_kwh"], "year": r["year"],
            "source": _short_source(EGRID_SOURCE[r["kind"]]), "licence": r["licence"],
            "provenance": r["source"] + "; CO2e column used",
            "definition": EGRID_DEFINITION,
            "aliases": "eGRID-US" if r["kind"] == "national" else "",
            "co2_only_gco2_per_kwh": r["gco2_per_kwh"],
        })
    return rows


def emaps_rows(src: Path) -> list[dict[str, str]]:
    rows = []
    for r in _read(src / "electricitymaps_zones.csv"):
        zone = r["code"].split(":", 1)[1]
        aliases = []
        if zone in EMAPS_KEEP_PREFIXED:
            code, name = r["code"], f"{r['name']} (Electricity Maps zone {zone})"
        else:
            code, name = zone, r["name"]
            aliases.append(r["code"])
            if r["kind"] == "nordic_bidding_zone":
                aliases.append(zone.split("-", 1)[1])  # SE3, NO1, DK1 as people write them
        rows.append({
            "code": code, "name": name, "kind": EMAPS_KIND[r["kind"]],
            "gco2_per_kwh": r["gco2e_per_kwh"], "year": r["year"],
            "source": _short_source(EMAPS_SOURCE), "provenance": r["source"],
            "licence": r["licence"], "definition": EMAPS_DEFINITION,
            "aliases": ";".join(aliases),
        })
    return rows


def google_rows(src: Path) -> list[dict[str, str]]:
    return [
        {
            "code": r["code"], "name": f"Google Cloud {r['name']} ({r['location']})",
            "kind": "cloud_region", "gco2_per_kwh": r["grid_gco2_per_kwh"], "year": r["year"],
            "source": _short_source(GOOGLE_SOURCE), "provenance": r["source"],
            "licence": r["licence"], "definition": GOOGLE_DEFINITION,
            "google_cfe_pct": r["google_cfe_pct"],
            "country": _gcp_country(r["code"], r["location"]),
        }
        for r in _read(src / "gcp_regions.csv")
    ]


def _ccf_definition(source: str) -> str:
    if "EPA" in source:
        return "direct gCO2e/kWh, generation-based, NERC-region average (as cited by CCF)"
    return "not stated by CCF (cited source's own definition)"


def _ccf_year_note(source: str, year: str) -> str:
    if year:
        return ""
    if "EPA" in source:
        return "no year: CCF does not name the eGRID edition"
    if "EEA" in source:
        return "no year: CCF does not name the EEA year"
    if "not stated" in source:
        return "no year: CCF states no source"
    return "no year: CCF's value matches no Google yearly file"


def _ccf_source(source: str) -> str:
    """The short source of a CCF factor, naming what CCF cites (the long text, with CCF's commit
    and file names, is provenance)."""
    cited = source.split("cited: ", 1)[-1]
    inferred = "[source inferred" in cited
    if cited.startswith("carbonfootprint.com"):
        what = "citing carbonfootprint.com 2021"
    elif cited.startswith("EPA eGRID"):
        what = f"citing EPA eGRID NERC {cited.split('NERC region ', 1)[1].split()[0]}"
    elif cited.startswith("Google region carbon data"):
        what = "citing Google region carbon data"
    elif cited.startswith("EEA"):
        what = "citing EEA"
    elif cited.startswith("source not stated"):
        what = "source not stated"
    else:
        raise SystemExit(f"CCF source {source!r}: add it to _ccf_source")
    # "inferred": CCF names no source for the row; its value equals rows that cite this one
    return _short_source(f"Cloud Carbon Footprint ({'inferred: ' if inferred else ''}{what})"
                         ", Apache-2.0")


def ccf_rows(src: Path, known_codes: set[str]) -> list[dict[str, str]]:
    provider_names = {"aws": "AWS", "azure": "Azure", "gcp": "GCP"}
    rows = []
    for r in _read(src / "cloud_regions.csv"):
        cloud_code = r["code"]
        region = cloud_code.split(":", 1)[1]
        where = f", {r['location']}" if r["location"] else ""
        mapped_to, mapping = "", ""
        if r["provider"] in ("aws", "azure"):
            if cloud_code not in CLOUD_GRID_MAP:
                raise SystemExit(f"{cloud_code}: add it to CLOUD_GRID_MAP")
            mapped_to, reason = CLOUD_GRID_MAP[cloud_code]
            if mapped_to and mapped_to not in known_codes:
                raise SystemExit(f"{cloud_code}: grid {mapped_to} is not a bundled region")
            where_ccf = f"CCF location name '{r['location']}'" if r["location"] else "CCF location"
            mapping = f"{where_ccf}: {reason}"
        rows.append({
            "code": "ccf:" + cloud_code,
            "name": f"{provider_names[r['provider']]} {region}{where} (CCF factor)",
            "kind": "ccf_cloud_region", "gco2_per_kwh": r["gco2_per_kwh"], "year": r["year"],
            "source": _ccf_source(r["source"]), "provenance": r["source"],
            "licence": r["licence"], "definition": _ccf_definition(r["source"]),
            "note": _ccf_year_note(r["source"], r["year"]),
            "cloud_code": cloud_code, "provider": r["provider"], "location": r["location"],
            "mapped_to": mapped_to, "mapping_source": mapping,
            "country": _gcp_country(cloud_code, r["location"]) if r["provider"] == "gcp" else "",
        })
    return rows


def ipcc_rows() -> list[dict[str, str]]:
    return [
        {
            "key": key, "technology": tech, "aliases": aliases, "gco2e_per_kwh": value,
            "source": _short_source(IPCC_SOURCE), "provenance": IPCC_PROVENANCE,
            "licence": "cited figures (facts from a published report)",
            "definition": IPCC_DEFINITION,
        }
        for key, tech, aliases, value in IPCC_ROWS
    ]


def _sources_md(tables: dict[str, list[dict[str, str]]]) -> str:
    def first(name: str, col: str) -> str:
        return tables[name][0][col]

    lines = [
        "# Bundled grid-factor tables",
        "",
        "Generated by `scripts/build_grid_tables.py` from the source CSVs in",
        "`shared/data/grid/` (each read from a primary file at a pinned commit, see that folder's",
        "README.md and SUBNATIONAL_SOURCES.md). Do not edit by hand; rebuild instead.",
        "Each table carries one licence, so share-alike data stays in files of its own.",
        "",
    ]
    for name, rows in tables.items():
        years = sorted({r.get("year", "") for r in rows if r.get("year")})
        year_text = f"{years[0]}-{years[-1]}" if len(years) > 1 else (years[0] if years else "-")
        lines += [f"## `{name}`", "", f"- Rows: {len(rows)}; years: {year_text}"]
        if "licence" in rows[0]:
            lines += [
                f"- Licence: {first(name, 'licence')}",
                f"- Definition: {first(name, 'definition')}",
                "- Source, as summaries show it:",
                *(f"  - `{s}`" for s in _distinct(rows, "source")),
                "- Copied from (provenance):",
                *(f"  - {p}" for p in _distinct(rows, "provenance")),
            ]
        lines += SOURCE_NOTES.get(name, [])
        lines.append("")
    return "\n".join(lines)


def _distinct(rows: list[dict[str, str]], col: str) -> list[str]:
    """The values of `col` in first-seen order, each once."""
    return list(dict.fromkeys(r[col] for r in rows if r.get(col)))


SOURCE_NOTES = {
    "owid_countries.csv": [
        "- Built from `countries.csv` (latest year per ISO country, and WORLD) and",
        "  `owid_carbon_intensity_elec.csv` (Kosovo as `XK`; Ember's aggregates such as",
        "  `EU (Ember)` as `EU`), both in shared/data/grid (see its SOURCES.md). Values are",
        "  rounded to 1 decimal, half-up, as `countries.csv` is. OWID's own aggregates (income",
        "  groups, `OWID_EU27`, ...) are not Ember's and are left out.",
        "- Attribution: Source: Our World in Data - Energy dataset",
        "  (https://github.com/owid/energy-data), carbon_intensity_elec, based on Ember -",
        "  Yearly Electricity Data and Yearly Electricity Data Europe (and the Energy Institute",
        "  Statistical Review of World Energy). CC BY 4.0.",
        "- Replaces the older co2.js republication of Ember (CC BY-SA 4.0), a different Ember",
        "  release: no country value comes from it any more, so the two are never mixed.",
    ],
    "owid_countries_history.csv": [
        "- Every year of every region in `owid_countries.csv` (OWID extract"
        " `owid_carbon_intensity_elec.csv`),",
        "  rounded like the latest values: `track(grid_year=2023)` reads it. Same source, licence",
        "  and definition as `owid_countries.csv`; the newest year of each code equals its value",
        "  there (the build checks it).",
    ],
    "electricitymaps_zones.csv": [
        "- Attribution: contains data from Electricity Maps (electricitymaps.com), yearly averages",
        "  2025, as republished by co2.js. Made available under the Open Database License",
        "  (ODbL-1.0): attribute, share derived databases alike, keep them open.",
        "- Codes: zone ids without the `emaps:` prefix (`SE-SE3`, `AU-NSW`, `CA-QC`, `IN-NO`),",
        "  except `emaps:FI` (Finland stays Ember's country code `FI`).",
    ],
    "egrid_us.csv": [
        "- Value column: eGRID's CO2e output rate; the CO2-only rate is kept in",
        "  `co2_only_gco2_per_kwh`. The U.S. total is `US-eGRID-US` (`US` is Ember's country).",
    ],
    "google_cloud_regions.csv": [
        "- `country`: the ISO country each region is in, read off Google's location names by",
        "  hand (GCP_COUNTRY in the build script); it names the country in emissions.csv, it is",
        "  not a factor.",
    ],
    "ccf_cloud_regions.csv": [
        "- Codes `ccf:<provider>:<region>`. `mapped_to` names the grid (country, US state,",
        "  province, bidding zone or Indian regional grid) each AWS/Azure region sits in, read off",
        "  CCF's location names by hand; `aws:`/`azure:` codes use that grid's newest value.",
    ],
    "ipcc_ar5_lifecycle.csv": [
        "- Values as given by the product owner in the issue (IPCC AR5 WG3 Annex III medians).",
    ],
}


def build(src: Path, out: Path) -> list[Path]:
    countries, history = owid_rows(src)
    egrid = egrid_rows(src)
    emaps = emaps_rows(src)
    google = google_rows(src)
    codes = [r["code"].casefold() for r in countries + egrid + emaps + google]
    repeated = sorted({c for c in codes if codes.count(c) > 1})
    if repeated:
        raise SystemExit(f"region codes repeated across the tables: {repeated}")
    known = {r["code"] for r in countries + egrid + emaps + google}
    ccf = ccf_rows(src, known)
    ccf_extra = ["cloud_code", "provider", "location", "mapped_to", "mapping_source", "country"]
    tables = {
        "owid_countries.csv": (REGION_COLUMNS, countries),
        "owid_countries_history.csv": (["code", "year", "gco2_per_kwh"], history),
        "egrid_us.csv": ([*REGION_COLUMNS, "co2_only_gco2_per_kwh"], egrid),
        "electricitymaps_zones.csv": (REGION_COLUMNS, emaps),
        "google_cloud_regions.csv": ([*REGION_COLUMNS, "google_cfe_pct", "country"], google),
        "ccf_cloud_regions.csv": ([*REGION_COLUMNS, *ccf_extra], ccf),
        "ipcc_ar5_lifecycle.csv": (
            ["key", "technology", "aliases", "gco2e_per_kwh", "source", "licence", "definition"],
            ipcc_rows(),
        ),
    }
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, (columns, rows) in tables.items():
        path = out / name
        with open(path, "w", encoding="utf-8", newline="") as f:  # 3.9: no write_text(newline=)
            f.write(_csv_text(columns, rows))
        written.append(path)
    sources = out / "SOURCES.md"
    sources.write_text(_sources_md({n: rows for n, (_, rows) in tables.items()}), encoding="utf-8")
    written.append(sources)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source_dir", nargs="?", type=Path, default=DEFAULT_SOURCE_DIR)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT_DIR)
    args = parser.parse_args(argv)
    if not (args.source_dir / "countries.csv").is_file():
        print(f"no source tables in {args.source_dir}", file=sys.stderr)
        return 2
    for path in build(args.source_dir, args.out):
        print(path)
    # the prebuilt lookup index over the tables just written (scripts/build_region_index.py)
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from tracker.carbon.regions import write_index
    for path in write_index(args.out):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
