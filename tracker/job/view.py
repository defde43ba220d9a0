"""The job's summary as one rank sees it when it stops: every rank tells the job's story.

A rank's own run directory holds its part of the job (its claimed devices; CPU and RAM on
whichever rank claimed them), so a rank's own figures can be zero for a job that measured.
What `stop()` returns on every rank is therefore the job: the saved job summary when the last
process to stop has written it (waited for at most the job timeout), else the job as it
stands, merged from its members' directories, with `partial` set and the ranks still running
named. Nothing is written here: the job summary and its emissions row are written once, by
the last process to stop (member.finish / end_job).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import TYPE_CHECKING, Any, Optional

from ..accounting.parts import as_part
from ..rundir.names import SUMMARY
from ..rundir.runlog import read_json
from .layout import members
from .part import JobPart

if TYPE_CHECKING:
    from ..summary import Summary
    from .member import JobMember

log = logging.getLogger("tracker")

POLL_S = 0.05


def _still_running(member: JobMember) -> list[Any]:
    attempt = (member.identity.launch, member.identity.restart)
    out: list[Any] = []
    for m in members(member.job_dir):
        if m.attempt_key == attempt and m.path != member.run_dir and m.state() == "running":
            ranks = (m.manifest.get("job") or {}).get("ranks") or [m.identity.get("rank")]
            out.extend(r for r in ranks if r is not None)
    return sorted(set(out), key=lambda r: (str(type(r)), r))


def _saved(member: JobMember, not_before: float) -> Optional[dict[str, Any]]:
    """The job summary on disk if it is final and was written after this rank's part."""
    path = member.job_dir / SUMMARY
    try:
        if path.stat().st_mtime < not_before:
            return None
    except OSError:
        return None
    data = read_json(path)
    if data is None or data.get("status") in (None, "running"):
        return None
    return data


def job_summary(member: JobMember, *, own_end_wall: float, wait_s: float) -> Optional[Summary]:
    """The job's summary for a rank that has stopped (None if it cannot be made: the rank's
    own summary then stands). Bounded by `wait_s`; never raises."""
    from ..summary import Summary
    try:
        own = member.run_dir / SUMMARY
        not_before = own.stat().st_mtime if own.exists() else own_end_wall
        running = _still_running(member)
        deadline = time.monotonic() + max(wait_s, 0.0)
        while not running:
            saved = _saved(member, not_before)
            if saved is not None:
                return Summary.from_dict(saved)
            if time.monotonic() >= deadline:
                break
            time.sleep(POLL_S)
        from .merge import merge
        view = merge([member.job_dir])
        if not running:
            return view
        job = as_part(JobPart, {**(view.job or {}), "partial": True, "still_running": running})
        note = (f"partial: rank(s) {', '.join(str(r) for r in running)} of the job were still "
                "running when this process stopped; the last process to stop writes the job "
                "summary (or run `energy-tracker report` on the job directory)")
        return dataclasses.replace(view, job=job, notes=(*view.notes, note))
    except Exception as e:   # the rank's own summary stands; the job can be reported later
        log.warning("energy-tracker: the job's summary could not be read (%s: %s); stop() "
                    "returns this process's part", type(e).__name__, e)
        return None


__all__ = ["job_summary"]
