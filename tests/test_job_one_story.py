"""In a job, every rank's stop() tells the job's story (issue 22, item 3): the job summary,
whichever rank claimed the CPU and RAM; a rank that measured nothing itself never says
"nothing could be measured" for a job that measured; a rank that stops while others still
run returns the job as it stands, `partial`, naming them."""

from __future__ import annotations

import json
import threading
import time

import pytest
from conftest import UUIDS, Constant, FakeGPU
from test_job_torchrun import TRAIN, finish, job_env, only_job_dir, torchrun

from tracker import track

FAST = dict(rate_hz=50, counter_interval_s=0.2, cpu=False, ram=False)


@pytest.fixture
def as_rank(monkeypatch, tmp_path):
    monkeypatch.setenv("ENERGY_TRACKER_LOCK_DIR", str(tmp_path / "locks"))
    for var in ("TORCHELASTIC_RUN_ID", "MASTER_ADDR", "MASTER_PORT", "ENERGY_TRACKER_JOB"):
        monkeypatch.delenv(var, raising=False)

    def set_rank(rank: int) -> None:
        for k, v in {"RANK": rank, "LOCAL_RANK": rank, "WORLD_SIZE": 2,
                     "LOCAL_WORLD_SIZE": 2, "ENERGY_TRACKER_NODE": "node-a"}.items():
            monkeypatch.setenv(k, str(v))
    return set_rank


def test_a_rank_that_measured_nothing_returns_the_job(fake_nvml, as_rank, tmp_path):
    fake_nvml(FakeGPU(uuid=UUIDS[0], profile=Constant(300.0)))   # one GPU: rank 0's
    as_rank(0)
    a = track("a", job="story", output_dir=tmp_path, job_timeout_s=5, **FAST).start()
    as_rank(1)
    b = track("b", job="story", output_dir=tmp_path, job_timeout_s=5, **FAST).start()
    time.sleep(0.4)
    got: dict[str, object] = {}
    threads = [threading.Thread(target=lambda r=r, n=n: got.__setitem__(n, r.stop()))
               for r, n in ((a, "a"), (b, "b"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    job = json.loads((a._job.job_dir / "summary.json").read_text())
    assert b.own_summary is not None and not b.own_summary.devices   # b measured nothing
    for name in ("a", "b"):
        s = got[name]
        assert s.energy_j == pytest.approx(job["energy_j"], rel=0.01) and s.energy_j > 0
        assert "nothing could be measured" not in s.format()
        assert s.job and s.job["job_id"] == job["job"]["job_id"]
    assert b.summary is got["b"]                    # run.summary is what stop() returned


def test_a_rank_that_stops_first_gets_the_job_so_far_marked_partial(fake_nvml, as_rank,
                                                                    tmp_path):
    fake_nvml(FakeGPU(uuid=UUIDS[0], profile=Constant(300.0)))
    as_rank(0)
    a = track("a", job="early", output_dir=tmp_path, job_timeout_s=0.3, **FAST).start()
    as_rank(1)
    b = track("b", job="early", output_dir=tmp_path, job_timeout_s=0.3, **FAST).start()
    time.sleep(0.3)
    early = b.stop()                 # rank 0 is still running
    assert early.job is not None and early.job.get("partial") is True
    assert early.job["still_running"] == [0]
    assert early.energy_j > 0
    assert any("still running" in n for n in early.notes)
    final = a.stop()
    assert not (final.job or {}).get("partial")
    assert final.energy_j >= early.energy_j


@pytest.mark.slow
def test_every_torchrun_rank_returns_the_job_summary(tmp_path):
    stops = tmp_path / "stops"
    stops.mkdir()
    env = job_env(tmp_path, TRAIN_STOP_OUT=str(stops), TRAIN_STEPS="10")
    rc, out = finish(torchrun(["--nproc_per_node=2", str(TRAIN)], env))
    assert rc == 0, out[-4000:]
    job = json.loads((only_job_dir(tmp_path / "runs") / "summary.json").read_text())
    ranks = [json.loads((stops / f"stop-rank{r}.json").read_text()) for r in (0, 1)]
    for r in ranks:
        assert r["energy_j"] > 0
        assert r["energy_j"] == pytest.approx(job["energy_j"], rel=0.01)
        assert "nothing could be measured" not in r["text"]
