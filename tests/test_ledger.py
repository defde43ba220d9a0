"""The ledger (steps settled once the curve is final, streamed to steps.bin) and curve
compaction: memory that does not grow with the run, numbers that do not change."""

from __future__ import annotations

import math
import random
import time

import pytest
from conftest import condensed, wait_for

from tracker import track
from tracker.curve import EnergyCurve
from tracker.rebuild import rebuild_summary
from tracker.rundir.ledger import MAX_STEP_GROUPS, Ledger, StepFile, StepGroups, read_steps

FAST = dict(cpu=False, ram=False, rate_hz=50, counter_interval_s=0.2)


class Dev:
    """A device with a curve: 250 W + noise, sampled at 10 Hz, counter anchors every 1 s."""

    def __init__(self, seconds: float = 60.0, seed: int = 1):
        rnd = random.Random(seed)
        self.curve = EnergyCurve()
        self.util_t, self.util_pct = [], []
        e = 0.0
        for k in range(int(seconds * 10) + 1):
            t = k / 10
            w = 250 + 50 * math.sin(t) + rnd.random() * 10
            self.curve.add_power(t, w)
            e += w * 0.1
            if k % 10 == 0:
                self.curve.add_counter(t, 1e6 + e)
        self.sensor = type("S", (), {"name": "gpu0", "method": "counter"})()
        self.lost_at = None


def steps(n: int, start: float = 1.0, dur: float = 0.004, gap: float = 0.001):
    t = start
    for i in range(n):
        yield (i, -1, t, t + dur, i, 8, 256)
        t += dur + gap


def run_ledger(rows, dev, *, numpy: bool, path=None, marked=None, batch=997):
    led = Ledger(lambda ts: _e(dev, ts), [dev], steps_file=StepFile(path) if path else None,
                 marked=(lambda: marked) if marked else None)
    if not numpy:
        led._np = None
    rows = list(rows)
    for i in range(0, len(rows), batch):
        led.add_steps(rows[i:i + batch])
        led.advance(rows[min(i + batch, len(rows)) - 1][3] - 0.5)   # a lagging frontier
    led.finish()
    return led


def _e(dev, ts):
    if hasattr(ts, "dtype"):
        return dev.curve.energy_at_np(ts)
    return dev.curve.energy_at_sorted(list(ts))


@pytest.mark.parametrize("numpy", [True, False])
def test_steps_settle_to_their_curve_energy(tmp_path, numpy):
    pytest.importorskip("numpy") if numpy else None
    dev = Dev()
    rows = list(steps(5000))
    led = run_ledger(rows, dev, numpy=numpy, path=tmp_path / "steps.bin")
    assert led.count == 5000 and led.samples == 40000 and led.tokens == 5000 * 256
    on_disk = list(read_steps(tmp_path / "steps.bin"))
    assert len(on_disk) == 5000
    for r, row in zip(on_disk, rows):
        assert r["t_start"] == row[2] and r["index"] == row[4]
        assert r["energy_j"] == pytest.approx(dev.curve.energy_between(row[2], row[3]),
                                              rel=1e-12, abs=1e-9)
    assert led.energy_j == pytest.approx(sum(r["energy_j"] for r in on_disk), rel=1e-12)
    groups = led.groups.rows()
    assert sum(g["steps"] for g in groups) == 5000
    assert sum(g["energy_j"] for g in groups) == pytest.approx(led.energy_j, rel=1e-12)


def test_numpy_and_python_paths_agree(tmp_path):
    pytest.importorskip("numpy")
    dev = Dev()
    rows = list(steps(3000))
    a = run_ledger(rows, dev, numpy=True)
    b = run_ledger(rows, dev, numpy=False)
    assert a.energy_j == pytest.approx(b.energy_j, rel=1e-12)
    ga, gb = a.groups.rows(), b.groups.rows()
    assert [g["steps"] for g in ga] == [g["steps"] for g in gb]
    assert all(x["energy_j"] == pytest.approx(y["energy_j"], rel=1e-9) for x, y in zip(ga, gb))


