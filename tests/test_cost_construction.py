"""Constructing a tracker is cheap: one row of the grid tables through the prebuilt index, no
HTTP stack; the index is fresh (built by scripts/build_region_index.py from the tables), and a
bad region is still refused at construction with close matches."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tracker import track
from tracker.carbon import regions
from tracker.errors import ConfigError, UnknownRegionError

ROOT = Path(__file__).resolve().parent.parent


def test_the_prebuilt_index_is_fresh_and_matches_the_tables(tmp_path):
    # built from these very tables (else: run scripts/build_region_index.py)
    head = (regions.DATA_DIR / regions.INDEX_TABLE).read_text().splitlines()[0]
    assert head == f"tables_sha256,{regions.tables_digest()}", \
        "stale region index: run scripts/build_region_index.py"
    # rebuilt here it is the same bytes: nothing in it is typed by hand
    for name in regions.SOURCE_TABLES:
        (tmp_path / name).write_bytes((regions.DATA_DIR / name).read_bytes())
    keyed, resolved = regions.write_index(tmp_path)
    assert keyed.read_bytes() == (regions.DATA_DIR / regions.INDEX_TABLE).read_bytes()
    assert resolved.read_bytes() == (regions.DATA_DIR / regions.RESOLVED_TABLE).read_bytes()


def test_every_key_of_the_index_gives_the_region_the_tables_give():
    keys = regions._read_prebuilt()
    assert keys is not None
    full = regions._load().by_key
    assert keys.keys() == full.keys()
    for key, offset in keys.items():
        assert regions._resolved_row(offset) == full[key], key


def test_a_stale_index_is_not_used(tmp_path, monkeypatch):
    for name in regions.SOURCE_TABLES:
        (tmp_path / name).write_bytes((regions.DATA_DIR / name).read_bytes())
    regions.write_index(tmp_path)
    table = tmp_path / regions.REGION_TABLES[0]
    table.write_text(table.read_text().replace("Germany", "Deutschland"))   # tables changed
    monkeypatch.setattr(regions, "DATA_DIR", tmp_path)
    assert regions._read_prebuilt() is None


CONSTRUCT = """
import sys, tempfile
from tracker import track
import tracker.carbon.regions as r
t = track("x", output_dir=tempfile.mkdtemp(), region=sys.argv[1])
print(t.factor.region_code, r._index is None, "requests" in sys.modules)
"""


@pytest.mark.parametrize(("region", "code"), [("DE", "DE"), ("aws:us-east-1", "aws:us-east-1"),
                                              ("California", "US-CA")])
def test_construction_reads_one_row_and_no_http_stack(tmp_path, region, code):
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENERGY_TRACKER_")}
    env["PYTHONPATH"] = str(ROOT)
    out = subprocess.run([sys.executable, "-c", CONSTRUCT, region], capture_output=True,
                         text=True, env=env, cwd=tmp_path, check=True).stdout.split()
    # the tables were not parsed in full, and requests (live providers) was not imported
    assert out == [code, "True", "False"]


def test_a_bad_region_is_still_refused_at_construction_with_close_matches(tmp_path):
    with pytest.raises((UnknownRegionError, ConfigError)) as info:
        track("x", output_dir=tmp_path, region="Germani")
    assert "DE" in str(info.value)
    with pytest.raises(UnknownRegionError) as info2:
        regions.lookup("aws:us-east-9")
    assert "aws:us-east-1" in info2.value.suggestions
