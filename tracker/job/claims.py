"""Who measures which device in a job: every device exactly once, whatever each process sees.

Two ranks that both see all 8 GPUs must not both count them, so a device is measured by the
process that holds its claim: a POSIX record lock (`lockf`) on a node-local file named after
the device (GPU UUID) or, for node-wide components (CPU, RAM), after the node. Record locks
belong to the process: the kernel drops them when it exits or is killed, and a forked
DataLoader worker does not inherit them. The files live in a node-local directory private to
this user, so a shared filesystem's locking is never relied on and no other user can squat or
redirect them: $XDG_RUNTIME_DIR/energy-tracker (when that is this user's, mode 0700), else
/dev/shm/energy-tracker-<uid>, else <tempdir>/energy-tracker-<uid>; ENERGY_TRACKER_LOCK_DIR
overrides. Each is checked (ours, no group/other write; safefs.private_dir) and one that fails
is skipped with a note; with none left the job falls back to the local-rank rule.

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

from ..safefs import euid, open_nofollow, private_dir, read_small
from ..sensors.base import Sensor
from .identity import JobIdentity

log = logging.getLogger("tracker")

ENV_LOCK_DIR = "ENERGY_TRACKER_LOCK_DIR"
# The node-local RAM filesystem: a module setting, so a test can stand a directory in for it
SHM_DIR = Path("/dev/shm")
# A claim file holds its holder's JSON (pid, rank, node, run directory): never read more
HOLDER_MAX_BYTES = 4096

# Claims held by this process, by lock file (POSIX locks never conflict inside one process,
# so a second tracker in the same process must be told here; keyed by the file, not the
# device, so a claim left by one job never blocks another job's).
_held: dict[str, int] = {}
_held_lock = threading.Lock()


def _uid_tag() -> str:
    me = euid()
    return str(me) if me is not None else "user"


def _runtime_dir_ok(path: str) -> bool:
    """XDG_RUNTIME_DIR is only used when it is this user's own private directory (under
    `sudo -E` it is still the invoking user's)."""
    import stat
    try:
        st = os.lstat(path)
    except OSError:
        return False
    return (os.path.isabs(path) and stat.S_ISDIR(st.st_mode) and st.st_uid == euid()
            and not st.st_mode & 0o077)


def lock_dir_candidates(env: Optional[dict[str, str]] = None) -> list[Path]:
    """Where the claim files may live, best first: ENERGY_TRACKER_LOCK_DIR alone when set (the
    user's choice is not silently replaced), else the user's runtime directory, /dev/shm and
    the temp directory."""
    env = dict(os.environ) if env is None else env
    if env.get(ENV_LOCK_DIR):
        return [Path(env[ENV_LOCK_DIR])]
    out: list[Path] = []
    xdg = env.get("XDG_RUNTIME_DIR")
    if xdg and _runtime_dir_ok(xdg):
        out.append(Path(xdg) / "energy-tracker")
    tag = f"energy-tracker-{_uid_tag()}"
    if SHM_DIR.is_dir() and os.access(SHM_DIR, os.W_OK | os.X_OK):
        out.append(SHM_DIR / tag)
    out.append(Path(tempfile.gettempdir()) / tag)
    return out


@dataclass(frozen=True)
class LockRoot:
    path: Optional[Path]             # a checked private directory; None when none was safe
    refused: tuple[str, ...] = ()    # why each candidate before it was not used


def find_lock_root(env: Optional[dict[str, str]] = None,
                   candidates: Optional[Sequence[Path]] = None) -> LockRoot:
    """The first candidate that is (or can be made) a private directory of this user."""
    refused: list[str] = []
    for c in lock_dir_candidates(env) if candidates is None else candidates:
        try:
            return LockRoot(private_dir(c), tuple(refused))
        except OSError as e:
            refused.append(str(e) if e.strerror is None else f"{c}: {e.strerror}")
    return LockRoot(None, tuple(refused))


def lock_root(env: Optional[dict[str, str]] = None) -> Path:
    """The lock directory claims use: the first safe candidate (created 0700), or the first
    candidate when none is safe (the claims then fall back to the local-rank rule)."""
    found = find_lock_root(env)
    return found.path if found.path is not None else lock_dir_candidates(env)[0]


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
    """This process's claims in one job. Every call is non-blocking and never raises.

    `notes`: lock directories refused on the way (another user's, open to others), for the
    run's notes. `error`: why claims cannot be used at all (the caller then falls back to the
    local-rank rule, fallback_keep)."""

    def __init__(self, job_key: str, owner: dict[str, Any], root: Optional[Path] = None,
                 env: Optional[dict[str, str]] = None):
        self.owner = owner
        self.mine: list[str] = []
        self.error: Optional[str] = None
        self.notes: list[str] = []
        sub = hashlib.sha1(job_key.encode()).hexdigest()[:16]
        found = find_lock_root(env, None if root is None else [root])
        if found.path is None:
            first = root if root is not None else lock_dir_candidates(env)[0]
            self.dir = first / sub
            self.error = "no private lock directory: " + "; ".join(found.refused)
            log.warning("energy-tracker: device claims unavailable (%s)", self.error)
            return
        self.dir = found.path / sub
        for why in found.refused:
            self.notes.append(f"lock directory refused: {why}; device claims use "
                              f"{found.path} instead")
            log.warning("energy-tracker: %s", self.notes[-1])
        try:
            private_dir(self.dir)
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
                import fcntl
            except ImportError:  # no fcntl (Windows): the caller falls back to local ranks
                self.error = "no POSIX locks on this platform"
                return False
            try:   # never through a link, only a plain file of ours; locked by descriptor
                fd = open_nofollow(path, os.O_RDWR | os.O_CREAT, 0o600)
            except OSError as e:
                self.error = f"cannot open {path}: {e.strerror or e}"
                return False
            try:
                fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as e:
                os.close(fd)
                if e.errno not in (errno.EAGAIN, errno.EACCES):
                    self.error = f"cannot lock {path}: {e.strerror or e}"
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
        """Who holds `key`, as its holder wrote it: only from a plain file of ours, at most
        HOLDER_MAX_BYTES, a JSON object; else None."""
        try:
            raw = read_small(self.dir / f"{key}.lock", HOLDER_MAX_BYTES)
            owner = json.loads(raw or b"null")
        except (OSError, ValueError):
            return None
        return owner if isinstance(owner, dict) else None

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


__all__ = ["ENV_LOCK_DIR", "Claim", "ClaimBook", "LockRoot", "claim_key", "fallback_keep",
           "find_lock_root", "lock_dir_candidates", "lock_root", "own_gpu_index", "plan"]
