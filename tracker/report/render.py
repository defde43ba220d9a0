"""The renderer: the report's Data (model.py) as one self-contained HTML page.

The page is page/report.html.tmpl filled by placeholder substitution: page/report.css and
page/common.js + page/charts.js inlined (one script), the sections as HTML (every user string
through html.escape), and each chart's data as JSON in a <script type="application/json">,
which charts.js draws as SVG (user strings set as text, never parsed as markup).
No library, no network at view time.

Power series ship as the scan's buckets (per bucket the time and value of its lowest and
highest reading); charts.js re-buckets them to the screen on every zoom, keeping min and max,
so a one-sample peak is drawn at any zoom.
"""

from __future__ import annotations

import json
import re
import shlex
import time
from collections.abc import Sequence
from functools import cache
from importlib import resources
from typing import Any, Optional

from ..rundir.names import REPORT_TIMELINE, SUMMARY
from ..units import J_PER_KWH, J_PER_WH, energy_text
from .cells import duration as _dur
from .cells import esc as _e
from .cells import fixed as _f
from .cells import methods, numeric
from .model import MAX_BUCKETS, Data, Series
from .model import num as _num
from .scan import sum_series

MAX_SHADED = 400                 # window rectangles drawn (the longest); more slows the browser
MAX_TABLE_ROWS = 200
WHAT_IF = ["FR", "DE", "US", "PL", "SE", "IN"]
_KIND_COLOURS = {"epoch": "#4C78A8", "eval": "#F58518", "checkpoint": "#B279A2",
                 "phase": "#54A24B"}
_OTHER_COLOUR = "#72B7B2"
_SLOT = re.compile(r"\{\{(\w+)\}\}")


@cache
def _asset(name: str) -> str:
    """A file of page/ (package data), read once per process."""
    page = resources.files(__package__).joinpath("page")
    return page.joinpath(name).read_text(encoding="utf-8")


def fill(template: str, slots: dict[str, str]) -> str:
    """`{{name}}` replaced by slots[name], in one pass: text put in is never scanned again, so
    a name holding `{{body}}` stays text."""
    return _SLOT.sub(lambda m: slots[m.group(1)], template)


