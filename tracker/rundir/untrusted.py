"""Reading a run directory as untrusted input: every read is bounded, every damage is a value.

A run directory may be copied from another machine, half-written by a crash, or forged. Its
readers (`report`, `report --html`, `report --rebuild`, `merge`, the rebuild of a killed run)
use only these primitives, so no file can make them use unbounded memory or raise anything but
a `Damaged` (a ValueError with a one-line reason) or an OSError:

- `LineReader`: the lines of a binary file read in chunks, each at most MAX_LINE_BYTES; a longer
  line is skipped and counted without ever being held whole (a 2 GiB line costs one chunk);
- `read_gzip_lines`: the same over a gzip stream, stopped after MAX_GZIP_TEXT_BYTES of text
  (a gzip bomb costs that much reading, never that much memory);
- `loads_bounded`: JSON with at most MAX_DEPTH levels of nesting, checked without recursion
  before parsing, and NaN / Infinity / -Infinity refused;
- `read_json_file`: a small JSON file (summary.json, run.json, windows.json, snapshot.json, job
  manifests) with a size cap, numbers finite and below MAX_JSON_ABS in magnitude;
- `number`, `run_seconds`, `wall_seconds`: the plausible-range checks where values are used.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import re
import stat
from collections.abc import Iterator
from itertools import accumulate
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Optional, Union

if TYPE_CHECKING:
    from typing import TypeGuard  # (3.10+; annotations only, so 3.9 runs this)

# The longest legitimate line is a joined process's batch of closed steps, one record per
# sampler tick: [id, parent, t_start, t_end, index, samples, tokens] is ~55 bytes a step, so a
# million steps a second at 10 Hz is ~5.5 MB a line (and a tick late by 0.5 s, ~27 MB).
# Sample ticks are ~100 bytes a device. 32 MiB is above all of that; parsed, a forged line of
# that size stays under ~400 MB.
MAX_LINE_BYTES = 32 << 20
CHUNK_BYTES = 1 << 20
MAX_DEPTH = 64
# summary.json, run.json, windows.json, job.json, node.json: a few kB to a few MB (a job's
# summary with a thousand windows). windows.json of a run with many windows is larger.
MAX_JSON_BYTES = 64 << 20
# snapshot.json: 5.2 MB for 7 days of 8 GPUs (README, long-run bench); curves are compacted,
# so it grows slowly with the run's length.
MAX_SNAPSHOT_BYTES = 256 << 20
# A condensed timeline is one hour of one run: ~1.7 MB of text for 8 GPUs (~2.5 MB for a
# 12-device node). 64 MiB is 25x that, and parsing that many forged lines stays ~20 s.
MAX_GZIP_TEXT_BYTES = 64 << 20
# Numbers in the small JSON files: any legitimate one (energies in J, token counts, wall
# clocks) is far below; above it, sums and products of a few of them could overflow a float.
MAX_JSON_ABS = 1e30
# Readings (W, J, %): far above any meter; sums over a month of them stay finite.
MAX_READING_ABS = 1e15
# Run time (s since the run's start) and wall clocks (s since 1970) that are plausible.
MAX_RUN_S = 10 * 365.25 * 86400.0
MAX_WALL_S = 1e11          # year ~5138: datetime and time.gmtime convert anything below


class Damaged(ValueError):
    """A file, line or value that cannot be used; its message is one line saying why."""


# -- plausible numbers ---------------------------------------------------------------------------
def number(x: Any, limit: float = MAX_JSON_ABS) -> TypeGuard[float]:
    """A JSON number (not a bool) with |x| <= limit: finite, and a float without overflow even
    for a huge int (compared as an int, never converted)."""
    return (x.__class__ is float or x.__class__ is int) and -limit <= x <= limit


def run_seconds(x: Any) -> TypeGuard[float]:
    """A plausible run time: a number within ±10 years."""
    return number(x, MAX_RUN_S)


def wall_seconds(x: Any) -> TypeGuard[float]:
    """A plausible wall clock (s since 1970) that datetime/time.gmtime can convert."""
    return number(x, MAX_WALL_S)


# -- files ---------------------------------------------------------------------------------------
def open_regular(path: Union[str, Path]) -> IO[bytes]:
    """Open a file for reading only if it is a regular file: a FIFO, a device or a directory
    planted in a run directory would block or never end. O_NONBLOCK: opening a FIFO does not
    wait for a writer."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(f"{path} is not a regular file")
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


