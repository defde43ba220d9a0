"""A fake `amdsmi` module standing in for ROCm's AMD SMI (tests only), as fake_nvml.py does for
NVML.

It sits at the import boundary (`sys.modules["amdsmi"]`), so `load_amdsmi()`, discovery and the
Tracker talk to it exactly as they would to the real bindings. Names, arguments and return
shapes follow amdsmi's Python interface (py-interface/amdsmi_interface.py, ROCm 6.x-7.x):
dicts with "N/A" for what a GPU does not report, `AmdSmiLibraryException` carrying an
`err_code` (2: AMDSMI_STATUS_NOT_SUPPORTED), power in whole watts, the energy accumulator in
ticks of `counter_resolution` µJ (15.3 µJ on MI300X), UUIDs like
"a1ff74a1-0000-1000-80c0-f3c0a7c5be3d".

Each fake GPU draws power following a profile of its clock (`time.monotonic` unless a test
passes the hand-driven one: tests/manual_time.py; the Constant and Step profiles of fake_nvml);
its accumulator is the integral in ticks, so a test knows the joules of any interval, and every
counter read is recorded (`reads`: (its clock's time, ticks)).
A partitioned GPU (MI300X in CPX mode) shows one processor handle per partition; as on the real
driver, only the partition with id 0 reports energy and power, the others "N/A" or
NOT_SUPPORTED. `amdsmi_site/amdsmi.py` builds one from environment variables for subprocesses.
"""

from __future__ import annotations

import threading
import time
import types
from collections import Counter
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any, Callable, Optional

from fake_nvml import Constant, Profile, Step

__all__ = ["AMDSMI_STATUS_NOT_SUPPORTED", "AmdSmiException", "AmdSmiLibraryException",
           "Constant", "FakeAMDSMI", "FakeAmdGPU", "Handle", "Step"]

NA = "N/A"
# amdsmi_status_t values used by the fake (amdsmi.h)
AMDSMI_STATUS_INVAL = 1
AMDSMI_STATUS_NOT_SUPPORTED = 2
AMDSMI_STATUS_NOT_FOUND = 31
AMDSMI_STATUS_DRIVER_NOT_LOADED = 34
_INFO = {
    AMDSMI_STATUS_INVAL: "AMDSMI_STATUS_INVAL - Invalid parameters",
    AMDSMI_STATUS_NOT_SUPPORTED: "AMDSMI_STATUS_NOT_SUPPORTED - Feature not supported",
    AMDSMI_STATUS_NOT_FOUND: "AMDSMI_STATUS_NOT_FOUND - Device Not found",
    AMDSMI_STATUS_DRIVER_NOT_LOADED: "AMDSMI_STATUS_DRIVER_NOT_LOADED - Driver not loaded",
}


class AmdSmiException(Exception):
    """Base smi exception class (amdsmi_exception.py)."""


class AmdSmiLibraryException(AmdSmiException):
    def __init__(self, err_code: int):
        err_code = abs(err_code)
        super().__init__(err_code)
        self.err_code = err_code
        self.err_info = _INFO.get(err_code, "AMDSMI_STATUS_UNKNOWN_ERROR - An unknown error "
                                            "occurred")

    def __str__(self) -> str:
        return f"Error code:\n\t{self.err_code} | {self.err_info}"

    def get_error_info(self) -> str:
        return self.err_info

    def get_error_code(self) -> int:
        return self.err_code


class AmdSmiInitFlags(IntEnum):
    INIT_ALL_PROCESSORS = 0xFFFFFFFF
    INIT_AMD_CPUS = 1 << 0
    INIT_AMD_GPUS = 1 << 1
    INIT_NON_AMD_CPUS = 1 << 2
    INIT_NON_AMD_GPUS = 1 << 3
    INIT_AMD_APUS = (1 << 0) | (1 << 1)


