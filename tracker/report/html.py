"""One self-contained HTML report of a run or a job: opens offline, from a file, in any browser.

    write_html(run_or_job_dir)            # -> <dir>/report.html
    energy-tracker report RUN --html      # the same from the command line

The page holds its own small SVG charting script (page/charts.js), the chart data as JSON and
plain HTML tables: the power timeline per device (per node for a job) with windows shaded,
the cumulative energy, step energy and live grid intensity on the same zoomable time axis;
the breakdown, idle GPU energy, advice, cost, what-if regions, the job's nodes and attempts,
and the provenance of every number. No dependency, no CDN, no server, no request.

Three modules do the work: scan.py reads the logs into the data model (model.py), render.py
draws the page from page/ (template, CSS, JS). This one writes the file, and re-exports their
names for callers of the former single module.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from ..rundir.names import REPORT_HTML as REPORT_FILE
from ..rundir.runlog import write_text_atomic
from .model import MAX_BUCKETS, Data, Grid, Scan, Series, Source
from .render import render_page
from .scan import PARALLEL_MIN_BYTES, Task, collect, plan, run_tasks, scan_range, sum_series


def write_html(path: Path, out: Optional[Path] = None) -> Path:
    """Write the offline HTML report of a run or job directory; returns the file written
    (default `<dir>/report.html`)."""
    data = collect(Path(path))
    page = render_page(data)
    target = Path(out) if out is not None else Path(path) / REPORT_FILE
    target.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(target, page)
    return target


__all__ = ["MAX_BUCKETS", "PARALLEL_MIN_BYTES", "Data", "Grid", "Scan", "Series", "Source",
           "Task", "collect", "plan", "render_page", "run_tasks", "scan_range", "sum_series",
           "write_html"]
