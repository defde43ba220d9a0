"""Benchmark: the disk N empty steps leave in the run directory, with and without a horizon.

Runs N empty steps (default 10^7) through the real tracker — `with track()` around
`for _ in run.steps(range(N), samples=8, tokens=512)`, the sampler, the rounds, the ledger,
steps.bin and its segments, step_groups.jsonl, summary.json — on a hand-driven clock (the
tests' ManualClock: each step lasts --step-s of run time, the sampler is ticked every 0.1 s)
over a fake 300 W H100 with an energy counter (tests/fakes/fake_nvml.py), so it is fast and
the two runs see the same readings: once with the default horizon (step_detail_steps, or
--detail) and once unbounded (None: every step's record, as before the horizon). Printed:
the bytes in each run directory (total and per file kind), bytes per step, and whether the
step count, samples, tokens, energy in steps, the groups and the breakdown are equal —
live, and rebuilt from the files (`rebuild_summary`: the group records, then the newest
per-step records).

--month also drives the ledger and its files alone (no sampler: E(t) = 300 W x t) through
30 days (--days) of 10 ms steps (2.6e8 steps) and prints the bytes they leave (the samples
log's share of a month is bench_long_run.py's).

    python scripts/bench_steps_disk.py                    # 10^7 steps, twice
    python scripts/bench_steps_disk.py --steps 1000000 --month
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Optional

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "tests" / "fakes"))

TICK_S = 0.1


def kinds(run_dir: Path) -> dict[str, int]:
    out: dict[str, int] = {}
    for p in run_dir.iterdir():
        if not p.is_file():
            continue
        k = ("steps segments" if p.name.startswith("steps.") and p.suffix == ".bin" else
             "samples logs" if p.name.startswith(("samples", "timeline")) else p.name)
        out[k] = out.get(k, 0) + p.stat().st_size
    return out


def one_run(out: Path, n: int, step_s: float, detail: Optional[int]) -> tuple[Any, Path, float]:
    import fake_nvml
    from manual_time import ManualClock

    import tracker.sampler
    from tracker import track
    from tracker.sensors.nvidia import discover_gpus

    clock = ManualClock()
    tracker.sampler.monotonic_s = clock            # as the tests' manual_clock fixture
    tracker.sampler.hand_ticked = clock.samplers
    gpu = fake_nvml.FakeGPU(name="NVIDIA H100 80GB HBM3", profile=fake_nvml.Constant(300.0),
                            clock=clock)
    sensors = discover_gpus(nvml=fake_nvml.FakeNVML([gpu]), env={}).sensors
    t = time.perf_counter()
    every = max(1, round(TICK_S / step_s))
    with track("steps-disk", output_dir=out, sensors=sensors, step_detail_steps=detail,
               report_html=False, emissions_csv=False, quiet=True) as run:
        k = 0
        for _ in run.steps(range(n), samples=8, tokens=512):
            clock.now_s += step_s
            k += 1
            if k == every:
                k = 0
                for s in clock.samplers:
                    s.tick_now()
    tracker.sampler.hand_ticked = None
    return run.summary, run.run_dir, time.perf_counter() - t


def numbers(s: Any) -> dict[str, Any]:
    st = s.steps
    return {"count": st.get("count"), "samples": st.get("samples"), "tokens": st.get("tokens"),
            "energy_j_in_steps": st.get("energy_j_in_steps"),
            "groups": [(g["steps"], g["energy_j"]) for g in st.get("groups", [])],
            "breakdown": {k: v["energy_j"] for k, v in (s.breakdown or {}).items()},
            "energy_j": s.energy_j}


def differences(a: dict[str, Any], b: dict[str, Any], tol_j: float = 1e-6) -> list[str]:
    bad = [k for k in ("count", "samples", "tokens") if a[k] != b[k]]
    for k in ("energy_j_in_steps", "energy_j"):
        if abs(a[k] - b[k]) > tol_j:
            bad.append(f"{k} {a[k]!r} vs {b[k]!r}")
    if len(a["groups"]) != len(b["groups"]) or any(
            x[0] != y[0] or abs(x[1] - y[1]) > tol_j for x, y in zip(a["groups"], b["groups"])):
        bad.append("groups")
    if set(a["breakdown"]) != set(b["breakdown"]) or any(
            abs(a["breakdown"][k] - b["breakdown"][k]) > tol_j for k in a["breakdown"]):
        bad.append("breakdown")
    return bad


def month(root: Path, step_s: float, detail: int, days: float = 30.0) -> None:
    """`days` of `step_s` steps through the ledger and its files (no sampler)."""
    from array import array

    import numpy as np

    from tracker.rundir.ledger import SETTLE_CHUNK, Batch, Ledger, StepFile

    d = root / "month"
    d.mkdir()
    led = Ledger(lambda ts: 300.0 * np.asarray(ts, dtype=float), [],
                 steps_file=StepFile(d / "steps.bin", horizon_steps=detail))
    n_total = int(days * 86400 / step_s)
    t = time.perf_counter()
    done = 0
    while done < n_total:
        n = min(SETTLE_CHUNK, n_total - done)
        idx = np.arange(done, done + n, dtype=np.int64)
        b = Batch.__new__(Batch)
        b.t0 = array("d", (1.0 + idx * step_s).tobytes())
        b.t1 = array("d", (1.0 + (idx + 1) * step_s).tobytes())
        b.index = array("q", idx.tobytes())
        b.samples = array("q", np.full(n, 8, np.int64).tobytes())
        b.tokens = array("q", np.full(n, 512, np.int64).tobytes())
        b.parent = array("q", np.full(n, -1, np.int64).tobytes())
        led.add_steps(b)
        led.advance(b.t1[-1])
        led.file.flush()
        done += n
    led.finish()
    k = kinds(d)
    total = sum(k.values())
    print(f"\n{days:g} days of {step_s * 1e3:g} ms steps ({n_total:,} steps) through the ledger, "
          f"horizon {detail:,}: {total / 1e6:.1f} MB of step files "
          f"({', '.join(f'{n} {v / 1e6:.1f} MB' for n, v in sorted(k.items()))}); "
          f"{led.groups.size:,} steps a group, {len(led.groups.groups)} groups; "
          f"{time.perf_counter() - t:.0f} s")
    expect = 300.0 * n_total * step_s
    print(f"  energy in steps {led.energy_j:.3f} J (exact {expect:.3f} J), "
          f"count {led.count:,}")


def main() -> int:
    from tracker.config import DEFAULT_STEP_DETAIL

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=10_000_000)
    ap.add_argument("--step-s", type=float, default=1e-4,
                    help="run time of one step on the hand-driven clock (default 0.1 ms)")
    ap.add_argument("--detail", type=int, default=DEFAULT_STEP_DETAIL,
                    help=f"the horizon of the bounded run (default {DEFAULT_STEP_DETAIL:,})")
    ap.add_argument("--month", action="store_true",
                    help="also 30 days of 10 ms steps through the ledger alone")
    ap.add_argument("--days", type=float, default=30.0, help="the --month run's length")
    args = ap.parse_args()
    from tracker.rebuild import rebuild_summary

    root = Path(tempfile.mkdtemp(prefix="bench-steps-disk-"))
    try:
        got = {}
        for label, detail in (("bounded", args.detail), ("unbounded", None)):
            summary, run_dir, wall = one_run(root / label, args.steps, args.step_s, detail)
            k = kinds(run_dir)
            total = sum(k.values())
            t = time.perf_counter()
            rebuilt = rebuild_summary(run_dir)
            t_rebuild = time.perf_counter() - t
            got[label] = (numbers(summary), numbers(rebuilt))
            print(f"{label:9} (step_detail_steps={detail}): {args.steps:,} steps in {wall:.1f} s; "
                  f"run directory {total / 1e6:.1f} MB = {total / args.steps:.1f} B/step "
                  f"({', '.join(f'{n} {v / 1e6:.2f} MB' for n, v in sorted(k.items()))}); "
                  f"rebuild {t_rebuild:.1f} s")
        live_a, rebuilt_a = got["bounded"]
        live_b, rebuilt_b = got["unbounded"]
        checks = {"live bounded = live unbounded": differences(live_a, live_b),
                  "rebuilt bounded = live unbounded": differences(rebuilt_a, live_b),
                  "rebuilt unbounded = live unbounded": differences(rebuilt_b, live_b)}
        print(f"count {live_a['count']:,}, samples {live_a['samples']:,}, tokens "
              f"{live_a['tokens']:,}, energy in steps {live_a['energy_j_in_steps']:.6f} J, "
              f"{len(live_a['groups'])} groups")
        same = "equal (count, samples, tokens, energy to 1e-6 J, groups, breakdown)"
        for what, bad in checks.items():
            print(f"  {what}: {same if not bad else 'DIFFERENT: ' + ', '.join(bad)}")
        if args.month:
            month(root, 0.01, args.detail, args.days)
        return 0 if not any(checks.values()) else 1
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
