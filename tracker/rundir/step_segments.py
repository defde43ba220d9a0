"""The per-step records of a run directory: the newest steps, one 44-byte record each.

steps.bin: blocks of BLOCK_HEAD (b"STB1", n) then n values of each column, little-endian;
energy_j is float64 (interpolated per step, but summed over millions of them). A run keeps
every step in steps.bin when its horizon (the `step_detail_steps` option) is None, as every
run directory of an older release does. With a horizon of N steps, a new segment
`steps.<first row>.bin` is started every N/4 rows, and a closed segment is deleted once its
steps are more than N behind the newest and step_groups.jsonl (step_groups.py, flushed
first) holds their groups: at most ~1.4 N per-step records are on disk (N + a segment + the
steps since the last group record), whatever the length of the run. Appends are buffered
and flushed with the samples log (every 0.5 s), so a SIGKILL loses what it lost before.
"""

from __future__ import annotations

import os
import struct
from array import array
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Optional

from .names import STEP_GROUPS, STEPS, STEPS_SEGMENT_RE, steps_segment_file

BLOCK_HEAD = struct.Struct("<4sI")
MAGIC = b"STB1"
COLUMNS = (("t_start", "d"), ("t_end", "d"), ("energy_j", "d"), ("index", "I"),
           ("samples", "I"), ("tokens", "I"), ("parent", "q"))
STEP_BYTES = sum(array(c).itemsize for _, c in COLUMNS)      # 44 bytes a step
# A block is one settled batch: at most the ledger's SETTLE_CHUNK (2^16) steps as written; a
# head claiming more than this (or more than the file holds) is damaged.
MAX_BLOCK_STEPS = 1 << 20
SEGMENTS_PER_HORIZON = 4     # a segment holds a quarter of the horizon: deleted a quarter at once
_U32 = 0xFFFFFFFF


def _numpy() -> Any:
    try:
        import numpy
        return numpy
    except ImportError:
        return None


