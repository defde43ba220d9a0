"""CPU and RAM power models; psutil, the foreign library, is replaced at its edge."""

from __future__ import annotations

import math
from types import SimpleNamespace

import psutil
import pytest

from tracker.errors import ConfigError, SensorFailed
from tracker.sensors.base import MODELED
from tracker.sensors.cpuram import discover_cpu_ram
from tracker.sensors.model import CpuModelSensor, RamModelSensor


class FakeMachine:
    """What psutil reports: logical CPU count, whole-machine utilisation, installed bytes."""

    def __init__(self, monkeypatch):
        self.logical_cpus = 8
        self.cpu_percent = 0.0
        self.total_bytes = 64 * 1024**3
        monkeypatch.setattr(psutil, "cpu_count", lambda logical=True: self.logical_cpus)
        monkeypatch.setattr(psutil, "cpu_percent", lambda interval=None: self.cpu_percent)
        monkeypatch.setattr(
            psutil, "virtual_memory", lambda: SimpleNamespace(total=self.total_bytes)
        )


@pytest.fixture
def machine(monkeypatch) -> FakeMachine:
    return FakeMachine(monkeypatch)


@pytest.mark.parametrize(
    ("cpu_percent", "power_w"),
    [(0.0, 30.0), (25.0, 47.5), (50.0, 65.0), (100.0, 100.0), (130.0, 100.0)],
)
def test_cpu_power_is_idle_floor_plus_utilisation_share(machine, cpu_percent, power_w):
    sensor = CpuModelSensor(tdp_w=100)
    machine.cpu_percent = cpu_percent

    assert sensor.read_power_w() == pytest.approx(power_w, rel=1e-12)


def test_cpu_model_describes_itself(machine):
    sensor = CpuModelSensor(tdp_w=205)

    assert (sensor.name, sensor.component, sensor.method) == ("cpu", "cpu", MODELED)
    assert (sensor.has_power, sensor.has_counter, sensor.power_interval_s) == (True, False, 1.0)
    assert sensor.info.details == {
        "tdp_w": 205.0,
        "tdp_source": "user",
        "idle_fraction": 0.3,
        "logical_cpus": 8,
        "cpu_scope": "machine",
    }
    assert sensor.info.description == (
        "CPU power model: 30% idle + utilisation x TDP 205 W (user-given); scope: whole machine"
    )


@pytest.mark.parametrize(
    ("logical_cpus", "tdp_w", "tdp_source"),
    [
        (8, 24.0, "default: 3 W per logical CPU x 8 CPUs"),
        (128, 384.0, "default: 3 W per logical CPU x 128 CPUs"),
        (5, 15.0, "default: 3 W per logical CPU x 5 CPUs"),
        (2, 15.0, "default: 15 W floor (3 W per logical CPU x 2 CPUs)"),
        (None, 15.0, "default: 15 W floor (3 W per logical CPU x 1 CPUs)"),  # psutil: unknown
    ],
)
def test_default_tdp_is_named_after_the_cpu_count(machine, logical_cpus, tdp_w, tdp_source):
    machine.logical_cpus = logical_cpus

    details = CpuModelSensor().info.details

    assert (details["tdp_w"], details["tdp_source"]) == (tdp_w, tdp_source)


def test_cpu_model_read_failure_is_sensor_failed(machine, monkeypatch):
    sensor = CpuModelSensor()

    def broken(interval=None):
        raise psutil.AccessDenied()

    monkeypatch.setattr(psutil, "cpu_percent", broken)

    with pytest.raises(SensorFailed, match="cpu_percent"):
        sensor.read_power_w()


def test_ram_power_is_constant_per_installed_gib(machine):
    machine.total_bytes = 16 * 1024**3
    sensor = RamModelSensor()
    machine.total_bytes = 1  # read once, at construction

    assert sensor.read_power_w() == 6.0
    assert sensor.read_power_w() == 6.0
    assert (sensor.name, sensor.component, sensor.method) == ("ram", "ram", MODELED)
    assert (sensor.has_power, sensor.power_interval_s) == (True, 1.0)
    assert sensor.info.details == {"w_per_gib": 0.375, "installed_gib": 16.0,
                                   "cpu_scope": "machine"}
    assert sensor.info.description == "RAM power model: 0.375 W/GiB x 16.0 GiB = 6.0 W"


@pytest.mark.parametrize(
    ("cpu_tdp_w", "message"),
    [
        (0, "cpu_tdp_w=0 W is not a plausible CPU TDP"),
        (-65, "cpu_tdp_w=-65 W is not a plausible CPU TDP"),
        (math.nan, "cpu_tdp_w=nan W is not a plausible CPU TDP"),
        (math.inf, "cpu_tdp_w=inf W is not a plausible CPU TDP"),
        (5000, "cpu_tdp_w=5000 W is not a plausible CPU TDP"),
        ("85", "cpu_tdp_w must be a number of watts, got '85'"),
        (True, "cpu_tdp_w must be a number of watts, got True"),
    ],
)
def test_bad_tdp_is_a_config_error(machine, tmp_path, cpu_tdp_w, message):
    with pytest.raises(ConfigError, match=f"^{message}"):
        discover_cpu_ram(cpu_tdp_w=cpu_tdp_w, powercap_root=tmp_path)
    with pytest.raises(ValueError, match=f"^{message}"):  # ConfigError is a ValueError
        CpuModelSensor(tdp_w=cpu_tdp_w)


def test_user_tdp_drives_the_modeled_cpu(machine, tmp_path):
    machine.cpu_percent = 50.0

    found = discover_cpu_ram(cpu_tdp_w=4999.5, powercap_root=tmp_path / "absent")

    cpu = found.sensors[0]
    assert (cpu.info.details["tdp_w"], cpu.info.details["tdp_source"]) == (4999.5, "user")
    assert cpu.read_power_w() == pytest.approx(0.3 * 4999.5 + 0.7 * 4999.5 * 0.5, rel=1e-12)
