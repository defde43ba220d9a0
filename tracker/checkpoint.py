"""Long runs in bounded memory and disk: compaction, hourly checkpoints, condensed segments.

Run by the sampler thread's rounds of bookkeeping (ticks.py), after the ledger has advanced:

- compaction (every COMPACT_EVERY_S): energy curves older than RECENT_S and settled by the
  ledger keep a point every SKELETON_S plus every window edge and intensity-period boundary,
  so totals, windows and emissions stay exact (curve.py);
- a checkpoint (every snapshot.SEGMENT_S): the raw log is rotated, a snapshot of the whole
  state is written, and the rotated segment is condensed into a 1 s timeline on a thread of
  its own (rundir/snapshot.py), which the run waits for at stop (bounded by CONDENSE_JOIN_S);
- every round: the round's ticks folded into the report's timeline (report_timeline.jsonl,
  rundir/report_timeline.py), its completed buckets appended every TIMELINE_FLUSH_S;
  closed at stop (`finish`).

Also here: what the run does when its directory was deleted mid-run and has just been
recreated (rewrite what memory still has, say once what was lost).
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Callable, Optional

from .rundir import names

log = logging.getLogger("tracker")

# Memory on long runs: full resolution for the last RECENT_S, a point every SKELETON_S before
# that (plus every window edge), compacted every COMPACT_EVERY_S. Read when used (tests set
# them).
RECENT_S = 600.0
SKELETON_S = 300.0
COMPACT_EVERY_S = 60.0
TIMELINE_FLUSH_S = 5.0          # report_timeline.jsonl appended at most this often
CONDENSE_JOIN_S = 10.0    # at stop, the longest wait for the last segments to be condensed

RECREATED_NOTE = ("the run directory was deleted during the run and recreated: samples.jsonl "
                  "and steps.bin hold only what came after; summary.json is written from "
                  "memory and has the whole run")


class Checkpoints:
    """Compaction and checkpoints of one run (sampler thread).

    `runlog`, `ledger` and `book` are the run's log, step accounts and window book; `devices`
    its device states (the list the sampler extends); `periods()` the live intensity periods
    (empty without a live provider), `start_wall` the wall time of run time 0. `joined`: this
    process follows another's run (its log is that process's: never rotated). `segment_s`:
    run time between checkpoints (snapshot.SEGMENT_S when the run started).
    """

    def __init__(self, run_dir: Path, runlog: Any, ledger: Any, book: Any,
                 devices: Sequence[Any], *, periods: Callable[[], Sequence[Any]],
                 start_wall: float, joined: bool, segment_s: float):
        self.run_dir = run_dir
        self.runlog, self.ledger, self.book, self.devices = runlog, ledger, book, devices
        self.periods = periods
        self.start_wall = start_wall
        self.joined = joined
        self.segment_s = segment_s
        self.segment = 0                  # raw log segments rotated so far
        self.last_compact = 0.0
        self.last_checkpoint = 0.0
        self.last_timeline_flush = 0.0
        self._condensing: list[threading.Thread] = []
        # The report's timeline, kept as the run goes (rundir/report_timeline.py): the owner's
        # only (a joined process logs nothing of its own readings).
        self.timeline: Optional[Any] = None
        if not joined:
            from .rundir.report_timeline import ReportTimelineWriter
            self.timeline = ReportTimelineWriter(run_dir)

    def due(self, t: float, ticks: Sequence[dict[str, Any]] = ()) -> None:
        """Compact and checkpoint when due (sampler thread, after the ledger advanced);
        `ticks`: the round's tick records, folded into the report's timeline."""
        if self.timeline is not None:   # (its methods never raise)
            self.timeline.add(ticks)
            try:
                self.timeline.note_periods(self.periods())
            except Exception:   # the provider's periods unreadable now: next round
                pass
            # Flushed every TIMELINE_FLUSH_S, not every round: a report scans samples.jsonl
            # for the tail the file does not cover, so a later write loses nothing, and fewer
            # writes keep the sampler's own CPU below CodeCarbon's (scripts/bench_cost.py).
            if t - self.last_timeline_flush >= TIMELINE_FLUSH_S:
                self.timeline.flush()
                self.last_timeline_flush = t
        if t - self.last_compact >= COMPACT_EVERY_S:
            self.compact(t)
        if t - self.last_checkpoint >= self.segment_s:
            self.checkpoint(t)

    def _joined_by_others(self) -> bool:
        return any(self.run_dir.glob(names.MARKS_GLOB))

    def compact(self, t: float) -> None:
        """Keep memory flat on long runs (see the module's docstring)."""
        self.last_compact = t
        if self._joined_by_others():
            return   # processes joined this run: their window edges are only known at stop
        queued = self.book.steps.t0
        until = min(t - RECENT_S, self.ledger.settled_before(),
                    min(queued) if len(queued) else math.inf)
        pins = self.book.edges()
        pins += [x - self.start_wall for p in self.periods()
                 for x in (p.start_wall, p.end_wall) if x is not None]
        for d in list(self.devices):
            d.curve.compact(min(until, d.curve.final_until()), pins, SKELETON_S)

    def checkpoint(self, t: float) -> None:
        """Bound the disk and make rebuilds fast: rotate the raw log, write a snapshot of the
        whole state, condense the rotated segment into a 1 s timeline in the background."""
        from .rundir import snapshot

        self.last_checkpoint = t
        if self.joined or self._joined_by_others():
            return   # processes follow this run's log by its offset: keep it whole
        self.compact(t)
        k = self.segment
        raw = self.runlog.rotate(k)
        self.segment += 1
        if self.ledger.file is not None:
            self.ledger.file.flush()
        snapshot.write(self.run_dir, snapshot.capture(
            t=t, segment=k, devices=list(self.devices), ledger=self.ledger,
            windows=self.book.snapshot(), t_last=t, periods=list(self.periods())))
        out = self.run_dir / names.timeline_file(k)
        thread = threading.Thread(target=condense, args=(raw, out),
                                  name="energy-tracker-condense", daemon=True)
        self._condensing = [th for th in self._condensing if th.is_alive()] + [thread]
        thread.start()

    def finish(self, timeout_s: Optional[float] = None) -> bool:
        """At stop, after the last round: the report's timeline closed (its last bucket and
        its end written), then `join`."""
        if self.timeline is not None:
            try:
                self.timeline.close(self.periods())
            except Exception as e:   # never into training
                log.warning("energy-tracker: could not close the report timeline: %s", e)
        return self.join(timeout_s)

    def join(self, timeout_s: Optional[float] = None) -> bool:
        """Wait for the segments still being condensed (at stop; bounded: a segment left
        raw is still read by a report). True when none is left."""
        wait = CONDENSE_JOIN_S if timeout_s is None else timeout_s
        for thread in self._condensing:
            thread.join(wait)
        left = [th for th in self._condensing if th.is_alive()]
        if left:
            log.debug("energy-tracker: %d segment(s) still being condensed at stop", len(left))
        self._condensing = left
        return not left


def run_dir_recreated(run_dir: Optional[Path], ledger: Any, notes: list[str], *,
                      rewrite_manifest: Callable[[], None],
                      write_summary: Callable[[], None]) -> None:
    """The run directory was deleted mid-run and has just been made again (sampler thread):
    rewrite what memory still has (run.json, summary.json; steps.bin reopened), say once
    what was lost."""
    if RECREATED_NOTE not in notes:
        notes.append(RECREATED_NOTE)
    log.warning("energy-tracker: %s (%s)", RECREATED_NOTE, run_dir)
    if ledger is not None and ledger.file is not None:
        ledger.file.reopen()
    rewrite_manifest()
    write_summary()


def condense(raw: Path, out: Path) -> None:
    """A rotated raw segment -> its condensed timeline, then deleted (own thread)."""
    from .rundir.snapshot import condense as condense_segment
    try:
        condense_segment(raw, out)
        raw.unlink()
    except Exception as e:   # the raw segment stays: a report still reads it
        log.warning("energy-tracker: could not condense %s: %s", raw.name, e)


__all__ = ["COMPACT_EVERY_S", "CONDENSE_JOIN_S", "RECENT_S", "SKELETON_S", "Checkpoints",
           "condense", "run_dir_recreated"]
