"""cpu_scope="process" in a job outside SLURM: the process that claims the node's CPU and RAM
counts the CPU time of the job's other ranks on its node too. Real processes throughout: the
other rank is a real tracked process (its run.json written by the real code) started through
a launcher that exits, so that, as under torchrun, it is a sibling and not a descendant of the
claimant; the claimant joins the job with the real join_job. The scans are driven by hand (no
sampler thread), each after the other process has said, on its pipe, that it is where the
test wants it."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from typing import Optional

import psutil
import pytest

from tracker.job.participation import join_job, node_rank_pids
from tracker.rundir.liveness import process_start_ticks
from tracker.sensors import cpu_scope
from tracker.sensors.cpu_scope import ProcessTree
from tracker.sensors.cpuram import discover_cpu_ram

BURN_N = 4_000_000        # ~0.3-1 CPU-s of pure Python
# What the two scans may differ from the processes' own accounts by (psutil reads the
# processes a few ms apart from the test's own reads; a sampler thread idles in the rank).
TOL_S = 0.15

# A launcher: starts the command, says its pid and exits (so the command is reparented, as
# torchrun's ranks are siblings of each other, never one another's children).
LAUNCH = ("import subprocess, sys\n"
          "p = subprocess.Popen(sys.argv[1:])\n"
          "print(p.pid, flush=True)\n")

# The other rank: a tracked process of the job (rank 1), then a burst of CPU on request.
RANK = textwrap.dedent("""
    import sys
    from tracker import track
    run = track("ranks", job="unit", output_dir=sys.argv[1], gpus=[], powercap_root=sys.argv[2],
                rate_hz=2, report_html=False, quiet=True, job_timeout_s=1).start()
    print("ready", flush=True)
    sys.stdin.readline()
    x = 0
    for i in range(int(sys.argv[3])):
        x += i * i
    print("done", flush=True)
    sys.stdin.readline()
    run.stop()
""")

# An unrelated process: burns on request, nothing else.
BURNER = textwrap.dedent("""
    import sys
    print("ready", flush=True)
    sys.stdin.readline()
    x = 0
    for i in range(int(sys.argv[1])):
        x += i * i
    print("done", flush=True)
    sys.stdin.readline()
