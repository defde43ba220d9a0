"""The windows and steps API of a run: `run.window()`, `begin_window()`, `end_window()`,
`epochs()`, `steps()` and `run.step()`, the Tracker's public methods for marking what the
training does. Each is a documented, thin delegation to the run's window book
(windowbook.WindowBook), which keeps the windows and the steps in transit.
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Callable, Optional

from .errors import ConfigError
from .windows import Window

if TYPE_CHECKING:
    from .windowbook import WindowBook


class WindowsAPI:
    """The Tracker's windows and steps API. Needs one attribute: `_book`, the run's
    windowbook.WindowBook (which opens windows only while the run is running)."""

    _book: WindowBook

    @contextmanager
    def window(self, name: str, kind: str = "phase", **attrs: Any) -> Iterator[Window]:
        """A named window (nestable). Its energy is E(t_end) - E(t_start) on every device."""
        w = self.begin_window(name, kind, **attrs)
        try:
            yield w
        finally:
            self.end_window(w)

    def begin_window(self, name: str, kind: str = "phase", *, anchor: Optional[bool] = None,
                     parent: Optional[Window] = None, **attrs: Any) -> Window:
        """Open a window now. `anchor` (default: True except for steps) asks the sampler for an
        immediate counter read so the edge is exact; steps are interpolated instead.

        `attrs` are kept with the window (summary.json, windows.json). Two have a meaning:
        `samples=` and `tokens=` (ints) on a `kind="step"` window are its sample and token
        counts, summed into the run's J/sample and J/token; they may also be given (or
        corrected) to `end_window(w, samples=..., tokens=...)`. For a loop, `step()` and
        `steps()` do this with less work per step."""
        return self._book.begin(name, kind, anchor=anchor, parent=parent, **attrs)

    def end_window(self, w: Window, *, anchor: Optional[bool] = None, **attrs: Any) -> None:
        """Close `w` now; `attrs` are added to its own (e.g. `samples=`/`tokens=` of a step)."""
        self._book.end(w, anchor=anchor, **attrs)

    def epochs(self, iterable: Iterable[Any], total: Optional[int] = None) -> Iterable[Any]:
        """Iterate epochs, each in an "epoch" window named "epoch <i>" (i from 0 each pass).

        Like `steps`, it returns the iterable itself for everything but iteration: `len()`
        and attributes are the iterable's. `total` is accepted for compatibility (unused)."""
        from .windowbook import Steps

        return Steps(iterable, self._epoch_pass)

    def _epoch_pass(self, iterable: Iterable[Any]) -> Iterator[Any]:
        for i, item in enumerate(iterable):
            with self.window(f"epoch {i}", kind="epoch", index=i):
                yield item

    def steps(self, iterable: Iterable[Any], *, samples: Any = None, tokens: Any = None,
              synchronize: Optional[Callable[[], None]] = None) -> Any:
        """Iterate training steps, each item in a "step" window (interpolated on E(t), see
        README). Returns a thin wrapper that is still `iterable` for the code it is passed to:

            train(args, model, device, run.steps(train_loader), optimizer, epoch)

        `len()`, truthiness and attributes (`.dataset`, `.batch_size`,
        `.sampler.set_epoch(e)`) are the loader's; each `for` over it is a new pass, so one
        wrapper serves every epoch; `next()`/`.close()` drive a pass of its own.

        `samples`/`tokens`: the batch's sample/token count for J/sample and J/token: an int
        (the same for every batch) or a function of the batch (e.g.
        `samples=lambda b: len(b[0])`); a function that raises counts 0 and is logged, the
        loop goes on. `synchronize`: called at each step edge (e.g. torch.cuda.synchronize),
        so a step's GPU work lands in its own window; off by default because it costs speed.
        For a loop that is not an iterable, use `step()`.
        """
        from .windowbook import Steps, check_counter

        check_counter("samples", samples)
        check_counter("tokens", tokens)
        if not hasattr(iterable, "__iter__") and not hasattr(iterable, "__getitem__"):
            raise ConfigError(f"steps() takes an iterable (a DataLoader, a range, a list...), "
                              f"got {iterable!r} ({type(iterable).__name__})")
        return Steps(iterable, functools.partial(self._book.iter_steps, samples=samples,
                                                 tokens=tokens, synchronize=synchronize))

    # `run.step(samples=0, tokens=0, *, index=None, synchronize=None)`: the window book's
    # context factory, reached through C code only (property(attrgetter)), so that a step
    # costs the training thread what a step of `steps()` costs (scripts/bench_steps.py)
    step = property(operator.attrgetter("_book.step"), doc="""One training step as a context
        manager, for loops that are not iterables:

            while True:                      # nanoGPT
                with run.step(samples=batch_size, tokens=batch_size * block_size):
                    ...forward, backward, optimizer step...

        `run.step(samples=0, tokens=0, *, index=None, synchronize=None)`. `samples`/`tokens`
        (ints >= 0) are the step's counts for J/sample and J/token; they can also be set
        inside the block (`with run.step() as s: ...; s.tokens = n`). `index`: the step's
        number (default: 0, 1, 2... across the run). `synchronize` as for `steps()`. Inside
        another window (an epoch) the step is its child. On a stopped tracker the block runs
        untracked; an exception in it closes the step and propagates untouched. A count that
        is not an int >= 0 is a ConfigError at the call. Costs the training thread about what
        a step of `steps()` costs (scripts/bench_steps.py).""")


__all__ = ["WindowsAPI"]
