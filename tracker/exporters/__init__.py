"""Logging a run's energy to the experiment trackers people already use: MLflow, Weights &
Biases, TensorBoard (`track(..., log_to="mlflow" | "wandb" | "tensorboard" | [...] | "auto")`).

An exporter is anything with two methods (see `Exporter`):

    on_progress(metrics: dict[str, float], step: int)   # while training: energy/... numbers
    on_stop(summary: Summary, files: list[Path])         # once: the summary, summary.json, ...

`ExportHub` (one per Tracker) decides when and what: progress at every epoch end and every
`log_every_steps` steps (at most once per `log_min_interval_s`), from `LogMetrics` (the numbers
the framework callbacks add to their log rows), and the summary once the run's files are
written. Metric names start with `energy/`. In a distributed job only the process of rank 0
logs (see `ExportHub.start`). Nothing here raises into training once the run has started: an
exporter that fails is logged once and switched off.

The libraries are optional extras, imported on first use; at construction only their presence
is checked, so a missing one is a ConfigError naming the extra.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Optional

from ..rundir import names
from .base import BaseExporter, Exporter, summary_metrics, summary_params
from .options import (
    AUTO,
    DEFAULT_EVERY_STEPS,
    DEFAULT_MIN_INTERVAL_S,
    check_every_steps,
    check_min_interval,
    check_named_once,
    known_names,
    register,
    resolve,
)

log = logging.getLogger("tracker")

PREFIX = "energy/"
# LogMetrics row keys (the ones the callbacks add to log rows) -> exported metric names.
PROGRESS_NAMES = {
    "energy_kwh": "energy/kwh",            # since the training began
    "run_energy_kwh": "energy/run_kwh",    # the whole run's so far (a wrapping CLI's too)
    "emissions_kg": "energy/emissions_kg",
    "power_w": "energy/power_w",
    "energy_j_per_sample": "energy/j_per_sample",
    "energy_j_per_token": "energy/j_per_token",
    "projected_energy_kwh": "energy/projected_kwh",
    "projected_emissions_kg": "energy/projected_emissions_kg",
}
# The option checks and the registry of tools live in options.py (below the configuration);
# their old private names here still work.
_check_every_steps = check_every_steps
_check_min_interval = check_min_interval


def make_exporters(log_to: Any) -> list[Any]:
    """The exporters `log_to=` asks for (checked as options.resolve says); ConfigError naming
    the option, the value and what it accepts. Libraries are only looked for, not imported."""
    out: list[Any] = []
    seen: set[str] = set()
    for kind, value in resolve(log_to):
        if kind == AUTO:
            from .auto import AutoExporter
            exporter: Any = AutoExporter()
        elif kind == "tool":
            exporter = value()
        else:
            exporter = value
        check_named_once(log_to, str(getattr(exporter, "name", repr(exporter))), seen)
        out.append(exporter)
    return out


def make_hub(log_to: Any, log_every_steps: Any = DEFAULT_EVERY_STEPS,
             log_min_interval_s: Any = DEFAULT_MIN_INTERVAL_S) -> Optional[ExportHub]:
    """The Tracker's hub, or None when nothing is to be logged (options checked either way)."""
    every = check_every_steps(log_every_steps)
    interval = check_min_interval(log_min_interval_s)
    exporters = make_exporters(log_to)
    return ExportHub(exporters, every, interval) if exporters else None


def process_rank(run: Any) -> int:
    """The job rank of this process (0 outside a job). A process joined to `energy-tracker
    run` has no job member of its own: the launcher's variables say its rank."""
    job = getattr(run, "job", None)   # run_view.RunView
    if job is not None:
        return int(job.identity.rank)
    from ..job.identity import _int
    rank = _int(os.environ, "RANK", "SLURM_PROCID", "OMPI_COMM_WORLD_RANK", "PMI_RANK")
    return rank or 0


