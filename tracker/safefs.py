"""Files and directories that another user of the machine cannot redirect or squat.

On a shared host every path under /dev/shm, /tmp or a world-writable output directory may
have been made by someone else first: a directory they own, a symbolic link to one of our
files, a FIFO that blocks a writer. The rules here:

- a private directory is one we own (euid) with no group/other bits, checked with `lstat`
  (a link is never a directory of ours), created 0700;
- a file is opened with O_NOFOLLOW | O_CLOEXEC (O_NONBLOCK: a planted FIFO cannot block
  the open), then `fstat`ed: a regular file, ours where it must be, and every later step
  (locks, reads, writes) uses that descriptor, never the name again;
- a small file another process left (a lock holder's JSON) is read size-capped.

Failures raise `UnsafePath` (an OSError, so callers that already handle OSError stay correct)
with a message that says what was found: whose it is, which mode.
"""

from __future__ import annotations

import errno
import os
import re
import stat
from pathlib import Path
from typing import Any, Optional, Union

O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
O_NONBLOCK = getattr(os, "O_NONBLOCK", 0)
O_DIRECTORY = getattr(os, "O_DIRECTORY", 0)

PathLike = Union[str, "os.PathLike[str]"]   # a str or a Path


class UnsafePath(OSError):
    """A path that is not what it must be (a link, not ours, open to others); the message
    names it and says what it is."""


def euid() -> Optional[int]:
    """This process's effective uid; None where there are no uids (Windows: ACLs decide)."""
    return os.geteuid() if hasattr(os, "geteuid") else None


def _user(uid: int) -> str:
    try:
        import pwd
        return f"uid {uid} ({pwd.getpwuid(uid).pw_name})"
    except (ImportError, KeyError):
        return f"uid {uid}"


def describe(st: os.stat_result) -> str:
    """'owned by uid 65534 (nobody), mode 0777' for a note."""
    return f"owned by {_user(st.st_uid)}, mode {stat.S_IMODE(st.st_mode):04o}"


def private_dir(path: PathLike, *, create: bool = True) -> Path:
    """`path` as a directory only this user can use: created 0700 when missing (its parents
    with the default mode), then checked with lstat: a real directory (not a link), owned by
    this process's euid, no group/other write bit. A directory of ours that others may only
    read (an older version made it 0755) is tightened to 0700. Raises UnsafePath."""
    p = Path(path)
    if create:
        try:
            os.mkdir(p, 0o700)
        except FileExistsError:
            pass
        except FileNotFoundError:
            p.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.mkdir(p, 0o700)
            except FileExistsError:
                pass
    try:
        st = os.lstat(p)
    except OSError as e:
        raise UnsafePath(f"{p} is not usable: {e.strerror or e}") from e
    if stat.S_ISLNK(st.st_mode):
        raise UnsafePath(f"{p} is a symbolic link ({describe(st)}); refusing to follow it")
    if not stat.S_ISDIR(st.st_mode):
        raise UnsafePath(f"{p} is not a directory ({describe(st)})")
    me = euid()
    if me is None:
        return p
    if st.st_uid != me:
        raise UnsafePath(f"{p} is {describe(st)}, not this user's ({_user(me)}): another "
                         "user made it, so it is not used")
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o022:
        raise UnsafePath(f"{p} is writable by group or others ({describe(st)}): files in it "
                         "could be replaced by another user, so it is not used")
    if mode & 0o077:
        _tighten(p, st)
    return p


