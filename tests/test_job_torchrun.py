"""Distributed jobs under real `torchrun` (gloo, CPU): one job directory, every device counted
once, CPU and RAM once per node, one emissions row, and no hang when a rank dies.

Each worker sees the node's GPUs through a fake NVML (tests/fakes/nvml_site/pynvml.py): 2 GPUs
per node drawing a constant 300 W and 200 W, with counters shared by every process of the node,
so a GPU counted twice would show as 600 W or 400 W. Two "nodes" are two torchrun agents on
127.0.0.1 with ENERGY_TRACKER_NODE set per node.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import pytest

pytest.importorskip("torch")

pytestmark = pytest.mark.slow

HERE = Path(__file__).parent
TRAIN = HERE / "launch" / "train_ddp.py"
WATTS = (300.0, 200.0)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def job_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("ENERGY_TRACKER", "TORCHELASTIC", "SLURM", "OMPI", "PMI"))
           and k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")}
    env.update(PYTHONPATH=os.pathsep.join([str(HERE / "fakes" / "nvml_site"),
                                           str(HERE.parent)]),
               FAKE_NVML_WATTS=",".join(str(w) for w in WATTS),
               FAKE_NVML_BORN=str(time.monotonic()), TRAIN_OUT=str(tmp_path / "runs"),
               ENERGY_TRACKER_LOCK_DIR=str(tmp_path / "locks"), OMP_NUM_THREADS="1",
               HF_HUB_OFFLINE="1")
    env.update(extra)
    return env


def torchrun(args: list[str], env: dict[str, str]) -> subprocess.Popen:
    # Each launch on its own free port: torchrun's default (29500) may still be held by a
    # worker of an earlier test that is being torn down, and the launch would then fail.
    if not any(a.startswith(("--master_port", "--master-port", "--rdzv")) for a in args):
        args = [f"--master_port={free_port()}", *args]
    return subprocess.Popen([sys.executable, "-m", "torch.distributed.run", *args],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finish(proc: subprocess.Popen, timeout: float = 120) -> tuple[int, str]:
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
        pytest.fail(f"torchrun did not finish in {timeout} s (a hang):\n{out[-4000:]}")
    return proc.returncode, out


def only_job_dir(root: Path) -> Path:
    entries = sorted(p.name for p in root.iterdir() if p.name != "totals.json")
    jobs = [root / e for e in entries if (root / e / "job.json").exists()]
    assert len(jobs) == 1, entries
    # the job directory and the emissions table are the only new entries
    assert set(entries) <= {jobs[0].name, "emissions.csv"}, entries
    return jobs[0]


def job_summary(job: Path) -> dict:
    return json.loads((job / "summary.json").read_text())


def csv_rows(root: Path) -> list[dict[str, str]]:
    with open(root / "emissions.csv", newline="") as f:
        return list(csv.DictReader(f))


def assert_each_device_once(summary: dict, nodes: int) -> None:
    gpus = [d for d in summary["devices"] if d["component"] == "gpu"]
    uuids = [d["details"]["uuid"] for d in gpus]
    assert len(uuids) == len(set(uuids)) == 2 * nodes
    # a GPU counted by two processes would double its mean power; within 5 %, not to the
    # watt: the fake counter's last 100 ms tick can fall just outside a loaded run's window
    assert sorted(d["mean_power_w"] for d in gpus) == pytest.approx(
        sorted(list(WATTS) * nodes), rel=0.05)
    for comp in ("cpu", "ram"):
        found = [d for d in summary["devices"] if d["component"] == comp]
        assert len(found) == nodes, f"{comp} once per node: {found}"
        assert len({d["node"] for d in found}) == nodes
    nodes_e = [n["energy_j"] for n in summary["job"]["nodes"]]
    assert len(nodes_e) == nodes
    assert summary["energy_j"] == pytest.approx(sum(nodes_e), abs=1e-9)
    for n in summary["job"]["nodes"]:
        devs = [d["energy_j"] for d in summary["devices"] if d["node"] == n["node"]]
        assert n["energy_j"] == pytest.approx(sum(devs), abs=1e-9)


def test_two_processes_one_node_make_one_job(tmp_path):
    env = job_env(tmp_path, TRAIN_STEPS="15", TRAIN_STEP_S="0.03", TRAIN_REGION="DE")
    rc, out = finish(torchrun(["--nproc_per_node=2", str(TRAIN)], env))
    assert rc == 0, out[-3000:]
    root = tmp_path / "runs"
    job = only_job_dir(root)
    s = job_summary(job)
    assert s["status"] == "finished"
    assert s["job"]["world_size"] == 2 and len(s["job"]["nodes"]) == 1
    assert s["job"]["nodes"][0]["ranks"] == [0, 1]
    assert_each_device_once(s, nodes=1)
    # windows are job-wide: each epoch once, with how far apart the ranks' edges were
    epochs = [w for w in s["windows"] if w["kind"] == "epoch"]
    assert [w["name"] for w in epochs] == ["epoch 0", "epoch 1"]
    assert all(w["attrs"]["ranks"] == 2 and w["attrs"]["edge_spread_s"]["end"] < 1.0
               for w in epochs)
    assert sum(w["energy_j"] for w in epochs) <= s["energy_j"] + 1e-9
    # where the energy went, summed over the members, adds up to the job's energy
    assert sum(p["energy_j"] for p in s["breakdown"].values()) == pytest.approx(
        s["energy_j"], abs=1e-9)
    # steps once (not once per rank), samples summed over ranks, in the total
    assert s["steps"]["count"] == 30
    assert s["steps"]["samples"] == 2 * 30 * 8
    assert 0 < s["steps"]["energy_j_in_steps"] <= s["energy_j"]
    assert s["grid"]["region_code"] == "DE"
    # run.job_totals(): one all-reduce gave the job's energy just before the end
    totals = json.loads((root / "totals.json").read_text())
    assert totals["processes"] == 2
    assert 0.7 * s["energy_j"] < totals["energy_j"] <= s["energy_j"]
    rows = csv_rows(root)
    assert len(rows) == 1 and rows[0]["run_id"] == s["run_id"]
    assert rows[0]["job_id"] == s["job"]["job_id"] and rows[0]["world_size"] == "2"
    assert float(rows[0]["energy_consumed"]) == pytest.approx(s["facility_energy_kwh"])
    # the CLI shows the job, and a root lists it as one line
    report = subprocess.run([sys.executable, "-m", "tracker", "report", str(job)],
                            capture_output=True, text=True, env=env)
    assert report.returncode == 0, report.stderr
    assert "2 ranks on 1 node(s)" in report.stdout and "epoch 0" in report.stdout
    table = subprocess.run([sys.executable, "-m", "tracker", "report", str(root), "--json"],
                           capture_output=True, text=True, env=env)
    listed = json.loads(table.stdout)["runs"]
    assert len(listed) == 1 and listed[0]["kind"] == "job" and listed[0]["world_size"] == 2


def two_nodes(tmp_path: Path, **per_node: Callable[[str], str]) -> None:
    """Two torchrun agents on 127.0.0.1 (static rendezvous), "nodes" node-a and node-b, each
    with 2 processes; `per_node`: environment values as functions of the node name."""
    port = free_port()
    procs = []
    for node_rank, node in enumerate(("node-a", "node-b")):
        env = job_env(tmp_path, ENERGY_TRACKER_NODE=node, TRAIN_STEPS="12",
                      TRAIN_STEP_S="0.03", **{k: f(node) for k, f in per_node.items()})
        procs.append(torchrun(["--nnodes=2", f"--node_rank={node_rank}", "--nproc_per_node=2",
                               "--master_addr=127.0.0.1", f"--master_port={port}",
                               "--rdzv_backend=static", str(TRAIN)], env))
    for p in procs:
        rc, out = finish(p)
        assert rc == 0, out[-3000:]


def test_two_nodes_on_one_host(tmp_path):
    two_nodes(tmp_path)
    root = tmp_path / "runs"
    job = only_job_dir(root)
    # static rendezvous: TORCHELASTIC_RUN_ID is "none"; the id was agreed through the store
    assert "-torchrun-" in job.name          # <name>-<launcher>-<short id>
    assert sorted(p.name for p in job.iterdir() if p.is_dir()) == ["node-a", "node-b"]
    s = job_summary(job)
    assert s["job"]["world_size"] == 4 and s["job"]["nnodes"] == 2
    assert {n["node"]: n["ranks"] for n in s["job"]["nodes"]} == {"node-a": [0, 1],
                                                                  "node-b": [2, 3]}
    assert_each_device_once(s, nodes=2)
    assert not s["job"]["missing"]
    assert len(csv_rows(root)) == 1
    # per-node GPU energy spread (a straggler would show as a low minimum)
    spread = s["job"]["gpu_energy_spread"]
    assert set(spread) == {"node-a", "node-b"} and all(v["gpus"] == 2 for v in spread.values())


def test_node_local_output_dirs_merge_later(tmp_path):
    """Each node writes to its own disk: each part says other nodes are missing and writes no
    emissions row; `energy-tracker merge` of the parts gives the whole job and its one row."""
    two_nodes(tmp_path, TRAIN_OUT=lambda n: str(tmp_path / f"disk-{n}"),
              ENERGY_TRACKER_LOCK_DIR=lambda n: str(tmp_path / f"locks-{n}"))
    parts = [next((tmp_path / f"disk-{n}").glob("*-torchrun-*")) for n in ("node-a", "node-b")]
    assert parts[0].name == parts[1].name           # one job id on both disks
    for part in parts:
        s = job_summary(part)
        assert len(s["job"]["nodes"]) == 1
        assert any("nodes" in m["what"] for m in s["job"]["missing"])
        assert not (part.parent / "emissions.csv").exists()
    merged_root = tmp_path / "merged"
    out = subprocess.run([sys.executable, "-m", "tracker", "merge", *map(str, parts), "-o",
                          str(merged_root / parts[0].name), "--json"],
                         capture_output=True, text=True, env=job_env(tmp_path))
    assert out.returncode == 0, out.stderr
    s = json.loads(out.stdout)
    assert_each_device_once(s, nodes=2)
    assert not s["job"]["missing"]
    assert len(csv_rows(merged_root)) == 1
    # report of the parts prints the same job
    rep = subprocess.run([sys.executable, "-m", "tracker", "report", *map(str, parts), "--json"],
                         capture_output=True, text=True, env=job_env(tmp_path))
    assert json.loads(rep.stdout)["energy_j"] == pytest.approx(s["energy_j"], abs=1e-9)


def test_sigkilled_rank_does_not_hang_the_others(tmp_path):
    """Rank 1 kills itself mid-epoch; torchrun then SIGTERMs rank 0, which may be blocked in a
    gloo all-reduce waiting for rank 1. Rank 0's run must still end ("terminated") and the
    job report must name rank 1 as killed, with from when its energy is missing."""
    env = job_env(tmp_path, TRAIN_STEPS="40", TRAIN_STEP_S="0.05", TRAIN_DIE_RANK="1",
                  TRAIN_DIE_AT_STEP="25")
    t0 = time.monotonic()
    rc, _ = finish(torchrun(["--nproc_per_node=2", str(TRAIN)], env), timeout=90)
    took = time.monotonic() - t0
    assert rc != 0
    root = tmp_path / "runs"
    job = only_job_dir(root)
    rank0 = json.loads(next(job.glob("*/rank0/summary.json")).read_text())
    # gloo raises in rank 0 when the peer's socket closes, or torchrun's SIGTERM comes first
    assert rank0["status"] in ("failed", "terminated"), rank0["status"]
    s = job_summary(job)
    killed = [m for m in s["job"]["missing"] if m.get("ranks") == [1]]
    assert killed and "killed" in killed[0]["reason"] and killed[0]["missing_from_s"] > 0
    assert s["status"] in ("failed", "killed")
    assert_each_device_once(s, nodes=1)
    assert len(csv_rows(root)) == 1
    assert took < 60


def test_only_rank0_tracks_and_measures_the_other_gpu_late(tmp_path):
    env = job_env(tmp_path, TRAIN_STEPS="20", TRAIN_STEP_S="0.05", TRAIN_TRACK_RANKS="0",
                  ENERGY_TRACKER_LATE_CLAIM_S="0.5")
    rc, out = finish(torchrun(["--nproc_per_node=2", str(TRAIN)], env))
    assert rc == 0, out[-3000:]
    s = job_summary(only_job_dir(tmp_path / "runs"))
    gpus = {d["details"]["uuid"]: d for d in s["devices"] if d["component"] == "gpu"}
    assert len(gpus) == 2      # rank 1's GPU measured by rank 0 once nobody else claimed it
    assert any("claimed at t=" in n for n in s["notes"])
    assert [m["ranks"] for m in s["job"]["missing"]] == [[1]]   # rank 1 left no files


def test_elastic_restart_appends_an_attempt(tmp_path):
    env = job_env(tmp_path, TRAIN_STEPS="12", TRAIN_STEP_S="0.03", TRAIN_FAIL_RANK="1",
                  TRAIN_DIE_AT_STEP="6", TRAIN_PREFIX_STORE="1")
    port = free_port()
    rc, out = finish(torchrun(["--nnodes=1", "--nproc_per_node=2", "--max_restarts=1",
                               "--rdzv_backend=c10d", f"--rdzv_endpoint=127.0.0.1:{port}",
                               "--rdzv_id=elastic-test", str(TRAIN)], env))
    assert rc == 0, out[-3000:]
    root = tmp_path / "runs"
    job = only_job_dir(root)
    assert job.name.endswith("-torchrun-elastic-test")   # <name>-<launcher>-<rdzv id>
    s = job_summary(job)
    attempts = s["job"]["attempts"]
    assert [a["restart"] for a in attempts] == [0, 1]
    assert attempts[0]["status"] == "failed" and attempts[1]["status"] == "finished"
    assert s["status"] == "finished"
    assert s["energy_j"] == pytest.approx(sum(a["energy_j"] for a in attempts), rel=1e-9)
    assert len(csv_rows(root)) == 1   # the failed attempt did not write a row of its own
    assert {p.name for p in job.glob("*/*") if p.is_dir()} == {"rank0", "rank1", "rank0.r1",
                                                                "rank1.r1"}


def test_cli_wrapping_torchrun_counts_windows_once(tmp_path):
    env = job_env(tmp_path, TRAIN_STEPS="15", TRAIN_STEP_S="0.03", TRAIN_REGION="DE")
    env.pop("TRAIN_OUT")
    out_dir = tmp_path / "runs"
    p = subprocess.run([sys.executable, "-m", "tracker", "run", "--output-dir", str(out_dir),
                        "--no-status", "--", sys.executable, "-m", "torch.distributed.run",
                        "--nproc_per_node=2", str(TRAIN)], env=env, capture_output=True,
                       text=True, timeout=120)
    assert p.returncode == 0, p.stderr[-3000:]
    job = only_job_dir(out_dir)
    members = [x for x in job.glob("*/*") if x.is_dir()]
    assert len(members) == 1 and members[0].name.startswith("cli-")
    s = job_summary(job)
    assert [w["name"] for w in s["windows"] if w["kind"] == "epoch"] == ["epoch 0", "epoch 1"]
    assert s["steps"]["count"] == 30 and s["steps"]["energy_j_in_steps"] <= s["energy_j"]
    assert s["grid"]["region_code"] == "DE"      # the script's region, the CLI had none
    assert_each_device_once(s, nodes=1)
    assert len(csv_rows(out_dir)) == 1


def test_hugging_face_trainer_ddp_logs_job_wide_numbers(tmp_path):
    pytest.importorskip("transformers")
    env = job_env(tmp_path)
    rc, out = finish(torchrun(["--nproc_per_node=2", str(HERE / "launch" / "train_hf.py")], env))
    assert rc == 0, out[-3000:]
    root = tmp_path / "runs"
    jobs = [p for p in root.iterdir() if (p / "job.json").exists()]
    assert len(jobs) == 1
    s = job_summary(jobs[0])
    assert_each_device_once(s, nodes=1)
    assert [w["name"] for w in s["windows"] if w["kind"] == "epoch"] == ["epoch 0", "epoch 1"]
    history = json.loads((root / "log_history.json").read_text())
    powered = [r["power_w"] for r in history if "power_w" in r]
    # job-wide: both fake GPUs (500 W) plus the node's CPU and RAM models (which follow this
    # machine's load); one rank alone would log ~300 W or ~200 W
    assert powered and all(500.0 < w < 650.0 for w in powered), powered
    assert len(csv_rows(root)) == 1


def test_lightning_ddp_makes_one_job(tmp_path):
    pytest.importorskip("lightning")
    env = job_env(tmp_path)
    p = subprocess.run([sys.executable, str(HERE / "launch" / "train_lightning.py")], env=env,
                       capture_output=True, text=True, timeout=180)
    assert p.returncode == 0, p.stderr[-3000:]
    root = tmp_path / "runs"
    jobs = [x for x in root.iterdir() if (x / "job.json").exists()]
    assert len(jobs) == 1
    s = job_summary(jobs[0])
    assert_each_device_once(s, nodes=1)
    members = {m["run"]: m for n in s["job"]["nodes"] for m in n["members"]}
    assert set(members) == {"rank0", "rank1"}
    logged = json.loads((root / "logged.json").read_text())
    assert logged and all(500.0 < r["power_w"] < 560.0 for r in logged if "power_w" in r)
    assert len(csv_rows(root)) == 1


def test_sigterm_to_a_tracked_process_records_terminated(tmp_path):
    """Library use, no launcher: SIGTERM (what SLURM and Kubernetes send) ends the run with
    status "terminated" and the process still dies of SIGTERM."""
    script = tmp_path / "loop.py"
    script.write_text(
        "import time, sys\n"
        "from tracker import track\n"
        f"with track('term', output_dir={str(tmp_path / 'runs')!r}, cpu=False, ram=False):\n"
        "    print('ready', flush=True)\n"
        "    time.sleep(60)\n")
    env = job_env(tmp_path)
    p = subprocess.Popen([sys.executable, str(script)], env=env, stdout=subprocess.PIPE,
                         text=True)
    assert p.stdout is not None and p.stdout.readline().strip() == "ready"
    time.sleep(0.5)
    p.send_signal(signal.SIGTERM)
    assert p.wait(timeout=30) == -signal.SIGTERM
    run = next((tmp_path / "runs").glob("*-term"))
    s = json.loads((run / "summary.json").read_text())
    assert s["status"] == "terminated" and s["energy_j"] > 0
    assert len(csv_rows(tmp_path / "runs")) == 1


def test_sigterm_while_blocked_in_a_collective(tmp_path):
    """The main thread of rank 0 is stuck in an all-reduce that rank 1 never joins, so Python
    cannot run a signal handler there; the sampler thread sees the SIGTERM (wake-up fd) and
    ends the run as "terminated" while the main thread is still blocked."""
    script = tmp_path / "stuck.py"
    script.write_text(
        "import os, time, torch, torch.distributed as dist\n"
        "dist.init_process_group('gloo')\n"
        "from tracker import track\n"
        f"with track('stuck', output_dir={str(tmp_path / 'runs')!r}):\n"
        "    print(dist.get_rank(), os.getpid(), flush=True)\n"
        "    if dist.get_rank() == 0:\n"
        "        dist.all_reduce(torch.zeros(1))\n"
        "    else:\n"
        "        time.sleep(60)\n")
    env = job_env(tmp_path)
    proc = torchrun(["--nproc_per_node=2", str(script)], env)
    try:
        pids = {}
        seen: list[str] = []
        deadline = time.monotonic() + 60
        while len(pids) < 2 and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line and proc.poll() is not None:
                break   # torchrun ended: its output says why
            seen.append(line)
            parts = line.split()
            if len(parts) == 2 and parts[0] in ("0", "1") and parts[1].isdigit():
                pids[parts[0]] = int(parts[1])
        assert "0" in pids, "rank 0 never started:\n" + "".join(seen)[-4000:]
        time.sleep(1.0)
        os.kill(pids["0"], signal.SIGTERM)
        summary = None
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            found = list((tmp_path / "runs").glob("*/*/rank0/summary.json"))
            if found:
                summary = json.loads(found[0].read_text())
                if summary["status"] != "running":
                    break
            time.sleep(0.2)
        assert summary is not None and summary["status"] == "terminated"
        assert summary["energy_j"] > 0
        os.kill(pids["0"], 0)   # still alive: its main thread is still in the collective
    finally:
        proc.kill()
        subprocess.run(["pkill", "-9", "-f", str(script)], check=False)
        proc.communicate()
