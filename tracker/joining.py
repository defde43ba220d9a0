"""Joining a run owned by an enclosing `energy-tracker run`, and the owner's side of it.

`energy-tracker run -- python train.py` sets ENV_RUN_DIR for the child. A tracker started in
the child (a framework callback, a `track()` in the script) then follows the owner's run
instead of sampling again (double counting): its energy curves are rebuilt from the owner's
samples.jsonl (follow.LogFollower), its windows go to marks-<pid>.jsonl, and what its own
options asked of the run is written there too. At its stop, the owner merges the joined
processes' windows into the run and applies the options they asked for (follow.joined_options:
one precedence rule on both sides, so the two summaries tell one story).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional, Union

if TYPE_CHECKING:
    from .config import TrackerConfig
    from .follow import JoinedOptions, LogFollower
    from .sampler import DeviceState

log = logging.getLogger("tracker")

ENV_RUN_DIR = "ENERGY_TRACKER_RUN_DIR"   # set by `energy-tracker run` for callbacks to join


@dataclass
class JoinedRun:
    """The run a process joins, as its run.json says, with what the process's own options
    changed in it (the same rule the owner applies at its stop)."""

    run_dir: Path
    run_id: str
    start_wall: float
    origin: float                      # the owner's monotonic time of run time 0
    factor: Any
    pue: float
    pue_source: str
    name: str
    devices: list[DeviceState]
    asked: dict[str, Any]              # what this process asked of the run
    clock: Callable[[], float]         # the run's clock (from the owner's origin)
    marks: Any                         # rundir.runlog.RunLog: this process's marks-<pid>.jsonl
    notes: list[str] = field(default_factory=list)


def asked_of_the_run(config: TrackerConfig, used: dict[str, Any], name: str,
                     run_config: Optional[dict[str, Any]] = None) -> dict[str, Any]:
    """What a script's own options ask of a run it joins (before the run's apply): its
    arguments and its own environment, not the environment it inherited from the process
    that tracks the run (that is the run's: config.own_options). `used`: the options as the
    script's tracker uses them (TrackerConfig.manifest(), with the region used)."""
    own = config.own_options(run_config)
    asked: dict[str, Any] = {k: used.get(k) if k in own else None
                             for k in ("region", "gco2_per_kwh", "mix")}
    if config.pue is not None and "pue" in own:
        asked["pue"] = config.pue
    if name != "run":          # track()'s default name asks for nothing
        asked["name"] = name
    return asked


def open_joined_run(run_dir: Path, *, config: TrackerConfig, used: dict[str, Any],
                    name: str) -> Optional[JoinedRun]:
    """The run at `run_dir` as a process named `name` joins it, with this process's marks
    file opened; None (and ENV_RUN_DIR dropped, so the process tracks on its own) when it
    has no run.json."""
    from .follow import joined_options
    from .rebuild import RecordedSensor, grid_factor
    from .rundir.names import MANIFEST, marks_file
    from .rundir.runlog import RunLog, read_json
    from .sampler import DeviceState, monotonic_clock
    from .sensors.base import SensorInfo

    manifest = read_json(run_dir / MANIFEST)
    if manifest is None:
        log.warning("energy-tracker: %s=%s has no run.json; tracking on our own",
                    ENV_RUN_DIR, run_dir)
        os.environ.pop(ENV_RUN_DIR, None)
        return None
    run_config = manifest.get("config")
    run = JoinedRun(run_dir=run_dir, run_id=manifest["run_id"],
                    start_wall=manifest["start_wall"], origin=manifest["start_monotonic"],
                    factor=grid_factor(manifest), pue=manifest["pue"],
                    pue_source=manifest.get("pue_source", "user"),
                    name=str(manifest.get("name") or name),
                    devices=[DeviceState(RecordedSensor(SensorInfo(**d)))
                             for d in manifest.get("devices", [])],
                    asked=asked_of_the_run(config, used, name, run_config),
                    clock=monotonic_clock(manifest["start_monotonic"]),
                    marks=RunLog(run_dir, stream=marks_file(os.getpid()), exclusive=False))
    # the same rule the run applies at its stop (follow.joined_options): one story
    got = joined_options([run.asked], own=run_config or {},
                         own_pue_given=run.pue_source == "user",
                         own_name_given=manifest.get("name_source", "user") == "user")
    apply_joined(run, got)
    run.notes.append(f"joined run {run.run_id} tracked by `energy-tracker run` "
                     f"(pid {manifest['host'].get('pid')}): its sensors apply, and its "
                     "options where given on its command line; this process adds windows"
                     + (f" (this script named it {name!r})" if run.name != name else ""))
    run.notes.extend(got.notes)
    return run


def follow(run: JoinedRun, runlog: Any, *, job_option: Union[bool, str, None],
           clock: Callable[[], float],
           after_tick: Callable[[dict[str, Any], float], None]) -> LogFollower:
    """Tell the owner who this process is (a rank of a job?) and what it asked for, in its
    marks file (`runlog`), then follow the owner's log (started; a Sampler's interface)."""
    from .follow import LogFollower, joined_record
    from .job.participation import detect_identity

    found = detect_identity(job_option)
    runlog.append(joined_record(found.to_dict() if found is not None else None, run.asked))
    follower = LogFollower(run.run_dir, run.devices, clock=clock, after_tick=after_tick)
    follower.start()
    return follower


def apply_joined(terms: Any, got: JoinedOptions) -> None:
    """What follow.joined_options decided applies to a run (both sides of a join): `terms`
    is anything with a run's `factor`, `pue`, `pue_source` and `name` (a Tracker, a
    JoinedRun), changed in place."""
    if got.factor is not None:
        terms.factor = got.factor
    if got.pue is not None:
        terms.pue, terms.pue_source = got.pue, "user (from the tracked script)"
    if got.name is not None:
        terms.name = got.name


def merge_joined_marks(run_dir: Path, book: Any, terms: Any, *, used: dict[str, Any],
                       name_given: bool, job: Any, output_root: Path, runlog: Any) -> Any:
    """The owner's side, at its stop: the windows that processes joined to this run recorded
    go to `book` (once per job window when several ranks joined), and the grid, PUE and name
    they asked for apply to `terms` (a Tracker: its factor, pue, pue_source, name and notes;
    `used`: its options as used, `name_given`: whether its name was given). Returns the
    job.member.JobMember the run is part of: `job` (the joined ranks added), or, when ranks
    of a job joined a run that was none, the job its directory (and `runlog`, the run's
    log) has just moved into."""
    from .follow import joined_options, joined_windows, read_joined
    from .job.participation import adopt_job

    procs = read_joined(run_dir)
    if not procs:
        return job
    with book.lock:
        book.windows += joined_windows(procs)
    got = joined_options([p.config for p in procs], own=used,
                         own_pue_given=terms.pue_source == "user", own_name_given=name_given)
    apply_joined(terms, got)
    terms.notes.extend(got.notes)
    ranks = sorted({int(p.identity["rank"]) for p in procs
                    if p.identity and p.identity.get("rank") is not None})
    multi = [p.identity for p in procs if p.identity]
    if job is not None:
        job.ranks = ranks or job.ranks
        return job
    if not multi:
        return None
    member = adopt_job(multi[0], ranks, run_dir=run_dir, output_root=output_root,
                       name=terms.name, notes=terms.notes)
    if member is not None:
        runlog.dir = member.run_dir
    return member


__all__ = ["ENV_RUN_DIR", "JoinedRun", "apply_joined", "asked_of_the_run", "follow",
           "merge_joined_marks", "open_joined_run"]
