"""Table cells of the report (render.py) and of the index and comparison (index_page.py): a
value as the text shown for it, escaped for HTML, "n/a" where it is missing or no number.

    esc('<b>')                    # '&lt;b&gt;'
    fixed(0.1234567, ".4g")       # '0.1235'; fixed(None, ".4g") -> 'n/a'
    duration(59.25)               # '59.25 s'; duration(59.25, places=1) -> '59.2 s'
    duration(5000.5)              # '1:23:20'
    methods({"gpu": "sampled", "cpu": "rapl"})   # 'gpu=sampled, cpu=rapl'
    f"<td{numeric(True)}>"        # '<td class="n">' (right-aligned by report.css)
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from typing import Any

from ..rundir.untrusted import number

NA = "n/a"


def esc(x: Any) -> str:
    """`x` as HTML text (None: empty)."""
    return html.escape("" if x is None else str(x))


def fixed(x: Any, spec: str) -> str:
    """A number formatted by `spec`, else "n/a"."""
    return format(x, spec) if number(x) else NA


def duration(x: Any, places: int = 2) -> str:
    """Seconds: "59.25 s" below two minutes (`places` decimals), else "h:mm:ss"."""
    if not number(x):
        return NA
    if x < 120:
        return f"{x:.{places}f} s"
    h, rest = divmod(round(x), 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}"


def methods(by_component: Mapping[str, Any]) -> str:
    """How each component was measured: "gpu=sampled, cpu=rapl"."""
    return ", ".join(f"{c}={m}" for c, m in by_component.items())


def numeric(is_number: bool) -> str:
    """The class attribute of a number's cell (` class="n"`), or nothing."""
    return ' class="n"' if is_number else ""


__all__ = ["NA", "duration", "esc", "fixed", "methods", "numeric"]
