"""The window book: the windows of one run as the training thread opens and closes them.

Phases, epochs, evals and checkpoints are `Window` objects, nestable, each edge logged as a
mark; steps are the hot path and never become objects while the loop runs: an open step is a
dict entry, a closed one a row on a `StepQueue` that the sampler thread settles (ledger.py).
The book knows nothing of sensors, files or carbon: the tracker asks it for what to log
(`take_marks`, `take_steps`) and what to pin (`edges`), and tells it when the run stops
(`close_all`).
"""

from __future__ import annotations

import functools
import itertools
import logging
import threading
from collections import deque
from collections.abc import Iterable, Iterator
from typing import Any, Callable, Optional, Union

from . import sampler as _clock  # its clock: the system's, or a test's driven by hand
from .errors import ConfigError
from .rundir.ledger import Batch, StepQueue
from .windows import Window

log = logging.getLogger("tracker")

__all__ = ["StepContext", "StepCount", "Steps", "WindowBook", "check_counter"]

# samples= / tokens= of a step: a count for every batch, a function of the batch, or None
StepCount = Union[int, Callable[[Any], int], None]


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
        # open steps: id -> (parent id or -1, t_start, index, samples, tokens); a `step()`
        # context's id is negative (-id(context)), never a window's
        self.open_steps: dict[int, tuple[int, float, int, int, int]] = {}
        # What a `step()` context reads, bound once (these objects are changed in place,
        # never replaced): one attribute load at each edge instead of a dozen.
        q = self.steps
        self.step_enter = (state, origin, self.open, self.open_steps)
        self.step_exit = (self.open_steps, q.t0.append, q.t1.append, q.index.append,
                          q.samples.append, q.tokens.append, q.parent.append, on_step)
        self.ids = itertools.count()          # window ids (next() is atomic under the GIL)
        self.step_index = itertools.count()   # the index of the next `step()` without one
        # `run.step(samples=.., tokens=.., index=.., synchronize=..)`: a partial in C, so a
        # call costs the context's own __init__ and nothing more
        self.step: Callable[..., StepContext] = functools.partial(StepContext, self)
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
                   samples: StepCount = None, tokens: StepCount = None,
                   synchronize: Optional[Callable[[], None]] = None) -> Iterator[Any]:
        """Each item of `iterable` inside a step (see Tracker.steps): one pass."""
        # The training thread's cost per step: two clock reads, a dict entry and a tuple on a
        # queue (no Window object, no lock, no rounding: round(x, 6) alone costs ~0.7 us);
        # everything else happens on the sampler thread (ledger.py).
        from . import sampler  # its clock: the system's, or a test's driven by hand
        mono, origin, state = sampler.monotonic_s, self.origin(), self.state
        ids, open_, q = self.ids, self.open_steps, self.steps
        q_t0, q_t1, q_index = q.t0.append, q.t1.append, q.index.append
        q_samples, q_tokens, q_parent = q.samples.append, q.tokens.append, q.parent.append
        parent = self.open[-1].id if self.open else -1
        on_step = self.on_step
        # a count is a number for every batch, or a function of the batch
        per_samples = samples if callable(samples) else None
        per_tokens = tokens if callable(tokens) else None
        fixed_samples = samples if isinstance(samples, int) else 0
        fixed_tokens = tokens if isinstance(tokens, int) else 0
        warned: set[str] = set()
        for i, batch in enumerate(iterable):
            n_samples = (_count(per_samples, batch, "samples", warned) if per_samples
                         else fixed_samples)
            n_tokens = _count(per_tokens, batch, "tokens", warned) if per_tokens else fixed_tokens
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


class StepContext:
    """`with run.step(samples=64, tokens=65536) as s:` - one step of a loop that is not an
    iterable (nanoGPT's `while True:`). The same work on the training thread as a step of
    `Steps`: two clock reads, a dict entry, a row on the queue. `s.samples` / `s.tokens` may
    be set inside the block (e.g. once the batch is known); an exception in the block still
    closes the step and is never swallowed."""

    __slots__ = ("_book", "_key", "_origin", "_sync", "index", "samples", "tokens")

    def __init__(self, book: WindowBook, samples: int = 0, tokens: int = 0, *,
                 index: Optional[int] = None, synchronize: Optional[Callable[[], None]] = None):
        if samples.__class__ is not int or tokens.__class__ is not int or \
                samples < 0 or tokens < 0:
            _check_step_counts(samples, tokens)
        self._book = book
        self.samples = samples
        self.tokens = tokens
        self.index = next(book.step_index) if index is None else index
        self._sync = synchronize
        self._key = 0          # not open
        self._origin = 0.0

    def __enter__(self) -> StepContext:
        if self._sync is not None:
            self._sync()
        state, origin_of, opened, open_steps = self._book.step_enter
        if state() != "running":   # stopped (SIGTERM, atexit): the block still runs
            return self
        # The key of an open step: negative, so never a window id (those count from 0).
        key = self._key = -id(self)
        origin = self._origin = origin_of()
        open_steps[key] = (opened[-1].id if opened else -1, _clock.monotonic_s() - origin,
                           self.index, self.samples, self.tokens)
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if self._sync is not None:
            self._sync()
        t1 = _clock.monotonic_s() - self._origin
        open_steps, a_t0, a_t1, a_index, a_samples, a_tokens, a_parent, on_step = \
            self._book.step_exit
        opened = open_steps.pop(self._key, None)
        if opened is None:   # never opened (stopped), or stop() closed it already
            return
        samples, tokens = self.samples, self.tokens
        if samples.__class__ is not int or tokens.__class__ is not int:
            samples, tokens = _as_count(samples, "samples"), _as_count(tokens, "tokens")
        a_t0(opened[1])
        a_t1(t1)
        a_index(self.index)
        a_samples(samples)
        a_tokens(tokens)
        a_parent(opened[0])   # last: the row is complete (see StepQueue)
        if on_step is not None:
            on_step(samples, tokens)


