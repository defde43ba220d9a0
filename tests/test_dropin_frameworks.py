"""The callbacks measure what the framework ran: HF evaluate()/predict() and Lightning
validate()/test()/predict() outside training are short runs of their own (`<name>-eval`, ...),
the training run's numbers stay what training cost; and the Lightning callback's logging
causes no framework warning (also under a 2-process ddp fit). Real tiny Trainers, CPU only,
a fake GPU at a constant 200 W."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
torch = pytest.importorskip("torch")

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parent.parent
WATTS = 200.0


def eval_windows(summary) -> list:
    return [w for w in summary.windows if w.kind == "eval"]


# -- Hugging Face ------------------------------------------------------------------------------
def hf_parts(tmp_path):
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    model = transformers.GPT2LMHeadModel(transformers.GPT2Config(
        n_layer=1, n_embd=16, n_head=2, vocab_size=50, n_positions=16))
    g = torch.Generator().manual_seed(1)
    rows = torch.randint(0, 50, (16, 8), generator=g).tolist()
    data = [{"input_ids": r, "labels": r} for r in rows]
    args = transformers.TrainingArguments(
        output_dir=str(tmp_path / "hf"), num_train_epochs=1, per_device_train_batch_size=4,
        per_device_eval_batch_size=4, report_to=[], use_cpu=True, disable_tqdm=True,
        save_strategy="no", eval_strategy="no", logging_steps=2, dataloader_num_workers=0,
        seed=0)
    return transformers, model, args, data


def test_hf_evaluate_and_predict_after_training_are_runs_of_their_own(tmp_path, fake_gpu,
                                                                      capsys):
    transformers, model, args, data = hf_parts(tmp_path)
    from tracker.integrations.huggingface import EnergyCallback

    cb = EnergyCallback("tiny", sensors=fake_gpu, cpu=False, ram=False, rate_hz=100,
                        output_dir=tmp_path / "runs", report_html=False)
    trainer = transformers.Trainer(model=model, args=args, train_dataset=data,
                                   eval_dataset=data[:8], callbacks=[cb])
    trainer.train()
    train_summary = cb.summary
    assert train_summary.status == "finished" and cb.eval_summary is None
    metrics = trainer.evaluate()
    assert "eval_loss" in metrics
    predictions = trainer.predict(data[:4])
    assert predictions.predictions is not None

    assert cb.summary is train_summary               # training's numbers are training's
    assert json.loads((cb.run.run_dir / "summary.json").read_text())["energy_j"] == \
        pytest.approx(train_summary.energy_j)
    ev, pr = cb.eval_summaries
    assert (ev.name, pr.name) == ("tiny-eval", "tiny-predict")
    for s, window in ((ev, "evaluation"), (pr, "prediction")):
        assert s.status == "finished" and s.run_dir != train_summary.run_dir
        (w,) = eval_windows(s)
        assert w.name == window
        assert w.energy_j == pytest.approx(WATTS * w.duration_s, rel=1e-6)
        assert 0 < w.duration_s <= s.duration_s   # the window is the call, inside the run
        assert json.loads((Path(s.run_dir) / "summary.json").read_text())["name"] == s.name
    err = capsys.readouterr().err
    heads = [line for line in err.splitlines() if line.startswith("energy-tracker: run ")]
    assert [h.split("'")[1] for h in heads] == ["tiny", "tiny-eval", "tiny-predict"]


def test_hf_callback_added_later_tracks_an_evaluate_by_its_hooks(tmp_path, fake_gpu):
    transformers, model, args, data = hf_parts(tmp_path)
    from tracker.integrations.huggingface import EnergyCallback

    trainer = transformers.Trainer(model=model, args=args, eval_dataset=data[:8])
    cb = EnergyCallback("later", sensors=fake_gpu, cpu=False, ram=False, rate_hz=100,
                        output_dir=tmp_path / "runs", report_html=False, quiet=True)
    trainer.add_callback(cb)                          # no on_init_end for this one
    trainer.evaluate()
    (ev,) = cb.eval_summaries
    assert ev.name == "later-eval" and ev.status == "finished"
    (w,) = eval_windows(ev)
    assert w.energy_j == pytest.approx(WATTS * w.duration_s, rel=1e-6) and w.energy_j > 0
    assert cb.run is None                            # no training run was made


# -- Lightning ---------------------------------------------------------------------------------
def lightning_parts():
    pl = pytest.importorskip("lightning.pytorch")
    from torch.utils.data import DataLoader, TensorDataset

    class Regressor(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = torch.nn.Linear(8, 1)

        def training_step(self, batch, batch_idx):
            x, y = batch
            loss = torch.nn.functional.mse_loss(self.net(x), y)
            self.log("loss", loss)
            return loss

        def validation_step(self, batch, batch_idx):
            self.log("val_loss", torch.nn.functional.mse_loss(self.net(batch[0]), batch[1]))

        def test_step(self, batch, batch_idx):
            self.log("test_loss", torch.nn.functional.mse_loss(self.net(batch[0]), batch[1]))

        def predict_step(self, batch, batch_idx):
            return self.net(batch[0])

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.01)

    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 8, generator=g)
    loader = DataLoader(TensorDataset(x, x.sum(dim=1, keepdim=True)), batch_size=8)
    return pl, Regressor, loader


def test_lightning_validate_test_predict_are_runs_of_their_own(tmp_path, fake_gpu, capsys):
    pl, Regressor, loader = lightning_parts()
    from lightning.pytorch.loggers import CSVLogger

    from tracker.integrations.lightning import EnergyCallback

    cb = EnergyCallback("reg", sensors=fake_gpu, cpu=False, ram=False, rate_hz=100,
                        output_dir=tmp_path / "runs", report_html=False)
    trainer = pl.Trainer(max_epochs=1, accelerator="cpu", devices=1, callbacks=[cb],
                         logger=CSVLogger(tmp_path / "logs", name="reg"), log_every_n_steps=2,
                         enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False)
    module = Regressor()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.fit(module, loader, loader)
        fit_summary = cb.summary
        trainer.validate(module, loader)
        trainer.test(module, loader)
        out = trainer.predict(module, loader)
    ours = [str(w.message) for w in caught if "energy" in str(w.message)
            or "emissions" in str(w.message) or "power_w" in str(w.message)]
    assert ours == []                                # no warning caused by our logging
    assert len(out) == 8
    assert cb.summary is fit_summary and fit_summary.status == "finished"
    names = [s.name for s in cb.eval_summaries]
    assert names == ["reg-validate", "reg-test", "reg-predict"]
    for s, window in zip(cb.eval_summaries, ("validation", "test", "prediction")):
        (w,) = eval_windows(s)
        assert w.name == window and s.status == "finished"
        assert w.energy_j == pytest.approx(WATTS * w.duration_s, rel=1e-6)
    # the fit's rows reached the logger directly (step rows and the epoch row)
    import csv
    with open(Path(trainer.logger.log_dir) / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert any(r.get("energy_kwh") for r in rows) and any(r.get("energy_kwh_epoch")
                                                          for r in rows)
    heads = [line.split("'")[1] for line in capsys.readouterr().err.splitlines()
             if line.startswith("energy-tracker: run ")]
    assert heads == ["reg", "reg-validate", "reg-test", "reg-predict"]


DDP_SCRIPT = """
import sys, warnings
sys.path[:0] = [{root!r}, {tests!r}]
warnings.simplefilter("always")
import torch
import lightning.pytorch as pl
from torch.utils.data import DataLoader, TensorDataset
from tracker.integrations.lightning import EnergyCallback

