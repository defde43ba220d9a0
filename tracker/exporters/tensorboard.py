"""TensorBoard: event files with `energy/...` scalars (progress at their steps, the summary at
the last step), the summary as text (`energy/summary`), and copies of summary.json and
report.html in `<logdir>/energy-tracker/` (TensorBoard has no artifacts).

Written with TensorBoard's own event-file writer (the one torch's SummaryWriter wraps), so
neither torch nor TensorFlow is needed. Log directory: `TensorBoardExporter(logdir=...)`, the
framework logger's when bound (HF `logging_dir`, Lightning's `TensorBoardLogger.log_dir`: a
second event file in one directory is merged by TensorBoard), else `<run dir>/tensorboard`, so
`tensorboard --logdir energy-runs` shows every run.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any, Optional, Union

from .base import BaseExporter, summary_metrics, summary_params


class TensorBoardExporter(BaseExporter):
    name = "tensorboard"
    module = "tensorboard"
    extra = "tensorboard"

    def __init__(self, logdir: Union[str, Path, None] = None):
        super().__init__()
        self.logdir: Optional[Path] = Path(logdir).absolute() if logdir is not None else None
        self._writer: Any = None
        self._logdir_fn: Any = None

    def bind(self, **target: Any) -> None:
        """`logdir`: a directory, or a callable giving it at first use (a framework logger
        that picks its directory after the tracker started)."""
        if target.get("logdir") and self._writer is None:
            self._logdir_fn = target["logdir"] if callable(target["logdir"]) else None
            if self._logdir_fn is None:
                self.logdir = Path(target["logdir"]).absolute()

    def _ensure(self) -> Any:
        if self._writer is None:
            from tensorboard.summary.writer.event_file_writer import EventFileWriter

            found = self._logdir_fn() if self._logdir_fn is not None else None
            if found:
                self.logdir = Path(found).absolute()
            if self.logdir is None:
                base = self.run_dir if self.run_dir is not None else Path("runs")
                self.logdir = base / "tensorboard"
            self.logdir.mkdir(parents=True, exist_ok=True)
            self._writer = EventFileWriter(str(self.logdir), filename_suffix=".energy")
        return self._writer

    def _scalars(self, metrics: dict[str, float], step: int) -> None:
        from tensorboard.compat.proto.event_pb2 import Event
        from tensorboard.compat.proto.summary_pb2 import Summary

        values = [Summary.Value(tag=k, simple_value=v) for k, v in metrics.items()]
        self._ensure().add_event(Event(wall_time=time.time(), step=step,
                                       summary=Summary(value=values)))

    def on_progress(self, metrics: dict[str, float], step: int) -> None:
        self._scalars(metrics, step)
        self._writer.flush()

    def on_stop(self, summary: Any, files: list[Path]) -> None:
        step = int(getattr(self, "step", 0))
        self._scalars(summary_metrics(summary), step)
        params = summary_params(summary, getattr(self, "scope", "run"))
        text = summary.format() + "\n\n" + "\n".join(f"{k}: {v}" for k, v in params.items())
        self._text("energy/summary", text, step)
        assert self.logdir is not None
        if files:
            target = self.logdir / "energy-tracker"
            target.mkdir(exist_ok=True)
            for path in files:
                shutil.copyfile(path, target / path.name)
        self._writer.close()

    def _text(self, tag: str, text: str, step: int) -> None:
        """A text summary as TensorBoard's text plugin reads it (a string tensor)."""
        from tensorboard.compat.proto.event_pb2 import Event
        from tensorboard.compat.proto.summary_pb2 import Summary, SummaryMetadata
        from tensorboard.compat.proto.tensor_pb2 import TensorProto
        from tensorboard.compat.proto.tensor_shape_pb2 import TensorShapeProto

        # Markdown: indent the plain-text summary so it shows as a code block
        body = "\n".join("    " + line for line in text.splitlines()).encode("utf-8")
        tensor = TensorProto(dtype=7, string_val=[body],   # 7: DT_STRING
                             tensor_shape=TensorShapeProto(dim=[TensorShapeProto.Dim(size=1)]))
        meta = SummaryMetadata(plugin_data=SummaryMetadata.PluginData(plugin_name="text"))
        value = Summary.Value(tag=tag, metadata=meta, tensor=tensor)
        self._ensure().add_event(Event(wall_time=time.time(), step=step,
                                       summary=Summary(value=[value])))
