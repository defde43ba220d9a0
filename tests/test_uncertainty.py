"""Every number carries its ± bound (tracker/uncertainty.py): what it is on a live run, and
that a model has none. Coverage of the true error on bursty loads: test_sampled_accuracy.py."""

from __future__ import annotations

import json
import time

import pytest
from conftest import UUIDS, Constant, FakeGPU

from tracker import track
from tracker.uncertainty import STALE_MAX_S

FAST = dict(rate_hz=20, cpu=False, ram=False)


def test_counter_windows_run_and_step_groups_carry_bounds(fake_nvml, tmp_path):
    fake_nvml(FakeGPU(uuid=UUIDS[0], profile=Constant(300.0)))
    with track("bounds", output_dir=tmp_path, **FAST) as run:
        for _ in run.epochs(range(2)):
            for _ in run.steps(range(10)):
                time.sleep(0.05)
    s = run.summary
    # counter reads at both edges, each up to 0.2 s late: ±300 W x 0.2 s (the larger edge)
    for w in s.windows:
        assert w.uncertainty_j == pytest.approx(300.0 * STALE_MAX_S, rel=0.05), w
    assert s.energy_uncertainty_j == pytest.approx(300.0 * STALE_MAX_S, rel=0.05)
    (dev,) = s.devices
    assert dev.uncertainty_j == pytest.approx(s.energy_uncertainty_j)
    # step groups: edges between readings, each ±300 W x (0.05 s + 0.2 s)
    for g in s.steps["groups"]:
        assert g["uncertainty_j"] == pytest.approx(2 * 300.0 * (0.05 + STALE_MAX_S), rel=0.05)
    text = s.format()
    from tracker.units import energy_text  # the bound in the unit that fits: "± 60 J"
    assert f"± {energy_text(s.energy_uncertainty_j)}" in text and "± 60" in text
    saved = json.loads((run.run_dir / "summary.json").read_text())
    assert saved["energy_uncertainty_j"] == pytest.approx(s.energy_uncertainty_j)
    assert saved["windows"][0]["uncertainty_j"] == pytest.approx(s.windows[0].uncertainty_j)


def test_a_modeled_run_has_no_bound(fake_nvml, tmp_path):
    fake_nvml(library_missing=True)
    with track("modeled", output_dir=tmp_path, rate_hz=20) as run, run.window("w"):
        time.sleep(0.3)
    s = run.summary
    assert s.energy_j is not None and s.energy_j > 0
    assert s.energy_uncertainty_j is None and s.windows[0].uncertainty_j is None
    assert "±" not in s.format()


def test_a_job_window_sums_its_members_bounds(fake_nvml, tmp_path, monkeypatch):
    from tracker.job.merge import merge
    monkeypatch.setenv("ENERGY_TRACKER_LOCK_DIR", str(tmp_path / "locks"))
    for var in ("TORCHELASTIC_RUN_ID", "MASTER_ADDR", "MASTER_PORT", "ENERGY_TRACKER_JOB"):
        monkeypatch.delenv(var, raising=False)
    fake_nvml(FakeGPU(uuid=UUIDS[0], profile=Constant(300.0)),
              FakeGPU(uuid=UUIDS[1], profile=Constant(200.0)))
    runs = []
    for rank in (0, 1):
        monkeypatch.setenv("RANK", str(rank))
        monkeypatch.setenv("LOCAL_RANK", str(rank))
        monkeypatch.setenv("WORLD_SIZE", "2")
        monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
        runs.append(track(f"r{rank}", job="bounds-job", output_dir=tmp_path, job_timeout_s=0,
                          gpus=[rank], **FAST).start())
    for r in runs:
        r.begin_window("epoch 0", kind="epoch")
    time.sleep(0.4)
    for r in reversed(runs):
        r.stop()
    s = merge([runs[0]._job.job_dir])
    (w,) = [w for w in s.windows if w.kind == "epoch"]
    assert w.uncertainty_j == pytest.approx((300.0 + 200.0) * STALE_MAX_S, rel=0.05)
    assert s.energy_uncertainty_j == pytest.approx(500.0 * STALE_MAX_S, rel=0.05)
