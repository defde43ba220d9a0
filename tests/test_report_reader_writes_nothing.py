"""A reader never writes a live run (issue 22, item 3): `report` polled while a run finishes,
from this host and from another hostname, leaves the owner's summary and one emissions row; a
run is declared killed only when its owner is provably gone, and then once."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tracker.cli import main
from tracker.rundir.liveness import owner_state, process_start_ticks

FAKES = Path(__file__).parent / "fakes" / "nvml_site"
ROOT = Path(__file__).resolve().parent.parent

OWNER = """
import sys, time
from tracker import track
with track("owner", output_dir=sys.argv[1], cpu=False, ram=False, summary_every_s=0.5,
           report_html=False) as run:
    print(run.run_dir, flush=True)
    for _ in run.steps(range(int(float(sys.argv[2]) / 0.01))):
        time.sleep(0.01)
"""


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENERGY_TRACKER_")}
    env.update(PYTHONPATH=os.pathsep.join([str(FAKES), str(ROOT)]), FAKE_NVML_WATTS="300")
    return env


def start_owner(out: Path, seconds: float) -> tuple[subprocess.Popen[str], Path]:
    p = subprocess.Popen([sys.executable, "-c", OWNER, str(out), str(seconds)], env=_env(),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert p.stdout is not None
    line = p.stdout.readline().strip()
    assert line, p.stderr.read() if p.stderr else ""
    return p, Path(line)


def rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def poll_reports(run: Path, owner: subprocess.Popen[str], report) -> list[str]:
    seen = []
    for _ in range(20):
        seen.append(report(run))
        time.sleep(0.15)
    owner.wait(30)
    seen.append(report(run))
    return seen


def _report_here(run: Path) -> str:
    from contextlib import redirect_stdout
    from io import StringIO
    buf = StringIO()
    with redirect_stdout(buf):
        assert main(["report", str(run), "--json"]) == 0
    return json.loads(buf.getvalue())["status"]


def check_one_story(run: Path, out: Path, seen: list[str]) -> None:
    assert "killed" not in seen, seen
    assert seen[-1] == "finished"
    saved = json.loads((run / "summary.json").read_text())
    assert saved["status"] == "finished" and saved["energy_j"] > 0
    mine = [r for r in rows(out / "emissions.csv") if r["run_id"] == saved["run_id"]]
    assert len(mine) == 1 and mine[0]["status"] == "finished"


def test_report_polled_while_a_run_finishes_on_the_same_host(tmp_path):
    owner, run = start_owner(tmp_path, 2.0)
    seen = poll_reports(run, owner, _report_here)
    assert "running" in seen
    check_one_story(run, tmp_path, seen)


def test_report_from_another_hostname_never_declares_a_live_run_killed(tmp_path, monkeypatch):
    import socket
    monkeypatch.setattr(socket, "gethostname", lambda: "login-node-7")
    owner, run = start_owner(tmp_path, 2.0)
    seen = poll_reports(run, owner, _report_here)
    assert "running" in seen
    check_one_story(run, tmp_path, seen)


def _can_unshare_uts() -> bool:
    if not shutil.which("unshare") or os.geteuid() != 0:
        return False
    return subprocess.run(["unshare", "--uts", "true"], capture_output=True).returncode == 0


@pytest.mark.skipif(not _can_unshare_uts(), reason="needs root and `unshare --uts` to give "
                    "the reader a hostname of its own")
def test_report_from_a_real_other_uts_namespace(tmp_path):
    owner, run = start_owner(tmp_path, 2.5)

    def report(r: Path) -> str:
        code = (f"import socket; socket.sethostname('login-node-7'); import sys; "
                f"from tracker.cli import main; sys.exit(main(['report', {str(r)!r}, '--json']))")
        done = subprocess.run(["unshare", "--uts", sys.executable, "-c", code], env=_env(),
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)["status"]

    seen = poll_reports(run, owner, report)
    check_one_story(run, tmp_path, seen)


def _killed_run(tmp_path: Path) -> Path:
    owner, run = start_owner(tmp_path, 30.0)
    time.sleep(0.8)
    owner.kill()
    owner.wait(10)
    return run


def test_a_killed_run_is_ended_once_by_racing_readers(tmp_path):
    run = _killed_run(tmp_path)
    assert json.loads((run / "summary.json").read_text())["status"] == "running"
    # four reader processes at once, twice each
    code = (f"import sys; from tracker.cli import main; "
            f"[main(['report', {str(run)!r}, '--json']) for _ in range(2)]")
    readers = [subprocess.Popen([sys.executable, "-c", code], env=_env(), text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
               for _ in range(4)]
    for p in readers:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        assert out.count('"status": "killed"') == 2, out[-500:]
    assert json.loads((run / "summary.json").read_text())["status"] == "killed"
    mine = [r for r in rows(tmp_path / "emissions.csv")]
    assert len(mine) == 1 and mine[0]["status"] == "killed"


def test_another_host_declares_killed_only_after_the_lease(tmp_path, monkeypatch):
    run = _killed_run(tmp_path)
    manifest = json.loads((run / "run.json").read_text())
    import socket
    monkeypatch.setattr(socket, "gethostname", lambda: "login-node-7")
    now = time.time()
    fresh = owner_state(run, manifest, now=now)
    assert fresh.alive and "heartbeat" in fresh.how          # silent for < 1 s: alive
    assert _report_here(run) == "running"
    assert json.loads((run / "summary.json").read_text())["status"] == "running"
    assert not (tmp_path / "emissions.csv").exists()
    old = now - 3600
    for name in ("samples.jsonl", "summary.json", "steps.bin"):
        if (run / name).exists():
            os.utime(run / name, (old, old))
    gone = owner_state(run, manifest)
    assert not gone.alive and "silent" in gone.how
    assert _report_here(run) == "killed"
    assert len(rows(tmp_path / "emissions.csv")) == 1


def test_a_reused_pid_is_not_the_owner(tmp_path):
    me = os.getpid()
    start = process_start_ticks(me)
    if start is None:
        pytest.skip("no /proc/<pid>/stat here: the pid's start time cannot be read")
    import socket
    manifest = {"host": {"hostname": socket.gethostname(), "pid": me, "pid_start": start}}
    assert owner_state(tmp_path, manifest).alive
    manifest["host"]["pid_start"] = start - 1          # the recorded owner started earlier
    state = owner_state(tmp_path, manifest)
    assert not state.alive and "another process" in state.how


def test_report_html_of_a_live_run_is_written_outside_it(tmp_path, monkeypatch):
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    owner, run = start_owner(tmp_path / "runs", 3.0)
    try:
        time.sleep(0.5)
        assert main(["report", str(run), "--html"]) == 0
        assert not (run / "report.html").exists()
        assert (elsewhere / f"{run.name}-report.html").stat().st_size > 0
    finally:
        owner.wait(30)
    assert json.loads((run / "summary.json").read_text())["status"] == "finished"
