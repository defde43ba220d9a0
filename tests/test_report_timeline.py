"""report_timeline.jsonl: the report's timeline kept by the run as it goes (rundir/
report_timeline.py), read by the report instead of every sample (report/scan.py).

The same tick records go to samples.jsonl and to the writer; the report drawn from the
pre-reduced file must equal the one drawn by scanning every sample, for a finished run, a
killed one (its uncovered tail scanned), one killed just after a checkpoint, and an old run
without the file."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from conftest import UUIDS, FakeGPU, Step
from test_report_html import job_env  # noqa: F401  (a fixture)

from tracker import track
from tracker.report.html import collect, render_page
from tracker.rundir import names
from tracker.rundir.report_timeline import ReportTimelineWriter, level_width, read

FAST = dict(rate_hz=50, counter_interval_s=0.2, cpu=False, ram=False, report_html=False)
SPIKE_W = 987.5


def ticks(seconds: float, rate: float = 10.0) -> list[dict[str, Any]]:
    """Tick records as the sampler makes them: gpu0 a slow wave, gpu1 flat with one spike, pkg
    an energy counter only (as RAPL), read once a second."""
    out = []
    j = [0.0, 0.0, 0.0]
    n = int(seconds * rate)
    for k in range(n + 1):
        t = round(k / rate, 6)
        w0 = 300.0 + 50.0 * math.sin(t / 7.0)
        w1 = SPIKE_W if k == n // 3 + 1 else 250.0
        j[0] += w0 / rate
        j[1] += w1 / rate
        d: dict[str, Any] = {"gpu0": {"w": round(w0, 3), "j": round(j[0], 3)},
                             "gpu1": {"w": w1, "j": round(j[1], 3)}}
        if k % int(rate) == 0:
            j[2] += 40.0 + 10.0 * math.sin(t / 5.0) if k else 0.0
            d["pkg"] = {"c": 1e6 + j[2], "j": round(j[2], 3)}
        out.append({"t": t, "d": d})
    return out


def write_run(run_dir: Path, recs: list[dict[str, Any]], *, timeline_until: float = math.inf,
              close: bool = True) -> None:
    """run.json, summary.json, samples.jsonl with every record (plus a step record now and
    then) and, fed a 0.5 s round at a time, report_timeline.jsonl up to `timeline_until`
    (a run killed then: no end written)."""
    run_dir.mkdir(parents=True)
    devices = [{"name": n, "component": c, "method": "counter", "description": n}
               for n, c in (("gpu0", "gpu"), ("gpu1", "gpu"), ("pkg", "cpu"))]
    (run_dir / names.MANIFEST).write_text(json.dumps(
        {"schema": 1, "run_id": "tl", "name": "tl", "start_wall": 1.7e9, "devices": devices,
         "grid": {"gco2_per_kwh": 300.0, "region_code": "XX"}, "pue": 1.0}))
    duration = recs[-1]["t"]
    (run_dir / names.SUMMARY).write_text(json.dumps(
        {"status": "finished", "name": "tl", "run_id": "tl", "duration_s": duration,
         "energy_j": 1.0, "sampling": {"rate_hz": 10.0}, "windows": [], "steps": {},
         "devices": [], "components": {}}))
    with open(run_dir / names.SAMPLES, "w") as f:
        for k, r in enumerate(recs):
            f.write(json.dumps(r, separators=(",", ":")) + "\n")
            if k % 25 == 0:
                f.write(json.dumps({"t": r["t"], "steps": [[k, -1, r["t"], r["t"] + .1, k, 4,
                                                             0]]}) + "\n")
    writer = ReportTimelineWriter(run_dir)
    fed = [r for r in recs if r["t"] < timeline_until]
    for i in range(0, len(fed), 5):
        writer.add(fed[i:i + 5])
        writer.flush()
    if close:
        writer.close()


def same_series(a: Any, b: Any) -> None:
    """Two collected Data: the same grid, and per device the same min/max (values and times)
    and energy in every bucket (the file rounds to 1 mW, 1 ms, 1 mJ)."""
    assert a.grid == b.grid
    assert set(a.devices) == set(b.devices) == {"gpu0", "gpu1", "pkg"}
    for name in a.devices:
        pa, pb = a.devices[name].power, b.devices[name].power
        assert pa.keys() == pb.keys(), name
        for k in pa:
            assert pa[k] == pytest.approx(pb[k], abs=2e-3), (name, k)
        ea, eb = a.devices[name].energy, b.devices[name].energy
        assert ea.keys() == eb.keys(), name
        for k in ea:
            assert ea[k] == pytest.approx(eb[k], abs=2e-3), (name, k)
        assert a.devices[name].derived == b.devices[name].derived


# -- the writer -----------------------------------------------------------------------------------
def test_level_widths_double_with_the_run_time():
    assert [level_width(t, 1.0, 4) for t in (0, 7.99, 8, 15.9, 16, 31.9, 32, 64)] == \
        [1, 1, 2, 2, 4, 4, 8, 16]
    assert level_width(86400, 1.0, 4000) == 16.0


def test_each_bucket_holds_the_exact_extremes_mean_and_last_energy(tmp_path):
    recs = ticks(40.0)
    w = ReportTimelineWriter(tmp_path, base_s=1.0, per_level=4)
    for i in range(0, len(recs), 5):
        w.add(recs[i:i + 5])
        w.flush()
    w.close()
    rt = read(tmp_path)
    assert rt is not None and rt.ended == recs[-1]["t"] and rt.from_s == 0.0
    buckets = list(rt.buckets())
    assert rt.bad == 0
    widths = [b[1] for b in buckets]
    assert widths[:8] == [1.0] * 8 and widths[8:12] == [2.0] * 4 and widths[12:16] == [4.0] * 4
    assert rt.max_width == 8.0 and rt.until == 48.0   # the last bucket [40, 48): one tick
    for a, width, d in buckets:
        assert a % width == 0                         # aligned to its width
        inside = [r for r in recs if a <= r["t"] < a + width]
        for name in ("gpu0", "gpu1"):
            ws = [r["d"][name]["w"] for r in inside]
            dl, lo, dh, hi, mean, n, dj, j = d[name]
            assert (lo, hi, n) == (pytest.approx(min(ws), abs=1e-3),
                                   pytest.approx(max(ws), abs=1e-3), len(ws))
            assert mean == pytest.approx(sum(ws) / len(ws), abs=1e-3)
            assert a + dl == pytest.approx(inside[ws.index(min(ws))]["t"], abs=1e-3)
            assert a + dh == pytest.approx(inside[ws.index(max(ws))]["t"], abs=1e-3)
            assert (a + dj, j) == (pytest.approx(inside[-1]["t"], abs=1e-3),
                                   pytest.approx(inside[-1]["d"][name]["j"], abs=1e-3))
        pkg = [r for r in inside if "pkg" in r["d"]]
        assert d["pkg"][5] == 0 and d["pkg"][1] is None   # a counter: energy, no power
        assert d["pkg"][7] == pytest.approx(pkg[-1]["d"]["pkg"]["j"], abs=1e-3)


def test_only_whole_lines_are_on_disk_after_each_round(tmp_path):
    recs = ticks(20.0)
    w = ReportTimelineWriter(tmp_path)
    for i in range(0, len(recs), 5):
        w.add(recs[i:i + 5])
        w.flush()
        path = tmp_path / names.REPORT_TIMELINE
        text = path.read_text() if path.exists() else ""
        assert text == "" or text.endswith("\n")
        for line in text.splitlines():
            json.loads(line)
    w.close()
    last = (tmp_path / names.REPORT_TIMELINE).read_text().splitlines()[-1]
    assert json.loads(last) == {"end": recs[-1]["t"]}


def test_a_writer_that_fails_says_so_once_and_never_raises(tmp_path, caplog):
    w = ReportTimelineWriter(tmp_path / "not-a-dir-file")
    (tmp_path / "not-a-dir-file").write_text("a file where the run directory should be")
    w.add(ticks(3.0))
    w.flush()
    w.add([{"t": 9.0, "d": {"gpu0": "not a reading"}}])   # would raise inside: caught
    w.flush()
    w.close()
    assert w.broken
    assert sum("not kept from here" in r.getMessage() for r in caplog.records) == 1


# -- the report reads it --------------------------------------------------------------------------
def test_a_finished_run_is_drawn_from_its_buckets_alone(tmp_path):
    write_run(tmp_path / "run", ticks(2000.0))    # 20 000 ticks; 1 s buckets
    fast = collect(tmp_path / "run", max_buckets=200, workers=1)
    full = collect(tmp_path / "run", max_buckets=200, workers=1, prereduced=False)
    assert (fast.prereduced, fast.tail_lines, fast.prereduced_buckets) == (1, 0, 2001)
    assert full.prereduced == 0 and full.lines > 20000
    same_series(fast, full)
    spike = max(fast.devices["gpu1"].power.values(), key=lambda v: v[3])
    assert spike[3] == SPIKE_W
    page = render_page(fast)
    assert "2,001 pre-reduced buckets from 1 report_timeline.jsonl" in page


def test_a_killed_run_scans_only_the_tail_its_buckets_miss(tmp_path):
    recs = ticks(2000.0)
    write_run(tmp_path / "run", recs, timeline_until=1500.0, close=False)
    with open(tmp_path / "run" / names.REPORT_TIMELINE, "a") as f:
        f.write('{"a":1500.0,"w":1.0,"d":{"gpu0":[0.0,')    # the line a SIGKILL cut
    fast = collect(tmp_path / "run", max_buckets=200, workers=1)
    full = collect(tmp_path / "run", max_buckets=200, workers=1, prereduced=False)
    assert fast.prereduced == 1
    # ~500 s of 10 Hz ticks (and their step records) after the buckets, not the 2000 s (the
    # bisection stops within 64 KB: some lines before them are read again)
    assert 5000 < fast.tail_lines < 0.35 * full.lines, (fast.tail_lines, full.lines)
    assert fast.bad == 1                                  # the cut line, counted
    same_series(fast, full)


def test_a_run_killed_after_a_checkpoint_reads_the_rotated_segment_too(tmp_path):
    recs = ticks(2000.0)
    write_run(tmp_path / "run", recs, timeline_until=990.0, close=False)
    run = tmp_path / "run"
    lines = (run / names.SAMPLES).read_text().splitlines(keepends=True)
    cut = next(i for i, x in enumerate(lines) if json.loads(x)["t"] >= 1000.0)
    (run / names.segment_file(0)).write_text("".join(lines[:cut]))    # rotated at 1000 s
    (run / names.SAMPLES).write_text("".join(lines[cut:]))
    fast = collect(run, max_buckets=200, workers=1)
    full = collect(run, max_buckets=200, workers=1, prereduced=False)
    # from 990 s: the end of the rotated segment, then all of samples.jsonl
    assert fast.prereduced == 1
    assert 10000 < fast.tail_lines < 0.6 * full.lines, (fast.tail_lines, full.lines)
    same_series(fast, full)


@pytest.mark.parametrize("how", ["missing", "not-this-format", "starts-late"])
def test_without_a_usable_file_every_sample_is_scanned(tmp_path, how):
    write_run(tmp_path / "run", ticks(600.0))
    path = tmp_path / "run" / names.REPORT_TIMELINE
    if how == "missing":      # an old run
        path.unlink()
    elif how == "not-this-format":
        path.write_text('{"report_timeline": 99}\n' + path.read_text().split("\n", 1)[1])
    else:                     # the directory was recreated mid-run: the file starts late
        lines = path.read_text().splitlines(keepends=True)
        head = json.loads(lines[0])
        path.write_text(json.dumps(dict(head, from_s=300.0)) + "\n" + "".join(lines[301:]))
    data = collect(tmp_path / "run", max_buckets=60, workers=1)
    assert data.prereduced == 0 and data.lines > 6000
    assert max(v[3] for v in data.devices["gpu1"].power.values()) == SPIKE_W


def test_a_short_run_is_scanned_its_buckets_are_too_coarse(tmp_path):
    write_run(tmp_path / "run", ticks(20.0))     # 200 ticks want 200 buckets of 0.1 s
    data = collect(tmp_path / "run", workers=1)
    assert data.prereduced == 0 and data.grid.n == 200


def test_damaged_bucket_lines_are_counted_and_skipped(tmp_path):
    write_run(tmp_path / "run", ticks(2000.0))
    path = tmp_path / "run" / names.REPORT_TIMELINE
    lines = path.read_text().splitlines(keepends=True)
    lines[10] = '{"a":9.0,"w":1.0,"d":{"gpu0":[0,"x",0,1,1,1,0,1]}}\n'
    lines[11] = '{"a":10.0,"w":1.0,"d":{"gpu0":[0,1e999,0,1,1,1,0,1]}}\n'
    lines[12] = "not json\n"
    path.write_text("".join(lines))
    data = collect(tmp_path / "run", max_buckets=200, workers=1)
    assert data.prereduced == 1 and data.bad == 3


# -- a real run keeps it --------------------------------------------------------------------------
def test_a_tracked_run_keeps_its_report_timeline(fake_nvml, manual_clock, tmp_path,
                                                 monkeypatch):
    import tracker.rundir.report_timeline as rt
    monkeypatch.setattr(rt, "BASE_S", 0.02)      # buckets fine enough for a 2.6 s run
    monkeypatch.setattr(rt, "PER_LEVEL", 64)
    fake_nvml(FakeGPU(uuid=UUIDS[0], profile=Step(100.0, 400.0, at_s=1.0), clock=manual_clock))
    with track("kept", output_dir=tmp_path, **FAST) as run:
        manual_clock.sleep(2.6)
    path = run.run_dir / names.REPORT_TIMELINE
    lines = [json.loads(x) for x in path.read_text().splitlines()]
    assert lines[0]["report_timeline"] == 1 and lines[0]["base_s"] == 0.02
    assert "end" in lines[-1] and lines[-1]["end"] == pytest.approx(2.6, abs=0.05)
    buckets = [x for x in lines if "a" in x]
    assert len(buckets) > 60 and all("gpu0" in b["d"] for b in buckets)
    data = collect(run.run_dir)
    assert data.prereduced == 1 and data.tail_lines == 0
    power = data.devices["gpu0"].power
    early = [v for b, v in power.items() if data.grid.mid(b) < 0.8]
    late = [v for b, v in power.items() if data.grid.mid(b) > 1.3]
    assert early and all(v[1] == pytest.approx(100.0, rel=0.02) for v in early)
    assert late and all(v[3] == pytest.approx(400.0, rel=0.02) for v in late)
    energy = max(v[1] for v in data.devices["gpu0"].energy.values())
    assert energy == pytest.approx(data.summary["energy_j"], rel=0.02)


def test_a_jobs_members_are_drawn_from_their_buckets(fake_nvml, job_env,  # noqa: F811
                                                     tmp_path, monkeypatch):
    """Each member's own file, summed per node as the scan does (real 2-process job)."""
    from test_report_html import two_node_job

    import tracker.rundir.report_timeline as rt
    monkeypatch.setattr(rt, "BASE_S", 0.001)    # far finer than the job's grid
    monkeypatch.setattr(rt, "PER_LEVEL", 4000)
    job_dir = two_node_job(fake_nvml, job_env, tmp_path)
    fast = collect(job_dir, max_buckets=20, workers=1)
    full = collect(job_dir, max_buckets=20, workers=1, prereduced=False)
    assert fast.kind == "job" and fast.prereduced == 2 and full.prereduced == 0
    assert fast.grid == full.grid and sorted(fast.nodes) == ["node-a", "node-b"]
    for node, watts in (("node-a", 300.0), ("node-b", 200.0)):
        power = fast.nodes[node].power
        assert power.keys() == full.nodes[node].power.keys(), node
        assert all(v[1] == pytest.approx(watts, rel=0.02) == v[3] for v in power.values())
        assert max(v[1] for v in fast.nodes[node].energy.values()) == pytest.approx(
            max(v[1] for v in full.nodes[node].energy.values()), abs=1e-2)


