"""Records of samples.jsonl and marks-*.jsonl, checked: a reading's values, a step row, a
window mark. Every reader of those lines (the rebuild, the follower of a joined process)
applies them through here, so a forged value is refused the same way everywhere."""

from __future__ import annotations

from typing import Any, Optional

from ..windows import Window
from .runlog import STEP_COLUMNS
from .untrusted import MAX_READING_ABS, MAX_RUN_S, number

_I64 = float(1 << 63)
READING_KEYS = ("w", "a", "c", "x", "u", "j")


def checked_number(x: Any, limit: float = MAX_READING_ABS) -> float:
    """A reading's value: a finite number of plausible size (a forged 1e308 would overflow
    the energy sums), or ValueError."""
    if not number(x, limit):
        raise ValueError(f"not a plausible number: {x!r:.40}")
    return float(x)


def checked_int(x: Any) -> int:
    if not number(x, _I64):
        raise ValueError(f"not a plausible integer: {x!r:.40}")
    return int(x)


def checked_reading(got: Any) -> dict[str, float]:
    if not isinstance(got, dict):
        raise ValueError("a reading is not an object")
    return {k: checked_number(v) for k, v in got.items() if k in READING_KEYS}


def checked_step_row(r: Any) -> tuple[Any, ...]:
    if not isinstance(r, (list, tuple)) or len(r) != len(STEP_COLUMNS):
        raise ValueError("a step row of the wrong shape")
    wid, parent, t0, t1, index, samples, tokens = r
    return (checked_int(wid), checked_int(parent), checked_number(t0, MAX_RUN_S),
            checked_number(t1, MAX_RUN_S), checked_int(index), checked_int(samples),
            checked_int(tokens))


def apply_window_record(windows: dict[int, Window], rec: dict[str, Any]) -> None:
    """Apply a samples.jsonl / marks-*.jsonl record holding a window mark or closed steps."""
    if "mark" in rec:
        apply_mark(windows, rec["mark"], float(rec["t"]))
    for row in rec.get("steps", ()):
        s = dict(zip(STEP_COLUMNS, checked_step_row(row)))
        attrs = {k: s[k] for k in ("index", "samples", "tokens") if s[k] not in (0, -1)}
        if s["index"] == 0:
            attrs["index"] = 0
        windows[s["id"]] = Window(id=s["id"], name=f"step {s['index']}", kind="step",
                                  parent=None if s["parent"] < 0 else s["parent"],
                                  t_start=s["t_start"], t_end=s["t_end"], attrs=attrs)


def apply_mark(windows: dict[int, Window], m: dict[str, Any], t: float) -> Optional[Window]:
    """Apply one start/end mark record to the windows by id; returns the window touched.
    Raises ValueError for a mark that is not one (no integer id)."""
    if not isinstance(m, dict) or isinstance(m.get("id"), bool) or not isinstance(m.get("id"),
                                                                                int):
        raise ValueError("a mark without an id")
    attrs = m.get("attrs", {})
    attrs = dict(attrs) if isinstance(attrs, dict) else {}
    if m.get("edge") == "start":
        parent = m.get("parent")
        started = Window(id=m["id"], name=str(m.get("name", "")),
                         kind=str(m.get("kind", "phase")),
                         parent=parent if isinstance(parent, int) and not isinstance(parent, bool)
                         else None, t_start=t, attrs=attrs)
        windows[m["id"]] = started
        return started
    w = windows.get(m["id"])
    if w is not None and t >= w.t_start:
        w.t_end = t
        w.attrs.update(attrs)
    return w
