"""Measured node and CPU power from the Linux hwmon sysfs tree (/sys/class/hwmon).

Which meters are used, and as what:

- `power_meter` (ACPI 4.0 power meter, `acpi_power_meter`): the machine's input power as the
  firmware/BMC reports it, `powerN_average` in µW averaged over `powerN_average_interval` ms.
  A **whole-node** meter (component "node"). Its attributes live in `hwmonN/device/` on most
  kernels (the driver registers them on the ACPI device) and in `hwmonN/` on newer ones: both
  are read. A meter that says `powerN_is_battery` = 1 is a laptop battery, not used.
- NVIDIA Grace / Grace Hopper: the same driver, one meter per rail, told apart by
  `powerN_oem_info`: "Module Power Socket N" (a Grace Hopper module: GPU, HBM, CPU, LPDDR5X,
  regulators) is a whole-node meter of that module; "Grace Power Socket N" (the Grace CPU with
  its LPDDR5X memory) measures CPU and RAM; "CPU Power Socket N" and "SysIO Power Socket N"
  are rails inside the Grace socket and are not used (they would count twice).
- `amd_energy` (AMD Zen RAPL MSRs, out-of-tree since Linux 5.13): `energyN_input` in µJ,
  cumulative (the driver accumulates the 32-bit MSR into 64 bits), one channel per core
  ("Ecore000") and per socket ("Esocket0"): the socket channels measure the CPU.

Energy counters give method "counter", power readings method "sampled" (read once a second:
each read may run an ACPI method, and the meters average over ~1 s or more anyway). Other
hwmon drivers (GPU drivers' own hwmon, fan controllers, ...) are ignored: GPUs are measured
through their vendor libraries, and an unknown power channel could count something twice.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Optional, Union

from ..errors import SensorFailed, SensorUnavailable
from .base import COUNTER, NODE, SAMPLED, Discovery, Sensor, SensorInfo

DEFAULT_HWMON_ROOT = Path("/sys/class/hwmon")

# Enough for any decimal u64 plus newline.
_READ_BYTES = 32
# Power meters are read at most this often (they average over >= ~1 s; an ACPI method runs
# behind each read, through the BMC on many servers).
POWER_INTERVAL_S = 1.0

_POWER_FILE = re.compile(r"^power(\d+)_(average|input)$")
_ENERGY_FILE = re.compile(r"^energy(\d+)_input$")
_GRACE = re.compile(r"^(Module|Grace|CPU|SysIO) Power Socket (\d+)$", re.IGNORECASE)
_AMD_SOCKET = re.compile(r"^Esocket(\d+)$")

DRIVERS = ("power_meter", "amd_energy")


@dataclass(frozen=True)
class Meter:
    """One usable (or knowingly unused) hwmon channel, as listed; nothing is opened yet."""

    hwmon: str                 # "hwmon3"
    driver: str                # contents of `name`: "power_meter", "amd_energy"
    path: Path                 # the file read: .../power1_average, .../energy17_input
    quantity: str              # "power" (µW) or "energy" (µJ)
    role: Optional[str]        # "node", "cpu", or None (listed, not used: `why`)
    label: str = ""            # oem_info / energyN_label
    socket: Optional[int] = None
    covers: tuple[str, ...] = ()     # components this meter measures ("cpu", "ram")
    includes: tuple[str, ...] = ()   # whole-node meters: what their energy includes
    interval_s: Optional[float] = None   # power averaging interval
    why: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def list_meters(root: Union[str, os.PathLike[str]] = DEFAULT_HWMON_ROOT) -> list[Meter]:
    """Every power or energy channel of a known driver under `root`, classified; [] when the
    tree is absent. Sorted by hwmon number and channel."""
    out: list[Meter] = []
    for hw in sorted(_subdirs(Path(root)), key=lambda p: _natural(p.name)):
        dirs = [hw, hw / "device"]
        driver = _read_text(hw / "name") or _read_text(hw / "device" / "name")
        if driver == "power_meter":
            out += _power_meter(hw.name, dirs)
        elif driver == "amd_energy":
            out += _amd_energy(hw.name, dirs)
    return out


def _power_meter(hwmon: str, dirs: list[Path]) -> list[Meter]:
    out = []
    seen: set[str] = set()
    for d in dirs:
        for f in sorted(_files(d), key=lambda p: _natural(p.name)):
            m = _POWER_FILE.match(f.name)
            if m is None or m.group(2) != "average" or f.name in seen:
                continue
            seen.add(f.name)
            n = m.group(1)
            oem = _read_text(d / f"power{n}_oem_info") or ""
            interval_ms = _read_int(d / f"power{n}_average_interval")
            interval = interval_ms / 1000.0 if interval_ms and interval_ms > 0 else None
            extra = {k: v for k in ("model_number", "serial_number")
                     if (v := _read_text(d / f"power{n}_{k}"))}
            meter = partial(Meter, hwmon=hwmon, driver="power_meter", path=f, quantity="power",
                            label=oem, interval_s=interval, extra=extra)
            if _read_int(d / f"power{n}_is_battery") == 1:
                out.append(meter(role=None, why="a battery, not the machine's input power"))
                continue
            grace = _GRACE.match(oem.strip())
            if grace is None:   # a plain ACPI power meter: the whole machine
                out.append(meter(role=NODE, includes=("gpu", "cpu", "ram")))
                continue
            rail, socket = grace.group(1).lower(), int(grace.group(2))
            if rail == "module":
                out.append(meter(role=NODE, socket=socket, includes=("gpu", "cpu", "ram")))
            elif rail == "grace":
                out.append(meter(role="cpu", socket=socket, covers=("cpu", "ram")))
            else:
                out.append(meter(role=None, socket=socket,
                                 why=f"a rail inside Grace socket {socket}, whose 'Grace Power "
                                     "Socket' meter is used instead"))
    return out


def _amd_energy(hwmon: str, dirs: list[Path]) -> list[Meter]:
    out = []
    for d in dirs:
        for f in sorted(_files(d), key=lambda p: _natural(p.name)):
            m = _ENERGY_FILE.match(f.name)
            if m is None:
                continue
            label = _read_text(d / f"energy{m.group(1)}_label") or ""
            sock = _AMD_SOCKET.match(label)
            if sock is None:
                continue   # per-core channels: inside the socket's
            out.append(Meter(hwmon=hwmon, driver="amd_energy", path=f, quantity="energy",
                             role="cpu", label=label, socket=int(sock.group(1)),
                             covers=("cpu",)))
        if out:
            break
    return out


class HwmonSensor(Sensor):
    """One hwmon meter: an energy counter (µJ, method "counter") or a power reading (µW,
    method "sampled"), read with `os.pread` on a descriptor kept open (as RAPL)."""

    def __init__(self, meter: Meter, name: str, counter_interval_s: float = 1.0):
        if meter.role is None:
            raise SensorUnavailable(f"{meter.path} is not used: {meter.why}")
        self.meter = meter
        self._path = meter.path
        try:
            self._file = open(meter.path, "rb", buffering=0)  # noqa: SIM115 - closed in close()
        except PermissionError as e:
            raise SensorUnavailable(f"permission denied reading {meter.path}") from e
        except OSError as e:
            raise SensorUnavailable(f"cannot open {meter.path}: {e}") from e
        try:
            t0 = time.perf_counter()
            first = self._read_raw()
            read_s = time.perf_counter() - t0
        except SensorFailed as e:
            self._file.close()
            raise SensorUnavailable(str(e)) from e
        self.has_counter = meter.quantity == "energy"
        self.has_power = not self.has_counter
        self.power_interval_s = POWER_INTERVAL_S
        self.counter_interval_s = counter_interval_s
        self._last_uj = first
        self._total_uj = 0
        self.resets = 0
        what = _describe(meter)
        averaged = f"averaged over {meter.interval_s:g} s, " if meter.interval_s else ""
        how = ("hwmon energy counter" if self.has_counter
               else f"hwmon power, {averaged}integrated, trapezoid rule")
        details: dict[str, Any] = {
            "sysfs_path": str(meter.path), "hwmon": meter.hwmon, "driver": meter.driver,
            "read_s": round(read_s, 6)}
        if meter.label:
            details["label"] = meter.label
        if meter.socket is not None:
            details["socket"] = meter.socket
        if meter.interval_s is not None:
            details["average_interval_s"] = meter.interval_s
        if meter.covers and meter.covers != ("cpu",):
            details["covers"] = list(meter.covers)
        if meter.role == NODE:
            details["scope"] = "node"
            details["includes"] = list(meter.includes)
        details.update(meter.extra)
        self.info = SensorInfo(name=name, component=meter.role,
                               method=COUNTER if self.has_counter else SAMPLED,
                               description=f"{what} ({how})", details=details)

    def read_energy_j(self) -> Optional[float]:
        if not self.has_counter:
            return None
        raw = self._read_raw()
        delta = raw - self._last_uj
        if delta < 0:   # the counter restarted (driver reloaded): count from its new origin
            delta = raw
            self.resets += 1
        self._last_uj = raw
        self._total_uj += delta
        return self._total_uj / 1e6

    def read_power_w(self) -> Optional[float]:
        if not self.has_power:
            return None
        return self._read_raw() / 1e6

    def close(self) -> None:
        self._file.close()

    def _read_raw(self) -> int:
        try:
            return int(os.pread(self._file.fileno(), _READ_BYTES, 0))
        except (OSError, ValueError) as e:
            raise SensorFailed(f"cannot read {self._path}: {e}") from e


def _describe(m: Meter) -> str:
    if m.driver == "amd_energy":
        return f"AMD CPU socket {m.socket} (amd_energy {m.label})"
    if m.label and _GRACE.match(m.label.strip()):
        rail = m.label.split()[0].lower()
        return {"module": f"Grace Hopper module {m.socket}: GPU, HBM, CPU, LPDDR5X",
                "grace": f"Grace CPU socket {m.socket} with its LPDDR5X memory"}.get(
                    rail, m.label) + f" ({m.label})"
    return "Whole-node input power (ACPI power meter" + (f", {m.label}" if m.label else "") + ")"


def discover_hwmon(*, root: Union[str, os.PathLike[str]] = DEFAULT_HWMON_ROOT,
                   node: bool = True,
                   cpu: bool = True, ram: bool = True, counter_interval_s: float = 1.0,
                   cpu_tdp_w: Optional[float] = None) -> Discovery:
    """Sensors for the usable hwmon meters under `root`: whole-node meters (component "node")
    and CPU meters (component "cpu"; the Grace socket's also covers RAM). Never raises.

    `node=False`: whole-node meters are not used. A whole-node meter includes the CPU and RAM,
    so it is not used either when `cpu` or `ram` is False (the user asked not to count them).
    """
    meters = list_meters(root)
    sensors: list[Sensor] = []
    notes: list[str] = []
    nodes = [m for m in meters if m.role == NODE]
    cpus = [m for m in meters if m.role == "cpu"]
    if nodes and not node:
        notes.append(f"{_what(nodes)} not used (node=False).")
        nodes = []
    elif nodes and not (cpu and ram):
        off = " and ".join(c for c, on in (("cpu", cpu), ("ram", ram)) if not on)
        notes.append(f"{_what(nodes)} not used: it includes the CPU and RAM, and {off}=False "
                     "asks not to count them.")
        nodes = []
    if cpus and not cpu:
        cpus = []
    names = _names(nodes, prefix="module" if any(m.socket is not None for m in nodes)
                   else "node")
    for m, name in zip(nodes, names):
        try:
            sensors.append(HwmonSensor(m, name, counter_interval_s))
        except SensorUnavailable as e:
            notes.append(f"{_describe(m)} not measured: {e}.")
    # CPU meters: all sockets or none (a partial set would undercount, as for RAPL)
    opened: list[Sensor] = []
    for m in cpus:
        try:
            opened.append(HwmonSensor(m, f"cpu-socket{m.socket}", counter_interval_s))
        except SensorUnavailable as e:
            for s in opened:
                s.close()
            opened = []
            fix = (" (amd_energy counters are root-only since Linux 5.10: run as root or "
                   f"`sudo chmod o+r {Path(root)}/hwmon*/energy*_input`)"
                   if m.driver == "amd_energy" and "permission" in str(e) else "")
            notes.append(f"{_describe(m)} not measured: {e}{fix}; CPU power comes from RAPL "
                         "or the model instead.")
            break
    sensors += opened
    if opened and cpu_tdp_w is not None:
        notes.append(f"cpu_tdp_w={cpu_tdp_w:g} is not used: CPU energy is measured by hwmon.")
    if any("ram" in (s.info.details.get("covers") or ()) for s in opened):
        notes.append("RAM is measured with the CPU: the Grace socket meter includes its "
                     "LPDDR5X memory, so RAM is not modeled separately.")
    return Discovery(sensors, notes)


def _what(nodes: list[Meter]) -> str:
    n = len(nodes)
    return ("A whole-node power meter (" + _describe(nodes[0]) + ")" if n == 1
            else f"{n} whole-node power meters")


def _names(meters: list[Meter], prefix: str) -> list[str]:
    if len(meters) == 1 and prefix == "node":
        return ["node"]
    return [f"{prefix}{m.socket if m.socket is not None else i}" for i, m in enumerate(meters)]


def _subdirs(path: Path) -> list[Path]:
    try:
        return [p for p in path.iterdir() if p.is_dir()]
    except OSError:   # absent (containers, VMs), or not a directory
        return []


def _files(path: Path) -> list[Path]:
    try:
        return [p for p in path.iterdir() if p.is_file()]
    except OSError:
        return []


def _read_text(path: Path) -> Optional[str]:
    try:
        return path.read_text().strip()
    except (OSError, UnicodeDecodeError):
        return None


def _read_int(path: Path) -> Optional[int]:
    text = _read_text(path)
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


def _natural(name: str) -> tuple[Any, ...]:
    # hwmon10 after hwmon2, power10_average after power2_average
    return tuple(int(p) if p.isdigit() else p for p in re.split(r"(\d+)", name))