class StepFile:
    """The per-step segments and the group records of one run, appended (sampler thread).
    `path`: the first segment (steps.bin; the others and step_groups.jsonl go next to it);
    `horizon_steps`: how many of the newest steps keep their per-step record (None: all)."""

    FLUSH_BYTES = 4 << 20   # also flushed every 0.5 s with the samples log

    def __init__(self, path: Path, horizon_steps: Optional[int] = None):
        from .step_groups import GroupFile
        self.path = Path(path)
        self.horizon = horizon_steps
        self.rows = 0                              # rows written: the next row's number
        self._seg_path, self._seg_first = self.path, 0
        self._closed: deque[tuple[int, Path]] = deque()   # (end row, path), oldest first
        self._f = self._open(self._seg_path)
        self._buf = bytearray()
        self._unsynced = False   # bytes written to the open segment since it was synced
        self.groups = GroupFile(self.path.parent / STEP_GROUPS)

    @property
    def segment_rows(self) -> Optional[int]:
        return None if self.horizon is None else max(1, self.horizon // SEGMENTS_PER_HORIZON)

    def _open(self, path: Path) -> Any:
        """A segment for appending, never through a link (kept open while it is written)."""
        from ..safefs import open_nofollow
        fd = open_nofollow(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        return os.fdopen(fd, "ab", buffering=0)

    def write(self, b: Any, energies: Any) -> None:
        """Append a block: the steps of the ledger.Batch `b` with their energies (same order)."""
        per = self.segment_rows
        if per is not None and self.rows - self._seg_first >= per and not self._f.closed:
            self._rotate()
        n = len(b)
        self._buf += BLOCK_HEAD.pack(MAGIC, n)
        for col in (b.t0, b.t1, _doubles(energies), _u32(b.index), _u32(b.samples),
                    _u32(b.tokens), b.parent):
            self._buf += col.tobytes()
        self.rows += n
        if len(self._buf) >= self.FLUSH_BYTES:
            self.flush()

    def _rotate(self) -> None:
        self.flush()
        path = self.path.parent / steps_segment_file(self.rows)
        try:
            new = self._open(path)
        except OSError:   # (a link planted at the name): go on in this segment for now
            self._seg_first = self.rows
            return
        old, self._f = self._f, new
        old.close()
        self._unsynced = False
        self._closed.append((self.rows, self._seg_path))
        self._seg_path, self._seg_first = path, self.rows

    def add_group_record(self, line: bytes) -> None:
        """A record of step_groups.jsonl (written with the next flush)."""
        self.groups.append(line)

    def prune(self, covered: int) -> None:
        """Delete the closed segments whose rows are all before `covered` (held by the group
        records, which are flushed first) and more than the horizon behind the newest."""
        if self.horizon is None:
            return
        while self._closed and self._closed[0][0] <= min(covered, self.rows - self.horizon):
            if not self.groups.flush():
                return   # the records that hold these steps are not in the file: keep them
            _, path = self._closed.popleft()
            try:
                path.unlink()
            except OSError:
                pass   # gone already (the directory deleted), or not ours to delete

    def flush(self) -> None:
        if self._buf and not self._f.closed:
            self._f.write(self._buf)
            self._buf.clear()
            self._unsynced = True
        self.groups.flush()

    def reopen(self) -> None:
        """Continue in new files at the same paths (the directory was recreated)."""
        if not self._f.closed:
            old, self._f = self._f, self._open(self._seg_path)
            old.close()
            self._unsynced = False
        self._closed.clear()
        self.groups.reopen()
        # the new group file does not start at step 0, so no rebuild can use it: from now on
        # every per-step record is kept (summary.json is written from memory anyway)
        self.groups.broken = True

    def close(self) -> None:
        if not self._f.closed:
            self.flush()
            if self._unsynced:   # a segment never written to has nothing to make durable
                os.fsync(self._f.fileno())
            self._f.close()
        self.groups.close()


def _doubles(x: Any) -> Any:
    """Float64 values with tobytes(): an array('d') or a numpy array as it is."""
    if isinstance(x, array) or hasattr(x, "dtype"):
        return x
    return array("d", x)


def _u32(col: array[int]) -> Any:
    """The column as little-endian uint32 (an object with tobytes()); -1 ("unknown") wraps."""
    np = _numpy()
    if np is not None:
        return np.frombuffer(col, dtype=np.int64).astype("<u4")
    try:
        return array("I", col)
    except OverflowError:
        return array("I", (x & _U32 for x in col))


class StepFileDamage:
    """Where reading a steps.bin stopped short: what was skipped, as a note (None: nothing)."""

    def __init__(self) -> None:
        self.at: Optional[int] = None      # byte offset of the first unreadable block
        self.skipped_bytes = 0
        self.why = ""
        self.file = STEPS

    def note(self) -> Optional[str]:
        if self.at is None:
            return None
        return (f"{self.file} is damaged at byte {self.at:,} ({self.why}): the "
                f"{self.skipped_bytes:,} bytes after it were skipped")


def segments(run_dir: Path) -> list[tuple[int, Path]]:
    """The per-step segments of a run directory as (first row, path), in row order."""
    run_dir = Path(run_dir)
    out = [(0, run_dir / STEPS)] if (run_dir / STEPS).exists() else []
    try:
        names = os.listdir(run_dir)
    except OSError:
        names = []
    for name in names:
        m = STEPS_SEGMENT_RE.match(name)
        if m and int(m.group(1)) > 0:
            out.append((int(m.group(1)), run_dir / name))
    return sorted(out)


def read_step_blocks(run_dir: Path, damage: Optional[StepFileDamage] = None,
                     skip_rows: int = 0) -> Iterator[tuple[int, dict[str, array[Any]]]]:
    """(row of its first step, columns) of every block of every segment of a run directory,
    in row order, from the block holding row `skip_rows` on (the ones before are stepped
    over unread); a damaged segment is read up to its damage (said in `damage`, the first
    one), and the next segment starts at the row its name says."""
    segs = segments(run_dir)
    for k, (first, path) in enumerate(segs):
        if k + 1 < len(segs) and segs[k + 1][0] <= skip_rows:
            continue   # wholly before the rows wanted
        row = first
        seg_damage = StepFileDamage()
        for n, cols in _blocks(path, seg_damage, skip_rows - first):
            if cols is not None:
                yield row, cols
            row += n
        if seg_damage.at is not None and damage is not None and damage.at is None:
            damage.at, damage.skipped_bytes, damage.why = (seg_damage.at,
                                                            seg_damage.skipped_bytes,
                                                            seg_damage.why)
            damage.file = path.name


def read_step_columns(path: Path, damage: Optional[StepFileDamage] = None
                      ) -> Iterator[dict[str, array[Any]]]:
    """The blocks of a steps.bin (or of every segment of a run directory) as column arrays
    (t_start, t_end, energy_j, index, samples, tokens, parent); energy_j is NaN for steps a
    killed run had not settled. Read a block at a time; a block whose head is not one (bad
    magic, more than MAX_BLOCK_STEPS, or more than the file holds: cut by a crash, or forged)
    ends the reading of its file and is recorded in `damage`."""
    path = Path(path)
    if path.is_dir():
        for _, cols in read_step_blocks(path, damage):
            yield cols
        return
    for _, got in _blocks(path, damage, 0):
        if got is not None:
            yield got


def _blocks(path: Path, damage: Optional[StepFileDamage], skip_rows: int
            ) -> Iterator[tuple[int, Optional[dict[str, array[Any]]]]]:
    """(steps, columns) of each block of one file; None for the columns of a block wholly
    before row `skip_rows` (its data is seeked over)."""
    from .untrusted import open_regular

    with open_regular(path) as f:
        size = os.fstat(f.fileno()).st_size
        off = rows = 0
        while off + BLOCK_HEAD.size <= size:
            head = f.read(BLOCK_HEAD.size)
            if len(head) < BLOCK_HEAD.size:
                return
            magic, n = BLOCK_HEAD.unpack(head)
            end = off + BLOCK_HEAD.size + n * STEP_BYTES
            why = ("not a block head" if magic != MAGIC else
                   f"a block of {n:,} steps, more than {MAX_BLOCK_STEPS:,}"
                   if n > MAX_BLOCK_STEPS else
                   f"a block of {n:,} steps, more than the file holds" if end > size else "")
            if why:
                if damage is not None:
                    damage.at, damage.skipped_bytes, damage.why = off, size - off, why
                return
            if rows + n <= skip_rows:
                f.seek(end)
                off, rows = end, rows + n
                yield n, None
                continue
            data = f.read(n * STEP_BYTES)
            if len(data) < n * STEP_BYTES:   # the file shrank while being read
                return
            off, at, rows = end, 0, rows + n
            cols = {}
            for name, code in COLUMNS:
                col = array(code)
                col.frombytes(data[at:at + n * col.itemsize])
                at += n * col.itemsize
                cols[name] = col
            yield n, cols


def read_steps(path: Path, damage: Optional[StepFileDamage] = None) -> Iterator[dict[str, Any]]:
    """Rows of a steps.bin as dicts (t_start, t_end, duration_s, energy_j, index, samples,
    tokens, parent, resolution "step", steps 1). For a run directory: first the steps whose
    per-step records were deleted (older than the horizon), one row per group at group
    resolution (resolution "group", `steps` in it, `index`..`last_index`; energy, samples and
    tokens its sums), then every step that still has its record."""
    path = Path(path)
    grouped = 0
    if path.is_dir():
        grouped_rows: list[dict[str, Any]] = []
        grouped = _grouped_rows(path, grouped_rows)
        yield from grouped_rows
        blocks: Iterator[tuple[int, dict[str, array[Any]]]] = read_step_blocks(
            path, damage, grouped)
    else:
        blocks = ((0, c) for c in read_step_columns(path, damage))
    for start, c in blocks:
        for i in range(max(0, grouped - start), len(c["t_start"])):
            t0, t1, parent = c["t_start"][i], c["t_end"][i], c["parent"][i]
            yield {"t_start": t0, "t_end": t1, "duration_s": t1 - t0,
                   "energy_j": c["energy_j"][i], "index": c["index"][i],
                   "samples": c["samples"][i], "tokens": c["tokens"][i],
                   "parent": None if parent < 0 else parent, "resolution": "step", "steps": 1}


def _grouped_rows(run_dir: Path, out: list[dict[str, Any]]) -> int:
    """The groups holding the steps before the first per-step record still on disk, into
    `out`; returns the ordinal they reach (the per-step records before it are in them)."""
    from .step_groups import read_groups

    segs = segments(run_dir)
    first = segs[0][0] if segs else None
    if first == 0:
        return 0
    disk = read_groups(run_dir)
    if disk is None or not disk.to:
        return 0
    upto = disk.to if first is None else first
    for g in disk.groups(upto=upto):
        start, end = g[3], g[4]
        out.append({"t_start": start, "t_end": end, "duration_s": end - start,
                    "energy_j": g[5], "index": g[0], "last_index": g[1], "samples": g[6],
                    "tokens": g[7], "parent": None, "resolution": "group", "steps": g[2]})
    return disk.covering(upto)


__all__ = ["BLOCK_HEAD", "COLUMNS", "MAGIC", "MAX_BLOCK_STEPS", "STEP_BYTES", "StepFile",
           "StepFileDamage", "read_step_blocks", "read_step_columns", "read_steps",
           "segments"]
