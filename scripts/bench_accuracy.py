"""Accuracy of the GPU energy path on a recorded NVML trace, per mode and sampling rate.

Replays the trace through the real sensor, sampler and curve (tracker.replay) and prints the
error of the total and of each epoch against the trace's own energy counter.
Usage: python scripts/bench_accuracy.py [TRACE] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from tracker.replay import replay

DEFAULT_TRACE = Path(__file__).resolve().parents[2] / "shared/data/h100_gpt_train.json"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("trace", nargs="?", type=Path, default=DEFAULT_TRACE)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    rows = []
    print(f"{'mode':<8}{'rate Hz':>8}{'total err %':>13}{'max |epoch err| %':>19}"
          f"{'power reads':>13}{'counter reads':>15}")
    for mode in ("counter", "sampled"):
        for rate in (100, 20, 10, 5, 2, 1, 0.2):
            r = replay(args.trace, mode=mode, rate_hz=rate)
            worst = max((abs(e["error_pct"]) for e in r.epochs if e["error_pct"] is not None),
                        default=float("nan"))
            rows.append({**r.to_dict(), "max_abs_epoch_error_pct": worst})
            print(f"{mode:<8}{rate:>8g}{r.error_pct:>13.4f}{worst:>19.3f}{r.power_reads:>13}"
                  f"{r.counter_reads:>15}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
