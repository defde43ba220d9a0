"""Every file name of a run directory and of a job directory, and their schema versions.

The one place these names are spelled: every reader and writer takes them from here, so a
renamed or added file is changed once. A run directory (schema 1, unchanged since the
first release; old runs still read) holds:

- `samples.jsonl`: one JSON record per sampler tick (rotated hourly to `samples.<k>.jsonl`),
- `marks-<pid>.jsonl`: windows opened by another process that joined the run,
- `steps.bin`: the steps, 44 bytes each, in checksummed blocks (the first segment; with a
  per-step horizon the newer ones are `steps.<first row>.bin`, the oldest deleted once
  `step_groups.jsonl` holds their groups),
- `step_groups.jsonl`: the steps older than the horizon, as their groups (rundir/step_groups.py),
- `timeline.<k>.jsonl.gz`: a rotated segment condensed to one record per second,
- `report_timeline.jsonl`: the report's timeline (per bucket min/max/mean W, energy), kept
  as the run goes (report_timeline.py),
- `snapshot.json`: the checkpoint a rebuild starts from,
- `windows.json`, `summary.json`: written when the run ends (or by the owner's checkpoints),
- `run.json`: the manifest (who, where, with which options),
- `.lock`: held by the owner (a lock on the descriptor, never on the name alone),
- `report.html`: the page written at the end.
The output directory's root holds `emissions.csv` (one row per run or job, upserted by id).
"""

from __future__ import annotations

import re

SCHEMA_VERSION = 1          # summary.json / run.json
SNAPSHOT_SCHEMA = 1
JOB_SCHEMA = 1

SAMPLES = "samples.jsonl"
SUMMARY = "summary.json"
MANIFEST = "run.json"
STEPS = "steps.bin"
STEP_GROUPS = "step_groups.jsonl"
WINDOWS = "windows.json"
SNAPSHOT = "snapshot.json"
LOCK = ".lock"
REPORT_HTML = "report.html"
REPORT_TIMELINE = "report_timeline.jsonl"
EMISSIONS_CSV = "emissions.csv"
JOB_MANIFEST = "job.json"
NODE_MANIFEST = "node.json"
MARKS_GLOB = "marks-*.jsonl"

SEGMENT_RE = re.compile(r"^samples\.(\d+)\.jsonl$")
TIMELINE_RE = re.compile(r"^timeline\.(\d+)\.jsonl\.gz$")
STEPS_SEGMENT_RE = re.compile(r"^steps\.(\d{1,18})\.bin$")

# Files the owner touches at least once a summary interval: their newest mtime is the
# heartbeat a reader on another host judges a live run by.
HEARTBEAT_FILES = (SAMPLES, SUMMARY, STEPS, SNAPSHOT)


def marks_file(pid: int) -> str:
    """The marks file of the joined process `pid`."""
    return f"marks-{pid}.jsonl"


def segment_file(k: int) -> str:
    """The k-th rotated segment of samples.jsonl."""
    return f"samples.{k}.jsonl"


def steps_segment_file(first_row: int) -> str:
    """The per-step segment whose first row is `first_row` (row 0's is `steps.bin`)."""
    return STEPS if first_row == 0 else f"steps.{first_row}.bin"


def timeline_file(k: int) -> str:
    """The condensed timeline of the k-th segment."""
    return f"timeline.{k}.jsonl.gz"