class Regressor(pl.LightningModule):
    def __init__(self):
        super().__init__()
        self.net = torch.nn.Linear(8, 1)
    def training_step(self, batch, batch_idx):
        loss = torch.nn.functional.mse_loss(self.net(batch[0]), batch[1])
        self.log("loss", loss, sync_dist=True)
        return loss
    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)

x = torch.randn(64, 8, generator=torch.Generator().manual_seed(0))
loader = DataLoader(TensorDataset(x, x.sum(dim=1, keepdim=True)), batch_size=8)
cb = EnergyCallback("ddp", cpu=True, ram=True, rate_hz=20, output_dir={out!r},
                    report_html=False)
trainer = pl.Trainer(max_epochs=2, accelerator="cpu", devices=2, strategy="ddp",
                     callbacks=[cb], log_every_n_steps=1, enable_checkpointing=False,
                     enable_progress_bar=False, enable_model_summary=False,
                     default_root_dir={out!r})
trainer.fit(Regressor(), loader)
print("RANK-DONE", trainer.global_rank, flush=True)
"""


def test_lightning_ddp_fit_causes_no_sync_dist_warning(tmp_path):
    pytest.importorskip("lightning.pytorch")
    script = tmp_path / "fit_ddp.py"
    script.write_text(textwrap.dedent(DDP_SCRIPT.format(
        root=str(ROOT), tests=str(ROOT / "tests"), out=str(tmp_path / "out"))))
    env = dict(os.environ, PL_DISABLE_FORK="1", MASTER_ADDR="127.0.0.1",
               ENERGY_TRACKER_LOCK_DIR=str(tmp_path / "locks"))
    for var in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "ENERGY_TRACKER_JOB", "ENERGY_TRACKER_QUIET"):
        env.pop(var, None)
    try:
        p = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                           env=env, timeout=300, cwd=tmp_path)
    except subprocess.TimeoutExpired:
        pytest.skip("a 2-process ddp fit did not finish in 300 s on this machine")
    out = p.stdout + p.stderr
    assert p.returncode == 0, out[-4000:]
    assert "RANK-DONE 0" in out and "RANK-DONE 1" in out, out[-4000:]
    assert "sync_dist=True" not in out, out[-4000:]   # Lightning's warning, for any key
    # one job, one block: printed by the process that ended it
    heads = [line for line in out.splitlines() if line.startswith("energy-tracker: job ")]
    assert len(heads) == 1 and "(2 ranks" in heads[0], out[-4000:]
