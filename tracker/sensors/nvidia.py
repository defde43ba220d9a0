"""NVIDIA GPUs through NVML: power (W) for the timeline, the total-energy counter (J) for totals.

This is the only module that imports `pynvml`. NVML errors become `SensorFailed` /
`SensorUnavailable`, and capabilities become flags (`has_counter`, `power_source`).

Costs measured on an H100 (driver 580): the energy counter read takes ~3.9 ms and advances every
~100 ms; `nvmlDeviceGetPowerUsage` takes ~2 us but on Hopper is a ~1 s average; the instant
power field takes ~35 us. So the sampler reads instant power at its rate (falling back to the
average) and reads the counter only at a lower cadence, at window edges and at stop.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Optional, Union

from ..errors import ConfigError, SensorFailed, SensorUnavailable
from .base import COUNTER, SAMPLED, Discovery, Sensor, SensorInfo, SharedSession

GpuSpec = Union[int, str]

# NVML field ids (mW): power averaged over the last 1 s, and the instantaneous reading
# (Ampere and newer drivers).
FI_DEV_POWER_AVERAGE = 185
FI_DEV_POWER_INSTANT = 186
AVERAGE_WINDOW_S = 1.0
NVML_SUCCESS = 0


def load_nvml() -> Any:
    """Import and initialise NVML; raise SensorUnavailable with the reason if that fails."""
    try:
        import pynvml
    except ImportError as e:  # nvidia-ml-py is a core dependency, but be explicit if missing
        raise SensorUnavailable(f"nvidia-ml-py is not installed ({e})") from e
    try:
        pynvml.nvmlInit()
    except Exception as e:  # NVMLError_LibraryNotFound, DriverNotLoaded, ...
        raise SensorUnavailable(f"NVML could not start: {_err(e)}") from e
    return pynvml


def _err(e: BaseException) -> str:
    text = str(e) or type(e).__name__
    return f"{type(e).__name__}: {text}" if type(e).__name__ not in text else text


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


@dataclass(frozen=True)
class _Target:
    """One physical GPU to measure, with why it was chosen."""

    index: int         # NVML index (PCI bus order)
    handle: Any
    note: str = ""


class NvmlSession(SharedSession):
    """One nvmlInit shared by the GPUs it found; released once, when the last GPU closes.
    NVML counts inits per process, so shutting down more than once would also end NVML for
    anything else in the process that uses it (the training framework, say)."""

    def __init__(self, nvml: Any, users: int = 0):
        super().__init__(lambda: shutdown_nvml(nvml), users)
        self.nvml = nvml


class NvidiaGPU(Sensor):
    """One physical NVIDIA GPU. Energy from the NVML counter when supported, else sampled power."""

    def __init__(self, nvml: Any, handle: Any, index: int, *, note: str = "",
                 counter_interval_s: float = 1.0, session: Optional[NvmlSession] = None):
        self._nvml = nvml
        self._session = session
        self._handle = handle
        self.index = index
        model = _text(nvml.nvmlDeviceGetName(handle))
        uuid = _text(nvml.nvmlDeviceGetUUID(handle))
        self.has_counter = self._probe_counter()
        self.has_utilization = self._probe_utilization()
        self._use_instant = self._probe_instant()
        self.has_power = self._use_instant or self._probe_average()
        if not (self.has_counter or self.has_power):
            raise SensorUnavailable(f"GPU {index} ({model}) reports neither energy nor power")
        self.counter_interval_s = counter_interval_s
        method = COUNTER if self.has_counter else SAMPLED
        power_source = ("instant power field" if self._use_instant
                        else "nvmlDeviceGetPowerUsage" if self.has_power else "none")
        # Without a counter, totals come from the 1 s average and the shape from the instant
        # field when the driver has both (tracker/fusion.py); the instant field alone aliases
        # on bursty loads.
        self.power_average_s: Optional[float] = None
        if not self.has_counter and self._use_instant and self._probe_average_field():
            self.power_average_s = AVERAGE_WINDOW_S
            power_source = "instant power field + 1 s average (fused)"
        how = ("NVML total-energy counter" if self.has_counter
               else f"NVML power ({power_source}) integrated, trapezoid rule")
        details: dict[str, Any] = {"index": index, "uuid": uuid, "model": model,
                                   "power_source": power_source}
        try:
            details["driver"] = _text(nvml.nvmlSystemGetDriverVersion())
        except Exception:
            pass
        limit = self._power_limit_w()
        if limit is not None:
            details["power_limit_w"] = limit
        if note:
            details["note"] = note
        if self.power_average_s is not None:
            details["power_fusion"] = {"tau_s": self.power_average_s,
                                       "instant": "NVML field 186",
                                       "average": "NVML field 185 (1 s average)"}
        self.info = SensorInfo(name=f"gpu{index}", component="gpu", method=method,
                               description=f"{model} ({how})", details=details)

    def close(self) -> None:
        if self._session is not None:
            session, self._session = self._session, None
            session.release()

    # -- capability probes (at construction, so the summary can say what is used) --------------
    def _probe_counter(self) -> bool:
        try:
            self._nvml.nvmlDeviceGetTotalEnergyConsumption(self._handle)
            return True
        except Exception:  # NotSupported on pre-Volta; any error means "do not rely on it"
            return False

    def _probe_utilization(self) -> bool:
        try:
            self._nvml.nvmlDeviceGetUtilizationRates(self._handle)
            return True
        except Exception:  # MIG instances and some vGPUs do not report it
            return False

    def _probe_instant(self) -> bool:
        try:
            return self._read_instant_mw() is not None
        except Exception:
            return False

    def _probe_average(self) -> bool:
        try:
            self._nvml.nvmlDeviceGetPowerUsage(self._handle)
            return True
        except Exception:
            return False

    def _probe_average_field(self) -> bool:
        try:
            return self._read_field_mw(FI_DEV_POWER_AVERAGE) is not None
        except Exception:
            return False

    def _power_limit_w(self) -> Optional[float]:
        try:
            limit_w: float = self._nvml.nvmlDeviceGetEnforcedPowerLimit(self._handle) / 1000.0
            return limit_w
        except Exception:
            return None

    def _read_instant_mw(self) -> Optional[float]:
        return self._read_field_mw(FI_DEV_POWER_INSTANT)

    def _read_field_mw(self, field_id: int) -> Optional[float]:
        field = self._nvml.nvmlDeviceGetFieldValues(self._handle, [field_id])[0]
        if field.nvmlReturn != NVML_SUCCESS:
            return None
        value = float(field.value.uiVal)
        return value if value > 0 else None

    # -- reads used by the sampler -------------------------------------------------------------
    def read_power_w(self) -> Optional[float]:
        if not self.has_power:
            return None
        try:
            if self._use_instant:
                mw = self._read_instant_mw()
                if mw is not None:
                    return mw / 1000.0
            power_w: float = self._nvml.nvmlDeviceGetPowerUsage(self._handle) / 1000.0
            return power_w
        except Exception as e:
            raise SensorFailed(f"{self.name}: power read failed: {_err(e)}") from e

    def read_power_average_w(self) -> Optional[float]:
        """Mean power (W) over the last `power_average_s` (field 185), for fused sampling."""
        if self.power_average_s is None:
            return None
        try:
            mw = self._read_field_mw(FI_DEV_POWER_AVERAGE)
            return None if mw is None else mw / 1000.0
        except Exception as e:
            raise SensorFailed(f"{self.name}: average power read failed: {_err(e)}") from e

    def read_utilization_pct(self) -> Optional[float]:
        """Share (%) of NVML's last sample period in which a kernel ran (for idle energy)."""
        if not self.has_utilization:
            return None
        try:
            return float(self._nvml.nvmlDeviceGetUtilizationRates(self._handle).gpu)
        except Exception as e:
            raise SensorFailed(f"{self.name}: utilisation read failed: {_err(e)}") from e

    def read_energy_j(self) -> Optional[float]:
        if not self.has_counter:
            return None
        try:
            energy_j: float = self._nvml.nvmlDeviceGetTotalEnergyConsumption(self._handle) / 1000.0
            return energy_j
        except Exception as e:
            raise SensorFailed(f"{self.name}: energy counter read failed: {_err(e)}") from e