def test_groups_are_bounded_and_independent_of_batching():
    g1, g2 = StepGroups(), StepGroups()
    n = 20 * MAX_STEP_GROUPS + 7
    t0 = [i * 0.01 for i in range(n)]
    t1 = [x + 0.005 for x in t0]
    e = [1.0] * n
    idx = list(range(n))
    ones = [1] * n
    g1.add(t0, t1, e, idx, ones, ones)
    for i in range(0, n, 333):
        j = min(n, i + 333)
        g2.add(t0[i:j], t1[i:j], e[i:j], idx[i:j], ones[i:j], ones[i:j])
    assert g1.rows() == g2.rows()
    rows = g1.rows()
    assert len(rows) <= MAX_STEP_GROUPS and sum(r["steps"] for r in rows) == n
    assert all(r["steps"] == rows[0]["steps"] for r in rows[:-1])


def test_overlapping_steps_count_once_in_the_union():
    dev = Dev()
    rows = [(0, -1, 1.0, 2.0, 0, 0, 0), (1, -1, 1.5, 3.0, 1, 0, 0), (2, -1, 1.6, 1.9, 2, 0, 0)]
    led = run_ledger(rows, dev, numpy=False)
    assert led.energy_j == pytest.approx(dev.curve.energy_between(1.0, 3.0), rel=1e-12)
    assert led.seconds == pytest.approx(2.0)


def test_eval_inside_steps_goes_to_steps_and_the_parts_add_up():
    dev = Dev()
    rows = list(steps(400, start=2.0))
    marked = {"eval": [(2.5, 3.0), (10.0, 12.0)], "checkpoint": [(11.0, 13.0)]}
    led = run_ledger(rows, dev, numpy=False, marked=marked)
    parts = led.breakdown(30.0, marked, dev.curve.energy_at, ["counter"])
    assert sum(p["energy_j"] for p in parts.values()) == pytest.approx(
        dev.curve.energy_between(0.0, 30.0), abs=1e-9)
    # eval [10, 12] is after the steps (they end at 4.0): all of it is eval; the checkpoint
    # counts only outside eval
    assert parts["eval"]["seconds"] == pytest.approx(2.0 + 0.5 - led.overlap_s["eval"])
    assert parts["checkpoint"]["seconds"] == pytest.approx(1.0)


def test_a_truncated_steps_file_keeps_its_whole_blocks(tmp_path):
    dev = Dev()
    path = tmp_path / "steps.bin"
    run_ledger(list(steps(1000)), dev, numpy=False, path=path, batch=100)
    data = path.read_bytes()
    path.write_bytes(data[:-10])                    # a crash in the middle of the last block
    got = list(read_steps(path))
    assert 800 <= len(got) < 1000 and all(not math.isnan(r["energy_j"]) for r in got)


# -- curve compaction ----------------------------------------------------------------------------
def test_compaction_keeps_totals_and_pinned_energies():
    a, b = Dev(600).curve, Dev(600).curve
    pins = [33.3, 100.05, 412.2]
    n = len(a)
    dropped = a.compact(500.0, pins, 60.0)
    assert dropped > 0.9 * (n * 500 / 600) and len(a) < n / 5
    assert a.total_j == b.total_j
    for p in [0.0, *pins, 60.0, 480.0, 500.0, 550.0, 599.9]:
        assert a.energy_at(p) == pytest.approx(b.energy_at(p), abs=1e-9)


