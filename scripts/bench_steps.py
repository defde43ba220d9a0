"""Benchmark: an empty loop of N step windows (default 10^7), the worst case for per-step cost.

Each size runs in a fresh process: `with track()` around `for _ in run.steps(range(N)): pass`
(no GPU needed: CPU/RAM models; a GPU when there is one). Printed per size: the wall time per
step on the training thread (everything inside the loop: the step marks and the loop itself),
the same loop untracked, peak RSS (VmHWM) and the RSS added by the loop, `stop()` time, bytes
of steps.bin, and the time of `energy-tracker report RUN` (reads summary.json) in a fresh
process. Medians of --repeats.

The same process then runs N steps as a `while`-style loop with the step context manager,
`for _ in range(N): with run.step(samples=64, tokens=65536): pass`, and the iterator form
with the same counts, `run.steps(range(N), samples=64, tokens=65536)`, interleaved in
rounds of at most 10^5 steps each (so both see the same machine load); printed as
"step() X us/step vs steps(counts) Y us/step" (each the median over the rounds).

    python scripts/bench_steps.py                     # 10^3, 10^5, 10^7 steps
    python scripts/bench_steps.py --sizes 1000000 --repeats 5
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

CHILD = r"""
import json, sys, time
from pathlib import Path
n, out = int(sys.argv[1]), sys.argv[2]

def hwm():
    for line in open("/proc/self/status"):
        if line.startswith(("VmHWM", "VmRSS")):
            yield line.split()[0], int(line.split()[1]) * 1024

t = time.perf_counter()
for _ in range(n):
    pass
bare = (time.perf_counter() - t) / n
from tracker import track
with track("steps", output_dir=out, report_html=False) as run:
    before = dict(hwm())["VmRSS:"]
    t = time.perf_counter()
    for _ in run.steps(range(n)):
        pass
    per_step = (time.perf_counter() - t) / n
    after = dict(hwm())["VmRSS:"]
    # run.step() (a context manager) against run.steps() with the same counts, interleaved
    chunk, ctx, itr, done = min(n, 100000), [], [], 0
    while done < n:
        k = min(chunk, n - done)
        t = time.perf_counter()
        for _ in range(k):
            with run.step(samples=64, tokens=65536):
                pass
        ctx.append((time.perf_counter() - t) / k)
        t = time.perf_counter()
        for _ in run.steps(range(k), samples=64, tokens=65536):
            pass
        itr.append((time.perf_counter() - t) / k)
        done += k
    t = time.perf_counter()
s = run.summary
stop_s = time.perf_counter() - t
print(json.dumps({"bare_us": bare * 1e6, "per_step_us": per_step * 1e6,
                  "rss_added_mib": (after - before) / 2**20,
                  "peak_rss_mib": dict(hwm())["VmHWM:"] / 2**20, "stop_s": stop_s,
                  "steps_bin_bytes": (run.run_dir / "steps.bin").stat().st_size,
                  "step_ctx_us": sorted(ctx)[len(ctx) // 2] * 1e6,
                  "steps_counted_us": sorted(itr)[len(itr) // 2] * 1e6,
                  "run_dir": str(run.run_dir), "count": s.steps.get("count")}))
"""


def one(n: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench-steps-") as out:
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        p = subprocess.run([sys.executable, "-c", CHILD, str(n), out], capture_output=True,
                           text=True, env=env, timeout=3600)
        if p.returncode != 0:
            raise SystemExit(p.stderr[-3000:])
        got = json.loads(p.stdout.strip().splitlines()[-1])
        assert got["count"] == 3 * n, got   # steps(), then step() and steps(counts)
        t = time.perf_counter()
        subprocess.run([sys.executable, "-m", "tracker", "report", got["run_dir"], "--json"],
                       capture_output=True, check=True, env=env, cwd=ROOT)
        got["report_s"] = time.perf_counter() - t
        return got


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="1000,100000,10000000")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    table = {}
    for n in (int(x) for x in args.sizes.split(",")):
        runs = [one(n) for _ in range(args.repeats)]
        med = {k: statistics.median(r[k] for r in runs) for k in runs[0]
               if isinstance(runs[0][k], (int, float))}
        table[n] = med
        print(f"{n:>10} steps: {med['per_step_us']:.2f} us/step (bare loop "
              f"{med['bare_us']:.3f} us), +{med['rss_added_mib']:.1f} MiB during the loop, "
              f"peak RSS {med['peak_rss_mib']:.0f} MiB, stop() {med['stop_s']:.2f} s, "
              f"steps.bin {med['steps_bin_bytes'] / (3 * n):.0f} B/step, "
              f"report {med['report_s']:.2f} s; step() {med['step_ctx_us']:.2f} us/step vs "
              f"steps(counts) {med['steps_counted_us']:.2f} us/step", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(table, indent=2))


if __name__ == "__main__":
    main()
