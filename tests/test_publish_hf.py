"""A real transformers Trainer (tiny GPT-2 from a config, CPU, no hub download) with the
EnergyCallback: `trainer.create_model_card()` writes a card whose co2_eq_emissions the Hub's
own ModelCard parser reads, equal to the run's summary."""

from __future__ import annotations

import json
import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
hub = pytest.importorskip("huggingface_hub")

from transformers import GPT2Config, GPT2LMHeadModel, Trainer, TrainingArguments  # noqa: E402

from tracker import __version__  # noqa: E402
from tracker.integrations.huggingface import EnergyCallback  # noqa: E402

pytestmark = pytest.mark.slow


def _trainer(tmp_path, cb):
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(n_layer=2, n_embd=32, n_head=2, vocab_size=100,
                                       n_positions=32))
    g = torch.Generator().manual_seed(1)
    rows = torch.randint(0, 100, (16, 16), generator=g).tolist()
    args = TrainingArguments(output_dir=str(tmp_path / "hf"), num_train_epochs=1,
                             per_device_train_batch_size=4, report_to=[], use_cpu=True,
                             disable_tqdm=True, save_strategy="no", dataloader_num_workers=0)
    return Trainer(model=model, args=args, train_dataset=[{"input_ids": r, "labels": r}
                                                          for r in rows], callbacks=[cb])


def test_trainer_model_card_carries_co2_eq_emissions(tmp_path, fake_gpu):
    cb = EnergyCallback("gpt2-card", sensors=fake_gpu, cpu=False, ram=False, region="FR",
                        output_dir=tmp_path / "runs", rate_hz=50, wue=1.2)
    trainer = _trainer(tmp_path, cb)
    trainer.train()
    trainer.create_model_card(model_name="tiny")
    card_path = tmp_path / "hf" / "README.md"
    card = hub.ModelCard.load(card_path)
    co2 = card.data.co2_eq_emissions
    summary = json.loads((cb.run.run_dir / "summary.json").read_text())
    assert co2["emissions"] == pytest.approx(summary["emissions_kg"] * 1000, rel=5e-3)
    assert co2["training_type"] == "pre-training"      # built from a config, not loaded
    assert co2["geographical_location"] == "France (FR)"
    assert co2["hardware_used"] == "1 × Fake GPU 200 W"
    assert co2["source"].startswith(f"trainjoule {__version__} ")
    assert co2["water_litres"] == pytest.approx(summary["facility_energy_kwh"] * 1.2, rel=1e-5)
    # the Trainer's own card is still there: its body and its metadata
    assert "tiny" in card_path.read_text()
    assert card.data.to_dict().get("library_name") == "transformers"


def test_a_failing_card_update_never_breaks_the_trainer(tmp_path, fake_gpu, monkeypatch,
                                                        caplog):
    cb = EnergyCallback("gpt2-card-fails", sensors=fake_gpu, cpu=False, ram=False,
                        output_dir=tmp_path / "runs", rate_hz=50)
    trainer = _trainer(tmp_path, cb)
    trainer.train()
    import tracker.publish.facts as facts

    def broken(*a, **k):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(facts, "facts_from_dir", broken)
    trainer.create_model_card(model_name="tiny")     # no exception
    text = (tmp_path / "hf" / "README.md").read_text()
    assert "co2_eq_emissions" not in text and "tiny" in text
    assert any("disk on fire" in r.getMessage() for r in caplog.records)
