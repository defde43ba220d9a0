"""Benchmark: index.html of a root of many runs (write_index, the inventory, Chromium).

One real, short run is made by the real tracker (`track()` at its defaults but the rate, in a
child process so its sampler threads never share the timed process) into a temporary
folder. For each N of --runs, a root of N copies of it is laid out, each with a fresh run id
and name in run.json and summary.json (the inventory counts a run once by its id: copies
with the same id would be one entry). Then, per N:

- index.html: its size in bytes and per run;
- write_index(root): wall and CPU time (the process's own, the figure to trust on a shared
  machine), median over --repeats calls in this process (the first also pays for reading
  the page's assets; the median does not);
- inventory([root]): the same;
- Chromium (Playwright driving the Debian chromium, as tests/test_report_html.py does; skipped
  with the reason when either is missing), --repeats fresh pages, offline, every request but
  the file refused: from navigation start (performance.now()) to all N rows of the runs
  table in the document, to the page's script having run (the totals row counts N shown
  rows), and the load event.

Each N is checked before it is timed: index.html has N run rows and the inventory counts N
runs (else the benchmark stops: a figure for the wrong page is no figure). The results are
one table, with each N's ratio to the first N beside the ratio of the run counts (a ratio
equal to the run-count ratio is linear scaling).

    python scripts/bench_report_index.py                        # --runs 200,500 --repeats 3
    python scripts/bench_report_index.py --runs 50,100,200 --repeats 1 --no-browser
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import _chromium  # noqa: E402  (scripts/_chromium.py, beside this file)

# The child that makes the one real run: steps with samples so the index has J/sample, a
# window so the summary is shaped like a training run's. It prints the run directory last.
MAKE_RUN = """
import sys, time
sys.path.insert(0, {root!r})
from tracker import track
with track("bench-index", output_dir={out!r}, region="DE", rate_hz={rate!r},
           report_html=True) as run:
    with run.window("warmup"):
        time.sleep({seconds!r} * 0.1)
    for _ in run.steps(range(20), samples=lambda _b: 32, tokens=lambda _b: 32 * 128):
        time.sleep({seconds!r} * 0.9 / 20)
print(run.run_dir)
"""


def make_run(base: Path, seconds: float, rate_hz: float) -> Path:
    """One real tracked run under base/made; its directory."""
    code = MAKE_RUN.format(root=str(ROOT), out=str(base / "made"), rate=rate_hz,
                           seconds=seconds)
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    if out.returncode != 0:
        raise SystemExit(f"the tracked run failed:\n{out.stderr[-3000:]}")
    run = Path(out.stdout.strip().splitlines()[-1])
    if not (run / "summary.json").is_file():
        raise SystemExit(f"the tracked run left no summary.json in {run}")
    return run


def fill_root(src: Path, root: Path, n: int) -> None:
    """root/ with n copies of the run src, each with its own run id and name."""
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    for i in range(n):
        d = root / f"{src.name}-{i:04d}"
        shutil.copytree(src, d)
        run_id = str(uuid.uuid4())
        for name in ("run.json", "summary.json"):
            doc = json.loads((d / name).read_text())
            doc["run_id"] = run_id
            doc["name"] = f"bench-index-{i:04d}"
            (d / name).write_text(json.dumps(doc))


def timed(fn: Callable[..., Any], arg: Any, repeats: int) -> tuple[list[float], list[float], Any]:
    """(wall seconds, CPU seconds of this process) per call, and the last call's result."""
    walls, cpus = [], []
    result = None
    for _ in range(repeats):
        w0, c0 = time.perf_counter(), time.process_time()
        result = fn(arg)
        cpus.append(time.process_time() - c0)
        walls.append(time.perf_counter() - w0)
    return walls, cpus, result


