"""The per-run log directory: samples.jsonl, summary.json, run.json, and the root's emissions.csv.

Crash safety: samples.jsonl is appended by the sampler thread and flushed to the kernel at
least every `FLUSH_EVERY_S`, so a SIGKILL loses at most that much; summary.json and run.json
are replaced atomically (temp file + rename), so a reader never sees half a file.
This module never talks to sensors; it only writes and reads files.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import tempfile
import threading
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Optional

from .errors import ConfigError

SCHEMA_VERSION = 1
SAMPLES = "samples.jsonl"
SUMMARY = "summary.json"
MANIFEST = "run.json"
EMISSIONS_CSV = "emissions.csv"
FLUSH_EVERY_S = 0.5
# Closed steps are logged in batches: {"t": ..., "steps": [[id, parent, t_start, t_end, index,
# samples, tokens], ...]} (parent -1: none; index -1: unknown; 0 samples/tokens: not counted).
STEP_COLUMNS = ("id", "parent", "t_start", "t_end", "index", "samples", "tokens")

# Same names and meanings as CodeCarbon's emissions.csv where they overlap (energies in kWh,
# powers in W, emissions in kg CO2e, duration in s); ours follow after `pue`.
EMISSIONS_COLUMNS = [
    "timestamp", "project_name", "run_id", "duration", "emissions", "emissions_rate",
    "cpu_power", "gpu_power", "ram_power", "cpu_energy", "gpu_energy", "ram_energy",
    "energy_consumed", "country_name", "country_iso_code", "region", "cloud_provider",
    "cloud_region", "os", "python_version", "codecarbon_version", "cpu_count", "cpu_model",
    "gpu_count", "gpu_model", "longitude", "latitude", "ram_total_size", "tracking_mode",
    "on_cloud", "pue",
    "status", "cpu_method", "gpu_method", "ram_method", "it_energy", "gco2_per_kwh",
    "grid_region", "grid_source", "grid_year", "tracker_version", "run_dir",
    "job_id", "world_size", "nodes", "cost", "currency", "price_per_kwh",
]


def default_run_dir(root: Path, name: str, started: datetime) -> Path:
    """Create and return a fresh run directory. mkdir without exist_ok is atomic, so two runs
    started in the same second (or processes of one job) never share one."""
    stamp = started.astimezone(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    safe = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-") or "run"
    root.mkdir(parents=True, exist_ok=True)
    for n in range(1, 10_000):
        path = root / (f"{stamp}-{safe}" if n == 1 else f"{stamp}-{safe}-{n}")
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue
    raise OSError(f"no free run directory name under {root}")


def write_json_atomic(path: Path, obj: Any) -> None:
    """Write JSON so that readers see the old file or the new one, never a partial one."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o644)  # mkstemp makes 0600; run files are meant to be shared
        with os.fdopen(fd, "w") as f:
            json.dump(obj, f, indent=2, sort_keys=False, default=str)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


class RunLog:
    """Writer of one run's directory. `append` is thread-safe (sampler, carbon, user threads)."""

    def __init__(self, run_dir: Path, stream: str = SAMPLES):
        self.dir = Path(run_dir)
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            # Kept open for the whole run: the sampler appends to it on every tick.
            self._samples = open(self.dir / stream, "a", buffering=64 * 1024)  # noqa: SIM115
        except OSError as e:
            raise ConfigError(
                f"Cannot write the run log to {self.dir}: {e.strerror or e}. "
                "Pass output_dir= (CLI: --output-dir) with a writable directory."
            ) from e
        self._lock = threading.Lock()
        self._last_flush = 0.0
        self.closed = False

    def append(self, record: dict[str, Any]) -> None:
        line = json.dumps(record, separators=(",", ":"))
        with self._lock:
            if not self.closed:
                self._samples.write(line + "\n")

    def flush_if_due(self, now: float) -> None:
        if now - self._last_flush >= FLUSH_EVERY_S:
            self.flush()
            self._last_flush = now

    def flush(self) -> None:
        with self._lock:
            if not self.closed:
                self._samples.flush()

    def write_manifest(self, manifest: dict[str, Any]) -> None:
        write_json_atomic(self.dir / MANIFEST, manifest)

    def write_summary(self, summary: dict[str, Any]) -> None:
        write_json_atomic(self.dir / SUMMARY, summary)

    def close(self) -> None:
        with self._lock:
            if not self.closed:
                self._samples.flush()
                os.fsync(self._samples.fileno())
                self._samples.close()
                self.closed = True


def read_samples(path: Path) -> Iterator[dict[str, Any]]:
    """Records of a samples.jsonl; a last line cut by a crash is skipped."""
    with open(path) as f:
        for line in f:
            if not line.endswith("\n"):
                break
            try:
                yield json.loads(line)
            except json.JSONDecodeError:
                continue


def marks_file(pid: int) -> str:
    """Windows recorded by a process that joined the run (see follow.py)."""
    return f"marks-{pid}.jsonl"


def read_json(path: Path) -> Optional[dict[str, Any]]:
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, json.JSONDecodeError):
        return None


def append_emissions_row(root: Path, row: dict[str, Any], *, replace: bool = False) -> Path:
    """Append one row to root/emissions.csv under an exclusive lock (concurrent runs).

    `replace`: if a row with the same run_id is already there, rewrite it in place instead (a
    job's single row, refreshed when a report finishes the job again).
    If an existing file has other columns (an older CodeCarbon file), the row is written in that
    file's column order, so the file stays readable by whatever wrote it first.
    """
    path = Path(root) / EMISSIONS_CSV
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+", newline="") as f:
        _lock(f)
        try:
            f.seek(0)
            text = f.read()
            lines = text.splitlines(keepends=True)
            header = next(csv.reader(io.StringIO(lines[0])), None) if lines else None
            columns = header if header else EMISSIONS_COLUMNS
            buf = io.StringIO()
            writer = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore",
                                    lineterminator="\n")
            if not header:
                writer.writeheader()
            writer.writerow({k: "" if v is None else v for k, v in row.items()})
            new = buf.getvalue()
            old_at = _row_index(lines, columns, str(row.get("run_id"))) if replace else None
            if old_at is None:
                f.seek(0, os.SEEK_END)
                f.write(new)
            else:   # in place, under the lock: appenders wait and then append after us
                lines[old_at] = new
                f.seek(0)
                f.truncate()
                f.write("".join(lines))
            f.flush()
        finally:
            _unlock(f)
    return path


def upsert_emissions_row(root: Path, row: dict[str, Any]) -> Path:
    """The one row of `row["run_id"]` in root/emissions.csv: added, or replaced if present."""
    return append_emissions_row(root, row, replace=True)


def _row_index(lines: list[str], columns: list[str], run_id: str) -> Optional[int]:
    if "run_id" not in columns:
        return None
    col = columns.index("run_id")
    for i, line in enumerate(lines[1:], start=1):
        cells = next(csv.reader(io.StringIO(line)), [])
        if len(cells) > col and cells[col] == run_id:
            return i
    return None


def _lock(f: Any) -> None:
    try:
        import fcntl
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
    except ImportError:  # Windows: msvcrt locks a byte range
        import msvcrt
        msvcrt.locking(f.fileno(), msvcrt.LK_LOCK, 1)


def _unlock(f: Any) -> None:
    try:
        import fcntl
        fcntl.flock(f.fileno(), fcntl.LOCK_UN)
    except ImportError:
        import msvcrt
        msvcrt.locking(f.fileno(), msvcrt.LK_UNLCK, 1)