@dataclass
class FakeAmdGPU:
    """One fake physical AMD GPU."""

    name: str = "AMD Instinct MI300X"
    serial: str = "0xD2C13B6C5A2E61F0"          # asic_serial: one per physical GPU
    uuid: str = "a1ff74a1-0000-1000-80c0-f3c0a7c5be3d"
    bdf: str = "0000:0c:00.0"
    profile: Profile = field(default_factory=lambda: Constant(500.0))
    has_counter: bool = True                   # amdsmi_get_energy_count (MI200, MI300)
    counter_resolution_uj: float = 15.3
    counter_origin_ticks: int = 41_797_534_008  # the accumulator starts at boot, not at zero
    counter_bits: int = 64                      # 32: the accumulator wraps at 2**32 ticks
    power_field: str = "current_socket_power"  # MI300; "average_socket_power" on MI200
    rocm7: bool = False                        # ROCm 7 also reports "socket_power"
    partitions: int = 1                        # 8: CPX mode on an MI300X
    compute_partition: str = "SPX"
    gfx_activity: int = 97
    power_cap_w: float = 750.0
    fail_after_reads: Optional[int] = None     # reads then raise (a lost GPU)
    clock: Callable[[], float] = time.monotonic   # what "now" is (tests/manual_time.py)
    born: float = None  # type: ignore[assignment]  # clock() at creation unless given
    reads: list[tuple[float, int]] = field(default_factory=list)   # counter reads
    data_reads: int = 0

    def __post_init__(self) -> None:
        if self.born is None:
            self.born = self.clock()

    def ticks(self) -> int:
        s = self.clock() - self.born
        raw = self.counter_origin_ticks + int(self.profile.energy(s) * 1e6
                                              / self.counter_resolution_uj)
        return raw % (2 ** self.counter_bits)

    def watts(self) -> int:
        return round(self.profile.power(self.clock() - self.born))

    def true_energy_j(self, t0: float, t1: float) -> float:
        """Exact energy (J) between two instants of its clock."""
        return self.profile.energy(t1 - self.born) - self.profile.energy(t0 - self.born)

    def counted_j(self, since: float) -> float:
        """Energy (J) the accumulator counted between its first read at or after `since` (a
        instant of its clock) and its last read: what a reader of it measures."""
        got = [ticks for t, ticks in self.reads if t >= since]
        if len(got) < 2:
            return 0.0
        delta = got[-1] - got[0]
        if delta < 0:
            delta += 2 ** self.counter_bits
        return delta * self.counter_resolution_uj / 1e6


@dataclass(frozen=True)
class Handle:
    """A processor handle: a GPU, or one partition of one."""

    gpu: FakeAmdGPU
    partition: int = 0


