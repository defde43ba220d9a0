"""Time-resolved emissions: energy per intensity period, gaps, what-if comparisons."""

from __future__ import annotations

import pytest
from grid_values import country

from tracker.carbon import (
    IntensityPeriod,
    account_emissions,
    compare_regions,
    extremes,
    resolve_factor,
)
from tracker.errors import ConfigError

J_PER_KWH = 3.6e6
GB_G, GB_YEAR = country("GB")   # the bundled table's value: tests follow the data


def two_then_one_kw(wall: float) -> float:
    """Cumulative energy of a job drawing 2 kW for the first hour after t=1000, then 1 kW."""
    t = wall - 1000.0
    return 2000.0 * t if t <= 3600 else 2000.0 * 3600 + 1000.0 * (t - 3600)


def period(start, end, g, fallback=False, note=""):
    return IntensityPeriod(start, end, g, "uk", "GB", fallback, note)


@pytest.fixture
def gb():
    return resolve_factor("GB")


def test_two_periods_give_exact_co2(gb):
    periods = [period(1000, 4600, 100.0), period(4600, None, 300.0)]
    result = account_emissions(two_then_one_kw, 1000, 8200, gb, periods)
    # 2 kWh at 100 g/kWh + 1 kWh at 300 g/kWh
    assert result.energy_j == 3 * J_PER_KWH
    assert result.emissions_g == pytest.approx(500.0)
    assert result.gco2_per_kwh_effective == pytest.approx(500.0 / 3)
    assert result.gco2_per_kwh_time_weighted == pytest.approx(200.0)
    assert [p["gco2_per_kwh"] for p in result.parts] == [100.0, 300.0]
    assert [p["energy_j"] for p in result.parts] == [2 * J_PER_KWH, 1 * J_PER_KWH]
    assert not result.fallback_used and result.notes == []


def test_no_periods_uses_the_factor(gb):
    result = account_emissions(two_then_one_kw, 1000, 8200, gb)
    assert result.emissions_g == pytest.approx(3 * GB_G)
    assert result.parts[0]["provider"] == "annual" and not result.fallback_used


def test_window_inside_periods_is_clipped(gb):
    periods = [period(0, 4600, 100.0), period(4600, 99999, 300.0)]
    result = account_emissions(two_then_one_kw, 2800, 6400, gb, periods)
    # 1800 s at 2 kW (1 kWh) at 100, then 1800 s at 1 kW (0.5 kWh) at 300
    assert result.emissions_g == pytest.approx(100.0 + 150.0)
    assert [(p["start_wall"], p["end_wall"]) for p in result.parts] == [(2800, 4600), (4600, 6400)]


def test_gap_before_first_period_uses_factor_and_is_flagged(gb):
    periods = [period(4600, None, 50.0)]
    result = account_emissions(two_then_one_kw, 1000, 8200, gb, periods)
    assert result.emissions_g == pytest.approx(2 * GB_G + 1 * 50.0)
    assert result.fallback_used
    assert result.parts[0]["fallback"] and result.parts[0]["provider"] == "annual"
    assert result.notes == [
        f"3600 s not covered by live intensity: annual GB (Ember {GB_YEAR}) used"]


def test_fallback_period_note_is_reported(gb):
    note = f"uk: HTTP 500 after 3 tries; offline annual factor for GB (Ember {GB_YEAR}) used"
    periods = [period(1000, None, GB_G, fallback=True, note=note)]
    result = account_emissions(two_then_one_kw, 1000, 8200, gb, periods)
    assert result.fallback_used and result.notes == [note]
    assert result.to_dict()["emissions_kg"] == pytest.approx(3 * GB_G / 1000)


def test_zero_length_window(gb):
    result = account_emissions(two_then_one_kw, 1000, 1000, gb)
    assert result.emissions_g == 0 and result.gco2_per_kwh_effective == GB_G


def test_reversed_window(gb):
    with pytest.raises(ConfigError):
        account_emissions(two_then_one_kw, 10, 5, gb)


def test_compare_regions():
    rows = compare_regions(10.0, ["PL", "FR", "US-CA"])
    assert [r["code"] for r in rows] == ["FR", "US-CA", "PL"]
    assert rows[0]["emissions_g"] == pytest.approx(10.0 * country("FR")[0])
    assert rows[2]["emissions_kg"] == pytest.approx(10.0 * country("PL")[0] / 1000)


def test_extremes():
    best, worst = extremes("country")
    assert (best.code, worst.code) == ("CF", "TM")
    low, high = extremes("us_state")
    assert (low.code, high.code) == ("US-VT", "US-WV")
    with pytest.raises(ConfigError, match="Kinds:"):
        extremes("planet")


def test_open_periods_end_where_the_next_one_starts(gb):
    """A run log records each period as it starts (end unknown): rebuilt, each must end where
    the next value took over, not run to the window's end."""
    logged = [period(4600, None, 300.0), period(1000, None, 100.0)]   # any order
    result = account_emissions(two_then_one_kw, 1000, 8200, gb, logged)
    assert result.emissions_g == pytest.approx(2 * 100.0 + 1 * 300.0)
    assert [(p["start_wall"], p["end_wall"]) for p in result.parts] == [(1000, 4600),
                                                                        (4600, 8200)]
    closed = [period(1000, 4600, 100.0), period(4600, None, 300.0)]
    assert account_emissions(two_then_one_kw, 1000, 8200, gb, closed).emissions_g == \
        pytest.approx(result.emissions_g)
