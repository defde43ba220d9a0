"""Bundled regions: value ranges, sources, code parsing, search and cloud mapping."""

from __future__ import annotations

import subprocess
import sys

import pytest
from grid_values import country

from tracker.carbon import all_regions, lookup, resolve_factor, search
from tracker.errors import ConfigError, UnknownRegionError


def test_every_value_is_plausible_and_sourced():
    regions = all_regions()
    assert len(regions) > 600
    for r in regions:
        assert 0 <= r.gco2_per_kwh <= 1400, r.code
        assert r.source and r.licence and r.definition, r.code
        if r.year is None:
            assert r.note.startswith("no year:"), r.code
        else:
            # Western Sahara's newest published value is 2009 (Ember via OWID); all else >= 2014
            assert 2014 <= r.year <= 2025 or (r.code, r.year) == ("EH", 2009), r.code


def test_codes_are_unique_case_insensitively():
    codes = [r.code.casefold() for r in all_regions()]
    assert len(codes) == len(set(codes))


@pytest.mark.parametrize("clean", ["NO", "SE", "FR"])
@pytest.mark.parametrize("dirty", ["PL", "ZA", "IN"])
def test_known_orderings(clean, dirty):
    assert lookup(clean).gco2_per_kwh < 100 < 500 < lookup(dirty).gco2_per_kwh


def test_known_values_from_the_sources():
    # countries and aggregates: Ember via Our World in Data (see grid_values.py)
    assert lookup("DE").gco2_per_kwh == country("DE")[0]
    assert lookup("WORLD").gco2_per_kwh == country("WORLD")[0]
    # the source names the publisher and dataset, and the licence; never a mirror
    assert lookup("DE").source == "Ember via Our World in Data (energy dataset), CC BY 4.0"
    # eGRID: the CO2e column, not CO2 (194.348)
    assert lookup("US-eGRID-CAMX").gco2_per_kwh == 195.037
    assert lookup("US-CA").gco2_per_kwh == 179.064
    assert lookup("SE-SE3").gco2_per_kwh == 20
    assert lookup("gcp:europe-west4").gco2_per_kwh == 208.81


@pytest.mark.parametrize(
    ("query", "code"),
    [
        ("DE", "DE"), ("de", "DE"), ("DEU", "DE"), ("deu", "DE"), ("Germany", "DE"),
        ("  germany ", "DE"), ("UK", "GB"), ("GBR", "GB"), ("United Kingdom", "GB"),
        ("us", "US"), ("USA", "US"), ("us-ca", "US-CA"), ("California", "US-CA"),
        ("us-egrid-camx", "US-eGRID-CAMX"), ("US-eGRID-US", "US-eGRID-US"),
        ("SE3", "SE-SE3"), ("se-se3", "SE-SE3"), ("emaps:SE-SE3", "SE-SE3"), ("NO1", "NO-NO1"),
        ("DK1", "DK-DK1"), ("FI", "FI"), ("emaps:FI", "emaps:FI"), ("ca-qc", "CA-QC"),
        ("AU-NSW", "AU-NSW"), ("IN-NO", "IN-NO"), ("world", "WORLD"), ("eu", "EU"),
        ("Georgia", "GE"), ("US-GA", "US-GA"), ("KY", "KY"), ("CY", "CY"),
        ("GCP:europe-west4", "gcp:europe-west4"), ("AWS:US-EAST-1", "aws:us-east-1"),
        ("azure:westeurope", "azure:westeurope"), ("ccf:aws:us-east-1", "ccf:aws:us-east-1"),
    ],
)
def test_lookup_accepts_codes_aliases_and_names(query, code):
    assert lookup(query).code == code


def test_country_and_zone_definitions_stay_apart():
    us, egrid_us = lookup("US"), lookup("US-eGRID-US")
    assert (us.kind, us.year) == ("country", country("US")[1])
    assert egrid_us.kind == "egrid_national" and egrid_us.gco2_per_kwh == 349.667
    assert lookup("FI").kind == "country" and lookup("emaps:FI").kind == "nordic_bidding_zone"
    assert "lifecycle" in us.definition and "direct" in egrid_us.definition
    assert "consumption-based" in lookup("SE3").definition


def test_unknown_region_lists_close_matches():
    with pytest.raises(UnknownRegionError) as info:
        lookup("Germny")
    err = info.value
    assert isinstance(err, ConfigError) and isinstance(err, ValueError)
    assert err.suggestions[0] == "DE"
    assert 1 <= len(err.suggestions) <= 5
    assert "Did you mean: DE" in str(err)


