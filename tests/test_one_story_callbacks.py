"""The callbacks log the same quantities with or without `energy-tracker run` around them
(issue 22, item 3): `energy_kwh` counts from the training's start, `run_energy_kwh` is the
whole run's so far beside it (a wrapping CLI's start-up included)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

FAKES = Path(__file__).parent / "fakes" / "nvml_site"
ROOT = Path(__file__).resolve().parent.parent
WATTS = 300.0

SCRIPT = """
import json, sys, time
from tracker.integrations import TrainingSession
time.sleep(float(sys.argv[2]))                       # imports, data loading: before training
session = TrainingSession("cb", {"cpu": False, "ram": False})
run = session.start()
t0 = run.clock()
for i in range(60):
    session.begin_step(i)
    time.sleep(0.02)
    session.end_step(samples=4)
time.sleep(0.7)                                      # the parent's log reaches the follower
row = session.log_row()
t1 = run.clock()
session.finish()
with open(sys.argv[1], "w") as f:
    json.dump({"row": row, "train_s": t1 - t0, "t0": t0, "joined": run.joined}, f)
"""


def launch(tmp_path: Path, *, cli: bool, startup_s: float) -> dict:
    script = tmp_path / "train_cb.py"
    script.write_text(SCRIPT)
    out = tmp_path / "row.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENERGY_TRACKER_")}
    env.update(PYTHONPATH=os.pathsep.join([str(FAKES), str(ROOT)]),
               FAKE_NVML_WATTS=str(WATTS), ENERGY_TRACKER_OUTPUT_DIR=str(tmp_path / "runs"))
    cmd = [sys.executable, str(script), str(out), str(startup_s)]
    if cli:
        cmd = [sys.executable, "-m", "tracker", "run", "--no-status", "--", *cmd]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120,
                          cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    return json.loads(out.read_text())


def test_under_the_cli_the_row_counts_from_the_training(tmp_path):
    got = launch(tmp_path, cli=True, startup_s=1.5)
    assert got["joined"]
    row = got["row"]
    kwh_to_j = 3.6e6
    train_j, run_j = row["energy_kwh"] * kwh_to_j, row["run_energy_kwh"] * kwh_to_j
    assert got["t0"] >= 1.5                           # the CLI started before the script
    # what the run measured before the training began (the 300 W GPU, and the CLI's CPU and
    # RAM models) is the run's, not the training's
    assert run_j - train_j >= WATTS * (got["t0"] - 0.1)
    assert 0 < train_j < run_j


def test_without_the_cli_both_names_are_the_run(tmp_path):
    got = launch(tmp_path, cli=False, startup_s=0.0)
    assert not got["joined"]
    row = got["row"]
    assert row["energy_kwh"] == pytest.approx(row["run_energy_kwh"], rel=1e-12)
    assert set(row) >= {"energy_kwh", "run_energy_kwh", "emissions_kg"}
