"""stop() is cheap because it does little that could have been done before: what it would import
is loaded early in the run by a warm-up thread (ticks.warm_stop_path), and the run log's fsync
runs on a thread of its own while the summary is built. Checked here by structure (modules
in sys.modules, which thread fsynced which file, which fsyncs happen at all), not by
wall-clock time; the seconds are measured by scripts/bench_cost.py (its stop() figure)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

from tracker import ticks, track
from tracker.rundir.step_segments import StepFile

ROOT = Path(__file__).resolve().parent.parent
FAST = {"rate_hz": 20, "quiet": True, "emissions_csv": False}

# A training process has numpy loaded (torch, the data pipeline); the step ledger settles with
# it, and loads it itself in a run without (rundir/ledger.py), never the warm-up.
CHILD = """
import json, sys, tempfile
try:
    import numpy
except ImportError:
    pass
from tracker import track
run = track("x", output_dir=tempfile.mkdtemp(), quiet=True, report_html=True,
            emissions_csv=True, region="DE").start()
for _ in run.steps(range(50)):
    pass
assert run._ticks.warm is not None      # started by start(), after its first summary
assert run._ticks.join_warm(60.0)
before = set(sys.modules)
summary = run.stop()
print(json.dumps({"new": sorted(set(sys.modules) - before),
                  "report": summary.report_html}))