# Installed before any script of the page. performance.now() counts from navigation start.
# rows_ms: the runs table holds all N rows (server-drawn HTML, so this is parsing);
# ready_ms: the page's script has filled the totals row with N shown rows (sortable,
# filterable). `tb.rows` is a live collection: reading its length per batch of mutations is
# cheap next to the parse itself.
ROWS_PRESENT = """(() => {
  const N = %d;
  const seen = () => {
    const now = performance.now();
    if (window.__etRows == null) {
      const tb = document.querySelector('#runs > tbody');
      if (tb && tb.rows.length >= N) window.__etRows = now;
    }
    if (window.__etReady == null) {
      const c = document.getElementById('t-count');
      if (c && c.textContent === String(N)) window.__etReady = now;
    }
  };
  new MutationObserver(seen).observe(document, {childList: true, subtree: true,
                                                 characterData: true});
})();"""


def open_times(page: Path, n: int, repeats: int) -> list[dict[str, float]]:
    """Open the page `repeats` times in headless Chromium, offline (stops on a console error or
    a request); the times in ms."""
    out = []
    with _chromium.offline_browser() as browser:
        for _ in range(repeats):
            with _chromium.offline_page(browser, page, init_script=ROWS_PRESENT % n,
                                        timeout_ms=180_000) as tab:
                tab.page.wait_for_function(
                    "window.__etRows != null && window.__etReady != null", timeout=180_000)
                got = tab.page.evaluate("""() => ({rows_ms: window.__etRows,
                    ready_ms: window.__etReady,
                    load_ms: performance.getEntriesByType('navigation')[0].loadEventStart})""")
                tab.check()
                out.append(got)
    return out


def check(root: Path, page: Path, n: int, counted: int) -> None:
    """The page and the inventory are of N runs, or the figures mean nothing."""
    rows = len(re.findall(r'<tr data-i="\d+" data-kind="run"', page.read_text("utf-8")))
    if rows != n or counted != n:
        raise SystemExit(f"{root}: expected {n} runs, index.html has {rows} run rows and the "
                         f"inventory counts {counted}")


def med(xs: list[float]) -> float:
    return statistics.median(xs)


def table(results: list[dict[str, Any]]) -> str:
    """Metrics as rows, one column per N, then each N's ratio to the first N."""
    ns = [r["n"] for r in results]
    metrics: list[tuple[str, str, str]] = [   # label, key, format
        ("runs", "n", "{:.0f}"),
        ("index.html bytes", "bytes", "{:,.0f}"),
        ("index.html KB/run", "kb_per_run", "{:.2f}"),
        ("index.html KB per run added", "kb_added_per_run", "{:.2f}"),
        ("write_index wall s", "index_s", "{:.2f}"),
        ("write_index CPU s", "index_cpu_s", "{:.2f}"),
        ("write_index ms/run (CPU)", "index_cpu_ms_per_run", "{:.2f}"),
        ("inventory wall s", "inv_s", "{:.2f}"),
        ("inventory CPU s", "inv_cpu_s", "{:.2f}"),
        ("Chromium: all rows, ms", "rows_ms", "{:.0f}"),
        ("Chromium: script ran, ms", "ready_ms", "{:.0f}"),
        ("Chromium: load event, ms", "load_ms", "{:.0f}"),
    ]
    head = ["metric"] + [f"N={n}" for n in ns] + [f"x N={n}/{ns[0]}" for n in ns[1:]]
    lines = [head]
    for label, key, fmt in metrics:
        vals = [r.get(key) for r in results]
        cells = [label] + ["n/a" if v is None else fmt.format(v) for v in vals]
        first = vals[0]
        for v in vals[1:]:
            cells.append("n/a" if v is None or not first else f"{v / first:.2f}")
        lines.append(cells)
    widths = [max(len(row[i]) for row in lines) for i in range(len(head))]
    text = ["| " + " | ".join(c.ljust(w) if i == 0 else c.rjust(w)
                              for i, (c, w) in enumerate(zip(row, widths))) + " |"
            for row in lines]
    text.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(text)


