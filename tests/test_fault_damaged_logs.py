"""Damaged run directories: a rebuild skips what it cannot read and says so, or gives a
one-line error for a file it cannot use; never a traceback (issue: fault campaign, item 1)."""

from __future__ import annotations

import json
import math
import os
import random
import shutil
import time
from pathlib import Path

import pytest

from tracker import ConfigError, track
from tracker.rebuild import rebuild_summary

FAST = dict(cpu=False, ram=False, rate_hz=50, counter_interval_s=0.2)


@pytest.fixture(scope="module")
def good_run(tmp_path_factory):
    """A real run with windows, steps and a killed-looking tail (its summary removed)."""
    import sys
    sys.path.insert(0, str(Path(__file__).parent / "fakes"))
    import fake_nvml
    old = sys.modules.get("pynvml")
    sys.modules["pynvml"] = fake_nvml.FakeNVML([fake_nvml.FakeGPU()])
    try:
        root = tmp_path_factory.mktemp("runs")
        with track("fuzz", output_dir=root, **FAST) as run:
            for _ in run.epochs(range(2)):
                for _ in run.steps(range(10)):
                    time.sleep(0.01)
                with run.window("eval", kind="eval"):
                    time.sleep(0.05)
        return run.run_dir
    finally:
        if old is None:
            sys.modules.pop("pynvml", None)
        else:
            sys.modules["pynvml"] = old


def copy(run: Path, tmp_path: Path) -> Path:
    dst = tmp_path / run.name
    shutil.copytree(run, dst)
    (dst / "summary.json").unlink()
    return dst


BAD_LINES = [
    b'\xff\xfe not utf-8\n', b'{"t": "abc", "d": {}}\n', b'{"t": null}\n',
    b'{"t": 1.0, "d": [1, 2]}\n', b'{"t": 1.0, "d": {"gpu0": {"w": "x"}}}\n', b'[1, 2, 3]\n',
    b'{"t": 1.0, "steps": [[1, 2, 3]]}\n', b'{"t": 1.0, "mark": {"edge": "start"}}\n',
    b'{"t": 1.0, "d": {"gpu0": {"w": true}}}\n', b'{"t": 1.0, "intensity": {"x": 1}}\n',
]


@pytest.mark.parametrize("line", BAD_LINES)
def test_a_bad_line_is_skipped_and_counted(good_run, tmp_path, line):
    run = copy(good_run, tmp_path)
    with open(run / "samples.jsonl", "ab") as f:
        f.write(line)
    s = rebuild_summary(run)
    assert s.energy_j == pytest.approx(rebuild_summary(copy(good_run, tmp_path / "ref"))
                                       .energy_j)
    assert any("1 unreadable line of samples.jsonl skipped" in n for n in s.notes)


@pytest.mark.parametrize("manifest, message", [
    ([1, 2], "no readable run.json"),
    ({"run_id": "x", "start_wall": 1.0}, "no usable 'grid'"),
    ({"run_id": "x", "start_wall": 1.0, "grid": {"x": 1}}, "grid factor is not usable"),
])
def test_an_unusable_manifest_is_a_one_line_error(good_run, tmp_path, manifest, message):
    run = copy(good_run, tmp_path)
    (run / "run.json").write_text(json.dumps(manifest))
    with pytest.raises(ConfigError, match=message) as e:
        rebuild_summary(run)
    assert "\n" not in str(e.value)


def test_manifest_quirks_are_tolerated(good_run, tmp_path):
    run = copy(good_run, tmp_path)
    m = json.loads((run / "run.json").read_text())
    m["devices"][0]["surprise"] = 1                # an unknown device key
    del m["pue"]
    (run / "run.json").write_text(json.dumps(m))
    (run / "summary.json").write_text("[1, 2]")     # a summary that is a list
    s = rebuild_summary(run)
    assert s.energy_j > 0 and s.pue == 1.0
    assert any("no usable PUE" in n for n in s.notes)


