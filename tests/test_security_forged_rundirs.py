"""Forged run and job directories (issue 18: hostile input). A real small job is made with the
fake NVML, then copies are forged: sparse 2 GiB files, a 2 GiB line, NUL runs, gzip bombs, deep
nesting, 1e308 / NaN / Infinity, wrong types, a steps.bin whose block claims more than the file
holds. `report`, `report --json`, `report --rebuild`, `report --html` and `merge` run on each
in a child `python -m tracker` under RLIMIT_AS 1 GiB (a blow-up fails fast instead of swapping a
shared machine): exit 0 or 2, at most a one-line error, never a traceback, peak RSS < 500 MB."""

from __future__ import annotations

import gzip
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import textwrap
import threading
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable

import pytest

ROOT = Path(__file__).resolve().parent.parent
GIB = 1 << 30
AS_LIMIT = GIB
RSS_LIMIT_MB = 500
TIMEOUT_S = 120

MAKE_JOB = textwrap.dedent("""
    import os, sys, time
    sys.path.insert(0, sys.argv[2])
    import fake_nvml
    sys.modules["pynvml"] = fake_nvml.FakeNVML([fake_nvml.FakeGPU()])
    import tracker.rundir.snapshot as snapshot
    snapshot.SEGMENT_S = 0.4          # so the run checkpoints: snapshot.json, timeline.*.gz
    from tracker import track
    with track("forge", output_dir=sys.argv[1], cpu=False, ram=False, rate_hz=50,
               counter_interval_s=0.2) as run:
        for _ in run.epochs(range(2)):
            for _ in run.steps(range(10)):
                time.sleep(0.02)
            with run.window("eval", kind="eval"):
                time.sleep(0.2)
        # no checkpoint at the very end, so samples.jsonl has lines after the last rotation
        # (on a fast machine the last rotation could otherwise leave it empty)
        run._ticks.checkpoints.segment_s = 1e9
        deadline = time.monotonic() + 30
        while run.run_dir.joinpath("samples.jsonl").stat().st_size == 0 \
                and time.monotonic() < deadline:
            time.sleep(0.05)
    print(run.run_dir)
""")


