"""How the tracked code ended, as the run's status says it: a `with track(...)` block or a
decorated function that returned, was interrupted, exited, or raised."""

from __future__ import annotations

from typing import Any, Optional


def exit_status(exc_type: Any, exc: Any) -> tuple[str, Optional[str]]:
    """(the run's status, the note to add or None) for a block that ended with `exc` of
    `exc_type` (None: it returned). Ctrl-C is "interrupted"; sys.exit(0) "finished"."""
    if exc_type is None:
        return "finished", None
    if issubclass(exc_type, KeyboardInterrupt):
        return "interrupted", None
    if issubclass(exc_type, SystemExit) and exc is not None and exc.code in (0, None):
        return "finished", "the tracked code called sys.exit(0)"
    return "failed", f"the tracked code raised {describe(exc_type, exc)}"


def describe(exc_type: Any, exc: Any, limit: int = 500) -> str:
    """ "TypeName: message", the message cut to `limit` characters; never raises (an
    exception's own __str__ may)."""
    try:
        text = str(exc)
    except Exception:
        text = "(its message could not be read)"
    if len(text) > limit:
        text = text[:limit] + f"... ({len(text) - limit} more characters)"
    return f"{getattr(exc_type, '__name__', 'Exception')}: {text}"


__all__ = ["describe", "exit_status"]
