"""index.html of a root of runs: one row per run and per job, sortable and filterable in the
browser, each linking to its report; a side-by-side comparison of the runs picked; the
monthly inventory of the root.

    write_index(Path("energy-runs"))          # -> energy-runs/index.html
    energy-tracker report energy-runs --html  # the same from the command line

Runs and jobs are found and read by tracker.accounting.inventory (the same entries the
inventory counts: a job's members are in the job's row, not rows of their own). A live or
killed run is read as a view: its summary is rebuilt in memory and nothing is written into
any run directory; a run without report.html links to its summary (or run.json) instead, and
the page says how to draw the report. The page is one file with no request: page/
index.html.tmpl filled with report.css, index.css, common.js + index.js (one script) and the
rows as JSON.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, Optional
from urllib.parse import quote

from ..accounting.inventory import Entry, Inventory, discover, inventory_of
from ..rundir.names import JOB_MANIFEST, MANIFEST, REPORT_HTML, SUMMARY
from ..rundir.runlog import write_text_atomic
from ..rundir.untrusted import number
from ..units import J_PER_KWH
from .cells import duration, fixed, methods, numeric
from .cells import esc as _e
from .render import fill, script_json

INDEX_HTML = "index.html"
TIMELINE_POINTS = 120           # per run: mean power over 120 slots, enough to overlay runs
MAX_MEMBERS = 64                # a larger job's row has no timeline (its report.html has one)


@cache
def _asset(name: str) -> str:
    return resources.files(__package__).joinpath("page").joinpath(name).read_text("utf-8")


def _link(target: Path, base: Path) -> str:
    """A relative URL from the page's folder to `target` (works from file:// and any copy of
    the whole tree)."""
    rel = os.path.relpath(target.resolve(), base.resolve())
    return quote(rel.replace(os.sep, "/"))


def _page_of(e: Entry, base: Path) -> tuple[str, bool]:
    """(link, has its report.html): the report, else the summary, else the manifest."""
    for name, is_page in ((REPORT_HTML, True), (SUMMARY, False),
                          (JOB_MANIFEST if e.kind == "job" else MANIFEST, False)):
        if (e.path / name).is_file():
            return _link(e.path / name, base), is_page
    return "", False


def _num(x: Any) -> Optional[float]:
    return float(x) if number(x) else None


def power_timeline(e: Entry, n: int = TIMELINE_POINTS) -> dict[str, list[float]]:
    """Mean power (W, dE/dt) over n equal slots of the run's (job's) time since its start,
    from the devices' cumulative energy (terminal.py's bounded reader: at most ~n chunks of a
    large samples.jsonl are read)."""
    from .terminal import _interp, _run_points, _wall

    duration = _num(e.summary.get("duration_s")) or 0.0
    if duration <= 0:
        return {"t": [], "w": []}
    if e.kind == "job":
        from ..job.layout import members
        mems = list(members(e.path))
        if len(mems) > MAX_MEMBERS:
            return {"t": [], "w": []}
        walls = [_wall(m.manifest.get("start_wall"), 0.0) for m in mems]
        job = e.summary.get("job") or {}
        t0 = _wall(job.get("started_wall"), min(walls) if walls else 0.0)
        curves = [(_run_points(m.path, n), (w or t0) - t0) for m, w in zip(mems, walls)]
    else:
        curves = [(_run_points(e.path, n), 0.0)]
    curves = [(p, off) for p, off in curves if len(p) >= 2]
    if not curves:
        return {"t": [], "w": []}
    edges = [duration * i / n for i in range(n + 1)]
    energy = [sum(_interp(p, t - off) for p, off in curves) for t in edges]
    ts, ws = [], []
    for i in range(n):
        dt = edges[i + 1] - edges[i]
        if dt > 0:
            ts.append(float(f"{(edges[i] + edges[i + 1]) / 2:.6g}"))
            ws.append(round((energy[i + 1] - energy[i]) / dt, 2))
    return {"t": ts, "w": ws}


def row_of(e: Entry, base: Path, *, timeline: bool = True) -> dict[str, Any]:
    """One row of the index (and one column of a comparison), from the entry's summary."""
    s = e.summary
    link, has_page = _page_of(e, base)
    job: dict[str, Any] = s["job"] if isinstance(s.get("job"), dict) else {}
    comps: dict[str, Any] = s["components"] if isinstance(s.get("components"), dict) else {}
    devices = [d for d in s.get("devices") or () if isinstance(d, dict)]
    grids: list[dict[str, Any]] = [
        g["grid"] for g in (s.get("carbon") or {}).get("grids") or ()
        if isinstance(g, dict) and isinstance(g.get("grid"), dict)] \
        or [s["grid"] if isinstance(s.get("grid"), dict) else {}]
    steps: dict[str, Any] = s["steps"] if isinstance(s.get("steps"), dict) else {}
    facility_j = _num(s.get("facility_energy_j"))
    count = steps.get("count") if number(steps.get("count")) else None
    in_steps = _num(steps.get("energy_j_in_steps"))
    duration = _num(s.get("duration_s"))
    it_j = _num(s.get("energy_j"))
    nodes = len(job.get("nodes") or ()) if e.kind == "job" else 1
    row: dict[str, Any] = {
        "id": e.key, "kind": e.kind, "name": e.label, "project": e.project,
        "dir": _link(e.path, base), "path": str(e.path),
        "started": s.get("started_utc"), "status": s.get("status"),
        "duration_s": duration,
        "kwh": facility_j / J_PER_KWH if facility_j is not None else None,
        "it_kwh": it_j / J_PER_KWH if it_j is not None else None,
        "pue": _num(s.get("pue")),
        "g": (s["emissions_kg"] * 1000.0) if number(s.get("emissions_kg")) else None,
        "methods": methods({k: v.get("method") for k, v in comps.items()
                            if isinstance(v, dict)}),
        "region": ", ".join(str(g.get("region_code") or "n/a") for g in grids),
        "factor": "; ".join(_factor_text(g) for g in grids),
        "factor_g": _num(grids[0].get("gco2_per_kwh")) if len(grids) == 1 else None,
        "steps": count,
        "j_per_step": in_steps / count if in_steps is not None and count else None,
        "j_per_sample": _num(steps.get("j_per_sample")),
        "j_per_token": _num(steps.get("j_per_token")),
        "samples": _num(steps.get("samples")), "tokens": _num(steps.get("tokens")),
        "mean_w": it_j / duration if it_j is not None and duration else None,
        "nodes": nodes, "gpus": sum(1 for d in devices if d.get("component") == "gpu"),
        "world_size": job.get("world_size") if e.kind == "job" else None,
        "link": link, "has_page": has_page, "rebuilt": e.rebuilt, "error": e.error,
    }
    if timeline and e.error is None:
        try:
            row["power"] = power_timeline(e)
        except Exception:   # a damaged log: the row stays, without its timeline
            row["power"] = {"t": [], "w": []}
    return row


