"""Whose CPU time the CPU and RAM models bill: the whole machine's, or the run's share of it.

cpu_scope="machine" (the default) bills what the machine's CPUs did, as a RAPL counter (whole
packages) would: right on a machine the run has to itself, where the dataloader, the launcher
and the operating system's work for the run are all in it. cpu_scope="process" bills the run's
share: the machine's modeled CPU power x (the run's CPU seconds / the machine's busy CPU
seconds), interval by interval, and RAM as the run's resident memory x W/GiB. The run's CPU
seconds are the tracked process and all its descendants (dataloader workers, and under
`energy-tracker run` the command's whole tree), or, inside a SLURM job whose cgroup is
readable, the job's cgroup (every process of the job on this node).

psutil is imported when a scope is opened, not with this module: the configuration checks the
option's value at construction without it.
"""

from __future__ import annotations

import difflib
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from ..errors import ConfigError

MACHINE = "machine"
PROCESS = "process"
CPU_SCOPES = (MACHINE, PROCESS)
DEFAULT_CPU_SCOPE = MACHINE
DEFAULT_CGROUP_ROOT = Path("/sys/fs/cgroup")
PROC_SELF_CGROUP = Path("/proc/self/cgroup")
# A scan of the process tree serves both models' reads of one tick (they read at 1 Hz).
SCAN_REUSE_S = 0.5


def check_cpu_scope(value: Any) -> str:
    """`value` as a scope name, or ConfigError saying what was given, what is accepted and
    the closest name."""
    if isinstance(value, str) and value.strip().lower() in CPU_SCOPES:
        return value.strip().lower()
    close = difflib.get_close_matches(str(value).strip().lower(), CPU_SCOPES, n=1, cutoff=0.5)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    raise ConfigError(f"cpu_scope must be one of {', '.join(repr(s) for s in CPU_SCOPES)} "
                      f"(\"machine\": the whole machine's CPU time, the default; \"process\": "
                      f"only the run's share of it), got {value!r}{hint}")


def machine_cpu_s() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, summed over its CPUs (busy:
    everything but idle and iowait, as psutil.cpu_percent counts it; guest time is already
    in user time, so it is not added twice)."""
    import psutil
    t = psutil.cpu_times()
    total = sum(t) - getattr(t, "guest", 0.0) - getattr(t, "guest_nice", 0.0)
    return total - t.idle - getattr(t, "iowait", 0.0), total


# -- the run's CPU seconds: its process tree --------------------------------------------------
class _Seen:
    """One member of the tree as last scanned (a plain class: a dataclass costs start-up)."""

    __slots__ = ("created", "own_s", "ppid", "reaped_s", "rss")

    def __init__(self, created: float, ppid: int, own_s: float, reaped_s: float, rss: int):
        self.created, self.ppid, self.rss = created, ppid, rss
        self.own_s = own_s        # user + system of the process itself
        self.reaped_s = reaped_s  # children_user + children_system: its reaped children


class ProcessTree:
    """CPU seconds (user + system) the process `pid` (default this one) and all its
    descendants used since this object was made, and their resident memory.

    Each scan sums every member's new CPU time. A child that exits between two scans is seen
    again in its parent's reaped-children time (which covers the child's whole life); what of
    it was already counted is subtracted, so only its last moments are added, and a child too
    short-lived to be seen at all is counted through its parent. A process reparented out of
    the tree (a daemon) keeps what was counted until it left.
    """

    def __init__(self, pid: Optional[int] = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        import psutil
        self._psutil = psutil
        self._root = psutil.Process(os.getpid() if pid is None else pid)
        self._clock = clock
        self._seen: dict[int, _Seen] = {}
        self._owed: dict[int, float] = {}   # parent pid -> counted time of its vanished children
        self.total_s = 0.0
        self.rss_bytes = 0
        self.members = 0
        self._scanned_at = -float("inf")
        self.scan(baseline=True)

    @property
    def source(self) -> str:
        return f"process tree of pid {self._root.pid}: psutil, reaped children included"

    def cpu_s(self) -> float:
        return self.scan()

    def memory_bytes(self) -> Optional[int]:
        if self._clock() - self._scanned_at > SCAN_REUSE_S:
            self.scan()
        return self.rss_bytes

    def scan(self, baseline: bool = False) -> float:
        """Update and return `total_s`. Processes that vanish mid-scan are skipped."""
        ps = self._psutil
        now: dict[int, _Seen] = {}
        try:
            procs = [self._root, *self._root.children(recursive=True)]
        except ps.Error:
            procs = [self._root]
        for p in procs:
            try:
                with p.oneshot():
                    t = p.cpu_times()
                    now[p.pid] = _Seen(p.create_time(), p.ppid(), t.user + t.system,
                                       t.children_user + t.children_system,
                                       p.memory_info().rss)
            except ps.NoSuchProcess:      # gone (a zombie too): its parent's reaped time
                continue                    # will show it
            except ps.Error:                # unreadable this once: as last seen
                if p.pid in self._seen:
                    now[p.pid] = self._seen[p.pid]
        if not baseline:
            self.total_s += self._new_time(now)
        self._seen = now
        self.rss_bytes = sum(s.rss for s in now.values())
        self.members = len(now)
        self._scanned_at = self._clock()
        return self.total_s

    def _new_time(self, now: dict[int, _Seen]) -> float:
        for pid, last in self._seen.items():
            seen = now.get(pid)
            if seen is None or seen.created != last.created:   # gone (or its pid reused)
                self._owed[last.ppid] = (self._owed.get(last.ppid, 0.0) + last.own_s
                                         + last.reaped_s)
                self._owed.pop(pid, None)
        added = 0.0
        for pid, cur in now.items():
            old = self._seen.get(pid)
            if old is None or old.created != cur.created:   # born since the last scan
                added += cur.own_s + cur.reaped_s
                continue
            added += max(0.0, cur.own_s - old.own_s)
            reaped = max(0.0, cur.reaped_s - old.reaped_s)
            owed = self._owed.get(pid, 0.0)
            added += max(0.0, reaped - owed)
            if owed:
                self._owed[pid] = max(0.0, owed - reaped)
        return added


# -- the run's CPU seconds: a SLURM job's cgroup ----------------------------------------------
@dataclass(frozen=True)
class JobCgroup:
    """A SLURM job's cgroup on this node: its CPU usage counter and its memory in use."""

    job_id: str
    version: int                 # 1 or 2
    cpu_file: Path               # v2 cpu.stat (usage_usec), v1 cpuacct.usage (ns)
    memory_file: Optional[Path]  # v2 memory.current, v1 memory.usage_in_bytes (bytes)
    _base: list[float] = field(default_factory=list, compare=False, repr=False)

    @property
    def source(self) -> str:
        return f"SLURM job {self.job_id}'s cgroup ({self.cpu_file})"

    def usage_s(self) -> float:
        """The cgroup's CPU seconds since it was made (OSError/ValueError when unreadable)."""
        text = self.cpu_file.read_text()
        if self.version == 2:
            for line in text.splitlines():
                key, _, value = line.partition(" ")
                if key == "usage_usec":
                    return int(value) / 1e6
            raise ValueError(f"no usage_usec in {self.cpu_file}")
        return int(text.strip()) / 1e9

    def cpu_s(self) -> float:
        """CPU seconds since the first call (the run's start)."""
        now = self.usage_s()
        if not self._base:
            self._base.append(now)
        return now - self._base[0]

    def memory_bytes(self) -> Optional[int]:
        if self.memory_file is None:
            return None
        try:
            return int(self.memory_file.read_text().strip())
        except (OSError, ValueError):
            return None


