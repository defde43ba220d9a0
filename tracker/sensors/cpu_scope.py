"""Whose CPU time the CPU and RAM models bill: the whole machine's, or the run's share of it.

cpu_scope="machine" (the default) bills what the machine's CPUs did, as a RAPL counter (whole
packages) would: right on a machine the run has to itself, where the dataloader, the launcher
and the operating system's work for the run are all in it. cpu_scope="process" bills the run's
share: the machine's modeled CPU power x (the run's CPU seconds / the machine's busy CPU
seconds), interval by interval, and RAM as the run's resident memory x W/GiB. The run's CPU
seconds are the tracked process and all its descendants (dataloader workers, and under
`energy-tracker run` the command's whole tree), or, inside a SLURM job whose cgroup is
readable, the job's cgroup (every process of the job on this node). In a job outside SLURM
(torchrun: one tracker per rank, one of them claims the node's CPU and RAM), the claimant's
count also takes in the process trees of the job's other ranks on this node (`count_peers`:
the job layer passes a callable listing their pids, read from their run.json): each is counted
from when it is first seen (its CPU time before that stays "not the run's"), and only while it
is still the process recorded (same start time) and this user's.

psutil is imported when a scope is opened, not with this module: the configuration checks the
option's value at construction without it.
"""

from __future__ import annotations

