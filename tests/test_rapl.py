"""RAPL sensors and CPU/RAM discovery against fake powercap trees built in tmp_path."""

from __future__ import annotations

import contextlib
import ctypes
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import psutil
import pytest

from tracker.errors import SensorFailed
from tracker.sensors.base import COUNTER, MODELED
from tracker.sensors.cpuram import discover_cpu_ram
from tracker.sensors.rapl import RaplAccessDenied, RaplSensor, list_zones, package_zones

# max_energy_range_uj of a real Intel package zone (~262 kJ)
RANGE_UJ = 262_143_328_850
DRAM_RANGE_UJ = 65_712_999_613


class FakePowercap:
    """A /sys/class/powercap look-alike: zone directories with name, energy_uj, max range."""

    def __init__(self, root: Path):
        self.root = root
        root.mkdir()

    def zone(
        self, zone_id: str, name: str, energy_uj: int = 0, range_uj: int = RANGE_UJ, *, parent=None
    ) -> Path:
        path = (parent if parent is not None else self.root) / zone_id
        path.mkdir()
        (path / "name").write_text(f"{name}\n")
        (path / "max_energy_range_uj").write_text(f"{range_uj}\n")
        (path / "energy_uj").write_text(f"{energy_uj}\n")
        return path

    def set_energy(self, zone_id: str, energy_uj: int | str) -> None:
        # written in place, as sysfs does: sensors keep the file open
        (self.root / zone_id / "energy_uj").write_text(f"{energy_uj}\n")


@pytest.fixture
def rapl_tree(tmp_path) -> FakePowercap:
    return FakePowercap(tmp_path / "powercap")


@pytest.fixture
def machine(monkeypatch):
    """psutil's view of the machine: 8 logical CPUs at 50 % and 64 GiB of RAM."""
    monkeypatch.setattr(psutil, "cpu_count", lambda logical=True: 8)
    monkeypatch.setattr(psutil, "cpu_percent", lambda interval=None: 50.0)
    monkeypatch.setattr(psutil, "virtual_memory", lambda: SimpleNamespace(total=64 * 1024**3))


@pytest.fixture
def one_package(rapl_tree) -> FakePowercap:
    """A desktop or AMD CPU: one package, no DRAM domain."""
    (rapl_tree.root / "intel-rapl").mkdir()  # the control type directory, not a zone
    rapl_tree.zone("intel-rapl:0", "package-0", energy_uj=1_000_000)
    rapl_tree.zone("intel-rapl:0:0", "core", energy_uj=500_000)
    return rapl_tree


@pytest.fixture
def two_packages_dram(rapl_tree) -> FakePowercap:
    """A two-socket server: packages, DRAM subzones, and a psys zone that must be ignored."""
    for pkg in (0, 1):
        rapl_tree.zone(f"intel-rapl:{pkg}", f"package-{pkg}", energy_uj=10_000_000 * (pkg + 1))
        rapl_tree.zone(f"intel-rapl:{pkg}:0", "dram", energy_uj=7_000_000, range_uj=DRAM_RANGE_UJ)
    rapl_tree.zone("intel-rapl:2", "psys", energy_uj=99_000_000)
    return rapl_tree


def test_one_package_is_measured_and_ram_is_modeled(one_package, machine):
    found = discover_cpu_ram(powercap_root=one_package.root)

    cpu, ram = found.sensors
    assert (cpu.name, cpu.component, cpu.method) == ("cpu-pkg0", "cpu", COUNTER)
    assert (cpu.has_counter, cpu.has_power, cpu.counter_interval_s) == (True, False, 1.0)
    assert cpu.info.details == {
        "sysfs_path": str(one_package.root / "intel-rapl:0" / "energy_uj"),
        "max_energy_range_j": 262_143.32885,
        "package": "package-0",
        "zone": "intel-rapl:0",
        "zone_name": "package-0",
        "interface": "msr",
    }
    assert (ram.name, ram.method) == ("ram", MODELED)
    assert found.notes == [
        "No RAPL DRAM domain here (usual on client and AMD CPUs): RAM power is modeled "
        "(0.375 W/GiB x 64.0 GiB = 24.0 W)."
    ]

    assert cpu.read_energy_j() == 0.0  # counts from when the sensor was created
    one_package.set_energy("intel-rapl:0", 6_500_000)
    assert cpu.read_energy_j() == 5.5
    cpu.close()


