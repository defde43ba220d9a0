"""Replay a recorded NVML trace through the real GPU sensor, sampler and energy curve.

The trace (the format of h100_gpt_train.json: columns t_s, power_mw, instant_mw, energy_mj,
util_pct, plus events) stands in for NVML: `TraceNVML` answers the pynvml calls the sensor
makes with the trace's latest row at a virtual time. The sampler is driven tick by tick on
that virtual clock, so the result is deterministic and shows what a live run would report.
"""

from __future__ import annotations

import bisect
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional

from .errors import ConfigError
from .sampler import Sampling
from .sensors.nvidia import FI_DEV_POWER_AVERAGE, FI_DEV_POWER_INSTANT, NvidiaGPU

# sampled: no counter, power fused from the instant field and the 1 s average (what the
# tracker does without a counter when the driver has both); sampled-instant: the instant field
# alone (a driver or meter without an averaged reading).
MODES = ("counter", "sampled", "sampled-instant")


class TraceNVMLError(Exception):
    """Raised like pynvml's NVMLError_NotSupported for what the trace (or mode) lacks."""


@dataclass
class _Field:
    nvmlReturn: int
    value: Any


@dataclass
class _Value:
    uiVal: int


class Trace:
    """A recorded NVML trace: rows sorted by time, column lookups by name."""

    def __init__(self, path: Path):
        try:
            data = json.loads(Path(path).read_text())
        except FileNotFoundError:
            raise ConfigError(f"trace file {path} does not exist") from None
        except (OSError, json.JSONDecodeError) as e:
            raise ConfigError(f"trace file {path} is not readable JSON: {e}") from None
        try:
            cols = list(data["columns"])
            rows = data["rows"]
            self.col = {c: i for i, c in enumerate(cols)}
            for need in ("t_s", "energy_mj"):
                if need not in self.col:
                    raise KeyError(need)
            if "power_mw" not in self.col and "instant_mw" not in self.col:
                raise KeyError("power_mw or instant_mw")
        except (KeyError, TypeError) as e:
            raise ConfigError(f"trace file {path} lacks {e} (expected keys 'columns' and 'rows', "
                              "columns t_s, power_mw, instant_mw, energy_mj)") from None
        if len(rows) < 2:
            raise ConfigError(f"trace file {path} has fewer than two rows")
        self.rows: list[list[Any]] = sorted(rows, key=lambda r: r[self.col["t_s"]])
        self.t = [r[self.col["t_s"]] for r in self.rows]
        self.meta: dict[str, Any] = data.get("meta", {})
        self.events: list[tuple[float, str]] = [tuple(e) for e in data.get("events", [])]

    def at(self, t: float) -> list[Any]:
        """The latest row at time t: what NVML would answer then."""
        i = bisect.bisect_right(self.t, t) - 1
        return self.rows[max(i, 0)]

    def value(self, t: float, column: str) -> Any:
        return self.at(t)[self.col[column]]

    def has(self, column: str) -> bool:
        return column in self.col