def slurm_cgroup(env: Mapping[str, str], *, root: Path = DEFAULT_CGROUP_ROOT,
                 proc_cgroup: Path = PROC_SELF_CGROUP) -> Optional[JobCgroup]:
    """The cgroup of the SLURM job this process is in, when its CPU counter is readable;
    None outside SLURM or when it is not (then the process tree is used)."""
    job = (env.get("SLURM_JOB_ID") or env.get("SLURM_JOBID") or "").strip()
    if not job:
        return None
    try:
        lines = proc_cgroup.read_text().splitlines()
    except OSError:
        return None
    cpu: Optional[tuple[int, Path]] = None
    memory: Optional[Path] = None
    for line in lines:
        hierarchy, _, rest = line.partition(":")
        controllers, _, rel = rest.partition(":")
        parts = [p for p in rel.split("/") if p]
        if f"job_{job}" not in parts:
            continue
        job_rel = Path(*parts[:parts.index(f"job_{job}") + 1])
        names = controllers.split(",") if controllers else []
        if hierarchy == "0" and not controllers:      # cgroup v2: one unified tree
            d = root / job_rel
            cpu = cpu or (2, d / "cpu.stat")
            memory = memory or d / "memory.current"
        elif "cpuacct" in names:                     # v1: the cpuacct controller's tree
            for mount in (controllers, "cpu,cpuacct", "cpuacct"):
                f = root / mount / job_rel / "cpuacct.usage"
                if f.is_file():
                    cpu = (1, f)
                    break
        elif "memory" in names:
            memory = root / "memory" / job_rel / "memory.usage_in_bytes"
    if cpu is None:
        return None
    group = JobCgroup(job, cpu[0], cpu[1], memory if memory and memory.is_file() else None)
    try:
        group.cpu_s()    # readable now, and the run's baseline
    except (OSError, ValueError):
        return None
    return group


def run_usage(env: Optional[Mapping[str, str]] = None, *, cgroup_root: Optional[Path] = None,
              proc_cgroup: Optional[Path] = None) -> Any:
    """What measures the run's CPU seconds and memory: the SLURM job's cgroup when readable,
    else this process's tree. Both have `cpu_s()`, `memory_bytes()` and `source`. The
    cgroup paths default to this module's DEFAULT_CGROUP_ROOT and PROC_SELF_CGROUP, looked up
    now (a test points them at a tree of its own)."""
    group = slurm_cgroup(os.environ if env is None else env,
                         root=DEFAULT_CGROUP_ROOT if cgroup_root is None else cgroup_root,
                         proc_cgroup=PROC_SELF_CGROUP if proc_cgroup is None else proc_cgroup)
    return group if group is not None else ProcessTree()


__all__ = ["CPU_SCOPES", "DEFAULT_CPU_SCOPE", "MACHINE", "PROCESS", "JobCgroup", "ProcessTree",
           "check_cpu_scope", "machine_cpu_s", "run_usage", "slurm_cgroup"]