def _factor_text(g: dict[str, Any]) -> str:
    value = g.get("gco2_per_kwh")
    v = f"{value:.1f} gCO2e/kWh" if number(value) else "factor n/a"
    src = str(g.get("source") or "source n/a").split(",")[0]
    return f"{v} ({src}, {g.get('year') or 'year n/a'}, {g.get('kind') or 'annual'})"


# -- the page --------------------------------------------------------------------------------------
_COLUMNS = [   # key, header, numeric, title
    ("name", "name", False, "run name, or a job's id"),
    ("project", "project", False, "run.json's project, else the folder holding the run"),
    ("started", "started (UTC)", False, ""),
    ("status", "status", False, ""),
    ("duration_s", "duration", True, "wall time of the run or job"),
    ("kwh", "kWh", True, "facility energy: IT energy x PUE"),
    ("g", "g CO2e", True, "location-based: facility energy x the grid factor"),
    ("methods", "methods", False, "how each component was measured"),
    ("region", "region", False, ""),
    ("factor", "factor (source, year)", False, ""),
    ("j_per_sample", "J/sample", True, "IT energy in steps per sample"),
    ("j_per_token", "J/token", True, "IT energy in steps per token"),
    ("shape", "nodes x GPUs", True, ""),
]


def _cell(key: str, r: dict[str, Any]) -> tuple[str, str]:
    """(text shown, sort value)."""
    v = r.get(key)
    if key == "shape":   # GPUs per node when even, else the total
        n, g = r["nodes"], r["gpus"]
        text = f"{n} x {g // n}" if n and g % n == 0 else f"{n} nodes, {g} GPUs"
        return text, str(n * 100000 + g)
    if key in _NUMBER_CELLS:
        return _NUMBER_CELLS[key](v), "" if v is None else repr(v)
    return ("" if v is None else str(v)), ("" if v is None else str(v))


