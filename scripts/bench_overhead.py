"""Step-time overhead of tracking, measured side by side in one process (medians over repeats).

Modes, interleaved in rotating order within each repeat so drift hits all equally:
  off      - the bare training loop;
  track    - inside `with track()` at the default rate (10 Hz);
  steps    - as `track`, plus a step window per step (`run.steps`), the integrations' path.
Also: `import tracker` time in fresh interpreters, the CPU the sampler thread takes while the
training thread sleeps (% of one core), and the cost of one step window on the training thread
(us) - the last two are stable where step-time medians are noisy (shared 2-core VMs).
Runs on the GPU if there is one.
Usage: python scripts/bench_overhead.py [--repeats 7] [--steps 3000] [--json OUT] [--quick]
(--quick: fewer fresh interpreters, a shorter sampler-CPU sleep and fewer step windows, for
scripts/gpu_validate.py's short budgets and its CPU dry run.)
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time


def import_time_ms(n: int = 10) -> dict[str, float]:
    """Medians over n fresh interpreters: `import tracker` as `python -X importtime` counts it
    (cumulative, the tracker package and what it pulls in), and the wall time of
    `from tracker import track` (what a `with track():` user pays before the first sample),
    next to a bare interpreter's `import json` for scale."""
    def cumulative_us() -> float:
        err = subprocess.run([sys.executable, "-X", "importtime", "-c", "import tracker"],
                             capture_output=True, text=True).stderr
        return next(float(line.split("|")[1]) for line in err.splitlines()
                    if line.rstrip().endswith("| tracker"))

    def wall_ms(stmt: str) -> float:
        code = f"import time; t=time.perf_counter(); {stmt}; print(time.perf_counter()-t)"
        return float(subprocess.check_output([sys.executable, "-c", code])) * 1000

    return {"import_tracker_cumulative_ms": statistics.median(cumulative_us() / 1000
                                                              for _ in range(n)),
            "from_tracker_import_track_ms": statistics.median(
                wall_ms("from tracker import track") for _ in range(n)),
            "import_codecarbon_ms": statistics.median(
                wall_ms("import codecarbon") for _ in range(n)) if _has("codecarbon") else None}


def _has(module: str) -> bool:
    import importlib.util
    return importlib.util.find_spec(module) is not None


def sampler_cpu_pct(seconds: float = 5.0) -> float:
    """CPU time the tracker's threads take while the main thread sleeps, in % of one core."""
    from tracker import track

    with tempfile.TemporaryDirectory() as tmp, track("idle", output_dir=tmp,
                                                     emissions_csv=False):
        c0, w0 = time.process_time(), time.perf_counter()
        time.sleep(seconds)
        c1, w1 = time.process_time(), time.perf_counter()
    return (c1 - c0) / (w1 - w0) * 100


def step_window_us(n: int = 100_000) -> float:
    """Cost of one step window (begin + end) on the training thread, in microseconds."""
    from tracker import track

    with tempfile.TemporaryDirectory() as tmp:
        with track("windows", output_dir=tmp, emissions_csv=False) as run:
            t = time.perf_counter()
            for _ in run.steps(range(n)):
                pass
            with_windows = time.perf_counter() - t
        t = time.perf_counter()
        for _ in range(n):
            pass
        bare = time.perf_counter() - t
    return (with_windows - bare) / n * 1e6


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=9)
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--json", default=None)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()

    import torch

    from tracker import track

    cuda = torch.cuda.is_available()
    dev = "cuda" if cuda else "cpu"
    width = 4096 if cuda else 256
    model = torch.nn.Sequential(torch.nn.Linear(width, width), torch.nn.GELU(),
                                torch.nn.Linear(width, width)).to(dev)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    x = torch.randn(256 if cuda else 64, width, device=dev)

    def step() -> None:
        loss = model(x).square().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if cuda:
            torch.cuda.synchronize()  # so the host-side step time is the real step time

    def timed(iterable) -> list[float]:
        """Time each whole iteration (loop machinery included: step windows cost there)."""
        out = []
        t = time.perf_counter()
        for _ in iterable:
            step()
            now = time.perf_counter()
            out.append(now - t)
            t = now
        return out

    timed(range(30))  # warm-up
    tmp = tempfile.mkdtemp()
    medians: dict[str, list[float]] = {"off": [], "track": [], "steps": []}
    modes = list(medians)
    for r in range(args.repeats):
        for mode in modes[r % 3:] + modes[: r % 3]:
            if mode == "off":
                times = timed(range(args.steps))
            else:
                with track("bench", output_dir=tmp, emissions_csv=False) as run:
                    times = timed(range(args.steps) if mode == "track"
                                  else run.steps(range(args.steps)))
            medians[mode].append(statistics.median(times))
    base = statistics.median(medians["off"])
    result = {
        "device": torch.cuda.get_device_name() if cuda else "cpu",
        "step_ms_median": {k: statistics.median(v) * 1000 for k, v in medians.items()},
        "slowdown_pct": {k: (statistics.median(v) / base - 1) * 100
                         for k, v in medians.items() if k != "off"},
        "per_repeat_ms": {k: [round(x * 1000, 4) for x in v] for k, v in medians.items()},
        "repeats": args.repeats, "steps_per_repeat": args.steps,
        **import_time_ms(3 if args.quick else 10),
        "sampler_cpu_pct_of_one_core": sampler_cpu_pct(2.0 if args.quick else 5.0),
        "step_window_us": step_window_us(20_000 if args.quick else 100_000),
        "quick": args.quick,
    }
    print(json.dumps(result, indent=2))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
