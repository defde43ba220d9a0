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
# When a read is due: each device keeps its reads on a grid (`next_*_t`, one cadence apart from
# its first read) and a tick within half a sampling interval of a grid point takes the read.
# A tick that jitters by a few ms neither skips a 1 Hz read nor takes it a tick early, and a
# late tick does not shift the reads after it: a 1 Hz model is read exactly once a second
# on the 10 Hz ticks (a fraction of the cadence as slack read it every 8th tick: 1.25 Hz).
DUE_SLACK_TICKS = 0.5
# The sampler thread wakes as often as its fastest device needs and no more: 10 Hz with a GPU,
# once a second when only 1 Hz models and counters are measured (each wake costs ~0.1 ms of
# CPU on a cold cache, whatever it does), never less often: the log's last line tells how far
# a killed run got, and a SIGTERM is noticed within a tick. Window edges wake it at once.
MAX_TICK_S = 1.0
# Where run time comes from, looked up on every read: the system-wide monotonic clock (shared
# by processes). Tests drive time by hand instead of sleeping against the thread (a loaded
# machine stretches real sleeps): they swap in a clock they advance themselves and set
# `hand_ticked` to a list, where start() then puts each sampler instead of starting its
# thread; the test takes the ticks (Sampler.tick_now). Nothing in the library sets either.
monotonic_s: Callable[[], float] = time.monotonic
hand_ticked: Optional[list[Sampler]] = None


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
    # the read grids (see DUE_SLACK_TICKS): run time of each kind's next scheduled read
    next_power_t: float = -math.inf
    next_counter_t: float = -math.inf
    next_util_t: float = -math.inf
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
        self._tick_interval_s: Optional[float] = None

    def add(self, sensor: Sensor) -> None:
        """Measure one more device from the next tick on (a late claim in a job)."""
        self.devices.append(DeviceState(sensor))
        self._tick_interval_s = None

    def tick_interval_s(self) -> float:
        """Seconds between scheduled ticks: the shortest cadence a device needs (power at
        the sampling rate or the sensor's own slower one, counters and utilisation at theirs),
        within [interval_s, MAX_TICK_S]. Only 1 Hz models: one tick a second."""
        if self._tick_interval_s is None:
            need = [MAX_TICK_S]
            for dev in self.devices:
                s = dev.sensor
                if s.has_power:
                    need.append(max(self.interval_s, s.power_interval_s))
                if s.has_counter:
                    need.append(s.counter_interval_s)
                if s.has_utilization:
                    need.append(s.utilization_interval_s)
            self._tick_interval_s = max(self.interval_s, min(need))
        return self._tick_interval_s

    def tick(self, t: float, *, anchor: bool = False, final: bool = False) -> dict[str, Any]:
        """Read what is due at time t (s). `anchor`: also read every counter (a window edge);
        `final`: read everything (stop). Returns {"t": t, "d": {name: {"w"|"c"|"j": ...}}}."""
        t = round(t, 6)
        slack = DUE_SLACK_TICKS * self.interval_s
        edge = anchor or final
        readings: dict[str, dict[str, float]] = {}
        for dev in self.devices:
            if dev.lost_at is not None:
                continue
            sensor = dev.sensor
            got: dict[str, float] = {}
            try:
                if sensor.has_counter and (edge or t >= dev.next_counter_t - slack):
                    c = sensor.read_energy_j()
                    if c is not None:
                        got["c"] = round(c, 3)
                        dev.last_counter_t = t
                        every = sensor.counter_interval_s
                        # an edge read re-bases the schedule: the next read is a cadence later
                        dev.next_counter_t = _next_due(dev.next_counter_t, every, t, slack) \
                            if not edge else t + every
                        if anchor:   # a window edge: anchored even when unchanged ("x")
                            got["x"] = 1
                # Power too at window edges: the 1 Hz models would otherwise leave a short run
                # or window with one reading, i.e. nothing measured (never report that as 0).
                if sensor.has_power and (edge or t >= dev.next_power_t - slack):
                    w = sensor.read_power_w()
                    if w is not None and math.isfinite(w):
                        got["w"] = round(w, 3)
                        dev.last_power_t = t
                        if t >= dev.next_power_t - slack:   # a scheduled read: the grid moves on
                            dev.next_power_t = _next_due(
                                dev.next_power_t, max(self.interval_s, sensor.power_interval_s),
                                t, slack)
                    if dev.fusion is not None:
                        a = sensor.read_power_average_w()  # type: ignore[attr-defined]
                        if a is not None and math.isfinite(a):
                            got["a"] = round(a, 3)
                if sensor.has_utilization and (final or t >= dev.next_util_t - slack):
                    u = sensor.read_utilization_pct()
                    if u is not None and math.isfinite(u):
                        got["u"] = round(u, 2)
                        dev.last_util_t = t
                        dev.next_util_t = _next_due(dev.next_util_t,
                                                    sensor.utilization_interval_s, t, slack)
                if got:
                    if dev.consecutive_failures:
                        dev.ok(t)
                    else:
                        dev.last_good_t = t
            except Exception as e:  # the one place sensor errors are caught
                dev.fail(t, str(e) or type(e).__name__)
            if got:
                curve = dev.curve
                if dev.fusion is None and len(got) == 1 and "w" in got:
                    curve.add_power(t, got["w"])   # the 10 Hz case: apply_reading's first step
                else:
                    apply_reading(dev, t, got, final=final)
                got["j"] = round(curve.total_j, 3)
                readings[sensor.name] = got
        return {"t": t, "d": readings, "final": True} if final else {"t": t, "d": readings}


def _next_due(due: float, every_s: float, t: float, slack_s: float) -> float:
    """The grid point after `due` (a read taken at t): one cadence on, or a cadence after t
    when t is already past that point (the first read; a tick that came very late)."""
    nxt = due + every_s
    return nxt if nxt - slack_s > t else t + every_s


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
        if hand_ticked is not None:
            hand_ticked.append(self)
            return
        self._thread.start()

    def tick_now(self) -> None:
        """One tick at the clock's time now, as the thread takes them (with the window-edge
        counter read a request_anchor() asked for); nothing once stopped. For hand-ticked
        samplers (see `hand_ticked`)."""
        if self._stopped:
            return
        anchor, self._anchor_wanted = self._anchor_wanted, False
        self._tick(anchor=anchor)

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
        interval = self.sampling.tick_interval_s()
        next_t = self._clock() + interval
        while not self._stopping:
            interval = self.sampling.tick_interval_s()   # a late claim may make it shorter
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
    return lambda: monotonic_s() - origin
