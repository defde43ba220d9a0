"""Weights & Biases: progress with `wandb.log` against its own x-axis `energy/step` (so it never
fights the step counter of another logger in the same run), the summary in the run's summary
and config, summary.json and report.html saved into the run's files (also offline:
WANDB_MODE=offline writes them under ./wandb/offline-run-*/files/).

Which run: `wandb.run` when the program (or a framework's logger) already started one, else a
new run named after the tracker (project WANDB_PROJECT, default "energy-tracker"), finished
when the tracker stops.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .base import BaseExporter, summary_metrics, summary_params

STEP_METRIC = "energy/step"


class WandbExporter(BaseExporter):
    name = "wandb"
    module = "wandb"
    extra = "wandb"

    def __init__(self, *, only_active: bool = False):
        """`only_active`: never start a run (the "auto" mode)."""
        super().__init__()
        self.only_active = only_active
        self.started_run = False
        self._run: Any = None

    def _ensure(self) -> bool:
        if self._run is not None:
            return True
        import wandb

        run = wandb.run
        if run is None:
            if self.only_active:
                return False
            run = wandb.init(project=os.environ.get("WANDB_PROJECT", "energy-tracker"),
                             name=self.run_name)
            self.started_run = True
        # energy/* against energy/step: other loggers' steps (HF, Lightning) stay untouched
        run.define_metric(STEP_METRIC)
        run.define_metric("energy/*", step_metric=STEP_METRIC)
        self._run = run
        return True

    def on_progress(self, metrics: dict[str, float], step: int) -> None:
        if self._ensure():
            self._run.log({**metrics, STEP_METRIC: step})

    def on_stop(self, summary: Any, files: list[Path]) -> None:
        if not self._ensure():
            return
        run = self._run
        run.summary.update(summary_metrics(summary))
        run.config.update(summary_params(summary, getattr(self, "scope", "run")),
                          allow_val_change=True)
        if files:
            import shutil

            # copies inside the run's own directory (files/energy-tracker/), uploaded now
            target = Path(run.dir) / "energy-tracker"
            target.mkdir(parents=True, exist_ok=True)
            for path in files:
                dest = target / path.name
                shutil.copyfile(path, dest)
                run.save(str(dest), base_path=run.dir, policy="now")
        if self.started_run:
            run.finish(exit_code=0 if summary.status == "finished" else 1)
