"""cpu_scope: whose CPU time the CPU and RAM models bill. The run's CPU seconds are measured on
real processes (children that burn CPU and are reaped, checked against os.wait4's own
account); the machine's CPU times (psutil, the library's edge) are faked where a test needs
exact numbers; a SLURM job's cgroup is a tree in tmp_path."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import time
from collections import namedtuple
from pathlib import Path

import psutil
import pytest

from tracker import track
from tracker.errors import ConfigError
from tracker.sensors import cpu_scope
from tracker.sensors.cpu_scope import JobCgroup, ProcessTree, check_cpu_scope, slurm_cgroup
from tracker.sensors.cpuram import discover_cpu_ram
from tracker.sensors.model import CpuModelSensor, RamModelSensor

FAST = {"rate_hz": 20, "report_html": False, "quiet": True}
BURN = "import sys\nx = 0\nfor i in range(int(sys.argv[1])):\n    x += i * i\n"
Times = namedtuple("Times", "user nice system idle iowait irq softirq steal guest guest_nice")


def own_cpu_s() -> float:
    t = psutil.Process().cpu_times()
    return t.user + t.system


def wait4_cpu_s(proc: subprocess.Popen) -> float:
    """Reap `proc` ourselves and return the CPU seconds the kernel charged it (its own and
    its reaped children's): the account a parent's children times are made of."""
    _, _, usage = os.wait4(proc.pid, 0)
    proc.returncode = 0
    return usage.ru_utime + usage.ru_stime


# -- the option ----------------------------------------------------------------------------------
def test_the_scope_is_checked_at_construction_with_close_matches(tmp_path, monkeypatch):
    assert check_cpu_scope(" Process ") == "process"
    with pytest.raises(ConfigError, match=r"cpu_scope must be one of 'machine', 'process'.*"
                                          r"got 'proces'; did you mean 'process'\?"):
        track("x", output_dir=tmp_path, cpu_scope="proces")
    monkeypatch.setenv("ENERGY_TRACKER_CPU_SCOPE", "node")
    with pytest.raises(ConfigError, match="ENERGY_TRACKER_CPU_SCOPE='node'"):
        track("x", output_dir=tmp_path)
    monkeypatch.setenv("ENERGY_TRACKER_CPU_SCOPE", "process")
    run = track("x", output_dir=tmp_path)
    assert run.config.cpu_scope == "process"
    assert run.config.sources["cpu_scope"] == "env ENERGY_TRACKER_CPU_SCOPE"
    monkeypatch.delenv("ENERGY_TRACKER_CPU_SCOPE")
    assert track("x", output_dir=tmp_path).config.cpu_scope == "machine"   # the default


# -- the run's CPU seconds: the process tree -----------------------------------------------------
def test_a_child_seen_alive_and_then_reaped_is_counted_once():
    tree = ProcessTree()
    mine0 = own_cpu_s()
    child = subprocess.Popen([sys.executable, "-c", BURN + "print('burnt', flush=True)\n"
                              "sys.stdin.read()\n", "3000000"],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None and child.stdin is not None
    assert child.stdout.readline().strip() == "burnt"
    alive = tree.cpu_s()                     # seen while it runs: its time so far is counted
    assert tree.members >= 2
    child.stdin.close()
    child_s = wait4_cpu_s(child)             # reaped by this process: now in our children time
    total = tree.cpu_s()
    mine = own_cpu_s() - mine0
    assert child_s > 0.05
    assert alive >= child_s * 0.5
    # once, not twice: the reaped-children time does not add what was already counted
    assert total == pytest.approx(child_s + mine, abs=0.05)


def test_a_grandchild_too_short_to_be_seen_is_counted_through_its_parent():
    tree = ProcessTree()
    mine0 = own_cpu_s()
    code = ("import subprocess, sys\n"
            f"subprocess.run([sys.executable, '-c', {BURN!r}, '2000000'], check=True)\n")
    child = subprocess.Popen([sys.executable, "-c", code])
    child_s = wait4_cpu_s(child)             # the child's own time and its grandchild's
    total = tree.cpu_s()
    assert child_s > 0.05
    assert total == pytest.approx(child_s + own_cpu_s() - mine0, abs=0.05)


# -- the run's CPU seconds: a SLURM job's cgroup -------------------------------------------------
def fake_cgroup_v2(tmp_path: Path, job: str = "42", usage_usec: int = 5_000_000) -> Path:
    rel = f"system.slice/slurmstepd.scope/job_{job}/step_0/user/task_0"
    (tmp_path / "proc_cgroup").write_text(f"0::/{rel}\n")
    d = tmp_path / "cg" / f"system.slice/slurmstepd.scope/job_{job}"
    d.mkdir(parents=True)
    (d / "cpu.stat").write_text(f"usage_usec {usage_usec}\nuser_usec 1\nsystem_usec 2\n")
    (d / "memory.current").write_text(str(3 * 1024**3))
    return d


def test_a_slurm_jobs_cgroup_v2_is_found_and_read(tmp_path):
    d = fake_cgroup_v2(tmp_path)
    group = slurm_cgroup({"SLURM_JOB_ID": "42"}, root=tmp_path / "cg",
                         proc_cgroup=tmp_path / "proc_cgroup")
    assert group is not None and group.version == 2
    assert group.cpu_file == d / "cpu.stat" and "SLURM job 42" in group.source
    (d / "cpu.stat").write_text("usage_usec 7500000\n")
    assert group.cpu_s() == pytest.approx(2.5)            # since it was found: the run's start
    assert group.memory_bytes() == 3 * 1024**3
    # not this job, not in SLURM, or not readable: None (the process tree is used instead)
    assert slurm_cgroup({"SLURM_JOB_ID": "43"}, root=tmp_path / "cg",
                        proc_cgroup=tmp_path / "proc_cgroup") is None
    assert slurm_cgroup({}, root=tmp_path / "cg", proc_cgroup=tmp_path / "proc_cgroup") is None
    (d / "cpu.stat").unlink()
    assert slurm_cgroup({"SLURM_JOB_ID": "42"}, root=tmp_path / "cg",
                        proc_cgroup=tmp_path / "proc_cgroup") is None


def test_a_slurm_jobs_cgroup_v1_is_found_and_read(tmp_path):
    rel = "slurm/uid_1000/job_7/step_batch"
    (tmp_path / "proc_cgroup").write_text(f"5:memory:/{rel}\n4:cpu,cpuacct:/{rel}\n")
    cpu = tmp_path / "cg" / "cpu,cpuacct" / "slurm/uid_1000/job_7"
    cpu.mkdir(parents=True)
    (cpu / "cpuacct.usage").write_text("1000000000\n")       # ns
    mem = tmp_path / "cg" / "memory" / "slurm/uid_1000/job_7"
    mem.mkdir(parents=True)
    (mem / "memory.usage_in_bytes").write_text("1048576\n")
    group = slurm_cgroup({"SLURM_JOB_ID": "7"}, root=tmp_path / "cg",
                         proc_cgroup=tmp_path / "proc_cgroup")
    assert group is not None and group.version == 1
    (cpu / "cpuacct.usage").write_text("4500000000\n")
    assert group.cpu_s() == pytest.approx(3.5)
    assert group.memory_bytes() == 1048576


# -- the models ----------------------------------------------------------------------------------
class Machine:
    """psutil's whole-machine figures, set by the test (cumulative CPU seconds)."""

    def __init__(self, monkeypatch):
        self.busy, self.idle = 100.0, 900.0
        self.percent = 0.0
        monkeypatch.setattr(psutil, "cpu_times", lambda: Times(
            self.busy, 0.0, 0.0, self.idle, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0))
        monkeypatch.setattr(psutil, "cpu_percent", lambda interval=None: self.percent)
        monkeypatch.setattr(psutil, "cpu_count", lambda logical=True: 4)


@pytest.fixture
def machine(monkeypatch) -> Machine:
    return Machine(monkeypatch)


@pytest.fixture
def job(tmp_path) -> tuple[JobCgroup, Path]:
    d = fake_cgroup_v2(tmp_path, usage_usec=0)
    group = slurm_cgroup({"SLURM_JOB_ID": "42"}, root=tmp_path / "cg",
                         proc_cgroup=tmp_path / "proc_cgroup")
    assert group is not None
    return group, d


def test_process_scope_bills_the_runs_share_of_the_busy_cpu_time(machine, job):
    group, d = job
    clock = [0.0]
    sensor = CpuModelSensor(tdp_w=100, scope="process", usage=group, clock=lambda: clock[0])
    assert sensor.info.details["cpu_scope"] == "process"
    assert "process scope" in sensor.info.description and "SLURM job 42" in sensor.info.description
    # one second: the machine's 4 CPUs 2 CPU-s busy (50 %), the job 0.5 of them (a quarter)
    machine.busy += 2.0
    machine.idle += 2.0
    (d / "cpu.stat").write_text("usage_usec 500000\n")
    clock[0] = 1.0
    assert sensor.read_power_w() == pytest.approx((30.0 + 70.0 * 0.5) * 0.25, rel=1e-12)
    # nobody busy at all: the run is the machine's only user and its idle floor is the run's
    machine.idle += 4.0
    clock[0] = 2.0
    assert sensor.read_power_w() == pytest.approx(30.0, rel=1e-12)
    # the job's counter ran ahead of the machine's (read a moment later): never above 100 %
    machine.busy += 1.0
    machine.idle += 3.0
    (d / "cpu.stat").write_text("usage_usec 2500000\n")
    clock[0] = 3.0
    assert sensor.read_power_w() == pytest.approx(30.0 + 70.0 * 0.25, rel=1e-12)
    details = sensor.info.details
    assert details["run_cpu_s"] == pytest.approx(2.5)
    assert details["machine_busy_cpu_s"] == pytest.approx(3.0)
    assert details["utilization_pct_mean"] == pytest.approx((50.0 + 0.0 + 25.0) / 3)
    note = sensor.scope_note()
    assert note is not None and "2.5 of 3.0 CPU-s" in note and "SLURM job 42" in note


def test_machine_scope_says_how_much_cpu_time_was_not_the_runs(machine, job):
    group, d = job
    clock = [0.0]
    sensor = CpuModelSensor(tdp_w=100, usage=group, clock=lambda: clock[0])
    assert sensor.info.description.endswith("scope: whole machine")
    machine.percent = 60.0
    clock[0] = 1.0
    assert sensor.read_power_w() == pytest.approx(30.0 + 70.0 * 0.6, rel=1e-12)  # as before
    machine.busy += 10.0
    (d / "cpu.stat").write_text("usage_usec 2000000\n")
    note = sensor.scope_note()
    assert note is not None
    assert "80% of the machine's busy CPU time" in note and "8.0 of 10.0 CPU-s" in note
    assert 'cpu_scope="process"' in note
    assert sensor.info.details["utilization_pct_mean"] == pytest.approx(60.0)
    # the run was (nearly) all the machine did: nothing to say
    sensor2 = CpuModelSensor(tdp_w=100, usage=group, clock=lambda: clock[0])
    machine.busy += 3.0
    (d / "cpu.stat").write_text("usage_usec 4900000\n")
    assert sensor2.scope_note() is None


def test_process_scope_ram_is_the_runs_memory(machine, job, monkeypatch):
    group, d = job
    monkeypatch.setattr(psutil, "virtual_memory",
                        lambda: namedtuple("VM", "total")(16 * 1024**3))
    ram = RamModelSensor(scope="process", usage=group)
    assert ram.read_power_w() == pytest.approx(0.375 * 3.0)      # 3 GiB in use by the job
    (d / "memory.current").write_text(str(64 * 1024**3))      # page cache: at most installed
    assert ram.read_power_w() == pytest.approx(0.375 * 16.0)
    assert ram.info.details["run_gib_mean"] == pytest.approx((3.0 + 16.0) / 2)
    assert "process scope" in ram.info.description
    assert RamModelSensor().read_power_w() == pytest.approx(0.375 * 16.0)   # machine: installed


def test_discovery_shares_one_measure_of_the_run_and_says_the_scope(tmp_path, monkeypatch):
    fake_cgroup_v2(tmp_path)
    monkeypatch.setattr(cpu_scope, "DEFAULT_CGROUP_ROOT", tmp_path / "cg")
    monkeypatch.setattr(cpu_scope, "PROC_SELF_CGROUP", tmp_path / "proc_cgroup")
    found = discover_cpu_ram(powercap_root=tmp_path / "absent", cpu_scope="process",
                             env={"SLURM_JOB_ID": "42"})
    cpu, ram = found.sensors
    assert cpu._usage is ram._usage and isinstance(cpu._usage, JobCgroup)
    assert any('cpu_scope="process": the CPU and RAM models bill' in n and "SLURM job 42" in n
               for n in found.notes)
    # outside SLURM: this process's tree
    found = discover_cpu_ram(powercap_root=tmp_path / "absent", cpu_scope="process", env={})
    assert isinstance(found.sensors[0]._usage, ProcessTree)


# -- a run, its summary and its CSV row ----------------------------------------------------------
def test_a_process_scope_run_names_its_scope_and_fills_the_csv(tmp_path):
    csv_path = tmp_path / "e.csv"
    with track("scoped", output_dir=tmp_path / "runs", gpus=[], cpu_scope="process",
               powercap_root=tmp_path / "absent", emissions_csv=csv_path, **FAST) as run:
        subprocess.run([sys.executable, "-c", BURN, "2000000"], check=True)   # a "worker"
        time.sleep(1.1)    # the models read once a second
    s = run.summary
    cpu = next(d for d in s.devices if d.name == "cpu")
    ram = next(d for d in s.devices if d.name == "ram")
    assert cpu.details["cpu_scope"] == ram.details["cpu_scope"] == "process"
    assert "process scope" in cpu.description and "process tree of pid" in cpu.description
    assert cpu.details["run_cpu_s"] > 0.05                  # the child's time is the run's
    assert any(n.startswith('cpu_scope="process": the CPU line bills') for n in s.notes)
    with open(csv_path, newline="") as f:
        (row,) = list(csv.DictReader(f))
    missing = row["not_measured"].split(";")
    assert float(row["cpu_utilization_percent"]) == pytest.approx(
        cpu.details["utilization_pct_mean"], rel=1e-6)
    assert float(row["ram_used_gb"]) == pytest.approx(ram.details["run_gib_mean"], rel=1e-6)
    assert "cpu_utilization_percent" not in missing and "ram_used_gb" not in missing
    assert "gpu_utilization_percent" in missing and float(row["gpu_utilization_percent"]) == 0.0


def test_a_machine_scope_run_fills_the_cpu_utilisation_and_names_the_scope(tmp_path):
    csv_path = tmp_path / "e.csv"
    with track("whole", output_dir=tmp_path / "runs", gpus=[], emissions_csv=csv_path,
               powercap_root=tmp_path / "absent", **FAST) as run:
        time.sleep(1.1)
    cpu = next(d for d in run.summary.devices if d.name == "cpu")
    assert cpu.details["cpu_scope"] == "machine"
    assert 0.0 <= cpu.details["utilization_pct_mean"] <= 100.0
    with open(csv_path, newline="") as f:
        (row,) = list(csv.DictReader(f))
    assert float(row["cpu_utilization_percent"]) == pytest.approx(
        cpu.details["utilization_pct_mean"], rel=1e-6)
    assert "cpu_utilization_percent" not in row["not_measured"].split(";")
    assert "ram_used_gb" in row["not_measured"].split(";")   # the machine scope reads none


def test_energy_tracker_run_counts_the_commands_tree(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ENERGY_TRACKER_", "SLURM"))}
    env["ENERGY_TRACKER_QUIET"] = "1"
    report = tmp_path / "child_cpu.json"
    code = (BURN + "import json, resource\nr = resource.getrusage(resource.RUSAGE_SELF)\n"
            f"open({str(report)!r}, 'w').write(json.dumps(r.ru_utime + r.ru_stime))\n")
    done = subprocess.run([sys.executable, "-m", "tracker", "run", "--output-dir",
                           str(tmp_path / "runs"), "--cpu-scope", "process", "--",
                           sys.executable, "-c", code, "3000000"],
                          capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    (run_dir,) = [p for p in (tmp_path / "runs").iterdir() if (p / "summary.json").exists()]
    summary = json.loads((run_dir / "summary.json").read_text())
    cpu = next(d for d in summary["devices"] if d["name"] == "cpu")
    assert cpu["details"]["cpu_scope"] == "process"
    child_s = json.loads(report.read_text())
    assert child_s > 0.05
    assert cpu["details"]["run_cpu_s"] >= child_s * 0.95     # the command's CPU is the run's
