"""Shared-machine file safety, attacked for real: another user (mallory) squats the lock
directories, plants symbolic links and FIFOs, holds locks; the victim's files stay untouched and
its GPUs are still measured. Spreadsheet formulas in run names are neutralised.

The two-user tests need root (as in CI): forked children drop to uid/gid 65534 (mallory) and
65533 (the victim, not root, so the permission model is real). Without root they skip; the
one-user checks (links planted by yourself, modes) run anyway.
"""

from __future__ import annotations

import csv
import fcntl  # (and pwd) loaded before children that may not read the stdlib: see warm_up
import hashlib
import json
import logging
import os
import pickle
import pwd  # noqa: F401
import shutil
import stat
import subprocess
import sys
import tempfile
import textwrap
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable

import pytest
from conftest import UUIDS, Constant, FakeGPU

from tracker import ConfigError, track
from tracker.job import claims
from tracker.job.claims import ClaimBook, find_lock_root
from tracker.rundir.runlog import RunLog, append_emissions_row, upsert_emissions_row
from tracker.safefs import (
    UnsafePath,
    csv_cell,
    dir_is_shared_unsafe,
    open_nofollow,
    private_dir,
    read_small,
)

MALLORY = 65534
VICTIM = 65533
PRECIOUS = b"my precious data\n\x00\xff binary too\n"
FAST = dict(rate_hz=50, counter_interval_s=0.2, cpu=False, ram=False, job_timeout_s=0)
two_users = pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() != 0,
    reason="needs root to play two users (forked children drop to uid 65534 and 65533)")


# -- playing other users --------------------------------------------------------------------------
def _drop(uid: int) -> None:
    os.setgroups([])
    os.setgid(uid)
    os.setuid(uid)


def as_user(uid: int, fn: Callable[..., Any], *args: Any, **kw: Any) -> Any:
    """fn(*args, **kw) in a forked child running as `uid`; its result (or its traceback)
    back. The child can only import what is readable to `uid`: the test imports the modules
    its code paths need first (see warm_up)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:   # the child: never returns into pytest
        try:
            os.close(r)
            try:
                _drop(uid)
                out: tuple[str, Any] = ("ok", fn(*args, **kw))
            except BaseException:
                out = ("error", traceback.format_exc())
            with os.fdopen(w, "wb") as f:
                pickle.dump(out, f)
        finally:
            os._exit(0)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        data = f.read()
    os.waitpid(pid, 0)
    status, value = pickle.loads(data)
    if status != "ok":
        pytest.fail(f"the child running as uid {uid} failed:\n{value}")
    return value


@contextmanager
def held_as(uid: int, fn: Callable[..., Any], *args: Any, **kw: Any) -> Iterator[None]:
    """fn(*args, **kw) in a child running as `uid` that then stays alive (holding what it opened,
    locks included) until the block ends."""
    ready_r, ready_w = os.pipe()
    stop_r, stop_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(ready_r)
            os.close(stop_w)
            _drop(uid)
            keep = fn(*args, **kw)   # noqa: F841 (held open until this process ends)
            os.write(ready_w, b"ok")
            os.read(stop_r, 1)     # until the parent closes its end
        except BaseException:
            os.write(ready_w, traceback.format_exc().encode()[:4000])
        finally:
            os._exit(0)
    os.close(ready_w)
    os.close(stop_r)
    try:
        said = os.read(ready_r, 4096)
        assert said == b"ok", f"the child running as uid {uid} failed:\n{said.decode()}"
        yield
    finally:
        os.close(stop_w)
        os.close(ready_r)
        os.waitpid(pid, 0)


@pytest.fixture
def world() -> Iterator[Path]:
    """A directory every test user can reach, with stand-ins for /dev/shm and /tmp (mode 1777)
    and the victim's private home holding precious.txt. Made under the system temp directory,
    not tmp_path: pytest keeps its base directory 0700 (and tightens it again whenever another
    session starts), so dropped users could not reach anything under tmp_path reliably."""
    base = Path(tempfile.mkdtemp(prefix="et-security-"))
    try:
        os.chmod(base, 0o755)
        for shared in ("shm", "tmp", "out"):
            (base / shared).mkdir()
            os.chmod(base / shared, 0o1777)
        home = base / "victim"
        home.mkdir(mode=0o700)
        (home / "precious.txt").write_bytes(PRECIOUS)
        if os.geteuid() == 0:
            for p in (home, home / "precious.txt"):
                os.chown(p, VICTIM, VICTIM)
        yield base
    finally:
        shutil.rmtree(base, ignore_errors=True)


def use_roots(world: Path) -> None:
    """In a victim child: the lock candidates are the world's shm and tmp (no XDG, no override)."""
    for var in (claims.ENV_LOCK_DIR, "XDG_RUNTIME_DIR"):
        os.environ.pop(var, None)
    claims.SHM_DIR = world / "shm"
    tempfile.tempdir = str(world / "tmp")