def script_json(value: Any) -> str:
    """JSON safe inside <script>: `<`, `>` and `&` as \\u escapes (only strings can hold them),
    so no name in the data can close the script or open a comment."""
    return (json.dumps(value, separators=(",", ":"), allow_nan=False)
            .replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026"))


class _Charts:
    """A chart is an empty div and its spec as JSON, drawn by charts.js."""

    def div(self, name: str, spec: dict[str, Any]) -> str:
        return (f'<div class="chart" id="fig-{name}"></div><script type="application/json" '
                f'data-chart="fig-{name}">{script_json(spec)}</script>')


def render_page(data: Data) -> str:
    """The whole HTML document."""
    charts = _Charts()
    s = data.summary
    sections = [
        _overview(data),
        _timeline(data, charts),
        _breakdown(s, charts),
        _devices(data, charts),
        _idle(s),
        _advice(s),
        _carbon(data, charts),
        _job(s),
        _windows_table(s),
        _publish(data),
        _provenance(data),
    ]
    title = (f"energy-tracker: {'job' if data.kind == 'job' else 'run'} "
             f"{s.get('name') or ''}")
    body = "\n".join(x for x in sections if x)
    shown = {x[len('<section id="'):].split('"', 1)[0] for x in sections if x}
    nav = "".join(f'<a href="#{k}">{v}</a>' for k, v in _NAV if k in shown)
    footer = (f"Generated {_e(_utc(time.time()))} by energy-tracker {_e(_version())} from "
              f"{_e(str(data.dir))}. Self-contained: no network needed.")
    return fill(_asset("report.html.tmpl"), {
        "title": _e(title), "css": _asset("report.css"), "nav": nav, "body": body,
        "footer": footer, "script": _asset("common.js") + _asset("charts.js")})


_NAV = [("overview", "Overview"), ("timeline", "Timeline"), ("breakdown", "Breakdown"),
        ("devices", "Devices"), ("idle", "Idle GPUs"), ("advice", "Advice"),
        ("carbon", "Carbon"), ("job", "Job"), ("windows", "Windows"), ("publish", "Publish"),
        ("provenance", "Provenance")]


# -- sections -------------------------------------------------------------------------------------
def _overview(data: Data) -> str:
    s = data.summary
    cards = [("IT energy", _kwh(s.get("energy_j")), _j(s.get("energy_j"))),
             ("facility energy", _kwh(s.get("facility_energy_j")),
              f"PUE {_g(s.get('pue'))} ({s.get('pue_source') or 'n/a'})"),
             ("emissions", _grams(s.get("emissions_kg")),
              f"at {_g(s.get('gco2_per_kwh'), '.1f')} gCO2e/kWh"),
             ("duration", _dur(s.get("duration_s")), f"status {s.get('status')}")]
    comps = s.get("components") or {}
    inside = _parts_components(s)   # parts of a whole-node meter: in its mean already
    mean = sum((c.get("mean_power_w") or 0.0) for k, c in comps.items() if k not in inside)
    if comps:
        cards.append(("mean power", f"{mean:,.1f} W",
                      ", ".join(f"{k} {c.get('method')}" for k, c in comps.items())))
    cost = s.get("cost")
    if isinstance(cost, dict):
        amount = cost.get("cost", cost.get("amount"))
        cards.append(("cost", f"{_g(amount, '.4g')} {cost.get('currency') or ''}",
                      f"at {_g(cost.get('price_per_kwh'))} {cost.get('currency') or ''}/kWh"
                      + (f" ({cost['basis']})" if cost.get("basis") else "")))
    st = s.get("steps") or {}
    if st.get("count"):
        per = [f"{st[k]:.4g} J/{k[6:]}" for k in ("j_per_sample", "j_per_token")
               if _num(st.get(k))]
        cards.append(("steps", f"{st['count']:,}", ", ".join(per) or "energy in groups"))
    html_cards = "".join(f'<div class="card"><span>{_e(a)}</span><b>{_e(b)}</b>'
                         f'<span>{_e(c)}</span></div>' for a, b, c in cards)
    what = (f"job {(s.get('job') or {}).get('job_id')!s}" if data.kind == "job"
            else f"run {s.get('run_id')}")
    warn = ""
    if data.rebuilt:
        warn = ('<p class="bad">summary.json was missing or still said "running": this page '
                "uses a summary rebuilt from the logs (not written back).</p>")
    return (f'<section id="overview"><h2>Overview</h2><p class="muted">{_e(what)}, started '
            f"{_e(s.get('started_utc'))}, ended {_e(s.get('ended_utc') or 'n/a')}</p>{warn}"
            f'<div class="cards">{html_cards}</div></section>')


def _axis(duration: float) -> tuple[float, str]:
    """Time axis unit: seconds for runs up to 2 h, else hours."""
    return (1.0, "s") if duration <= 7200 else (1 / 3600.0, "h")


def _eunit(total_j: float) -> tuple[float, str]:
    if total_j < J_PER_WH:
        return 1.0, "J"
    if total_j < J_PER_KWH:
        return 1 / J_PER_WH, "Wh"
    return 1 / J_PER_KWH, "kWh"


def _columns(ser: Series, k: float, band: bool) -> dict[str, list[Any]]:
    """A power series as the page ships it: per bucket with a reading, its index and the
    time and value of its lowest and highest reading (band: the values only)."""
    cols: dict[str, list[Any]] = {"b": [], "lo": [], "hi": []} if band else \
        {"b": [], "tl": [], "lo": [], "th": [], "hi": []}
    for b in sorted(ser.power):
        t_lo, lo, t_hi, hi = ser.power[b]
        cols["b"].append(b)
        cols["lo"].append(round(lo, 2))
        cols["hi"].append(round(hi, 2))
        if not band:
            cols["tl"].append(_r(t_lo * k))
            cols["th"].append(_r(t_hi * k))
    return cols


def _r(x: float) -> float:
    return float(f"{x:.7g}")


def _timeline(data: Data, charts: _Charts) -> str:
    s = data.summary
    grid = data.grid
    duration = max(float(s.get("duration_s") or 0.0), grid.t0 + grid.width * grid.n)
    k, unit = _axis(duration)
    groups = [g for g in ((s.get("steps") or {}).get("groups") or [])
              if _num(g.get("start_s")) and _num(g.get("end_s"))]
    periods = data.intensity
    rows = ["power", "energy"] + (["steps"] if groups else []) + (["intensity"] if periods else [])
    titles = {"power": ("Power per node (W): sum of its processes' devices; band = bucket min "
                        "to max" if data.kind == "job" else "Power per device (W)"),
              "energy": "Cumulative energy", "steps": "Step energy (J/step, per step group)",
              "intensity": "Grid carbon intensity (gCO2e/kWh, live)"}
    heights = {"power": 260, "energy": 150, "steps": 110, "intensity": 110}
    panels: dict[str, dict[str, Any]] = {
        r: {"title": titles[r], "height": heights[r], "series": [], "zero": r != "energy"}
        for r in rows}
    power = panels["power"]
    power["y_label"] = "W"
    peak = 0.0
    if data.kind == "job":
        for (node, ser), colour in zip(data.nodes.items(), _palette(len(data.nodes))):
            peak = max([peak] + [v[3] for v in ser.power.values()])
            power["series"].append({"name": node, "kind": "band", "color": colour, "unit": "W",
                                    "d": _columns(ser, k, band=True)})
    else:
        for (name, ser), colour in zip(data.devices.items(), _palette(len(data.devices))):
            peak = max([peak] + [v[3] for v in ser.power.values()])
            how = " (dE/dt of its counter)" if ser.derived else ""
            power["series"].append({"name": name + how, "kind": "mm", "color": colour,
                                    "unit": "W", "d": _columns(ser, k, band=False)})
    # cumulative energy: total and per component (run) or per node (job)
    parts = data.nodes if data.kind == "job" else _by_component(data)
    inside = set() if data.kind == "job" else _parts_components(data.summary)
    counted_parts = [v for key, v in parts.items() if key not in inside]
    total = sum_series(counted_parts, grid) if counted_parts else Series()
    e_total = max([v[1] for v in total.energy.values()] + [float(s.get("energy_j") or 0.0)])
    ek, eunit = _eunit(e_total)
    panels["energy"]["y_label"] = eunit
    curves = [("total", total)] + (list(parts.items()) if 1 < len(parts) <= 16 else [])
    for (name, ser), colour in zip(curves, ["#1d2733", *_palette(len(curves) - 1)]):
        pts = sorted(ser.energy.items())
        panels["energy"]["series"].append({
            "name": f"energy: {name}", "kind": "line", "color": colour, "unit": eunit,
            "width": 2 if name == "total" else 1, "dash": name != "total",
            "d": {"x": [_r(min(v[0], duration) * k) for _, v in pts],
                  "y": [float(f"{v[1] * ek:.6g}") for _, v in pts]}})
    if groups:
        xs: list[Optional[float]] = []
        ys: list[Optional[float]] = []
        text: list[Optional[str]] = []
        for g in groups:
            per = ", ".join(f"{g[key]:.4g} J/{key[6:]}" for key in ("j_per_sample", "j_per_token")
                            if _num(g.get(key)))
            label = (f"steps {g.get('first_step')}-{g.get('last_step')}: "
                     f"{g.get('j_per_step', 0):.4g} J/step" + (f", {per}" if per else ""))
            xs += [_r(g["start_s"] * k), _r(g["end_s"] * k), None]
            ys += [g.get("j_per_step"), g.get("j_per_step"), None]
            text += [label, label, None]
        panels["steps"].update(y_label="J/step", series=[{
            "name": "J/step", "kind": "line", "color": "#E45756", "width": 2, "unit": "J/step",
            "d": {"x": xs, "y": ys, "text": text}}])
    if periods:
        xs, ys, text = [], [], []
        for i, p in enumerate(periods):
            a = float(p["start_wall"]) - data.start_wall
            nxt = periods[i + 1]["start_wall"] if i + 1 < len(periods) else None
            end = p.get("end_wall") or nxt
            b = (float(end) - data.start_wall) if end is not None else duration
            label = (f"{p.get('provider')} {p.get('zone')}: {p['gco2_per_kwh']:.1f} gCO2e/kWh"
                     + (f" (fallback: {p.get('note')})" if p.get("fallback") else ""))
            xs += [_r(max(a, 0.0) * k), _r(min(max(b, a), duration) * k), None]
            ys += [p["gco2_per_kwh"], p["gco2_per_kwh"], None]
            text += [label, label, None]
        panels["intensity"].update(y_label="gCO2e/kWh", series=[{
            "name": "grid intensity", "kind": "line", "color": "#4C9F38", "width": 2,
            "unit": "gCO2e/kWh", "d": {"x": xs, "y": ys, "text": text}}])
    note = _window_shades(s, k, power, peak)
    spec = {"type": "time", "x_label": f"time since start ({unit})",
            "x_range": [0.0, _r(duration * k)],
            # [t0, width, hold, k]: bucket b's middle is (t0 + (b + .5) width) k in axis units
            "grid": [grid.t0, grid.width, grid.hold, k],
            "panels": [panels[r] for r in rows]}
    n_series = len(data.devices) or len(data.nodes)
    caption = (f"{n_series} series, {grid.n} buckets of {grid.width:.3g} s: each bucket "
               "keeps the lowest and highest reading (so peaks survive any zoom; drag to zoom, "
               f"double-click to reset, click a legend entry to hide it). {note}")
    return (f'<section id="timeline"><h2>Timeline</h2><p class="muted">{_e(caption)}</p>'
            f"{charts.div('timeline', spec)}</section>")


def _parts_components(summary: dict[str, Any]) -> set[str]:
    """Components all of whose devices are included in a whole-node meter."""
    from ..sensors.base import counted
    devs = [d for d in summary.get("devices") or () if isinstance(d, dict)]
    comps = {str(d.get("component")) for d in devs}
    return {c for c in comps if all(not counted(d.get("details")) for d in devs
                                    if str(d.get("component")) == c)}


def _by_component(data: Data) -> dict[str, Series]:
    groups: dict[str, list[Series]] = {}
    for name, ser in data.devices.items():
        groups.setdefault(data.components.get(name, name), []).append(ser)
    return {c: (v[0] if len(v) == 1 else sum_series(v, data.grid)) for c, v in groups.items()}


def _window_shades(s: dict[str, Any], k: float, power: dict[str, Any], peak: float) -> str:
    """Shaded spans for windows (the longest MAX_SHADED) and hover markers for them, added to
    the power panel; returns the caption's note."""
    wins = [w for w in s.get("windows") or () if w.get("kind") != "step"
            and _num(w.get("start_s"))]
    if not wins:
        return ""
    end = float(s.get("duration_s") or 0.0)

    def stop(w: dict[str, Any]) -> float:
        return float(w["end_s"]) if _num(w.get("end_s")) else end

    shaded = sorted(wins, key=lambda w: stop(w) - w["start_s"], reverse=True)[:MAX_SHADED]
    shaded.sort(key=lambda w: w["start_s"])
    shades: list[list[Any]] = []
    epoch_i = 0
    for w in shaded:
        kind = str(w.get("kind") or "phase")
        opacity = 0.14
        if kind == "epoch":   # epochs tile the run: alternate so their edges show
            opacity = 0.07 if epoch_i % 2 else 0.15
            epoch_i += 1
        shades.append([_r(w["start_s"] * k), _r(stop(w) * k),
                       _KIND_COLOURS.get(kind, _OTHER_COLOUR), opacity, kind])
    xs, ys, text = [], [], []
    for w in wins[:MAX_BUCKETS]:
        a, b = float(w["start_s"]), stop(w)
        e = w.get("energy_j")
        xs.append(_r((a + b) / 2 * k))
        ys.append(round(peak * 1.04, 2) if peak > 0 else 0)
        text.append(f"{w.get('name')} [{w.get('kind')}]: "
                    + (f"{e:,.1f} J" if _num(e) else "n/a") + f" over {b - a:.3g} s")
    power["shades"] = shades
    power["series"].append({"name": "windows", "kind": "markers", "color": "#5b6b7b",
                            "d": {"x": xs, "y": ys, "text": text}})
    return (f"{len(wins)} windows; the longest {MAX_SHADED} are shaded."
            if len(wins) > MAX_SHADED else f"{len(wins)} windows shaded.")


def _breakdown(s: dict[str, Any], charts: _Charts) -> str:
    bd = s.get("breakdown")
    if not isinstance(bd, dict) or not bd:
        return ""
    rows = sorted(((k, v) for k, v in bd.items() if isinstance(v, dict)),
                  key=lambda kv: -(kv[1].get("energy_j") or 0.0))
    spec = {"type": "bar", "orient": "h", "x_label": "J",
            "labels": [str(k) for k, _ in rows],
            "values": [float(v.get("energy_j") or 0.0) for _, v in rows],
            "text": [_pct(v.get("share")) for _, v in rows],
            "hover": [f"{k}: {_f(v.get('energy_j'), ',.1f')} J ({_pct(v.get('share'))}) over "
                      f"{_dur(v.get('seconds'))}\n{v.get('method') or ''}" for k, v in rows]}
    table = _table(["part", "energy (J)", "share", "time", "method"],
                   [[k, _f(v.get("energy_j"), ",.1f"), _pct(v.get("share")),
                     _dur(v.get("seconds")), v.get("method")] for k, v in rows], num=(1, 2, 3))
    return (f'<section id="breakdown"><h2>Where the energy went</h2>'
            f"{charts.div('breakdown', spec)}{table}</section>")


def _devices(data: Data, charts: _Charts) -> str:
    devs = [d for d in data.summary.get("devices") or () if isinstance(d, dict)]
    if not devs:
        return ""
    label = [(f"{d['node']}/" if d.get("node") else "") + str(d.get("name")) for d in devs]
    body = ""
    if len(devs) <= 64:
        energy = [float(d.get("energy_j") or 0.0) if _num(d.get("energy_j")) else 0.0
                  for d in devs]
        body = charts.div("devices", {
            "type": "bar", "orient": "h", "x_label": "J", "labels": label, "values": energy,
            "colors": [_KIND_COLOURS["epoch"] if d.get("component") == "gpu" else "#9D755D"
                       for d in devs],
            "hover": [f"{lab}: {e:,.1f} J [{d.get('method')}], {d.get('status')}"
                      for lab, e, d in zip(label, energy, devs)]})
    table = _table(["device", "component", "energy (J)", "mean W", "peak W", "method",
                    "status", "description"],
                   [[lab, d.get("component"), _f(d.get("energy_j"), ",.1f"),
                     _f(d.get("mean_power_w"), ".1f"), _f(d.get("peak_power_w"), ".1f"),
                     d.get("method"), d.get("status"), d.get("description")]
                    for lab, d in zip(label, devs)][:MAX_TABLE_ROWS], num=(2, 3, 4))
    return f'<section id="devices"><h2>Energy per device</h2>{body}{table}</section>'


def _idle(s: dict[str, Any]) -> str:
    idle = s.get("idle")
    if not isinstance(idle, dict) or not idle:
        return ""
    keys: list[str] = []
    for v in idle.values():
        for key in v if isinstance(v, dict) else ():
            if key not in keys:
                keys.append(key)
    rows = [[name] + [_cell(key, (v or {}).get(key)) for key in keys] for name, v in idle.items()]
    num = tuple(i + 1 for i, key in enumerate(keys)
                if any(_num((v or {}).get(key)) for v in idle.values()))
    return ('<section id="idle"><h2>Idle GPU energy</h2><p class="muted">Energy drawn while the '
            "GPU ran no kernel (from its utilisation readings; an upper bound).</p>"
            f"{_table(['device', *keys], rows, num=num)}</section>")


def _advice(s: dict[str, Any]) -> str:
    advice = s.get("advice")
    if not advice:
        return ""
    items = []
    for a in advice:
        if isinstance(a, dict):
            nums = a.get("numbers") or {}
            extra = ", ".join(f"{k} = {_cell(k, v)}" for k, v in nums.items()) \
                if isinstance(nums, dict) else str(nums)
            items.append(f"<li>{_e(a.get('finding'))}"
                         + (f'<div class="muted">{_e(extra)}</div>' if extra else "") + "</li>")
        else:
            items.append(f"<li>{_e(a)}</li>")
    return f'<section id="advice"><h2>Advice</h2><ul>{"".join(items)}</ul></section>'


def _carbon(data: Data, charts: _Charts) -> str:
    s = data.summary
    kwh = s.get("facility_energy_kwh")
    if kwh is None and _num(s.get("facility_energy_j")):
        kwh = s["facility_energy_j"] / J_PER_KWH
    parts = ['<section id="carbon"><h2>Carbon</h2>']
    g = s.get("grid") or {}
    if s.get("emissions_kg") is not None:
        parts.append(f"<p>{_grams(s.get('emissions_kg'))} CO2e: facility energy "
                     f"{_kwh(s.get('facility_energy_j'))} × {_g(s.get('gco2_per_kwh'), '.1f')} "
                     f"gCO2e/kWh ({_e(g.get('region_code'))}: {_e(g.get('region_name'))}, "
                     f"{_e(g.get('year') or 'year n/a')}).</p>")
    if _num(kwh):
        from ..carbon import cleanest_and_dirtiest, compare_regions
        kwh = float(kwh)  # type: ignore[arg-type]
        try:
            rows = compare_regions(kwh, WHAT_IF)
            # the countries the advice picks from too (carbon/candidates.py)
            best, worst = cleanest_and_dirtiest()
            bounds = [(compare_regions(kwh, [r.code])[0], label)
                      for r, label in ((best, "cleanest country"), (worst, "dirtiest country"))]
        except Exception as e:   # bundled tables unreadable: say so, keep the page
            parts.append(f'<p class="bad">what-if regions unavailable: {_e(e)}</p>')
            rows, bounds = [], []
        allrows = [(r, "") for r in rows] + bounds
        if allrows:
            parts.append(f"<h3>What if this energy ({energy_text(kwh * J_PER_KWH)}) ran "
                         "elsewhere (annual factors; cleanest and dirtiest among countries "
                         "with a cloud region)</h3>")
            labels = [f"{r['code']}{' (' + lab + ')' if lab else ''}" for r, lab in allrows]
            grams = [float(r["emissions_g"]) for r, _ in allrows]
            spec: dict[str, Any] = {
                "type": "bar", "orient": "v", "y_label": "g CO2e", "labels": labels,
                "values": grams, "colors": ["#54A24B"] * len(labels),
                "hover": [f"{a}: {b:.4g} g CO2e" for a, b in zip(labels, grams)]}
            if _num(s.get("emissions_kg")):
                spec.update(hline=s["emissions_kg"] * 1000, hline_label="this run")
            parts.append(charts.div("whatif", spec))
            parts.append(_table(
                ["region", "name", "gCO2e/kWh", "g CO2e", "year", "source", "definition"],
                [[r["code"] + (f" ({lab})" if lab else ""), r.get("name"),
                  _f(r.get("gco2_per_kwh"), ".1f"), _f(r.get("emissions_g"), ".4g"),
                  r.get("year") or "n/a", r.get("source"), r.get("definition")]
                 for r, lab in allrows], num=(2, 3)))
    if data.intensity:
        parts.append("<h3>Live intensity periods</h3>")
        prows = [[_utc(p["start_wall"]), _utc(p.get("end_wall")), _f(p.get("gco2_per_kwh"), ".1f"),
                  p.get("provider"), p.get("zone"),
                  ("fallback: " if p.get("fallback") else "") + str(p.get("note") or "")]
                 for p in data.intensity]
        parts.append(_table(["from (UTC)", "to (UTC)", "gCO2e/kWh", "provider", "zone", "note"],
                            prows[:MAX_TABLE_ROWS], num=(2,)))
    parts.append("</section>")
    return "".join(parts)


def _job(s: dict[str, Any]) -> str:
    job = s.get("job")
    if not isinstance(job, dict):
        return ""
    out = [f'<section id="job"><h2>Job</h2><p>job id {_e(job.get("job_id"))} '
           f"({_e(job.get('source'))}, launcher {_e(job.get('launcher'))}): "
           f"{_e(job.get('world_size'))} processes on {len(job.get('nodes') or [])} node(s)</p>"]
    nodes = job.get("nodes") or []
    out.append("<h3>Nodes</h3>" + _table(
        ["node", "ranks", "devices", "energy (J)", "g CO2e", "grid", "members"],
        [[n.get("node"), _ranks(n.get("ranks")), len(n.get("devices") or []),
          _f(n.get("energy_j"), ",.1f"), _f((n.get("emissions_kg") or 0) * 1000, ".4g"),
          f"{n.get('grid_region')} ({_g(n.get('gco2_per_kwh'), '.1f')})",
          ", ".join(f"{m.get('run')} ({m.get('status')}{', rebuilt' if m.get('rebuilt') else ''})"
                    for m in n.get("members") or [])] for n in nodes][:MAX_TABLE_ROWS],
        num=(2, 3, 4)))
    attempts = job.get("attempts") or []
    if attempts:
        out.append("<h3>Attempts</h3>" + _table(
            ["attempt", "launch", "restart", "ranks", "started", "ended", "status", "energy (J)"],
            [[a.get("attempt"), a.get("launch"), a.get("restart"), _ranks(a.get("ranks")),
              a.get("started_utc"), a.get("ended_utc"), a.get("status"),
              _f(a.get("energy_j"), ",.1f")] for a in attempts], num=(7,)))
    spread = job.get("gpu_energy_spread") or {}
    if spread:
        out.append("<h3>GPU energy spread per node</h3><p class=\"muted\">A GPU far below its "
                   "peers is a straggler or idle.</p>" + _table(
                       ["node", "GPUs", "min (J)", "median (J)", "max (J)", "max-min"],
                       [[n, v.get("gpus"), _f(v.get("min_j"), ",.1f"),
                         _f(v.get("median_j"), ",.1f"), _f(v.get("max_j"), ",.1f"),
                         _pct((v["max_j"] - v["min_j"]) / v["max_j"]
                              if _num(v.get("max_j")) and v["max_j"] and _num(v.get("min_j"))
                              else None)]
                        for n, v in spread.items()][:MAX_TABLE_ROWS], num=(1, 2, 3, 4, 5)))
    missing = job.get("missing") or []
    out.append("<h3>Missing</h3>" + (
        _table(["what", "reason"], [[m.get("what"), m.get("reason")] for m in missing])
        if missing else "<p>nothing: every rank of every attempt left its files.</p>"))
    out.append("</section>")
    return "".join(out)


def _windows_table(s: dict[str, Any]) -> str:
    wins = [w for w in s.get("windows") or () if isinstance(w, dict)]
    if not wins:
        return ""
    rows = [[w.get("name"), w.get("kind"), _f(w.get("start_s"), ".3f"), _f(w.get("end_s"), ".3f"),
             _f(w.get("energy_j"), ",.1f"), _f(w.get("emissions_g"), ".4g"),
             methods(w.get("method_by_component") or {})]
            for w in wins[:MAX_TABLE_ROWS]]
    more = (f'<p class="muted">{len(wins) - MAX_TABLE_ROWS} more in summary.json</p>'
            if len(wins) > MAX_TABLE_ROWS else "")
    return ('<section id="windows"><h2>Windows</h2>'
            + _table(["name", "kind", "start (s)", "end (s)", "energy (J)", "g CO2e", "methods"],
                     rows, num=(2, 3, 4, 5)) + more + "</section>")


def _publish(data: Data) -> str:
    """The model card's co2_eq_emissions block and the LaTeX statement, as
    `energy-tracker card` writes them (tracker/publish), each with a copy button (charts.js:
    the clipboard, else the text selected for Ctrl+C)."""
    s = data.summary
    if not _num(s.get("energy_j")):
        return ""
    try:
        from ..publish.card import card_metadata, metadata_yaml
        from ..publish.facts import TOOL, facts_from_summary
        from ..publish.statement import render as statement
        facts = facts_from_summary(s, data.manifest)
        where = shlex.quote(str(data.dir))
        blocks = [("pub-card", "Model card metadata (Hugging Face README.md front matter)",
                   metadata_yaml(card_metadata(facts)),
                   f"{TOOL} card {where} --update README.md"),
                  ("pub-latex", "Statement for a paper (LaTeX; needs \\usepackage{tabularx})",
                   statement(facts, "latex"), f"{TOOL} card {where} --format latex")]
    except Exception as e:   # the publish facts cannot be made from this summary: say why
        return (f'<section id="publish"><h2>Publish</h2><p class="bad">not available: '
                f"{_e(type(e).__name__)}: {_e(e)}</p></section>")
    out = ['<section id="publish"><h2>Publish</h2><p class="muted">The numbers above, ready '
           "to paste: embodied emissions and water (when known) are labelled estimates and "
           "are not part of the operational emissions.</p>"]
    for key, title, text, command in blocks:
        out.append(f'<h3>{_e(title)}</h3><div class="et-pub"><button type="button" '
                   f'class="et-copy" data-copy="{key}">Copy</button><span class="et-copied" '
                   f'aria-live="polite"></span><span class="muted">or: <code>{_e(command)}'
                   f'</code></span></div><pre id="{key}">{_e(text)}</pre>')
    out.append("</section>")
    return "".join(out)


def _provenance(data: Data) -> str:
    s, m = data.summary, data.manifest
    out = ['<section id="provenance"><h2>Provenance</h2>']
    out.append("<h3>How each device was measured</h3>" + _table(
        ["device", "component", "method", "description"],
        [[(f"{d['node']}/" if d.get("node") else "") + str(d.get("name")), d.get("component"),
          d.get("method"), d.get("description")] for d in s.get("devices") or ()][:MAX_TABLE_ROWS]))
    grids = [e.get("grid") or {} for e in (s.get("carbon") or {}).get("grids") or ()] \
        or [s.get("grid") or {}]
    out.append("<h3>Grid factor</h3>" + _table(
        ["region", "gCO2e/kWh", "source", "year", "licence", "definition"],
        [[f"{g.get('region_code')} ({g.get('region_name')})", _g(g.get("gco2_per_kwh"), ".2f"),
          g.get("source"), g.get("year") or "n/a", g.get("licence") or "n/a",
          g.get("definition") or "n/a"] for g in grids], num=(1,)))
    versions = m.get("versions") or {}
    out.append("<h3>Versions</h3>" + (_table(["package", "version"], list(versions.items()))
                                      if versions else "<p>not recorded</p>"))
    facts = [["summary", "rebuilt from the logs for this page" if data.rebuilt else
              str(data.dir / SUMMARY)],
             ["timeline", _timeline_source(data)],
             ["damaged lines skipped", f"{data.bad:,}"],
             ["sampling", json.dumps(s.get("sampling") or {})]]
    out.append("<h3>This report</h3>" + _table(["", ""], facts))
    if data.bad:
        out.append(f'<p class="bad">{data.bad} damaged line(s) in samples.jsonl were skipped.</p>')
    for title, items in (("Notes", s.get("notes")), ("Degraded", s.get("degraded"))):
        if items:
            out.append(f"<h3>{title}</h3><ul>" + "".join(f"<li>{_e(n)}</li>" for n in items)
                       + "</ul>")
    if m.get("config"):
        out.append("<h3>Configuration (run.json)</h3><pre>"
                   + _e(json.dumps(m["config"], indent=2, default=str)) + "</pre>")
    host = m.get("host") or {}
    if host:
        out.append("<h3>Host</h3>" + _table(["", ""], [[k, v] for k, v in host.items()
                                                      if k not in ("argv",)]))
    out.append("</section>")
    return "".join(out)


def _timeline_source(data: Data) -> str:
    """Where the timeline came from: the runs' pre-reduced report timelines and/or a scan of
    their samples."""
    logs = max(1, data.job_members)
    grid = (f"{data.grid.n} buckets of {data.grid.width:.4g} s, min and max kept; read in "
            f"{data.seconds:.2f} s ({data.workers} process(es))")
    if not data.prereduced:
        return f"{data.lines:,} lines scanned from {logs} samples log(s); {grid}"
    scanned = logs - data.prereduced
    return (f"{data.prereduced_buckets:,} pre-reduced buckets from {data.prereduced} "
            f"{REPORT_TIMELINE} (kept by the run as it went), {data.tail_lines:,} lines of "
            "the samples after them scanned"
            + (f", {scanned} samples log(s) without one scanned whole" if scanned else "")
            + f"; {grid}")


# -- small formatting helpers ---------------------------------------------------------------------
def _g(x: Any, spec: str = "g") -> str:
    return _f(x, spec)


def _j(x: Any) -> str:
    return f"{x:,.1f} J" if _num(x) else "not measured"


def _kwh(x: Any) -> str:
    """Joules in the unit that fits ("519 J", "3.2 kWh"): named for what it once printed."""
    return energy_text(x) if _num(x) else "n/a"


def _grams(kg: Any) -> str:
    return f"{kg * 1000:.4g} g" if _num(kg) else "n/a"


def _pct(x: Any) -> str:
    return f"{x * 100:.1f} %" if _num(x) else "n/a"


def _cell(key: str, v: Any) -> str:
    if isinstance(v, bool) or not _num(v):
        return "n/a" if v is None else str(v)
    if "share" in key or key.endswith("_fraction"):
        return _pct(v)
    if key.endswith("_s") or key == "seconds":
        return _dur(v)
    return f"{v:,.4g}"


def _ranks(r: Any) -> str:
    if not r:
        return ""
    r = list(r)
    if len(r) > 3 and r == list(range(r[0], r[-1] + 1)):
        return f"{r[0]}-{r[-1]}"
    return ",".join(str(x) for x in r)


def _utc(wall: Any) -> str:
    if not _num(wall):
        return "n/a"
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(float(wall)))


def _table(head: Sequence[str], rows: Sequence[Sequence[Any]], num: tuple[int, ...] = ()) -> str:
    def cls(i: int) -> str:
        return numeric(i in num)
    th = "".join(f"<th{cls(i)}>{_e(h)}</th>" for i, h in enumerate(head))
    trs = "".join("<tr>" + "".join(f"<td{cls(i)}>{_e(c)}</td>" for i, c in enumerate(r)) + "</tr>"
                  for r in rows)
    return f"<table><thead><tr>{th}</tr></thead><tbody>{trs}</tbody></table>"


def _palette(n: int) -> list[str]:
    base = ["#4C78A8", "#F58518", "#E45756", "#72B7B2", "#54A24B", "#EECA3B", "#B279A2",
            "#FF9DA6", "#9D755D", "#BAB0AC"]
    return [base[i % len(base)] for i in range(n)]


def _version() -> str:
    from .. import __version__
    return __version__

__all__ = ["MAX_SHADED", "fill", "render_page", "script_json"]
