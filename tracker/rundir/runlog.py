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

from ..errors import ConfigError
from ..safefs import UnsafePath, csv_cell, open_nofollow, still_at
from .names import (
    EMISSIONS_CSV,
    LOCK,
    MANIFEST,
    SAMPLES,
    SUMMARY,
    segment_file,
)
from .untrusted import (
    MAX_JSON_BYTES,
    Damaged,
    LineReader,
    loads_bounded,
    open_regular,
    read_json_file,
    run_seconds,
)

FLUSH_EVERY_S = 0.5
# In its first seconds a run's log is flushed at every tick: a process killed right after
# start (a rank that dies while the job comes up) would otherwise leave only its start reading,
# and the job would count none of the energy it measured. A few writes, once per run.
EAGER_FLUSH_S = 2.0
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


# Bytes of the name kept in a run directory's name: with the stamp, a "-<n>" suffix and a hash
# it stays far below NAME_MAX (255 bytes) whatever the name's script.
SLUG_MAX_BYTES = 96


def run_dir_slug(name: str) -> str:
    """The name as a file-name part: letters of any script, digits, '.', '_' and '-' kept,
    anything else one '-'; cut at SLUG_MAX_BYTES of UTF-8 (on a character boundary) with a
    short hash of the whole name, so two long names with one prefix stay apart."""
    import hashlib
    import unicodedata
    safe = re.sub(r"[^\w.-]+", "-", unicodedata.normalize("NFC", name)).strip("-.")
    if not safe:
        return "run"
    raw = safe.encode("utf-8")
    if len(raw) <= SLUG_MAX_BYTES:
        return safe
    cut = raw[:SLUG_MAX_BYTES - 9].decode("utf-8", errors="ignore").rstrip("-.")
    return f"{cut}-{hashlib.sha1(name.encode('utf-8')).hexdigest()[:8]}"


