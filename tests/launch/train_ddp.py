"""A small data-parallel training script as a user writes it: gloo DDP on the CPU, an MLP,
`with track(...)` around the loop. Run by the distributed tests under real `torchrun`.

Options (environment): TRAIN_STEPS (per epoch), TRAIN_EPOCHS, TRAIN_STEP_S (sleep per step,
so runs last long enough to measure), TRAIN_DIE_RANK / TRAIN_DIE_AT_STEP (that rank SIGKILLs
itself there), TRAIN_FAIL_RANK (that rank raises in attempt 0, for elastic restarts),
TRAIN_REGION, TRAIN_TRACK_RANKS ("0": only rank 0 calls track()), TRAIN_NO_TRACK (no track():
for `energy-tracker run` zero-code runs), TRAIN_OUT (output_dir), TRAIN_STOP_OUT (a folder for
each rank's stop() summary).
"""

from __future__ import annotations

import json
import os
import signal
import time

import torch
import torch.distributed as dist
from torch import nn


def main() -> None:
    if os.environ.get("TRAIN_LOG"):
        import logging
        logging.basicConfig(level=logging.DEBUG, format="%(process)d %(threadName)s %(message)s")
    restart = int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0"))
    if os.environ.get("TRAIN_PREFIX_STORE"):
        # torch 2.13's env:// init on a torchrun restart reads the previous attempt's gloo
        # addresses from the agent store (connection refused); a per-attempt prefix avoids it.
        from datetime import timedelta
        store = dist.TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]),
                              is_master=False, timeout=timedelta(seconds=60))
        dist.init_process_group("gloo", store=dist.PrefixStore(f"train/attempt{restart}", store),
                                rank=int(os.environ["RANK"]),
                                world_size=int(os.environ["WORLD_SIZE"]))
    else:
        dist.init_process_group("gloo")
    rank = dist.get_rank()
    torch.manual_seed(0)
    model = nn.parallel.DistributedDataParallel(nn.Sequential(nn.Linear(32, 64), nn.ReLU(),
                                                              nn.Linear(64, 1)))
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    steps = int(os.environ.get("TRAIN_STEPS", "20"))
    epochs = int(os.environ.get("TRAIN_EPOCHS", "2"))
    step_s = float(os.environ.get("TRAIN_STEP_S", "0.02"))
    die_rank = int(os.environ.get("TRAIN_DIE_RANK", "-1"))
    die_at = int(os.environ.get("TRAIN_DIE_AT_STEP", "-1"))
    fail_rank = int(os.environ.get("TRAIN_FAIL_RANK", "-1"))

    def train(run) -> None:
        n = 0
        for _epoch in (run.epochs(range(epochs)) if run else range(epochs)):
            batches = [torch.randn(8, 32) for _ in range(steps)]
            for x in (run.steps(batches, samples=len) if run else batches):
                loss = model(x).pow(2).mean()
                opt.zero_grad()
                loss.backward()
                opt.step()
                time.sleep(step_s)
                n += 1
                if rank == die_rank and n == die_at:
                    os.kill(os.getpid(), signal.SIGKILL)
                if rank == fail_rank and restart == 0 and n == die_at:
                    raise RuntimeError("injected failure")
            if run is not None and rank == 0:
                with run.window("eval", kind="eval"):
                    time.sleep(step_s * 2)

    track_ranks = os.environ.get("TRAIN_TRACK_RANKS")
    tracked = not os.environ.get("TRAIN_NO_TRACK") and (
        track_ranks is None or str(rank) in track_ranks.split(","))
    if tracked:
        from tracker import track
        with track("ddp-mlp", region=os.environ.get("TRAIN_REGION") or None,
                   output_dir=os.environ.get("TRAIN_OUT") or None) as run:
            train(run)
            if track_ranks is None:   # every rank tracks: the collective is safe
                totals = run.job_totals()
                if rank == 0 and os.environ.get("TRAIN_OUT"):
                    with open(os.path.join(os.environ["TRAIN_OUT"], "totals.json"), "w") as f:
                        json.dump({"energy_j": totals.energy_j, "processes": totals.processes,
                                   "t": run.measured_until()}, f)
        if os.environ.get("TRAIN_STOP_OUT"):   # what this rank's stop() returned
            s = run.summary
            with open(os.path.join(os.environ["TRAIN_STOP_OUT"], f"stop-rank{rank}.json"),
                      "w") as f:
                json.dump({"energy_j": s.energy_j, "status": s.status, "text": s.format(),
                           "job": s.job, "own_energy_j": run.own_summary.energy_j
                           if run.own_summary is not None else None}, f, default=str)
    else:
        train(None)
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