def squat(world: Path, where: str, uid: int, *, job_key: str = "", link_to: str = "",
          hold: str = "") -> Any:
    """Mallory's move: make the victim's lock directory first, world-writable; plant links in
    the job's claim directory to the victim's file, or hold a lock on a world-writable claim."""
    root = world / where / f"energy-tracker-{uid}"
    root.mkdir()
    os.chmod(root, 0o777)
    if not job_key:
        return None
    sub = root / hashlib.sha1(job_key.encode()).hexdigest()[:16]
    sub.mkdir()
    os.chmod(sub, 0o777)
    for key in (f"dev-{UUIDS[0]}", f"dev-{UUIDS[1]}"):
        if link_to:
            os.symlink(link_to, sub / f"{key}.lock")
    if hold:
        fd = os.open(sub / f"{hold}.lock", os.O_RDWR | os.O_CREAT, 0o666)
        os.fchmod(fd, 0o666)
        os.write(fd, json.dumps({"pid": 666, "rank": 0, "run_dir": "/home/mallory"}).encode())
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return fd
    return None


# -- claims: two users ----------------------------------------------------------------------------
@two_users
def test_squatted_lock_dir_with_links_leaves_the_victims_file_alone(world):
    precious = world / "victim" / "precious.txt"
    as_user(MALLORY, squat, world, "shm", VICTIM, job_key="job-x", link_to=str(precious))

    def victim() -> dict[str, Any]:
        use_roots(world)
        book = ClaimBook("job-x", {"pid": os.getpid(), "rank": 0})
        got = [book.try_claim(f"dev-{u}") for u in UUIDS[:2]]
        out = {"got": got, "error": book.error, "notes": book.notes, "dir": str(book.dir),
               "holder": book.holder(f"dev-{UUIDS[0]}"), "mode": os.stat(book.dir).st_mode}
        book.release()
        return out

    out = as_user(VICTIM, victim)
    assert precious.read_bytes() == PRECIOUS           # byte for byte
    assert out["error"] is None and out["got"] == [True, True]
    assert out["dir"].startswith(str(world / "tmp" / f"energy-tracker-{VICTIM}"))
    assert stat.S_IMODE(out["mode"]) == 0o700
    (note,) = out["notes"]
    assert str(world / "shm" / f"energy-tracker-{VICTIM}") in note
    assert f"uid {MALLORY}" in note and "0777" in note
    assert out["holder"]["rank"] == 0                   # the victim's own record


@two_users
def test_a_lock_held_by_another_user_does_not_stop_measurement(world):
    with held_as(MALLORY, squat, world, "shm", VICTIM, job_key="job-x",
                 hold=f"dev-{UUIDS[0]}"):
        def victim() -> dict[str, Any]:
            use_roots(world)
            book = ClaimBook("job-x", {"pid": os.getpid(), "rank": 0})
            try:
                return {"got": book.try_claim(f"dev-{UUIDS[0]}"),
                        "holder": book.holder(f"dev-{UUIDS[0]}"), "notes": book.notes}
            finally:
                book.release()

        out = as_user(VICTIM, victim)
    assert out["got"] is True
    assert out["holder"]["pid"] != 666                  # not mallory's JSON
    assert f"uid {MALLORY}" in out["notes"][0]


