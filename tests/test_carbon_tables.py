"""The bundled tables are exactly what scripts/build_grid_tables.py makes from the sources."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SOURCE_DIR = REPO / "tests" / "data" / "grid"   # the source tables, copied: build_test_data.py
BUNDLED = REPO / "tracker" / "carbon" / "data"


def test_build_reproduces_bundled_tables_byte_for_byte(tmp_path):
    script = REPO / "scripts" / "build_grid_tables.py"
    subprocess.run(
        [sys.executable, str(script), str(SOURCE_DIR), "--out", str(tmp_path)],
        check=True, capture_output=True,
    )
    built = sorted(p.name for p in tmp_path.iterdir())
    bundled = sorted(p.name for p in BUNDLED.iterdir() if p.suffix in (".csv", ".md"))
    assert built == bundled
    for name in built:
        assert (tmp_path / name).read_bytes() == (BUNDLED / name).read_bytes(), name


def test_share_alike_tables_are_files_of_their_own():
    lines = (BUNDLED / "electricitymaps_zones.csv").read_text(encoding="utf-8").splitlines()[1:]
    assert lines and all("ODbL-1.0" in line for line in lines)
    # Countries come from Ember via Our World in Data (CC BY 4.0): no share-alike table left
    for path in BUNDLED.glob("*.csv"):
        assert "CC BY-SA" not in path.read_text(encoding="utf-8"), path.name
    sources = (BUNDLED / "SOURCES.md").read_text(encoding="utf-8")
    assert "Attribution: Source: Our World in Data - Energy dataset" in sources
    assert "Attribution: contains data from Electricity Maps" in sources


def test_countries_come_from_one_release_only():
    """Every country and aggregate is Ember via OWID: the older co2.js Ember table (another
    release) is gone, so no summary can mix the two."""
    assert not (BUNDLED / "ember_countries.csv").exists()
    from tracker.carbon import all_regions

    for r in all_regions():
        if r.kind in ("country", "aggregate"):
            assert r.source.startswith("Ember via Our World in Data") and \
                "CC BY 4.0" in r.licence, r.code
