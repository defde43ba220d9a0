"""Embodied (manufacturing) emissions of the hardware a run used: an estimate from published
figures, amortised over the hardware's lifetime and utilisation. Reported next to the measured
operational emissions, never added to `emissions_kg`.

    from tracker.embodied import estimate_embodied
    estimate_embodied({"NVIDIA H100 80GB HBM3": 8}, duration_s=3600, nodes=1)

The figures are in data/embodied.csv, built by scripts/build_embodied.py from the quoted
source table scripts/embodied_src/figures.csv (data/SOURCES.md lists each one). The CSV is read
on first use, so `import tracker` stays light.
"""

from __future__ import annotations

from .estimate import (
    DEFAULT_LIFETIME_YEARS,
    DEFAULT_UTILISATION,
    LIFETIME_SOURCE,
    EmbodiedEstimate,
    EmbodiedPart,
    estimate_embodied,
)
from .figures import EmbodiedFigure, find_figure, load_figures

__all__ = ["DEFAULT_LIFETIME_YEARS", "DEFAULT_UTILISATION", "LIFETIME_SOURCE",
           "EmbodiedEstimate", "EmbodiedFigure", "EmbodiedPart", "estimate_embodied",
           "find_figure", "load_figures"]
