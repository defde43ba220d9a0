"""Where the energy went: a breakdown that adds up, idle GPU energy, findings only with
evidence, and the cost when a price is given."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import UUIDS, Constant, FakeGPU

from tracker import ConfigError, track
from tracker.accounting.breakdown import PARTS, partition, subtract, union
from tracker.rebuild import rebuild_summary
from tracker.summary import Window

FAST = dict(cpu=False, ram=False, rate_hz=50, counter_interval_s=0.2)
TRACE = Path(__file__).parent / "data" / "h100_gpt_train.json"   # scripts/build_test_data.py


def total_of(parts: dict) -> float:
    return sum(p["energy_j"] for p in parts.values())


# -- intervals ------------------------------------------------------------------------------------
def test_interval_algebra():
    assert union([(3, 4), (0, 1), (0.5, 2), (5, 5)]) == [(0, 2), (3, 4)]
    assert subtract([(0, 10)], [(1, 2), (3, 4), (9, 12)]) == [(0, 1), (2, 3), (4, 9)]
    assert subtract([(0, 1), (2, 3)], []) == [(0, 1), (2, 3)]
    assert subtract([(0, 1)], [(-1, 5)]) == []


def test_partition_precedence_covers_the_run_once():
    w = [Window(0, "s0", "step", t_start=1, t_end=2), Window(1, "s1", "step", t_start=3, t_end=4),
         Window(2, "ev", "eval", t_start=1.5, t_end=3.5),   # overlaps steps and a gap
         Window(3, "ck", "checkpoint", t_start=5, t_end=6), Window(4, "ph", "phase", 0, 10)]
    p = partition(w, 10.0)
    assert p["steps"] == [(1, 2), (3, 4)]
    assert p["eval"] == [(2, 3)]
    assert p["checkpoint"] == [(5, 6)]
    assert p["between_steps"] == []
    assert p["before_first_step"] == [(0, 1)] and p["after_last_step"] == [(4, 5), (6, 10)]
    covered = sorted(iv for ivs in p.values() for iv in ivs)
    assert sum(b - a for a, b in covered) == pytest.approx(10.0)
    assert union(covered) == [(0, 10)]


# -- runs -----------------------------------------------------------------------------------------
def test_breakdown_of_a_run_with_steps_eval_and_checkpoint(clocked_h100, manual_clock,
                                                           tmp_path):
    sleep = manual_clock.sleep      # run time by hand: exact however loaded the machine is

    def loader():                   # 10 ms per batch, outside the steps
        for i in range(5):
            sleep(0.01)
            yield i

    with track("parts", output_dir=tmp_path, **FAST) as run:
        sleep(0.3)                                        # start-up
        for _ in run.steps(loader()):
            sleep(0.05)
        with run.window("eval", kind="eval"):
            sleep(0.2)
        with run.window("save", kind="checkpoint"):
            sleep(0.1)
        sleep(0.1)
    s = run.summary
    assert set(s.breakdown) == {"steps", "between_steps", "eval", "checkpoint",
                                "before_first_step", "after_last_step"}
    assert total_of(s.breakdown) == pytest.approx(s.energy_j, abs=1e-9)
    assert sum(p["share"] for p in s.breakdown.values()) == pytest.approx(1.0, abs=1e-12)
    # constant 300 W: each part is 300 W x its time, and each time is what the run slept
    for p in s.breakdown.values():
        assert p["energy_j"] == pytest.approx(300.0 * p["seconds"], rel=1e-4, abs=1e-3)
    seconds = {k: p["seconds"] for k, p in s.breakdown.items()}
    assert seconds == pytest.approx({"before_first_step": 0.31, "steps": 0.25,
                                     "between_steps": 0.04, "eval": 0.2, "checkpoint": 0.1,
                                     "after_last_step": 0.1}, abs=1e-6)
    assert s.breakdown["steps"]["method"].startswith("interpolated")
    assert s.breakdown["eval"]["method"] == "counter"
    on_disk = json.loads((run.run_dir / "summary.json").read_text())
    assert on_disk["breakdown"] == s.breakdown


@pytest.mark.parametrize("steps", [0, 1])
def test_breakdown_without_steps_or_with_one(clocked_h100, manual_clock, tmp_path, steps):
    with track("few", output_dir=tmp_path, **FAST) as run:
        manual_clock.sleep(0.1)
        for _ in run.steps(range(steps)):
            manual_clock.sleep(0.1)
        manual_clock.sleep(0.1)
    s = run.summary
    assert total_of(s.breakdown) == pytest.approx(s.energy_j, abs=1e-9)
    assert set(s.breakdown) == ({"other"} if steps == 0 else
                                {"steps", "before_first_step", "after_last_step"})


def test_breakdown_of_a_killed_run_is_rebuilt(tmp_path):
    """SIGKILL mid-run: the rebuilt summary's parts still add up to its total."""
    script = tmp_path / "k.py"
    script.write_text(
        "import sys, time\n"
        f"sys.path.insert(0, {str(Path(__file__).parent / 'fakes')!r})\n"
        "import fake_nvml\n"
        "sys.modules['pynvml'] = fake_nvml.FakeNVML([fake_nvml.FakeGPU()])\n"
        "from tracker import track\n"
        f"with track('k', output_dir={str(tmp_path / 'runs')!r}, cpu=False, ram=False) as r:\n"
        "    for _ in r.steps(range(1000)):\n"
        "        time.sleep(0.02)\n"
        "        if _ == 40: print('go', flush=True)\n")
    p = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True,
                         env=dict(os.environ, PYTHONPATH=str(Path(__file__).parents[1])))
    assert p.stdout is not None and p.stdout.readline().strip() == "go"
    time.sleep(0.7)
    p.send_signal(signal.SIGKILL)
    p.wait(10)
    run = next((tmp_path / "runs").glob("*-k"))
    s = rebuild_summary(run)
    assert s.status == "killed"
    assert s.breakdown and total_of(s.breakdown) == pytest.approx(s.energy_j, abs=1e-9)


