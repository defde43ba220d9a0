"""A tracker's part in a distributed job: joining it at start (and so where the run's files
go), claiming devices late, being adopted into it, ending it at stop.

Each function takes what it needs (the job option, the sensors, the directories, the run's
notes) and returns the job.member.JobMember the run is part of; the tracker only keeps it.
"""

from __future__ import annotations

import logging
from dataclasses import fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional, Union

if TYPE_CHECKING:
    from ..rundir.runlog import RunLog
    from ..sensors.base import Sensor
    from ..summary import Summary
    from .identity import JobIdentity
    from .member import JobMember

log = logging.getLogger("tracker")


def detect_identity(job_option: Union[bool, str, None]) -> Optional[JobIdentity]:
    """This process's place in a job (None outside one, or with job=False)."""
    if job_option is False:
        return None
    from .identity import detect
    return detect(job=job_option if isinstance(job_option, str) else None)


def join_job(job_option: Union[bool, str, None], sensors: list[Sensor], *, output_root: Path,
             name: str, run_dir: Optional[Path], notes: list[str]
             ) -> tuple[Optional[JobMember], list[Sensor]]:
    """In a distributed job: find the job's directory and claim this process's devices
    (each device is measured by exactly one process of the job). Returns (the member or
    None outside a job, the sensors this process samples); the job's notes go to `notes`."""
    identity = detect_identity(job_option)
    if identity is None:
        return None, sensors
    from .member import JobMember
    member, kept = JobMember.join(identity, list(sensors), output_root=output_root, name=name,
                                  run_dir=run_dir)
    notes.append(f"part of job {identity.job_id} ({identity.world_size} processes; "
                 f"id from {identity.source})")
    notes.extend(member.notes)
    count_ranks_cpu(member, kept, notes)
    return member, kept


def count_ranks_cpu(member: JobMember, sensors: list[Sensor], notes: list[str]) -> bool:
    """cpu_scope="process" on the process that measures this node's CPU and RAM: its count
    of the run's CPU time also takes in the job's other ranks on this node (node_rank_pids;
    sensors/cpu_scope.py checks that each is still that process and this user's). True when
    it applies (said in `notes`); never raises."""
    try:
        pids = node_rank_pids(member)
        counted = False
        for s in sensors:
            count = getattr(s, "count_job_ranks", None)
            if callable(count):
                counted = bool(count(pids)) or counted
    except Exception as e:     # the run goes on, counting its own process tree
        notes.append(f"cpu_scope=\"process\": the job's other ranks on this node are not "
                     f"counted ({type(e).__name__}: {e}); only this process's tree is the run's")
        return False
    if counted:
        notes.append("cpu_scope=\"process\": this process measures the node's CPU and RAM, so "
                     "the CPU time of the job's other ranks on this node (and their children) "
                     "is the run's too, each from when its run.json is first seen (a few "
                     "seconds after its start at most); a rank's CPU time before that is "
                     "not counted as the run's")
    return counted


def node_rank_pids(member: JobMember) -> Callable[[], list[tuple[int, int]]]:
    """A callable listing (pid, start ticks) of the job's other ranks on this node, as their
    run.json records them (this attempt, this host and boot, role "rank"). It reads the node's
    folder each time it is called (the CPU model calls it every few seconds at most)."""
    import os
    import socket

    from ..rundir.liveness import boot_id
    from .layout import node_members

    node_dir, me, ident = member.node_dir, member.run_dir, member.identity
    attempt = (ident.launch, ident.restart)
    host, boot, my_pid = socket.gethostname(), boot_id(), os.getpid()

    def pids() -> list[tuple[int, int]]:
        out: list[tuple[int, int]] = []
        # a rank whose run.json is not written yet is seen at a later call
        for m in node_members(node_dir):
            if m.path == me:
                continue
            h = m.manifest.get("host")
            if (m.job.get("role") != "rank" or m.identity.get("job_id") != ident.job_id
                    or m.attempt_key != attempt or not isinstance(h, dict)
                    or h.get("hostname") != host):
                continue
            pid, start, theirs = h.get("pid"), h.get("pid_start"), h.get("boot_id")
            if boot is not None and theirs != boot:
                continue      # another boot of this host: that pid is not theirs now
            if (pid.__class__ is int and start.__class__ is int and pid > 0
                    and pid != my_pid):
                out.append((pid, start))
        return out
    return pids


