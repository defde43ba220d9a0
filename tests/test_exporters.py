"""log_to=: a plain `track()` loop logging to the real MLflow (SQLite store), W&B (offline) and
TensorBoard (event files), each read back with the tool's own reader; option checking."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest

from tracker import track
from tracker.errors import ConfigError

WATTS = 200.0   # the fake_gpu fixture's constant draw
EPOCHS, STEPS, SAMPLES = 2, 4, 8


def train(tmp_path, fake_gpu, log_to, **kw):
    """2 epochs x 4 steps of 30 ms, 8 samples each; progress every 2 steps, no rate limit."""
    options = dict(sensors=fake_gpu, cpu=False, ram=False, output_dir=tmp_path / "runs",
                   rate_hz=100, log_to=log_to, log_every_steps=2, log_min_interval_s=0,
                   emissions_csv=False)
    options.update(kw)
    with track("exp", **options) as run:
        for _ in run.epochs(range(EPOCHS)):
            for _ in run.steps(range(STEPS), samples=lambda b: SAMPLES):
                time.sleep(0.03)
    return run


# progress at steps 2, 4 (and the epoch end at 4), 6, 8 (and the epoch end at 8)
PROGRESS_STEPS = [2, 4, 4, 6, 8, 8]


def check_progress(values: list[tuple[int, float]], run) -> None:
    """energy/kwh rises through the progress steps and ends at the summary's energy."""
    steps = [s for s, _ in values]
    assert steps == [*PROGRESS_STEPS, 8], steps
    kwh = [v for _, v in values]
    assert kwh == sorted(kwh) and kwh[0] > 0
    assert kwh[-1] == pytest.approx(run.summary.energy_kwh, rel=1e-6)


# -- MLflow --------------------------------------------------------------------------------------
@pytest.fixture
def mlflow_store(tmp_path, monkeypatch):
    mlflow = pytest.importorskip("mlflow")
    monkeypatch.chdir(tmp_path)                  # artifacts of new runs go to ./mlruns
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    mlflow.set_tracking_uri(uri)
    yield uri
    while mlflow.active_run() is not None:
        mlflow.end_run()


def mlflow_runs(uri):
    from mlflow import MlflowClient
    client = MlflowClient(uri)
    exp = [e.experiment_id for e in client.search_experiments()]
    return client, client.search_runs(exp)


def test_mlflow_plain_loop_starts_and_ends_its_own_run(tmp_path, fake_gpu, mlflow_store):
    run = train(tmp_path, fake_gpu, "mlflow")
    client, runs = mlflow_runs(mlflow_store)
    (got,) = runs
    assert (got.info.run_name, got.info.status) == ("exp", "FINISHED")
    rid = got.info.run_id
    hist = client.get_metric_history(rid, "energy/kwh")
    check_progress([(m.step, m.value) for m in sorted(hist, key=lambda m: m.timestamp)], run)
    # constant 200 W: every progress row's power is 200 W, J/sample = 200 W x dt / samples
    assert all(m.value == pytest.approx(WATTS, rel=0.02)
               for m in client.get_metric_history(rid, "energy/power_w"))
    assert client.get_metric_history(rid, "energy/j_per_sample")
    data = got.data
    assert data.metrics["energy/emissions_kg"] == pytest.approx(run.summary.emissions_kg)
    assert data.metrics["energy/gpu_power_w"] == pytest.approx(WATTS, rel=0.02)
    assert data.params["energy/run_id"] == run.summary.run_id
    assert data.params["energy/gpu_method"] == "sampled"
    assert data.params["energy/region"] == "WORLD" and data.params["energy/scope"] == "run"
    names = [f.path for f in client.list_artifacts(rid, "energy-tracker")]
    assert names == ["energy-tracker/summary.json"]
    local = client.download_artifacts(rid, "energy-tracker/summary.json", str(tmp_path))
    saved = json.loads((run.run_dir / "summary.json").read_text())
    assert json.loads(Path(local).read_text()) == saved


