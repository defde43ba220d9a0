"""Benchmark: the offline HTML report of a long, wide run (time, memory, file size).

Writes a synthetic run directory as the tracker leaves it after HOURS of training on GPUS GPUs
sampled at RATE Hz: run.json, a samples.jsonl in the sampler's own record format (every tick
each GPU's power `w` and cumulative energy `j`, its energy counter `c` once a second, the CPU
and RAM models at 1 Hz, window marks for hourly epochs and evaluations, 1 s steps logged as
closed-step records, the final reading), and a summary.json shaped like a finished run's (its
figures come from the same synthetic power model, not from a replay). One GPU gets a single
one-tick spike, which the report must still show after downsampling.

The run's report_timeline.jsonl (the pre-reduced timeline the tracker keeps as it goes) is
written by feeding the same tick records, a round of 0.5 s at a time, to the tracker's own
writer (rundir/report_timeline.py); its cost per tick is printed (the live overhead).

Then, each in a fresh process, REPEATS times: `write_html(run_dir)` as shipped (it reads the
pre-reduced timeline), and as for an old run without one (every sample scanned: worker
processes scan byte ranges in parallel, and with one process only). Prints the medians of
wall time, CPU time (the process and its children: the figure to trust on a shared machine),
peak RSS (the process itself, and the largest child) and the size of report.html.

Last, the page opened in headless Chromium (Playwright, the Debian chromium as
tests/test_report_html.py uses; skipped with the reason when either is missing), REPEATS
times: the time from navigation start to the first chart's SVG in the page (performance.now()
in a MutationObserver installed before the page's scripts run) and to the next frame after it.

    python scripts/bench_report_html.py                   # 24 h x 8 GPUs x 10 Hz
    python scripts/bench_report_html.py --hours 1 --repeats 1
    python scripts/bench_report_html.py --demo           # demo-size: 20 s, 1 GPU
    python scripts/bench_report_html.py --no-browser     # without the Chromium timing
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import _chromium  # noqa: E402  (scripts/_chromium.py, beside this file)

from tracker.carbon import resolve_factor  # noqa: E402
from tracker.rundir.report_timeline import ReportTimelineWriter  # noqa: E402
from tracker.rundir.runlog import FLUSH_EVERY_S  # noqa: E402

GRID = resolve_factor("DE").to_dict()
GPU_W, CPU_W, RAM_W = 650.0, 180.0, 60.0
SPIKE_W = 987.654          # one tick on gpu3 (the last GPU if fewer): the report must keep it
EPOCH_S, EVAL_S = 3600.0, 180.0


def gpu_power(t: float, g: int, first_tick_of_second: bool) -> float:
    """Training at ~650 W with a dip in the first tick of each 1 s step (data loading),
    evaluations at the end of each hour at ~420 W; a little per-GPU and per-tick variation."""
    evaluating = t % EPOCH_S >= EPOCH_S - EVAL_S
    base = 420.0 if evaluating else 300.0 if first_tick_of_second else GPU_W
    return base - 4.0 * g + 6.0 * math.sin(t * 0.37 + g)


def write_run(run: Path, hours: float, gpus: int, rate: float) -> dict:
    """The run directory; returns facts the benchmark checks (spike time, line count)."""
    seconds = hours * 3600.0
    ticks = int(seconds * rate)
    start_wall = time.time() - seconds
    devices = [{"name": f"gpu{g}", "component": "gpu", "method": "counter",
                "description": "NVIDIA H100 80GB HBM3 (synthetic): energy counter + power",
                "details": {"uuid": f"GPU-{g:08d}-0000-0000-0000-000000000000",
                            "model": "NVIDIA H100 80GB HBM3"}} for g in range(gpus)]
    devices += [{"name": "cpu", "component": "cpu", "method": "modeled",
                 "description": "CPU power model (synthetic)", "details": {}},
                {"name": "ram", "component": "ram", "method": "modeled",
                 "description": "RAM power model (synthetic)", "details": {}}]
    manifest = {"schema": 1, "run_id": str(uuid.uuid4()), "name": "bench-report",
                "started_utc": "", "start_wall": start_wall, "start_monotonic": 0.0,
                "host": {"hostname": "bench", "pid": 1}, "devices": devices, "grid": GRID,
                "pue": 1.2, "pue_source": "user",
                "config": {"rate_hz": rate, "sampling": {"rate_hz": rate}},
                "versions": {"trainjoule": "bench"}, "notes": []}
    (run / "run.json").write_text(json.dumps(manifest, indent=2))
    spike_tick = ticks // 2 + 3
    energy = [0.0] * gpus
    peak = [0.0] * gpus
    counter = [1.0e9] * gpus
    cpu_j = ram_j = 0.0
    every = max(1, round(rate))   # ticks per second
    windows, lines = [], 0
    step = 0
    writer = ReportTimelineWriter(run)
    per_round = max(1, round(rate * FLUSH_EVERY_S))
    ticks_of_round: list[dict] = []
    writer_s = 0.0
    with open(run / "samples.jsonl", "w", buffering=1 << 20) as f:
        w = f.write
        for k in range(ticks + 1):
            t = k / rate
            parts = []
            d: dict = {}
            second = k % every == 0
            for g in range(gpus):
                spiky = k == spike_tick and g == min(3, gpus - 1)
                p = SPIKE_W if spiky else gpu_power(t, g, second)
                energy[g] += p / rate
                peak[g] = max(peak[g], p)
                if second:   # the counter once a second, first in the record as the sampler does
                    parts.append(f'"gpu{g}":{{"c":{counter[g] + energy[g]:.3f},"w":{p:.3f},'
                                 f'"j":{energy[g]:.3f}}}')
                    d[f"gpu{g}"] = {"c": counter[g] + energy[g], "w": p, "j": energy[g]}
                else:
                    parts.append(f'"gpu{g}":{{"w":{p:.3f},"j":{energy[g]:.3f}}}')
                    d[f"gpu{g}"] = {"w": p, "j": energy[g]}
            if second:
                cpu_j += CPU_W
                ram_j += RAM_W
                parts.append(f'"cpu":{{"w":{CPU_W},"j":{cpu_j:.3f}}}')
                parts.append(f'"ram":{{"w":{RAM_W},"j":{ram_j:.3f}}}')
                d["cpu"] = {"w": CPU_W, "j": cpu_j}
                d["ram"] = {"w": RAM_W, "j": ram_j}
            final = ',"final":true' if k == ticks else ""
            w(f'{{"t":{t:.6f},"d":{{{",".join(parts)}}}{final}}}\n')
            lines += 1
            ticks_of_round.append({"t": t, "d": d})
            if len(ticks_of_round) >= per_round or k == ticks:   # a round of the sampler
                t_w = time.perf_counter()
                writer.add(ticks_of_round)
                writer.flush()
                if k == ticks:
                    writer.close()
                writer_s += time.perf_counter() - t_w
                ticks_of_round = []
            if second and k:   # the step that just closed (1 s steps, 64 samples each)
                w(f'{{"t":{t:.6f},"steps":[[{1000 + step},0,{t - 1.0:.6f},{t - 0.001:.6f},'
                  f'{step},64,0]]}}\n')
                step += 1
                lines += 1
            if second and t % EPOCH_S == 0 and t + EPOCH_S <= seconds:   # whole hours only
                e = int(t // EPOCH_S)
                w(f'{{"t":{t:.6f},"mark":{{"id":{2 * e},"edge":"start","name":"epoch {e}",'
                  f'"kind":"epoch"}}}}\n')
                windows.append((2 * e, f"epoch {e}", "epoch", t, t + EPOCH_S - EVAL_S))
                windows.append((2 * e + 1, "evaluation", "eval", t + EPOCH_S - EVAL_S,
                                t + EPOCH_S))
                lines += 1
    gpu_total = sum(energy)
    total = gpu_total + cpu_j + ram_j
    mean = total / seconds
    wins: list[dict] = [
        {"id": i, "name": n, "kind": kind, "parent": None, "start_s": a, "end_s": b,
         "duration_s": b - a, "energy_j": mean * (b - a), "by_component_j": {},
         "emissions_g": None, "attrs": {}, "method_by_component": {}}
        for i, n, kind, a, b in windows]
    size = max(1, math.ceil(step / 1000))
    groups = [{"first_step": i, "last_step": min(i + size, step) - 1, "steps": min(size, step - i),
               "start_s": float(i), "end_s": float(min(i + size, step)),
               "energy_j": mean * min(size, step - i),
               "j_per_step": mean, "samples": 64 * min(size, step - i), "j_per_sample": mean / 64}
              for i in range(0, step, size)]
    g = GRID["gco2_per_kwh"]
    summary = {
        "schema": 1, "run_id": manifest["run_id"], "name": "bench-report", "status": "finished",
        "started_utc": "", "ended_utc": "", "duration_s": seconds, "energy_j": total,
        "energy_kwh": total / 3.6e6, "pue": 1.2, "pue_source": "user",
        "facility_energy_j": 1.2 * total, "facility_energy_kwh": 1.2 * total / 3.6e6,
        "emissions_kg": 1.2 * total / 3.6e6 * g / 1000.0,
        "emissions_rate_kg_per_s": 1.2 * total / 3.6e6 * g / 1000.0 / seconds,
        "gco2_per_kwh": g, "grid": GRID,
        "carbon": {},
        "components": {c: {"component": c, "energy_j": e, "mean_power_w": e / seconds,
                           "peak_power_w": pk, "method": m, "devices": [], "status": "ok"}
                       for c, e, pk, m in (("gpu", gpu_total, sum(peak), "counter"),
                                           ("cpu", cpu_j, CPU_W, "modeled"),
                                           ("ram", ram_j, RAM_W, "modeled"))},
        "devices": [dict(d, energy_j=e, mean_power_w=e / seconds, peak_power_w=pk, status="ok",
                         errors=[], start_s=0.0, end_s=seconds)
                    for d, e, pk in zip(devices, [*energy, cpu_j, ram_j], [*peak, CPU_W, RAM_W])],
        "windows": wins,
        "steps": {"count": step, "energy_j_in_steps": mean * step, "group_size": size,
                  "groups": groups, "samples": 64 * step, "j_per_sample": mean / 64},
        "sampling": {"rate_hz": rate}, "notes": ["synthetic run (scripts/bench_report_html.py)"],
        "degraded": []}
    (run / "summary.json").write_text(json.dumps(summary))
    return {"lines": lines, "spike_t": spike_tick / rate, "writer_us_per_tick":
            writer_s / (ticks + 1) * 1e6, "timeline_bytes": writer.path.stat().st_size}


CHILD = """
import json, resource, sys, time
sys.path.insert(0, {root!r})
import tracker.report.html as h
import tracker.report.scan as scan
if {one!r}:
    scan.MAX_WORKERS = 1