class ExportHub:
    """When and what the exporters of one tracker log. Thread-safe enough for its callers: the
    training thread (window ends, log rows) and whichever thread stops the run."""

    def __init__(self, exporters: Sequence[Any], every_steps: Optional[int],
                 min_interval_s: float):
        self.exporters = list(exporters)
        self.every_steps = every_steps
        self.min_interval_s = min_interval_s
        self.active = False
        self.started = False
        self.rows_from_framework = False   # a callback feeds its (job-wide) log rows
        self.steps = 0
        self.last_step = 0
        self._last_log = -math.inf
        self._metrics: Any = None
        self._run: Any = None
        self._failed: set[int] = set()

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self, run: Any) -> None:
        """The tracker started (`run`: its read-only run_view.RunView, which the exporters'
        own `start(run)` get too). Only rank 0 of a job logs; its progress numbers are its own
        devices' (a collective at a point other ranks may never reach could hang or, worse,
        pair with the training's own all-reduce), unless a framework callback feeds job-wide
        rows. Idempotent."""
        if self.started:
            return
        self.started = True
        self._run = run
        if process_rank(run) != 0:
            return
        self.active = True
        from ..projection import LogMetrics
        self._metrics = LogMetrics(run)
        for e in self.exporters:
            self._call(e, "start", run)

    def framework(self, *, handles: Sequence[str] = (), rows: bool = True,
                  bind: Optional[dict[str, dict[str, Any]]] = None) -> None:
        """A framework callback drives progress: its log rows (job-wide in a job) replace the
        hub's own epoch/step triggers; tools in `handles` already get those rows from the
        framework (HF report_to, Lightning loggers), so they log only the summary. `bind`:
        tool -> where the framework's logger writes (run id, log dir)."""
        self.rows_from_framework = rows
        for e in self.exporters:
            name = getattr(e, "name", "")
            if name in handles:
                e.progress = False
            if hasattr(e, "handled"):      # "auto": the tools it may find
                self._call(e, "handled", set(handles))
            for tool, target in (bind or {}).items():
                if tool == name:
                    self._call(e, "bind", **target)
                elif name == AUTO:
                    self._call(e, "bind", tool=tool, **target)

    # -- progress ------------------------------------------------------------------------------
    def step_closed(self, samples: int, tokens: int) -> None:
        """A step closed (training thread, every step: a counter and a modulo, nothing more
        unless a log is due)."""
        if not self.active:
            return
        self.steps += 1
        self._metrics.count(samples or 0, tokens or 0)
        if self.rows_from_framework or not self.every_steps or self.steps % self.every_steps:
            return
        now = time.monotonic()
        if now - self._last_log < self.min_interval_s:
            return
        self._last_log = now
        self._progress()

    def window_closed(self, w: Any) -> None:
        """A window other than a step closed (training thread): epoch ends log progress."""
        if self.active and w.kind == "epoch" and not self.rows_from_framework:
            self._last_log = time.monotonic()
            self._progress()

    def _progress(self) -> None:
        if self._run is None or self._run.state != "running":   # closed by stop()
            return
        self.log_row(self._metrics.row(), self.steps)

    def log_row(self, row: dict[str, float], step: int) -> None:
        """Log a LogMetrics-style row (energy_kwh, power_w, ...) as energy/... metrics."""
        if not self.active or not row:
            return
        metrics = {PROGRESS_NAMES.get(k, PREFIX + k): float(v) for k, v in row.items()
                   if isinstance(v, (int, float)) and math.isfinite(v)}
        self.last_step = max(self.last_step, int(step))
        for e in self.exporters:
            if getattr(e, "progress", True):
                self._call(e, "on_progress", metrics, int(step))

    # -- stop ----------------------------------------------------------------------------------
    def stop(self, run: Any, summary: Any) -> None:
        """After the run's files are written: the summary (the job's, when this process can
        see it ended) and its files."""
        if not self.active:
            return
        self.active = False
        summary, files, scope = self._final(run, summary)
        for e in self.exporters:
            e.scope = scope
            e.step = self.last_step
            self._call(e, "on_stop", summary, files)

    def _final(self, run: Any, summary: Any) -> tuple[Any, list[Path], str]:
        job = getattr(run, "job", None)
        if job is not None:
            got = _job_summary(job.job_dir, run.run_dir, wait_s=min(run.job_timeout_s, 10.0))
            if got is not None:
                return got[0], got[1], "job"
            return summary, _files(run.run_dir, own=True), ("this process (rank 0) only: the "
                                                            "job had not ended when it stopped")
        if getattr(run, "joined", False):   # the CLI's process writes the run's files later
            return summary, [], "run (joined to `energy-tracker run`)"
        return summary, _files(run.run_dir, own=True), "run"

    def _call(self, e: Any, method: str, *args: Any, **kwargs: Any) -> None:
        if id(e) in self._failed:
            return
        fn = getattr(e, method, None)
        if fn is None:
            return
        try:
            fn(*args, **kwargs)
        except Exception as err:   # an exporter's failure must not reach the training code
            self._failed.add(id(e))
            msg = (f"log_to {getattr(e, 'name', e)!r}: {method} failed "
                   f"({type(err).__name__}: {err}); this exporter is off for the rest of the run")
            log.warning("energy-tracker: %s", msg)
            if self._run is not None:   # a note while the run has not stopped
                self._run.note(msg)


def _files(run_dir: Any, *, own: bool) -> list[Path]:
    """summary.json and, when present, report.html of a run or job directory."""
    if run_dir is None:
        return []
    d = Path(run_dir)
    return [p for p in (d / names.SUMMARY, d / names.REPORT_HTML) if p.is_file()]


def _job_summary(job_dir: Path, run_dir: Any, *, wait_s: float
                 ) -> Optional[tuple[Any, list[Path]]]:
    """The job's final summary when it was written after this process's own (so it includes
    it): waits up to `wait_s` for the process ending the job to write it."""
    import json

    from ..summary import Summary

    path = Path(job_dir) / names.SUMMARY
    try:
        mine = (Path(run_dir) / names.SUMMARY).stat().st_mtime
    except OSError:
        return None
    deadline = time.monotonic() + wait_s
    while True:
        try:
            if path.stat().st_mtime >= mine:
                data = json.loads(path.read_text())
                if data.get("status") != "running":
                    return Summary.from_dict(data), _files(job_dir, own=False)
        except (OSError, ValueError):
            pass
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.2)


__all__ = ["AUTO", "DEFAULT_EVERY_STEPS", "DEFAULT_MIN_INTERVAL_S", "PROGRESS_NAMES",
           "BaseExporter", "ExportHub", "Exporter", "known_names",
           "make_exporters", "make_hub", "register", "summary_metrics", "summary_params"]