def test_mlflow_logs_into_the_active_run_and_leaves_it_open(tmp_path, fake_gpu, mlflow_store):
    import mlflow

    with mlflow.start_run(run_name="mine") as mine:
        mlflow.log_param("lr", 0.1)
        run = train(tmp_path, fake_gpu, "mlflow")
        assert mlflow.active_run().info.run_id == mine.info.run_id   # not ended by us
    _, runs = mlflow_runs(mlflow_store)
    (got,) = runs
    assert got.info.run_id == mine.info.run_id and got.info.run_name == "mine"
    assert got.data.params["lr"] == "0.1"
    assert got.data.metrics["energy/kwh"] == pytest.approx(run.summary.energy_kwh)


def test_auto_uses_an_active_mlflow_run_only(tmp_path, fake_gpu, mlflow_store):
    import mlflow

    train(tmp_path / "a", fake_gpu, "auto")     # nothing active: nothing logged, no run made
    assert mlflow_runs(mlflow_store)[1] == []
    with mlflow.start_run(run_name="mine"):
        run = train(tmp_path / "b", fake_gpu, "auto")
    (got,) = mlflow_runs(mlflow_store)[1]
    assert got.data.metrics["energy/kwh"] == pytest.approx(run.summary.energy_kwh)


# -- W&B -----------------------------------------------------------------------------------------
@pytest.fixture
def wandb_offline(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    for k, v in {"WANDB_MODE": "offline", "WANDB_DIR": str(tmp_path), "WANDB_SILENT": "true",
                 "WANDB_PROJECT": "energy-tests", "WANDB_DISABLE_GIT": "true"}.items():
        monkeypatch.setenv(k, v)
    yield tmp_path / "wandb"
    import wandb
    wandb.teardown()   # wandb caches WANDB_DIR from its first run in the process


def offline_run(wandb_dir):
    from wandb_offline import read_run

    (run_dir,) = sorted(wandb_dir.glob("offline-run-*"))
    return run_dir, read_run(run_dir)


def test_wandb_offline_plain_loop(tmp_path, fake_gpu, wandb_offline):
    run = train(tmp_path, fake_gpu, "wandb")
    run_dir, got = offline_run(wandb_offline)
    assert got["name"] == "exp"
    rows = [r for r in got["history"] if "energy/kwh" in r]
    check_progress([(r["energy/step"], r["energy/kwh"]) for r in rows]
                   + [(8, got["summary"]["energy/kwh"])], run)
    assert got["summary"]["energy/emissions_kg"] == pytest.approx(run.summary.emissions_kg)
    assert got["config"]["energy/run_id"] == run.summary.run_id
    assert "energy-tracker/summary.json" in got["files"]
    saved = json.loads((run_dir / "files" / "energy-tracker" / "summary.json").read_text())
    assert saved == json.loads((run.run_dir / "summary.json").read_text())


# -- TensorBoard ---------------------------------------------------------------------------------
def read_events(logdir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(logdir), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    return acc


def test_tensorboard_plain_loop(tmp_path, fake_gpu):
    pytest.importorskip("tensorboard")
    run = train(tmp_path, fake_gpu, "tensorboard")
    logdir = run.run_dir / "tensorboard"
    acc = read_events(logdir)
    check_progress([(e.step, e.value) for e in acc.Scalars("energy/kwh")], run)
    (final,) = [e for e in acc.Scalars("energy/emissions_kg") if e.step == 8][-1:]
    assert final.value == pytest.approx(run.summary.emissions_kg, rel=1e-6)   # float32
    (text,) = acc.Tensors("energy/summary")
    assert run.summary.run_id in text.tensor_proto.string_val[0].decode()
    copied = json.loads((logdir / "energy-tracker" / "summary.json").read_text())
    assert copied == json.loads((run.run_dir / "summary.json").read_text())


def test_tensorboard_several_tools_at_once(tmp_path, fake_gpu, mlflow_store):
    from tracker.exporters.tensorboard import TensorBoardExporter

    run = train(tmp_path, fake_gpu, ["mlflow", TensorBoardExporter(logdir=tmp_path / "tb")])
    assert read_events(tmp_path / "tb").Scalars("energy/kwh")[-1].value == \
        pytest.approx(run.summary.energy_kwh, rel=1e-6)
    (got,) = mlflow_runs(mlflow_store)[1]
    assert got.data.metrics["energy/kwh"] == pytest.approx(run.summary.energy_kwh)


# -- behaviour and options -----------------------------------------------------------------------
class Recorder:
    """A custom exporter: the protocol is two methods."""

    name = "recorder"

    def __init__(self, fail: bool = False):
        self.progress_calls: list[tuple[dict, int]] = []
        self.stops: list = []
        self.fail = fail

    def on_progress(self, metrics, step):
        if self.fail:
            raise RuntimeError("tool is down")
        self.progress_calls.append((metrics, step))

    def on_stop(self, summary, files):
        self.stops.append((summary, files))


def test_custom_exporter_gets_progress_and_summary(tmp_path, fake_gpu):
    rec = Recorder()
    run = train(tmp_path, fake_gpu, rec)
    assert [s for _, s in rec.progress_calls] == PROGRESS_STEPS
    assert all(k.startswith("energy/") for m, _ in rec.progress_calls for k in m)
    ((summary, files),) = rec.stops
    assert summary.run_id == run.summary.run_id
    assert [f.name for f in files] == ["summary.json"]


def test_rate_limit_and_epoch_only(tmp_path, fake_gpu):
    limited = Recorder()
    train(tmp_path / "a", fake_gpu, limited, log_min_interval_s=3600)
    # steps are rate-limited (the first one is logged), epoch ends are not
    assert [s for _, s in limited.progress_calls] == [2, 4, 8]
    epochs = Recorder()
    train(tmp_path / "b", fake_gpu, epochs, log_every_steps=None)
    assert [s for _, s in epochs.progress_calls] == [4, 8]


def test_a_failing_exporter_never_reaches_training(tmp_path, fake_gpu):
    bad = Recorder(fail=True)
    run = train(tmp_path, fake_gpu, bad)
    assert run.summary.status == "finished"
    assert any("log_to 'recorder': on_progress failed" in n for n in run.summary.notes)
    assert bad.stops == []   # switched off after the first failure


@pytest.mark.parametrize(("value", "message"), [
    ("mlfow", "Did you mean 'mlflow'"),
    (42, "log_to must be one of 'mlflow', 'wandb', 'tensorboard', 'auto'"),
    (["tensorboard", "tensorboard"], "names 'tensorboard' twice"),
])
def test_bad_log_to(tmp_path, value, message):
    with pytest.raises(ConfigError, match=message):
        track("x", log_to=value, output_dir=tmp_path)


@pytest.mark.parametrize(("option", "value"), [
    ("log_every_steps", 0), ("log_every_steps", "5"), ("log_every_steps", True),
    ("log_min_interval_s", -1), ("log_min_interval_s", "10"),
])
def test_bad_log_rates(tmp_path, option, value):
    with pytest.raises(ConfigError, match=option):
        track("x", log_to="tensorboard", output_dir=tmp_path, **{option: value})


def test_missing_library_names_the_extra(tmp_path, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "wandb" else real(name, *a))
    with pytest.raises(ConfigError, match=r"pip install 'trainjoule\[wandb\]'"):
        track("x", log_to=["tensorboard", "wandb"], output_dir=tmp_path)


def test_log_to_imports_nothing_until_used(tmp_path):
    import subprocess

    code = ("import sys; from tracker import track; "
            "t = track('x', log_to=['mlflow', 'wandb', 'tensorboard'], "
            f"output_dir={str(tmp_path)!r}); "
            "bad = [m for m in ('mlflow', 'wandb', 'tensorboard') if m in sys.modules]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)
