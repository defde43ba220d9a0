"""The offline HTML report and the terminal view: real runs and jobs made by the tracker, a real
headless Chromium with the network cut off, damaged logs, big logs (downsampling, the parallel
scan, zoom in the browser), and the page's size."""

from __future__ import annotations

import io
import json
import math
import os
import shutil
import sys
import time
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from typing import Any

import pytest
from browser import offline_browser, offline_page
from conftest import UUIDS, Constant, FakeGPU, condensed, wait_for

from tracker import ConfigError, track
from tracker.report import html as report_html
from tracker.report.html import collect, write_html
from tracker.report.terminal import BLOCKS, render

ROOT = Path(__file__).resolve().parent.parent
FAST = dict(rate_hz=50, counter_interval_s=0.2, cpu=False, ram=False)


def small_run(tmp_path: Path, sensors: list) -> Path:
    """A real tracked run with phases, epochs, steps, evaluations and a checkpoint."""
    with track("html-report", sensors=sensors, output_dir=tmp_path, region="DE", cpu=False,
               ram=False, rate_hz=50) as run:
        with run.window("warmup"):
            time.sleep(0.15)
        for _ in run.epochs(range(2)):
            for _ in run.steps(range(6), samples=lambda _b: 8):
                time.sleep(0.02)
            with run.window("eval", kind="eval"):
                time.sleep(0.1)
        with run.window("save", kind="checkpoint"):
            time.sleep(0.05)
    assert run.run_dir is not None
    return Path(run.run_dir)


# -- the browser ----------------------------------------------------------------------------------
def open_offline(html_file: Path, screenshot: Path) -> dict[str, Any]:
    """Load the file in headless Chromium with every network request refused (tests/browser.py);
    return what the page did: requests, console errors, the charts drawn (charts.js's etInfo,
    or the bars)."""
    with offline_browser() as browser, \
            offline_page(browser, html_file, viewport={"width": 1400, "height": 2000}) as tab:
        page = tab.page
        page.wait_for_selector(".et-chart .main-svg", timeout=30_000)
        charts = page.evaluate("""() => Array.from(
            document.querySelectorAll('.et-chart')).map(el => {
                const info = el.etInfo || {};
                const bars = el.querySelectorAll('svg rect[fill]').length;
                return {id: el.id, svgs: el.querySelectorAll('.main-svg').length,
                        traces: info.series || (bars ? 1 : 0),
                        points: info.points || bars, shapes: info.shades || 0,
                        peak: info.peak, range: info.range};
            })""")
        text = page.inner_text("body")
        zoom = _zoom(page)
        page.screenshot(path=str(screenshot), full_page=False)
    return {"requests": tab.requests, "errors": tab.errors, "charts": charts, "text": text,
            "url": tab.url, "zoom": zoom}


def _zoom(page: Any) -> dict[str, Any]:
    """Drag across the middle fifth of the timeline, hover, double-click: the x range shown
    after each step, and the hover readout."""
    def info() -> Any:
        return page.evaluate("() => document.getElementById('fig-timeline').etInfo")
    box = page.locator("#fig-timeline .et-over").bounding_box()
    y = box["y"] + 60
    page.mouse.move(box["x"] + box["width"] * 0.4, y)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.6, y, steps=4)
    page.mouse.up()
    zoomed = info()
    page.mouse.move(box["x"] + box["width"] * 0.5, y)
    tip = page.inner_text("#fig-timeline .et-tip")
    page.mouse.dblclick(box["x"] + box["width"] * 0.5, y)
    return {"zoomed": zoomed, "tip": tip, "reset": info()}


def assert_offline_page(seen: dict[str, Any]) -> None:
    assert seen["errors"] == [], seen["errors"]
    others = [u for u in seen["requests"] if u != seen["url"] and not u.startswith("data:")]
    assert others == [], f"the page asked the network for {others}"
    charts = {c["id"]: c for c in seen["charts"]}
    assert "fig-timeline" in charts and "fig-devices" in charts, charts
    for c in charts.values():
        assert c["svgs"] >= 1 and c["traces"] >= 1 and c["points"] >= 1, c
    # drag to zoom: the range is the dragged fifth; double-click: the whole run again
    full, zoom = charts["fig-timeline"]["range"], seen["zoom"]
    span = zoom["zoomed"]["range"][1] - zoom["zoomed"]["range"][0]
    assert 0.15 < span / (full[1] - full[0]) < 0.25, zoom
    assert zoom["reset"]["range"] == full
    assert "W" in zoom["tip"] and "time since start" in zoom["tip"], zoom["tip"]