def main() -> None:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--runs", default="200,500",
                   help="comma-separated numbers of runs in the root (default 200,500)")
    p.add_argument("--repeats", type=int, default=3, help="timed calls / page opens per N")
    p.add_argument("--run-seconds", type=float, default=2.0,
                   help="length of the one real tracked run (default 2 s)")
    p.add_argument("--rate-hz", type=float, default=20.0,
                   help="its sampling rate (default 20 Hz)")
    p.add_argument("--no-browser", action="store_true", help="skip the Chromium timing")
    p.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = p.parse_args()
    try:
        ns = [int(x) for x in args.runs.split(",") if x.strip()]
    except ValueError:
        raise SystemExit(f"--runs: comma-separated positive integers, got {args.runs!r}") \
            from None
    if not ns or min(ns) < 1 or args.repeats < 1:
        raise SystemExit(f"--runs needs positive integers (got {args.runs!r}) and --repeats "
                         f">= 1 (got {args.repeats})")

    from tracker.accounting.inventory import inventory
    from tracker.report.index_page import write_index

    base = Path(tempfile.mkdtemp(prefix="bench-index-"))
    t0 = time.perf_counter()
    src = make_run(base, args.run_seconds, args.rate_hz)
    run_bytes = sum(f.stat().st_size for f in src.rglob("*") if f.is_file())
    print(f"one real run: {src.name}, {run_bytes:,} bytes in its directory "
          f"({', '.join(sorted(f.name for f in src.iterdir()))}); made in "
          f"{time.perf_counter() - t0:.1f} s; {os.cpu_count()} CPUs here")
    skip = "--no-browser given" if args.no_browser else _chromium.unavailable()
    if skip:
        print(f"Chromium timing skipped: {skip}")
    results: list[dict[str, Any]] = []
    for n in ns:
        root = base / f"root-{n}"
        t_fill = time.perf_counter()
        fill_root(src, root, n)
        print(f"N={n}: root laid out in {time.perf_counter() - t_fill:.1f} s")
        iw, ic, page = timed(write_index, root, args.repeats)
        vw, vc, inv = timed(inventory, [root], args.repeats)
        check(root, page, n, inv.entries)
        size = page.stat().st_size
        r: dict[str, Any] = {
            "n": n, "bytes": size, "kb_per_run": size / 1024 / n,
            "index_s": med(iw), "index_cpu_s": med(ic),
            "index_cpu_ms_per_run": med(ic) / n * 1000, "inv_s": med(vw), "inv_cpu_s": med(vc)}
        print(f"N={n}: write_index wall " + ", ".join(f"{x:.2f}" for x in iw)
              + " s (CPU " + ", ".join(f"{x:.2f}" for x in ic) + "); inventory wall "
              + ", ".join(f"{x:.2f}" for x in vw) + " s (CPU "
              + ", ".join(f"{x:.2f}" for x in vc) + ")")
        if not skip:
            opened = open_times(page, n, args.repeats)
            for key in ("rows_ms", "ready_ms", "load_ms"):
                r[key] = med([o[key] for o in opened])
            print(f"N={n}: Chromium all rows " + ", ".join(f"{o['rows_ms']:.0f}" for o in opened)
                  + " ms, script ran " + ", ".join(f"{o['ready_ms']:.0f}" for o in opened)
                  + " ms, load " + ", ".join(f"{o['load_ms']:.0f}" for o in opened) + " ms")
        if results and n != results[0]["n"]:   # the page's own cost left out
            r["kb_added_per_run"] = (size - results[0]["bytes"]) / 1024 / (n - results[0]["n"])
        results.append(r)
        if not args.keep:
            shutil.rmtree(root)
    print(f"\nmedians of {args.repeats}; ratios: each N against N={ns[0]} (run counts "
          + ", ".join(f"x{n / ns[0]:.2f}" for n in ns[1:]) + ")")
    print(table(results))
    if args.keep:
        print(f"kept: {base}")
    else:
        shutil.rmtree(base)


if __name__ == "__main__":
    main()
