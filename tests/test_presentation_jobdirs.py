"""Job directories read `<name>-<launcher>-<short id>`, stay unique, and a job directory named by
its bare id (the layout before) is still joined, found and read."""

from __future__ import annotations

import json
import re
import time
from dataclasses import replace

import pytest

from tracker import track
from tracker.job.identity import detect
from tracker.job.layout import (
    JOB_MANIFEST,
    find_job_dir,
    is_job_dir,
    job_dir_name,
    job_manifest,
    open_job_dir,
    short_id,
)

FAST = dict(cpu=False, ram=False, rate_hz=50, counter_interval_s=0.2, report_html=False)
TORCHRUN_UUID = "3f9a1c2b-7d4e-4a1b-9c3d-1234567890ab"
SAFE = re.compile(r"^[A-Za-z0-9._-]+$")


def torchrun(run_id: str = TORCHRUN_UUID, rank: int = 0):
    ident = detect({"TORCHELASTIC_RUN_ID": run_id, "RANK": str(rank), "WORLD_SIZE": "2",
                    "LOCAL_RANK": str(rank), "LOCAL_WORLD_SIZE": "2"}, agree=False)
    assert ident is not None
    return ident


def slurm():
    ident = detect({"SLURM_JOB_ID": "4242", "SLURM_STEP_ID": "0", "SLURM_PROCID": "0",
                    "SLURM_NTASKS": "2", "SLURM_STEP_NUM_TASKS": "2"}, agree=False)
    assert ident is not None
    return ident


def test_names_are_readable_and_safe():
    assert job_dir_name(torchrun(), "multigpu_torchrun_train") == \
        "multigpu_torchrun_train-torchrun-3f9a1c2b"
    assert job_dir_name(slurm(), "llama ft/v2") == "llama-ft-v2-slurm-4242.0"
    named = detect({}, job="nightly", agree=False)
    assert named is not None and job_dir_name(named, "train") == "train-job-nightly"
    for ident, name in ((torchrun(), "a/../b c"), (slurm(), ""), (torchrun("x" * 200), "é" * 99)):
        text = job_dir_name(ident, name)
        assert SAFE.match(text) and ".." not in text and len(text) <= 80, text
    assert short_id(torchrun()) == TORCHRUN_UUID[:8]


def test_all_ranks_share_one_directory_and_job_json_keeps_the_uuid(tmp_path):
    a = open_job_dir(tmp_path, torchrun(rank=0), "train")
    b = open_job_dir(tmp_path, torchrun(rank=1), "train")
    assert a == b and a.name == "train-torchrun-3f9a1c2b"
    assert json.loads((a / JOB_MANIFEST).read_text())["job_id"] == TORCHRUN_UUID


def test_two_jobs_with_one_short_id_get_two_directories(tmp_path):
    first = torchrun(TORCHRUN_UUID)
    other = torchrun("3f9a1c2b-0000-4000-8000-000000000000")   # same first 8 hex digits
    assert short_id(first) == short_id(other)
    a, b = open_job_dir(tmp_path, first, "train"), open_job_dir(tmp_path, other, "train")
    assert a != b and b.name == f"{a.name}-2"
    assert open_job_dir(tmp_path, other, "train") == b          # and each is found again
    # one id, two launches (distinct tokens): two jobs, as before
    c = open_job_dir(tmp_path / "two", replace(first, launch="token-a"), "dev")
    d = open_job_dir(tmp_path / "two", replace(first, launch="token-b"), "dev")
    assert c != d and {c.name, d.name} == {"dev-torchrun-3f9a1c2b", "dev-torchrun-3f9a1c2b-2"}


def test_a_process_with_another_name_finds_the_job(tmp_path):
    a = open_job_dir(tmp_path, torchrun(rank=0), "train")
    assert open_job_dir(tmp_path, torchrun(rank=1), "the-cli-wrapper") == a
    assert find_job_dir(tmp_path, torchrun(rank=1)) == a


def test_an_old_uuid_named_job_directory_is_still_joined_and_read(fake_nvml, tmp_path,
                                                                  monkeypatch):
    from conftest import UUIDS, Constant, FakeGPU
    fake_nvml(FakeGPU(uuid=UUIDS[0], profile=Constant(300.0)))
    monkeypatch.setenv("ENERGY_TRACKER_LOCK_DIR", str(tmp_path / "locks"))
    ident = detect({}, job="resumed", agree=False)
    assert ident is not None
    old = tmp_path / ident.job_id                    # the layout before: the bare job id
    old.mkdir()
    (old / JOB_MANIFEST).write_text(json.dumps(job_manifest(ident, "resume")))
    assert open_job_dir(tmp_path, ident, "resume") == old
    with track("resume", job="resumed", output_dir=tmp_path, job_timeout_s=0, **FAST):
        time.sleep(0.2)
    assert sorted(p.name for p in tmp_path.iterdir() if is_job_dir(p)) == ["resumed"]
    s = json.loads((old / "summary.json").read_text())
    assert s["job"]["job_id"] == "resumed" and s["energy_j"] > 0
    from tracker.cli import main
    assert main(["report", str(old)]) == 0


@pytest.mark.parametrize("manifest", ["another job", "damaged", "none"])
def test_a_directory_with_the_name_but_not_the_job_is_not_joined(tmp_path, manifest):
    ident = torchrun()
    d = tmp_path / job_dir_name(ident, "train")
    d.mkdir()
    if manifest == "another job":
        (d / JOB_MANIFEST).write_text(json.dumps(job_manifest(torchrun("other-id"), "train")))
    elif manifest == "damaged":
        (d / JOB_MANIFEST).write_text("{not json")
    assert find_job_dir(tmp_path, ident) is None
    if manifest == "another job":   # a fresh, numbered directory; the other is untouched
        assert open_job_dir(tmp_path, ident, "train").name == f"{d.name}-2"