_NUMBER_CELLS: dict[str, Callable[[Any], str]] = {   # the text of a number column's cell
    "duration_s": lambda v: duration(v, places=1), "kwh": lambda v: fixed(v, ".6g"),
    "g": lambda v: fixed(v, ".4g"), "j_per_sample": lambda v: fixed(v, ".4g"),
    "j_per_token": lambda v: fixed(v, ".4g")}


def _table(rows: Sequence[dict[str, Any]]) -> str:
    head = ['<th class="pick"><input type="checkbox" id="pick-all" title="pick every shown row">'
            "</th>"]
    for key, label, is_num, title in _COLUMNS:
        head.append(f'<th data-key="{key}" data-type="{"n" if is_num else "s"}"'
                    f'{numeric(is_num)} title="{_e(title)} (click to sort)">{_e(label)}</th>')
    body = []
    for i, r in enumerate(rows):
        cells = [f'<td class="pick"><input type="checkbox" class="pick" data-i="{i}" '
                 f'aria-label="pick {_e(r["name"])}"></td>']
        for key, _label, is_num, _t in _COLUMNS:
            text, sort = _cell(key, r)
            cls = numeric(is_num)
            if key == "name":
                tag = "job" if r["kind"] == "job" else ""
                badge = f' <span class="badge">job, {r["world_size"]} processes</span>' \
                    if tag else ""
                title = ("its report" if r["has_page"] else
                         f"no report.html yet (this links to its summary): energy-tracker report "
                         f"{r['path']} --html draws it")
                link = (f'<a href="{_e(r["link"])}" title="{_e(title)}"'
                        f'{"" if r["has_page"] else " class=" + chr(34) + "nopage" + chr(34)}>'
                        f"{_e(text)}</a>" if r["link"] else _e(text))
                extra = "" if r["has_page"] else ' <span class="badge muted">no page</span>'
                text_html = link + badge + extra
            elif key == "status" and (r.get("error") or r.get("rebuilt")):
                why = r.get("error") or "no final summary: rebuilt from its logs for this page"
                text_html = (f'<span class="{"bad" if r.get("error") else ""}" '
                             f'title="{_e(why)}">{_e(text)}</span>')
            else:
                text_html = _e(text)
            cells.append(f'<td{cls} data-v="{_e(sort)}">{text_html}</td>')
        status = _e(r.get("status"))
        body.append(f'<tr data-i="{i}" data-kind="{_e(r["kind"])}" data-status="{status}">'
                    + "".join(cells) + "</tr>")
    foot = ('<tr id="totals"><td></td><td colspan="4">total over <b id="t-count">0</b> shown '
            'row(s)</td><td class="n" id="t-duration"></td><td class="n" id="t-kwh"></td>'
            '<td class="n" id="t-g"></td><td colspan="6"></td></tr>')
    return (f'<table id="runs"><thead><tr>{"".join(head)}</tr></thead>'
            f'<tbody>{"".join(body)}</tbody><tfoot>{foot}</tfoot></table>')


def _inventory_section(inv: Inventory) -> str:
    if not inv.rows:
        return ('<section id="inventory"><h2>Monthly inventory</h2><p>nothing to count.</p>'
                "</section>")
    trs = []
    for r in inv.rows:
        c = r.csv_row()
        trs.append("<tr>" + "".join(
            f"<td{numeric(k in _INV_NUM)}>{_e(c[k])}</td>"
            for k in _INV_COLS) + "</tr>")
    total_kwh = sum(r.facility_energy_kwh for r in inv.rows)
    total_t = sum(r.emissions_tco2e for r in inv.rows)
    total_h = sum(r.gpu_hours for r in inv.rows)
    head = "".join(f"<th{numeric(k in _INV_NUM)}>{_e(_INV_HEAD.get(k, k))}</th>"
                   for k in _INV_COLS)
    notes = "".join(f"<li>{_e(n)}</li>" for n in inv.notes)
    return ('<section id="inventory"><h2>Monthly inventory</h2><p class="muted">Per UTC month x '
            "project x grid region: facility energy (IT x PUE), location-based emissions (each "
            "run's energy x its grid's average factor, or the live intensity it recorded) and "
            "GPU-hours (the GPUs' measured spans). Each run or job is counted once (a job's "
            "members inside it). A run that spans months is split by its energy timeline, else "
            "assigned to the month it started (the last column says which). The same as CSV: "
            "<code>energy-tracker inventory ROOT... --csv OUT</code>.</p>"
            f'<table id="inventory-table"><thead><tr>{head}</tr></thead><tbody>{"".join(trs)}'
            f'</tbody><tfoot><tr><td colspan="3">total ({inv.entries} runs/jobs)</td>'
            f'<td class="n">{total_kwh:.6g}</td><td class="n">{total_t:.6g}</td>'
            f'<td class="n">{total_h:.4g}</td><td colspan="{len(_INV_COLS) - 6}"></td></tr>'
            "</tfoot></table>" + (f"<h3>Notes</h3><ul>{notes}</ul>" if notes else "")
            + "</section>")


