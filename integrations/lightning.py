"""Lightning (`lightning.pytorch` or `pytorch_lightning`): energy and CO2e per run, epoch, batch and
validation, logged to every logger of the Trainer (`trainer.loggers`).

    from tracker.integrations.lightning import EnergyCallback
    trainer = lightning.pytorch.Trainer(max_epochs=10, callbacks=[EnergyCallback(region="DE")])

`EnergyCallback` derives from `lightning.pytorch.Callback` when `lightning` is installed, else
from `pytorch_lightning.Callback`; `PLEnergyCallback` is always the `pytorch_lightning` one (a
Trainer only accepts callbacks of its own package), and `callback_class(package)` builds either.

Hook mapping, and where it is imprecise:
- on_fit_start / on_fit_end: the run (sanity-check validation included); on_exception ends
  it as "failed" ("interrupted" for KeyboardInterrupt).
- validate() / test() / predict() called on their own (before or after fit): the fit run has
  ended and its numbers are what training cost, so each call is a short run of its own,
  `<name>-validate` / `<name>-test` / `<name>-predict`, from the callback's `setup` to its
  `teardown` (dataloader set-up included), with an "eval" window from on_<stage>_start to
  on_<stage>_end; `cb.eval_summary` / `cb.eval_summaries`. With several processes (ddp) each
  measures its own share (job=False runs; rank 0 prints its end block).
- on_train_epoch_start/end: "epoch" windows; Lightning runs validation inside the training
  epoch, so an epoch's energy includes its validation, which is also its own "eval" window
  (on_validation_start/end; the sanity check has attrs {"sanity": True}).
- on_train_batch_start/end: "step" windows per batch, with samples/tokens from the batch.
- Checkpoint saving has no before/after hook pair (ModelCheckpoint saves inside
  on_train_epoch_end / on_validation_end), so it is inside those windows, not its own.
- Metrics go straight to the Trainer's loggers (`logger.log_metrics`, from global rank 0)
  when Lightning writes step logs (log_every_n_steps) and at each epoch end; not through
  `pl_module.log`, whose epoch-level reduction would want `sync_dist=True` under ddp (and
  warn without it) although the figures are job-wide already. With `strategy="ddp"` every
  process runs the callback; the tracker's job layer measures each device once and writes
  one job directory, and the logged figures are the job's (one all-reduce at each of those
  logging points, which every rank reaches; `job_metrics=False` logs rank 0's own). They
  are not in `trainer.callback_metrics` (nor the progress bar).
"""

from __future__ import annotations

import importlib
import logging
from typing import Any, Optional

from tracker.config import given_options, options_docstring, signature_with_options
from tracker.summary import Summary

from . import SessionResults, TrainingSession
from .torch import count_samples, count_tokens, process_gpus

PACKAGES = ("lightning", "pytorch_lightning")
log = logging.getLogger("tracker")


