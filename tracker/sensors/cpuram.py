"""Choose the CPU and RAM sensors: RAPL counters where readable, psutil models otherwise.

Every fallback to a model comes with one note saying why, and what would make it measured.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Union

from ..errors import SensorUnavailable
from .base import Discovery, Sensor
from .cpu_scope import MACHINE, PROCESS, check_cpu_scope, run_usage
from .model import CpuModelSensor, RamModelSensor, validate_tdp_w
from .rapl import (
    DEFAULT_POWERCAP_ROOT,
    RaplAccessDenied,
    RaplSensor,
    RaplZone,
    dram_zones,
    list_zones,
    package_zones,
)


def discover_cpu_ram(
    *,
    cpu_tdp_w: Optional[float] = None,
    powercap_root: Union[str, os.PathLike[str]] = DEFAULT_POWERCAP_ROOT,
    use_rapl: bool = True,
    cpu: bool = True,
    ram: bool = True,
    cpu_scope: str = MACHINE,
    env: Optional[Mapping[str, str]] = None,
) -> Discovery:
    """CPU and RAM sensors for this machine, and notes for the user.

    `cpu_tdp_w` is the total TDP of all CPU packages, used only when CPU power is modeled;
    `ConfigError` if it is not a finite number in (0, 5000) W. `use_rapl=False` models both.
    `cpu=False` / `ram=False`: that component is left to another sensor (no sensor, no note).
    `cpu_scope`: "machine" or "process" (cpu_scope.py), for the models; `env` (default
    os.environ) tells a SLURM job, whose cgroup then measures the run's CPU time.
    """
    if cpu_tdp_w is not None:
        cpu_tdp_w = validate_tdp_w(cpu_tdp_w)
    cpu_scope = check_cpu_scope(cpu_scope)
    root = Path(powercap_root)
    want_cpu, want_ram = cpu, ram
    if not (want_cpu or want_ram):
        return Discovery(sensors=[], notes=[])

    if use_rapl:
        zones = list_zones(root)
        cpu_rapl = _open_rapl(root, package_zones(zones) if want_cpu else [], "cpu")
        ram_rapl = _open_rapl(root, dram_zones(zones) if want_ram else [], "ram")
        if not cpu_rapl.sensors and cpu_rapl.reason is None:
            cpu_rapl = _no_package_zone(root)
            if not zones:
                ram_rapl = cpu_rapl  # one reason for both: say it once
        if not ram_rapl.sensors and ram_rapl.reason is None:
            ram_rapl = _Rapl([], "No RAPL DRAM domain here (usual on client and AMD CPUs)", None)
    else:
        cpu_rapl = ram_rapl = _Rapl([], "RAPL not used (use_rapl=False)", None)

    notes: list[str] = []
    if cpu_rapl.sensors and cpu_tdp_w is not None:
        notes.append(f"cpu_tdp_w={cpu_tdp_w:g} is not used: CPU energy is measured by RAPL.")
    need_cpu_model = want_cpu and not cpu_rapl.sensors
    need_ram_model = want_ram and not ram_rapl.sensors
    usage: Any = None
    if cpu_scope == PROCESS and (need_cpu_model or need_ram_model):
        try:   # one measure of the run for both models: one process-tree scan per tick
            usage = run_usage(env)
        except Exception as exc:   # psutil cannot read this process: bill the machine
            notes.append(f"cpu_scope=\"process\" not applied: the run's CPU time is "
                         f"unreadable ({exc}); CPU and RAM are billed for the whole machine")
            cpu_scope = MACHINE
    cpu_model = CpuModelSensor(tdp_w=cpu_tdp_w, scope=cpu_scope, usage=usage) \
        if need_cpu_model else None
    ram_model = RamModelSensor(scope=cpu_scope, usage=usage) if need_ram_model else None
    if cpu_scope == PROCESS:
        counted = [c for c, r in (("CPU", cpu_rapl), ("RAM", ram_rapl)) if r.sensors]
        if counted:
            notes.append(f"cpu_scope=\"process\" is not applied to {' and '.join(counted)}: "
                         "RAPL counts whole packages and DIMMs, not one process's share, so "
                         "that line is the whole machine's measured energy")
        modeled = [c for c, m in (("CPU", cpu_model), ("RAM", ram_model)) if m is not None]
        if modeled:
            notes.append(f"cpu_scope=\"process\": the {' and '.join(modeled)} "
                         f"model{'s bill' if len(modeled) > 1 else ' bills'} the run's share "
                         f"({usage.source})")

    if cpu_model and ram_model and cpu_rapl == ram_rapl:
        terms = f"{_cpu_terms(cpu_model)}; {_ram_terms(ram_model)}"
        notes.append(_note(cpu_rapl, "CPU and RAM power are", terms, _tdp_hint(cpu_tdp_w)))
    else:
        if cpu_model:
            notes.append(_note(cpu_rapl, "CPU power is", _cpu_terms(cpu_model),
                               _tdp_hint(cpu_tdp_w)))
        if ram_model:
            notes.append(_note(ram_rapl, "RAM power is", _ram_terms(ram_model), None))

    cpu_sensors: list[Sensor] = [cpu_model] if cpu_model else list(cpu_rapl.sensors)
    ram_sensors: list[Sensor] = [ram_model] if ram_model else list(ram_rapl.sensors)
    return Discovery(sensors=cpu_sensors + ram_sensors, notes=notes)


@dataclass(frozen=True)
class _Rapl:
    """RAPL sensors for one component, or none and why (plus how to fix it, when one can)."""

    sensors: list[RaplSensor]
    reason: Optional[str]
    fix: Optional[str]


def _open_rapl(root: Path, zones: list[RaplZone], component: str) -> _Rapl:
    """Sensors for all `zones`, or none: a partial set of packages would undercount."""
    sensors: list[RaplSensor] = []
    try:
        for zone in zones:
            sensors.append(RaplSensor(zone, component))
    except SensorUnavailable as exc:
        for sensor in sensors:
            sensor.close()
        if isinstance(exc, RaplAccessDenied):
            # the glob also matches the top-level subzone links (intel-rapl:0:0), so DRAM too
            chmod = f"sudo chmod o+r {root}/intel-rapl:*/energy_uj"
            return _Rapl([], "RAPL energy_uj is root-only here", f"run as root or `{chmod}`")
        return _Rapl([], f"RAPL is unreadable here ({exc})", None)
    return _Rapl(sensors, None, None)


def _no_package_zone(root: Path) -> _Rapl:
    if root.is_dir():
        return _Rapl(
            [],
            f"No RAPL package zone under {root}",
            "load the RAPL driver (`sudo modprobe intel_rapl_msr`; AMD needs Linux 5.8+)",
        )
    return _Rapl([], f"No RAPL counters here ({root} is absent, as on most cloud VMs)", None)


def _cpu_terms(model: CpuModelSensor) -> str:
    return f"TDP {model.tdp_w:g} W, {model.info.details['tdp_source']}"


def _ram_terms(model: RamModelSensor) -> str:
    return (
        f"{model.info.details['w_per_gib']:g} W/GiB x {model.installed_gib:.1f} GiB "
        f"= {model.power_w:.1f} W"
    )


def _tdp_hint(cpu_tdp_w: Optional[float]) -> Optional[str]:
    # without a counter, a real TDP is the one input that sharpens the CPU model
    if cpu_tdp_w is None:
        return "Pass cpu_tdp_w= (the total TDP of your CPUs) to sharpen the estimate"
    return None


def _note(rapl: _Rapl, subject: str, terms: str, hint: Optional[str]) -> str:
    """The note, said once: <why>: CPU power is modeled (<terms>). To measure instead, <fix>."""
    note = f"{rapl.reason}: {subject} modeled ({terms})."
    if rapl.fix:
        note += f" To measure instead, {rapl.fix}."
    elif hint:
        note += f" {hint}."
    return note
