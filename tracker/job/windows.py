"""A job's windows from its members' (the windows part of job/merge.py's gathering).

Windows are matched across ranks (align.py); a job window's energy is the sum over members of
their devices' energy between that member's own edges of the window (each edge anchored on
the counters of the process that measured the device). A member that measured devices but did
not record the window is read at the reference rank's edges from its energy curve (then its
share has no ± bound of its own). Emissions and cost are summed the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Optional

from ..sensors.base import counted
from ..summary import WindowEnergy
from ..units import J_PER_KWH
from . import align

if TYPE_CHECKING:
    from .merge import Loaded

__all__ = ["count_of", "job_windows"]


def count_of(n: Any) -> int:
    """A count (ranks, world size, nodes) from job.json, a member's run.json or a window's
    attrs; 0 when it is not one (a damaged or forged file)."""
    return n if n.__class__ is int and 0 <= n < 1 << 30 else 0


def job_windows(loaded: Sequence[Loaded], t0: float, attempts: Sequence[tuple[str, int]]
                ) -> list[WindowEnergy]:
    """The job's windows: each attempt's members' windows matched (align.py), their energies,
    emissions and costs summed; `t0`: the job's start (wall), `attempts` in start order."""
    out: list[WindowEnergy] = []
    next_id = 0
    for key in attempts:
        xs = [x for x in loaded if x.attempt == key]
        by = {i: [(x, w) for w in x.summary.windows] for i, x in enumerate(xs)}

        def start(xw: tuple[Loaded, WindowEnergy]) -> float:
            return xw[0].start_wall - t0 + float(xw[1].start_s or 0.0)

        def end(xw: tuple[Loaded, WindowEnergy]) -> Optional[float]:
            e = xw[1].end_s
            return None if e is None else xw[0].start_wall - t0 + float(e)

        matches = align.match(by, kind=lambda xw: str(xw[1].kind),
                              name=lambda xw: str(xw[1].name), start=start)
        key_of = {}
        for i, seq in by.items():
            for k, keyed in align.keyed(seq, lambda xw: str(xw[1].kind),
                                        lambda xw: str(xw[1].name), start):
                key_of[(i, keyed[1].id)] = k
        id_of: dict[align.Key, int] = {}
        for m in matches:
            id_of[m.key] = next_id
            next_id += 1
        for m in matches:
            ref_x, ref_w = m.by[m.ref]
            a, b = start(m.by[m.ref]), end(m.by[m.ref])
            energy = emissions = cost = 0.0
            have_energy = have_emissions = have_cost = False
            bound: Optional[float] = 0.0     # None once a measured part has no bound
            by_c: dict[str, float] = {}
            methods: dict[str, set[str]] = {}
            ranks = 0
            read_from_curve: list[str] = []
            for i, x in enumerate(xs):
                xw = m.by.get(i)
                if xw is not None:
                    w = xw[1]
                    ranks += count_of(w.attrs.get("ranks")) or max(len(x.ranks), 1)
                    if w.energy_j is not None:
                        energy += w.energy_j
                        have_energy = True
                        u = w.uncertainty_j
                        measured = any(v != "modeled" for v in
                                       (w.method_by_component or {}).values())
                        if isinstance(u, (int, float)) and bound is not None:
                            bound += u
                        elif measured:
                            bound = None
                    if w.emissions_g is not None:
                        emissions += w.emissions_g
                        have_emissions = True
                    if w.cost is not None:
                        cost += w.cost
                        have_cost = True
                    for c, e in (w.by_component_j or {}).items():
                        by_c[c] = by_c.get(c, 0.0) + e
                    for c, meth in (w.method_by_component or {}).items():
                        methods.setdefault(c, set()).add(meth)
                elif b is not None and x.summary.devices:
                    # This member measured devices but did not record the window: read its
                    # curves at the reference edges.
                    got = _curve_window(x, t0 + a - x.start_wall, t0 + b - x.start_wall)
                    if got:
                        read_from_curve.append(x.member.path.name)
                        bound = None   # no readings of its own at these edges
                        for c, (e, meth) in got.items():
                            by_c[c] = by_c.get(c, 0.0) + e
                            methods.setdefault(c, set()).add(meth)
                            energy += e
                            have_energy = True
                        em = _scaled_emissions(x, sum(e for e, _ in got.values()))
                        if em is not None:
                            emissions += em
                            have_emissions = True
            attrs = dict(ref_w.attrs)
            spread = m.spread_s(start, end)
            for xw in m.by.values():   # a member's own ranks may already be spread (CLI)
                inner = xw[1].attrs.get("edge_spread_s")
                if isinstance(inner, dict):
                    spread = {k: max(spread[k], float(inner.get(k) or 0.0)) for k in spread}
            attrs.update(ranks=ranks, edge_spread_s=spread,
                         reference=f"{ref_x.node}/{ref_x.member.path.name}")
            if read_from_curve:
                attrs["read_at_reference_edges"] = read_from_curve
            if len(attempts) > 1:
                attrs["attempt_restart"] = key[1]
            parent = align.remap_parent(m, lambda xw: xw[1].parent, key_of, id_of)
            out.append(WindowEnergy(
                id=id_of[m.key], name=str(ref_w.name), kind=str(ref_w.kind),
                parent=parent, start_s=a, end_s=b,
                duration_s=(b - a) if b is not None else None,
                energy_j=energy if have_energy else None, by_component_j=by_c,
                emissions_g=emissions if have_emissions else None, attrs=attrs,
                method_by_component={c: _one(ms) for c, ms in methods.items()},
                cost=cost if have_cost else None,
                uncertainty_j=bound if have_energy and bound else None))
    return out


def _one(methods: set[str]) -> str:
    return next(iter(methods)) if len(methods) == 1 else "mixed: " + "+".join(sorted(methods))


def _curve_window(x: Loaded, a: float, b: float) -> dict[str, tuple[float, str]]:
    """Energy per component of one member between two of its run times; a device included in
    a whole-node meter is left out (its energy is in the meter's)."""
    out: dict[str, tuple[float, str]] = {}
    for d in x.summary.devices:
        if not counted(d.details):
            continue
        e0, e1 = x.energy_at(d.name, a), x.energy_at(d.name, b)
        if e0 is None or e1 is None:
            continue
        c = d.component
        prev = out.get(c, (0.0, d.method))
        out[c] = (prev[0] + (e1 - e0), prev[1])
    return out


def _scaled_emissions(x: Loaded, energy_j: float) -> Optional[float]:
    """Emissions (g) of part of a member's energy, at that member's effective intensity."""
    g = x.summary.gco2_per_kwh
    pue = float(x.summary.pue or 1.0)
    return None if g is None else energy_j * pue / J_PER_KWH * g
