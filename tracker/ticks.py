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
import importlib
import logging
import math
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Callable, Optional

from . import signals
from .it_energy import frontier, it_energy_at

log = logging.getLogger("tracker")

# What stop() would otherwise import (~40-60 ms on a warm disk cache: the report's stack, the
# publish blocks, the end block; half of stop() of a short run) and the region tables the
# final summary's advice reads: loaded once in the background early in the run (a thread of
# its own, started once start() has written the run's first summary, or by a joined process's
# first round) and joined at stop, so stop() neither pays for them nor imports while that
# thread does. A one-off cost of the run's first moments, not a per-second one.
WARM_MODULES = ("tracker.summary_build", "tracker.follow", "tracker.job.layout",
                "tracker.rundir.records", "tracker.end_block", "tracker.carbon.candidates")
WARM_REPORT_MODULES = ("tracker.report.auto", "tracker.report.html", "tracker.publish.card",
                       "tracker.publish.facts", "tracker.publish.statement", "tracker.embodied",
                       "importlib.readers", "importlib.resources.readers",
                       "zipfile")   # what reading the page's assets loads
WARM_DELAY_S = 0.1      # it waits this first (GIL released): start() returns unhindered
WARM_JOIN_S = 5.0       # stop() waits at most this for it (an import does not hang; bounded)
# A fork (a DataLoader's workers) while the warm-up is inside an import would leave that
# module's import lock held in the child by a thread the child does not have: the child
# would hang on importing it. Each warm-up import holds _WARM_LOCK, and a fork waits for it,
# at most FORK_WAIT_S (a fork from inside an import the warm-up waits on: never a hang).
FORK_WAIT_S = 1.0
_WARM_LOCK = threading.Lock()
_fork_state = {"installed": False, "held": False}


def _before_fork() -> None:
    _fork_state["held"] = _WARM_LOCK.acquire(timeout=FORK_WAIT_S)


def _after_fork() -> None:
    if _fork_state["held"]:
        _fork_state["held"] = False
        _WARM_LOCK.release()


def _guard_forks() -> None:
    """Once a process: forks wait for the warm-up's import in progress (see FORK_WAIT_S)."""
    if _fork_state["installed"] or not hasattr(os, "register_at_fork"):
        return
    _fork_state["installed"] = True
    os.register_at_fork(before=_before_fork, after_in_parent=_after_fork,
                        after_in_child=_after_fork)


def warm_stop_path(report_html: Optional[bool], go: Optional[threading.Event] = None) -> None:
    """Import what stop() needs and fill the region tables' cache (WARM_MODULES; with the
    report's modules when report.html is wanted), once `go` is set or WARM_DELAY_S passed.
    Never raises: stop() imports what failed."""
    if go is not None:
        go.wait(WARM_DELAY_S)
    names: tuple[str, ...] = WARM_MODULES
    try:
        from .report.auto import wanted
        if wanted(report_html):
            names = names + WARM_REPORT_MODULES
    except Exception:
        pass
    for name in names:
        try:
            with _WARM_LOCK:   # a fork waits (see FORK_WAIT_S)
                importlib.import_module(name)
        except Exception as e:   # stop() meets it again and says why
            log.debug("energy-tracker: warm-up import of %s: %s", name, e)
    global _tables_warm
    if _tables_warm:
        return
    try:
        with _WARM_LOCK:
            from .carbon import candidate_countries
            candidate_countries()   # the region index (carbon/regions.py): cached on first use
        _tables_warm = True
    except Exception as e:
        log.debug("energy-tracker: warm-up of the region tables: %s", e)


_tables_warm = False   # once a process: the tables are cached from then on


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
               step_detail_steps: Optional[int] = None,
               report_html: Optional[bool] = None) -> TickRounds:
    """A started run's books: its step accounts (steps.bin in `steps_dir`), its checkpoints
    and the sampler thread's rounds that keep them. `live`: the live intensity provider or
    None; `job`: the job.member.JobMember of a part of a job (its devices claimed late go to
    `sampling`, its notes to `notes`); `rewrite_manifest()`: run.json again, when it changed.
    A run this process owns also rewrites what memory has if its directory is deleted.
    `step_detail_steps`: the per-step horizon (the option; None: every step's record);
    `report_html`: the option (whether the warm-up loads the report's modules)."""
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
                       joined=joined, late_claims=late, report_html=report_html)
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
                 late_claims: Optional[Callable[[float], None]] = None,
                 report_html: Optional[bool] = None):
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
        self.report_html = report_html
        self.warm: Optional[threading.Thread] = None   # warm_stop_path, once started
        self.warm_go = threading.Event()   # set by stop(): the warm-up waits no longer

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
        if self.warm is None and self.joined and self.running():   # it writes no summary
            self.start_warm()
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

    def start_warm(self) -> None:
        """Start warm_stop_path on a daemon thread of its own (see WARM_MODULES)."""
        _guard_forks()
        warm = threading.Thread(target=warm_stop_path, args=(self.report_html, self.warm_go),
                                name="energy-tracker-warm", daemon=True)
        self.warm = warm
        try:
            warm.start()
        except RuntimeError as e:   # no thread to be had (interpreter shutting down)
            log.debug("energy-tracker: warm-up not started: %s", e)

    def join_warm(self, timeout_s: float = WARM_JOIN_S) -> bool:
        """Wait (bounded) for the warm-up, if it was started; True when it is not running."""
        warm = self.warm
        if warm is None or warm.ident is None:
            return True
        self.warm_go.set()
        warm.join(timeout_s)
        return not warm.is_alive()

    def finish(self) -> None:
        """At stop, once the sampler has stopped: the last marks and steps logged and
        settled, the last segments condensed (bounded), the warm-up joined (bounded)."""
        self.join_warm()
        self.drain()
        self.sync_log_behind()   # concurrently with steps.bin's fsync and the summary
        self.ledger.finish()
        self.checkpoints.finish()

    def sync_log_behind(self) -> Optional[threading.Thread]:
        """fsync the run log on a daemon thread of its own (RunLog.sync, under the log's
        lock): close() waits for it through that lock and then has only what came since to
        sync. None (and close() syncs it all) where the log has no sync or no thread starts."""
        sync = getattr(self.runlog, "sync", None)
        if not callable(sync):
            return None
        thread = threading.Thread(target=_quietly, args=(sync, "the run log's fsync"),
                                  name="energy-tracker-sync", daemon=True)
        try:
            thread.start()
        except RuntimeError as e:   # no thread to be had (interpreter shutting down)
            log.debug("energy-tracker: log sync not started: %s", e)
            return None
        return thread

    def write_summary(self, t: float, status: str) -> None:
        """summary.json as the run stands at `t`."""
        self.last_summary_write = t
        self.runlog.write_summary(self.build(t, status).to_dict())
        if self.warm is None and status == "running":
            self.start_warm()   # start()'s first summary is out: what is left of start() is light

    def intensity(self, period: Any) -> None:
        """A live carbon-intensity period changed (the provider's thread): log it."""
        self.runlog.append({"t": round(self.clock(), 6), "intensity": period.to_dict()})


def _quietly(do: Callable[[], Any], what: str) -> None:
    try:
        do()
    except Exception as e:   # close() meets it again, and says so
        log.debug("energy-tracker: %s: %s", what, e)


def _record_t(rec: dict[str, Any]) -> float:
    return float(rec["t"])


__all__ = ["TickRounds", "keep_books", "new_ledger", "warm_stop_path"]