def default_run_dir(root: Path, name: str, started: datetime) -> Path:
    """Create and return a fresh run directory. mkdir without exist_ok is atomic, so two runs
    started in the same second (or processes of one job) never share one."""
    stamp = started.astimezone(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    safe = run_dir_slug(name)
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
    # mkstemp opens O_CREAT | O_EXCL | O_NOFOLLOW under a random name, and os.replace swaps
    # the name itself (a link planted at `path` is replaced, never followed)
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


# One encoder for every log line: json.dumps(separators=...) builds a new encoder per call
# (the sampler writes ~10 lines a second); same output, the C encoder either way.
_encode_compact = json.JSONEncoder(separators=(",", ":")).encode

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
            self._samples = self._open_stream()
        except OSError as e:
            self.release()
            raise ConfigError(
                f"Cannot write the run log to {self.dir}: {e.strerror or e}. "
                "Pass output_dir= (CLI: --output-dir) with a writable directory."
            ) from e
        self._lock = threading.Lock()
        self._last_flush = -math.inf   # the first tick (the start readings) at once
        self.closed = False

    def _open_stream(self, *, fresh: bool = False) -> Any:
        """The live log, for appending: never through a link, only a plain file of ours
        (`fresh`: it must not exist yet, as after a rotation)."""
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | (os.O_EXCL if fresh else 0)
        fd = open_nofollow(self.dir / self.stream, flags, 0o644)
        return os.fdopen(fd, "a", buffering=64 * 1024, encoding="utf-8")

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
        # never through a link, only a plain file of ours; the lock is on this descriptor
        fd = open_nofollow(self.dir / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
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
        line = _encode_compact(record)
        with self._lock:
            if not self.closed:
                self._samples.write(line + "\n")

    def flush_if_due(self, now: float) -> bool:
        """Flush if FLUSH_EVERY_S passed since the last flush (every tick in the first
        EAGER_FLUSH_S of the run); True when it flushed."""
        if now - self._last_flush >= FLUSH_EVERY_S or now < EAGER_FLUSH_S:
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
            old, self._samples = self._samples, self._open_stream()
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
            rotated = self.dir / segment_file(k)
            os.replace(live, rotated)
            try:
                self._samples = self._open_stream(fresh=True)
            except FileExistsError:   # made again since the rename: the usual checks decide
                self._samples = self._open_stream()
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

    def sync(self) -> None:
        """Flush and fsync the log, keeping it open (at stop, on a thread of its own while
        the summary is built: close() then has only what came since to sync, and waits for
        this one through the lock)."""
        with self._lock:
            if not self.closed:
                self._samples.flush()
                os.fsync(self._samples.fileno())

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
    numeric "t" within ±10 years of run time), or None for a damaged line (bad bytes, bad JSON,
    nested deeper than untrusted.MAX_DEPTH, NaN/Infinity, not an object, no usable "t"). The one
    parser of the run log's lines: every reader goes through it."""
    try:
        rec = loads_bounded(raw)
    except Damaged:
        return None
    if rec.__class__ is not dict or not run_seconds(rec.get("t")):
        return None
    return rec


def read_samples(path: Path, skipped: Optional[Skipped] = None) -> Iterator[dict[str, Any]]:
    """Records of a samples.jsonl, streamed (untrusted.LineReader: at most MAX_LINE_BYTES a
    line, read in chunks). A last line cut by a crash is left out; a damaged, empty or
    over-long line is skipped and counted in `skipped`. Not a regular file: no records."""
    try:
        f = open_regular(path)
    except OSError:
        return
    with f:   # bytes: a flipped byte must not stop the whole file
        reader = LineReader(f)
        for raw in reader:
            rec = parse_record(raw)
            if rec is None:
                if skipped is not None:
                    skipped.lines += 1
                continue
            yield rec
        if skipped is not None:
            skipped.lines += reader.damaged


def read_json(path: Path, max_bytes: int = MAX_JSON_BYTES) -> Optional[dict[str, Any]]:
    """A JSON object from a small file, or None when it is missing, damaged, not an object, or
    out of bounds (untrusted.read_json_file: larger than `max_bytes`, nested too deep, a
    number that is not finite or implausibly large)."""
    try:
        data = read_json_file(path, max_bytes)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


# The columns a first line must have to be taken as an emissions.csv header (ours or any
# CodeCarbon version's); a file that starts otherwise is someone's other file: not written.
HEADER_MUST_HAVE = ("timestamp", "project_name", "run_id")
# How far the header is looked for, and how often the file is reopened when a concurrent
# upsert replaced it between our open and our lock.
HEADER_MAX_BYTES = 64 * 1024
REOPEN_TRIES = 100


class NotEmissions(OSError):
    """A file at the emissions.csv path that is not one (its first line is no header)."""


def append_emissions_row(root: Path, row: dict[str, Any], *, replace: bool = False) -> Path:
    """Append one row to root/emissions.csv under an exclusive lock (concurrent runs).

    `replace`: if a row with the same run_id is already there, replace it instead (a job's
    single row, refreshed when a report finishes the job again): the whole file is rewritten
    to a temp file and renamed over it, never truncated in place.
    If an existing file has other columns (an older CodeCarbon file), the row is written in that
    file's column order, so the file stays readable by whatever wrote it first.

    Safe in a shared directory: the file is opened without following links and must be a
    plain file with one name; a first line that is not an emissions header, or anything
    else wrong, is one logged warning and no row (the run's summary.json has every figure).
    Never raises. String cells that a spreadsheet would run as formulas are quoted.
    """
    # `root` is the directory of emissions.csv, or the CSV file itself (emissions_csv="x.csv")
    path = Path(root) if str(root).endswith(".csv") else Path(root) / EMISSIONS_CSV
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # A team's group-writable directory has one file for everybody's runs; in one that
        # every user may write to (/tmp), a file someone else made first is not ours to fill.
        ours = bool(os.stat(path.parent).st_mode & 0o002)
        for _ in range(REOPEN_TRIES):
            fd = open_nofollow(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644, ours=ours,
                               max_links=1)
            try:
                _lock(fd)
                try:
                    if still_at(fd, path):   # else replaced by an upsert since our open
                        _write_row_locked(fd, path, row, replace)
                        return path
                finally:
                    _unlock(fd)
            finally:
                os.close(fd)
        raise OSError(f"{path} was replaced {REOPEN_TRIES} times while waiting for its lock")
    except (OSError, ValueError, csv.Error) as e:   # never into training
        import logging
        why = e.strerror if isinstance(e, OSError) and e.strerror and \
            not isinstance(e, UnsafePath) else str(e)
        logging.getLogger("tracker").warning(
            "energy-tracker: no row written to %s: %s (the run's summary.json has every "
            "figure)", path, why)
    return path


def upsert_emissions_row(root: Path, row: dict[str, Any]) -> Path:
    """The one row of `row["run_id"]` in root/emissions.csv: added, or replaced if present."""
    return append_emissions_row(root, row, replace=True)


def _write_row_locked(fd: int, path: Path, row: dict[str, Any], replace: bool) -> None:
    size = os.fstat(fd).st_size
    head = os.pread(fd, min(size, HEADER_MAX_BYTES), 0)
    header: Optional[list[str]] = None
    if size:
        nl = head.find(b"\n")
        first = head[:nl] if nl >= 0 else (head if size <= HEADER_MAX_BYTES else b"")
        header = next(csv.reader([first.decode("utf-8", "replace").rstrip("\r")]), [])
        if not set(HEADER_MUST_HAVE) <= set(header):
            raise NotEmissions(f"{path} does not start with an emissions.csv header (needs "
                               f"{', '.join(HEADER_MUST_HAVE)}); it is not written to")
    columns = header or EMISSIONS_COLUMNS
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore",
                            lineterminator="\n")
    if not header:
        writer.writeheader()
    writer.writerow({k: "" if v is None else csv_cell(v) for k, v in row.items()})
    new = buf.getvalue().encode("utf-8", "replace")   # "replace": a lone surrogate in a name
    if replace and size:
        text = _read_all(fd, size).decode("utf-8", "surrogateescape")
        records = _records(text)
        at = _row_index(records, columns, str(row.get("run_id")))
        if at is not None:
            start, end, _ = records[at]
            tail = text[end:]
            # surrogateescape: other rows' bytes come back exactly as they were
            out = (text[:start].encode("utf-8", "surrogateescape") + new
                   + tail.encode("utf-8", "surrogateescape"))
            _replace_locked(fd, path, out)
            return
    if size and os.pread(fd, 1, size - 1) not in (b"\n", b"\r"):
        new = b"\n" + new   # the last row was cut (a crash): ours starts on its own line
    _write_all(fd, new)