JOB_ENV = dict(WORLD_SIZE="2", LOCAL_WORLD_SIZE="2", ENERGY_TRACKER_NODE="node-a",
               TORCHELASTIC_RESTART_COUNT="0")
NOT_A_JOB = ("TORCHELASTIC_RUN_ID", "MASTER_ADDR", "MASTER_PORT", "ENERGY_TRACKER_JOB")


def _job_run(out_dir: Path) -> dict[str, Any]:
    """A job rank tracking the fake GPUs; what its run says."""
    with track("victim", job="unit", output_dir=out_dir, **FAST) as run:
        time.sleep(0.2)
    manifest = json.loads((run.run_dir / "run.json").read_text())
    return {"devices": [d.details["uuid"] for d in run.summary.devices],
            "energy_j": run.summary.energy_j, "notes": list(run.summary.notes),
            "claims": manifest["job"]["claims"]}


def _victim_run(world: Path, local_rank: int) -> dict[str, Any]:
    """_job_run as local rank `local_rank`, in a victim child (its environment is its own)."""
    use_roots(world)
    for var in NOT_A_JOB:
        os.environ.pop(var, None)
    os.environ.update(JOB_ENV, RANK=str(local_rank), LOCAL_RANK=str(local_rank))
    return _job_run(world / "victim" / "runs")


def warm_up(monkeypatch, base: Path) -> None:
    """The victim's run once as root in this process, with its shm root squatted, so every
    module it imports lazily is loaded before a child that cannot read them (the Python
    installation may be under /root) runs it."""
    for d in ("shm", "tmp"):
        (base / d).mkdir()
        os.chmod(base / d, 0o1777)
    squatted = base / "shm" / f"energy-tracker-{os.geteuid()}"
    squatted.mkdir()
    os.chmod(squatted, 0o777)
    os.chown(squatted, MALLORY, MALLORY)
    for var in (*NOT_A_JOB, claims.ENV_LOCK_DIR, "XDG_RUNTIME_DIR"):
        monkeypatch.delenv(var, raising=False)
    for k, v in dict(JOB_ENV, RANK="0", LOCAL_RANK="0").items():
        monkeypatch.setenv(k, v)
    monkeypatch.setattr(claims, "SHM_DIR", base / "shm")
    monkeypatch.setattr(tempfile, "tempdir", str(base / "tmp"))
    out = _job_run(base / "runs")
    assert any("lock directory refused" in n for n in out["notes"])


def _two_gpus(fake_nvml) -> None:
    fake_nvml(FakeGPU(uuid=UUIDS[0], profile=Constant(300.0)),
              FakeGPU(uuid=UUIDS[1], profile=Constant(200.0)))


@two_users
def test_squatted_shm_root_measures_through_the_next_root(fake_nvml, world, tmp_path,
                                                         monkeypatch):
    _two_gpus(fake_nvml)
    warm_up(monkeypatch, tmp_path)
    as_user(MALLORY, squat, world, "shm", VICTIM)
    out = as_user(VICTIM, _victim_run, world, 0)
    assert out["devices"] == [UUIDS[0]] and out["energy_j"] > 0
    own = next(c for c in out["claims"] if c["device"] == "gpu0")
    assert own["measured_here"] is True and "measured_by" not in own
    refused = [n for n in out["notes"] if "lock directory refused" in n]
    assert refused and f"uid {MALLORY}" in refused[0]
    assert str(world / "shm" / f"energy-tracker-{VICTIM}") in refused[0]


@two_users
def test_every_root_squatted_falls_back_to_the_local_rank(fake_nvml, world, tmp_path,
                                                          monkeypatch):
    _two_gpus(fake_nvml)
    warm_up(monkeypatch, tmp_path)
    for where in ("shm", "tmp"):
        as_user(MALLORY, squat, world, where, VICTIM)
    out = as_user(VICTIM, _victim_run, world, 1)
    assert out["devices"] == [UUIDS[1]] and out["energy_j"] > 0     # LOCAL_RANK 1's GPU
    (note,) = [n for n in out["notes"] if "device claims unavailable" in n]
    assert f"uid {MALLORY}" in note
    assert str(world / "tmp" / f"energy-tracker-{VICTIM}") in note


