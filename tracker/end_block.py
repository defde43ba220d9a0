"""The short block a tracked run prints on stderr when it ends (`quiet=True` silences it).

    energy-tracker: run 'mnist' finished in 12.3 s: 519 J IT, PUE 1.2 -> 623 J facility
      emissions 66 mg CO2e at 381 gCO2e/kWh (DE: Germany; Ember via ..., 2024, CC BY 4.0)
      methods: gpu counter, cpu modeled, ram modeled
      run directory: /home/me/energy-runs/2025-06-01T10-00-00-mnist
      report: /home/me/energy-runs/2025-06-01T10-00-00-mnist/report.html

At most six lines, whatever the run: the whole story (every device, window, note) is
`summary.format()` and `energy-tracker report DIR`. Who prints: the process that started the
run; in a job, the process that ended the job, with the job's figures; a script joined to an
`energy-tracker run` prints nothing (the command prints the one block). Printing never raises.
"""

from __future__ import annotations

import sys
from typing import IO, TYPE_CHECKING, Any, Optional

from .carbon.citation import citation
from .units import energy_text

if TYPE_CHECKING:
    from .summary import Summary

__all__ = ["end_block", "print_end_block"]

# Every bundled source fits (at most 80 characters, a mix of IPCC and a grid 110:
# tests/test_presentation_sources.py); a live provider's own text may not, and is cut
# (summary.json has it whole).
MAX_SOURCE_CHARS = 120


def mass_text(kg: float) -> str:
    """kg CO2e in the unit that fits: mg, g, kg or t."""
    g = kg * 1000.0
    if abs(g) < 1.0:
        return f"{g * 1000:.3g} mg"
    if abs(g) < 1000.0:
        return f"{g:.3g} g"
    if abs(kg) < 1000.0:
        return f"{kg:.3g} kg"
    return f"{kg / 1000:.3g} t"


def end_block(summary: Summary) -> str:
    """The block's text for a run's (or a job's) summary."""
    job = summary.job
    if job:
        nodes = len(job.nodes or [])
        head = (f"job {summary.name!r} ({job.world_size} ranks on {nodes} "
                f"node{'s' if nodes != 1 else ''})")
    else:
        head = f"run {summary.name!r}"
    head = f"energy-tracker: {head} {summary.status} in {summary.duration_s:.1f} s: "
    if summary.energy_j is None:
        head += "nothing could be measured"
    else:
        it = energy_text(summary.energy_j)
        facility = summary.facility_energy_j
        head += (f"{it} IT" + (f", PUE {summary.pue:g} -> {energy_text(facility)} facility"
                               if facility is not None and summary.pue != 1 else ""))
    lines = [head]
    g = summary.grid
    if summary.emissions_kg is not None:
        source = str(g.source or "source n/a")
        if len(source) > MAX_SOURCE_CHARS:
            source = source[:MAX_SOURCE_CHARS - 1] + "…"
        cited = citation(source, g.year)
        where = ("energy-weighted over the nodes' grids" if g.region_code == "mixed"
                 else f"{g.region_code or 'world'}: {g.region_name or 'n/a'}")
        lines.append(f"  emissions {mass_text(summary.emissions_kg)} CO2e at "
                     f"{summary.gco2_per_kwh or 0:.0f} gCO2e/kWh ({where}; {cited})")
    methods = [f"{c.component} {c.method}" + ("" if c.status == "ok" else f" ({c.status})")
               for c in summary.components.values()]
    if methods:
        extra = f"; {len(summary.degraded)} degraded, see the summary" if summary.degraded \
            else ""
        lines.append(f"  methods: {', '.join(methods)}{extra}")
    if summary.run_dir:
        lines.append(f"  {'job' if job else 'run'} directory: {summary.run_dir}")
        lines.append(f"  report: {summary.report_html}" if summary.report_html else
                     f"  report: energy-tracker report {summary.run_dir}")
    return "\n".join(lines)


def print_end_block(summary: Summary, stream: Optional[IO[str]] = None) -> None:
    """Write the block to stderr (or `stream`); a closed or broken stream is ignored."""
    try:
        out: Any = stream if stream is not None else sys.stderr
        if out is None:   # pythonw, a daemon with stderr closed
            return
        out.write(end_block(summary) + "\n")
        out.flush()
    except Exception:   # the run's files are written; a message that cannot be shown is lost
        pass
