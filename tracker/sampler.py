"""The background sampler: reads sensors on schedule and feeds each device's energy curve.

`Sampling.tick(t)` is the whole sampling logic, driven by any clock (the replay drives it with
a recorded trace's time); `Sampler` is the daemon thread around it, and the only place in the
library that knows about threads. Nothing here may raise into, block, or kill the training
thread: every sensor read is wrapped once, below, and failures mark the device degraded.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from array import array
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from .curve import CounterWentBackwards, EnergyCurve
from .sensors.base import Sensor

log = logging.getLogger("tracker")

# A device that fails this many reads in a row is considered lost and no longer read, so a
# dead GPU does not cost a failing NVML call (and a log line) on every tick.
MAX_CONSECUTIVE_FAILURES = 20
# Tolerance on "is a read due": ticks jitter by a few ms and must not skip a 1 Hz read.
_DUE_SLACK = 0.8


@dataclass
class DeviceState:
    """A sensor, its curve, and what went wrong with it."""

    sensor: Sensor
    curve: EnergyCurve = field(default_factory=EnergyCurve)
    last_power_t: float = -math.inf
    last_counter_t: float = -math.inf
    errors: list[str] = field(default_factory=list)      # distinct messages, in order seen
    failures: int = 0
    consecutive_failures: int = 0
    lost_at: Optional[float] = None              # run time of its first failed read in a row
    last_good_t: Optional[float] = None          # run time of its last successful read
    failing_since: Optional[float] = None
    last_util_t: float = -math.inf
    util_t: array[float] = field(default_factory=lambda: array("d"))     # utilisation readings:
    util_pct: array[float] = field(default_factory=lambda: array("d"))   # time (s), busy share (%)
    # Instant + averaged power fused into one sampled curve (tracker/fusion.py), for sensors
    # without a counter that give both (the sensor's details say "power_fusion").
    fusion: Any = None

    def __post_init__(self) -> None:
        spec = self.sensor.info.details.get("power_fusion") if self.sensor.info.details \
            else None
        if isinstance(spec, dict) and self.fusion is None:
            from .fusion import PowerFusion
            self.fusion = PowerFusion(float(spec.get("tau_s", 1.0)))

    @property
    def degraded(self) -> bool:
        return bool(self.errors)

    def fail(self, t: float, message: str) -> None:
        self.failures += 1
        self.consecutive_failures += 1
        if self.consecutive_failures == 1:
            self.failing_since = t
        if message not in self.errors:
            self.errors.append(message)
            log.warning("energy-tracker: %s (at t=%.3f s); %s is marked degraded",
                        message, t, self.sensor.name)
        if self.consecutive_failures >= MAX_CONSECUTIVE_FAILURES and self.lost_at is None:
            # Lost since its first failed read of this run of failures, not since the 20th;
            # what it used since its last good read is what is missing.
            self.lost_at = self.failing_since if self.failing_since is not None else t
            since = self.last_good_t if self.last_good_t is not None else 0.0
            note = (f"{self.sensor.name} stopped answering at t={self.lost_at:.2f} s "
                    f"({self.consecutive_failures} failed reads in a row); its energy after "
                    f"its last good read at t={since:.2f} s is not measured")
            self.errors.append(note)
            log.warning("energy-tracker: %s", note)

    def ok(self, t: float) -> None:
        self.consecutive_failures = 0
        self.failing_since = None
        self.last_good_t = t


class Sampling:
    """Reads due sensors at time t and updates curves; returns the record to log."""

    def __init__(self, sensors: list[Sensor], *, interval_s: float):
        self.devices = [DeviceState(s) for s in sensors]
        self.interval_s = interval_s

    def add(self, sensor: Sensor) -> None:
        """Measure one more device from the next tick on (a late claim in a job)."""
        self.devices.append(DeviceState(sensor))

    def tick(self, t: float, *, anchor: bool = False, final: bool = False) -> dict[str, Any]:
        """Read what is due at time t (s). `anchor`: also read every counter (a window edge);
        `final`: read everything (stop). Returns {"t": t, "d": {name: {"w"|"c"|"j": ...}}}."""
        t = round(t, 6)
        readings: dict[str, dict[str, float]] = {}
        for dev in self.devices:
            if dev.lost_at is not None:
                continue
            sensor, got = dev.sensor, {}
            try:
                if sensor.has_counter and (anchor or final or t - dev.last_counter_t
                                           >= sensor.counter_interval_s * _DUE_SLACK):
                    c = sensor.read_energy_j()
                    if c is not None:
                        got["c"] = round(c, 3)
                        dev.last_counter_t = t
                        if anchor:   # a window edge: anchored even when unchanged ("x")
                            got["x"] = 1
                # Power too at window edges: the 1 Hz models would otherwise leave a short run
                # or window with one reading, i.e. nothing measured (never report that as 0).
                power_every = max(self.interval_s, sensor.power_interval_s)
                if sensor.has_power and (final or anchor or t - dev.last_power_t
                                         >= power_every * _DUE_SLACK):
                    w = sensor.read_power_w()
                    if w is not None and math.isfinite(w):
                        got["w"] = round(w, 3)
                        dev.last_power_t = t
                    if dev.fusion is not None:
                        a = sensor.read_power_average_w()  # type: ignore[attr-defined]
                        if a is not None and math.isfinite(a):
                            got["a"] = round(a, 3)
                if sensor.has_utilization and (final or t - dev.last_util_t
                                               >= sensor.utilization_interval_s * _DUE_SLACK):
                    u = sensor.read_utilization_pct()
                    if u is not None and math.isfinite(u):
                        got["u"] = round(u, 2)
                        dev.last_util_t = t
                if got:
                    dev.ok(t)
            except Exception as e:  # the one place sensor errors are caught
                dev.fail(t, str(e) or type(e).__name__)
            if got:
                apply_reading(dev, t, got, final=final)
                got["j"] = round(dev.curve.total_j, 3)
                readings[sensor.name] = got
        return {"t": t, "d": readings, "final": True} if final else {"t": t, "d": readings}


def apply_reading(dev: DeviceState, t: float, got: dict[str, float], *, final: bool) -> None:
    """Feed one device's reading into its curve (also used when rebuilding from a log)."""
    if dev.fusion is not None:
        # fused points come out ~0.55 s behind the readings (they need the average after them)
        if "w" in got or "a" in got:
            for u, w in dev.fusion.add(t, got.get("w"), got.get("a")):
                dev.curve.add_power(u, w)
        if final:
            for u, w in dev.fusion.flush(t):
                dev.curve.add_power(u, w)
    elif "w" in got:
        dev.curve.add_power(t, got["w"])
    if "u" in got:
        dev.util_t.append(t)
        dev.util_pct.append(got["u"])
    if "c" in got:
        try:
            dev.curve.add_counter(t, got["c"], final=final, edge=bool(got.get("x")))
        except CounterWentBackwards as e:
            dev.fail(t, f"{dev.sensor.name}: energy counter went backwards ({e}); "
                        "continuing from the new value")


