"""One run, one story under `energy-tracker run` (issue 22, item 3): a script with its own
`track("name", region=...)` joins the wrapping run, and what its stop() returns agrees with the
CLI's final summary on run id, name, region and factor; its energy is the run's energy when the
script stopped. One precedence rule (follow.joined_options): the command line's options apply
where given, the script's where the command line left them at their default."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

FAKES = Path(__file__).parent / "fakes" / "nvml_site"
ROOT = Path(__file__).resolve().parent.parent

SCRIPT = """
import json, sys, time
from tracker import track
with track("nanogpt", region="GB", cpu=False, ram=False) as run:
    for _ in run.steps(range(int(float(sys.argv[2]) / 0.01))):
        time.sleep(0.01)
s = run.stop()
with open(sys.argv[1], "w") as f:
    json.dump(s.to_dict(), f)
"""


def run_cli(tmp_path: Path, *cli: str, seconds: float) -> tuple[dict, dict, Path]:
    script = tmp_path / "train_track.py"
    script.write_text(SCRIPT)
    out = tmp_path / "script-summary.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENERGY_TRACKER_")}
    env.update(PYTHONPATH=os.pathsep.join([str(FAKES), str(ROOT)]), FAKE_NVML_WATTS="300")
    runs = tmp_path / "runs"
    done = subprocess.run([sys.executable, "-m", "tracker", "run", "--output-dir", str(runs),
                           "--no-status", *cli, "--", sys.executable, str(script), str(out),
                           str(seconds)], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    (run,) = [p for p in runs.iterdir() if (p / "run.json").exists()]
    return json.loads(out.read_text()), json.loads((run / "summary.json").read_text()), run


def test_the_script_and_the_cli_tell_one_story(tmp_path):
    mine, cli, run_dir = run_cli(tmp_path, "--cpu-tdp", "15", seconds=3.0)
    assert mine["run_id"] == cli["run_id"]
    assert mine["name"] == cli["name"] == "nanogpt"          # the name given in code is kept
    assert mine["grid"]["region_code"] == cli["grid"]["region_code"] == "GB"
    assert mine["grid"]["gco2_per_kwh"] == cli["grid"]["gco2_per_kwh"]
    assert mine["pue"] == cli["pue"]
    # the script's energy: the run's up to the script's stop, less than the CLI's final
    assert 0 < mine["energy_j"] <= cli["energy_j"]
    assert any("from the tracked script" in n for n in cli["notes"])
    assert any("from the tracked script" in n for n in mine["notes"])
    assert len([p for p in run_dir.parent.iterdir() if (p / "run.json").exists()]) == 1


def test_options_given_on_the_command_line_apply_to_both(tmp_path):
    mine, cli, _ = run_cli(tmp_path, "--region", "FR", "--name", "sweep-3", seconds=1.0)
    assert mine["name"] == cli["name"] == "sweep-3"
    assert mine["grid"]["region_code"] == cli["grid"]["region_code"] == "FR"
    assert mine["grid"]["gco2_per_kwh"] == cli["grid"]["gco2_per_kwh"]
    assert any("other grid options" in n for n in cli["notes"])


@pytest.mark.slow
def test_a_15_s_run_the_script_sees_most_of_the_run(tmp_path):
    mine, cli, _ = run_cli(tmp_path, seconds=15.0)
    assert mine["energy_j"] <= cli["energy_j"]
    assert mine["energy_j"] == pytest.approx(cli["energy_j"], rel=0.10)
