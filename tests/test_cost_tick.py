"""The tracker's own cost per tick: the work a tick does is bounded, and the cadences are as
stated (the 1 Hz models are read once a second, the sampler wakes no faster than its fastest
device needs, the log is written in rounds with the same crash bound).

Time is driven by hand (tests/manual_time.py); psutil, the models' outermost boundary, is
replaced by counting stand-ins.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path

import psutil
import pytest

from tracker import track
from tracker.rundir.names import SAMPLES
from tracker.rundir.runlog import EAGER_FLUSH_S, FLUSH_EVERY_S
from tracker.sampler import MAX_TICK_S, Sampling
from tracker.sensors.base import Sensor, SensorInfo
from tracker.sensors.model import CpuModelSensor, RamModelSensor


@pytest.fixture
def psutil_calls(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """Count the psutil calls the models make (a 25 % busy machine, 16 GiB)."""
    calls: Counter[str] = Counter()

    def cpu_percent(interval=None, percpu=False):
        calls["cpu_percent"] += 1
        return 25.0

    class _Memory:
        total = 16 * 1024**3

    def virtual_memory():
        calls["virtual_memory"] += 1
        return _Memory()

    monkeypatch.setattr(psutil, "cpu_percent", cpu_percent)
    monkeypatch.setattr(psutil, "virtual_memory", virtual_memory)
    return calls


class _FastPower(Sensor):
    """A device with power at the sampling rate (a GPU's instant power)."""

    has_power = True

    def __init__(self, name: str = "gpu0"):
        self.info = SensorInfo(name=name, component="gpu", method="sampled", description="")

    def read_power_w(self) -> float:
        return 100.0


def test_1hz_models_are_read_once_a_second_on_10hz_ticks(psutil_calls):
    sampling = Sampling([CpuModelSensor(), RamModelSensor()], interval_s=0.1)
    psutil_calls.clear()
    reads_at = []
    for k in range(101):                # 10 s of ticks at 10 Hz, a few ms of jitter
        t = k * 0.1 + (0.003 if k % 3 else -0.002)
        rec = sampling.tick(max(t, 0.0))
        if "w" in rec["d"].get("cpu", {}):
            reads_at.append(rec["t"])
    # t = 0, 1, ..., 10 s: 11 reads (a fraction of the cadence as slack read every 8th tick)
    assert len(reads_at) == 11, reads_at
    assert psutil_calls["cpu_percent"] == 11
    assert all(0.9 < b - a < 1.1 for a, b in zip(reads_at, reads_at[1:])), reads_at
    ram = sampling.devices[1].curve
    assert ram.power_samples == 11


def test_a_late_tick_does_not_shift_the_reads_after_it(psutil_calls):
    sampling = Sampling([CpuModelSensor()], interval_s=0.1)
    got = []
    for t in [0.0, 1.0, 2.08, 2.1, 2.9, 3.0, 3.1, 4.0]:    # 2.08: one late tick
        if "w" in sampling.tick(t)["d"].get("cpu", {}):
            got.append(t)
    assert got == [0.0, 1.0, 2.08, 3.0, 4.0]


def test_the_sampler_wakes_as_often_as_its_fastest_device_needs(psutil_calls):
    models = Sampling([CpuModelSensor(), RamModelSensor()], interval_s=0.1)
    assert models.tick_interval_s() == MAX_TICK_S == 1.0
    assert Sampling([], interval_s=0.1).tick_interval_s() == MAX_TICK_S
    fast = Sampling([CpuModelSensor(), _FastPower()], interval_s=0.1)
    assert fast.tick_interval_s() == pytest.approx(0.1)
    models.add(_FastPower())            # a late claim: faster from then on
    assert models.tick_interval_s() == pytest.approx(0.1)
    slow_rate = Sampling([_FastPower()], interval_s=2.0)   # rate_hz=0.5: never above a second
    assert slow_rate.tick_interval_s() == 2.0


def _lines(run_dir: Path) -> list[dict]:
    text = (run_dir / SAMPLES).read_text()
    return [json.loads(x) for x in text.splitlines() if x.endswith("}")]


def test_a_cpu_only_run_reads_psutil_once_a_second_and_logs_every_tick(
        tmp_path, manual_clock, psutil_calls):
    run = track("cost", output_dir=tmp_path, emissions_csv=False, report_html=False,
                sensors=[CpuModelSensor(), RamModelSensor()]).start()
    psutil_calls.clear()
    manual_clock.sleep(60.0)            # 600 ticks at 10 Hz (the hand clock ticks at the rate)
    on_disk = _lines(run.run_dir)
    summary = run.stop()
    # once a second: 60 reads in 60 s (+1 at the final tick); installed memory read never
    assert 60 <= psutil_calls["cpu_percent"] <= 61, psutil_calls
    assert psutil_calls["virtual_memory"] == 0
    # every tick is in the log, in time order, and at most one round behind while running
    ticks = [r for r in _lines(run.run_dir) if "mark" not in r and "steps" not in r
             and "intensity" not in r]
    assert len(ticks) == manual_clock.samplers[0].ticks
    ts = [r["t"] for r in ticks]
    assert ts == sorted(ts)
    assert 60.0 - max(r["t"] for r in on_disk) <= FLUSH_EVERY_S + 0.1 + 1e-9
    assert summary.energy_j > 0


def test_rounds_keep_the_crash_bound_and_the_eager_start(tmp_path, manual_clock):
    run = track("cost", output_dir=tmp_path, emissions_csv=False, report_html=False,
                sensors=[_FastPower()]).start()
    worst_early, worst = 0.0, 0.0
    for _ in range(120):                # 12 s, looking at the file after every tick
        manual_clock.sleep(0.1)
        now = run.clock()
        lag = now - max(r["t"] for r in _lines(run.run_dir))
        if now < EAGER_FLUSH_S:
            worst_early = max(worst_early, lag)
        else:
            worst = max(worst, lag)
    run.stop()
    assert worst_early < 1e-6           # the first seconds: on disk at every tick
    assert worst <= FLUSH_EVERY_S + 1e-6, worst   # later: at most one round (0.5 s) behind
    assert worst > 0                    # ... and written in rounds, not at every tick


def test_window_marks_stay_in_time_order_with_the_ticks(tmp_path, manual_clock):
    run = track("cost", output_dir=tmp_path, emissions_csv=False, report_html=False,
                sensors=[_FastPower()]).start()
    manual_clock.sleep(3.0)
    for i in range(5):
        with run.window(f"w{i}"):
            manual_clock.sleep(0.23)
        manual_clock.sleep(0.11)
    run.stop()
    recs = _lines(run.run_dir)
    ts = [r["t"] for r in recs]
    assert ts == sorted(ts)
    assert sum("mark" in r for r in recs) == 10
    w = {x.name: x for x in run.summary.windows}
    # 100 W for 0.23 s each: exact on the sampled curve (edges read power at once)
    assert all(math.isclose(w[f"w{i}"].energy_j, 23.0, rel_tol=1e-6) for i in range(5))
