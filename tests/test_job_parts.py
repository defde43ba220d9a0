"""The job layer's parts, in one process: device claims, the job directory, the merge, the
single emissions row. (Real launchers: test_job_torchrun.py, test_job_launchers.py.)"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from conftest import UUIDS, Constant, FakeGPU

from tracker import ConfigError, track
from tracker.job.claims import ClaimBook
from tracker.job.identity import detect
from tracker.job.layout import open_job_dir
from tracker.job.merge import merge
from tracker.rundir.runlog import append_emissions_row, upsert_emissions_row

FAST = dict(rate_hz=50, counter_interval_s=0.2, cpu=False, ram=False)


@pytest.fixture
def job_env(monkeypatch, tmp_path):
    """Make this process look like rank `r` of a 2-process torchrun job on one node."""
    monkeypatch.setenv("ENERGY_TRACKER_LOCK_DIR", str(tmp_path / "locks"))
    for var in ("TORCHELASTIC_RUN_ID", "MASTER_ADDR", "MASTER_PORT", "ENERGY_TRACKER_JOB"):
        monkeypatch.delenv(var, raising=False)

    def as_rank(rank: int, world: int = 2, node: str = "node-a", restart: int = 0) -> None:
        monkeypatch.setenv("RANK", str(rank))
        monkeypatch.setenv("LOCAL_RANK", str(rank % 2))
        monkeypatch.setenv("WORLD_SIZE", str(world))
        monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
        monkeypatch.setenv("ENERGY_TRACKER_NODE", node)
        monkeypatch.setenv("TORCHELASTIC_RESTART_COUNT", str(restart))
    return as_rank


def two_gpus(fake_nvml) -> list[FakeGPU]:
    gpus = [FakeGPU(uuid=UUIDS[0], profile=Constant(300.0)),
            FakeGPU(uuid=UUIDS[1], profile=Constant(200.0))]
    fake_nvml(*gpus)
    return gpus


def rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


# -- claims ---------------------------------------------------------------------------------------
def test_two_trackers_in_one_process_share_nothing(fake_nvml, job_env, tmp_path):
    two_gpus(fake_nvml)
    job_env(0)
    a = track("a", job="unit", output_dir=tmp_path, job_timeout_s=2, **FAST).start()
    job_env(1)
    b = track("b", job="unit", output_dir=tmp_path, job_timeout_s=2, **FAST).start()
    time.sleep(0.3)
    b.stop()
    a.stop()
    assert [d.details["uuid"] for d in a.own_summary.devices] == [UUIDS[0]]
    assert [d.details["uuid"] for d in b.own_summary.devices] == [UUIDS[1]]
    s = json.loads((a._job.job_dir / "summary.json").read_text())
    assert sorted(d["mean_power_w"] for d in s["devices"]) == pytest.approx([200.0, 300.0],
                                                                              rel=0.01)
    assert sum(p["energy_j"] for p in s["breakdown"].values()) == pytest.approx(s["energy_j"],
                                                                               abs=1e-9)
    assert set(s["idle"]) == {"node-a/gpu0", "node-a/gpu1"}


def test_a_claim_is_held_until_the_holder_dies(tmp_path):
    """POSIX record locks belong to the process: another process cannot take the claim, and
    it is free again the moment the holder is killed (no stale lock to clean up)."""
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {str(Path(__file__).parent.parent)!r})
        from pathlib import Path
        from tracker.job.claims import ClaimBook
        book = ClaimBook("job", {{"pid": 1}}, root=Path({str(tmp_path)!r}))
        assert book.try_claim("dev-GPU-1")
        print("held", flush=True)
        time.sleep(60)
    """)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        book = ClaimBook("job", {"pid": os.getpid()}, root=tmp_path)
        assert not book.try_claim("dev-GPU-1")
        assert book.holder("dev-GPU-1") == {"pid": 1}
        holder.send_signal(signal.SIGKILL)
        holder.wait(10)
        assert book.try_claim("dev-GPU-1")
        book.release()
    finally:
        holder.kill()


def test_unusable_lock_dir_falls_back_to_local_ranks(fake_nvml, job_env, tmp_path, monkeypatch):
    two_gpus(fake_nvml)
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    monkeypatch.setenv("ENERGY_TRACKER_LOCK_DIR", str(blocker))
    job_env(1)
    with track("fallback", job="unit", output_dir=tmp_path, job_timeout_s=0, **FAST) as run:
        time.sleep(0.1)
    assert [d.details["uuid"] for d in run.own_summary.devices] == [UUIDS[1]]   # LOCAL_RANK 1
    assert any("device claims unavailable" in n for n in run.own_summary.notes)


# -- directory ------------------------------------------------------------------------------------
def test_two_launches_that_reuse_an_id_are_two_jobs(tmp_path):
    env = {"TORCHELASTIC_RUN_ID": "same-id", "RANK": "0", "WORLD_SIZE": "2"}
    first = detect(env, agree=False)
    assert first is not None
    from dataclasses import replace
    a = open_job_dir(tmp_path, replace(first, launch="token-a"), "x")
    again = open_job_dir(tmp_path, replace(first, launch="token-a"), "x")
    b = open_job_dir(tmp_path, replace(first, launch="token-b"), "x")
    assert a == again and a.name == "x-torchrun-same-id" and b.name == "x-torchrun-same-id-2"
    named = detect({}, job="mine", agree=False)
    assert named is not None
    assert open_job_dir(tmp_path, named, "x") == open_job_dir(tmp_path, named, "x")