def _uuid_matches(spec: str, uuid: str) -> bool:
    # CUDA accepts a unique prefix of the UUID, with or without the "GPU-" prefix.
    s, u = spec.lower(), uuid.lower()
    return u.startswith(s) or u.startswith("gpu-" + s)


def _resolve(nvml: Any, specs: Sequence[GpuSpec], source: str, strict: bool
             ) -> tuple[list[_Target], list[str]]:
    """Map CUDA-style device specs (index, GPU UUID, MIG UUID) to physical NVML GPUs."""
    count = nvml.nvmlDeviceGetCount()
    handles = [nvml.nvmlDeviceGetHandleByIndex(i) for i in range(count)]
    uuids = [_text(nvml.nvmlDeviceGetUUID(h)) for h in handles]
    targets: list[_Target] = []
    notes: list[str] = []
    for spec in specs:
        index: Optional[int] = None
        note = ""
        text = str(spec).strip()
        if isinstance(spec, int) or text.lstrip("-").isdigit():
            i = int(text)
            if 0 <= i < count:
                index = i
        elif text.upper().startswith("MIG-"):
            index, note = _resolve_mig(nvml, text, uuids)
        else:
            found = [i for i, u in enumerate(uuids) if _uuid_matches(text, u)]
            index = found[0] if len(found) == 1 else None
        if index is None:
            msg = (f"{source} entry {text!r} matches no NVIDIA GPU here "
                   f"({count} found: indices 0-{count - 1}, UUIDs {', '.join(uuids) or 'none'})")
            if strict:
                raise ConfigError(msg + "; pass gpus= as NVML indices or GPU UUIDs.")
            # CUDA itself ignores every entry after the first invalid one.
            notes.append(msg + "; it and later entries are ignored, as CUDA does.")
            break
        if any(t.index == index for t in targets):
            if note:
                notes.append(note + " (already measured)")
            continue
        targets.append(_Target(index=index, handle=handles[index], note=note))
        if note:
            notes.append(note)
    return targets, notes


