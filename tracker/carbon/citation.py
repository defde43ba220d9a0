"""A grid factor's citation on one line: publisher and dataset, year, licence.

Bundled sources read "<publisher> <dataset>, <licence>" (scripts/build_grid_tables.py writes
them so; where the bytes were copied from is in data/SOURCES.md, never in a summary), and the
year is a field of its own: the two are joined here so every summary and report cites alike,
e.g. "Ember via Our World in Data (energy dataset), 2024, CC BY 4.0". No imports: the summary
text and the end-of-run block use it without loading the tables.
"""

from __future__ import annotations

from typing import Any

__all__ = ["LICENCES", "citation"]

# The licences bundled sources end with (tests/test_presentation_sources.py checks each table).
LICENCES = ("CC BY 4.0", "ODbL-1.0", "Apache-2.0", "public domain", "cited figures")


def citation(source: Any, year: Any) -> str:
    """`source` with `year` before its licence; "year n/a" when there is none. Any other source
    (a live provider's, a user's override, an older summary's) is kept whole, the year after."""
    text = str(source or "source n/a")
    when = str(year) if year not in (None, "") else "year n/a"
    head, sep, licence = text.rpartition(", ")
    if sep and head and licence in LICENCES:
        return f"{head}, {when}, {licence}"
    return f"{text}, {when}"
