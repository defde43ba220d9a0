"""report.html written at the end of a run or a job, next to its summary.json.

On by default (the page needs no extra package); `report_html=False`, or
ENERGY_TRACKER_REPORT_HTML=0 for every run of a machine or a cluster, turns it off. It is
written after every other file (the numbers are safe before a page is drawn) and skipped when
the run was terminated or interrupted (a launcher's grace period is for saving the model, not
drawing charts); `energy-tracker report --html DIR` draws it later, for any run.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any, Callable, Optional

log = logging.getLogger("tracker")

ENV_REPORT_HTML = "ENERGY_TRACKER_REPORT_HTML"
_OFF = ("0", "false", "no", "off")
SKIP_STATUSES = ("terminated", "interrupted")


def wanted(option: Optional[bool]) -> bool:
    """The option, else the environment's choice, else on."""
    if option is not None:
        return option
    return os.environ.get(ENV_REPORT_HTML, "").strip().lower() not in _OFF


def plan(option: Optional[bool], status: str, directory: Path) -> tuple[bool, Optional[str]]:
    """(write it?, the note to add to the summary when it is not written but was wanted)."""
    if not wanted(option):
        return False, None
    if status in SKIP_STATUSES:
        return False, (f"no report.html (the run was {status}): `energy-tracker report --html "
                       f"{directory}` draws it")
    return True, None


def write(directory: Path, data: dict[str, Any],
          save_summary: Callable[[dict[str, Any]], None]) -> Optional[Path]:
    """Draw `directory`'s report.html (its summary.json, holding data with "report_html", is
    already saved). On failure the summary is saved again without the path and with a note."""
    from .html import write_html

    started = time.perf_counter()
    try:
        out = write_html(directory)
        log.debug("energy-tracker: report.html written in %.2f s", time.perf_counter() - started)
        return out
    except Exception as e:
        why = f"{type(e).__name__}: {e}"[:300]
        log.error("energy-tracker: could not write report.html: %s", why)
        data.pop("report_html", None)
        data["notes"] = [*data.get("notes", []),
                         f"report.html could not be written ({why}); `energy-tracker report "
                         f"--html {directory}` retries"]
        try:
            save_summary(data)
        except Exception as e2:
            log.error("energy-tracker: could not rewrite summary.json: %s", e2)
        return None


__all__ = ["ENV_REPORT_HTML", "SKIP_STATUSES", "plan", "wanted", "write"]
