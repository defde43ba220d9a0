"""Unit constants, defined once: every module converts with these, never with a literal; and
energy in the unit that fits its magnitude, for every place a person reads one."""

from __future__ import annotations

import math

__all__ = ["J_PER_KWH", "J_PER_WH", "energy_text"]

J_PER_WH = 3600.0
J_PER_KWH = 3.6e6


def energy_text(j: float) -> str:
    """Joules in the unit that fits, 3 significant digits: "519 J", "40 Wh", "3.2 kWh",
    "1.5 MWh" (below 1 Wh in J: a short run reads "519 J", not "0.000144 kWh")."""
    if not math.isfinite(j):   # a damaged figure reads as missing, never "nan MWh"
        return "n/a"
    if abs(j) < J_PER_WH:
        return f"{_three(j)} J"
    if abs(j) < J_PER_KWH:
        return f"{_three(j / J_PER_WH)} Wh"
    if abs(j) < 1000 * J_PER_KWH:
        return f"{_three(j / J_PER_KWH)} kWh"
    return f"{_three(j / (1000 * J_PER_KWH))} MWh"


def _three(x: float) -> str:
    """3 significant digits, never an exponent: 3599 -> "3599", not "3.6e+03"."""
    text = f"{x:.3g}"
    return f"{x:.0f}" if "e" in text else text
