"""Joining a run tracked by another process (`energy-tracker run -- python train.py`).

A callback inside the child must not start a second sampler (double counting). Instead the
child follows the parent's samples.jsonl: `LogFollower` tails it and rebuilds the same energy
curves, so the child can log live energy next to its loss, and it writes its own windows to
marks-<pid>.jsonl, which the parent merges into the run's summary at stop.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, Callable, Optional

from .runlog import SAMPLES
from .sampler import DeviceState, apply_reading


class LogFollower:
    """Same interface as Sampler (start/request_anchor/stop), fed by the parent's log file."""

    def __init__(self, run_dir: Path, devices: list[DeviceState], *,
                 clock: Callable[[], float],
                 after_tick: Callable[[dict[str, Any], float], None],
                 on_intensity: Optional[Callable[[dict[str, Any]], None]] = None,
                 interval_s: float = 0.5):
        self._path = Path(run_dir) / SAMPLES
        self._devices = {d.sensor.name: d for d in devices}
        self._clock = clock
        self._after_tick = after_tick
        self._on_intensity = on_intensity
        self._interval = interval_s
        self._offset = 0
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="energy-tracker-follower",
                                        daemon=True)
        self.callback_errors: list[str] = []

    def start(self) -> None:
        self.poll()
        self._thread.start()

    def request_anchor(self) -> None:
        """The parent's sampler owns the counters; nothing to read here."""

    def stop(self, timeout_s: float = 5.0) -> bool:
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout_s)
        self.poll()
        return not self._thread.is_alive()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self.poll()

    def poll(self) -> None:
        """Apply every complete line appended since the last poll."""
        import json

        with self._lock:
            try:
                with open(self._path, "rb") as f:
                    f.seek(self._offset)
                    chunk = f.read()
                end = chunk.rfind(b"\n")
                if end >= 0:
                    self._offset += end + 1
                    for line in chunk[: end + 1].splitlines():
                        rec = json.loads(line)
                        t = float(rec.get("t", 0.0))
                        for name, got in rec.get("d", {}).items():
                            dev = self._devices.get(name)
                            if dev is not None:
                                apply_reading(dev, t, got, final=False)
                        if "intensity" in rec and self._on_intensity is not None:
                            self._on_intensity(rec["intensity"])
                self._after_tick({"t": self._clock(), "d": {}}, self._clock())
            except Exception as e:  # the parent's file is the parent's business: never raise
                msg = f"{type(e).__name__}: {e}"
                if msg not in self.callback_errors:
                    self.callback_errors.append(msg)
