"""Where a training run is heading: total energy, CO2e and end time projected from finished units.

Pure bookkeeping, no threads: the integrations tell a `Projector` when each unit (epoch or
optimizer step) ends, and ask it for a `Projection` given the run's cumulative energy E(t).
`LogMetrics` turns the run so far into the flat numbers the frameworks' loggers take.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import asdict, dataclass
from typing import Any, Callable, Optional

from .units import J_PER_KWH

HISTORY = 64   # unit ends kept besides the `recent` ones


@dataclass(frozen=True)
class Projection:
    """The whole run's energy, emissions and end, extrapolated from the units finished so far."""

    progress: float                        # finished units / planned units, 0..1
    projected_energy_j: float              # IT energy of the whole run (J), not x PUE
    projected_emissions_kg: Optional[float]  # CO2e of the whole run (kg), PUE included
    projected_end_wall: float              # unix time (s) the last unit should end
    basis: str                             # how it was made, for a reader
    units_done: int = 0
    units_total: float = 0.0
    unit: str = "epoch"
    energy_per_unit_j: float = 0.0         # the rate used (J per unit)
    seconds_per_unit: float = 0.0          # the rate used (s per unit)

    @property
    def projected_energy_kwh(self) -> float:
        return self.projected_energy_j / J_PER_KWH

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["projected_energy_kwh"] = self.projected_energy_kwh
        return d


class Projector:
    """Projects a run of `total` units (epochs or steps) from the ones finished so far.

    Energy left = units left x the energy of a recent unit, where a unit's energy is measured
    from the end of the previous unit to the end of this one, so whatever runs between units
    (evaluation, checkpoints) is part of the rate. With `recent=None` the rate is the mean over
    every finished unit (linear in progress); `recent=K` uses only the last K, which follows a
    run whose units change cost (warm-up, curriculum) at the price of more noise.

    Times are run seconds; energies come from an `energy_at(t)` callable given at projection
    time, so unit edges are read on the curve after the sampler has caught up with them.
    """

    def __init__(self, total: float, *, unit: str = "epoch", min_units: int = 1,
                 recent: Optional[int] = None):
        if not (isinstance(total, (int, float)) and math.isfinite(total) and total > 0):
            raise ValueError(f"total must be a positive number of {unit}s, got {total!r}")
        if recent is not None and recent < 1:
            raise ValueError(f"recent must be None (all units) or >= 1, got {recent!r}")
        self.total = float(total)
        self.unit = unit
        self.min_units = max(1, int(min_units))
        self.recent = recent
        self.origin_t: Optional[float] = None
        self.done = 0
        # (units done, run time) at the last unit ends: `recent` of them for the rate, plus some
        # so that a projection can stop at the last end the energy curve already covers
        self._ends: deque[tuple[int, float]] = deque(maxlen=(recent or 0) + HISTORY)

    def begin(self, t: float) -> None:
        """The first unit starts at run time t (s); later calls are ignored."""
        if self.origin_t is None:
            self.origin_t = t

    def unit_done(self, t: float, units: int = 1) -> None:
        """`units` more units finished at run time t (s)."""
        if self.origin_t is None:
            self.origin_t = t
            return
        self.done += units
        self._ends.append((self.done, t))

    @property
    def ready(self) -> bool:
        return self.origin_t is not None and self.done >= self.min_units

    def project(self, energy_at: Callable[[float], float], *, start_wall: float,
                gco2_per_kwh: Optional[float] = None, pue: float = 1.0,
                until: Optional[float] = None) -> Optional[Projection]:
        """The projection now, or None before `min_units` units have finished.

        `energy_at(t)`: the run's cumulative IT energy (J) at run time t; `start_wall`: unix
        time of run time 0; `gco2_per_kwh` and `pue` turn energy into emissions. `until`: run
        time up to which `energy_at` has data (E(t) is flat past it); the projection then ends
        at the last unit end before it, and is None while no such end is late enough.
        """
        if not self.ready:
            return None
        ends = list(self._ends)
        j = len(ends) - 1
        if until is not None:
            while j >= 0 and ends[j][1] > until:
                j -= 1
            if j < 0 or ends[j][0] < self.min_units:
                return None
        n, t_n = ends[j]
        k, t_k = 0, self.origin_t
        if self.recent is not None and n > self.recent:
            older = [e for e in ends[:j] if e[0] <= n - self.recent]
            if older:
                k, t_k = older[-1]
        assert t_k is not None
        units = n - k
        e_n = energy_at(t_n)
        j_per_unit = (e_n - energy_at(t_k)) / units
        s_per_unit = (t_n - t_k) / units
        left = max(self.total - n, 0.0)
        energy = e_n + left * j_per_unit
        emissions = (energy * pue / J_PER_KWH * gco2_per_kwh / 1000.0
                     if gco2_per_kwh is not None else None)
        over = "every" if k == 0 else f"the last {units}"
        basis = (f"{n}/{self.total:g} {self.unit}s done; {over} {self.unit} "
                 f"{'ends' if units > 1 else 'end'}: {j_per_unit:.1f} J and {s_per_unit:.2f} s "
                 f"per {self.unit}, x {left:g} {self.unit}s left")
        return Projection(progress=min(n / self.total, 1.0), projected_energy_j=energy,
                          projected_emissions_kg=emissions,
                          projected_end_wall=start_wall + t_n + left * s_per_unit, basis=basis,
                          units_done=n, units_total=self.total, unit=self.unit,
                          energy_per_unit_j=j_per_unit, seconds_per_unit=s_per_unit)


