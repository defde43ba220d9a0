"""Windows: named intervals of a run (phase, epoch, step, eval, checkpoint), in run seconds.

A plain class, not a dataclass: `import tracker` and the step hot path stay cheap. A window's
energy is E(t_end) - E(t_start) on the run's energy curves (see summary.py).
"""

from __future__ import annotations

from array import array
from typing import Any, Optional


class Window:
    """A named interval of the run (phase, epoch, step, eval ...), times in run seconds."""

    __slots__ = ("attrs", "id", "kind", "name", "parent", "t_end", "t_start")

    def __init__(self, id: int, name: str, kind: str = "phase", parent: Optional[int] = None,
                 t_start: float = 0.0, t_end: Optional[float] = None,
                 attrs: Optional[dict[str, Any]] = None):
        self.id = id
        self.name = name
        self.kind = kind
        self.parent = parent
        self.t_start = t_start
        self.t_end = t_end
        self.attrs: dict[str, Any] = attrs if attrs is not None else {}

    def replace(self, **changes: Any) -> Window:
        """A copy with some fields changed."""
        fields = {k: getattr(self, k) for k in self.__slots__}
        fields.update(changes)
        return Window(**fields)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Window) and all(
            getattr(self, k) == getattr(other, k) for k in self.__slots__)

    __hash__ = None  # type: ignore[assignment]   # mutable (t_end is set when it closes)

    def __repr__(self) -> str:
        return (f"Window(id={self.id!r}, name={self.name!r}, kind={self.kind!r}, "
                f"parent={self.parent!r}, t_start={self.t_start!r}, t_end={self.t_end!r}, "
                f"attrs={self.attrs!r})")

    def mark(self, edge: str, t: float) -> dict[str, Any]:
        """The samples.jsonl record of this window's start or end."""
        m: dict[str, Any] = {"id": self.id, "edge": edge}
        if edge == "start":
            m.update(name=self.name, kind=self.kind)
            if self.parent is not None:
                m["parent"] = self.parent
        if self.attrs:
            m["attrs"] = self.attrs
        return {"t": round(t, 6), "mark": m}


class StepTable:
    """Closed step windows in compact arrays (~50 bytes a step instead of ~600 as objects), so a
    run of millions of steps does not grow the training process by gigabytes."""

    def __init__(self) -> None:
        self._id, self._parent, self._index = array("q"), array("q"), array("q")
        self._samples, self._tokens = array("q"), array("q")
        self._t0, self._t1 = array("d"), array("d")

    def __len__(self) -> int:
        return len(self._id)

    def add(self, row: tuple[Any, ...]) -> None:
        """Add a closed step: (id, parent or -1, t_start, t_end, index, samples, tokens)."""
        wid, parent, t0, t1, index, samples, tokens = row
        self._id.append(wid)
        self._parent.append(parent)
        self._index.append(int(index) if index is not None and index >= 0
                           else len(self._id) - 1)
        self._samples.append(int(samples or 0))
        self._tokens.append(int(tokens or 0))
        self._t0.append(t0)
        self._t1.append(t1)

    def windows(self) -> list[Window]:
        """The steps as Window objects again (at stop, for the final summary)."""
        out = []
        for i in range(len(self._id)):
            attrs: dict[str, Any] = {"index": self._index[i]}
            if self._samples[i]:
                attrs["samples"] = self._samples[i]
            if self._tokens[i]:
                attrs["tokens"] = self._tokens[i]
            out.append(Window(id=self._id[i], name=f"step {self._index[i]}", kind="step",
                              parent=None if self._parent[i] < 0 else self._parent[i],
                              t_start=self._t0[i], t_end=self._t1[i], attrs=attrs))
        return out


__all__ = ["StepTable", "Window"]
