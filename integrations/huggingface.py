"""Hugging Face `transformers.Trainer`: energy and CO2e per run, epoch, step, evaluation and
checkpoint, added to the Trainer's own log rows (so they reach TensorBoard, W&B, ...).

    from tracker.integrations.huggingface import EnergyCallback
    trainer = Trainer(model, args, train_dataset=ds, callbacks=[EnergyCallback(region="DE")])
    trainer.train()      # run logs in ./energy-runs/<time>-hf-trainer/

Hook mapping, and where it is imprecise:
- on_train_begin / on_train_end: the run. Model loading before train() is not in it.
- on_epoch_begin / on_epoch_end: "epoch" windows; on_step_begin / on_step_end: "step"
  windows around one optimizer step (all its gradient-accumulation micro-batches). The
  Trainer fetches a step's batches just before on_step_begin, so data loading is in the gaps.
- Evaluation and checkpoints have only an "after" hook (on_evaluate, on_save). Their "eval" /
  "checkpoint" windows open at the on_step_end / on_epoch_end that requests them (the
  control flags set by DefaultFlowCallback), so they also hold the log call just before
  evaluation (microseconds). Evaluation started otherwise (eval_on_start, a callback calling
  evaluate()) opens its window at its first prediction step, so its dataloader set-up is
  outside. With save_strategy="best", a checkpoint window whose save was skipped is closed at
  the next hook with attrs {"unmatched": True}.
- evaluate() / predict() outside train() (a final `trainer.evaluate()` after training, or a
  Trainer used only to evaluate): the training run has ended at on_train_end and its numbers
  are what training cost, so each such call is a short run of its own, `<name>-eval` /
  `<name>-predict` (its own run directory, summary and end block; `cb.eval_summary`, and
  `cb.eval_summaries` for all of them), with one "eval" window over the whole call. The
  callback wraps that Trainer instance's `evaluate`/`predict` (at on_init_end, or at
  on_train_begin for a callback added later); a callback that saw neither starts the run at
  the call's first prediction step. With several processes each measures its own share
  (job=False runs; rank 0 prints).
- A training exception: the Trainer has no exception hook, so at on_train_begin the callback
  finds its Trainer on the call stack and wraps that instance's `_run_epoch` (transformers
  >= 5) and `training_step`: an exception stops the run with status "failed" (KeyboardInterrupt:
  "interrupted") and is re-raised untouched. An atexit handler covers the rest (an error after
  the last epoch, a Trainer not found). OOM retries of auto_find_batch_size continue the run.
- Model card: at on_train_begin the callback also wraps that Trainer instance's
  `create_model_card` (which `push_to_hub` calls too): after the Trainer has written
  output_dir/README.md, its YAML front matter gets `co2_eq_emissions` from the finished run's
  (or job's) summary.json (tracker/publish); a failure there is logged, never raised.
- Distributed (torchrun, accelerate, deepspeed): every process runs the callback; the
  tracker's job layer makes each device measured once (its own GPU first, CPU and RAM once per
  node) and writes one job directory; log rows carry job-wide figures (job_metrics).
"""

from __future__ import annotations

import atexit
import functools
import inspect
import logging
import math
import sys
import weakref
from typing import Any, Callable, Optional

try:   # the callback subclasses TrainerCallback: transformers is needed at import time
    from transformers import Trainer, TrainerCallback
    from transformers.trainer_callback import DefaultFlowCallback
except ModuleNotFoundError as e:
    if e.name != "transformers":
        raise   # a dependency of transformers is missing: its own message says which
    raise ModuleNotFoundError(
        "tracker.integrations.huggingface needs transformers: "
        "pip install 'trainjoule[huggingface]'", name="transformers") from e

from tracker.config import given_options, signature_with_options
from tracker.summary import Summary

from . import SessionResults, TrainingSession
from .torch import count_samples, count_tokens, process_gpus

log = logging.getLogger("tracker")

# Trainer methods wrapped so that an exception inside them ends the run as "failed".
GUARDED_METHODS = ("_run_epoch", "training_step")


