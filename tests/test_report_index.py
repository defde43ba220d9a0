"""index.html of a root of runs and the sweep comparison: real runs and a real 2-process job
made by the tracker on fake GPUs, pages opened in a real headless Chromium with the network
cut off (tests/browser.py; run helpers from test_report_html.py)."""

from __future__ import annotations

import io
import json
import time
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest
from browser import offline_browser, offline_page
from conftest import UUIDS, Constant, FakeGPU
from test_report_html import FAST, job_env  # noqa: F401

from tracker import track
from tracker.cli import main
from tracker.report.compare import comparison
from tracker.report.html import write_html
from tracker.report.index_page import row_of, write_index


def _run(root: Path, name: str, sensors: list, samples: int) -> Path:
    with track(name, sensors=sensors, output_dir=root, region="FR", cpu=False, ram=False,
               rate_hz=50) as run:
        for _ in run.steps(range(4), samples=lambda _b: samples, tokens=lambda _b: 10 * samples):
            time.sleep(0.02)
    assert run.run_dir is not None
    return Path(run.run_dir)


def two_process_job(fake_nvml: Any, job_env: Any, root: Path) -> Path:  # noqa: F811
    """A real job of two processes on two (simulated) nodes, 300 W and 200 W (as
    test_report_html.two_node_job; its directory found by its job.json, whatever its name)."""
    fake_nvml(FakeGPU(uuid=UUIDS[0], profile=Constant(300.0)),
              FakeGPU(uuid=UUIDS[1], profile=Constant(200.0)))
    job_env(0, "node-a")
    a = track("a", job="idx-job", output_dir=root, job_timeout_s=0, gpus=[0], **FAST).start()
    job_env(1, "node-b")
    b = track("b", job="idx-job", output_dir=root, job_timeout_s=0, gpus=[1], **FAST).start()
    time.sleep(1.0)
    b.stop()
    a.stop()
    [job_dir] = [p.parent for p in root.glob("*/job.json")]
    return job_dir


@pytest.fixture
def root(tmp_path, fake_gpu, fake_nvml, job_env, monkeypatch) -> dict[str, Any]:  # noqa: F811
    """tmp_path/root: two runs (one with its report.html, one without) and a 2-process job."""
    job = two_process_job(fake_nvml, job_env, tmp_path / "root")
    for var in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "ENERGY_TRACKER_NODE",
                "TORCHELASTIC_RESTART_COUNT"):   # the runs after it are no ranks of a job
        monkeypatch.delenv(var, raising=False)
    a = _run(tmp_path / "root", "alpha", fake_gpu, 8)
    b = _run(tmp_path / "root", "beta", fake_gpu, 32)
    write_html(a)
    return {"root": tmp_path / "root", "job": job, "runs": [a, b]}


def _summary(d: Path) -> dict[str, Any]:
    return json.loads((d / "summary.json").read_text())


def _tree(path: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(path)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in path.rglob("*") if p.is_file()}


def browse(html_file: Path, actions: Any) -> dict[str, Any]:
    """Open the page offline in headless Chromium (every request but the file refused and
    remembered: tests/browser.py), run `actions(page)`, return its result with requests and
    console errors."""
    with offline_browser() as browser, \
            offline_page(browser, html_file, viewport={"width": 1400, "height": 1600}) as tab:
        got = actions(tab.page)
    return {"got": got, "requests": [u for u in tab.requests if u != tab.url],
            "errors": tab.errors}


def _visible_names(page: Any) -> list[str]:
    return page.evaluate("""() => Array.from(document.querySelectorAll('#runs tbody tr'))
        .filter(tr => !tr.hidden).map(tr => tr.cells[1].querySelector('a, span') ?
            tr.cells[1].firstChild.textContent : tr.cells[1].textContent)""")


