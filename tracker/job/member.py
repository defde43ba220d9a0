"""This process's part in a job: its directory, the devices it claimed, and ending the job.

    member, sensors, notes = JobMember.join(identity, sensors, output_root=..., name=...)
    ... the run samples `sensors` into member.run_dir like any run ...
    member.finish(timeout_s=10, csv_root=output_root)    # after the run's own files

`finish` is where the job ends: once every other process of this attempt has a final summary
or is dead, one process (an O_EXCL marker decides which) merges the members into the job's
summary.json and writes the job's single emissions.csv row. Every wait is bounded; a process
that gives up leaves the job to whoever stops last, and `energy-tracker report JOB_DIR` can
always finish it from the files.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from ..rundir import names
from ..rundir.names import SUMMARY
from ..rundir.runlog import write_json_atomic
from ..sensors.base import Sensor
from .claims import Claim, ClaimBook, claim_key, fallback_keep, lock_root, plan
from .identity import JobIdentity
from .layout import (
    JOB_MANIFEST,
    create_member_dir,
    job_uid,
    member_dir_name,
    members,
    open_job_dir,
    open_node_dir,
)

log = logging.getLogger("tracker")

# GPUs owned by another local rank are claimed by whoever is still missing them after this
# long (e.g. a script that tracks on rank 0 only); their energy before that is not measured.
LATE_CLAIM_S = 5.0
ENV_LATE_CLAIM = "ENERGY_TRACKER_LATE_CLAIM_S"


def late_claim_s() -> float:
    try:
        return max(float(os.environ.get(ENV_LATE_CLAIM, LATE_CLAIM_S)), 0.0)
    except ValueError:
        return LATE_CLAIM_S
POLL_S = 0.2


@dataclass
class JobMember:
    identity: JobIdentity
    job_dir: Path
    node_dir: Path
    run_dir: Path
    role: str = "rank"                      # "rank": a process of the job; "cli": the wrapper
    claims: Optional[ClaimBook] = None
    claim_records: list[Claim] = field(default_factory=list)
    later: list[Sensor] = field(default_factory=list)
    ranks: list[int] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    late_after_s: float = field(default_factory=late_claim_s)
    ended: bool = False                     # finish() wrote the job summary (this process)

    # -- joining -------------------------------------------------------------------------------
    @classmethod
    def join(cls, identity: JobIdentity, sensors: list[Sensor], *, output_root: Path,
             name: str, run_dir: Optional[Path] = None
             ) -> tuple[JobMember, list[Sensor]]:
        """Find or create the job's directory and this process's run directory in it, and
        claim the devices this process will measure. Returns (member, sensors to sample)."""
        if run_dir is None:
            job_dir = open_job_dir(output_root, identity, name)
            node_dir = open_node_dir(job_dir, identity)
            run_dir = create_member_dir(node_dir, member_dir_name(identity))
        else:   # the user chose the directory: claims still apply, the layout does not
            node_dir = run_dir.parent
            job_dir = node_dir.parent
        member = cls(identity, job_dir, node_dir, run_dir, ranks=[identity.rank])
        kept = member._claim(sensors)
        return member, kept

    def _claim(self, sensors: list[Sensor]) -> list[Sensor]:
        ident = self.identity
        book = ClaimBook(job_uid(ident), owner={"pid": os.getpid(), "rank": ident.rank,
                                                "node": ident.node,
                                                "run_dir": str(self.run_dir)})
        self.claims = book
        self.notes.extend(book.notes)      # lock directories refused (another user's)
        now, later = plan(sensors, ident)
        kept: list[Sensor] = []
        for s in now:
            key = claim_key(s, ident.node_key)
            if book.try_claim(key):
                kept.append(s)
                self.claim_records.append(Claim(key, s.name, s.component, True))
            else:
                self.claim_records.append(Claim(key, s.name, s.component, False,
                                                book.holder(key)))
        if book.error is not None:
            # No node-local locks: fall back to the local rank convention, and say so.
            kept = fallback_keep(sensors, ident)
            self.later = []
            self.claim_records = [Claim(claim_key(s, ident.node_key), s.name, s.component,
                                        s in kept) for s in sensors]
            self.notes.append(f"device claims unavailable ({book.error}); this process "
                              "measures its LOCAL_RANK's GPU and, on local rank 0, CPU and RAM")
        else:
            self.later = later
        for s in sensors:
            if s not in kept and s not in self.later:
                _close(s)
        gone = [c.device for c in self.claim_records if not c.held]
        if gone:
            self.notes.append(f"measured by other processes of the job: {', '.join(gone)}")
        return kept

    @classmethod
    def adopt(cls, identity: JobIdentity, run_dir: Path, *, output_root: Path, name: str,
              ranks: list[int]) -> Optional[JobMember]:
        """Move a finished run directory (the `energy-tracker run` wrapper's) into the job
        its child processes belong to. None if it cannot be moved (another filesystem)."""
        job_dir = open_job_dir(output_root, identity, name)
        node_dir = open_node_dir(job_dir, identity)
        target = node_dir / f"cli-{os.getpid()}"
        try:
            os.rename(run_dir, target)
        except OSError as e:
            log.warning("energy-tracker: could not move %s into job %s: %s", run_dir, job_dir, e)
            return None
        return cls(identity, job_dir, node_dir, target, role="cli", ranks=sorted(ranks))

    # -- while running -------------------------------------------------------------------------
    def late_claims(self, t: float) -> list[Sensor]:
        """GPUs left for another local rank that never claimed them (sampler thread)."""
        if not self.later or t < self.late_after_s or self.claims is None:
            return []
        got = []
        for s in self.later:
            key = claim_key(s, self.identity.node_key)
            if self.claims.try_claim(key):
                got.append(s)
                self.claim_records.append(Claim(key, s.name, s.component, True))
                self.notes.append(f"{s.name} claimed at t={t:.1f} s: no other process of the "
                                  "job had claimed it; its energy before that is not measured")
            else:
                self.claim_records.append(Claim(key, s.name, s.component, False,
                                                self.claims.holder(key)))
                _close(s)
        self.later = []
        return got

    def elsewhere(self) -> list[str]:
        """Components this process does not measure because another process of the job does."""
        held = {c.component for c in self.claim_records if c.held}
        return sorted({c.component for c in self.claim_records if not c.held} - held)

    def manifest(self) -> dict[str, Any]:
        """The `job` section of this run's run.json: who it is, what it measures."""
        return {"identity": self.identity.to_dict(), "job_dir": str(self.job_dir),
                "node_dir": self.node_dir.name, "member": self.run_dir.name, "role": self.role,
                "ranks": self.ranks, "claims": [c.to_dict() for c in self.claim_records],
                "lock_dir": str(self.claims.dir) if self.claims else str(lock_root())}

    def release(self) -> None:
        if self.claims is not None:
            self.claims.release()
        for s in self.later:
            _close(s)
        self.later = []

    # -- ending the job ------------------------------------------------------------------------
    def finish(self, *, timeout_s: float, csv_root: Optional[Path],
               report_html: Optional[bool] = None) -> Optional[str]:
        """End the job if this is the last process of its attempt to stop. Bounded by
        `timeout_s`; returns a note when the job is left to others."""
        self.release()
        deadline = time.monotonic() + timeout_s
        attempt = (self.identity.launch, self.identity.restart)
        while True:
            running = [m for m in members(self.job_dir)
                       if m.attempt_key == attempt and m.path != self.run_dir
                       and m.state() == "running"]
            if not running:
                break
            if time.monotonic() >= deadline:
                return (f"{len(running)} other process(es) of the job were still running "
                        f"{timeout_s:g} s after this one stopped; the last to stop writes the "
                        "job summary (or run `energy-tracker report` on the job directory)")
            time.sleep(POLL_S)
        if not self._take_end_marker(attempt):
            return None   # another process ended this attempt after this one had stopped
        self.ended = True
        return end_job(self.job_dir, csv_root=csv_root,
                       restartable=self.identity.more_attempts_possible,
                       report_html=report_html)

    def _take_end_marker(self, attempt: tuple[str, int]) -> bool:
        """Should this process write the job summary? The first to find nobody running does
        (O_EXCL); a process that stops after the job was already ended (it started late, or
        outlived the others' wait) does it again, so its part is in. Others skip: they stopped
        before the summary was made, so it has their part."""
        tag = hashlib.sha1(attempt[0].encode()).hexdigest()[:8]
        marker = self.job_dir / f".ended-{tag}-{attempt[1]}"
        try:
            os.close(os.open(marker, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
            return True
        except FileExistsError:
            pass
        except OSError:
            return True    # cannot mark: ending twice is only duplicate work
        try:
            ended = marker.stat().st_mtime
            mine = (self.run_dir / SUMMARY).stat().st_mtime
        except OSError:
            return True
        if mine <= ended:
            return False
        os.utime(marker)
        return True


def end_job(job_dir: Path, *, csv_root: Optional[Path], restartable: bool = False,
            report_html: Optional[bool] = False) -> Optional[str]:
    """Merge the job, write its summary.json, its report.html (report_html: True/None as in
    Tracker; False, the default here, for none) and (when complete) its emissions.csv row."""
    from ..report import auto
    from ..rundir.runlog import read_json, upsert_emissions_row
    from ..summary_build import emissions_row
    from .merge import merge_loaded, read_members

    manifest, loaded = read_members([job_dir])
    summary = merge_loaded(manifest, loaded, job_dir=str(job_dir))
    restarting = restartable and summary.status != "finished"
    notes = list(summary.notes)
    if restarting:
        notes.append(f"this attempt ended with status {summary.status!r} and the launcher may "
                     "restart it: the job summary is rewritten when the next attempt ends")
    html, note = auto.plan(report_html, summary.status, job_dir)
    if note:
        notes.append(note)
    # the summary as saved (its notes, its page): what a reader reads back is this Summary
    summary = dataclasses.replace(
        summary, notes=tuple(notes),
        report_html=str(job_dir / names.REPORT_HTML) if html else summary.report_html)
    data = summary.to_dict()

    def save(d: dict[str, Any]) -> None:
        write_json_atomic(job_dir / SUMMARY, d)
    save(data)
    missing_nodes = summary.job is not None and any(
        "nodes" in (m.what or "") for m in summary.job.missing or ())
    note = None
    if csv_root is None or restarting:
        pass
    elif missing_nodes:
        note = ("nodes of this job wrote elsewhere (node-local disks?): no emissions row "
                "until the parts are merged with `energy-tracker merge`")
    else:
        ref = read_json(loaded[0].member.path / names.MANIFEST) or {}
        upsert_emissions_row(csv_root, emissions_row(summary, ref))
    if html:   # last: the numbers are all saved before a page is drawn
        auto.write(job_dir, data, save)
    return note


def _close(s: Sensor) -> None:
    try:
        s.close()
    except Exception as e:  # a sensor we do not use must not stop the run
        log.debug("energy-tracker: closing %s: %s", s.name, e)


__all__ = ["JOB_MANIFEST", "LATE_CLAIM_S", "JobMember", "end_job"]