class EnergyCallback(SessionResults, TrainerCallback):
    """Tracks a `Trainer.train()` run. Takes the options of `tracker.track()` (region, pue,
    output_dir, ...), plus:

    name: run name (default "hf-trainer").
    project_after_steps: optimizer steps before the first projection (default: one epoch).
    projection_recent: project from the last K steps only (default: every step so far).
    count_inputs: count samples/tokens per step with a forward pre-hook on the model
        (default True; otherwise per_device_train_batch_size x gradient_accumulation_steps).
    job_metrics: in a distributed job, log the job's energy and emissions (one all-reduce of a
        few floats at each logging step, where the Trainer already gathers the loss); False
        logs this process's own figures (default True).
    training_type: the model card's `training_type` (default: "fine-tuning" when the model
        was loaded from a name or path, else "pre-training").
    model_card: False leaves the Trainer's model card untouched (default True).

    Adds to each log row: energy_kwh, emissions_kg, power_w (mean since the previous row),
    energy_j_per_sample / energy_j_per_token (since the previous row), projected_energy_kwh
    and projected_emissions_kg (once a projection exists). `self.summary` is the final Summary.
    """

    def __init__(self, name: str = "hf-trainer", *, project_after_steps: Optional[int] = None,
                 projection_recent: Optional[int] = None, count_inputs: bool = True,
                 job_metrics: bool = True, training_type: Optional[str] = None,
                 model_card: bool = True, **track_config: Any):
        self.name = name
        self.training_type = training_type
        self.model_card = model_card
        # a parameter left at its default leaves the option to its ENERGY_TRACKER_* variable
        self.track_config = given_options(track_config)
        self.project_after_steps = project_after_steps
        self.projection_recent = projection_recent
        self.count_inputs = count_inputs
        self.job_metrics = job_metrics
        self.session = TrainingSession(name, self.track_config, job_metrics=job_metrics)
        self._trainer: Optional[weakref.ref[Any]] = None
        self._hook: Any = None
        self._epoch = 0
        self._auto_batch = False
        self._atexit_registered = False

    # evaluate()/predict() outside train(): a short run of its own (see the module docstring)
    _side: Optional[TrainingSession] = None
    _side_by_hooks = False
    eval_summaries: tuple[Summary, ...] = ()   # those runs' summaries, oldest first

    @property
    def eval_summary(self) -> Optional[Summary]:
        """The summary of the last evaluate()/predict() run outside training (None: none)."""
        return self.eval_summaries[-1] if self.eval_summaries else None

    # -- run -----------------------------------------------------------------------------------
    def on_init_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        trainer = _find_trainer()   # Trainer.__init__ is on the stack
        if trainer is not None:
            _wrap_standalone(trainer, self)

    def on_train_begin(self, args: Any, state: Any, control: Any, model: Any = None,
                       **kwargs: Any) -> None:
        if self.session.running:   # auto_find_batch_size restarted the loop after an OOM
            self.session.run.notes.append(  # type: ignore[union-attr]
                "training restarted (auto_find_batch_size after out-of-memory); "
                "the run continues")
            return
        if self.session.run is not None:   # a second train() with this callback: a new run
            self.session = TrainingSession(self.name, self.track_config,
                                           job_metrics=self.job_metrics)
        world = int(getattr(args, "world_size", 1) or 1)
        self.session.start(node_main=bool(state.is_local_process_zero),
                           gpus=process_gpus(args.device) if world > 1 else None,
                           suffix=f"-rank{args.process_index}" if world > 1 else "")
        self._auto_batch = bool(getattr(args, "auto_find_batch_size", False))
        epochs = max(int(getattr(state, "num_train_epochs", 0) or 0), 1)
        per_epoch = max(1, math.ceil(state.max_steps / epochs)) if state.max_steps else 1
        self.session.plan(state.max_steps or math.nan, unit="step",
                          min_units=self.project_after_steps or per_epoch,
                          recent=self.projection_recent)
        self._epoch = int(state.epoch or 0)
        if self.count_inputs and model is not None:
            self._hook = _count_forward_inputs(model, self.session)
        trainer = _find_trainer()
        if trainer is not None:
            self._trainer = weakref.ref(trainer)
            _run_after_flow_callback(trainer, self)
            for method in GUARDED_METHODS:
                _guard(trainer, method, self._on_exception)
            if self.model_card:
                _wrap_model_card(trainer, self)
            _wrap_standalone(trainer, self)
        else:
            log.info("energy-tracker: Trainer not found on the stack; a training exception "
                     "is recorded only at interpreter exit")
        # log_to exporters log at on_log; tools report_to already sends our row keys to get
        # only the summary; TensorBoard's summary goes next to the Trainer's own events.
        tb = next((c for c in trainer.callback_handler.callbacks
                   if type(c).__name__ == "TensorBoardCallback"), None) if trainer else None
        self.session.exporters(handles=_reported_tools(args), bind={
            "tensorboard": {"logdir": lambda: getattr(tb, "logging_dir", None)}} if tb else None)
        if not self._atexit_registered:
            atexit.register(self._at_exit)
            self._atexit_registered = True

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._end("finished")

    def _end(self, status: str, error: Optional[BaseException] = None) -> None:
        if self._hook is not None:
            self._hook.remove()
            self._hook = None
        trainer = self._trainer() if self._trainer is not None else None
        if trainer is not None:
            for method in GUARDED_METHODS:
                _unguard(trainer, method)
        self.session.finish(status, error)
        if self._atexit_registered:
            atexit.unregister(self._at_exit)
            self._atexit_registered = False

    def _on_exception(self, error: BaseException) -> None:
        if not self.session.running:
            return
        if self._auto_batch and _is_oom(error):
            self.session.close("step", failed="out of memory")
            return
        self._end("interrupted" if isinstance(error, KeyboardInterrupt) else "failed", error)

    def _at_exit(self) -> None:
        if self.session.running:
            error = getattr(sys, "last_value", None)
            self._end("interrupted" if error is None or isinstance(error, KeyboardInterrupt)
                      else "failed", error)

    # -- epochs and steps ----------------------------------------------------------------------
    def on_epoch_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._close_unmatched()
        self.session.open("epoch", f"epoch {self._epoch}", "epoch", index=self._epoch)

    def on_epoch_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.session.close("epoch")
        self._epoch += 1
        self._open_requested(control, state)

    def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._close_unmatched()
        if not self.session.is_open("step"):
            self.session.begin_units()
        self.session.begin_step(state.global_step)

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.session.end_step(samples=args.per_device_train_batch_size
                              * args.gradient_accumulation_steps)
        self.session.unit_done()
        self._open_requested(control, state)

    # -- evaluation and checkpoints -------------------------------------------------------------
    def _open_requested(self, control: Any, state: Any) -> None:
        """Evaluation, then saving, run right after this hook if DefaultFlowCallback asked."""
        if control.should_evaluate:
            self.session.open("eval", "evaluation", "eval", step=state.global_step)
        elif control.should_save:
            self.session.open("checkpoint", "checkpoint", "checkpoint", step=state.global_step)

    def _close_unmatched(self) -> None:
        for role in ("eval", "checkpoint"):
            self.session.close(role, unmatched=True)

    def on_prediction_step(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if not self.session.running:
            # evaluate()/predict() outside train() whose start was not seen (the callback was
            # added after the Trainer was built): its run starts at its first batch
            if self._side is None or not self._side.running:
                self._begin_side(args, "eval", "evaluation", by_hooks=True)
            return
        if not self.session.is_open("eval"):
            self.session.open("eval", "evaluation", "eval", step=state.global_step)

    def on_evaluate(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self._side_by_hooks:
            self._end_side("finished")
            return
        self.session.close("eval")
        if control.should_save:
            self.session.open("checkpoint", "checkpoint", "checkpoint", step=state.global_step)

    def on_predict(self, args: Any, state: Any, control: Any, metrics: Any = None,
                   **kwargs: Any) -> None:
        if self._side_by_hooks:
            self._end_side("finished")
            return
        self.session.close("eval")

    # -- evaluate() / predict() outside train() -------------------------------------------------
    def _begin_side(self, args: Any, suffix: str, window: str, *, by_hooks: bool = False
                    ) -> None:
        """Start the short run of an evaluate()/predict() outside training: `<name>-eval` /
        `<name>-predict`, one "eval" window over the whole call. Never raises."""
        try:
            world = int(getattr(args, "world_size", 1) or 1)
            rank = int(getattr(args, "process_index", 0) or 0)
            side = self.session.side_session(suffix, world_size=world, rank=rank)
            side.start(node_main=bool(getattr(args, "local_process_index", 0) == 0),
                       gpus=process_gpus(args.device) if world > 1 else None,
                       suffix=f"-rank{rank}" if world > 1 else "")
            side.open("eval", window, "eval")
            self._side, self._side_by_hooks = side, by_hooks
        except Exception as e:   # the evaluation runs untracked, never fails for us
            log.warning("energy-tracker: %s() not tracked: %s: %s", suffix,
                        type(e).__name__, e)
            self._side, self._side_by_hooks = None, False

    def _end_side(self, status: str, error: Optional[BaseException] = None) -> None:
        side, self._side, self._side_by_hooks = self._side, None, False
        if side is None or not side.running:
            return
        try:
            side.close("eval")
            summary = side.finish(status, error)
            if summary is not None:
                self.eval_summaries = (*self.eval_summaries, summary)
        except Exception as e:
            log.warning("energy-tracker: ending the evaluation run failed: %s: %s",
                        type(e).__name__, e)

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.session.close("checkpoint")

    # -- logs ----------------------------------------------------------------------------------
    def on_log(self, args: Any, state: Any, control: Any, logs: Optional[dict[str, Any]] = None,
               **kwargs: Any) -> None:
        if logs is None:
            return
        row = self.session.log_row(step=state.global_step)
        if not row:
            return
        # Trainer.log stored a copy of `logs` in log_history before the callbacks ran.
        last = state.log_history[-1] if state.log_history else None
        if last is not None and all(last.get(k) == v for k, v in logs.items()):
            last.update(row)
        logs.update(row)


    # -- model card ----------------------------------------------------------------------------
    def write_card(self, trainer: Any, finetuned_from: Optional[str] = None) -> Optional[str]:
        """Put co2_eq_emissions into the card the Trainer just wrote (output_dir/README.md).
        Returns the card's path, or None when there was nothing to write; never raises."""
        try:
            if not trainer.is_world_process_zero():
                return None
            run = self.run
            if run is None or self.summary is None or self.session.running:
                log.info("energy-tracker: no finished run yet; the model card has no "
                         "co2_eq_emissions")
                return None
            import os
            from pathlib import Path

            from tracker.job.layout import is_job_dir
            from tracker.publish.card import card_metadata, update_front_matter
            from tracker.publish.facts import facts_from_dir

            run_dir = Path(run.run_dir)
            # in a job the card counts the whole job: its directory holds this run's
            source = run_dir.parent if is_job_dir(run_dir.parent) and (
                run_dir.parent / "summary.json").exists() else run_dir
            facts = facts_from_dir(source, training_type=self.training_type
                                   or _training_type(trainer, finetuned_from))
            card = Path(trainer.args.output_dir) / "README.md"
            old = card.read_bytes().decode("utf-8") if card.exists() else ""
            tmp = card.with_name(f".README.md.{os.getpid()}.tmp")
            tmp.write_text(update_front_matter(old, card_metadata(facts)), encoding="utf-8",
                           newline="")
            os.replace(tmp, card)
            return str(card)
        except Exception as e:   # the Trainer's card is written already; ours is a bonus
            log.warning("energy-tracker: co2_eq_emissions not added to the model card: %s: %s",
                        type(e).__name__, e)
            return None


def _training_type(trainer: Any, finetuned_from: Optional[str]) -> str:
    """fine-tuning for a model loaded from a name or path (its config says which), else
    pre-training (a model built from a config)."""
    config = getattr(getattr(trainer, "model", None), "config", None)
    origin = finetuned_from or getattr(config, "_name_or_path", "") or ""
    return "fine-tuning" if origin else "pre-training"


def _wrap_model_card(trainer: Trainer, callback: EnergyCallback) -> None:
    """Wrap this instance's create_model_card (push_to_hub calls it too) so that the card the
    Trainer writes gets co2_eq_emissions afterwards. Kept after the run: the card is written
    after train() returns."""
    if getattr(trainer.__dict__.get("create_model_card"), "__energy_card__", False):
        return
    original = getattr(trainer, "create_model_card", None)
    if original is None:
        return
    ref = weakref.ref(callback)

    @functools.wraps(original)
    def create_model_card(*args: Any, **kwargs: Any) -> Any:
        result = original(*args, **kwargs)
        cb = ref()
        if cb is not None:
            cb.write_card(trainer, kwargs.get("finetuned_from"))
        return result

    create_model_card.__energy_card__ = True  # type: ignore[attr-defined]
    trainer.create_model_card = create_model_card  # type: ignore[method-assign]


# Trainer methods that, called outside train(), are runs of their own: method -> run suffix
STANDALONE_METHODS = {"evaluate": ("eval", "evaluation"), "predict": ("predict", "prediction")}


def _wrap_standalone(trainer: Trainer, callback: EnergyCallback) -> None:
    """Wrap this instance's evaluate() and predict(): called outside train() (after it, or
    instead of it), each call is a short run of its own from its first line to its return;
    inside train() (the Trainer's own evaluations) they pass straight through."""
    ref = weakref.ref(callback)
    for method, (suffix, window) in STANDALONE_METHODS.items():
        original = getattr(trainer, method, None)
        if original is None or getattr(original, "__energy_standalone__", False):
            continue
        setattr(trainer, method, _standalone(trainer, ref, original, suffix, window))


def _standalone(trainer: Trainer, ref: weakref.ref[EnergyCallback], original: Any,
                suffix: str, window: str) -> Any:
    @functools.wraps(original)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        cb = ref()
        if cb is None or cb.session.running or cb._side is not None:
            return original(*args, **kwargs)
        cb._begin_side(trainer.args, suffix, window)
        try:
            result = original(*args, **kwargs)
        except BaseException as e:
            cb._end_side("interrupted" if isinstance(e, KeyboardInterrupt) else "failed", e)
            raise
        cb._end_side("finished")
        return result

    wrapped.__energy_standalone__ = True  # type: ignore[attr-defined]
    return wrapped


def _reported_tools(args: Any) -> set[str]:
    """The exporter tools the Trainer itself reports log rows to (TrainingArguments.report_to)."""
    report_to = args.report_to if isinstance(args.report_to, (list, tuple)) else [args.report_to]
    names = {str(r) for r in report_to if r}
    if "all" in names:
        # untyped in transformers: reached through the module object, so it is Any here
        import importlib
        hub = importlib.import_module("transformers.integrations")
        names |= {str(n) for n in hub.get_available_reporting_integrations()}
    return names & {"mlflow", "wandb", "tensorboard"}


def _find_trainer() -> Optional[Trainer]:
    """The Trainer whose hook is running: a `self` a few frames up the call stack."""
    frame = inspect.currentframe()
    try:
        for _ in range(16):
            if frame is None:
                return None
            obj = frame.f_locals.get("self")
            if isinstance(obj, Trainer):
                return obj
            frame = frame.f_back
        return None
    finally:
        del frame


def _run_after_flow_callback(trainer: Trainer, callback: TrainerCallback) -> None:
    """Place `callback` right after DefaultFlowCallback: it must see the control flags that
    callback sets, and must add its metrics to log rows before report_to callbacks send them.
    (Moving it earlier while the handler iterates the list neither skips nor repeats a call.)"""
    callbacks = trainer.callback_handler.callbacks
    if callback not in callbacks:
        return
    callbacks.remove(callback)
    pos = next((i + 1 for i, c in enumerate(callbacks) if isinstance(c, DefaultFlowCallback)), 0)
    callbacks.insert(pos, callback)


def _guard(trainer: Trainer, method: str, on_exception: Callable[[BaseException], None]) -> None:
    original = getattr(type(trainer), method, None)
    if original is None or getattr(trainer.__dict__.get(method), "__energy_guard__", False):
        return
    bound = getattr(trainer, method)

    @functools.wraps(bound)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        try:
            return bound(*args, **kwargs)
        except BaseException as e:
            on_exception(e)
            raise

    guarded.__energy_guard__ = True  # type: ignore[attr-defined]
    setattr(trainer, method, guarded)


def _unguard(trainer: Trainer, method: str) -> None:
    if getattr(trainer.__dict__.get(method), "__energy_guard__", False):
        del trainer.__dict__[method]


def _is_oom(error: BaseException) -> bool:
    try:
        from accelerate.utils.memory import should_reduce_batch_size
    except ImportError:
        return False
    return bool(isinstance(error, Exception) and should_reduce_batch_size(error))


def _count_forward_inputs(model: Any, session: TrainingSession) -> Any:
    """A forward pre-hook counting samples and tokens of training forwards (shapes only)."""
    def hook(module: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        if module.training and session.is_open("step"):
            batch = kwargs if kwargs else args
            session.count(count_samples(batch), count_tokens(kwargs))

    try:
        return model.register_forward_pre_hook(hook, with_kwargs=True)
    except (AttributeError, TypeError):
        return None


# The tracker's options as typed keyword parameters (declared once, in tracker.config), for
# inspect, IDEs and jsonargparse / YAML configs.
_init: Any = EnergyCallback.__init__
_init.__signature__ = signature_with_options(EnergyCallback.__init__)

__all__ = ["EnergyCallback"]