def open_run_dir(job_option: Union[bool, str, None], sensors: list[Sensor], *,
                 output_root: Path, name: str, run_dir: Optional[Path], start_wall: float,
                 notes: list[str]) -> tuple[Optional[JobMember], list[Sensor], Path, RunLog]:
    """Where a starting run's files go, and what it samples: in a job, this process's
    directory in the job's and the devices it claims (join_job); else `run_dir` when given,
    else a new directory under `output_root` named after the run and its start (`start_wall`,
    wall time). Returns
    (the job member or None, the sensors, the directory, its run log opened). ConfigError
    says what to do when the directory cannot be made (the job's claims released)."""
    from datetime import datetime, timezone

    from ..errors import ConfigError
    from ..rundir.runlog import RunLog, default_run_dir

    member = None
    try:
        member, kept = join_job(job_option, sensors, output_root=output_root, name=name,
                                run_dir=run_dir, notes=notes)
        where = (member.run_dir if member is not None else
                 run_dir or default_run_dir(output_root, name, datetime.fromtimestamp(
                     start_wall, tz=timezone.utc)))
        return member, kept, where, RunLog(where)
    except (ConfigError, OSError) as e:
        if member is not None:
            member.release()
        if isinstance(e, ConfigError):
            raise
        raise ConfigError(f"Cannot create the run directory under {output_root}: {e}. Pass "
                          "output_dir= (CLI: --output-dir) with a writable directory.") from None


def adopt_job(identity: dict[str, Any], ranks: list[int], *, run_dir: Path, output_root: Path,
              name: str, notes: list[str]) -> Optional[JobMember]:
    """Several ranks of a job joined this run (`energy-tracker run -- torchrun ...`): the run
    directory moves into the job's, as this node's part of the job. None when it could not
    (said in `notes`) or the job needs nothing of it."""
    from .identity import JobIdentity
    from .member import JobMember

    known = {f.name for f in fields(JobIdentity)}
    try:
        ident = JobIdentity(**{k: v for k, v in identity.items() if k in known})
        member = JobMember.adopt(ident, run_dir, output_root=output_root, name=name,
                                 ranks=ranks)
    except (TypeError, OSError) as e:
        notes.append(f"the joined processes belong to a job, but this run could not "
                     f"join its directory ({e})")
        return None
    if member is not None:
        notes.append(f"ranks {', '.join(map(str, ranks))} of job {ident.job_id} joined "
                     "this run; it is this node's part of the job")
    return member


def add_late_claims(member: JobMember, sampling: Any, notes: list[str], t: float, *,
                    rewrite_manifest: Callable[[], None]) -> None:
    """GPUs no other process of the job claimed: measure them from now (sampler thread).
    `sampling`: the sampler's sampler.Sampling; run.json is rewritten once they are known."""
    if not member.later:
        return
    added = member.late_claims(t)
    if not added and member.later:
        return   # not yet due
    for sensor in added:
        sampling.add(sensor)
    notes[:] = list(dict.fromkeys(notes + member.notes))
    rewrite_manifest()


def end_job(member: JobMember, own: Summary, *, output_root: Path,
            explicit_run_dir: Optional[Path], emissions_csv: Union[bool, Path],
            timeout_s: float, report_html: Optional[bool], own_end_wall: float) -> Summary:
    """After this process's own files (its summary: `own`): end the job if it is the last to
    stop (bounded; never raises: the job summary can always be made later by `energy-tracker
    report`). Returns the job's summary as this process sees it (job/view.py: every rank
    tells the job's story, not its own part of it), or `own` when it cannot be made."""
    from .view import job_summary
    try:
        root = output_root if explicit_run_dir is None else member.job_dir.parent
        if isinstance(emissions_csv, Path):   # emissions_csv="x.csv": that file
            root = emissions_csv
        note = member.finish(timeout_s=timeout_s, csv_root=root if emissions_csv else None,
                             report_html=report_html)
        if note:
            log.info("energy-tracker: %s", note)
    except Exception as e:
        log.warning("energy-tracker: could not end the job (%s: %s); run `energy-tracker "
                    "report %s` to finish it", type(e).__name__, e, member.job_dir)
    job = job_summary(member, own_end_wall=own_end_wall, wait_s=timeout_s)
    return job if job is not None else own


__all__ = ["add_late_claims", "adopt_job", "count_ranks_cpu", "detect_identity", "end_job",
           "join_job", "node_rank_pids", "open_run_dir"]
