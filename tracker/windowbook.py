"""The window book: the windows of one run as the training thread opens and closes them.

Phases, epochs, evals and checkpoints are `Window` objects, nestable, each edge logged as a
mark; steps are the hot path and never become objects while the loop runs: an open step is a
dict entry, a closed one a row on a `StepQueue` that the sampler thread settles (ledger.py).
The book knows nothing of sensors, files or carbon: the tracker asks it for what to log
(`take_marks`, `take_steps`) and what to pin (`edges`), and tells it when the run stops
(`close_all`).
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator
from typing import Any, Callable, Optional

from .errors import ConfigError
from .ledger import Batch, StepQueue
from .windows import Window

__all__ = ["WindowBook"]


class WindowBook:
    """Open, nested and closed windows of one run, and its closed steps in transit.

    `clock()` is the run clock, `origin()` its monotonic time 0; `state()` the run's state
    (windows open only while "running"); `anchor()` asks the sampler for an immediate counter
    read (an exact edge);
    `on_step(samples, tokens)` and `on_window(w)` are told of closed steps and windows (the
    log_to exporters).
    """

    def __init__(self, clock: Callable[[], float], origin: Callable[[], float], *,
                 state: Callable[[], str], anchor: Callable[[], None],
                 on_step: Optional[Callable[[int, int], None]] = None,
                 on_window: Optional[Callable[[Window], None]] = None):
        self.clock = clock
        self.origin = origin                  # monotonic time of run time 0 (set at start)
        self.state = state
        self.anchor = anchor
        self.on_step = on_step
        self.on_window = on_window
        self.windows: list[Window] = []       # all windows but closed steps
        self.open: list[Window] = []          # stack of open windows (nesting)
        self.marks: deque[dict[str, Any]] = deque()   # window edges, for the log
        self.steps = StepQueue()              # closed steps, for the sampler thread
        # open steps: id -> (parent id or -1, t_start, index, samples, tokens)
        self.open_steps: dict[int, tuple[int, float, int, int, int]] = {}
        self.ids = itertools.count()          # window ids (next() is atomic under the GIL)
        self.lock = threading.Lock()

    # -- windows -------------------------------------------------------------------------------
    def begin(self, name: str, kind: str = "phase", *, anchor: Optional[bool] = None,
              parent: Optional[Window] = None, **attrs: Any) -> Window:
        t = round(self.clock(), 6)  # as logged, so rebuilt windows equal live ones
        if self.state() != "running":
            raise ConfigError(f"window {name!r} opened on a tracker that is {self.state()}")
        parent = parent if parent is not None else (self.open[-1] if self.open else None)
        w = Window(id=next(self.ids), name=str(name), kind=kind,
                   parent=parent.id if parent else None, t_start=t, attrs=attrs)
        if kind == "step":
            # The hot path: a step is only remembered as open; the sampler thread logs it and
            # settles its energy once closed (ledger.py).
            self.open_steps[w.id] = (-1 if w.parent is None else w.parent, t,
                                     attrs.get("index", -1), attrs.get("samples", 0),
                                     attrs.get("tokens", 0))
            if anchor:
                self.anchor()
            return w
        with self.lock:
            self.windows.append(w)
            self.open.append(w)
        self.marks.append(w.mark("start", t))
        if anchor is None or anchor:
            self.anchor()
        return w

    def end(self, w: Window, *, anchor: Optional[bool] = None, **attrs: Any) -> None:
        t = round(self.clock(), 6)
        if w.t_end is not None:
            return
        w.attrs.update(attrs)
        if w.kind == "step":
            w.t_end = t
            self.close_step(w.id, t, w.attrs)
        else:
            with self.lock:
                self.close_window(w, t)
            if self.on_window is not None:
                self.on_window(w)
        if anchor if anchor is not None else w.kind != "step":
            self.anchor()

    def close_step(self, wid: int, t: float, attrs: Optional[dict[str, Any]] = None) -> None:
        """Queue a closed step for the sampler thread (dict.pop is atomic: a step closed by
        stop() and by its own loop at the same moment is queued once)."""
        opened = self.open_steps.pop(wid, None)
        if opened is None:
            return
        parent, t0, index, samples, tokens = opened
        if attrs is not None:
            samples, tokens = attrs.get("samples", samples), attrs.get("tokens", tokens)
        self.steps.push(parent, t0, t, index, samples, tokens)
        if self.on_step is not None:
            self.on_step(samples, tokens)

    def close_window(self, w: Window, t: float) -> None:
        w.t_end = t
        if self.open and self.open[-1] is w:
            self.open.pop()
        elif w in self.open:
            self.open.remove(w)
        self.marks.append(w.mark("end", t))

    def close_all(self, t: float) -> None:
        """The run stops at `t`: every open step and window ends there."""
        for wid in list(self.open_steps):
            self.close_step(wid, t)
        while self.open:
            self.close_window(self.open[-1], t)

    # -- iteration -----------------------------------------------------------------------------
    def iter_steps(self, iterable: Iterable[Any], *,
                   samples: Optional[Callable[[Any], int]] = None,
                   tokens: Optional[Callable[[Any], int]] = None,
                   synchronize: Optional[Callable[[], None]] = None) -> Iterator[Any]:
        """Each item of `iterable` inside a step (see Tracker.steps)."""
        # The training thread's cost per step: two clock reads, a dict entry and a tuple on a
        # queue (no Window object, no lock, no rounding: round(x, 6) alone costs ~0.7 us);
        # everything else happens on the sampler thread (ledger.py).
        mono, origin, state = time.monotonic, self.origin(), self.state
        ids, open_, q = self.ids, self.open_steps, self.steps
        q_t0, q_t1, q_index = q.t0.append, q.t1.append, q.index.append
        q_samples, q_tokens, q_parent = q.samples.append, q.tokens.append, q.parent.append
        parent = self.open[-1].id if self.open else -1
        on_step = self.on_step
        for i, batch in enumerate(iterable):
            n_samples = int(samples(batch)) if samples is not None else 0
            n_tokens = int(tokens(batch)) if tokens is not None else 0
            if synchronize is not None:
                synchronize()
            if state() != "running":   # stopped (SIGTERM, atexit): never raise in a loop
                yield batch
                continue
            wid = next(ids)
            t0 = mono() - origin
            open_[wid] = (parent, t0, i, n_samples, n_tokens)
            try:
                yield batch
            finally:
                if synchronize is not None:
                    synchronize()
                t1 = mono() - origin
                if open_.pop(wid, None) is not None:   # else stop() closed it already
                    q_t0(t0)
                    q_t1(t1)
                    q_index(i)
                    q_samples(n_samples)
                    q_tokens(n_tokens)
                    q_parent(parent)   # last: the row is complete (see StepQueue)
                    if on_step is not None:
                        on_step(n_samples, n_tokens)

    # -- what the sampler thread and the summary read ------------------------------------------
    def take_marks(self) -> Iterator[dict[str, Any]]:
        """Window edges not yet logged, oldest first."""
        while self.marks:
            yield self.marks.popleft()

    def take_steps(self) -> Optional[Batch]:
        return self.steps.take()

    def snapshot(self) -> list[Window]:
        with self.lock:
            return list(self.windows)

    def edges(self) -> list[float]:
        """Times the energy curve must keep exactly: every window edge, every open step's
        start (curve compaction pins them)."""
        pins = [x for w in list(self.windows) for x in (w.t_start, w.t_end) if x is not None]
        pins += [v[1] for v in list(self.open_steps.values())]
        return pins

    def steps_in_flight(self) -> int:
        """Steps open or closed but not yet handed to the ledger."""
        return len(self.steps) + len(self.open_steps)
