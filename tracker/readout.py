"""What a run has measured so far, read from its devices' energy curves: IT energy between two
run times, power now, how far every device has readings, CO2e, the job's totals. Cheap (no
summary is built): the CLI's status line, Prometheus, log rows and projections read these
while the run goes. `Readings` gives them to the Tracker as its public methods.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Callable, Optional


def _counted(devices: Sequence[Any]) -> list[Any]:
    """Devices with readings whose energy counts (a node meter's parts once)."""
    from .sensors.base import counted
    return [d for d in devices if not d.curve.empty and counted(d.sensor.info.details)]


def energy_j(devices: Sequence[Any], t0: float, t1: float) -> float:
    """IT energy (J) of `devices` between run times `t0` and `t1`."""
    total: float = sum(d.curve.energy_between(t0, t1) for d in _counted(devices))
    return total


def measured_until(devices: Sequence[Any], now: float) -> float:
    """Run time (s) up to which every measured device has readings (at most `now`)."""
    ends = [e for d in devices if (e := d.curve.end) is not None]
    return min(min(ends), now) if ends else now


def recent_power_w(devices: Sequence[Any], until: float, span_s: Optional[float] = None
                   ) -> Optional[float]:
    """IT power (W): the mean over the `span_s` (default curve.RECENT_POWER_S) before `until`,
    summed over the devices; None before the first reading."""
    from .curve import RECENT_POWER_S
    span = RECENT_POWER_S if span_s is None else span_s
    got = [d.curve.recent_power_w(until, span) for d in _counted(devices)]
    known = [w for w in got if w is not None]
    return sum(known) if known else None


def emissions_kg(energy_j_at: Callable[[float], float], *, pue: float, start_wall: float,
                 factor: Any, periods: Optional[Sequence[Any]], t0: float, t1: float) -> float:
    """CO2e (kg) of the facility energy between run times `t0` and `t1`: `energy_j_at(t)` is
    the IT energy from run time 0 to t, `periods` the live intensity periods (None or empty:
    the grid `factor` throughout)."""
    from .carbon import account_emissions
    return account_emissions(lambda wall: pue * energy_j_at(wall - start_wall),
                             start_wall + t0, start_wall + t1, factor,
                             periods or None).emissions_g / 1000.0


class Readings:
    """The Tracker's readings of its run so far. They read only what is declared here: the
    measured `devices`, the run `clock()`, the `pue`, the grid `factor`, `start_wall`, and
    `_live` (the live intensity provider, or None)."""

    devices: list[Any]
    clock: Callable[[], float]
    pue: float
    factor: Any
    start_wall: float
    _live: Any

    def energy_j(self, t0: Optional[float] = None, t1: Optional[float] = None) -> float:
        """IT energy (J) between two run times (s); default the whole run so far. Exact (to
        the curve) at the run's start and end, at window edges and for the last 10 minutes;
        at other times older than that, interpolated between points 5 minutes apart."""
        return energy_j(self.devices, 0.0 if t0 is None else t0,
                        self.clock() if t1 is None else t1)

    def recent_power_w(self, span_s: Optional[float] = None) -> Optional[float]:
        """IT power now (W): the mean over the last 2 s that every device has measured (a
        node meter's parts once), as the CLI's status line and Prometheus show it. None before
        the first reading."""
        return recent_power_w(self.devices, self.measured_until(), span_s)

    def measured_until(self) -> float:
        """Run time (s) up to which every measured device has readings. E(t) is flat past a
        device's last reading, so rates up to `clock()` would read low."""
        return measured_until(self.devices, self.clock())

    def emissions_kg(self, t0: float = 0.0, t1: Optional[float] = None) -> float:
        """CO2e (kg) of the facility energy between two run times, with live intensity periods
        when a live provider is on, else the run's grid factor."""
        return emissions_kg(lambda t: self.energy_j(0.0, t), pue=self.pue,
                            start_wall=self.start_wall, factor=self.factor,
                            periods=self._live.periods() if self._live is not None else None,
                            t0=t0, t1=self.measured_until() if t1 is None else t1)

    def job_totals(self, timeout_s: float = 60.0) -> Any:
        """The whole job's energy and emissions so far (`tracker.job.totals.JobTotals`): one
        all-reduce over the program's initialised process group. A collective: call it on
        every process of the job at the same point. Without a group: this process's own."""
        from .job.totals import job_totals
        return job_totals(self, timeout_s=timeout_s)


__all__ = ["Readings", "emissions_kg", "energy_j", "measured_until", "recent_power_w"]