def _read_all(fd: int, size: int) -> bytes:
    parts: list[bytes] = []
    at = 0
    while True:
        chunk = os.pread(fd, max(size - at, 1 << 20), at)
        if not chunk:
            return b"".join(parts)
        parts.append(chunk)
        at += len(chunk)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _replace_locked(fd: int, path: Path, data: bytes) -> None:
    """Rewrite `path` atomically while its lock is held: a temp file in the same directory
    (O_EXCL, no links), then rename over it. Appenders waiting for the lock then see another
    file at the path and reopen it (append_emissions_row's still_at)."""
    import stat
    tmp_fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(tmp_fd, stat.S_IMODE(os.fstat(fd).st_mode))
        _write_all(tmp_fd, data)
        os.fsync(tmp_fd)
        os.close(tmp_fd)
        tmp_fd = -1
        os.replace(tmp, path)
    except BaseException:
        if tmp_fd >= 0:
            os.close(tmp_fd)
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _records(text: str) -> list[tuple[int, int, list[str]]]:
    """(start, end, cells) of each CSV record of `text`, offsets in characters (the header is
    record 0); a quoted cell may hold line breaks, so records are found by the csv parser."""
    lines = io.StringIO(text, newline="").readlines()
    ends, at = [], 0
    for line in lines:
        at += len(line)
        ends.append(at)
    out: list[tuple[int, int, list[str]]] = []
    reader = csv.reader(lines)
    start = 0
    try:
        for cells in reader:
            end = ends[reader.line_num - 1]
            out.append((start, end, cells))
            start = end
    except csv.Error:   # a damaged tail: the records before it are still found
        pass
    return out


def _row_index(records: list[tuple[int, int, list[str]]], columns: list[str],
               run_id: str) -> Optional[int]:
    """Index in `records` of the row whose run_id cell is `run_id` (never the header)."""
    if "run_id" not in columns:
        return None
    col = columns.index("run_id")
    for i, (_, _, cells) in enumerate(records[1:], start=1):
        if len(cells) > col and cells[col] == run_id:
            return i
    return None


def _lock(fd: int) -> None:
    try:
        import fcntl
        fcntl.flock(fd, fcntl.LOCK_EX)
    except ImportError:  # Windows: msvcrt locks a byte range
        import msvcrt
        msvcrt.locking(fd, msvcrt.LK_LOCK, 1)  # type: ignore[attr-defined,unused-ignore]


def _unlock(fd: int) -> None:
    try:
        import fcntl
        fcntl.flock(fd, fcntl.LOCK_UN)
    except ImportError:
        import msvcrt
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)  # type: ignore[attr-defined,unused-ignore]