def test_compaction_in_a_live_run_changes_no_reported_number(fake_h100, tmp_path, monkeypatch):
    """Compaction forced every tick with a 0.5 s memory: the summary (windows, steps,
    breakdown) equals the one rebuilt from the full-resolution log."""
    import tracker.checkpoint as checkpoint
    monkeypatch.setattr(checkpoint, "RECENT_S", 0.5)
    monkeypatch.setattr(checkpoint, "SKELETON_S", 0.3)
    monkeypatch.setattr(checkpoint, "COMPACT_EVERY_S", 0.0)
    with track("compact", output_dir=tmp_path, **FAST) as run:
        for _ in run.epochs(range(3)):
            for _ in run.steps(range(20)):
                time.sleep(0.01)
            with run.window("eval", kind="eval"):
                time.sleep(0.1)
    live = run.summary
    curve = run.devices[0].curve
    assert curve.compacted_until > 0.3 and len(curve) < curve.power_samples   # compacted
    rebuilt = rebuild_summary(run.run_dir, status="finished")
    assert live.energy_j == pytest.approx(rebuilt.energy_j, rel=1e-12)
    for w, r in zip(live.windows, rebuilt.windows):
        assert w.energy_j == pytest.approx(r.energy_j, rel=1e-9, abs=1e-9)
    assert live.steps["energy_j_in_steps"] == pytest.approx(
        rebuilt.steps["energy_j_in_steps"], rel=1e-9)
    for k, p in live.breakdown.items():
        assert p["energy_j"] == pytest.approx(rebuilt.breakdown[k]["energy_j"], rel=1e-9,
                                              abs=1e-9)


# -- snapshots and segments ------------------------------------------------------------------------
def test_segments_snapshots_and_a_rebuild_equal_to_the_live_run(fake_h100, tmp_path,
                                                                 monkeypatch):
    """Checkpoints every 0.7 s: raw logs rotated and condensed, a snapshot of the state; the
    rebuild from the last snapshot plus what follows gives the live numbers."""
    import tracker.checkpoint as checkpoint
    import tracker.rundir.snapshot as snapshot
    monkeypatch.setattr(snapshot, "SEGMENT_S", 0.7)
    monkeypatch.setattr(checkpoint, "RECENT_S", 0.3)
    monkeypatch.setattr(checkpoint, "SKELETON_S", 0.2)
    monkeypatch.setattr(checkpoint, "COMPACT_EVERY_S", 0.0)
    with track("segments", output_dir=tmp_path, **FAST) as run:
        for _ in run.epochs(range(4)):
            for _ in run.steps(range(25)):
                time.sleep(0.01)
            with run.window("eval", kind="eval"):
                time.sleep(0.15)
    live = run.summary
    wait_for(lambda: condensed(run.run_dir), "the last condensing thread")
    names = sorted(p.name for p in run.run_dir.iterdir())
    assert "snapshot.json" in names and any(n.startswith("timeline.") for n in names)
    assert not any(n.startswith("samples.") and n != "samples.jsonl" for n in names)
    rebuilt = rebuild_summary(run.run_dir, status="finished")
    assert rebuilt.energy_j == pytest.approx(live.energy_j, rel=1e-12)
    assert rebuilt.duration_s == pytest.approx(live.duration_s)
    assert [w.energy_j for w in rebuilt.windows] == pytest.approx(
        [w.energy_j for w in live.windows], rel=1e-9)
    assert rebuilt.steps["count"] == live.steps["count"] == 100
    assert rebuilt.steps["energy_j_in_steps"] == pytest.approx(
        live.steps["energy_j_in_steps"], rel=1e-9)
    for k, p in live.breakdown.items():
        assert p["energy_j"] == pytest.approx(rebuilt.breakdown[k]["energy_j"], rel=1e-9,
                                              abs=1e-9)
    # the condensed timeline holds 1 s power buckets for the report
    # the condensed timeline: per second [min, mean, max W, n, dt, j], j at the counter read
    rows = [r for _, p in snapshot.timelines(run.run_dir) for r in snapshot.read_timeline(p)
            if "d" in r]
    assert rows and all(r["d"]["gpu0"][1] == pytest.approx(300.0) for r in rows)
    assert all(r["t"] == int(r["t"]) and 0 <= r["d"]["gpu0"][4] < 1 for r in rows)
    # j is the energy curve's value then: 300 W x the run time it was read at
    for r in rows:
        *_, dt, j = r["d"]["gpu0"]
        assert j == pytest.approx(300.0 * (r["t"] + dt), abs=0.5)
