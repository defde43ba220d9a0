"""Framework integrations: Hugging Face `Trainer`, Lightning, and plain PyTorch loops.

    from tracker.integrations.huggingface import EnergyCallback   # transformers.Trainer
    from tracker.integrations.lightning import EnergyCallback     # lightning / pytorch_lightning
    from tracker.integrations.torch import count_samples, cuda_synchronize   # run.steps helpers

(The repository keeps these modules in integrations/; the distribution installs them as the
subpackage tracker.integrations, so no top-level `integrations` package collides with another
distribution's.)

The callbacks only map framework hooks onto `TrainingSession` below, which maps them onto the
tracker's windows; energy, emissions and projections are computed in `tracker/`.
"""

from __future__ import annotations

import logging
from typing import Any, Optional, Union

from tracker import ConfigError, Summary, Tracker
from tracker.config import TrackerConfig
from tracker.job.totals import JobReducer, contributes
from tracker.projection import LogMetrics, Projection, Projector, compare, measured_until
from tracker.summary import Window

log = logging.getLogger("tracker")


class TrainingSession:
    """One training run seen through framework hooks: its tracker, the windows the hooks have
    open (by role: "epoch", "step", "eval", "checkpoint"), the projection and the log metrics.

    Every method is safe to call in any state: a hook that arrives before `start` or after
    `finish` does nothing, so a framework calling hooks in an unexpected order cannot make
    tracking raise into training.
    """

    def __init__(self, name: str, config: dict[str, Any], *, job_metrics: bool = True):
        self.name = name
        self.config = dict(config)
        if not isinstance(job_metrics, bool):
            raise ConfigError(f"job_metrics must be True or False, got {job_metrics!r}")
        # In a distributed job, log rows carry the job's figures (one all-reduce per row).
        self.reducer = JobReducer() if job_metrics else None
        # Bad options raise ConfigError now, not at train start; nothing is opened here.
        TrackerConfig.from_options(name, **self.config)
        self.run: Optional[Tracker] = None
        self.summary: Optional[Summary] = None
        self.projector: Optional[Projector] = None
        self.projection: Optional[Projection] = None
        self.first_projection: Optional[Projection] = None
        self.metrics: Optional[LogMetrics] = None
        self._open: dict[str, Window] = {}
        self._step_samples = 0
        self._step_tokens = 0

    # -- lifecycle -----------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self.run is not None and self.summary is None

    def start(self, *, node_main: bool = True, gpus: Optional[list[Union[int, str]]] = None,
              suffix: str = "") -> Optional[Tracker]:
        """Start tracking. In a distributed job the tracker's job layer decides what this
        process measures (every device once). Only with `job=False` (each process a run of its
        own) the hints apply: `node_main` measures the node's CPU and RAM (one per node),
        `gpus` are this process's GPUs unless the user chose `gpus=` or `sensors=`."""
        if self.run is not None:
            return self.run
        cfg = dict(self.config)
        if cfg.get("job") is False:
            if not node_main:
                cfg["cpu"] = cfg["ram"] = False
            if gpus is not None and "gpus" not in cfg and "sensors" not in cfg:
                cfg["gpus"] = gpus
        else:
            suffix = ""
        self.run = Tracker(self.name + suffix, **cfg).start()
        self.metrics = LogMetrics(self.run)
        return self.run

    def exporters(self, handles: Any = (), bind: Optional[dict[str, Any]] = None) -> Any:
        """The tracker's log_to exporters (None without log_to), now driven by this session's
        log rows: the framework's logging points, which every rank reaches, so in a job the
        rows are job-wide (job_metrics). Tools in `handles` already receive those rows from the
        framework (HF report_to, Lightning loggers): they get only the summary and files, so
        nothing is logged twice. `bind`: tool -> where that framework logger writes."""
        hub = getattr(self.run, "_exporters", None)
        if hub is not None:
            hub.framework(handles=tuple(handles), rows=True, bind=bind)
        return hub

    def plan(self, total: float, *, unit: str, min_units: int = 1,
             recent: Optional[int] = None) -> None:
        """The run is `total` units long (epochs or steps): project once `min_units` are done."""
        try:
            self.projector = Projector(total, unit=unit, min_units=min_units, recent=recent)
        except ValueError as e:  # e.g. an iterable dataset of unknown length: no projection
            log.info("energy-tracker: no projection (%s)", e)
            self.projector = None

    def finish(self, status: str = "finished", error: Optional[BaseException] = None
               ) -> Optional[Summary]:
        """Stop tracking (idempotent) and note the projection against the actual energy."""
        if not self.running:
            return self.summary
        run = self.run
        assert run is not None
        if error is not None:
            run.notes.append(f"training raised {type(error).__name__}: {error}")
        self._project()
        made = [p for p in (self.first_projection, self.projection) if p is not None]
        if not run.devices:   # measures nothing (other processes of the job do): no projection
            made = []
        if len(made) == 2 and made[0].units_done == made[1].units_done:
            made.pop()

        def note_projections(t_end: float) -> None:  # after the final reading, inside stop()
            for p in made:
                run.notes.append(compare(p, run.energy_j(0.0, t_end), at_s=t_end))

        run.on_stop(note_projections)
        self.summary = run.stop(status)
        return self.summary

    def side_session(self, suffix: str, *, world_size: int = 1, rank: int = 0
                     ) -> TrainingSession:
        """A session of its own for a framework call outside training (an evaluate(), test()
        or predict() after or before fit): run `<name>-<suffix>`, the same options. The
        training run's figures stay what training cost. With several processes, each measures
        its own share as a run of its own (job=False: the launcher's job is the training's,
        whose job summary must not change after the fact; a job= name gets `-<suffix>`), and
        only rank 0 prints its end block."""
        cfg = dict(self.config)
        if isinstance(cfg.get("job"), str):
            cfg["job"] = f"{cfg['job']}-{suffix}"
        elif world_size > 1:
            cfg.setdefault("job", False)
        if world_size > 1 and rank != 0:
            cfg.setdefault("quiet", True)
        return TrainingSession(f"{self.name}-{suffix}", cfg, job_metrics=False)

    # -- windows -------------------------------------------------------------------------------
    def open(self, role: str, name: str, kind: str, **attrs: Any) -> None:
        """Open the window of `role` (closing a stale one left by an unmatched hook)."""
        if not self.running:
            return
        if role in self._open:
            self.close(role, unmatched=True)
        assert self.run is not None
        self._open[role] = self.run.begin_window(name, kind, **attrs)

    def close(self, role: str, **attrs: Any) -> bool:
        w = self._open.pop(role, None)
        if w is None or not self.running:
            return False
        assert self.run is not None
        self.run.end_window(w, **attrs)
        return True

    def is_open(self, role: str) -> bool:
        return role in self._open

    def begin_step(self, index: int, **attrs: Any) -> None:
        self._step_samples = self._step_tokens = 0
        self.open("step", f"step {index}", "step", index=index, **attrs)

    def count(self, samples: int = 0, tokens: int = 0) -> None:
        """Samples and tokens seen by the open step (e.g. from a forward hook)."""
        self._step_samples += samples
        self._step_tokens += tokens

    def end_step(self, *, samples: int = 0, tokens: int = 0) -> None:
        """Close the step; `samples`/`tokens` are used when nothing was counted during it."""
        samples = self._step_samples or samples
        tokens = self._step_tokens or tokens
        attrs = {k: v for k, v in (("samples", samples), ("tokens", tokens)) if v}
        if self.close("step", **attrs) and self.metrics is not None:
            self.metrics.count(samples, tokens)

    # -- projection and log rows ---------------------------------------------------------------
    def begin_units(self) -> None:
        """The first planned unit starts now."""
        if self.projector is not None and self.running:
            assert self.run is not None
            self.projector.begin(self.run.clock())

    def unit_done(self) -> None:
        """A planned unit (epoch or step) ended now."""
        if self.projector is None or not self.running:
            return
        assert self.run is not None
        self.projector.unit_done(self.run.clock())
        if self.projector.ready:
            self._project()

    def _project(self) -> Optional[Projection]:
        run = self.run
        if self.projector is None or run is None:
            return None
        p = self.projector.project(lambda t: run.energy_j(0.0, t), start_wall=run.start_wall,
                                   gco2_per_kwh=run.factor.gco2_per_kwh, pue=run.pue,
                                   until=measured_until(run))
        if p is not None:
            self.projection = p
            if self.first_projection is None:
                self.first_projection = p
        return p

    def log_row(self, step: Optional[int] = None) -> dict[str, float]:
        """Metrics for the framework's logger (empty when not tracking); with `step`, also
        sent to the tracker's log_to exporters (rank 0 of a job only)."""
        if not self.running or self.metrics is None:
            return {}
        if step is not None:
            row = self.log_row()
            hub = getattr(self.run, "_exporters", None)
            if hub is not None and row:
                hub.log_row(row, step)
            return row
        self._project()
        return self.metrics.row(self.projection, reduce=self.reducer,
                                contribute=contributes(self.run))


class SessionResults:
    """`run` and `summary` of a callback that holds a TrainingSession as `self.session`."""

    session: TrainingSession

    @property
    def run(self) -> Any:
        """The Tracker of the current (or last) training run, None before training."""
        return self.session.run

    @property
    def summary(self) -> Optional[Summary]:
        """The final Summary once training ended."""
        return self.session.summary


__all__ = ["SessionResults", "TrainingSession"]