import difflib
import os
import time
from collections.abc import Iterable, Mapping
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
# How often the job's other ranks on this node are listed again (their run.json files).
PEER_REFRESH_S = 2.0
# (pid, start time in clock ticks since boot, as /proc/<pid>/stat field 22 has it) of each
# other rank of the job on this node: what `count_peers` is given.
PeerSource = Callable[[], Iterable[tuple[int, int]]]


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
    descendants used since this object was made, and their resident memory; with
    `count_peers`, also the trees of the job's other ranks on this node.

    Each scan sums every member's new CPU time. A child that exits between two scans is seen
    again in its parent's reaped-children time (which covers the child's whole life); what of
    it was already counted is subtracted, so only its last moments are added, and a child too
    short-lived to be seen at all is counted through its parent. A process reparented out of
    the tree (a daemon) keeps what was counted until it left.

    A peer rank (another process of the job on this node) is counted from the scan that first
    sees it: its tree is taken as a baseline then, like this tree at creation. Its pid counts
    only while it is the process the rank recorded (same start time) and runs as this user;
    its descendants only while they run as this user. Any failure listing or reading the
    peers drops them (this tree alone is counted from then on) with a note (`peer_note`).
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
        # the job's other ranks on this node (count_peers)
        self._peer_source: Optional[PeerSource] = None
        self._peers: dict[int, Any] = {}        # pid -> psutil.Process, verified at refresh
        self._peers_at = -float("inf")
        self.peer_pids: set[int] = set()        # every peer rank counted at some point
        self.peer_note: Optional[str] = None    # why peers are not (or no longer) counted
        self.scan(baseline=True)

    @property
    def source(self) -> str:
        own = f"process tree of pid {self._root.pid}: psutil, reaped children included"
        if not self.peer_pids:
            return own
        n = len(self.peer_pids)
        pids = ", ".join(str(p) for p in sorted(self.peer_pids))
        return (f"{own}; and the process trees of {n} other rank{'s' if n > 1 else ''} of the "
                f"job on this node (pid {pids}), each from when it was first seen: a rank's "
                "CPU time before that is not counted as the run's")

    def count_peers(self, peers: PeerSource) -> None:
        """Also count the trees of the processes `peers()` lists (the job's other ranks on
        this node), listed again at most every PEER_REFRESH_S seconds; never raises."""
        self._peer_source = peers
        self._peers_at = -float("inf")

    def cpu_s(self) -> float:
        return self.scan()

    def memory_bytes(self) -> Optional[int]:
        if self._clock() - self._scanned_at > SCAN_REUSE_S:
            self.scan()
        return self.rss_bytes

    def scan(self, baseline: bool = False) -> float:
        """Update and return `total_s`. Processes that vanish mid-scan are skipped."""
        now: dict[int, _Seen] = {}
        peers = self._peer_roots() if self._peer_source is not None else []
        # with peers: one pass over /proc for every tree (psutil's children() makes one each)
        kids_of = self._kids_map() if peers else None
        for p in self._tree(self._root, kids_of):
            self._read(p, now)
        fresh: set[int] = set()
        try:
            for root, is_new in peers:
                for p in self._tree(root, kids_of):
                    if self._read(p, now, check_user=True) and is_new:
                        fresh.add(p.pid)
        except Exception as exc:   # never into training: this tree alone from now on
            self._drop_peers(f"{type(exc).__name__}: {exc}")
        if not baseline:
            for pid in fresh:   # a peer's tree first seen now: its time so far is not the run's
                self._seen.setdefault(pid, now[pid])
            self.total_s += self._new_time(now)
        self._seen = now
        self.rss_bytes = sum(s.rss for s in now.values())
        self.members = len(now)
        self._scanned_at = self._clock()
        return self.total_s

    def _read(self, p: Any, now: dict[int, _Seen], check_user: bool = False) -> bool:
        """Add `p` to `now`; False when it was already there, is gone or is not ours."""
        ps = self._psutil
        if p.pid in now:
            return False
        try:
            with p.oneshot():
                if check_user and not _same_user(p):
                    return False
                t = p.cpu_times()
                now[p.pid] = _Seen(p.create_time(), p.ppid(), t.user + t.system,
                                   t.children_user + t.children_system,
                                   p.memory_info().rss)
                return True
        except ps.NoSuchProcess:      # gone (a zombie too): its parent's reaped time
            return False                # will show it
        except ps.Error:                # unreadable this once: as last seen
            if p.pid in self._seen:
                now[p.pid] = self._seen[p.pid]
                return True
            return False

    def _tree(self, root: Any, kids_of: Optional[dict[int, list[int]]]) -> list[Any]:
        """`root` and its descendants (younger than it: an older one's pid was reused)."""
        ps = self._psutil
        if kids_of is None:
            try:
                return [root, *root.children(recursive=True)]
            except ps.Error:
                return [root]
        out, seen, stack = [root], {root.pid}, [root.pid]
        try:
            born = root.create_time()
        except ps.Error:
            return out
        while stack:
            for pid in kids_of.get(stack.pop(), ()):
                if pid in seen:
                    continue
                seen.add(pid)
                try:
                    child = ps.Process(pid)
                    if born <= child.create_time():
                        out.append(child)
                        stack.append(pid)
                except ps.Error:
                    continue
        return out

    def _kids_map(self) -> Optional[dict[int, list[int]]]:
        """parent pid -> its children's pids, from one pass over /proc (psutil's own map);
        None where psutil has none (then each tree asks psutil)."""
        ppid_map = getattr(self._psutil, "_ppid_map", None)
        if not callable(ppid_map):
            return None
        try:
            parents = ppid_map()
        except Exception:
            return None
        kids: dict[int, list[int]] = {}
        for pid, ppid in parents.items():
            kids.setdefault(ppid, []).append(pid)
        return kids

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

    # -- the job's other ranks on this node ----------------------------------------------------
    def _peer_roots(self) -> list[tuple[Any, bool]]:
        """(process, first seen now) for each peer rank to read in this scan; [] after a
        failure (with `peer_note`)."""
        try:
            new: set[int] = set()
            if self._clock() - self._peers_at >= PEER_REFRESH_S:
                new = self._refresh_peers()
            out: list[tuple[Any, bool]] = []
            for pid, proc in list(self._peers.items()):
                # is_running compares the start time read now with the one verified
                if proc.is_running():
                    out.append((proc, pid in new))
                else:
                    self._peers.pop(pid)   # gone, or its pid reused: its last moments are lost
            return out
        except Exception as exc:   # never into training: this tree alone from now on
            self._drop_peers(f"{type(exc).__name__}: {exc}")
            return []

    def _refresh_peers(self) -> set[int]:
        """List the peers again; returns the pids admitted now."""
        assert self._peer_source is not None
        ps = self._psutil
        self._peers_at = self._clock()
        listed = {int(pid): int(start) for pid, start in self._peer_source()}
        listed.pop(self._root.pid, None)
        for pid in [p for p in self._peers if p not in listed]:
            self._peers.pop(pid)
        new: set[int] = set()
        for pid, start in listed.items():
            if pid in self._peers or pid <= 0 or _start_ticks(pid) != start:
                continue     # known, gone, or the pid now belongs to another process
            try:
                proc = ps.Process(pid)   # psutil keeps its start time: is_running() checks it
                if not _same_user(proc) or _start_ticks(pid) != start:
                    continue      # never another user's process (nor one reused meanwhile)
            except ps.Error:
                continue
            self._peers[pid] = proc
            self.peer_pids.add(pid)
            new.add(pid)
        return new

    def _drop_peers(self, why: str) -> None:
        self._peers.clear()
        self._peer_source = None
        self.peer_note = (f"cpu_scope=\"process\": the job's other ranks on this node are no "
                          f"longer counted ({why}); from then on only this process's tree is "
                          "the run's")


def _same_user(proc: Any) -> bool:
    """Does `proc` run as this user (real and effective uid both ours)?"""
    uids = proc.uids()
    return bool(uids.real == os.getuid() and uids.effective == os.geteuid())


def _start_ticks(pid: int) -> Optional[int]:
    """The process's start time as run.json records it (liveness.process_start_ticks)."""
    from ..rundir.liveness import process_start_ticks
    return process_start_ticks(pid)


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


__all__ = ["CPU_SCOPES", "DEFAULT_CPU_SCOPE", "MACHINE", "PEER_REFRESH_S", "PROCESS", "JobCgroup",
           "PeerSource", "ProcessTree", "check_cpu_scope", "machine_cpu_s", "run_usage",
           "slurm_cgroup"]
