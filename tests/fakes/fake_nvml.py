"""A fake `pynvml` module standing in for the NVIDIA driver (tests only).

The fake sits at the import boundary (`sys.modules["pynvml"]`), so `load_nvml()`, `discover_gpus()`
and the Tracker's own discovery all talk to it exactly as they would to the real driver. Each fake
GPU draws power following a profile of its clock (`time.monotonic` unless a test passes the
hand-driven one the tracker reads too: tests/manual_time.py); its energy counter is the exact
integral of that profile, so a test knows the true joules of any interval. `nvml_site/pynvml.py`
builds one from environment variables for subprocesses (torchrun workers).
"""

from __future__ import annotations

import threading
import time
import types
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Union

# NVML return codes (nvml.h) used by the fake
NVML_SUCCESS = 0
NVML_ERROR_NOT_SUPPORTED = 3
NVML_ERROR_NOT_FOUND = 6
NVML_ERROR_LIBRARY_NOT_FOUND = 12
NVML_ERROR_GPU_IS_LOST = 15
FI_DEV_POWER_AVERAGE = 185
FI_DEV_POWER_INSTANT = 186

_MESSAGES = {
    NVML_ERROR_NOT_SUPPORTED: "Not Supported",
    NVML_ERROR_NOT_FOUND: "Not Found",
    NVML_ERROR_LIBRARY_NOT_FOUND: "NVML Shared Library Not Found",
    NVML_ERROR_GPU_IS_LOST: "GPU is lost",
}


class NVMLError(Exception):
    """Like pynvml.NVMLError: carries the NVML return code in `.value`."""

    def __init__(self, value: int):
        super().__init__(value)
        self.value = value

    def __str__(self) -> str:
        return _MESSAGES.get(self.value, f"Unknown Error ({self.value})")


# -- power profiles: watts as a function of seconds since the GPU was created, and the integral --
@dataclass(frozen=True)
class Constant:
    watts: float

    def power(self, s: float) -> float:
        return self.watts

    def energy(self, s: float) -> float:
        return self.watts * max(s, 0.0)


@dataclass(frozen=True)
class Step:
    """`before` W until `at_s` seconds, then `after` W."""

    before: float
    after: float
    at_s: float

    def power(self, s: float) -> float:
        return self.before if s < self.at_s else self.after

    def energy(self, s: float) -> float:
        s = max(s, 0.0)
        return self.before * min(s, self.at_s) + self.after * max(s - self.at_s, 0.0)


Profile = Union[Constant, Step]


@dataclass
class FakeGPU:
    """One fake physical GPU. Handles given out by the fake NVML are these objects."""

    name: str = "NVIDIA H100 80GB HBM3"
    uuid: str = "GPU-aaaaaaaa-0000-0000-0000-000000000000"
    profile: Profile = field(default_factory=lambda: Constant(300.0))
    has_counter: bool = True         # nvmlDeviceGetTotalEnergyConsumption (Volta and newer)
    has_instant: bool = True         # field 186, instant power (Ampere and newer drivers)
    has_power: bool = True           # nvmlDeviceGetPowerUsage
    has_average_field: bool = False  # field 185, power averaged over 1 s
    power_limit_w: float = 700.0
    counter_origin_mj: int = 123_456_789  # the driver's counter starts at boot, not at zero
    fail_after_reads: Optional[int] = None  # GPU_IS_LOST after this many energy/power reads
    fail_after_s: Optional[float] = None    # ... or this many seconds after creation
    counter_read_s: float = 0.0      # latency of a counter read (~4 ms on a real H100)
    mig_uuids: tuple[str, ...] = ()
    clock: Callable[[], float] = time.monotonic   # what "now" is for this GPU
    born: float = None  # type: ignore[assignment]  # clock() at creation unless given
    reads: int = 0
    # (start_s, end_s) periods in which a kernel runs; None: always busy. Utilisation is the
    # busy share of the time since the previous utilisation read, as NVML reports it for its
    # own sample period (a float here: NVML rounds to whole percent).
    busy: Optional[tuple[tuple[float, float], ...]] = None
    has_utilization: bool = True
    last_util_s: Optional[float] = None

    def __post_init__(self) -> None:
        if self.born is None:
            self.born = self.clock()

    def seconds(self) -> float:
        return self.clock() - self.born

    def busy_share(self, s0: float, s1: float) -> float:
        if self.busy is None:
            return 1.0
        if s1 <= s0:
            return 0.0
        busy = sum(max(0.0, min(b, s1) - max(a, s0)) for a, b in self.busy)
        return busy / (s1 - s0)

    def true_energy_j(self, t0: float, t1: float) -> float:
        """Exact energy (J) between two instants of its clock."""
        return self.profile.energy(t1 - self.born) - self.profile.energy(t0 - self.born)

    def lost_at(self) -> Optional[float]:
        """The clock's time at which the GPU is lost by time (None: not by time)."""
        return None if self.fail_after_s is None else self.born + self.fail_after_s

    def _read(self) -> float:
        """Count a data read, raise GPU_IS_LOST when due; returns seconds since creation."""
        self.reads += 1
        s = self.seconds()
        if (self.fail_after_reads is not None and self.reads > self.fail_after_reads) or (
                self.fail_after_s is not None and s >= self.fail_after_s):
            raise NVMLError(NVML_ERROR_GPU_IS_LOST)
        return s


@dataclass(frozen=True)
class MigHandle:
    uuid: str
    parent: FakeGPU


@dataclass
class _Value:
    uiVal: int


@dataclass
class _Utilization:
    gpu: float
    memory: float


@dataclass
class _FieldValue:
    nvmlReturn: int
    value: _Value
    fieldId: int = 0


