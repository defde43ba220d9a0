"""The bundled tables are exactly what scripts/build_grid_tables.py makes from the sources."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SOURCE_DIR = REPO.parent / "shared" / "data" / "grid"
BUNDLED = REPO / "tracker" / "carbon" / "data"


@pytest.mark.skipif(not SOURCE_DIR.is_dir(), reason="../shared/data/grid not present")
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
    for name, licence in [
        ("ember_countries.csv", "CC BY-SA 4.0"),
        ("electricitymaps_zones.csv", "ODbL-1.0"),
    ]:
        lines = (BUNDLED / name).read_text(encoding="utf-8").splitlines()[1:]
        assert lines and all(licence in line for line in lines), name
    sources = (BUNDLED / "SOURCES.md").read_text(encoding="utf-8")
    assert "Attribution: contains data from Ember" in sources
    assert "Attribution: contains data from Electricity Maps" in sources
