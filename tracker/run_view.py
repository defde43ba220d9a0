"""A running tracker as its log_to exporters see it: a narrow, read-only view.

The exporters (exporters/: the hub, the built-in ones, a user's own `start(run)`) and the
numbers they log (projection.LogMetrics) read the run through this: its name and directory,
its clock and energy so far, whether it still runs, the job it is part of. They cannot change
the run; the one thing they may add is a note (an exporter that failed), while it runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Optional


def _forward(name: str, doc: str) -> property:
    return property(lambda self: getattr(self._run, name), doc=doc)


class RunView:
    """Read-only view of a Tracker. `state()`: the run's state ("running", "stopping",
    "stopped"); `final()`: what stop() returned (None until then); `job()`: the
    job.member.JobMember when the run is part of a job, else None."""

    __slots__ = ("_final", "_job", "_run", "_state")

    def __init__(self, run: Any, *, state: Callable[[], str], final: Callable[[], Any],
                 job: Callable[[], Any]):
        self._run = run
        self._state, self._final, self._job = state, final, job

    name = _forward("name", "The run's name.")
    run_id = _forward("run_id", "The run's id (run.json, summary.json).")
    joined = _forward("joined", "True in a process that joined a run `energy-tracker run` owns.")
    job_timeout_s = _forward("job_timeout_s", "How long a job's processes wait for each other.")
    start_wall = _forward("start_wall", "Wall time (s since the epoch) of run time 0.")
    pue = _forward("pue", "The PUE applied to IT energy.")
    factor = _forward("factor", "The grid factor (carbon.factor.GridFactor).")

    @property
    def run_dir(self) -> Optional[Path]:
        """The run's directory (None before it starts)."""
        run_dir: Optional[Path] = self._run.run_dir
        return run_dir

    @property
    def devices(self) -> tuple[Any, ...]:
        """The measured devices (sampler.DeviceState: sensor and energy curve)."""
        return tuple(self._run.devices)

    @property
    def state(self) -> str:
        return self._state()

    @property
    def stopped(self) -> bool:
        """stop() has returned its summary."""
        return self._final() is not None

    @property
    def job(self) -> Any:
        """The job.member.JobMember of a run that is part of a job, else None."""
        return self._job()

    def clock(self) -> float:
        """Run time now (s)."""
        t: float = self._run.clock()
        return t

    def energy_j(self, t0: Optional[float] = None, t1: Optional[float] = None) -> float:
        """IT energy (J) between two run times (Tracker.energy_j)."""
        e: float = self._run.energy_j(t0, t1)
        return e

    def emissions_kg(self, t0: float = 0.0, t1: Optional[float] = None) -> float:
        """CO2e (kg) between two run times (Tracker.emissions_kg)."""
        kg: float = self._run.emissions_kg(t0, t1)
        return kg

    def measured_until(self) -> float:
        """Run time up to which every device has readings (Tracker.measured_until)."""
        t: float = self._run.measured_until()
        return t

    def recent_power_w(self, span_s: Optional[float] = None) -> Optional[float]:
        """IT power now (W), None before the first reading (Tracker.recent_power_w)."""
        w: Optional[float] = self._run.recent_power_w(span_s)
        return w

    def note(self, message: str) -> None:
        """Add a note to the run's summary (ignored once the run has stopped)."""
        if not self.stopped:
            self._run.notes.append(message)

    def __repr__(self) -> str:
        return f"<RunView {self.name!r} {self.state}>"


__all__ = ["RunView"]
