"""What a run's owner leaves when it stops: summary.json, windows.json, the log's tail, the
emissions.csv row, then report.html; and the short block on stderr.

Each file on its own: a summary that cannot be written must not cost the log's last lines or
the emissions row, and a full disk must not become a traceback. (A run whose owner died is
ended by a reader instead: rundir/finalize.py.)
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional, Union

from .rundir import names

if TYPE_CHECKING:
    from .summary import Summary

log = logging.getLogger("tracker")


def write_final_files(summary: Summary, *, runlog: Any, run_dir: Path, manifest: dict[str, Any],
                      in_job: bool, report_html: Optional[bool],
                      emissions_csv: Union[bool, Path], csv_root: Path) -> Summary:
    """Write the stopped run's files into `run_dir` through its `runlog` (which is closed);
    returns the summary as saved (with the report's path, or the note why there is none).
    `manifest`: the run's run.json (for the emissions row); `in_job`: the run is a part of a
    job (the job writes the page and the row at its end); `csv_root`: where emissions.csv
    goes unless `emissions_csv` names the file."""
    from .report import auto
    from .rundir.runlog import upsert_emissions_row
    from .summary_build import emissions_row

    # a job member's page is the job's (job/member.py end_job draws it)
    html, note = auto.plan(report_html, summary.status, run_dir) if not in_job else (False, None)
    if note:
        summary = dataclasses.replace(summary, notes=(*summary.notes, note))
    if html:
        summary = dataclasses.replace(summary, report_html=str(run_dir / names.REPORT_HTML))

    final = summary
    _attempt(names.SUMMARY, lambda: runlog.write_summary(final.to_dict()))
    _attempt(names.WINDOWS, lambda: write_windows_file(run_dir, final))
    _attempt(names.SAMPLES, runlog.close)
    if emissions_csv and not in_job:   # a job writes one row, at its end
        root = emissions_csv if isinstance(emissions_csv, Path) else csv_root   # "x.csv"
        _attempt("the emissions.csv row",
                 lambda: upsert_emissions_row(root, emissions_row(final, manifest)))
    if html:
        data = summary.to_dict()
        if auto.write(run_dir, data, runlog.write_summary) is None:
            summary = dataclasses.replace(summary, report_html=None, notes=tuple(data["notes"]))
    return summary


def _attempt(what: str, do: Callable[[], Any]) -> None:
    try:
        do()
    except Exception as e:
        log.error("energy-tracker: could not write %s: %s: %s", what, type(e).__name__, e)


def write_windows_file(run_dir: Path, summary: Summary) -> None:
    """windows.json: the windows (steps are in steps.bin) and the step groups."""
    from .rundir.ledger import COLUMNS, STEPS_FILE
    from .rundir.runlog import write_json_atomic
    write_json_atomic(run_dir / names.WINDOWS,
                      {"note": "window energies are E(t_end)-E(t_start) on the interpolated "
                               "energy curve; short steps are not measured alone",
                       "windows": [w.to_dict() for w in summary.windows],
                       "step_groups": summary.steps.get("groups", []),
                       "steps_file": {
                           "path": STEPS_FILE,
                           "format": "blocks: b'STB1', uint32 n, then n values of each "
                                     "column (little-endian); read with "
                                     "tracker.rundir.ledger.read_steps",
                           "columns": [f"{name}:{code}" for name, code in COLUMNS],
                           "segments": "steps.<first row>.bin after steps.bin; steps older "
                                       "than the step_detail_steps horizon are in "
                                       f"{names.STEP_GROUPS} as their groups (read_steps "
                                       "of the run directory gives them at group "
                                       "resolution, resolution='group')"}})


def print_end_block_if_due(summary: Summary, *, quiet: bool, joined: bool, job: Any) -> None:
    """One short block on stderr per run (end_block.py): not with quiet; not from a script
    joined to `energy-tracker run` (the command prints it); in a job (`job`: the
    job.member.JobMember), only from the process that ended the job (it prints the job)."""
    if quiet or joined or (job is not None and not getattr(job, "ended", False)):
        return
    from .end_block import print_end_block
    print_end_block(summary)


__all__ = ["print_end_block_if_due", "write_final_files", "write_windows_file"]