_INV_COLS = ["month", "project", "region", "facility_energy_kwh", "emissions_tco2e",
             "gpu_hours", "entries", "gco2_per_kwh_effective", "factor", "factor_source",
             "factor_year", "factor_licence", "split_basis"]
_INV_NUM = {"facility_energy_kwh", "emissions_tco2e", "gpu_hours", "entries",
            "gco2_per_kwh_effective"}
_INV_HEAD = {"facility_energy_kwh": "kWh (facility)", "emissions_tco2e": "t CO2e",
             "gpu_hours": "GPU-hours", "entries": "runs/jobs",
             "gco2_per_kwh_effective": "gCO2e/kWh (effective)", "factor_source": "source",
             "factor_year": "year", "factor_licence": "licence", "split_basis": "month split"}


def render_index(rows: Sequence[dict[str, Any]], *, title: str, inv: Optional[Inventory],
                 notes: Sequence[str] = (), compare_all: bool = False) -> str:
    """The whole page. compare_all: every row picked and the comparison shown on load (the
    page `report RUN... --compare --html` writes)."""
    from .. import __version__

    sections = []
    intro = ("Click a header to sort, type to filter; totals are over the rows shown. Pick "
             "rows and press <b>compare</b> to see them side by side. A name links to the run's "
             "report; <span class=\"badge muted\">no page</span> links to its summary instead "
             "(<code>energy-tracker report DIR --html</code> draws the report).")
    controls = ('<div class="controls"><input id="filter" type="search" placeholder="filter: '
                'name, project, region, status..." aria-label="filter rows">'
                '<select id="kind"><option value="">runs and jobs</option>'
                '<option value="run">runs</option><option value="job">jobs</option></select>'
                '<button id="compare-btn" type="button">compare</button>'
                '<span id="picked" class="muted"></span></div>')
    sections.append(f'<section id="runs-section"><h2>Runs</h2><p class="muted">{intro}</p>'
                    f"{controls}{_table(rows)}</section>")
    sections.append('<section id="compare" hidden><h2>Comparison</h2><p id="compare-best"></p>'
                    '<div id="compare-table"></div><h3>Power over time since start</h3>'
                    '<p class="muted">Mean power per slot (dE/dt of the devices\' cumulative '
                    "energy), on a common relative-time axis.</p>"
                    '<div id="compare-chart" class="chart"></div></section>')
    if inv is not None:
        sections.append(_inventory_section(inv))
    if notes:
        sections.append('<section id="notes"><h2>Notes</h2><ul>'
                        + "".join(f"<li>{_e(n)}</li>" for n in notes) + "</ul></section>")
    data = {"rows": rows, "compare_all": compare_all}
    footer = (f"Generated {_e(time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime()))} by "
              f"energy-tracker {_e(__version__)}. Self-contained: no network needed.")
    nav = '<a href="#runs-section">Runs</a><a href="#compare">Comparison</a>' + (
        '<a href="#inventory">Inventory</a>' if inv is not None else "")
    return fill(_asset("index.html.tmpl"), {
        "title": _e(title), "nav": nav, "css": _asset("report.css") + _asset("index.css"),
        "body": "\n".join(sections), "data": script_json(data), "footer": footer,
        "script": _asset("common.js") + _asset("index.js")})


def write_index(root: Path, out: Optional[Path] = None) -> Path:
    """Write `root`/index.html (or `out`): every run and job under root; returns the file."""
    root = Path(root)
    target = Path(out) if out is not None else root / INDEX_HTML
    entries, notes = discover([root])
    base = target.parent
    rows = [row_of(e, base) for e in entries]
    inv = inventory_of(entries, notes)
    page = render_index(rows, title=f"energy-tracker: runs in {root.resolve().name or root}",
                        inv=inv, notes=[])
    target.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(target, page)
    return target


__all__ = ["INDEX_HTML", "power_timeline", "render_index", "row_of", "write_index"]