def test_report_opens_offline_in_chromium(tmp_path, fake_gpu):
    run_dir = small_run(tmp_path, fake_gpu)
    out = write_html(run_dir)
    assert out == run_dir / "report.html"
    # the file is complete by itself: no http(s) URL is loaded by it
    page = out.read_text()
    assert "<script src=" not in page and 'rel="stylesheet"' not in page
    assert "plotly" not in page.lower() and len(page.encode()) < 300_000
    shot = tmp_path / "report.png"
    seen = open_offline(out, shot)
    assert_offline_page(seen)
    timeline = next(c for c in seen["charts"] if c["id"] == "fig-timeline")
    assert timeline["shapes"] >= 6          # warmup, 2 epochs, 2 evals, the checkpoint
    for words in ("Timeline", "Energy per device", "What if", "Provenance", "gpu0",
                  "Ember", "eval", "save", "Fake GPU 200 W"):
        assert words in seen["text"], words
    assert shot.stat().st_size > 20_000
    if os.environ.get("SAVE_REPORT_SCREENSHOT") == "1":
        # The README's picture: from REPORT_SCREENSHOT_RUN (e.g. the demo's run directory)
        # when given, checked the same way, else from this test's run.
        source = os.environ.get("REPORT_SCREENSHOT_RUN")
        if source:
            shot = tmp_path / "readme.png"
            seen = open_offline(write_html(Path(source), tmp_path / "readme.html"), shot)
            assert_offline_page(seen)
        (ROOT / "docs").mkdir(exist_ok=True)
        shutil.copyfile(shot, ROOT / "docs" / "report-screenshot.png")


# -- jobs -----------------------------------------------------------------------------------------
@pytest.fixture
def job_env(monkeypatch, tmp_path):
    """Make this process look like rank `r` of a 2-process job on node `node`."""
    monkeypatch.setenv("ENERGY_TRACKER_LOCK_DIR", str(tmp_path / "locks"))
    for var in ("TORCHELASTIC_RUN_ID", "MASTER_ADDR", "MASTER_PORT", "ENERGY_TRACKER_JOB"):
        monkeypatch.delenv(var, raising=False)

    def as_rank(rank: int, node: str) -> None:
        monkeypatch.setenv("RANK", str(rank))
        monkeypatch.setenv("LOCAL_RANK", str(rank % 2))
        monkeypatch.setenv("WORLD_SIZE", "2")
        monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
        monkeypatch.setenv("ENERGY_TRACKER_NODE", node)
        monkeypatch.setenv("TORCHELASTIC_RESTART_COUNT", "0")
    return as_rank


def two_node_job(fake_nvml, job_env, tmp_path: Path) -> Path:
    """A real job of two processes on two (simulated) nodes: node-a's GPU draws 300 W,
    node-b's 200 W."""
    fake_nvml(FakeGPU(uuid=UUIDS[0], profile=Constant(300.0)),
              FakeGPU(uuid=UUIDS[1], profile=Constant(200.0)))
    # each rank may measure only its own GPU: no late claim of the other's once it stops
    job_env(0, "node-a")
    a = track("a", job="html-job", output_dir=tmp_path, job_timeout_s=0, gpus=[0],
              **FAST).start()
    job_env(1, "node-b")
    b = track("b", job="html-job", output_dir=tmp_path, job_timeout_s=0, gpus=[1],
              **FAST).start()
    for r in (a, b):
        r.begin_window("epoch 0", kind="epoch")
    time.sleep(1.2)
    b.stop()
    a.stop()
    job_dir = next(tmp_path.glob("*-html-job"))   # <name>-<launcher>-<job id>
    assert (job_dir / "job.json").is_file()
    return job_dir