class FakeNVML(types.ModuleType):
    """The slice of pynvml the library uses, answered by fake GPUs."""

    NVMLError = NVMLError
    NVML_ERROR_NOT_SUPPORTED = NVML_ERROR_NOT_SUPPORTED
    NVML_ERROR_GPU_IS_LOST = NVML_ERROR_GPU_IS_LOST
    NVML_ERROR_LIBRARY_NOT_FOUND = NVML_ERROR_LIBRARY_NOT_FOUND
    NVML_FI_DEV_POWER_INSTANT = FI_DEV_POWER_INSTANT

    def __init__(self, gpus: list[FakeGPU], *, library_missing: bool = False,
                 driver: str = "580.159.04"):
        super().__init__("pynvml")
        self.gpus = gpus
        self.library_missing = library_missing
        self.driver = driver
        self.calls: Counter[str] = Counter()
        self.initialised = 0
        self._lock = threading.Lock()

    def _call(self, name: str) -> None:
        with self._lock:
            self.calls[name] += 1
        if self.library_missing:
            raise NVMLError(NVML_ERROR_LIBRARY_NOT_FOUND)

    # -- library -----------------------------------------------------------------------------
    def nvmlInit(self) -> None:
        self._call("nvmlInit")
        self.initialised += 1

    def nvmlShutdown(self) -> None:
        self._call("nvmlShutdown")
        self.initialised -= 1

    def nvmlSystemGetDriverVersion(self) -> str:
        self._call("nvmlSystemGetDriverVersion")
        return self.driver

    # -- enumeration -------------------------------------------------------------------------
    def nvmlDeviceGetCount(self) -> int:
        self._call("nvmlDeviceGetCount")
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> FakeGPU:
        self._call("nvmlDeviceGetHandleByIndex")
        if not 0 <= index < len(self.gpus):
            raise NVMLError(NVML_ERROR_NOT_FOUND)
        return self.gpus[index]

    def nvmlDeviceGetHandleByUUID(self, uuid: Union[str, bytes]) -> Union[FakeGPU, MigHandle]:
        self._call("nvmlDeviceGetHandleByUUID")
        text = uuid.decode() if isinstance(uuid, bytes) else uuid
        for gpu in self.gpus:
            if gpu.uuid == text:
                return gpu
            if text in gpu.mig_uuids:
                return MigHandle(text, gpu)
        raise NVMLError(NVML_ERROR_NOT_FOUND)

    def nvmlDeviceGetDeviceHandleFromMigDeviceHandle(self, handle: MigHandle) -> FakeGPU:
        self._call("nvmlDeviceGetDeviceHandleFromMigDeviceHandle")
        if not isinstance(handle, MigHandle):
            raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
        return handle.parent

    def nvmlDeviceGetName(self, handle: Any) -> str:
        self._call("nvmlDeviceGetName")
        return handle.name if isinstance(handle, FakeGPU) else handle.parent.name + " MIG 1g.10gb"

    def nvmlDeviceGetUUID(self, handle: Any) -> str:
        self._call("nvmlDeviceGetUUID")
        return handle.uuid

    def nvmlDeviceGetEnforcedPowerLimit(self, handle: FakeGPU) -> int:
        self._call("nvmlDeviceGetEnforcedPowerLimit")
        return int(handle.power_limit_w * 1000)

    # -- readings ----------------------------------------------------------------------------
    def nvmlDeviceGetTotalEnergyConsumption(self, handle: FakeGPU) -> int:
        self._call("nvmlDeviceGetTotalEnergyConsumption")
        if not handle.has_counter:
            raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
        if handle.counter_read_s:
            time.sleep(handle.counter_read_s)
        s = handle._read()
        return handle.counter_origin_mj + round(handle.profile.energy(s) * 1000.0)

    def nvmlDeviceGetPowerUsage(self, handle: FakeGPU) -> int:
        self._call("nvmlDeviceGetPowerUsage")
        if not handle.has_power:
            raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
        s = handle._read()
        return round(handle.profile.power(s) * 1000.0)

    def nvmlDeviceGetUtilizationRates(self, handle: FakeGPU) -> _Utilization:
        self._call("nvmlDeviceGetUtilizationRates")
        if not handle.has_utilization:
            raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
        s = handle.seconds()
        since = handle.last_util_s if handle.last_util_s is not None else s - 1.0 / 6.0
        handle.last_util_s = s
        return _Utilization(gpu=100.0 * handle.busy_share(since, s), memory=0.0)

    def nvmlDeviceGetFieldValues(self, handle: FakeGPU, field_ids: list[int]) -> list[_FieldValue]:
        self._call("nvmlDeviceGetFieldValues")
        out = []
        for fid in field_ids:
            if fid == FI_DEV_POWER_INSTANT and handle.has_instant:
                s = handle._read()
                out.append(_FieldValue(NVML_SUCCESS, _Value(round(
                    handle.profile.power(s) * 1000.0)), fid))
            elif fid == FI_DEV_POWER_AVERAGE and handle.has_average_field:
                s = handle._read()     # the mean over the last second, from the exact integral
                mean = handle.profile.energy(s) - handle.profile.energy(s - 1.0)
                out.append(_FieldValue(NVML_SUCCESS, _Value(round(mean * 1000.0)), fid))
            else:
                out.append(_FieldValue(NVML_ERROR_NOT_SUPPORTED, _Value(0), fid))
        return out


# Distinct UUIDs so unique-prefix matching can be exercised.
UUIDS = (
    "GPU-aaaaaaaa-1111-4000-8000-000000000000",
    "GPU-bbbbbbbb-2222-4000-8000-000000000001",
    "GPU-bbbbcccc-3333-4000-8000-000000000002",
    "GPU-dddddddd-4444-4000-8000-000000000003",
)