class LineReader:
    """The lines of a binary stream (without their b"\\n"), read CHUNK_BYTES at a time.

    A line longer than `max_line` is skipped: its bytes are read and dropped chunk by chunk,
    and it is counted in `too_long`. Empty lines are counted in `blank` (not yielded). The last
    piece of the stream when it has no newline (a line cut by a crash) is not yielded: its
    length is `tail`. `pos` is the offset, from where reading began, of the line last yielded.
    `stop_at`: no line starting at or after this offset is read. `max_bytes`: stop after this
    many bytes (`capped` is then True). `ends_on`: exceptions of reading that end the stream
    (`broken` is then True: a damaged gzip stream). `close`: close `f` when iteration ends.
    """

    def __init__(self, f: IO[bytes], *, max_line: int = MAX_LINE_BYTES,
                 chunk: int = CHUNK_BYTES, stop_at: Optional[int] = None,
                 max_bytes: Optional[int] = None,
                 ends_on: tuple[type[BaseException], ...] = (), close: bool = False):
        self._f = f
        self._ends_on = ends_on
        self._close = close
        self.broken = False
        self.max_line = max_line
        self._chunk = chunk
        self._stop_at = stop_at
        self._max_bytes = max_bytes
        self.pos = 0
        self.consumed = 0             # offset just past the last line ended (used or skipped)
        self.too_long = 0
        self.blank = 0
        self.tail = 0
        self.capped = False

    @property
    def damaged(self) -> int:
        """Lines skipped as unusable here (over-long or empty; a stream cut by `max_bytes` or
        broken counts one more)."""
        return self.too_long + self.blank + (self.capped or self.broken)

    def __iter__(self) -> Iterator[bytes]:
        try:
            yield from self._lines()
        except self._ends_on:
            self.broken = True
        finally:
            if self._close:
                self._f.close()

    def _lines(self) -> Iterator[bytes]:
        f, max_line, stop = self._f, self.max_line, self._stop_at
        # a regular file may have holes (a sparse file: NULs that take no disk): a hole holds
        # no newline, so inside an over-long line it is stepped over, not read
        holes = isinstance(f, io.BufferedReader) and hasattr(os, "SEEK_DATA")
        pending: list[bytes] = []     # the start of the current line, in pieces
        pending_len = 0
        skipping = False              # inside an over-long line
        at = f.tell() if holes else 0
        origin = at                   # offsets are reported from where reading began
        while True:
            if stop is not None and not pending and not skipping and at - origin >= stop:
                return
            size = self._chunk
            if self._max_bytes is not None:
                size = min(size, self._max_bytes - (at - origin))
                if size <= 0:
                    self.capped = True
                    self.tail = pending_len
                    return
            data = f.read(size)
            if not data:
                if skipping:   # an over-long last piece: damage, not a line cut by a crash
                    self.too_long += 1
                else:
                    self.tail = pending_len
                return
            start_of_data = at - origin
            at += len(data)
            i = data.find(b"\n")
            if i < 0:   # no line ends in this chunk
                pending_len += len(data)
                if pending_len > max_line:
                    skipping, pending = True, []
                elif not skipping:
                    pending.append(data)
                if skipping and holes and not data.strip(b"\0"):
                    at = self._past_hole(f, at)
                continue
            line_start = start_of_data - pending_len
            if stop is not None and line_start >= stop and not skipping:
                return
            self.consumed = start_of_data + i + 1
            if skipping:
                self.too_long += 1
                skipping = False
            elif pending_len + i > max_line:
                self.too_long += 1
            else:
                first = b"".join((*pending, data[:i])) if pending else data[:i]
                if first:
                    self.pos = line_start
                    yield first
                else:
                    self.blank += 1
            pending, pending_len = [], 0
            base = start_of_data + i + 1
            end = data.rfind(b"\n")
            if end > i:   # complete lines after the first: the non-empty ones, found in C
                body = data[i + 1:end]
                got = 0
                for m in _NONEMPTY.finditer(body):
                    p = base + m.start()
                    if stop is not None and p >= stop:
                        self.blank += body.count(b"\n", 0, m.start()) - got
                        return
                    got += 1
                    line = m.group()
                    self.consumed = p + len(line) + 1
                    if len(line) > max_line:
                        self.too_long += 1
                    else:
                        self.pos = p
                        yield line
                self.blank += body.count(b"\n") + 1 - got
                self.consumed = start_of_data + end + 1
            last = data[end + 1:]     # the start of the next line (maybe empty)
            if last:
                if stop is not None and start_of_data + end + 1 >= stop:
                    return
                if len(last) > max_line:
                    skipping, pending_len = True, len(last)
                else:
                    pending, pending_len = [last], len(last)

    @staticmethod
    def _past_hole(f: IO[bytes], at: int) -> int:
        """Offset of the next data after `at` (the end of the file when none), f moved there."""
        fd = f.fileno()
        raw_at = os.lseek(fd, 0, os.SEEK_CUR)
        try:
            nxt = os.lseek(fd, at, os.SEEK_DATA)
        except OSError:   # ENXIO: only a hole up to the end; EINVAL: no SEEK_DATA here
            nxt = os.fstat(fd).st_size
        os.lseek(fd, raw_at, os.SEEK_SET)   # where the buffered reader left it
        if nxt > at:
            f.seek(nxt)
            return nxt
        return at


