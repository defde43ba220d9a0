"""log_to="auto": log to the MLflow run and/or the W&B run the program already has open, and
to nothing else. Looked for when the exporter first logs (a framework logger may open its run
after the tracker starts), only among libraries the program itself imported: "auto" never
imports MLflow or W&B, and never starts a run."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any, Optional

from .base import BaseExporter

log = logging.getLogger("tracker")


class AutoExporter(BaseExporter):
    name = "auto"

    def __init__(self) -> None:
        super().__init__()
        self.children: Optional[list[Any]] = None
        self._handled: set[str] = set()
        self._bound: dict[str, dict[str, Any]] = {}
        self._said = False

    def handled(self, tools: set[str]) -> None:
        """Tools the framework already sends progress rows to (summary only there)."""
        self._handled |= set(tools)
        for c in self.children or ():
            if c.name in self._handled:
                c.progress = False

    def bind(self, **target: Any) -> None:
        tool = target.pop("tool", None)
        if tool:
            self._bound[tool] = target

    def _found(self) -> list[Any]:
        if self.children is not None:
            return self.children
        found: list[Any] = []
        mlflow = sys.modules.get("mlflow")
        if "mlflow" in self._bound or (mlflow is not None and mlflow.active_run() is not None):
            from .mlflow import MlflowExporter
            e: Any = MlflowExporter(only_active=True, **self._bound.get("mlflow", {}))
            found.append(e)
        wandb = sys.modules.get("wandb")
        if wandb is not None and getattr(wandb, "run", None) is not None:
            from .wandb import WandbExporter
            found.append(WandbExporter(only_active=True))
        for c in found:
            c.run_name, c.run_dir = self.run_name, self.run_dir
            c.progress = c.name not in self._handled
        if found:    # nothing yet: look again next time (a logger may open its run later)
            self.children = found
        elif not self._said:
            self._said = True
            log.info("energy-tracker: log_to='auto' found no active MLflow or W&B run (yet)")
        return found

    def on_progress(self, metrics: dict[str, float], step: int) -> None:
        if not self.progress:
            return
        for c in self._found():
            if c.progress:
                c.on_progress(metrics, step)

    def on_stop(self, summary: Any, files: list[Path]) -> None:
        for c in self._found():
            c.scope, c.step = getattr(self, "scope", "run"), getattr(self, "step", 0)
            c.on_stop(summary, files)