def compare(projection: Projection, actual_energy_j: float, at_s: Optional[float] = None) -> str:
    """One line for the summary's notes: a projection against the energy actually used
    (measured up to run time `at_s`, when given)."""
    err = ((projection.projected_energy_j - actual_energy_j) / actual_energy_j * 100.0
           if actual_energy_j else math.nan)
    at = f" up to {at_s:.1f} s" if at_s is not None else ""
    return (f"projection at {projection.progress:.0%} ({projection.units_done} "
            f"{projection.unit}s): {projection.projected_energy_j:.1f} J projected, "
            f"{actual_energy_j:.1f} J measured{at} ({err:+.1f} %); basis: {projection.basis}")


class LogMetrics:
    """The numbers added to each framework log row, from a running tracker.

    Cheap (no summary is built): energy so far, CO2e at the run's grid factor, mean power and
    J/sample, J/token since the previous row. `run` is a started `tracker.Tracker` (or anything
    with `clock()`, `energy_j(t0, t1)`, `pue` and `factor.gco2_per_kwh`).

    Nothing is reported as 0 before it was measured: until some device has two readings, the
    row has no energy at all (a model read once a second has not measured a 0.3 s run).
    """

    def __init__(self, run: Any):
        self.run = run
        # Rows count from the training's start: a script that joined a run started earlier
        # (`energy-tracker run` around it) logs the same quantities as one that started its
        # own; the run's total so far is beside it, as run_energy_kwh.
        self._since = float(run.clock()) if getattr(run, "joined", False) else 0.0
        self._last_t: Optional[float] = None
        self._last_e = 0.0
        self._samples = 0
        self._tokens = 0
        self._power_w: Optional[float] = None     # latest mean power, for job rows
        self._row_clock: Optional[float] = None   # clock() at the previous row
        self._row_samples = 0
        self._row_tokens = 0

    def count(self, samples: int = 0, tokens: int = 0) -> None:
        """Samples and tokens processed since the previous row."""
        self._samples += samples
        self._tokens += tokens
        self._row_samples += samples
        self._row_tokens += tokens

    def row(self, projection: Optional[Projection] = None, *,
            reduce: Optional[Callable[[list[float]], Optional[list[float]]]] = None,
            contribute: bool = True) -> dict[str, float]:
        """The log row. `reduce`: a SUM over the job's processes (job-wide figures; called on
        every process alike, whatever it measured); `contribute`: whether this process's energy
        is part of the sum (False for processes that only follow another's measurements)."""
        t = measured_until(self.run)
        starts = [d.curve.start for d in self.run.devices if not d.curve.empty]
        if self._last_t is None:    # E(t) is 0 until the first reading, not measured as 0 W
            self._last_t = max([*starts, self._since]) if starts else self._since
        measured = bool(starts) and t > max(starts)
        run_energy = self.run.energy_j(0.0, t)
        energy = self.run.energy_j(self._since, t) if self._since else run_energy
        emissions = self.run.emissions_kg(self._since, t)
        d_e, d_t = energy - self._last_e, t - self._last_t
        samples, tokens = self._samples, self._tokens
        if d_t > 0:
            self._last_t, self._last_e = t, energy
            self._samples = self._tokens = 0
            self._power_w = d_e / d_t
        proj_e = projection.projected_energy_kwh if projection is not None else None
        proj_c = projection.projected_emissions_kg if projection is not None else None
        if reduce is not None:
            job = self._job_row(reduce, energy, emissions, measured, d_t > 0, proj_e, proj_c,
                                contribute, run_energy)
            if job is not None:
                return job
        if not measured:
            return {}
        out = {"energy_kwh": energy / J_PER_KWH, "emissions_kg": emissions,
               "run_energy_kwh": run_energy / J_PER_KWH}
        if d_t > 0:   # no reading since the previous row: rates wait for the next one
            out["power_w"] = d_e / d_t
            if samples:
                out["energy_j_per_sample"] = d_e / samples
            if tokens:
                out["energy_j_per_token"] = d_e / tokens
        if proj_e is not None:
            out["projected_energy_kwh"] = proj_e
            if proj_c is not None:
                out["projected_emissions_kg"] = proj_c
        return out

    def _job_row(self, reduce: Callable[[list[float]], Optional[list[float]]], energy: float,
                 emissions: float, measured: bool, fresh: bool, proj_e: Optional[float],
                 proj_c: Optional[float], contribute: bool,
                 run_energy: float) -> Optional[dict[str, float]]:
        """Job-wide row: energies summed over processes; power = the sum of each process's
        latest mean power; J/sample = job power / job throughput (each process's samples per
        second since the previous row, summed). None when there is no process group."""
        now = self.run.clock()
        interval = now - self._row_clock if self._row_clock is not None else 0.0
        self._row_clock = now
        thr_s = self._row_samples / interval if interval > 0 else 0.0
        thr_t = self._row_tokens / interval if interval > 0 else 0.0
        self._row_samples = self._row_tokens = 0
        # A process that measures nothing (another one claimed its devices) adds only samples.
        k = 1.0 if contribute and self.run.devices else 0.0
        power = self._power_w if self._power_w is not None else 0.0
        got = reduce([k * energy, k * emissions, k * power,
                      k * (1.0 if self._power_w is not None else 0.0), thr_s, thr_t,
                      k * (proj_e or 0.0), k * (proj_c or 0.0), k,
                      k * (1.0 if proj_e is not None else 0.0),
                      k * (1.0 if measured else 0.0), k * (1.0 if fresh else 0.0),
                      k * run_energy])
        if got is None:
            return None
        (e_sum, c_sum, p_sum, p_n, thr_s, thr_t, pe_sum, pc_sum, n, pe_n, m_n, f_n,
         run_sum) = got
        if m_n < n or n == 0:    # some process has measured nothing yet: unknown, not zero
            return {}
        out = {"energy_kwh": e_sum / J_PER_KWH, "emissions_kg": c_sum,
               "run_energy_kwh": run_sum / J_PER_KWH}
        if p_n == n and f_n > 0:
            out["power_w"] = p_sum
            if thr_s > 0:
                out["energy_j_per_sample"] = p_sum / thr_s
            if thr_t > 0:
                out["energy_j_per_token"] = p_sum / thr_t
        if pe_n == n:   # a projection once every measuring process has one
            out["projected_energy_kwh"] = pe_sum
            if proj_c is not None:
                out["projected_emissions_kg"] = pc_sum
        return out


def measured_until(run: Any) -> float:
    """Run time (s) up to which every measured device has readings (see
    `Tracker.measured_until`)."""
    until_s: float = run.measured_until()
    return until_s


def emissions_kg(energy_j: float, run: Any) -> float:
    """CO2e (kg) of IT energy at the run's PUE and grid factor (live periods not applied)."""
    pue: float = run.pue
    gco2_per_kwh: float = run.factor.gco2_per_kwh
    return energy_j * pue / J_PER_KWH * gco2_per_kwh / 1000.0


__all__ = ["LogMetrics", "Projection", "Projector", "compare", "emissions_kg", "measured_until"]