def test_two_packages_and_dram_get_one_sensor_each(two_packages_dram, machine):
    found = discover_cpu_ram(powercap_root=two_packages_dram.root, cpu_tdp_w=205)

    assert [(s.name, s.component, s.method) for s in found.sensors] == [
        ("cpu-pkg0", "cpu", COUNTER),
        ("cpu-pkg1", "cpu", COUNTER),
        ("ram-pkg0", "ram", COUNTER),
        ("ram-pkg1", "ram", COUNTER),
    ]
    assert found.notes == ["cpu_tdp_w=205 is not used: CPU energy is measured by RAPL."]
    ram1 = found.sensors[3]
    assert ram1.info.details["package"] == "package-1"
    assert ram1.info.details["max_energy_range_j"] == 65_712.999613

    two_packages_dram.set_energy("intel-rapl:1", 20_000_000 + 30_000_000)
    two_packages_dram.set_energy("intel-rapl:1:0", 7_000_000 + 2_000_000)
    assert [s.read_energy_j() for s in found.sensors] == [0.0, 30.0, 0.0, 2.0]


def test_mmio_zone_duplicating_a_package_is_dropped(rapl_tree):
    rapl_tree.zone("intel-rapl-mmio:0", "package-0")
    rapl_tree.zone("intel-rapl:0", "package-0")

    zones = package_zones(list_zones(rapl_tree.root))

    assert [(z.zone_id, z.via_mmio) for z in zones] == [("intel-rapl:0", False)]


def test_mmio_zone_alone_is_used(rapl_tree):
    rapl_tree.zone("intel-rapl-mmio:0", "package-0", energy_uj=42)

    (zone,) = package_zones(list_zones(rapl_tree.root))
    sensor = RaplSensor(zone, "cpu")

    assert (sensor.name, sensor.info.details["interface"]) == ("cpu-pkg0", "mmio")
    sensor.close()


def test_nested_subzones_and_multi_die_packages(rapl_tree, machine):
    # Only the nested layout (no top-level link for the subzone), and a die-split package.
    pkg = rapl_tree.zone("intel-rapl:0", "package-0-die-1")
    rapl_tree.zone("intel-rapl:0:0", "dram", parent=pkg)

    found = discover_cpu_ram(powercap_root=rapl_tree.root)

    assert [s.name for s in found.sensors] == ["cpu-pkg0-die1", "ram-pkg0-die1"]
    assert found.notes == []