def test_fuzzed_copies_never_raise_anything_but_a_config_error(good_run, tmp_path):
    rnd = random.Random(1234)
    files = ["samples.jsonl", "run.json", "steps.bin", "summary.json"]
    outcomes = {"summary": 0, "error": 0}
    for case in range(300):
        run = copy(good_run, tmp_path / f"c{case}")
        target = run / rnd.choice(files)
        if not target.exists():
            continue
        data = bytearray(target.read_bytes())
        how = rnd.choice(["truncate", "flip", "zero", "garbage-line", "type"])
        if how == "truncate" and data:
            data = data[:rnd.randrange(len(data))]
        elif how == "flip" and data:
            for _ in range(rnd.randint(1, 8)):
                data[rnd.randrange(len(data))] ^= 1 << rnd.randrange(8)
        elif how == "zero" and data:
            i = rnd.randrange(len(data))
            data[i:i + rnd.randint(1, 64)] = b"\0" * min(64, len(data) - i)
        elif how == "garbage-line":
            data += bytes(rnd.randrange(256) for _ in range(rnd.randint(1, 40))) + b"\n"
        else:   # a valid JSON value of the wrong type in place of the file
            data = bytearray(json.dumps(rnd.choice([[], 3, "x", None, {"t": []}])).encode())
        target.write_bytes(bytes(data))
        try:
            s = rebuild_summary(run)
            assert s.status in ("killed", "running", "finished")
            outcomes["summary"] += 1
        except ConfigError as e:
            assert "\n" not in str(e)
            outcomes["error"] += 1
    assert outcomes["summary"] > 100 and outcomes["error"] > 5, outcomes


def test_the_root_table_shows_a_damaged_run_as_unreadable(good_run, tmp_path, capsys):
    from tracker.cli import main
    root = tmp_path / "root"
    root.mkdir()
    ok = copy(good_run, root)
    bad = root / "zz-bad"
    shutil.copytree(ok, bad)
    (bad / "run.json").write_text("[1, 2]")
    assert main(["report", str(root), "--json"]) == 0
    rows = {Path(r["run_dir"]).name: r for r in json.loads(capsys.readouterr().out)["runs"]}
    # this process wrote it and is alive, so the copy reads as running
    assert rows[ok.name]["status"] in ("killed", "running") and rows[ok.name]["energy_kwh"] > 0
    assert rows["zz-bad"]["status"] == "unreadable"
    assert "no readable run.json" in rows["zz-bad"]["error"]
    assert main(["report", str(root)]) == 0
    out = capsys.readouterr().out
    assert "unreadable" in out and "no readable run.json" in out


def test_a_report_on_a_full_disk_still_prints(good_run, tmp_path, capsys, monkeypatch):
    import errno

    import tracker.rundir.runlog as runlog
    from tracker.cli import main
    run = copy(good_run, tmp_path)
    m = json.loads((run / "run.json").read_text())
    m["host"]["hostname"] = "another-host"          # so it reads as ended, and is saved:
    (run / "run.json").write_text(json.dumps(m))    # another host, its heartbeat long silent
    old = time.time() - 3600
    for f in run.iterdir():
        os.utime(f, (old, old))

    def full(*_a, **_k):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(runlog, "write_json_atomic", full)
    assert main(["report", str(run)]) == 0
    captured = capsys.readouterr()
    assert "kWh" in captured.out
    assert "not saved" in captured.err and "No space left" in captured.err
    assert not (run / "summary.json").exists()