def test_explicit_job_id_appends_later_launches_as_attempts(fake_nvml, job_env, tmp_path):
    two_gpus(fake_nvml)
    job_env(0, world=1)
    for _ in range(2):
        with track("resume", job="llama-ft", output_dir=tmp_path, job_timeout_s=0, **FAST):
            time.sleep(0.2)
    job = tmp_path / "resume-env-llama-ft"     # <name>-<launcher>-<job id>
    s = json.loads((job / "summary.json").read_text())
    assert len(list(job.glob("*/rank0*"))) == 2
    assert len(s["job"]["attempts"]) == 2           # each launch is an attempt of the job
    assert s["energy_j"] == pytest.approx(sum(
        json.loads(p.read_text())["energy_j"] for p in job.glob("*/rank0*/summary.json")),
        rel=1e-12)
    assert len(rows(tmp_path / "emissions.csv")) == 1     # one row for the job, refreshed


# -- merge ----------------------------------------------------------------------------------------
def test_a_device_measured_twice_at_once_is_counted_once(fake_nvml, job_env, tmp_path,
                                                         monkeypatch):
    two_gpus(fake_nvml)
    job_env(0)
    # two lock directories: the claims cannot see each other (a misconfigured cluster)
    monkeypatch.setenv("ENERGY_TRACKER_LOCK_DIR", str(tmp_path / "locks-a"))
    a = track("a", job="dup", output_dir=tmp_path, job_timeout_s=0, gpus=[0], **FAST).start()
    monkeypatch.setenv("ENERGY_TRACKER_LOCK_DIR", str(tmp_path / "locks-b"))
    job_env(1)
    b = track("b", job="dup", output_dir=tmp_path, job_timeout_s=0, gpus=[0], **FAST).start()
    time.sleep(0.3)
    b.stop()
    a.stop()
    s = merge([a._job.job_dir])
    assert len(s.devices) == 1
    assert s.energy_j == pytest.approx(a.own_summary.energy_j, rel=1e-9)
    assert any("counted once" in n for n in s.notes)


def test_job_report_of_a_job_that_never_ended(fake_nvml, job_env, tmp_path):
    """The job summary is missing (every process died before writing it): `report` merges the
    members, writes the summary and the one emissions row; a second report keeps one row."""
    two_gpus(fake_nvml)
    job_env(0, world=1)
    with track("r", job="orphan", output_dir=tmp_path, emissions_csv=False, job_timeout_s=0,
               **FAST):
        time.sleep(0.2)
    job = tmp_path / "r-env-orphan"     # <name>-<launcher>-<job id>
    (job / "summary.json").unlink()
    from tracker.cli import main
    assert main(["report", str(job)]) == 0
    assert main(["report", str(job), "--rebuild"]) == 0
    assert json.loads((job / "summary.json").read_text())["status"] == "finished"
    assert len(rows(tmp_path / "emissions.csv")) == 1


def test_job_option_is_checked():
    with pytest.raises(ConfigError, match="job must be"):
        track("x", job=3)
    with pytest.raises(ConfigError, match="job must be"):
        track("x", job="  ")
    with pytest.raises(ConfigError, match="job_timeout_s"):
        track("x", job_timeout_s=-1)


# -- emissions row --------------------------------------------------------------------------------
def test_upsert_replaces_the_row_of_the_same_run_id(tmp_path):
    append_emissions_row(tmp_path, {"run_id": "other", "emissions": 1.0})
    upsert_emissions_row(tmp_path, {"run_id": "job", "emissions": 2.0})
    upsert_emissions_row(tmp_path, {"run_id": "job", "emissions": 3.0})
    append_emissions_row(tmp_path, {"run_id": "later", "emissions": 4.0})
    got = [(r["run_id"], r["emissions"]) for r in rows(tmp_path / "emissions.csv")]
    assert got == [("other", "1.0"), ("job", "3.0"), ("later", "4.0")]


def test_options_of_joined_scripts():
    from tracker.follow import joined_options

    none = {"region": None, "gco2_per_kwh": None, "mix": None, "live_intensity": None}
    got = joined_options([{"region": "DE"}, {"region": "DE"}], own=none, own_pue_given=False)
    assert got.factor.region_code == "DE" and "given none" in got.notes[0]
    got = joined_options([{"region": "DE"}], own=dict(none, region="FR"), own_pue_given=False)
    assert got.factor is None and "which apply" in got.notes[0]
    got = joined_options([{"region": "FR"}], own=dict(none, region="FR"), own_pue_given=False)
    assert got.factor is None and not got.notes
    got = joined_options([{"region": "DE"}, {"region": "PL"}], own=none, own_pue_given=False)
    assert got.factor is None and got.notes
    got = joined_options([{"pue": 1.3}, {"pue": 1.3}], own=none, own_pue_given=False)
    assert got.pue == 1.3 and got.factor is None
    assert joined_options([{"pue": 1.3}], own=none, own_pue_given=True).pue is None
