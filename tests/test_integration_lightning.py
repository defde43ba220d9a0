"""EnergyCallback on a real Lightning Trainer (CPU) against a fake GPU drawing a constant 200 W,
so every window's energy is 200 W x its duration."""

from __future__ import annotations

import csv
import json

import pytest

torch = pytest.importorskip("torch")
pl = pytest.importorskip("lightning.pytorch")

from conftest import step_windows  # noqa: E402
from lightning.pytorch.loggers import CSVLogger  # noqa: E402
from torch.utils.data import DataLoader, TensorDataset  # noqa: E402

from tracker.integrations.lightning import EnergyCallback, callback_class  # noqa: E402

pytestmark = pytest.mark.slow
WATTS = 200.0


class Regressor(pl.LightningModule):
    def __init__(self, fail_at_step: int = -1):
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(32, 256), torch.nn.ReLU(),
                                       torch.nn.Linear(256, 1))
        self.fail_at_step = fail_at_step

    def training_step(self, batch, batch_idx):
        if self.global_step == self.fail_at_step:
            raise RuntimeError("loss exploded")
        x, y = batch
        loss = torch.nn.functional.mse_loss(self.net(x), y)
        self.log("loss", loss)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val_loss", torch.nn.functional.mse_loss(self.net(x), y))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


def loader(n: int = 256, batch: int = 16) -> DataLoader:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 32, generator=g)
    return DataLoader(TensorDataset(x, x.sum(dim=1, keepdim=True)), batch_size=batch)


def trainer_for(tmp_path, cb, **kw) -> pl.Trainer:
    return pl.Trainer(max_epochs=2, accelerator="cpu", devices=1, callbacks=[cb],
                      logger=CSVLogger(tmp_path / "logs", name="tiny"), log_every_n_steps=4,
                      enable_checkpointing=False, enable_progress_bar=False,
                      enable_model_summary=False, **kw)


def test_fit_logs_energy_and_windows(tmp_path, fake_gpu):
    torch.manual_seed(0)
    cb = EnergyCallback("regressor", sensors=fake_gpu, cpu=False, ram=False, rate_hz=100,
                        output_dir=tmp_path / "runs", region="FR")
    trainer = trainer_for(tmp_path, cb)
    trainer.fit(Regressor(), loader(), loader(64))

    summary = cb.summary
    assert summary is not None and summary.status == "finished"
    run_dir = cb.run.run_dir
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "finished"

    # metrics reached the CSV logger: step rows every 4 batches, epoch rows with projections
    with open(trainer.logger.log_dir + "/metrics.csv") as f:
        rows = list(csv.DictReader(f))
    step_rows = [r for r in rows if r.get("energy_kwh")]
    assert len(step_rows) == 8                       # 2 x 16 batches / 4
    kwh = [float(r["energy_kwh"]) for r in step_rows]
    assert kwh == sorted(kwh) and kwh[-1] > 0
    powered = [float(r["power_w"]) for r in step_rows if r.get("power_w")]
    assert powered and all(p == pytest.approx(WATTS, rel=1e-6) for p in powered)
    assert all(float(r["energy_j_per_sample"]) > 0 for r in step_rows if r.get("power_w"))
    epoch_rows = [r for r in rows if r.get("energy_kwh_epoch")]
    assert len(epoch_rows) == 2
    projected = [r for r in rows if r.get("projected_energy_kwh_epoch")]
    assert projected, "a projection is logged once the first epoch is done"

    # windows: sanity check + 2 validations, 2 epochs, 32 batches; all 200 W x duration
    wins = json.loads((run_dir / "windows.json").read_text())["windows"] + step_windows(run_dir)
    kinds = [w["kind"] for w in wins]
    assert kinds.count("epoch") == 2 and kinds.count("step") == 32 and kinds.count("eval") == 3
    assert wins[0]["attrs"] == {"sanity": True}
    for w in wins:
        assert w["energy_j"] == pytest.approx(WATTS * w["duration_s"], rel=1e-9)
    steps = [w for w in wins if w["kind"] == "step"]
    assert all(w["attrs"]["samples"] == 16 for w in steps)
    epoch_ids = {w["id"] for w in wins if w["kind"] == "epoch"}
    assert all(w["parent"] in epoch_ids for w in steps)

    # steps + the gaps between them add up to the run's total
    step_j = sum(w["energy_j"] for w in steps)
    edges = [0.0] + [x for w in steps for x in (w["start_s"], w["end_s"])] + [summary.duration_s]
    gap_j = sum(cb.run.energy_j(a, b) for a, b in zip(edges[::2], edges[1::2]))
    assert step_j + gap_j == pytest.approx(summary.energy_j, rel=1e-12, abs=1e-9)
    assert any(n.startswith("projection at 50%") for n in summary.notes)


def test_exception_ends_run_as_failed(tmp_path, fake_gpu):
    cb = EnergyCallback("regressor-fails", sensors=fake_gpu, cpu=False, ram=False,
                        output_dir=tmp_path / "runs")
    with pytest.raises(RuntimeError, match="loss exploded"):
        trainer_for(tmp_path, cb).fit(Regressor(fail_at_step=5), loader())
    on_disk = json.loads((cb.run.run_dir / "summary.json").read_text())
    assert on_disk["status"] == "failed"
    assert any("RuntimeError: loss exploded" in n for n in on_disk["notes"])


def test_pytorch_lightning_package(tmp_path, fake_gpu):
    ptl = pytest.importorskip("pytorch_lightning")
    cls = callback_class("pytorch_lightning")
    assert issubclass(cls, ptl.Callback) and cls.__name__ == "EnergyCallback"
    cb = cls("ptl", sensors=fake_gpu, cpu=False, ram=False, output_dir=tmp_path / "runs")

    class Module(ptl.LightningModule):
        training_step = Regressor.training_step
        configure_optimizers = Regressor.configure_optimizers

        def __init__(self):
            super().__init__()
            self.net = torch.nn.Linear(32, 1)
            self.fail_at_step = -1

    trainer = ptl.Trainer(max_epochs=1, accelerator="cpu", callbacks=[cb], logger=False,
                          enable_checkpointing=False, enable_progress_bar=False,
                          enable_model_summary=False)
    trainer.fit(Module(), loader())
    assert cb.summary.status == "finished" and cb.summary.steps["count"] == 16