class _EnergyHooks(SessionResults):
    """The hooks; mixed into the Callback class of the Lightning package in use."""

    def __init__(self, name: str = "lightning", *, project_after: int = 1,
                 projection_recent: Optional[int] = None, job_metrics: bool = True,
                 **track_config: Any):
        """`name`: run name; `project_after`: epochs (steps when the run is bounded by
        max_steps) before the first projection; `projection_recent`: project from the last K
        units only (default: all); `job_metrics`: in a distributed job, log the job's figures
        (one all-reduce of a few floats when Lightning logs; default True). Other options are
        those of `tracker.track()` (typed keyword parameters: LightningCLI and YAML configs can
        set them; a parameter left at its default leaves the option to its ENERGY_TRACKER_*
        variable)."""
        self.name = name
        self.track_config = given_options(track_config)
        self.project_after = project_after
        self.projection_recent = projection_recent
        self.job_metrics = job_metrics
        self.session = TrainingSession(name, self.track_config, job_metrics=job_metrics)
        self._unit = "epoch"
        self._last_global_step = 0
        self._batches = 0

    # -- run -----------------------------------------------------------------------------------
    def on_fit_start(self, trainer: Any, pl_module: Any) -> None:
        if self.session.run is not None:   # a second fit() with this callback: a new run
            self.session = TrainingSession(self.name, self.track_config,
                                           job_metrics=self.job_metrics)
        world = int(trainer.world_size or 1)
        self.session.start(node_main=trainer.local_rank == 0,
                           gpus=process_gpus(trainer.strategy.root_device) if world > 1 else None,
                           suffix=f"-rank{trainer.global_rank}" if world > 1 else "")
        max_epochs = trainer.max_epochs
        if trainer.max_steps in (None, -1) and max_epochs not in (None, -1):
            self._unit = "epoch"
            total = float(max_epochs)
            min_units = self.project_after
        else:
            self._unit = "step"
            total = float(trainer.estimated_stepping_batches)
            per_epoch = trainer.num_training_batches
            min_units = self.project_after if self.project_after > 1 else (
                int(per_epoch) if per_epoch not in (None, float("inf")) else 1)
        self.session.plan(total, unit=self._unit, min_units=min_units,
                          recent=self.projection_recent)
        self._last_global_step = trainer.global_step
        if getattr(self.session.run, "_exporters", None) is not None:
            # log_to: tools that one of the Trainer's loggers already feeds our rows get only
            # the summary, in that logger's own run / directory
            self.session.exporters(handles=_logger_tools(trainer),
                                   bind=_logger_targets(trainer))

    def on_fit_end(self, trainer: Any, pl_module: Any) -> None:
        self.session.finish("finished")

    def on_exception(self, trainer: Any, pl_module: Any, exception: BaseException) -> None:
        self._end_side("interrupted" if isinstance(exception, KeyboardInterrupt) else "failed",
                       exception)
        self.session.finish("interrupted" if isinstance(exception, KeyboardInterrupt)
                            else "failed", exception)

    # -- epochs and batches --------------------------------------------------------------------
    def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
        epoch = trainer.current_epoch
        self.session.open("epoch", f"epoch {epoch}", "epoch", index=epoch)
        if self._unit == "epoch":
            self.session.begin_units()

    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        self.session.close("epoch")
        if self._unit == "epoch":
            self.session.unit_done()
        row = self.session.log_row(step=trainer.global_step)
        if row:
            _log_metrics(trainer, {f"{k}_epoch": v for k, v in row.items()})

    def on_train_batch_start(self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int
                             ) -> None:
        if self._unit == "step":
            self.session.begin_units()
        self.session.begin_step(self._batches, batch=batch_idx, epoch=trainer.current_epoch)
        self.session.count(count_samples(batch), count_tokens(batch))
        self._batches += 1

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        self.session.end_step()
        if self._unit == "step" and trainer.global_step > self._last_global_step:
            self.session.unit_done()   # an optimizer step (after gradient accumulation)
        self._last_global_step = trainer.global_step
        if _should_update_logs(trainer, self._batches):
            row = self.session.log_row(step=trainer.global_step)
            if row:
                _log_metrics(trainer, row)

    # -- validation ----------------------------------------------------------------------------
    def on_validation_start(self, trainer: Any, pl_module: Any) -> None:
        if self._side is not None:
            self._side.open("eval", "validation", "eval")
            return
        sanity = bool(getattr(trainer, "sanity_checking", False))
        self.session.open("eval", "sanity check" if sanity else "validation", "eval",
                          **({"sanity": True} if sanity else {}))

    def on_validation_end(self, trainer: Any, pl_module: Any) -> None:
        if self._side is not None:
            self._side.close("eval")
            return
        self.session.close("eval")

    # -- validate() / test() / predict() on their own --------------------------------------------
    _side: Optional[TrainingSession] = None      # the run of the call in progress
    eval_summaries: tuple[Summary, ...] = ()     # those runs' summaries, oldest first

    @property
    def eval_summary(self) -> Optional[Summary]:
        """The summary of the last validate()/test()/predict() run (None: none yet)."""
        return self.eval_summaries[-1] if self.eval_summaries else None

    def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
        stage = str(getattr(stage, "value", stage))   # a TrainerFn (str enum) in Lightning 2
        if stage not in STANDALONE_STAGES or self.session.running or self._side is not None:
            return
        try:
            world = int(trainer.world_size or 1)
            side = self.session.side_session(stage, world_size=world, rank=trainer.global_rank)
            side.start(node_main=trainer.local_rank == 0,
                       gpus=process_gpus(trainer.strategy.root_device) if world > 1 else None,
                       suffix=f"-rank{trainer.global_rank}" if world > 1 else "")
            self._side = side
        except Exception as e:   # the call runs untracked, never fails for us
            log.warning("energy-tracker: %s() not tracked: %s: %s", stage, type(e).__name__, e)

    def teardown(self, trainer: Any, pl_module: Any, stage: str) -> None:
        if str(getattr(stage, "value", stage)) in STANDALONE_STAGES:
            self._end_side("finished")

    def _end_side(self, status: str, error: Optional[BaseException] = None) -> None:
        side, self._side = self._side, None
        if side is None:
            return
        try:
            summary = side.finish(status, error)
            if summary is not None:
                self.eval_summaries = (*self.eval_summaries, summary)
        except Exception as e:
            log.warning("energy-tracker: ending the %s run failed: %s: %s", side.name,
                        type(e).__name__, e)

    def on_test_start(self, trainer: Any, pl_module: Any) -> None:
        if self._side is not None:
            self._side.open("eval", "test", "eval")

    def on_test_end(self, trainer: Any, pl_module: Any) -> None:
        if self._side is not None:
            self._side.close("eval")

    def on_predict_start(self, trainer: Any, pl_module: Any) -> None:
        if self._side is not None:
            self._side.open("eval", "prediction", "eval")

    def on_predict_end(self, trainer: Any, pl_module: Any) -> None:
        if self._side is not None:
            self._side.close("eval")