def test_an_unexpected_error_is_one_line(tmp_path, capsys, monkeypatch):
    import tracker.cli as cli

    def boom(_args):
        raise RuntimeError("something odd")
    monkeypatch.setattr(cli, "cmd_regions", boom)
    monkeypatch.delenv("ENERGY_TRACKER_DEBUG", raising=False)
    assert cli.main(["regions"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "RuntimeError: something odd" in err
    monkeypatch.setenv("ENERGY_TRACKER_DEBUG", "1")
    with pytest.raises(RuntimeError):
        cli.main(["regions"])


@pytest.mark.parametrize("line, ok", [
    (b'{"t": 1.5, "d": {}}\n', True),
    (b'{"t": 2}', True),
    (b'{"t": "1"}\n', False),
    (b'{"t": true}\n', False),
    (b'{"t": NaN}\n', False),
    (b'{"t": Infinity}\n', False),
    (b'[1, 2]\n', False),
    (b'{"t": 1.5, "d": \n', False),
    (b'\xff\xfe{"t": 1}\n', False),
    (b'{"d": {}}\n', False),
])
def test_one_parser_for_every_log_line(line, ok):
    """Every reader of the run log (rebuild, report, the joined-process follower, timelines)
    goes through runlog.parse_record: a damaged line is None, never an exception."""
    from tracker.rundir.runlog import parse_record
    rec = parse_record(line)
    assert (rec is not None) is ok
    if ok:
        assert isinstance(rec["t"], (int, float))


def test_the_follower_keeps_the_lines_after_a_damaged_one(tmp_path, fake_nvml):
    """A damaged line in the parent's samples.jsonl used to drop the rest of its chunk."""
    from tracker.follow import LogFollower
    from tracker.rundir.names import SAMPLES
    from tracker.sampler import DeviceState
    from tracker.sensors.nvidia import discover_gpus

    fake_nvml(1)
    sensor = discover_gpus().sensors[0]
    dev = DeviceState(sensor)
    (tmp_path / SAMPLES).write_bytes(
        f'{{"t": 0.5, "d": {{"{sensor.name}": {{"c": 10.0}}}}}}\n'.encode()
        + b'{"t": 0.6, "d": \x00\xff}\n'
        + f'{{"t": 1.5, "d": {{"{sensor.name}": {{"c": 110.0}}}}}}\n'.encode())
    follower = LogFollower(tmp_path, [dev], clock=lambda: 2.0, after_tick=lambda r, t: None)
    follower.poll()
    sensor.close()
    assert follower.callback_errors == []
    assert dev.curve.energy_between(0.5, 1.5) == pytest.approx(100.0)


# -- forged sizes, nesting, non-finite numbers, wrong types (issue 18) ----------------------------
WRONG = [None, [], {}, "x", 1e300, -1, True]


def _fields(obj, depth=2, prefix=()):
    """Paths of the fields of a JSON object, to `depth` levels (list items: the first)."""
    items = obj.items() if isinstance(obj, dict) else enumerate(obj[:1]) \
        if isinstance(obj, list) else ()
    for k, v in items:
        yield (*prefix, k)
        if depth > 1:
            yield from _fields(v, depth - 1, (*prefix, k))


def _set(obj, path, value):
    cur = obj
    for k in path[:-1]:
        cur = cur[k]
    cur[path[-1]] = value


@pytest.fixture(scope="module")
def finished_run(good_run, tmp_path_factory):
    """good_run with its summary: a finished run."""
    from tracker.rebuild import rebuild_summary
    dst = tmp_path_factory.mktemp("finished") / good_run.name
    shutil.copytree(good_run, dst)
    (dst / "summary.json").write_text(json.dumps(
        rebuild_summary(dst, status="finished").to_dict()))
    return dst


@pytest.mark.parametrize("name", ["summary.json", "run.json"])
def test_wrong_types_in_every_field_are_never_an_internal_error(finished_run, tmp_path, capsys,
                                                                name):
    """Every field of summary.json / run.json (two levels deep) set to values of the wrong
    type: `report` and `report --json` exit 0 (a damaged summary rebuilt from the logs) or 2
    with a one-line error, never 1; a report never prints nan."""
    from tracker.cli import main
    good = json.loads((finished_run / name).read_text())
    rnd = random.Random(name)
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    codes = []
    for path in _fields(good):
        for value in rnd.sample(WRONG, 3):
            data = json.loads(json.dumps(good))
            _set(data, path, value)
            (run / name).write_text(json.dumps(data))
            (run / ("run.json" if name == "summary.json" else "summary.json")).write_text(
                (finished_run / ("run.json" if name == "summary.json" else "summary.json"))
                .read_text())
            for args in (["report", str(run)], ["report", str(run), "--json"]):
                rc = main(args)
                out, err = capsys.readouterr()
                assert rc in (0, 2) and err.count("\n") <= 2, (path, value, rc, err)
                assert "nan J" not in out, (path, value)
                codes.append(rc)
    assert codes.count(0) > len(codes) // 2, codes


def test_deep_nesting_and_non_finite_numbers_in_every_file(good_run, tmp_path):
    """100k nested brackets, NaN, Infinity and 1e308 in each file: a rebuild skips the line
    or the file and says so (or a one-line error for run.json); never RecursionError."""
    cases = {
        "samples.jsonl": [b"[" * 100_000, b'{"t": ' + b"[" * 100_000, b'{"t": 1e308}',
                          b'{"t": NaN, "d": {}}', b'{"t": 0.5, "d": {"gpu0": {"w": 1e308}}}'],
        "marks-1.jsonl": [b'{"t": 0.0, "joined": ' + b"{" * 100_000, b'{"t": Infinity}'],
        "summary.json": [b"[" * 100_000, b'{"status": "finished", "energy_j": NaN}',
                         b'{"status": "finished", "duration_s": 1e308}'],
        "run.json": [b"[" * 100_000, b'{"run_id": "x", "start_wall": 1e308, "grid": {}}',
                     b'{"run_id": "x", "start_wall": NaN, "grid": {}}'],
    }
    ref = rebuild_summary(copy(good_run, tmp_path / "ref"))
    for name, forged in cases.items():
        for i, data in enumerate(forged):
            run = copy(good_run, tmp_path / f"{name}-{i}")
            if name.endswith(".jsonl"):
                with open(run / name, "ab") as f:
                    f.write(data + b"\n")
            else:
                (run / name).write_bytes(data)
            try:
                s = rebuild_summary(run)
            except ConfigError as e:
                assert name == "run.json" and "\n" not in str(e)
                continue
            assert s.energy_j == pytest.approx(ref.energy_j), (name, i)
            if name == "samples.jsonl":
                assert any("unreadable line" in n for n in s.notes), s.notes


def test_forged_sizes_are_read_in_bounded_memory(good_run, tmp_path):
    """Sparse 2 GiB files (a hole: no disk used) in place of each log: read in chunks, the
    over-long piece skipped and counted; the small JSON files refused above their cap."""
    import tracemalloc
    ref = rebuild_summary(copy(good_run, tmp_path / "ref"))
    for name in ("samples.jsonl", "steps.bin", "run.json"):
        run = copy(good_run, tmp_path / name)
        if name == "samples.jsonl":
            with open(run / name, "ab") as f:
                f.write(b'{"t": 1.0, "d": "')
        os.truncate(run / name, (run / name).stat().st_size + (2 << 30))
        tracemalloc.start()
        try:
            s = rebuild_summary(run)
        except ConfigError as e:
            assert name == "run.json" and "no readable run.json" in str(e)
            continue
        finally:
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
        assert peak < 200 << 20, (name, peak)
        assert s.energy_j == pytest.approx(ref.energy_j), name
        note = "samples.jsonl skipped" if name == "samples.jsonl" else "steps.bin is damaged"
        assert any(note in n for n in s.notes), (name, s.notes)


@pytest.fixture(scope="module")
def good_job(tmp_path_factory):
    """A finished two-rank job (both ranks in this process, one node)."""
    import sys
    sys.path.insert(0, str(Path(__file__).parent / "fakes"))
    import fake_nvml
    root = tmp_path_factory.mktemp("jobs")
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(sys.modules, "pynvml", fake_nvml.FakeNVML([fake_nvml.FakeGPU()]))
        mp.setenv("ENERGY_TRACKER_LOCK_DIR", str(root / "locks"))
        for var in ("TORCHELASTIC_RUN_ID", "MASTER_ADDR", "MASTER_PORT"):
            mp.delenv(var, raising=False)
        mp.setenv("ENERGY_TRACKER_JOB", "fuzzjob")
        mp.setenv("ENERGY_TRACKER_NODE", "node-a")
        mp.setenv("WORLD_SIZE", "1")
        mp.setenv("RANK", "0")
        mp.setenv("LOCAL_RANK", "0")
        mp.setenv("LOCAL_WORLD_SIZE", "1")
        with track("fuzzjob", output_dir=root / "out", **FAST) as run:
            for _ in run.steps(range(10)):
                time.sleep(0.01)
            with run.window("eval", kind="eval"):
                time.sleep(0.05)
    return run.run_dir.parent.parent


def test_merge_of_damaged_job_directories_is_a_summary_or_a_one_line_error(good_job, tmp_path):
    from tracker.job.merge import merge
    rnd = random.Random(18)
    targets = ["job.json", "node-a/rank0/summary.json", "node-a/rank0/run.json",
               "node-a/rank0/samples.jsonl", "node-a/rank0/steps.bin", "summary.json"]
    outcomes = {"summary": 0, "error": 0}
    for case in range(60):
        job = tmp_path / f"j{case}"
        shutil.copytree(good_job, job)
        target = job / rnd.choice(targets)
        if not target.exists():
            continue
        how = rnd.choice(["deep", "nan", "type", "sparse", "flip"])
        data = bytearray(target.read_bytes())
        if how == "deep":
            data = bytearray(b"[" * 100_000)
        elif how == "nan":
            data = bytearray(bytes(data).replace(b": 0", b": NaN").replace(b": 1", b": 1e308"))
        elif how == "type":
            obj = json.loads(data) if target.suffix == ".json" else None
            if isinstance(obj, dict):
                key = rnd.choice(sorted(obj))
                obj[key] = rnd.choice(WRONG)
                data = bytearray(json.dumps(obj).encode())
        elif how == "flip" and data:
            for _ in range(8):
                data[rnd.randrange(len(data))] ^= 1 << rnd.randrange(8)
        target.write_bytes(bytes(data))
        if how == "sparse":
            os.truncate(target, len(data) + (2 << 30))
        try:
            s = merge([job])
            assert s.energy_j is None or math.isfinite(s.energy_j)
            s.format()
            outcomes["summary"] += 1
        except ConfigError as e:
            assert "\n" not in str(e)
            outcomes["error"] += 1
    assert outcomes["summary"] > 20 and outcomes["error"] > 2, outcomes
