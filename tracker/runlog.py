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
import math
import os
import re
import tempfile
import threading
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Optional, Union

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

# Every column of CodeCarbon 3.x's emissions.csv, in its order (its `EmissionsData`), with its
# units: duration s, emissions kg CO2e, emissions_rate kg/s, powers W, energies kWh, water L,
# ram_total_size and ram_used_gb GiB, utilisation %, wue L/kWh. Checked by CodeCarbon itself in
# tests/test_codecarbon_compat.py. Ours follow; `not_measured` names the CodeCarbon columns
# that hold CodeCarbon's default (0.0, its experiment id) instead of a measurement.
CODECARBON_COLUMNS = [
    "timestamp", "project_name", "run_id", "experiment_id", "duration", "emissions",
    "emissions_rate", "cpu_power", "gpu_power", "ram_power", "cpu_energy", "gpu_energy",
    "ram_energy", "energy_consumed", "water_consumed", "country_name", "country_iso_code",
    "region", "cloud_provider", "cloud_region", "os", "python_version", "codecarbon_version",
    "cpu_count", "cpu_model", "gpu_count", "gpu_model", "longitude", "latitude",
    "ram_total_size", "tracking_mode", "cpu_utilization_percent", "gpu_utilization_percent",
    "ram_utilization_percent", "ram_used_gb", "on_cloud", "pue", "wue",
]
EMISSIONS_COLUMNS = [
    *CODECARBON_COLUMNS,
    "status", "cpu_method", "gpu_method", "ram_method", "not_measured", "it_energy",
    "gco2_per_kwh", "grid_region", "grid_source", "grid_year", "tracker_version", "run_dir",
    "job_id", "world_size", "nodes", "cost", "currency", "price_per_kwh",
    # a whole-node meter (kWh, W), what it_energy sums, and other components ("name=kWh;...")
    "node_energy", "node_power", "node_method", "it_energy_basis", "other_energy",
    "other_method",
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


def _plain(o: Any) -> Any:
    """JSON for what json cannot write: numpy scalars as numbers, anything else as text."""
    item = getattr(o, "item", None)
    return item() if callable(item) else str(o)


def write_json_atomic(path: Path, obj: Any) -> None:
    """Write JSON so that readers see the old file or the new one, never a partial one."""
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=False, default=_plain) + "\n")