class Period:
    """A live intensity period as the provider hands it (to_dict())."""

    def __init__(self, **d: Any):
        self.d = d

    def to_dict(self) -> dict[str, Any]:
        return dict(self.d)


def test_live_intensity_periods_come_from_the_file(tmp_path):
    recs = ticks(2000.0)
    run = tmp_path / "run"
    write_run(run, recs, close=False)
    first = Period(start_wall=1.7e9, end_wall=None, gco2_per_kwh=210.0, provider="uk",
                   zone="GB", fallback=False, note="")
    w = ReportTimelineWriter(tmp_path / "other")     # only the periods, fed as a run would
    (tmp_path / "other").mkdir()
    w.add(recs[:20])
    w.note_periods([first])
    w.note_periods([first])                          # unchanged: not written again
    closed = Period(**dict(first.d, end_wall=1.7e9 + 900.0))
    second = Period(start_wall=1.7e9 + 900.0, end_wall=None, gco2_per_kwh=345.0,
                    provider="uk", zone="GB", fallback=True, note="HTTP 500")
    w.note_periods([closed, second])
    w.flush()
    lines = (tmp_path / "other" / names.REPORT_TIMELINE).read_text().splitlines()
    assert sum('"intensity"' in x for x in lines) == 3   # the first, it closed, the second
    with open(run / names.REPORT_TIMELINE, "a") as f:
        f.writelines(x + "\n" for x in lines if '"intensity"' in x)
    data = collect(run, max_buckets=200, workers=1)
    assert data.prereduced == 1
    assert [(p["gco2_per_kwh"], p["end_wall"]) for p in data.intensity] == [
        (210.0, 1.7e9 + 900.0), (345.0, None)]
    assert "fallback: HTTP 500" in render_page(data)


def test_a_run_whose_readings_start_late_still_uses_its_file(tmp_path):
    """The first readings at 5 s (devices claimed late): the file starts there too."""
    write_run(tmp_path / "run", [r for r in ticks(2000.0) if r["t"] >= 5.0])
    assert read(tmp_path / "run").from_s == 5.0
    fast = collect(tmp_path / "run", max_buckets=200, workers=1)
    full = collect(tmp_path / "run", max_buckets=200, workers=1, prereduced=False)
    assert fast.prereduced == 1
    same_series(fast, full)
