"""grid_year=: a country's (or aggregate's) value in a given year, from the bundled 1990-2025
history (Ember via Our World in Data); errors that say what is available."""

from __future__ import annotations

import csv

import pytest
from grid_values import DATA, country, country_in

from tracker import track
from tracker.carbon import lookup, resolve_factor
from tracker.carbon.regions import history
from tracker.errors import ConfigError


def test_history_ends_at_the_bundled_latest_value():
    with open(DATA / "owid_countries.csv", newline="", encoding="utf-8") as f:
        latest = list(csv.DictReader(f))
    assert len(latest) > 200
    for row in latest:
        years = history(row["code"])
        assert years, row["code"]
        assert max(years) == int(row["year"]), row["code"]
        assert years[int(row["year"])] == float(row["gco2_per_kwh"]), row["code"]


def test_grid_year_pins_a_country_and_names_the_year():
    factor = resolve_factor("DE", grid_year=2023)
    assert (factor.gco2_per_kwh, factor.year) == (country_in("DE", 2023), 2023)
    assert factor.gco2_per_kwh != country("DE")[0]   # the newest year differs
    assert "grid_year=2023" in factor.note and factor.label == "DE (Ember 2023)"


def test_grid_year_without_region_is_the_world_that_year():
    factor = resolve_factor(grid_year=2010)
    assert (factor.region_code, factor.year, factor.is_default) == ("WORLD", 2010, True)
    assert factor.gco2_per_kwh == country_in("WORLD", 2010)


def test_grid_year_for_a_cloud_region_uses_its_country():
    factor = resolve_factor("aws:eu-central-1", grid_year=2020)
    assert lookup("aws:eu-central-1").mapped_to == "DE"
    assert (factor.gco2_per_kwh, factor.year) == (country_in("DE", 2020), 2020)
    assert "DE (the grid aws:eu-central-1 sits in)" in factor.note


def test_grid_year_with_a_mix_blends_that_year():
    factor = resolve_factor("FR", mix={"wind": 0.5, "grid": 0.5}, grid_year=2015)
    assert factor.gco2_per_kwh == pytest.approx(0.5 * 11 + 0.5 * country_in("FR", 2015))
    assert factor.year == 2015


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"region": "DE", "grid_year": 1985}, "it has 1990-2025"),
    ({"region": "US-CA", "grid_year": 2020}, "use the country's code"),
    ({"region": "gcp:europe-west4", "grid_year": 2019}, "for 2024 only"),
    ({"region": "DE", "grid_year": "2023"}, "must be a year such as 2023"),
    ({"region": "DE", "grid_year": True}, "must be a year such as 2023"),
    ({"region": "DE", "grid_year": 2023.0}, "must be a year such as 2023"),
])
def test_bad_grid_year_is_a_config_error(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        resolve_factor(**kwargs)


def test_grid_year_of_a_table_with_that_year_only_is_fine():
    assert resolve_factor("US-CA", grid_year=2023).gco2_per_kwh == lookup("US-CA").gco2_per_kwh


def test_override_ignores_grid_year_and_says_so():
    factor = resolve_factor("DE", gco2_per_kwh=100, grid_year=2020)
    assert factor.gco2_per_kwh == 100 and "grid_year" in factor.note


def test_track_grid_year_lands_in_the_summary(tmp_path):
    with track("pinned", region="FR", grid_year=2019, output_dir=tmp_path, gpus=[],
               emissions_csv=False) as run:
        pass
    grid = run.summary.to_dict()["grid"]
    assert (grid["year"], grid["gco2_per_kwh"]) == (2019, country_in("FR", 2019))
    assert "grid_year=2019" in grid["note"]
    assert ("(FR: France; Ember via Our World in Data (energy dataset), 2019, CC BY 4.0)"
            in run.summary.format())


def test_track_rejects_a_bad_grid_year_at_construction(tmp_path):
    with pytest.raises(ConfigError, match="must be a year such as 2023"):
        track("bad", region="FR", grid_year=1800, output_dir=tmp_path)