def test_job_report_has_nodes_and_the_job_section(fake_nvml, job_env, tmp_path):
    job_dir = two_node_job(fake_nvml, job_env, tmp_path)
    data = collect(job_dir)
    assert data.kind == "job" and sorted(data.nodes) == ["node-a", "node-b"]
    assert len(data.summary["devices"]) == 2
    for node, watts in (("node-a", 300.0), ("node-b", 200.0)):
        power = data.nodes[node].power.values()
        assert all(v[1] == pytest.approx(watts, rel=0.02) == v[3] for v in power), node
    # few members: their files are split into byte ranges, scanned by child processes and
    # summed here; the same nodes as one process summing each member as it goes
    split = collect(job_dir, workers=3, min_parallel_bytes=0)
    assert split.workers == 3
    for node in data.nodes:
        assert split.nodes[node].power == data.nodes[node].power
        assert split.nodes[node].energy == data.nodes[node].energy
    # the cumulative energy of the job is the sum of its members' devices
    total = report_html.sum_series(list(data.nodes.values()), data.grid)
    assert max(v[1] for v in total.energy.values()) == pytest.approx(
        data.summary["energy_j"], rel=0.02)
    out = write_html(job_dir)
    page = out.read_text()
    for words in ('id="job"', "Nodes", "node-a", "node-b", "Attempts", "Missing",
                  "GPU energy spread", "Power per node"):
        assert words in page, words


def test_job_report_opens_offline_in_chromium(fake_nvml, job_env, tmp_path):
    out = write_html(two_node_job(fake_nvml, job_env, tmp_path))
    seen = open_offline(out, tmp_path / "job.png")
    assert_offline_page(seen)
    timeline = next(c for c in seen["charts"] if c["id"] == "fig-timeline")
    assert timeline["traces"] >= 2       # each node: its band (min to max)
    assert "node-a" in seen["text"] and "node-b" in seen["text"]


# -- damaged and missing inputs -------------------------------------------------------------------
def test_damaged_lines_are_skipped_and_counted(tmp_path, fake_gpu):
    run_dir = small_run(tmp_path, fake_gpu)
    samples = run_dir / "samples.jsonl"
    lines = samples.read_text().splitlines(keepends=True)
    junk = ["not json at all\n", '{"t": "soon", "d": {"gpu0": {"w": 1}}}\n', "[1, 2, 3]\n",
            '{"t": 1.0, "d": {"gpu0": "oops"}}\n',
            '{"t": 1.0, "d": {"gpu0": {"w": "hot", "j": null}}}\n',
            '{"t": 1.0, "d": {"gpu0": {"w": NaN, "j": Infinity}}}\n',
            '{"t": 1.0, "d": [1]}\n', '\x00\x00\x00\n', '{"t": 2.0, "intensity": {}}\n']
    mid = len(lines) // 2
    samples.write_text("".join(lines[:mid] + junk + lines[mid:]) + '{"t": 9.9, "d": {"gp')
    data = collect(run_dir)
    # every junk line but the two that are valid records with bad readings inside, plus the
    # cut last line
    assert data.bad == len(junk) - 3 + 1
    power = [v for v in data.devices["gpu0"].power.values()]
    assert all(200.0 - 1e-6 <= v[1] <= v[3] <= 200.0 + 1e-6 for v in power)
    out = write_html(run_dir)
    assert "damaged line(s) in samples.jsonl were skipped" in out.read_text()


def test_missing_summary_is_rebuilt_and_not_written(tmp_path, fake_gpu):
    run_dir = small_run(tmp_path, fake_gpu)
    saved = json.loads((run_dir / "summary.json").read_text())
    (run_dir / "summary.json").unlink()
    data = collect(run_dir)
    assert data.rebuilt and not (run_dir / "summary.json").exists()
    assert data.summary["energy_j"] == pytest.approx(saved["energy_j"], rel=1e-6)
    assert "rebuilt from the logs" in write_html(run_dir).read_text()
    assert not (run_dir / "summary.json").exists()


