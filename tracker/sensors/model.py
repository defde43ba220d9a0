"""psutil-based power models for machines without readable RAPL counters (method "modeled").

CPU: idle floor + utilisation x (TDP - idle floor). RAM: installed GiB x a DDR4 W/GiB figure.
Both describe the whole machine, as RAPL does, not this process.
"""

from __future__ import annotations

import math
from typing import Optional

import psutil

from ..errors import ConfigError, SensorFailed, SensorUnavailable
from .base import MODELED, Sensor, SensorInfo

# Default CPU TDP when the user gives none. Server parts run ~2-4 W per hardware thread at TDP
# (Xeon Platinum 8380: 270 W / 80 threads = 3.4; Xeon 8480+: 350 W / 112 = 3.1; EPYC 7763:
# 280 W / 128 = 2.2); cloud vCPUs are such threads. 3 W sits mid-range, nearer Intel, which most
# cloud instances still run on.
CPU_W_PER_LOGICAL_CPU = 3.0
# Small machines still power a whole package's uncore, memory controller and I/O; the smallest
# mainstream CPU packages (laptop U-series) are specified at 15 W.
CPU_MIN_DEFAULT_TDP_W = 15.0
# Package power at 0 % utilisation as a fraction of TDP. Uncore, memory controller and I/O stay
# powered at idle; server packages idle at roughly a quarter to a third of TDP (and SPECpower
# results put whole-server idle at ~20-35 % of full load). 0.3 errs towards not undercounting.
CPU_IDLE_FRACTION = 0.3
# Upper bound on a user-given TDP: an 8-socket server is ~3 kW of CPU; above this is a typo
# (mW, or a whole rack).
CPU_MAX_TDP_W = 5000.0

# DRAM power per installed GiB: ~3 W per 8 GiB DDR4 module under load (vendor power guides,
# e.g. Crucial/Micron), i.e. 0.375 W/GiB, the figure other energy trackers also use. Treated as
# constant: DRAM refresh and background power dominate and do not follow utilisation.
RAM_W_PER_GIB = 0.375
_BYTES_PER_GIB = 1024**3


def validate_tdp_w(tdp_w: object) -> float:
    """`tdp_w` as a float, or `ConfigError` when it is not a finite number in (0, 5000) W."""
    if isinstance(tdp_w, bool) or not isinstance(tdp_w, (int, float)):
        raise ConfigError(
            f"cpu_tdp_w must be a number of watts, got {tdp_w!r}. "
            "Give the total TDP of all CPU packages, e.g. cpu_tdp_w=205."
        )
    if not (math.isfinite(tdp_w) and 0 < tdp_w < CPU_MAX_TDP_W):
        raise ConfigError(
            f"cpu_tdp_w={tdp_w!r} W is not a plausible CPU TDP: give a finite value above 0 and "
            f"below {CPU_MAX_TDP_W:g} W (the total of all CPU packages, e.g. 2 x 205 = 410), "
            "or leave it out to use the default from the logical CPU count."
        )
    return float(tdp_w)


def default_tdp_w(logical_cpus: int) -> tuple[float, str]:
    """The default TDP for `logical_cpus` logical CPUs, and a sentence saying how it was chosen."""
    per_cpu_w = CPU_W_PER_LOGICAL_CPU * logical_cpus
    rule = f"{CPU_W_PER_LOGICAL_CPU:g} W per logical CPU x {logical_cpus} CPUs"
    if per_cpu_w < CPU_MIN_DEFAULT_TDP_W:
        return CPU_MIN_DEFAULT_TDP_W, f"default: {CPU_MIN_DEFAULT_TDP_W:g} W floor ({rule})"
    return per_cpu_w, f"default: {rule}"


class CpuModelSensor(Sensor):
    """CPU power = idle + (TDP - idle) x whole-machine utilisation, read at most once a second.

    Utilisation is `psutil.cpu_percent(interval=None)` over all CPUs (not this process), to
    match what RAPL would measure: whole packages. Each read averages utilisation since the
    previous call in this process, so at 1 Hz it covers the sampling interval.
    """

    has_power = True
    power_interval_s = 1.0  # 10 Hz psutil polling slows a 1 ms-step training loop by 3-4 %

    def __init__(self, tdp_w: Optional[float] = None):
        """`tdp_w`: total TDP of all CPU packages in W; None derives it from the CPU count."""
        logical_cpus = psutil.cpu_count(logical=True) or 1
        if tdp_w is None:
            self.tdp_w, tdp_source = default_tdp_w(logical_cpus)
        else:
            self.tdp_w, tdp_source = validate_tdp_w(tdp_w), "user"
        self.idle_w = CPU_IDLE_FRACTION * self.tdp_w
        self.info = SensorInfo(
            name="cpu",
            component="cpu",
            method=MODELED,
            description=(
                f"CPU power model: {CPU_IDLE_FRACTION:.0%} idle + utilisation x "
                f"TDP {self.tdp_w:g} W ({'user-given' if tdp_w is not None else 'default'})"
            ),
            details={
                "tdp_w": self.tdp_w,
                "tdp_source": tdp_source,
                "idle_fraction": CPU_IDLE_FRACTION,
                "logical_cpus": logical_cpus,
            },
        )
        try:
            self._utilisation_percent()  # the first call only sets psutil's baseline
        except SensorFailed as exc:
            raise SensorUnavailable(str(exc)) from exc

    def read_power_w(self) -> float:
        utilisation = min(max(self._utilisation_percent(), 0.0), 100.0) / 100.0
        return self.idle_w + (self.tdp_w - self.idle_w) * utilisation

    def _utilisation_percent(self) -> float:
        try:
            return float(psutil.cpu_percent(interval=None))
        except (OSError, psutil.Error) as exc:
            raise SensorFailed(f"psutil.cpu_percent failed: {exc}") from exc


class RamModelSensor(Sensor):
    """RAM power = installed GiB x `RAM_W_PER_GIB`, constant for the run.

    Installed memory is `psutil.virtual_memory().total`, read once here; inside a container it
    is the host's (or VM's) memory, matching the whole-machine CPU figures.
    """

    has_power = True
    power_interval_s = 1.0

    def __init__(self) -> None:
        try:
            total_bytes: int = psutil.virtual_memory().total
        except (OSError, psutil.Error) as exc:
            raise SensorUnavailable(f"psutil.virtual_memory failed: {exc}") from exc
        self.installed_gib = total_bytes / _BYTES_PER_GIB
        self.power_w = RAM_W_PER_GIB * self.installed_gib
        self.info = SensorInfo(
            name="ram",
            component="ram",
            method=MODELED,
            description=(
                f"RAM power model: {RAM_W_PER_GIB:g} W/GiB x {self.installed_gib:.1f} GiB "
                f"= {self.power_w:.1f} W"
            ),
            details={"w_per_gib": RAM_W_PER_GIB, "installed_gib": self.installed_gib},
        )

    def read_power_w(self) -> float:
        return self.power_w
