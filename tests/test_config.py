"""The configuration: one validator per option, one set of bounds, no device opened."""

from __future__ import annotations

import dataclasses

import pytest

from tracker import ConfigError, Tracker, track
from tracker.config import TrackerConfig


def test_a_configuration_opens_no_device(fake_nvml, tmp_path):
    fake = fake_nvml(1)
    config = TrackerConfig.from_options("x", region="DE", pue=1.2, output_dir=tmp_path)
    assert fake.calls["nvmlInit"] == 0
    assert config.pue_value == 1.2 and config.output_dir == tmp_path.absolute()
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.pue = 2.0  # type: ignore[misc]


def test_a_callback_validates_without_opening_nvml(fake_nvml, tmp_path):
    """It used to build a throwaway Tracker (an NVML session never closed)."""
    from tracker.integrations import TrainingSession

    fake = fake_nvml(1)
    TrainingSession("x", {"region": "FR", "output_dir": str(tmp_path)})
    assert fake.calls["nvmlInit"] == 0 and fake.initialised == 0
    with pytest.raises(ConfigError, match="cpu_tdp_w"):
        TrainingSession("x", {"cpu_tdp_w": -3, "output_dir": str(tmp_path)})
    assert fake.calls["nvmlInit"] == 0


@pytest.mark.parametrize("value", [0, -1, 5000, float("nan"), True, "205"])
def test_cpu_tdp_bounds_are_the_same_everywhere(value, tmp_path):
    """One validator: the Python API, the configuration and the sensor model agree."""
    from tracker.sensors.model import validate_tdp_w

    with pytest.raises(ConfigError) as by_sensor:
        validate_tdp_w(value)
    with pytest.raises(ConfigError) as by_config:
        TrackerConfig.from_options("x", cpu_tdp_w=value, output_dir=tmp_path)
    with pytest.raises(ConfigError) as by_tracker:
        Tracker("x", cpu_tdp_w=value, output_dir=tmp_path, cpu=False, ram=False)
    assert str(by_sensor.value) == str(by_config.value) == str(by_tracker.value)


def test_a_misspelt_option_names_the_closest(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown option 'regoin'.*did you mean region"):
        track("x", regoin="DE", output_dir=tmp_path)
    with pytest.raises(ConfigError, match=r"did you mean rate_hz"):
        TrackerConfig.from_options("x", rate_hx=5)


@pytest.mark.parametrize("option, value, says", [
    ("pue", 0.9, r"pue=0.9 is out of range \[1, 10\]"),
    ("rate_hz", True, "rate_hz must be a number"),
    ("rate_hz", 1000, r"rate_hz=1000 is out of range"),
    ("gpus", "0", "gpus must be a list"),
    ("prometheus_port", 70000, "prometheus_port must be a TCP port"),
    ("job", "  ", "job must be a job id"),
    ("currency", "EUR", "currency='EUR' was given without price_per_kwh"),
    ("region", "Germny", "Germany|DE"),
    ("live_intensity", "", "live intensity spec"),
    ("log_to", "mlflw", "mlflow"),
    ("grid_year", "2023", "grid_year must be a year"),
])
def test_bad_options_say_what_was_given_and_what_is_accepted(option, value, says, tmp_path):
    with pytest.raises(ConfigError, match=says):
        TrackerConfig.from_options("x", output_dir=tmp_path, **{option: value})


def test_the_token_is_never_in_the_repr(tmp_path):
    config = TrackerConfig.from_options("x", live_intensity="electricitymaps:DE",
                                        intensity_token="SECRET-123", output_dir=tmp_path)
    assert "SECRET-123" not in repr(config)
    assert "SECRET-123" not in repr(config.manifest())


def test_a_tracker_from_a_configuration_runs(fake_nvml, tmp_path):
    fake_nvml(1)
    config = TrackerConfig.from_options("from-config", region="FR", output_dir=tmp_path,
                                        rate_hz=20, emissions_csv=False)
    run = Tracker.from_config(config)
    assert run.config is config and run.factor.region_code == "FR"
    with run:
        pass
    s = run.summary
    assert s.name == "from-config" and s.energy_j is not None and s.energy_j > 0


def test_paths_are_absolute_so_a_chdir_moves_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = TrackerConfig.from_options("x", output_dir="runs", emissions_csv="e.csv")
    monkeypatch.chdir("/")
    assert config.output_dir == tmp_path / "runs"
    assert config.emissions_csv == tmp_path / "e.csv"


def test_recent_power_is_one_figure_for_the_cli_and_prometheus(fake_nvml, tmp_path):
    """'Power now' is computed once (curve.recent_power_w): the tracker's figure is the
    devices' mean over the last 2 s they measured, 300 W for a constant 300 W GPU."""
    import time

    from conftest import Constant, FakeGPU

    fake_nvml(FakeGPU(profile=Constant(300.0)))
    with track("recent", output_dir=tmp_path, cpu=False, ram=False, rate_hz=50,
               counter_interval_s=0.2, emissions_csv=False) as run:
        assert run.recent_power_w() is None or run.recent_power_w() >= 0
        time.sleep(2.5)
        w = run.recent_power_w()
        until = run.measured_until()
        d = run.devices[0]
        assert w == pytest.approx(d.curve.energy_between(until - 2.0, until) / 2.0)
    assert w == pytest.approx(300.0, rel=0.02)
