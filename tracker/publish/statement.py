"""The statement for a paper or a report: a paragraph and a small table, in Markdown, LaTeX,
plain text or JSON, all from one PublishFacts. Every user-supplied string is escaped for LaTeX.
"""

from __future__ import annotations

import json
from typing import Optional

from .card import card_metadata
from .facts import PublishFacts

FORMATS = ("md", "latex", "text", "json")
_LATEX = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#",
          "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}",
          "^": r"\textasciicircum{}", "×": r"$\times$", "±": r"$\pm$", "–": "--",
          "≈": r"$\approx$", "²": r"\textsuperscript{2}", "₂": r"\textsubscript{2}"}


def latex_escape(s: str) -> str:
    """`s` safe in LaTeX text; characters beyond these pass through (utf8 inputenc)."""
    return "".join(_LATEX.get(c, c) for c in s)


def _num(x: Optional[float], digits: int = 4) -> str:
    if x is None:
        return "not measured"
    if x == 0:
        return "0"
    return f"{x:.{digits}g}"


def _pue(pue: float) -> str:
    """"1.0", "1.25": a PUE never reads as a count."""
    return f"{pue:.1f}" if round(pue, 1) == pue else f"{pue:g}"


def rows(f: PublishFacts) -> list[tuple[str, str]]:
    """(quantity, value with its method/source) — the table every format shows."""
    unc = (f" ± {_num(f.energy_uncertainty_kwh * f.pue)}"
           if f.energy_uncertainty_kwh is not None and f.energy_kwh is not None else "")
    out = [
        ("Hardware", f.hardware),
        ("Duration", f"{f.duration_h:.4g} h ({f.duration_s:.1f} s), {f.status}"),
        ("IT energy", f"{_num(f.energy_kwh)} kWh, measured ({f.method_text})"),
        ("PUE", f"{_pue(f.pue)} ({f.pue_source})"),
        ("Facility energy", f"{_num(f.facility_energy_kwh)}{unc} kWh (IT energy × PUE; bound "
                            "from the measurement)"),
        ("Grid factor", f"{_num(f.gco2_per_kwh)} gCO2e/kWh, {f.location}, "
                        f"{f.grid.get('year') or 'year n/a'}; {f.grid.get('definition') or ''}; "
                        f"source: {f.grid.get('source') or 'n/a'}"),
        ("Operational emissions", f"{_num(f.emissions_g)} gCO2e (range {_num(f.emissions_low_g)}"
                                  f"–{_num(f.emissions_high_g)} from the energy bound)"),
    ]
    emb = f.embodied
    if emb is not None:
        if emb.kg is not None:
            srcs = "; ".join(sorted({p.figure.source + (f" ({p.figure.year})"
                                                         if p.figure.year else "")
                                     for p in emb.parts if p.figure is not None}))
            text = (f"{_num(emb.kg * 1000)} gCO2e (range {_num((emb.low_kg or 0) * 1000)}–"
                    f"{_num((emb.high_kg or 0) * 1000)}), estimate, amortised over "
                    f"{emb.lifetime_years:g} years at {emb.utilisation:g} utilisation "
                    f"({emb.lifetime_source}); not included above; sources: {srcs}")
        else:
            text = "no published figure"
        if emb.unknown:
            text += "; no published figure for " + ", ".join(emb.unknown)
        out.append(("Embodied emissions", text))
    if f.water is not None:
        out.append(("Water", f"{_num(f.water.litres)} L, estimate ({f.water.scope}; WUE "
                             f"{f.water.wue_l_per_kwh:g} L/kWh, {f.water.wue_source})"))
    out.append(("Tool", f"{f.tool} {f.tool_version}"))
    out.append(("Not measured", "; ".join(f.not_measured + f.notes)))
    return out


def paragraph(f: PublishFacts) -> str:
    what = "job" if f.kind == "job" else "run"
    s = (f"The {f.training_type} {what} ran on {f.hardware} for {f.duration_h:.3g} h. "
         f"Its measured IT energy was {_num(f.energy_kwh)} kWh ({f.method_text}); with a PUE "
         f"of {_pue(f.pue)} ({f.pue_source}) the facility energy was {_num(f.facility_energy_kwh)} "
         f"kWh. At {_num(f.gco2_per_kwh)} gCO2e/kWh ({f.location}, "
         f"{f.grid.get('year') or 'year n/a'}, {f.grid.get('source') or 'n/a'}) this is "
         f"{_num(f.emissions_g)} gCO2e of operational emissions (range "
         f"{_num(f.emissions_low_g)}–{_num(f.emissions_high_g)} gCO2e).")
    if f.embodied is not None and f.embodied.kg is not None:
        s += (f" Embodied (manufacturing) emissions are estimated separately at "
              f"{_num(f.embodied.kg * 1000)} gCO2e and are not included in that figure.")
    if f.water is not None:
        s += f" On-site water use is estimated at {_num(f.water.litres)} L."
    s += f" Measured with {f.tool} {f.tool_version}."
    return s


def render(f: PublishFacts, fmt: str = "md") -> str:
    if fmt not in FORMATS:
        from ..errors import ConfigError
        raise ConfigError(f"format {fmt!r} is not one of {', '.join(FORMATS)}")
    table = rows(f)
    if fmt == "json":
        return json.dumps({"facts": f.to_dict(), "statement": paragraph(f),
                           "table": [{"quantity": k, "value": v} for k, v in table],
                           "card": card_metadata(f)}, indent=2, ensure_ascii=False, default=str)
    if fmt == "text":
        width = max(len(k) for k, _ in table)
        return paragraph(f) + "\n\n" + "\n".join(f"{k:<{width}}  {v}" for k, v in table) + "\n"
    if fmt == "md":
        def cell(s: str) -> str:
            return s.replace("|", "\\|").replace("\n", " ")
        return (paragraph(f) + "\n\n| Quantity | Value |\n|---|---|\n"
                + "\n".join(f"| {cell(k)} | {cell(v)} |" for k, v in table) + "\n")
    body = "\n".join(f"{latex_escape(k)} & {latex_escape(v)} \\\\" for k, v in table)
    return ("% energy-tracker statement; needs \\usepackage{tabularx}\n"
            f"{latex_escape(paragraph(f))}\n\n"
            "\\begin{table}[ht]\n\\centering\\small\n"
            "\\begin{tabularx}{\\linewidth}{@{}lX@{}}\n\\hline\n"
            "Quantity & Value \\\\\n\\hline\n"
            f"{body}\n\\hline\n\\end{{tabularx}}\n"
            f"\\caption{{Energy and emissions of {latex_escape(f.name)}}}\n\\end{{table}}\n")
