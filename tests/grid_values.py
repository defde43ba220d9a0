"""Expected grid factors read straight from the bundled tables' CSV files (not through the
lookup code under test), so tests follow the data when the tables are rebuilt from newer
sources. test_carbon_tables.py checks that those files are exactly what the build makes from
the source tables (copied into tests/data/grid by scripts/build_test_data.py)."""

from __future__ import annotations

import csv
from pathlib import Path

DATA = Path(__file__).resolve().parents[1] / "tracker" / "carbon" / "data"


def _rows(name: str) -> list[dict[str, str]]:
    with open(DATA / name, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def country(code: str) -> tuple[float, int]:
    """(gCO2e/kWh, year) of a country or aggregate in owid_countries.csv."""
    row = next(r for r in _rows("owid_countries.csv") if r["code"] == code)
    return float(row["gco2_per_kwh"]), int(row["year"])


def country_in(code: str, year: int) -> float:
    """A country's value in one year (owid_countries_history.csv)."""
    return next(float(r["gco2_per_kwh"]) for r in _rows("owid_countries_history.csv")
                if r["code"] == code and int(r["year"]) == year)
