"""Matching the windows that several ranks recorded into job-wide windows.

Every rank of a data-parallel job opens "epoch 0", "evaluation", step 17 ... at about the same
time. A window is matched across ranks by (kind, name, occurrence): the n-th "epoch 0" of rank
3 is the n-th "epoch 0" of rank 0. The lowest rank that recorded a window is its reference (its
edges are the job window's edges), and how far apart the ranks' edges were is kept, so a
straggler shows. Steps are matched by order (plain loops restart their index every epoch).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Callable, Generic, Optional, TypeVar

W = TypeVar("W")
Key = tuple[str, str, int]


@dataclass
class Match(Generic[W]):
    """One job-wide window: the reference rank's window and every rank's own."""

    key: Key
    ref: int                    # participant (rank) whose edges the job window uses
    by: dict[int, W]            # participant -> its window

    def spread_s(self, start: Callable[[W], float], end: Callable[[W], Optional[float]]
                 ) -> dict[str, float]:
        starts = [start(w) for w in self.by.values()]
        ends = [e for e in (end(w) for w in self.by.values()) if e is not None]
        return {"start": max(starts) - min(starts),
                "end": (max(ends) - min(ends)) if ends else 0.0}


def keyed(windows: Iterable[W], kind: Callable[[W], str], name: Callable[[W], str],
          start: Callable[[W], float]) -> list[tuple[Key, W]]:
    """Each window with its (kind, name, occurrence) key, in start order."""
    seen: dict[tuple[str, str], int] = {}
    out = []
    for w in sorted(windows, key=start):
        k = (kind(w), name(w))
        n = seen.get(k, 0)
        seen[k] = n + 1
        out.append(((k[0], k[1], n), w))
    return out


def match(windows_by: Mapping[int, Sequence[W]], *, kind: Callable[[W], str],
          name: Callable[[W], str], start: Callable[[W], float]) -> list[Match[W]]:
    """Job-wide windows (steps excluded), ordered by their reference edge."""
    groups: dict[Key, Match[W]] = {}
    for who in sorted(windows_by):
        for key, w in keyed([w for w in windows_by[who] if kind(w) != "step"], kind, name,
                            start):
            m = groups.get(key)
            if m is None:
                groups[key] = Match(key, who, {who: w})
            else:
                m.by[who] = w
    return sorted(groups.values(), key=lambda m: start(m.by[m.ref]))


def match_steps(steps_by: Mapping[int, Sequence[W]], start: Callable[[W], float]
                ) -> tuple[Optional[int], list[dict[int, W]]]:
    """(reference participant, [the n-th step of each participant, for every n of the
    reference]). The reference is the lowest participant that recorded steps."""
    ordered = {who: sorted(s, key=start) for who, s in steps_by.items() if s}
    if not ordered:
        return None, []
    ref = min(ordered)
    rows = []
    for i in range(len(ordered[ref])):
        rows.append({who: s[i] for who, s in ordered.items() if i < len(s)})
    return ref, rows


def remap_parent(m: Match[Any], parent_of: Callable[[Any], Optional[Any]],
                 key_of: Mapping[tuple[int, Any], Key], id_of: Mapping[Key, Any]) -> Any:
    """The job id of a matched window's parent (the reference's parent, matched again)."""
    p = parent_of(m.by[m.ref])
    if p is None:
        return None
    key = key_of.get((m.ref, p))
    return id_of.get(key) if key is not None else None


__all__ = ["Match", "align_windows", "keyed", "match", "match_steps", "remap_parent"]


def align_windows(by_rank: Mapping[Any, Sequence[Any]]) -> list[Any]:
    """Windows (tracker.summary.Window) recorded by several ranks against one clock (processes
    joined to one run) -> the job's windows: the reference rank's, each with `ranks` and
    `edge_spread_s` in its attrs; steps counted once with samples and tokens summed over ranks.
    `by_rank` keys sort in rank order. One participant: its windows unchanged."""
    if len(by_rank) <= 1:
        return [w for ws in by_rank.values() for w in ws]
    who = {k: i for i, k in enumerate(sorted(by_rank))}
    windows = {who[k]: list(v) for k, v in by_rank.items()}
    matches = match(windows, kind=lambda w: w.kind, name=lambda w: w.name,
                    start=lambda w: w.t_start)
    key_of = {(i, w.id): k for i, ws in windows.items()
              for k, w in keyed([w for w in ws if w.kind != "step"], lambda w: w.kind,
                                lambda w: w.name, lambda w: w.t_start)}
    id_of = {m.key: m.by[m.ref].id for m in matches}
    out = []
    for m in matches:
        ref = m.by[m.ref]
        attrs = dict(ref.attrs, ranks=len(m.by),
                     edge_spread_s=m.spread_s(lambda w: w.t_start, lambda w: w.t_end))
        out.append(ref.replace(attrs=attrs,
                               parent=remap_parent(m, lambda w: w.parent, key_of, id_of)))
    ref_i, rows = match_steps({i: [w for w in ws if w.kind == "step"]
                               for i, ws in windows.items()}, start=lambda w: w.t_start)
    for row in rows:
        assert ref_i is not None
        step = row[ref_i]
        attrs = dict(step.attrs)
        for k in ("samples", "tokens"):
            total = sum(int(w.attrs.get(k) or 0) for w in row.values())
            if total:
                attrs[k] = total
        parent_key = key_of.get((ref_i, step.parent)) if step.parent is not None else None
        out.append(step.replace(attrs=attrs, parent=id_of.get(parent_key) if parent_key else None))
    return out
