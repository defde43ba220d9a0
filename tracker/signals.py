"""SIGTERM: what torchrun, SLURM and Kubernetes send before a kill. Record it, then let it act.

With Python's default SIGTERM action the process dies at once and a run's files say "running"
forever. While a tracker runs in a process whose SIGTERM handler is the default (or one the
program installed), this module's handler stops every running tracker with status
"terminated" (final reading, summary, emissions row), then does what would have happened
anyway: calls the program's handler, or restores the default action and re-sends the signal,
so the exit status is still "killed by SIGTERM". An ignored SIGTERM stays ignored.

A Python handler only runs when the main thread executes Python code. A rank blocked inside a
collective (a peer died; torchrun's agent then SIGTERMs everyone) never gets there, and is
SIGKILLed 30 s later. So the signal number is also written to a wake-up file descriptor (when
the program has not set one), which the sampler thread checks on every tick: it then stops
the trackers itself, and the main thread's handler later only chains.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from typing import Any, Callable, Optional

log = logging.getLogger("tracker")

_lock = threading.RLock()
# id(tracker) -> its stop-on-SIGTERM; returns True when that tracker's stop() is already under
# way on this thread (the handler interrupted it), so the signal must wait for it to finish.
_stoppers: dict[int, Callable[[], bool]] = {}
_deferred: Optional[tuple[int, Any]] = None     # a SIGTERM to deliver once those stops end
_previous: Any = None
_installed = False
_wake_r: Optional[int] = None
_wake_w: Optional[int] = None
_terminating = threading.Event()


def install(key: int, stop: Callable[[], bool]) -> bool:
    """Stop via `stop()` on SIGTERM. Only from the main thread; False when not installed."""
    global _previous, _installed
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal,
                                                                                 "SIGTERM"):
        return False
    with _lock:
        if not _installed:
            try:
                prev = signal.getsignal(signal.SIGTERM)
            except (ValueError, OSError):
                return False
            if prev is signal.SIG_IGN or prev is None:   # ignored, or a C-level handler
                return False
            try:
                signal.signal(signal.SIGTERM, _handler)
            except (ValueError, OSError):
                return False
            _previous = prev
            _installed = True
            _open_wakeup()
        _stoppers[key] = stop
        return True


def uninstall(key: int) -> None:
    """Forget a stopped tracker; restore the previous handler after the last one, and deliver
    a SIGTERM that arrived while it was stopping."""
    global _installed, _deferred
    with _lock:
        _stoppers.pop(key, None)
        if _deferred is not None and threading.current_thread() is threading.main_thread():
            signum, frame = _deferred
            _deferred = None
            _chain(signum, frame)
            return
        if _stoppers or not _installed:
            return
        if threading.current_thread() is threading.main_thread():
            try:
                if signal.getsignal(signal.SIGTERM) is _handler:
                    signal.signal(signal.SIGTERM, _previous)
                _close_wakeup()
                _installed = False
            except (ValueError, OSError):
                pass


def _open_wakeup() -> None:
    """Have the interpreter's C-level handler also write the signal number to a pipe we poll
    (only when the program has not set a wake-up fd of its own, e.g. an asyncio loop)."""
    global _wake_r, _wake_w
    try:
        r, w = os.pipe()
        os.set_blocking(r, False)
        os.set_blocking(w, False)
        old = signal.set_wakeup_fd(w, warn_on_full_buffer=False)
        if old != -1:   # someone else's: put it back, go without
            signal.set_wakeup_fd(old)
            os.close(r)
            os.close(w)
            return
        _wake_r, _wake_w = r, w
    except (ValueError, OSError, AttributeError):
        pass


def _close_wakeup() -> None:
    global _wake_r, _wake_w
    if _wake_w is None:
        return
    try:
        if signal.set_wakeup_fd(-1) != _wake_w:  # replaced meanwhile: leave theirs
            pass
    except (ValueError, OSError):
        pass
    for fd in (_wake_r, _wake_w):
        try:
            os.close(fd)  # type: ignore[arg-type]
        except OSError:
            pass
    _wake_r = _wake_w = None


def poll() -> bool:
    """Has a SIGTERM arrived that the main thread has not handled yet? (sampler thread;
    a non-blocking read of a pipe, ~1 us)."""
    if _wake_r is None or _terminating.is_set():
        return False
    try:
        data = os.read(_wake_r, 64)
    except (BlockingIOError, OSError):
        return False
    return bytes([signal.SIGTERM]) in data


def stop_all_from_thread() -> None:
    """Stop every tracker on a helper thread (the main thread may be stuck in a collective)."""
    if _terminating.is_set():
        return
    _terminating.set()
    threading.Thread(target=_stop_all, name="energy-tracker-sigterm", daemon=True).start()


def _stop_all() -> bool:
    """Stop every tracker; True if one of them was already stopping on this thread."""
    with _lock:
        stops = list(_stoppers.values())
    deferred = False
    for stop in stops:
        try:
            deferred = bool(stop()) or deferred
        except Exception as e:  # the signal must still take its course
            log.warning("energy-tracker: stopping on SIGTERM failed: %s", e)
    return deferred


def _handler(signum: int, frame: Any) -> None:
    global _deferred
    _terminating.set()
    if _stop_all():
        _deferred = (signum, frame)   # delivered by uninstall() when that stop() returns
        return
    _chain(signum, frame)


def _chain(signum: int, frame: Any) -> None:
    """Do what SIGTERM would have done without us."""
    global _installed
    prev = _previous
    with _lock:
        _stoppers.clear()
    if callable(prev):
        prev(signum, frame)
        return
    # The default action: terminate, with the exit status a launcher expects from SIGTERM.
    try:
        signal.set_wakeup_fd(-1)
    except (ValueError, OSError):
        pass
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    _installed = False
    os.kill(os.getpid(), signal.SIGTERM)


__all__ = ["install", "poll", "stop_all_from_thread", "uninstall"]
