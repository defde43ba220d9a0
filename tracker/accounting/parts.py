"""The base of a summary's typed parts (its cost, its sampling, ...): a frozen dataclass that is
written as, and still reads as, the JSON object summary.json has always held.

A part's fields are the object's keys, typed. `to_dict()` gives the object back key for key and
in the order it was read (`from_dict`), so a summary.json read and written again is the same
bytes; keys this version does not know are kept (`extra`), so a newer file loses nothing. A
part is also a read-only Mapping (`part["amount"]`, `part.get("basis")`, `part == {...}`), so
code that read the old dict reads the part unchanged while it moves to the typed fields.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, fields
from typing import Any, Optional, TypeVar

__all__ = ["DictPart", "as_part"]

P = TypeVar("P", bound="DictPart")


@dataclass(frozen=True, eq=False)   # eq: Mapping's (a part equals the dict it writes)
class DictPart(Mapping[str, Any]):
    """See the module docstring. Subclasses declare their keys as fields, each with a default
    (a file may lack any key). `keys_`: the keys present, in order (None: every field, in
    declaration order); `extra`: keys that are not fields."""

    keys_: Optional[tuple[str, ...]] = field(default=None, repr=False, kw_only=True)
    extra: dict[str, Any] = field(default_factory=dict, repr=False, kw_only=True)

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls) if f.name not in ("keys_", "extra"))

    @classmethod
    def from_dict(cls: type[P], d: Mapping[str, Any]) -> P:
        names = cls.field_names()
        return cls(**{k: d[k] for k in names if k in d}, keys_=tuple(d),
                   extra={k: v for k, v in d.items() if k not in names})

    def to_dict(self) -> dict[str, Any]:
        names = self.field_names()
        out: dict[str, Any] = {}
        for k in (self.keys_ if self.keys_ is not None else names):
            if k in names:
                out[k] = getattr(self, k)
            elif k in self.extra:
                out[k] = self.extra[k]
        for k, v in self.extra.items():
            out.setdefault(k, v)
        return out

    # -- read as the dict it was --------------------------------------------------------------
    def __getitem__(self, key: str) -> Any:
        return self.to_dict()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.to_dict())

    def __len__(self) -> int:
        return len(self.to_dict())


def as_part(cls: type[P], value: Any) -> P:
    """`value` as a `cls` part: itself, or read from the dict (or other Mapping) it is given as
    (a Summary built by hand, or by code that predates the typed parts)."""
    if isinstance(value, cls):
        return value
    if isinstance(value, Mapping):
        return cls.from_dict(value)
    raise TypeError(f"a {cls.__name__} part is a {cls.__name__} or a dict of its keys "
                    f"({', '.join(cls.field_names())}), got {type(value).__name__} {value!r:.80}")
