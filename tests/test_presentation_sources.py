"""A grid factor's source reads as publisher, dataset, year and licence; where the bundled bytes
were copied from (repositories, commits, mirrors) is in data/SOURCES.md and nowhere else."""

from __future__ import annotations

import csv
import importlib.util
import re
import sys
from pathlib import Path

import pytest

from tracker.carbon import all_regions, resolve_factor
from tracker.carbon.citation import LICENCES, citation
from tracker.carbon.gridfactor import factor_for_region
from tracker.carbon.mix import mix_factor
from tracker.end_block import MAX_SOURCE_CHARS, end_block
from tracker.summary import Summary

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tracker" / "carbon" / "data"
TABLES = ("owid_countries.csv", "egrid_us.csv", "electricitymaps_zones.csv",
          "google_cloud_regions.csv", "ccf_cloud_regions.csv", "ipcc_ar5_lifecycle.csv",
          "regions_resolved.csv")
# a commit ("@2f9bd5a"), a repository path ("owner/name"), a file inside one
PROVENANCE = re.compile(r"@[0-9a-f]{7}|\w+/[\w.-]+|\.(json|xlsx|csv|pdf)\b")


def _sources(table: str) -> set[str]:
    with (DATA / table).open(newline="", encoding="utf-8") as f:
        return {row["source"] for row in csv.DictReader(f)}


@pytest.mark.parametrize("table", TABLES)
def test_every_bundled_source_is_publisher_dataset_and_licence(table):
    sources = _sources(table)
    assert sources, table
    for source in sources:
        assert len(source) <= 80, source
        head, _, licence = source.rpartition(", ")
        assert head and licence in LICENCES, source            # "<publisher dataset>, <licence>"
        assert source.count(", ") == 1 and ";" not in source, source
        assert not PROVENANCE.search(source), source            # no mirror, commit or file


def test_the_provenance_is_kept_in_sources_md_only():
    text = (DATA / "SOURCES.md").read_text(encoding="utf-8")
    # the mirror the countries' bytes came from: named once, in SOURCES.md
    assert "sayanarman/CAP6938-Final-Project@2f9bd5a" in text
    assert "USEPA/power-profiler@f42a47a" in text
    for table in TABLES:
        assert "sayanarman" not in (DATA / table).read_text(encoding="utf-8"), table
    # and SOURCES.md names the short source each table's rows carry
    for table in TABLES[:-1]:
        for source in _sources(table):
            assert f"`{source}`" in text, source


def test_the_build_script_refuses_a_long_or_mirror_naming_source():
    spec = importlib.util.spec_from_file_location("_build", ROOT / "scripts" /
                                                  "build_grid_tables.py")
    assert spec is not None and spec.loader is not None
    build = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(spec.name, build)
    spec.loader.exec_module(build)
    assert build._short_source(build.OWID_SOURCE) == build.OWID_SOURCE
    with pytest.raises(SystemExit, match="at most 80"):
        build._short_source(build.OWID_PROVENANCE)      # the old, 256-character source
    with pytest.raises(SystemExit):
        build._short_source("Ember via OWID, mirror x, CC BY 4.0")     # two ", "


def test_a_citation_puts_the_year_before_the_licence():
    de = factor_for_region("DE")
    assert citation(de.source, de.year) == \
        f"Ember via Our World in Data (energy dataset), {de.year}, CC BY 4.0"
    assert citation(de.source, None).endswith("year n/a, CC BY 4.0")
    # a source that is not "<...>, <known licence>" is kept whole, the year after it
    assert citation("Acme Grid operator, 5-minute intensity", 2025) == \
        "Acme Grid operator, 5-minute intensity, 2025"
    assert citation(None, None) == "source n/a, year n/a"


@pytest.mark.parametrize("code,short", [("DE", "Ember"), ("US-CA", "EPA eGRID"),
                                        ("SE-SE3", "Electricity Maps"),
                                        ("gcp:europe-west1", "Google"),
                                        ("ccf:azure:apeast", "CCF")])
def test_labels_name_the_publisher(code, short):
    f = factor_for_region(code)
    assert f.label == (f"{f.region_code} ({short} {f.year})" if f.year is not None else
                       f"{f.region_code} ({short})")


def _summary(grid: dict) -> Summary:
    return Summary(
        run_id="r", name="n", status="finished", started_utc="", ended_utc="", duration_s=1.0,
        energy_j=600.0, pue=1.0, pue_source="user", facility_energy_j=600.0,
        emissions_kg=6e-5, emissions_rate_kg_per_s=None, gco2_per_kwh=grid["gco2_per_kwh"],
        grid=grid, devices=(), components={}, carbon={}, windows=(), steps={}, notes=(),
        degraded=())


def test_no_bundled_source_is_cut_at_the_end_of_a_run():
    """Every bundled region, and every mix with one, fits the end block whole."""
    longest = 0
    for region in all_regions():
        for factor in (factor_for_region(region.code),
                       mix_factor({"wind": 0.5, "grid": 0.5}, factor_for_region(region.code))):
            longest = max(longest, len(factor.source))
            block = end_block(_summary(factor.to_dict()))
            assert "…" not in block and factor.source.rpartition(", ")[0] in block, factor.source
    assert longest <= MAX_SOURCE_CHARS
    # a live provider's longer text is still cut to one line
    long = dict(factor_for_region("DE").to_dict(), source="x" * 300)
    assert "…" in end_block(_summary(long))


def test_the_summary_cites_the_factor(tmp_path):
    factor = resolve_factor("FR")
    text = _summary(factor.to_dict()).format()
    assert f"(FR: France; {citation(factor.source, factor.year)})" in text
    assert "@" not in text and "sayanarman" not in text
