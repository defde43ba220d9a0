"""The tracker's own cost next to CodeCarbon's, measured side by side in one run.

For each configuration, in a fresh interpreter each repeat (medians over repeats, the
configurations interleaved in rotating order so drift hits all equally):
  ours          - `track()` at its defaults (10 Hz power sampling), CPU only: CPU and RAM
                  modelled (no GPU: pynvml finds no driver);
  ours-8gpu     - the same with 8 fake GPUs (tests/fakes/nvml_site), minus the CPU the fake's
                  own calls take (each call kind timed alone, times the calls the run made);
  ours-gpu      - the same on the real GPUs, when the machine has them (NVML answers);
  codecarbon    - CodeCarbon's `OfflineEmissionsTracker` at its defaults (15 s measurement
                  interval), CPU only, when codecarbon is installed.
Each reports: background CPU in ms per second (getrusage of the whole process, user + system,
while the main thread sleeps), import + construction (s), construction alone (`track()` /
`OfflineEmissionsTracker()` once the package is imported, s), start() (s), construction +
start() (s), stop() of a 1 s run (s),
disk per hour (the run directory's growth while idle, extrapolated) and, for ours, disk per
step (bytes in the run directory per empty `run.steps` step, over --steps steps).

Byte-code: the children compile into a private PYTHONPYCACHEPREFIX and one warm-up child per
configuration runs first (discarded), so start-up figures are those of an installed package
(pip writes .pyc files at install), even where PYTHONDONTWRITEBYTECODE is set.

Usage: python scripts/bench_cost.py [--repeats 5] [--idle-s 10] [--steps 200000] [--json OUT]
       python scripts/bench_cost.py --idle-s 0.5 --steps 0 --repeats 9   # start-up figures
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Optional

ROOT = Path(__file__).resolve().parent.parent
FAKE_SITE = ROOT / "tests" / "fakes" / "nvml_site"
FAKE_GPUS = 8

# The child: one configuration, one repeat; prints one JSON object.
CHILD = r'''
import json, os, resource, sys, tempfile, time

def cpu_s():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime

def dir_bytes(path):
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(root, f)).st_size
            except OSError:
                pass
    return total

kind, idle_s, steps = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
out = {"kind": kind}
tmp = tempfile.mkdtemp(prefix="bench-cost-")
t0 = time.perf_counter()
if kind == "codecarbon":
    import logging
    from codecarbon import OfflineEmissionsTracker
    t1 = time.perf_counter()
    tracker = OfflineEmissionsTracker(country_iso_code="DEU", output_dir=tmp,
                                      log_level="error", project_name="bench")
    run_dir = tmp
else:
    from tracker import track
    t1 = time.perf_counter()
    tracker = track("bench", output_dir=tmp)
t2 = time.perf_counter()
out["construct_s"] = t2 - t0
out["construct_only_s"] = t2 - t1
t0 = time.perf_counter()
tracker.start()
out["start_s"] = time.perf_counter() - t0
out["construct_start_s"] = out["construct_only_s"] + out["start_s"]
if kind != "codecarbon":
    run_dir = str(tracker.run_dir)
    out["devices"] = [d.sensor.name for d in tracker.devices]
time.sleep(1.0)                      # let start-up settle (first flushes, first summary)
b0, c0, w0 = dir_bytes(run_dir), cpu_s(), time.perf_counter()
time.sleep(idle_s)
c1, w1, b1 = cpu_s(), time.perf_counter(), dir_bytes(run_dir)
out["cpu_ms_per_s"] = (c1 - c0) / (w1 - w0) * 1000
out["disk_bytes_per_hour"] = (b1 - b0) / (w1 - w0) * 3600
fake = sys.modules.get("pynvml")
if kind == "ours-8gpu" and hasattr(fake, "calls"):
    # the fake's own cost: each kind of call the run made, timed alone on this thread
    calls = dict(fake.calls)
    c_calls0 = dict(calls)
t0 = time.perf_counter()
tracker.stop()
out["stop_s"] = time.perf_counter() - t0
if kind == "ours-8gpu" and hasattr(fake, "calls"):
    out["fake_calls"] = c_calls0
if kind != "codecarbon" and steps:
    tmp2 = tempfile.mkdtemp(prefix="bench-cost-steps-")
    run = track("steps", output_dir=tmp2, emissions_csv=False, report_html=False).start()
    before = dir_bytes(str(run.run_dir))
    for _ in run.steps(range(steps)):
        pass
    time.sleep(0.3)
    run.stop()
    out["disk_bytes_per_step"] = (dir_bytes(str(run.run_dir)) - before) / steps
print("RESULT " + json.dumps(out))
'''

# Per-call CPU of the fake NVML, measured in a child with the fake imported.
FAKE_COST = r'''
import json, resource, sys, time
import pynvml as nv
calls = json.loads(sys.argv[1])
h = nv.gpus[0]
fn = {"nvmlDeviceGetTotalEnergyConsumption": lambda: nv.nvmlDeviceGetTotalEnergyConsumption(h),
      "nvmlDeviceGetPowerUsage": lambda: nv.nvmlDeviceGetPowerUsage(h),
      "nvmlDeviceGetUtilizationRates": lambda: nv.nvmlDeviceGetUtilizationRates(h),
      "nvmlDeviceGetFieldValues": lambda: nv.nvmlDeviceGetFieldValues(h, [186])}
def cpu_s():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime
total = 0.0
per = {}
for name, n in calls.items():
    f = fn.get(name)
    if f is None or not n:
        continue
    k = 20000
    c0 = cpu_s()
    for _ in range(k):
        f()
    per[name] = (cpu_s() - c0) / k
    total += per[name] * n
print("RESULT " + json.dumps({"fake_cpu_s": total, "per_call_s": per}))
'''


PYCACHE = tempfile.mkdtemp(prefix="bench-cost-pyc-")   # the children's byte-code (see above)


def _env(kind: str) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("ENERGY_TRACKER_RUN_DIR", None)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = PYCACHE
    env["ENERGY_TRACKER_REPORT_HTML"] = env.get("ENERGY_TRACKER_REPORT_HTML", "1")
    pp = [str(ROOT)]
    if kind == "ours-8gpu":
        pp.insert(0, str(FAKE_SITE))
        env["FAKE_NVML_WATTS"] = ",".join(["300"] * FAKE_GPUS)
        env["FAKE_NVML_BORN"] = "0"
    if kind == "ours":
        env["CUDA_VISIBLE_DEVICES"] = ""      # CPU only even on a GPU machine
        env["HIP_VISIBLE_DEVICES"] = ""
    env["PYTHONPATH"] = os.pathsep.join([*pp, env["PYTHONPATH"]] if env.get("PYTHONPATH")
                                        else pp)
    return env


def _child(code: str, args: list[str], env: dict[str, str], cwd: str) -> dict[str, Any]:
    proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=600)
    line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
    if line is None:
        raise RuntimeError(f"child failed (rc {proc.returncode}): {proc.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(line[len("RESULT "):])
    return result


def one(kind: str, idle_s: float, steps: int) -> dict[str, Any]:
    env = _env(kind)
    with tempfile.TemporaryDirectory() as cwd:
        got = _child(CHILD, [kind, str(idle_s), str(steps if kind == "ours" else 0)], env, cwd)
        calls = got.pop("fake_calls", None)
        if calls:
            cost = _child(FAKE_COST, [json.dumps(calls)], env, cwd)
            got["fake_cpu_ms_per_s"] = cost["fake_cpu_s"] / (idle_s + 1.0) * 1000
            # calls counted over start-up (1 s) + the idle window: their CPU spread evenly
            got["cpu_ms_per_s_raw"] = got["cpu_ms_per_s"]
            got["cpu_ms_per_s"] = got["cpu_ms_per_s"] - got["fake_cpu_ms_per_s"]
    return got


def _has(module: str) -> bool:
    import importlib.util
    return importlib.util.find_spec(module) is not None


def _real_gpu() -> bool:
    code = "import pynvml; pynvml.nvmlInit(); print(pynvml.nvmlDeviceGetCount())"
    try:
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             timeout=60).stdout.strip()
        return out.isdigit() and int(out) > 0
    except (OSError, subprocess.SubprocessError):
        return False


FIELDS = [("cpu_ms_per_s", "background CPU (ms/s)", "{:.2f}"),
          ("construct_s", "import + construction (s)", "{:.3f}"),
          ("construct_only_s", "construction (s)", "{:.3f}"),
          ("start_s", "start() (s)", "{:.3f}"),
          ("construct_start_s", "construction + start (s)", "{:.3f}"),
          ("stop_s", "stop() of a 1 s run (s)", "{:.3f}"),
          ("disk_bytes_per_hour", "disk per hour (MB)", "MB"),
          ("disk_bytes_per_step", "disk per step (B)", "{:.1f}")]


def _fmt(fmt: str, v: Optional[float]) -> str:
    if v is None:
        return "-"
    if fmt == "MB":
        return f"{v / 1e6:.2f}"
    return fmt.format(v)


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--idle-s", type=float, default=10.0,
                    help="seconds the main thread sleeps while background CPU is measured")
    ap.add_argument("--steps", type=int, default=200_000,
                    help="empty steps for the disk-per-step figure (0: skip)")
    ap.add_argument("--only", nargs="*", help="configurations to run (default all available)")
    ap.add_argument("--json", help="also write the medians and every repeat to this file")
    ap.add_argument("--warmup", type=int, default=1,
                    help="discarded runs per configuration first (byte-code, disk caches)")
    args = ap.parse_args(argv)
    if args.repeats < 1 or args.idle_s <= 0 or args.steps < 0:
        ap.error(f"--repeats must be >= 1, --idle-s > 0 and --steps >= 0; got {args.repeats}, "
                 f"{args.idle_s}, {args.steps}")

    kinds = ["ours", "ours-8gpu"]
    if _real_gpu():
        kinds.append("ours-gpu")
    if _has("codecarbon"):
        kinds.append("codecarbon")
    else:
        print("codecarbon is not installed: its column is left out "
              "(pip install codecarbon)", file=sys.stderr)
    if args.only:
        kinds = [k for k in kinds if k in args.only]
    runs: dict[str, list[dict[str, Any]]] = {k: [] for k in kinds}
    for _ in range(max(args.warmup, 0)):
        for kind in kinds:
            one(kind, min(args.idle_s, 0.5), 0)
    for r in range(args.repeats):
        order = kinds[r % len(kinds):] + kinds[:r % len(kinds)]
        for kind in order:
            runs[kind].append(one(kind, args.idle_s, args.steps if r == 0 else 0))
            print(f"repeat {r + 1}/{args.repeats} {kind}: "
                  f"{runs[kind][-1]['cpu_ms_per_s']:.2f} ms/s", file=sys.stderr)

    medians: dict[str, dict[str, Optional[float]]] = {}
    for kind, rs in runs.items():
        medians[kind] = {}
        for key, _, _ in [*FIELDS, ("fake_cpu_ms_per_s", "", "")]:
            vals = [x[key] for x in rs if x.get(key) is not None]
            medians[kind][key] = statistics.median(vals) if vals else None

    width = 28
    print(f"{'':{width}}" + "".join(f"{k:>14}" for k in kinds))
    for key, label, fmt in FIELDS:
        print(f"{label:{width}}" + "".join(f"{_fmt(fmt, medians[k][key]):>14}"
                                            for k in kinds))
    if "ours-8gpu" in medians and medians["ours-8gpu"]["fake_cpu_ms_per_s"] is not None:
        print(f"(ours-8gpu: the fake NVML's own {medians['ours-8gpu']['fake_cpu_ms_per_s']:.2f}"
              " ms/s subtracted)")
    if "codecarbon" in medians and medians["codecarbon"]["cpu_ms_per_s"]:
        ratio = (medians["ours"]["cpu_ms_per_s"] or 0) / medians["codecarbon"]["cpu_ms_per_s"]
        print(f"background CPU, ours / CodeCarbon: {ratio:.2f}")
    print(f"({args.repeats} repeats, {args.idle_s:g} s idle each, medians; "
          f"{os.cpu_count()} CPUs)")
    if args.json:
        Path(args.json).write_text(json.dumps({"medians": medians, "runs": runs,
                                               "repeats": args.repeats,
                                               "idle_s": args.idle_s}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
