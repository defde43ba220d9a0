"""AMD GPUs through AMD SMI (`amdsmi`, the optional extra `amd`): energy counter, else power.

This is the only module that imports `amdsmi`, and only when discovery runs. What it reads:

- `amdsmi_get_energy_count(h)` -> {"energy_accumulator": ticks, "counter_resolution": µJ per
  tick, ...} (older amdsmi: the ticks under "power"): the GPU's accumulated energy, where the
  GPU keeps one (MI200, MI300 and newer Instinct parts). Method "counter". The accumulator is
  unwrapped: a 32-bit one wraps at 2**32 ticks; a drop that no wrap explains (the driver was
  reloaded) counts from the new origin.
- `amdsmi_get_power_info(h)` -> "socket_power" (ROCm 7), "current_socket_power" (MI300) or
  "average_socket_power" (MI200 and older) in W; "N/A" where the GPU has none. Method
  "sampled" when there is no energy counter.
- `amdsmi_get_gpu_activity(h)["gfx_activity"]` (%): utilisation, for idle energy.

Which GPUs: `gpus=` if given, else ROCR_VISIBLE_DEVICES (the ROCm runtime's filter) and then
HIP_VISIBLE_DEVICES (or CUDA_VISIBLE_DEVICES, which HIP also honours) as indices into what
ROCR left, or UUIDs; else every AMD GPU. A partitioned GPU (MI300 in DPX/QPX/CPX compute
modes) shows one processor per partition; the energy counter and power belong to the whole
physical GPU, so it is measured once, as one device, with a note saying so (as NVIDIA MIG).
`details["uuid"]` is the physical GPU's, so a distributed job claims it exactly once.
"""

from __future__ import annotations

import contextlib
import io
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Optional, Union

from ..errors import ConfigError, SensorFailed, SensorUnavailable
from .base import COUNTER, SAMPLED, Discovery, Sensor, SensorInfo, SharedSession

GpuSpec = Union[int, str]
NA = "N/A"
# The accumulator of older parts is 32 bits wide (gpu_metrics); newer ones keep 64.
_WRAP_32 = 2**32
# A counter step implying more than this (W) over the time between two reads is a reset,
# never a wrap: no GPU draws 20 kW.
_MAX_PLAUSIBLE_W = 20_000.0
_HIDE_ALL = ("", "-1", "NoDevFiles")


def load_amdsmi() -> Any:
    """Import and initialise amdsmi; SensorUnavailable with the reason if that fails."""
    try:
        # amdsmi prints to stdout on import when ROCm's libamd_smi.so is missing
        with contextlib.redirect_stdout(io.StringIO()):
            import amdsmi
    except ImportError as e:
        raise SensorUnavailable("amdsmi is not installed (pip install "
                                f"'trainjoule[amd]', matching your ROCm version): {e}") from e
    except Exception as e:   # OSError (no libamd_smi.so), version mismatches
        raise SensorUnavailable(f"amdsmi could not load ROCm's library: {_err(e)}") from e
    try:
        flags = getattr(amdsmi, "AmdSmiInitFlags", None)
        if flags is not None and hasattr(flags, "INIT_AMD_GPUS"):
            amdsmi.amdsmi_init(flags.INIT_AMD_GPUS)
        else:
            amdsmi.amdsmi_init()
    except Exception as e:   # AmdSmiLibraryException: driver not loaded, no permission
        raise SensorUnavailable(f"amdsmi could not start: {_err(e)}") from e
    return amdsmi


def _err(e: BaseException) -> str:
    text = " ".join(str(e).split()) or type(e).__name__
    return text if type(e).__name__ in text else f"{type(e).__name__}: {text}"