def skip_partial_line(f: IO[bytes], start: int, end: Optional[int]) -> Optional[int]:
    """Seek `f` to the first line starting at or after byte `start` (start > 0: the byte before
    it is read to see whether a line starts exactly there), reading in chunks; None when no
    line starts before `end`."""
    f.seek(start - 1)
    at = start - 1
    while end is None or at < end:
        data = f.read(CHUNK_BYTES)
        if not data:
            return None
        i = data.find(b"\n")
        if i >= 0:
            at += i + 1
            if end is not None and at >= end:
                return None
            f.seek(at)
            return at
        at += len(data)
        if isinstance(f, io.BufferedReader) and hasattr(os, "SEEK_DATA") and \
                not data.strip(b"\0"):
            at = LineReader._past_hole(f, at)   # a sparse file's hole holds no newline
    return None


def read_gzip_lines(path: Union[str, Path], *, max_text: int = MAX_GZIP_TEXT_BYTES,
                    max_line: int = MAX_LINE_BYTES) -> LineReader:
    """A LineReader over a gzip file, decompressed a chunk at a time (gzip never inflates more
    than it is asked for) and stopped after `max_text` bytes of text (`capped`). A damaged
    gzip stream ends the lines (`broken`). Raises OSError when the file cannot be opened."""
    import zlib
    raw = open_regular(path)
    gz = gzip.GzipFile(fileobj=raw, mode="rb")
    return LineReader(gz, max_line=max_line, max_bytes=max_text,  # type: ignore[arg-type]
                      ends_on=(OSError, EOFError, zlib.error), close=True)


# -- JSON ----------------------------------------------------------------------------------------
_NONEMPTY = re.compile(rb"[^\n]+")
_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BRACKETS = bytes(range(256)).translate(None, b"[]{}")   # every byte but the brackets
_STEP = {ord("["): 1, ord("{"): 1, ord("]"): -1, ord("}"): -1}


def depth(raw: Union[bytes, str]) -> int:
    """The deepest nesting of arrays/objects in a JSON text, counted without recursion (brackets
    inside strings ignored; an unterminated string counts its brackets: never an undercount of
    valid JSON)."""
    b = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else raw
    if b.count(b"[") + b.count(b"{") <= 1:
        return b.count(b"[") + b.count(b"{")
    if b"\"" in b:
        b = _STRING.sub(b'""', b)
    brackets = b.translate(None, _BRACKETS)
    if not brackets:
        return 0
    return max(0, max(accumulate(map(_STEP.__getitem__, brackets))))