def test_wraparound_adds_the_range_exactly(rapl_tree):
    rapl_tree.zone("intel-rapl:0", "package-0", energy_uj=RANGE_UJ * 9 // 10)
    (zone,) = package_zones(list_zones(rapl_tree.root))
    sensor = RaplSensor(zone, "cpu")

    rapl_tree.set_energy("intel-rapl:0", RANGE_UJ // 10)

    # 0.9 x range → 0.1 x range is +0.2 x range µJ, in J
    assert RANGE_UJ * 9 // 10 == 235_928_995_965 and RANGE_UJ // 10 == 26_214_332_885
    assert sensor.read_energy_j() == 52_428.66577
    rapl_tree.set_energy("intel-rapl:0", RANGE_UJ // 10 + 1_000_000)
    assert sensor.read_energy_j() == 52_429.66577
    sensor.close()


def test_unreadable_value_fails_the_read(one_package):
    (zone,) = package_zones(list_zones(one_package.root))
    sensor = RaplSensor(zone, "cpu")

    one_package.set_energy("intel-rapl:0", "")  # an empty read

    with pytest.raises(SensorFailed, match="energy_uj"):
        sensor.read_energy_j()
    sensor.close()


@contextlib.contextmanager
def _as_unprivileged_user() -> Iterator[None]:
    """Run the block without the right to read files regardless of their mode.

    Root reads a chmod-000 file anyway (CAP_DAC_OVERRIDE), so as root this drops
    CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH from the effective set of this thread only (Linux
    capabilities are per thread) and restores them afterwards. Root still owns the tmp_path
    directories, so it can list them like a user lists /sys/class/powercap.
    """
    if os.geteuid() != 0:
        yield
        return
    if not sys.platform.startswith("linux"):
        pytest.skip("dropping root's file-read capability needs Linux")

    class Header(ctypes.Structure):
        _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]

    class Data(ctypes.Structure):
        _fields_ = [(f, ctypes.c_uint32) for f in ("effective", "permitted", "inheritable")]

    libc = ctypes.CDLL(None, use_errno=True)
    linux_capability_version_3 = 0x20080522
    dac_override_and_read_search = (1 << 1) | (1 << 2)
    data = (Data * 2)()
    if libc.capget(ctypes.byref(Header(linux_capability_version_3, 0)), data) != 0:
        pytest.skip("capget failed: cannot drop root's file-read capability")
    saved = data[0].effective
    data[0].effective &= ~dac_override_and_read_search
    if libc.capset(ctypes.byref(Header(linux_capability_version_3, 0)), data) != 0:
        pytest.skip("capset failed: cannot drop root's file-read capability")
    try:
        yield
    finally:
        data[0].effective = saved
        libc.capset(ctypes.byref(Header(linux_capability_version_3, 0)), data)


@pytest.fixture
def root_only_energy(two_packages_dram) -> Iterator[FakePowercap]:
    """energy_uj mode 0400 owned by root, as Linux ships it since CVE-2020-8694; we are a user."""
    for zone_id in ("intel-rapl:0", "intel-rapl:1", "intel-rapl:0:0", "intel-rapl:1:0"):
        os.chmod(two_packages_dram.root / zone_id / "energy_uj", 0o000)
    with _as_unprivileged_user():
        with pytest.raises(PermissionError):  # the fake really denies, even under root
            (two_packages_dram.root / "intel-rapl:0" / "energy_uj").read_bytes()
        yield two_packages_dram


def test_root_only_energy_uj_raises_access_denied(root_only_energy):
    (zone, _) = package_zones(list_zones(root_only_energy.root))

    with pytest.raises(RaplAccessDenied) as denied:
        RaplSensor(zone, "cpu")

    assert denied.value.path == root_only_energy.root / "intel-rapl:0" / "energy_uj"


def test_root_only_energy_uj_falls_back_to_models_with_one_note(root_only_energy, machine):
    found = discover_cpu_ram(powercap_root=root_only_energy.root)

    assert [(s.name, s.method) for s in found.sensors] == [("cpu", MODELED), ("ram", MODELED)]
    assert found.notes == [
        "RAPL energy_uj is root-only here: CPU and RAM power are modeled "
        "(TDP 24 W, default: 3 W per logical CPU x 8 CPUs; 0.375 W/GiB x 64.0 GiB = 24.0 W). "
        "To measure instead, run as root or "
        f"`sudo chmod o+r {root_only_energy.root}/intel-rapl:*/energy_uj`."
    ]


def test_absent_powercap_falls_back_to_models_with_one_note(tmp_path, machine):
    found = discover_cpu_ram(powercap_root=tmp_path / "no-powercap", cpu_tdp_w=85)

    cpu, _ = found.sensors
    assert (cpu.method, cpu.info.details["tdp_w"], cpu.info.details["tdp_source"]) == (
        MODELED,
        85.0,
        "user",
    )
    assert cpu.read_power_w() == pytest.approx(0.3 * 85 + 0.7 * 85 * 0.5)
    assert found.notes == [
        f"No RAPL counters here ({tmp_path / 'no-powercap'} is absent, as on most cloud VMs): "
        "CPU and RAM power are modeled "
        "(TDP 85 W, user; 0.375 W/GiB x 64.0 GiB = 24.0 W)."
    ]


def test_powercap_without_zones_says_how_to_load_the_driver(rapl_tree, machine):
    found = discover_cpu_ram(powercap_root=rapl_tree.root)

    assert [s.method for s in found.sensors] == [MODELED, MODELED]
    assert found.notes == [
        f"No RAPL package zone under {rapl_tree.root}: CPU and RAM power are modeled "
        "(TDP 24 W, default: 3 W per logical CPU x 8 CPUs; 0.375 W/GiB x 64.0 GiB = 24.0 W). "
        "To measure instead, load the RAPL driver "
        "(`sudo modprobe intel_rapl_msr`; AMD needs Linux 5.8+)."
    ]


def test_psys_alone_is_not_cpu(rapl_tree, machine):
    rapl_tree.zone("intel-rapl:0", "psys")

    found = discover_cpu_ram(powercap_root=rapl_tree.root)

    assert [s.method for s in found.sensors] == [MODELED, MODELED]


def test_use_rapl_false_models_both(two_packages_dram, machine):
    found = discover_cpu_ram(powercap_root=two_packages_dram.root, use_rapl=False)

    assert [(s.name, s.method) for s in found.sensors] == [("cpu", MODELED), ("ram", MODELED)]
    assert found.notes == [
        "RAPL not used (use_rapl=False): CPU and RAM power are modeled "
        "(TDP 24 W, default: 3 W per logical CPU x 8 CPUs; 0.375 W/GiB x 64.0 GiB = 24.0 W). "
        "Pass cpu_tdp_w= (the total TDP of your CPUs) to sharpen the estimate."
    ]
