"""Who measures which device in a job: every device exactly once, whatever each process sees.

Two ranks that both see all 8 GPUs must not both count them, so a device is measured by the
process that holds its claim: a POSIX record lock (`lockf`) on a node-local file named after
the device (GPU UUID) or, for node-wide components (CPU, RAM), after the node. Record locks
belong to the process: the kernel drops them when it exits or is killed, and a forked
DataLoader worker does not inherit them. The files live under /dev/shm (node-local by
construction; ENERGY_TRACKER_LOCK_DIR overrides), so a shared filesystem's locking is never
relied on.

Order: a process first claims "its own" GPU (the one at LOCAL_RANK among those it sees, as
torch's `cuda:LOCAL_RANK` convention has it), then GPUs no local rank owns. A GPU owned by
another local rank is left to that rank, and claimed later (`late_claims`) only if nobody took
it, e.g. when only rank 0 calls `track()`.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import tempfile
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from ..sensors.base import Sensor
from .identity import JobIdentity

log = logging.getLogger("tracker")

ENV_LOCK_DIR = "ENERGY_TRACKER_LOCK_DIR"

# Claims held by this process, by lock file (POSIX locks never conflict inside one process,
# so a second tracker in the same process must be told here; keyed by the file, not the
# device, so a claim left by one job never blocks another job's).
_held: dict[str, int] = {}
_held_lock = threading.Lock()


def lock_root(env: Optional[dict[str, str]] = None) -> Path:
    env = dict(os.environ) if env is None else env
    if env.get(ENV_LOCK_DIR):
        return Path(env[ENV_LOCK_DIR])
    shm = Path("/dev/shm")
    base = shm if shm.is_dir() and os.access(shm, os.W_OK) else Path(tempfile.gettempdir())
    return base / f"energy-tracker-{os.getuid() if hasattr(os, 'getuid') else 'user'}"


def claim_key(sensor: Sensor, node_key: str) -> str:
    """A device's claim: its UUID when it has one (GPUs), else the node and the component."""
    uuid = sensor.info.details.get("uuid")
    if uuid:
        return f"dev-{uuid}"
    digest = hashlib.sha1(node_key.encode()).hexdigest()[:12]
    return f"node-{digest}-{sensor.component}"


@dataclass
class Claim:
    key: str
    device: str
    component: str
    held: bool
    by: Optional[dict[str, Any]] = None     # who holds it, when it is someone else

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"device": self.device, "component": self.component,
                             "key": self.key, "measured_here": self.held}
        if self.by:
            d["measured_by"] = self.by
        return d


class ClaimBook:
    """This process's claims in one job. Every call is non-blocking and never raises."""

    def __init__(self, job_key: str, owner: dict[str, Any], root: Optional[Path] = None):
        self.dir = (root or lock_root()) / hashlib.sha1(job_key.encode()).hexdigest()[:16]
        self.owner = owner
        self.mine: list[str] = []
        self.error: Optional[str] = None
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            self.error = f"claims directory {self.dir} not usable: {e.strerror or e}"

    def try_claim(self, key: str) -> bool:
        """Take the claim on `key` if nobody holds it."""
        if self.error is not None:
            return False
        path = self.dir / f"{key}.lock"
        with _held_lock:
            if str(path) in _held:
                return False
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as e:
                self.error = f"cannot open {path}: {e.strerror or e}"
                return False
            try:
                import fcntl
                fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as e:
                os.close(fd)
                if e.errno not in (errno.EAGAIN, errno.EACCES):
                    self.error = f"cannot lock {path}: {e.strerror or e}"
                return False
            except ImportError:  # no fcntl (Windows): the caller falls back to local ranks
                os.close(fd)
                self.error = "no POSIX locks on this platform"
                return False
            try:  # say who holds it, for the report of the process that did not get it
                os.ftruncate(fd, 0)
                os.pwrite(fd, json.dumps(self.owner).encode(), 0)
            except OSError:
                pass
            _held[str(path)] = fd
            self.mine.append(key)
            return True

    def holder(self, key: str) -> Optional[dict[str, Any]]:
        try:
            with open(self.dir / f"{key}.lock") as f:
                owner: Optional[dict[str, Any]] = json.loads(f.read() or "null")
                return owner
        except (OSError, ValueError):
            return None

    def release(self) -> None:
        with _held_lock:
            for key in self.mine:
                fd = _held.pop(str(self.dir / f"{key}.lock"), None)
                if fd is not None:
                    try:
                        os.close(fd)   # closing drops the record lock
                    except OSError:
                        pass
            self.mine.clear()


def own_gpu_index(identity: JobIdentity, n_visible: int) -> Optional[int]:
    """Index (among the GPUs this process sees) of the GPU it trains on: `cuda:LOCAL_RANK`
    when it sees several, its only GPU when it sees one."""
    if n_visible == 1:
        return 0
    lr = identity.local_rank
    if lr is not None and 0 <= lr < n_visible:
        return lr
    return None


def plan(sensors: Sequence[Sensor], identity: JobIdentity) -> tuple[list[Sensor], list[Sensor]]:
    """(claim now, claim later): own GPU first, then devices no local rank owns; GPUs owned by
    another local rank are for later, in case that rank never claims them."""
    gpus = [s for s in sensors if s.info.details.get("uuid")]
    others = [s for s in sensors if not s.info.details.get("uuid")]
    own = own_gpu_index(identity, len(gpus))
    owners = identity.local_world_size or 1
    now: list[Sensor] = [gpus[own]] if own is not None else []
    later: list[Sensor] = []
    for i, s in enumerate(gpus):
        if i == own:
            continue
        (later if len(gpus) > 1 and i < owners else now).append(s)
    return now + others, later


def fallback_keep(sensors: Sequence[Sensor], identity: JobIdentity) -> list[Sensor]:
    """Without usable locks: trust the local rank (own GPU; CPU/RAM on local rank 0)."""
    gpus = [s for s in sensors if s.info.details.get("uuid")]
    own = own_gpu_index(identity, len(gpus))
    keep = [gpus[own]] if own is not None and len(gpus) > 1 else list(gpus)
    if (identity.local_rank or 0) == 0:
        keep += [s for s in sensors if not s.info.details.get("uuid")]
    return keep


__all__ = ["ENV_LOCK_DIR", "Claim", "ClaimBook", "claim_key", "fallback_keep", "lock_root",
           "own_gpu_index", "plan"]
