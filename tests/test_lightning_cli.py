"""The Lightning callback configured the way LightningCLI users configure callbacks (issue 19
item 3): `--trainer.callbacks+=tracker.integrations.lightning.EnergyCallback
--trainer.callbacks.region=DE`, or a YAML file, through the real LightningCLI/jsonargparse
(the callback's options are typed keyword parameters derived from tracker.config)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tracker import ConfigError

torch = pytest.importorskip("torch")
pl = pytest.importorskip("lightning.pytorch")
pytest.importorskip("jsonargparse", reason="LightningCLI needs jsonargparse[signatures] "
                                           "(the `lightning` and `test` extras install it)")

from lightning.pytorch.cli import LightningCLI  # noqa: E402
from torch.utils.data import DataLoader, TensorDataset  # noqa: E402

pytestmark = pytest.mark.slow
CALLBACK = "tracker.integrations.lightning.EnergyCallback"


class Tiny(pl.LightningModule):
    def __init__(self, width: int = 8):
        super().__init__()
        self.layer = torch.nn.Linear(width, 1)
        self.width = width

    def training_step(self, batch, batch_idx):
        x, y = batch
        return torch.nn.functional.mse_loss(self.layer(x), y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)

    def train_dataloader(self):
        g = torch.Generator().manual_seed(0)
        x = torch.randn(64, self.width, generator=g)
        return DataLoader(TensorDataset(x, x.sum(dim=1, keepdim=True)), batch_size=16)


TRAINER = ["--trainer.max_epochs=1", "--trainer.accelerator=cpu", "--trainer.devices=1",
           "--trainer.logger=false", "--trainer.enable_checkpointing=false",
           "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false"]


def cli(*args: str) -> LightningCLI:
    return LightningCLI(Tiny, args=["fit", *TRAINER, *args], save_config_callback=None)


def energy_callback(c: LightningCLI):
    (cb,) = [x for x in c.trainer.callbacks if type(x).__name__ == "EnergyCallback"]
    return cb


@pytest.fixture
def no_option_env(monkeypatch):
    from tracker.config import OPTIONS

    for opt in OPTIONS.values():
        if opt.env and opt.env != "ENERGY_TRACKER_REPORT_HTML":   # (conftest: no HTML)
            monkeypatch.delenv(opt.env, raising=False)
    monkeypatch.delenv("ENERGY_TRACKER_RUN_DIR", raising=False)
    return monkeypatch


def test_region_set_on_the_lightningcli_command_line(fake_nvml, tmp_path, no_option_env):
    fake_nvml(1)
    c = cli(f"--trainer.callbacks+={CALLBACK}", "--trainer.callbacks.region=DE",
            f"--trainer.callbacks.output_dir={tmp_path}", "--trainer.callbacks.pue=1.3",
            "--trainer.callbacks.emissions_csv=false")
    cb = energy_callback(c)
    s = cb.summary
    assert s is not None and s.status == "finished" and s.energy_j > 0
    assert s.grid["region_code"] == "DE" and s.pue == pytest.approx(1.3)
    on_disk = json.loads((Path(cb.run.run_dir) / "summary.json").read_text())
    assert on_disk["grid"]["region_code"] == "DE"
    assert not (tmp_path / "emissions.csv").exists()
    # jsonargparse passed every parameter; the defaults among them were not "given"
    assert cb.track_config == {"region": "DE", "pue": 1.3, "output_dir": str(tmp_path),
                               "emissions_csv": False}
    note = next(n for n in s.notes if n.startswith("options: "))
    assert "region=DE (argument)" in note and "rate_hz" not in note


def test_a_yaml_config_sets_the_callback_and_the_environment_fills_the_rest(
        fake_nvml, tmp_path, no_option_env):
    """Parameters the YAML leaves at their default leave the option to its variable."""
    fake_nvml(1)
    no_option_env.setenv("ENERGY_TRACKER_RATE_HZ", "20")
    no_option_env.setenv("ENERGY_TRACKER_PUE", "1.2")
    config = tmp_path / "config.yaml"
    config.write_text(f"""\
trainer:
  callbacks:
    - class_path: {CALLBACK}
      init_args:
        name: yaml-run
        region: FR
        output_dir: {tmp_path}
        cpu: false
""")
    cb = energy_callback(cli(f"--config={config}"))
    s = cb.summary
    assert s.name == "yaml-run" and s.grid["region_code"] == "FR"
    assert s.pue == pytest.approx(1.2)
    run = json.loads((Path(cb.run.run_dir) / "run.json").read_text())
    assert run["config"]["rate_hz"] == 20.0 and run["config"]["cpu"] is False
    assert run["config"]["sources"] == {"region": "argument", "output_dir": "argument",
                                        "cpu": "argument",
                                        "rate_hz": "env ENERGY_TRACKER_RATE_HZ",
                                        "pue": "env ENERGY_TRACKER_PUE",
                                        "report_html": "env ENERGY_TRACKER_REPORT_HTML"}


def test_options_are_typed_for_jsonargparse(tmp_path, no_option_env):
    """A misspelt option or a wrong type is refused by the parser, before any training."""
    with pytest.raises(SystemExit):
        cli(f"--trainer.callbacks+={CALLBACK}", "--trainer.callbacks.regoin=DE")
    with pytest.raises(SystemExit):
        cli(f"--trainer.callbacks+={CALLBACK}", "--trainer.callbacks.pue=high")


def test_a_bad_value_is_refused_at_construction(tmp_path, no_option_env):
    # the callback's ConfigError, as jsonargparse reports a failed instantiation (inside a
    # ValueError listing what it tried)
    with pytest.raises((ConfigError, ValueError), match=r"pue=0.5 is out of range \[1, 10\]"):
        cli(f"--trainer.callbacks+={CALLBACK}", "--trainer.callbacks.pue=0.5",
            f"--trainer.callbacks.output_dir={tmp_path}")
    assert not list(tmp_path.iterdir())   # no run was started
