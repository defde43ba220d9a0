"""The `energy-tracker` command, run as users run it: `python -m tracker ...` in a subprocess.

These runs use this machine's real sensors (no GPU here: CPU/RAM are modeled), so they check
what the command does with a run, not exact joules.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from tracker.carbon import resolve_factor

TRACE = Path(__file__).parent / "data" / "h100_gpt_train.json"   # scripts/build_test_data.py


def energy_tracker(*args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENERGY_TRACKER_")}
    return subprocess.run([sys.executable, "-m", "tracker", *args], capture_output=True,
                          text=True, timeout=timeout, env=env)


def run_dirs(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if (p / "run.json").exists())


# -- run -----------------------------------------------------------------------------------------
def test_run_passes_the_child_exit_code_through(tmp_path):
    result = energy_tracker("run", "--output-dir", str(tmp_path), "--", sys.executable, "-c",
                            "import sys; sys.exit(3)")

    assert result.returncode == 3
    (run,) = run_dirs(tmp_path)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "failed"
    assert "the command exited with status 3" in summary["notes"]
    assert "Traceback" not in result.stderr


def test_run_tells_the_child_where_the_run_is(tmp_path):
    result = energy_tracker(
        "run", "--output-dir", str(tmp_path), "--name", "child", "--", sys.executable, "-c",
        "import os; print(os.environ['ENERGY_TRACKER_RUN_DIR'])")

    assert result.returncode == 0
    (run,) = run_dirs(tmp_path)
    assert Path(result.stdout.strip()) == run
    assert run.name.endswith("-child")
    assert json.loads((run / "summary.json").read_text())["status"] == "finished"


def test_sigkilled_run_keeps_its_samples_and_report_rebuilds_it(tmp_path):
    tracker = subprocess.Popen(
        [sys.executable, "-m", "tracker", "run", "--output-dir", str(tmp_path), "--name",
         "doomed", "--", sys.executable, "-c", "import time; time.sleep(4)"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(2.5)
        children = psutil.Process(tracker.pid).children()
        os.kill(tracker.pid, signal.SIGKILL)
        killed_at = time.monotonic()
        tracker.wait(10)
    finally:
        for child in children:   # the training command outlives a killed tracker
            child.kill()
    (run,) = run_dirs(tmp_path)
    manifest = json.loads((run / "run.json").read_text())
    elapsed = killed_at - manifest["start_monotonic"]   # both on the system monotonic clock

    records = [json.loads(line) for line in (run / "samples.jsonl").read_text().splitlines()]
    assert records[-1]["t"] >= elapsed - 1.5
    assert json.loads((run / "summary.json").read_text())["status"] == "running"

    result = energy_tracker("report", str(run), "--json")

    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["status"] == "killed"
    assert summary["energy_j"] is not None and summary["energy_j"] > 0
    assert summary["duration_s"] == pytest.approx(records[-1]["t"])
    assert any("the run was killed" in n for n in summary["notes"])
    assert json.loads((run / "summary.json").read_text())["status"] == "killed"


def test_report_of_a_root_lists_its_runs(tmp_path):
    for name in ("first", "second"):
        done = energy_tracker("run", "--output-dir", str(tmp_path), "--name", name, "--",
                              sys.executable, "-c", "pass")
        assert done.returncode == 0

    listing = energy_tracker("report", str(tmp_path), "--json")
    table = energy_tracker("report", str(tmp_path))

    assert listing.returncode == 0
    runs = json.loads(listing.stdout)["runs"]
    assert sorted(r["name"] for r in runs) == ["first", "second"]
    assert {r["status"] for r in runs} == {"finished"}
    assert all(r["energy_kwh"] is not None for r in runs)
    assert table.returncode == 0
    assert "first" in table.stdout and "second" in table.stdout


def test_report_compares_the_run_under_other_regions(tmp_path):
    from tracker.carbon import lookup

    done = energy_tracker("run", "--output-dir", str(tmp_path), "--region", "DE", "--",
                          sys.executable, "-c", "import time; time.sleep(1.2)")
    assert done.returncode == 0
    run_dir = run_dirs(tmp_path)[0]

    out = energy_tracker("report", str(run_dir), "--compare-regions", "FR,PL,US-CA", "--json")

    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    kwh = data["facility_energy_kwh"]
    rows = {r["code"]: r for r in data["compare_regions"]}
    assert set(rows) == {"FR", "PL", "US-CA"}
    for code, row in rows.items():
        assert row["emissions_g"] == pytest.approx(kwh * lookup(code).gco2_per_kwh, rel=1e-9)
    assert rows["FR"]["emissions_g"] < rows["US-CA"]["emissions_g"] < rows["PL"]["emissions_g"]
    best, worst = (data["compare_extremes"][k] for k in ("cleanest country",
                                                           "dirtiest country"))
    assert best["gco2_per_kwh"] <= rows["FR"]["gco2_per_kwh"]
    assert worst["gco2_per_kwh"] >= rows["PL"]["gco2_per_kwh"]
    text = energy_tracker("report", str(run_dir), "--compare-regions", "FR,PL").stdout
    assert "what-if" in text and "Poland" in text and "dirtiest country" in text


# -- estimate ------------------------------------------------------------------------------------
def test_estimate_is_n_times_board_power_times_hours():
    result = energy_tracker("estimate", "--gpus", "8", "--gpu-model", "H100", "--hours", "10",
                            "--region", "FR", "--json")

    assert result.returncode == 0, result.stderr
    est = json.loads(result.stdout)
    energy_kwh = 8 * 700 * 10 / 1000
    assert est["energy_kwh"] == pytest.approx(energy_kwh, rel=1e-12)
    fr = resolve_factor("FR").gco2_per_kwh
    assert est["emissions_kg"] == pytest.approx(energy_kwh * fr / 1000, rel=1e-12)
    assert est["grid"]["region_code"] == "FR"
    assert est["method"] == "estimate"


# -- bad input: exit 2, one line, no traceback ---------------------------------------------------
ESTIMATE = ["estimate", "--gpus", "8", "--gpu-model", "H100", "--hours", "1"]
CHILD = ["--", sys.executable, "-c", "pass"]


@pytest.mark.parametrize(("args", "says"), [
    (["estimate", "--gpus", "0", "--gpu-model", "H100", "--hours", "1"], "--gpus"),
    (["estimate", "--gpus", "8", "--gpu-model", "H999", "--hours", "1"], "H100"),
    ([*ESTIMATE, "--region", "Germny"], "Did you mean: DE"),
    (["estimate", "--gpus", "8", "--hours", "1"], "--gpu-watts"),
    (["run", "--rate", "0", *CHILD], "rate_hz"),
    (["run", "--pue", "0.5", *CHILD], "pue"),
    (["run", "--region", "Germny", *CHILD], "Unknown grid region"),
    (["run"], "needs a command"),
    (["run", "--", "/nonexistent/train-binary"], "cannot run"),
    (["report", "/nonexistent/energy-runs"], "does not exist"),
    (["replay", "/nonexistent/trace.json"], "does not exist"),
    pytest.param([*ESTIMATE, "--pue", "nan"], "pue"),
    pytest.param(["estimate", "--gpus", "8", "--gpu-model", "H100", "--hours", "inf"], "hours"),
])
def test_bad_input_exits_2_with_one_line(tmp_path, args, says):
    if args[0] == "run":
        args = [args[0], "--output-dir", str(tmp_path), *args[1:]]

    result = energy_tracker(*args)

    assert result.returncode == 2, result.stdout
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("energy-tracker: error: ")
    assert says in lines[0]


def test_malformed_flag_is_a_usage_error_without_traceback():
    result = energy_tracker("estimate", "--gpus", "many", "--hours", "1")

    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "invalid int value: 'many'" in result.stderr


# -- replay, devices -----------------------------------------------------------------------------
# sampled: fused instant + 1 s average power (+0.24 to +0.87 % over 40 tick phases on this
# trace); sampled-instant: the instant field alone (-0.52 to +0.96 %); counter: exact
@pytest.mark.parametrize(("mode", "within_pct"), [("sampled", 1.0), ("sampled-instant", 1.0),
                                                  ("counter", 0.001)])
def test_replay_of_the_recorded_h100_trace(mode, within_pct):
    result = energy_tracker("replay", str(TRACE), "--mode", mode, "--json")

    assert result.returncode == 0, result.stderr
    replayed = json.loads(result.stdout)
    assert replayed["mode"] == mode
    assert replayed["method"] == mode.split("-")[0]
    assert abs(replayed["error_pct"]) <= within_pct
    assert replayed["energy_j"] > 0


def test_devices_says_what_would_be_measured():
    result = energy_tracker("devices", "--json")

    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout)
    components = {d["component"] for d in found["devices"]}
    assert {"cpu", "ram"} <= components
    assert all(d["method"] in ("counter", "sampled", "modeled") for d in found["devices"])
    if "gpu" not in components:   # this machine: no NVIDIA driver
        assert any("No NVIDIA GPU measured" in n for n in found["notes"])