""")


def cpu_of(pid: int) -> float:
    """The process's CPU seconds and its reaped children's (the launchers this test reaps)."""
    t = psutil.Process(pid).cpu_times()
    return t.user + t.system + t.children_user + t.children_system


class Sibling:
    """A process started through LAUNCH: not a descendant of this one; talks on its pipes."""

    def __init__(self, argv: list[str], env: Optional[dict[str, str]] = None,
                 user: Optional[int] = None, python: str = sys.executable) -> None:
        self.launcher = subprocess.Popen([python, "-c", LAUNCH, *argv], env=env, user=user,
                                         cwd="/" if user is not None else None,
                                         stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         text=True)
        assert self.launcher.stdout is not None and self.launcher.stdin is not None
        self.out, self.inp = self.launcher.stdout, self.launcher.stdin
        self.pid = int(self.out.readline())
        assert self.launcher.wait(timeout=30) == 0
        mine = {p.pid for p in psutil.Process().children(recursive=True)}
        assert self.pid not in mine             # a sibling, as torchrun's ranks are

    def expect(self, word: str) -> None:
        assert self.out.readline().strip() == word

    def say(self) -> None:
        self.inp.write("\n")
        self.inp.flush()

    def close(self) -> None:
        try:
            self.inp.close()                    # its last readline returns: it exits
            psutil.Process(self.pid).wait(timeout=30)
        except (psutil.Error, OSError, subprocess.TimeoutExpired):
            pass
        try:
            psutil.Process(self.pid).kill()     # still there after that: by its pid only
        except psutil.Error:
            pass


@pytest.fixture
def siblings() -> Iterator[list[Sibling]]:
    made: list[Sibling] = []
    yield made
    for s in made:
        s.close()


@pytest.fixture
def rank_env(monkeypatch, tmp_path) -> dict[str, str]:
    """This process as rank 0 of a 2-process job on node-a (as tests/test_job_parts.py), and
    the environment of rank 1."""
    for var in ("TORCHELASTIC_RUN_ID", "MASTER_ADDR", "MASTER_PORT", "ENERGY_TRACKER_JOB"):
        monkeypatch.delenv(var, raising=False)
    for var in [k for k in os.environ if k.startswith("SLURM")]:
        monkeypatch.delenv(var)
    common = {"ENERGY_TRACKER_LOCK_DIR": str(tmp_path / "locks"), "WORLD_SIZE": "2",
              "LOCAL_WORLD_SIZE": "2", "ENERGY_TRACKER_NODE": "node-a",
              "TORCHELASTIC_RESTART_COUNT": "0", "ENERGY_TRACKER_QUIET": "1"}
    for k, v in {**common, "RANK": "0", "LOCAL_RANK": "0"}.items():
        monkeypatch.setenv(k, v)
    return {**os.environ, **common, "RANK": "1", "LOCAL_RANK": "1"}


def test_the_claimant_counts_the_other_ranks_cpu_time_from_when_it_is_seen(
        tmp_path, rank_env, siblings):
    runs, absent = tmp_path / "runs", tmp_path / "absent"
    found = discover_cpu_ram(powercap_root=absent, cpu_scope="process", env={})
    cpu, ram = found.sensors
    tree = cpu._usage
    assert isinstance(tree, ProcessTree) and ram._usage is tree
    own_at_start = cpu_of(os.getpid())
    notes: list[str] = []
    member, kept = join_job("unit", list(found.sensors), output_root=runs, name="ranks",
                            run_dir=None, notes=notes)
    assert member is not None and cpu in kept          # this process claimed the CPU and RAM
    assert any("other ranks of the job on this node" in n or
               "job's other ranks on this node" in n for n in notes)
    try:
        rank = Sibling([sys.executable, "-c", RANK, str(runs), str(absent), str(BURN_N)],
                       env=rank_env)
        siblings.append(rank)
        rank.expect("ready")                  # its run.json is written: the rank can be seen
        # first scan: the rank is seen, its CPU time so far (imports, start) is not the run's
        first = tree.cpu_s()
        rank_0, own_0 = cpu_of(rank.pid), cpu_of(os.getpid())
        assert tree.peer_pids == {rank.pid}
        assert first == pytest.approx(own_0 - own_at_start, abs=TOL_S)
        assert rank_0 > 0.1                   # what it used before it was seen
        rank.say()
        rank.expect("done")
        second = tree.cpu_s()
        rank_1, own_1 = cpu_of(rank.pid), cpu_of(os.getpid())
        burst = rank_1 - rank_0
        assert burst > 0.2
        # the other rank's burst is the run's: without it, only this process's own time
        assert second - first == pytest.approx(burst + (own_1 - own_0), abs=TOL_S)
        assert tree.members >= 2
        assert "1 other rank of the job on this node" in tree.source
        assert f"pid {rank.pid}" in tree.source and "first seen" in tree.source
        assert cpu.count_job_ranks(lambda: []) is True
    finally:
        member.release()


def test_the_provider_lists_the_other_ranks_of_this_attempt_on_this_node(
        tmp_path, rank_env, siblings):
    runs, absent = tmp_path / "runs", tmp_path / "absent"
    notes: list[str] = []
    member, _ = join_job("unit", [], output_root=runs, name="ranks", run_dir=None, notes=notes)
    assert member is not None
    try:
        pids = node_rank_pids(member)
        assert pids() == []                    # nobody else yet (this process's own is skipped)
        rank = Sibling([sys.executable, "-c", RANK, str(runs), str(absent), "1"], env=rank_env)
        siblings.append(rank)
        rank.expect("ready")
        assert pids() == [(rank.pid, process_start_ticks(rank.pid))]
    finally:
        member.release()


def test_a_reused_pid_or_another_users_process_is_never_counted(siblings):
    tree = ProcessTree()
    other = Sibling([sys.executable, "-c", BURNER, str(BURN_N)])
    siblings.append(other)
    other.expect("ready")
    start = process_start_ticks(other.pid)
    assert start is not None
    # the rank's run.json says this pid started at another time: it is not that rank now
    tree.count_peers(lambda: [(other.pid, start + 1)])
    first = tree.cpu_s()
    own_0 = cpu_of(os.getpid())
    other.say()
    other.expect("done")
    second = tree.cpu_s()
    assert tree.peer_pids == set() and tree.peer_note is None
    assert second - first == pytest.approx(cpu_of(os.getpid()) - own_0, abs=TOL_S)
    # the same process with its true start time: counted (the check above can fail)
    tree2 = ProcessTree()
    tree2.count_peers(lambda: [(other.pid, start)])
    tree2.cpu_s()
    assert tree2.peer_pids == {other.pid}


def test_another_users_process_is_not_followed(siblings, monkeypatch):
    if os.geteuid() != 0:
        pytest.skip("starting another user's process needs root")
    nobody = 65534
    for python in (sys.executable, "/usr/bin/python3"):   # a venv under /root is not theirs
        try:
            other = Sibling([python, "-c", BURNER, str(BURN_N)], user=nobody, python=python)
            break
        except (PermissionError, FileNotFoundError):
            continue
    else:
        pytest.skip("no Python interpreter the user nobody may run")
    siblings.append(other)
    other.expect("ready")
    assert psutil.Process(other.pid).uids().real == nobody
    tree = ProcessTree()
    tree.count_peers(lambda: [(other.pid, process_start_ticks(other.pid) or -1)])
    first = tree.cpu_s()
    own_0 = cpu_of(os.getpid())
    other.say()
    other.expect("done")
    second = tree.cpu_s()
    assert tree.peer_pids == set()
    assert second - first == pytest.approx(cpu_of(os.getpid()) - own_0, abs=TOL_S)
    # were this process theirs, it would be counted (the check above can fail)
    with monkeypatch.context() as m:
        m.setattr(cpu_scope.os, "getuid", lambda: nobody)
        m.setattr(cpu_scope.os, "geteuid", lambda: nobody)
        tree2 = ProcessTree()
        tree2.count_peers(lambda: [(other.pid, process_start_ticks(other.pid) or -1)])
        tree2.cpu_s()
    assert tree2.peer_pids == {other.pid}


def test_the_member_list_is_read_at_most_every_few_seconds_and_a_failure_falls_back():
    clock = [0.0]
    calls: list[float] = []

    def peers() -> list[tuple[int, int]]:
        calls.append(clock[0])
        return []
    tree = ProcessTree(clock=lambda: clock[0])
    tree.count_peers(peers)
    for t in (0.0, 0.5, 1.0, 1.9, 2.0, 2.5, 4.1):
        clock[0] = t
        tree.cpu_s()
        tree.memory_bytes()
    assert calls == [0.0, 2.0, 4.1]
    assert cpu_scope.PEER_REFRESH_S == 2.0

    def broken() -> list[tuple[int, int]]:
        raise OSError("node folder unreadable")
    tree.count_peers(broken)
    clock[0] = 10.0
    own = tree.cpu_s()                          # no exception into the caller
    assert tree.peer_note is not None and "node folder unreadable" in tree.peer_note
    assert "only this process's tree" in tree.peer_note
    clock[0] = 20.0
    assert tree.cpu_s() >= own                  # still counting its own tree


def test_machine_scope_and_unreadable_peers_say_so_in_the_note(tmp_path):
    found = discover_cpu_ram(powercap_root=tmp_path / "absent", env={})
    cpu = found.sensors[0]
    assert cpu.count_job_ranks(lambda: []) is False       # machine scope: nothing to add
    found = discover_cpu_ram(powercap_root=tmp_path / "absent", cpu_scope="process", env={})
    cpu = found.sensors[0]
    assert cpu.count_job_ranks(lambda: 1 / 0) is True
    cpu.read_power_w()
    cpu.machine_busy_cpu_s = max(cpu.machine_busy_cpu_s, 1.0)
    note = cpu.scope_note()
    assert note is not None and "ZeroDivisionError" in note
    assert "no longer counted" in note
