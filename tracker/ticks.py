"""The sampler thread's bookkeeping after each tick: the run log, the step accounts, the
checkpoints, late device claims, SIGTERM seen by the thread, summary.json while running.

Every runlog.FLUSH_EVERY_S (every tick in the run's first EAGER_FLUSH_S, and at the final
tick) a round logs the tick records and window marks in time order, settles closed steps
(ledger.py), compacts and checkpoints when due (checkpoint.py), flushes, and refreshes
summary.json. Between rounds nothing is on disk that a round would not have flushed anyway,
so a SIGKILL loses what it lost before (<= FLUSH_EVERY_S), while the 10 Hz ticks in between
cost a list append (a tick on a cold cache costs ~0.1-0.3 ms a round).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Callable, Optional

from . import signals
from .it_energy import frontier, it_energy_at


def new_ledger(devices: Sequence[Any], run_dir: Optional[Path], book: Any,
               step_detail_steps: Optional[int] = None) -> Any:
    """The run's step and utilisation accounts (rundir/ledger.py), settled by the rounds;
    steps.bin in `run_dir` (None: a process joined to another's run keeps no steps file),
    per-step records for the newest `step_detail_steps` steps (None: all), older steps as
    their groups (rundir/step_groups.py)."""
    from .rundir.ledger import STEPS_FILE, Ledger, StepFile
    from .summary_build import marked_spans

    steps_file = StepFile(run_dir / STEPS_FILE, horizon_steps=step_detail_steps) \
        if run_dir is not None else None
    return Ledger(lambda ts: it_energy_at(devices, ts), devices, steps_file=steps_file,
                  marked=lambda: marked_spans(book.snapshot()))


def keep_books(runlog: Any, book: Any, devices: Sequence[Any], *, run_dir: Path,
               steps_dir: Optional[Path], live: Any, start_wall: float, joined: bool,
               job: Any, sampling: Any, notes: list[str], clock: Callable[[], float],
               build: Callable[[float, str], Any], running: Callable[[], bool],
               summary_every_s: float, rewrite_manifest: Callable[[], None],
               step_detail_steps: Optional[int] = None) -> TickRounds:
    """A started run's books: its step accounts (steps.bin in `steps_dir`), its checkpoints
    and the sampler thread's rounds that keep them. `live`: the live intensity provider or
    None; `job`: the job.member.JobMember of a part of a job (its devices claimed late go to
    `sampling`, its notes to `notes`); `rewrite_manifest()`: run.json again, when it changed.
    A run this process owns also rewrites what memory has if its directory is deleted.
    `step_detail_steps`: the per-step horizon (the option; None: every step's record)."""
    from .checkpoint import Checkpoints, run_dir_recreated
    from .job.participation import add_late_claims
    from .rundir import snapshot

    ledger = new_ledger(devices, steps_dir, book, step_detail_steps)
    checkpoints = Checkpoints(run_dir, runlog, ledger, book, devices,
                              periods=live.periods if live is not None else (lambda: ()),
                              start_wall=start_wall, joined=joined,
                              segment_s=snapshot.SEGMENT_S)
    late = None if job is None else functools.partial(add_late_claims, job, sampling, notes,
                                                      rewrite_manifest=rewrite_manifest)
    ticks = TickRounds(runlog, book, ledger, devices, clock=clock, checkpoints=checkpoints,
                       build=build, running=running, summary_every_s=summary_every_s,
                       joined=joined, late_claims=late)
    if not joined:   # the run directory deleted mid-run: what memory still has
        runlog.on_recreated = functools.partial(
            run_dir_recreated, run_dir, ledger, notes, rewrite_manifest=rewrite_manifest,
            write_summary=lambda: ticks.write_summary(clock(), "running"))
    return ticks


class TickRounds:
    """`after_tick` for the Sampler (or a joined process's LogFollower) of one run.

    `runlog`, `book`, `ledger`, `devices`: the run's log, window book, step accounts and
    device states; `clock()` the run clock; `checkpoints` a checkpoint.Checkpoints;
    `build(t, status)` the run's summary at `t`; `running()` whether the run is still
    running; `joined`: this process follows another's run (it logs its closed steps for that
    process and writes no summary); `late_claims(t)`: devices of a job claimed late.
    """

    def __init__(self, runlog: Any, book: Any, ledger: Any, devices: Sequence[Any], *,
                 clock: Callable[[], float], checkpoints: Any,
                 build: Callable[[float, str], Any], running: Callable[[], bool],
                 summary_every_s: float, joined: bool,
                 late_claims: Optional[Callable[[float], None]] = None):
        self.runlog, self.book, self.ledger, self.devices = runlog, book, ledger, devices
        self.clock = clock
        self.checkpoints = checkpoints
        self.build = build
        self.running = running
        self.summary_every_s = summary_every_s
        self.joined = joined
        self.late_claims = late_claims
        self.pending: list[dict[str, Any]] = []   # tick records waiting for the next round
        self.last_round_t = -math.inf
        self.last_summary_write = 0.0

    def after_tick(self, record: dict[str, Any], t: float) -> None:
        """Runs on the sampler thread after each tick: keeps its record and, when a round is
        due (see the module's docstring), does the round."""
        from .rundir.runlog import EAGER_FLUSH_S, FLUSH_EVERY_S
        pending = self.pending
        # Every tick is logged, readings or not: the last line tells how far a killed run got.
        pending.append(record if record["d"] else {"t": record["t"]})
        if (t - self.last_round_t < FLUSH_EVERY_S and t >= EAGER_FLUSH_S
                and "final" not in record):
            return
        self.last_round_t = t
        self.pending = []
        self.drain(pending)
        self.ledger.advance(frontier(self.devices))
        self.checkpoints.due(t, pending)
        if self.runlog.flush_if_due(t) and self.ledger.file:
            self.ledger.file.flush()
        if self.late_claims is not None:
            self.late_claims(t)
        if signals.poll():   # SIGTERM while the main thread may be stuck in a collective
            signals.stop_all_from_thread()
        if t - self.last_summary_write >= self.summary_every_s and self.running() \
                and not self.joined:
            self.write_summary(t, "running")

    def drain(self, ticks: Sequence[dict[str, Any]] = ()) -> None:
        """Move pending window marks to the log, in time order with the tick records of
        `ticks`. Closed steps go in one record per round: a JSON line per step edge would
        cost the training thread GIL time."""
        marks = list(self.book.take_marks())
        # stable: a mark and a tick at one time keep the mark first, as when each tick
        # drained the marks made before it
        for rec in sorted(marks + list(ticks), key=_record_t) if marks else ticks:
            self.runlog.append(rec)
        batch = self.book.take_steps()
        if batch is not None:
            # The ledger appends them to steps.bin at once (the durable record); a process
            # joined to another's run has no steps file and logs them for that process.
            self.ledger.add_steps(batch)
            if self.joined:
                rows = [(next(self.book.ids), *r[1:]) for r in batch.rows()]   # unique ids
                self.runlog.append({"t": rows[-1][3], "steps": rows})

    def finish(self) -> None:
        """At stop, once the sampler has stopped: the last marks and steps logged and
        settled, the last segments condensed (bounded)."""
        self.drain()
        self.ledger.finish()
        self.checkpoints.finish()

    def write_summary(self, t: float, status: str) -> None:
        """summary.json as the run stands at `t`."""
        self.last_summary_write = t
        self.runlog.write_summary(self.build(t, status).to_dict())

    def intensity(self, period: Any) -> None:
        """A live carbon-intensity period changed (the provider's thread): log it."""
        self.runlog.append({"t": round(self.clock(), 6), "intensity": period.to_dict()})


def _record_t(rec: dict[str, Any]) -> float:
    return float(rec["t"])


__all__ = ["TickRounds", "keep_books", "new_ledger"]
