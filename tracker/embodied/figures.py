"""The bundled embodied-emission figures (data/embodied.csv), each with its source."""

from __future__ import annotations

import csv
import functools
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Optional

DATA = Path(__file__).parent / "data" / "embodied.csv"


@dataclass(frozen=True)
class EmbodiedFigure:
    """One published figure. `per` is what value_kg is for: "device" / "server" / "socket" /
    "gb" (a manufacturing footprint, amortised by the caller) or "device_second" (already
    amortised by its publisher: kg CO2e per second of use)."""

    key: str
    component: str          # "gpu" | "server" | "cpu" | "ram"
    match: str              # a substring of the device model, "*" for any
    exclude: tuple[str, ...]
    per: str
    value_kg: float
    low_kg: float
    high_kg: float
    amortised: bool         # True: the publisher's lifetime and utilisation are in the figure
    units_per_server: Optional[float]
    source: str
    locator: str
    year: int
    licence: str
    scope: str
    derivation: str

    def matches(self, model: str) -> bool:
        m = model.lower()
        if self.match != "*" and self.match.lower() not in m:
            return False
        return not any(x.lower() in m for x in self.exclude)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["exclude"] = list(self.exclude)
        return d


@functools.lru_cache(maxsize=4)
def load_figures(path: Path = DATA) -> tuple[EmbodiedFigure, ...]:
    with path.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    return tuple(EmbodiedFigure(
        key=r["key"], component=r["component"], match=r["match"],
        exclude=tuple(x for x in (r.get("exclude") or "").split("|") if x),
        per=r["per"], value_kg=float(r["value_kg"]), low_kg=float(r["low_kg"]),
        high_kg=float(r["high_kg"]), amortised=r["amortised"] == "yes",
        units_per_server=float(r["units_per_server"]) if r.get("units_per_server") else None,
        source=r["source"], locator=r["locator"], year=int(r["year"]), licence=r["licence"],
        scope=r["scope"], derivation=r["derivation"]) for r in rows)


def find_figure(component: str, model: str = "*") -> Optional[EmbodiedFigure]:
    """The figure for a device model (GPU models are matched by name; "*" rows are generic)."""
    for fig in load_figures():
        if fig.component == component and fig.matches(model):
            return fig
    return None
