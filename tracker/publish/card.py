"""Hugging Face model-card metadata: `co2_eq_emissions` as the Hub documents it
(huggingface/hub-docs docs/hub/model-cards-co2.md: emissions in grams CO2e, source,
training_type, geographical_location, hardware_used), plus the energy, its method and bound,
PUE and grid factor as extra keys (huggingface_hub.ModelCardData keeps unknown keys), and
the updating of a card's YAML front matter that leaves every other byte as it was."""

from __future__ import annotations

import json
import math
import re
from typing import Any, Optional

from .facts import PublishFacts

KEY = "co2_eq_emissions"
_KEY_LINE = re.compile(rf"^{KEY}\s*:")


def _sig(x: Optional[float], digits: int = 6) -> Optional[float]:
    if x is None or not math.isfinite(x):
        return None
    return float(f"{x:.{digits}g}")


def card_metadata(facts: PublishFacts) -> dict[str, Any]:
    """{"co2_eq_emissions": {...}}: the Hub's five keys first, then ours."""
    co2: dict[str, Any] = {
        "emissions": _sig(facts.emissions_g),
        "source": facts.source_text,
        "training_type": facts.training_type,
        "geographical_location": facts.location,
        "hardware_used": facts.hardware,
        "energy_kwh": _sig(facts.facility_energy_kwh),
        "it_energy_kwh": _sig(facts.energy_kwh),
        "energy_method": facts.method_text,
        "energy_uncertainty_kwh": _sig(None if facts.energy_uncertainty_kwh is None
                                       else facts.energy_uncertainty_kwh * facts.pue),
        "emissions_range_g": [_sig(facts.emissions_low_g), _sig(facts.emissions_high_g)],
        "duration_h": _sig(facts.duration_h),
        "pue": facts.pue,
        "pue_source": facts.pue_source,
        "grid_gco2_per_kwh": _sig(facts.gco2_per_kwh),
        "grid_source": facts.grid.get("source"),
        "grid_year": facts.grid.get("year"),
        "grid_definition": facts.grid.get("definition"),
    }
    if facts.embodied is not None and facts.embodied.kg is not None:
        co2["embodied_emissions_g"] = _sig(facts.embodied.kg * 1000.0)
        co2["embodied_method"] = (f"estimate ({facts.embodied.lifetime_years:g}-year lifetime, "
                                  f"{facts.embodied.utilisation:g} utilisation; not included in "
                                  "emissions)")
    if facts.water is not None:
        co2["water_litres"] = _sig(facts.water.litres)
        co2["water_method"] = (f"estimate (on-site: facility energy x WUE "
                               f"{facts.water.wue_l_per_kwh:g} L/kWh, {facts.water.wue_source})")
    return {KEY: {k: v for k, v in co2.items() if v is not None and v != [None, None]}}


def metadata_yaml(metadata: dict[str, Any], newline: str = "\n") -> str:
    """YAML for the block, written by hand: JSON scalars are valid YAML, so no YAML library is
    needed and nothing can be emitted that the Hub's parser reads differently."""
    lines = []
    for key, value in metadata.items():
        lines.append(f"{key}:")
        for k, v in value.items():
            lines.append(f"  {k}: {_scalar(v)}")
    return newline.join(lines) + newline


def _scalar(v: Any) -> str:
    if isinstance(v, list):
        return "[" + ", ".join(_scalar(x) for x in v) + "]"
    if isinstance(v, bool) or v is None:
        return json.dumps(v)
    if isinstance(v, float):
        # YAML 1.1 (PyYAML, the Hub's parser) reads "1e-05" as a string: it needs the dot
        text = repr(v)
        mantissa, e, exp = text.partition("e")
        return text if not e or "." in mantissa else f"{mantissa}.0e{exp}"
    if isinstance(v, int):
        return str(v)
    return json.dumps(str(v), ensure_ascii=False)


def update_front_matter(text: str, metadata: dict[str, Any]) -> str:
    """`text` (a README.md) with `metadata`'s top-level keys replaced or added in its YAML front
    matter. Every other byte stays: the other front-matter lines and the whole body. A card
    without front matter gets one at the top."""
    newline = "\r\n" if "\r\n" in text.split("\n", 1)[0] + "\n" else "\n"
    block = metadata_yaml(metadata, newline)
    lines = text.splitlines(keepends=True)
    if not lines or lines[0].rstrip("\r\n") != "---":
        return f"---{newline}{block}---{newline}" + text
    end = next((i for i in range(1, len(lines)) if lines[i].rstrip("\r\n") == "---"), None)
    if end is None:   # an opening line only: not front matter; leave it and add ours above
        return f"---{newline}{block}---{newline}" + text
    keys = [re.compile(rf"^{re.escape(k)}\s*:") for k in metadata]
    kept: list[str] = []
    skipping = False
    for line in lines[1:end]:
        if skipping and (line[:1] in (" ", "\t") or not line.strip()):
            continue   # an indented line (or blank) of the block being replaced
        skipping = any(p.match(line) for p in keys)
        if not skipping:
            kept.append(line)
    if kept and not kept[-1].endswith(("\n", "\r")):
        kept[-1] += newline
    return "".join([lines[0], *kept, block, *lines[end:]])