def test_not_a_run_directory(tmp_path):
    with pytest.raises(ConfigError, match="neither a run directory"):
        write_html(tmp_path)


# -- big logs: downsampling and the parallel scan -------------------------------------------------
def synthetic_run(run_dir: Path, seconds: float, rate: float = 10.0) -> dict[str, Any]:
    """A run directory in the sampler's record format: gpu0 and gpu1 with power and energy,
    `pkg` with only an energy counter (as RAPL), one spike on gpu1, and the usual other
    records (marks, steps, empty ticks) in between."""
    run_dir.mkdir(parents=True)
    devices = [{"name": "gpu0", "component": "gpu", "method": "counter", "description": "g0"},
               {"name": "gpu1", "component": "gpu", "method": "counter", "description": "g1"},
               {"name": "pkg", "component": "cpu", "method": "counter", "description": "rapl"}]
    manifest = {"schema": 1, "run_id": "synthetic", "name": "synthetic", "start_wall": 1.7e9,
                "devices": devices, "grid": {"gco2_per_kwh": 300.0, "region_code": "XX"},
                "pue": 1.0}
    (run_dir / "run.json").write_text(json.dumps(manifest))
    ticks = int(seconds * rate)
    spike_k = ticks // 3 + 1
    j = [0.0, 0.0, 0.0]
    with open(run_dir / "samples.jsonl", "w") as f:
        for k in range(ticks + 1):
            t = k / rate
            w0 = 300.0 + 50.0 * math.sin(t / 7.0)
            w1 = 999.0 if k == spike_k else 250.0
            j[0] += w0 / rate
            j[1] += w1 / rate
            d: dict[str, Any] = {"gpu0": {"w": w0, "j": round(j[0], 3)},
                                 "gpu1": {"w": w1, "j": round(j[1], 3)}}
            if k % int(rate) == 0:       # the package counter once a second, 30-50 W
                j[2] += 40.0 + 10.0 * math.sin(t / 5.0) if k else 0.0
                d["pkg"] = {"c": 1e6 + j[2], "j": round(j[2], 3)}
            f.write(json.dumps({"t": round(t, 6), "d": d}, separators=(",", ":")) + "\n")
            if k % 25 == 0:
                f.write(json.dumps({"t": round(t, 6), "steps": [[k, -1, t, t + 0.1, k, 4, 0]]})
                        + "\n")
                f.write(json.dumps({"t": round(t + 0.05, 6)}) + "\n")
    summary = {"status": "finished", "name": "synthetic", "run_id": "synthetic",
               "duration_s": ticks / rate, "energy_j": sum(j), "sampling": {"rate_hz": rate},
               "windows": [], "steps": {}, "devices": [], "components": {}}
    (run_dir / "summary.json").write_text(json.dumps(summary))
    return {"spike_t": spike_k / rate, "final_j": list(j)}


def test_downsampling_keeps_every_peak_in_few_points(tmp_path):
    facts = synthetic_run(tmp_path / "run", seconds=2000.0)     # 20 000 ticks
    data = collect(tmp_path / "run", max_buckets=200, workers=1)
    assert data.grid.n == 200 and data.bad == 0
    for name in ("gpu0", "gpu1", "pkg"):
        assert len(data.devices[name].power) <= 200
    spike = max(data.devices["gpu1"].power.values(), key=lambda v: v[3])
    assert spike[3] == 999.0 and spike[2] == pytest.approx(facts["spike_t"])
    g0 = data.devices["gpu0"].power.values()
    assert min(v[1] for v in g0) == pytest.approx(250.0, abs=0.01)   # 300 - 50
    assert max(v[3] for v in g0) == pytest.approx(350.0, abs=0.01)
    pkg = data.devices["pkg"]
    assert pkg.derived and all(30.0 - 1e-6 <= v[1] <= v[3] <= 50.0 + 1e-6
                               for v in pkg.power.values())
    assert min(v[1] for v in pkg.power.values()) < 31 and max(v[3] for v in pkg.power.values()) > 49
    for name, final in zip(("gpu0", "gpu1", "pkg"), facts["final_j"]):
        assert max(v[1] for v in data.devices[name].energy.values()) == pytest.approx(
            final, abs=0.01)
    # the page holds each bucket's min and max (time and value) per device, not 20 000
    # readings: the spike is in it, at its time
    spec = timeline_spec(report_html.render_page(data))
    [gpu1] = [s for s in spec["panels"][0]["series"] if s["name"] == "gpu1"]
    assert 200 >= len(gpu1["d"]["b"]) >= 190 and max(gpu1["d"]["hi"]) == 999.0
    at = gpu1["d"]["hi"].index(999.0)
    assert gpu1["d"]["th"][at] == pytest.approx(facts["spike_t"])


