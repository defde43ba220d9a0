"""MLflow: progress as metrics with steps, the summary as metrics and params, summary.json and
report.html as artifacts under `energy-tracker/`.

Which run: the one bound by a framework logger (Lightning's MLFlowLogger), else the run active
in this process when the exporter first logs (`mlflow.active_run()`: yours, or the Hugging Face
MLflowCallback's), else a new run named after the tracker at MLFLOW_TRACKING_URI (MLflow's own
default when unset), which the exporter ends when the tracker stops. Everything is written with
an `MlflowClient` and the run id, so a stop on another thread (SIGTERM) still reaches the run.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, Optional

from .base import BaseExporter, summary_metrics, summary_params

log = logging.getLogger("tracker")

# summary status -> MLflow run status, for a run this exporter started
_STATUS = {"finished": "FINISHED", "failed": "FAILED", "interrupted": "KILLED",
           "terminated": "KILLED", "killed": "KILLED"}


class MlflowExporter(BaseExporter):
    name = "mlflow"
    module = "mlflow"
    extra = "mlflow"

    def __init__(self, *, run_id: Optional[str] = None, tracking_uri: Optional[str] = None,
                 only_active: bool = False):
        """`run_id`/`tracking_uri`: log to this run; `only_active`: never start a run (the
        "auto" mode: log only to a run the program already has)."""
        super().__init__()
        self.run_id = run_id
        self.tracking_uri = tracking_uri
        self.only_active = only_active
        self.started_run = False
        self._client: Any = None

    def bind(self, **target: Any) -> None:
        self.run_id = target.get("run_id") or self.run_id
        self.tracking_uri = target.get("tracking_uri") or self.tracking_uri
        self._client = None

    def _ensure(self) -> bool:
        """Find or start the run (first use). False: no run to log to (auto mode)."""
        if self._client is not None:
            return True
        import mlflow
        from mlflow.tracking import MlflowClient

        if self.run_id is None:
            active = mlflow.active_run()
            if active is not None:
                self.run_id = active.info.run_id
            elif self.only_active:
                return False
            else:
                run = mlflow.start_run(run_name=self.run_name)
                self.run_id, self.started_run = run.info.run_id, True
                log.info("energy-tracker: started MLflow run %s (%s) at %s", self.run_name,
                         self.run_id, mlflow.get_tracking_uri())
            self.tracking_uri = self.tracking_uri or mlflow.get_tracking_uri()
        self._client = MlflowClient(tracking_uri=self.tracking_uri)
        return True

    def on_progress(self, metrics: dict[str, float], step: int) -> None:
        if not self._ensure():
            return
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self._client.log_batch(self.run_id, metrics=[Metric(k, v, now, step)
                                                     for k, v in metrics.items()])

    def on_stop(self, summary: Any, files: list[Path]) -> None:
        if not self._ensure():
            log.info("energy-tracker: log_to auto: no active MLflow run; nothing logged there")
            return
        from mlflow.entities import Metric, Param
        from mlflow.exceptions import MlflowException

        now = int(time.time() * 1000)
        step = int(getattr(self, "step", 0))
        self._client.log_batch(self.run_id, metrics=[
            Metric(k, v, now, step) for k, v in summary_metrics(summary).items()])
        params = summary_params(summary, getattr(self, "scope", "run"))
        try:
            self._client.log_batch(self.run_id, params=[Param(k, v) for k, v in params.items()])
        except MlflowException:
            # A run that already holds these params with other values (a second tracked run
            # into one MLflow run): params cannot change, tags can.
            for k, v in params.items():
                self._client.set_tag(self.run_id, k, v)
        for path in files:
            self._client.log_artifact(self.run_id, str(path), artifact_path="energy-tracker")
        if self.started_run:
            import mlflow

            active = mlflow.active_run()
            if active is not None and active.info.run_id == self.run_id:
                mlflow.end_run(_STATUS.get(summary.status, "FINISHED"))
            else:   # stopped on another thread: the fluent stack is not ours to pop
                self._client.set_terminated(self.run_id, _STATUS.get(summary.status,
                                                                     "FINISHED"))