@two_users
def test_holder_is_not_read_from_another_users_file(world):
    lock_dir = world / "victim" / "locks"
    lock_dir.mkdir(mode=0o700)
    sub = lock_dir / hashlib.sha1(b"job-y").hexdigest()[:16]
    sub.mkdir(mode=0o700)
    planted = sub / "dev-x.lock"
    planted.write_text(json.dumps({"pid": 666}))
    os.chmod(planted, 0o666)     # even writable by all: still not trusted
    for p in (lock_dir, sub):
        os.chown(p, VICTIM, VICTIM)
    os.chown(planted, MALLORY, MALLORY)    # say an admin copied mallory's file in

    def victim() -> Any:
        os.environ[claims.ENV_LOCK_DIR] = str(lock_dir)
        book = ClaimBook("job-y", {"pid": os.getpid()})
        try:
            read_small(planted)
        except UnsafePath as e:
            why = str(e)
        return book.holder("dev-x"), book.try_claim("dev-x"), book.error, why

    holder, got, error, why = as_user(VICTIM, victim)
    assert holder is None and not got
    assert f"uid {MALLORY}" in error and f"uid {MALLORY}" in why


# -- claims and run directories: one user ---------------------------------------------------------
def test_private_dir_checks(tmp_path):
    made = private_dir(tmp_path / "a" / "locks")
    assert stat.S_IMODE(made.stat().st_mode) == 0o700
    loose = tmp_path / "loose"
    loose.mkdir()
    os.chmod(loose, 0o777)
    with pytest.raises(UnsafePath, match=r"writable by group or others .*mode 0777"):
        private_dir(loose)
    old = tmp_path / "old"      # made 0755 by an older version: ours, only readable: tightened
    old.mkdir()
    os.chmod(old, 0o755)
    assert stat.S_IMODE(private_dir(old).stat().st_mode) == 0o700
    os.symlink(made, tmp_path / "link")
    with pytest.raises(UnsafePath, match="symbolic link"):
        private_dir(tmp_path / "link")
    (tmp_path / "file").write_text("")
    with pytest.raises(UnsafePath, match="not a directory"):
        private_dir(tmp_path / "file")


def test_a_loose_lock_dir_override_is_refused_and_the_local_rank_measures(fake_nvml,
                                                                          tmp_path,
                                                                          monkeypatch):
    _two_gpus(fake_nvml)
    loose = tmp_path / "locks"
    loose.mkdir()
    os.chmod(loose, 0o777)
    monkeypatch.setenv(claims.ENV_LOCK_DIR, str(loose))
    for var in ("TORCHELASTIC_RUN_ID", "MASTER_ADDR", "MASTER_PORT", "ENERGY_TRACKER_JOB"):
        monkeypatch.delenv(var, raising=False)
    for k, v in dict(RANK="1", LOCAL_RANK="1", WORLD_SIZE="2", LOCAL_WORLD_SIZE="2",
                     ENERGY_TRACKER_NODE="node-a", TORCHELASTIC_RESTART_COUNT="0").items():
        monkeypatch.setenv(k, v)
    with track("loose", job="unit", output_dir=tmp_path / "runs", **FAST) as run:
        time.sleep(0.1)
    assert [d.details["uuid"] for d in run.summary.devices] == [UUIDS[1]]
    (note,) = [n for n in run.summary.notes if "device claims unavailable" in n]
    assert str(loose) in note and "0777" in note
    assert list(loose.iterdir()) == []     # nothing was written into it


