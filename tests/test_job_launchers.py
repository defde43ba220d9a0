"""Real `srun` (a single-host SLURM) and real `mpirun` (Open MPI) launching two tracked tasks:
the job is found from the variables they set, one job directory, each device once.

`.ci/run` installs Open MPI and a single-host SLURM (slurmctld + slurmd + munge) and starts
them; without them these tests are skipped with the reason printed, and fail under CI=true."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from services import require_service
from test_job_torchrun import assert_each_device_once, csv_rows, job_env, only_job_dir

HERE = Path(__file__).parent
SCRIPT = HERE / "launch" / "track_only.py"
pytestmark = pytest.mark.slow


def _slurm_up() -> str:
    if not shutil.which("srun"):
        return "srun not installed (SLURM); .ci/run installs and starts a single-host SLURM"
    try:
        up = subprocess.run(["sinfo", "-h", "-o", "%a"], capture_output=True, text=True,
                            timeout=10)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"sinfo failed: {e}"
    if up.returncode != 0 or "up" not in up.stdout:
        return f"no SLURM controller answering ({up.stderr.strip()[:200]})"
    return ""


def _mpi_up() -> str:
    return "" if shutil.which("mpirun") else "mpirun not installed (Open MPI; .ci/run installs it)"


def _check(tmp_path: Path, summary_launcher: str) -> dict:
    root = tmp_path / "runs"
    job = only_job_dir(root)
    s = json.loads((job / "summary.json").read_text())
    assert s["status"] == "finished"
    assert s["job"]["world_size"] == 2
    assert_each_device_once(s, nodes=1)
    assert len(csv_rows(root)) == 1
    members = [json.loads(p.read_text()) for p in job.glob("*/*/run.json")]
    assert sorted(m["job"]["identity"]["rank"] for m in members) == [0, 1]
    assert {m["job"]["identity"]["launcher"] for m in members} == {summary_launcher}
    return s


def test_srun_two_tasks(tmp_path):
    reason = _slurm_up()
    require_service("SLURM", not reason, reason)
    env = job_env(tmp_path)
    p = subprocess.run(["srun", "-N1", "-n2", "--oversubscribe", sys.executable, str(SCRIPT)],
                       env=env, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr[-3000:]
    s = _check(tmp_path, "slurm")
    assert s["job"]["job_id"].startswith("slurm-")


def test_mpirun_two_ranks(tmp_path):
    reason = _mpi_up()
    require_service("Open MPI", not reason, reason)
    env = job_env(tmp_path)
    cmd = ["mpirun", "--oversubscribe", "-np", "2"]
    if os.geteuid() == 0:
        cmd.insert(1, "--allow-run-as-root")
    t0 = time.monotonic()
    p = subprocess.run([*cmd, sys.executable, str(SCRIPT)], env=env, capture_output=True,
                       text=True, timeout=120)
    assert p.returncode == 0, (p.stdout + p.stderr)[-3000:]
    s = _check(tmp_path, "mpi")
    assert s["job"]["job_id"].startswith("mpi-")
    assert time.monotonic() - t0 < 90
