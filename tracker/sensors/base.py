"""What every sensor offers the sampler: cheap power reads and/or a cumulative energy counter.

A sensor talks to one piece of hardware (or a model of it) and nothing else: it never knows
about threads, files or carbon. The sampler decides when to read it.
"""

from __future__ import annotations

import threading
from abc import ABC
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Optional

# Method labels that travel with every number into the summary.
COUNTER = "counter"    # a hardware energy counter (NVML total energy, RAPL energy_uj)
SAMPLED = "sampled"    # measured power, integrated over time (trapezoid rule)
MODELED = "modeled"    # power from a model (utilisation x TDP, memory size x W/GB)
ESTIMATE = "estimate"  # a planning figure, nothing measured

# A whole-node meter (ACPI power meter, a Grace Hopper module's power) is its own component.
# When one is measured, it is the IT total: every other device of the machine is measured too,
# but marked `details["included_in"] = "node"` and shown as a part of it, never added again.
NODE = "node"
INCLUDED_IN = "included_in"


def counted(details: Optional[dict[str, Any]]) -> bool:
    """Does a device with these `details` add to the IT total? False for a device included
    in a whole-node meter (it is a part of that meter's energy)."""
    return not (details and details.get(INCLUDED_IN))


@dataclass(frozen=True)
class SensorInfo:
    """Static description of one measured device, as written to run.json and the summary."""

    name: str                 # unique key in logs: "gpu0", "cpu", "ram"
    component: str            # "gpu" | "cpu" | "ram"
    method: str               # COUNTER | SAMPLED | MODELED
    description: str          # human text: "NVIDIA H100 80GB HBM3 (NVML energy counter)"
    details: dict[str, Any] = field(default_factory=dict)  # uuid, tdp_w, rapl paths, notes ...

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Sensor(ABC):
    """One measured device.

    A sensor offers power (W) when `has_power`, a cumulative energy counter (J) when
    `has_counter`, or both. The counter's origin is arbitrary but it must be monotonic: a
    sensor unwraps hardware wraparound itself. Reads raise `SensorFailed` on error.
    """

    info: SensorInfo
    has_power: bool = False
    has_counter: bool = False
    # Minimum seconds between power reads; psutil-based models poll at <=1 Hz because a
    # faster poll costs the training thread GIL time.
    power_interval_s: float = 0.0
    # Seconds between scheduled counter reads (the sampler also reads at window edges and stop).
    counter_interval_s: float = 1.0
    # Utilisation (% busy) for idle energy, read at <= 1 Hz: a cheap read, but 10 Hz would add
    # nothing (NVML's own sample period is ~0.17-1 s).
    has_utilization: bool = False
    utilization_interval_s: float = 1.0

    def read_power_w(self) -> Optional[float]:
        """Current power in W, or None when this sensor has no power reading."""
        return None

    def read_energy_j(self) -> Optional[float]:
        """Cumulative energy in J since an arbitrary origin, or None when there is no counter."""
        return None

    def read_utilization_pct(self) -> Optional[float]:
        """Share (%) of the last sample period the device was busy, or None."""
        return None

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release hardware handles; called once when tracking stops."""

    @property
    def name(self) -> str:
        return self.info.name

    @property
    def component(self) -> str:
        return self.info.component

    @property
    def method(self) -> str:
        return self.info.method


@dataclass(frozen=True)
class Discovery:
    """What sensor discovery found: the sensors to use, and notes for the user (said once)."""

    sensors: list[Sensor]
    notes: list[str]


class SharedSession:
    """A vendor library session (NVML, AMD SMI) shared by the devices one discovery found:
    initialised once, shut down once, when the last of them closes. The libraries count
    inits per process, so shutting down more often would end them for the training framework
    too."""

    def __init__(self, shutdown: Callable[[], None], users: int = 0):
        self._shutdown = shutdown
        self.users = users
        self._lock = threading.Lock()

    def release(self) -> None:
        with self._lock:
            self.users -= 1
            if self.users == 0:
                self._shutdown()