def test_index_rows_sort_filter_links_offline(root):
    before = {str(d): _tree(d) for d in [root["job"], *root["runs"]]}
    out = io.StringIO()
    with redirect_stdout(out):
        assert main(["report", str(root["root"]), "--html"]) == 0
    index = root["root"] / "index.html"
    assert out.getvalue().strip() == f"index: {index}"
    # a reader: no run or job directory gained or changed a file
    assert {str(d): _tree(d) for d in [root["job"], *root["runs"]]} == before
    job_s = _summary(root["job"])
    kwh = {"alpha": _summary(root["runs"][0])["facility_energy_kwh"],
           "beta": _summary(root["runs"][1])["facility_energy_kwh"],
           root["job"].name: job_s["facility_energy_kwh"]}

    def actions(page: Any) -> dict[str, Any]:
        seen: dict[str, Any] = {"all": _visible_names(page)}
        seen["kinds"] = page.eval_on_selector_all("#runs tbody tr",
                                                  "r => r.map(x => x.dataset.kind)")
        page.click("#runs th[data-key=kwh]")
        seen["asc"] = _visible_names(page)
        page.click("#runs th[data-key=kwh]")
        seen["desc"] = _visible_names(page)
        page.fill("#filter", root["job"].name)
        seen["filtered"] = _visible_names(page)
        seen["totals"] = page.evaluate("() => document.getElementById('runs').etTotals")
        page.fill("#filter", "")
        page.select_option("#kind", "run")
        seen["runs_only"] = _visible_names(page)
        seen["totals_runs"] = page.evaluate("() => document.getElementById('runs').etTotals")
        page.select_option("#kind", "")
        seen["hrefs"] = page.eval_on_selector_all("a[href]", "as => as.map(a => a.href)")
        seen["nopage"] = page.eval_on_selector_all("a.nopage", "as => as.map(a => a.textContent)")
        seen["dead_anchors"] = page.evaluate("""() => Array.from(document.querySelectorAll(
            'a[href^="#"]')).map(a => a.getAttribute('href').slice(1))
            .filter(id => !document.getElementById(id))""")
        page.emulate_media(media="print")   # printed: the table without the controls
        seen["print"] = page.evaluate("""() => [getComputedStyle(
            document.querySelector('.controls')).display, document.getElementById('runs')
            .getBoundingClientRect().height]""")
        page.emulate_media(media="screen")
        page.check("#pick-all")
        page.click("#compare-btn")
        seen["compare"] = page.evaluate("() => document.getElementById('compare').etInfo")
        seen["lines"] = page.eval_on_selector_all("#compare-chart path.cmp-line", "p => p.length")
        return seen

    seen = browse(index, actions)
    assert seen["errors"] == [] and seen["requests"] == [], seen
    got = seen["got"]
    # one row per run and per job: the job's two processes are not rows of their own
    assert sorted(got["all"]) == sorted(kwh) and len(got["all"]) == 3
    assert sorted(got["kinds"]) == ["job", "run", "run"]
    assert got["asc"] == sorted(kwh, key=kwh.get)
    assert got["desc"] == sorted(kwh, key=kwh.get, reverse=True)
    assert got["asc"] != got["all"] or got["desc"] != got["all"]     # sorting moved rows
    job_id = root["job"].name
    assert got["filtered"] == [job_id]
    assert got["totals"]["rows"] == 1
    assert got["totals"]["kwh"] == pytest.approx(kwh[job_id], rel=1e-9)
    assert sorted(got["runs_only"]) == ["alpha", "beta"]
    assert got["totals_runs"]["kwh"] == pytest.approx(kwh["alpha"] + kwh["beta"], rel=1e-9)
    # every link resolves to a file of the tree; alpha links to its report, the others
    # (no report.html yet) to their summary, marked as such
    files = [u for u in got["hrefs"] if urlsplit(u).scheme == "file"]
    assert len(files) >= 3
    for u in files:
        p = Path(unquote(urlsplit(u).path))
        assert p.is_file(), u
        assert p.resolve().is_relative_to(root["root"].resolve()), u
    targets = {Path(unquote(urlsplit(u).path)).resolve() for u in files}
    assert (root["runs"][0] / "report.html").resolve() in targets
    assert (root["runs"][1] / "summary.json").resolve() in targets
    assert (root["job"] / "summary.json").resolve() in targets
    assert sorted(got["nopage"]) == sorted(["beta", job_id])
    assert got["dead_anchors"] == []
    assert got["print"][0] == "none" and got["print"][1] > 50
    # the comparison of every row, from the data in the page
    assert got["compare"]["runs"] == 3 and got["compare"]["series"] == 3 and got["lines"] == 3


