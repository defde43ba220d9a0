"""Benchmark: a month-long run of one 8-GPU process, on a fake clock (memory, disk, report).

Drives the real tracker path — Sampling.tick over a fake pynvml (tests/fakes/fake_nvml.py),
the energy curves, the step ledger and steps.bin, the run log with its hourly checkpoints
(snapshot.json, condensed timeline.<k>.jsonl.gz), curve compaction, summary.json every 10 s —
with simulated time instead of the wall clock: the sampler thread is stopped after start and
this script calls its tick at every 1/RATE simulated seconds. Each simulated hour has steps of
STEP_S seconds for 58 minutes, then a 2-minute eval window; every simulated day is an epoch
window. The GPUs draw a bursty load (busy, short host pauses, a low-power eval).

Printed: RSS after the first hour and at every tenth of the run (psutil), peak RSS
(getrusage), bytes on disk by file kind, stop() time, and in fresh processes: `energy-tracker
report RUN` (reads the summary), `report --rebuild` (snapshot + what follows) and `report
--html`. It also checks the totals: the run's energy against the fake GPUs' exact integral,
and the rebuilt summary against the live one.

    python scripts/bench_long_run.py                  # 30 days, 8 GPUs, 10 Hz (~1 h of CPU)
    python scripts/bench_long_run.py --days 1 --rate 10
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "fakes"))

import fake_nvml  # noqa: E402
import psutil  # noqa: E402


class FakeTime:
    """The simulated clock: the run, its sampler, the step marks and every fake GPU read it."""

    def __init__(self, t: float):
        self.t = t

    def monotonic(self) -> float:
        return self.t


class Bursty:
    """A training load with an exact integral: `busy` W, a `pause_s` dip to `pause_w` every
    `period_s` (host work, data loading), and `low_w` during the last 120 s of each hour (eval).
    Each GPU gets its own phase so the GPUs are not in lockstep."""

    def __init__(self, busy: float, pause_w: float, low_w: float, period_s: float,
                 pause_s: float, phase_s: float):
        assert 3600.0 % period_s == 0, "whole periods per hour keep energy() O(1)"
        self.busy, self.pause_w, self.low_w = busy, pause_w, low_w
        self.period_s, self.pause_s, self.phase_s = period_s, pause_s, phase_s
        self.per_period = busy * (period_s - pause_s) + pause_w * pause_s
        # the pattern's energy inside one hour's eval: the same every hour
        self.in_eval = self._train(3600.0) - self._train(3480.0)

    def _cum(self, x: float) -> float:
        n, r = divmod(x, self.period_s)
        hi = min(r, self.period_s - self.pause_s)
        return n * self.per_period + self.busy * hi + self.pause_w * (r - hi)

    def _train(self, s: float) -> float:
        return self._cum(s + self.phase_s) - self._cum(self.phase_s)

    def power(self, s: float) -> float:
        if s % 3600.0 >= 3480.0:
            return self.low_w
        r = (s + self.phase_s) % self.period_s
        return self.busy if r < self.period_s - self.pause_s else self.pause_w

    def energy(self, s: float) -> float:
        s = max(s, 0.0)
        h, r = divmod(s, 3600.0)
        inside = h * self.in_eval
        if r > 3480.0:
            inside += self._train(s) - self._train(h * 3600.0 + 3480.0)
        return self._train(s) - inside + self.low_w * (h * 120.0 + max(0.0, r - 3480.0))


def du(run_dir: Path) -> dict[str, int]:
    kinds: dict[str, int] = {}
    for p in run_dir.iterdir():
        name = p.name
        kind = ("timeline.*.jsonl.gz" if name.startswith("timeline.") else
                "samples.*.jsonl" if name.startswith("samples.") and name != "samples.jsonl"
                else name)
        kinds[kind] = kinds.get(kind, 0) + p.stat().st_size
    return dict(sorted(kinds.items(), key=lambda kv: -kv[1]))


def timed(cmd: list[str]) -> tuple[float, int, str]:
    """Wall seconds, peak RSS (bytes) and stdout of a fresh process."""
    started = time.perf_counter()
    p = subprocess.run([sys.executable, "-c",
                        "import runpy, sys\n"
                        "sys.argv = ['energy-tracker'] + sys.argv[1:]\n"
                        "try:\n"
                        "    runpy.run_module('tracker', run_name='__main__')\n"
                        "finally:\n"   # VmHWM: ru_maxrss would carry this parent's
                        "    hwm = [l.split()[1] for l in open('/proc/self/status')"
                        " if l.startswith('VmHWM')]\n"
                        "    print('MAXRSS', hwm[0], file=sys.stderr)\n", *cmd],
                       capture_output=True, text=True, cwd=ROOT,
                       env=dict(os.environ, PYTHONPATH=str(ROOT)))
    wall = time.perf_counter() - started
    rss = next((int(line.split()[1]) * 1024 for line in p.stderr.splitlines()
                if line.startswith("MAXRSS")), 0)
    if p.returncode != 0:
        raise SystemExit(f"{cmd} failed: {p.stderr[-2000:]}")
    return wall, rss, p.stdout


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--days", type=float, default=30.0)
    ap.add_argument("--gpus", type=int, default=8)
    ap.add_argument("--rate", type=float, default=10.0, help="sampling rate, Hz")
    ap.add_argument("--step-s", type=float, default=0.5, help="simulated step time")
    ap.add_argument("--keep", action="store_true", help="keep the run directory")
    ap.add_argument("--json", default=None, help="also write the figures to this file")
    ap.add_argument("--tracemalloc", action="store_true",
                    help="print where memory grew between the first and the last RSS mark")
    args = ap.parse_args()
    if args.tracemalloc:
        import tracemalloc
        tracemalloc.start(8)
    snaps = []

    clock = FakeTime(1000.0)
    # Each fake GPU reads the clock it is given (FakeGPU.clock, bound to the real
    # time.monotonic by default): without clock= its counter follows the wall clock, a few
    # seconds of it for the simulated hours, and the run's energy comes out ~-100 % off.
    gpus = [fake_nvml.FakeGPU(uuid=f"GPU-{i:08d}-0000-4000-8000-000000000000",
                              clock=clock.monotonic, born=clock.t,
                              profile=Bursty(650.0 - 5 * i, 180.0, 220.0, 25.0, 0.3,
                                             phase_s=1.7 * i))
            for i in range(args.gpus)]
    if any(g.seconds() != 0.0 for g in gpus):
        raise SystemExit("the fake GPUs do not read the simulated clock")
    sys.modules["pynvml"] = fake_nvml.FakeNVML(gpus)
    os.environ["ENERGY_TRACKER_REPORT_HTML"] = "0"    # drawn below, timed on its own

    from tracker import track
    out = Path(tempfile.mkdtemp(prefix="bench-long-"))
    proc = psutil.Process()
    rss_start = proc.memory_info().rss
    run = track("month", output_dir=out, cpu=False, ram=False, rate_hz=args.rate,
                region="DE").start()
    sampler = run._sampler
    sampler._stopping = True                 # this script ticks it, on the simulated clock
    sampler._wake.set()
    sampler._thread.join()
    origin = clock.t - run.clock()
    run.clock = lambda: clock.t - origin
    # the training thread's step marks read time.monotonic() directly (api.steps, its cheapest
    # path): give the api module the simulated clock too
    import tracker.api as api_module
    fake = types.SimpleNamespace(**{k: getattr(time, k) for k in dir(time)
                                    if not k.startswith("_")})
    fake.monotonic = clock.monotonic
    api_module.time = fake  # type: ignore[assignment]
    run._origin = origin

    dt = 1.0 / args.rate
    total_s = args.days * 86400.0
    ticks_per_step = max(1, round(args.step_s / dt))
    seconds_per_hour_of_steps = 3480.0
    rss_marks: list[tuple[float, int]] = []
    next_mark = 3600.0
    started = time.perf_counter()
    tick = 0
    steps = None
    day_window = None
    eval_window = None
    n_steps = 0

    def do_tick() -> None:
        anchor = sampler._anchor_wanted
        sampler._anchor_wanted = False
        sampler._tick(anchor=anchor)

    while True:
        clock.t += dt
        tick += 1
        s = clock.t - origin
        if s >= total_s:
            break
        in_hour = s % 3600.0
        if day_window is None or s // 86400.0 != day_window[1]:
            if day_window is not None:
                run.end_window(day_window[0])
            day_window = (run.begin_window(f"day {int(s // 86400)}", kind="epoch"),
                          s // 86400.0)
        if in_hour < seconds_per_hour_of_steps:
            if eval_window is not None:
                run.end_window(eval_window)
                eval_window = None
            if steps is None:
                steps = run.steps(iter(int, 1))          # an endless iterable
            if tick % ticks_per_step == 0:
                next(steps)
                n_steps += 1
        else:
            if steps is not None:
                steps.close()                            # closes the open step
                steps = None
            if eval_window is None:
                eval_window = run.begin_window("eval", kind="eval")
        do_tick()
        if s >= next_mark:
            rss_marks.append((s, proc.memory_info().rss))
            if args.tracemalloc:
                snaps.append(tracemalloc.take_snapshot())
            next_mark += max(3600.0, total_s / 10)
            if len(rss_marks) <= 2 or len(rss_marks) % 2 == 0:
                print(f"  sim {s / 86400:6.2f} d  rss {rss_marks[-1][1] / 2**20:7.1f} MiB  "
                      f"{time.perf_counter() - started:7.0f} s wall", flush=True)
    if steps is not None:
        steps.close()
    if eval_window is not None:
        run.end_window(eval_window)
    run.end_window(day_window[0])
    sim_wall = time.perf_counter() - started
    if len(snaps) >= 2:
        for stat in snaps[-1].compare_to(snaps[0], "traceback")[:8]:
            print(f"grew {stat.size_diff / 2**20:.1f} MiB in {stat.count_diff} blocks:")
            print("    " + "\n    ".join(stat.traceback.format()[-8:]))
    t0 = time.perf_counter()
    summary = run.stop()
    stop_s = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    time.sleep(1.0)                                   # the last condensing thread
    truth = sum(g.true_energy_j(origin, origin + summary.duration_s) for g in gpus)
    disk = du(run.run_dir)

    report_s, report_rss, _ = timed(["report", str(run.run_dir), "--json"])
    rebuild_s, rebuild_rss, text = timed(["report", str(run.run_dir), "--rebuild", "--json"])
    rebuilt = json.loads(text)
    html_s, html_rss, _ = timed(["report", str(run.run_dir), "--html",
                                 str(out / "report.html"), "--json"])

    figures = {
        "simulated_days": args.days, "gpus": args.gpus, "rate_hz": args.rate,
        "steps": n_steps, "ticks": tick, "simulation_wall_s": round(sim_wall, 1),
        "rss_start_mib": round(rss_start / 2**20, 1),
        "rss_mib": [[round(s / 86400, 2), round(r / 2**20, 1)] for s, r in rss_marks],
        "peak_rss_mib": round(peak / 2**20, 1),
        "stop_s": round(stop_s, 3),
        "disk_bytes": sum(disk.values()), "disk_by_kind": disk,
        "energy_j": summary.energy_j, "true_energy_j": truth,
        "energy_error_pct": 100 * (summary.energy_j - truth) / truth,
        "rebuilt_energy_j": rebuilt["energy_j"],
        "rebuild_equal": math.isclose(rebuilt["energy_j"], summary.energy_j, rel_tol=1e-9),
        "windows_equal": all(math.isclose(a["energy_j"], b.energy_j, rel_tol=1e-9, abs_tol=1e-6)
                             for a, b in zip(rebuilt["windows"], summary.windows)),
        "report_s": round(report_s, 2), "report_peak_rss_mib": round(report_rss / 2**20, 1),
        "rebuild_s": round(rebuild_s, 2), "rebuild_peak_rss_mib": round(rebuild_rss / 2**20, 1),
        "html_s": None if html_s is None else round(html_s, 2),
        "html_peak_rss_mib": None if html_rss is None else round(html_rss / 2**20, 1),
    }
    print(json.dumps(figures, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2))
    if args.keep:
        print(f"run directory kept: {run.run_dir}")
    else:
        shutil.rmtree(out, ignore_errors=True)


if __name__ == "__main__":
    main()