def _env(tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENERGY_TRACKER_")
           and k not in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE",
                         "TORCHELASTIC_RUN_ID", "MASTER_ADDR", "MASTER_PORT",
                         "CUDA_VISIBLE_DEVICES", "TORCHELASTIC_RESTART_COUNT")}
    env.update(PYTHONPATH=str(ROOT), OPENBLAS_NUM_THREADS="1",
               ENERGY_TRACKER_REPORT_HTML="0",
               ENERGY_TRACKER_HWMON_ROOT="/nonexistent/energy-tracker-tests/hwmon",
               ENERGY_TRACKER_LOCK_DIR=str(tmp / "locks"))
    return env


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A finished one-rank job (its member run has windows, steps.bin, a snapshot and
    condensed timelines), made by a child process so nothing of it stays in this one."""
    tmp = tmp_path_factory.mktemp("forge-base")
    env = _env(tmp)
    env.update(RANK="0", LOCAL_RANK="0", WORLD_SIZE="1", LOCAL_WORLD_SIZE="1",
               ENERGY_TRACKER_NODE="node-a", ENERGY_TRACKER_JOB="forged")
    out = subprocess.run([sys.executable, "-c", MAKE_JOB, str(tmp / "out"),
                          str(ROOT / "tests" / "fakes")], env=env, capture_output=True,
                         text=True, timeout=120, cwd=tmp)
    assert out.returncode == 0, out.stderr
    member = Path(out.stdout.strip().splitlines()[-1])
    for f in ("summary.json", "run.json", "snapshot.json", "steps.bin", "samples.jsonl",
              "timeline.0.jsonl.gz"):
        assert (member / f).is_file(), f
    assert (member / "samples.jsonl").stat().st_size > 0, "samples.jsonl has no lines to forge"
    run = tmp / "run"
    shutil.copytree(member, run)
    (run / ".lock").unlink(missing_ok=True)
    # the run's owner (the child) has ended: a rebuild reads it as ended, not running
    return {"run": run, "job": member.parent.parent, "env": tmp}


# -- forgeries ------------------------------------------------------------------------------------
def sparse_tail(name: str, size: int = 2 * GIB) -> Callable[[Path], None]:
    """The file grown to `size` with a hole: NUL bytes that take no disk."""
    def forge(d: Path) -> None:
        os.truncate(d / name, size)
    return forge


def long_line(name: str, prefix: bytes = b'{"t": 1.0, "d": "', size: int = 2 * GIB):
    """One line of `size` bytes (a prefix, then a hole of NULs), then a good line."""
    def forge(d: Path) -> None:
        p = d / name
        good = p.read_bytes().splitlines(keepends=True)[-1] if p.exists() else b""
        with open(p, "ab") as f:
            f.write(prefix)
        os.truncate(p, p.stat().st_size + size)
        with open(p, "ab") as f:
            f.write(b"\n" + good)
    return forge


def nul_run(name: str, n: int = 1 << 20) -> Callable[[Path], None]:
    """A run of NULs in the middle of the file (a filesystem's zeroed block after a crash)."""
    def forge(d: Path) -> None:
        data = (d / name).read_bytes()
        mid = data.index(b"\n", len(data) // 2) + 1
        (d / name).write_bytes(data[:mid] + b"\0" * n + data[mid:])
    return forge


def append(name: str, *lines: bytes) -> Callable[[Path], None]:
    def forge(d: Path) -> None:
        with open(d / name, "ab") as f:
            for line in lines:
                f.write(line + b"\n")
    return forge


def replace(name: str, data: bytes) -> Callable[[Path], None]:
    def forge(d: Path) -> None:
        (d / name).write_bytes(data)
    return forge


def edit_json(name: str, change: Callable[[Any], Any], raw: bool = False
              ) -> Callable[[Path], None]:
    """Rewrite a JSON file through `change` (raw: `change` returns the bytes to write)."""
    def forge(d: Path) -> None:
        obj = json.loads((d / name).read_text())
        out = change(obj)
        (d / name).write_bytes(out if raw else json.dumps(out).encode())
    return forge


def setting(*path: Any, value: Any) -> Callable[[Any], Any]:
    def change(obj: Any) -> Any:
        cur = obj
        for k in path[:-1]:
            cur = cur[k]
        cur[path[-1]] = value
        return obj
    return change


def literal(*path: Any, text: str) -> Callable[[Any], bytes]:
    """Set a field to a JSON literal json.dumps would not write (NaN, 1e999, a 400-digit
    int): a marker value is replaced in the text."""
    def change(obj: Any) -> bytes:
        setting(*path, value="@@FORGED@@")(obj)
        return json.dumps(obj).replace('"@@FORGED@@"', text).encode()
    return change


def gzip_bomb(name: str, unit: bytes, total: int = 2 * GIB) -> Callable[[Path], None]:
    """A gzip file that inflates to `total` bytes of `unit`: one compressed member of 64 MiB,
    repeated (gzip readers inflate concatenated members as one stream); a few MB on disk."""
    def forge(d: Path) -> None:
        block = 64 << 20
        c = zlib.compressobj(9, zlib.DEFLATED, 31)   # 31: a gzip member
        chunk = unit * (block // len(unit))
        member = c.compress(chunk) + c.flush()
        with open(d / name, "wb") as f:
            for _ in range(total // block):
                f.write(member)
    return forge


def steps_head(n: int, size: int = 0) -> Callable[[Path], None]:
    """steps.bin: the real blocks, then a block head claiming `n` steps (sparse to `size`)."""
    def forge(d: Path) -> None:
        import struct
        with open(d / "steps.bin", "ab") as f:
            f.write(struct.pack("<4sI", b"STB1", n))
        if size:
            os.truncate(d / "steps.bin", size)
    return forge


def fifo(name: str) -> Callable[[Path], None]:
    def forge(d: Path) -> None:
        (d / name).unlink(missing_ok=True)
        os.mkfifo(d / name)
    return forge


def drop_summary(forge: Callable[[Path], None]) -> Callable[[Path], None]:
    """The forgery, with summary.json removed so that `report` has to rebuild from the logs."""
    def both(d: Path) -> None:
        forge(d)
        (d / "summary.json").unlink(missing_ok=True)
    return both


DEEP = b"[" * 100_000
DEEP_OBJ = b'{"a":' * 100_000
S = "samples.jsonl"
TL = "timeline.0.jsonl.gz"

# name -> forgery of a run directory; "html" marks the cases also reported with --html
RUN_CASES: dict[str, tuple[Callable[[Path], None], bool]] = {
    "samples-2gib-sparse": (drop_summary(sparse_tail(S)), True),
    "samples-2gib-line": (drop_summary(long_line(S)), True),
    "samples-nul-run": (drop_summary(nul_run(S)), False),
    "samples-deep-array": (drop_summary(append(S, DEEP)), True),
    "samples-deep-in-record": (drop_summary(append(S, b'{"t": 1.0, "d": ' + DEEP_OBJ)), False),
    "samples-t-1e308": (drop_summary(append(S, b'{"t": 1e308, "d": {}}')), True),
    "samples-t-minus-1e308": (drop_summary(append(S, b'{"t": -1e308}')), False),
    "samples-t-huge-int": (drop_summary(append(S, b'{"t": 1' + b"0" * 400 + b"}")), False),
    "samples-t-nan-inf": (drop_summary(append(S, b'{"t": NaN}', b'{"t": Infinity}',
                                              b'{"t": 1e999}')), False),
    "samples-reading-1e308": (drop_summary(append(
        S, b'{"t": 0.5, "d": {"gpu0": {"w": 1e308, "c": 1e308, "j": 1e308}}}',
        b'{"t": 0.6, "d": {"gpu0": {"w": 1' + b"0" * 400 + b"}}}")), True),
    "samples-intensity-1e308": (drop_summary(append(
        S, b'{"t": 0.5, "intensity": {"start_wall": 1e308, "end_wall": null, '
           b'"gco2_per_kwh": 1e308, "provider": "x", "zone": "y", "fallback": false}}')), True),
    "samples-mark-and-steps-forged": (drop_summary(append(
        S, b'{"t": 0.5, "mark": {"id": 99, "edge": "start", "name": [], "kind": {}}}',
        b'{"t": 0.6, "steps": [[1, -1, 1e308, 1e308, 1, 1, 1]]}',
        b'{"t": 0.7, "steps": [[1, -1, 0.1, 0.2, 1' + b"0" * 30 + b', 1, 1]]}',
        b'{"t": 0.8, "steps": "x"}')), False),
    "samples-fifo": (drop_summary(fifo(S)), False),
    "marks-deep-and-nan": (drop_summary(append(
        "marks-77.jsonl", b'{"t": 0.0, "joined": {"pid": 77, "identity": {"rank": "x", '
                          b'"restart": []}, "config": "x"}}', DEEP, b'{"t": NaN}',
        b'{"t": 0.5, "steps": [[1, -1, 0.1, 0.2, 1, 1, 1]]}')), False),
    "summary-nan": (edit_json("summary.json", literal("energy_j", text="NaN"), raw=True), True),
    "summary-infinity": (edit_json("summary.json", literal("duration_s", text="Infinity"),
                                   raw=True), False),
    "summary-1e308": (edit_json("summary.json", literal("facility_energy_j", text="1e308"),
                                raw=True), True),
    "summary-windows-wrong": (edit_json("summary.json", setting("windows", value=[1, "x"])),
                              True),
    "summary-components-list": (edit_json("summary.json", setting("components", value=[])),
                                False),
    "summary-devices-int": (edit_json("summary.json", setting("devices", value=3)), False),
    "summary-steps-groups-wrong": (edit_json("summary.json", setting(
        "steps", value={"count": "x", "groups": [{"start_s": "a"}], "energy_j_in_steps": 1})),
        False),
    "summary-deep": (replace("summary.json", b'{"status": "finished", "x": ' + DEEP), True),
    "summary-2gib-sparse": (sparse_tail("summary.json"), False),
    "run-json-nan-and-1e308": (edit_json("run.json", literal("start_wall", text="1e308"),
                                         raw=True), False),
    "run-json-wrong-types": (drop_summary(edit_json("run.json", lambda m: {
        **m, "devices": [1, {"name": 2}], "config": [], "host": "x", "job": 5, "pue": "x",
        "name": []})), True),
    "run-json-grid-wrong": (drop_summary(edit_json("run.json", setting(
        "grid", "gco2_per_kwh", value="x"))), False),
    "run-json-deep": (drop_summary(replace("run.json", DEEP)), False),
    "run-json-2gib-sparse": (drop_summary(sparse_tail("run.json")), False),
    "windows-json-wrong": (replace("windows.json", b'{"windows": 3}'), False),
    "snapshot-wrong-types": (drop_summary(edit_json("snapshot.json", lambda s: {
        **s, "devices": {k: {"curve": {"t": "x", "e": []}} for k in s["devices"]},
        "ledger": [], "windows": {}, "t": "x"})), True),
    "snapshot-ledger-wrong": (drop_summary(edit_json("snapshot.json", setting(
        "ledger", "groups", value={"size": -1, "count": "x", "early": 1, "groups": 2}))),
        False),
    "snapshot-window-wrong": (drop_summary(edit_json("snapshot.json", setting(
        "windows", value=[{"id": "x", "t_start": 1e300}]))), False),
    "snapshot-nan": (drop_summary(edit_json("snapshot.json", literal("t", text="NaN"),
                                            raw=True)), False),
    "snapshot-deep": (drop_summary(replace("snapshot.json", b'{"schema": 1, "d": ' + DEEP)),
                      False),
    "snapshot-2gib-sparse": (drop_summary(sparse_tail("snapshot.json")), False),
    "steps-claims-more-than-file": (drop_summary(steps_head(1 << 30)), True),
    "steps-2gib-sparse-valid-head": (drop_summary(sparse_tail("steps.bin")), False),
    "steps-head-fits-2gib": (drop_summary(steps_head((2 * GIB) // 44 - 1, 2 * GIB)), True),
    "timeline-bomb-zeros": (drop_summary(gzip_bomb(TL, b"\0")), True),
    "timeline-bomb-newlines": (drop_summary(gzip_bomb(TL, b"\n", 512 << 20)), True),
    "timeline-bomb-records": (drop_summary(gzip_bomb(TL, b'{"t": NaN}\n', 256 << 20)), False),
    "timeline-garbage": (drop_summary(replace(TL, b"\x1f\x8b\x08\x00garbage" * 100)), True),
    "timeline-deep": (drop_summary(replace(TL, gzip.compress(DEEP + b"\n"))), False),
}

MEMBER = Path("node-a") / "rank0"
JOB_CASES: dict[str, Callable[[Path], None]] = {
    "job-json-deep": replace("job.json", DEEP),
    "job-json-nan": edit_json("job.json", literal("job_uid", text="NaN"), raw=True),
    "job-json-list": replace("job.json", b"[1, 2]"),
    "job-summary-wrong-types": edit_json("summary.json", lambda s: {
        **s, "job": {"job_id": 3, "nodes": "x"}, "windows": 4}),
    "member-summary-wrong-types": edit_json(str(MEMBER / "summary.json"), lambda s: {
        **s, "devices": [{"name": 1}], "breakdown": [], "steps": {"groups": 3}}),
    "member-summary-nan": edit_json(str(MEMBER / "summary.json"),
                                    literal("emissions_kg", text="NaN"), raw=True),
    "member-run-json-wrong": edit_json(str(MEMBER / "run.json"), lambda m: {
        **m, "start_wall": "x", "job": {"identity": {"rank": "x", "restart": "y"},
                                        "ranks": ["a"]}}),
    "member-samples-2gib": drop_summary(sparse_tail(str(MEMBER / S))),
    "member-steps-forged": drop_summary(steps_head(1 << 30)),
    "member-fifo-summary": fifo(str(MEMBER / "summary.json")),
}


# -- running the CLI ------------------------------------------------------------------------------
def measured(args: list[str], env: dict[str, str], cwd: Path) -> tuple[int, str, float]:
    """(exit status, stderr, peak RSS in MB) of `python -m tracker ARGS` under RLIMIT_AS.

    The CLI runs as the child of a small launcher, which reports the child's own peak RSS
    from wait4. Not measured on a child of pytest: Linux keeps the high-water RSS of the
    process image an exec replaces (fork/vfork + exec of a 900 MB pytest reads 900 MB), and
    RUSAGE_CHILDREN is a maximum over all children (they run two at a time here). The
    launcher's own image is a few MB, so its child starts from that. Killed (the whole
    process group) after TIMEOUT_S."""
    launcher = ("import os, resource, subprocess, sys; "
                f"resource.setrlimit(resource.RLIMIT_AS, ({AS_LIMIT}, {AS_LIMIT})); "
                "c = subprocess.Popen([sys.executable, '-m', 'tracker', *sys.argv[1:]], "
                "stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL); "
                "_, st, ru = os.wait4(c.pid, 0); "
                "print(os.waitstatus_to_exitcode(st), ru.ru_maxrss, flush=True)")
    p = subprocess.Popen([sys.executable, "-c", launcher, *args], env=env, cwd=cwd,
                         stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, start_new_session=True)
    timer = threading.Timer(TIMEOUT_S, lambda: os.killpg(p.pid, signal.SIGKILL))
    timer.start()
    try:
        out, err = p.communicate()
    finally:
        timer.cancel()
    fields = out.decode("ascii", "replace").split()
    if p.returncode != 0 or len(fields) != 2:      # the launcher itself was killed
        return (p.returncode or -9), err.decode("utf-8", "replace"), 0.0
    return int(fields[0]), err[: 1 << 20].decode("utf-8", "replace"), int(fields[1]) / 1024


def check(case: str, args: list[str], result: tuple[int, str, float]) -> list[str]:
    rc, err, rss_mb = result
    problems = []
    if rc not in (0, 2):
        problems.append(f"exit {rc}")
    if "Traceback" in err or err.strip().count("\n") > 2:
        problems.append(f"stderr: {err.strip()[-400:]!r}")
    if rss_mb > RSS_LIMIT_MB:
        problems.append(f"peak RSS {rss_mb:.0f} MB")
    return [f"{case}: {' '.join(args[:2])}{' ' + args[-1] if args[-1].startswith('--') else ''}"
            f": {p}" for p in problems]


def _forge_run(base: dict[str, Path], root: Path, name: str,
               forge: Callable[[Path], None]) -> Path:
    d = root / name
    shutil.copytree(base["run"], d)
    forge(d)
    return d


def _forge_job(base: dict[str, Path], root: Path, name: str,
               forge: Callable[[Path], None]) -> Path:
    d = root / name
    shutil.copytree(base["job"], d, ignore=shutil.ignore_patterns(".lock", "report.html"))
    forge(d)
    return d


def test_forged_run_and_job_directories_never_crash_nor_blow_up(base, tmp_path):
    env, cwd = _env(base["env"]), tmp_path
    jobs: list[tuple[str, list[str]]] = []
    for name, (forge, html) in RUN_CASES.items():
        d = str(_forge_run(base, tmp_path / "runs", name, forge))
        jobs += [(name, ["report", d]), (name, ["report", d, "--rebuild"])]
        if name.startswith(("summary", "samples-t-1e308", "run-json-wrong")):
            jobs.append((name, ["report", d, "--json"]))
        if html:
            jobs.append((name, ["report", d, "--html", str(tmp_path / f"{name}.html")]))
    for name, forge in JOB_CASES.items():
        d = str(_forge_job(base, tmp_path / "jobs", name, forge))
        jobs += [(name, ["merge", d, "-o", str(tmp_path / "merged" / name)]),
                 (name, ["report", d, "--json"])]
    jobs.append(("root-table", ["report", str(tmp_path / "runs")]))
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda j: measured(j[1], env, cwd), jobs))
    problems = [p for (case, args), r in zip(jobs, results) for p in check(case, args, r)]
    assert not problems, "\n".join(problems)
    # every case was really run, and most are still reported (0), not refused (2)
    codes = [r[0] for r in results]
    assert len(codes) == len(jobs) > 100
    assert codes.count(0) > len(codes) // 2, codes
    peak = max(r[2] for r in results)
    print(f"{len(jobs)} commands on {len(RUN_CASES) + len(JOB_CASES)} forged directories; "
          f"exit 0: {codes.count(0)}, exit 2: {codes.count(2)}; peak RSS {peak:.0f} MB")


def test_the_reports_of_forged_logs_say_what_was_skipped(base, tmp_path):
    """A forged line is skipped and counted in the rebuilt summary's notes; the totals are
    those of the good lines (never nan, never an error)."""
    from tracker.rebuild import rebuild_summary

    ref = rebuild_summary(_forge_run(base, tmp_path, "ref", drop_summary(lambda d: None)))
    cases = {
        "long": long_line(S, size=64 << 20),
        "deep": append(S, DEEP, b'{"t": 1.0, "d": ' + DEEP_OBJ),
        "nonfinite": append(S, b'{"t": NaN}', b'{"t": 1e308}', b'{"t": 1' + b"0" * 400 + b"}",
                            b'{"t": 0.5, "d": {"gpu0": {"w": 1e308}}}'),
    }
    for name, forge in cases.items():
        s = rebuild_summary(_forge_run(base, tmp_path, name, drop_summary(forge)),
                            status="killed")
        assert s.energy_j == pytest.approx(ref.energy_j, rel=1e-6), name
        assert any("unreadable line" in n and "samples.jsonl skipped" in n
                   for n in s.notes), (name, s.notes)
    s = rebuild_summary(_forge_run(base, tmp_path, "steps", drop_summary(steps_head(1 << 30))),
                        status="killed")
    assert any("steps.bin is damaged" in n for n in s.notes), s.notes
    assert s.steps["count"] == ref.steps["count"]


def test_a_damaged_summary_is_rebuilt_never_printed_as_nan(base, tmp_path, capsys):
    from tracker.cli import main
    for name, text in (("nan", "NaN"), ("inf", "Infinity"), ("big", "1e308")):
        d = _forge_run(base, tmp_path, f"summary-{name}", edit_json(
            "summary.json", literal("energy_j", text=text), raw=True))
        assert main(["report", str(d)]) == 0
        out = capsys.readouterr().out
        assert "total (IT)" in out and "nan J" not in out and "inf J" not in out, out
        assert "e+307" not in out and "e+308" not in out, out
    d = _forge_run(base, tmp_path, "windows", edit_json(
        "summary.json", setting("windows", value=[{"id": "x"}])))
    assert main(["report", str(d), "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert all(isinstance(w["id"], int) for w in got["windows"]) and got["windows"]


def test_the_bounded_readers(tmp_path):
    """The primitives of tracker/untrusted.py on their own."""
    from tracker.rundir.untrusted import (
        Damaged,
        LineReader,
        depth,
        loads_bounded,
        read_gzip_lines,
        read_json_file,
    )

    p = tmp_path / "f"
    p.write_bytes(b"a\n" + b"x" * 5000 + b"\n\nb\ncut")
    with open(p, "rb") as f:
        r = LineReader(f, max_line=100, chunk=64)
        assert list(r) == [b"a", b"b"]
    assert (r.too_long, r.blank, r.tail) == (1, 1, 3)
    assert depth(b'["[[[", {"a": [1]}]') == 3 and depth(DEEP) == len(DEEP)
    for bad in (DEEP, b'{"t": NaN}', b'{"t": -Infinity}', b"\xff"):
        with pytest.raises(Damaged):
            loads_bounded(bad)
    gz = tmp_path / "bomb.gz"
    gzip_bomb("bomb.gz", b"\n", 256 << 20)(tmp_path)
    r = read_gzip_lines(gz, max_text=16 << 20)
    assert list(r) == [] and r.capped and r.blank == 16 << 20
    (tmp_path / "j.json").write_text('{"a": 1e400}')
    with pytest.raises(Damaged, match="out of range"):
        read_json_file(tmp_path / "j.json")
    sparse = tmp_path / "big.json"
    sparse.write_bytes(b"{}")
    os.truncate(sparse, 2 * GIB)
    with pytest.raises(Damaged, match="more than"):
        read_json_file(sparse, max_bytes=1 << 20)
    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(OSError, match="not a regular file"):
        read_json_file(tmp_path / "fifo")
    assert stat.S_ISFIFO(os.stat(tmp_path / "fifo").st_mode)