def write_text_atomic(path: Path, text: str) -> None:
    """Write a text file so that readers (a summary reader, a browser reloading the report)
    see the old file or the new one, never a partial one."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o644)  # mkstemp makes 0600; run files are meant to be shared
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


_held_dirs: set[str] = set()      # run directories held by this process's live runs
_held_lock = threading.Lock()


class RunLog:
    """Writer of one run's directory. `append` is thread-safe (sampler, carbon, user threads).

    The directory is held with a lock file for the run's life: a second live run pointed at
    the same `run_dir` is refused. If the directory disappears mid-run (deleted by a cleanup
    job, say), it is recreated at the next flush, the log continues in a new samples file,
    and `on_recreated` is called so the run can rewrite its manifest and summary.
    """

    def __init__(self, run_dir: Path, stream: str = SAMPLES, *, exclusive: bool = True,
                 on_recreated: Optional[Any] = None):
        self.dir = Path(run_dir)
        self.stream = stream
        self.on_recreated = on_recreated
        self.recreated = 0
        self._lock_fd = -1
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            if exclusive:
                self._hold()
            # Kept open for the whole run: the sampler appends to it on every tick.
            self._samples = open(self.dir / stream, "a", buffering=64 * 1024)  # noqa: SIM115
        except OSError as e:
            self.release()
            raise ConfigError(
                f"Cannot write the run log to {self.dir}: {e.strerror or e}. "
                "Pass output_dir= (CLI: --output-dir) with a writable directory."
            ) from e
        self._lock = threading.Lock()
        self._last_flush = -math.inf   # the first tick (the start readings) at once
        self.closed = False

    def _hold(self) -> None:
        """Lock `<run_dir>/.lock` (a POSIX record lock: dropped when the process ends; locks
        do not conflict inside one process, so this process's runs are also remembered)."""
        key = os.path.realpath(self.dir)
        with _held_lock:
            if key in _held_dirs:
                raise ConfigError(f"run_dir {self.dir} is in use by a live run (pid "
                                  f"{os.getpid()}, this process); give each run its own "
                                  "run_dir, or use output_dir=")
            _held_dirs.add(key)
        self._held_key: Optional[str] = key
        try:
            import fcntl
        except ImportError:   # Windows: other processes are not kept out
            return
        fd = os.open(self.dir / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            self.release()
            raise ConfigError(f"run_dir {self.dir} is in use by a live run (pid {holder}); "
                              "give each run its own run_dir, or use output_dir=") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self._lock_fd = fd

    def release(self) -> None:
        if self._lock_fd >= 0:
            try:
                os.close(self._lock_fd)
            except OSError:
                pass
            self._lock_fd = -1
        key = getattr(self, "_held_key", None)
        if key is not None:
            with _held_lock:
                _held_dirs.discard(key)
            self._held_key = None

    def append(self, record: dict[str, Any]) -> None:
        line = json.dumps(record, separators=(",", ":"))
        with self._lock:
            if not self.closed:
                self._samples.write(line + "\n")

    def flush_if_due(self, now: float) -> bool:
        """Flush if FLUSH_EVERY_S passed since the last flush; True when it flushed."""
        if now - self._last_flush >= FLUSH_EVERY_S:
            self.flush()
            self._last_flush = now
            return True
        return False

    def flush(self) -> None:
        recreated = False
        with self._lock:
            if self.closed:
                return
            if not self.dir.is_dir():
                recreated = self._recreate()
            self._samples.flush()
        if recreated and self.on_recreated is not None:
            self.on_recreated()

    def _recreate(self) -> bool:
        """The directory vanished: make it again and continue the log in a new file."""
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            old, self._samples = self._samples, open(  # noqa: SIM115
                self.dir / self.stream, "a", buffering=64 * 1024)
        except OSError:
            return False   # still not writable: try again at the next flush
        try:
            old.close()
        except OSError:
            pass
        self.recreated += 1
        if self._lock_fd >= 0:
            self.release()
            try:
                self._hold()
            except (OSError, ConfigError):
                pass
        return True

    def rotate(self, k: int) -> Path:
        """Rename the live log to samples.<k>.jsonl and continue in a new one (snapshot.py)."""
        with self._lock:
            self._samples.flush()
            os.fsync(self._samples.fileno())
            self._samples.close()
            live = self.dir / self.stream
            rotated = self.dir / f"samples.{k}.jsonl"
            os.replace(live, rotated)
            self._samples = open(live, "a", buffering=64 * 1024)  # noqa: SIM115
        return rotated

    def _ensure_dir(self) -> None:
        if not self.dir.is_dir():
            self.flush()   # recreates it (and tells the run)

    def write_manifest(self, manifest: dict[str, Any]) -> None:
        self._ensure_dir()
        write_json_atomic(self.dir / MANIFEST, manifest)

    def write_summary(self, summary: dict[str, Any]) -> None:
        self._ensure_dir()
        write_json_atomic(self.dir / SUMMARY, summary)

    def close(self) -> None:
        with self._lock:
            if not self.closed:
                self.closed = True
                try:
                    self._samples.flush()
                    os.fsync(self._samples.fileno())
                finally:
                    self._samples.close()
        self.release()


class Skipped:
    """Counts the lines of a log that could not be used (damaged, or not what they claim)."""

    def __init__(self) -> None:
        self.lines = 0

    def note(self, what: str) -> Optional[str]:
        return (f"{self.lines} unreadable line{'s' if self.lines != 1 else ''} of {what} "
                "skipped" if self.lines else None)


def parse_record(raw: Union[bytes, str]) -> Optional[dict[str, Any]]:
    """One line of a samples.jsonl / marks / timeline file as a record (a JSON object with a
    numeric, finite "t"), or None for a damaged line (bad bytes, bad JSON, not an object, no
    usable "t"). The one parser of the run log's lines: every reader goes through it."""
    try:
        rec = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(rec, dict):
        return None
    t = rec.get("t")
    if isinstance(t, bool) or not isinstance(t, (int, float)) or not math.isfinite(t):
        return None
    return rec


def read_samples(path: Path, skipped: Optional[Skipped] = None) -> Iterator[dict[str, Any]]:
    """Records of a samples.jsonl. A last line cut by a crash is left out; a damaged line is
    skipped and counted in `skipped`."""
    with open(path, "rb") as f:   # bytes: a flipped byte must not stop the whole file
        for raw in f:
            if not raw.endswith(b"\n"):
                break
            rec = parse_record(raw)
            if rec is None:
                if skipped is not None:
                    skipped.lines += 1
                continue
            yield rec


def marks_file(pid: int) -> str:
    """Windows recorded by a process that joined the run (see follow.py)."""
    return f"marks-{pid}.jsonl"


def read_json(path: Path) -> Optional[dict[str, Any]]:
    """A JSON object from a file, or None when it is missing, damaged or not an object."""
    try:
        with open(path, "rb") as f:
            data = json.loads(f.read().decode("utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def append_emissions_row(root: Path, row: dict[str, Any], *, replace: bool = False) -> Path:
    """Append one row to root/emissions.csv under an exclusive lock (concurrent runs).

    `replace`: if a row with the same run_id is already there, rewrite it in place instead (a
    job's single row, refreshed when a report finishes the job again).
    If an existing file has other columns (an older CodeCarbon file), the row is written in that
    file's column order, so the file stays readable by whatever wrote it first.
    """
    # `root` is the directory of emissions.csv, or the CSV file itself (emissions_csv="x.csv")
    path = Path(root) if str(root).endswith(".csv") else Path(root) / EMISSIONS_CSV
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
        msvcrt.locking(f.fileno(), msvcrt.LK_LOCK, 1)  # type: ignore[attr-defined,unused-ignore]


def _unlock(f: Any) -> None:
    try:
        import fcntl
        fcntl.flock(f.fileno(), fcntl.LOCK_UN)
    except ImportError:
        import msvcrt
        msvcrt.locking(f.fileno(), msvcrt.LK_UNLCK, 1)  # type: ignore[attr-defined,unused-ignore]