def test_candidates_skip_a_runtime_dir_that_is_not_private(tmp_path):
    xdg = tmp_path / "run-user"
    xdg.mkdir(mode=0o755)
    os.chmod(xdg, 0o755)
    env = {"XDG_RUNTIME_DIR": str(xdg)}
    assert xdg / "energy-tracker" not in claims.lock_dir_candidates(env)
    os.chmod(xdg, 0o700)
    assert claims.lock_dir_candidates(env)[0] == xdg / "energy-tracker"
    found = find_lock_root(env)
    assert found.path == xdg / "energy-tracker" and not found.refused
    assert stat.S_IMODE(found.path.stat().st_mode) == 0o700


def test_a_claim_file_planted_as_a_link_is_not_followed(tmp_path):
    victim_file = tmp_path / "precious.txt"
    victim_file.write_bytes(PRECIOUS)
    book = ClaimBook("job-z", {"pid": os.getpid()}, root=tmp_path / "locks")
    assert book.error is None
    os.symlink(victim_file, book.dir / "dev-GPU-1.lock")
    assert not book.try_claim("dev-GPU-1")
    assert "symbolic link" in (book.error or "")
    assert book.holder("dev-GPU-1") is None
    assert victim_file.read_bytes() == PRECIOUS


def test_holder_is_size_capped(tmp_path):
    book = ClaimBook("job-big", {"pid": 1}, root=tmp_path / "locks")
    (book.dir / "dev-big.lock").write_text(json.dumps({"pad": "x" * 5000}))
    (book.dir / "dev-list.lock").write_text("[1, 2]")
    (book.dir / "dev-ok.lock").write_text('{"pid": 7}')
    assert book.holder("dev-big") is None
    assert book.holder("dev-list") is None
    assert book.holder("dev-ok") == {"pid": 7}


@pytest.mark.parametrize("name", [".lock", "samples.jsonl"])
def test_run_dir_files_planted_as_links_are_not_followed(tmp_path, name):
    victim_file = tmp_path / "precious.txt"
    victim_file.write_bytes(PRECIOUS)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    os.symlink(victim_file, run_dir / name)
    with pytest.raises(ConfigError, match="symbolic link"):
        RunLog(run_dir)
    assert victim_file.read_bytes() == PRECIOUS


def test_open_nofollow_refuses_a_fifo_without_blocking(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(UnsafePath, match="not a regular file"):
        open_nofollow(fifo, os.O_WRONLY)
    with pytest.raises(UnsafePath, match="not a regular file"):
        open_nofollow(fifo, os.O_RDONLY)


def test_rotation_continues_in_a_fresh_plain_file(tmp_path):
    log = RunLog(tmp_path / "run")
    log.append({"t": 1.0})
    rotated = log.rotate(0)
    log.append({"t": 2.0})
    log.close()
    live = tmp_path / "run" / "samples.jsonl"
    assert stat.S_ISREG(os.lstat(live).st_mode)
    assert os.lstat(live).st_ino != os.lstat(rotated).st_ino
    assert live.read_text() == '{"t":2.0}\n' and rotated.read_text() == '{"t":1.0}\n'


# -- emissions.csv --------------------------------------------------------------------------------
OTHER_CSV = b"timestamp,project_name,run_id\n2025-01-01T00:00:00,elsewhere,r1\n"
ROW = {"timestamp": "2026-01-01T00:00:00", "project_name": "mine", "run_id": "r1",
       "emissions": 0.5}


def _plant(kind: str, target: Path, at: Path) -> None:
    if kind == "symlink":
        os.symlink(target, at)
    elif kind == "hardlink":
        os.link(target, at)
    elif kind == "fifo":
        os.mkfifo(at)
    else:   # a file that is not an emissions.csv: its first line is no header
        at.write_bytes(PRECIOUS)


@pytest.mark.parametrize("kind", ["symlink", "hardlink", "fifo", "not-a-header"])
@pytest.mark.parametrize("upsert", [False, True])
def test_a_planted_emissions_csv_is_refused_with_one_warning(tmp_path, caplog, kind, upsert):
    # the link points at the victim's own other emissions file: a header would not stop it
    target = tmp_path / "elsewhere.csv"
    target.write_bytes(OTHER_CSV)
    out = tmp_path / "out"
    out.mkdir()
    _plant(kind, target, out / "emissions.csv")
    before = os.lstat(out / "emissions.csv")
    with caplog.at_level(logging.WARNING, logger="tracker"):
        (upsert_emissions_row if upsert else append_emissions_row)(out, dict(ROW))
    assert target.read_bytes() == OTHER_CSV
    after = os.lstat(out / "emissions.csv")
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    (warning,) = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert str(out / "emissions.csv") in warning.getMessage()
    assert [p.name for p in out.iterdir()] == ["emissions.csv"]    # no temp file left
    if kind == "not-a-header":
        assert (out / "emissions.csv").read_bytes() == PRECIOUS


def test_an_older_codecarbon_file_is_written_in_its_columns(tmp_path):
    path = tmp_path / "emissions.csv"
    path.write_text("timestamp,project_name,run_id,duration,emissions\n"
                    "2025-01-01T00:00:00,old,r0,1.0,0.1")         # last row cut (no newline)
    append_emissions_row(tmp_path, dict(ROW))
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["run_id"] for r in rows] == ["r0", "r1"]
    assert rows[1]["emissions"] == "0.5" and rows[1]["duration"] == ""


