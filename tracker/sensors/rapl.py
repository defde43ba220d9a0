"""RAPL energy counters from the Linux powercap sysfs tree: one sensor per CPU package and DRAM.

Reads `energy_uj` (a wrapping µJ counter) and unwraps it into monotonic joules since the sensor
was created. Intel and AMD both appear under `intel-rapl:N` (the kernel's MSR RAPL driver).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

from ..errors import SensorFailed, SensorUnavailable
from .base import COUNTER, Sensor, SensorInfo

DEFAULT_POWERCAP_ROOT = Path("/sys/class/powercap")

# "intel-rapl:0" (package, via MSR), "intel-rapl:0:1" (subzone), "intel-rapl-mmio:0" (package
# again, via MMIO on newer Intel client CPUs: it measures the same package as intel-rapl:0).
_ZONE_ID = re.compile(r"^(intel-rapl|intel-rapl-mmio):(\d+)(?::(\d+))?$")
# "package-0", and "package-0-die-1" on multi-die packages (e.g. Cascade Lake-AP).
_PACKAGE_NAME = re.compile(r"^package-(\d+)(?:-die-(\d+))?$")

# Enough for any decimal u64 plus newline.
_READ_BYTES = 32


@dataclass(frozen=True)
class RaplZone:
    """One powercap zone directory, as listed; nothing has been opened yet."""

    zone_id: str              # directory name: "intel-rapl:0", "intel-rapl:0:1"
    name: str                 # contents of `name`: "package-0", "dram", "core", "psys"
    path: Path                # the zone directory
    package: Optional[str]    # package this zone measures or belongs to: "package-0"; None: psys
    via_mmio: bool            # listed under intel-rapl-mmio (duplicates an MSR package zone)

    @property
    def is_package(self) -> bool:
        return _PACKAGE_NAME.match(self.name) is not None

    @property
    def is_dram(self) -> bool:
        return self.name == "dram"


class RaplAccessDenied(SensorUnavailable):
    """`energy_uj` exists but this user may not read it.

    Linux has made it root-only (mode 0400) since the PLATYPUS side channel (CVE-2020-8694).
    """

    def __init__(self, path: Path):
        self.path = path
        super().__init__(f"permission denied reading {path}")


def list_zones(root: Union[str, Path] = DEFAULT_POWERCAP_ROOT) -> list[RaplZone]:
    """Every RAPL zone under `root`, sorted by zone id; [] when the tree is absent.

    The kernel links each zone at the top level and nests subzones in their parent; both
    layouts are accepted, each zone id counted once.
    """
    tops = [p for p in _subdirs(Path(root)) if _ZONE_ID.match(p.name)]
    dirs = {p.name: p for p in tops}
    for top in tops:
        for sub in _subdirs(top):
            if _ZONE_ID.match(sub.name):
                dirs.setdefault(sub.name, sub)  # the top-level link, when there is one, wins

    names = {zone_id: _read_name(path) for zone_id, path in dirs.items()}
    zones = []
    for zone_id, path in dirs.items():
        name = names[zone_id]
        if name is None:
            continue
        match = _ZONE_ID.match(zone_id)
        assert match is not None
        interface, index, sub_index = match.groups()
        if sub_index is None:
            package = name if _PACKAGE_NAME.match(name) else None
        else:
            package = names.get(f"{interface}:{index}")
        zones.append(RaplZone(zone_id, name, path, package, interface == "intel-rapl-mmio"))
    return sorted(zones, key=lambda z: _sort_key(z.zone_id))


def package_zones(zones: list[RaplZone]) -> list[RaplZone]:
    """One zone per CPU package, MSR zones preferred over their MMIO duplicates.

    `psys` (platform) is never used: it covers the whole SoC/platform (CPU, GPU, chipset,
    sometimes the display), so calling it "cpu" would overstate CPU energy.
    """
    chosen: dict[str, RaplZone] = {}
    for zone in sorted(zones, key=lambda z: z.via_mmio):  # MSR zones first
        if zone.is_package:
            chosen.setdefault(zone.name, zone)
    return sorted(chosen.values(), key=lambda z: _sort_key(z.zone_id))


def dram_zones(zones: list[RaplZone]) -> list[RaplZone]:
    """One DRAM subzone per package that has one (MSR zones preferred, as for packages)."""
    chosen: dict[Optional[str], RaplZone] = {}
    for zone in sorted(zones, key=lambda z: z.via_mmio):
        if zone.is_dram:
            chosen.setdefault(zone.package, zone)
    return sorted(chosen.values(), key=lambda z: _sort_key(z.zone_id))


class RaplSensor(Sensor):
    """Cumulative energy of one RAPL zone, in J since this sensor was created.

    The counter is read with `os.pread` on a descriptor kept open: ~1 µs per read against ~8-12
    µs for open/read/close, and sysfs regenerates the value on every read at offset 0.
    Reads must not run concurrently (the sampler serialises them); a wrap is detected only if
    reads are less than one full range apart (~20 min at 200 W for a 262 kJ range).
    """

    has_counter = True
    has_power = False
    counter_interval_s = 1.0

    def __init__(self, zone: RaplZone, component: str):
        """Open `zone`'s counter; `component` is "cpu" (package zone) or "ram" (DRAM zone).

        Raises `RaplAccessDenied` when energy_uj is root-only, `SensorUnavailable` when the
        zone cannot be read for another reason.
        """
        energy_path = zone.path / "energy_uj"
        range_path = zone.path / "max_energy_range_uj"
        try:
            range_uj = int(range_path.read_text().strip())
            self._file = open(energy_path, "rb", buffering=0)  # noqa: SIM115 - closed in close()
        except PermissionError as exc:
            raise RaplAccessDenied(energy_path) from exc
        except (OSError, ValueError) as exc:
            raise SensorUnavailable(f"cannot use RAPL zone {zone.path}: {exc}") from exc
        if range_uj <= 0:
            self._file.close()
            raise SensorUnavailable(f"RAPL zone {zone.path} reports max_energy_range_uj=0")

        self._path = energy_path
        self._range_uj = range_uj
        try:
            self._last_uj = self._read_uj()  # the origin: energy counts from here
        except SensorFailed as exc:
            self._file.close()
            raise SensorUnavailable(str(exc)) from exc
        self._total_uj = 0  # integers: unwrapping stays exact

        package = zone.package or zone.name
        label = "DRAM" if component == "ram" else "CPU"
        self.info = SensorInfo(
            name=f"{component}-{_short_package(package)}",
            component=component,
            method=COUNTER,
            description=f"{label} {package} (RAPL energy counter, {zone.zone_id})",
            details={
                "sysfs_path": str(energy_path),
                "max_energy_range_j": range_uj / 1e6,
                "package": package,
                "zone": zone.zone_id,
                "zone_name": zone.name,
                "interface": "mmio" if zone.via_mmio else "msr",
            },
        )

    def read_energy_j(self) -> float:
        raw_uj = self._read_uj()
        delta_uj = raw_uj - self._last_uj
        if delta_uj < 0:  # the counter wrapped at max_energy_range_uj
            delta_uj += self._range_uj
        self._last_uj = raw_uj
        self._total_uj += delta_uj
        return self._total_uj / 1e6

    def close(self) -> None:
        self._file.close()

    def _read_uj(self) -> int:
        try:
            return int(os.pread(self._file.fileno(), _READ_BYTES, 0))
        except (OSError, ValueError) as exc:
            raise SensorFailed(f"cannot read {self._path}: {exc}") from exc


def _subdirs(path: Path) -> list[Path]:
    try:
        return [p for p in path.iterdir() if p.is_dir()]
    except OSError:  # absent (most cloud VMs), or not a directory
        return []


def _read_name(zone_dir: Path) -> Optional[str]:
    try:
        return (zone_dir / "name").read_text().strip()
    except OSError:
        return None


def _sort_key(zone_id: str) -> tuple[str, ...]:
    # numeric order, so intel-rapl:10 sorts after intel-rapl:2
    return tuple(part.zfill(6) if part.isdigit() else part for part in zone_id.split(":"))


def _short_package(package: str) -> str:
    """Short form for sensor names: package-0 → pkg0, package-1-die-0 → pkg1-die0."""
    match = _PACKAGE_NAME.match(package)
    if match is None:
        return package
    pkg, die = match.groups()
    return f"pkg{pkg}" if die is None else f"pkg{pkg}-die{die}"