class TraceNVML:
    """The slice of pynvml the GPU sensor uses, answered from a trace at `self.now`."""

    def __init__(self, trace: Trace, *, counter: bool = True, average: bool = True):
        self.trace = trace
        self.counter = counter
        self.average = average
        self.now = trace.t[0]

    def nvmlInit(self) -> None: ...
    def nvmlShutdown(self) -> None: ...
    def nvmlDeviceGetCount(self) -> int:
        return 1

    def nvmlDeviceGetHandleByIndex(self, i: int) -> int:
        return i

    def nvmlDeviceGetName(self, h: int) -> str:
        return str(self.trace.meta.get("gpu", "recorded GPU")) + " (trace replay)"

    def nvmlDeviceGetUUID(self, h: int) -> str:
        return "GPU-trace-replay"

    def nvmlSystemGetDriverVersion(self) -> str:
        return str(self.trace.meta.get("driver", "unknown"))

    def nvmlDeviceGetEnforcedPowerLimit(self, h: int) -> int:
        raise TraceNVMLError("not recorded")

    def nvmlDeviceGetTotalEnergyConsumption(self, h: int) -> int:
        if not self.counter:
            raise TraceNVMLError("Not Supported (sampled mode)")
        energy_mj: int = self.trace.value(self.now, "energy_mj")
        return energy_mj

    def nvmlDeviceGetPowerUsage(self, h: int) -> int:
        if not self.trace.has("power_mw"):
            raise TraceNVMLError("Not Supported")
        power_mw: int = self.trace.value(self.now, "power_mw")
        return power_mw

    def nvmlDeviceGetUtilizationRates(self, h: int) -> _Utilization:
        if not self.trace.has("util_pct"):
            raise TraceNVMLError("Not Supported")
        return _Utilization(float(self.trace.value(self.now, "util_pct")))

    def nvmlDeviceGetFieldValues(self, h: int, fields: list[int]) -> list[_Field]:
        # the instant field from instant_mw; the 1 s average (field 185) from power_mw, which a
        # Hopper recording's nvmlDeviceGetPowerUsage is (in sampled mode: the fused reading)
        column = {FI_DEV_POWER_INSTANT: "instant_mw", FI_DEV_POWER_AVERAGE: "power_mw"}
        out = []
        for f in fields:
            name = column.get(f)
            if name is None or not self.trace.has(name) or (
                    f == FI_DEV_POWER_AVERAGE and not self.average):
                out.append(_Field(3, _Value(0)))   # 3 = NVML_ERROR_NOT_SUPPORTED
            else:
                out.append(_Field(0, _Value(int(self.trace.value(self.now, name)))))
        return out


@dataclass(frozen=True)
class _Utilization:
    gpu: float


@dataclass(frozen=True)
class ReplayResult:
    """Energy the tracker reports for the trace vs the trace's own counter (J)."""

    mode: str
    rate_hz: float
    energy_j: float
    counter_j: float
    error_pct: float
    duration_s: float
    power_source: str
    method: str
    power_reads: int
    counter_reads: int
    epochs: list[dict[str, Any]] = field(default_factory=list)
    breakdown: dict[str, Any] = field(default_factory=dict)   # accounting/breakdown.py
    idle: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def replay(path: Path, *, mode: str = "counter", rate_hz: float = 10.0,
           counter_interval_s: float = 1.0, offset_s: float = 0.0) -> ReplayResult:
    """`offset_s`: where the sampler's first tick falls after the trace's start (its phase
    against NVML's own ~100 ms updates, which moves sampled-mode results)."""
    if mode not in MODES:
        raise ConfigError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    if not (isinstance(rate_hz, (int, float)) and math.isfinite(rate_hz) and 0 < rate_hz <= 1000):
        raise ConfigError(f"rate must be in (0, 1000] Hz, got {rate_hz!r}")
    trace = Trace(path)
    nvml = TraceNVML(trace, counter=(mode == "counter"), average=(mode == "sampled"))
    sensor = NvidiaGPU(nvml, 0, 0, counter_interval_s=counter_interval_s)
    sampling = Sampling([sensor], interval_s=1.0 / rate_hz)
    dev = sampling.devices[0]
    if not (isinstance(offset_s, (int, float)) and 0 <= offset_s < 1):
        raise ConfigError(f"offset must be in [0, 1) s, got {offset_s!r}")
    t0, t_last = trace.t[0] + offset_s, trace.t[-1]
    # Regular ticks, plus an anchor tick at every window edge (epoch, eval, checkpoint, stall),
    # as the live tracker reads the counter when a window opens or closes; steps are not anchored.
    ticks = [(t0 + k / rate_hz, False) for k in range(math.ceil((t_last - t0) * rate_hz))]
    ticks += [(t, True) for t, name in trace.events
              if t0 < t < t_last and name.partition(":")[0].endswith(("_start", "_end"))
              and not name.startswith("step_")]
    ticks.sort()
    for i, (t, anchor) in enumerate(ticks):
        nvml.now = t
        sampling.tick(t - t0, anchor=anchor or i == 0)
    nvml.now = t_last
    sampling.tick(t_last - t0, final=True)
    counter_j = (trace.value(t_last, "energy_mj") - trace.value(t0, "energy_mj")) / 1000.0
    energy = dev.curve.total_j
    epochs = _epochs(trace, dev, t0, rate_hz)
    from .accounting.breakdown import breakdown, idle_energy
    windows = trace_windows(trace, t0)
    return ReplayResult(
        mode=mode, rate_hz=float(rate_hz), energy_j=energy, counter_j=counter_j,
        error_pct=(energy - counter_j) / counter_j * 100.0 if counter_j else math.nan,
        duration_s=t_last - t0, power_source=sensor.info.details["power_source"],
        method=sensor.method, power_reads=dev.curve.power_samples,
        counter_reads=dev.curve.counter_reads, epochs=epochs,
        breakdown=breakdown(windows, [dev], t_last - t0), idle=idle_energy([dev], t_last - t0))