if {scan_all!r}:   # as for an old run without report_timeline.jsonl
    scan._prereduced = lambda sources, grid, t_end, is_job: (grid, {{}})
t0 = time.perf_counter()
out = h.write_html({run!r})
s = time.perf_counter() - t0
me, kids = (resource.getrusage(w) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
print(json.dumps({{"s": s, "rss_mb": me.ru_maxrss / 1024, "child_rss_mb": kids.ru_maxrss / 1024,
                  "cpu_s": me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime,
                  "bytes": out.stat().st_size, "path": str(out)}}))
"""


def timed(run: Path, one: bool, scan_all: bool) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD.format(root=str(ROOT), run=str(run),
                                                             one=one, scan_all=scan_all)],
                         capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"write_html failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


# Before any script of the page: note when the first chart's SVG enters the document, and the
# frame after it (when it can first be painted). performance.now() counts from navigation start.
FIRST_CHART = """(() => {
  const seen = () => {
    if (window.__etFirstChart != null || !document.querySelector('.et-chart svg')) return;
    window.__etFirstChart = performance.now();
    requestAnimationFrame(() => { window.__etFirstFrame = performance.now(); });
  };
  new MutationObserver(seen).observe(document, {childList: true, subtree: true});
})();"""


def open_times(page: Path, repeats: int) -> list[dict]:
    """Open the page `repeats` times in headless Chromium, offline (every request but the file
    refused; stops on a console error or a request); [] with the reason printed when Playwright
    or Chromium is missing."""
    skip = _chromium.unavailable()
    if skip:
        print(f"Chromium timing skipped: {skip}")
        return []
    out = []
    with _chromium.offline_browser() as browser:
        for _ in range(repeats):
            with _chromium.offline_page(browser, page, init_script=FIRST_CHART) as tab:
                tab.page.wait_for_function("window.__etFirstFrame != null", timeout=120_000)
                got = tab.page.evaluate("""() => ({svg_ms: window.__etFirstChart,
                    frame_ms: window.__etFirstFrame,
                    load_ms: performance.getEntriesByType('navigation')[0].loadEventStart,
                    charts: document.querySelectorAll('.et-chart svg').length})""")
                tab.check()
                out.append(got)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--hours", type=float, default=24.0)
    p.add_argument("--gpus", type=int, default=8)
    p.add_argument("--rate", type=float, default=10.0, help="sampling rate, Hz")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--keep", action="store_true", help="keep the synthetic run directory")
    p.add_argument("--demo", action="store_true",
                   help="a demo-size run (scripts/demo.sh): 20 s of 1 GPU, sets --hours --gpus")
    p.add_argument("--no-browser", action="store_true", help="skip the Chromium timing")
    args = p.parse_args()
    if args.demo:
        args.hours, args.gpus = 20 / 3600, 1
    base = Path(tempfile.mkdtemp(prefix="bench-report-"))
    run = base / "run"
    run.mkdir()
    t_gen = time.perf_counter()
    facts = write_run(run, args.hours, args.gpus, args.rate)
    size_mb = (run / "samples.jsonl").stat().st_size / 1e6
    print(f"synthetic run: {args.hours:g} h x {args.gpus} GPUs at {args.rate:g} Hz, "
          f"{facts['lines']:,} lines, samples.jsonl {size_mb:.1f} MB "
          f"(generated in {time.perf_counter() - t_gen:.1f} s); {os.cpu_count()} CPUs here")
    print(f"report_timeline.jsonl: {facts['timeline_bytes'] / 1e6:.2f} MB, kept at "
          f"{facts['writer_us_per_tick']:.1f} us per tick ({args.gpus} GPUs + CPU + RAM)")
    for label, one, scan_all in (("as shipped (pre-reduced report_timeline.jsonl)", False, False),
                                 ("old run, every sample scanned in parallel", False, True),
                                 ("old run, every sample scanned in one process", True, True)):
        rows = [timed(run, one, scan_all) for _ in range(args.repeats)]
        html = Path(rows[-1]["path"]).read_text()
        # the spike (one tick of one GPU among ~7 million readings) must survive downsampling
        spike = f"{SPIKE_W:.2f}".rstrip("0") in html
        print(f"{label}: {statistics.median(r['s'] for r in rows):.2f} s "
              f"(CPU {statistics.median(r['cpu_s'] for r in rows):.1f} s), peak RSS "
              f"{statistics.median(r['rss_mb'] for r in rows):.0f} MB (largest child "
              f"{statistics.median(r['child_rss_mb'] for r in rows):.0f} MB), report.html "
              f"{statistics.median(r['bytes'] for r in rows) / 1e6:.2f} MB, "
              f"spike kept: {spike}  (median of {len(rows)}: "
              + ", ".join(f"{r['s']:.2f}" for r in rows) + " s)")
        if not spike:
            raise SystemExit("the one-tick spike is missing from the report")
    opened = [] if args.no_browser else open_times(run / "report.html", args.repeats)
    if opened:
        print(f"Chromium, navigation start to first chart SVG: "
              f"{statistics.median(o['svg_ms'] for o in opened):.0f} ms, to the next frame "
              f"{statistics.median(o['frame_ms'] for o in opened):.0f} ms, load event "
              f"{statistics.median(o['load_ms'] for o in opened):.0f} ms; charts drawn "
              f"{opened[-1]['charts']}  (median of {len(opened)}: "
              + ", ".join(f"{o['svg_ms']:.0f}" for o in opened) + " ms)")
    if args.keep:
        print(f"kept: {run}")
    else:
        shutil.rmtree(base)


if __name__ == "__main__":
    main()