def test_breakdown_of_the_recorded_h100_trace():
    from tracker.replay import replay
    r = replay(TRACE, mode="counter")
    assert set(r.breakdown) <= set(PARTS)
    assert total_of(r.breakdown) == pytest.approx(r.energy_j, abs=1e-9)
    assert r.breakdown["steps"]["share"] > 0.5


# -- idle energy ----------------------------------------------------------------------------------
def test_idle_energy_of_a_gpu_with_a_known_pattern(fake_nvml, manual_clock, tmp_path):
    gpu = FakeGPU(uuid=UUIDS[0], profile=Constant(300.0), busy=((0.0, 0.5), (1.5, 99.0)),
                  clock=manual_clock)
    fake_nvml(gpu)
    with track("idle", output_dir=tmp_path, **FAST) as run:
        manual_clock.sleep(2.2)
    idle = run.summary.idle["gpu0"]
    # idle from 0.5 s to 1.5 s after the GPU was created: 1 s at 300 W
    assert idle["energy_j"] == pytest.approx(300.0, rel=0.01)
    assert idle["seconds"] == pytest.approx(1.0, rel=0.01)
    busy = FakeGPU(uuid=UUIDS[1], profile=Constant(300.0), clock=manual_clock)
    fake_nvml(busy)
    with track("busy", output_dir=tmp_path, **FAST) as run2:
        manual_clock.sleep(0.5)
    assert run2.summary.idle["gpu0"]["energy_j"] == pytest.approx(0.0, abs=1e-9)


def test_no_idle_energy_without_utilisation(fake_nvml, manual_clock, tmp_path):
    fake_nvml(FakeGPU(uuid=UUIDS[0], has_utilization=False, clock=manual_clock))
    with track("no-util", output_dir=tmp_path, **FAST) as run:
        manual_clock.sleep(0.2)
    assert run.summary.idle == {}


# -- findings -------------------------------------------------------------------------------------
def kinds(summary) -> set[str]:
    return {f["kind"] for f in summary.advice}


def test_findings_on_a_run_built_to_stall(fake_nvml, manual_clock, tmp_path):
    # the GPU only works inside steps; the loop waits 3x longer between steps than in them
    # (on the hand-driven clock the steps fall exactly on the GPU's busy periods)
    sleep = manual_clock.sleep
    busy = tuple((0.75 + 0.2 * k, 0.75 + 0.2 * k + 0.05) for k in range(20))
    fake_nvml(FakeGPU(uuid=UUIDS[0], profile=Constant(300.0), busy=busy, clock=manual_clock))

    def loader():            # the data loader: 0.15 s per batch, outside the step windows
        for i in range(20):
            sleep(0.15)
            yield i

    with track("stall", output_dir=tmp_path, region="DE", **FAST) as run:
        sleep(0.6)                                            # start-up
        for _ in run.steps(loader()):
            sleep(0.05)
    found = kinds(run.summary)
    assert {"between_steps", "startup", "gpu_idle", "cleaner_grid"} <= found
    gap = next(f for f in run.summary.advice if f["kind"] == "between_steps")
    assert gap["numbers"]["share"] == pytest.approx(
        run.summary.breakdown["between_steps"]["share"])
    from tracker.units import energy_text  # the energy in the unit that fits (J here)
    assert "%" in gap["finding"] and energy_text(gap["numbers"]["energy_j"]) in gap["finding"]


def test_no_findings_on_a_clean_run(clocked_h100, manual_clock, tmp_path):
    with track("clean", output_dir=tmp_path, region="SE", **FAST) as run:
        for _ in run.steps(range(30)):
            manual_clock.sleep(0.03)
    assert run.summary.advice == ()      # no stalls, busy GPU, already a clean grid


# -- cost -----------------------------------------------------------------------------------------
def test_cost_in_summary_windows_and_csv(fake_h100, tmp_path):
    with track("priced", output_dir=tmp_path, pue=1.5, price_per_kwh=0.21, currency="EUR",
               **FAST) as run, run.window("train"):
        time.sleep(0.3)
    s = run.summary
    assert s.cost["amount"] == pytest.approx(s.facility_energy_kwh * 0.21, rel=1e-12)
    assert s.cost["currency"] == "EUR"
    (w,) = s.windows
    assert w.cost == pytest.approx(1.5 * w.energy_j / 3.6e6 * 0.21, rel=1e-12)
    with open(tmp_path / "emissions.csv", newline="") as f:
        row = next(csv.DictReader(f))
    assert float(row["cost"]) == pytest.approx(s.cost["amount"]) and row["currency"] == "EUR"
    assert "cost" in s.format()


def test_no_price_no_cost(fake_h100, tmp_path):
    with track("free", output_dir=tmp_path, **FAST) as run:
        time.sleep(0.1)
    assert run.summary.cost is None and "cost" not in run.summary.to_dict()
    assert all(w.cost is None for w in run.summary.windows)


@pytest.mark.parametrize("kw, match", [
    (dict(price_per_kwh=0.2), "needs currency"),
    (dict(currency="EUR"), "without price_per_kwh"),
    (dict(price_per_kwh=-1, currency="EUR"), "out of range"),
    (dict(price_per_kwh=True, currency="EUR"), "must be a number"),
    (dict(price_per_kwh="x", currency="EUR"), "must be a number"),
    (dict(price_per_kwh=0.2, currency=5), "needs currency"),
])
def test_price_options_are_checked(kw, match):
    with pytest.raises(ConfigError, match=match):
        track("x", **kw)
