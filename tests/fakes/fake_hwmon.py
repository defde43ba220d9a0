"""Fake /sys/class/hwmon trees (tests only), laid out as the kernel lays out the real ones.

- ACPI power meter (drivers/hwmon/acpi_power_meter.c): `hwmonN/` holds little; its attributes
  (`name` = "power_meter", `power1_average` µW, `power1_average_interval` ms, `power1_is_battery`,
  `power1_model_number`, `power1_oem_info`, `power1_serial_number`, `power1_accuracy`) are on
  the ACPI device, reached through the `hwmonN/device` link (ACPI000D:00). `modern=True` puts
  them in `hwmonN/` itself, as drivers registered with hwmon_device_register_with_info do.
- NVIDIA Grace / Grace Hopper: one ACPI power meter per rail, told apart by `power1_oem_info`
  ("Module Power Socket 0", "Grace Power Socket 0", "CPU Power Socket 0", "SysIO Power Socket
  0"), as NVIDIA's Grace performance tuning guide lists them.
- amd_energy (drivers/hwmon/amd_energy.c): `name` = "amd_energy", `energyN_input` in µJ with
  `energyN_label` "Ecore000"... for each core, then "Esocket0"... for each socket.
- Bystanders that must be ignored: `coretemp` (temperatures only), `amdgpu` (a GPU's own
  `power1_average`: the GPU is measured through amdsmi, reading it too would count it twice),
  `nvme`.

Power files are constant; energy counters advance on a thread (`CounterWriter`) that rewrites
the value in place at a fixed width (as sysfs regenerates it), so a reader holding the file open
reads each new value.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

__all__ = ["CounterWriter", "HwmonTree"]


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text if text.endswith("\n") else text + "\n")
    return path


def _counter_text(uj: int) -> str:
    return f"{uj:020d}\n"   # fixed width: rewritten in place, never shorter


@dataclass
class HwmonTree:
    """A /sys/class/hwmon stand-in under `base` (`root` is the class directory)."""

    base: Path
    next_index: int = 0
    writers: list[CounterWriter] = field(default_factory=list)

    @property
    def root(self) -> Path:
        return self.base / "class" / "hwmon"

    def _hwmon(self) -> tuple[str, Path]:
        name = f"hwmon{self.next_index}"
        self.next_index += 1
        d = self.root / name
        d.mkdir(parents=True)
        return name, d

    def acpi_power_meter(self, watts: float, *, interval_ms: int = 1000, oem_info: str = "",
                         is_battery: bool = False, modern: bool = False,
                         model_number: str = "PWR MTR") -> Path:
        """An ACPI power meter reading a constant `watts`; returns its power1_average file."""
        _name, hw = self._hwmon()
        acpi = self.base / "devices" / "LNXSYSTM:00" / f"ACPI000D:{self.next_index - 1:02d}"
        acpi.mkdir(parents=True)
        (hw / "device").symlink_to(acpi)
        _write(hw / "uevent", "")
        where = hw if modern else acpi
        _write(where / "name", "power_meter")
        avg = _write(where / "power1_average", str(round(watts * 1e6)))
        _write(where / "power1_average_interval", str(interval_ms))
        _write(where / "power1_average_interval_min", "1000")
        _write(where / "power1_average_interval_max", "60000")
        _write(where / "power1_accuracy", "95.0%")
        _write(where / "power1_is_battery", "1" if is_battery else "0")
        _write(where / "power1_model_number", model_number)
        _write(where / "power1_oem_info", oem_info)
        _write(where / "power1_serial_number", "")
        (acpi / "measures").mkdir(exist_ok=True)
        return avg

    def grace(self, sockets: int = 1, *, module: bool = False,
              watts: Optional[dict[str, float]] = None) -> dict[str, Path]:
        """A Grace (or, with `module`, Grace Hopper) machine's rails: {label: power file}."""
        watts = watts or {}
        out = {}
        for s in range(sockets):
            rails = (["Module"] if module else []) + ["Grace", "CPU", "SysIO"]
            for rail in rails:
                label = f"{rail} Power Socket {s}"
                out[label] = self.acpi_power_meter(watts.get(label, 100.0), oem_info=label,
                                                   model_number="", interval_ms=50)
        return out

    def amd_energy(self, sockets: int, cores_per_socket: int, *, watts_per_socket: float,
                   start_uj: int = 987_654_321_000, readable: bool = True) -> list[Path]:
        """amd_energy with per-core and per-socket counters; returns the socket files (their
        counters advance once `start()` is called on the returned writers)."""
        _name, hw = self._hwmon()
        _write(hw / "name", "amd_energy")
        platform = self.base / "devices" / "platform" / "amd_energy.0"
        platform.mkdir(parents=True)
        (hw / "device").symlink_to(platform)
        ncores = sockets * cores_per_socket
        files = []
        for i in range(ncores + sockets):
            n = i + 1
            label = f"Ecore{i:03d}" if i < ncores else f"Esocket{i - ncores}"
            _write(hw / f"energy{n}_label", label)
            f = _write(hw / f"energy{n}_input", _counter_text(start_uj + 1000 * i))
            if not readable:
                f.chmod(0o200)
            if i >= ncores:
                files.append(f)
                self.writers.append(CounterWriter(f, watts_per_socket, start_uj + 1000 * i))
        return files

    def bystanders(self, gpu_watts: float = 300.0) -> None:
        """Drivers with nothing to measure for us, or something measured another way."""
        _, hw = self._hwmon()
        _write(hw / "name", "coretemp")
        _write(hw / "temp1_input", "45000")
        _write(hw / "temp1_label", "Package id 0")
        _, hw = self._hwmon()
        _write(hw / "name", "amdgpu")
        _write(hw / "power1_average", str(int(gpu_watts * 1e6)))
        _write(hw / "power1_cap", "750000000")
        _, hw = self._hwmon()
        _write(hw / "name", "nvme")
        _write(hw / "temp1_input", "38850")

    def start(self) -> None:
        for w in self.writers:
            w.start()

    def stop(self) -> None:
        for w in self.writers:
            w.stop()


class CounterWriter:
    """Advances an energy counter file (µJ) at a constant `watts`, in place, on a thread.

    `stop()` writes one final value and returns it; `first` is the value before `start()`, so
    the energy a reader of the file counts between the two is exactly `final - first`."""

    def __init__(self, path: Path, watts: float, first_uj: int, period_s: float = 0.01):
        self.path = path
        self.watts = watts
        self.first = first_uj
        self.value = first_uj
        self.period_s = period_s
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._t0 = 0.0

    def _put(self, uj: int) -> None:
        fd = os.open(self.path, os.O_WRONLY)
        try:
            os.pwrite(fd, _counter_text(uj).encode(), 0)
        finally:
            os.close(fd)
        self.value = uj

    def start(self) -> None:
        self._t0 = time.monotonic()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.period_s):
            self._put(self.first + int(self.watts * (time.monotonic() - self._t0) * 1e6))

    def stop(self) -> int:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        final = self.first + int(self.watts * (time.monotonic() - self._t0) * 1e6)
        self._put(final)
        return final