# Lightning logger classes -> the exporter tool they write to
_LOGGER_TOOLS = {"MLFlowLogger": "mlflow", "WandbLogger": "wandb",
                 "TensorBoardLogger": "tensorboard"}


def _logger_tools(trainer: Any) -> set[str]:
    return {_LOGGER_TOOLS[type(lg).__name__] for lg in getattr(trainer, "loggers", None) or ()
            if type(lg).__name__ in _LOGGER_TOOLS}


def _logger_targets(trainer: Any) -> dict[str, dict[str, Any]]:
    """Where the Trainer's MLflow and TensorBoard loggers write (W&B: `wandb.run`, found by
    the exporter itself). MLFlowLogger keeps its own run, not MLflow's active one."""
    out: dict[str, dict[str, Any]] = {}
    for lg in getattr(trainer, "loggers", None) or ():
        kind = type(lg).__name__
        if kind == "MLFlowLogger" and trainer.global_rank == 0:
            out["mlflow"] = {"run_id": lg.run_id, "tracking_uri": getattr(lg, "_tracking_uri",
                                                                          None)}
        elif kind == "TensorBoardLogger":
            out["tensorboard"] = {"logdir": lambda lg=lg: lg.log_dir}
    return out


STANDALONE_STAGES = ("validate", "test", "predict")


def _log_metrics(trainer: Any, row: dict[str, float]) -> None:
    """The row to every logger of the Trainer, from global rank 0 (the figures are job-wide
    already), at Lightning's own logging step; never raises into training."""
    if not getattr(trainer, "is_global_zero", True):
        return
    loop = getattr(getattr(trainer, "fit_loop", None), "epoch_loop", None)
    step = getattr(loop, "_batches_that_stepped", None)
    step = trainer.global_step if not isinstance(step, int) else step
    for logger in getattr(trainer, "loggers", None) or ():
        try:
            logger.log_metrics(row, step=step)
        except Exception as e:
            log.warning("energy-tracker: %s.log_metrics failed: %s: %s",
                        type(logger).__name__, type(e).__name__, e)


def _should_update_logs(trainer: Any, batches: int) -> bool:
    """Whether Lightning writes step logs after this batch (as its own callbacks ask)."""
    connector = getattr(trainer, "_logger_connector", None)
    if connector is not None and hasattr(connector, "should_update_logs"):
        return bool(connector.should_update_logs)
    every = getattr(trainer, "log_every_n_steps", 50) or 0
    return every > 0 and batches % every == 0


# The tracker's options as typed keyword parameters (declared once, in tracker.config), for
# inspect, IDEs and jsonargparse (LightningCLI: --trainer.callbacks.region=DE).
_init: Any = _EnergyHooks.__init__
_init.__signature__ = signature_with_options(_EnergyHooks.__init__)
_init.__doc__ = f"{_init.__doc__}\n\n        Args:\n{options_docstring(' ' * 12)}\n        "

_classes: dict[str, type] = {}


def callback_class(package: str = "lightning") -> type:
    """The EnergyCallback class for `package` ("lightning" or "pytorch_lightning")."""
    if package not in PACKAGES:
        raise ValueError(f"package must be one of {', '.join(PACKAGES)}, got {package!r}")
    if package not in _classes:
        module = importlib.import_module("lightning.pytorch" if package == "lightning"
                                         else "pytorch_lightning")
        _classes[package] = type("EnergyCallback", (_EnergyHooks, module.Callback),
                                 {"__module__": __name__, "__doc__": _EnergyHooks.__doc__,
                                  "__qualname__": "EnergyCallback"})
    return _classes[package]


def _default_package() -> str:
    for package in PACKAGES:
        try:
            importlib.import_module("lightning.pytorch" if package == "lightning" else package)
            return package
        except ImportError:
            continue
    raise ImportError("tracker.integrations.lightning needs `lightning` or `pytorch_lightning`: "
                      "pip install 'trainjoule[lightning]'")


EnergyCallback = callback_class(_default_package())
PLEnergyCallback: type   # the pytorch_lightning class, built on first access (__getattr__)


def __getattr__(name: str) -> Any:
    if name == "PLEnergyCallback":   # imported only when asked for
        return callback_class("pytorch_lightning")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["EnergyCallback", "PLEnergyCallback", "callback_class"]