def trace_windows(trace: Trace, t0: float) -> list[Any]:
    """The trace's events as windows (run seconds): steps, epochs, eval, checkpoint, stalls."""
    from .summary import Window

    open_: dict[tuple[str, str], float] = {}
    out: list[Any] = []
    kinds = {"step": "step", "epoch": "epoch", "eval": "eval", "checkpoint": "checkpoint"}
    for t, name in trace.events:
        kind, _, idx = name.partition(":")
        base, _, edge = kind.rpartition("_")
        if edge == "start":
            open_[(base, idx)] = t - t0
        elif edge == "end" and (base, idx) in open_:
            out.append(Window(id=len(out), name=f"{base} {idx}".strip(),
                              kind=kinds.get(base, "phase"), t_start=open_.pop((base, idx)),
                              t_end=t - t0))
    return out


def _epochs(trace: Trace, dev: Any, t0: float, rate_hz: float) -> list[dict[str, Any]]:
    """Per-epoch energy from the curve vs the trace's counter delta over the same interval,
    with the epoch's ± bound (uncertainty.py; epoch edges are anchored, as live)."""
    from .uncertainty import device_window_j
    curve = dev.curve
    starts: dict[str, float] = {}
    out: list[dict[str, Any]] = []
    for t, name in trace.events:
        kind, _, idx = name.partition(":")
        if kind == "epoch_start":
            starts[idx] = t
        elif kind == "epoch_end" and idx in starts:
            a, b = starts.pop(idx), t
            e = curve.energy_between(a - t0, b - t0)
            ref = (trace.value(b, "energy_mj") - trace.value(a, "energy_mj")) / 1000.0
            bound = device_window_j(dev, a - t0, b - t0, anchored=True,
                                    interval_s=1.0 / rate_hz)
            out.append({"epoch": idx, "start_s": a - t0, "end_s": b - t0, "energy_j": e,
                        "counter_j": ref, "error_pct": (e - ref) / ref * 100 if ref else None,
                        "uncertainty_j": bound})
    return out


def format_result(r: ReplayResult, path: Optional[Path] = None) -> str:
    lines = [f"replay{' of ' + str(path) if path else ''}: mode={r.mode} ({r.method}, power from "
             f"{r.power_source}), rate={r.rate_hz:g} Hz, {r.duration_s:.2f} s",
             f"  tracker energy {r.energy_j:.2f} J, trace counter {r.counter_j:.2f} J, "
             f"error {r.error_pct:+.4f} %  ({r.power_reads} power reads, "
             f"{r.counter_reads} counter reads)"]
    for e in r.epochs:
        pm = f" ± {e['uncertainty_j']:.2f}" if e.get("uncertainty_j") is not None else ""
        lines.append(f"  epoch {e['epoch']}: {e['energy_j']:.2f}{pm} J vs counter "
                     f"{e['counter_j']:.2f} J ({e['error_pct']:+.3f} %)")
    return "\n".join(lines)