@two_users
def test_mallorys_emissions_link_in_a_shared_output_dir(world):
    precious = world / "victim" / "precious.txt"
    out = world / "out"                                           # 1777, like /tmp

    def mallory() -> None:
        os.symlink(precious, out / "emissions.csv")
        (out / "other").mkdir(mode=0o777)
        os.chmod(out / "other", 0o777)
        # a world-writable file of mallory's with a real header: no victim row goes into it
        with open(out / "other" / "emissions.csv", "w") as f:
            f.write("timestamp,project_name,run_id\n")
        os.chmod(out / "other" / "emissions.csv", 0o666)
    as_user(MALLORY, mallory)
    os.chmod(out / "other", 0o1777)     # sticky, as a shared dir should be

    def victim() -> list[str]:
        seen: list[str] = []

        class Keep(logging.Handler):
            def emit(self, record: logging.LogRecord) -> None:
                seen.append(record.getMessage())
        logging.getLogger("tracker").addHandler(Keep())
        append_emissions_row(out, dict(ROW))
        upsert_emissions_row(out, dict(ROW))
        append_emissions_row(out / "other", dict(ROW))
        return seen

    seen = as_user(VICTIM, victim)
    assert precious.read_bytes() == PRECIOUS
    assert (out / "other" / "emissions.csv").read_text() == "timestamp,project_name,run_id\n"
    assert len(seen) == 3 and "symbolic link" in seen[0] and f"uid {MALLORY}" in seen[2]


def test_upsert_replaces_the_file_atomically(tmp_path):
    path = tmp_path / "emissions.csv"
    append_emissions_row(tmp_path, dict(ROW, run_id="job", emissions=1.0))
    append_emissions_row(tmp_path, dict(ROW, run_id="other", project_name="multi\nline"))
    first = os.stat(path).st_ino
    with open(path, "rb") as reader:            # a reader of the old file sees it whole
        upsert_emissions_row(tmp_path, dict(ROW, run_id="job", emissions=2.0))
        old = reader.read()
    assert os.stat(path).st_ino != first                   # a new file, renamed in
    assert b"1.0" in old and b"2.0" not in old
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(r["run_id"], r["emissions"]) for r in rows] == [("job", "2.0"), ("other", "0.5")]
    assert rows[1]["project_name"] == "multi\nline"         # a quoted line break survives
    assert [p.name for p in tmp_path.iterdir()] == ["emissions.csv"]


