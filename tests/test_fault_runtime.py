"""Faults while a run is going on: forked children, odd exceptions, lost devices, a run_dir
used twice, the output directory deleted (issue: fault campaign)."""

from __future__ import annotations

import csv
import json
import os
import shutil
import sys
import time

import pytest
from conftest import UUIDS, Constant, FakeGPU

from tracker import ConfigError, track

FAST = dict(cpu=False, ram=False, rate_hz=50, counter_interval_s=0.2)


def rows(path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


# -- forked children ------------------------------------------------------------------------------
@pytest.mark.skipif(not hasattr(os, "fork"), reason="no os.fork on this platform")
def test_a_forked_child_leaving_the_block_does_not_stop_the_run(fake_h100, tmp_path):
    with track("forks", output_dir=tmp_path, **FAST) as run:
        pid = os.fork()
        if pid == 0:   # the child leaves the with-block through sys.exit, as workers do
            try:
                run.__exit__(SystemExit, SystemExit(3), None)
                run.stop()
            finally:
                os._exit(0)
        os.waitpid(pid, 0)
        time.sleep(0.2)
        assert run.summary.status == "running"
    s = json.loads((run.run_dir / "summary.json").read_text())
    assert s["status"] == "finished"
    assert len(rows(tmp_path / "emissions.csv")) == 1
    finals = [ln for ln in (run.run_dir / "samples.jsonl").read_text().splitlines()
              if '"final"' in ln]
    assert len(finals) == 1


# -- exceptions -----------------------------------------------------------------------------------
class Nasty(Exception):
    def __str__(self) -> str:
        raise RuntimeError("str() of this exception raises")


def test_an_exception_whose_str_raises_propagates_unchanged(fake_h100, tmp_path):
    with pytest.raises(Nasty), track("nasty", output_dir=tmp_path, **FAST) as run:
        raise Nasty()
    assert run.summary.status == "failed"
    assert any("Nasty: (its message could not be read)" in n for n in run.summary.notes)


def test_sys_exit_zero_is_finished_and_other_codes_failed(fake_h100, tmp_path):
    with pytest.raises(SystemExit), track("exit0", output_dir=tmp_path, **FAST) as run:
        sys.exit(0)
    assert run.summary.status == "finished"
    with pytest.raises(SystemExit), track("exit2", output_dir=tmp_path, **FAST) as run2:
        sys.exit(2)
    assert run2.summary.status == "failed"


def test_a_huge_exception_message_is_cut(fake_h100, tmp_path):
    with pytest.raises(ValueError), track("big", output_dir=tmp_path, **FAST) as run:
        raise ValueError("x" * 5_000_000)
    s = (run.run_dir / "summary.json").read_text()
    assert len(s) < 100_000 and "ValueError: xxx" in s and "more characters" in s


# -- lost devices ---------------------------------------------------------------------------------
def test_a_lost_gpu_is_reported_from_its_first_failed_read(fake_nvml, manual_clock, tmp_path):
    gpu = FakeGPU(uuid=UUIDS[0], profile=Constant(300.0), fail_after_s=0.51, clock=manual_clock)
    fake_nvml(gpu)
    with track("lost", output_dir=tmp_path, **FAST) as run:
        manual_clock.sleep(1.5)
    (device,) = run.summary.devices
    note = next(e for e in device.errors if "stopped answering" in e)
    start = json.loads((run.run_dir / "run.json").read_text())["start_monotonic"]
    lost_t = gpu.lost_at() - start
    # the ticks (hand-driven, 50 Hz) around the loss: the last good read and the first failed
    lines = (run.run_dir / "samples.jsonl").read_text().splitlines()
    ticks = [json.loads(ln)["t"] for ln in lines]
    last_good_t = max(t for t in ticks if t < lost_t)
    first_failed_t = min(t for t in ticks if t >= lost_t)
    said = float(note.split("stopped answering at t=")[1].split(" s")[0])
    assert said == pytest.approx(first_failed_t, abs=0.005)   # .2f; not the 20th failure (+0.4 s)
    last_good = float(note.split("last good read at t=")[1].split(" s")[0])
    assert last_good == pytest.approx(last_good_t, abs=0.005)
    assert first_failed_t - last_good_t <= 1.0 / FAST["rate_hz"] + 1e-6


# -- run directories ------------------------------------------------------------------------------
def test_a_run_dir_held_by_a_live_run_is_refused(fake_h100, tmp_path):
    d = tmp_path / "same"
    with track("a", run_dir=d, **FAST), pytest.raises(ConfigError, match="in use by a live"):
        track("b", run_dir=d, **FAST).start()
    with track("c", run_dir=d, **FAST) as run:      # free again once the first one stopped
        time.sleep(0.05)
    assert run.summary.status == "finished"


def test_two_runs_started_in_the_same_second_get_two_directories(fake_h100, tmp_path):
    runs = [track("same-name", output_dir=tmp_path, **FAST).start() for _ in range(3)]
    for r in runs:
        r.stop()
    assert len({r.run_dir for r in runs}) == 3


def test_the_output_directory_deleted_mid_run(clocked_h100, manual_clock, tmp_path):
    root = tmp_path / "runs"
    with track("deleted", output_dir=root, **FAST) as run:
        manual_clock.sleep(0.4)
        shutil.rmtree(root)
        manual_clock.sleep(1.5)
    s = json.loads((run.run_dir / "summary.json").read_text())
    assert s["status"] == "finished"
    assert s["duration_s"] == pytest.approx(1.9, abs=1e-6)   # the whole run, from memory
    assert s["energy_j"] == pytest.approx(300.0 * 1.9, rel=1e-4)
    assert sum("recreated" in n for n in s["notes"]) == 1
    assert (run.run_dir / "run.json").exists()
    assert len(rows(root / "emissions.csv")) == 1   # the row is always attempted
    errors = [n for n in s["notes"] if n.startswith("sampler:")]
    assert len(errors) <= 2                          # one note per kind, not one per tick


# -- the network ----------------------------------------------------------------------------------
def test_stop_spends_at_most_a_second_on_a_trickling_live_provider(fake_h100, tmp_path):
    """A provider that answers one byte a second never trips requests' read timeout: the
    run must still stop within about a second, with the annual factor where it had nothing."""
    import socket
    import threading

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(4)
    done = threading.Event()

    def trickle() -> None:
        server.settimeout(0.2)
        while not done.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            try:
                conn.recv(4096)
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")
                while not done.is_set():
                    conn.sendall(b"{")
                    time.sleep(1.0)
            except OSError:
                pass
            finally:
                conn.close()

    threading.Thread(target=trickle, daemon=True).start()
    try:
        run = track("trickle", output_dir=tmp_path, live_intensity="uk",
                    intensity_base_url=f"http://127.0.0.1:{server.getsockname()[1]}",
                    **FAST).start()
        time.sleep(0.5)
        t0 = time.monotonic()
        summary = run.stop()
        assert time.monotonic() - t0 < 2.0
        assert summary.emissions_kg is not None and summary.status == "finished"
    finally:
        done.set()
        server.close()


# -- option types ---------------------------------------------------------------------------------
@pytest.mark.parametrize("option, value, says", [
    ("cpu", "no", "cpu must be True or False"),
    ("ram", 0, "ram must be True or False"),
    ("gpus", [True], "gpus entries must be indices"),
    ("gpus", 0, "gpus must be a list"),
    ("output_dir", 123, "output_dir must be a path"),
    ("run_dir", 5, "run_dir must be a path"),
    ("powercap_root", None, "powercap_root must be a path"),
    ("output_dir", "runs\0x", "NUL character"),
    ("rate_hz", True, "rate_hz must be a number"),
    ("prometheus_port", True, "prometheus_port must be a TCP port"),
    ("region", 49, "region must be a region code"),
    ("mix", ["wind"], "mix must be a dict"),
])
def test_option_types_are_checked_at_construction(option, value, says):
    with pytest.raises(ConfigError, match=says) as e:
        track("typed", **{option: value})
    assert repr(value) in str(e.value)