class FakeAMDSMI(types.ModuleType):
    """The slice of amdsmi the library uses, answered by fake GPUs."""

    AmdSmiException = AmdSmiException
    AmdSmiLibraryException = AmdSmiLibraryException
    AmdSmiInitFlags = AmdSmiInitFlags

    def __init__(self, gpus: list[FakeAmdGPU], *, driver_missing: bool = False,
                 enumeration_info: bool = True, driver_version: str = "6.10.5"):
        super().__init__("amdsmi")
        self.gpus = gpus
        self.driver_missing = driver_missing
        self.enumeration_info = enumeration_info    # amdsmi >= 6.4 has it
        self.driver_version = driver_version
        self.calls: Counter[str] = Counter()
        self.initialised = 0
        self.handles = [Handle(g, p) for g in gpus for p in range(g.partitions)]
        self._lock = threading.Lock()

    def __getattribute__(self, name: str) -> Any:
        if name == "amdsmi_get_gpu_enumeration_info" and not object.__getattribute__(
                self, "enumeration_info"):
            raise AttributeError(name)   # older amdsmi: the function does not exist
        return object.__getattribute__(self, name)

    def _call(self, name: str) -> None:
        with self._lock:
            self.calls[name] += 1
        if self.driver_missing and name != "amdsmi_shut_down":
            raise AmdSmiLibraryException(AMDSMI_STATUS_DRIVER_NOT_LOADED)
        if name not in ("amdsmi_init", "amdsmi_shut_down") and self.initialised <= 0:
            raise AmdSmiLibraryException(32)   # AMDSMI_STATUS_NOT_INIT

    def _handle(self, h: Any) -> Handle:
        if not isinstance(h, Handle) or h not in self.handles:
            raise AmdSmiLibraryException(AMDSMI_STATUS_INVAL)
        return h

    def _data(self, h: Handle) -> FakeAmdGPU:
        g = h.gpu
        g.data_reads += 1
        if g.fail_after_reads is not None and g.data_reads > g.fail_after_reads:
            raise AmdSmiLibraryException(AMDSMI_STATUS_NOT_FOUND)
        return g

    # -- library -----------------------------------------------------------------------------
    def amdsmi_init(self, flag: AmdSmiInitFlags = AmdSmiInitFlags.INIT_AMD_GPUS) -> None:
        self._call("amdsmi_init")
        if not isinstance(flag, AmdSmiInitFlags):
            raise AmdSmiException(f"Invalid parameter: {flag!r}")
        self.initialised += 1

    def amdsmi_shut_down(self) -> None:
        self._call("amdsmi_shut_down")
        self.initialised -= 1

    # -- discovery ---------------------------------------------------------------------------
    def amdsmi_get_processor_handles(self) -> list[Handle]:
        self._call("amdsmi_get_processor_handles")
        return list(self.handles)

    def amdsmi_get_gpu_device_uuid(self, h: Handle) -> str:
        self._call("amdsmi_get_gpu_device_uuid")
        h = self._handle(h)
        if h.partition == 0:
            return h.gpu.uuid
        return h.gpu.uuid[:-2] + f"{(int(h.gpu.uuid[-2:], 16) + h.partition) % 256:02x}"

    def amdsmi_get_gpu_device_bdf(self, h: Handle) -> str:
        self._call("amdsmi_get_gpu_device_bdf")
        h = self._handle(h)
        return h.gpu.bdf[:-1] + str(h.partition)   # partitions: functions of the device

    def amdsmi_get_gpu_asic_info(self, h: Handle) -> dict[str, Any]:
        self._call("amdsmi_get_gpu_asic_info")
        h = self._handle(h)
        return {"market_name": h.gpu.name, "vendor_id": "0x1002",
                "vendor_name": "Advanced Micro Devices Inc. [AMD/ATI]", "subvendor_id": "0x1002",
                "device_id": "0x74a1", "rev_id": "0x00", "asic_serial": h.gpu.serial,
                "oam_id": 0, "num_compute_units": 304 // h.gpu.partitions,
                "target_graphics_version": "gfx942"}

    def amdsmi_get_gpu_kfd_info(self, h: Handle) -> dict[str, Any]:
        self._call("amdsmi_get_gpu_kfd_info")
        h = self._handle(h)
        i = self.handles.index(h)
        return {"kfd_id": 40000 + i, "node_id": 2 + i, "current_partition_id": h.partition}

    def amdsmi_get_gpu_compute_partition(self, h: Handle) -> str:
        self._call("amdsmi_get_gpu_compute_partition")
        return self._handle(h).gpu.compute_partition

    def amdsmi_get_gpu_enumeration_info(self, h: Handle) -> dict[str, Any]:
        self._call("amdsmi_get_gpu_enumeration_info")
        h = self._handle(h)
        i = self.handles.index(h)
        return {"drm_render": 128 + i, "drm_card": i, "hsa_id": 2 + i, "hip_id": i,
                "hip_uuid": "GPU-" + h.gpu.serial[2:].lower()[:15] + f"{h.partition:x}"}

    def amdsmi_get_gpu_driver_info(self, h: Handle) -> dict[str, Any]:
        self._call("amdsmi_get_gpu_driver_info")
        self._handle(h)
        return {"driver_name": "amdgpu", "driver_version": self.driver_version,
                "driver_date": "2015/01/01 00:00"}

    def amdsmi_get_power_cap_info(self, h: Handle) -> dict[str, Any]:
        self._call("amdsmi_get_power_cap_info")
        g = self._handle(h).gpu
        cap = int(g.power_cap_w * 1e6)   # µW
        return {"power_cap": cap, "default_power_cap": cap, "dpm_cap": 0,
                "min_power_cap": 0, "max_power_cap": cap}

    # -- readings ----------------------------------------------------------------------------
    def amdsmi_get_energy_count(self, h: Handle) -> dict[str, Any]:
        self._call("amdsmi_get_energy_count")
        h = self._handle(h)
        if not h.gpu.has_counter or h.partition != 0:
            raise AmdSmiLibraryException(AMDSMI_STATUS_NOT_SUPPORTED)
        g = self._data(h)
        ticks = g.ticks()
        g.reads.append((g.clock(), ticks))
        return {"power": ticks, "energy_accumulator": ticks,   # "power": deprecated name
                "counter_resolution": g.counter_resolution_uj,
                "timestamp": time.monotonic_ns() // 10}

    def amdsmi_get_power_info(self, h: Handle) -> dict[str, Any]:
        self._call("amdsmi_get_power_info")
        h = self._handle(h)
        out: dict[str, Any] = {"current_socket_power": NA, "average_socket_power": NA,
                               "gfx_voltage": NA, "soc_voltage": NA, "mem_voltage": NA,
                               "power_limit": int(h.gpu.power_cap_w * 1e6)}
        if h.partition == 0 and h.gpu.power_field:
            g = self._data(h)
            out[g.power_field] = g.watts()
            if g.rocm7:
                out["socket_power"] = g.watts()
        return out

    def amdsmi_get_gpu_activity(self, h: Handle) -> dict[str, Any]:
        self._call("amdsmi_get_gpu_activity")
        h = self._handle(h)
        return {"gfx_activity": h.gpu.gfx_activity if h.partition == 0 else NA,
                "umc_activity": 3, "mm_activity": NA}


# Distinct serials, UUIDs and PCI addresses for several GPUs.
SERIALS = ("0xD2C13B6C5A2E61F0", "0x8E0A6E2C7D1B4F33", "0x31F4C2AA90B7E6D1", "0x6B2D9E0F4C8A1357")
AMD_UUIDS = ("a1ff74a1-0000-1000-80c0-f3c0a7c5be3d", "b2ff74a1-0000-1000-8047-1bb3c0e2a914",
             "c3ff74a1-0000-1000-8022-9d41e07b55c6", "d4ff74a1-0000-1000-80aa-0c6f2b3e8d70")
BDFS = ("0000:0c:00.0", "0000:22:00.0", "0000:38:00.0", "0000:5c:00.0")


def gpus(n: int, watts: float = 500.0, **kw: Any) -> list[FakeAmdGPU]:
    """n fake MI300X GPUs drawing a constant `watts`."""
    return [FakeAmdGPU(serial=SERIALS[i], uuid=AMD_UUIDS[i], bdf=BDFS[i],
                       profile=Constant(watts), **kw) for i in range(n)]
