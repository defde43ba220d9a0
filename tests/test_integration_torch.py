"""A plain PyTorch loop with run.epochs / run.steps and the tracker.integrations.torch helpers,
against a fake GPU drawing a constant 200 W: every window's energy is exactly 200 W x its
duration."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

torch = pytest.importorskip("torch")

from tracker import Tracker  # noqa: E402
from tracker.integrations.torch import (  # noqa: E402
    count_samples,
    count_tokens,
    cuda_synchronize,
    process_gpus,
)
from tracker.rundir.ledger import read_steps  # noqa: E402

WATTS = 200.0


def test_plain_loop_windows_are_exact(tmp_path, fake_gpu):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Embedding(100, 64), torch.nn.Linear(64, 100))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    data = [{"input_ids": torch.randint(0, 100, (8, 32))} for _ in range(6)]

    with Tracker("plain-loop", sensors=fake_gpu, cpu=False, ram=False, rate_hz=100,
                 output_dir=tmp_path) as run:
        for _ in run.epochs(range(2)):
            for batch in run.steps(data, samples=count_samples, tokens=count_tokens,
                                   synchronize=cuda_synchronize()):
                logits = model(batch["input_ids"])
                loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1),
                                                         batch["input_ids"].flatten())
                loss.backward()
                opt.step()
                opt.zero_grad()
    summary = run.summary

    wins = json.loads((run.run_dir / "windows.json").read_text())["windows"]
    epochs = [w for w in wins if w["kind"] == "epoch"]
    # every step, with its energy, in the compact steps file
    steps = list(read_steps(run.run_dir / "steps.bin"))
    assert len(steps) == 12 and len(epochs) == 2
    assert all(s["samples"] == 8 and s["tokens"] == 256 for s in steps)
    assert [s["parent"] for s in steps] == [epochs[0]["id"]] * 6 + [epochs[1]["id"]] * 6
    for w in epochs:
        assert w["energy_j"] == pytest.approx(WATTS * w["duration_s"], rel=1e-9)
    steps = [dict(s, start_s=s["t_start"], end_s=s["t_end"]) for s in steps]
    for w in steps:
        assert w["energy_j"] > 0
        assert w["energy_j"] == pytest.approx(WATTS * w["duration_s"], rel=1e-9)
    # the run total is 200 W over the time the GPU was read (first to last reading), to the
    # counter's 1 mJ resolution (readings are logged in mJ, as NVML reports them)
    t, _ = run.devices[0].curve.points()
    assert summary.energy_j == pytest.approx(WATTS * (t[-1] - t[0]), abs=1e-3)
    # steps + gaps = total; step groups hold every step's energy and its J/sample, J/token
    step_j = sum(w["energy_j"] for w in steps)
    edges = [0.0] + [x for w in steps for x in (w["start_s"], w["end_s"])] + [summary.duration_s]
    gap_j = sum(run.energy_j(a, b) for a, b in zip(edges[::2], edges[1::2]))
    assert step_j + gap_j == pytest.approx(summary.energy_j, rel=1e-12)
    assert summary.steps["energy_j_in_steps"] == pytest.approx(step_j, rel=1e-12)
    assert summary.steps["j_per_sample"] == pytest.approx(step_j / 96, rel=1e-12)
    assert summary.steps["j_per_token"] == pytest.approx(step_j / (96 * 32), rel=1e-12)


@pytest.mark.parametrize("batch, samples", [
    (torch.zeros(5, 3), 5),
    ((torch.zeros(7, 3), torch.zeros(7)), 7),
    ({"input_ids": torch.zeros(4, 9, dtype=torch.long), "labels": torch.zeros(4, 9)}, 4),
    ({"pixel_values": torch.zeros(6, 3, 8, 8)}, 6),
    ([{"x": torch.zeros(2, 1)}], 2),
    (["a", "b", "c"], 3),
    (torch.tensor(1.0), 0),
    (object(), 0),
])
def test_count_samples(batch, samples):
    assert count_samples(batch) == samples


def test_count_tokens():
    assert count_tokens({"input_ids": torch.zeros(4, 9)}) == 36
    assert count_tokens(SimpleNamespace(input_ids=torch.zeros(2, 3))) == 6
    assert count_tokens({"pixel_values": torch.zeros(2, 3)}) == 0


def test_cuda_synchronize_is_a_noop_without_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    sync = cuda_synchronize()
    assert sync() is None


@pytest.mark.parametrize("device, env, expected", [
    ("cuda:1", {}, [1]),
    ("cuda:1", {"CUDA_VISIBLE_DEVICES": "4,6"}, [6]),
    ("cuda:0", {"CUDA_VISIBLE_DEVICES": "GPU-abc,GPU-def"}, ["GPU-abc"]),
    (None, {"LOCAL_RANK": "1", "CUDA_VISIBLE_DEVICES": "2,3"}, [3]),
    ("cpu", {}, None),
    ("cuda:2", {"CUDA_VISIBLE_DEVICES": "0"}, None),
])
def test_process_gpus(device, env, expected):
    dev = torch.device(device) if device else None
    assert process_gpus(dev, env=env) == expected


def test_session_joins_a_run_started_by_the_cli(tmp_path, monkeypatch, fake_gpu):
    """Under `energy-tracker run`, ENERGY_TRACKER_RUN_DIR is set: a callback's tracker joins that
    run (its windows land in the parent's run) instead of sampling a second time."""
    from tracker.api import ENV_RUN_DIR
    from tracker.integrations import TrainingSession

    parent = Tracker("cli-run", sensors=fake_gpu, cpu=False, ram=False, rate_hz=100,
                     output_dir=tmp_path).start()
    monkeypatch.setenv(ENV_RUN_DIR, str(parent.run_dir))
    session = TrainingSession("callback", {"cpu": False, "ram": False})
    run = session.start()
    assert run.joined and run.run_dir == parent.run_dir
    session.open("epoch", "epoch 0", "epoch", index=0)
    session.close("epoch")
    session.finish()
    summary = parent.stop()
    assert [w.name for w in summary.windows] == ["epoch 0"]
