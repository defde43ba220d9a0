"""Job-wide numbers while training: one small all-reduce over the job's own process group.

Each process measures only the devices it claimed, so the job's energy is the sum over
processes. At a framework's logging point (every rank calls it, in the same order: the
Hugging Face Trainer gathers the loss there, Lightning decides logging from the global step)
each rank contributes a few floats and one SUM all-reduce gives the job's figures, as
Megatron-Core's energy monitor does. No collective happens anywhere else, and none when the
process group is not initialised. A reduction that fails or outlasts its timeout is not tried
again: the numbers fall back to this process's own, and the run's notes say so.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any, Optional

log = logging.getLogger("tracker")

DEFAULT_TIMEOUT_S = 60.0


def process_group() -> Any:
    """torch.distributed when the program initialised a group of more than one process."""
    from .identity import _initialised_dist

    dist = _initialised_dist()
    try:
        return dist if dist is not None and dist.get_world_size() > 1 else None
    except Exception:
        return None


def all_reduce_sum(values: list[float], *, timeout_s: float = DEFAULT_TIMEOUT_S
                   ) -> Optional[list[float]]:
    """Element-wise sum of `values` over every process of the group, or None without one.
    Must be called by every process of the group at the same point. Raises on failure."""
    dist = process_group()
    if dist is None:
        return None
    from datetime import timedelta

    import torch

    device = "cpu"
    if str(dist.get_backend()).lower() == "nccl" and torch.cuda.is_available():
        device = f"cuda:{torch.cuda.current_device()}"
    t = torch.tensor(values, dtype=torch.float64, device=device)
    work = dist.all_reduce(t, op=dist.ReduceOp.SUM, async_op=True)
    if work.wait(timeout=timedelta(seconds=timeout_s)) is False:
        raise TimeoutError(f"the all-reduce did not finish in {timeout_s:g} s")
    return [float(x) for x in t.cpu().tolist()]


@dataclass(frozen=True)
class JobTotals:
    """Energy and emissions of the whole job so far (every process's measured devices)."""

    energy_j: float
    emissions_kg: float
    processes: int
    method: str = "sum over the job's processes (process-group all-reduce)"


class JobReducer:
    """The collective behind job-wide log rows, switched off for good after one failure."""

    def __init__(self, timeout_s: float = DEFAULT_TIMEOUT_S):
        self.timeout_s = timeout_s
        self.failed: Optional[str] = None

    def __call__(self, values: list[float]) -> Optional[list[float]]:
        if self.failed is not None:
            return None
        try:
            return all_reduce_sum(values, timeout_s=self.timeout_s)
        except Exception as e:  # a dead peer or a broken group: fall back to local numbers
            self.failed = f"{type(e).__name__}: {e}"
            log.warning("energy-tracker: job-wide totals off (%s); logging this process's "
                        "own numbers from now on", self.failed)
            return None


def job_totals(run: Any, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> JobTotals:
    """The job's energy and emissions so far, from a running tracker on every process.

    A collective: call it on every process of the job at the same point. Without a process
    group it is this process's own figures (processes=1).
    """
    t = run.measured_until()
    mine = [run.energy_j(0.0, t), run.emissions_kg(0.0, t), 1.0]
    if getattr(run, "joined", False) and not contributes(run):
        mine[:2] = [0.0, 0.0]
    got = all_reduce_sum(mine, timeout_s=timeout_s)
    if got is None:
        return JobTotals(mine[0], mine[1], 1, "this process only (no process group)")
    return JobTotals(got[0], got[1], round(got[2]))


def contributes(run: Any) -> bool:
    """Does this process's energy count in a job-wide sum? Processes joined to one
    `energy-tracker run` all read the same node-wide curves: only local rank 0 adds them."""
    if not getattr(run, "joined", False):
        return True
    from .identity import _int
    local = _int(os.environ, "LOCAL_RANK", "SLURM_LOCALID", "OMPI_COMM_WORLD_LOCAL_RANK")
    return (local or 0) == 0


__all__ = ["DEFAULT_TIMEOUT_S", "JobReducer", "JobTotals", "all_reduce_sum", "contributes",
           "job_totals", "process_group"]
