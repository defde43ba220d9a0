"""A small regressor trained with Lightning, strategy="ddp" (gloo, CPU), 2 processes spawned by
Lightning itself, with the EnergyCallback as a user attaches it. Rank 0 writes the metrics it
logged to $TRAIN_OUT/logged.json."""

from __future__ import annotations

import json
import os
import time

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader, TensorDataset

from tracker.integrations.lightning import EnergyCallback


class Regressor(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(32, 64), torch.nn.ReLU(),
                                       torch.nn.Linear(64, 1))

    def training_step(self, batch, batch_idx):
        x, y = batch
        time.sleep(0.01)
        return torch.nn.functional.mse_loss(self.net(x), y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


class Keep(pl.loggers.Logger):
    """A logger that records what the energy callback logged (rank 0): the callback writes to
    the Trainer's loggers, to compare with the job's files."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[dict[str, float]] = []

    @property
    def name(self) -> str:
        return "keep"

    @property
    def version(self) -> str:
        return "0"

    def log_hyperparams(self, params, *args, **kwargs) -> None:
        pass

    def log_metrics(self, metrics, step=None) -> None:
        row = {k: float(v) for k, v in metrics.items() if k in ("energy_kwh", "power_w")}
        if row:
            self.rows.append(row)


def main() -> None:
    out = os.environ["TRAIN_OUT"]
    g = torch.Generator().manual_seed(0)
    x = torch.randn(256, 32, generator=g)
    data = DataLoader(TensorDataset(x, x.sum(dim=1, keepdim=True)), batch_size=16)
    keep = Keep()
    trainer = pl.Trainer(max_epochs=2, accelerator="cpu", devices=2, strategy="ddp",
                         callbacks=[EnergyCallback("lightning-ddp", output_dir=out)],
                         logger=keep, log_every_n_steps=2, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(Regressor(), data)
    if trainer.global_rank == 0:
        with open(os.path.join(out, "logged.json"), "w") as f:
            json.dump(keep.rows, f)


if __name__ == "__main__":
    main()
