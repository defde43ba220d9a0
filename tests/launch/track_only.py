"""A tracked loop with no framework and no process group: what a user runs under `srun` or
`mpirun` when each task only needs its own energy counted once in the job."""

from __future__ import annotations

import os
import time

from tracker import track

with track("plain-loop", output_dir=os.environ["TRAIN_OUT"]) as run:
    for _ in run.epochs(range(2)):
        for _ in run.steps(range(10), samples=lambda _: 4):
            time.sleep(0.03)
