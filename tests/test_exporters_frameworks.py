"""log_to= through the Hugging Face and Lightning callbacks, against the real MLflow (SQLite),
W&B (offline) and TensorBoard: when the framework already sends the callback's rows to the tool
(report_to, a Lightning logger) the exporter adds only the summary and summary.json, never the
same progress numbers again; without one it logs the progress rows itself."""

from __future__ import annotations

import json
import os

import pytest
from test_exporters import mlflow_runs, offline_run, read_events

os.environ.setdefault("HF_HUB_OFFLINE", "1")
torch = pytest.importorskip("torch")
pytestmark = pytest.mark.slow

WATTS = 200.0
TRACK = dict(cpu=False, ram=False, rate_hz=100, emissions_csv=False)


@pytest.fixture
def mlflow_store(tmp_path, monkeypatch):
    mlflow = pytest.importorskip("mlflow")
    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    mlflow.set_tracking_uri(uri)
    yield uri
    while mlflow.active_run() is not None:
        mlflow.end_run()


@pytest.fixture
def wandb_offline(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    for k, v in {"WANDB_MODE": "offline", "WANDB_DIR": str(tmp_path), "WANDB_SILENT": "true",
                 "WANDB_PROJECT": "energy-tests", "WANDB_DISABLE_GIT": "true",
                 "WANDB_LOG_MODEL": "false", "WANDB_WATCH": "false"}.items():
        monkeypatch.setenv(k, v)
    yield tmp_path / "wandb"
    import wandb
    wandb.finish()   # a framework's run left open must not leak into the next test
    wandb.teardown()   # and wandb caches WANDB_DIR from its first run in the process


# -- Hugging Face --------------------------------------------------------------------------------
def hf_train(tmp_path, fake_gpu, log_to, report_to):
    transformers = pytest.importorskip("transformers")
    from tracker.integrations.huggingface import EnergyCallback

    torch.manual_seed(0)
    model = transformers.GPT2LMHeadModel(transformers.GPT2Config(
        n_layer=1, n_embd=32, n_head=2, vocab_size=100, n_positions=32))
    g = torch.Generator().manual_seed(1)
    rows = [{"input_ids": r, "labels": r}
            for r in torch.randint(0, 100, (32, 16), generator=g).tolist()]
    cb = EnergyCallback("hf", sensors=fake_gpu, output_dir=tmp_path / "runs", log_to=log_to,
                        **TRACK)
    args = transformers.TrainingArguments(
        output_dir=str(tmp_path / "hf"), num_train_epochs=2, per_device_train_batch_size=4,
        logging_steps=4, report_to=report_to, use_cpu=True, disable_tqdm=True,
        save_strategy="no", dataloader_num_workers=0, seed=0)
    transformers.Trainer(model=model, args=args, train_dataset=rows, callbacks=[cb]).train()
    assert cb.summary is not None and cb.summary.status == "finished"
    return cb


@pytest.mark.parametrize("reported", [True, False], ids=["report_to-mlflow", "no-report_to"])
def test_hf_mlflow(tmp_path, fake_gpu, mlflow_store, reported):
    cb = hf_train(tmp_path, fake_gpu, "mlflow", ["mlflow"] if reported else [])
    client, runs = mlflow_runs(mlflow_store)
    (got,) = runs                                   # one run: the Trainer's, or ours
    rid = got.info.run_id
    ours = client.get_metric_history(rid, "energy/kwh")
    theirs = client.get_metric_history(rid, "energy_kwh")
    # 16 steps, logging_steps=4: 4 rows, and the Trainer's closing row (train_runtime ...)
    if reported:   # the Trainer sent the rows (energy_kwh ...): we add only the summary
        assert len(theirs) == 5 and len(ours) == 1
    else:          # we log each row the Trainer's on_log produced, then the summary
        assert theirs == [] and len(ours) == 5 + 1
        assert got.info.run_name == "hf" and got.info.status == "FINISHED"
    assert ours[-1].value == pytest.approx(cb.summary.energy_kwh)
    assert got.data.params["energy/run_id"] == cb.summary.run_id
    assert [f.path for f in client.list_artifacts(rid, "energy-tracker")] == \
        ["energy-tracker/summary.json"]


def test_hf_wandb_report_to(tmp_path, fake_gpu, wandb_offline):
    import wandb

    cb = hf_train(tmp_path, fake_gpu, "wandb", ["wandb"])
    wandb.finish()   # the Trainer leaves its run open; an offline run is written at finish
    _, got = offline_run(wandb_offline)             # one run: the Trainer's
    assert [r for r in got["history"] if "energy/kwh" in r] == []   # no second copy
    assert len([r for r in got["history"] if "train/energy_kwh" in r]) == 5, got["history"][:3]
    assert got["summary"]["energy/kwh"] == pytest.approx(cb.summary.energy_kwh)
    assert "energy-tracker/summary.json" in got["files"]


def test_hf_tensorboard_report_to(tmp_path, fake_gpu):
    pytest.importorskip("tensorboard")
    cb = hf_train(tmp_path, fake_gpu, "tensorboard", ["tensorboard"])
    (logdir,) = {p.parent for p in (tmp_path / "hf").rglob("events.out.tfevents.*")}
    acc = read_events(logdir)                        # the Trainer's events and ours, merged
    assert len(acc.Scalars("train/energy_kwh")) == 5
    assert [e.value for e in acc.Scalars("energy/kwh")] == \
        [pytest.approx(cb.summary.energy_kwh, rel=1e-6)]   # the summary only
    assert (logdir / "energy-tracker" / "summary.json").is_file()


# -- Lightning -----------------------------------------------------------------------------------
def lightning_fit(tmp_path, fake_gpu, log_to, logger):
    pl = pytest.importorskip("lightning.pytorch")
    from torch.utils.data import DataLoader, TensorDataset

    from tracker.integrations.lightning import EnergyCallback

    class Regressor(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = torch.nn.Linear(32, 1)

        def training_step(self, batch, batch_idx):
            x, y = batch
            loss = torch.nn.functional.mse_loss(self.net(x), y)
            self.log("loss", loss)
            return loss

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.01)

    torch.manual_seed(0)
    x = torch.randn(128, 32)
    data = DataLoader(TensorDataset(x, x.sum(dim=1, keepdim=True)), batch_size=16)
    cb = EnergyCallback("lit", sensors=fake_gpu, output_dir=tmp_path / "runs", log_to=log_to,
                        **TRACK)
    trainer = pl.Trainer(max_epochs=2, accelerator="cpu", devices=1, callbacks=[cb],
                         logger=logger, log_every_n_steps=4, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(Regressor(), data)
    assert cb.summary is not None and cb.summary.status == "finished"
    return cb, trainer


def test_lightning_mlflow_logger(tmp_path, fake_gpu, mlflow_store):
    from lightning.pytorch.loggers import MLFlowLogger

    logger = MLFlowLogger(experiment_name="lit", tracking_uri=mlflow_store,
                          save_dir=str(tmp_path / "mlruns"))
    cb, _ = lightning_fit(tmp_path, fake_gpu, "mlflow", logger)
    client, runs = mlflow_runs(mlflow_store)
    (got,) = runs                                   # the logger's run, not a second one
    assert got.info.run_id == logger.run_id
    assert len(client.get_metric_history(got.info.run_id, "energy_kwh")) == 4   # 2 x 8 / 4
    ours = client.get_metric_history(got.info.run_id, "energy/kwh")
    assert [m.value for m in ours] == [pytest.approx(cb.summary.energy_kwh)]
    assert client.list_artifacts(got.info.run_id, "energy-tracker")


def test_lightning_without_logger_logs_its_rows(tmp_path, fake_gpu, mlflow_store):
    cb, _ = lightning_fit(tmp_path, fake_gpu, "mlflow", False)
    client, runs = mlflow_runs(mlflow_store)
    (got,) = runs
    assert got.info.run_name == "lit"
    ours = client.get_metric_history(got.info.run_id, "energy/kwh")
    # 4 step rows + 2 epoch-end rows from the callback, then the summary
    assert len(ours) == 4 + 2 + 1 and ours[-1].value == pytest.approx(cb.summary.energy_kwh)
    powers = client.get_metric_history(got.info.run_id, "energy/power_w")
    assert powers and all(p.value == pytest.approx(WATTS, rel=0.02) for p in powers)


def test_lightning_wandb_logger(tmp_path, fake_gpu, wandb_offline):
    import wandb
    from lightning.pytorch.loggers import WandbLogger

    cb, _ = lightning_fit(tmp_path, fake_gpu, "wandb",
                          WandbLogger(name="lit", offline=True, save_dir=str(tmp_path)))
    wandb.finish()   # the logger's run, written at finish
    _, got = offline_run(wandb_offline)
    assert [r for r in got["history"] if "energy/kwh" in r] == []
    assert [r for r in got["history"] if "energy_kwh" in r]
    assert got["summary"]["energy/kwh"] == pytest.approx(cb.summary.energy_kwh)


def test_lightning_tensorboard_logger(tmp_path, fake_gpu):
    pytest.importorskip("tensorboard")
    from lightning.pytorch.loggers import TensorBoardLogger

    logger = TensorBoardLogger(str(tmp_path / "tb"), name="lit")
    cb, _ = lightning_fit(tmp_path, fake_gpu, "tensorboard", logger)
    acc = read_events(logger.log_dir)
    assert len(acc.Scalars("energy_kwh")) == 4
    assert [e.value for e in acc.Scalars("energy/kwh")] == \
        [pytest.approx(cb.summary.energy_kwh, rel=1e-6)]
    saved = json.loads((cb.run.run_dir / "summary.json").read_text())
    copied = json.loads((tmp_path / "tb" / "lit" / "version_0" / "energy-tracker" /
                         "summary.json").read_text())
    assert copied == saved