def timeline_spec(page: str) -> dict[str, Any]:
    """The timeline's data as the page embeds it (JSON in a script element)."""
    start = page.index('data-chart="fig-timeline">') + len('data-chart="fig-timeline">')
    return json.loads(page[start:page.index("</script>", start)])


def test_live_intensity_periods_are_drawn(tmp_path):
    synthetic_run(tmp_path / "run", seconds=60.0)
    periods = [{"start_wall": 1.7e9 + 0.0, "end_wall": 1.7e9 + 30.0, "gco2_per_kwh": 210.0,
                "provider": "uk", "zone": "GB", "fallback": False, "note": ""},
               {"start_wall": 1.7e9 + 30.0, "end_wall": None, "gco2_per_kwh": 345.0,
                "provider": "uk", "zone": "GB", "fallback": True, "note": "HTTP 500"}]
    with open(tmp_path / "run" / "samples.jsonl", "a") as f:
        for p, t in zip(periods, (0.5, 30.0)):
            f.write(json.dumps({"t": t, "intensity": p}) + "\n")
    data = collect(tmp_path / "run")
    assert [p["gco2_per_kwh"] for p in data.intensity] == [210.0, 345.0]
    page = report_html.render_page(data)
    assert "Grid carbon intensity" in page and "Live intensity periods" in page
    assert "fallback: HTTP 500" in page


def test_parallel_scan_equals_one_process(tmp_path, monkeypatch):
    synthetic_run(tmp_path / "run", seconds=600.0)
    # 1 s buckets: the package counter's rate at a range edge has a bucket to itself, so a
    # derivative lost at the edge of two ranges would show
    one = collect(tmp_path / "run", max_buckets=600, workers=1)
    here = []   # byte ranges scanned in this process: the children must have done the others
    run = report_html.Task.run
    monkeypatch.setattr(report_html.Task, "run", lambda t, g: here.append(t) or run(t, g))
    many = collect(tmp_path / "run", max_buckets=600, workers=3, min_parallel_bytes=0)
    assert many.workers == 3 and one.workers == 1 and len(here) == 1
    assert (many.lines, many.bad) == (one.lines, one.bad)
    assert set(many.devices) == set(one.devices) == {"gpu0", "gpu1", "pkg"}
    for name in one.devices:
        assert many.devices[name].power == one.devices[name].power, name
        assert many.devices[name].energy == one.devices[name].energy, name


def test_a_failed_worker_is_redone_in_process(tmp_path, monkeypatch):
    synthetic_run(tmp_path / "run", seconds=300.0)
    one = collect(tmp_path / "run", max_buckets=100, workers=1)
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    import tracker.report.scan as scan
    # every worker exits at start: the pool breaks, its shares are redone in this process
    monkeypatch.setattr(scan, "_pool", lambda n: ProcessPoolExecutor(
        n, mp_context=get_context("spawn"), initializer=os._exit, initargs=(3,)))
    many = collect(tmp_path / "run", max_buckets=100, workers=2, min_parallel_bytes=0)
    assert many.devices["gpu0"].power == one.devices["gpu0"].power


