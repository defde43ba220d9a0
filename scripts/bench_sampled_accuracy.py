"""Accuracy on bursty loads: error distributions of each way to turn NVML readings into energy.

Generates bursty traces (tests/bursty.py: five step patterns from 2 to 50 ms with host pauses,
evals and idle gaps between 6-8 s epochs; NVML's 100 ms publication, 1 s average and instant
field modelled on an H100), and replays each through the real sensor, sampler and curve
(`tracker.replay`) at many tick phases against NVML's updates, in three modes:

  counter          the energy counter (anchored at window edges) with the power shape
  sampled          no counter: instant power and the 1 s average fused (tracker/fusion.py)
  sampled-instant  no counter: the instant power alone (what the tracker did before)

Printed per mode: the total's error against the generated (true) energy, each epoch's error
against the true energy and against the counter's own delta between the epoch's edges
(the reference a reader of NVML at the edges gets), as median / 95th percentile / max of |error|
over all traces and phases; then the same on the recorded H100 trace when it is there.

    python scripts/bench_sampled_accuracy.py [--seeds 3] [--offsets 40] [--rate 10]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from bursty import PATTERNS, generate  # noqa: E402

from tracker.replay import Trace, replay  # noqa: E402

MODES = ("counter", "sampled", "sampled-instant")
REAL = ROOT.parent / "shared" / "data" / "h100_gpt_train.json"


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, round(q * (len(s) - 1)))]


def one(path: Path, trace: Trace, mode: str, offset: float, rate: float, truth=None) -> dict:
    r = replay(path, mode=mode, rate_hz=rate, offset_s=offset)
    start = trace.t[0] + offset
    out = {"total_vs_counter": r.error_pct, "epochs_vs_counter": [], "epochs_vs_true": []}
    if truth is not None:
        t = truth.true_energy_j(start, start + r.duration_s)
        out["total_vs_true"] = (r.energy_j - t) / t * 100
    for e in r.epochs:
        a, b = start + e["start_s"], start + e["end_s"]
        ref = (trace.value(b, "energy_mj") - trace.value(a, "energy_mj")) / 1000.0
        out["epochs_vs_counter"].append(abs(e["energy_j"] - ref) / ref * 100)
        if truth is not None:
            t = truth.true_energy_j(a, b)
            out["epochs_vs_true"].append(abs(e["energy_j"] - t) / t * 100)
    return out


def line(name: str, xs: list[float], signed: bool = False) -> str:
    a = [abs(x) for x in xs]
    extra = f", mean {statistics.mean(xs):+.3f} %" if signed else ""
    return (f"{name}: median {statistics.median(a):.3f} %, p95 {pct(a, 0.95):.3f} %, "
            f"max {max(a):.3f} %{extra}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--offsets", type=int, default=40)
    ap.add_argument("--rate", type=float, default=10.0)
    ap.add_argument("--epoch-s", type=float, default=None,
                    help="epoch length, s (default: each pattern's own, 6-9 s); a window's "
                         "edge error is absolute, so longer epochs show it relative to more")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    offsets = [k * 0.1 / args.offsets for k in range(args.offsets)]
    figures: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        runs = {m: [] for m in MODES}
        for pattern in PATTERNS:
            for seed in range(args.seeds):
                if args.epoch_s is not None:
                    pattern = dataclasses.replace(pattern, epoch_s=args.epoch_s)
                syn = generate(pattern, seed)
                path = syn.write(Path(tmp) / f"{pattern.name}-{seed}.json")
                trace = Trace(path)
                for mode in MODES:
                    for off in offsets:
                        runs[mode].append(one(path, trace, mode, off, args.rate, syn))
        n = len(PATTERNS) * args.seeds * len(offsets)
        print(f"generated: {len(PATTERNS)} patterns x {args.seeds} seeds x {len(offsets)} "
              f"phases = {n} replays per mode at {args.rate:g} Hz"
              + (f", {args.epoch_s:g} s epochs" if args.epoch_s else ""))
        for mode in MODES:
            rs = runs[mode]
            tot = [r["total_vs_true"] for r in rs]
            ep_t = [max(r["epochs_vs_true"]) for r in rs]
            ep_c = [max(r["epochs_vs_counter"]) for r in rs]
            print(f"  {mode}")
            print("    " + line("total vs true", tot, signed=True))
            print("    " + line("worst epoch vs true", ep_t))
            print("    " + line("worst epoch vs the counter's delta", ep_c))
            figures[mode] = {"total_vs_true": tot, "worst_epoch_vs_true": ep_t,
                             "worst_epoch_vs_counter": ep_c}
    if REAL.exists():
        trace = Trace(REAL)
        print(f"recorded H100 trace ({REAL.name}), {len(offsets)} phases:")
        for mode in MODES:
            rs = [one(REAL, trace, mode, off, args.rate) for off in offsets]
            tot = [r["total_vs_counter"] for r in rs]
            ep = [max(r["epochs_vs_counter"]) for r in rs]
            print(f"  {mode}: " + line("total vs counter", tot, signed=True) + "; "
                  + line("worst epoch vs the counter's delta", ep))
            figures[f"real:{mode}"] = {"total_vs_counter": tot, "worst_epoch_vs_counter": ep}
    if args.json:
        Path(args.json).write_text(json.dumps(figures))


if __name__ == "__main__":
    main()