def _num(value: Any) -> Optional[float]:
    """A reading as a number, or None for "N/A" and anything that is not one."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def _int(value: Any) -> Optional[int]:
    """A reading as an int (an index, an id), or None when it is not a number."""
    return int(value) if _num(value) is not None else None


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _call(fn: Any, *args: Any) -> Any:
    """An amdsmi call whose failure only means "not available here": None."""
    try:
        return fn(*args)
    except Exception:
        return None


@dataclass
class _Processor:
    """One amdsmi GPU processor handle (a whole GPU, or one partition of one)."""

    index: int                 # position among amdsmi's GPU handles
    handle: Any
    uuid: str
    model: str
    physical: str              # key of the physical GPU: ASIC serial, else PCI bus/device
    partition: Optional[int]   # current partition id (None: not reported)
    mode: str                  # compute partition mode: "SPX", "CPX", ... ("" unknown)
    bdf: str = ""
    hip_id: Optional[int] = None
    hip_uuid: str = ""


@dataclass
class _Physical:
    """A physical GPU: its processors, the one that is read, and why it is measured."""

    key: str
    processors: list[_Processor]
    asked: list[_Processor] = field(default_factory=list)

    @property
    def primary(self) -> _Processor:
        zero = [p for p in self.processors if p.partition in (0, None)]
        return (zero or self.processors)[0]


class AmdSession(SharedSession):
    """One amdsmi_init shared by the GPUs found; shut down when the last one closes."""

    def __init__(self, amdsmi: Any, users: int = 0):
        super().__init__(lambda: _shutdown(amdsmi), users)
        self.amdsmi = amdsmi


class AmdGPU(Sensor):
    """One physical AMD GPU: the energy accumulator where it has one, else sampled power."""

    def __init__(self, amdsmi: Any, proc: _Processor, *, partitions: int = 1,
                 note: str = "", counter_interval_s: float = 1.0,
                 session: Optional[AmdSession] = None, name: Optional[str] = None):
        self._smi = amdsmi
        self._handle = proc.handle
        self._session = session
        self.index = proc.index
        self._last_ticks: Optional[int] = None
        self._last_t = 0.0
        self._total_uj = 0.0
        self.resets = 0
        self.resolution_uj = self._probe_counter()
        self.has_counter = self.resolution_uj is not None
        self._power_key = self._probe_power()
        self.has_power = self._power_key is not None
        self.has_utilization = _num((_call(amdsmi.amdsmi_get_gpu_activity, proc.handle)
                                     or {}).get("gfx_activity")) is not None
        if not (self.has_counter or self.has_power):
            raise SensorUnavailable(f"AMD GPU {proc.index} ({proc.model}) reports neither an "
                                    "energy counter nor power")
        self.counter_interval_s = counter_interval_s
        how = ("amdsmi energy accumulator" if self.has_counter
               else f"amdsmi power ({self._power_key}) integrated, trapezoid rule")
        details: dict[str, Any] = {"index": proc.index, "uuid": proc.uuid, "model": proc.model,
                                   "vendor": "AMD", "power_source": self._power_key or "none"}
        if self.has_counter:
            details["counter_resolution_uj"] = self.resolution_uj
        if proc.bdf:
            details["bdf"] = proc.bdf
        if proc.hip_id is not None:
            details["hip_id"] = proc.hip_id
        if proc.mode:
            details["compute_partition"] = proc.mode
        if partitions > 1:
            details["partitions"] = partitions
        info = _call(amdsmi.amdsmi_get_gpu_driver_info, proc.handle)
        if isinstance(info, Mapping) and info.get("driver_version"):
            details["driver"] = _text(info["driver_version"])
        cap = _call(amdsmi.amdsmi_get_power_cap_info, proc.handle)
        if isinstance(cap, Mapping) and (cap_uw := _num(cap.get("power_cap"))):
            details["power_limit_w"] = cap_uw / 1e6   # µW
        if note:
            details["note"] = note
        self.info = SensorInfo(name=name or f"gpu{proc.index}", component="gpu",
                               method=COUNTER if self.has_counter else SAMPLED,
                               description=f"{proc.model} ({how})", details=details)

    def close(self) -> None:
        if self._session is not None:
            session, self._session = self._session, None
            session.release()

    # -- probes ---------------------------------------------------------------------------------
    def _probe_counter(self) -> Optional[float]:
        try:
            got = self._smi.amdsmi_get_energy_count(self._handle)
            ticks, res = _ticks(got), _num(got.get("counter_resolution"))
        except Exception:   # NOT_SUPPORTED on parts without it, and on VM guests
            return None
        if ticks is None or res is None or res <= 0:
            return None
        self._last_ticks, self._last_t = int(ticks), time.monotonic()
        return res

    def _probe_power(self) -> Optional[str]:
        got = _call(self._smi.amdsmi_get_power_info, self._handle)
        if not isinstance(got, Mapping):
            return None
        for key in ("socket_power", "current_socket_power", "average_socket_power"):
            if _num(got.get(key)) is not None:
                return key
        return None

    # -- reads ----------------------------------------------------------------------------------
    def read_energy_j(self) -> Optional[float]:
        if not self.has_counter:
            return None
        try:
            ticks = _ticks(self._smi.amdsmi_get_energy_count(self._handle))
        except Exception as e:
            raise SensorFailed(f"{self.name}: energy counter read failed: {_err(e)}") from e
        if ticks is None:
            raise SensorFailed(f"{self.name}: the energy counter read N/A")
        now = time.monotonic()
        ticks = int(ticks)
        assert self._last_ticks is not None and self.resolution_uj is not None
        delta = ticks - self._last_ticks
        if delta < 0:
            wrapped = ticks + _WRAP_32 - self._last_ticks
            dt = max(now - self._last_t, 1e-3)
            if self._last_ticks < _WRAP_32 and (
                    wrapped * self.resolution_uj / 1e6 / dt <= _MAX_PLAUSIBLE_W):
                delta = wrapped          # a 32-bit accumulator wrapped
            else:
                delta = ticks            # the counter restarted from 0 (driver reload)
                self.resets += 1
        self._last_ticks, self._last_t = ticks, now
        self._total_uj += delta * self.resolution_uj
        return self._total_uj / 1e6

    def read_power_w(self) -> Optional[float]:
        if not self.has_power:
            return None
        try:
            w = _num(self._smi.amdsmi_get_power_info(self._handle).get(self._power_key))
        except Exception as e:
            raise SensorFailed(f"{self.name}: power read failed: {_err(e)}") from e
        if w is None:
            raise SensorFailed(f"{self.name}: power ({self._power_key}) read N/A")
        return w

    def read_utilization_pct(self) -> Optional[float]:
        if not self.has_utilization:
            return None
        try:
            return _num(self._smi.amdsmi_get_gpu_activity(self._handle).get("gfx_activity"))
        except Exception as e:
            raise SensorFailed(f"{self.name}: activity read failed: {_err(e)}") from e


def _ticks(got: Any) -> Optional[float]:
    if not isinstance(got, Mapping):
        return None
    value = got.get("energy_accumulator", got.get("power"))   # "power": before amdsmi 6.2.1
    return _num(value)


# -- enumeration ------------------------------------------------------------------------------
def _processors(amdsmi: Any) -> list[_Processor]:
    handles = list(amdsmi.amdsmi_get_processor_handles())
    out = []
    for i, h in enumerate(handles):
        asic = _call(amdsmi.amdsmi_get_gpu_asic_info, h) or {}
        model = _text(asic.get("market_name") or "AMD GPU")
        if model == NA:
            model = "AMD GPU"
        uuid = _text(_call(amdsmi.amdsmi_get_gpu_device_uuid, h) or "")
        bdf = _text(_call(amdsmi.amdsmi_get_gpu_device_bdf, h) or "")
        serial = _text(asic.get("asic_serial") or NA)
        physical = (f"serial:{serial}" if serial not in (NA, "", "0x0000000000000000")
                    else f"pci:{bdf.rsplit('.', 1)[0]}" if bdf else f"handle:{i}")
        kfd = _call(amdsmi.amdsmi_get_gpu_kfd_info, h) or {}
        part = kfd.get("current_partition_id")
        mode = _call(amdsmi.amdsmi_get_gpu_compute_partition, h)
        enum = _call(getattr(amdsmi, "amdsmi_get_gpu_enumeration_info", lambda _h: None), h)
        enum = enum if isinstance(enum, Mapping) else {}
        hip = enum.get("hip_id")
        out.append(_Processor(
            index=i, handle=h, uuid=uuid, model=model, physical=physical,
            partition=_int(part),
            mode=_text(mode) if mode and _text(mode) != NA else "", bdf=bdf,
            hip_id=_int(hip),
            hip_uuid=_text(enum.get("hip_uuid") or "")))
    return out


def _matches(spec: str, p: _Processor) -> bool:
    """A UUID spec against a processor: amdsmi's UUID or HIP's ("GPU-<hex>"), exactly or as a
    unique prefix, as CUDA/HIP accept them."""
    s = spec.strip().lower()
    for u in (p.uuid.lower(), p.hip_uuid.lower()):
        if u and (u == s or u.startswith(s) or ("gpu-" + u).startswith(s)
                  or (s.startswith("gpu-") and u.startswith(s[4:]))):
            return True
    return False


def _select(specs: Sequence[GpuSpec], pool: list[_Processor], source: str, strict: bool,
            by_hip: bool) -> tuple[list[_Processor], list[str]]:
    """Processors named by `specs` (indices into `pool`, or UUIDs). Non-strict: CUDA/HIP's
    rule, everything from the first invalid entry on is ignored, with a note."""
    chosen: list[_Processor] = []
    notes: list[str] = []
    hip_index = {p.hip_id: p for p in pool if p.hip_id is not None} if by_hip else {}
    for spec in specs:
        text = str(spec).strip()
        found: Optional[_Processor] = None
        if isinstance(spec, int) or text.lstrip("-").isdigit():
            i = int(text)
            if hip_index and len(hip_index) == len(pool):
                found = hip_index.get(i)
            elif 0 <= i < len(pool):
                found = pool[i]
        else:
            hits = [p for p in pool if _matches(text, p)]
            found = hits[0] if len(hits) == 1 else None
        if found is None:
            msg = (f"{source} entry {text!r} matches no AMD GPU here ({len(pool)} visible: "
                   f"UUIDs {', '.join(p.uuid for p in pool) or 'none'})")
            if strict:
                raise ConfigError(msg + "; pass gpus= as indices or GPU UUIDs.")
            notes.append(msg + "; it and later entries are ignored, as HIP does.")
            break
        if found not in chosen:
            chosen.append(found)
    return chosen, notes


def _visible(procs: list[_Processor], gpus: Optional[Sequence[GpuSpec]],
             env: Mapping[str, str]) -> tuple[list[_Processor], list[str], Optional[str]]:
    """(processors asked for, notes, why none when they are hidden)."""
    if gpus is not None:
        chosen, notes = _select(gpus, procs, "gpus=", strict=True, by_hip=True)
        return chosen, notes, None
    notes = []
    pool = procs
    rocr = env.get("ROCR_VISIBLE_DEVICES")
    if rocr is not None:
        if rocr.strip() in _HIDE_ALL:
            return [], [], f"ROCR_VISIBLE_DEVICES={rocr!r} hides every AMD GPU"
        pool, more = _select([s for s in rocr.split(",") if s.strip()], procs,
                             "ROCR_VISIBLE_DEVICES", strict=False, by_hip=False)
        notes += more
    name = "HIP_VISIBLE_DEVICES" if env.get("HIP_VISIBLE_DEVICES") is not None else (
        "CUDA_VISIBLE_DEVICES" if env.get("CUDA_VISIBLE_DEVICES") is not None else None)
    if name is not None:
        value = env[name]
        if value.strip() in _HIDE_ALL:
            return [], notes, f"{name}={value!r} hides every AMD GPU"
        pool, more = _select([s for s in value.split(",") if s.strip()], pool, name,
                             strict=False, by_hip=rocr is None)
        notes += more
    return pool, notes, None


def discover_amd_gpus(gpus: Optional[Sequence[GpuSpec]] = None, *, amdsmi: Any = None,
                      env: Optional[Mapping[str, str]] = None, counter_interval_s: float = 1.0,
                      quiet_if_absent: bool = True) -> Discovery:
    """Find the AMD GPUs to measure: `gpus` if given, else the *_VISIBLE_DEVICES variables,
    else every AMD GPU. Never raises for a missing library, driver or GPU (a note, or nothing
    at all with `quiet_if_absent` on a machine without an AMD GPU driver); ConfigError only
    when an explicit `gpus=` entry names no AMD GPU."""
    env = os.environ if env is None else env
    if gpus is not None and len(gpus) == 0:
        return Discovery([], [])
    if amdsmi is None:
        try:
            amdsmi = load_amdsmi()
        except SensorUnavailable as e:
            if quiet_if_absent and not _amd_driver_present():
                return Discovery([], [])
            return Discovery([], [f"No AMD GPU measured: {e}."])
    else:
        try:
            amdsmi.amdsmi_init()
        except Exception as e:
            return Discovery([], [f"No AMD GPU measured: amdsmi could not start: {_err(e)}."])
    try:
        procs = _processors(amdsmi)
        if not procs:
            _shutdown(amdsmi)
            return Discovery([], [] if quiet_if_absent else ["amdsmi found no AMD GPU."])
        asked, notes, hidden = _visible(procs, gpus, env)
        if hidden:
            _shutdown(amdsmi)
            return Discovery([], [f"{hidden}: AMD GPUs are not measured."])
        groups: dict[str, _Physical] = {}
        for p in procs:
            groups.setdefault(p.physical, _Physical(p.physical, [])).processors.append(p)
        order: list[_Physical] = []
        for p in asked:
            g = groups[p.physical]
            g.asked.append(p)
            if g not in order:
                order.append(g)
        session = AmdSession(amdsmi)
        sensors: list[Sensor] = []
        for g in order:
            primary = g.primary
            note = _partition_note(g)
            if note:
                notes.append(note)
            try:
                sensors.append(AmdGPU(amdsmi, primary, partitions=len(g.processors),
                                      note=note, counter_interval_s=counter_interval_s,
                                      session=session))
            except SensorUnavailable as e:
                notes.append(f"AMD GPU {primary.index} not measured: {e}.")
        if any("MI250" in s.info.details.get("model", "") for s in sensors):
            notes.append("MI250/MI250X: each package is two GPUs (GCDs) and the driver reports "
                         "the package's power and energy on one of them; measure both GCDs of "
                         "a package to count it whole.")
        session.users = len(sensors)
        if not sensors:
            _shutdown(amdsmi)
        return Discovery(sensors, notes)
    except ConfigError:
        _shutdown(amdsmi)
        raise
    except Exception as e:   # an amdsmi error while listing: no AMD GPU rather than a crash
        _shutdown(amdsmi)
        return Discovery([], [f"No AMD GPU measured: amdsmi failed while listing GPUs: "
                              f"{_err(e)}."])


def _partition_note(g: _Physical) -> str:
    if len(g.processors) <= 1:
        return ""
    primary = g.primary
    mode = primary.mode or "partitioned"
    asked = ", ".join(str(p.index) for p in g.asked)
    return (f"AMD GPU processor(s) {asked} are partitions of one physical {primary.model} "
            f"({mode} mode, {len(g.processors)} partitions, UUID {primary.uuid}): amdsmi "
            "reports energy and power for the whole GPU, so it is measured once (through "
            f"processor {primary.index}), and its energy includes every partition on it.")


def _amd_driver_present() -> bool:
    """Is the amdgpu compute driver loaded here (so a missing amdsmi is worth a note)?"""
    return os.path.exists("/dev/kfd")


def _shutdown(amdsmi: Any) -> None:
    try:
        amdsmi.amdsmi_shut_down()
    except Exception:
        pass