def _tighten(p: Path, st: os.stat_result) -> None:
    """chmod 0700 through a descriptor of the very directory that was checked."""
    fd = os.open(p, os.O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
    try:
        now = os.fstat(fd)
        if (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino):
            raise UnsafePath(f"{p} was replaced while it was checked")
        os.fchmod(fd, 0o700)
    finally:
        os.close(fd)


def open_nofollow(path: PathLike, flags: int, mode: int = 0o600, *, ours: bool = True,
                  max_links: Optional[int] = None) -> int:
    """os.open(path, flags | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK, mode), then fstat: a
    regular file, owned by this user when `ours`, with at most `max_links` hard links when
    given (a link to another of our files planted in a shared directory). Returns the
    descriptor; raises UnsafePath (the path is a link or not a plain file of ours) or the
    OSError of the open."""
    try:
        fd = os.open(path, flags | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK, mode)
    except OSError as e:
        # Linux says ELOOP for a final symlink under O_NOFOLLOW, the BSDs EMLINK/EFTYPE
        if e.errno in (errno.ELOOP, errno.EMLINK, getattr(errno, "EFTYPE", -1)) \
                or _is_link(path):
            raise UnsafePath(f"{path} is a symbolic link; refusing to follow it") from e
        if e.errno == errno.ENXIO:    # a FIFO nobody reads (O_WRONLY | O_NONBLOCK)
            raise UnsafePath(f"{path} is not a regular file") from e
        raise
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise UnsafePath(f"{path} is not a regular file ({describe(st)})")
        me = euid()
        if ours and me is not None and st.st_uid != me:
            raise UnsafePath(f"{path} is {describe(st)}, not this user's ({_user(me)})")
        if max_links is not None and st.st_nlink > max_links:
            raise UnsafePath(f"{path} has {st.st_nlink} hard links (another name for a file "
                             "elsewhere); refusing to write through it")
    except BaseException:
        os.close(fd)
        raise
    return fd


def _is_link(path: PathLike) -> bool:
    try:
        return stat.S_ISLNK(os.lstat(path).st_mode)
    except OSError:
        return False


def still_at(fd: int, path: PathLike) -> bool:
    """Is the open file `fd` still the one named `path` (not replaced or removed since)?"""
    try:
        st, now = os.fstat(fd), os.lstat(path)
    except OSError:
        return False
    return (st.st_dev, st.st_ino) == (now.st_dev, now.st_ino)


def read_small(path: PathLike, limit: int = 4096, *, ours: bool = True) -> bytes:
    """The bytes of a small file, read through a no-follow open (open_nofollow's checks).
    Raises UnsafePath when it holds more than `limit` bytes."""
    fd = open_nofollow(path, os.O_RDONLY, ours=ours)
    try:
        data = b""
        while len(data) <= limit:
            chunk = os.read(fd, limit + 1 - len(data))
            if not chunk:
                break
            data += chunk
    finally:
        os.close(fd)
    if len(data) > limit:
        raise UnsafePath(f"{path} is larger than {limit} bytes")
    return data


def dir_is_shared_unsafe(path: PathLike) -> Optional[str]:
    """Why files written under `path` could be replaced or redirected by another user: the
    directory, or one above it, is world-writable without the sticky bit (in a sticky one
    like /tmp, others cannot rename or remove our entries). None when it is fine. A path
    that does not exist yet is judged by the directories above it."""
    p = Path(os.path.abspath(path))
    for d in (p, *p.parents):
        try:
            st = os.stat(d)
        except OSError:
            continue
        if not stat.S_ISDIR(st.st_mode):
            continue
        if st.st_mode & stat.S_IWOTH and not st.st_mode & stat.S_ISVTX:
            where = "" if d == p else f" (it is under {d})"
            return (f"{d} is writable by every user and has no sticky bit ({describe(st)})"
                    f"{where}: another user could replace or redirect the files written "
                    "there; use a directory of your own, or chmod +t it")
    return None


# -- spreadsheet cells -----------------------------------------------------------------------
# A cell that begins with one of these is a formula to Excel/LibreOffice/Sheets (OWASP "CSV
# injection"); a run name is user input that ends up in emissions.csv.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_PLAIN_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")


def csv_cell(value: Any) -> Any:
    """A value for a CSV cell a spreadsheet will open: a string that a spreadsheet would run
    as a formula gets a leading single quote (OWASP); plain numbers ("-1.5") and non-strings
    are unchanged. A carriage return becomes a line feed: Python's csv writer (line
    terminator "\n") quotes a cell holding "\n" but not one holding a lone "\r", which every
    reader takes for the end of the row (a name could forge rows)."""
    if not isinstance(value, str):
        return value
    if value.startswith(FORMULA_START) and not _PLAIN_NUMBER.fullmatch(value):
        value = "'" + value
    return value.replace("\r\n", "\n").replace("\r", "\n") if "\r" in value else value


__all__ = ["UnsafePath", "csv_cell", "describe", "dir_is_shared_unsafe", "euid",
           "open_nofollow", "private_dir", "read_small", "still_at"]