# -- the terminal view and the command line -------------------------------------------------------
def test_terminal_render_sparkline_and_bars(tmp_path, monkeypatch):
    synthetic_run(tmp_path / "run", seconds=600.0)
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    summary["breakdown"] = {"steps": {"energy_j": 900.0, "share": 0.9},
                            "between_steps": {"energy_j": 100.0, "share": 0.1}}
    text = render(summary, tmp_path / "run", width=40)
    spark = next(line for line in text.splitlines() if line.startswith("power  "))
    assert len(spark) == len("power  ") + 40 and set(spark[7:]) <= set(BLOCKS)
    assert "where the energy went" in text and "90.0 %" in text and "10.0 %" in text
    steps_bar = next(line for line in text.splitlines() if "  steps" in line)
    full, empty = steps_bar.count("█"), steps_bar.count("░")
    assert full == round(0.9 * (full + empty)) and full + empty >= 10
    # the seek path for big files (forced here) sees the same mean power: 300+250+40 W,
    # with gpu0's +-50 W sine
    monkeypatch.setattr("tracker.report.terminal.SMALL_FILE", 0)
    lo, hi = map(float, render(summary, tmp_path / "run", width=20).splitlines()[1]
                 .split()[0].replace(",", "").split("-"))
    assert 520 < lo < hi < 660
    assert render({"duration_s": 0}, tmp_path / "run") == ""


def test_cli_html_option(tmp_path, fake_gpu):
    from tracker.cli import main
    run_dir = small_run(tmp_path, fake_gpu)
    out = io.StringIO()
    with redirect_stdout(out):
        assert main(["report", str(run_dir), "--html"]) == 0
    assert out.getvalue().rstrip().endswith(f"report: {run_dir / 'report.html'}")
    assert 20_000 < (run_dir / "report.html").stat().st_size < 300_000   # no library inside
    custom = tmp_path / "elsewhere" / "r.html"
    out = io.StringIO()
    with redirect_stdout(out):
        assert main(["report", str(run_dir), "--html", str(custom), "--json"]) == 0
    json.loads(out.getvalue())          # stdout stays one JSON object with --json
    assert custom.is_file()
    err = io.StringIO()
    with redirect_stderr(err):
        # (a root gets its index.html: tests/test_report_index.py; two runs need --compare)
        assert main(["report", str(run_dir), str(run_dir), "--html"]) == 2
    assert "--html takes one run directory" in err.getvalue()


def test_cli_appends_the_terminal_view_only_on_a_tty(tmp_path, fake_gpu, monkeypatch):
    from tracker.cli import main
    run_dir = small_run(tmp_path, fake_gpu)

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    for stream, expect in ((Tty(), True), (io.StringIO(), False)):
        with monkeypatch.context() as m:
            m.setattr(sys, "stdout", stream)
            assert main(["report", str(run_dir)]) == 0
        assert ("power  " in stream.getvalue()) is expect


def test_a_checkpointed_run_draws_its_whole_timeline(fake_nvml, manual_clock, tmp_path,
                                                     monkeypatch):
    """A long run's early hours live in condensed timeline.<k>.jsonl.gz files (its raw log is
    rotated at each checkpoint): the report reads them, so the timeline has no hole."""
    from conftest import Step

    import tracker.rundir.snapshot as snapshot
    monkeypatch.setattr(snapshot, "SEGMENT_S", 0.5)
    fake_nvml(FakeGPU(uuid=UUIDS[0], profile=Step(100.0, 400.0, at_s=1.0), clock=manual_clock))
    with track("long", output_dir=tmp_path, **FAST) as run:
        manual_clock.sleep(2.6)      # run time by hand: checkpoints at 0.5, 1.0, ... 2.5 s
    wait_for(lambda: condensed(run.run_dir), "the last condensing thread")
    names = [p.name for p in run.run_dir.iterdir()]
    # checkpoints fall on the 0.5 s rounds of the tick loop: at 0.5 ... 2.0 s, and at 2.5 s
    # when that round comes before the final reading at 2.6 s
    assert 4 <= sum(n.startswith("timeline.") for n in names) <= 5, names
    data = collect(run.run_dir)
    power = data.devices["gpu0"].power
    early = [v for b, v in power.items() if data.grid.mid(b) < 0.8]
    late = [v for b, v in power.items() if data.grid.mid(b) > 1.3]
    assert early and all(v[1] == pytest.approx(100.0, rel=0.02) for v in early)
    assert late and all(v[3] == pytest.approx(400.0, rel=0.02) for v in late)
    # the buckets cover the run from its first second to its end
    assert min(data.grid.mid(b) for b in power) < 0.3
    assert max(data.grid.mid(b) for b in power) > 2.2
    energy = max(v[1] for v in data.devices["gpu0"].energy.values())
    assert energy == pytest.approx(data.summary["energy_j"], rel=0.02)
    assert data.bad == 0
    # the terminal sparkline too: snapshot.json's curves before the last checkpoint, then
    # samples.jsonl (not a straight line from 0 to where samples.jsonl begins)
    import re
    text = render(data.summary, run.run_dir, width=13)
    lo, hi = map(float, re.search(r"([\d.,]+)-([\d.,]+) W", text).groups())
    assert lo == pytest.approx(100.0, rel=0.1) and hi == pytest.approx(400.0, rel=0.1), text


