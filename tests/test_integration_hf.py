"""EnergyCallback on a real transformers Trainer: a tiny GPT-2 trained on CPU against a fake GPU
that draws a constant 200 W, so every window's energy is 200 W x its duration."""

from __future__ import annotations

import json
import os
import time

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from conftest import step_windows  # noqa: E402
from transformers import GPT2Config, GPT2LMHeadModel, Trainer, TrainingArguments  # noqa: E402

from tracker.integrations.huggingface import EnergyCallback  # noqa: E402

pytestmark = pytest.mark.slow
WATTS = 200.0


@pytest.fixture
def tiny_gpt2():
    torch.manual_seed(0)
    config = GPT2Config(n_layer=2, n_embd=32, n_head=2, vocab_size=100, n_positions=32)
    return GPT2LMHeadModel(config)


def dataset(n: int = 32, seq: int = 16) -> list[dict[str, list[int]]]:
    g = torch.Generator().manual_seed(1)
    rows = torch.randint(0, 100, (n, seq), generator=g).tolist()
    return [{"input_ids": r, "labels": r} for r in rows]


def training_args(tmp_path, **kw) -> TrainingArguments:
    base = dict(output_dir=str(tmp_path / "hf"), num_train_epochs=2, per_device_train_batch_size=4,
                logging_steps=4, report_to=[], use_cpu=True, disable_tqdm=True,
                save_strategy="no", eval_strategy="epoch", per_device_eval_batch_size=8,
                dataloader_num_workers=0, seed=0)
    base.update(kw)
    return TrainingArguments(**base)


def windows_file(run_dir) -> dict:
    """windows.json, with the steps of steps.bin put back among its windows."""
    data = json.loads((run_dir / "windows.json").read_text())
    data["windows"] += step_windows(run_dir)
    return data


def test_trainer_run_logs_energy_and_windows(tmp_path, tiny_gpt2, fake_gpu):
    cb = EnergyCallback("gpt2-tiny", sensors=fake_gpu, cpu=False, ram=False,
                        output_dir=tmp_path / "runs", region="DE", rate_hz=100)
    args = training_args(tmp_path, save_strategy="epoch")
    trainer = Trainer(model=tiny_gpt2, args=args, train_dataset=dataset(),
                      eval_dataset=dataset(8), callbacks=[cb])
    trainer.train()

    summary = cb.summary
    assert summary is not None and summary.status == "finished"
    run_dir = cb.run.run_dir
    on_disk = json.loads((run_dir / "summary.json").read_text())
    assert on_disk["status"] == "finished"

    # metrics in every training log row, in the Trainer's own history
    rows = [r for r in trainer.state.log_history if "loss" in r]
    assert len(rows) == 4                               # 16 steps, a row every 4
    for r in rows:
        assert {"energy_kwh", "emissions_kg"} <= r.keys()
    # mean power since the previous row, up to the latest reading: exactly the fake's 200 W
    # (a row with no new reading since the previous one has no power_w)
    powered = [r for r in rows if "power_w" in r]
    assert len(powered) >= 2 and all("energy_j_per_token" in r for r in powered)
    assert all(r["power_w"] == pytest.approx(WATTS, rel=1e-6) for r in powered)
    kwh = [r["energy_kwh"] for r in trainer.state.log_history if "energy_kwh" in r]
    assert kwh == sorted(kwh) and kwh[-1] > 0
    # projection after one epoch (8 steps): constant power, so it matches the duration ratio
    projected = [r for r in rows if "projected_energy_kwh" in r]
    assert projected and projected[0]["step"] >= 8
    assert projected[-1]["projected_emissions_kg"] > 0
    assert any(n.startswith("projection at 50%") for n in summary.notes)

    # windows: 2 epochs, 16 steps with samples/tokens, 2 evaluations and 2 checkpoints
    wins = windows_file(run_dir)["windows"]
    kinds = [w["kind"] for w in wins]
    assert kinds.count("epoch") == 2 and kinds.count("step") == 16
    assert kinds.count("eval") == 2 and kinds.count("checkpoint") == 2
    steps = [w for w in wins if w["kind"] == "step"]
    assert all(w["attrs"]["samples"] == 4 and w["attrs"]["tokens"] == 64 for w in steps)
    for w in wins:                      # 200 W x duration, exactly
        assert w["energy_j"] == pytest.approx(WATTS * w["duration_s"], rel=1e-9)
    epochs = [w for w in wins if w["kind"] == "epoch"]
    evals = [w for w in wins if w["kind"] == "eval"]
    for ev, ep in zip(evals, epochs):   # evaluation follows its epoch, outside it
        assert ev["start_s"] >= ep["end_s"] and ev["name"] == "evaluation"

    # steps + the gaps between them add up to the run's total
    run = cb.run
    step_j = sum(w["energy_j"] for w in steps)
    edges = [0.0] + [x for w in steps for x in (w["start_s"], w["end_s"])] + [summary.duration_s]
    gap_j = sum(run.energy_j(a, b) for a, b in zip(edges[::2], edges[1::2]))
    assert step_j + gap_j == pytest.approx(summary.energy_j, rel=1e-12, abs=1e-9)
    groups = windows_file(run_dir)["step_groups"]
    assert sum(g["energy_j"] for g in groups) == pytest.approx(step_j, rel=1e-12)
    assert summary.steps["count"] == 16


class FailingTrainer(Trainer):
    def training_step(self, model, inputs, num_items_in_batch=None):
        if self.state.global_step == 3:
            raise RuntimeError("loss exploded")
        return super().training_step(model, inputs, num_items_in_batch)


def test_exception_in_training_step_leaves_failed_summary(tmp_path, tiny_gpt2, fake_gpu):
    cb = EnergyCallback("gpt2-fails", sensors=fake_gpu, cpu=False, ram=False,
                        output_dir=tmp_path / "runs")
    trainer = FailingTrainer(model=tiny_gpt2, args=training_args(tmp_path, eval_strategy="no"),
                             train_dataset=dataset(), callbacks=[cb])
    t0 = time.monotonic()
    with pytest.raises(RuntimeError, match="loss exploded"):
        trainer.train()
    on_disk = json.loads((cb.run.run_dir / "summary.json").read_text())
    assert on_disk["status"] == "failed"
    assert any("RuntimeError: loss exploded" in n for n in on_disk["notes"])
    assert on_disk["energy_j"] == pytest.approx(WATTS * on_disk["duration_s"], rel=0.2)
    assert on_disk["duration_s"] <= time.monotonic() - t0
    # the failing step is closed at the stop and nothing is left wrapped on the Trainer
    steps = [w for w in windows_file(cb.run.run_dir)["windows"] if w["kind"] == "step"]
    assert len(steps) == 4 and all(w["end_s"] is not None for w in steps)
    assert "training_step" not in vars(trainer) and "_run_epoch" not in vars(trainer)


def test_bad_option_fails_at_construction():
    from tracker import ConfigError
    with pytest.raises(ConfigError, match="pue"):
        EnergyCallback(pue=0.5)