"""


def test_after_the_warm_up_stop_imports_nothing(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ENERGY_TRACKER_", "SLURM"))}
    env.update(PYTHONPATH=str(ROOT), CUDA_VISIBLE_DEVICES="", HIP_VISIBLE_DEVICES="")
    done = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True,
                          env=env, cwd=tmp_path, timeout=120)
    assert done.returncode == 0, done.stderr
    got = json.loads(done.stdout.strip().splitlines()[-1])
    assert got["report"], "the report was drawn (its modules are the bulk of the warm-up)"
    assert got["new"] == []


def test_start_begins_the_warm_up_once_its_first_summary_is_written(manual_clock, monkeypatch,
                                                                    tmp_path):
    calls: list[tuple[object, bool]] = []
    seen_dir: list[Path] = []

    def warm(report: object, go: threading.Event) -> None:   # what exists when it runs
        calls.append((report, (seen_dir[0] / "summary.json").is_file()))
    monkeypatch.setattr(ticks, "warm_stop_path", warm)
    run = track("warm", output_dir=tmp_path, report_html=False, **FAST)
    real_write = ticks.TickRounds.write_summary

    def write_summary(self: ticks.TickRounds, t: float, status: str) -> None:
        if not seen_dir:
            seen_dir.append(Path(self.runlog.dir))
            assert self.warm is None      # not before start()'s first summary
        real_write(self, t, status)
    monkeypatch.setattr(ticks.TickRounds, "write_summary", write_summary)
    run.start()
    warm_thread = run._ticks.warm
    assert warm_thread is not None and warm_thread.name == "energy-tracker-warm"
    assert warm_thread.daemon
    manual_clock.sleep(3.0)                   # rounds, a running summary: started once
    assert run._ticks.warm is warm_thread
    run.stop()
    assert not warm_thread.is_alive()         # stop() joined it
    assert calls == [(False, True)]


def test_join_warm_is_bounded_and_stop_never_waits_for_a_warm_up_not_started():
    release = threading.Event()
    rounds = ticks.TickRounds.__new__(ticks.TickRounds)
    rounds.warm, rounds.warm_go = None, threading.Event()
    assert rounds.join_warm(timeout_s=0.0)    # none started: nothing to wait for
    rounds.warm = threading.Thread(target=release.wait, daemon=True)
    assert rounds.join_warm(timeout_s=0.0)    # created, never started
    rounds.warm.start()
    try:
        assert rounds.join_warm(timeout_s=0.01) is False   # stuck: stop() goes on
    finally:
        release.set()
    assert rounds.join_warm(timeout_s=60.0) is True


def test_stop_does_not_wait_out_the_warm_up_delay(monkeypatch):
    monkeypatch.setattr(ticks, "WARM_DELAY_S", 3600.0)   # would outlast any join below
    monkeypatch.setattr(ticks, "WARM_MODULES", ())
    rounds = ticks.TickRounds.__new__(ticks.TickRounds)
    rounds.warm, rounds.warm_go, rounds.report_html = None, threading.Event(), False
    rounds.start_warm()
    assert rounds.warm is not None and rounds.warm.is_alive()   # waiting out its delay
    assert rounds.join_warm(timeout_s=60.0)   # stop() released it: it ran and ended
    assert rounds.warm_go.is_set()


def _fsyncs(monkeypatch) -> list[tuple[str, str]]:
    """(file name, thread name) of every os.fsync from now on."""
    seen: list[tuple[str, str]] = []
    real = os.fsync

    def spy(fd: int) -> None:
        seen.append((os.path.basename(os.readlink(f"/proc/self/fd/{fd}")),
                     threading.current_thread().name))
        real(fd)
    monkeypatch.setattr(os, "fsync", spy)
    return seen


def test_a_steps_file_never_written_is_not_fsynced_one_written_is(monkeypatch, tmp_path):
    seen = _fsyncs(monkeypatch)
    (tmp_path / "a").mkdir()
    empty = StepFile(tmp_path / "a" / "steps.bin")
    empty.close()
    assert [name for name, _ in seen] == []
    (tmp_path / "b").mkdir()
    written = StepFile(tmp_path / "b" / "steps.bin")
    written._buf += b"STB1\0\0\0\0"
    written.close()
    assert [name for name, _ in seen] == ["steps.bin"]
    assert (tmp_path / "b" / "steps.bin").read_bytes() == b"STB1\0\0\0\0"


def test_stop_fsyncs_the_log_on_its_sync_thread_and_steps_bin_when_it_has_steps(
        manual_clock, monkeypatch, tmp_path):
    run = track("sync", output_dir=tmp_path, report_html=False, **FAST).start()
    for _ in run.steps(range(20)):
        manual_clock.sleep(0.01)
    manual_clock.sleep(1.0)
    seen = _fsyncs(monkeypatch)
    run.stop()
    assert ("samples.jsonl", "energy-tracker-sync") in seen
    # close() still syncs what came after (and waits for the sync thread through the lock)
    assert seen[-1][0] == "samples.jsonl" and seen[-1][1] != "energy-tracker-sync"
    assert ("steps.bin", threading.current_thread().name) in seen
    assert run._log is not None and run._log.closed
    summary = json.loads((run.run_dir / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["steps"]["count"] == 20


def test_a_fork_waits_for_the_warm_up_import_in_progress(monkeypatch):
    """A DataLoader forking its workers while the warm-up is inside an import: the fork waits
    for that import, so the child never inherits a module lock held by a thread it lacks."""
    monkeypatch.setattr(ticks, "FORK_WAIT_S", 60.0)   # only the order is checked, not time
    ticks._guard_forks()
    entered, release = threading.Event(), threading.Event()
    done = {"import": False}

    def slow_import(name: str) -> object:
        entered.set()
        release.wait(60)
        done["import"] = True
        return None

    monkeypatch.setattr(ticks.importlib, "import_module", slow_import)
    monkeypatch.setattr(ticks, "_tables_warm", True)
    warm = threading.Thread(target=ticks.warm_stop_path, args=(False, None), daemon=True)
    warm.start()
    assert entered.wait(60)
    # the import is in progress; it finishes once this fork is waiting (or has happened)
    threading.Thread(target=lambda: (release.wait(0.3), release.set()), daemon=True).start()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:   # the child: say whether the import had finished before the fork
        os.write(write, b"1" if done["import"] else b"0")
        os._exit(0)
    os.close(write)
    seen = os.read(read, 1)
    os.close(read)
    os.waitpid(pid, 0)
    warm.join(60)
    assert seen == b"1"
