"""Step-time overhead of tracking, measured side by side in one process (medians over repeats).

Modes, interleaved in rotating order within each repeat so drift hits all equally:
  off      - the bare training loop;
  track    - inside `with track()` at the default rate (10 Hz);
  steps    - as `track`, plus a step window per step (`run.steps`), the integrations' path.
Also times `import tracker` in fresh interpreters. Runs on the GPU if there is one.
Usage: python scripts/bench_overhead.py [--repeats 7] [--steps 3000] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time


def import_time_ms(n: int = 5) -> float:
    code = "import time; t=time.perf_counter(); import tracker; print(time.perf_counter()-t)"
    runs = [float(subprocess.check_output([sys.executable, "-c", code])) * 1000 for _ in range(n)]
    return statistics.median(runs)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--json", default=None)
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

    def timed(n: int) -> list[float]:
        out = []
        for _ in range(n):
            t = time.perf_counter()
            step()
            out.append(time.perf_counter() - t)
        return out

    def timed_steps(run, n: int) -> list[float]:
        out = []
        it = run.steps(range(n))
        for _ in it:
            t = time.perf_counter()
            step()
            out.append(time.perf_counter() - t)
        return out

    timed(30)  # warm-up
    tmp = tempfile.mkdtemp()
    medians: dict[str, list[float]] = {"off": [], "track": [], "steps": []}
    modes = list(medians)
    for r in range(args.repeats):
        for mode in modes[r % 3:] + modes[: r % 3]:
            if mode == "off":
                times = timed(args.steps)
            else:
                with track("bench", output_dir=tmp, emissions_csv=False) as run:
                    times = timed(args.steps) if mode == "track" else timed_steps(run, args.steps)
            medians[mode].append(statistics.median(times))
    base = statistics.median(medians["off"])
    result = {
        "device": torch.cuda.get_device_name() if cuda else "cpu",
        "step_ms_median": {k: statistics.median(v) * 1000 for k, v in medians.items()},
        "slowdown_pct": {k: (statistics.median(v) / base - 1) * 100
                         for k, v in medians.items() if k != "off"},
        "repeats": args.repeats, "steps_per_repeat": args.steps,
        "import_tracker_ms": import_time_ms(),
    }
    print(json.dumps(result, indent=2))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
