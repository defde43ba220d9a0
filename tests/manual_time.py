"""Time driven by hand: one clock that the tracker, its sampler and the fake GPUs all read, which
moves only when a test says so, and ticks the sampler itself instead of a thread doing it.

A loaded machine stretches real sleeps and delays a 50 Hz thread by tens of milliseconds, so
assertions against wall-clock windows fail there. On this clock a test's `clock.sleep(0.3)`
is 0.3 s of run time exactly, with a tick every sampling interval: what the samples say is
known to the microsecond, and the assertions can be exact. (The `manual_clock` fixture in
conftest.py installs it through tracker.sampler's seam: `monotonic_s` and `hand_ticked`.)
"""

from __future__ import annotations

from typing import Any, Optional

# A sampler thread woken for a window edge reads at once, well before its next scheduled
# tick: each sleep starts with a tick this much later, which takes such a pending read.
WAKE_S = 0.001


class ManualClock:
    """Monotonic seconds that move only in `sleep()` / `advance()`; callable like
    time.monotonic. `samplers` are the started hand-ticked samplers (tracker.sampler)."""

    def __init__(self, start_s: float = 1000.0):
        self.now_s = start_s       # not 0: a monotonic clock's value is never near its origin
        self.samplers: list[Any] = []

    def __call__(self) -> float:
        return self.now_s

    def advance(self, seconds: float) -> None:
        """Let time pass with no tick (a sampler thread starved of the CPU)."""
        if seconds < 0:
            raise ValueError(f"a clock cannot go back: advance({seconds!r})")
        self.now_s += seconds

    def sleep(self, seconds: float, tick_s: Optional[float] = None) -> None:
        """Let `seconds` pass, ticking every running sampler as its thread would: once right
        away (WAKE_S) for a pending window-edge read, then every `tick_s` (default the fastest
        sampler's interval), the last tick at the end."""
        if seconds < 0:
            raise ValueError(f"a clock cannot go back: sleep({seconds!r})")
        if not self.samplers or seconds == 0:
            self.now_s += seconds
            return
        step = tick_s or min(s.sampling.interval_s for s in self.samplers)
        end = self.now_s + seconds
        first = min(WAKE_S, seconds)
        self.now_s += first
        self._tick()
        k = 1
        start = self.now_s
        while start + k * step < end - 1e-9:
            self.now_s = start + k * step   # multiples, not sums: no drift over long sleeps
            self._tick()
            k += 1
        if self.now_s < end:
            self.now_s = end
            self._tick()

    def _tick(self) -> None:
        for s in list(self.samplers):
            s.tick_now()