def _resolve_mig(nvml: Any, text: str, uuids: list[str]) -> tuple[Optional[int], str]:
    try:
        mig = nvml.nvmlDeviceGetHandleByUUID(text)
        parent = nvml.nvmlDeviceGetDeviceHandleFromMigDeviceHandle(mig)
        parent_uuid = _text(nvml.nvmlDeviceGetUUID(parent))
    except Exception:
        return None, ""
    if parent_uuid not in uuids:
        return None, ""
    index = uuids.index(parent_uuid)
    return index, (f"MIG device {text} is part of GPU {index} ({parent_uuid}): NVML measures the "
                   "whole GPU, so its energy includes every MIG instance on it.")


def discover_gpus(gpus: Optional[Sequence[GpuSpec]] = None, *, nvml: Any = None,
                  env: Optional[Mapping[str, str]] = None, counter_interval_s: float = 1.0
                  ) -> Discovery:
    """Find the GPUs to measure: `gpus` if given, else CUDA_VISIBLE_DEVICES, else every GPU.

    Never raises for a missing driver or GPU (that is a note); raises ConfigError only when an
    explicit `gpus=` entry names no GPU.
    """
    environ: Mapping[str, str] = os.environ if env is None else env
    if gpus is not None and not isinstance(gpus, (list, tuple)):
        raise ConfigError(f"gpus= must be a list of GPU indices or UUIDs, got {gpus!r}")
    if gpus is not None and len(gpus) == 0:
        return Discovery([], ["gpus=[] given: GPUs are not measured."])
    visible = environ.get("CUDA_VISIBLE_DEVICES")
    if gpus is None and visible is not None and visible.strip() in ("", "-1", "NoDevFiles"):
        return Discovery([], [f"CUDA_VISIBLE_DEVICES={visible!r} hides every GPU: "
                              "GPUs are not measured."])
    try:
        nvml = nvml if nvml is not None else load_nvml()
    except SensorUnavailable as e:
        return Discovery([], [f"No NVIDIA GPU measured: {e}."])
    try:
        count = nvml.nvmlDeviceGetCount()
        if gpus is not None:
            targets, notes = _resolve(nvml, gpus, "gpus=", strict=True)
        elif visible is not None:
            specs = [s for s in visible.split(",") if s.strip()]
            targets, notes = _resolve(nvml, specs, "CUDA_VISIBLE_DEVICES", strict=False)
            order = environ.get("CUDA_DEVICE_ORDER", "FASTEST_FIRST")
            models = {_text(nvml.nvmlDeviceGetName(nvml.nvmlDeviceGetHandleByIndex(i)))
                      for i in range(count)}
            if order != "PCI_BUS_ID" and len(models) > 1 and any(
                    s.strip().isdigit() for s in specs):
                notes.append("CUDA_VISIBLE_DEVICES uses indices on a machine with mixed GPU "
                             "models: CUDA orders them fastest-first, NVML by PCI bus. Set "
                             "CUDA_DEVICE_ORDER=PCI_BUS_ID or use GPU UUIDs to be sure the "
                             "measured GPUs are the ones used.")
        else:
            targets = [_Target(i, nvml.nvmlDeviceGetHandleByIndex(i)) for i in range(count)]
            notes = []
        if count == 0:
            notes.append("NVML found no NVIDIA GPU: GPUs are not measured.")
        sensors: list[Sensor] = []
        session = NvmlSession(nvml)
        for t in targets:
            try:
                sensors.append(NvidiaGPU(nvml, t.handle, t.index, note=t.note,
                                         counter_interval_s=counter_interval_s, session=session))
            except SensorUnavailable as e:
                notes.append(f"GPU {t.index} not measured: {e}.")
        session.users = len(sensors)
        if not sensors:
            shutdown_nvml(nvml)
        return Discovery(sensors, notes)
    except ConfigError:
        raise
    except Exception as e:  # an NVML error during enumeration: no GPU rather than a crash
        return Discovery([], ["No NVIDIA GPU measured: NVML failed while listing GPUs: "
                              f"{_err(e)}."])


def shutdown_nvml(nvml: Any) -> None:
    try:
        nvml.nvmlShutdown()
    except Exception:
        pass
