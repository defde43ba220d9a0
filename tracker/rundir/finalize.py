"""Ending a run whose owner died: the one write a reader may make, made once.

Only a run's owner writes its summary.json and its emissions row. When the owner was killed
(SIGKILL, OOM, a node lost) nobody will, so the first reader that can prove the owner gone
(liveness.owner_state) writes the rebuilt summary, status "killed", and upserts the run's
emissions row by run id. Under the run directory's lock, taken on the descriptor of the lock
file (never a path re-opened, never a link followed), it re-reads summary.json first: if the
owner finished after all, or another reader got there first, nothing is written. Two readers
racing, or a reader racing the owner's last writes, leave one summary and one row.
"""

from __future__ import annotations

import errno
import logging
import os
from pathlib import Path
from typing import Any, Optional

from ..summary import Summary
from .liveness import owner_state
from .names import LOCK as LOCK_NAME

log = logging.getLogger("tracker")



def _lock_run_dir(run_dir: Path) -> Optional[int]:
    """The run directory's lock (the one its owner held while it ran), held now by us; None
    when someone holds it (the owner is alive after all, or another reader is finishing it)."""
    import fcntl
    flags = os.O_RDWR | os.O_CLOEXEC | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(run_dir / LOCK_NAME, flags)
    except FileNotFoundError:   # an older run without one
        fd = os.open(run_dir / LOCK_NAME, flags | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        os.close(fd)
        if e.errno in (errno.EAGAIN, errno.EACCES):
            return None
        if e.errno == errno.ENOLCK:   # shared storage without locks: the lease must do
            return -1
        raise
    return fd


def finalize_killed_run(run_dir: Path, summary: Summary, manifest: dict[str, Any],
                        csv_root: Optional[Path]) -> Optional[str]:
    """Write `summary` (a rebuilt, status "killed" one) and its emissions row if the run's
    owner is provably gone and nobody else has ended the run. Returns why nothing was
    written, or None when it was."""
    from ..summary_build import emissions_row
    from .names import SUMMARY
    from .runlog import read_json, upsert_emissions_row, write_json_atomic

    if summary.status != "killed":
        return f"the run is {summary.status}"
    state = owner_state(run_dir, manifest)
    if state.alive:
        return f"its owner may still be running ({state.how})"
    try:
        fd = _lock_run_dir(run_dir)
    except OSError as e:
        return f"cannot lock {run_dir}: {e.strerror or e}"
    if fd is None:
        return "the run directory is locked (its owner or another reader holds it)"
    try:
        current = read_json(run_dir / SUMMARY)
        if current is not None and current.get("status") not in (None, "running"):
            return f"the run already ended ({current.get('status')})"
        write_json_atomic(run_dir / SUMMARY, summary.to_dict())
        if csv_root is not None and not manifest.get("job"):
            upsert_emissions_row(csv_root, emissions_row(summary, manifest))
        return None
    finally:
        if fd >= 0:
            os.close(fd)


__all__ = ["finalize_killed_run"]
