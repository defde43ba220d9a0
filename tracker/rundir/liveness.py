"""Is a run's owner still running? The one judgement every reader of a live run makes.

A run directory is written by one process, its owner. A reader (`report`, `report --html`, a
job merge, Prometheus, a login node on shared storage) must never declare a live run killed,
so "gone" has to be proven:

- same host (the hostname and the kernel's boot id match run.json): the owner's pid is gone,
  or the pid now belongs to another process (its start time, from /proc, differs from the one
  the owner recorded; pids are reused);
- another host, or an old run.json without a boot id: the run's heartbeat (the newest mtime of
  the files a live run keeps writing: samples.jsonl every 0.5 s, summary.json every
  `summary_every_s`) has been silent for longer than the lease, LEASE_FACTOR × the summary
  interval and at least MIN_LEASE_S. A run whose heartbeat is fresh, or from the future (clock
  skew between hosts), is alive.
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from .names import HEARTBEAT_FILES

LEASE_FACTOR = 3.0
MIN_LEASE_S = 15.0


@dataclass(frozen=True)
class OwnerState:
    alive: bool
    how: str        # why we think so, for notes ("pid 123 on this host", "heartbeat 4.2 s ago")


def boot_id() -> Optional[str]:
    try:
        with open("/proc/sys/kernel/random/boot_id", "rb") as f:
            return f.read(64).decode("ascii", "replace").strip() or None
    except OSError:
        return None


def process_start_ticks(pid: int) -> Optional[int]:
    """The process's start time in clock ticks since boot (/proc/<pid>/stat field 22), or
    None where /proc cannot tell."""
    try:
        with open(f"/proc/{int(pid)}/stat", "rb") as f:
            raw = f.read(4096)
    except (OSError, ValueError):
        return None
    # the command name (field 2) is in parentheses and may itself hold spaces or ')'
    tail = raw[raw.rfind(b")") + 2:].split()
    try:
        return int(tail[19])    # field 22 counted from field 3
    except (IndexError, ValueError):
        return None


def owner_identity() -> dict[str, Any]:
    """What run.json records about the owner so that readers can tell it is gone."""
    return {"boot_id": boot_id(), "pid_start": process_start_ticks(os.getpid())}


def lease_s(manifest: dict[str, Any]) -> float:
    cfg = manifest.get("config") if isinstance(manifest.get("config"), dict) else {}
    every = cfg.get("summary_every_s") if isinstance(cfg, dict) else None
    try:
        every_s = float(every) if every is not None else 10.0
    except (TypeError, ValueError):
        every_s = 10.0
    if not every_s > 0 or every_s != every_s:
        every_s = 10.0
    return max(LEASE_FACTOR * every_s, MIN_LEASE_S)


def heartbeat_age_s(run_dir: Path, now: Optional[float] = None) -> Optional[float]:
    """Seconds since the run last wrote one of its heartbeat files (None: none exists)."""
    newest: Optional[float] = None
    for name in HEARTBEAT_FILES:
        try:
            m = os.lstat(Path(run_dir) / name).st_mtime
        except OSError:
            continue
        newest = m if newest is None else max(newest, m)
    if newest is None:
        return None
    return (time.time() if now is None else now) - newest


def _pid_state(pid: int, start: Optional[int]) -> OwnerState:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return OwnerState(False, f"pid {pid} has exited")
    except PermissionError:
        pass                       # exists, another user's
    except OverflowError:
        return OwnerState(False, f"pid {pid} is not a process id")
    if start is not None:
        now_start = process_start_ticks(pid)
        if now_start is not None and now_start != start:
            return OwnerState(False, f"pid {pid} is now another process (started later)")
    return OwnerState(True, f"pid {pid} is running on this host")


def owner_state(run_dir: Path, manifest: dict[str, Any],
                now: Optional[float] = None) -> OwnerState:
    """Alive unless proven gone (see the module's docstring)."""
    host = manifest.get("host") if isinstance(manifest.get("host"), dict) else {}
    assert isinstance(host, dict)
    pid = host.get("pid")
    same_host = host.get("hostname") == socket.gethostname()
    recorded_boot = host.get("boot_id")
    if same_host and isinstance(pid, int) and not isinstance(pid, bool) and pid > 0:
        here = boot_id()
        if recorded_boot is None or here is None or recorded_boot == here:
            start = host.get("pid_start")
            return _pid_state(pid, start if isinstance(start, int) else None)
    lease = lease_s(manifest)
    age = heartbeat_age_s(run_dir, now)
    if age is None:
        started = manifest.get("start_wall")
        try:
            age = (time.time() if now is None else now) - float(started)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            return OwnerState(False, "no heartbeat file and no start time")
    if age < lease:
        return OwnerState(True, f"heartbeat {max(age, 0.0):.1f} s ago (lease {lease:.0f} s)")
    return OwnerState(False, f"heartbeat silent for {age:.0f} s (lease {lease:.0f} s)")


__all__ = ["HEARTBEAT_FILES", "LEASE_FACTOR", "MIN_LEASE_S", "OwnerState", "boot_id",
           "heartbeat_age_s", "lease_s", "owner_identity", "owner_state", "process_start_ticks"]