def test_concurrent_appends_and_upserts_lose_nothing(tmp_path):
    n = 50
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(Path(__file__).parent.parent)!r})
        from pathlib import Path
        from tracker.rundir.runlog import append_emissions_row, upsert_emissions_row
        me, root = sys.argv[1], Path(sys.argv[2])
        for i in range({n}):
            append_emissions_row(root, {{"project_name": me, "run_id": f"{{me}}-{{i}}",
                                         "emissions": i}})
            upsert_emissions_row(root, {{"project_name": me, "run_id": f"job-{{me}}",
                                         "emissions": i}})
    """)
    procs = [subprocess.Popen([sys.executable, "-c", script, name, str(tmp_path)])
             for name in ("a", "b")]
    for p in procs:
        assert p.wait(120) == 0
    with open(tmp_path / "emissions.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    ids = [r["run_id"] for r in rows]
    assert len(rows) == 2 * n + 2 and len(set(ids)) == len(ids)
    assert {r["emissions"] for r in rows if r["run_id"].startswith("job-")} == {str(n - 1)}
    assert all(None not in r for r in rows)                 # no torn rows


def test_formulas_in_cells_are_neutralised(tmp_path):
    row = dict(ROW, project_name='=HYPERLINK("http://evil/","x")', cpu_model="+cmd|' /C calc'!A0",
               gpu_model="@SUM(1+1)", region="-2+3", country_name="\tx", os="\rx",
               cloud_region="-1.5", duration=-2.0, emissions=1e-3, gpu_count=-3)
    append_emissions_row(tmp_path, row)
    with open(tmp_path / "emissions.csv", newline="") as f:
        (got,) = list(csv.DictReader(f))
    assert got["project_name"] == '\'=HYPERLINK("http://evil/","x")'
    assert got["cpu_model"] == "'+cmd|' /C calc'!A0"
    assert got["gpu_model"] == "'@SUM(1+1)" and got["region"] == "'-2+3"
    assert got["country_name"] == "'\tx" and got["os"] == "'\nx"   # CR: a quoted LF
    assert got["cloud_region"] == "-1.5"                  # a plain number stays
    assert (got["duration"], got["emissions"], got["gpu_count"]) == ("-2.0", "0.001", "-3")


def test_a_carriage_return_in_a_name_cannot_forge_a_row(tmp_path):
    forged = "x\r2026-01-01T00:00:00,forged,forged-run"
    append_emissions_row(tmp_path, dict(ROW, project_name=forged))
    with open(tmp_path / "emissions.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["run_id"] for r in rows] == ["r1"]
    assert rows[0]["project_name"] == forged.replace("\r", "\n")


def test_a_formula_run_name_reaches_the_file_neutralised(fake_nvml, tmp_path):
    fake_nvml(FakeGPU(uuid=UUIDS[0], profile=Constant(300.0)))
    name = '=HYPERLINK("http://evil/","x")'
    with track(name, output_dir=tmp_path, rate_hz=50, cpu=False, ram=False) as run:
        time.sleep(0.05)
    with open(tmp_path / "emissions.csv", newline="") as f:
        (got,) = list(csv.DictReader(f))
    assert got["project_name"] == "'" + name
    assert got["run_id"] == run.summary.run_id and float(got["gpu_energy"]) > 0


def test_csv_cell():
    assert [csv_cell(v) for v in ("=1", "+1", "-1", "1e5", "-1.5e-3", "-", "@", "a=b", "")] \
        == ["'=1", "+1", "-1", "1e5", "-1.5e-3", "'-", "'@", "a=b", ""]
    assert csv_cell(-1.5) == -1.5 and csv_cell(None) is None


# -- shared output directories --------------------------------------------------------------------
def test_dir_is_shared_unsafe(tmp_path):
    open_dir = tmp_path / "open"
    open_dir.mkdir()
    os.chmod(open_dir, 0o777)
    assert "no sticky bit" in (dir_is_shared_unsafe(open_dir) or "")
    below = dir_is_shared_unsafe(open_dir / "mine" / "runs")      # not made yet
    assert below is not None and f"under {open_dir}" in below
    os.chmod(open_dir, 0o1777)
    assert dir_is_shared_unsafe(open_dir) is None
    assert dir_is_shared_unsafe(open_dir / "mine") is None
    assert dir_is_shared_unsafe(tmp_path) is None