def test_unknown_region_without_close_matches():
    with pytest.raises(UnknownRegionError) as info:
        lookup("qqqqqqqqqqqq")
    assert info.value.suggestions == []


def test_search_us_lists_states_and_egrid_subregions():
    codes = [r.code for r in search("US")]
    assert codes[0] == "US"
    assert {"US-CA", "US-TX", "US-eGRID-CAMX", "US-eGRID-ERCT", "US-eGRID-US"} <= set(codes)


def test_search_none_lists_everything_and_kind_matches():
    assert len(search(None)) == len(all_regions())
    zones = search("nordic_bidding_zone")
    assert {r.code for r in zones} >= {"SE-SE1", "NO-NO5", "DK-DK2", "emaps:FI"}


def test_aws_region_uses_the_grid_it_sits_in():
    aws = lookup("aws:us-east-1")
    virginia = lookup("US-VA")
    assert aws.mapped_to == "US-VA"
    assert aws.gco2_per_kwh == virginia.gco2_per_kwh == 244.758
    assert (aws.year, aws.source, aws.licence) == (virginia.year, virginia.source, virginia.licence)
    assert "US East (N. Virginia)" in aws.mapping_source
    # CCF's own, older factor stays reachable
    ccf = lookup("ccf:aws:us-east-1")
    assert ccf.gco2_per_kwh == 379.069 and ccf.year is None
    assert "eGRID edition" in ccf.note


@pytest.mark.parametrize(
    ("cloud", "grid"),
    [
        ("azure:westeurope", "NL"), ("aws:eu-north-1", "SE-SE3"), ("azure:canadaeast", "CA-QC"),
        ("aws:ap-southeast-2", "AU-NSW"), ("azure:westus2", "US-WA"), ("aws:eu-west-2", "GB"),
    ],
)
def test_cloud_mapping(cloud, grid):
    region = lookup(cloud)
    assert region.mapped_to == grid
    assert region.gco2_per_kwh == lookup(grid).gco2_per_kwh


def test_unmappable_cloud_region_keeps_ccf_factor():
    region = lookup("azure:asia")
    assert region.mapped_to == "ccf:azure:asia"
    assert region.gco2_per_kwh == lookup("ccf:azure:asia").gco2_per_kwh == 564.7
    assert "CCF's own factor" in region.mapping_source


def test_gcp_uses_google_2024_not_ccf():
    gcp = lookup("gcp:europe-west4")
    assert (gcp.gco2_per_kwh, gcp.year, gcp.mapped_to) == (208.81, 2024, None)
    assert lookup("ccf:gcp:europe-west4").gco2_per_kwh == 283


def test_default_is_world_average():
    factor = resolve_factor()
    assert factor.region_code == "WORLD" and factor.is_default
    value, year = country("WORLD")
    assert factor.gco2_per_kwh == value
    assert factor.note == f"no region given: world average (Ember {year})"


def test_region_factor_carries_source_and_definition():
    factor = resolve_factor("aws:us-east-1")
    assert factor.region_code == "aws:us-east-1" and not factor.is_default
    assert factor.kind == "annual" and factor.year == 2023
    assert "uses US-VA" in factor.note
    assert factor.to_dict()["definition"].startswith("direct")


@pytest.mark.parametrize("bad", [-1, 2000.5, float("nan"), float("inf"), "300", True])
def test_override_is_validated(bad):
    with pytest.raises(ConfigError):
        resolve_factor(gco2_per_kwh=bad)


def test_override_wins():
    factor = resolve_factor("DE", gco2_per_kwh=0, mix={"wind": 1.0})
    assert (factor.gco2_per_kwh, factor.kind, factor.region_code) == (0.0, "override", "DE")
    assert "ignored" in factor.note
    assert resolve_factor(gco2_per_kwh=2000).gco2_per_kwh == 2000.0


def test_bad_region_argument():
    with pytest.raises(ConfigError):
        resolve_factor("   ")
    with pytest.raises(UnknownRegionError):
        resolve_factor("Atlantis")


def test_tables_are_not_read_at_import():
    code = (
        "import tracker, tracker.carbon, tracker.carbon.regions as r; "
        "assert r._index is None and not r._prebuilt_checked; r.lookup('DE'); "
        "assert r._index is not None or r._prebuilt_keys is not None"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_region_to_dict():
    d = lookup("SE3").to_dict()
    assert d["code"] == "SE-SE3" and d["aliases"] == ["emaps:SE-SE3", "SE3"]
