"""Unit constants, defined once: every module converts with these, never with a literal."""

from __future__ import annotations

__all__ = ["J_PER_KWH", "J_PER_WH"]

J_PER_WH = 3600.0
J_PER_KWH = 3.6e6