class Steps:
    """What `run.steps(loader)` returns: still the loader for the code that receives it.

    Iterating it is one pass of step windows over the loader (each `iter()` a new pass, so one
    object serves every epoch); `len()`, truthiness and every other attribute (`.dataset`,
    `.batch_size`, `.sampler.set_epoch(...)`) are the loader's own, and attributes set on it
    are set on the loader. `next()` / `close()` drive one pass held by the object, for code
    that treated the old generator as an iterator. Not an instance of the loader's class
    (`isinstance(run.steps(dl), DataLoader)` is False): unwrap with `.loader`.
    """

    __slots__ = ("_make_pass", "_pass", "loader")
    loader: Iterable[Any]
    _make_pass: Callable[[Iterable[Any]], Iterator[Any]]
    _pass: Optional[Iterator[Any]]

    def __init__(self, loader: Iterable[Any], make_pass: Callable[[Iterable[Any]], Iterator[Any]]):
        """`make_pass(loader)`: one pass (WindowBook.iter_steps with its options)."""
        object.__setattr__(self, "loader", loader)
        object.__setattr__(self, "_make_pass", make_pass)
        object.__setattr__(self, "_pass", None)

    def __iter__(self) -> Iterator[Any]:
        return self._make_pass(self.loader)

    def __next__(self) -> Any:
        current = self._pass
        if current is None:
            current = iter(self)
            object.__setattr__(self, "_pass", current)
        return next(current)

    def close(self) -> None:
        """End the pass that `next()` drives (its open step closes now)."""
        current = self._pass
        if current is not None:
            object.__setattr__(self, "_pass", None)
            close = getattr(current, "close", None)   # a generator's: its finally runs now
            if close is not None:
                close()

    def __len__(self) -> int:
        return len(self.loader)   # type: ignore[arg-type]  # a TypeError, as for the loader

    def __bool__(self) -> bool:
        return bool(self.loader)

    def __getattr__(self, name: str) -> Any:
        # only for names that are not the wrapper's own; `loader` is always set (slots), so
        # this cannot recurse (copy/pickle look names up before __init__ has run)
        if name in Steps.__slots__:
            raise AttributeError(name)
        return getattr(self.loader, name)

    def __setattr__(self, name: str, value: Any) -> None:
        if name in Steps.__slots__:
            raise AttributeError(f"{name!r} of run.steps(...) is read-only")
        setattr(self.loader, name, value)

    def __repr__(self) -> str:
        return f"<run.steps over {self.loader!r}>"


def check_counter(name: str, value: Any) -> None:
    """samples= / tokens= as given to run.steps / run.step: ConfigError for anything else."""
    if value is None or callable(value):
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(f"{name} must be a count (an int >= 0) or a function of the batch "
                          f"returning one, got {value!r} ({type(value).__name__})")


def _check_step_counts(samples: Any, tokens: Any) -> None:
    for name, value in (("samples", samples), ("tokens", tokens)):
        if callable(value):
            raise ConfigError(f"step() takes a count (an int >= 0) for {name}=, got a function "
                              f"({value!r}); a function of the batch is for steps(loader, ...)")
        if value is None:
            raise ConfigError(f"step() takes a count (an int >= 0) for {name}=, got None "
                              "(leave it out for 0)")
        check_counter(name, value)


def _as_count(value: Any, name: str) -> int:
    """A step's samples/tokens as an int; 0 (and a log line) for what is not one: the step's
    count is lost, never the training loop."""
    try:
        return int(value)
    except (TypeError, ValueError, OverflowError):
        log.warning("energy-tracker: a step's %s is not a number (%r); counted as 0",
                    name, value)
        return 0


def _count(fn: Callable[[Any], int], batch: Any, name: str, warned: set[str]) -> int:
    """fn(batch) as an int; 0 when it raises (logged once a pass): the loop goes on."""
    try:
        return int(fn(batch))
    except Exception as e:
        if name not in warned:
            warned.add(name)
            log.warning("energy-tracker: %s= raised %s: %s on a batch; counted as 0 (not "
                        "logged again in this pass)", name, type(e).__name__, e)
        return 0
