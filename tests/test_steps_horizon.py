"""Steps on disk bounded: past the `step_detail_steps` horizon, steps are kept as their groups
(step_groups.jsonl), the per-step segments deleted, and every number of the summary is the one
a run that kept every step has; a killed, torn run still rebuilds; an old steps.bin-only run
directory still reads."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import pytest

from tracker import track
from tracker.errors import ConfigError
from tracker.rebuild import rebuild_summary
from tracker.rundir.ledger import Ledger, StepFile
from tracker.rundir.step_groups import read_groups
from tracker.rundir.step_segments import STEP_BYTES, read_step_blocks, read_steps, segments

FAST = dict(cpu=False, ram=False, rate_hz=10, counter_interval_s=0.2, report_html=False,
            emissions_csv=False)


def run_dir_bytes(d: Path) -> int:
    return sum(p.stat().st_size for p in d.iterdir() if p.is_file())


def step_bytes(d: Path) -> int:
    return sum(p.stat().st_size for p in d.iterdir()
               if p.name.startswith("steps") or p.name == "step_groups.jsonl")


# -- the ledger alone: many groups, the size doubling, eval windows inside steps --------------
def _energy_at(ts):
    """E(t) of a load that is not flat (so step energies differ): 300 W + 50 W sin t."""
    import math
    if hasattr(ts, "dtype"):
        import numpy as np
        return 300.0 * ts + 50.0 * (1.0 - np.cos(ts))
    return [300.0 * t + 50.0 * (1.0 - math.cos(t)) for t in ts]


def _rows(n, seed=7):
    rnd = random.Random(seed)
    t, out = 1.0, []
    for i in range(n):
        d = rnd.uniform(0.005, 0.015)
        out.append((i, -1, t, t + d, i, 4, 128 + i % 3))
        t += d + (0.002 if i % 50 == 0 else 0.0)
    return out


MARKED = {"eval": [(100.0, 130.0), (900.5, 901.0)], "checkpoint": [(120.0, 140.0)]}


def _live(rows, path, horizon, numpy=True, batch=4999):
    led = Ledger(_energy_at, [], steps_file=StepFile(path, horizon_steps=horizon),
                 marked=lambda: MARKED)
    if not numpy:
        led._np = None
    for i in range(0, len(rows), batch):
        led.add_steps(rows[i:i + batch])
        led.advance(rows[min(i + batch, len(rows)) - 1][3] - 0.3)
        led.file.flush()
    return led


def _rebuilt(run_dir):
    """What rebuild.py does with the step files: the group records, then the rows after."""
    led = Ledger(_energy_at, [], marked=lambda: MARKED)
    skip = 0
    disk = read_groups(run_dir)
    if disk is not None and disk.to:
        led.restore_steps(disk)
        skip = disk.to
    for start, c in read_step_blocks(run_dir, skip_rows=skip):
        rows = [(start + i, c["parent"][i], c["t_start"][i], c["t_end"][i], c["index"][i],
                 c["samples"][i], c["tokens"][i]) for i in range(len(c["t_start"]))
                if start + i >= skip]
        if rows:
            led.add_steps(rows)
    led.finish()
    return led


def _same_accounts(a, b):
    assert (a.count, a.samples, a.tokens) == (b.count, b.samples, b.tokens)
    assert a.energy_j == pytest.approx(b.energy_j, abs=1e-6)
    assert a.seconds == pytest.approx(b.seconds, abs=1e-9)
    for k in ("eval", "checkpoint"):
        assert a.overlap_j[k] == pytest.approx(b.overlap_j[k], abs=1e-6)
    assert (a.first_start, a.last_end) == (b.first_start, b.last_end)
    ga, gb = a.groups.rows(), b.groups.rows()
    assert a.groups.size == b.groups.size and len(ga) == len(gb)
    for x, y in zip(ga, gb):
        assert {k: v for k, v in x.items() if k != "energy_j"} == \
            {k: v for k, v in y.items() if k != "energy_j"}
        assert x["energy_j"] == pytest.approx(y["energy_j"], abs=1e-6)


@pytest.mark.parametrize("numpy", [True, False])
def test_a_small_horizon_keeps_every_number_of_an_unbounded_ledger(tmp_path, numpy):
    if numpy:
        pytest.importorskip("numpy")
    n = 120_000 if numpy else 30_000     # past 1000 groups of 100 steps: the size doubles
    rows = _rows(n)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    bounded = _live(rows, tmp_path / "a" / "steps.bin", 2000, numpy)
    unbounded = _live(rows, tmp_path / "b" / "steps.bin", None, numpy)
    assert numpy is False or bounded.groups.size > 100     # it doubled
    bounded.finish()
    unbounded.finish()
    _same_accounts(bounded, unbounded)
    # on disk: the bounded run kept ~1.4 horizons of per-step records, the unbounded all
    kept = sum(len(c["t_start"]) for _, c in read_step_blocks(tmp_path / "a"))
    assert kept <= 2000 * 1.5 + 4999
    assert step_bytes(tmp_path / "a") < step_bytes(tmp_path / "b") / 5
    assert segments(tmp_path / "a")[0][0] > 0          # steps.bin itself is gone
    # a rebuild from the files gives the live numbers, for both
    _same_accounts(_rebuilt(tmp_path / "a"), bounded)
    _same_accounts(_rebuilt(tmp_path / "b"), unbounded)


def test_user_reads_give_the_old_part_at_group_resolution(tmp_path):
    rows = _rows(30_000)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    _live(rows, tmp_path / "a" / "steps.bin", 2000).finish()
    _live(rows, tmp_path / "b" / "steps.bin", None).finish()
    got = list(read_steps(tmp_path / "a"))
    every = list(read_steps(tmp_path / "b"))
    assert all(r["resolution"] == "step" for r in every) and len(every) == 30_000
    kinds = [r["resolution"] for r in got]
    assert kinds[0] == "group" and kinds[-1] == "step"
    assert kinds == sorted(kinds)                         # groups first, then steps
    assert sum(r["steps"] for r in got) == 30_000
    assert sum(r["samples"] for r in got) == sum(r["samples"] for r in every)
    assert sum(r["energy_j"] for r in got) == pytest.approx(
        sum(r["energy_j"] for r in every), abs=1e-6)
    # the per-step part is the newest steps, as they were
    tail = [r for r in got if r["resolution"] == "step"]
    assert tail == every[-len(tail):]


def test_horizon_option_is_checked():
    from tracker.config import TrackerConfig
    assert TrackerConfig.from_options(step_detail_steps=None).step_detail_steps is None
    with pytest.raises(ConfigError, match="step_detail_steps"):
        TrackerConfig.from_options(step_detail_steps=10)
    with pytest.raises(ConfigError, match="step_detail_steps"):
        TrackerConfig.from_options(step_detail_steps=True)


# -- the real tracker on the hand-driven clock ---------------------------------------------------
N_STEPS = 12_000
DETAIL = 1_000


def _train(manual_clock, out: Path, detail, *, n=N_STEPS, copy_at=None, copy_to=None):
    """N steps of 5-15 ms (a tick every 0.1 s) in `with track()`; with `copy_at`, the run
    directory is copied after that step, as a SIGKILL would leave it (what was flushed)."""
    rnd = random.Random(3)
    manual_clock.now_s = 1000.0     # every run from the same instant: the same readings
    durations = [rnd.uniform(0.005, 0.015) for _ in range(n)]
    with track("h", output_dir=out, step_detail_steps=detail, **FAST) as run:
        next_tick = manual_clock() + 0.1
        for i in run.steps(range(n), samples=8, tokens=512):
            manual_clock.advance(durations[i])
            if manual_clock() >= next_tick:
                next_tick += 0.1
                for s in manual_clock.samplers:
                    s.tick_now()
            if i == copy_at:
                t_copy = run.clock()
                shutil.copytree(run.run_dir, copy_to)
    copied = {"t": t_copy} if copy_at is not None else {}
    return run, copied


def _numbers(s):
    st = s.steps
    return {"count": st["count"], "samples": st.get("samples"), "tokens": st.get("tokens"),
            "group_size": st["group_size"], "n_groups": len(st["groups"])}


def _close(a, b):
    assert _numbers(a) == _numbers(b)
    assert a.steps["energy_j_in_steps"] == pytest.approx(b.steps["energy_j_in_steps"], abs=1e-6)
    for x, y in zip(a.steps["groups"], b.steps["groups"]):
        keys = ("first_step", "last_step", "steps", "start_s", "end_s", "samples", "tokens")
        assert [x.get(k) for k in keys] == [y.get(k) for k in keys]
        assert x["energy_j"] == pytest.approx(y["energy_j"], abs=1e-6)
    ka, kb = a.breakdown or {}, b.breakdown or {}
    assert set(ka) == set(kb)
    for k in ka:
        ea = ka[k]["energy_j"] if isinstance(ka[k], dict) else ka[k]
        eb = kb[k]["energy_j"] if isinstance(kb[k], dict) else kb[k]
        assert ea == pytest.approx(eb, abs=1e-6), k
    assert a.energy_j == pytest.approx(b.energy_j, abs=1e-6)


def test_tracker_with_a_horizon_matches_an_unbounded_run(clocked_h100, manual_clock, tmp_path):
    bounded, _ = _train(manual_clock, tmp_path / "a", DETAIL)
    unbounded, _ = _train(manual_clock, tmp_path / "b", None)
    sa, sb = bounded.summary, unbounded.summary
    assert sa.steps["count"] == N_STEPS
    _close(sa, sb)
    da, db = bounded.run_dir, unbounded.run_dir
    assert (da / "step_groups.jsonl").exists() and not (da / "steps.bin").exists()
    assert step_bytes(da) < step_bytes(db) / 3
    assert step_bytes(db) >= N_STEPS * STEP_BYTES
    # rebuilt from the files (the group records, then the newest per-step records)
    _close(rebuild_summary(da), sa)
    _close(rebuild_summary(db), sb)


def test_a_killed_torn_run_rebuilds_losing_at_most_the_last_second(clocked_h100, manual_clock,
                                                                  tmp_path):
    at = N_STEPS - 1500
    _, ca = _train(manual_clock, tmp_path / "a", DETAIL, copy_at=at, copy_to=tmp_path / "ka")
    _, cb = _train(manual_clock, tmp_path / "b", None, copy_at=at, copy_to=tmp_path / "kb")
    for d in (tmp_path / "ka", tmp_path / "kb"):
        # the write a SIGKILL cut: half a block of steps, half a group record
        last = segments(d)[-1][1]
        data = last.read_bytes()
        last.write_bytes(data + data[:BLOCK_TORN])
        with open(d / "step_groups.jsonl", "ab") as f:
            line = (d / "step_groups.jsonl").read_bytes().splitlines()[-1]
            f.write(line[: len(line) // 2])
        (d / "summary.json").unlink()
    ka = rebuild_summary(tmp_path / "ka", status="killed")
    kb = rebuild_summary(tmp_path / "kb", status="killed")
    _close(ka, kb)     # the horizon loses nothing a full steps.bin would have kept
    rows = list(read_steps(tmp_path / "ka"))
    assert rows[0]["resolution"] == "group"
    assert sum(r["steps"] for r in rows) == ka.steps["count"]
    lost_s = ca["t"] - rows[-1]["t_end"]
    print(f"killed at t={ca['t']:.2f} s: steps up to {lost_s:.2f} s before it rebuilt; "
          f"{ka.steps['count']:,} steps, notes {[n for n in ka.notes if 'step' in n]}")
    assert 0 <= lost_s <= 1.0, lost_s
    # the torn record is not read: the rebuild went on from the last whole one
    whole = (tmp_path / "ka" / "step_groups.jsonl").read_bytes().splitlines()[-2]
    assert read_groups(tmp_path / "ka").to == json.loads(whole)["to"] < ka.steps["count"]
    assert cb["t"] == ca["t"]


BLOCK_TORN = 8 + 3 * STEP_BYTES     # a block head and a few steps of its columns


def test_an_old_run_directory_with_only_steps_bin_still_reads(clocked_h100, manual_clock,
                                                             tmp_path):
    run, _ = _train(manual_clock, tmp_path / "b", None, n=3000)
    d = run.run_dir
    (d / "step_groups.jsonl").unlink()            # as an older release left it
    assert [p.name for p in d.iterdir() if p.name.startswith("step")] == ["steps.bin"]
    rows = list(read_steps(d))
    assert len(rows) == 3000 and {r["resolution"] for r in rows} == {"step"}
    _close(rebuild_summary(d), run.summary)
    json.loads((d / "windows.json").read_text())   # still written, still JSON


@pytest.mark.parametrize("forged", [
    b'{"v":1,"to":5,"size":1,"pieces":[[3,5,0,1,0.0,1.0,1.0,0,0]],"ledger":{}}\n',  # a gap
    b'{"v":1,"to":"x"}\n',
    b"[" * 100_000 + b"\n",                                                       # too deep
    b"x" * (2 << 20) + b"\n",                                                     # too long
])
def test_a_forged_group_file_is_refused_and_the_per_step_records_used(tmp_path, forged):
    rows = _rows(6000)
    (tmp_path / "b").mkdir()
    live = _live(rows, tmp_path / "b" / "steps.bin", None)
    live.finish()
    (tmp_path / "b" / "step_groups.jsonl").write_bytes(forged)
    disk = read_groups(tmp_path / "b")
    assert disk is not None and disk.to == 0 and "step_groups.jsonl" in disk.note
    _same_accounts(_rebuilt(tmp_path / "b"), live)
    assert len(list(read_steps(tmp_path / "b"))) == 6000


def test_a_group_file_that_cannot_be_written_keeps_every_per_step_record(tmp_path):
    rows = _rows(20_000)
    for d in ("a", "b"):
        (tmp_path / d).mkdir()
    target = tmp_path / "elsewhere"
    (tmp_path / "a" / "step_groups.jsonl").symlink_to(target)   # planted: never followed
    bounded = _live(rows, tmp_path / "a" / "steps.bin", 2000)
    bounded.finish()
    unbounded = _live(rows, tmp_path / "b" / "steps.bin", None)
    unbounded.finish()
    _same_accounts(bounded, unbounded)
    assert not target.exists()
    kept = sum(len(c["t_start"]) for _, c in read_step_blocks(tmp_path / "a"))
    assert kept == 20_000              # nothing deleted: no record holds those steps
