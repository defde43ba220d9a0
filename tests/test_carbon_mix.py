"""Energy-mix factors from IPCC AR5 lifecycle medians and the region's grid."""

from __future__ import annotations

import pytest
from grid_values import country

from tracker.carbon import known_sources, resolve_factor
from tracker.carbon.mix import technologies
from tracker.errors import ConfigError

IPCC_MEDIANS = {
    "coal": 820, "gas": 490, "biomass": 230, "solar": 48, "geothermal": 38, "hydro": 24,
    "nuclear": 12, "wind": 11,
}


def test_bundled_ipcc_values():
    table = technologies()
    assert {k: table[k].gco2_per_kwh for k in IPCC_MEDIANS} == IPCC_MEDIANS
    assert table["solar_pv_utility"].key == "solar" and table["wind_onshore"].key == "wind"
    assert "Table A.III.2" in table["coal"].source


def test_wind_and_grid_share():
    factor = resolve_factor("DE", mix={"wind": 0.7, "grid": 0.3})
    assert factor.gco2_per_kwh == pytest.approx(0.7 * 11 + 0.3 * country("DE")[0], abs=1e-9)
    assert factor.kind == "mix" and factor.region_code == "DE"
    assert "IPCC" in factor.source and "Ember" in factor.source
    assert factor.region_name == "mix: wind 70 %, grid 30 % (grid DE)"


def test_pure_technology_mix():
    factor = resolve_factor(mix={"Solar": 0.5, "nuclear": 0.25, "wind_onshore": 0.25})
    assert factor.gco2_per_kwh == pytest.approx(0.5 * 48 + 0.25 * 12 + 0.25 * 11)
    assert (factor.region_code, factor.year, factor.is_default) == ("mix", 2014, False)


def test_grid_without_region_uses_world_and_says_so():
    factor = resolve_factor(mix={"hydro": 0.5, "grid": 0.5})
    assert factor.gco2_per_kwh == pytest.approx(0.5 * 24 + 0.5 * country("WORLD")[0])
    assert factor.region_code == "WORLD"
    assert f"without a region: world average (WORLD (Ember {country('WORLD')[1]}))" in factor.note


@pytest.mark.parametrize(
    ("mix", "message"),
    [
        ({"wind": 0.7, "grid": 0.2}, "sum to 1"),
        ({"wind": 1.2, "coal": -0.2}, ">= 0"),
        ({"wind": float("nan"), "grid": 1.0}, ">= 0"),
        ({"fusion": 1.0}, "Known: biomass, coal, gas, geothermal, grid, hydro, nuclear, solar"),
        ({"wind": "half", "grid": 0.5}, "must be a number"),
        ({}, "non-empty"),
    ],
)
def test_bad_mixes(mix, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        resolve_factor("DE", mix=mix)


def test_shares_within_tolerance_are_accepted():
    factor = resolve_factor(mix={"coal": 0.3333333, "gas": 0.3333333, "wind": 0.3333334})
    assert factor.gco2_per_kwh == pytest.approx((820 + 490 + 11) / 3, rel=1e-6)


def test_known_sources():
    assert known_sources() == [
        "biomass", "coal", "gas", "geothermal", "grid", "hydro", "nuclear", "solar", "wind",
    ]
