"""The base of a summary's typed parts (its grid, cost, steps, job, ...): a frozen dataclass
that is written as, and still reads as, the JSON object summary.json has always held.

A part's fields are the object's keys, typed. `to_dict()` gives the object back key for key and
in the order it was read (`from_dict`), so a summary.json read and written again is the same
bytes; keys this version does not know are kept (`extra`), so a newer file loses nothing. A
part is also a read-only Mapping (`part["amount"]`, `part.get("basis")`, `part == {...}`), so
code that read the old dict reads the part unchanged while it moves to the typed fields.

A part can hold parts: `NESTED` names the fields that are a list of parts, or an object whose
values are parts (a job's nodes, its attempts, each node's GPU spread); they are read and
written with them. `parts_of` / `part_map` make the list and the map of parts a summary holds
directly (its findings; its breakdown and idle accounts).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, fields
from functools import cache
from typing import Any, ClassVar, Optional, TypeVar

__all__ = ["DictPart", "as_part", "part_map", "parts_of", "plain"]

P = TypeVar("P", bound="DictPart")


@dataclass(frozen=True, eq=False)   # eq: Mapping's (a part equals the dict it writes)
class DictPart(Mapping[str, Any]):
    """See the module docstring. Subclasses declare their keys as fields, each with a default
    (a file may lack any key). `keys_`: the keys present, in order (None: every field, in
    declaration order); `extra`: keys that are not fields."""

    keys_: Optional[tuple[str, ...]] = field(default=None, repr=False, kw_only=True)
    extra: dict[str, Any] = field(default_factory=dict, repr=False, kw_only=True)

    # field -> ("list" | "map", part class): fields that hold parts (module docstring)
    NESTED: ClassVar[dict[str, tuple[str, type[DictPart]]]] = {}

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        return _field_names(cls)

    @classmethod
    def from_dict(cls: type[P], d: Mapping[str, Any]) -> P:
        names = cls.field_names()
        values = {k: d[k] for k in names if k in d}
        for k, (shape, part) in cls.NESTED.items():
            v = values.get(k)
            if shape == "list" and isinstance(v, list):
                values[k] = parts_of(part, v)
            elif shape == "map" and isinstance(v, Mapping):
                values[k] = part_map(part, v)
        return cls(**values, keys_=tuple(d), extra={k: v for k, v in d.items() if k not in names})

    def _present(self) -> tuple[str, ...]:
        """The keys this part holds, in its order: the read keys, then any extra."""
        keys = self.keys_ if self.keys_ is not None else self.field_names()
        return (*keys, *(k for k in self.extra if k not in keys))

    def to_dict(self) -> dict[str, Any]:
        names = self.field_names()
        out: dict[str, Any] = {}
        for k in self._present():
            if k in names:
                out[k] = plain(getattr(self, k))
            elif k in self.extra:
                out[k] = self.extra[k]
        return out

    # -- read as the dict it was --------------------------------------------------------------
    def __getitem__(self, key: str) -> Any:
        if key in self.extra:
            return self.extra[key]
        if key in self._present() and key in self.field_names():
            return getattr(self, key)
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        return iter(k for k in self._present() if k in self.extra or k in self.field_names())

    def __len__(self) -> int:
        return sum(1 for _ in self)


@cache
def _field_names(cls: type[DictPart]) -> tuple[str, ...]:
    # read on every key lookup: dataclasses.fields() each time costs more than the lookup
    return tuple(f.name for f in fields(cls) if f.name not in ("keys_", "extra"))


def plain(v: Any) -> Any:
    """`v` as JSON holds it: parts (and lists and objects of parts) as their dicts."""
    if isinstance(v, DictPart):
        return v.to_dict()
    if isinstance(v, (list, tuple)) and any(isinstance(x, DictPart) for x in v):
        return [plain(x) for x in v]
    if isinstance(v, dict) and any(isinstance(x, DictPart) for x in v.values()):
        return {k: plain(x) for k, x in v.items()}
    return v


def as_part(cls: type[P], value: Any) -> P:
    """`value` as a `cls` part: itself, or read from the dict (or other Mapping) it is given as
    (a Summary built by hand, or by code that predates the typed parts)."""
    if isinstance(value, cls):
        return value
    if isinstance(value, Mapping):
        return cls.from_dict(value)
    raise TypeError(f"a {cls.__name__} part is a {cls.__name__} or a dict of its keys "
                    f"({', '.join(cls.field_names())}), got {type(value).__name__} {value!r:.80}")


def parts_of(cls: type[P], values: Iterable[Any]) -> list[P]:
    """Each of `values` as a `cls` part (a list of them, as summary.json holds it)."""
    return [as_part(cls, v) for v in values]


def part_map(cls: type[P], values: Mapping[str, Any]) -> dict[str, P]:
    """An object of `cls` parts (a breakdown's parts by name, idle accounts by device)."""
    return {k: as_part(cls, v) for k, v in values.items()}