def shallow(raw: Union[bytes, str], max_depth: int = MAX_DEPTH) -> bool:
    """Nesting at most `max_depth`; instant for a line with few brackets (every sample line)."""
    if isinstance(raw, bytes):
        if raw.count(b"[") + raw.count(b"{") <= max_depth:
            return True
    elif raw.count("[") + raw.count("{") <= max_depth:
        return True
    return depth(raw) <= max_depth


def _constant(name: str) -> Any:
    raise Damaged(f"{name} is not a number JSON allows")


_DECODER = json.JSONDecoder(parse_constant=_constant)


def loads_bounded(raw: Union[bytes, str], max_depth: int = MAX_DEPTH) -> Any:
    """json.loads with at most `max_depth` levels of nesting (checked first, iteratively) and
    NaN/Infinity refused. Raises Damaged (bad bytes, bad JSON, too deep)."""
    if not shallow(raw, max_depth):
        raise Damaged(f"JSON nested deeper than {max_depth} levels")
    try:
        text = raw.decode("utf-8") if isinstance(raw, (bytes, bytearray)) else raw
        return _DECODER.decode(text)
    except Damaged:
        raise
    except (ValueError, RecursionError) as e:   # (RecursionError: cannot happen after the check)
        raise Damaged(f"not valid JSON ({str(e).splitlines()[0][:80]})") from None


def _finite_float(limit: float) -> Any:
    def parse(s: str) -> float:
        x = float(s)
        if not -limit <= x <= limit:
            raise Damaged(f"the number {s[:40]} is out of range (|x| <= {limit:g})")
        return x
    return parse


def _bounded_int(limit: float) -> Any:
    def parse(s: str) -> int:
        if len(s) > 40:
            raise Damaged(f"the number {s[:40]}... is out of range (|x| <= {limit:g})")
        x = int(s)
        if not -limit <= x <= limit:
            raise Damaged(f"the number {s} is out of range (|x| <= {limit:g})")
        return x
    return parse


_SMALL_FILE_DECODER = json.JSONDecoder(parse_constant=_constant,
                                       parse_float=_finite_float(MAX_JSON_ABS),
                                       parse_int=_bounded_int(MAX_JSON_ABS))


def read_json_file(path: Union[str, Path], max_bytes: int = MAX_JSON_BYTES,
                   max_depth: int = MAX_DEPTH) -> Any:
    """A small JSON file: a regular file of at most `max_bytes`, nested at most `max_depth`,
    every number finite with |x| <= MAX_JSON_ABS. Raises OSError (missing, unreadable, not a
    regular file) or Damaged (too large, not valid JSON, out of range)."""
    with open_regular(path) as f:
        size = os.fstat(f.fileno()).st_size
        if size > max_bytes:
            raise Damaged(f"{Path(path).name} is {size:,} bytes, more than the {max_bytes:,} "
                          "it may be")
        raw = f.read(max_bytes + 1)
    if len(raw) > max_bytes:
        raise Damaged(f"{Path(path).name} is more than the {max_bytes:,} bytes it may be")
    if not shallow(raw, max_depth):
        raise Damaged(f"{Path(path).name}: JSON nested deeper than {max_depth} levels")
    try:
        return _SMALL_FILE_DECODER.decode(raw.decode("utf-8"))
    except Damaged as e:
        raise Damaged(f"{Path(path).name}: {e}") from None
    except (ValueError, RecursionError) as e:
        raise Damaged(f"{Path(path).name} is not valid JSON "
                      f"({str(e).splitlines()[0][:80]})") from None


__all__ = ["CHUNK_BYTES", "MAX_DEPTH", "MAX_GZIP_TEXT_BYTES", "MAX_JSON_ABS", "MAX_JSON_BYTES",
           "MAX_LINE_BYTES", "MAX_READING_ABS", "MAX_RUN_S", "MAX_SNAPSHOT_BYTES", "MAX_WALL_S",
           "Damaged", "LineReader", "depth", "loads_bounded", "number", "open_regular",
           "read_gzip_lines", "read_json_file", "run_seconds", "shallow", "skip_partial_line",
           "wall_seconds"]