class Sampler:
    """Daemon thread calling `Sampling.tick` at the sampling rate, and at once on window edges.

    `after_tick(record, t)` runs on the sampler thread after each tick (the run log writer);
    its exceptions are caught and logged once.
    """

    def __init__(self, sampling: Sampling, *, clock: Callable[[], float],
                 after_tick: Callable[[dict[str, Any], float], None]):
        self.sampling = sampling
        self._clock = clock
        self._after_tick = after_tick
        self._wake = threading.Event()
        self._anchor_wanted = False
        self._stopping = False
        self._stopped = False
        self._tick_lock = threading.Lock()
        self._stop_lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="energy-tracker-sampler",
                                        daemon=True)
        self.callback_errors: list[str] = []
        self._error_kinds: set[tuple[Any, ...]] = set()
        self.ticks = 0
        self.last_tick_t: Optional[float] = None

    def start(self) -> None:
        self._tick(anchor=True)   # first readings (and counter origins) before returning
        self._thread.start()

    def request_anchor(self) -> None:
        """Ask for a counter read as soon as possible (a window edge). Never blocks."""
        self._anchor_wanted = True
        self._wake.set()

    def stop(self, timeout_s: float = 5.0) -> bool:
        """Stop the thread and take the final readings. Idempotent, thread-safe, bounded in time.
        Returns False if the sampler did not finish in time (its data so far is kept)."""
        with self._stop_lock:
            if self._stopped:
                return True
            self._stopped = True
            self._stopping = True
            self._wake.set()
            if self._thread.is_alive() and self._thread is not threading.current_thread():
                self._thread.join(timeout_s)
            if not self._tick_lock.acquire(timeout=timeout_s):
                return False
            self._tick_lock.release()
            self._tick(final=True)
            return not self._thread.is_alive()

    def _run(self) -> None:
        interval = self.sampling.interval_s
        next_t = self._clock() + interval
        while not self._stopping:
            woke = self._wake.wait(max(0.0, next_t - self._clock()))
            if self._stopping:
                break
            anchor = False
            if woke:
                self._wake.clear()
                anchor, self._anchor_wanted = self._anchor_wanted, False
            self._tick(anchor=anchor)
            now = self._clock()
            if now >= next_t:
                next_t += interval
                if next_t <= now:  # fell behind (slow sensor, suspended VM): do not burst
                    next_t = now + interval

    def _tick(self, *, anchor: bool = False, final: bool = False) -> None:
        with self._tick_lock:
            t = self._clock()
            self.last_tick_t = t
            try:
                record = self.sampling.tick(t, anchor=anchor, final=final)
                self.ticks += 1
                self._after_tick(record, t)
            except Exception as e:  # a bug or a full disk must not reach the training thread
                # One note per kind of failure: a message with a temp file's random name
                # would otherwise be new every tick (hundreds of notes an hour).
                kind = (type(e).__name__, getattr(e, "errno", None),
                        getattr(e, "strerror", None) or (None if isinstance(e, OSError)
                                                         else str(e)))
                if kind not in self._error_kinds:
                    self._error_kinds.add(kind)
                    msg = f"{type(e).__name__}: {e}"
                    self.callback_errors.append(msg)
                    log.warning("energy-tracker: sampler error (%s); sampling continues", msg)


def monotonic_clock(origin: float) -> Callable[[], float]:
    """Seconds since `origin` on the system-wide monotonic clock (shared by processes)."""
    return lambda: time.monotonic() - origin