def test_index_rows_come_from_the_summaries(root):
    from tracker.accounting.inventory import discover
    entries, notes = discover([root["root"], root["job"] / "node-a" / "rank0"])
    assert notes and "counted in the job" in notes[0]
    rows = {r["name"]: r for r in (row_of(e, root["root"]) for e in entries)}
    job_s = _summary(root["job"])
    job = rows[root["job"].name]
    assert job["kind"] == "job" and job["nodes"] == 2 and job["gpus"] == 2
    assert job["world_size"] == 2
    assert job["kwh"] == pytest.approx(job_s["facility_energy_kwh"])
    assert job["g"] == pytest.approx(job_s["emissions_kg"] * 1000)
    alpha = rows["alpha"]
    s = _summary(root["runs"][0])
    assert alpha["j_per_sample"] == s["steps"]["j_per_sample"]
    assert alpha["j_per_token"] == s["steps"]["j_per_token"]
    assert alpha["region"] == "FR" and "gCO2e/kWh" in alpha["factor"]
    assert str(s["grid"]["year"]) in alpha["factor"]
    assert alpha["methods"] == "gpu=sampled" and alpha["has_page"]
    # the power timeline: mean power of a constant 200 W GPU is 200 W in the middle slots
    w = alpha["power"]["w"]
    assert len(w) > 10 and sorted(w)[len(w) // 2] == pytest.approx(200.0, rel=0.05)


# -- the comparison -------------------------------------------------------------------------------
def test_compare_three_runs_names_the_most_efficient_per_sample(tmp_path, fake_nvml,
                                                                manual_clock):
    """Three runs of one sweep on a hand-driven clock: the same 200 W for the same steps,
    8, 16 and 32 samples a step; the page, the text and the JSON name the one with the least
    energy per sample (read from the summaries, not assumed)."""
    fake_nvml(FakeGPU(uuid=UUIDS[0], profile=Constant(200.0), clock=manual_clock))
    runs = []
    for name, samples in (("bs8", 8), ("bs32", 32), ("bs16", 16)):
        with track(name, output_dir=tmp_path / "sweep", cpu=False, ram=False, rate_hz=20,
                   region="SE") as run:
            manual_clock.sleep(0.3)
            for _ in run.steps(range(5), samples=lambda _b, n=samples: n):
                manual_clock.sleep(0.5)
        runs.append(Path(run.run_dir))
    per = {p: _summary(p)["steps"]["j_per_sample"] for p in runs}
    best = _summary(min(per, key=per.get))["name"]
    assert best == "bs32"      # same energy, most samples (a check on the check)
    out = tmp_path / "pages" / "cmp.html"
    text = io.StringIO()
    with redirect_stdout(text):
        assert main(["report", *map(str, runs), "--compare", "--html", str(out)]) == 0
    assert f"most efficient per sample: {best}" in text.getvalue()
    assert not any((p / "compare.html").exists() for p in runs)
    comp = comparison([row_of(e, out.parent) for e in _entries(runs)])
    m = comp.metric("j_per_sample")
    ref = min(per.values())
    assert m.diff_pct == pytest.approx([(per[p] - ref) / ref * 100 for p in runs])

    def actions(page: Any) -> dict[str, Any]:
        return {"info": page.evaluate("() => document.getElementById('compare').etInfo"),
                "best": page.eval_on_selector_all(
                    "#compare-table td.best[data-metric=j_per_sample]", "t => t.length"),
                "cells": page.eval_on_selector_all(
                    "#compare-table td[data-metric=j_per_sample]",
                    "t => t.map(x => x.textContent)"),
                "head": page.inner_text("#compare-best"),
                "lines": page.eval_on_selector_all("#compare-chart path.cmp-line", "p => p.length")}

    seen = browse(out, actions)
    assert seen["errors"] == [] and seen["requests"] == [], seen
    got = seen["got"]
    assert got["info"]["best"]["j_per_sample"] == best
    assert got["head"].startswith(f"Most efficient per sample: {best}")
    assert got["best"] == 1 and got["lines"] == 3
    # the others carry their difference to the best, in %
    others = [c for c, p in zip(got["cells"], runs) if _summary(p)["name"] != best]
    assert all("%" in c for c in others), got["cells"]
    js = io.StringIO()
    with redirect_stdout(js):
        assert main(["report", *map(str, runs), "--compare", "--json"]) == 0
    assert json.loads(js.getvalue())["headline"].startswith(f"most efficient per sample: {best}")


def _entries(paths: list[Path]) -> list[Any]:
    from tracker.accounting.inventory import discover
    return [discover([p])[0][0] for p in paths]


def test_compare_needs_runs(tmp_path, fake_gpu):
    a = _run(tmp_path, "only", fake_gpu, 4)
    err = io.StringIO()
    from contextlib import redirect_stderr
    with redirect_stderr(err):
        assert main(["report", str(a), "--compare"]) == 2
    assert "at least two runs" in err.getvalue()
    with redirect_stderr(err):
        assert main(["report", str(a), str(tmp_path), "--compare"]) == 2
    assert "is not a run or job directory" in err.getvalue()


def test_write_index_of_an_empty_root(tmp_path):
    out = write_index(tmp_path)
    page = out.read_text()
    assert "<tbody></tbody>" in page and "nothing to count" in page


def _page_data(page: str) -> dict[str, Any]:
    start = page.index('id="index-data">') + len('id="index-data">')
    return json.loads(page[start:page.index("</script>", start)])


def test_a_live_run_is_read_as_a_view(tmp_path, fake_nvml, manual_clock):
    """A run still going, in a sweep's folder below the root: its row is rebuilt from its logs
    in memory (status running), and nothing in its directory is written or touched."""
    fake_nvml(FakeGPU(uuid=UUIDS[0], profile=Constant(250.0), clock=manual_clock))
    run = track("live", output_dir=tmp_path / "root" / "sweep-7", cpu=False, ram=False,
                rate_hz=10).start()
    try:
        manual_clock.sleep(2.0)
        before = _tree(run.run_dir)
        page = write_index(tmp_path / "root").read_text()
        after = _tree(run.run_dir)
    finally:
        run.stop()
    assert after == before
    [row] = _page_data(page)["rows"]
    assert row["status"] == "running" and row["rebuilt"] and row["project"] == "sweep-7"
    assert row["kwh"] == pytest.approx(250.0 * 2.0 / 3.6e6, rel=0.05)
    assert row["link"].startswith("sweep-7/") and not row["has_page"]


def test_names_are_text_not_markup(tmp_path, fake_gpu):
    """A run named like markup is shown as its name in the table and the comparison: no
    element or script of its own gets into the page."""
    evil = '<img src=x onerror="document.title=1"><script>window.pwned=1</script>'
    for name in (evil, "plain"):
        _run(tmp_path, name, fake_gpu, 4)
    out = write_index(tmp_path)

    def actions(page: Any) -> dict[str, Any]:
        page.check("#pick-all")
        page.click("#compare-btn")
        return page.evaluate("""() => ({imgs: document.querySelectorAll('img').length,
            scripts: document.querySelectorAll('script').length, pwned: window.pwned || 0,
            title: document.title, names: Array.from(document.querySelectorAll(
                '#runs tbody tr td:nth-child(2) a')).map(a => a.textContent),
            heads: Array.from(document.querySelectorAll('#compare-table th span'))
                .map(s => s.textContent)})""")

    seen = browse(out, actions)
    assert seen["errors"] == [] and seen["requests"] == [], seen
    got = seen["got"]
    assert got["imgs"] == 0 and got["scripts"] == 2 and got["pwned"] == 0
    assert got["title"] != "1"
    assert evil in got["names"] and evil in got["heads"]