# -- report.html written at the end of runs and jobs -------------------------------------------
def test_a_run_writes_its_report_at_the_end(fake_nvml, tmp_path, monkeypatch):
    monkeypatch.delenv("ENERGY_TRACKER_REPORT_HTML")        # the default: on
    fake_nvml(1)
    with track("auto", output_dir=tmp_path, **FAST) as run:
        time.sleep(0.3)
    out = run.run_dir / "report.html"
    assert out.is_file() and 'id="fig-timeline"' in out.read_text()
    saved = json.loads((run.run_dir / "summary.json").read_text())
    assert saved["report_html"] == str(out) == run.summary.report_html
    assert f"report: {out}" in run.summary.format()


@pytest.mark.parametrize("how", ["option", "env"])
def test_the_report_can_be_turned_off(fake_nvml, tmp_path, monkeypatch, how):
    fake_nvml(1)
    monkeypatch.setenv("ENERGY_TRACKER_REPORT_HTML", "0" if how == "env" else "1")
    opts = {"report_html": False} if how == "option" else {}
    with track("off", output_dir=tmp_path, **FAST, **opts) as run:
        time.sleep(0.1)
    assert not (run.run_dir / "report.html").exists()
    assert run.summary.report_html is None and "report:" not in run.summary.format()
    assert not any("report.html" in n for n in run.summary.notes)


def test_a_report_that_fails_costs_nothing_else(fake_nvml, tmp_path, monkeypatch):
    def broken(*_a, **_k):
        raise RuntimeError("drawing failed")
    monkeypatch.setattr(report_html, "write_html", broken)
    fake_nvml(1)
    with track("broken", output_dir=tmp_path, report_html=True, **FAST) as run:
        time.sleep(0.2)
    saved = json.loads((run.run_dir / "summary.json").read_text())
    assert "report_html" not in saved and saved["energy_j"] > 0
    assert any("drawing failed" in n for n in saved["notes"])
    assert run.summary.report_html is None
    assert (tmp_path / "emissions.csv").is_file() and (run.run_dir / "windows.json").is_file()


def test_a_terminated_run_leaves_the_page_for_later(fake_nvml, tmp_path):
    fake_nvml(1)
    run = track("term", output_dir=tmp_path, report_html=True, **FAST).start()
    time.sleep(0.1)
    s = run.stop("terminated")
    assert not (run.run_dir / "report.html").exists()
    assert any("was terminated" in n and "report --html" in n for n in s.notes)


def test_a_job_writes_one_report_in_its_directory(fake_nvml, job_env, tmp_path, monkeypatch):
    monkeypatch.setenv("ENERGY_TRACKER_REPORT_HTML", "1")
    job_dir = two_node_job(fake_nvml, job_env, tmp_path)
    assert (job_dir / "report.html").is_file()
    saved = json.loads((job_dir / "summary.json").read_text())
    assert saved["report_html"] == str(job_dir / "report.html")
    assert not list(job_dir.glob("*/report.html"))       # members have none of their own


def test_report_html_option_is_type_checked():
    with pytest.raises(ConfigError, match="report_html must be True, False or None"):
        track("x", report_html="yes")
